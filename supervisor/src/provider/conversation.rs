//! The conversation and the completion as providers see them: the provider layer's own types, so
//! a change here never touches the worker protocol (`convert.rs` is the one place they meet).

use serde_json::Value;

/// One turn of the conversation. Each kind carries only what that kind of turn can say, so a
/// provider maps every turn without checking for fields that do not belong to it.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Instructions for the model.
    System(String),
    /// The user's turn.
    User(String),
    /// The model's earlier turn: its text (possibly empty) and the tools it called.
    Assistant {
        /// What it said.
        text: String,
        /// The calls it made, answered by the [`Message::ToolResult`] turns that follow.
        tool_calls: Vec<ToolCall>,
    },
    /// What one tool call produced.
    ToolResult {
        /// The [`ToolCall::id`] it answers.
        call_id: String,
        /// The result as text.
        content: String,
    },
}

impl Message {
    /// The turn's text: what was said, or the tool's result.
    pub fn text(&self) -> &str {
        match self {
            Self::System(text) | Self::User(text) | Self::Assistant { text, .. } => text,
            Self::ToolResult { content, .. } => content,
        }
    }
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The server's id for the call (made up when the server gave none), echoed in the result.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model wrote them. Kept as text: a model may write JSON that does not
    /// parse, and the tool result must then say so to the model rather than fail the request.
    pub arguments: String,
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    /// The tool's name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// The JSON Schema of its arguments.
    pub input_schema: Value,
}

/// Token counts as the server reported them; `None` where it did not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: Option<u32>,
    /// Tokens in the answer.
    pub completion_tokens: Option<u32>,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// It ended its turn or reached a stop sequence.
    Stop,
    /// It reached the token limit: the answer is cut short.
    Length,
    /// It stopped to call tools.
    ToolCalls,
    /// Any other reason, in the server's words (a content filter, a refusal, ...).
    Other(String),
}

impl FinishReason {
    /// Read a reason as either HTTP protocol names it (OpenAI's `finish_reason`, Anthropic's
    /// `stop_reason`).
    pub fn from_wire(reason: &str) -> Self {
        match reason {
            "stop" | "end_turn" | "stop_sequence" => Self::Stop,
            "length" | "max_tokens" => Self::Length,
            "tool_calls" | "function_call" | "tool_use" => Self::ToolCalls,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The reason as the OpenTelemetry GenAI conventions spell it (`gen_ai.response.finish_reasons`).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::Other(reason) => reason,
        }
    }
}

/// One completion: the answer, the calls, and what the server said about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The answer text (empty when the model only called tools).
    pub text: String,
    /// Tools the model called instead of (or besides) answering.
    pub tool_calls: Vec<ToolCall>,
    /// The server's name for the model that answered.
    pub model: String,
    /// Token counts.
    pub usage: Usage,
    /// Why it stopped, when the server said.
    pub finish_reason: Option<FinishReason>,
}
