//! The worker's side of the socket: handshake, then typed frames in each direction.

use std::os::unix::net::UnixStream;

use caxton_ipc_protocol::{
    Hello, PROTOCOL_VERSION, ProtocolError, SandboxReport, SupervisorMessage, WorkerMessage,
    read_frame, write_frame,
};

/// A connection to the supervisor after a successful handshake.
pub struct Channel {
    socket: UnixStream,
}

/// Why the conversation with the supervisor broke down.
#[derive(Debug)]
pub enum ChannelError {
    /// Framing or socket failure.
    Protocol(ProtocolError),
    /// The supervisor refused our protocol version.
    VersionMismatch { supervisor: u32, worker: u32 },
    /// The supervisor sent a frame we did not expect at this point.
    Unexpected {
        expected: &'static str,
        received: String,
    },
}

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "supervisor connection: {e}"),
            Self::VersionMismatch { supervisor, worker } => write!(
                f,
                "protocol version mismatch: supervisor speaks v{supervisor}, this worker speaks v{worker}"
            ),
            Self::Unexpected { expected, received } => {
                write!(
                    f,
                    "expected {expected} from the supervisor, received {received}"
                )
            }
        }
    }
}

impl From<ProtocolError> for ChannelError {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl Channel {
    /// Send our `Hello`, with how we confined ourselves, and wait for the supervisor's verdict.
    pub fn handshake(mut socket: UnixStream, sandbox: SandboxReport) -> Result<Self, ChannelError> {
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            sandbox,
        };
        write_frame(&mut socket, &WorkerMessage::Hello(hello))?;
        match read_frame(&mut socket)? {
            SupervisorMessage::Welcome => Ok(Self { socket }),
            SupervisorMessage::VersionMismatch { supervisor, worker } => {
                Err(ChannelError::VersionMismatch { supervisor, worker })
            }
            other => Err(ChannelError::Unexpected {
                expected: "Welcome",
                received: describe(&other),
            }),
        }
    }

    /// Send one frame.
    pub fn send(&mut self, message: &WorkerMessage) -> Result<(), ChannelError> {
        Ok(write_frame(&mut self.socket, message)?)
    }

    /// Receive one frame.
    pub fn receive(&mut self) -> Result<SupervisorMessage, ChannelError> {
        Ok(read_frame(&mut self.socket)?)
    }
}

/// Name a frame for an error message without dumping its contents.
pub fn describe(message: &SupervisorMessage) -> String {
    match message {
        SupervisorMessage::Welcome => "Welcome",
        SupervisorMessage::VersionMismatch { .. } => "VersionMismatch",
        SupervisorMessage::Job(_) => "Job",
        SupervisorMessage::CompletionDelta { .. } => "CompletionDelta",
        SupervisorMessage::Completion { .. } => "Completion",
        SupervisorMessage::ToolResults { .. } => "ToolResults",
    }
    .to_owned()
}
