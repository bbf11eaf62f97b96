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
fn a_4_gib_length_prefix_before_the_handshake_is_refused_without_reading_it() {
    // The fixture's first four bytes say u32::MAX: the frame is refused by its length alone,
    // nothing is allocated for it, and the daemon goes on serving.
    let (_llm, daemon) = fixture_daemon("oversized-first", "");
    let (code, body) = daemon.run("victim", "hi");
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["error"]["kind"], "protocol_violation", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("frame larger than the 4194304-byte limit"),
        "{body}"
    );
    assert!(daemon.cli(&["health"]).status.success());
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
fn a_worker_silent_before_its_hello_is_ended_at_the_handshake_timeout_not_the_deadline() {
    let llm = FakeLlm::start();
    let scratch = tempfile::tempdir().unwrap();
    let mut opts = DaemonOptions::new(&llm);
    opts.worker_path = Some(fixture_worker(scratch.path(), "silent-first"));
    opts.worker_config = "handshake_timeout = \"300ms\"\n".into();
    let daemon = Daemon::start(opts);
    daemon.deploy(
        "victim",
        &echo_agent("victim", "[limits]\ntimeout = \"60s\"\n"),
    );
    let started = std::time::Instant::now();
    let (code, body) = daemon.run("victim", "hi");
    // The request's deadline is a minute away; the slot is back long before.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code, 500, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no Hello within 300ms of its start ([worker] handshake_timeout)"),
        "{message}"
    );
    let pid = body["execution"]["worker_pid"].as_u64().unwrap() as u32;
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "worker {pid} lives on"
    );
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

/// Whether `pid` is gone from the process table altogether: not alive, and not a zombie
/// waiting for a parent that never reaps it.
fn wait_reaped(pid: u32, limit: Duration) -> bool {
    wait_until(limit, || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    })
}

/// The live workers of a daemon, as `GET /api/v1/workers` lists them.
fn live_workers(daemon: &Daemon) -> Vec<serde_json::Value> {
    let (code, body) = http(&daemon.env.socket, "GET", "/api/v1/workers", None).unwrap();
    assert_eq!(code, 200, "{body}");
    body["workers"].as_array().cloned().unwrap_or_default()
}

#[test]
fn regression_a_descendant_that_detaches_from_the_worker_group_is_ended_with_its_request() {
    let (_llm, daemon) = fixture_daemon("", "");
    let (code, body) = daemon.run("victim", "escape");
    assert_eq!(code, 200, "{body}");
    let escaped: u32 = body["answer"].as_str().unwrap().parse().unwrap();
    assert!(escaped > 0, "{body}");
    // Its own session, its parent gone: neither the group sweep nor PID 1 would end it.
    assert!(
        wait_reaped(escaped, Duration::from_secs(5)),
        "process {escaped} outlived its request (or was left a zombie): {}",
        std::fs::read_to_string(format!("/proc/{escaped}/stat")).unwrap_or_default()
    );
    let (code, body) = daemon.run("victim", "still here?");
    assert_eq!(code, 200, "{body}");
}

#[test]
fn regression_a_worker_cannot_start_more_processes_than_its_bound() {
    let llm = FakeLlm::start();
    let scratch = tempfile::tempdir().unwrap().keep();
    let mut opts = DaemonOptions::new(&llm);
    opts.worker_path = Some(fixture_worker(&scratch, ""));
    opts.worker_config = "processes = 8\n".into();
    let daemon = Daemon::start(opts);
    daemon.deploy("victim", &echo_agent("victim", ""));
    let (code, body) = daemon.run("victim", "spawn-many");
    assert_eq!(code, 200, "{body}");
    let pids: Vec<u32> = body["answer"]
        .as_str()
        .unwrap()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap())
        .collect();
    let (_, status) = http(&daemon.env.socket, "GET", "/api/v1/status", None).unwrap();
    let cgroups = status["cgroups"].as_str().unwrap_or_default();
    if cgroups.contains("pids.max") {
        // The worker itself is one of the 8.
        assert!(pids.len() <= 7, "{} children started: {body}", pids.len());
    } else {
        // Unbounded here: the daemon must say so, and why.
        assert!(
            cgroups.starts_with("none (") || cgroups.contains("no pids"),
            "the daemon does not say how workers' processes are bounded: {cgroups:?}"
        );
    }
    for pid in pids {
        assert!(
            wait_reaped(pid, Duration::from_secs(5)),
            "child {pid} outlived its request"
        );
    }
}

#[test]
fn regression_a_dropped_request_stops_its_worker_and_is_recorded_cancelled() {
    use std::io::Write;
    let (_llm, daemon) = fixture_daemon("", "");
    daemon.deploy(
        "patient",
        &echo_agent("patient", "[limits]\ntimeout = \"60s\"\n"),
    );
    let mut client = std::os::unix::net::UnixStream::connect(&daemon.env.socket).unwrap();
    let body = r#"{"request":"hang"}"#;
    write!(
        client,
        "POST /api/v1/agents/patient/run HTTP/1.1\r\nHost: caxton\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut worker = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            worker = live_workers(&daemon)
                .into_iter()
                .find(|w| w["agent"] == "patient" && w["state"] == "running")
                .unwrap_or_default();
            !worker.is_null()
        }),
        "the worker never started"
    );
    let pid = worker["pid"].as_u64().unwrap() as u32;
    let execution = worker["execution_id"].as_str().unwrap().to_owned();

    // The caller goes away (Ctrl-C on `caxton agent run`).
    drop(client);

    assert!(
        wait_reaped(pid, Duration::from_secs(5)),
        "worker {pid} outlived its dropped request"
    );
    assert!(
        wait_until(Duration::from_secs(5), || live_workers(&daemon).is_empty()),
        "the worker is still in the live table"
    );
    let (_, metrics) = http(&daemon.env.socket, "GET", "/metrics", None).unwrap();
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    let live = metrics
        .lines()
        .find(|l| l.starts_with("caxton_live_workers "))
        .unwrap_or_default();
    assert_eq!(live, "caxton_live_workers 0", "{metrics}");
    let mut record = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            record = http(
                &daemon.env.socket,
                "GET",
                &format!("/api/v1/executions/{execution}"),
                None,
            )
            .unwrap()
            .1;
            record["outcome"] == "cancelled"
        }),
        "the execution is not recorded as cancelled: {record}"
    );
    assert_eq!(record["status"], "finished", "{record}");
}

#[test]
fn regression_a_sigkilled_worker_with_unread_replies_is_killed_not_a_protocol_violation() {
    let (_llm, daemon) = fixture_daemon("", "");
    daemon.deploy("deaf", &echo_agent("deaf", "[limits]\ntimeout = \"30s\"\n"));
    let socket = daemon.env.socket.clone();
    let run = std::thread::spawn(move || {
        http(
            &socket,
            "POST",
            "/api/v1/agents/deaf/run",
            Some(r#"{"request":"ask-and-hang"}"#),
        )
        .unwrap()
    });
    // The worker asked for a completion and got it, but never read it: when it dies, its end
    // of the socket closes with data unread, which the supervisor sees as a reset.
    let mut pid = 0;
    assert!(wait_until(Duration::from_secs(10), || {
        if let Some(w) = live_workers(&daemon)
            .into_iter()
            .find(|w| w["agent"] == "deaf" && w["state"] == "running")
        {
            pid = w["pid"].as_u64().unwrap() as u32;
        }
        pid != 0
            && std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim() == "asked")
    }));
    // SAFETY: SIGKILL to the worker, as an out-of-memory killer or an operator's kill -9 would.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let (code, body) = run.join().unwrap();
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["error"]["kind"], "killed", "{body}");
    assert_eq!(body["execution"]["exit_signal"], libc::SIGKILL, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("killed by signal 9 (SIGKILL)"),
        "{body}"
    );
}

#[test]
fn regression_a_worker_that_runs_out_of_memory_says_it_hit_its_limit() {
    let (_llm, daemon) = fixture_daemon("", "");
    daemon.deploy(
        "hungry",
        &echo_agent(
            "hungry",
            "[limits]\ntimeout = \"30s\"\nmemory = \"256MiB\"\n",
        ),
    );
    let (code, body) = daemon.run("hungry", "memory-bomb");
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["error"]["kind"], "memory_limit", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ran out of memory: it reached its limit of 256 MiB"),
        "{message}"
    );
    // The worker's own last words are kept.
    assert!(message.contains("memory allocation of"), "{message}");
    // Only that worker died.
    let (code, body) = daemon.run("victim", "still here?");
    assert_eq!(code, 200, "{body}");
}

#[test]
fn regression_a_full_history_database_refuses_runs_and_keeps_every_record() {
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.extra_config = "[executions]\nmax_size = \"48KiB\"\n".into();
    let daemon = Daemon::start(opts);
    daemon.deploy(
        "scribe",
        &echo_agent("scribe", "[llm]\nprovider = \"fake\"\n"),
    );
    let mut answered = Vec::new();
    let refusal = loop {
        assert!(answered.len() < 2000, "the database never filled up");
        let (code, body) = daemon.run("scribe", "write this down");
        if code != 200 {
            break (code, body);
        }
        answered.push(body["execution_id"].as_str().unwrap().to_owned());
    };
    let (code, body) = refusal;
    assert_eq!(code, 507, "{body}");
    assert_eq!(body["error"]["kind"], "not_recorded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("execution history database is full"),
        "{body}"
    );
    // Every run that was answered 200 is in the history.
    for id in &answered {
        let (code, record) = http(
            &daemon.env.socket,
            "GET",
            &format!("/api/v1/executions/{id}"),
            None,
        )
        .unwrap();
        assert_eq!(code, 200, "{record}");
        assert_eq!(record["outcome"], "succeeded", "{record}");
    }
    let (code, _) = http(&daemon.env.socket, "GET", "/api/v1/health", None).unwrap();
    assert_eq!(code, 200);
}
