//! LLM providers. A worker never talks to a model: it asks the supervisor, which picks the
//! provider named by the agent's `[llm]` table (or the configured default) and calls it.
//!
//! The [`Provider`] trait is what every backend implements (OpenAI-compatible servers, Anthropic,
//! the local model). Providers speak their own types ([`Message`], [`Completion`], ...);
//! `convert.rs` alone translates them to and from the worker protocol, so adding what a
//! provider needs never forces a protocol version bump.

mod anthropic;
mod conversation;
mod convert;
mod http;
mod local;
mod openai;
#[cfg(test)]
mod tool_call_tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::agent::LlmSettings;
use crate::config::{Config, ProviderKind};
pub use crate::worker_pool::DeltaSink;
pub use anthropic::AnthropicProvider;
pub use conversation::{Completion, FinishReason, Message, ToolCall, ToolDefinition, Usage};
pub use local::LocalProvider;
pub use openai::OpenAiProvider;

/// One completion as a provider receives it: the conversation plus the agent's settings.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<ToolDefinition>,
    /// Model override; the provider's configured model otherwise.
    pub model: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Answer length cap.
    pub max_tokens: Option<u32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Sampling seed.
    pub seed: Option<u64>,
    /// The agent's `[llm] tool_choice`; the provider's own setting, else `auto`, applies when
    /// it is `None`. Sent only when tools are offered.
    pub tool_choice: Option<ToolChoice>,
}

pub use caxton_api_contract::agents::ToolChoice;

/// Why a provider gave no completion. Messages say what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// No provider is configured or the named one does not exist.
    #[error("{0}")]
    NotConfigured(String),
    /// The request cannot be put to a model as it stands (a tool schema or earlier tool call
    /// that is not JSON, a tool result that answers no call).
    #[error("{0}")]
    InvalidRequest(String),
    /// The server could not be reached.
    #[error("LLM server unreachable at {url}: {detail}")]
    Unreachable {
        /// Where we tried.
        url: String,
        /// The transport error.
        detail: String,
    },
    /// The server did not answer in time.
    #[error("LLM server at {url} did not answer within {after:?}")]
    Timeout {
        /// Where we tried.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// The key was refused.
    #[error("LLM server at {url} refused the API key (HTTP {status}): check {key_hint}")]
    Unauthorized {
        /// Where we tried.
        url: String,
        /// 401 or 403.
        status: u16,
        /// Where the key came from.
        key_hint: String,
    },
    /// The server kept answering 429.
    #[error(
        "LLM server at {url} is rate-limiting requests (HTTP 429, {attempts} attempts): {message}"
    )]
    RateLimited {
        /// Where we tried.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The server's message.
        message: String,
    },
    /// The model name is not known to the server.
    #[error(
        "LLM server at {url} does not know model {model:?}: {message}; check [llm] model or the provider's model"
    )]
    UnknownModel {
        /// Where we tried.
        url: String,
        /// The model asked for.
        model: String,
        /// The server's message.
        message: String,
    },
    /// The prompt does not fit the model's context.
    #[error(
        "context too long for the model at {url}: {message}; shorten the request or lower max_tokens"
    )]
    ContextTooLong {
        /// Where we tried.
        url: String,
        /// The server's message.
        message: String,
    },
    /// Any other non-success status.
    #[error("LLM server at {url} answered HTTP {status}: {message}")]
    Status {
        /// Where we tried.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's error message, shortened.
        message: String,
    },
    /// The server reported an error in the middle of a streamed answer.
    #[error("LLM server at {url} failed mid-answer: {message}")]
    StreamFailed {
        /// Where we tried.
        url: String,
        /// The server's message.
        message: String,
    },
    /// The answer was not what the protocol promises.
    #[error("LLM server at {url} sent a malformed answer: {detail}")]
    Malformed {
        /// Where we tried.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// The local model could not load or answer.
    #[error("provider {provider:?}: {detail}")]
    Local {
        /// The provider's name.
        provider: String,
        /// What went wrong.
        detail: String,
    },
    /// The provider's credentials could not be read.
    #[error("provider {provider:?}: {detail}")]
    Credentials {
        /// The provider's name.
        provider: String,
        /// What is missing.
        detail: String,
    },
}

/// A backend that produces chat completions.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// The configured name of this provider.
    fn name(&self) -> &str;
    /// Who serves it, as the OpenTelemetry GenAI conventions' `gen_ai.provider.name` names it.
    fn system(&self) -> &'static str;
    /// The model used when a request names none.
    fn default_model(&self) -> &str;
    /// Produce one completion.
    /// With `deltas`, the completion's text is also sent there as it is generated.
    async fn complete(
        &self,
        request: ProviderRequest,
        deltas: Option<DeltaSink>,
    ) -> Result<Completion, ProviderError>;
}

/// The configured providers, by name.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<String, Arc<dyn Provider>>,
    default: Option<String>,
    /// Local models configured with `preload = true`.
    preload: Vec<Arc<LocalProvider>>,
}

impl Providers {
    /// Build every provider of the configuration. Credentials are read lazily, per request, so a
    /// missing key fails the requests that need it rather than the daemon.
    pub fn from_config(config: &Config) -> Result<Self, ProviderError> {
        let mut by_name: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        let mut preload = Vec::new();
        for (name, cfg) in &config.providers {
            let provider: Arc<dyn Provider> = match cfg.kind {
                ProviderKind::Openai => Arc::new(OpenAiProvider::new(name, cfg)?),
                ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(name, cfg)?),
                ProviderKind::Local => {
                    let local = Arc::new(LocalProvider::new(name, cfg, config));
                    if cfg.preload == Some(true) {
                        preload.push(local.clone());
                    }
                    local
                }
            };
            by_name.insert(name.clone(), provider);
        }
        Ok(Self {
            by_name,
            default: config.default_provider.clone(),
            preload,
        })
    }

    /// Load the models configured with `preload = true`; failures are logged, and the requests
    /// that need the model report them.
    pub async fn preload(&self) {
        for local in &self.preload {
            if let Err(e) = local.preload().await {
                tracing::error!(provider = local.name(), error = %e, "local model preload failed");
            }
        }
    }

    /// Register a provider by hand (used by tests and embedders).
    pub fn insert(&mut self, provider: Arc<dyn Provider>, make_default: bool) {
        if make_default {
            self.default = Some(provider.name().to_owned());
        }
        self.by_name.insert(provider.name().to_owned(), provider);
    }

    /// Names of the configured providers.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// Whether a provider of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The provider an agent with these settings uses.
    pub fn resolve(&self, llm: &LlmSettings) -> Result<Arc<dyn Provider>, ProviderError> {
        let name = match (&llm.provider, &self.default) {
            (Some(name), _) => name,
            (None, Some(default)) => default,
            (None, None) => {
                return Err(ProviderError::NotConfigured(if self.by_name.is_empty() {
                    "no LLM provider is configured: add a [providers.NAME] table to the Caxton config file".into()
                } else {
                    format!(
                        "the agent names no [llm] provider and no [defaults] provider is set; configured: {}",
                        self.names().join(", ")
                    )
                }));
            }
        };
        self.by_name.get(name).cloned().ok_or_else(|| {
            ProviderError::NotConfigured(format!(
                "unknown LLM provider {name:?}; configured: {}",
                if self.by_name.is_empty() {
                    "none".into()
                } else {
                    self.names().join(", ")
                }
            ))
        })
    }
}
