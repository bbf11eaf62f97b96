//! Anthropic's Messages API: system prompt, tool use blocks, streaming events, usage.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{self, Endpoint};
use super::{
    Completion, DeltaSink, FinishReason, Message, Provider, ProviderError, ProviderRequest,
    ToolCall, ToolChoice, Usage,
};
use crate::config::ProviderConfig;

/// The API version this client speaks.
const API_VERSION: &str = "2023-06-01";
/// The Messages API requires a limit; this one applies when the agent sets none.
const DEFAULT_MAX_TOKENS: u32 = 1024;

/// A client for one configured Anthropic endpoint.
pub struct AnthropicProvider {
    endpoint: Endpoint,
}

impl AnthropicProvider {
    /// Build the client; nothing is sent until the first request.
    pub fn new(name: &str, cfg: &ProviderConfig) -> Result<Self, ProviderError> {
        Ok(Self {
            endpoint: Endpoint::new(name, cfg, "/messages")?,
        })
    }
}

/// System turns become the `system` field; the rest become alternating user/assistant messages
/// (consecutive turns of one role are merged, as the API requires), with tool calls as
/// `tool_use` blocks and tool results as `tool_result` blocks in a user turn.
fn conversation(messages: &[Message]) -> Result<(String, Vec<Value>), ProviderError> {
    let mut system = Vec::new();
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, blocks) = match m {
            Message::System(text) => {
                system.push(text.as_str());
                continue;
            }
            Message::User(text) => ("user", vec![json!({"type": "text", "text": text})]),
            Message::Assistant { text, tool_calls } => {
                let mut blocks = Vec::new();
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in tool_calls {
                    let input: Value = serde_json::from_str(&call.arguments).map_err(|e| {
                        ProviderError::InvalidRequest(format!(
                            "tool call {} has arguments that are not JSON: {e}",
                            call.name
                        ))
                    })?;
                    blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
                }
                ("assistant", blocks)
            }
            Message::ToolResult { call_id, content } => (
                "user",
                vec![json!({"type": "tool_result", "tool_use_id": call_id, "content": content})],
            ),
        };
        match out.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    let messages = out
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    Ok((system.join("\n\n"), messages))
}

/// The request body; `tool_choice` is the provider's unless the request sets one.
fn request_body(
    request: &ProviderRequest,
    model: &str,
    stream: bool,
    tool_choice: ToolChoice,
) -> Result<Value, ProviderError> {
    let (system, messages) = conversation(&request.messages)?;
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = system.into();
    }
    if let Some(t) = request.temperature {
        // Anthropic's range is 0 to 1; agents may say up to 2 (OpenAI's range).
        body["temperature"] = json!(t.min(1.0));
    }
    if !request.stop.is_empty() {
        body["stop_sequences"] = json!(request.stop);
    }
    if let Some(p) = request.top_p {
        body["top_p"] = json!(p);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.input_schema}))
            .collect::<Vec<_>>()
            .into();
        let choice = match request.tool_choice.unwrap_or(tool_choice) {
            ToolChoice::Auto => "auto",
            ToolChoice::None => "none",
            ToolChoice::Required => "any",
        };
        body["tool_choice"] = json!({"type": choice});
    }
    if stream {
        body["stream"] = true.into();
    }
    Ok(body)
}

// Every list or object a server may leave out is also accepted as `null`.
#[derive(Deserialize)]
struct WireMessage {
    model: Option<String>,
    #[serde(default, deserialize_with = "http::null_as_default")]
    content: Vec<Block>,
    #[serde(default, deserialize_with = "http::null_as_default")]
    usage: WireUsage,
    #[serde(default, deserialize_with = "http::string_or_none")]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        #[serde(default, deserialize_with = "http::null_as_default")]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Self {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: WireMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: Block,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    MessageDelta {
        #[serde(default, deserialize_with = "http::null_as_default")]
        delta: MessageChange,
        #[serde(default, deserialize_with = "http::null_as_default")]
        usage: WireUsage,
    },
    MessageStop,
    Error {
        error: ErrorBody,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

/// What a `message_delta` event changes about the message as a whole.
#[derive(Deserialize, Default)]
struct MessageChange {
    #[serde(default, deserialize_with = "http::string_or_none")]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    fn system(&self) -> &'static str {
        "anthropic"
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
        )?;
        let auth = |r: reqwest::RequestBuilder, key: &str| r.header("x-api-key", key);
        let response = self
            .endpoint
            .post(&body, &model, |r, key| {
                auth(r, key).header("anthropic-version", API_VERSION)
            })
            .await?;
        if deltas.is_none() {
            let message: WireMessage = self.endpoint.parse(&self.endpoint.text(response).await?)?;
            let mut content = String::new();
            let mut tool_calls = Vec::new();
            for block in message.content {
                match block {
                    Block::Text { text } => content.push_str(&text),
                    Block::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                        id,
                        name,
                        // A tool that takes no arguments may come with no (or a null) input.
                        arguments: if input.is_null() {
                            "{}".into()
                        } else {
                            input.to_string()
                        },
                    }),
                    Block::Other => {}
                }
            }
            return Ok(Completion {
                text: content,
                model: message.model.unwrap_or(model),
                usage: message.usage.into(),
                finish_reason: message.stop_reason.as_deref().map(FinishReason::from_wire),
                tool_calls,
            });
        }

        let mut content = String::new();
        let mut answered_model = None;
        let mut usage = WireUsage::default();
        let mut finish_reason = None;
        let mut calls: BTreeMap<u32, ToolCall> = BTreeMap::new();
        let mut stopped = false;
        self.endpoint
            .events(response, |_name, data| {
                match self.endpoint.parse::<Event>(data)? {
                    Event::MessageStart { message } => {
                        answered_model = message.model;
                        usage.input_tokens = message.usage.input_tokens;
                    }
                    Event::ContentBlockStart {
                        index,
                        content_block: Block::ToolUse { id, name, .. },
                    } => {
                        calls.insert(
                            index,
                            ToolCall {
                                id,
                                name,
                                arguments: String::new(),
                            },
                        );
                    }
                    Event::ContentBlockStart { .. } => {}
                    Event::ContentBlockDelta {
                        delta: BlockDelta::TextDelta { text },
                        ..
                    } => {
                        http::forward(deltas.as_ref(), &text);
                        content.push_str(&text);
                    }
                    Event::ContentBlockDelta {
                        index,
                        delta: BlockDelta::InputJsonDelta { partial_json },
                    } => {
                        if let Some(call) = calls.get_mut(&index) {
                            call.arguments.push_str(&partial_json);
                        }
                    }
                    Event::ContentBlockDelta { .. } => {}
                    Event::MessageDelta { delta, usage: u } => {
                        usage.output_tokens = u.output_tokens.or(usage.output_tokens);
                        if let Some(reason) = delta.stop_reason {
                            finish_reason = Some(FinishReason::from_wire(&reason));
                        }
                    }
                    Event::MessageStop => {
                        stopped = true;
                        return Ok(false);
                    }
                    Event::Error { error } => {
                        return Err(ProviderError::StreamFailed {
                            url: self.endpoint.url.clone(),
                            message: error.message,
                        });
                    }
                    Event::Other => {}
                }
                Ok(true)
            })
            .await?;
        if !stopped {
            return Err(self
                .endpoint
                .malformed("the event stream ended without message_stop".into()));
        }
        // A tool called with no arguments streams no JSON at all.
        for call in calls.values_mut() {
            if call.arguments.is_empty() {
                call.arguments = "{}".into();
            }
        }
        Ok(Completion {
            text: content,
            model: answered_model.unwrap_or(model),
            usage: usage.into(),
            finish_reason,
            tool_calls: calls.into_values().collect(),
        })
    }
}
