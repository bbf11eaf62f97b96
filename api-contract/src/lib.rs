//! The management API's contract: the request and answer bodies of `/api/v1`, as serde types
//! shared by the daemon (which writes them) and its clients: the CLI reads them from the
//! daemon's socket, or gets the very same values from a supervisor in its own process.
//!
//! Only data lives here: no I/O, no daemon code, and nothing of the worker protocol, so a
//! client links this crate alone and a change to the worker protocol never changes the API.
//! Every answer the daemon writes goes through these types, so a field renamed here is renamed
//! on both sides at once; unknown fields are ignored when reading, so an older client still
//! reads a newer daemon's answers.
#![deny(missing_docs)]

pub mod agents;
pub mod conversations;
pub mod error;
pub mod memory;
pub mod protocols;
pub mod routing;
pub mod runs;
pub mod status;
pub mod tools;

pub use error::{ErrorAnswer, ErrorDetail};
pub use runs::{
    ExecutionList, ExecutionRecord, ExecutionReport, Outcome, Placement, RunRequest, StreamLine,
    ToolCallRecord, Usage,
};
pub use status::{
    Health, KillAnswer, KillRequest, LiveWorker, LogFilter, StatusReport, WorkerList, WorkerState,
};
