//! Conversations end to end: every request is stored as a message in a conversation before it
//! runs, `--conversation ID` continues one (the agent's model gets the earlier turns, its
//! template can use them), `caxton conversation list | show` and `/api/v1/conversations` show
//! them, and a conversation that does not exist, has expired, or outlived a killed supervisor
//! is reported as such.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Daemon, DaemonOptions, FakeLlm, echo_agent, http, text, wait_gone};

fn json_cli(d: &Daemon, args: &[&str]) -> Value {
    let out = d.cli(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_continued_conversation_gives_the_agent_its_earlier_turns_and_shows_them_all() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    d.deploy("helper", &echo_agent("helper", ""));
    // A template that numbers the turns it was given.
    d.deploy(
        "counter",
        "name = \"counter\"\nversion = \"1\"\nuser_prompt_template = \"turn {{ history | length + 1 }} of {{ conversation_id }}: {{ request }}\"\n",
    );

    let first = json_cli(&d, &["agent", "run", "helper", "--json", "my name is Ada"]);
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(first["root_execution_id"], first["execution_id"], "{first}");

    let second = json_cli(
        &d,
        &[
            "agent",
            "run",
            "helper",
            "--conversation",
            &id,
            "--json",
            "[recall] who am I?",
        ],
    );
    assert_eq!(second["conversation_id"], id.as_str());
    assert_eq!(
        second["answer"], "recall: user: my name is Ada | assistant: echo: my name is Ada",
        "the model got the earlier turn as chat messages"
    );

    // The API takes the id in the body; another agent may continue the conversation.
    let body = serde_json::json!({"request": "and now?", "conversation": id}).to_string();
    let (code, third) = http(
        &d.env.socket,
        "POST",
        "/api/v1/agents/counter/run",
        Some(&body),
    )
    .unwrap();
    assert_eq!(code, 200, "{third}");
    assert_eq!(third["answer"], format!("echo: turn 3 of {id}: and now?"));

    let shown = json_cli(&d, &["conversation", "show", &id, "--json"]);
    let c = &shown["conversation"];
    assert_eq!(c["state"], "completed", "{shown}");
    assert_eq!(c["initiator"]["kind"], "caller");
    assert_eq!(c["messages"], 6);
    assert_eq!(c["participants"], serde_json::json!(["counter", "helper"]));
    let messages = shown["messages"].as_array().unwrap();
    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "request", "response", "request", "response", "request", "response"
        ]
    );
    assert_eq!(messages[0]["content"], "my name is Ada");
    assert_eq!(messages[0]["sender"]["kind"], "caller");
    assert_eq!(
        messages[0]["receiver"],
        serde_json::json!({"kind": "agent", "name": "helper"})
    );
    assert_eq!(messages[1]["reply_to"], messages[0]["id"]);
    assert_eq!(messages[1]["execution_id"], first["execution_id"]);
    assert_eq!(shown["executions"].as_array().unwrap().len(), 3);
    assert_eq!(shown["executions"][0]["outcome"], "succeeded");

    // The human views.
    let out = d.cli(&["conversation", "show", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.contains("state:      completed"), "{page}");
    assert!(
        page.contains("caller asks helper: my name is Ada"),
        "{page}"
    );
    assert!(
        page.contains("helper answers caller: echo: my name is Ada"),
        "{page}"
    );
    assert!(page.contains("(succeeded, "), "{page}");
    let out = d.cli(&["conversation", "list"]);
    let listed = text(&out.stdout);
    assert!(
        listed.contains(&id) && listed.contains("completed"),
        "{listed}"
    );
    assert!(listed.contains("counter, helper"), "{listed}");

    // A failed turn is stored as an error answering its request.
    let failed = d.cli(&["agent", "run", "helper", "--conversation", &id, "[500]"]);
    assert!(!failed.status.success());
    let shown = json_cli(&d, &["conversation", "show", &id, "--json"]);
    assert_eq!(shown["conversation"]["state"], "failed");
    let last = shown["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "error", "{last}");
    assert!(last["content"].as_str().unwrap().contains("500"), "{last}");
}

#[test]
fn a_conversation_that_does_not_exist_or_expired_is_refused_and_runs_nothing() {
    let llm = FakeLlm::start();
    let d = Daemon::start(DaemonOptions::new(&llm));
    d.deploy("helper", &echo_agent("helper", ""));

    let out = d.cli(&["agent", "run", "helper", "--conversation", "nope", "hi"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no conversation \"nope\" exists"), "{err}");
    let body = serde_json::json!({"request": "hi", "conversation": "nope"}).to_string();
    let (code, answer) = http(
        &d.env.socket,
        "POST",
        "/api/v1/agents/helper/run",
        Some(&body),
    )
    .unwrap();
    assert_eq!(
        (code, answer["error"]["kind"].as_str()),
        (404, Some("unknown_conversation"))
    );
    let (code, answer) = http(&d.env.socket, "GET", "/api/v1/conversations/nope", None).unwrap();
    assert_eq!(
        (code, answer["error"]["kind"].as_str()),
        (404, Some("unknown_conversation"))
    );

    let first = json_cli(&d, &["agent", "run", "helper", "--json", "hello"]);
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    // A day passes: age the conversation in the database as time would.
    let db = rusqlite::Connection::open(d.env.data_dir().join("caxton.db")).unwrap();
    db.execute(
        "UPDATE conversations SET expires_at = expires_at - 90000, updated_at = updated_at - 90000",
        [],
    )
    .unwrap();
    let executions_before = http(&d.env.socket, "GET", "/api/v1/executions", None)
        .unwrap()
        .1["executions"]
        .as_array()
        .unwrap()
        .len();
    let out = d.cli(&["agent", "run", "helper", "--conversation", &id, "again"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("expired") && err.contains("expire_after is 1day"),
        "{err}"
    );
    let body = serde_json::json!({"request": "hi", "conversation": id}).to_string();
    let (code, answer) = http(
        &d.env.socket,
        "POST",
        "/api/v1/agents/helper/run",
        Some(&body),
    )
    .unwrap();
    assert_eq!(
        (code, answer["error"]["kind"].as_str()),
        (410, Some("conversation_expired"))
    );
    let executions_after = http(&d.env.socket, "GET", "/api/v1/executions", None)
        .unwrap()
        .1["executions"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        executions_before, executions_after,
        "a refused turn runs nothing"
    );
    let shown = json_cli(&d, &["conversation", "show", &id, "--json"]);
    assert_eq!(shown["conversation"]["state"], "expired");
    assert_eq!(
        shown["conversation"]["messages"], 2,
        "the stored messages stay"
    );
}

#[test]
fn a_supervisor_killed_mid_conversation_leaves_every_message_and_an_abandoned_execution() {
    let llm = FakeLlm::start();
    let mut d = Daemon::start(DaemonOptions::new(&llm));
    d.deploy("helper", &echo_agent("helper", ""));
    let first = json_cli(&d, &["agent", "run", "helper", "--json", "remember this"]);
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let socket = d.env.socket.clone();
    let conversation = id.clone();
    std::thread::spawn(move || {
        let body =
            serde_json::json!({"request": "[hang]", "conversation": conversation}).to_string();
        let _ = http(&socket, "POST", "/api/v1/agents/helper/run", Some(&body));
    });
    let pid = d.wait_for_worker("helper");
    d.signal_and_wait(libc::SIGKILL);
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "worker {pid} outlived its supervisor"
    );

    let d = d.restart();
    let shown = json_cli(&d, &["conversation", "show", &id, "--json"]);
    let messages: Vec<&str> = shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["remember this", "echo: remember this", "[hang]"],
        "{shown}"
    );
    assert_eq!(shown["conversation"]["state"], "failed", "{shown}");
    let statuses: Vec<&str> = shown["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["finished", "abandoned"]);
    // It can be continued after the restart, with the turn that was answered.
    let again = json_cli(
        &d,
        &[
            "agent",
            "run",
            "helper",
            "--conversation",
            &id,
            "--json",
            "[recall] still there?",
        ],
    );
    assert_eq!(
        again["answer"],
        "recall: user: remember this | assistant: echo: remember this"
    );
}
