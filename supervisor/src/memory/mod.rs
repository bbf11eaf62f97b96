//! The supervisor's side of the embedded memory.
//!
//! - [`service`]: the store, the embedding model loaded on first use, the blocking pool and the
//!   metrics; the prompt's memories and `auto_store`.
//! - [`scope`]: which memory a request reaches, decided when the run is prepared, never by the
//!   worker.
//! - [`tools`]: `memory_search`, `memory_store` and `memory_relate` as a tool provider.
//! - [`operations`]: every management operation (`/api/v1/memory`, `caxton memory`).

pub mod operations;
pub mod scope;
pub mod service;
pub mod tools;

pub use operations::{
    DEFAULT_ENTITY_TYPE, EntityUpsert, Export, FileFormat, MemoryOp, OperationError,
    OperationReply, entity_input,
};
pub use scope::{ScopeError, request_scope};
pub use service::{MemoryService, outcome_of};
pub use tools::{MEMORY_TOOLS, MEMORY_TOOLS_OWNER, MemoryTools, reserved_names};
