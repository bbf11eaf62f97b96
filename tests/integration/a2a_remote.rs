//! A2A outbound: two `caxton serve` daemons on loopback, each with a TCP listener and a token of
//! its own. An agent on one asks an agent on the other (and that one asks back), a cycle across
//! the two is refused, killing the asking worker cancels the remote task, and both
//! conversations show the linked tasks. Then remotes that misbehave: a card that is HTML or
//! 404, a wrong token, a remote that hangs, one that answers about a task it was never asked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Daemon, DaemonOptions, FakeLlm, ask, echo_agent, free_port, http, wait_gone, wait_until,
};

/// A daemon listening on `port` with bearer token `token`, its environment `env` besides (the
/// variables holding the tokens of the remote agents its agents name, say).
fn server(llm: &FakeLlm, port: u16, token: &str, env: &[(&str, &str)]) -> Daemon {
    let env = env
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    server_with(llm, port, token, env)
}

fn server_with(llm: &FakeLlm, port: u16, token: &str, env: Vec<(String, String)>) -> Daemon {
    let mut opts = DaemonOptions::new(llm);
    opts.extra_config =
        format!("[api]\ntcp_listen = \"127.0.0.1:{port}\"\ntoken_env = \"OWN_TOKEN\"\n");
    opts.env = env;
    opts.env.push(("OWN_TOKEN".into(), token.into()));
    Daemon::start(opts)
}

/// `[[delegation.remote]]` naming `agent` on the server at `port`, its token in `token_env`.
fn remote(name: &str, port: u16, agent: &str, token_env: &str) -> String {
    format!(
        "[[delegation.remote]]\nname = \"{name}\"\ncard = \"http://127.0.0.1:{port}/a2a/{agent}/.well-known/agent-card.json\"\ntoken_env = \"{token_env}\"\n"
    )
}

fn executions_of(d: &Daemon, agent: &str) -> Vec<Value> {
    let (_, list) = http(
        &d.env.socket,
        "GET",
        &format!("/api/v1/executions?agent={agent}"),
        None,
    )
    .unwrap();
    list["executions"].as_array().cloned().unwrap_or_default()
}

/// Two servers: `a` with `boss` and `finisher`, `b` with `helper`; boss may ask helper on b,
/// helper may ask finisher and boss on a.
struct Pair {
    _llm: FakeLlm,
    a: Daemon,
    b: Daemon,
}

fn pair(boss_timeout: &str) -> Pair {
    let llm = FakeLlm::start();
    let (port_a, port_b) = (free_port(), free_port());
    let a = server(
        &llm,
        port_a,
        "token-of-a-0123456789",
        &[("B_TOKEN", "token-of-b-0123456789")],
    );
    let b = server(
        &llm,
        port_b,
        "token-of-b-0123456789",
        &[("A_TOKEN", "token-of-a-0123456789")],
    );
    a.deploy(
        "boss",
        &echo_agent(
            "boss",
            &format!(
                "[limits]\ntimeout = \"{boss_timeout}\"\n[delegation]\n{}",
                remote("helper", port_b, "helper", "B_TOKEN")
            ),
        ),
    );
    a.deploy("finisher", &echo_agent("finisher", ""));
    b.deploy(
        "helper",
        &echo_agent(
            "helper",
            &format!(
                "[delegation]\n{}{}",
                remote("finisher", port_a, "finisher", "A_TOKEN"),
                remote("boss", port_a, "boss", "A_TOKEN")
            ),
        ),
    );
    Pair { _llm: llm, a, b }
}

#[test]
fn an_agent_asks_one_on_another_server_that_asks_back_and_both_conversations_link_the_tasks() {
    let p = pair("60s");
    let report = p.a.run_ok("boss", &ask("helper", &ask("finisher", "deep")));
    assert_eq!(
        report["answer"], "tool said: tool said: echo: deep",
        "{report}"
    );
    let boss_execution = report["execution_id"].as_str().unwrap();

    // On a: boss's conversation holds the request to the remote task and its answer.
    let here =
        p.a.conversation(report["conversation_id"].as_str().unwrap());
    let messages = here["messages"].as_array().unwrap();
    let to_remote = messages
        .iter()
        .find(|m| m["receiver"]["kind"] == "remote")
        .unwrap_or_else(|| panic!("{here:#}"));
    let remote_name = to_remote["receiver"]["name"].as_str().unwrap();
    assert!(
        remote_name.starts_with("helper@http://127.0.0.1:"),
        "{remote_name}"
    );
    let remote_task = remote_name.rsplit(" task ").next().unwrap();
    let answered = messages
        .iter()
        .find(|m| m["reply_to"] == to_remote["id"])
        .unwrap_or_else(|| panic!("{here:#}"));
    assert_eq!(answered["kind"], "response");
    assert_eq!(answered["content"], "tool said: echo: deep");

    // On b: the task is helper's execution, and its request names boss's execution on a.
    let (_, task) = http(
        &p.b.env.socket,
        "GET",
        &format!("/api/v1/executions/{remote_task}"),
        None,
    )
    .unwrap();
    assert_eq!(task["agent"], "helper", "{task}");
    assert_eq!(task["outcome"], "succeeded", "{task}");
    let there = p.b.conversation(task["conversation_id"].as_str().unwrap());
    let asked = there["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["sender"]["kind"] == "remote")
        .unwrap_or_else(|| panic!("{there:#}"));
    let sender = asked["sender"]["name"].as_str().unwrap();
    assert!(sender.starts_with("boss@"), "{sender}");
    assert!(
        sender.ends_with(&format!("task {boss_execution}")),
        "{sender}"
    );
    // And back: finisher on a ran as helper's remote child, two levels down.
    let finisher = executions_of(&p.a, "finisher");
    assert_eq!(finisher.len(), 1, "{finisher:#?}");
    assert_eq!(finisher[0]["outcome"], "succeeded");
}

#[test]
fn a_cycle_across_the_two_servers_is_refused_where_it_would_close() {
    let p = pair("60s");
    let report = p.a.run_ok("boss", &ask("helper", &ask("boss", "loop")));
    let answer = report["answer"].as_str().unwrap();
    assert!(answer.contains("cycle across servers"), "{answer}");
    assert!(answer.contains("boss → helper → boss"), "{answer}");
    // boss ran once: the second time was refused before any worker existed.
    assert_eq!(executions_of(&p.a, "boss").len(), 1);
    let helper = executions_of(&p.b, "helper");
    let (_, shown) = http(
        &p.b.env.socket,
        "GET",
        &format!(
            "/api/v1/executions/{}",
            helper[0]["execution_id"].as_str().unwrap()
        ),
        None,
    )
    .unwrap();
    assert_eq!(shown["tool_calls"][0]["outcome"], "refused", "{shown:#}");
}

#[test]
fn killing_the_asking_worker_cancels_the_remote_task() {
    let p = pair("60s");
    let a_socket = p.a.env.socket.clone();
    let asking = std::thread::spawn(move || {
        crate::support::http(
            &a_socket,
            "POST",
            "/api/v1/agents/boss/run",
            // The bracket escaped, so only helper's model sees `[hang]` (and hangs), not boss's.
            Some(
                &json!({"request": r#"[call ask_agent {"agent": "helper", "request": "\u005bhang]"}]"#})
                    .to_string(),
            ),
        )
        .unwrap()
    });
    let remote_worker = p.b.wait_for_worker("helper");
    // Waiting for its tool call, not for its model.
    let (_, workers) = http(&p.a.env.socket, "GET", "/api/v1/workers", None).unwrap();
    let boss_worker = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["agent"] == "boss")
        .and_then(|w| w["pid"].as_u64())
        .unwrap_or_else(|| panic!("{workers:#}"));
    let killed = p.a.cli(&[
        "worker",
        "kill",
        &boss_worker.to_string(),
        "--signal",
        "KILL",
    ]);
    assert!(killed.status.success(), "{killed:?}");
    let (_, report) = asking.join().unwrap();
    assert_eq!(report["execution"]["outcome"]["kind"], "killed", "{report}");
    assert!(
        wait_gone(remote_worker, Duration::from_secs(10)),
        "the remote worker {remote_worker} outlived the request that asked it"
    );
    assert!(wait_until(Duration::from_secs(10), || {
        executions_of(&p.b, "helper")
            .first()
            .is_some_and(|e| e["status"] == "finished")
    }));
    let helper = &executions_of(&p.b, "helper")[0];
    assert_eq!(helper["outcome"], "killed", "{helper}");
}

/// An HTTP server on loopback that answers every GET with the first of what `answers` makes of
/// its port and every other request with the second (status line, headers and body as
/// written), or, for an empty answer, holds the connection and never answers (a remote that
/// hangs).
fn canned(answers: impl FnOnce(u16) -> (String, String)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (get, post) = answers(port);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut first, mut length) = (String::new(), 0usize);
            let _ = reader.read_line(&mut first);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let response = if first.starts_with("GET") {
                &get
            } else {
                &post
            };
            if response.is_empty() {
                held.push(stream);
                continue;
            }
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

fn reply(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A card (streaming as `streaming` says) whose endpoint is on the same server, at `port`.
fn odd_card(port: u16, streaming: bool) -> String {
    let card = json!({
        "name": "odd", "description": "misbehaves", "version": "1", "protocolVersion": "0.3.0",
        "url": format!("http://127.0.0.1:{port}/a2a/odd"), "preferredTransport": "JSONRPC",
        "capabilities": {"streaming": streaming}, "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"], "skills": []
    });
    reply("200 OK", "application/json", &card.to_string())
}

#[test]
fn remotes_that_misbehave_are_tool_errors_naming_the_remote_and_the_reason() {
    let llm = FakeLlm::start();
    let a = server(
        &llm,
        free_port(),
        "token-of-a-0123456789",
        &[("B_TOKEN", "wrong-token")],
    );
    let b_port = free_port();
    let _b = server(&llm, b_port, "token-of-b-0123456789", &[]);
    _b.deploy("helper", &echo_agent("helper", ""));
    let html = reply("200 OK", "text/html", "<html>hello</html>");
    let missing = reply("404 Not Found", "text/plain", "no");
    let cases: Vec<(u16, &str, &str)> = vec![
        (
            canned(|_| (html.clone(), html)),
            "odd",
            "answered text/html that is not an A2A agent card",
        ),
        (
            canned(|_| (missing.clone(), missing)),
            "odd",
            "its card URL answered HTTP 404",
        ),
        (b_port, "helper", "its server refused the token (HTTP 401"),
        (
            canned(|port| (odd_card(port, false), String::new())),
            "odd",
            "no answer in time",
        ),
        (
            canned(|_| (String::new(), String::new())),
            "odd",
            "cannot fetch its card: no answer in time",
        ),
    ];
    for (i, (port, agent, words)) in cases.into_iter().enumerate() {
        let name = format!("asker{i}");
        a.deploy(
            &name,
            &echo_agent(
                &name,
                &format!(
                    "[limits]\ntimeout = \"4s\"\n[delegation]\n{}",
                    remote("far", port, agent, "B_TOKEN")
                ),
            ),
        );
        let report = a.run_ok(&name, &ask("far", "anything"));
        let answer = report["answer"].as_str().unwrap();
        assert!(
            answer.contains("remote agent far (http://127.0.0.1:"),
            "{answer}"
        );
        assert!(answer.contains(words), "case {i}: {answer}");
    }
}

#[test]
fn a_remote_that_answers_about_a_task_it_was_never_asked_for_is_refused() {
    let llm = FakeLlm::start();
    let a = server(
        &llm,
        free_port(),
        "token-of-a-0123456789",
        &[("B_TOKEN", "x")],
    );
    // A streaming remote whose events are about two different tasks.
    let events = [
        json!({"jsonrpc": "2.0", "id": 1, "result": {"kind": "task", "id": "mine", "contextId": "c", "status": {"state": "working"}}}),
        json!({"jsonrpc": "2.0", "id": 1, "result": {"kind": "status-update", "taskId": "someone-else", "contextId": "c", "final": true, "status": {"state": "completed"}}}),
    ]
    .iter()
    .map(|e| format!("data: {e}\n\n"))
    .collect::<String>();
    let port = canned(|port| {
        (
            odd_card(port, true),
            reply("200 OK", "text/event-stream", &events),
        )
    });
    a.deploy(
        "asker",
        &echo_agent(
            "asker",
            &format!("[delegation]\n{}", remote("far", port, "odd", "B_TOKEN")),
        ),
    );
    let report = a.run_ok("asker", &ask("far", "anything"));
    let answer = report["answer"].as_str().unwrap();
    assert!(
        answer.contains("it answered about task \"someone-else\", which it was never asked for"),
        "{answer}"
    );
}

#[test]
fn one_trace_crosses_both_servers() {
    use crate::traces::{export_env, receiver, span_named};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let (_receiver, collector) = receiver(&out, false);
    let llm = FakeLlm::start();
    let (port_a, port_b) = (free_port(), free_port());
    // Both export to the one collector, each under a service name of its own.
    let traced = |port: u16, token: &str, service: &str, others: &[(&str, &str)]| {
        let mut env = export_env(collector);
        env.retain(|(k, _)| k != "OTEL_SERVICE_NAME");
        env.push(("OTEL_SERVICE_NAME".into(), service.into()));
        env.extend(others.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        server_with(&llm, port, token, env)
    };
    let a = traced(
        port_a,
        "token-of-a-0123456789",
        "caxton-a",
        &[("B_TOKEN", "token-of-b-0123456789")],
    );
    let b = traced(port_b, "token-of-b-0123456789", "caxton-b", &[]);
    a.deploy(
        "boss",
        &echo_agent(
            "boss",
            &format!(
                "[delegation]\n{}",
                remote("helper", port_b, "helper", "B_TOKEN")
            ),
        ),
    );
    b.deploy("helper", &echo_agent("helper", ""));
    let report = a.run_ok("boss", &ask("helper", "traced"));
    let trace_id = report["trace_id"].as_str().unwrap();
    // The asking tool call on a is the parent of the A2A request on b, and b's execution
    // hangs below that: one trace.
    let tool = span_named(&out, trace_id, "execute_tool ask_agent");
    assert_eq!(tool["service"], "caxton-a");
    let served = span_named(&out, trace_id, "POST /a2a/helper");
    assert_eq!(served["service"], "caxton-b");
    assert_eq!(served["parent_span_id"], tool["span_id"], "{served:#}");
    let invoke = span_named(&out, trace_id, "invoke_agent helper");
    assert_eq!(invoke["service"], "caxton-b");
}
