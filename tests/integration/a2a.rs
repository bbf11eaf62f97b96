//! A2A (protocol 0.3.0) inbound: each deployed agent's card and JSON-RPC endpoint, spoken to
//! over the daemon's API as an A2A client would, and every bad input the endpoint must answer
//! with a JSON-RPC error naming what is wrong.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Daemon, DaemonOptions, FakeLlm, echo_agent, http, wait_gone};

fn daemon(llm: &FakeLlm) -> Daemon {
    let d = Daemon::start(DaemonOptions::new(llm));
    d.deploy(
        "helper",
        &echo_agent(
            "helper",
            "description = \"Echoes what it is asked\"\ncapabilities = [\"echo\"]\n",
        ),
    );
    d
}

/// POST a JSON-RPC request to `path`; the HTTP status and the answer.
fn post(d: &Daemon, path: &str, body: &str) -> (u16, Value) {
    http(&d.env.socket, "POST", path, Some(body)).unwrap()
}

/// Call `method` on helper's endpoint; the JSON-RPC answer.
fn call(d: &Daemon, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    let (status, answer) = post(d, "/a2a/helper", &body.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["id"], 7, "{answer}");
    answer
}

fn text_message(text: &str) -> Value {
    json!({"kind": "message", "messageId": uuid(), "role": "user",
           "parts": [{"kind": "text", "text": text}]})
}

/// A message id no other message of this test process has.
fn uuid() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "m-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The events of a Server-Sent Events body, each a JSON-RPC response.
fn events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}

#[test]
fn every_agent_has_a_card_and_the_server_s_card_lists_them() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    for name in ["agent-card.json", "agent.json"] {
        let (status, card) = http(
            &d.env.socket,
            "GET",
            &format!("/a2a/helper/.well-known/{name}"),
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "{card}");
        assert_eq!(card["name"], "helper");
        assert_eq!(card["protocolVersion"], "0.3.0");
        assert_eq!(card["description"], "Echoes what it is asked");
        assert_eq!(card["preferredTransport"], "JSONRPC");
        assert!(
            card["url"].as_str().unwrap().ends_with("/a2a/helper"),
            "{card}"
        );
        assert_eq!(card["capabilities"]["streaming"], true);
        assert_eq!(card["capabilities"]["pushNotifications"], false);
        assert_eq!(card["skills"][0]["id"], "echo");
        assert_eq!(card["skills"][0]["tags"][0], "echo");
        // Over the Unix socket, with no TCP listener, there is no token to ask for.
        assert!(card.get("securitySchemes").is_none(), "{card}");
    }
    let (status, server) =
        http(&d.env.socket, "GET", "/.well-known/agent-card.json", None).unwrap();
    assert_eq!(status, 200, "{server}");
    assert_eq!(server["skills"][0]["id"], "helper");
    assert!(
        server["url"].as_str().unwrap().ends_with("/a2a"),
        "{server}"
    );
    let (status, body) = http(
        &d.env.socket,
        "GET",
        "/a2a/nobody/.well-known/agent-card.json",
        None,
    )
    .unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nobody")
    );
}

#[test]
fn a_sent_message_is_a_task_that_tasks_get_reads_back_and_its_context_continues() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    let answer = call(
        &d,
        "message/send",
        json!({"message": text_message("hello a2a")}),
    );
    let task = &answer["result"];
    assert_eq!(task["kind"], "task", "{answer}");
    assert_eq!(task["status"]["state"], "completed", "{answer}");
    assert_eq!(
        task["artifacts"][0]["parts"][0]["text"], "echo: hello a2a",
        "{answer}"
    );
    assert_eq!(task["history"][0]["role"], "user");
    assert_eq!(task["history"][1]["role"], "agent");
    let id = task["id"].as_str().unwrap();
    let context = task["contextId"].as_str().unwrap();
    // The task is the execution, and the context its conversation.
    let (_, record) = http(
        &d.env.socket,
        "GET",
        &format!("/api/v1/executions/{id}"),
        None,
    )
    .unwrap();
    assert_eq!(record["conversation_id"], context, "{record}");

    let got = call(&d, "tasks/get", json!({"id": id}));
    assert_eq!(got["result"]["status"]["state"], "completed", "{got}");
    assert_eq!(
        got["result"]["artifacts"][0]["parts"][0]["text"],
        "echo: hello a2a"
    );
    assert_eq!(got["result"]["history"].as_array().unwrap().len(), 2);
    let short = call(&d, "tasks/get", json!({"id": id, "historyLength": 1}));
    assert_eq!(short["result"]["history"][0]["role"], "agent", "{short}");

    // The same contextId continues the conversation: the model sees the earlier turn.
    let mut next = text_message("[recall]");
    next["contextId"] = json!(context);
    let again = call(&d, "message/send", json!({"message": next}));
    assert_eq!(again["result"]["contextId"], context, "{again}");
    let recalled = again["result"]["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(recalled.contains("hello a2a"), "{recalled}");
}

#[test]
fn a_streamed_message_streams_the_task_its_answer_and_its_final_status() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    let body = json!({"jsonrpc": "2.0", "id": "s1", "method": "message/stream",
                      "params": {"message": text_message("stream me")}});
    let (status, text) = crate::support::http_text(
        &d.env.socket,
        "POST",
        "/a2a/helper",
        Some(&body.to_string()),
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let events = events(&text);
    assert!(events.len() >= 3, "{text}");
    assert!(events.iter().all(|e| e["id"] == "s1"), "{text}");
    let first = &events[0]["result"];
    assert_eq!(first["kind"], "task");
    assert_eq!(first["status"]["state"], "working");
    let streamed: String = events
        .iter()
        .filter(|e| e["result"]["kind"] == "artifact-update")
        .filter_map(|e| e["result"]["artifact"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(streamed, "echo: stream me", "{text}");
    let last = &events[events.len() - 1]["result"];
    assert_eq!(last["kind"], "status-update", "{text}");
    assert_eq!(last["final"], true);
    assert_eq!(last["status"]["state"], "completed");
    assert_eq!(last["taskId"], first["id"]);
}

#[test]
fn tasks_cancel_kills_the_worker_and_a_finished_task_cannot_be_canceled() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    let answer = call(
        &d,
        "message/send",
        json!({"message": text_message("[hang]"), "configuration": {"blocking": false}}),
    );
    let task = &answer["result"];
    assert_eq!(task["status"]["state"], "working", "{answer}");
    let id = task["id"].as_str().unwrap().to_owned();
    let pid = d.wait_for_worker("helper");
    let working = call(&d, "tasks/get", json!({"id": id}));
    assert_eq!(working["result"]["status"]["state"], "working", "{working}");

    let canceled = call(&d, "tasks/cancel", json!({"id": id}));
    assert_eq!(
        canceled["result"]["status"]["state"], "canceled",
        "{canceled}"
    );
    assert!(wait_gone(pid, Duration::from_secs(5)), "worker {pid} lives");
    let again = call(&d, "tasks/cancel", json!({"id": id}));
    assert_eq!(again["error"]["code"], -32002, "{again}");
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("canceled"),
        "{again}"
    );
    // tasks/resubscribe on a finished task: the task, then its final status.
    let body =
        json!({"jsonrpc": "2.0", "id": 9, "method": "tasks/resubscribe", "params": {"id": id}});
    let (_, text) = crate::support::http_text(
        &d.env.socket,
        "POST",
        "/a2a/helper",
        Some(&body.to_string()),
    )
    .unwrap();
    let events = events(&text);
    assert_eq!(events[0]["result"]["id"], id.as_str(), "{text}");
    let last = &events[events.len() - 1]["result"];
    assert_eq!(last["final"], true, "{text}");
    assert_eq!(last["status"]["state"], "canceled", "{text}");
}

#[test]
fn bad_requests_get_json_rpc_errors_that_name_what_is_wrong() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    let error = |body: &str| {
        let (status, answer) = post(&d, "/a2a/helper", body);
        assert_eq!(status, 200, "{answer}");
        (
            answer["error"]["code"].as_i64().unwrap_or(0),
            answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let request = |method: &str, params: Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string()
    };
    let cases: Vec<(String, i64, &str)> = vec![
        ("{not json".into(), -32700, "not JSON"),
        ("[1, 2]".into(), -32600, "object"),
        (
            r#"{"jsonrpc": "2.0", "method": "message/send"}"#.into(),
            -32600,
            "no id",
        ),
        (request("tasks/list", json!({})), -32601, "tasks/list"),
        (request("SendMessage", json!({})), -32009, "1.0"),
        (
            request("tasks/get", json!({"id": "no-such-task"})),
            -32001,
            "no-such-task",
        ),
        (
            request("tasks/get", json!({})),
            -32602,
            "missing field `id`",
        ),
        (
            request(
                "message/send",
                json!({"message": {"kind": "message", "messageId": "m", "role": "user", "parts": []}}),
            ),
            -32602,
            "no text part",
        ),
        (
            request(
                "message/send",
                json!({"message": {"kind": "message", "messageId": "m", "role": "user",
                       "parts": [{"kind": "file", "file": {"uri": "http://x/y.pdf"}}]}}),
            ),
            -32005,
            "message.parts[0] is a file",
        ),
        (
            request(
                "message/send",
                json!({"message": {"kind": "message", "messageId": "m", "role": "user",
                       "contextId": "no-such-conversation", "parts": [{"kind": "text", "text": "x"}]}}),
            ),
            -32602,
            "no-such-conversation",
        ),
        (
            request("tasks/pushNotificationConfig/set", json!({})),
            -32003,
            "push notifications",
        ),
    ];
    for (body, code, words) in cases {
        let (got, message) = error(&body);
        assert_eq!(got, code, "{body}: {message}");
        assert!(message.contains(words), "{body}: {message}");
    }
    // An oversized message is refused before it is read, naming the limit.
    let huge = request(
        "message/send",
        json!({"message": text_message(&"x".repeat(2 << 20))}),
    );
    let (status, body) = post(&d, "/a2a/helper", &huge);
    assert_eq!(status, 413, "{body}");
    // Nothing ran for any of them.
    let (_, list) = http(&d.env.socket, "GET", "/api/v1/executions", None).unwrap();
    assert_eq!(list["executions"].as_array().unwrap().len(), 0, "{list}");
    // An agent that is not deployed has no endpoint.
    let (status, _) = post(&d, "/a2a/nobody", &request("tasks/get", json!({"id": "x"})));
    assert_eq!(status, 404);
}
