//! Crashes and a full disk, in child processes: `kill -9` in the middle of a burst of writes,
//! and a file-size limit (RLIMIT_FSIZE) hit mid-write.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use caxton_memory::{MemoryError, MemoryOptions, Relation, Scope};

use crate::common::{child_arg, entity, open, spawn_child};

/// Child: write entities (with an observation and a relation to the previous one) forever,
/// printing each index once its write has returned.
#[test]
#[ignore = "child process of acknowledged_writes_survive_kill_9"]
fn child_write_burst() {
    let Some(path) = child_arg() else { return };
    let m = open(Path::new(&path), MemoryOptions::default());
    let mut out = std::io::stdout().lock();
    // Bounded so a child whose parent died does not run forever.
    for i in 0..1_000_000u32 {
        let name = format!("e{i}");
        m.upsert_entity(
            &Scope::Global,
            &entity(&name, "t", &[&format!("fact number {i}")]),
        )
        .unwrap();
        if i > 0 {
            let prev = format!("e{}", i - 1);
            m.relate(
                &Scope::Global,
                &Relation {
                    from: name,
                    to: prev,
                    relation_type: "after".into(),
                    strength: 1.0,
                },
            )
            .unwrap();
        }
        writeln!(out, "\n@@ {i}").unwrap();
        out.flush().unwrap();
    }
}

/// The index in a child's `@@ N` line; other lines are the test harness talking.
fn ack(line: &str) -> Option<u32> {
    line.strip_prefix("@@ ").map(|n| n.parse().unwrap())
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut child = spawn_child("durability::child_write_burst", path.to_str().unwrap());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    for line in lines.by_ref() {
        acked.extend(ack(&line.unwrap()));
        if acked.len() == 400 {
            break;
        }
    }
    // SIGKILL while the child is mid-burst: no chance to finish a transaction or close.
    let pid = i32::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    // Acknowledgements already written to the pipe before the kill count too.
    for line in lines {
        acked.extend(ack(&line.unwrap()));
    }
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child was killed, not finished: {status:?}"
    );

    let m = open(&path, MemoryOptions::default());
    m.integrity_check().unwrap();
    for &i in &acked {
        let e = m
            .entity(&Scope::Global, &format!("e{i}"))
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged entity e{i} is missing"));
        assert_eq!(e.observations[0].text, format!("fact number {i}"));
        if i > 0 {
            let rels = m.relations_of(&Scope::Global, &format!("e{i}")).unwrap();
            assert!(
                rels.iter()
                    .any(|r| r.from == format!("e{i}") && r.relation_type == "after"),
                "acknowledged relation of e{i} is missing"
            );
        }
    }
    let stats = m.stats(&[]).unwrap();
    assert!(stats.entities as usize >= acked.len());
    assert_eq!(stats.indexed_vectors, stats.observations);
}

/// Child: fill the database up to a file-size limit, report the error, raise the limit, and
/// write again with the same handle.
#[test]
#[ignore = "child process of a_file_size_limit_is_a_clear_error_and_recoverable"]
fn child_fill_to_fsize_limit() {
    let Some(path) = child_arg() else { return };
    let m = open(Path::new(&path), MemoryOptions::default());
    for i in 0..20 {
        m.upsert_entity(
            &Scope::Global,
            &entity(&format!("seed{i}"), "t", &["before the limit"]),
        )
        .unwrap();
    }
    m.checkpoint().unwrap();
    // The kernel sends SIGXFSZ at the limit; ignoring it turns the signal into EFBIG.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let size = |p: &str| std::fs::metadata(p).map_or(0, |m| m.len());
    let wal = format!("{path}-wal");
    let limit = size(&path).max(size(&wal)) + 64 * 1024;
    set_fsize(limit);
    let mut out = std::io::stdout().lock();
    let mut stored = 20;
    let err = loop {
        match m.upsert_entity(
            &Scope::Global,
            &entity(&format!("e{stored}"), "t", &["filler text"]),
        ) {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100_000, "the file size limit never bit");
    };
    writeln!(out, "\n@@ stored {stored}").unwrap();
    writeln!(out, "\n@@ full {}", matches!(err, MemoryError::DiskFull)).unwrap();
    writeln!(out, "\n@@ error {err}").unwrap();
    m.integrity_check().unwrap();
    set_fsize(libc::RLIM_INFINITY);
    m.upsert_entity(&Scope::Global, &entity("after", "t", &["space is back"]))
        .unwrap();
    m.integrity_check().unwrap();
    writeln!(out, "\n@@ recovered {}", m.stats(&[]).unwrap().entities).unwrap();
}

fn set_fsize(bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) }, 0);
}

#[test]
fn a_file_size_limit_is_a_clear_error_and_recoverable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let child = spawn_child(
        "durability::child_fill_to_fsize_limit",
        path.to_str().unwrap(),
    );
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{text}");
    let field = |key: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix("@@ ")?
                    .strip_prefix(key)
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {key} in {text}"))
    };
    assert_eq!(field("full"), "true", "{text}");
    assert!(field("error").contains("no space"), "{text}");
    let stored: u64 = field("stored").parse().unwrap();
    assert_eq!(field("recovered").parse::<u64>().unwrap(), stored + 1);

    let m = open(&path, MemoryOptions::default());
    m.integrity_check().unwrap();
    assert_eq!(m.stats(&[]).unwrap().entities, stored + 1);
}
