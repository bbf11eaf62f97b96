//! Tool definitions out and tool calls back, for both HTTP protocols, plain and streamed,
//! against a loopback server that answers as each API does.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{
    AnthropicProvider, FinishReason, Message, OpenAiProvider, Provider, ProviderRequest, ToolCall,
    ToolChoice, ToolDefinition,
};
use crate::config::{ProviderConfig, ProviderKind};

type Seen = Arc<Mutex<Vec<Value>>>;

/// Server-sent events of these data lines, each named by its `type` when it has one.
fn sse(events: &[Value], done: bool) -> axum::response::Response {
    let mut text: String = events
        .iter()
        .map(|e| match e["type"].as_str() {
            Some(name) => format!("event: {name}\ndata: {e}\n\n"),
            None => format!("data: {e}\n\n"),
        })
        .collect();
    if done {
        text.push_str("data: [DONE]\n\n");
    }
    ([("content-type", "text/event-stream")], text).into_response()
}

async fn openai(seen: Seen, body: Value) -> axum::response::Response {
    seen.lock().unwrap().push(body.clone());
    // `null` wherever a list or object may be absent, and no usage at all, as llama.cpp's
    // server and others answer.
    if body["messages"][0]["content"] == "nulls" {
        if body["stream"] == true {
            return sse(
                &[
                    json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": null, "tool_calls": null}}]}),
                    json!({"choices": [{"index": 0, "delta": {"content": "hi", "tool_calls": null}}], "usage": null}),
                    json!({"choices": [{"index": 0, "delta": null, "finish_reason": "stop"}]}),
                    json!({"choices": null, "usage": null}),
                ],
                true,
            );
        }
        return Json(json!({"model": "m", "usage": null,
            "choices": [{"message": {"role": "assistant", "content": "hi", "tool_calls": null}, "finish_reason": null}]}))
        .into_response();
    }
    if body["stream"] == true {
        let chunks = [
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": ""}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\":"}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"paris\"}"}}]}}]}),
            json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}}),
        ];
        let mut events: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        events.push_str("data: [DONE]\n\n");
        return ([("content-type", "text/event-stream")], events).into_response();
    }
    Json(json!({
        "model": "m",
        "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"paris\"}"}}
        ]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4}
    }))
    .into_response()
}

async fn anthropic(seen: Seen, body: Value) -> axum::response::Response {
    seen.lock().unwrap().push(body.clone());
    if body["system"] == "nulls" {
        if body["stream"] == true {
            return sse(
                &[
                    json!({"type": "message_start", "message": {"model": "claude-x", "content": null, "usage": null}}),
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": null}),
                    json!({"type": "message_stop"}),
                ],
                false,
            );
        }
        return Json(json!({"model": "claude-x", "usage": null,
            "content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "id": "t", "name": "lookup", "input": null}]}))
        .into_response();
    }
    if body["system"] == "overload" {
        let events = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"content\":[],\"usage\":{}}}\n\n\
                      event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        return ([("content-type", "text/event-stream")], events).into_response();
    }
    if body["stream"] == true {
        let events = [
            (
                "message_start",
                json!({"type": "message_start", "message": {"model": "claude-x", "content": [], "usage": {"input_tokens": 9}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Looking up."}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"q\":"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"paris\"}"}}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ];
        let text: String = events
            .iter()
            .map(|(n, d)| format!("event: {n}\ndata: {d}\n\n"))
            .collect();
        return ([("content-type", "text/event-stream")], text).into_response();
    }
    Json(json!({
        "model": "claude-x",
        "content": [{"type": "text", "text": "Looking up."}, {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "paris"}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 9, "output_tokens": 4}
    }))
    .into_response()
}

async fn serve(seen: Seen) -> String {
    let (a, b) = (seen.clone(), seen);
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(move |Json(v): Json<Value>| openai(a.clone(), v)),
        )
        .route(
            "/v1/messages",
            axum::routing::post(move |Json(v): Json<Value>| anthropic(b.clone(), v)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

fn config(kind: ProviderKind, base_url: String) -> ProviderConfig {
    ProviderConfig {
        kind,
        base_url: Some(base_url),
        model: Some("m".into()),
        ..ProviderConfig::local()
    }
}

/// A conversation that has been through one tool call already, plus the tool on offer.
fn request() -> ProviderRequest {
    let call = ToolCall {
        id: "call_0".into(),
        name: "lookup".into(),
        arguments: r#"{"q":"france"}"#.into(),
    };
    ProviderRequest {
        messages: vec![
            Message::System("Use tools.".into()),
            Message::User("Capital of France?".into()),
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![call],
            },
            Message::ToolResult {
                call_id: "call_0".into(),
                content: "France: capital Paris".into(),
            },
        ],
        tools: vec![ToolDefinition {
            name: "lookup".into(),
            description: "Look a fact up".into(),
            input_schema: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
        }],
        model: None,
        temperature: None,
        max_tokens: None,
        top_p: None,
        stop: Vec::new(),
        seed: None,
        tool_choice: None,
    }
}

#[tokio::test]
async fn openai_offers_tools_and_returns_tool_calls_plain_and_streamed() {
    let seen = Seen::default();
    let provider = OpenAiProvider::new(
        "o",
        &config(ProviderKind::Openai, serve(seen.clone()).await),
    )
    .unwrap();
    for stream in [false, true] {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let out = provider
            .complete(request(), stream.then_some(tx))
            .await
            .unwrap();
        assert_eq!(
            out.tool_calls,
            vec![ToolCall {
                id: "call_1".into(),
                name: "lookup".into(),
                arguments: r#"{"q":"paris"}"#.into()
            }]
        );
        assert_eq!(
            (out.usage.prompt_tokens, out.usage.completion_tokens),
            (Some(9), Some(4))
        );
        assert_eq!(out.finish_reason, Some(FinishReason::ToolCalls));
    }
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(sent["tools"][0]["function"]["name"], "lookup");
    assert_eq!(sent["tools"][0]["function"]["parameters"]["type"], "object");
    assert_eq!(
        sent["messages"][2]["tool_calls"][0]["function"]["arguments"],
        r#"{"q":"france"}"#
    );
    assert_eq!(
        sent["messages"][3],
        json!({"role": "tool", "tool_call_id": "call_0", "content": "France: capital Paris"})
    );
}

#[tokio::test]
async fn anthropic_offers_tools_and_returns_tool_use_plain_and_streamed() {
    let seen = Seen::default();
    let provider = AnthropicProvider::new(
        "a",
        &config(ProviderKind::Anthropic, serve(seen.clone()).await),
    )
    .unwrap();
    for stream in [false, true] {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let out = provider
            .complete(request(), stream.then_some(tx))
            .await
            .unwrap();
        assert_eq!(out.text, "Looking up.");
        assert_eq!(
            out.tool_calls,
            vec![ToolCall {
                id: "toolu_1".into(),
                name: "lookup".into(),
                arguments: r#"{"q":"paris"}"#.into()
            }]
        );
        assert_eq!(
            (out.usage.prompt_tokens, out.usage.completion_tokens),
            (Some(9), Some(4))
        );
        assert_eq!(out.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(out.model, "claude-x");
        if stream {
            assert_eq!(rx.recv().await.as_deref(), Some("Looking up."));
        }
    }
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(sent["system"], "Use tools.");
    assert_eq!(sent["max_tokens"], 1024);
    assert_eq!(sent["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(
        sent["messages"][1]["content"][0],
        json!({"type": "tool_use", "id": "call_0", "name": "lookup", "input": {"q": "france"}})
    );
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    assert_eq!(sent["messages"][2]["content"][0]["tool_use_id"], "call_0");
}

#[tokio::test]
async fn an_error_event_in_the_middle_of_a_stream_is_reported_as_such() {
    let seen = Seen::default();
    let provider =
        AnthropicProvider::new("a", &config(ProviderKind::Anthropic, serve(seen).await)).unwrap();
    let mut req = request();
    req.messages[0] = Message::System("overload".into());
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = provider.complete(req, Some(tx)).await.unwrap_err();
    assert!(
        err.to_string().contains("failed mid-answer: Overloaded"),
        "{err}"
    );
}

/// The `tool_choice` each request body carries, for a provider configured with `configured`
/// and requests that set `per_agent`, with tools and without.
async fn tool_choices_sent(
    kind: ProviderKind,
    configured: Option<ToolChoice>,
    per_agent: Option<ToolChoice>,
) -> (Value, Value) {
    let seen = Seen::default();
    let mut cfg = config(kind, serve(seen.clone()).await);
    cfg.tool_choice = configured;
    let provider: Box<dyn Provider> = match kind {
        ProviderKind::Anthropic => Box::new(AnthropicProvider::new("a", &cfg).unwrap()),
        _ => Box::new(OpenAiProvider::new("o", &cfg).unwrap()),
    };
    let mut req = request();
    req.tool_choice = per_agent;
    provider.complete(req.clone(), None).await.unwrap();
    req.tools.clear();
    provider.complete(req, None).await.unwrap();
    let sent = seen.lock().unwrap().clone();
    (
        sent[0]["tool_choice"].clone(),
        sent[1]["tool_choice"].clone(),
    )
}

#[tokio::test]
async fn tool_choice_is_sent_with_tools_and_the_agent_overrides_the_provider() {
    use ToolChoice::{Auto, None as Never, Required};
    let cases = [
        (None, None, json!("auto"), json!({"type": "auto"})),
        (Some(Never), None, json!("none"), json!({"type": "none"})),
        (
            Some(Never),
            Some(Required),
            json!("required"),
            json!({"type": "any"}),
        ),
        (
            Some(Required),
            Some(Auto),
            json!("auto"),
            json!({"type": "auto"}),
        ),
    ];
    for (configured, per_agent, openai, anthropic) in cases {
        for (kind, expected) in [
            (ProviderKind::Openai, openai.clone()),
            (ProviderKind::Anthropic, anthropic),
        ] {
            let (with_tools, without) = tool_choices_sent(kind, configured, per_agent).await;
            assert_eq!(
                with_tools, expected,
                "{kind:?} {configured:?} {per_agent:?}"
            );
            // Servers refuse a tool_choice without tools.
            assert_eq!(without, Value::Null, "{kind:?}");
        }
    }
}

#[tokio::test]
async fn a_tool_call_turn_goes_back_with_empty_string_content_not_null() {
    let seen = Seen::default();
    let provider = OpenAiProvider::new(
        "o",
        &config(ProviderKind::Openai, serve(seen.clone()).await),
    )
    .unwrap();
    provider.complete(request(), None).await.unwrap();
    let sent = seen.lock().unwrap()[0].clone();
    assert_eq!(sent["messages"][2]["content"], json!(""), "{sent}");
}

#[tokio::test]
async fn null_lists_and_objects_are_accepted_and_missing_usage_stays_unknown() {
    let seen = Seen::default();
    let base = serve(seen).await;
    let openai = OpenAiProvider::new("o", &config(ProviderKind::Openai, base.clone())).unwrap();
    let anthropic = AnthropicProvider::new("a", &config(ProviderKind::Anthropic, base)).unwrap();
    let mut req = request();
    req.messages[0] = Message::System("nulls".into());
    for stream in [false, true] {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let out = openai
            .complete(req.clone(), stream.then_some(tx))
            .await
            .unwrap_or_else(|e| panic!("openai, stream {stream}: {e}"));
        assert_eq!(out.text, "hi");
        assert!(out.tool_calls.is_empty());
        assert_eq!(
            (out.usage.prompt_tokens, out.usage.completion_tokens),
            (None, None)
        );
        // The streamed answer says why it stopped; the plain one says `null`.
        assert_eq!(out.finish_reason, stream.then_some(FinishReason::Stop));

        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let out = anthropic
            .complete(req.clone(), stream.then_some(tx))
            .await
            .unwrap_or_else(|e| panic!("anthropic, stream {stream}: {e}"));
        assert_eq!(out.text, "hi");
        assert_eq!(
            (out.usage.prompt_tokens, out.usage.completion_tokens),
            (None, None)
        );
        assert_eq!(out.finish_reason, stream.then_some(FinishReason::Stop));
        if !stream {
            // A tool that takes no arguments may come with a null input.
            assert_eq!(out.tool_calls[0].arguments, "{}");
        }
    }
}
