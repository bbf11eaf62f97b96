//! The token-embedding table kept quantised: a prompt needs a few hundred of its 49,152 rows, so
//! those rows are dequantised on lookup instead of the whole table living in memory as f32.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};

use crate::q8_tiled::TiledQ8_0;
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
    /// Tiles of 16 rows, shared with the output layer; rows dequantised on lookup.
    Tiled { table: Arc<TiledQ8_0>, dim: usize },
    /// Any other storage: the whole table as f32, as upstream does.
    Dense(candle_nn::Embedding),
}

impl TokenEmbedding {
    /// Look rows up in `table` (vocab × dim), the tiles the output layer multiplies by.
    pub fn tiled(table: Arc<TiledQ8_0>, dim: usize) -> Result<Self> {
        if table.dims().1 != dim {
            candle_core::bail!("embedding table of width {} for {dim}", table.dims().1);
        }
        Ok(Self::Tiled { table, dim })
    }

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
            Self::Tiled { table, dim } => return tiled_rows(table, *dim, ids),
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

fn tiled_rows(table: &TiledQ8_0, dim: usize, ids: &Tensor) -> Result<Tensor> {
    let (vocab, _) = table.dims();
    let mut dims = ids.dims().to_vec();
    let ids = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    let mut out = vec![0f32; ids.len() * dim];
    for (id, out) in ids.into_iter().zip(out.chunks_exact_mut(dim)) {
        if id as usize >= vocab {
            candle_core::bail!("token id {id} is outside the vocabulary of {vocab}");
        }
        table.dequantize_row(id as usize, out);
    }
    dims.push(dim);
    Tensor::from_vec(out, dims, &candle_core::Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantised_rows_match_the_dequantised_table() {
        let device = candle_core::Device::Cpu;
        let table = Tensor::arange(0f32, (32 * 64) as f32, &device)
            .unwrap()
            .reshape((32, 64))
            .unwrap();
        let table = ((table / 100.0).unwrap().sin()).unwrap();
        let q = Arc::new(QTensor::quantize(&table, GgmlDType::Q8_0).unwrap());
        let dense = candle_nn::Embedding::new(q.dequantize(&device).unwrap(), 64);
        let rows = TokenEmbedding::new(q.clone(), 64).unwrap();
        assert!(matches!(rows, TokenEmbedding::Q8_0 { .. }));
        let tiles = TiledQ8_0::pack(&q).unwrap().unwrap();
        let tiled = TokenEmbedding::tiled(Arc::new(tiles), 64).unwrap();
        let ids = Tensor::new(&[[3u32, 0, 31], [17, 16, 3]], &device).unwrap();
        let expected = dense.forward(&ids).unwrap();
        for quantised in [rows, tiled] {
            let got = quantised.forward(&ids).unwrap();
            assert_eq!(got.dims(), expected.dims());
            let diff = (&expected - got)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-6, "{diff}");
            let outside = Tensor::new(&[32u32], &device).unwrap();
            assert!(quantised.forward(&outside).is_err());
        }
    }
}
