//! Where the daemon's log lines go: the journal's native protocol under systemd, stderr
//! otherwise.
//!
//! The journal is reached at the fixed path `/run/systemd/journal/socket`. These tests run the
//! daemon in a user and mount namespace of its own (`unshare -Urm`, no privileges needed) where
//! `/run` is a directory of the test's, and the test listens on that socket itself, reading
//! each datagram as journald would.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Daemon, DaemonOptions, Env, FakeLlm, echo_agent, free_port};

/// One journal entry: its fields, as journald reads them from a native-protocol datagram.
type Entry = HashMap<String, String>;

/// Parse a datagram of the journal's native protocol: `KEY=value\n`, or for a value that holds
/// a newline `KEY\n`, its length as 64-bit little-endian, the bytes and `\n`.
fn parse_entry(mut data: &[u8]) -> Entry {
    let mut entry = Entry::new();
    while let Some(end) = data.iter().position(|&b| b == b'\n') {
        let line = &data[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            entry.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            data = &data[end + 1..];
        } else {
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            entry.insert(
                String::from_utf8_lossy(line).into_owned(),
                String::from_utf8_lossy(&rest[8..8 + len]).into_owned(),
            );
            data = &rest[8 + len + 1..];
        }
    }
    entry
}

/// A stand-in for `/run` with the journal's socket in it, read by a thread of the test's as
/// journald reads it: at once, since a writer blocks once a few datagrams wait unread.
struct Journal {
    run: tempfile::TempDir,
    entries: std::sync::mpsc::Receiver<Entry>,
}

impl Journal {
    fn listen() -> Self {
        let probe = Command::new("unshare").args(["-Urm", "true"]).status();
        assert!(
            probe.is_ok_and(|s| s.success()),
            "these tests need `unshare` (util-linux) and unprivileged user namespaces"
        );
        let run = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(run.path().join("systemd/journal")).unwrap();
        let socket = UnixDatagram::bind(run.path().join("systemd/journal/socket")).unwrap();
        let (send, entries) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n) = socket.recv(&mut buf) {
                // An empty datagram is the daemon checking that the journal is there.
                if n > 0 && send.send(parse_entry(&buf[..n])).is_err() {
                    return;
                }
            }
        });
        Self { run, entries }
    }

    /// The wrapper that runs `caxton serve` with this directory as its `/run`.
    fn wrapper(&self) -> Vec<String> {
        [
            "unshare",
            "-Urm",
            "sh",
            "-c",
            "mount --bind \"$0\" /run && exec \"$@\"",
        ]
        .into_iter()
        .map(String::from)
        .chain([self.run.path().display().to_string()])
        .collect()
    }

    /// Entries until one has `MESSAGE=message` (that one included); panics after 10 s.
    fn until(&self, message: &str) -> Vec<Entry> {
        let mut entries = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(10);
        while let Ok(entry) = self
            .entries
            .recv_timeout(give_up.saturating_duration_since(Instant::now()))
        {
            let found = entry.get("MESSAGE").is_some_and(|m| m == message);
            entries.push(entry);
            if found {
                return entries;
            }
        }
        panic!("no journal entry {message:?} in 10 s; received: {entries:#?}");
    }
}

/// The device and inode of `path`, as systemd writes a stream's in `JOURNAL_STREAM`.
fn stream_id(path: &Path) -> String {
    let meta = std::fs::metadata(path).unwrap();
    format!("{}:{}", meta.dev(), meta.ino())
}

#[test]
fn under_systemd_the_daemon_logs_to_the_journal_with_each_field_its_own() {
    let journal = Journal::listen();
    let llm = FakeLlm::start();
    let opts = DaemonOptions::new(&llm);
    let env = Env::new(&opts);
    // As systemd starts a service: stderr connected to the journal, and JOURNAL_STREAM naming
    // that stream. The daemon sees it is still its stderr and speaks the native protocol.
    std::fs::File::create(Daemon::log_path(&env)).unwrap();
    let vars = vec![
        (
            "JOURNAL_STREAM".to_owned(),
            stream_id(&Daemon::log_path(&env)),
        ),
        // Traced (to a collector that is not there), so lines carry their trace id.
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            format!("http://127.0.0.1:{}", free_port()),
        ),
    ];
    let d = Daemon::start_wrapped(env, &vars, &journal.wrapper());
    d.deploy("helper", &echo_agent("helper", ""));
    let (code, report) = d.run("helper", "hello");
    assert_eq!(code, 200, "{report}");

    let entries = journal.until("execution finished");
    let finished = entries.last().unwrap();
    assert_eq!(finished["SYSLOG_IDENTIFIER"], "caxton", "{finished:#?}");
    // INFO is the journal's "notice".
    assert_eq!(finished["PRIORITY"], "5", "{finished:#?}");
    assert_eq!(finished["OUTCOME"], "succeeded", "{finished:#?}");
    assert_eq!(finished["AGENT"], "helper", "{finished:#?}");
    assert_eq!(
        finished["EXECUTION_ID"],
        report["execution_id"].as_str().unwrap(),
        "{finished:#?}"
    );
    assert_eq!(
        finished["TRACE_ID"],
        report["trace_id"].as_str().unwrap(),
        "{finished:#?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.get("MESSAGE").is_some_and(|m| m == "supervisor ready")),
        "{entries:#?}"
    );
    // The journal has the lines; stderr does not repeat them.
    assert!(!d.log().contains("execution finished"), "{}", d.log());
}

#[test]
fn a_journal_that_cannot_be_reached_leaves_the_logs_on_stderr() {
    let journal = Journal::listen();
    // The journal's socket is gone: nothing listens where the daemon would send.
    std::fs::remove_file(journal.run.path().join("systemd/journal/socket")).unwrap();
    assert!(journal.entries.try_recv().is_err());
    let llm = FakeLlm::start();
    let opts = DaemonOptions::new(&llm);
    let env = Env::new(&opts);
    let vars = vec![("CAXTON_LOG_FORMAT".to_owned(), "journald".to_owned())];
    let d = Daemon::start_wrapped(env, &vars, &journal.wrapper());
    d.deploy("helper", &echo_agent("helper", ""));
    let (code, report) = d.run("helper", "hello");
    assert_eq!(code, 200, "{report}");
    let log = d.log();
    assert!(
        log.contains("the journal cannot be reached; logging to stderr"),
        "{log}"
    );
    assert!(log.contains("execution finished"), "{log}");
}

#[test]
fn an_unknown_log_format_stops_the_daemon_at_start_naming_the_variable() {
    let llm = FakeLlm::start();
    let env = Env::new(&DaemonOptions::new(&llm));
    let out = Command::new(crate::support::caxton_bin())
        .arg("--config")
        .arg(&env.config)
        .arg("--data-dir")
        .arg(env.data_dir())
        .arg("--socket")
        .arg(&env.socket)
        .arg("serve")
        .env("CAXTON_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CAXTON_LOG_FORMAT = \"xml\": must be \"text\", \"json\" or \"journald\""),
        "{stderr}"
    );
}
