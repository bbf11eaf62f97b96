//! Caxton's embedded memory: a knowledge graph of entities, observations and relations in
//! SQLite, embedded with all-MiniLM-L6-v2 (weights converted with candle, the forward pass
//! over gemm: see `embed.rs`), searchable by meaning, by keyword and by graph, in scopes (one
//! agent, one workspace, global), portable as JSON.
//!
//! The supervisor owns one [`Memory`] (it is `Send + Sync`; share it in an `Arc`) and one
//! [`MiniLm`]. Every method blocks (SQLite, the model), so async callers run them in
//! `spawn_blocking`. Every method takes the [`Scope`] it works in explicitly: this crate never
//! decides what an agent may reach; the supervisor checks the agent's `[memory]` table and then
//! names the scope.
//!
//! What is stored where:
//! - `entities`: unique `(scope, name)`, a type, metadata (a JSON object), created and
//!   updated times.
//! - `observations`: facts about an entity, each with its embedding (384 little-endian f32).
//!   The embedded text is `"{entity name}: {observation}"`, so a question naming the entity
//!   finds its facts.
//! - `relations`: directed `(from, to, type)` with a strength in 0..=1, unique per triple,
//!   both ends in the same scope.
//! - `memory_fts`: an FTS5 index of entity names and observation texts.
//!
//! Semantic search scans an in-memory copy of all embeddings ([`index`]); see
//! [`Memory::search`] for how the three search modes rank.
#![deny(missing_docs)]

mod db;
mod embed;
mod error;
mod export;
mod graph;
pub mod index;
mod mcp_jsonl;
mod scope;
mod search;
mod store;
mod types;

pub use db::{SCHEMA_VERSION, Synchronous};
#[cfg(feature = "test-support")]
pub use embed::HashEmbedder;
pub use embed::{
    DEFAULT_FETCH_HINT, EmbedError, Embedder, MAX_TOKENS, MINILM_DIR_NAME, MINILM_MODEL_ID, MiniLm,
};
pub use error::{MemoryError, Result};
pub use export::{
    EXPORT_FORMAT, EXPORT_VERSION, ExportEntity, ExportObservation, ExportRelation, ExportRequest,
    ImportOptions, ImportReport, MemoryExport,
};
pub use graph::{Direction, GraphQuery, MAX_DEPTH, Neighbour, PathStep};
pub use scope::{MAX_NAMESPACE_BYTES, Scope, ScopeKind};
pub use search::{MAX_LIMIT, SearchHit, SearchMode, SearchRequest};
pub use store::{Memory, MemoryOptions};
pub use types::{
    DEFAULT_MAX_OBSERVATION_BYTES, EMBEDDING_DIM, Entity, EntityId, EntityInput,
    MAX_METADATA_BYTES, MAX_NAME_BYTES, MAX_TYPE_BYTES, Observation, ObservationId, Relation,
    Stats, Timestamp, Upserted, Vector, text_from_bytes,
};
