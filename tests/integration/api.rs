//! The management API directly: errors, limits, metrics, TCP with a token, socket permissions.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;

use crate::support::*;

#[test]
fn llm_server_failures_fail_only_that_request_with_a_clear_error() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    daemon.deploy("echo", &echo_agent("echo", ""));
    let (code, body) = daemon.run("echo", "[500]");
    assert_eq!(code, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("answered HTTP 500: boom"),
        "{body}"
    );
    let (code, body) = daemon.run("echo", "[garbage]");
    assert_eq!(code, 502);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed answer"),
        "{body}"
    );
    let (code, body) = daemon.run("echo", "[401]");
    assert_eq!(code, 502);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused the API key"),
        "{body}"
    );
    let (code, body) = daemon.run("echo", "fine");
    assert_eq!(code, 200, "{body}");
}

#[test]
fn an_llm_server_that_answers_nothing_times_out_or_is_reported_malformed() {
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.extra_config = format!(
        "[providers.impatient]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"m\"\ntimeout = \"1s\"\n",
        llm.base_url()
    );
    let daemon = Daemon::start(opts);
    daemon.deploy(
        "waiter",
        &echo_agent("waiter", "[llm]\nprovider = \"impatient\"\n"),
    );
    let (code, body) = daemon.run("waiter", "[hang]");
    assert_eq!(code, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("did not answer within 1s"), "{message}");
    let (code, body) = daemon.run("waiter", "[empty]");
    assert_eq!(code, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed answer"),
        "{body}"
    );
    assert_eq!(daemon.run("waiter", "ok").0, 200);
}

#[test]
fn rate_limits_and_server_errors_are_retried_and_other_errors_are_explained() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    daemon.deploy("patient", &echo_agent("patient", ""));
    let started = std::time::Instant::now();
    let (code, body) = daemon.run("patient", "[429once] retry-after");
    assert_eq!(code, 200, "{body}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    let (code, body) = daemon.run("patient", "[500once] then fine");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["answer"], "echo: [500once] then fine");
    let (code, body) = daemon.run("patient", "[429always]");
    assert_eq!(code, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("rate-limiting requests (HTTP 429, 3 attempts)"),
        "{message}"
    );
    let (_, body) = daemon.run("patient", "[unknown-model]");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("does not know model \"fake-model\""),
        "{message}"
    );
    let (_, body) = daemon.run("patient", "[context]");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("context too long"), "{message}");
    // A 401 is not retried: it fails at once.
    let started = std::time::Instant::now();
    let (code, _) = daemon.run("patient", "[401] again");
    assert_eq!(code, 502);
    assert!(started.elapsed() < std::time::Duration::from_millis(900));
}

#[test]
fn an_unreachable_llm_server_is_named_in_the_error() {
    // Bind and drop a port so nothing listens there.
    let port = free_port();
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.llm_url = format!("http://127.0.0.1:{port}/v1");
    let daemon = Daemon::start(opts);
    daemon.deploy("echo", &echo_agent("echo", ""));
    let (code, body) = daemon.run("echo", "hello");
    assert_eq!(code, 502);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "unreachable at http://127.0.0.1:{port}/v1/chat/completions"
        )),
        "{msg}"
    );
}

#[test]
fn oversized_and_malformed_bodies_are_refused() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    daemon.deploy("echo", &echo_agent("echo", ""));
    let huge = serde_json::json!({"request": "x".repeat(2 * 1024 * 1024)}).to_string();
    let (code, body) = http(
        &daemon.env.socket,
        "POST",
        "/api/v1/agents/echo/run",
        Some(&huge),
    )
    .unwrap();
    assert_eq!(code, 413, "{body}");
    assert_eq!(body["error"]["kind"], "body_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the 1048576-byte limit"),
        "{body}"
    );
    let (code, body) = http(
        &daemon.env.socket,
        "POST",
        "/api/v1/agents/echo/run",
        Some("{\"request\": "),
    )
    .unwrap();
    assert_eq!(code, 400, "{body}");
    let (code, body) = http(
        &daemon.env.socket,
        "POST",
        "/api/v1/agents/echo/run",
        Some("{\"text\": \"hi\"}"),
    )
    .unwrap();
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `text`"),
        "{body}"
    );
}

#[test]
fn metrics_count_executions_by_agent_and_outcome() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    daemon.deploy("echo", &echo_agent("echo", ""));
    daemon.run("echo", "one");
    daemon.run("echo", "[500]");
    let mut stream = std::os::unix::net::UnixStream::connect(&daemon.env.socket).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (code, body) = read_response(&mut stream).unwrap();
    assert_eq!(code, 200);
    let text = body.as_str().unwrap();
    assert!(
        text.contains("caxton_executions_total{agent=\"echo\",outcome=\"succeeded\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("caxton_executions_total{agent=\"echo\",outcome=\"agent_failed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("caxton_worker_spawn_duration_seconds_count 2"),
        "{text}"
    );
    assert!(
        text.contains("caxton_execution_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("caxton_live_workers 0"), "{text}");
}

#[test]
fn the_socket_is_group_accessible_only() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    let mode = std::fs::metadata(&daemon.env.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
}

#[test]
fn a_second_daemon_on_the_same_socket_is_refused() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    let out = std::process::Command::new(caxton_bin())
        .arg("--config")
        .arg(&daemon.env.config)
        .arg("--data-dir")
        .arg(daemon.env.data_dir())
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already serving"),
        "{}",
        text(&out.stderr)
    );
    assert!(daemon.cli(&["health"]).status.success());
}

#[test]
fn tcp_requires_the_bearer_token() {
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    let port = opts.listen_tcp("s3cret-token-of-sufficient-length", "");
    let daemon = Daemon::start(opts);
    let get = |auth: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /api/v1/status HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut s).unwrap()
    };
    assert_eq!(get("").0, 401);
    assert_eq!(get("Authorization: Bearer wrong\r\n").0, 401);
    let (code, body) = get("Authorization: Bearer s3cret-token-of-sufficient-length\r\n");
    assert_eq!(code, 200);
    assert_eq!(body["pid"], daemon.pid());

    // A body over [api] max_body announced on TCP: refused from its header, without waiting for
    // the 2 MiB (none is sent), and before authentication with no token.
    let post = |auth: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        write!(
            s,
            "POST /api/v1/agents/any/run HTTP/1.1\r\nHost: x\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n{{\"request\":\""
        )
        .unwrap();
        read_response(&mut s).unwrap()
    };
    assert_eq!(post("").0, 401);
    let (code, body) = post("Authorization: Bearer s3cret-token-of-sufficient-length\r\n");
    assert_eq!(code, 413, "{body}");
    assert_eq!(body["error"]["kind"], "body_too_large", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1048576"),
        "{body}"
    );
}

#[test]
fn peers_outside_the_daemons_user_and_group_are_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to connect as another user");
        return;
    }
    use std::os::unix::process::CommandExt as _;
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    // Open the file permissions wide so that only the peer-credential check stands in the way.
    std::fs::set_permissions(
        daemon.env.data_dir(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&daemon.env.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    // Prints the answer (empty when the daemon hung up on us).
    let probe = "import socket,sys\ntry:\n    s=socket.socket(socket.AF_UNIX)\n    s.connect(sys.argv[1])\n    \
                 s.settimeout(5)\n    s.sendall(b'GET /api/v1/health HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n    \
                 data=b''\n    while True:\n        chunk=s.recv(4096)\n        if not chunk: break\n        data+=chunk\n    \
                 print(data.decode())\nexcept Exception:\n    print('')\n";
    let probe_as = |supplementary: &'static [libc::gid_t]| {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg("-c").arg(probe).arg(&daemon.env.socket);
        // SAFETY: only async-signal-safe calls between fork and exec; groups first, while root.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(supplementary.len(), supplementary.as_ptr()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    };
    // The refused peer is told why, rather than seeing the connection drop.
    let refused = probe_as(&[]);
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(
        refused.contains("uid 65534 (gid 65534) may not use this socket: only root, uid 0"),
        "{refused}"
    );
    assert!(
        daemon.log().contains("peer not allowed"),
        "{}",
        daemon.log()
    );
    // The CLI says so too, instead of "operation was canceled".
    let mut cli = std::process::Command::new(caxton_bin());
    cli.arg("--socket").arg(&daemon.env.socket).arg("health");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cli.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cli.env("HOME", "/nonexistent").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("uid 65534 (gid 65534) may not use this socket"),
        "{}",
        text(&out.stderr)
    );
    // A member of the socket's group (root's group 0 here, as a supplementary group only, the
    // way `usermod -aG` grants it) is let in.
    let socket_gid =
        std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&daemon.env.socket).unwrap());
    assert_eq!(socket_gid, 0, "the test expects a root-owned socket");
    let member = probe_as(&[0]);
    assert!(
        member.starts_with("HTTP/1.1 200"),
        "a member of the socket's group was refused: {member}"
    );
    assert!(daemon.cli(&["health"]).status.success());
}

#[test]
fn a_run_body_that_is_not_a_json_object_is_refused_with_the_reason() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    daemon.deploy("echo", &echo_agent("echo", ""));
    for (body, kind) in [(r#"["hi"]"#, "an array"), (r#""hi""#, "a string")] {
        let (code, answer) = http(
            &daemon.env.socket,
            "POST",
            "/api/v1/agents/echo/run",
            Some(body),
        )
        .unwrap();
        assert_eq!(code, 400, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("the request body must be a JSON object")
                && message.contains(&format!("not {kind}")),
            "{message}"
        );
    }
    let (_, executions) = http(&daemon.env.socket, "GET", "/api/v1/executions", None).unwrap();
    assert_eq!(
        executions["executions"],
        serde_json::json!([]),
        "nothing ran"
    );
}

#[test]
fn a_busy_tcp_port_stops_serve_with_the_address_and_leaves_no_socket_file() {
    let llm = FakeLlm::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut opts = DaemonOptions::new(&llm);
    opts.extra_config =
        format!("[api]\ntcp_listen = \"{addr}\"\ntoken_env = \"CAXTON_TEST_TOKEN\"\n");
    let env = Env::new(&opts);
    let out = std::process::Command::new(caxton_bin())
        .arg("--config")
        .arg(&env.config)
        .arg("--data-dir")
        .arg(env.data_dir())
        .arg("serve")
        .env("CAXTON_TEST_TOKEN", "s3cret-token-of-sufficient-length")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(!env.socket.exists(), "the socket file was left behind");
    // Nothing holds the data directory either: a daemon starts there once the port is free.
    drop(taken);
    let daemon = Daemon::start_in(
        env,
        &[(
            "CAXTON_TEST_TOKEN".into(),
            "s3cret-token-of-sufficient-length".into(),
        )],
    );
    assert!(daemon.cli(&["health"]).status.success());
}

/// Start a connection that sends the beginning of a request and never finishes it.
fn slowloris(
    connect: impl FnOnce() -> std::io::Result<Box<dyn SlowStream>>,
) -> Box<dyn SlowStream> {
    let mut stream = connect().unwrap();
    stream
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    stream
}

trait SlowStream: std::io::Read + std::io::Write {
    fn set_timeout(&self, t: std::time::Duration);
}
impl SlowStream for std::os::unix::net::UnixStream {
    fn set_timeout(&self, t: std::time::Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}
impl SlowStream for std::net::TcpStream {
    fn set_timeout(&self, t: std::time::Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}

fn open_descriptors(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn slow_and_idle_clients_are_closed_and_cannot_keep_others_out() {
    use std::time::{Duration, Instant};
    let llm = FakeLlm::start();
    let token = "s3cret-token-of-sufficient-length";
    let mut opts = DaemonOptions::new(&llm);
    let port = opts.listen_tcp(
        token,
        "header_timeout = \"1s\"\nmax_connections = 16\nmax_unauthenticated = 4\n",
    );
    let daemon = Daemon::start(opts);
    daemon.deploy("echo", &echo_agent("echo", ""));
    let before = open_descriptors(daemon.pid());

    // Three times each cap, on both listeners (none of the TCP ones has shown a token).
    let mut slow: Vec<Box<dyn SlowStream>> = Vec::new();
    for _ in 0..48 {
        slow.push(slowloris(|| {
            Ok(Box::new(std::os::unix::net::UnixStream::connect(
                &daemon.env.socket,
            )?))
        }));
        slow.push(slowloris(|| {
            Ok(Box::new(std::net::TcpStream::connect(("127.0.0.1", port))?))
        }));
    }
    let attacked = Instant::now();

    // Working clients still get in, on both listeners, and a run still spawns its worker.
    let health = daemon.cli(&["health"]);
    assert!(health.status.success(), "{}", text(&health.stderr));
    let (code, body) = daemon.run("echo", "served despite the crowd");
    assert_eq!(code, 200, "{body}");
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        tcp,
        "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut tcp).unwrap().0, 200);
    // The daemon holds at most its caps' worth of them.
    let held = open_descriptors(daemon.pid()).saturating_sub(before);
    assert!(
        held <= 16 + 4 + 8,
        "{held} more descriptors open than before"
    );

    // Every slow connection is closed by the daemon within the header timeout (the oldest
    // sooner, to make room).
    let deadline = attacked + Duration::from_secs(4);
    for (i, stream) in slow.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        stream.set_timeout(left.max(Duration::from_millis(1)));
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("slow connection {i} still open after 4s: {e}"),
        }
    }
    // Refusals are logged as a summary, not one line each.
    let refusals = daemon
        .log()
        .lines()
        .filter(|l| l.contains("API connection"))
        .count();
    assert!((1..=4).contains(&refusals), "{}", daemon.log());
}

#[test]
fn the_log_filter_changes_without_a_restart() {
    let llm = crate::support::FakeLlm::start();
    let d = crate::support::Daemon::start(crate::support::DaemonOptions::new(&llm));
    d.deploy("echo", &crate::support::echo_agent("echo", ""));
    let finished = |d: &crate::support::Daemon| d.log().matches("execution finished").count();

    let out = d.cli(&["log-filter", "warn"]);
    assert!(
        out.status.success(),
        "{}",
        crate::support::text(&out.stderr)
    );
    assert_eq!(crate::support::text(&out.stdout), "warn\n");
    let before = finished(&d);
    assert_eq!(d.run("echo", "quiet").0, 200);
    assert_eq!(finished(&d), before, "an info line passed a warn filter");

    let out = d.cli(&["log-filter", "info"]);
    assert!(out.status.success());
    assert_eq!(d.run("echo", "loud").0, 200);
    assert!(
        crate::support::wait_until(std::time::Duration::from_secs(5), || finished(&d) > before),
        "no info line after the filter went back to info"
    );
    assert_eq!(
        crate::support::text(&d.cli(&["log-filter"]).stdout),
        "info\n"
    );

    let out = d.cli(&["log-filter", "caxton=loudest"]);
    assert!(!out.status.success());
    let err = crate::support::text(&out.stderr);
    assert!(err.contains("filter \"caxton=loudest\""), "{err}");
    assert_eq!(
        crate::support::text(&d.cli(&["log-filter"]).stdout),
        "info\n",
        "a refused filter changes nothing"
    );
}
