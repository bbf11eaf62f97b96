//! `caxton execution list | show` and `GET /api/v1/executions`: the history an operator
//! filters by agent, status or outcome and time, and one execution with its tool calls, its
//! conversation, its parent and its children, through a daemon and without one.

use serde_json::{Value, json};

use crate::support::{Daemon, DaemonOptions, FakeLlm, echo_agent, http, text};

fn json_cli(d: &Daemon, args: &[&str]) -> Value {
    let out = d.cli(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ids(list: &Value) -> Vec<String> {
    list["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_history_filters_by_agent_outcome_and_time_and_shows_a_tree() {
    let llm = FakeLlm::start();
    let mut d = Daemon::start(DaemonOptions::new(&llm));
    d.deploy("helper", &echo_agent("helper", ""));
    d.deploy(
        "boss",
        &echo_agent("boss", "[delegation]\nagents = [\"helper\"]\n"),
    );
    let (_, plain) = d.run("helper", "hello");
    let (_, failed) = d.run("helper", "[500]");
    let (_, parent) = d.run(
        "boss",
        &format!(
            "[call ask_agent {}]",
            json!({"agent": "helper", "request": "hi"})
        ),
    );
    let parent_id = parent["execution_id"].as_str().unwrap().to_owned();

    let all = json_cli(&d, &["execution", "list", "--json"]);
    assert_eq!(ids(&all).len(), 4, "{all}");
    // Newest first: the delegated child started after its parent.
    assert_eq!(
        all["executions"][0]["parent_execution_id"],
        parent_id.as_str()
    );
    assert_eq!(ids(&all)[1], parent_id);
    let helper = json_cli(&d, &["execution", "list", "--agent", "helper", "--json"]);
    assert_eq!(ids(&helper).len(), 3);
    let failures = json_cli(
        &d,
        &["execution", "list", "--status", "agent_failed", "--json"],
    );
    assert_eq!(
        ids(&failures),
        [failed["execution"]["execution_id"].as_str().unwrap()]
    );
    let recent = json_cli(&d, &["execution", "list", "--since", "1h", "--json"]);
    assert_eq!(ids(&recent).len(), 4);
    let future = json_cli(
        &d,
        &[
            "execution",
            "list",
            "--since",
            "2099-01-01T00:00:00Z",
            "--json",
        ],
    );
    assert!(ids(&future).is_empty());
    let one = json_cli(&d, &["execution", "list", "--limit", "1", "--json"]);
    assert_eq!(ids(&one).len(), 1);

    let shown = json_cli(&d, &["execution", "show", &parent_id, "--json"]);
    assert_eq!(shown["children"].as_array().unwrap().len(), 1, "{shown}");
    let child_id = shown["children"][0].as_str().unwrap().to_owned();
    let child = json_cli(&d, &["execution", "show", &child_id, "--json"]);
    assert_eq!(child["parent_execution_id"], parent_id.as_str());

    let out = d.cli(&["execution", "show", &parent_id]);
    let page = text(&out.stdout);
    assert!(page.contains("outcome:      succeeded"), "{page}");
    assert!(
        page.contains(&format!("child:        {child_id}")),
        "{page}"
    );
    assert!(page.contains("tool 1:       ask_agent("), "{page}");
    let out = d.cli(&["execution", "list"]);
    let table = text(&out.stdout);
    assert!(
        table.contains(&parent_id) && table.contains("agent_failed"),
        "{table}"
    );
    assert!(
        table.contains(plain["execution_id"].as_str().unwrap()),
        "{table}"
    );

    // Bad filters are named.
    let out = d.cli(&["execution", "list", "--since", "last tuesday"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--since \"last tuesday\""),
        "{}",
        text(&out.stderr)
    );
    let (code, answer) = http(&d.env.socket, "GET", "/api/v1/executions?limit=many", None).unwrap();
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the filters are"),
        "{answer}"
    );
    let out = d.cli(&["execution", "show", "nope"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no execution with id \"nope\""),
        "{}",
        text(&out.stderr)
    );

    // Without a daemon the same history is read from the database.
    d.stop();
    let out = d
        .env
        .cli(&["execution", "list", "--agent", "boss", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ids(&offline), [parent_id.as_str()]);
    let out = d.env.cli(&["execution", "show", &parent_id, "--json"]);
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offline["children"][0], child_id.as_str());
}
