//! The CLI as a newcomer uses it: deploy, validate, list, show, run, status, health.

use std::path::Path;

use crate::support::*;

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agents"))
}

#[test]
fn deploy_and_run_the_hello_example_through_the_daemon() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    let hello = examples().join("hello.toml");
    let out = daemon.cli(&["agent", "deploy", hello.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "deployed agent hello 1.0.0");

    let out = daemon.cli(&["agent", "run", "hello", "What is the capital of France?"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "echo: What is the capital of France?"
    );

    let out = daemon.env.cli_with_stdin(
        &["agent", "run", "hello", "-", "--verbose"],
        Some("from stdin"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "echo: from stdin");
    let details = text(&out.stderr);
    assert!(details.contains("worker:    pid "), "{details}");
    assert!(
        details.contains("fake-model via fake (5 prompt + 2 completion tokens)"),
        "{details}"
    );

    let out = daemon.cli(&["agent", "list"]);
    assert!(text(&out.stdout).contains("hello"), "{}", text(&out.stdout));
    let out = daemon.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["agents"], 1);
    assert_eq!(status["ready"], true);
    assert_eq!(daemon.cli(&["health"]).status.code(), Some(0));
}

#[test]
fn the_seed_data_analyzer_deploys_as_printed_with_a_warning_about_the_pitfall() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    let file = examples().join("data-analyzer.toml");
    let out = daemon.cli(&["agent", "deploy", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("system_prompt follows the [parameters] header"),
        "{}",
        text(&out.stderr)
    );
    // Both spellings of the name reach the same agent.
    let out = daemon.cli(&[
        "agent",
        "run",
        "DataAnalyzer",
        "sales by region",
        "--context",
        "q3.csv",
        "--requirements",
        "brief",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer = text(&out.stdout);
    assert!(
        answer.contains("Analyze the following data request: sales by region"),
        "{answer}"
    );
    assert!(answer.contains("Available data: q3.csv"), "{answer}");
    assert!(answer.contains("User requirements: brief"), "{answer}");
    let out = daemon.cli(&["agent", "show", "data-analyzer"]);
    assert!(
        text(&out.stdout).contains("# DataAnalyzer Agent"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_malformed_agent_file_is_refused_with_file_line_and_reason_and_the_running_version_stays() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    daemon.deploy("greeter", &echo_agent("greeter", ""));
    let bad = daemon.env.agent_file("bad", "name = \"greeter\"\nversion = \"2.0.0\"\nuser_prompt_template = \"{{ request }}\"\nmodle = \"x\"\n");
    let out = daemon.cli(&["agent", "deploy", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("bad.src.toml:4:"), "{err}");
    assert!(err.contains("modle"), "{err}");
    let (code, body) = daemon.run("greeter", "still here?");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["agent_version"], "1.0.0");
}

#[test]
fn validate_names_unknown_template_variables_and_unknown_providers() {
    let llm = FakeLlm::start();
    let env = Env::new(&DaemonOptions::new(&llm));
    let file = env.agent_file(
        "t",
        "name = \"tt\"\nversion = \"1\"\nuser_prompt_template = \"Dear {{ customer_name }}\"\n",
    );
    let out = env.cli(&["agent", "validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("t.src.toml:3:") && err.contains("customer_name"),
        "{err}"
    );

    let file = env.agent_file("p", &echo_agent("pp", "[llm]\nprovider = \"nowhere\"\n"));
    let out = env.cli(&["agent", "validate", file.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(
        err.contains("provider \"nowhere\" is not configured") && err.contains("fake"),
        "{err}"
    );
}

#[test]
fn agent_run_without_a_daemon_starts_a_supervisor_for_the_one_request() {
    let llm = FakeLlm::start();
    let env = Env::new(&DaemonOptions::new(&llm));
    let file = env.agent_file("solo", &echo_agent("solo", ""));
    let out = env.cli(&["agent", "deploy", file.to_str().unwrap()]);
    assert!(
        text(&out.stdout).contains("no daemon running"),
        "{}",
        text(&out.stdout)
    );
    let out = env.cli(&["agent", "run", "solo", "offline please", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["answer"], "echo: offline please");
    // A real worker process ran it, not the CLI itself.
    let worker = report["worker_pid"].as_u64().unwrap();
    assert_ne!(worker, 0);
    assert!(report["startup_ms"].as_f64().unwrap() > 0.0);
    // The execution is in the database a daemon started later will serve.
    let daemon = Daemon::start_in(env, &[]);
    let exec = report["execution_id"].as_str().unwrap();
    let (code, body) = http(
        &daemon.env.socket,
        "GET",
        &format!("/api/v1/executions/{exec}"),
        None,
    )
    .unwrap();
    assert_eq!(code, 200);
    assert_eq!(body["outcome"], "succeeded");
    assert_eq!(body["worker_pid"].as_u64(), Some(worker));
    // One start: the row written before the worker existed and the report agree on it.
    assert_eq!(body["started_at"], report["started_at"], "{body}");
    // Accounting: who answered, with which model, how many tokens, how long it took.
    assert_eq!(body["provider"], "fake");
    assert_eq!(body["model"], "fake-model");
    assert_eq!(
        (
            body["prompt_tokens"].as_u64(),
            body["completion_tokens"].as_u64()
        ),
        (Some(5), Some(2))
    );
    assert!(body["llm_ms"].as_f64().unwrap() > 0.0, "{body}");
}

#[test]
fn health_and_status_fail_clearly_without_a_daemon() {
    let llm = FakeLlm::start();
    let env = Env::new(&DaemonOptions::new(&llm));
    let out = env.cli(&["health"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("no caxton daemon is running"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(env.cli(&["status"]).status.code(), Some(3));
}

#[test]
fn unknown_agents_get_a_clear_error() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    let out = daemon.cli(&["agent", "run", "nobody", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no agent named \"nobody\" is deployed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn remove_takes_the_agent_away() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    daemon.deploy("tmp-agent", &echo_agent("tmp-agent", ""));
    assert!(
        daemon
            .cli(&["agent", "remove", "tmp-agent"])
            .status
            .success()
    );
    assert!(!daemon.env.data_dir().join("agents/tmp-agent.toml").exists());
    let (code, _) = daemon.run("tmp-agent", "x");
    assert_eq!(code, 404);
}

#[test]
fn stream_prints_the_answer_as_it_arrives_through_the_worker() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    daemon.deploy("streamer", &echo_agent("streamer", ""));
    let out = daemon.cli(&[
        "agent",
        "run",
        "streamer",
        "one two three",
        "--stream",
        "--verbose",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "echo: one two three\n");
    assert!(
        text(&out.stderr).contains("(5 prompt + 2 completion tokens)"),
        "{}",
        text(&out.stderr)
    );
    // On the wire: one line per piece, then the report.
    let (code, body) = http(
        &daemon.env.socket,
        "POST",
        "/api/v1/agents/streamer/run?stream=true",
        Some(r#"{"request":"a b c"}"#),
    )
    .unwrap();
    assert_eq!(code, 200);
    let lines: Vec<serde_json::Value> = body
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pieces: Vec<&str> = lines.iter().filter_map(|l| l["delta"].as_str()).collect();
    assert_eq!(pieces, ["echo: ", "a ", "b ", "c"]);
    assert_eq!(lines.last().unwrap()["done"]["answer"], "echo: a b c");
    // A failure still ends the stream with a line that says so.
    let (_, body) = http(
        &daemon.env.socket,
        "POST",
        "/api/v1/agents/streamer/run?stream=true",
        Some(r#"{"request":"[401] no"}"#),
    )
    .unwrap();
    // A single-line body reads as JSON already; a longer one as text.
    let last = match body {
        serde_json::Value::String(lines) => {
            serde_json::from_str(lines.lines().last().unwrap()).unwrap()
        }
        line => line,
    };
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused the API key"),
        "{last}"
    );
}

#[test]
fn an_agent_file_over_the_size_cap_is_refused_by_validate_and_deploy_naming_it() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    // 5 MB of documentation: valid TOML, far over the 256 KiB cap.
    let body = echo_agent(
        "huge",
        &format!(
            "documentation = \"\"\"\n{}\n\"\"\"\n",
            "x".repeat(5_000_000)
        ),
    );
    let file = daemon.env.agent_file("huge", &body);
    for command in ["validate", "deploy"] {
        let out = daemon.cli(&["agent", command, file.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {err}");
        assert!(err.contains("huge.src.toml:1:"), "{command}: {err}");
        assert!(
            err.contains(&format!("{} bytes", body.len())) && err.contains("256KiB"),
            "{command}: {err}"
        );
        assert!(!err.contains("413"), "{command}: {err}");
    }
    // A file under the cap deploys through the daemon, even one whose JSON encoding is twice
    // its size (every quote and backslash escaped).
    let fits = echo_agent(
        "roomy",
        &format!("documentation = '''\n{}\n'''\n", "\"\\".repeat(120 * 1024)),
    );
    let file = daemon.env.agent_file("roomy", &fits);
    let out = daemon.cli(&["agent", "deploy", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn an_agent_file_that_is_not_utf8_names_the_line_and_byte_column() {
    let llm = FakeLlm::start();
    let env = Env::new(&DaemonOptions::new(&llm));
    let file = env.data_dir().join("latin1.toml");
    std::fs::write(
        &file,
        b"name = \"cafe\"\nversion = \"1\"\n# caf\xe9\nuser_prompt_template = \"{{ request }}\"\n",
    )
    .unwrap();
    for command in ["validate", "deploy"] {
        let out = env.cli(&["agent", command, file.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {err}");
        assert!(err.contains("latin1.toml:3:"), "{command}: {err}");
        assert!(err.contains("byte column 6"), "{command}: {err}");
    }
}

#[test]
fn templates_may_use_minijinja_builtins_but_not_unknown_variables() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    let counter = daemon.env.agent_file(
        "counter",
        "name = \"counter\"\nversion = \"1\"\nuser_prompt_template = '''\
         {% set ns = namespace(total=0) %}{% for i in range(3) %}{{ loop.index }}\
         {% set ns.total = ns.total + i %}{% endfor %} {{ dict(a=ns.total).a }} {{ request }}'''\n",
    );
    let out = daemon.cli(&["agent", "deploy", counter.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, body) = daemon.run("counter", "go");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["answer"], "echo: 123 3 go", "{body}");

    let unknown = daemon.env.agent_file(
        "mystery",
        "name = \"mystery\"\nversion = \"1\"\nuser_prompt_template = '{{ range(3) | join }} {{ customer }}'\n",
    );
    let out = daemon.cli(&["agent", "deploy", unknown.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("mystery.src.toml:3:") && err.contains("customer"),
        "{err}"
    );
    assert!(!err.contains("range"), "{err}");
}

#[test]
fn two_files_defining_one_agent_are_both_refused_at_start_naming_each_other() {
    let llm = FakeLlm::start();
    let env = Env::new(&DaemonOptions::new(&llm));
    let agents = env.data_dir().join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(agents.join("a.toml"), echo_agent("twin", "")).unwrap();
    std::fs::write(
        agents.join("b.toml"),
        echo_agent("twin", "").replace("1.0.0", "2.0.0"),
    )
    .unwrap();
    let daemon = Daemon::start_in(env, &[]);
    let (code, body) = daemon.run("twin", "which one?");
    assert_ne!(code, 200, "{body}");
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("a.toml") && l.contains("b.toml") && l.contains("twin")),
        "{log}"
    );
}

#[test]
fn agent_run_reads_a_piped_question_and_refuses_none() {
    let llm = FakeLlm::start();
    let daemon = Daemon::start(DaemonOptions::new(&llm));
    daemon.deploy("asker", &echo_agent("asker", ""));
    // Piped in without `-`.
    let out = daemon
        .env
        .cli_with_stdin(&["agent", "run", "asker"], Some("piped question\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "echo: piped question");
    // Nothing at all, or only blanks, is not a question.
    let out = daemon
        .env
        .cli_with_stdin(&["agent", "run", "asker"], Some(" \n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the question is empty"),
        "{}",
        text(&out.stderr)
    );
    let out = daemon.cli(&["agent", "run", "asker", "   "]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("the question is empty"));
    // A terminal on standard input and no question: say how to give one instead of waiting.
    let script =
        "import os,pty,sys\nsys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))\n";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(caxton_bin())
        .arg("--config")
        .arg(&daemon.env.config)
        .arg("--data-dir")
        .arg(daemon.env.data_dir())
        .args(["agent", "run", "asker"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("no question given"),
        "{}",
        text(&out.stdout)
    );
    let (_, executions) = http(&daemon.env.socket, "GET", "/api/v1/executions", None).unwrap();
    assert_eq!(executions["executions"].as_array().unwrap().len(), 1);
}

#[test]
fn a_draining_daemon_says_so_and_agent_run_does_not_work_around_it() {
    let llm = FakeLlm::start();
    let mut daemon = Daemon::start(DaemonOptions::new(&llm));
    daemon.deploy(
        "slowpoke",
        &echo_agent("slowpoke", "[limits]\ntimeout = \"30s\"\n"),
    );
    let socket = daemon.env.socket.clone();
    let stuck = std::thread::spawn(move || {
        http(
            &socket,
            "POST",
            "/api/v1/agents/slowpoke/run",
            Some(r#"{"request":"[hang] keeps the drain going"}"#),
        )
        .unwrap()
    });
    daemon.wait_for_worker("slowpoke");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.pid(), libc::SIGTERM) };
    // The drain begins as soon as the signal is handled; health reports it.
    let started = std::time::Instant::now();
    let health = loop {
        let out = daemon.cli(&["health"]);
        if text(&out.stdout).trim() != "ready" {
            break out;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    };
    assert_eq!(
        text(&health.stdout).trim(),
        "draining",
        "{}",
        text(&health.stderr)
    );
    assert_eq!(health.status.code(), Some(3));
    // A new run is refused by the daemon, with the reason, and nothing is written.
    let out = daemon.cli(&["agent", "run", "slowpoke", "while draining"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("shutting down"),
        "{}",
        text(&out.stderr)
    );
    // When the socket does not answer at all, the daemon still owns the data directory: the CLI
    // must not start a supervisor of its own on it.
    let moved = daemon.env.data_dir().join("moved.sock");
    std::fs::rename(&daemon.env.socket, &moved).unwrap();
    let out = daemon.cli(&["agent", "run", "slowpoke", "behind its back"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "(pid {}) is already serving the data directory",
            daemon.pid()
        )) && err.contains("did not accept the connection"),
        "{err}"
    );
    let (_, executions) = http(&moved, "GET", "/api/v1/executions", None).unwrap();
    let executions = executions["executions"].as_array().unwrap();
    assert_eq!(executions.len(), 1, "{executions:?}");
    // A second signal ends the drain at once.
    let status = daemon.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert_eq!(stuck.join().unwrap().0, 503);
}
