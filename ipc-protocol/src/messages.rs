//! The message enums, one per direction, and the records they carry.

use serde::{Deserialize, Serialize};

/// Version of the wire format; bump it on any change to a type in this module.
pub const PROTOCOL_VERSION: u32 = 7;

/// Variables every prompt template may use besides the agent's own `[parameters]` keys.
///
/// `request` is the user's text; `context` and `requirements` are optional request fields that
/// default to the empty string; `agent` is the agent's name; `parameters` is the whole table;
/// `memory_context` is the memories the supervisor found for the request (empty without
/// `[memory]`), which `context` also carries after the caller's own context;
/// `conversation_id` is the conversation the request belongs to; `history` is its earlier turns
/// (a list of `agent`, `request` and `answer`), which the model also gets as prior chat messages.
pub const TEMPLATE_VARIABLES: &[&str] = &[
    "request",
    "context",
    "requirements",
    "agent",
    "parameters",
    "memory_context",
    "conversation_id",
    "history",
];

/// The worker's first frame: who it is and which protocol it speaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The worker's [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// The worker binary's package version, for error messages.
    pub worker_version: String,
    /// The worker's own PID as it sees it.
    pub pid: u32,
    /// How it confined itself before it said hello.
    pub sandbox: SandboxReport,
}

/// How a worker confined itself before it read its job: each layer in the order applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    /// The mode it was started with: `strict`, `best-effort` or `off`.
    pub mode: String,
    /// `fds`, `no_new_privs`, `landlock`, `seccomp`, in that order.
    pub layers: Vec<SandboxLayer>,
}

/// One layer of a worker's confinement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLayer {
    /// Which layer.
    pub name: String,
    /// Whether it is in force.
    pub applied: bool,
    /// What it does here, or why it is not in force (`landlock: not supported by this kernel`).
    pub detail: String,
}

impl SandboxReport {
    /// The layers not in force, by name.
    pub fn missing(&self) -> Vec<&str> {
        self.layers
            .iter()
            .filter(|l| !l.applied)
            .map(|l| l.name.as_str())
            .collect()
    }

    /// One line for logs and `caxton status`: `strict: fds no_new_privs landlock seccomp`, with
    /// a missing layer marked `-landlock`.
    pub fn summary(&self) -> String {
        let layers: Vec<String> = self
            .layers
            .iter()
            .map(|l| {
                if l.applied {
                    l.name.clone()
                } else {
                    format!("-{}", l.name)
                }
            })
            .collect();
        format!("{}: {}", self.mode, layers.join(" "))
    }
}

/// Frames a worker sends to the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkerMessage {
    /// The handshake; always the first frame.
    Hello(Hello),
    /// Ask the supervisor for an LLM completion; answered by `Completion` with the same `call_id`.
    Complete {
        /// Chosen by the worker, echoed in the answer.
        call_id: u32,
        /// The conversation so far.
        request: CompletionRequest,
    },
    /// Run the tools the model called, in order; answered by `ToolResults` with the same
    /// `call_id`. One frame per model turn, so several calls cost one round trip.
    CallTools {
        /// Chosen by the worker, echoed in the answer.
        call_id: u32,
        /// The calls, as the model made them.
        calls: Vec<ToolCall>,
    },
    /// A piece of the answer, sent while it is generated when the job asked for streaming.
    AnswerDelta {
        /// Text to append to what was sent before.
        text: String,
    },
    /// The agent produced its answer; the worker exits 0 after sending this.
    Finished {
        /// Must match the job's execution id.
        execution_id: String,
        /// The text returned to the user.
        answer: String,
    },
    /// The agent could not answer; the worker exits non-zero after sending this.
    Failed {
        /// Must match the job's execution id.
        execution_id: String,
        /// What went wrong, for the user.
        error: String,
    },
}

/// Frames the supervisor sends to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SupervisorMessage {
    /// The handshake was accepted; the job follows.
    Welcome,
    /// The worker speaks another protocol version; the connection is closed after this frame.
    VersionMismatch {
        /// The supervisor's [`PROTOCOL_VERSION`].
        supervisor: u32,
        /// The version the worker announced.
        worker: u32,
    },
    /// The one job this worker runs (boxed: it dwarfs the other frames; the wire form is the
    /// same).
    Job(Box<Job>),
    /// A piece of a streamed completion, before its `Completion`.
    CompletionDelta {
        /// The `call_id` of the request being answered.
        call_id: u32,
        /// Text to append.
        text: String,
    },
    /// The answer to a `CallTools` request: one result per call, in the same order.
    ToolResults {
        /// The `call_id` of the request being answered.
        call_id: u32,
        /// The results.
        results: Vec<ToolResult>,
    },
    /// The answer to a `Complete` request.
    Completion {
        /// The `call_id` of the request being answered.
        call_id: u32,
        /// The completion, or why there is none.
        result: Result<CompletionResponse, CompletionFailure>,
    },
}

/// Everything a worker needs to run one agent request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique id of this execution.
    pub execution_id: String,
    /// The agent definition, as the supervisor validated it.
    pub agent: JobAgent,
    /// The user's request.
    pub input: JobInput,
    /// Whether the user watches the answer as it is generated.
    pub stream: bool,
}

/// The parts of an agent definition the worker uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobAgent {
    /// Normalised agent name.
    pub name: String,
    /// The agent's version string.
    pub version: String,
    /// Template for the system message.
    pub system_prompt: String,
    /// Template for the user message.
    pub user_prompt_template: String,
    /// The `[parameters]` table as JSON text (bincode cannot carry self-describing values).
    pub parameters_json: String,
    /// The tools the agent may call, as the supervisor resolved its `tools` list.
    pub tools: Vec<ToolSpec>,
    /// Tool calls this request may make before the model must answer.
    pub max_tool_calls: u32,
}

/// The user's request and its optional fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobInput {
    /// The request text.
    pub request: String,
    /// Extra data the caller supplies.
    pub context: String,
    /// What the caller wants from the answer.
    pub requirements: String,
    /// The agent's memories most relevant to the request, one per line, added by the
    /// supervisor (the caller's value is replaced).
    pub memory_context: String,
    /// The conversation the request belongs to.
    pub conversation_id: String,
    /// The conversation's earlier turns, oldest first, added by the supervisor.
    pub history: Vec<Turn>,
}

/// One earlier exchange of a conversation: a request and the answer it got.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// The agent that answered.
    pub agent: String,
    /// What it was asked.
    pub request: String,
    /// What it answered.
    pub answer: String,
}

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatRole {
    /// Instructions for the model.
    System,
    /// The user's turn.
    User,
    /// The model's turn.
    Assistant,
    /// A tool's result, answering the assistant's call with `tool_call_id`.
    Tool,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: ChatRole,
    /// What was said.
    pub content: String,
    /// Tools the assistant called in this turn.
    pub tool_calls: Vec<ToolCall>,
    /// For a `Tool` turn: the call it answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A plain text turn.
    pub fn text(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// MCP tool name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its arguments, as JSON text.
    pub input_schema_json: String,
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for the call, echoed in the result turn.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as JSON text.
    pub arguments_json: String,
}

/// What a tool call produced, for the model's next turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The call's id, from [`ToolCall::id`].
    pub tool_call_id: String,
    /// The result as text (the tool's text content, or its structured content as JSON).
    pub content: String,
    /// Whether the call failed; the content then says why.
    pub is_error: bool,
}

/// A completion the worker asks for; the supervisor applies the agent's `[llm]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// The conversation, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Send `CompletionDelta` frames while generating.
    pub stream: bool,
}

/// A completion the supervisor obtained from a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    /// The model's answer.
    pub content: String,
    /// The provider's name for the model that answered.
    pub model: String,
    /// Tokens in the prompt, as the provider counted them; `None` when it did not say.
    pub prompt_tokens: Option<u32>,
    /// Tokens in the answer, as the provider counted them; `None` when it did not say.
    pub completion_tokens: Option<u32>,
    /// Tools the model called instead of (or besides) answering.
    pub tool_calls: Vec<ToolCall>,
}

/// Why a completion failed, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionFailure {
    /// The message shown to the user.
    pub message: String,
}
