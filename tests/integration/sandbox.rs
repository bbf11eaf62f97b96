//! Worker confinement, proved from inside a worker: the fixture worker confines itself with the
//! real worker's code (`caxton_worker::sandbox`), one set of layers or all of them, then tries
//! to open a file, connect, fork, exec, ptrace, make a namespace, set up io_uring and load BPF,
//! and answers with how each attempt ended. The real worker's own report reaches `caxton status`.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Daemon, DaemonOptions, FakeLlm, echo_agent, fixture_worker, http};

/// What the fixture under `mode` answered about its attempts.
fn attempts(mode: &str) -> Value {
    let llm = FakeLlm::start();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = DaemonOptions::new(&llm);
    opts.worker_path = Some(fixture_worker(dir.path(), mode));
    let d = Daemon::start(opts);
    d.deploy("prisoner", &echo_agent("prisoner", ""));
    let (code, report) = d.run("prisoner", "try to get out");
    assert_eq!(code, 200, "{report}");
    serde_json::from_str(report["answer"].as_str().unwrap()).unwrap()
}

#[test]
fn landlock_alone_keeps_a_worker_from_files_tcp_and_exec() {
    let tried = attempts("confined-landlock");
    // Landlock's own refusal is EACCES: each of these is its work, not seccomp's.
    assert_eq!(tried["open"], "EACCES", "{tried}");
    assert_eq!(tried["connect"], "EACCES", "{tried}");
    assert_eq!(tried["exec"], "EACCES", "{tried}");
}

#[test]
fn with_every_layer_each_way_out_is_refused() {
    let tried = attempts("confined-all");
    for way in [
        "open", "connect", "fork", "exec", "ptrace", "unshare", "io_uring", "bpf",
    ] {
        assert_eq!(tried[way], "EPERM", "{way}: {tried}");
    }
}

#[test]
fn the_real_worker_reports_its_layers_and_status_shows_them() {
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.worker_config = "sandbox = \"strict\"\n".into();
    let d = Daemon::start(opts);
    d.deploy("helper", &echo_agent("helper", ""));
    // Strict on this kernel: every layer applies, and the worker still answers.
    let (code, report) = d.run("helper", "hello");
    assert_eq!(code, 200, "{report}");
    let hung = d.run_in_background("helper", "[hang]");
    let pid = d.wait_for_worker("helper");
    let (_, workers) = http(&d.env.socket, "GET", "/api/v1/workers", None).unwrap();
    assert_eq!(
        workers["workers"][0]["sandbox"], "strict: fds no_new_privs landlock seccomp",
        "{workers}"
    );
    let status = d.cli(&["status"]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("sandbox: strict: fds no_new_privs landlock seccomp"),
        "{shown}"
    );
    assert!(
        d.cli(&["worker", "kill", &pid.to_string()])
            .status
            .success()
    );
    let _ = hung.join();
    assert!(crate::support::wait_gone(pid, Duration::from_secs(5)));
}

#[test]
fn an_unknown_sandbox_mode_is_refused_at_its_line() {
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.worker_config = "sandbox = \"maybe\"\n".into();
    let env = crate::support::Env::new(&opts);
    let out = env.cli(&["serve"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("worker.sandbox = \"maybe\": must be \"strict\", \"best-effort\" or \"off\""),
        "{stderr}"
    );
}
