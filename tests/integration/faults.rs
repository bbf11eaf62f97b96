//! Workers that misbehave on purpose: each costs only its own request, with an error naming
//! what happened, and the next request works.

use std::time::Duration;

use crate::support::*;

fn fixture_daemon(mode: &str, extra_config: &str) -> (FakeLlm, Daemon) {
    let llm = FakeLlm::start();
    let scratch = tempfile::tempdir().unwrap().keep();
    let mut opts = DaemonOptions::new(&llm);
    opts.worker_path = Some(fixture_worker(&scratch, mode));
    opts.extra_config = extra_config.to_owned();
    let daemon = Daemon::start(opts);
    daemon.deploy(
        "victim",
        &echo_agent("victim", "[limits]\ntimeout = \"2s\"\n"),
    );
    (llm, daemon)
}

fn assert_fails_with(daemon: &Daemon, request: &str, status: u16, kind: &str, message_part: &str) {
    let (code, body) = daemon.run("victim", request);
    assert_eq!(code, status, "{body}");
    assert_eq!(body["error"]["kind"], kind, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_part),
        "expected {message_part:?} in {message:?}"
    );
    // The supervisor is healthy and the next request works.
    let (code, body) = daemon.run("victim", "are you still there?");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["answer"], "echo: are you still there?");
}

#[test]
fn a_worker_that_exits_without_replying() {
    let (_llm, daemon) = fixture_daemon("", "");
    assert_fails_with(
        &daemon,
        "exit-silently",
        500,
        "worker_exited",
        "exited with status 7 without replying: fixture: leaving without a word",
    );
}

#[test]
fn a_worker_that_crashes() {
    let (_llm, daemon) = fixture_daemon("", "");
    assert_fails_with(
        &daemon,
        "crash",
        500,
        "killed",
        "killed by signal 6 (SIGABRT)",
    );
}

#[test]
fn a_worker_that_replies_for_another_execution() {
    let (_llm, daemon) = fixture_daemon("", "");
    assert_fails_with(
        &daemon,
        "wrong-id",
        500,
        "protocol_violation",
        "reply for execution \"someone-else\"",
    );
}

#[test]
fn a_worker_that_sends_garbage() {
    let (_llm, daemon) = fixture_daemon("", "");
    assert_fails_with(
        &daemon,
        "garbage",
        500,
        "protocol_violation",
        "malformed frame",
    );
}

#[test]
fn a_worker_that_sends_an_oversized_frame() {
    let (_llm, daemon) = fixture_daemon("", "");
    assert_fails_with(
        &daemon,
        "oversized",
        500,
        "protocol_violation",
        "frame larger than the 4194304-byte limit",
    );
}

#[test]
fn garbage_before_the_handshake() {
    let (_llm, daemon) = fixture_daemon("garbage-first", "");
    let (code, body) = daemon.run("victim", "hi");
    assert_eq!(code, 500, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("broke the worker protocol"),
        "{body}"
    );
    assert!(daemon.cli(&["health"]).status.success());
}

#[test]
fn a_worker_speaking_another_protocol_version_is_refused_with_both_versions() {
    let (_llm, daemon) = fixture_daemon("bad-version", "");
    let (code, body) = daemon.run("victim", "hi");
    assert_eq!(code, 500, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "supervisor speaks v{}, worker fixture speaks v999",
            caxton_ipc_protocol::PROTOCOL_VERSION
        )),
        "{message}"
    );
}

#[test]
fn a_hung_worker_is_terminated_at_the_deadline_and_its_process_is_gone() {
    let (_llm, daemon) = fixture_daemon("", "");
    let (code, body) = daemon.run("victim", "hang");
    assert_eq!(code, 504, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deadline exceeded: no answer within 2s"),
        "{body}"
    );
    let pid = body["execution"]["worker_pid"].as_u64().unwrap() as u32;
    assert!(!process_alive(pid));
    assert_eq!(body["execution"]["exit_signal"], libc::SIGTERM);
}

#[test]
fn a_worker_that_ignores_term_is_killed_after_the_grace_period() {
    let (_llm, daemon) = fixture_daemon("", "");
    let (code, body) = daemon.run("victim", "ignore-term");
    assert_eq!(code, 504, "{body}");
    assert_eq!(body["execution"]["exit_signal"], libc::SIGKILL);
    assert!(!process_alive(
        body["execution"]["worker_pid"].as_u64().unwrap() as u32
    ));
}

#[test]
fn a_grandchild_left_behind_is_killed_with_the_worker_group() {
    let (_llm, daemon) = fixture_daemon("", "");
    let (code, body) = daemon.run("victim", "grandchild");
    assert_eq!(code, 200, "{body}");
    let grandchild: u32 = body["answer"].as_str().unwrap().parse().unwrap();
    assert!(grandchild > 0);
    assert!(
        wait_gone(grandchild, Duration::from_secs(5)),
        "grandchild {grandchild} survived its request"
    );
}

#[test]
fn workers_get_an_empty_environment() {
    let llm = FakeLlm::start();
    let scratch = tempfile::tempdir().unwrap().keep();
    let mut opts = DaemonOptions::new(&llm);
    opts.worker_path = Some(fixture_worker(&scratch, ""));
    opts.env.push((
        "NOTIFY_SOCKET".into(),
        scratch.join("nobody-listens").display().to_string(),
    ));
    opts.env.push(("OPENAI_API_KEY".into(), "sk-secret".into()));
    let daemon = Daemon::start(opts);
    daemon.deploy("victim", &echo_agent("victim", ""));
    let (code, body) = daemon.run("victim", "env");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["answer"], "env:[]");
}

#[test]
fn a_missing_worker_binary_fails_the_daemon_start_with_its_path() {
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.worker_path = Some("/nonexistent/caxton-worker".into());
    let env = Env::new(&opts);
    let out = env.cli(&["serve"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("worker binary /nonexistent/caxton-worker not found"),
        "{}",
        text(&out.stderr)
    );
}
