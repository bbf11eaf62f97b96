//! The boundary between the worker protocol and the providers: the only file of `provider/` that
//! knows `caxton_ipc_protocol`, so either side can change without the other.

use caxton_ipc_protocol as ipc;

use super::{Completion, Message, ProviderError, ProviderRequest, ToolCall, ToolDefinition};
use crate::agent::LlmSettings;

impl ProviderRequest {
    /// The request a worker's `Complete` asks for, with the agent's `[llm]` settings applied.
    /// Fails when the worker's conversation cannot be put to a model: a tool result that answers
    /// no call, or a tool whose schema is not JSON.
    pub fn from_ipc(
        request: ipc::CompletionRequest,
        llm: &LlmSettings,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            messages: request
                .messages
                .into_iter()
                .map(Message::try_from)
                .collect::<Result<_, _>>()?,
            tools: request
                .tools
                .into_iter()
                .map(ToolDefinition::try_from)
                .collect::<Result<_, _>>()?,
            model: llm.model.clone(),
            temperature: llm.temperature,
            max_tokens: llm.max_tokens,
            top_p: llm.top_p,
            stop: llm.stop.clone(),
            seed: llm.seed,
            tool_choice: llm.tool_choice,
        })
    }
}

/// Fields a turn of another role carries (tool calls on a user turn, say) mean nothing to a
/// model and are dropped.
impl TryFrom<ipc::ChatMessage> for Message {
    type Error = ProviderError;

    fn try_from(m: ipc::ChatMessage) -> Result<Self, ProviderError> {
        Ok(match m.role {
            ipc::ChatRole::System => Self::System(m.content),
            ipc::ChatRole::User => Self::User(m.content),
            ipc::ChatRole::Assistant => Self::Assistant {
                text: m.content,
                tool_calls: m.tool_calls.into_iter().map(ToolCall::from).collect(),
            },
            ipc::ChatRole::Tool => Self::ToolResult {
                call_id: m.tool_call_id.ok_or_else(|| {
                    ProviderError::InvalidRequest(
                        "the conversation has a tool result that answers no tool call".into(),
                    )
                })?,
                content: m.content,
            },
        })
    }
}

impl From<Message> for ipc::ChatMessage {
    fn from(m: Message) -> Self {
        let text = |role, content| ipc::ChatMessage::text(role, content);
        match m {
            Message::System(content) => text(ipc::ChatRole::System, content),
            Message::User(content) => text(ipc::ChatRole::User, content),
            Message::Assistant {
                text: content,
                tool_calls,
            } => Self {
                tool_calls: tool_calls.into_iter().map(ipc::ToolCall::from).collect(),
                ..text(ipc::ChatRole::Assistant, content)
            },
            Message::ToolResult { call_id, content } => Self {
                tool_call_id: Some(call_id),
                ..text(ipc::ChatRole::Tool, content)
            },
        }
    }
}

impl From<ipc::ToolCall> for ToolCall {
    fn from(c: ipc::ToolCall) -> Self {
        Self {
            id: c.id,
            name: c.name,
            arguments: c.arguments_json,
        }
    }
}

impl From<ToolCall> for ipc::ToolCall {
    fn from(c: ToolCall) -> Self {
        Self {
            id: c.id,
            name: c.name,
            arguments_json: c.arguments,
        }
    }
}

impl TryFrom<ipc::ToolSpec> for ToolDefinition {
    type Error = ProviderError;

    fn try_from(t: ipc::ToolSpec) -> Result<Self, ProviderError> {
        let input_schema = serde_json::from_str(&t.input_schema_json).map_err(|e| {
            ProviderError::InvalidRequest(format!("tool {}: input schema is not JSON: {e}", t.name))
        })?;
        Ok(Self {
            name: t.name,
            description: t.description,
            input_schema,
        })
    }
}

/// The finish reason stays in the supervisor (the worker does not need it).
impl From<Completion> for ipc::CompletionResponse {
    fn from(c: Completion) -> Self {
        Self {
            content: c.text,
            model: c.model,
            prompt_tokens: c.usage.prompt_tokens,
            completion_tokens: c.usage.completion_tokens,
            tool_calls: c.tool_calls.into_iter().map(ipc::ToolCall::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{FinishReason, ToolChoice, Usage};

    fn call() -> ipc::ToolCall {
        ipc::ToolCall {
            id: "call_0".into(),
            name: "lookup".into(),
            arguments_json: r#"{"q":"france"}"#.into(),
        }
    }

    #[test]
    fn a_conversation_with_tool_calls_and_results_survives_the_round_trip() {
        let conversation = vec![
            ipc::ChatMessage::text(ipc::ChatRole::System, "Use tools."),
            ipc::ChatMessage::text(ipc::ChatRole::User, "Capital of France?"),
            ipc::ChatMessage {
                tool_calls: vec![call()],
                ..ipc::ChatMessage::text(ipc::ChatRole::Assistant, "")
            },
            ipc::ChatMessage {
                tool_call_id: Some("call_0".into()),
                ..ipc::ChatMessage::text(ipc::ChatRole::Tool, "France: capital Paris")
            },
        ];
        let llm = LlmSettings {
            model: Some("m".into()),
            max_tokens: Some(64),
            stop: vec!["END".into()],
            tool_choice: Some(ToolChoice::Required),
            ..LlmSettings::default()
        };
        let request = ProviderRequest::from_ipc(
            ipc::CompletionRequest {
                messages: conversation.clone(),
                tools: vec![ipc::ToolSpec {
                    name: "lookup".into(),
                    description: "Look a fact up".into(),
                    input_schema_json: r#"{"type":"object"}"#.into(),
                }],
                stream: false,
            },
            &llm,
        )
        .unwrap();
        assert_eq!(
            request.messages,
            vec![
                Message::System("Use tools.".into()),
                Message::User("Capital of France?".into()),
                Message::Assistant {
                    text: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "call_0".into(),
                        name: "lookup".into(),
                        arguments: r#"{"q":"france"}"#.into(),
                    }],
                },
                Message::ToolResult {
                    call_id: "call_0".into(),
                    content: "France: capital Paris".into(),
                },
            ]
        );
        assert_eq!(
            request.tools,
            vec![ToolDefinition {
                name: "lookup".into(),
                description: "Look a fact up".into(),
                input_schema: serde_json::json!({"type": "object"}),
            }]
        );
        assert_eq!(request.model.as_deref(), Some("m"));
        assert_eq!(request.max_tokens, Some(64));
        assert_eq!(request.stop, ["END"]);
        assert_eq!(request.tool_choice, Some(ToolChoice::Required));

        let back: Vec<ipc::ChatMessage> = request.messages.into_iter().map(Into::into).collect();
        assert_eq!(back, conversation);
    }

    #[test]
    fn a_completion_keeps_its_calls_and_token_counts_known_or_not() {
        let completion = Completion {
            text: "Looking up.".into(),
            tool_calls: vec![call().into()],
            model: "claude-x".into(),
            usage: Usage {
                prompt_tokens: Some(9),
                completion_tokens: None,
            },
            finish_reason: Some(FinishReason::ToolCalls),
        };
        assert_eq!(
            ipc::CompletionResponse::from(completion),
            ipc::CompletionResponse {
                content: "Looking up.".into(),
                model: "claude-x".into(),
                prompt_tokens: Some(9),
                completion_tokens: None,
                tool_calls: vec![call()],
            }
        );
    }

    /// The invariant of this module, checked on the source: the providers compile against
    /// their own types only, so a change to the worker protocol shows up here and nowhere else.
    #[test]
    fn no_file_of_provider_but_this_one_uses_the_worker_protocol() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/provider");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name() == Some("convert.rs".as_ref()) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("caxton_ipc_protocol"),
                "{} uses the worker protocol; convert at the boundary instead",
                path.display()
            );
            checked += 1;
        }
        assert!(
            checked >= 5,
            "only {checked} files found in {}",
            dir.display()
        );
    }

    #[test]
    fn a_conversation_a_model_cannot_be_given_is_refused_with_the_reason() {
        let request = |messages, schema: &str| ipc::CompletionRequest {
            messages,
            tools: vec![ipc::ToolSpec {
                name: "lookup".into(),
                description: String::new(),
                input_schema_json: schema.into(),
            }],
            stream: false,
        };
        let orphan = ipc::ChatMessage::text(ipc::ChatRole::Tool, "France: capital Paris");
        let err = ProviderRequest::from_ipc(request(vec![orphan], "{}"), &LlmSettings::default())
            .unwrap_err();
        assert!(err.to_string().contains("answers no tool call"), "{err}");
        let err =
            ProviderRequest::from_ipc(request(vec![], "{"), &LlmSettings::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("tool lookup: input schema is not JSON:"),
            "{err}"
        );
    }
}
