//! The fake LLM server: OpenAI's chat completions and Anthropic's messages on a loopback port,
//! answering at once (unless asked to wait) and scripted by the text of the request, as strict
//! as llama.cpp's server. One implementation for the tests and the benches.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

/// Requests seen by every fake server of this test process, by message text (tests use distinct
/// texts, so they do not disturb each other).
static SEEN: std::sync::Mutex<std::collections::BTreeMap<String, u32>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The fake OpenAI-compatible server. Its answer depends on the last user message:
/// `[slow]` waits 300 ms, `[hang]` never answers, `[500]` fails, `[garbage]` is not JSON,
/// `[401]` refuses the key, `[empty]` answers 200 with no body, `[429once]` and `[500once]` fail
/// the first time only, `[429always]` never stops, `[unknown-model]` and `[context]` fail as
/// OpenAI does; `[no-usage]` reports no token counts; `[recall]` answers with the earlier user and assistant
/// messages it was sent; `[traceparent]` with the W3C `traceparent` header it got; anything else is echoed back as
/// `echo: <message>`. A first user message holding `[call NAME {json}]` scripts tool calls
/// (`scripted_tool_turn`). It is as strict as llama.cpp's server: see `strict_like_llama_cpp`.
pub struct FakeLlm {
    /// Where it listens, on 127.0.0.1.
    pub addr: SocketAddr,
    /// Its own runtime when [`FakeLlm::start`] made one; `None` when it runs on the caller's.
    _runtime: Option<tokio::runtime::Runtime>,
}

impl FakeLlm {
    /// Start it on a runtime of its own (one thread), for synchronous tests.
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let addr = serve(runtime.handle());
        Self {
            addr,
            _runtime: Some(runtime),
        }
    }

    /// Start it on the caller's runtime, beside the clients that use it (the benches), so the
    /// server's work is scheduled with theirs. It serves until that runtime shuts down.
    pub fn start_in(runtime: &tokio::runtime::Handle) -> Self {
        Self {
            addr: serve(runtime),
            _runtime: None,
        }
    }

    /// The base URL a provider of either kind is configured with: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

/// Bind an ephemeral loopback port and serve both protocols on `runtime`.
fn serve(runtime: &tokio::runtime::Handle) -> SocketAddr {
    use axum::Json;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake llm");
    listener
        .set_nonblocking(true)
        .expect("fake llm listener non-blocking");
    let addr = listener.local_addr().expect("addr");
    let _entered = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener).expect("fake llm listener");
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(|headers: axum::http::HeaderMap, Json(body): Json<Value>| {
                fake_answer(Wire::OpenAi, body, headers)
            }),
        )
        .route(
            "/v1/messages",
            axum::routing::post(|headers: axum::http::HeaderMap, Json(body): Json<Value>| {
                fake_answer(Wire::Anthropic, body, headers)
            }),
        );
    runtime.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("fake LLM server stopped: {e}");
        }
    });
    addr
}

/// Which provider protocol a fake answer speaks.
#[derive(Clone, Copy, PartialEq)]
enum Wire {
    OpenAi,
    Anthropic,
}

/// The text of the last message, whether its content is a string or a list of blocks.
fn last_text(body: &Value) -> String {
    let content = &body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default()["content"];
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str().or(b["content"].as_str()))
            .collect(),
        _ => String::new(),
    }
}

async fn fake_answer(
    wire: Wire,
    body: Value,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::Json;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let last = last_text(&body);
    let error = |status: StatusCode, message: &str, code: &str| {
        (status, Json(serde_json::json!({"type": "error", "error": {"message": message, "code": code, "type": code}}))).into_response()
    };
    if wire == Wire::OpenAi
        && let Some(refusal) = strict_like_llama_cpp(&body)
    {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &refusal, "server_error");
    }
    // How often this exact message has been seen: "once" failures succeed on retry.
    let seen = {
        let mut counts = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(format!("{}{last}", wire as u8)).or_insert(0);
        *n += 1;
        *n
    };
    if last.contains("[429once]") && seen == 1 {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow down",
            "rate_limit_error",
        );
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        return r;
    }
    if last.contains("[429always]") {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow down",
            "rate_limit_error",
        );
        r.headers_mut().insert("retry-after", "0".parse().unwrap());
        return r;
    }
    if last.contains("[500once]") && seen == 1 {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "hiccup", "api_error");
    }
    if last.contains("[unknown-model]") {
        return error(
            StatusCode::NOT_FOUND,
            "The model `fake-model` does not exist",
            "model_not_found",
        );
    }
    if last.contains("[context]") {
        return error(
            StatusCode::BAD_REQUEST,
            "This model's maximum context length is 8192 tokens",
            "context_length_exceeded",
        );
    }
    if last.contains("[hang]") {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if last.contains("[slow]") {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if last.contains("[500]") {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "boom", "api_error");
    }
    if last.contains("[401]") {
        return error(StatusCode::UNAUTHORIZED, "bad key", "authentication_error");
    }
    if last.contains("[empty]") {
        return (StatusCode::OK, "").into_response();
    }
    if last.contains("[garbage]") {
        return (StatusCode::OK, "this is not json").into_response();
    }
    let stream = body["stream"] == true;
    let model = &body["model"];
    if wire == Wire::OpenAi
        && let Some(reply) = scripted_tool_turn(&body)
    {
        if stream {
            return openai_stream_of(&reply);
        }
        return Json(reply).into_response();
    }
    if last.contains("[traceparent]") {
        let header = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return no_usage_answer(wire, stream, model, &format!("traceparent: {header}"));
    }
    if let Some(reply) = protocol_reply(&body, &last) {
        return no_usage_answer(wire, stream, model, &reply);
    }
    if last.contains("[recall]") {
        // What the model was shown before the last message: a continued conversation's turns.
        let earlier: Vec<String> = body["messages"]
            .as_array()
            .map(|m| &m[..m.len().saturating_sub(1)])
            .unwrap_or_default()
            .iter()
            .filter(|m| m["role"] == "user" || m["role"] == "assistant")
            .map(|m| {
                format!(
                    "{}: {}",
                    m["role"].as_str().unwrap_or_default(),
                    m["content"].as_str().unwrap_or_default()
                )
            })
            .collect();
        return no_usage_answer(
            wire,
            stream,
            model,
            &format!("recall: {}", earlier.join(" | ")),
        );
    }
    if last.contains("[no-usage]") {
        return no_usage_answer(wire, stream, model, &format!("echo: {last}"));
    }
    let answer = format!("echo: {last}");
    let words: Vec<&str> = answer.split_inclusive(' ').collect();
    match (wire, stream) {
        (Wire::OpenAi, false) => Json(serde_json::json!({
            "model": model,
            "choices": [{"message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2}
        }))
        .into_response(),
        (Wire::OpenAi, true) => {
            // One server-sent event per word, then usage, then [DONE], as OpenAI streams; the
            // first says `"tool_calls": null`, as llama.cpp's server does.
            let mut events = format!("data: {}\n\n", llama_cpp_first_chunk(model));
            for word in &words {
                let chunk = serde_json::json!({"model": model, "choices": [{"index": 0, "delta": {"content": word}}]});
                events.push_str(&format!("data: {chunk}\n\n"));
            }
            let usage = serde_json::json!({"model": model, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}});
            events.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
            ([("content-type", "text/event-stream")], events).into_response()
        }
        (Wire::Anthropic, false) => Json(serde_json::json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": answer}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "output_tokens": 2}
        }))
        .into_response(),
        (Wire::Anthropic, true) => {
            let mut events = String::new();
            let mut event = |name: &str, data: Value| {
                events.push_str(&format!("event: {name}\ndata: {data}\n\n"))
            };
            event(
                "message_start",
                serde_json::json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [], "usage": {"input_tokens": 5, "output_tokens": 0}}}),
            );
            event(
                "content_block_start",
                serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            );
            event("ping", serde_json::json!({"type": "ping"}));
            for word in &words {
                event(
                    "content_block_delta",
                    serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}),
                );
            }
            event(
                "content_block_stop",
                serde_json::json!({"type": "content_block_stop", "index": 0}),
            );
            event(
                "message_delta",
                serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
            );
            event("message_stop", serde_json::json!({"type": "message_stop"}));
            ([("content-type", "text/event-stream")], events).into_response()
        }
    }
}

/// The tool calls a user message scripts: `[call NAME {json}]`, any number of them.
fn scripted_calls(text: &str) -> Vec<(String, Value)> {
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("[call ") {
        let after = &rest[at + 6..];
        let Some((name, json)) = after.split_once(' ') else {
            break;
        };
        let mut values = serde_json::Deserializer::from_str(json).into_iter::<Value>();
        let Some(Ok(args)) = values.next() else {
            break;
        };
        calls.push((name.to_owned(), args));
        rest = &json[values.byte_offset()..];
    }
    calls
}

/// The system message's text, if any.
fn system_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "system"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Answers to the supervisor's protocol prompts, scripted by the agent's system prompt:
/// `[bid X]` answers a call for proposals or bids with score and price X, `[decline]` declines
/// it; `[negotiate D0,D1,...]` answers round K of a negotiation with decision `D_K` (`offer`,
/// `counter`, `accept`, `reject`) and the offer `offer K`.
fn protocol_reply(body: &Value, last: &str) -> Option<String> {
    let system = system_text(body);
    let marker = |name: &str| -> Option<String> {
        let at = system.find(&format!("[{name} "))?;
        let rest = &system[at + name.len() + 2..];
        Some(rest[..rest.find(']')?].to_owned())
    };
    if last.contains("CALL FOR PROPOSALS") || last.contains("CALL FOR BIDS") {
        if system.contains("[decline]") {
            return Some(r#"{"decline": true}"#.into());
        }
        let bid: f64 = marker("bid")?.trim().parse().ok()?;
        return Some(format!(
            "Here is my proposal: {{\"score\": {bid}, \"price\": {bid}, \"proposal\": \"bid {bid}\"}}"
        ));
    }
    if last.contains("NEGOTIATION") {
        let script = marker("negotiate")?;
        let round: usize = last
            .split("Round ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let decision = script
            .split(',')
            .nth(round)
            .unwrap_or("reject")
            .trim()
            .to_owned();
        return Some(format!(
            "{{\"decision\": \"{decision}\", \"offer\": \"offer {round}\"}}"
        ));
    }
    None
}

/// OpenAI tool calling, scripted by the first user message (`[call NAME {json}]`): while tools
/// are offered and no result came back yet, call them; once results are there, answer
/// `tool said: RESULT | RESULT`. With `[call-forever]` it calls again for as long as tools are
/// offered, and answers `no tools left after N results` when they are not.
fn scripted_tool_turn(body: &Value) -> Option<Value> {
    let messages = body["messages"].as_array()?;
    let first_user = messages.iter().find(|m| m["role"] == "user")?;
    let calls = scripted_calls(first_user["content"].as_str()?);
    if calls.is_empty() {
        return None;
    }
    let forever = first_user["content"].as_str()?.contains("[call-forever]");
    let results: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "tool")
        .filter_map(|m| m["content"].as_str())
        .collect();
    let offered = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let usage = serde_json::json!({"prompt_tokens": 5, "completion_tokens": 2});
    let answer = |text: String| {
        serde_json::json!({
            "model": body["model"],
            "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        })
    };
    if !offered {
        return Some(answer(format!(
            "no tools left after {} results",
            results.len()
        )));
    }
    if !results.is_empty() && !forever {
        return Some(answer(format!("tool said: {}", results.join(" | "))));
    }
    // Like llama.cpp's server (and the models behind it), it calls tools only when asked to;
    // otherwise the model makes an answer up.
    match body["tool_choice"].as_str() {
        None => {
            return Some(answer(
                "made up: no tool_choice was sent, so no tool was called".into(),
            ));
        }
        Some("none") => {
            return Some(answer("tool_choice none: answered without tools".into()));
        }
        Some(_) => {}
    }
    let tool_calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            serde_json::json!({
                "id": format!("call_{}_{i}", results.len()),
                "type": "function",
                "function": {"name": name, "arguments": args.to_string()},
            })
        })
        .collect();
    Some(serde_json::json!({
        "model": body["model"],
        "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": tool_calls}, "finish_reason": "tool_calls"}],
        "usage": usage,
    }))
}

/// What llama.cpp's server refuses, with the HTTP 500 it answers: an assistant turn that calls
/// tools with `"content": null` (or no content at all).
fn strict_like_llama_cpp(body: &Value) -> Option<String> {
    let messages = body["messages"].as_array()?;
    messages
        .iter()
        .any(|m| {
            m["role"] == "assistant"
                && m["tool_calls"].as_array().is_some_and(|c| !c.is_empty())
                && !m["content"].is_string()
        })
        .then(|| "Failed to parse messages: Expected 'content' to be a string or an array".into())
}

/// The first chunk llama.cpp's server streams: the role, with null content and tool calls.
fn llama_cpp_first_chunk(model: &Value) -> Value {
    serde_json::json!({"model": model, "choices": [{"index": 0, "finish_reason": null,
        "delta": {"role": "assistant", "content": null, "tool_calls": null}}]})
}

/// A non-streamed OpenAI answer (text or tool calls) as the event stream that carries it: the
/// llama.cpp first chunk, the text or each call (id and name, then its arguments in two
/// pieces), usage, `[DONE]`.
fn openai_stream_of(reply: &Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    let model = &reply["model"];
    let message = &reply["choices"][0]["message"];
    let chunk = |delta: Value| {
        let c = serde_json::json!({"model": model, "choices": [{"index": 0, "delta": delta}]});
        format!("data: {c}\n\n")
    };
    let mut events = format!("data: {}\n\n", llama_cpp_first_chunk(model));
    if let Some(text) = message["content"].as_str() {
        events.push_str(&chunk(serde_json::json!({"content": text})));
    }
    for (i, call) in message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let args = call["function"]["arguments"].as_str().unwrap_or_default();
        let middle = args
            .char_indices()
            .nth(args.chars().count() / 2)
            .map_or(args.len(), |(at, _)| at);
        let (head, tail) = args.split_at(middle);
        events.push_str(&chunk(
            serde_json::json!({"tool_calls": [{"index": i, "id": call["id"],
            "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}]}),
        ));
        for piece in [head, tail] {
            events.push_str(&chunk(
                serde_json::json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
            ));
        }
    }
    let usage = serde_json::json!({"model": model, "choices": [], "usage": reply["usage"]});
    events.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    ([("content-type", "text/event-stream")], events).into_response()
}

/// An answer that reports no token counts: `"usage": null` (or no usage event), as some
/// OpenAI-compatible servers answer.
fn no_usage_answer(
    wire: Wire,
    stream: bool,
    model: &Value,
    answer: &str,
) -> axum::response::Response {
    use axum::Json;
    use axum::response::IntoResponse;
    let sse = |events: String| ([("content-type", "text/event-stream")], events).into_response();
    match (wire, stream) {
        (Wire::OpenAi, false) => Json(serde_json::json!({"model": model, "usage": null,
            "choices": [{"message": {"role": "assistant", "content": answer, "tool_calls": null}}]}))
        .into_response(),
        (Wire::OpenAi, true) => {
            let text = serde_json::json!({"model": model, "usage": null, "choices": [{"index": 0, "delta": {"content": answer}}]});
            sse(format!("data: {}\n\ndata: {text}\n\ndata: [DONE]\n\n", llama_cpp_first_chunk(model)))
        }
        (Wire::Anthropic, false) => Json(serde_json::json!({"type": "message", "role": "assistant",
            "model": model, "content": [{"type": "text", "text": answer}], "usage": null}))
        .into_response(),
        (Wire::Anthropic, true) => {
            let events = [
                serde_json::json!({"type": "message_start", "message": {"model": model, "content": null, "usage": null}}),
                serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": answer}}),
                serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": null}),
                serde_json::json!({"type": "message_stop"}),
            ];
            sse(events
                .iter()
                .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or_default()))
                .collect())
        }
    }
}
