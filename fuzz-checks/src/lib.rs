//! The checks behind every fuzz target: one function a target, taking the fuzzer's bytes and
//! panicking only on a real fault (a panic inside a parser, or an encoder that does not
//! round-trip). The fuzz targets in `fuzz/fuzz_targets/` (nightly, `cargo +nightly fuzz run
//! <target>`) and the corpus replay test in `fuzz-checks/tests/corpora.rs` (stable, part of
//! `scripts/test.sh`) both call these, so what is fuzzed and what is replayed cannot drift.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use caxton_ipc_protocol::{
    HEADER_LEN, MAX_FRAME_LEN, ProtocolError, SupervisorCodec, SupervisorMessage, WorkerMessage,
    decode_payload, encode_frame, read_frame,
};
use caxton_memory::{
    EMBEDDING_DIM, EmbedError, Embedder, ImportOptions, Memory, MemoryOptions, Scope, Vector,
};
use caxton_supervisor::config::{Config, ConfigSources, read_config_file};
use caxton_tool_host::manifest::ToolManifest;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

/// What a target checks of the fuzzer's bytes; it panics on a fault.
pub type Check = fn(&[u8]);

/// Every target, by the name of its fuzz target and corpus directory.
pub const TARGETS: &[(&str, Check)] = &[
    ("ipc_frames", ipc_frames),
    ("agent_toml", agent_toml),
    ("config", config),
    ("tool_manifest", tool_manifest),
    ("mcp_message", mcp_message),
    ("memory_import_json", memory_import_json),
    ("memory_import_jsonl", memory_import_jsonl),
    ("a2a_call", a2a_call),
];

/// IPC frames: the bytes as a stream of frames read by both sides (the blocking reader and the
/// supervisor's tokio codec) and as one payload of either message type. A message that decodes
/// re-encodes to bytes that decode to a message encoding the same way (compared as bytes, so a
/// NaN in a float does not count as a difference).
pub fn ipc_frames(data: &[u8]) {
    let mut reader = data;
    while let Ok(message) = read_frame::<WorkerMessage>(&mut reader) {
        round_trip(&message);
    }
    let mut reader = data;
    while let Ok(message) = read_frame::<SupervisorMessage>(&mut reader) {
        round_trip(&message);
    }

    let mut codec = SupervisorCodec::new();
    let mut buffer = BytesMut::from(data);
    while let Ok(Some(message)) = codec.decode(&mut buffer) {
        round_trip(&message);
    }
    match codec.decode_eof(&mut buffer) {
        Ok(Some(message)) => round_trip(&message),
        Ok(None) => assert!(buffer.is_empty(), "decode_eof left bytes without an error"),
        Err(_) => {}
    }

    if let Ok(message) = decode_payload::<WorkerMessage>(data) {
        round_trip(&message);
    }
    if let Ok(message) = decode_payload::<SupervisorMessage>(data) {
        round_trip(&message);
    }
}

fn round_trip<M>(message: &M)
where
    M: serde::Serialize + serde::de::DeserializeOwned,
{
    let first = match encode_frame(message) {
        Ok(frame) => frame,
        // A decoded message can only be as large as the frame it came from.
        Err(ProtocolError::FrameTooLarge { .. }) => unreachable!("a decoded message is too large"),
        Err(e) => panic!("a decoded message does not encode: {e}"),
    };
    assert!(first.len() <= HEADER_LEN + MAX_FRAME_LEN);
    let again: M = match decode_payload(&first[HEADER_LEN..]) {
        Ok(m) => m,
        Err(e) => panic!("an encoded message does not decode: {e}"),
    };
    let second = encode_frame(&again).unwrap_or_else(|e| panic!("re-encoding failed: {e}"));
    assert_eq!(first, second, "encoding is not stable across a round trip");
}

/// Agent TOML: `parse_agent` on the bytes as text.
pub fn agent_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = caxton_supervisor::agent::parse_agent(Path::new("fuzz.toml"), text);
}

thread_local! {
    static SCRATCH: tempfile::TempDir = tempfile::tempdir().unwrap_or_else(|e| panic!("scratch directory: {e}"));
}

fn scratch(name: &str) -> PathBuf {
    SCRATCH.with(|d| d.path().join(name))
}

/// The supervisor config: the bytes as `caxton.toml`, read as the daemon reads it and resolved
/// against a fixed environment (no real `HOME` or `CAXTON_*`).
pub fn config(data: &[u8]) {
    let path = scratch("caxton.toml");
    if let Err(e) = std::fs::write(&path, data) {
        panic!("cannot write {}: {e}", path.display());
    }
    let Ok(file) = read_config_file(&path) else {
        return;
    };
    let sources = ConfigSources {
        config_file: Some(path),
        ..ConfigSources::default()
    };
    let env = |name: &str| (name == "HOME").then(|| "/home/fuzz".into());
    let _ = Config::resolve(&sources, file, &env);
}

/// Tool manifests: `ToolManifest::parse` on the bytes as text.
pub fn tool_manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ToolManifest::parse(Path::new("tool.toml"), text);
}

/// `/mcp`: everything a body decides without a supervisor. The first line is the `Origin`
/// header (empty for none), the rest the body.
pub fn mcp_message(data: &[u8]) {
    let (origin, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[][..], data),
    };
    let origin = (!origin.is_empty()).then_some(origin);
    let _ = caxton_supervisor::api::mcp::fuzz_message(body, origin);
}

/// A2A: the JSON-RPC envelope and each method's params, as `POST /a2a` checks them.
pub fn a2a_call(data: &[u8]) {
    if let Err(code) = caxton_supervisor::api::fuzz_a2a_call(data) {
        // JSON-RPC's own codes, or A2A's (-32001 and down).
        assert!(
            (-32700..=-32000).contains(&code),
            "error code {code} is outside JSON-RPC's range"
        );
    }
}

/// Every text gets the same unit vector: the memory targets check parsing and storage, not
/// similarity, and the memory crate's test embedder sits behind a feature that building this
/// workspace member must not switch on for the whole workspace.
struct FixedEmbedder;

impl Embedder for FixedEmbedder {
    fn model_id(&self) -> &str {
        "fuzz/fixed"
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vector>, EmbedError> {
        let mut unit = [0.0f32; EMBEDDING_DIM];
        unit[0] = 1.0;
        Ok(vec![unit; texts.len()])
    }
}

/// A memory store on a scratch file with a fixed embedder (no model to load); a fresh one every
/// few hundred inputs so imports that succeed do not grow one database for the whole run.
struct Scratch {
    memory: Memory,
    uses: u32,
    _dir: tempfile::TempDir,
}

thread_local! {
    static MEMORY: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

fn with_memory(f: impl FnOnce(&Memory)) {
    MEMORY.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|s| s.uses >= 256) {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("scratch directory: {e}"));
            let memory = Memory::open(
                &dir.path().join("memory.db"),
                Arc::new(FixedEmbedder),
                MemoryOptions {
                    readers: 1,
                    ..MemoryOptions::default()
                },
            )
            .unwrap_or_else(|e| panic!("open a scratch memory: {e}"));
            *cell = Some(Scratch {
                memory,
                uses: 0,
                _dir: dir,
            });
        }
        if let Some(scratch) = cell.as_mut() {
            scratch.uses += 1;
            f(&scratch.memory);
        }
    });
}

/// Memory import, Caxton's JSON export format. What imports exports again and that export
/// imports again.
pub fn memory_import_json(data: &[u8]) {
    with_memory(|memory| {
        if memory.import_json(data, &ImportOptions::default()).is_err() {
            return;
        }
        let mut out = Vec::new();
        if let Err(e) = memory.export_json(&caxton_memory::ExportRequest::default(), &mut out) {
            panic!("export after a successful import: {e}");
        }
        if let Err(e) = memory.import_json(&out, &ImportOptions::default()) {
            panic!(
                "our own export does not import: {e}\n{}",
                String::from_utf8_lossy(&out)
            );
        }
    });
}

/// Memory import, the MCP memory server's JSON-lines format, into one workspace scope. What
/// imports exports again and that export imports again.
pub fn memory_import_jsonl(data: &[u8]) {
    let scope = Scope::Workspace("fuzz".to_owned());
    with_memory(|memory| {
        if memory.import_mcp_jsonl(data, &scope).is_err() {
            return;
        }
        let mut out = Vec::new();
        if let Err(e) = memory.export_mcp_jsonl(&scope, &mut out) {
            panic!("export after a successful import: {e}");
        }
        if let Err(e) = memory.import_mcp_jsonl(&out, &scope) {
            panic!(
                "our own export does not import: {e}\n{}",
                String::from_utf8_lossy(&out)
            );
        }
    });
}
