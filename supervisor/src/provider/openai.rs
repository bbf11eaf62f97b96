//! OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp server, LM Studio).

use std::path::PathBuf;
use std::time::Duration;

use caxton_ipc_protocol::{ChatRole, CompletionResponse};
use serde::Deserialize;
use serde_json::json;

use super::{Provider, ProviderError, ProviderRequest};
use crate::config::{ProviderConfig, parse_duration};

/// A client for one configured OpenAI-compatible server.
pub struct OpenAiProvider {
    name: String,
    url: String,
    model: String,
    key: KeySource,
    timeout: Duration,
    http: reqwest::Client,
}

enum KeySource {
    None,
    Env(String),
    File(PathBuf),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Longest server error text we pass on to the user.
const MAX_ERROR_TEXT: usize = 300;

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
        let mut http_request = self.http.post(&self.url).json(&body);
        if let Some(key) = self.api_key()? {
            http_request = http_request.bearer_auth(key);
        }
        let response = http_request
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.transport_error(e))?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(ProviderError::Unauthorized {
                url: self.url.clone(),
                status: status.as_u16(),
                key_hint: self.key_hint(),
            });
        }
        if !status.is_success() {
            return Err(ProviderError::Status {
                url: self.url.clone(),
                status: status.as_u16(),
                message: error_text(&text),
            });
        }
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

impl OpenAiProvider {
    fn transport_error(&self, e: reqwest::Error) -> ProviderError {
        if e.is_timeout() {
            ProviderError::Timeout {
                url: self.url.clone(),
                after: self.timeout,
            }
        } else {
            // reqwest's top-level message is generic; the cause chain says what happened.
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail = format!("{detail}: {s}");
                source = s.source();
            }
            ProviderError::Unreachable {
                url: self.url.clone(),
                detail,
            }
        }
    }
}

/// The server's own error message if it sent the usual `{"error":{"message":..}}`, else the text.
fn error_text(body: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.trim().to_owned());
    if message.is_empty() {
        return "(empty body)".into();
    }
    let mut cut = message.chars().take(MAX_ERROR_TEXT).collect::<String>();
    if cut.len() < message.len() {
        cut.push('…');
    }
    cut
}
