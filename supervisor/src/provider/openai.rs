//! OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp server, LM Studio):
//! messages, tool definitions and `tool_calls`, server-sent-event streaming, usage.

use std::collections::BTreeMap;

use caxton_ipc_protocol::{ChatMessage, ChatRole, CompletionResponse, ToolCall};
use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{self, Endpoint};
use super::{DeltaSink, Provider, ProviderError, ProviderRequest, ToolChoice};
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

fn message_json(m: &ChatMessage) -> Value {
    match m.role {
        ChatRole::System => json!({"role": "system", "content": m.content}),
        ChatRole::User => json!({"role": "user", "content": m.content}),
        ChatRole::Assistant if m.tool_calls.is_empty() => {
            json!({"role": "assistant", "content": m.content})
        }
        // `""`, not `null`, when the turn only calls tools: strict servers (llama.cpp's) answer
        // a null content with HTTP 500.
        ChatRole::Assistant => json!({
            "role": "assistant",
            "content": m.content,
            "tool_calls": m.tool_calls.iter().map(|c| json!({
                "id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": c.arguments_json},
            })).collect::<Vec<_>>(),
        }),
        ChatRole::Tool => {
            json!({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
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
) -> Result<Value, ProviderError> {
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
        let tools = request
            .tools
            .iter()
            .map(|t| {
                let schema = http::tool_schema(t)?;
                Ok(json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": schema}}))
            })
            .collect::<Result<Vec<_>, ProviderError>>()?;
        body["tools"] = tools.into();
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
    Ok(body)
}

// Every list or object a server may leave out is also accepted as `null`.
#[derive(Deserialize)]
struct ChatCompletion {
    model: Option<String>,
    #[serde(default, deserialize_with = "http::null_as_default")]
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
struct Usage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct Chunk {
    model: Option<String>,
    #[serde(default, deserialize_with = "http::null_as_default")]
    choices: Vec<ChunkChoice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default, deserialize_with = "http::null_as_default")]
    delta: Delta,
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

    fn default_model(&self) -> &str {
        &self.endpoint.model
    }

    async fn complete(
        &self,
        request: ProviderRequest,
        deltas: Option<DeltaSink>,
    ) -> Result<CompletionResponse, ProviderError> {
        let model = request
            .model
            .clone()
            .unwrap_or_else(|| self.endpoint.model.clone());
        let body = request_body(
            &request,
            &model,
            deltas.is_some(),
            self.endpoint.tool_choice,
        )?;
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
            let usage = parsed.usage.unwrap_or_default();
            return Ok(CompletionResponse {
                content: choice.message.content.unwrap_or_default(),
                model: parsed.model.unwrap_or(model),
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                tool_calls: choice
                    .message
                    .tool_calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| ToolCall {
                        // Some servers leave the id out; the result turn still needs one.
                        id: c.id.unwrap_or_else(|| format!("call_{i}")),
                        name: c.function.name,
                        arguments_json: arguments_or_empty(c.function.arguments),
                    })
                    .collect(),
            });
        }

        let mut content = String::new();
        let mut answered_model = None;
        let mut usage = Usage::default();
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
                    if let Some(text) = choice.delta.content {
                        http::forward(deltas.as_ref(), &text);
                        content.push_str(&text);
                    }
                    for piece in choice.delta.tool_calls {
                        let call = calls.entry(piece.index).or_insert_with(|| ToolCall {
                            id: String::new(),
                            name: String::new(),
                            arguments_json: String::new(),
                        });
                        if let Some(id) = piece.id {
                            call.id = id;
                        }
                        if let Some(f) = piece.function {
                            call.name.push_str(f.name.as_deref().unwrap_or(""));
                            call.arguments_json
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
        Ok(CompletionResponse {
            content,
            model: answered_model.unwrap_or(model),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            tool_calls: calls
                .into_iter()
                .map(|(i, mut call)| {
                    if call.id.is_empty() {
                        call.id = format!("call_{i}");
                    }
                    call.arguments_json = arguments_or_empty(Some(call.arguments_json));
                    call
                })
                .collect(),
        })
    }
}
