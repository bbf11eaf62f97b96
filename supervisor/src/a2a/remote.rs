//! Calls to A2A agents on other servers, for the `ask_agent` tool of an agent whose file lists
//! them (`[[delegation.remote]]`). The supervisor makes the HTTP calls, never the worker.
//!
//! A call reaches only the host and port of the card URL the agent file names, through the
//! same address checks as a tool's HTTP (`caxton_tool_host::http_access`): a loopback or
//! private address only when the file writes it literally, redirects checked, no proxy. The
//! card's endpoint must be on that host and port too. The message carries the asking tree's
//! ancestry, depth limit, deadline and remaining budget (`super::Delegation`), and the W3C
//! `traceparent` of the asking span. The call ends by the asking execution's deadline; when
//! that execution is stopped first (killed, its caller gone), the remote task is canceled.
//! Every failure (card, transport, token, malformed answers, an answer about a task that was
//! never asked for) is a [`RemoteError`] naming the remote and the reason; the tool turns it into
//! an error the asking model reads.

use std::time::{Duration, Instant};

use a2a_types::{AgentCard, Part};
use caxton_api_contract::agents::RemoteAgent;
use caxton_tool_host::http_access::{HostAllowlist, HttpAccess};
use reqwest::Url;
use serde_json::{Value, json};

use super::{DELEGATION_EXTENSION, DELEGATION_KEY, USAGE_KEY};
use crate::delegation::Lineage;

/// Largest card read.
const MAX_CARD_BYTES: usize = 1 << 20;
/// Largest answer (a whole event stream) read.
const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Longest wait for a card.
const CARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Most of the asking execution's time left kept back for its model to act on a failure.
const REPLY_MARGIN: Duration = Duration::from_secs(5);
/// Longest wait for a remote to take a cancellation.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a remote agent gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The call failed: the card, the transport, the token, or the answer.
    #[error("remote agent {name} ({card}): {reason}")]
    Failed {
        /// The name the agent file gives it.
        name: String,
        /// Its card's URL.
        card: String,
        /// What went wrong.
        reason: String,
    },
    /// The remote's guards refused the request (a cycle across servers, too deep, no budget).
    #[error("remote agent {name} refused the request: {reason}")]
    Rejected {
        /// The name the agent file gives it.
        name: String,
        /// Its words.
        reason: String,
    },
}

impl RemoteError {
    /// The label metrics and tool-call records give it.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Failed { .. } => "tool_error",
            Self::Rejected { .. } => "refused",
        }
    }
}

/// What a remote agent answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAnswer {
    /// Its task's id, on its server.
    pub task_id: String,
    /// Its task's context (conversation), on its server.
    pub context_id: String,
    /// The answer's text.
    pub text: String,
    /// Tokens its task spent, as it reported them.
    pub tokens: u64,
}

/// How long a fetched card is used before it is fetched again.
const CARD_TTL: Duration = Duration::from_secs(300);

/// A remote's card and the checked access to its server, as last fetched.
#[derive(Clone)]
struct Known {
    access: HttpAccess,
    endpoint: Url,
    streaming: bool,
    fetched: Instant,
}

/// The cards of the remote agents asked lately, by card URL, so a call does not fetch its card
/// (and build its checked HTTP access) every time. An entry is dropped when a call through it
/// fails, so a moved or restarted remote is looked up afresh.
#[derive(Default)]
pub struct Cards {
    known: std::sync::Mutex<std::collections::HashMap<String, Known>>,
}

impl Cards {
    fn get(&self, card: &str) -> Option<Known> {
        let known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known
            .get(card)
            .filter(|k| k.fetched.elapsed() < CARD_TTL)
            .cloned()
    }

    fn put(&self, card: &str, known: Known) {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(card.to_owned(), known);
    }

    fn forget(&self, card: &str) {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(card);
    }
}

/// Where the call is, for the error of a task that never finished.
#[derive(Debug, Default)]
struct Progress {
    task_id: Option<String>,
    context_id: Option<String>,
    state: Option<String>,
    status_text: Option<String>,
    text: String,
    tokens: u64,
    finished: bool,
    direct_answer: bool,
}

/// Ask `remote` `request` on behalf of the execution `lineage` places (on the server `here`),
/// waiting for the answer until that execution's deadline; `cards` keeps what earlier calls
/// learnt of the remote.
pub async fn ask(
    cards: &Cards,
    remote: &RemoteAgent,
    here: &str,
    lineage: &Lineage,
    request: &str,
) -> Result<RemoteAnswer, RemoteError> {
    let fail = |reason: String| RemoteError::Failed {
        name: remote.name.clone(),
        card: remote.card.clone(),
        reason,
    };
    let token = match remote.token_env.as_deref() {
        None => None,
        Some(var) => Some(std::env::var(var).map_err(|_| {
            fail(format!(
                "its token variable {var} is not set in the daemon's environment"
            ))
        })?),
    };
    // Short of the asking execution's deadline by a margin, so its model gets the error with
    // time left to answer with what it has.
    let time_left = || {
        let left = lineage.deadline.saturating_duration_since(Instant::now());
        left.saturating_sub((left / 4).min(REPLY_MARGIN))
    };
    let known = match cards.get(&remote.card) {
        Some(known) => known,
        None => {
            let known = look_up(remote, token.as_deref(), time_left())
                .await
                .map_err(&fail)?;
            cards.put(&remote.card, known.clone());
            known
        }
    };
    let asked = send(&known, token, here, lineage, request, time_left()).await;
    if asked.is_err() {
        cards.forget(&remote.card);
    }
    asked.map_err(|reason| match reason {
        Finish::Failed(r) => fail(r),
        Finish::Rejected(r) => RemoteError::Rejected {
            name: remote.name.clone(),
            reason: r,
        },
    })
}

/// Fetch `remote`'s card and check where it sends: only the card's own host and port may be
/// reached (a loopback or private address only when written literally), its endpoint included.
async fn look_up(
    remote: &RemoteAgent,
    token: Option<&str>,
    time_left: Duration,
) -> Result<Known, String> {
    let card_url = Url::parse(&remote.card).map_err(|e| format!("not a URL: {e}"))?;
    let host = card_url.host_str().unwrap_or_default();
    let port = card_url.port_or_known_default().unwrap_or(80);
    // The card's own host and port, literally: `[::1]` keeps its brackets.
    let access = HostAllowlist::parse(&[format!("{host}:{port}")])
        .map_err(|e| e.to_string())
        .and_then(HttpAccess::new)?;
    let card = fetch_card(&access, &card_url, token, time_left).await?;
    let endpoint = Url::parse(&card.url)
        .map_err(|e| format!("its card's url {:?} is not a URL: {e}", card.url))?;
    access.client_for(&endpoint).map_err(|e| {
        format!(
            "its card names the endpoint {endpoint}, which the agent file does not let it reach: {e}"
        )
    })?;
    Ok(Known {
        access,
        endpoint,
        streaming: card.capabilities.streaming == Some(true),
        fetched: Instant::now(),
    })
}

/// Send the message to the endpoint `known` names and read the answer, within `timeout`.
async fn send(
    known: &Known,
    token: Option<String>,
    here: &str,
    lineage: &Lineage,
    request: &str,
    timeout: Duration,
) -> Result<RemoteAnswer, Finish> {
    let client = known
        .access
        .client_for(&known.endpoint)
        .map_err(Finish::Failed)?;
    let method = if known.streaming {
        "message/stream"
    } else {
        "message/send"
    };
    let body = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": method,
        "params": {
            "message": {
                "kind": "message",
                "messageId": uuid::Uuid::new_v4().to_string(),
                "role": "user",
                "parts": [{"kind": "text", "text": request}],
                "extensions": [DELEGATION_EXTENSION],
                "metadata": {DELEGATION_KEY: lineage.for_remote(here)},
            },
            "configuration": {"blocking": true, "acceptedOutputModes": ["text/plain"]},
        },
    });
    let mut call = client
        .post(known.endpoint.clone())
        .json(&body)
        .timeout(timeout);
    if known.streaming {
        call = call.header(reqwest::header::ACCEPT, "text/event-stream");
    }
    if let Some(t) = &token {
        call = call.bearer_auth(t);
    }
    for (name, value) in crate::telemetry::trace_headers() {
        call = call.header(name, value);
    }
    let mut guard = CancelOnDrop {
        client,
        endpoint: known.endpoint.clone(),
        token,
        task_id: None,
        done: false,
    };
    let mut progress = Progress::default();
    let exchange = exchange(call, known.streaming, &mut progress, &mut guard);
    let outcome = tokio::select! {
        r = exchange => r,
        () = lineage.cancel.cancelled() => Err("the request that asked it was stopped; its task is canceled".to_owned()),
    };
    outcome.map_err(Finish::Failed)?;
    guard.done = true;
    finish(progress)
}

/// GET the card: refused tokens, HTTP errors, HTML and broken JSON each said as they are.
async fn fetch_card(
    access: &HttpAccess,
    url: &Url,
    token: Option<&str>,
    time_left: Duration,
) -> Result<AgentCard, String> {
    let client = access.client_for(url)?;
    let mut get = client.get(url.clone()).timeout(CARD_TIMEOUT.min(time_left));
    if let Some(t) = token {
        get = get.bearer_auth(t);
    }
    let response = get
        .send()
        .await
        .map_err(|e| format!("cannot fetch its card: {}", describe(&e)))?;
    let (response, content_type) = accepted(response, "its card URL")?;
    let body = read_limited(response, MAX_CARD_BYTES).await?;
    serde_json::from_slice(&body).map_err(|e| {
        format!("its card URL answered {content_type} that is not an A2A agent card ({e})")
    })
}

/// `response` and its content type when its status is a success; a refused token, or any other
/// status, said as it is (`what` names what answered: "its card URL", "its endpoint").
fn accepted(
    response: reqwest::Response,
    what: &str,
) -> Result<(reqwest::Response, String), String> {
    let status = response.status();
    if matches!(status.as_u16(), 401 | 403) {
        return Err(format!(
            "its server refused the token (HTTP {status}): check token_env in [[delegation.remote]]"
        ));
    }
    if !status.is_success() {
        return Err(format!("{what} answered HTTP {status}"));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content type")
        .to_owned();
    Ok((response, content_type))
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".into();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("its answer broke off: {}", describe(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("its answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Send the message and read the answer into `progress`, whole or as an event stream.
async fn exchange(
    call: reqwest::RequestBuilder,
    streaming: bool,
    progress: &mut Progress,
    guard: &mut CancelOnDrop,
) -> Result<(), String> {
    let response = call.send().await.map_err(|e| describe(&e))?;
    let (response, content_type) = accepted(response, "its endpoint")?;
    let is_stream = content_type.starts_with("text/event-stream");
    if !(streaming && is_stream) {
        let body = read_limited(response, MAX_ANSWER_BYTES).await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("its answer is not JSON-RPC ({e})"))?;
        return take(&answer, progress, guard);
    }
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    let mut events = response.bytes_stream().eventsource();
    let mut read = 0usize;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| format!("its event stream broke off: {e}"))?;
        read += event.data.len();
        if read > MAX_ANSWER_BYTES {
            return Err(format!(
                "its answer is larger than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        let answer: Value = serde_json::from_str(&event.data)
            .map_err(|e| format!("its event stream sent an event that is not JSON-RPC ({e})"))?;
        take(&answer, progress, guard)?;
        if progress.finished {
            return Ok(());
        }
    }
    if progress.finished {
        Ok(())
    } else {
        Err("its event stream ended before its task did".into())
    }
}

/// Fold one JSON-RPC answer (a whole answer, or one event of a stream) into `progress`.
fn take(answer: &Value, progress: &mut Progress, guard: &mut CancelOnDrop) -> Result<(), String> {
    if let Some(error) = answer.get("error") {
        return Err(format!(
            "it answered error {}: {}",
            error["code"],
            error["message"].as_str().unwrap_or("(no message)")
        ));
    }
    let result = answer
        .get("result")
        .ok_or("its answer has neither result nor error")?;
    let task_of = |key: &str| result.get(key).and_then(Value::as_str).map(str::to_owned);
    match result.get("kind").and_then(Value::as_str) {
        Some("task") => {
            let id = task_of("id").ok_or("its task has no id")?;
            check_task(progress, guard, &id, task_of("contextId"))?;
            take_status(progress, &result["status"]);
            for artifact in result["artifacts"].as_array().into_iter().flatten() {
                progress.text.push_str(&text_of(&artifact["parts"]));
            }
            take_usage(progress, result);
            progress.finished = progress.state.as_deref().is_some_and(ended);
        }
        Some("message") => {
            // A direct answer: no task to follow.
            progress.text.push_str(&text_of(&result["parts"]));
            progress.direct_answer = true;
            progress.finished = true;
        }
        Some("status-update") => {
            let id = task_of("taskId").ok_or("its status update names no task")?;
            check_task(progress, guard, &id, task_of("contextId"))?;
            take_status(progress, &result["status"]);
            take_usage(progress, result);
            progress.finished = result["final"].as_bool() == Some(true)
                || progress.state.as_deref().is_some_and(ended);
        }
        Some("artifact-update") => {
            let id = task_of("taskId").ok_or("its artifact update names no task")?;
            check_task(progress, guard, &id, task_of("contextId"))?;
            progress
                .text
                .push_str(&text_of(&result["artifact"]["parts"]));
        }
        other => {
            return Err(format!(
                "its answer is of kind {other:?}, not a task, a message or a task update"
            ));
        }
    }
    Ok(())
}

/// The first task named is ours; an answer about any other is refused.
fn check_task(
    progress: &mut Progress,
    guard: &mut CancelOnDrop,
    id: &str,
    context: Option<String>,
) -> Result<(), String> {
    match &progress.task_id {
        None => {
            progress.task_id = Some(id.to_owned());
            progress.context_id = context;
            guard.task_id = Some(id.to_owned());
            Ok(())
        }
        Some(ours) if ours == id => Ok(()),
        Some(ours) => Err(format!(
            "it answered about task {id:?}, which it was never asked for (its task is {ours:?})"
        )),
    }
}

fn take_status(progress: &mut Progress, status: &Value) {
    if let Some(state) = status["state"].as_str() {
        progress.state = Some(state.to_owned());
    }
    let text = text_of(&status["message"]["parts"]);
    if !text.is_empty() {
        progress.status_text = Some(text);
    }
}

fn take_usage(progress: &mut Progress, result: &Value) {
    if let Some(tokens) = result["metadata"][USAGE_KEY]["tokens"].as_u64() {
        progress.tokens = tokens;
    }
}

/// The text of a list of parts (text parts, and data parts as JSON).
fn text_of(parts: &Value) -> String {
    let parts: Vec<Part> = serde_json::from_value(parts.clone()).unwrap_or_default();
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text { text, .. } => Some(text.clone()),
            Part::Data { data, .. } => Some(data.to_string()),
            Part::File { .. } => None,
        })
        .collect()
}

fn ended(state: &str) -> bool {
    matches!(state, "completed" | "canceled" | "failed" | "rejected")
}

enum Finish {
    Failed(String),
    Rejected(String),
}

fn finish(p: Progress) -> Result<RemoteAnswer, Finish> {
    let why = || {
        p.status_text
            .clone()
            .unwrap_or_else(|| "no reason given".into())
    };
    match p.state.as_deref() {
        _ if p.direct_answer => {}
        Some("completed") => {}
        Some("rejected") => return Err(Finish::Rejected(why())),
        Some(state) => {
            return Err(Finish::Failed(format!("its task ended {state}: {}", why())));
        }
        None => return Err(Finish::Failed("its answer has no task state".into())),
    }
    Ok(RemoteAnswer {
        task_id: p
            .task_id
            .unwrap_or_else(|| "(a direct answer, no task)".to_owned()),
        context_id: p.context_id.unwrap_or_default(),
        text: p.text,
        tokens: p.tokens,
    })
}

/// Cancels the remote task when the call is abandoned before it finished (the asking
/// execution stopped, its future dropped).
struct CancelOnDrop {
    client: reqwest::Client,
    endpoint: Url,
    token: Option<String>,
    task_id: Option<String>,
    done: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let (false, Some(task)) = (self.done, self.task_id.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut cancel = self
            .client
            .post(self.endpoint.clone())
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/cancel", "params": {"id": task}}))
            .timeout(CANCEL_TIMEOUT);
        if let Some(t) = &self.token {
            cancel = cancel.bearer_auth(t);
        }
        runtime.spawn(async move {
            match cancel.send().await {
                Ok(r) => tracing::info!(task, status = r.status().as_u16(), "remote task canceled"),
                Err(e) => tracing::warn!(task, error = %e, "remote task could not be canceled"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn guard() -> CancelOnDrop {
        CancelOnDrop {
            client: reqwest::Client::new(),
            endpoint: Url::parse("http://127.0.0.1:1/a2a/x").unwrap(),
            token: None,
            task_id: None,
            done: true,
        }
    }

    #[test]
    fn an_answer_about_a_task_never_asked_for_is_refused() {
        let mut p = Progress::default();
        let mut g = guard();
        let first = json!({"result": {"kind": "task", "id": "t1", "contextId": "c", "status": {"state": "working"}}});
        take(&first, &mut p, &mut g).unwrap();
        let other = json!({"result": {"kind": "status-update", "taskId": "t2", "contextId": "c", "final": true, "status": {"state": "completed"}}});
        let e = take(&other, &mut p, &mut g).unwrap_err();
        assert!(
            e.contains("task \"t2\", which it was never asked for"),
            "{e}"
        );
    }

    #[test]
    fn a_streamed_answer_is_assembled_and_its_usage_read() {
        let mut p = Progress::default();
        let mut g = guard();
        for event in [
            json!({"result": {"kind": "task", "id": "t1", "contextId": "c", "status": {"state": "working"}}}),
            json!({"result": {"kind": "artifact-update", "taskId": "t1", "contextId": "c", "artifact": {"artifactId": "answer", "parts": [{"kind": "text", "text": "hel"}]}}}),
            json!({"result": {"kind": "artifact-update", "taskId": "t1", "contextId": "c", "artifact": {"artifactId": "answer", "parts": [{"kind": "text", "text": "lo"}]}}}),
            json!({"result": {"kind": "status-update", "taskId": "t1", "contextId": "c", "final": true, "status": {"state": "completed"}, "metadata": {"caxton.usage": {"tokens": 7}}}}),
        ] {
            take(&event, &mut p, &mut g).unwrap();
        }
        assert!(p.finished);
        let answer = finish(p).ok().unwrap();
        assert_eq!(answer.text, "hello");
        assert_eq!(answer.tokens, 7);
        assert_eq!(answer.task_id, "t1");
    }

    #[test]
    fn errors_and_unknown_kinds_are_said() {
        let mut p = Progress::default();
        let mut g = guard();
        let e = take(
            &json!({"error": {"code": -32001, "message": "task not found"}}),
            &mut p,
            &mut g,
        )
        .unwrap_err();
        assert!(e.contains("-32001: task not found"), "{e}");
        let e = take(&json!({"result": {"kind": "banana"}}), &mut p, &mut g).unwrap_err();
        assert!(e.contains("\"banana\""), "{e}");
    }
}
