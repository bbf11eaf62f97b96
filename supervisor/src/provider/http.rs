//! What the HTTP providers share: sending with retries (exponential backoff with full jitter on
//! 429 and 5xx, honouring `Retry-After`, never on other 4xx) and turning transport failures and
//! error bodies into messages a user can act on.

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;

use super::{DeltaSink, ProviderError, ToolChoice};
use crate::config::{ProviderConfig, parse_duration};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries after the first attempt on 429 and 5xx, unless configured otherwise.
pub const DEFAULT_RETRIES: u32 = 2;

enum KeySource {
    None,
    Env(String),
    File(PathBuf),
}

/// One configured HTTP server: URL, model, credentials, timeouts and retries.
pub struct Endpoint {
    /// The provider's configured name.
    pub name: String,
    /// The full URL requests go to.
    pub url: String,
    /// Model used when the agent names none.
    pub model: String,
    /// `tool_choice` when the agent sets none.
    pub tool_choice: ToolChoice,
    key: KeySource,
    timeout: Duration,
    retry: RetryPolicy,
    client: reqwest::Client,
}

impl Endpoint {
    /// Validate `[providers.NAME]` and build the client; `path` is appended to `base_url`.
    pub fn new(name: &str, cfg: &ProviderConfig, path: &str) -> Result<Self, ProviderError> {
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
        // The timeout bounds connect + response headers of each attempt; a stream that has
        // started is bounded by the worker's deadline instead.
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| not_configured(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            url: format!("{base}{path}"),
            model,
            tool_choice: cfg.tool_choice.unwrap_or_default(),
            key,
            timeout,
            retry: RetryPolicy::with_retries(cfg.max_retries.unwrap_or(DEFAULT_RETRIES)),
            client,
        })
    }

    /// The API key, read per request so a rotated key is picked up without a restart.
    pub fn api_key(&self) -> Result<Option<String>, ProviderError> {
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

    /// POST `body` with the headers `auth` adds for the key, retrying per policy; the response
    /// is successful, or the error says why not.
    pub async fn post(
        &self,
        body: &serde_json::Value,
        model: &str,
        auth: impl Fn(reqwest::RequestBuilder, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        let key = self.api_key()?;
        // The model call's span continues at the provider when it traces too.
        let trace = crate::telemetry::trace_headers();
        let make = || {
            let mut request = self.client.post(&self.url).timeout(self.timeout).json(body);
            for (name, value) in &trace {
                request = request.header(name.as_str(), value.as_str());
            }
            match &key {
                Some(k) => auth(request, k),
                None => request,
            }
        };
        let classify = |status, text: &str, attempts| {
            classify_status(&self.url, model, &self.key_hint(), status, text, attempts)
        };
        send_with_retries(&self.url, self.timeout, &self.retry, make, classify).await
    }

    /// Read a whole successful response body.
    pub async fn text(&self, response: reqwest::Response) -> Result<String, ProviderError> {
        response
            .text()
            .await
            .map_err(|e| transport_error(&self.url, self.timeout, e))
    }

    /// Parse a JSON answer, naming the server when it is not what the protocol promises.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, text: &str) -> Result<T, ProviderError> {
        serde_json::from_str(text).map_err(|e| self.malformed(e.to_string()))
    }

    /// A malformed-answer error for this server.
    pub fn malformed(&self, detail: String) -> ProviderError {
        ProviderError::Malformed {
            url: self.url.clone(),
            detail,
        }
    }

    /// Feed each server-sent event's data to `on_event` until the stream ends or it returns
    /// `Ok(false)`.
    pub async fn events(
        &self,
        response: reqwest::Response,
        mut on_event: impl FnMut(&str, &str) -> Result<bool, ProviderError>,
    ) -> Result<(), ProviderError> {
        use eventsource_stream::Eventsource;
        let mut events = response.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| self.malformed(format!("event stream: {e}")))?;
            if !on_event(&event.event, &event.data)? {
                break;
            }
        }
        Ok(())
    }
}

/// For `#[serde(default, deserialize_with = "...")]`: servers write an absent list or object
/// as `null` as often as they leave it out (llama.cpp streams `"tool_calls": null`), and both
/// mean the default.
pub fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// For `#[serde(default, deserialize_with = "...")]` on a field read only to be reported (a
/// finish reason): anything but a string counts as not said, so an odd value there never turns
/// an otherwise good answer into a malformed one.
pub fn string_or_none<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

/// Send a piece of streamed text on, if anyone listens.
pub fn forward(deltas: Option<&DeltaSink>, text: &str) {
    if let Some(sink) = deltas
        && !text.is_empty()
    {
        let _ = sink.send(text.to_owned());
    }
}

/// How often and how patiently to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time.
    pub base: Duration,
    /// Longest backoff.
    pub cap: Duration,
    /// A `Retry-After` longer than this is not waited for; the error is returned instead.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// `retries` retries after the first attempt, with the default timings.
    pub fn with_retries(retries: u32) -> Self {
        Self {
            max_attempts: retries + 1,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }

    /// Full jitter: uniformly random in [0, min(cap, base × 2^retry)].
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << retry.min(16))
            .min(self.cap);
        let nanos = ceiling.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random_u64() % (nanos + 1))
    }
}

/// A random number from the standard library's per-process random hasher keys; jitter needs no
/// more than that, and it saves a dependency.
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Send the request `make` builds, retrying per `policy`. Returns the first successful response;
/// any other outcome becomes a `ProviderError` through `classify(status, body, attempts)`.
pub async fn send_with_retries(
    url: &str,
    timeout: Duration,
    policy: &RetryPolicy,
    make: impl Fn() -> reqwest::RequestBuilder,
    classify: impl Fn(StatusCode, &str, u32) -> ProviderError,
) -> Result<reqwest::Response, ProviderError> {
    let mut attempt = 1;
    loop {
        let response = make()
            .send()
            .await
            .map_err(|e| transport_error(url, timeout, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if retryable(status) && attempt < policy.max_attempts {
            let delay = match retry_after(response.headers()) {
                Some(d) if d > policy.max_retry_after => {
                    let body = response.text().await.unwrap_or_default();
                    return Err(classify(status, &body, attempt));
                }
                Some(d) => d,
                None => policy.backoff(attempt - 1),
            };
            tracing::warn!(
                url,
                status = status.as_u16(),
                attempt,
                delay_ms = delay.as_millis() as u64,
                "LLM server asked to retry"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
            continue;
        }
        let body = response
            .text()
            .await
            .map_err(|e| transport_error(url, timeout, e))?;
        return Err(classify(status, &body, attempt));
    }
}

/// A timeout or an unreachable server, with reqwest's cause chain (its top-level message is
/// generic).
pub fn transport_error(url: &str, timeout: Duration, e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        return ProviderError::Timeout {
            url: url.to_owned(),
            after: timeout,
        };
    }
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    ProviderError::Unreachable {
        url: url.to_owned(),
        detail,
    }
}

/// Longest server error text passed on to the user.
const MAX_ERROR_TEXT: usize = 300;

/// The server's own message if it sent the usual `{"error":{"message":..}}`, else the body,
/// shortened.
pub fn error_text(body: &str) -> String {
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

/// The machine-readable error code of an error body (`error.code` or `error.type`).
pub fn error_code(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.pointer("/error/code")
        .or_else(|| v.pointer("/error/type"))
        .and_then(|c| c.as_str())
        .map(str::to_owned)
}

/// Classify an error answer the way both HTTP providers' servers phrase them.
pub fn classify_status(
    url: &str,
    model: &str,
    key_hint: &str,
    status: StatusCode,
    body: &str,
    attempts: u32,
) -> ProviderError {
    let message = error_text(body);
    let code = error_code(body).unwrap_or_default();
    let lower = message.to_ascii_lowercase();
    let url = url.to_owned();
    match status.as_u16() {
        401 | 403 => ProviderError::Unauthorized {
            url,
            status: status.as_u16(),
            key_hint: key_hint.to_owned(),
        },
        429 => ProviderError::RateLimited {
            url,
            attempts,
            message,
        },
        404 if code == "model_not_found" || lower.contains("model") => {
            ProviderError::UnknownModel {
                url,
                model: model.to_owned(),
                message,
            }
        }
        400 | 413 | 422
            if code == "context_length_exceeded"
                || lower.contains("context length")
                || lower.contains("context window")
                || lower.contains("maximum context")
                || lower.contains("prompt is too long")
                || lower.contains("too many tokens") =>
        {
            ProviderError::ContextTooLong { url, message }
        }
        s if s >= 500 && attempts > 1 => ProviderError::Status {
            url,
            status: s,
            message: format!("{message} (after {attempts} attempts)"),
        },
        s => ProviderError::Status {
            url,
            status: s,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let p = RetryPolicy::with_retries(5);
        for retry in 0..10 {
            let ceiling = p.base.saturating_mul(1 << retry).min(p.cap);
            assert!(p.backoff(retry) <= ceiling);
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        h.insert(
            reqwest::header::RETRY_AFTER,
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = classify_status(
            "u",
            "gpt-x",
            "the key in K",
            StatusCode::NOT_FOUND,
            r#"{"error":{"message":"The model `gpt-x` does not exist","code":"model_not_found"}}"#,
            1,
        );
        assert!(
            e.to_string().contains("does not know model \"gpt-x\""),
            "{e}"
        );
        let e = classify_status(
            "u",
            "m",
            "k",
            StatusCode::BAD_REQUEST,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#,
            1,
        );
        assert!(e.to_string().contains("context too long"), "{e}");
        let e = classify_status(
            "u",
            "m",
            "k",
            StatusCode::BAD_REQUEST,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#,
            1,
        );
        assert!(e.to_string().contains("context too long"), "{e}");
    }
}
