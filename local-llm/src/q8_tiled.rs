//! Q8_0 weights re-laid in tiles of 16 rows and multiplied with this crate's own kernels, for
//! prompts and decode steps alike. The tiled copy replaces candle's storage, so each matrix
//! exists once.
//!
//! Why: candle 0.11's fast Q8_0 kernel (`repack_x86`) needs the input width to be a multiple of
//! 256 (SmolLM2's is 576) and keeps its tiled copy beside the original storage
//! (`QTensor::repacked_qs`, a `OnceLock` filled on first use, while `QTensor::storage` stays for
//! every other path). Without it a prompt is multiplied one row at a time (~7 ms a token) and a
//! decode step by horizontal dot products.
//!
//! Layout: for each group of 16 weight rows and each 32-value block, the 16 rows' f16 scales,
//! then their values in 8 groups of 4: `[group][row][4]`. One 512-bit load holds 4 values of 16
//! rows; `vpdpbusd` against 4 values of one prompt row, broadcast, advances 16 dot products with
//! no horizontal sums, and the 16 results are 16 adjacent outputs. Prompt rows are quantised to
//! Q8_0 (8 bits per 32 values, f32 scale) once for all the matrices that share them. Work is
//! split over candle's own thread pool, so no second pool competes for the cores.
//!
//! Kernels: AVX-512 VNNI, and AVX2 for CPUs without it. Elsewhere `kernel()` is `None` and
//! callers keep candle's `QMatMul`.

use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;

/// Values per Q8_0 block.
const QK: usize = 32;
/// Bytes per Q8_0 block in candle's storage: an f16 scale, then 32 signed values.
const BLOCK_BYTES: usize = 2 + QK;
/// Weight rows per tile: the i32 lanes of a 512-bit register.
const LANES: usize = 16;
/// Values of one tile's block: 32 values of 16 rows.
const TILE_BLOCK: usize = QK * LANES;

/// The instruction set the multiplications run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// `vpdpbusd` on 512-bit registers.
    Avx512Vnni,
    /// `vpmaddubsw`/`vpmaddwd` on 256-bit registers, for CPUs without VNNI.
    Avx2,
}

/// The fastest kernel this CPU runs, or `None` (callers keep candle's path). Setting
/// `CAXTON_Q8_KERNEL=avx2` or `=off` before the first call picks a slower one, to measure what a
/// CPU without AVX-512 (or without AVX2) gets.
pub fn kernel() -> Option<Kernel> {
    static KERNEL: std::sync::OnceLock<Option<Kernel>> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        let detected = detect();
        match std::env::var("CAXTON_Q8_KERNEL").as_deref() {
            Ok("off") => None,
            Ok("avx2") => detected.map(|_| Kernel::Avx2),
            _ => detected,
        }
    })
}

/// Whether this CPU runs `kernel` (a `Kernel` can be named without having been detected).
fn runs(kernel: Kernel) -> bool {
    matches!(
        (kernel, detect()),
        (Kernel::Avx512Vnni, Some(Kernel::Avx512Vnni)) | (Kernel::Avx2, Some(_))
    )
}

fn detect() -> Option<Kernel> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
            return Some(Kernel::Avx512Vnni);
        }
        if has!("avx2") && has!("fma") && has!("f16c") {
            return Some(Kernel::Avx2);
        }
    }
    None
}

/// Why a multiplication was refused.
#[derive(Debug, thiserror::Error)]
pub enum TiledError {
    /// The inputs do not have the sizes the shapes say.
    #[error("tiled Q8_0 matmul: {0}")]
    Shape(String),
    /// This CPU lacks the kernel's instructions.
    #[error("tiled Q8_0 matmul: this CPU cannot run the {0:?} kernel")]
    Cpu(Kernel),
}

/// An `n × k` Q8_0 matrix in tiles of 16 rows.
#[derive(Debug)]
pub struct TiledQ8_0 {
    n: usize,
    k: usize,
    /// `[tile][block][group of 4 values][row][4]`.
    qs: Vec<i8>,
    /// `[tile][block][row]`.
    d: Vec<f16>,
}

impl TiledQ8_0 {
    /// The tiled copy of `t`, or `None` when `t` is not a Q8_0 matrix of whole tiles.
    pub fn pack(t: &QTensor) -> candle_core::Result<Option<Self>> {
        let Ok((n, k)) = t.shape().dims2() else {
            return Ok(None);
        };
        if t.dtype() != GgmlDType::Q8_0 || !n.is_multiple_of(LANES) || !k.is_multiple_of(QK) {
            return Ok(None);
        }
        let data = t.data()?;
        let kb = k / QK;
        if data.len() != n * kb * BLOCK_BYTES {
            return Ok(None);
        }
        let mut qs = vec![0i8; n * k];
        let mut d = vec![f16::ZERO; n * kb];
        for (row, blocks) in data.chunks_exact(kb * BLOCK_BYTES).enumerate() {
            let (tile, lane) = (row / LANES, row % LANES);
            for (b, block) in blocks.chunks_exact(BLOCK_BYTES).enumerate() {
                let at = tile * kb + b;
                d[at * LANES + lane] = f16::from_le_bytes([block[0], block[1]]);
                let dst = &mut qs[at * TILE_BLOCK..][..TILE_BLOCK];
                for (g, four) in block[2..].chunks_exact(4).enumerate() {
                    for (j, &q) in four.iter().enumerate() {
                        dst[g * LANES * 4 + lane * 4 + j] = q as i8;
                    }
                }
            }
        }
        Ok(Some(Self { n, k, qs, d }))
    }

    /// Rows and columns.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// Row `row` as f32 (a token embedding, when the matrix is the embedding table).
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let kb = self.k / QK;
        let (tile, lane) = (row / LANES, row % LANES);
        for (b, out) in out.chunks_exact_mut(QK).enumerate().take(kb) {
            let at = tile * kb + b;
            let d = self.d[at * LANES + lane].to_f32();
            let src = &self.qs[at * TILE_BLOCK..][..TILE_BLOCK];
            for (g, out) in out.chunks_exact_mut(4).enumerate() {
                for (j, v) in out.iter_mut().enumerate() {
                    *v = d * f32::from(src[g * LANES * 4 + lane * 4 + j]);
                }
            }
        }
    }
}

/// Prompt (or decode) rows quantised to Q8_0, shared by the matrices they are multiplied by.
pub struct Rows {
    m: usize,
    k: usize,
    /// `[row][k]`.
    qs: Vec<i8>,
    /// `[row][block]`: the block's scale.
    d: Vec<f32>,
    /// `[row][block]`: −128 × the block's sum of values, which cancels the 128 the VNNI kernel
    /// adds to every weight to make it unsigned.
    offsets: Vec<i32>,
}

impl Rows {
    /// Quantise `x`, `m` rows of `k` values (`k` a multiple of 32).
    pub fn new(kernel: Kernel, x: &[f32], m: usize, k: usize) -> Result<Self, TiledError> {
        if !runs(kernel) {
            return Err(TiledError::Cpu(kernel));
        }
        if !k.is_multiple_of(QK) || x.len() != m * k {
            return Err(TiledError::Shape(format!(
                "{} values are not {m} rows of {k}, or {k} is not a multiple of {QK}",
                x.len()
            )));
        }
        let kb = k / QK;
        let (mut qs, mut d, mut offsets) = (vec![0; m * k], vec![0.0; m * kb], vec![0; m * kb]);
        for (r, x) in x.chunks_exact(k).enumerate() {
            quantise_row(
                kernel,
                x,
                &mut qs[r * k..][..k],
                &mut d[r * kb..][..kb],
                &mut offsets[r * kb..][..kb],
            );
        }
        Ok(Self {
            m,
            k,
            qs,
            d,
            offsets,
        })
    }
}

/// One row, compiled for AVX2 (every kernel runs on a CPU with it).
fn quantise_row(kernel: Kernel, x: &[f32], qs: &mut [i8], d: &mut [f32], offsets: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    {
        let _ = kernel;
        // SAFETY: `Rows::new` checked that the CPU runs `kernel`, which implies AVX2, FMA and
        // F16C.
        unsafe { quantise_row_avx2(x, qs, d, offsets) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, x, qs, d, offsets);
        unreachable!("no kernel is detected off x86_64");
    }
}

/// ggml's AVX2 Q8_0 quantiser (`quantize_row_q8_0`): the scale from the block's largest
/// magnitude, values rounded to nearest (ties to even).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn quantise_row_avx2(x: &[f32], qs: &mut [i8], d: &mut [f32], offsets: &mut [i32]) {
    use std::arch::x86_64::*;
    let sign_bit = _mm256_set1_ps(-0.0);
    let blocks = x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK));
    for ((block, q), (d, offset)) in blocks.zip(d.iter_mut().zip(offsets.iter_mut())) {
        let mut v = [_mm256_setzero_ps(); 4];
        for (i, v) in v.iter_mut().enumerate() {
            // SAFETY: 8 of the block's 32 values.
            *v = unsafe { _mm256_loadu_ps(block.as_ptr().add(i * 8)) };
        }
        let abs = |x| _mm256_andnot_ps(sign_bit, x);
        let m = _mm256_max_ps(
            _mm256_max_ps(abs(v[0]), abs(v[1])),
            _mm256_max_ps(abs(v[2]), abs(v[3])),
        );
        let m = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        *d = _mm_cvtss_f32(m) / 127.0;
        let id = _mm256_set1_ps(if *d > 0.0 { 1.0 / *d } else { 0.0 });
        let mut i = [_mm256_setzero_si256(); 4];
        for (i, v) in i.iter_mut().zip(v) {
            *i = _mm256_cvtps_epi32(_mm256_round_ps(
                _mm256_mul_ps(v, id),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            ));
        }
        let sum = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        let sum = _mm_add_epi32(
            _mm256_extracti128_si256(sum, 1),
            _mm256_castsi256_si128(sum),
        );
        let sum = _mm_add_epi32(sum, _mm_unpackhi_epi64(sum, sum));
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 1));
        *offset = -128 * _mm_cvtsi128_si32(sum);
        // The packs work within 128-bit halves; the permutation puts the dwords back in order.
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(i[0], i[1]),
            _mm256_packs_epi32(i[2], i[3]),
        );
        let packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: 32 bytes into the block's 32 values.
        unsafe { _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, packed) };
    }
}

/// `outs[i][r × n_i + c] = Σ_j x[r][j] · w_i[c][j]` for every weight matrix `w_i` and every row
/// `r` of `x`, in one pass over candle's thread pool.
pub fn matmul(
    kernel: Kernel,
    weights: &[&TiledQ8_0],
    x: &Rows,
    outs: &mut [Vec<f32>],
) -> Result<(), TiledError> {
    if !runs(kernel) {
        return Err(TiledError::Cpu(kernel));
    }
    if outs.len() != weights.len() {
        return Err(TiledError::Shape(format!(
            "{} outputs for {} weights",
            outs.len(),
            weights.len()
        )));
    }
    for (w, out) in weights.iter().zip(outs.iter()) {
        if w.k != x.k || out.len() != x.m * w.n {
            return Err(TiledError::Shape(format!(
                "{}×{} weights and {} outputs for {} rows of {}",
                w.n,
                w.k,
                out.len(),
                x.m,
                x.k
            )));
        }
    }
    let rows_per_call = match kernel {
        Kernel::Avx512Vnni => MAX_ROWS_512,
        Kernel::Avx2 => MAX_ROWS_256,
    };
    let row_groups = x.m.div_ceil(rows_per_call);
    // Units: (matrix, tile, group of rows), tile-major so that consecutive units reuse a tile.
    let mut first_unit = Vec::with_capacity(weights.len() + 1);
    let mut units = 0;
    for w in weights {
        first_unit.push(units);
        units += w.n / LANES * row_groups;
    }
    let out_at: Vec<usize> = outs.iter_mut().map(|o| o.as_mut_ptr() as usize).collect();
    candle_core::utils::barrier_pool().execute_chunked(units, |range| {
        for unit in range {
            let i = first_unit.partition_point(|&f| f <= unit) - 1;
            let (w, local) = (weights[i], unit - first_unit[i]);
            let (tile, group) = (local / row_groups, local % row_groups);
            let r0 = group * rows_per_call;
            let rows = (x.m - r0).min(rows_per_call);
            let out = Out {
                at: out_at[i] as *mut f32,
                n: w.n,
                col: tile * LANES,
                row: r0,
            };
            // SAFETY: the kernel writes rows r0..r0 + rows of columns col..col + 16 of output i,
            // which no other unit writes; `matmul` checked the sizes.
            unsafe { dispatch(kernel, w, tile, x, r0, rows, out) };
        }
    });
    Ok(())
}

/// Rows of `x` one AVX-512 call takes: 2 × 8 integer and 8 float accumulators fit in 32
/// registers beside the weights (4 and 12 measured the same on SmolLM2's prompts).
const MAX_ROWS_512: usize = 8;
/// Rows one AVX2 call takes: measured ahead of 2 and level with 6 (the float sums spill to the
/// stack once per block, which costs less than reloading the weights for fewer rows).
const MAX_ROWS_256: usize = 4;

/// Where a call's products go: 16 adjacent columns of rows `row..` of one output.
#[derive(Clone, Copy)]
struct Out {
    at: *mut f32,
    n: usize,
    col: usize,
    row: usize,
}

impl Out {
    /// The start of row `row + r`'s 16 columns.
    ///
    /// # Safety
    /// As for the kernels: the row exists and its 16 columns are the caller's alone.
    #[inline(always)]
    unsafe fn row(&self, r: usize) -> *mut f32 {
        // SAFETY: in bounds, as the caller promises.
        unsafe { self.at.add((self.row + r) * self.n + self.col) }
    }
}

/// # Safety
/// `rows` rows of `x` from `r0` exist; `out` is the caller's alone for them and tile `tile`.
unsafe fn dispatch(
    kernel: Kernel,
    w: &TiledQ8_0,
    tile: usize,
    x: &Rows,
    r0: usize,
    rows: usize,
    out: Out,
) {
    macro_rules! rows {
        ($f:ident, $($m:literal)*) => {
            match rows {
                $($m => $f::<$m>(w, tile, x, r0, out),)*
                _ => unreachable!("at most the kernel's rows per call"),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `matmul` checked that the CPU runs `kernel`; the rest is the caller's promise.
    unsafe {
        match kernel {
            Kernel::Avx512Vnni => rows!(tile_avx512, 1 2 3 4 5 6 7 8),
            Kernel::Avx2 => rows!(tile_avx2, 1 2 3 4),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, w, tile, x, r0, rows, out);
        unreachable!("no kernel is detected off x86_64");
    }
}

/// One tile against M rows of `x`, AVX-512 VNNI. `vpdpbusd` multiplies unsigned by signed
/// bytes, so the weights are flipped to unsigned (+128) as they are loaded and the rows'
/// offsets subtract the 128 × Σx that adds. Even and odd groups sum into separate registers so
/// that a single row (a decode step) is not one long chain of dependent instructions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_avx512<const M: usize>(w: &TiledQ8_0, tile: usize, x: &Rows, r0: usize, out: Out) {
    use std::arch::x86_64::*;
    let kb = w.k / QK;
    let flip = _mm512_set1_epi8(0x80u8 as i8);
    let mut acc = [_mm512_setzero_ps(); M];
    for b in 0..kb {
        let at = tile * kb + b;
        let wq = w.qs[at * TILE_BLOCK..][..TILE_BLOCK].as_ptr();
        let mut even = [_mm512_setzero_si512(); M];
        let mut odd = [_mm512_setzero_si512(); M];
        for (r, even) in even.iter_mut().enumerate() {
            *even = _mm512_set1_epi32(x.offsets[(r0 + r) * kb + b]);
        }
        for g in (0..QK / 4).step_by(2) {
            // SAFETY: groups g and g + 1 of the tile's block, 64 bytes each.
            let (wa, wb) = unsafe {
                (
                    _mm512_loadu_si512(wq.add(g * 64) as *const _),
                    _mm512_loadu_si512(wq.add(g * 64 + 64) as *const _),
                )
            };
            let (wa, wb) = (_mm512_xor_si512(wa, flip), _mm512_xor_si512(wb, flip));
            for r in 0..M {
                // SAFETY: values g * 4.. g * 4 + 8 of block b of row r0 + r, which exists.
                let (xa, xb) = unsafe {
                    let xq = x.qs.as_ptr().add((r0 + r) * x.k + b * QK + g * 4);
                    (
                        std::ptr::read_unaligned(xq as *const i32),
                        std::ptr::read_unaligned(xq.add(4) as *const i32),
                    )
                };
                even[r] = _mm512_dpbusd_epi32(even[r], wa, _mm512_set1_epi32(xa));
                odd[r] = _mm512_dpbusd_epi32(odd[r], wb, _mm512_set1_epi32(xb));
            }
        }
        // SAFETY: the tile's 16 scales of block b.
        let dw = _mm512_cvtph_ps(unsafe {
            _mm256_loadu_si256(w.d.as_ptr().add(at * LANES) as *const _)
        });
        for r in 0..M {
            let sum = _mm512_cvtepi32_ps(_mm512_add_epi32(even[r], odd[r]));
            let scale = _mm512_mul_ps(dw, _mm512_set1_ps(x.d[(r0 + r) * kb + b]));
            acc[r] = _mm512_fmadd_ps(sum, scale, acc[r]);
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: the caller's 16 columns of row r0 + r.
        unsafe { _mm512_storeu_ps(out.row(r), *acc) };
    }
}

/// One tile against M rows of `x`, AVX2, as two halves of 8 weight rows. `vpmaddubsw`
/// multiplies unsigned by signed bytes into saturating i16 pairs, so the weights' signs move onto
/// the row's values (|w| × ±x stays within i16), and `vpmaddwd` widens the pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2<const M: usize>(w: &TiledQ8_0, tile: usize, x: &Rows, r0: usize, out: Out) {
    use std::arch::x86_64::*;
    let kb = w.k / QK;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); 2]; M];
    for b in 0..kb {
        let at = tile * kb + b;
        let wq = w.qs[at * TILE_BLOCK..][..TILE_BLOCK].as_ptr();
        let mut sum = [[_mm256_setzero_si256(); 2]; M];
        for g in 0..QK / 4 {
            let mut wv = [_mm256_setzero_si256(); 2];
            for (h, wv) in wv.iter_mut().enumerate() {
                // SAFETY: half h of group g of the tile's block.
                *wv = unsafe { _mm256_loadu_si256(wq.add(g * 64 + h * 32) as *const _) };
            }
            let wabs = [_mm256_abs_epi8(wv[0]), _mm256_abs_epi8(wv[1])];
            for (r, sum) in sum.iter_mut().enumerate() {
                // SAFETY: values g * 4.. g * 4 + 4 of block b of row r0 + r, which exists.
                let xv = _mm256_set1_epi32(unsafe {
                    std::ptr::read_unaligned(
                        x.qs.as_ptr().add((r0 + r) * x.k + b * QK + g * 4) as *const i32
                    )
                });
                for h in 0..2 {
                    let pairs = _mm256_maddubs_epi16(wabs[h], _mm256_sign_epi8(xv, wv[h]));
                    sum[h] = _mm256_add_epi32(sum[h], _mm256_madd_epi16(pairs, ones));
                }
            }
        }
        for h in 0..2 {
            // SAFETY: 8 of the tile's 16 scales of block b.
            let dw = _mm256_cvtph_ps(unsafe {
                _mm_loadu_si128(w.d.as_ptr().add(at * LANES + h * 8) as *const _)
            });
            for r in 0..M {
                let scale = _mm256_mul_ps(dw, _mm256_set1_ps(x.d[(r0 + r) * kb + b]));
                acc[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r][h]), scale, acc[r][h]);
            }
        }
    }
    for (r, [low, high]) in acc.iter().enumerate() {
        // SAFETY: the caller's 16 columns of row r0 + r.
        unsafe {
            _mm256_storeu_ps(out.row(r), *low);
            _mm256_storeu_ps(out.row(r).add(8), *high);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QMatMul;
    use candle_core::{Device, Module, Tensor};

    /// Kernels this CPU can run, so that each is checked where it exists.
    fn kernels() -> Vec<Kernel> {
        match detect() {
            Some(Kernel::Avx512Vnni) => vec![Kernel::Avx512Vnni, Kernel::Avx2],
            Some(Kernel::Avx2) => vec![Kernel::Avx2],
            None => Vec::new(),
        }
    }

    /// Deterministic values in [-1, 1) with larger outliers now and then, as activations have.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|i| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0;
                if i % 97 == 0 { v * 8.0 } else { v }
            })
            .collect()
    }

    fn weights(n: usize, k: usize) -> QTensor {
        let w = Tensor::from_vec(values(n * k, 7), (n, k), &Device::Cpu).unwrap();
        QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()
    }

    fn tiled_product(kernel: Kernel, w: &[&QTensor], x: &[f32], m: usize) -> Vec<Vec<f32>> {
        let tiled: Vec<TiledQ8_0> = w
            .iter()
            .map(|w| TiledQ8_0::pack(w).unwrap().unwrap())
            .collect();
        let refs: Vec<&TiledQ8_0> = tiled.iter().collect();
        let k = tiled[0].k;
        let rows = Rows::new(kernel, x, m, k).unwrap();
        let mut outs: Vec<Vec<f32>> = tiled.iter().map(|t| vec![f32::NAN; m * t.n]).collect();
        matmul(kernel, &refs, &rows, &mut outs).unwrap();
        outs
    }

    fn to_vec(t: Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// Largest difference relative to the largest magnitude of `reference`.
    fn relative_error(a: &[f32], reference: &[f32]) -> f32 {
        assert_eq!(a.len(), reference.len());
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(reference)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        diff / scale
    }

    // (rows, width, weight rows): one row (a decode step), rows not a multiple of the kernels'
    // 8 or 2 per call, an odd number of blocks, and SmolLM2's own shapes.
    const SHAPES: [(usize, usize, usize); 6] = [
        (1, 576, 192),
        (1, 1536, 64),
        (2, 64, 16),
        (37, 96, 48),
        (103, 576, 192),
        (17, 1536, 32),
    ];

    #[test]
    fn products_match_candles_quantised_matmul_and_the_f32_matmul() {
        for kernel in kernels() {
            for (m, k, n) in SHAPES {
                let w = weights(n, k);
                let x = values(m * k, 11);
                let ours = tiled_product(kernel, &[&w], &x, m).remove(0);
                let xt = Tensor::from_vec(x, (m, k), &Device::Cpu).unwrap();
                let exact = to_vec(
                    xt.matmul(&w.dequantize(&Device::Cpu).unwrap().t().unwrap())
                        .unwrap(),
                );
                let candle = to_vec(QMatMul::from_qtensor(w).unwrap().forward(&xt).unwrap());
                let vs_candle = relative_error(&ours, &candle);
                let vs_exact = relative_error(&ours, &exact);
                let candle_vs_exact = relative_error(&candle, &exact);
                // 8-bit rows cost about 1% of the largest product (more for a single row, a
                // smaller yardstick), never more than they cost candle.
                assert!(
                    vs_exact < 1.5e-2 && vs_exact <= candle_vs_exact * 1.1,
                    "{kernel:?} {m}×{k}×{n}: {vs_exact} against candle's {candle_vs_exact}"
                );
                // candle quantises rows per 32 values too, except with its tiled kernel (widths
                // that are multiples of 256, on AVX-512) which does so per 256: then the two
                // differ by candle's coarser rounding, otherwise only by its f16 row scales.
                if !k.is_multiple_of(256) {
                    assert!(vs_candle < 1e-3, "{kernel:?} {m}×{k}×{n}: {vs_candle}");
                }
            }
        }
    }

    #[test]
    fn several_matrices_in_one_pass_match_one_at_a_time() {
        for kernel in kernels() {
            let (a, b, c) = (weights(48, 96), weights(16, 96), weights(64, 96));
            let x = values(21 * 96, 3);
            let together = tiled_product(kernel, &[&a, &b, &c], &x, 21);
            for (w, t) in [&a, &b, &c].into_iter().zip(&together) {
                assert_eq!(&tiled_product(kernel, &[w], &x, 21)[0], t, "{kernel:?}");
            }
        }
    }

    #[test]
    fn the_kernels_agree() {
        let kernels = kernels();
        let [first, rest @ ..] = &kernels[..] else {
            return;
        };
        let w = weights(64, 576);
        let x = values(19 * 576, 5);
        let a = tiled_product(*first, &[&w], &x, 19).remove(0);
        for kernel in rest {
            let b = tiled_product(*kernel, &[&w], &x, 19).remove(0);
            // The same integer sums, scaled in a different order.
            assert!(relative_error(&b, &a) < 1e-5, "{kernel:?}");
        }
    }

    #[test]
    fn all_zero_rows_give_zero_products() {
        for kernel in kernels() {
            let w = weights(32, 64);
            let mut x = values(20 * 64, 13);
            x[5 * 64..6 * 64].fill(0.0);
            let out = tiled_product(kernel, &[&w], &x, 20).remove(0);
            assert!(out[5 * 32..6 * 32].iter().all(|v| *v == 0.0), "{kernel:?}");
            assert!(out.iter().all(|v| v.is_finite()), "{kernel:?}");
        }
    }

    #[test]
    fn rows_read_back_as_the_dequantised_matrix() {
        let w = weights(48, 96);
        let tiled = TiledQ8_0::pack(&w).unwrap().unwrap();
        let dense = to_vec(w.dequantize(&Device::Cpu).unwrap());
        let mut row = vec![0f32; 96];
        for r in [0, 15, 16, 47] {
            tiled.dequantize_row(r, &mut row);
            assert_eq!(row, dense[r * 96..(r + 1) * 96], "row {r}");
        }
    }

    #[test]
    fn only_q8_0_matrices_of_whole_tiles_are_packed() {
        assert!(TiledQ8_0::pack(&weights(40, 64)).unwrap().is_none());
        let w = Tensor::from_vec(values(32 * 64, 1), (32, 64), &Device::Cpu).unwrap();
        let q4 = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        assert!(TiledQ8_0::pack(&q4).unwrap().is_none());
    }

    #[test]
    fn inputs_of_the_wrong_size_are_refused() {
        let Some(&kernel) = kernels().first() else {
            return;
        };
        let tiled = TiledQ8_0::pack(&weights(16, 64)).unwrap().unwrap();
        assert!(Rows::new(kernel, &values(2 * 64 - 1, 1), 2, 64).is_err());
        assert!(Rows::new(kernel, &values(2 * 48, 1), 2, 48).is_err());
        let rows = Rows::new(kernel, &values(2 * 64, 1), 2, 64).unwrap();
        assert!(matmul(kernel, &[&tiled], &rows, &mut [vec![0.0; 31]]).is_err());
        assert!(matmul(kernel, &[&tiled], &rows, &mut []).is_err());
        let narrow = Rows::new(kernel, &values(2 * 32, 1), 2, 32).unwrap();
        assert!(matmul(kernel, &[&tiled], &narrow, &mut [vec![0.0; 32]]).is_err());
    }
}
