//! A2A 0.3.0 inbound with the official A2A Python SDK (PyPI `a2a-sdk` 0.3.26, installed by
//! `scripts/install-test-clients.sh`) as the client, over TCP with the API's bearer token: the
//! SDK resolves an agent's card, sends, streams, reads and cancels tasks, validating everything
//! it reads with its own models. Plus the token on the raw wire: the card and the endpoint
//! refuse a request without it, and the card declares it.
//!
//! Run: `scripts/install-test-clients.sh && cargo test --test integration a2a_sdk`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Daemon, DaemonOptions, FakeLlm, echo_agent, wait_gone};
use caxton_test_kit::api_client::read_text_response;

const TOKEN: &str = "a2a-test-token-of-sufficient-length";

/// Where `scripts/install-test-clients.sh` puts the A2A Python SDK.
fn a2a_sdk() -> PathBuf {
    let dir = crate::support::test_clients_cache().join("python-a2a-sdk-0.3.26");
    assert!(
        dir.join(".installed").is_file(),
        "the A2A Python SDK is not installed: run scripts/install-test-clients.sh (scripts/setup.sh does)"
    );
    dir
}

/// A daemon whose API listens on TCP with a token, with the echo agent `echo` deployed.
fn daemon_on_tcp() -> (FakeLlm, Daemon, u16) {
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    let port = opts.listen_tcp(TOKEN, "");
    let daemon = Daemon::start(opts);
    daemon.deploy(
        "echo",
        &echo_agent(
            "echo",
            "description = \"Echoes what it is asked\"\ncapabilities = [\"echo\"]\n",
        ),
    );
    (llm, daemon, port)
}

#[test]
fn the_official_a2a_sdk_sends_streams_reads_and_cancels_tasks() {
    let (_llm, daemon, port) = daemon_on_tcp();
    let mut child = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/a2a/sdk_client.py"
        ))
        .arg(format!("http://127.0.0.1:{port}/a2a/echo"))
        .arg(TOKEN)
        .env("PYTHONPATH", a2a_sdk())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained on the side, so a chatty client cannot block on a full pipe.
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).ok();
        text
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut steps: HashMap<String, Value> = HashMap::new();
    let mut lines = Vec::new();
    let mut worker = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let step: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if step["step"] == "hanging" {
            // The hanging task's worker, found before the client cancels the task.
            worker = Some(daemon.wait_for_worker("echo"));
            writeln!(stdin, "go").unwrap();
        }
        steps.insert(step["step"].as_str().unwrap().to_owned(), step);
        lines.push(line);
    }
    let status = child.wait().unwrap();
    let all = lines.join("\n");
    assert!(
        status.success(),
        "SDK client failed:\n{all}\n{}",
        errors.join().unwrap()
    );

    let card = &steps["card"];
    assert_eq!(card["name"], "echo", "{all}");
    assert_eq!(card["protocol_version"], "0.3.0");
    assert_eq!(card["url"], format!("http://127.0.0.1:{port}/a2a/echo"));
    assert_eq!(card["preferred_transport"], "JSONRPC");
    assert_eq!(card["streaming"], true);
    assert_eq!(card["skills"], json!(["echo"]));
    assert_eq!(card["security_schemes"], json!(["bearer"]));
    assert_eq!(card["bearer_scheme"], "bearer");
    assert_eq!(card["security"], json!([{"bearer": []}]));

    let send = &steps["send"];
    assert_eq!(send["kinds"], json!(["task"]), "{all}");
    assert_eq!(send["state"], "completed", "{all}");
    assert_eq!(send["answer"], "echo: hello from the a2a sdk", "{all}");
    assert_eq!(send["history_roles"], json!(["user", "agent"]), "{all}");

    let stream = &steps["stream"];
    let kinds = stream["kinds"].as_array().unwrap();
    assert_eq!(kinds.first().unwrap(), "task", "{all}");
    assert_eq!(kinds.last().unwrap(), "status-update", "{all}");
    assert!(kinds.iter().any(|k| k == "artifact-update"), "{all}");
    assert_eq!(stream["state"], "completed", "{all}");
    assert_eq!(stream["answer"], "echo: stream me please", "{all}");

    let get = &steps["get"];
    assert_eq!(get["task_id"], send["task_id"], "{all}");
    assert_eq!(get["state"], "completed", "{all}");
    assert_eq!(get["answer"], "echo: hello from the a2a sdk", "{all}");

    assert_eq!(steps["hanging"]["state"], "working", "{all}");
    let cancel = &steps["cancel"];
    assert_eq!(cancel["task_id"], steps["hanging"]["task_id"], "{all}");
    assert_eq!(cancel["state"], "canceled", "{all}");
    let pid = worker.unwrap();
    assert!(wait_gone(pid, Duration::from_secs(5)), "worker {pid} lives");
    assert_eq!(steps["canceled_stream"]["state"], "canceled", "{all}");
    assert_eq!(
        steps["canceled_stream"]["kinds"],
        json!(["status-update"]),
        "{all}"
    );

    assert_eq!(steps["cancel_again"]["error"]["code"], -32002, "{all}");
    assert_eq!(steps["get_unknown"]["error"]["code"], -32001, "{all}");

    let resubscribe = &steps["resubscribe"];
    assert_eq!(resubscribe["state"], "completed", "{all}");
    assert_eq!(
        resubscribe["answer"], "echo: hello from the a2a sdk",
        "{all}"
    );

    // Errors of the streaming methods reach the SDK as JSON-RPC errors, with their codes.
    assert_eq!(
        steps["resubscribe_unknown"]["error"]["code"], -32001,
        "{all}"
    );
    assert_eq!(
        steps["stream_unknown_context"]["error"]["code"], -32602,
        "{all}"
    );
    assert!(
        steps["stream_unknown_context"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-conversation"),
        "{all}"
    );
}

/// One raw HTTP request to the daemon's TCP listener: the status, the head (lower-cased) and
/// the body as text.
fn request_text(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let head = String::from_utf8_lossy(&raw)
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let (status, text) = read_text_response(&mut &raw[..]).unwrap();
    (status, head, text)
}

/// As [`request_text`], with the body as JSON.
fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let (status, _, text) = request_text(port, method, path, token, body);
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn over_tcp_the_cards_and_the_endpoint_want_the_token_and_the_card_says_so() {
    let (_llm, _daemon, port) = daemon_on_tcp();
    let card = "/a2a/echo/.well-known/agent-card.json";
    let rpc = json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "x"}})
        .to_string();
    for token in [None, Some("not-the-token")] {
        for path in [
            card,
            "/a2a/echo/.well-known/agent.json",
            "/.well-known/agent-card.json",
        ] {
            let (status, body) = request(port, "GET", path, token, "");
            assert_eq!(status, 401, "GET {path} with {token:?}: {body}");
        }
        for path in ["/a2a/echo", "/a2a"] {
            let (status, body) = request(port, "POST", path, token, &rpc);
            assert_eq!(status, 401, "POST {path} with {token:?}: {body}");
        }
    }

    let (status, body) = request(port, "GET", card, Some(TOKEN), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer",
               "description": "The server's API token ([api] token_env or token_file)"}),
        "{body}"
    );
    assert_eq!(body["security"], json!([{"bearer": []}]), "{body}");
    let (status, server) = request(port, "GET", "/.well-known/agent-card.json", Some(TOKEN), "");
    assert_eq!(status, 200, "{server}");
    assert_eq!(server["security"], json!([{"bearer": []}]), "{server}");
    // With the token, the endpoint answers (here: no such task).
    let (status, answer) = request(port, "POST", "/a2a/echo", Some(TOKEN), &rpc);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["error"]["code"], -32001, "{answer}");

    // A streaming method that fails before anything runs still answers with an event stream,
    // its one event the JSON-RPC error: a client that asked for a stream reads only that.
    let stream = json!({"jsonrpc": "2.0", "id": 2, "method": "message/stream", "params": {
        "message": {"kind": "message", "messageId": "m1", "role": "user",
                    "contextId": "no-such-conversation", "parts": [{"kind": "text", "text": "x"}]}}})
    .to_string();
    let (status, head, text) = request_text(port, "POST", "/a2a/echo", Some(TOKEN), &stream);
    assert_eq!(status, 200, "{text}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{text}");
    assert_eq!(events[0]["id"], 2, "{text}");
    assert_eq!(events[0]["error"]["code"], -32602, "{text}");
}
