//! The memory tools every agent with `[memory] enabled` is offered (`memory_search`,
//! `memory_store`, `memory_relate`), served by the supervisor as a [`ToolProvider`] like the
//! WebAssembly servers: granted with the agent's memory, their arguments checked against their
//! JSON Schema before anything runs, each call working in the scope its execution's grant holds
//! and counted in `caxton_memory_operations_total`.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use caxton_ipc_protocol::ToolSpec;
use caxton_memory::{Memory, MemoryError, Relation, Scope, SearchMode, SearchRequest};
use caxton_tool_host::ArgumentSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::MemoryService;
use crate::agent::AgentDefinition;
use crate::tools::{CallOutcome, Granted, ToolCallContext, ToolProvider, error_result};

/// The memory tools' names.
pub const MEMORY_TOOLS: [&str; 3] = ["memory_search", "memory_store", "memory_relate"];

/// Who serves the memory tools, for the error a clashing tool package gets.
pub const MEMORY_TOOLS_OWNER: &str = "the supervisor's memory";

/// The memory tools as names the tool registry reserves for their provider.
pub fn reserved_names() -> [(&'static str, &'static str); 3] {
    MEMORY_TOOLS.map(|t| (t, MEMORY_TOOLS_OWNER))
}

/// Results the `memory_search` tool returns at most.
const TOOL_SEARCH_MAX: usize = 50;

/// A memory tool as offered to models, with its compiled schema.
struct MemoryTool {
    spec: ToolSpec,
    schema: ArgumentSchema,
}

/// The schemas are constants of this file; the unit tests prove each compiles.
static TOOLS: LazyLock<Vec<MemoryTool>> = LazyLock::new(|| {
    let spec = |name: &str, description: &str, schema: Value| MemoryTool {
        spec: ToolSpec {
            name: name.to_owned(),
            description: description.to_owned(),
            input_schema_json: schema.to_string(),
        },
        #[allow(
            clippy::expect_used,
            reason = "a constant schema, compiled by the unit tests"
        )]
        schema: ArgumentSchema::compile(&schema).expect("memory tool schemas are valid"),
    };
    vec![
        spec(
            "memory_search",
            "Search your long-term memory by meaning and keywords. Returns the entities found with the observation that matched best.",
            json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for, in natural language."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": TOOL_SEARCH_MAX, "description": "Most results (default 5)."},
                    "mode": {"type": "string", "enum": ["hybrid", "semantic", "keyword"]}
                },
                "required": ["query"],
                "additionalProperties": false
            }),
        ),
        spec(
            "memory_store",
            "Remember facts: create or update an entity (a person, project, preference...) and add observations about it.",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "The entity's unique name."},
                    "entity_type": {"type": "string", "description": "Its kind, e.g. person, project."},
                    "observations": {"type": "array", "items": {"type": "string"}, "description": "Facts about it, one sentence each."}
                },
                "required": ["name", "observations"],
                "additionalProperties": false
            }),
        ),
        spec(
            "memory_relate",
            "Remember how two stored entities are related, e.g. Ada works_at Acme.",
            json!({
                "type": "object",
                "properties": {
                    "from": {"type": "string"},
                    "to": {"type": "string"},
                    "relation_type": {"type": "string", "description": "A verb phrase in snake_case, e.g. works_at."},
                    "strength": {"type": "number", "minimum": 0, "maximum": 1}
                },
                "required": ["from", "to", "relation_type"],
                "additionalProperties": false
            }),
        ),
    ]
});

/// The memory tools as a tool provider.
pub struct MemoryTools {
    service: Arc<MemoryService>,
}

impl MemoryTools {
    /// Serve the memory tools from `service`.
    pub fn new(service: Arc<MemoryService>) -> Self {
        Self { service }
    }

    /// The memory tools offered to a model.
    pub fn specs() -> Vec<ToolSpec> {
        TOOLS.iter().map(|t| t.spec.clone()).collect()
    }
}

#[async_trait::async_trait]
impl ToolProvider for MemoryTools {
    fn grant(&self, _agent: &AgentDefinition, memory: Option<&Scope>) -> Granted {
        Granted {
            tools: if memory.is_some() {
                Self::specs()
            } else {
                Vec::new()
            },
            matched: Vec::new(),
        }
    }

    #[tracing::instrument(skip_all, fields(tool))]
    async fn call(&self, tool: &str, arguments: Value, ctx: &ToolCallContext) -> CallOutcome {
        let started = Instant::now();
        let shown = arguments.to_string();
        let finish = |result: Value, outcome: &str, error: Option<String>| {
            let counted = match outcome {
                "ok" => "ok",
                "invalid" | "refused" => "refused",
                _ => "failed",
            };
            self.service.record(tool, counted, started);
            CallOutcome::new(tool, &shown, started, result, outcome, error)
        };
        let Some(scope) = ctx.memory.clone() else {
            let message = format!("{tool}: this agent's memory is not enabled");
            return finish(error_result(&message), "refused", Some(message));
        };
        let parsed = match MemoryToolCall::parse(tool, arguments) {
            Ok(p) => p,
            Err(message) => return finish(error_result(&message), "invalid", Some(message)),
        };
        match self.service.run(move |m| parsed.run(m, &scope)).await {
            Ok(value) => finish(
                json!({
                    "content": [{"type": "text", "text": value.to_string()}],
                    "structuredContent": value,
                    "isError": false,
                }),
                "ok",
                None,
            ),
            Err(e) => {
                let message = e.to_string();
                finish(error_result(&message), "tool_error", Some(message))
            }
        }
    }
}

/// A memory tool call with its arguments checked.
enum MemoryToolCall {
    Search {
        query: String,
        limit: Option<usize>,
        mode: Option<SearchMode>,
    },
    Store {
        name: String,
        entity_type: Option<String>,
        observations: Vec<String>,
    },
    Relate(Relation),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    query: String,
    limit: Option<usize>,
    mode: Option<SearchMode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreArgs {
    name: String,
    entity_type: Option<String>,
    observations: Vec<String>,
}

impl MemoryToolCall {
    /// Check `arguments` against the tool's schema (as every WebAssembly tool's are), then read
    /// them; the error is the message the model gets.
    fn parse(name: &str, arguments: Value) -> Result<Self, String> {
        let Some(tool) = TOOLS.iter().find(|t| t.spec.name == name) else {
            return Err(format!("{name} is not a memory tool"));
        };
        tool.schema
            .check(name, &arguments)
            .map_err(|e| e.to_string())?;
        let invalid = |e: serde_json::Error| format!("invalid arguments for {name}: {e}");
        match name {
            "memory_search" => {
                let a: SearchArgs = serde_json::from_value(arguments).map_err(invalid)?;
                Ok(Self::Search {
                    query: a.query,
                    limit: a.limit,
                    mode: a.mode,
                })
            }
            "memory_store" => {
                let a: StoreArgs = serde_json::from_value(arguments).map_err(invalid)?;
                Ok(Self::Store {
                    name: a.name,
                    entity_type: a.entity_type,
                    observations: a.observations,
                })
            }
            "memory_relate" => {
                let r: Relation = serde_json::from_value(arguments).map_err(invalid)?;
                Ok(Self::Relate(r))
            }
            other => Err(format!("{other} is not a memory tool")),
        }
    }

    fn run(self, memory: &Memory, scope: &Scope) -> Result<Value, MemoryError> {
        match self {
            Self::Search { query, limit, mode } => {
                let mut request = SearchRequest::new(query, vec![scope.clone()]);
                request.limit = limit.unwrap_or(5);
                request.mode = mode.unwrap_or_default();
                let hits = memory.search(&request)?;
                Ok(json!({
                    "results": hits.iter().map(|h| json!({
                        "name": h.name,
                        "entity_type": h.entity_type,
                        "observation": h.observation.as_ref().map(|o| o.text.as_str()),
                        "similarity": h.similarity,
                    })).collect::<Vec<_>>()
                }))
            }
            Self::Store {
                name,
                entity_type,
                observations,
            } => {
                let input =
                    super::entity_input(memory, scope, name, entity_type, observations, None)?;
                let upserted = memory.upsert_entity(scope, &input)?;
                Ok(json!({
                    "name": input.name,
                    "created": upserted.created,
                    "observations_added": upserted.added_observations.len(),
                }))
            }
            Self::Relate(relation) => {
                memory.relate(scope, &relation)?;
                Ok(json!({"related": true}))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn memory_tool_arguments_are_checked_against_their_schema_before_anything_runs() {
        assert!(MemoryToolCall::parse("memory_search", json!({"query": "tea"})).is_ok());
        let err = MemoryToolCall::parse("memory_search", json!({"query": "tea", "limit": 0}))
            .err()
            .unwrap();
        assert!(
            err.starts_with("invalid arguments for memory_search: /limit:"),
            "{err}"
        );
        let err = MemoryToolCall::parse("memory_store", json!({"name": "Ada"}))
            .err()
            .unwrap();
        assert!(err.contains("observations"), "{err}");
        let err = MemoryToolCall::parse(
            "memory_relate",
            json!({"from": "a", "to": "b", "kind": "x"}),
        )
        .err()
        .unwrap();
        assert!(
            err.contains("relation_type") && err.contains("kind"),
            "{err}"
        );
        let err = MemoryToolCall::parse(
            "memory_relate",
            json!({"from": "a", "to": "b", "relation_type": "r", "strength": 2}),
        )
        .err()
        .unwrap();
        assert!(err.contains("/strength"), "{err}");
        let err = MemoryToolCall::parse("memory_search", json!("tea"))
            .err()
            .unwrap();
        assert!(err.contains("object"), "{err}");
    }

    #[test]
    fn every_memory_tool_has_a_schema_the_tool_loop_can_offer() {
        let specs = MemoryTools::specs();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, MEMORY_TOOLS);
        for s in &specs {
            let schema: Value = serde_json::from_str(&s.input_schema_json).unwrap();
            assert_eq!(schema["type"], "object", "{}", s.name);
            assert_eq!(schema["additionalProperties"], false, "{}", s.name);
        }
    }
}
