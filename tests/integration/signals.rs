//! Operators and signals: killing workers by PID, draining on SIGTERM, SIGKILL of the supervisor,
//! reloading on SIGHUP.

use std::time::Duration;

use crate::support::*;

#[test]
fn a_kill_by_a_pid_recycled_by_another_process_never_reaches_it() {
    // The kernel hands out the PID after the one written here; only root may write it.
    let last_pid = std::path::Path::new("/proc/sys/kernel/ns_last_pid");
    if std::fs::OpenOptions::new()
        .write(true)
        .open(last_pid)
        .is_err()
    {
        eprintln!(
            "SKIPPED: {} is not writable here (needs root)",
            last_pid.display()
        );
        return;
    }
    let llm = FakeLlm::start();
    let scratch = tempfile::tempdir().unwrap();
    let mut opts = DaemonOptions::new(&llm);
    opts.worker_path = Some(fixture_worker(scratch.path(), ""));
    let daemon = Daemon::start(opts);
    daemon.deploy("victim", &echo_agent("victim", ""));
    // The worker says its PID and exits; the daemon reaps it.
    let (code, body) = daemon.run("victim", "pid");
    assert_eq!(code, 200, "{body}");
    let pid: u32 = body["answer"].as_str().unwrap().parse().unwrap();
    let gone = std::time::Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            std::time::Instant::now() < gone,
            "worker {pid} was not reaped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // An unrelated process takes the PID (other processes fork too: try a few times).
    let mut stranger = None;
    for _ in 0..50 {
        std::fs::write(last_pid, (pid - 1).to_string()).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        if child.id() == pid {
            stranger = Some(child);
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let Some(mut stranger) = stranger else {
        panic!("PID {pid} could not be recycled in 50 tries");
    };
    for signal in ["TERM", "KILL"] {
        let out = daemon.cli(&["worker", "kill", &pid.to_string(), "--signal", signal]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains("no live worker"),
            "{}",
            text(&out.stderr)
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the process that took PID {pid} was signalled"
    );
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

fn daemon_with_agent(timeout: &str) -> (FakeLlm, Daemon) {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    daemon.deploy(
        "slowpoke",
        &echo_agent("slowpoke", &format!("[limits]\ntimeout = \"{timeout}\"\n")),
    );
    (llm, daemon)
}

/// Start a request that waits on the hung LLM, in a thread; returns its join handle and PID.
fn start_stuck_request(daemon: &Daemon) -> (StuckRun, u32) {
    let run = daemon.run_in_background("slowpoke", "[hang]");
    let pid = daemon.wait_for_worker("slowpoke");
    (StuckRun(run), pid)
}

/// A request started by [`start_stuck_request`].
struct StuckRun(std::thread::JoinHandle<std::io::Result<(u16, serde_json::Value)>>);

impl StuckRun {
    /// Its answer.
    fn join(self) -> std::thread::Result<(u16, serde_json::Value)> {
        self.0.join().map(|answer| answer.unwrap())
    }
}

/// The kernel sends a worker its parent-death signal when the *thread* that forked it exits,
/// and the daemon's runtime retires a thread idle for 10 s. A worker waiting on its model past
/// that must still be alive: workers come from the spawner thread, which lives as long as the
/// daemon (`worker_pool/spawner.rs`; its unit test shows the hazard itself).
#[test]
fn a_worker_outlives_the_idle_daemon_threads_around_its_start() {
    let (_llm, daemon) = daemon_with_agent("60s");
    let (stuck, pid) = start_stuck_request(&daemon);
    std::thread::sleep(Duration::from_secs(12));
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = state
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .next();
    assert!(
        matches!(state, Some("S" | "R")),
        "worker {pid} did not outlive the idle threads: state {state:?}"
    );
    let live = daemon.cli(&["status"]);
    assert!(
        text(&live.stdout).contains(&pid.to_string()),
        "{}",
        text(&live.stdout)
    );
    let out = daemon.cli(&["worker", "kill", &pid.to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, _) = stuck.join().unwrap();
    assert_ne!(code, 200);
}

#[test]
fn kill_9_on_a_worker_fails_only_its_request() {
    let (_llm, daemon) = daemon_with_agent("30s");
    let (stuck, pid) = start_stuck_request(&daemon);
    // Another request runs fine meanwhile.
    let (code, _) = daemon.run("slowpoke", "[slow] meanwhile");
    assert_eq!(code, 200);
    // SAFETY: sending a signal to a PID the daemon just reported.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let (code, body) = stuck.join().unwrap();
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        body["error"]["message"],
        format!("worker {pid} was killed by signal 9 (SIGKILL)")
    );
    assert!(daemon.cli(&["health"]).status.success());
}

#[test]
fn caxton_worker_kill_by_pid_names_the_operator() {
    let (_llm, daemon) = daemon_with_agent("30s");
    let (stuck, pid) = start_stuck_request(&daemon);
    let out = daemon.cli(&["status"]);
    assert!(
        text(&out.stdout).contains(&pid.to_string()),
        "status lists the worker: {}",
        text(&out.stdout)
    );
    let out = daemon.cli(&["worker", "kill", &pid.to_string(), "--signal", "TERM"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("sent SIGTERM to worker {pid}")));
    let (code, body) = stuck.join().unwrap();
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        body["error"]["message"],
        format!("worker {pid} was killed by signal 15 (SIGTERM) sent by an operator")
    );
    // The PID is gone; killing it again is refused instead of hitting a recycled process.
    let out = daemon.cli(&["worker", "kill", &pid.to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no live worker"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn caxton_worker_kill_by_execution_id() {
    let (_llm, daemon) = daemon_with_agent("30s");
    let (stuck, pid) = start_stuck_request(&daemon);
    let (_, workers) = http(&daemon.env.socket, "GET", "/api/v1/workers", None).unwrap();
    let exec = workers["workers"][0]["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = daemon.cli(&["worker", "kill", &exec, "--signal", "KILL"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (_, body) = stuck.join().unwrap();
    assert_eq!(body["execution"]["execution_id"], exec.as_str());
    assert_eq!(
        body["error"]["message"],
        format!("worker {pid} was killed by signal 9 (SIGKILL) sent by an operator")
    );
}

#[test]
fn a_stopped_worker_fails_at_its_deadline() {
    let (_llm, daemon) = daemon_with_agent("1500ms");
    let (stuck, pid) = start_stuck_request(&daemon);
    let out = daemon.cli(&["worker", "kill", &pid.to_string(), "--signal", "STOP"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, body) = stuck.join().unwrap();
    assert_eq!(code, 504, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("deadline exceeded: no answer within 1500ms"),
        "{message}"
    );
    assert!(
        message.contains("an operator had sent it SIGSTOP"),
        "{message}"
    );
    assert!(wait_gone(pid, Duration::from_secs(5)));
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_0() {
    let (_llm, mut daemon) = daemon_with_agent("30s");
    let socket = daemon.env.socket.clone();
    let inflight = std::thread::spawn(move || {
        http(
            &socket,
            "POST",
            "/api/v1/agents/slowpoke/run",
            Some(r#"{"request":"[slow] finish me"}"#),
        )
        .unwrap()
    });
    daemon.wait_for_worker("slowpoke");
    let status = daemon.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    let (code, body) = inflight.join().unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["answer"], "echo: [slow] finish me");
    assert!(!daemon.env.socket.exists(), "socket file removed on exit");
}

#[test]
fn sigterm_past_the_grace_period_terminates_the_remaining_workers() {
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.extra_config = String::new();
    let env = Env::new(&opts);
    let config = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("grace_period = \"5s\"", "grace_period = \"500ms\"");
    std::fs::write(&env.config, config).unwrap();
    let mut daemon = Daemon::start_in(env, &[]);
    daemon.deploy("slowpoke", &echo_agent("slowpoke", ""));
    let (stuck, pid) = start_stuck_request(&daemon);
    let status = daemon.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    let (code, body) = stuck.join().unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{body}"
    );
    assert!(!process_alive(pid));
}

#[test]
fn sigkill_of_the_supervisor_leaves_no_worker_behind() {
    let (_llm, mut daemon) = daemon_with_agent("30s");
    let (_stuck, pid) = start_stuck_request(&daemon);
    daemon.signal_and_wait(libc::SIGKILL);
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "worker {pid} outlived its supervisor"
    );
    // The next supervisor starts on the same state and marks the lost execution abandoned.
    let Daemon { env, .. } = daemon;
    let restarted = Daemon::start_in(env, &[]);
    let (_, body) = http(&restarted.env.socket, "GET", "/api/v1/executions", None).unwrap();
    assert_eq!(body["executions"][0]["status"], "abandoned", "{body}");
    let (code, _) = restarted.run("slowpoke", "again");
    assert_eq!(code, 200);
}

#[test]
fn sighup_reloads_the_agents_directory_and_keeps_good_versions_of_bad_files() {
    let (_llm, daemon) = daemon_with_agent("30s");
    let agents = daemon.env.data_dir().join("agents");
    std::fs::write(agents.join("fresh.toml"), echo_agent("fresh", "")).unwrap();
    std::fs::write(
        agents.join("slowpoke.toml"),
        "name = \"slowpoke\"\nversion = 2\n",
    )
    .unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.pid(), libc::SIGHUP) };
    let start = std::time::Instant::now();
    loop {
        let (_, list) = http(&daemon.env.socket, "GET", "/api/v1/agents", None).unwrap();
        if list["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "fresh")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "SIGHUP did not reload: {list}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, body) = daemon.run("slowpoke", "still v1");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["agent_version"], "1.0.0");
    assert!(
        daemon.log().contains("previous version kept"),
        "{}",
        daemon.log()
    );
}

#[test]
fn sighup_refuses_a_second_file_defining_a_running_agent_and_keeps_the_running_version() {
    let (_llm, daemon) = daemon_with_agent("30s");
    let agents = daemon.env.data_dir().join("agents");
    // A copy claims the name while the original is broken: the copy must not take over.
    std::fs::write(
        agents.join("a-copy.toml"),
        echo_agent("slowpoke", "").replace("1.0.0", "2.0.0"),
    )
    .unwrap();
    std::fs::write(
        agents.join("slowpoke.toml"),
        "name = \"slowpoke\"\nversion = 2\n",
    )
    .unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.pid(), libc::SIGHUP) };
    let start = std::time::Instant::now();
    while !daemon.log().contains("is also defined by") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "SIGHUP did not report the second file: {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("a-copy.toml") && l.contains("slowpoke.toml")),
        "{log}"
    );
    let (code, body) = daemon.run("slowpoke", "still v1");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["agent_version"], "1.0.0");
    // A deploy of the name is refused while both files exist, naming the other one.
    let file = daemon.env.agent_file(
        "slowpoke-v3",
        &echo_agent("slowpoke", "").replace("1.0.0", "3.0.0"),
    );
    let out = daemon.cli(&["agent", "deploy", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("a-copy.toml"),
        "{}",
        text(&out.stderr)
    );
    let (_, body) = daemon.run("slowpoke", "still v1");
    assert_eq!(body["agent_version"], "1.0.0");
}
