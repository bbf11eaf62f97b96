//! The token-embedding table kept quantised: a prompt needs a few hundred of its 49,152 rows, so
//! those rows are dequantised on lookup instead of the whole table living in memory as f32.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Module, Result, Tensor};
use half::f16;

/// Q8_0 block: an f16 scale and 32 signed bytes.
const Q8_0_BLOCK_VALUES: usize = 32;
const Q8_0_BLOCK_BYTES: usize = 2 + Q8_0_BLOCK_VALUES;

/// Token ids to embedding vectors.
#[derive(Debug, Clone)]
pub enum TokenEmbedding {
    /// Rows of Q8_0 blocks, dequantised on lookup; the tensor may be the output layer's too.
    Q8_0 {
        table: Arc<QTensor>,
        dim: usize,
        vocab: usize,
    },
    /// Any other storage: the whole table as f32, as upstream does.
    Dense(candle_nn::Embedding),
}

impl TokenEmbedding {
    /// Keep `table` (vocab × dim) as it is when it is Q8_0; dequantise it otherwise.
    pub fn new(table: Arc<QTensor>, dim: usize) -> Result<Self> {
        let (vocab, cols) = table.shape().dims2()?;
        if table.dtype() == GgmlDType::Q8_0
            && cols == dim
            && dim.is_multiple_of(Q8_0_BLOCK_VALUES)
            && table.data()?.len() == vocab * dim / Q8_0_BLOCK_VALUES * Q8_0_BLOCK_BYTES
        {
            return Ok(Self::Q8_0 { table, dim, vocab });
        }
        let dense = table.dequantize(&table.device())?;
        Ok(Self::Dense(candle_nn::Embedding::new(dense, dim)))
    }
}

impl Module for TokenEmbedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (blocks, dim, vocab) = match self {
            Self::Dense(e) => return e.forward(ids),
            Self::Q8_0 { table, dim, vocab } => (table.data()?, *dim, *vocab),
        };
        let shape = ids.dims().to_vec();
        let ids = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let row_bytes = dim / Q8_0_BLOCK_VALUES * Q8_0_BLOCK_BYTES;
        let mut out = Vec::with_capacity(ids.len() * dim);
        for id in ids {
            let id = id as usize;
            if id >= vocab {
                candle_core::bail!("token id {id} is outside the vocabulary of {vocab}");
            }
            let row = &blocks[id * row_bytes..(id + 1) * row_bytes];
            for block in row.chunks_exact(Q8_0_BLOCK_BYTES) {
                let scale = f16::from_le_bytes([block[0], block[1]]).to_f32();
                out.extend(block[2..].iter().map(|&q| scale * f32::from(q as i8)));
            }
        }
        let mut dims = shape;
        dims.push(dim);
        Tensor::from_vec(out, dims, &candle_core::Device::Cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantised_rows_match_the_dequantised_table() {
        let device = candle_core::Device::Cpu;
        let table = Tensor::arange(0f32, (8 * 64) as f32, &device)
            .unwrap()
            .reshape((8, 64))
            .unwrap();
        let table = ((table / 100.0).unwrap().sin()).unwrap();
        let q = QTensor::quantize(&table, GgmlDType::Q8_0).unwrap();
        let dense = candle_nn::Embedding::new(q.dequantize(&device).unwrap(), 64);
        let quantised = TokenEmbedding::new(Arc::new(q), 64).unwrap();
        assert!(matches!(quantised, TokenEmbedding::Q8_0 { .. }));
        let ids = Tensor::new(&[[3u32, 0, 7]], &device).unwrap();
        let a = dense.forward(&ids).unwrap();
        let b = quantised.forward(&ids).unwrap();
        assert_eq!(a.dims(), b.dims());
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "{diff}");
    }
}
