//! The tools an agent's model may call, whoever serves them: the deployed WebAssembly tool
//! servers ([`servers`]) and the supervisor's own memory tools (`crate::memory::MemoryTools`)
//! are both a [`ToolProvider`], so an execution's grant offers, checks and calls them the same
//! way, and every call ends as a [`CallOutcome`] with the record the execution keeps.

pub mod servers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use caxton_ipc_protocol::ToolSpec;
use serde_json::Value;

use crate::agent::AgentDefinition;

pub use caxton_api_contract::ToolCallRecord;

pub use servers::{
    MAX_CONCURRENT_CALLS, ToolError, ToolRegistry, ToolServerDetail, ToolServerInfo, ToolSource,
};

/// Who calls a tool and what the call may reach, fixed by the caller's grant.
#[derive(Debug, Clone, Default)]
pub struct ToolCallContext {
    /// The calling agent's workspace directory (WebAssembly servers' `{workspace}` grants).
    pub workspace: Option<PathBuf>,
    /// The memory the caller reaches; `None` when its memory is off.
    pub memory: Option<caxton_memory::Scope>,
    /// The calling agent.
    pub caller: Option<Arc<AgentDefinition>>,
    /// Where the calling execution sits in its tree (what a delegation is checked against).
    pub lineage: Option<Arc<crate::delegation::Lineage>>,
}

/// What a provider grants one agent: the tools offered to its model, and which of the agent's
/// `tools` entries it matched (an entry no provider matches earns a warning).
#[derive(Debug, Default)]
pub struct Granted {
    /// Tools offered, by name.
    pub tools: Vec<ToolSpec>,
    /// The agent's `tools` entries this provider matched.
    pub matched: Vec<String>,
}

/// A source of tools: what it grants an agent, and how it runs a call.
#[async_trait::async_trait]
pub trait ToolProvider: Send + Sync {
    /// The tools of this provider `agent` may use in a run that reaches `memory`.
    fn grant(&self, agent: &AgentDefinition, memory: Option<&caxton_memory::Scope>) -> Granted;

    /// Run one call of a tool this provider granted; every failure is an `isError` result.
    async fn call(&self, tool: &str, arguments: Value, ctx: &ToolCallContext) -> CallOutcome;
}

/// What a call returns to its caller: the MCP `CallToolResult` and how it went.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The MCP `CallToolResult` (`content`, optional `structuredContent`, `isError`).
    pub result: Value,
    /// The record of the call.
    pub record: ToolCallRecord,
}

impl CallOutcome {
    /// A finished call's result and its record.
    pub fn new(
        tool: &str,
        arguments: &str,
        started: Instant,
        result: Value,
        outcome: &str,
        error: Option<String>,
    ) -> Self {
        let record = ToolCallRecord {
            tool: tool.to_owned(),
            arguments: cut(arguments, 4096),
            result_bytes: result_text(&result).len(),
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            outcome: outcome.to_owned(),
            error,
        };
        Self { result, record }
    }

    /// A call refused before it ran (not granted, arguments not JSON): `outcome` is `refused`
    /// or `invalid`.
    pub fn refused(tool: &str, arguments: &str, outcome: &str, message: String) -> Self {
        tracing::warn!(tool, outcome, error = %message, "tool call refused");
        Self::new(
            tool,
            arguments,
            Instant::now(),
            error_result(&message),
            outcome,
            Some(message),
        )
    }

    /// Whether the tool reported an error.
    pub fn is_error(&self) -> bool {
        self.result.get("isError").and_then(Value::as_bool) == Some(true)
    }
}

/// An MCP `CallToolResult` that reports an error.
pub fn error_result(message: &str) -> Value {
    serde_json::json!({ "content": [{ "type": "text", "text": message }], "isError": true })
}

/// What the model reads of a result: its text content, or its structured content as JSON.
pub fn result_text(result: &Value) -> String {
    let texts: Vec<&str> = result
        .get("content")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|c| c.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if !texts.is_empty() {
        return texts.join("\n");
    }
    match result.get("structuredContent") {
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// `text`, cut at `max` bytes (on a character boundary) with a mark saying so.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} more bytes cut]", &text[..end], text.len() - end)
}
