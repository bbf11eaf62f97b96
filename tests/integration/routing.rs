//! Capability routing end to end: `caxton agent run --capability` and
//! `POST /api/v1/capabilities/{capability}/run` reach an agent that declares the capability by
//! the strategy asked for, and `caxton capability list` shows who declares what.

use serde_json::Value;

use crate::support::{Daemon, DaemonOptions, Env, FakeLlm, echo_agent, http, text};

/// Three agents: two analysts, one of which also writes, and a writer.
fn deploy_team(deploy: impl Fn(&str, &str)) {
    deploy(
        "analyst-a",
        &echo_agent("analyst-a", "capabilities = [\"analysis\"]\n"),
    );
    deploy(
        "analyst-b",
        &echo_agent("analyst-b", "capabilities = [\"analysis\", \"writing\"]\n"),
    );
    deploy(
        "writer",
        &echo_agent("writer", "capabilities = [\"writing\"]\n"),
    );
}

fn json_run(d: &Daemon, args: &[&str]) -> Value {
    let out = d.cli(&[&["agent", "run", "--json"], args].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_request_reaches_an_agent_by_capability_with_each_strategy() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    deploy_team(|name, body| d.deploy(name, body));

    let out = d.cli(&["capability", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(
        listed.contains("analysis") && listed.contains("analyst-a, analyst-b"),
        "{listed}"
    );
    assert!(listed.contains("analyst-b, writer"), "{listed}");

    // The default strategy answers with an agent that has the capability.
    let out = d.cli(&["agent", "run", "--capability", "analysis", "hello"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "echo: hello");

    // Round robin: each writer in turn.
    let turns: Vec<String> = (0..4)
        .map(|_| {
            json_run(
                &d,
                &["--capability", "writing", "--strategy", "round-robin", "x"],
            )["agent"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(turns, ["analyst-b", "writer", "analyst-b", "writer"]);

    // Best: an agent busy with a request is passed over for an idle one.
    let socket = d.env.socket.clone();
    std::thread::spawn(move || {
        let body = serde_json::json!({"request": "[hang]"}).to_string();
        let _ = http(&socket, "POST", "/api/v1/agents/analyst-a/run", Some(&body));
    });
    d.wait_for_worker("analyst-a");
    // analyst-b is now the most recently used, so only the count in flight can choose it.
    assert!(
        d.cli(&["agent", "run", "analyst-b", "warm"])
            .status
            .success()
    );
    for _ in 0..2 {
        let report = json_run(&d, &["--capability", "analysis", "busy?"]);
        assert_eq!(report["agent"], "analyst-b", "{report}");
    }

    // Broadcast: every agent with the capability answers, each labelled.
    let out = d.cli(&[
        "agent",
        "run",
        "--capability",
        "writing",
        "--strategy",
        "broadcast",
        "all of you",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answers = text(&out.stdout);
    assert!(
        answers.contains("[analyst-b] echo: all of you")
            && answers.contains("[writer] echo: all of you"),
        "{answers}"
    );

    // An unknown capability names the ones that exist, on the CLI and the API.
    let out = d.cli(&["agent", "run", "--capability", "poetry", "a poem"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("\"poetry\"") && err.contains("capabilities: analysis, writing"),
        "{err}"
    );
    let (status, body) = http(
        &d.env.socket,
        "POST",
        "/api/v1/capabilities/poetry/run?strategy=broadcast",
        Some(r#"{"request": "x"}"#),
    )
    .unwrap();
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["kind"], "unknown_capability");
    let (status, body) = http(&d.env.socket, "GET", "/api/v1/capabilities", None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["capabilities"][1]["name"], "writing", "{body}");

    // A name and a capability together, or a strategy that does not exist, are refused.
    let out = d.cli(&["agent", "run", "writer", "x", "--capability", "writing"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not both"),
        "{}",
        text(&out.stderr)
    );
    let out = d.cli(&[
        "agent",
        "run",
        "--capability",
        "writing",
        "--strategy",
        "fastest",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("fastest"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn without_a_daemon_a_broadcast_runs_every_agent_in_this_process() {
    let llm = FakeLlm::start();
    let env = Env::new(&DaemonOptions::new(&llm));
    deploy_team(|name, body| env.deploy(name, body));
    let out = env.cli(&[
        "agent",
        "run",
        "--capability",
        "analysis",
        "--strategy",
        "broadcast",
        "--json",
        "offline",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let agents: Vec<&str> = all["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["analyst-a", "analyst-b"]);
    assert!(
        all["answers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["answer"] == "echo: offline"),
        "{all}"
    );
    let out = env.cli(&["capability", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["capabilities"][0]["agents"][1], "analyst-b", "{list}");
}
