//! Zero padding of Q8_0 weight rows so that prefill runs on candle's tiled kernel.
//!
//! candle 0.11 multiplies Q8_0 matrices with its tiled AVX-512-VNNI kernel only when the input
//! width is a multiple of 256; SmolLM2's is 576, so all but the down-projection fell back to a
//! row-by-row dot product that made prompt processing ~7 ms a token. Padding each weight row
//! (and each activation row, in `QMatMul::forward`) with zeros to 768 adds a third more
//! arithmetic but runs it on a kernel measured ~9x faster; zeros add nothing to the products, so
//! the results are unchanged. Without AVX-512-VNNI the kernel is not used, so nothing is padded.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result};

/// The tiled kernel's requirements: input width a multiple of this, output rows of `TILE_N`.
const TILED_K: usize = 256;
const TILE_N: usize = 16;

fn tiled_kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A padded copy of the weight and the padding added, when that makes the tiled kernel
/// applicable.
pub fn pad_for_tiled_kernel(weight: &QTensor) -> Result<Option<(QTensor, usize)>> {
    let Ok((n, k)) = weight.shape().dims2() else {
        return Ok(None);
    };
    if weight.dtype() != GgmlDType::Q8_0
        || k.is_multiple_of(TILED_K)
        || !n.is_multiple_of(TILE_N)
        || !tiled_kernel_available()
    {
        return Ok(None);
    }
    let pad = k.next_multiple_of(TILED_K) - k;
    // Q8_0 → f32 → Q8_0 reproduces the same blocks: each block's scale comes from its largest
    // value, which dequantises to exactly ±127 × scale.
    let dense = weight.dequantize(&Device::Cpu)?.pad_with_zeros(1, 0, pad)?;
    Ok(Some((QTensor::quantize(&dense, GgmlDType::Q8_0)?, pad)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Module, Tensor};

    #[test]
    fn padded_weights_give_the_same_products() {
        let device = Device::Cpu;
        let w = Tensor::arange(0f32, (32 * 576) as f32, &device)
            .unwrap()
            .reshape((32, 576))
            .unwrap();
        let w = (w / 1000.0).unwrap().cos().unwrap();
        let x = Tensor::arange(0f32, (5 * 576) as f32, &device)
            .unwrap()
            .reshape((5, 576))
            .unwrap();
        let x = (x / 777.0).unwrap().sin().unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let plain = candle_core::quantized::QMatMul::from_qtensor(
            QTensor::quantize(&w, GgmlDType::Q8_0).unwrap(),
        )
        .unwrap();
        let Some((padded, pad)) = pad_for_tiled_kernel(&q).unwrap() else {
            // Without AVX-512-VNNI nothing is padded.
            assert!(!tiled_kernel_available());
            return;
        };
        let padded_mm = candle_core::quantized::QMatMul::from_qtensor(padded).unwrap();
        let a = plain.forward(&x).unwrap();
        let b = padded_mm
            .forward(&x.pad_with_zeros(1, 0, pad).unwrap())
            .unwrap();
        let scale = a
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // Both kernels quantise the activations to 8 bits their own way; the products agree to
        // well within that rounding.
        assert!(diff / scale < 2e-3, "{diff} of {scale}");
    }
}
