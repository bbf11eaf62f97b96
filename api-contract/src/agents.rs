//! Agents as the API shows them: the agent file's settings tables (`[llm]`, `[memory]`), a
//! deployed agent in summary and in full, and the answers of deploy, validate, remove and
//! reload. The supervisor parses agent files into these settings, so the file, the API and
//! the CLI share one model of them.

use serde::{Deserialize, Serialize};

/// `tool_choice`: how a model offered tools is told to use them. Some servers (llama.cpp's)
/// call tools only when asked to, so Caxton always says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoice {
    /// The model decides whether to call tools.
    #[default]
    Auto,
    /// The model must not call tools.
    None,
    /// The model must call at least one tool (Anthropic's `any`, accepted under that name too).
    #[serde(alias = "any")]
    Required,
}

/// An agent file that cannot be used, with where and why.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
#[error("{file}:{line}: {reason}")]
pub struct AgentFileError {
    /// The file (or the name the source was given).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Memory scope of an agent's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
pub enum MemoryScope {
    /// Private to the agent (`"agent-only"`; `"agent"` is accepted too).
    #[default]
    #[serde(rename = "agent-only", alias = "agent")]
    Agent,
    /// Shared by the agents working in the same workspace.
    #[serde(rename = "workspace")]
    Workspace,
    /// Shared by all agents.
    #[serde(rename = "global")]
    Global,
}

/// The workspace of a `scope = "workspace"` agent whose request names none.
pub const DEFAULT_WORKSPACE: &str = "default";
/// Memories put in the prompt when `[memory] search_limit` is not set.
pub const DEFAULT_MEMORY_SEARCH_LIMIT: u32 = 5;
/// Least cosine similarity of a memory put in the prompt when `[memory] min_similarity` is not
/// set. all-MiniLM-L6-v2 scores a fact that answers a question around 0.5 to 0.7 and unrelated
/// text below 0.2, so the seed's 0.7 would drop most useful memories.
pub const DEFAULT_MEMORY_MIN_SIMILARITY: f32 = 0.3;

/// Delegation depth below a request's root when no agent on the path sets `max_depth`.
pub const DEFAULT_DELEGATION_DEPTH: u32 = 3;
/// The deepest delegation tree any agent file may allow.
pub const MAX_DELEGATION_DEPTH: u32 = 16;

/// `[delegation]`: whom an agent's model may ask, through the delegation tools, and the limits
/// of the trees its requests start.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationSettings {
    /// Agents it may ask by name.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Capabilities it may ask (the supervisor picks the agent).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Topics it may publish notifications to.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Levels of delegation allowed below this agent; the tightest limit on a path holds.
    #[serde(default)]
    pub max_depth: Option<u32>,
    /// Tokens the whole tree of a request this agent roots may spend (every model call of every
    /// execution in it); unset: `[delegation] token_budget` of the config.
    #[serde(default)]
    pub token_budget: Option<u64>,
    /// Tool calls (delegations included) the whole tree may make; unset: the config's.
    #[serde(default)]
    pub tool_call_budget: Option<u64>,
    /// A2A agents on other servers it may ask by name (`[[delegation.remote]]`).
    #[serde(default)]
    pub remote: Vec<RemoteAgent>,
}

impl DelegationSettings {
    /// Whether the agent may delegate at all.
    pub fn enabled(&self) -> bool {
        !(self.agents.is_empty()
            && self.capabilities.is_empty()
            && self.topics.is_empty()
            && self.remote.is_empty())
    }
}

/// `[[delegation.remote]]`: an A2A agent on another server (another Caxton, or any A2A 0.3.0
/// server) that an agent may ask with `ask_agent`, as it asks a local one.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemoteAgent {
    /// The name the agent's model asks it by.
    pub name: String,
    /// The URL of its agent card (`https://host/a2a/NAME/.well-known/agent-card.json`). Its
    /// host and port are the only ones the call may reach, a loopback or private address
    /// included when written here literally.
    pub card: String,
    /// The environment variable of the daemon that holds the bearer token the other server
    /// asks for; unset, no token is sent.
    #[serde(default)]
    pub token_env: Option<String>,
}

/// `[memory]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySettings {
    /// Whether the agent uses memory at all.
    #[serde(default)]
    pub enabled: bool,
    /// Which memory it sees.
    #[serde(default)]
    pub scope: MemoryScope,
    /// The workspace whose memory it shares, with `scope = "workspace"`. Unset, each request
    /// names it (or gets [`DEFAULT_WORKSPACE`]); set, a request naming another is refused.
    #[serde(default)]
    pub workspace: Option<String>,
    /// Store each successful request and its answer as an observation.
    #[serde(default)]
    pub auto_store: bool,
    /// Most memories put in the prompt.
    #[serde(default = "default_search_limit")]
    pub search_limit: u32,
    /// Least similarity of a memory put in the prompt, -1 to 1.
    #[serde(default = "default_min_similarity")]
    pub min_similarity: f32,
}

fn default_search_limit() -> u32 {
    DEFAULT_MEMORY_SEARCH_LIMIT
}

fn default_min_similarity() -> f32 {
    DEFAULT_MEMORY_MIN_SIMILARITY
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            enabled: false,
            scope: MemoryScope::default(),
            workspace: None,
            auto_store: false,
            search_limit: DEFAULT_MEMORY_SEARCH_LIMIT,
            min_similarity: DEFAULT_MEMORY_MIN_SIMILARITY,
        }
    }
}

/// `[llm]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    /// A `[providers.NAME]` of the supervisor configuration; default: `[defaults] provider`.
    pub provider: Option<String>,
    /// Model override.
    pub model: Option<String>,
    /// Sampling temperature, 0 to 2.
    pub temperature: Option<f32>,
    /// Most tokens in the answer.
    pub max_tokens: Option<u32>,
    /// Nucleus sampling, 0 to 1.
    pub top_p: Option<f32>,
    /// The answer ends before the first of these.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Sampling seed, so a request can be repeated.
    pub seed: Option<u64>,
    /// Overrides the provider's `tool_choice`.
    pub tool_choice: Option<ToolChoice>,
}

/// An agent in lists and deploy answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSummary {
    /// Normalised name.
    pub name: String,
    /// The name as written in the file.
    pub declared_name: String,
    /// Version string.
    pub version: String,
    /// One-line description.
    pub description: Option<String>,
    /// What the agent can do.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// MCP tools it may call.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Model choice.
    #[serde(default)]
    pub llm: LlmSettings,
}

/// A deployed agent in full (`GET /api/v1/agents/{name}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentDetail {
    /// Normalised name.
    pub name: String,
    /// The name as written in the file.
    pub declared_name: String,
    /// Version string.
    pub version: String,
    /// One-line description.
    pub description: Option<String>,
    /// What the agent can do.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// MCP tools it may call.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Memory use.
    #[serde(default)]
    pub memory: MemorySettings,
    /// Whom it may delegate to.
    #[serde(default)]
    pub delegation: DelegationSettings,
    /// Topics whose notifications start a request of it.
    #[serde(default)]
    pub subscriptions: Vec<String>,
    /// Free-form parameters, also visible to templates.
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// System prompt template.
    pub system_prompt: String,
    /// User prompt template.
    pub user_prompt_template: String,
    /// Markdown documentation.
    pub documentation: Option<String>,
    /// Model choice.
    #[serde(default)]
    pub llm: LlmSettings,
    /// Per-request deadline in seconds, if the agent sets one.
    pub timeout: Option<f64>,
    /// Address-space limit in bytes, if the agent sets one.
    pub memory_limit: Option<u64>,
    /// Tool calls one request may make before the model must answer.
    pub max_tool_calls: u32,
    /// Accepted but suspicious layouts.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The TOML source as deployed.
    #[serde(default)]
    pub source: String,
}

/// `GET /api/v1/agents`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentList {
    /// Deployed agents, by name.
    pub agents: Vec<AgentSummary>,
}

/// Body of `POST /api/v1/agents` (deploy) and `POST /api/v1/agents/validate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSource {
    /// The agent file's TOML.
    pub source: String,
    /// The file's name, for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Answer of a deploy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployAnswer {
    /// The agent now deployed.
    pub agent: AgentSummary,
    /// Where its file was written.
    pub path: String,
    /// Whether it replaced a deployed version.
    pub replaced: bool,
    /// Accepted but suspicious things, and tools that are not deployed.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Answer of a validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidateAnswer {
    /// Always true: an invalid file is an error answer.
    pub valid: bool,
    /// The agent the file defines.
    pub agent: AgentSummary,
    /// Accepted but suspicious things, and tools that are not deployed.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Answer of a removal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveAnswer {
    /// The agent removed.
    pub removed: String,
}

/// What a reload found (`POST /api/v1/agents/reload`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Agents now deployed.
    pub loaded: usize,
    /// Files that could not be used (their previous version, if any, stays deployed).
    #[serde(default)]
    pub errors: Vec<AgentFileError>,
    /// Warnings of the files that were loaded.
    #[serde(default)]
    pub warnings: Vec<String>,
}
