//! Delegation end to end: an agent's model asks another agent (or a capability) through the
//! delegation tools, each delegated request runs in a worker of its own, linked to its parent,
//! its root and its conversation, and the guards hold for the whole tree: cycles of any length,
//! depth, the allowlist, shared budgets, deadlines, and kills that take the subtree down. The
//! fake model scripts the tool calls (`[call NAME {json}]`), so every guard is hit
//! deterministically.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Daemon, DaemonOptions, FakeLlm, ask, echo_agent, http, process_alive, text, wait_until,
};

fn delegating(name: &str, delegation: &str) -> String {
    echo_agent(name, &format!("[delegation]\n{delegation}\n"))
}

fn metric(d: &Daemon, line_start: &str) -> f64 {
    let out = http_text(d, "/metrics");
    out.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn http_text(d: &Daemon, path: &str) -> String {
    caxton_test_kit::api_client::http_text(&d.env.socket, "GET", path, None)
        .unwrap()
        .1
}

#[test]
fn an_agent_asks_another_in_a_worker_of_its_own_and_the_tree_is_recorded() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    d.deploy(
        "coordinator",
        &delegating(
            "coordinator",
            "agents = [\"researcher\"]\ncapabilities = [\"writing\"]",
        ),
    );
    d.deploy(
        "researcher",
        &echo_agent("researcher", "description = \"Finds facts\"\n"),
    );
    d.deploy(
        "writer",
        &echo_agent("writer", "capabilities = [\"writing\"]\n"),
    );

    let report = d.run_ok("coordinator", &ask("researcher", "find facts about tea"));
    assert_eq!(
        report["answer"], "tool said: echo: find facts about tea",
        "{report}"
    );
    assert_eq!(report["tool_calls"][0]["tool"], "ask_agent");
    assert_eq!(report["tool_calls"][0]["outcome"], "ok");

    let id = report["conversation_id"].as_str().unwrap();
    let shown = d.conversation(id);
    let root = &shown["executions"][0];
    assert_eq!(root["agent"], "coordinator");
    assert_eq!(root["children"][0]["agent"], "researcher", "{shown}");
    assert_eq!(root["children"][0]["outcome"], "succeeded");
    let child_id = root["children"][0]["execution_id"].as_str().unwrap();
    let (_, child) = http(
        &d.env.socket,
        "GET",
        &format!("/api/v1/executions/{child_id}"),
        None,
    )
    .unwrap();
    assert_eq!(
        child["parent_execution_id"], report["execution_id"],
        "{child}"
    );
    assert_eq!(child["root_execution_id"], report["execution_id"]);
    assert_eq!(child["conversation_id"], id);
    assert_ne!(child["worker_pid"], report["worker_pid"], "its own worker");
    let flow: Vec<String> = shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {}→{}",
                m["kind"].as_str().unwrap(),
                m["sender"]["name"].as_str().unwrap_or("caller"),
                m["receiver"]["name"].as_str().unwrap_or("caller")
            )
        })
        .collect();
    assert_eq!(
        flow,
        [
            "request caller→coordinator",
            "request coordinator→researcher",
            "response researcher→coordinator",
            "response coordinator→caller"
        ]
    );

    // By capability, and the human view of the tree.
    let report = d.run_ok(
        "coordinator",
        &format!(
            "[call ask_capability {}]",
            json!({"capability": "writing", "request": "a haiku"})
        ),
    );
    assert_eq!(report["answer"], "tool said: echo: a haiku");
    let out = d.cli(&[
        "conversation",
        "show",
        report["conversation_id"].as_str().unwrap(),
    ]);
    let page = text(&out.stdout);
    assert!(
        page.contains("  coordinator ") && page.contains("    writer "),
        "{page}"
    );
    assert!(
        page.contains("coordinator asks capability writing: a haiku"),
        "{page}"
    );

    // A notification is sent without waiting and recorded in the conversation.
    let report = d.run_ok(
        "coordinator",
        &format!(
            "[call notify {}]",
            json!({"agent": "researcher", "content": "FYI: tea is hot"})
        ),
    );
    assert_eq!(
        report["answer"],
        "tool said: notification sent to researcher"
    );
    let id = report["conversation_id"].as_str().unwrap().to_owned();
    assert!(wait_until(Duration::from_secs(10), || {
        d.conversation(&id)["executions"][0]["children"][0]["status"] == "finished"
    }));
    let shown = d.conversation(&id);
    assert!(
        shown["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["kind"] == "notification" && m["content"] == "FYI: tea is hot"),
        "{shown}"
    );
    assert!(
        metric(
            &d,
            "caxton_messages_processed_total{message_type=\"notification\",status=\"ok\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &d,
            "caxton_messages_processed_total{message_type=\"request\",status=\"ok\"}"
        ) >= 5.0
    );
}

#[test]
fn cycles_depth_and_the_allowlist_are_refused_as_tool_errors_the_model_reads() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    d.deploy(
        "alpha",
        &delegating(
            "alpha",
            "agents = [\"beta\", \"ghost\"]\ncapabilities = [\"nothing-here\"]\nmax_depth = 2",
        ),
    );
    d.deploy(
        "beta",
        &delegating("beta", "agents = [\"alpha\", \"gamma\"]"),
    );
    d.deploy(
        "gamma",
        &delegating("gamma", "agents = [\"alpha\", \"delta\"]"),
    );
    d.deploy("delta", &echo_agent("delta", ""));

    let executions_of = |report: &Value| {
        let shown = d.conversation(report["conversation_id"].as_str().unwrap());
        fn count(nodes: &Value) -> usize {
            nodes
                .as_array()
                .unwrap()
                .iter()
                .map(|n| 1 + count(&n["children"]))
                .sum()
        }
        count(&shown["executions"])
    };

    // A→B→A: beta's call is refused, beta's model reads why, alpha answers.
    let report = d.run_ok("alpha", &ask("beta", &ask("alpha", "loop")));
    let answer = report["answer"].as_str().unwrap();
    assert!(answer.contains("cycle (alpha → beta → alpha)"), "{answer}");
    assert_eq!(executions_of(&report), 2, "no worker for the refused call");

    // A→B→C→A.
    let report = d.run_ok("alpha", &ask("beta", &ask("gamma", &ask("alpha", "loop"))));
    let answer = report["answer"].as_str().unwrap();
    assert!(answer.contains("alpha → beta → gamma → alpha"), "{answer}");
    assert_eq!(executions_of(&report), 3);

    // Depth: alpha allows two levels below it; gamma asking delta would be the third.
    let report = d.run_ok("alpha", &ask("beta", &ask("gamma", &ask("delta", "deep"))));
    let answer = report["answer"].as_str().unwrap();
    assert!(answer.contains("2 delegation(s) deep"), "{answer}");
    assert_eq!(executions_of(&report), 3);

    // Outside the allowlist, not deployed, an unknown capability.
    let answer = d.run_ok("alpha", &ask("delta", "hi"))["answer"].clone();
    assert!(
        answer.as_str().unwrap().contains(
            "alpha may not ask agent \"delta\"; its [delegation] agents are: beta, ghost"
        ),
        "{answer}"
    );
    let answer = d.run_ok("alpha", &ask("ghost", "hi"))["answer"].clone();
    assert!(
        answer
            .as_str()
            .unwrap()
            .contains("no agent named \"ghost\" is deployed"),
        "{answer}"
    );
    let answer = d.run_ok(
        "alpha",
        &format!(
            "[call ask_capability {}]",
            json!({"capability": "nothing-here", "request": "x"})
        ),
    )["answer"]
        .clone();
    assert!(
        answer
            .as_str()
            .unwrap()
            .contains("no deployed agent declares capability \"nothing-here\""),
        "{answer}"
    );

    // A malformed call: the model reads what is wrong with it.
    let report = d.run_ok("alpha", "[call ask_agent {\"agent\": \"beta\"}]");
    assert_eq!(report["tool_calls"][0]["outcome"], "invalid", "{report}");
    assert!(
        report["answer"].as_str().unwrap().contains("request"),
        "{report}"
    );

    for reason in ["cycle", "depth", "not_allowed", "unknown_target"] {
        assert!(
            metric(
                &d,
                &format!("caxton_delegations_refused_total{{reason=\"{reason}\"}}")
            ) >= 1.0,
            "{reason}"
        );
    }
}

#[test]
fn a_budget_spent_in_the_middle_of_a_tree_refuses_the_remaining_children() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    // Each fake model turn reports 7 tokens: the root's first turn and one child spend 14.
    d.deploy(
        "boss",
        &delegating(
            "boss",
            "agents = [\"one\", \"two\", \"three\"]\ntoken_budget = 10",
        ),
    );
    for n in ["one", "two", "three"] {
        d.deploy(n, &echo_agent(n, ""));
    }
    let report = d.run_ok(
        "boss",
        &format!(
            "{} {} {}",
            ask("one", "a"),
            ask("two", "b"),
            ask("three", "c")
        ),
    );
    let answer = report["answer"].as_str().unwrap();
    let parts: Vec<&str> = answer
        .trim_start_matches("tool said: ")
        .split(" | ")
        .collect();
    assert_eq!(parts[0], "echo: a", "{answer}");
    for refused in &parts[1..] {
        assert!(
            refused.contains("token budget of this request (10 tokens"),
            "{answer}"
        );
    }
    let outcomes: Vec<&str> = report["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["ok", "refused", "refused"]);
}

/// Start `request` to `agent` on a thread; its (status, body) when it ends.
fn start(d: &Daemon, agent: &str, request: &str) -> std::thread::JoinHandle<(u16, Value)> {
    let socket = d.env.socket.clone();
    let path = format!("/api/v1/agents/{agent}/run");
    let body = json!({"request": request}).to_string();
    std::thread::spawn(move || {
        http(&socket, "POST", &path, Some(&body)).map_or((0, Value::Null), |r| r)
    })
}

fn live(d: &Daemon) -> Vec<Value> {
    let (_, body) = http(&d.env.socket, "GET", "/api/v1/workers", None).unwrap();
    body["workers"].as_array().unwrap().clone()
}

#[test]
fn killing_a_parent_ends_its_running_children_and_a_killed_child_is_its_parents_tool_error() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    d.deploy(
        "boss",
        &delegating(
            "boss",
            "agents = [\"sleeper\"]\ncapabilities = [\"sleeping\"]",
        ),
    );
    for n in ["sleeper", "sleeper-b", "sleeper-c"] {
        d.deploy(n, &echo_agent(n, "capabilities = [\"sleeping\"]\n"));
    }

    // Three children at once (a broadcast), each waiting on its model. The children's request
    // is written `\u005bhang]` in the parent's text, so only the children's model hangs.
    let broadcast = r#"[call ask_capability {"capability": "sleeping", "request": "\u005bhang]", "strategy": "broadcast"}]"#;
    let waiting = start(&d, "boss", broadcast);
    assert!(
        wait_until(Duration::from_secs(10), || live(&d).len() == 4),
        "{:?}",
        live(&d)
    );
    let workers = live(&d);
    let root = workers
        .iter()
        .find(|w| w["agent"] == "boss")
        .unwrap()
        .clone();
    let children: Vec<&Value> = workers.iter().filter(|w| w["agent"] != "boss").collect();
    assert!(
        children
            .iter()
            .all(|c| c["parent_execution_id"] == root["execution_id"])
    );
    let out = d.cli(&["status"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("└ sleeper"),
        "the status shows the tree: {shown}"
    );

    let pids: Vec<u32> = workers
        .iter()
        .map(|w| w["pid"].as_u64().unwrap() as u32)
        .collect();
    let killed_at = Instant::now();
    let out = d.cli(&[
        "worker",
        "kill",
        root["execution_id"].as_str().unwrap(),
        "--signal",
        "KILL",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        wait_until(Duration::from_secs(5), || pids
            .iter()
            .all(|p| !process_alive(*p))),
        "a process of the tree outlived its root"
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        killed_at.elapsed()
    );
    let (_, body) = waiting.join().unwrap();
    let id = body["execution"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(wait_until(Duration::from_secs(5), || {
        d.conversation(&id)["executions"][0]["children"]
            .as_array()
            .is_some_and(|c| c.len() == 3 && c.iter().all(|n| n["status"] == "finished"))
    }));
    let shown = d.conversation(&id);
    assert_eq!(shown["executions"][0]["outcome"], "killed", "{shown}");
    for child in shown["executions"][0]["children"].as_array().unwrap() {
        assert_eq!(child["outcome"], "cancelled", "{child}");
    }

    // A child killed alone: its parent's tool call fails and the parent answers.
    let waiting = start(
        &d,
        "boss",
        r#"[call ask_agent {"agent": "sleeper", "request": "\u005bhang]"}]"#,
    );
    assert!(wait_until(Duration::from_secs(10), || live(&d).len() == 2));
    let child = live(&d)
        .into_iter()
        .find(|w| w["agent"] == "sleeper")
        .unwrap();
    let out = d.cli(&[
        "worker",
        "kill",
        child["execution_id"].as_str().unwrap(),
        "--signal",
        "KILL",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, body) = waiting.join().unwrap();
    assert_eq!(code, 200, "{body}");
    let answer = body["answer"].as_str().unwrap();
    assert!(answer.contains("agent sleeper failed (killed)"), "{answer}");
}

#[test]
fn a_child_ends_when_its_parent_must_and_a_full_pool_does_not_starve_children() {
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    // One slot: the parent holds it while its child runs beside it.
    opts.worker_config = "max_concurrent = 1\n".into();
    let d = Daemon::start(opts);
    d.deploy(
        "hurried",
        &delegating("hurried", "agents = [\"patient\"]").replace(
            "[delegation]",
            "[limits]\ntimeout = \"1500ms\"\n\n[delegation]",
        ),
    );
    d.deploy(
        "patient",
        &echo_agent("patient", "[limits]\ntimeout = \"60s\"\n"),
    );
    // The child answers at once although the pool's only slot is taken.
    let report = d.run_ok("hurried", &ask("patient", "quick"));
    assert_eq!(report["answer"], "tool said: echo: quick", "{report}");

    // A child that would take a minute ends with its parent's 1.5 s.
    let started = Instant::now();
    let (code, body) = d.run(
        "hurried",
        r#"[call ask_agent {"agent": "patient", "request": "\u005bhang]"}]"#,
    );
    assert_eq!(code, 504, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let id = body["execution"]["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(wait_until(Duration::from_secs(5), || {
        d.conversation(&id)["executions"][0]["children"][0]["status"] == "finished"
    }));
    let child = &d.conversation(&id)["executions"][0]["children"][0];
    assert!(
        child["duration_ms"].as_f64().unwrap() < 2500.0,
        "the child outlived its parent's deadline: {child}"
    );
    assert!(live(&d).is_empty(), "{:?}", live(&d));
}

#[test]
fn the_example_team_deploys_and_its_coordinator_reaches_both_members_by_capability() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    let team = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agents/team"));
    for member in ["coordinator", "researcher", "writer"] {
        let file = team.join(format!("{member}.toml"));
        let out = d.cli(&["agent", "deploy", file.to_str().unwrap()]);
        assert!(out.status.success(), "{member}: {}", text(&out.stderr));
    }
    // The model's two calls, scripted: research first, then writing with the facts as context.
    let request = format!(
        "[call ask_capability {}] [call ask_capability {}]",
        json!({"capability": "research", "request": "green tea"}),
        json!({"capability": "writing", "request": "a note on green tea", "context": "it is green"})
    );
    let out = d.cli(&["agent", "run", "coordinator", "-v", &request]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer = text(&out.stdout);
    assert!(
        answer.starts_with("tool said: echo: green tea | echo: a note on green tea"),
        "{answer}"
    );
    assert!(
        answer.contains("Facts:\nit is green"),
        "the writer got the context: {answer}"
    );
    let details = text(&out.stderr);
    let id = details
        .lines()
        .find_map(|l| l.strip_prefix("conversation: "))
        .unwrap()
        .to_owned();
    let out = d.cli(&["conversation", "show", &id]);
    let page = text(&out.stdout);
    assert!(
        page.contains("    researcher ") && page.contains("    writer "),
        "{page}"
    );
}

#[test]
fn without_a_daemon_a_notification_finishes_before_the_command_ends() {
    let llm = FakeLlm::start();
    let env = crate::support::Env::new(&DaemonOptions::new(&llm));
    env.deploy("herald", &delegating("herald", "agents = [\"listener\"]"));
    env.deploy("listener", &echo_agent("listener", ""));
    // The listener's model takes 300 ms ([slow], written so that only its request has it).
    let request = r#"[call notify {"agent": "listener", "content": "\u005bslow] news"}]"#;
    let out = env.cli(&["agent", "run", "herald", "-v", request]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("conversation: ").map(str::to_owned))
        .unwrap();
    let out = env.cli(&["conversation", "show", &id, "--json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let child = &shown["executions"][0]["children"][0];
    assert_eq!(child["outcome"], "succeeded", "{shown}");
}
