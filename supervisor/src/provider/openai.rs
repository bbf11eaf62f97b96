//! OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp server, LM Studio):
//! messages, tool definitions and `tool_calls`, server-sent-event streaming, usage.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{self, Endpoint};
use super::{
    Completion, DeltaSink, FinishReason, Message, Provider, ProviderError, ProviderRequest,
    ToolCall, ToolChoice, Usage,
};
use crate::config::ProviderConfig;

/// A client for one configured OpenAI-compatible server.
pub struct OpenAiProvider {
    endpoint: Endpoint,
}

impl OpenAiProvider {
    /// Build the client; nothing is sent until the first request.
    pub fn new(name: &str, cfg: &ProviderConfig) -> Result<Self, ProviderError> {
        Ok(Self {
            endpoint: Endpoint::new(name, cfg, "/chat/completions")?,
        })
    }
}

fn message_json(m: &Message) -> Value {
    match m {
        Message::System(text) => json!({"role": "system", "content": text}),
        Message::User(text) => json!({"role": "user", "content": text}),
        Message::Assistant { text, tool_calls } if tool_calls.is_empty() => {
            json!({"role": "assistant", "content": text})
        }
        // `""`, not `null`, when the turn only calls tools: strict servers (llama.cpp's) answer
        // a null content with HTTP 500.
        Message::Assistant { text, tool_calls } => json!({
            "role": "assistant",
            "content": text,
            "tool_calls": tool_calls.iter().map(|c| json!({
                "id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            })).collect::<Vec<_>>(),
        }),
        Message::ToolResult { call_id, content } => {
            json!({"role": "tool", "tool_call_id": call_id, "content": content})
        }
    }
}

/// The request body: the conversation, the agent's sampling settings, the tools and how to use
/// them (`tool_choice` is the provider's unless the request sets one).
fn request_body(
    request: &ProviderRequest,
    model: &str,
    stream: bool,
    tool_choice: ToolChoice,
) -> Value {
    let mut body = json!({
        "model": model,
        "messages": request.messages.iter().map(message_json).collect::<Vec<_>>(),
    });
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(n) = request.max_tokens {
        body["max_tokens"] = json!(n);
    }
    if !request.stop.is_empty() {
        body["stop"] = json!(request.stop);
    }
    if let Some(seed) = request.seed {
        body["seed"] = json!(seed);
    }
    if let Some(p) = request.top_p {
        body["top_p"] = json!(p);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}}))
            .collect::<Vec<_>>()
            .into();
        body["tool_choice"] = match request.tool_choice.unwrap_or(tool_choice) {
            ToolChoice::Auto => "auto",
            ToolChoice::None => "none",
            ToolChoice::Required => "required",
        }
        .into();
    }
    if stream {
        body["stream"] = true.into();
        // Without this the streamed answer carries no token counts.
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

// Every list or object a server may leave out is also accepted as `null`.
#[derive(Deserialize)]
struct ChatCompletion {
    model: Option<String>,
    #[serde(default, deserialize_with = "http::null_as_default")]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: AssistantMessage,
    #[serde(default, deserialize_with = "http::string_or_none")]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct AssistantMessage {
    content: Option<String>,
    #[serde(default, deserialize_with = "http::null_as_default")]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    arguments: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

#[derive(Deserialize)]
struct Chunk {
    model: Option<String>,
    #[serde(default, deserialize_with = "http::null_as_default")]
    choices: Vec<ChunkChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default, deserialize_with = "http::null_as_default")]
    delta: Delta,
    #[serde(default, deserialize_with = "http::string_or_none")]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    content: Option<String>,
    #[serde(default, deserialize_with = "http::null_as_default")]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    index: u32,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

/// A call's arguments, `{}` when the server sent none (a tool that takes no arguments).
fn arguments_or_empty(arguments: Option<String>) -> String {
    arguments
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "{}".into())
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    // An OpenAI-compatible server is spoken to as OpenAI, which is how OpenAI's own instrumentations name it.
    fn system(&self) -> &'static str {
        "openai"
    }

    fn default_model(&self) -> &str {
        &self.endpoint.model
    }

    async fn complete(
        &self,
        request: ProviderRequest,
        deltas: Option<DeltaSink>,
    ) -> Result<Completion, ProviderError> {
        let model = request
            .model
            .clone()
            .unwrap_or_else(|| self.endpoint.model.clone());
        let body = request_body(
            &request,
            &model,
            deltas.is_some(),
            self.endpoint.tool_choice,
        );
        let response = self
            .endpoint
            .post(&body, &model, |r, key| r.bearer_auth(key))
            .await?;
        if deltas.is_none() {
            let parsed: ChatCompletion =
                self.endpoint.parse(&self.endpoint.text(response).await?)?;
            let Some(choice) = parsed.choices.into_iter().next() else {
                return Err(self.endpoint.malformed("no choices in the answer".into()));
            };
            return Ok(Completion {
                text: choice.message.content.unwrap_or_default(),
                model: parsed.model.unwrap_or(model),
                usage: parsed.usage.unwrap_or_default().into(),
                finish_reason: choice.finish_reason.as_deref().map(FinishReason::from_wire),
                tool_calls: choice
                    .message
                    .tool_calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| ToolCall {
                        // Some servers leave the id out; the result turn still needs one.
                        id: c.id.unwrap_or_else(|| format!("call_{i}")),
                        name: c.function.name,
                        arguments: arguments_or_empty(c.function.arguments),
                    })
                    .collect(),
            });
        }

        let mut content = String::new();
        let mut answered_model = None;
        let mut usage = WireUsage::default();
        let mut finish_reason = None;
        // Tool calls arrive in pieces keyed by index: id and name first, arguments in fragments.
        let mut calls: BTreeMap<u32, ToolCall> = BTreeMap::new();
        let mut done = false;
        self.endpoint
            .events(response, |_event, data| {
                if data.trim() == "[DONE]" {
                    done = true;
                    return Ok(false);
                }
                let chunk: Chunk = self.endpoint.parse(data)?;
                answered_model = answered_model.take().or(chunk.model);
                if let Some(u) = chunk.usage {
                    usage = u;
                }
                for choice in chunk.choices {
                    if let Some(reason) = choice.finish_reason {
                        finish_reason = Some(FinishReason::from_wire(&reason));
                    }
                    if let Some(text) = choice.delta.content {
                        http::forward(deltas.as_ref(), &text);
                        content.push_str(&text);
                    }
                    for piece in choice.delta.tool_calls {
                        let call = calls.entry(piece.index).or_insert_with(|| ToolCall {
                            id: String::new(),
                            name: String::new(),
                            arguments: String::new(),
                        });
                        if let Some(id) = piece.id {
                            call.id = id;
                        }
                        if let Some(f) = piece.function {
                            call.name.push_str(f.name.as_deref().unwrap_or(""));
                            call.arguments
                                .push_str(f.arguments.as_deref().unwrap_or(""));
                        }
                    }
                }
                Ok(true)
            })
            .await?;
        if !done {
            return Err(self
                .endpoint
                .malformed("the event stream ended without [DONE]".into()));
        }
        Ok(Completion {
            text: content,
            model: answered_model.unwrap_or(model),
            usage: usage.into(),
            finish_reason,
            tool_calls: calls
                .into_iter()
                .map(|(i, mut call)| {
                    if call.id.is_empty() {
                        call.id = format!("call_{i}");
                    }
                    call.arguments = arguments_or_empty(Some(call.arguments));
                    call
                })
                .collect(),
        })
    }
}
