//! The wire format is pinned per protocol version: one sample of every message, encoded, must
//! match the bytes stored for the current `PROTOCOL_VERSION` in `tests/golden/`. bincode does not
//! describe fields, so a changed message that keeps its version would be misread by a worker of
//! the other build; this test fails first and says to bump the version.
//!
//! After a deliberate change: bump `PROTOCOL_VERSION`, then run
//! `CAXTON_BLESS=1 cargo test -p caxton-ipc-protocol --test golden` to write the new file.

use std::fmt::Write as _;
use std::path::PathBuf;

use caxton_ipc_protocol::{PROTOCOL_VERSION, encode_frame};

mod samples;
use samples::{supervisor_samples, worker_samples};

/// `NAME HEX` per line, worker messages first.
fn encoded() -> String {
    let mut text = String::new();
    let mut line = |name: &str, bytes: Vec<u8>| {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(text, "{name} {hex}");
    };
    for (name, m) in worker_samples() {
        line(
            &format!("worker/{name}"),
            encode_frame(&m).expect("encodes"),
        );
    }
    for (name, m) in supervisor_samples() {
        line(
            &format!("supervisor/{name}"),
            encode_frame(&m).expect("encodes"),
        );
    }
    text
}

#[test]
fn the_wire_format_matches_the_bytes_stored_for_this_protocol_version() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("v{PROTOCOL_VERSION}.txt"));
    let now = encoded();
    if std::env::var_os("CAXTON_BLESS").is_some() {
        std::fs::create_dir_all(file.parent().expect("has a parent")).expect("golden dir");
        std::fs::write(&file, &now).expect("golden file written");
        return;
    }
    let stored = std::fs::read_to_string(&file).unwrap_or_else(|_| {
        panic!(
            "no stored wire format for protocol v{PROTOCOL_VERSION} ({}): after bumping \
             PROTOCOL_VERSION, run CAXTON_BLESS=1 cargo test -p caxton-ipc-protocol --test golden",
            file.display()
        )
    });
    for (was, is) in stored.lines().zip(now.lines()) {
        assert_eq!(
            was, is,
            "the encoding of a message changed while PROTOCOL_VERSION stayed {PROTOCOL_VERSION}: \
             a worker and a supervisor of different builds would misread each other. Bump \
             PROTOCOL_VERSION and bless a new golden file (see this file's header)"
        );
    }
    assert_eq!(
        stored.lines().count(),
        now.lines().count(),
        "messages were added or removed while PROTOCOL_VERSION stayed {PROTOCOL_VERSION}"
    );
}
