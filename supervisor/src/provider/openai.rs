//! OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp server, LM Studio).

use std::path::PathBuf;
use std::time::Duration;

use caxton_ipc_protocol::{ChatRole, CompletionResponse};
use serde::Deserialize;
use serde_json::json;

use super::http::{self, RetryPolicy};
use super::{Provider, ProviderError, ProviderRequest};
use crate::config::{ProviderConfig, parse_duration};

/// A client for one configured OpenAI-compatible server.
pub struct OpenAiProvider {
    name: String,
    url: String,
    model: String,
    key: KeySource,
    timeout: Duration,
    retry: RetryPolicy,
    http: reqwest::Client,
}

enum KeySource {
    None,
    Env(String),
    File(PathBuf),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries after the first attempt on 429 and 5xx, unless configured otherwise.
pub const DEFAULT_RETRIES: u32 = 2;

impl OpenAiProvider {
    /// Build the client; nothing is sent until the first request.
    pub fn new(name: &str, cfg: &ProviderConfig) -> Result<Self, ProviderError> {
        let not_configured =
            |detail: String| ProviderError::NotConfigured(format!("[providers.{name}]: {detail}"));
        let timeout = match &cfg.timeout {
            Some(t) => parse_duration("timeout", t).map_err(|e| not_configured(e.to_string()))?,
            None => Duration::from_secs(120),
        };
        let base_url = cfg
            .base_url
            .as_deref()
            .ok_or_else(|| not_configured("base_url is required".into()))?;
        let model = cfg
            .model
            .clone()
            .ok_or_else(|| not_configured("model is required".into()))?;
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(not_configured(format!(
                "base_url {base_url:?} is not an http(s) URL"
            )));
        }
        let key = match (&cfg.api_key_env, &cfg.api_key_file) {
            (Some(_), Some(_)) => {
                return Err(not_configured(
                    "set api_key_env or api_key_file, not both".into(),
                ));
            }
            (Some(var), None) => KeySource::Env(var.clone()),
            (None, Some(path)) => KeySource::File(path.clone()),
            (None, None) => KeySource::None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| not_configured(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            url: format!("{base}/chat/completions"),
            model,
            key,
            timeout,
            retry: RetryPolicy::with_retries(cfg.max_retries.unwrap_or(DEFAULT_RETRIES)),
            http,
        })
    }

    fn api_key(&self) -> Result<Option<String>, ProviderError> {
        let missing = |detail: String| ProviderError::Credentials {
            provider: self.name.clone(),
            detail,
        };
        match &self.key {
            KeySource::None => Ok(None),
            KeySource::Env(var) => std::env::var(var)
                .map(|k| Some(k.trim().to_owned()))
                .map_err(|_| {
                    missing(format!(
                        "api_key_env names {var}, which is not set in the daemon's environment"
                    ))
                }),
            KeySource::File(path) => std::fs::read_to_string(path)
                .map(|k| Some(k.trim().to_owned()))
                .map_err(|e| missing(format!("cannot read api_key_file {}: {e}", path.display()))),
        }
    }

    fn key_hint(&self) -> String {
        match &self.key {
            KeySource::None => format!("[providers.{}] (no API key is configured)", self.name),
            KeySource::Env(var) => format!("the key in {var}"),
            KeySource::File(path) => format!("the key in {}", path.display()),
        }
    }
}

#[derive(Deserialize)]
struct ChatCompletion {
    model: Option<String>,
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: AssistantMessage,
}

#[derive(Deserialize)]
struct AssistantMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}

fn role(role: ChatRole) -> &'static str {
    match role {
        ChatRole::System => "system",
        ChatRole::User => "user",
        ChatRole::Assistant => "assistant",
    }
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn default_model(&self) -> &str {
        &self.model
    }

    async fn complete(
        &self,
        request: ProviderRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        let model = request.model.clone().unwrap_or_else(|| self.model.clone());
        let messages: Vec<_> = request
            .messages
            .iter()
            .map(|m| json!({"role": role(m.role), "content": m.content}))
            .collect();
        let mut body = json!({"model": model, "messages": messages});
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(n) = request.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if let Some(p) = request.top_p {
            body["top_p"] = json!(p);
        }
        let key = self.api_key()?;
        let make = || {
            let request = self.http.post(&self.url).json(&body);
            match &key {
                Some(k) => request.bearer_auth(k),
                None => request,
            }
        };
        let classify = |status, text: &str, attempts| {
            http::classify_status(&self.url, &model, &self.key_hint(), status, text, attempts)
        };
        let response =
            http::send_with_retries(&self.url, self.timeout, &self.retry, make, classify).await?;
        let text = response
            .text()
            .await
            .map_err(|e| http::transport_error(&self.url, self.timeout, e))?;
        let parsed: ChatCompletion =
            serde_json::from_str(&text).map_err(|e| ProviderError::Malformed {
                url: self.url.clone(),
                detail: e.to_string(),
            })?;
        let Some(choice) = parsed.choices.into_iter().next() else {
            return Err(ProviderError::Malformed {
                url: self.url.clone(),
                detail: "no choices in the answer".into(),
            });
        };
        let usage = parsed.usage.unwrap_or(Usage {
            prompt_tokens: None,
            completion_tokens: None,
        });
        Ok(CompletionResponse {
            content: choice.message.content.unwrap_or_default(),
            model: parsed.model.unwrap_or(model),
            prompt_tokens: usage.prompt_tokens.unwrap_or(0),
            completion_tokens: usage.completion_tokens.unwrap_or(0),
        })
    }
}
