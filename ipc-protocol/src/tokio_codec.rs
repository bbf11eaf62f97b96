//! The frames of [`codec`](crate::codec) as a tokio-util [`Decoder`]/[`Encoder`], for a peer on an
//! async runtime. It frames and (de)serialises through the same functions as the blocking side,
//! so both sides put the same bytes on the wire and refuse the same frames with the same errors.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::codec::{FrameHeader, HEADER_LEN, ProtocolError, decode_payload, encode_frame};
use crate::{SupervisorMessage, WorkerMessage};

/// Decodes frames into `In` messages and encodes `Out` messages as frames.
pub struct FrameCodec<In, Out> {
    // fn(Out) -> In: the codec holds neither, so it is Send and Sync whatever they are.
    messages: PhantomData<fn(Out) -> In>,
}

/// The supervisor's end: reads what a worker sends, writes what the supervisor sends.
pub type SupervisorCodec = FrameCodec<WorkerMessage, SupervisorMessage>;

impl<In, Out> FrameCodec<In, Out> {
    /// A codec; it keeps no state between frames.
    pub fn new() -> Self {
        Self {
            messages: PhantomData,
        }
    }
}

impl<In, Out> Default for FrameCodec<In, Out> {
    fn default() -> Self {
        Self::new()
    }
}

impl<In, Out> std::fmt::Debug for FrameCodec<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameCodec")
    }
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtocolError> {
        let Some(header) = src.first_chunk::<HEADER_LEN>() else {
            src.reserve(HEADER_LEN - src.len());
            return Ok(None);
        };
        // Refused here, before the buffer grows towards the announced length.
        let header = FrameHeader::parse(*header)?;
        let frame_len = HEADER_LEN + header.payload_len;
        if src.len() < frame_len {
            src.reserve(frame_len - src.len());
            return Ok(None);
        }
        let frame = src.split_to(frame_len);
        decode_payload(&frame[HEADER_LEN..]).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtocolError> {
        if let Some(message) = self.decode(src)? {
            return Ok(Some(message));
        }
        if src.is_empty() {
            return Ok(None);
        }
        // Only a partial frame is left; `decode` has refused an oversized header already.
        let expected = match src.first_chunk::<HEADER_LEN>() {
            Some(header) => HEADER_LEN + FrameHeader::parse(*header)?.payload_len,
            None => HEADER_LEN,
        };
        Err(ProtocolError::Truncated {
            received: src.len(),
            expected,
        })
    }
}

impl<In, Out: Serialize> Encoder<&Out> for FrameCodec<In, Out> {
    type Error = ProtocolError;

    fn encode(&mut self, message: &Out, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        dst.extend_from_slice(&encode_frame(message)?);
        Ok(())
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = ProtocolError;

    fn encode(&mut self, message: Out, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        Encoder::<&Out>::encode(self, &message, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::MAX_FRAME_LEN;

    #[test]
    fn a_frame_over_the_limit_is_refused_from_its_header_naming_the_limit() {
        let mut codec = SupervisorCodec::new();
        let mut src = BytesMut::from(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes()[..]);
        let err = codec.decode(&mut src).unwrap_err();
        assert!(
            matches!(err, ProtocolError::FrameTooLarge { len, max } if len == MAX_FRAME_LEN + 1 && max == MAX_FRAME_LEN),
            "{err:?}"
        );
        assert!(err.to_string().contains("4194304-byte limit"), "{err}");
        assert!(
            src.capacity() < MAX_FRAME_LEN,
            "nothing is allocated for a refused frame"
        );
    }

    #[test]
    fn a_message_over_the_limit_is_not_sent() {
        let mut codec = SupervisorCodec::new();
        let mut dst = BytesMut::new();
        let huge = SupervisorMessage::CompletionDelta {
            call_id: 1,
            text: "x".repeat(MAX_FRAME_LEN + 1),
        };
        let err = codec.encode(&huge, &mut dst).unwrap_err();
        assert!(err.to_string().contains("4194304-byte limit"), "{err}");
        assert!(dst.is_empty(), "no partial frame is queued");
    }

    #[test]
    fn a_frame_cut_short_by_the_end_of_the_stream_says_how_much_arrived() {
        let frame = encode_frame(&WorkerMessage::AnswerDelta { text: "pie".into() }).unwrap();
        let mut codec = SupervisorCodec::new();

        let mut src = BytesMut::from(&frame[..frame.len() - 1]);
        assert!(codec.decode(&mut src).unwrap().is_none(), "waits for more");
        let err = codec.decode_eof(&mut src).unwrap_err();
        assert!(
            matches!(err, ProtocolError::Truncated { received, expected } if received == frame.len() - 1 && expected == frame.len()),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("in the middle of a frame"),
            "{err}"
        );

        let mut src = BytesMut::from(&frame[..2]);
        let err = codec.decode_eof(&mut src).unwrap_err();
        assert!(
            matches!(
                err,
                ProtocolError::Truncated {
                    received: 2,
                    expected: HEADER_LEN
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_in_a_frame_is_a_malformed_frame() {
        let mut codec = SupervisorCodec::new();
        let mut src = BytesMut::from(&b"\x00\x00\x00\x08\xff\xff\xff\xff\xff\xff\xff\xff"[..]);
        let err = codec.decode(&mut src).unwrap_err();
        assert!(matches!(err, ProtocolError::Decode(_)), "{err:?}");
        assert!(err.to_string().starts_with("malformed frame"), "{err}");
    }

    #[test]
    fn bytes_left_over_in_a_frame_are_a_malformed_frame() {
        let mut frame = encode_frame(&WorkerMessage::AnswerDelta { text: "pie".into() }).unwrap();
        frame.push(0);
        let len = (frame.len() - HEADER_LEN) as u32;
        frame[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        let err = SupervisorCodec::new()
            .decode(&mut BytesMut::from(&frame[..]))
            .unwrap_err();
        assert!(
            matches!(err, ProtocolError::TrailingBytes(1)),
            "{err:?}: {err}"
        );
    }
}
