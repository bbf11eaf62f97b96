//! Prompt-path matmul for Q8_0 weights: many prompt tokens against a weight matrix at once, read
//! in place from candle's own storage, so no second copy of the weights exists.
//!
//! Why: candle 0.11 multiplies Q8_0 weights by several rows fast only through its tiled kernel,
//! which needs the input width to be a multiple of 256 (SmolLM2's is 576) and keeps a repacked
//! copy of every matrix beside the original (`QTensor::repacked_qs`, about +200 MB padded).
//! Otherwise each prompt row takes a separate pass of row-by-row dot products (~7 ms a token).
//!
//! How: the prompt rows are quantised to 8 bits per 32-value block (as Q8_0) once, and laid
//! out 16 rows side by side, 4 bytes each: one SIMD register then holds 4 values of 16 rows.
//! Multiplying it by 4 bytes of one weight row broadcast to every lane (`vpdpbusd`) advances 16
//! dot products at once, with no horizontal sums, straight from the weights' row-major blocks.
//! Each block's integer sums are scaled by the weight's and the rows' block scales in f32.
//! Work is split by weight rows over candle's own thread pool, so no second pool competes for
//! the cores. Kernels: AVX-512 VNNI, and AVX2 for machines without it; elsewhere `kernel()`
//! is `None` and callers keep candle's path.

use half::f16;

/// Values per Q8_0 block.
const QK: usize = 32;
/// Bytes per Q8_0 block: an f16 scale, then 32 signed values.
const BLOCK_BYTES: usize = 2 + QK;
/// Prompt rows side by side in one tile: the i32 lanes of a 512-bit register.
const LANES: usize = 16;
/// Bytes of one tile's block: 32 values of 16 rows.
const TILE_BLOCK_BYTES: usize = QK * LANES;

/// The instruction set a multiplication runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// `vpdpbusd` on 512-bit registers.
    Avx512Vnni,
    /// `vpmaddubsw`/`vpmaddwd` on 256-bit registers, for CPUs without VNNI.
    Avx2,
}

/// The fastest kernel this CPU runs, or `None` (callers keep candle's path).
/// `CAXTON_PROMPT_KERNEL=avx2` or `=off` picks a slower one, to measure what a CPU without
/// AVX-512 (or without AVX2) gets.
pub fn kernel() -> Option<Kernel> {
    static KERNEL: std::sync::OnceLock<Option<Kernel>> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(|| {
        let wanted = std::env::var("CAXTON_PROMPT_KERNEL").unwrap_or_default();
        let detected = detect();
        match (wanted.as_str(), detected) {
            ("off", _) => None,
            ("avx2", Some(_)) => Some(Kernel::Avx2),
            _ => detected,
        }
    })
}

fn detect() -> Option<Kernel> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
            return Some(Kernel::Avx512Vnni);
        }
        if has!("avx2") && has!("fma") {
            return Some(Kernel::Avx2);
        }
    }
    None
}

/// Prompt rows quantised to Q8_0 and interleaved 16 to a tile.
pub struct Activations {
    rows: usize,
    k: usize,
    /// `[tile][block][group of 4 values][lane][4]`, i8 values.
    qs: Vec<i8>,
    /// `[tile][block][lane]`: each row's block scale.
    scales: Vec<f32>,
    /// `[tile][block][lane]`: −128 × the block's sum of values, which cancels the +128 the
    /// VNNI kernel adds to the weights to make them unsigned.
    offsets: Vec<i32>,
}

impl Activations {
    /// Quantise `x`, `rows` rows of `k` values (`k` a multiple of 32), a tile per unit of
    /// work on candle's thread pool.
    pub fn new(kernel: Kernel, x: &[f32], rows: usize, k: usize) -> Self {
        debug_assert!(k.is_multiple_of(QK) && x.len() == rows * k);
        let kb = k / QK;
        let tiles = rows.div_ceil(LANES);
        let mut qs = vec![0i8; tiles * kb * TILE_BLOCK_BYTES];
        let mut scales = vec![0f32; tiles * kb * LANES];
        let mut offsets = vec![0i32; tiles * kb * LANES];
        let at = (
            qs.as_mut_ptr() as usize,
            scales.as_mut_ptr() as usize,
            offsets.as_mut_ptr() as usize,
        );
        candle_core::utils::barrier_pool().execute_chunked(tiles, |range| {
            for tile in range {
                let first = tile * LANES;
                let last = rows.min(first + LANES);
                // SAFETY: each tile's part of the three buffers (from `tile * kb` blocks on) is
                // written by the one unit that owns the tile, and lies inside them.
                let (qs, scales, offsets) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(
                            (at.0 as *mut i8).add(tile * kb * TILE_BLOCK_BYTES),
                            kb * TILE_BLOCK_BYTES,
                        ),
                        std::slice::from_raw_parts_mut(
                            (at.1 as *mut f32).add(tile * kb * LANES),
                            kb * LANES,
                        ),
                        std::slice::from_raw_parts_mut(
                            (at.2 as *mut i32).add(tile * kb * LANES),
                            kb * LANES,
                        ),
                    )
                };
                for (lane, row) in x[first * k..last * k].chunks_exact(k).enumerate() {
                    quantise_row(kernel, row, lane, qs, scales, offsets);
                }
            }
        });
        Self {
            rows,
            k,
            qs,
            scales,
            offsets,
        }
    }

    fn tiles(&self) -> usize {
        self.rows.div_ceil(LANES)
    }
}

/// One prompt row into lane `lane` of its tile, compiled for AVX2 so that the loops vectorise
/// (every kernel runs on a CPU with AVX2).
fn quantise_row(
    kernel: Kernel,
    row: &[f32],
    lane: usize,
    qs: &mut [i8],
    scales: &mut [f32],
    offsets: &mut [i32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let _ = kernel;
        // SAFETY: a `Kernel` exists only where AVX2 and FMA were detected.
        unsafe { quantise_row_avx2(row, lane, qs, scales, offsets) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, row, lane, qs, scales, offsets);
        unreachable!("no kernel is detected off x86_64");
    }
}

/// ggml's AVX2 Q8_0 quantiser (`quantize_row_q8_0`): scale from the block's largest magnitude,
/// values rounded to nearest (ties to even), then scattered 4 bytes at a time into the tile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn quantise_row_avx2(
    row: &[f32],
    lane: usize,
    qs: &mut [i8],
    scales: &mut [f32],
    offsets: &mut [i32],
) {
    use std::arch::x86_64::*;
    let sign_bit = _mm256_set1_ps(-0.0);
    for (b, block) in row.chunks_exact(QK).enumerate() {
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
        let d = _mm_cvtss_f32(m) / 127.0;
        let id = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
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
        // The packs work within 128-bit halves; the permutation puts the dwords back in order.
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(i[0], i[1]),
            _mm256_packs_epi32(i[2], i[3]),
        );
        let packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        let mut q = [0i32; QK / 4];
        // SAFETY: 32 bytes into [i32; 8].
        unsafe { _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, packed) };
        let dst = &mut qs[b * TILE_BLOCK_BYTES..][..TILE_BLOCK_BYTES];
        for (g, four) in q.iter().enumerate() {
            dst[g * LANES * 4 + lane * 4..][..4]
                .copy_from_slice(&four.to_ne_bytes().map(|b| b as i8));
        }
        scales[b * LANES + lane] = d;
        offsets[b * LANES + lane] = -128 * _mm_cvtsi128_si32(sum);
    }
}

/// Why a multiplication was refused.
#[derive(Debug, thiserror::Error)]
pub enum MatmulError {
    /// The weights or the output do not have the sizes the shapes say.
    #[error("Q8_0 matmul: {0}")]
    Shape(String),
    /// candle's own kernel failed.
    #[error("Q8_0 matmul: {0}")]
    Candle(#[from] candle_core::Error),
}

/// `out[r × n + c] = Σ_j x[r][j] · w[c][j]` for every row `r` of `acts` and every one of the `n`
/// rows `c` of `weights` (Q8_0 blocks, row-major, `acts`' width per row).
pub fn matmul(
    kernel: Kernel,
    weights: &[u8],
    n: usize,
    acts: &Activations,
    out: &mut [f32],
) -> Result<(), MatmulError> {
    let kb = acts.k / QK;
    let row_bytes = kb * BLOCK_BYTES;
    if weights.len() != n * row_bytes {
        return Err(MatmulError::Shape(format!(
            "{} weight bytes are not {n} rows of {} values",
            weights.len(),
            acts.k
        )));
    }
    if out.len() != acts.rows * n {
        return Err(MatmulError::Shape(format!(
            "output of {} values for {} × {n}",
            out.len(),
            acts.rows
        )));
    }
    let out_at = out.as_mut_ptr() as usize;
    let (rows_per_call, tiles_per_call) = match kernel {
        // Measured on SmolLM2's shapes (one core): 4 × 2 beat 2 × 4, 4 × 3, 3 × 3, 8 × 1, 6 × 2.
        Kernel::Avx512Vnni => (4, 2),
        // 16 ymm registers: 2 rows × 2 tiles × 2 halves of integer sums, plus inputs; measured
        // ahead of 4 × 1, 2 × 1, 1 × 2 and 3 × 1.
        Kernel::Avx2 => (2, 2),
    };
    let unit = |rows: std::ops::Range<usize>| {
        for t0 in (0..acts.tiles()).step_by(tiles_per_call) {
            let tiles = (acts.tiles() - t0).min(tiles_per_call);
            let mut c = rows.start;
            while c < rows.end {
                let cols = (rows.end - c).min(rows_per_call);
                let w = &weights[c * row_bytes..(c + cols) * row_bytes];
                let out = Out {
                    at: out_at as *mut f32,
                    n,
                    rows: acts.rows,
                    col: c,
                };
                // SAFETY: columns c..c + cols belong to this unit alone.
                unsafe { tile_dispatch(kernel, w, row_bytes, cols, acts, t0, tiles, out) };
                c += cols;
            }
        }
    };
    let units = n.div_ceil(UNIT_ROWS);
    candle_core::utils::barrier_pool().execute_chunked(units, |range| {
        unit(range.start * UNIT_ROWS..(range.end * UNIT_ROWS).min(n));
    });
    Ok(())
}

/// Weight rows a unit of parallel work covers.
const UNIT_ROWS: usize = 16;

/// `out = x · wᵀ` for `rows` rows of `x` with candle's row-by-row Q8_0 kernel (the one its
/// `QMatMul` uses when it does not repack), called directly: for one-row decode steps, where
/// going through `QMatMul` would make candle build its tiled copy of every matrix whose width is
/// a multiple of 256 (SmolLM2's down-projections, +27 MB) on the first step.
pub fn matmul_row_by_row(
    weights: &[u8],
    n: usize,
    x: &[f32],
    rows: usize,
    out: &mut [f32],
) -> Result<(), MatmulError> {
    use candle_core::quantized::k_quants::BlockQ8_0;
    let k = x.len() / rows.max(1);
    if rows == 0 || x.len() != rows * k || !k.is_multiple_of(QK) || out.len() != rows * n {
        return Err(MatmulError::Shape(format!(
            "{} inputs and {} outputs for {rows} rows and {n} weight rows",
            x.len(),
            out.len()
        )));
    }
    if weights.len() != n * k / QK * BLOCK_BYTES
        || !(weights.as_ptr() as usize).is_multiple_of(std::mem::align_of::<BlockQ8_0>())
    {
        return Err(MatmulError::Shape(format!(
            "{} weight bytes are not {n} aligned rows of {k} values",
            weights.len()
        )));
    }
    // SAFETY: `BlockQ8_0` is `repr(C)`, an f16 and 32 i8 in 34 bytes (candle asserts the size),
    // valid for any bytes; length and alignment were checked above.
    let blocks = unsafe {
        std::slice::from_raw_parts(
            weights.as_ptr() as *const BlockQ8_0,
            weights.len() / BLOCK_BYTES,
        )
    };
    Ok(candle_core::quantized::k_quants::matmul(
        (rows, k, n),
        x,
        blocks,
        out,
    )?)
}

/// Where a kernel call's products go: `out` of `matmul`, from column `col`.
#[derive(Clone, Copy)]
struct Out {
    at: *mut f32,
    n: usize,
    rows: usize,
    col: usize,
}

impl Out {
    /// The products of weight row `col + c` with tile `tile`'s rows (lanes past the last row
    /// are padding and dropped).
    ///
    /// # Safety
    /// Column `col + c` must be this caller's alone, and `at` must hold `rows × n` values.
    #[inline(always)]
    unsafe fn put(&self, c: usize, tile: usize, lanes: &[f32; LANES]) {
        let first = tile * LANES;
        for (lane, v) in lanes.iter().enumerate().take(self.rows - first) {
            // SAFETY: row first + lane < rows and column col + c < n, as the caller promises.
            unsafe { *self.at.add((first + lane) * self.n + self.col + c) = *v };
        }
    }
}

/// One kernel call: up to 4 weight rows against up to 2 tiles from `t0`.
///
/// # Safety
/// As `Out::put`, for every column from `out.col` to `out.col + cols`.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, a kernel's full context"
)]
unsafe fn tile_dispatch(
    kernel: Kernel,
    w: &[u8],
    row_bytes: usize,
    cols: usize,
    acts: &Activations,
    t0: usize,
    tiles: usize,
    out: Out,
) {
    macro_rules! dispatch {
        ($f:ident) => {
            match (cols, tiles) {
                (4, 2) => $f::<4, 2>(w, row_bytes, acts, t0, out),
                (4, _) => $f::<4, 1>(w, row_bytes, acts, t0, out),
                (3, 2) => $f::<3, 2>(w, row_bytes, acts, t0, out),
                (3, _) => $f::<3, 1>(w, row_bytes, acts, t0, out),
                (2, 2) => $f::<2, 2>(w, row_bytes, acts, t0, out),
                (2, _) => $f::<2, 1>(w, row_bytes, acts, t0, out),
                (_, 2) => $f::<1, 2>(w, row_bytes, acts, t0, out),
                (_, _) => $f::<1, 1>(w, row_bytes, acts, t0, out),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `kernel()` only names a kernel whose CPU features were detected; the shapes were
    // checked by `matmul`; the columns are the caller's.
    unsafe {
        match kernel {
            Kernel::Avx512Vnni => dispatch!(tile_avx512),
            Kernel::Avx2 => dispatch!(tile_avx2),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, w, row_bytes, cols, acts, t0, tiles, out);
        unreachable!("no kernel is detected off x86_64");
    }
}

/// A weight block's scale, as f32.
#[inline(always)]
fn weight_scale(w: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([w[at], w[at + 1]]).to_f32()
}

/// C weight rows × T tiles of 16 prompt rows, AVX-512 VNNI. `vpdpbusd` multiplies unsigned by
/// signed bytes, so each broadcast weight dword is flipped to unsigned (+128) and the tile's
/// precomputed offsets subtract the 128 × Σx that adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_avx512<const C: usize, const T: usize>(
    w: &[u8],
    row_bytes: usize,
    acts: &Activations,
    t0: usize,
    out: Out,
) {
    use std::arch::x86_64::*;
    let kb = acts.k / QK;
    let flip = _mm512_set1_epi8(0x80u8 as i8);
    let mut acc = [[_mm512_setzero_ps(); T]; C];
    for b in 0..kb {
        let at = |t: usize| ((t0 + t) * kb + b) * LANES;
        let mut isum = [[_mm512_setzero_si512(); T]; C];
        for t in 0..T {
            // SAFETY: tile `t0 + t` exists (the caller passes T ≤ tiles left).
            let offset =
                unsafe { _mm512_loadu_si512(acts.offsets.as_ptr().add(at(t)) as *const _) };
            for row in isum.iter_mut() {
                row[t] = offset;
            }
        }
        for g in 0..QK / 4 {
            let mut x = [_mm512_setzero_si512(); T];
            for (t, x) in x.iter_mut().enumerate() {
                // SAFETY: as above; 64 bytes of the tile's block from group g.
                *x = unsafe {
                    _mm512_loadu_si512(acts.qs.as_ptr().add(at(t) * QK + g * LANES * 4) as *const _)
                };
            }
            for (c, row) in isum.iter_mut().enumerate() {
                let p = c * row_bytes + b * BLOCK_BYTES + 2 + g * 4;
                // SAFETY: row c < C of `w` has kb blocks; 4 bytes of block b's values.
                let w4 = unsafe { std::ptr::read_unaligned(w.as_ptr().add(p) as *const i32) };
                let wv = _mm512_xor_si512(_mm512_set1_epi32(w4), flip);
                for t in 0..T {
                    row[t] = _mm512_dpbusd_epi32(row[t], wv, x[t]);
                }
            }
        }
        let mut dx = [_mm512_setzero_ps(); T];
        for (t, dx) in dx.iter_mut().enumerate() {
            // SAFETY: as above.
            *dx = unsafe { _mm512_loadu_ps(acts.scales.as_ptr().add(at(t))) };
        }
        for c in 0..C {
            let dw = _mm512_set1_ps(weight_scale(w, c * row_bytes + b * BLOCK_BYTES));
            for t in 0..T {
                let scale = _mm512_mul_ps(dx[t], dw);
                acc[c][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c][t]), scale, acc[c][t]);
            }
        }
    }
    for (c, row) in acc.iter().enumerate() {
        for (t, acc) in row.iter().enumerate() {
            let mut lanes = [0f32; LANES];
            // SAFETY: 16 f32 into a [f32; 16]; the columns are the caller's.
            unsafe {
                _mm512_storeu_ps(lanes.as_mut_ptr(), *acc);
                out.put(c, t0 + t, &lanes);
            }
        }
    }
}

/// C weight rows × T tiles of 16 prompt rows, AVX2, as two halves of 8 rows. `vpmaddubsw`
/// multiplies unsigned by signed bytes into saturating i16 pairs, so the weights' signs move
/// onto the prompt values (|w| × ±x stays within i16), and `vpmaddwd` widens the pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const C: usize, const T: usize>(
    w: &[u8],
    row_bytes: usize,
    acts: &Activations,
    t0: usize,
    out: Out,
) {
    use std::arch::x86_64::*;
    let kb = acts.k / QK;
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[[_mm256_setzero_ps(); 2]; T]; C];
    for b in 0..kb {
        let at = |t: usize| ((t0 + t) * kb + b) * LANES;
        let mut isum = [[[_mm256_setzero_si256(); 2]; T]; C];
        for g in 0..QK / 4 {
            let mut x = [[_mm256_setzero_si256(); 2]; T];
            for (t, x) in x.iter_mut().enumerate() {
                for (h, x) in x.iter_mut().enumerate() {
                    // SAFETY: tile `t0 + t` exists; 32 bytes of its block's group g.
                    *x = unsafe {
                        _mm256_loadu_si256(
                            acts.qs.as_ptr().add(at(t) * QK + g * LANES * 4 + h * 32) as *const _,
                        )
                    };
                }
            }
            for (c, row) in isum.iter_mut().enumerate() {
                let p = c * row_bytes + b * BLOCK_BYTES + 2 + g * 4;
                // SAFETY: row c < C of `w` has kb blocks; 4 bytes of block b's values.
                let w4 = unsafe { std::ptr::read_unaligned(w.as_ptr().add(p) as *const i32) };
                let wv = _mm256_set1_epi32(w4);
                let wabs = _mm256_abs_epi8(wv);
                for t in 0..T {
                    for h in 0..2 {
                        let signed = _mm256_sign_epi8(x[t][h], wv);
                        let pairs = _mm256_maddubs_epi16(wabs, signed);
                        row[t][h] = _mm256_add_epi32(row[t][h], _mm256_madd_epi16(pairs, ones));
                    }
                }
            }
        }
        for c in 0..C {
            let dw = _mm256_set1_ps(weight_scale(w, c * row_bytes + b * BLOCK_BYTES));
            for t in 0..T {
                for h in 0..2 {
                    // SAFETY: tile `t0 + t` exists; 8 of its 16 scales.
                    let dx = unsafe { _mm256_loadu_ps(acts.scales.as_ptr().add(at(t) + h * 8)) };
                    acc[c][t][h] = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(isum[c][t][h]),
                        _mm256_mul_ps(dx, dw),
                        acc[c][t][h],
                    );
                }
            }
        }
    }
    for (c, row) in acc.iter().enumerate() {
        for (t, [low, high]) in row.iter().enumerate() {
            let mut lanes = [0f32; LANES];
            // SAFETY: 2 × 8 f32 into a [f32; 16]; the columns are the caller's.
            unsafe {
                _mm256_storeu_ps(lanes.as_mut_ptr(), *low);
                _mm256_storeu_ps(lanes.as_mut_ptr().add(8), *high);
                out.put(c, t0 + t, &lanes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    /// Kernels this CPU can run, so each is checked where it exists.
    fn kernels() -> Vec<Kernel> {
        let mut found = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
                found.push(Kernel::Avx512Vnni);
            }
            if has!("avx2") && has!("fma") {
                found.push(Kernel::Avx2);
            }
        }
        found
    }

    /// Deterministic values in [-1, 1) with a few larger outliers, as activations have.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
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

    struct Case {
        weights: QTensor,
        x: Vec<f32>,
        m: usize,
        k: usize,
        n: usize,
    }

    fn case(m: usize, k: usize, n: usize) -> Case {
        let w = Tensor::from_vec(values(n * k, 7), (n, k), &Device::Cpu).unwrap();
        Case {
            weights: QTensor::quantize(&w, GgmlDType::Q8_0).unwrap(),
            x: values(m * k, 11),
            m,
            k,
            n,
        }
    }

    fn ours(kernel: Kernel, c: &Case) -> Vec<f32> {
        let acts = Activations::new(kernel, &c.x, c.m, c.k);
        let mut out = vec![f32::NAN; c.m * c.n];
        matmul(kernel, &c.weights.data().unwrap(), c.n, &acts, &mut out).unwrap();
        out
    }

    /// Largest difference relative to the largest magnitude of `reference`.
    fn relative_error(a: &[f32], reference: &[f32]) -> f32 {
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(reference)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        diff / scale
    }

    // Shapes with a partial tile (37 rows), tile pairs and a lone tile, weight rows not a
    // multiple of the kernels' 4 or 2, an odd number of blocks, and SmolLM2's own widths.
    const SHAPES: [(usize, usize, usize); 4] =
        [(37, 96, 50), (103, 576, 192), (16, 1536, 24), (2, 64, 7)];

    #[test]
    fn products_match_candles_quantised_matmul() {
        assert!(!kernels().is_empty() || cfg!(not(target_arch = "x86_64")));
        for kernel in kernels() {
            for (m, k, n) in SHAPES {
                let c = case(m, k, n);
                let x = Tensor::from_vec(c.x.clone(), (m, k), &Device::Cpu).unwrap();
                let candle = QMatMul::from_qtensor(case(m, k, n).weights)
                    .unwrap()
                    .forward(&x)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let err = relative_error(&ours(kernel, &c), &candle);
                // Both quantise the prompt rows to Q8_0; candle rounds the row scales to f16,
                // which is the only difference.
                assert!(err < 2e-3, "{kernel:?} {m}×{k}×{n}: {err}");
            }
        }
    }

    #[test]
    fn products_match_the_dequantised_f32_matmul() {
        for kernel in kernels() {
            for (m, k, n) in SHAPES {
                let c = case(m, k, n);
                let w = c.weights.dequantize(&Device::Cpu).unwrap();
                let x = Tensor::from_vec(c.x.clone(), (m, k), &Device::Cpu).unwrap();
                let exact = x
                    .matmul(&w.t().unwrap())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let err = relative_error(&ours(kernel, &c), &exact);
                // What 8-bit prompt values cost: well under one percent of the largest product.
                assert!(err < 1e-2, "{kernel:?} {m}×{k}×{n}: {err}");
            }
        }
    }

    #[test]
    fn all_zero_rows_give_zero_products() {
        for kernel in kernels() {
            let mut c = case(20, 64, 9);
            c.x[5 * 64..6 * 64].fill(0.0);
            let out = ours(kernel, &c);
            assert!(out[5 * 9..6 * 9].iter().all(|v| *v == 0.0), "{kernel:?}");
            assert!(out.iter().all(|v| v.is_finite()), "{kernel:?}");
        }
    }

    #[test]
    fn one_row_products_match_candle_and_the_f32_matmul() {
        for (k, n) in [(576, 40), (1536, 16)] {
            let c = case(1, k, n);
            let x = Tensor::from_vec(c.x.clone(), (1, k), &Device::Cpu).unwrap();
            let product = |w: &Tensor| {
                x.matmul(&w.t().unwrap())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            };
            let exact = product(&c.weights.dequantize(&Device::Cpu).unwrap());
            let candle = QMatMul::from_qtensor(case(1, k, n).weights)
                .unwrap()
                .forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let mut out = vec![f32::NAN; n];
            matmul_row_by_row(&c.weights.data().unwrap(), n, &c.x, 1, &mut out).unwrap();
            let err = relative_error(&out, &exact);
            // A single row's few products make a small yardstick: 8-bit rows cost about 1% of
            // it here, the same for the prompt kernels.
            assert!(err < 2e-2, "1×{k}×{n}: {err}");
            for kernel in kernels() {
                let err = relative_error(&out, &ours(kernel, &c));
                assert!(err < 2e-3, "{kernel:?} 1×{k}×{n}: {err}");
            }
            if k == 576 {
                // The very kernel QMatMul runs for widths that are not a multiple of 256 (for
                // those it repacks and quantises the row per 256 values instead of per 32).
                assert_eq!(out, candle);
            }
        }
    }

    #[test]
    fn weights_of_the_wrong_size_are_refused() {
        let Some(kernel) = kernels().first().copied() else {
            return;
        };
        let c = case(4, 64, 3);
        let acts = Activations::new(kernel, &c.x, 4, 64);
        let data = c.weights.data().unwrap();
        let mut out = vec![0f32; 4 * 3];
        assert!(matmul(kernel, &data[..data.len() - 1], 3, &acts, &mut out).is_err());
        assert!(matmul(kernel, &data, 2, &acts, &mut out).is_err());
        assert!(matmul(kernel, &data, 3, &acts, &mut out[..11]).is_err());
    }
}
