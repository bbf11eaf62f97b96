//! The worker protocol: the only types that cross the supervisor/worker process boundary.
//!
//! A frame is a 4-byte big-endian payload length followed by a bincode 2 payload. Frames larger
//! than [`MAX_FRAME_LEN`] are refused before anything is allocated for them, and the bincode
//! decoder runs with the same limit, so a hostile length field inside a payload cannot make the
//! reader allocate more than one frame's worth either.
//!
//! The blocking functions are for the worker; with the `tokio-codec` feature, [`FrameCodec`] is
//! the same frames as a tokio-util codec, for the supervisor (the worker links no async runtime).
//!
//! The first frame on every connection is the worker's [`Hello`]; the supervisor answers
//! [`SupervisorMessage::Welcome`] or [`SupervisorMessage::VersionMismatch`]. Bincode does not
//! describe its fields, so any change to a message type must bump [`PROTOCOL_VERSION`].
#![deny(missing_docs)]

mod codec;
mod messages;
#[cfg(feature = "tokio-codec")]
mod tokio_codec;

pub use codec::{
    FrameHeader, HEADER_LEN, MAX_FRAME_LEN, ProtocolError, decode_payload, encode_frame,
    read_frame, write_frame,
};
pub use messages::{
    ChatMessage, ChatRole, CompletionFailure, CompletionRequest, CompletionResponse, Hello, Job,
    JobAgent, JobInput, PROTOCOL_VERSION, SandboxLayer, SandboxReport, SupervisorMessage,
    TEMPLATE_VARIABLES, ToolCall, ToolResult, ToolSpec, Turn, WorkerMessage,
};
#[cfg(feature = "tokio-codec")]
pub use tokio_codec::{FrameCodec, SupervisorCodec};
