//! Framing and (de)serialisation. This is the one place that knows the format is bincode.

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes in a frame header (a big-endian `u32` payload length).
pub const HEADER_LEN: usize = 4;

/// Largest payload a frame may carry: 4 MiB. Prompts and answers are far smaller.
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// Everything that can go wrong reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A frame header announced a payload over the limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// The payload is not a valid message.
    #[error("malformed frame: {0}")]
    Decode(String),
    /// The payload decoded but left bytes over.
    #[error("malformed frame: {0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The peer closed the connection before a whole frame arrived.
    #[error("connection closed by peer")]
    Closed,
    /// The stream ended part-way through a frame (the async codec, which knows how far it got).
    #[error(
        "connection closed in the middle of a frame: {received} of its {expected} bytes arrived"
    )]
    Truncated {
        /// Bytes of the frame that arrived.
        received: usize,
        /// Bytes the frame needed, as far as known: its header's, until the header is whole.
        expected: usize,
    },
    /// The underlying socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload bytes that follow the header.
    pub payload_len: usize,
}

impl FrameHeader {
    /// Parse a header, refusing lengths over [`MAX_FRAME_LEN`].
    pub fn parse(bytes: [u8; HEADER_LEN]) -> Result<Self, ProtocolError> {
        let len = u32::from_be_bytes(bytes) as usize;
        if len > MAX_FRAME_LEN {
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        Ok(Self { payload_len: len })
    }
}

/// Encode a message as a whole frame, header included.
pub fn encode_frame<M: Serialize>(message: &M) -> Result<Vec<u8>, ProtocolError> {
    let mut frame = vec![0u8; HEADER_LEN];
    bincode::serde::encode_into_std_write(message, &mut frame, bincode_config())
        .map_err(|e| ProtocolError::Encode(e.to_string()))?;
    let len = frame.len() - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    frame[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(frame)
}

/// Decode a frame's payload (without its header) into a message.
pub fn decode_payload<M: DeserializeOwned>(payload: &[u8]) -> Result<M, ProtocolError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(ProtocolError::FrameTooLarge {
            len: payload.len(),
            max: MAX_FRAME_LEN,
        });
    }
    let (message, used) = bincode::serde::decode_from_slice(payload, bincode_config())
        .map_err(|e| ProtocolError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(ProtocolError::TrailingBytes(payload.len() - used));
    }
    Ok(message)
}

/// Read one frame from a blocking reader and decode it.
pub fn read_frame<M: DeserializeOwned>(reader: &mut impl Read) -> Result<M, ProtocolError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact_or_closed(reader, &mut header)?;
    let header = FrameHeader::parse(header)?;
    let mut payload = vec![0u8; header.payload_len];
    read_exact_or_closed(reader, &mut payload)?;
    decode_payload(&payload)
}

/// Encode a message and write it as one frame to a blocking writer.
pub fn write_frame<M: Serialize>(
    writer: &mut impl Write,
    message: &M,
) -> Result<(), ProtocolError> {
    let frame = encode_frame(message)?;
    writer.write_all(&frame)?;
    writer.flush()?;
    Ok(())
}

fn read_exact_or_closed(reader: &mut impl Read, buf: &mut [u8]) -> Result<(), ProtocolError> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ProtocolError::Closed,
        _ => ProtocolError::Io(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hello, PROTOCOL_VERSION, WorkerMessage};

    #[test]
    fn a_frame_round_trips() {
        let msg = WorkerMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_version: "0.1.0".into(),
            pid: 42,
            sandbox: crate::SandboxReport::default(),
        });
        let frame = encode_frame(&msg).unwrap();
        let back: WorkerMessage = read_frame(&mut &frame[..]).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn an_oversized_header_is_refused_before_reading_the_payload() {
        let header = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        let err = read_frame::<WorkerMessage>(&mut &header[..]).unwrap_err();
        assert!(
            matches!(err, ProtocolError::FrameTooLarge { len, .. } if len == MAX_FRAME_LEN + 1)
        );
    }

    #[test]
    fn a_truncated_frame_reads_as_closed() {
        let frame = encode_frame(&WorkerMessage::Failed {
            execution_id: "x".into(),
            error: "e".into(),
        })
        .unwrap();
        let err = read_frame::<WorkerMessage>(&mut &frame[..frame.len() - 1]).unwrap_err();
        assert!(matches!(err, ProtocolError::Closed));
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut frame = encode_frame(&crate::SupervisorMessage::Welcome).unwrap();
        frame.push(0);
        let err = decode_payload::<crate::SupervisorMessage>(&frame[HEADER_LEN..]).unwrap_err();
        assert!(matches!(err, ProtocolError::TrailingBytes(1)));
    }
}
