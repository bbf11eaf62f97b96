//! The async codec against the blocking side: every message, encoded by the codec, is byte for
//! byte what the blocking encoder writes, and decodes back fed one byte at a time, as a slow
//! socket would deliver it. (Its refusals are unit-tested beside it.)
#![cfg(feature = "tokio-codec")]
#![allow(clippy::unwrap_used, reason = "a test fails loudly on a codec error")]

use caxton_ipc_protocol::{FrameCodec, encode_frame};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

mod samples;

fn round_trip<M>(messages: Vec<M>)
where
    M: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut codec = FrameCodec::<M, M>::new();
    let mut wire = BytesMut::new();
    let mut blocking = Vec::new();
    for m in &messages {
        codec.encode(m, &mut wire).unwrap();
        blocking.extend_from_slice(&encode_frame(m).unwrap());
    }
    assert_eq!(&wire[..], &blocking[..], "the async side changed the bytes");

    let mut received = BytesMut::new();
    let mut decoded = Vec::new();
    for byte in wire.iter() {
        received.extend_from_slice(&[*byte]);
        if let Some(m) = codec.decode(&mut received).unwrap() {
            decoded.push(m);
        }
    }
    assert_eq!(codec.decode_eof(&mut received).unwrap(), None);
    assert_eq!(decoded, messages);
}

#[test]
fn every_worker_message_round_trips_with_the_blocking_side_s_bytes() {
    round_trip(
        samples::worker_samples()
            .into_iter()
            .map(|(_, m)| m)
            .collect(),
    );
}

#[test]
fn every_supervisor_message_round_trips_with_the_blocking_side_s_bytes() {
    round_trip(
        samples::supervisor_samples()
            .into_iter()
            .map(|(_, m)| m)
            .collect(),
    );
}
