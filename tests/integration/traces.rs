//! OpenTelemetry traces end to end: the daemon exports over OTLP/HTTP to a receiver on loopback
//! that decodes them with OpenTelemetry's own protobuf definitions (`tests/otlp/receiver.py`),
//! and each request is one trace with the GenAI conventions' spans: `invoke_agent {agent}`,
//! `chat {model}` and `execute_tool {tool}`, a delegated agent's `invoke_agent` under the tool
//! call that asked for it, a killed worker's span ending in error; the execution record and
//! `--verbose` carry the trace id. A collector that refuses every export costs requests nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Daemon, DaemonOptions, FakeLlm, KillOnDrop, echo_agent, test_clients_cache, text, wait_until,
};

/// Where `scripts/install-test-clients.sh` installs `opentelemetry-proto`.
fn otlp_proto() -> PathBuf {
    let dir = test_clients_cache().join("python-otlp-proto-1.45.2");
    assert!(
        dir.join(".installed").is_file(),
        "opentelemetry-proto is not installed: run scripts/install-test-clients.sh (scripts/setup.sh does)"
    );
    dir
}

/// Start the receiver writing to `out`; its process and port.
pub(crate) fn receiver(out: &Path, refuse: bool) -> (KillOnDrop, u16) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp/receiver.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(out).env("PYTHONPATH", otlp_proto());
    if refuse {
        cmd.arg("--refuse");
    }
    let mut child = KillOnDrop(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().parse().unwrap())
}

/// Every span received so far; a line the receiver is still writing is left for the next read.
pub(crate) fn spans(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The daemon's environment to export to `port`, quickly (the batch delay is 100 ms).
pub(crate) fn export_env(port: u16) -> Vec<(String, String)> {
    vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ("OTEL_SERVICE_NAME".into(), "caxton-test".into()),
    ]
}

/// A daemon exporting to a receiver of its own, with the echo agent `helper` deployed.
struct Traced {
    /// Where the receiver writes the spans.
    out: PathBuf,
    daemon: Daemon,
    _llm: FakeLlm,
    _receiver: KillOnDrop,
    _dir: tempfile::TempDir,
}

impl Traced {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("spans.jsonl");
        let (receiver, port) = receiver(&out, false);
        let llm = FakeLlm::start();
        let daemon = traced_daemon(&llm, port);
        daemon.deploy("helper", &echo_agent("helper", ""));
        Self {
            out,
            daemon,
            _llm: llm,
            _receiver: receiver,
            _dir: dir,
        }
    }
}

/// A daemon exporting to `port`.
fn traced_daemon(llm: &FakeLlm, port: u16) -> Daemon {
    let mut opts = DaemonOptions::new(llm);
    opts.env = export_env(port);
    Daemon::start(opts)
}

/// The spans of trace `trace_id`, once `count` of them arrived.
pub(crate) fn trace(out: &Path, trace_id: &str, count: usize) -> Vec<Value> {
    let of_trace = || -> Vec<Value> {
        spans(out)
            .into_iter()
            .filter(|s| s["trace_id"] == trace_id)
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(10), || of_trace().len() >= count),
        "trace {trace_id}: {:#?}",
        spans(out)
    );
    of_trace()
}

/// The span of trace `trace_id` named `name`, once it arrived.
pub(crate) fn span_named(out: &Path, trace_id: &str, name: &str) -> Value {
    let find = || {
        spans(out)
            .into_iter()
            .find(|s| s["trace_id"] == trace_id && s["name"] == name)
    };
    assert!(
        wait_until(Duration::from_secs(10), || find().is_some()),
        "no span {name:?} in trace {trace_id}: {:#?}",
        spans(out)
    );
    find().unwrap_or_default()
}

pub(crate) fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

#[test]
fn each_request_is_one_trace_with_genai_spans_and_delegation_nests_in_it() {
    let traced = Traced::start();
    let (out, d) = (&traced.out, &traced.daemon);
    d.deploy(
        "boss",
        &echo_agent("boss", "[delegation]\nagents = [\"helper\"]\n"),
    );

    // A plain run: invoke_agent over one chat.
    let out_cli = d.cli(&["agent", "run", "helper", "-v", "hello"]);
    assert!(out_cli.status.success(), "{}", text(&out_cli.stderr));
    let trace_id = text(&out_cli.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("trace:").map(|t| t.trim().to_owned()))
        .unwrap_or_else(|| panic!("no trace id: {}", text(&out_cli.stderr)));
    let plain = trace(out, &trace_id, 5);
    let invoke = named(&plain, "invoke_agent helper");
    assert_eq!(invoke.len(), 1, "{plain:#?}");
    let invoke = invoke[0];
    assert_eq!(invoke["kind"], 3, "CLIENT");
    assert_eq!(invoke["service"], "caxton-test");
    assert_eq!(
        invoke["attributes"]["gen_ai.operation.name"],
        "invoke_agent"
    );
    assert_eq!(invoke["attributes"]["gen_ai.agent.name"], "helper");
    let chat = named(&plain, "chat fake-model");
    assert_eq!(chat.len(), 1, "{plain:#?}");
    assert_eq!(chat[0]["parent_span_id"], invoke["span_id"]);
    // The worker's own phases, as the supervisor saw them on the socket.
    for phase in ["worker handshake", "worker render"] {
        let span = named(&plain, phase);
        assert_eq!(span.len(), 1, "{phase}: {plain:#?}");
        assert_eq!(span[0]["parent_span_id"], invoke["span_id"], "{phase}");
    }
    let attributes = &chat[0]["attributes"];
    // Who serves the model by the conventions' well-known values; the configured name beside it.
    assert_eq!(attributes["gen_ai.provider.name"], "openai");
    assert_eq!(attributes["provider"], "fake");
    assert_eq!(attributes["gen_ai.request.model"], "fake-model");
    assert_eq!(attributes["gen_ai.usage.input_tokens"], 5);
    assert_eq!(attributes["gen_ai.usage.output_tokens"], 2);

    // The record has the trace id.
    let (_, list) =
        crate::support::http(&d.env.socket, "GET", "/api/v1/executions?limit=1", None).unwrap();
    assert_eq!(list["executions"][0]["trace_id"], trace_id.as_str());

    // Two tool calls in one turn, one of them a delegation: the delegated agent's
    // invoke_agent is a child of the execute_tool span that asked for it.
    let (code, report) = d.run(
        "boss",
        &format!(
            "[call ask_agent {}] [call make_coffee {{}}]",
            json!({"agent": "helper", "request": "hi"})
        ),
    );
    assert_eq!(code, 200, "{report}");
    let trace_id = report["trace_id"].as_str().unwrap();
    let tree = trace(out, trace_id, 12);
    let api = named(&tree, "POST /api/v1/agents/boss/run")[0];
    assert_eq!(api["kind"], 2, "SERVER");
    assert_eq!(api["attributes"]["http.response.status_code"], 200);
    let root = named(&tree, "invoke_agent boss")[0];
    assert_eq!(root["parent_span_id"], api["span_id"]);
    let asked = named(&tree, "execute_tool ask_agent")[0];
    // A tool that is not granted is refused: its span says so.
    let refused = named(&tree, "execute_tool make_coffee")[0];
    assert_eq!(refused["status_code"], 2, "{refused}");
    assert_eq!(asked["parent_span_id"], root["span_id"]);
    assert_eq!(asked["attributes"]["gen_ai.tool.name"], "ask_agent");
    let child = named(&tree, "invoke_agent helper")[0];
    assert_eq!(child["parent_span_id"], asked["span_id"], "{tree:#?}");
    assert_eq!(
        named(&tree, "chat fake-model").len(),
        3,
        "two for boss, one for helper"
    );

    // A worker killed mid-request: its span ends in error.
    let socket = d.env.socket.clone();
    let hung = std::thread::spawn(move || {
        crate::support::http(
            &socket,
            "POST",
            "/api/v1/agents/helper/run",
            Some(&json!({"request": "[hang]"}).to_string()),
        )
        .unwrap()
    });
    let pid = d.wait_for_worker("helper");
    assert!(
        d.cli(&["worker", "kill", &pid.to_string(), "--signal", "KILL"])
            .status
            .success()
    );
    let (_, killed) = hung.join().unwrap();
    let trace_id = killed["execution"]["trace_id"].as_str().unwrap();
    // The API request, the execution, its two worker phases and the model call it was in.
    let spans = trace(out, trace_id, 5);
    let invoke = named(&spans, "invoke_agent helper")[0];
    assert_eq!(invoke["status_code"], 2, "ERROR: {invoke}");
    assert_eq!(invoke["status_message"], "killed");
}

#[test]
fn a_collector_that_refuses_every_export_costs_requests_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let (_refusing, port) = receiver(&out, true);
    let llm = FakeLlm::start();
    let d = traced_daemon(&llm, port);
    d.deploy("helper", &echo_agent("helper", ""));
    for i in 0..20 {
        let (code, body) = d.run("helper", &format!("hello {i}"));
        assert_eq!(code, 200, "{body}");
    }
    // What the collector refused is counted.
    assert!(
        wait_until(Duration::from_secs(10), || not_exported(
            &d,
            "export_failed"
        ) > 0.0),
        "no refused span was counted"
    );
    // An endpoint that is not a URL: the daemon runs, says so, and exports nothing.
    let mut opts = DaemonOptions::new(&llm);
    opts.env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), "not a url".into())];
    let untraced = Daemon::start(opts);
    untraced.deploy("helper", &echo_agent("helper", ""));
    let (code, body) = untraced.run("helper", "hello");
    assert_eq!(code, 200, "{body}");
    assert!(body["trace_id"].is_null(), "{body}");
    assert!(
        untraced.log().contains("traces are not exported"),
        "{}",
        untraced.log()
    );
    // A transport the daemon does not speak is refused the same way, naming the variable.
    let mut opts = DaemonOptions::new(&llm);
    opts.env = export_env(crate::support::free_port());
    opts.env
        .push(("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()));
    let grpc = Daemon::start(opts);
    grpc.deploy("helper", &echo_agent("helper", ""));
    let (code, body) = grpc.run("helper", "hello");
    assert_eq!(code, 200, "{body}");
    assert!(body["trace_id"].is_null(), "{body}");
    assert!(
        grpc.log().contains(
            "OTEL_EXPORTER_OTLP_PROTOCOL = \"grpc\": only \"http/protobuf\" is supported"
        ),
        "{}",
        grpc.log()
    );
    // Nothing listens on this port at all.
    let unused = crate::support::free_port();
    let d2 = traced_daemon(&llm, unused);
    d2.deploy("helper", &echo_agent("helper", ""));
    let (code, body) = d2.run("helper", "hello");
    assert_eq!(code, 200, "{body}");
    assert!(spans(&out).is_empty());
}

/// `caxton_trace_spans_not_exported_total{reason}` as the daemon's `/metrics` says now.
fn not_exported(d: &Daemon, reason: &str) -> f64 {
    let (_, metrics) =
        caxton_test_kit::api_client::http_text(&d.env.socket, "GET", "/metrics", None).unwrap();
    let series = format!("caxton_trace_spans_not_exported_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_collector_that_hangs_costs_requests_nothing_and_what_it_could_not_take_is_counted() {
    // Connections are accepted by the kernel and never answered.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hanging.local_addr().unwrap().port();
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.env = export_env(port);
    opts.env.extend([
        // A small queue, and an export that waits a minute: the queue is full after one run.
        ("OTEL_BSP_MAX_QUEUE_SIZE".to_owned(), "8".to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT".to_owned(), "60000".to_owned()),
    ]);
    let d = Daemon::start(opts);
    d.deploy("helper", &echo_agent("helper", ""));
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = std::time::Instant::now();
        let (code, body) = d.run("helper", &format!("hello {i}"));
        slowest = slowest.max(started.elapsed());
        assert_eq!(code, 200, "{body}");
    }
    // No request waited for the export (a minute) or anything like it.
    assert!(slowest < Duration::from_secs(5), "slowest run {slowest:?}");
    // Twenty runs of five spans or more, eight places in the queue: the rest were dropped and
    // counted, none of them as a failed export (the one export still hangs).
    let dropped = not_exported(&d, "queue_full");
    assert!(dropped >= 80.0, "{dropped} spans counted as dropped");
    assert_eq!(not_exported(&d, "export_failed"), 0.0);
}

/// POST `body` to `path` over the daemon's socket with a `traceparent` header; the JSON answer.
fn post_traced(d: &Daemon, path: &str, body: &Value, traceparent: &str) -> Value {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(&d.env.socket).unwrap();
    let body = body.to_string();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\ntraceparent: {traceparent}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{rest}");
    serde_json::from_str(rest).unwrap()
}

#[test]
fn a_caller_s_traceparent_becomes_the_parent_and_the_model_call_carries_it_on() {
    let traced = Traced::start();
    let (out, d) = (&traced.out, &traced.daemon);
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let report = post_traced(
        d,
        "/api/v1/agents/helper/run",
        &json!({"request": "[traceparent]"}),
        &format!("00-{caller_trace}-{caller_span}-01"),
    );
    assert_eq!(report["trace_id"], caller_trace, "{report}");
    // The API request, the execution, its two worker phases and its model call.
    let spans = trace(out, caller_trace, 5);
    let api = named(&spans, "POST /api/v1/agents/helper/run")[0];
    assert_eq!(api["parent_span_id"], caller_span);
    // The provider got the chat span's context: same trace, the chat span as parent.
    let chat = named(&spans, "chat fake-model")[0];
    let sent = report["answer"].as_str().unwrap();
    assert_eq!(
        sent,
        format!(
            "traceparent: 00-{caller_trace}-{}-01",
            chat["span_id"].as_str().unwrap()
        )
    );

    // A malformed traceparent is ignored: the request starts a trace of its own.
    let report = post_traced(
        d,
        "/api/v1/agents/helper/run",
        &json!({"request": "hello"}),
        "00-not-a-trace-01",
    );
    assert_eq!(report["answer"], "echo: hello");
    assert!(
        report["trace_id"]
            .as_str()
            .is_some_and(|t| t.len() == 32 && t != caller_trace)
    );
}

/// One raw `POST /mcp` over TCP with a bearer token: status and the raw response.
fn mcp_post(port: u16, headers: &str, body: &Value) -> (u16, String) {
    use std::io::{Read, Write};
    let body = body.to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer trace-token-of-16-or-more\r\n{headers}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw)
}

#[test]
fn an_mcp_call_with_a_traceparent_in_its_meta_joins_the_caller_s_trace() {
    crate::support::builtin_tools_dir();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let (_receiver, otlp_port) = receiver(&out, false);
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.env = export_env(otlp_port);
    let port = opts.listen_tcp("trace-token-of-16-or-more", "");
    let _d = Daemon::start(opts);
    let (status, raw) = mcp_post(
        port,
        "",
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    );
    assert_eq!(status, 200, "{raw}");
    let session = raw
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("mcp-session-id: ")
                .map(str::to_owned)
        })
        .unwrap();
    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let (status, raw) = mcp_post(
        port,
        &format!("Mcp-Session-Id: {session}\r\nMCP-Protocol-Version: 2025-06-18\r\n"),
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "json_query", "arguments": {"json": "{\"a\": 1}", "query": "a"},
            "_meta": {"traceparent": format!("00-{caller_trace}-{caller_span}-01")}}}),
    );
    assert_eq!(status, 200, "{raw}");
    let call = &span_named(&out, caller_trace, "tools/call json_query");
    assert_eq!(call["parent_span_id"], caller_span);
    assert_eq!(call["kind"], 2, "SERVER");
    assert_eq!(call["attributes"]["mcp.method.name"], "tools/call");
    assert_eq!(call["attributes"]["mcp.session.id"], session.as_str());
}

#[test]
fn json_logs_name_the_trace_of_the_request_they_belong_to() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let (_receiver, port) = receiver(&out, false);
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.env = export_env(port);
    opts.env.push(("CAXTON_LOG_FORMAT".into(), "json".into()));
    let d = Daemon::start(opts);
    d.deploy("helper", &echo_agent("helper", ""));
    let (code, report) = d.run("helper", "hello");
    assert_eq!(code, 200, "{report}");
    let trace_id = report["trace_id"].as_str().unwrap();
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("\"execution finished\""))
        .unwrap_or_else(|| panic!("{log}"));
    let parsed: Value = serde_json::from_str(line).unwrap();
    let spans = parsed["spans"].as_array().unwrap();
    assert!(spans.iter().any(|s| s["trace_id"] == trace_id), "{line}");
    assert!(
        spans
            .iter()
            .any(|s| s["span_id"].as_str().is_some_and(|id| id.len() == 16)),
        "{line}"
    );
}

#[test]
fn the_prompt_s_memory_search_and_its_embedding_are_in_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let (_receiver, port) = receiver(&out, false);
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.env = export_env(port);
    opts.env.push((
        "CAXTON_MODELS_DIR".into(),
        crate::support::models_dir().display().to_string(),
    ));
    let d = Daemon::start(opts);
    d.deploy(
        "rememberer",
        &echo_agent("rememberer", "[memory]\nenabled = true\n"),
    );
    let (code, report) = d.run("rememberer", "what do I like?");
    assert_eq!(code, 200, "{report}");
    let trace_id = report["trace_id"].as_str().unwrap();
    let api_id =
        span_named(&out, trace_id, "POST /api/v1/agents/rememberer/run")["span_id"].clone();
    let search = span_named(&out, trace_id, "memory search");
    let embedding = span_named(
        &out,
        trace_id,
        "embeddings sentence-transformers/all-MiniLM-L6-v2",
    );
    assert_eq!(embedding["parent_span_id"], search["span_id"]);
    assert_eq!(
        embedding["attributes"]["gen_ai.operation.name"],
        "embeddings"
    );
    // The prompt's memories are looked up before the worker starts, in the API request.
    assert_eq!(search["parent_span_id"], api_id);
}

#[test]
fn a_streamed_model_call_says_when_its_first_chunk_came() {
    let traced = Traced::start();
    let (out, d) = (&traced.out, &traced.daemon);
    let cli = d.cli(&[
        "agent",
        "run",
        "helper",
        "--stream",
        "-v",
        "tell me a story",
    ]);
    assert!(cli.status.success(), "{}", text(&cli.stderr));
    assert_eq!(text(&cli.stdout), "echo: tell me a story\n");
    let trace_id = text(&cli.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("trace:").map(|t| t.trim().to_owned()))
        .unwrap();
    let chat = span_named(out, &trace_id, "chat fake-model");
    let first = chat["attributes"]["gen_ai.response.time_to_first_chunk"]
        .as_f64()
        .unwrap_or_else(|| panic!("{chat}"));
    assert!(first > 0.0 && first < 5.0, "{first}");
}
