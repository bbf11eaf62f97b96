//! Shared test machinery: a daemon under test, the fake LLM server, a raw HTTP client.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where cargo put the binaries of this workspace.
pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_caxton"))
        .parent()
        .expect("binary has a directory")
        .to_owned()
}

pub fn caxton_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_caxton"))
}

/// The misbehaving worker, optionally under another name (its pre-handshake mode).
pub fn fixture_worker(dir: &Path, mode: &str) -> PathBuf {
    let real = bin_dir().join("caxton-fixture-worker");
    assert!(
        real.exists(),
        "{} missing: run `cargo test --workspace` (it builds the fixtures)",
        real.display()
    );
    if mode.is_empty() {
        return real;
    }
    let link = dir.join(format!("{mode}-worker"));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&real, &link).expect("symlink fixture");
    link
}

/// Requests seen by every fake server of this test process, by message text (tests use distinct
/// texts, so they do not disturb each other).
static SEEN: std::sync::Mutex<std::collections::BTreeMap<String, u32>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The fake OpenAI-compatible server. Its answer depends on the last user message:
/// `[slow]` waits 300 ms, `[hang]` never answers, `[500]` fails, `[garbage]` is not JSON,
/// `[401]` refuses the key, `[empty]` answers 200 with no body, `[429once]` and `[500once]` fail
/// the first time only, `[429always]` never stops, `[unknown-model]` and `[context]` fail as
/// OpenAI does; `[no-usage]` reports no token counts; anything else is echoed back as
/// `echo: <message>`. It is as strict as llama.cpp's server: see [`strict_like_llama_cpp`].
pub struct FakeLlm {
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl FakeLlm {
    pub fn start() -> Self {
        use axum::Json;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind fake llm");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .route(
                "/v1/chat/completions",
                axum::routing::post(|Json(body): Json<Value>| fake_answer(Wire::OpenAi, body)),
            )
            .route(
                "/v1/messages",
                axum::routing::post(|Json(body): Json<Value>| fake_answer(Wire::Anthropic, body)),
            );
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            _runtime: runtime,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

/// Which provider protocol a fake answer speaks.
#[derive(Clone, Copy, PartialEq)]
enum Wire {
    OpenAi,
    Anthropic,
}

/// The text of the last message, whether its content is a string or a list of blocks.
fn last_text(body: &Value) -> String {
    let content = &body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default()["content"];
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str().or(b["content"].as_str()))
            .collect(),
        _ => String::new(),
    }
}

async fn fake_answer(wire: Wire, body: Value) -> axum::response::Response {
    use axum::Json;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let last = last_text(&body);
    let error = |status: StatusCode, message: &str, code: &str| {
        (status, Json(serde_json::json!({"type": "error", "error": {"message": message, "code": code, "type": code}}))).into_response()
    };
    if wire == Wire::OpenAi
        && let Some(refusal) = strict_like_llama_cpp(&body)
    {
        return error(StatusCode::INTERNAL_SERVER_ERROR, &refusal, "server_error");
    }
    // How often this exact message has been seen: "once" failures succeed on retry.
    let seen = {
        let mut counts = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(format!("{}{last}", wire as u8)).or_insert(0);
        *n += 1;
        *n
    };
    if last.contains("[429once]") && seen == 1 {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow down",
            "rate_limit_error",
        );
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        return r;
    }
    if last.contains("[429always]") {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow down",
            "rate_limit_error",
        );
        r.headers_mut().insert("retry-after", "0".parse().unwrap());
        return r;
    }
    if last.contains("[500once]") && seen == 1 {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "hiccup", "api_error");
    }
    if last.contains("[unknown-model]") {
        return error(
            StatusCode::NOT_FOUND,
            "The model `fake-model` does not exist",
            "model_not_found",
        );
    }
    if last.contains("[context]") {
        return error(
            StatusCode::BAD_REQUEST,
            "This model's maximum context length is 8192 tokens",
            "context_length_exceeded",
        );
    }
    if last.contains("[hang]") {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if last.contains("[slow]") {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if last.contains("[500]") {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "boom", "api_error");
    }
    if last.contains("[401]") {
        return error(StatusCode::UNAUTHORIZED, "bad key", "authentication_error");
    }
    if last.contains("[empty]") {
        return (StatusCode::OK, "").into_response();
    }
    if last.contains("[garbage]") {
        return (StatusCode::OK, "this is not json").into_response();
    }
    let stream = body["stream"] == true;
    let model = &body["model"];
    if wire == Wire::OpenAi
        && let Some(reply) = scripted_tool_turn(&body)
    {
        if stream {
            return openai_stream_of(&reply);
        }
        return Json(reply).into_response();
    }
    if last.contains("[no-usage]") {
        return no_usage_answer(wire, stream, model, &format!("echo: {last}"));
    }
    let answer = format!("echo: {last}");
    let words: Vec<&str> = answer.split_inclusive(' ').collect();
    match (wire, stream) {
        (Wire::OpenAi, false) => Json(serde_json::json!({
            "model": model,
            "choices": [{"message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2}
        }))
        .into_response(),
        (Wire::OpenAi, true) => {
            // One server-sent event per word, then usage, then [DONE], as OpenAI streams; the
            // first says `"tool_calls": null`, as llama.cpp's server does.
            let mut events = format!("data: {}\n\n", llama_cpp_first_chunk(model));
            for word in &words {
                let chunk = serde_json::json!({"model": model, "choices": [{"index": 0, "delta": {"content": word}}]});
                events.push_str(&format!("data: {chunk}\n\n"));
            }
            let usage = serde_json::json!({"model": model, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}});
            events.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
            ([("content-type", "text/event-stream")], events).into_response()
        }
        (Wire::Anthropic, false) => Json(serde_json::json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": answer}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "output_tokens": 2}
        }))
        .into_response(),
        (Wire::Anthropic, true) => {
            let mut events = String::new();
            let mut event = |name: &str, data: Value| {
                events.push_str(&format!("event: {name}\ndata: {data}\n\n"))
            };
            event(
                "message_start",
                serde_json::json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [], "usage": {"input_tokens": 5, "output_tokens": 0}}}),
            );
            event(
                "content_block_start",
                serde_json::json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            );
            event("ping", serde_json::json!({"type": "ping"}));
            for word in &words {
                event(
                    "content_block_delta",
                    serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}),
                );
            }
            event(
                "content_block_stop",
                serde_json::json!({"type": "content_block_stop", "index": 0}),
            );
            event(
                "message_delta",
                serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
            );
            event("message_stop", serde_json::json!({"type": "message_stop"}));
            ([("content-type", "text/event-stream")], events).into_response()
        }
    }
}

/// The tool calls a user message scripts: `[call NAME {json}]`, any number of them.
fn scripted_calls(text: &str) -> Vec<(String, Value)> {
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("[call ") {
        let after = &rest[at + 6..];
        let Some((name, json)) = after.split_once(' ') else {
            break;
        };
        let mut values = serde_json::Deserializer::from_str(json).into_iter::<Value>();
        let Some(Ok(args)) = values.next() else {
            break;
        };
        calls.push((name.to_owned(), args));
        rest = &json[values.byte_offset()..];
    }
    calls
}

/// OpenAI tool calling, scripted by the first user message (`[call NAME {json}]`): while tools
/// are offered and no result came back yet, call them; once results are there, answer
/// `tool said: RESULT | RESULT`. With `[call-forever]` it calls again for as long as tools are
/// offered, and answers `no tools left after N results` when they are not.
fn scripted_tool_turn(body: &Value) -> Option<Value> {
    let messages = body["messages"].as_array()?;
    let first_user = messages.iter().find(|m| m["role"] == "user")?;
    let calls = scripted_calls(first_user["content"].as_str()?);
    if calls.is_empty() {
        return None;
    }
    let forever = first_user["content"].as_str()?.contains("[call-forever]");
    let results: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "tool")
        .filter_map(|m| m["content"].as_str())
        .collect();
    let offered = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    let usage = serde_json::json!({"prompt_tokens": 5, "completion_tokens": 2});
    let answer = |text: String| {
        serde_json::json!({
            "model": body["model"],
            "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        })
    };
    if !offered {
        return Some(answer(format!(
            "no tools left after {} results",
            results.len()
        )));
    }
    if !results.is_empty() && !forever {
        return Some(answer(format!("tool said: {}", results.join(" | "))));
    }
    // Like llama.cpp's server (and the models behind it), it calls tools only when asked to;
    // otherwise the model makes an answer up.
    match body["tool_choice"].as_str() {
        None => {
            return Some(answer(
                "made up: no tool_choice was sent, so no tool was called".into(),
            ));
        }
        Some("none") => {
            return Some(answer("tool_choice none: answered without tools".into()));
        }
        Some(_) => {}
    }
    let tool_calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            serde_json::json!({
                "id": format!("call_{}_{i}", results.len()),
                "type": "function",
                "function": {"name": name, "arguments": args.to_string()},
            })
        })
        .collect();
    Some(serde_json::json!({
        "model": body["model"],
        "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": tool_calls}, "finish_reason": "tool_calls"}],
        "usage": usage,
    }))
}

/// What llama.cpp's server refuses, with the HTTP 500 it answers: an assistant turn that calls
/// tools with `"content": null` (or no content at all).
fn strict_like_llama_cpp(body: &Value) -> Option<String> {
    let messages = body["messages"].as_array()?;
    messages
        .iter()
        .any(|m| {
            m["role"] == "assistant"
                && m["tool_calls"].as_array().is_some_and(|c| !c.is_empty())
                && !m["content"].is_string()
        })
        .then(|| "Failed to parse messages: Expected 'content' to be a string or an array".into())
}

/// The first chunk llama.cpp's server streams: the role, with null content and tool calls.
fn llama_cpp_first_chunk(model: &Value) -> Value {
    serde_json::json!({"model": model, "choices": [{"index": 0, "finish_reason": null,
        "delta": {"role": "assistant", "content": null, "tool_calls": null}}]})
}

/// A non-streamed OpenAI answer (text or tool calls) as the event stream that carries it: the
/// llama.cpp first chunk, the text or each call (id and name, then its arguments in two
/// pieces), usage, `[DONE]`.
fn openai_stream_of(reply: &Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    let model = &reply["model"];
    let message = &reply["choices"][0]["message"];
    let chunk = |delta: Value| {
        let c = serde_json::json!({"model": model, "choices": [{"index": 0, "delta": delta}]});
        format!("data: {c}\n\n")
    };
    let mut events = format!("data: {}\n\n", llama_cpp_first_chunk(model));
    if let Some(text) = message["content"].as_str() {
        events.push_str(&chunk(serde_json::json!({"content": text})));
    }
    for (i, call) in message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let args = call["function"]["arguments"].as_str().unwrap_or_default();
        let middle = args
            .char_indices()
            .nth(args.chars().count() / 2)
            .map_or(args.len(), |(at, _)| at);
        let (head, tail) = args.split_at(middle);
        events.push_str(&chunk(
            serde_json::json!({"tool_calls": [{"index": i, "id": call["id"],
            "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}]}),
        ));
        for piece in [head, tail] {
            events.push_str(&chunk(
                serde_json::json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
            ));
        }
    }
    let usage = serde_json::json!({"model": model, "choices": [], "usage": reply["usage"]});
    events.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    ([("content-type", "text/event-stream")], events).into_response()
}

/// An answer that reports no token counts: `"usage": null` (or no usage event), as some
/// OpenAI-compatible servers answer.
fn no_usage_answer(
    wire: Wire,
    stream: bool,
    model: &Value,
    answer: &str,
) -> axum::response::Response {
    use axum::Json;
    use axum::response::IntoResponse;
    let sse = |events: String| ([("content-type", "text/event-stream")], events).into_response();
    match (wire, stream) {
        (Wire::OpenAi, false) => Json(serde_json::json!({"model": model, "usage": null,
            "choices": [{"message": {"role": "assistant", "content": answer, "tool_calls": null}}]}))
        .into_response(),
        (Wire::OpenAi, true) => {
            let text = serde_json::json!({"model": model, "usage": null, "choices": [{"index": 0, "delta": {"content": answer}}]});
            sse(format!("data: {}\n\ndata: {text}\n\ndata: [DONE]\n\n", llama_cpp_first_chunk(model)))
        }
        (Wire::Anthropic, false) => Json(serde_json::json!({"type": "message", "role": "assistant",
            "model": model, "content": [{"type": "text", "text": answer}], "usage": null}))
        .into_response(),
        (Wire::Anthropic, true) => {
            let events = [
                serde_json::json!({"type": "message_start", "message": {"model": model, "content": null, "usage": null}}),
                serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": answer}}),
                serde_json::json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": null}),
                serde_json::json!({"type": "message_stop"}),
            ];
            sse(events
                .iter()
                .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or_default()))
                .collect())
        }
    }
}

/// The repository's built-in tool packages (built by `scripts/build-tools.sh`).
pub fn builtin_tools_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/builtin"));
    assert!(
        dir.join("csv/csv_parser.wasm").is_file(),
        "built-in tools are not built: run scripts/build-tools.sh (scripts/setup.sh does)"
    );
    dir
}

/// Where `scripts/install-test-clients.sh` installs the test clients and reference tools.
pub fn test_clients_cache() -> PathBuf {
    std::env::var_os("CAXTON_TOOLS_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("caxton")))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/caxton")
        })
}

/// Options for a daemon under test.
pub struct DaemonOptions {
    pub llm_url: String,
    pub worker_path: Option<PathBuf>,
    pub extra_config: String,
    /// More lines for the config's `[worker]` table.
    pub worker_config: String,
    pub env: Vec<(String, String)>,
}

impl DaemonOptions {
    pub fn new(llm: &FakeLlm) -> Self {
        Self {
            llm_url: llm.base_url(),
            worker_path: None,
            extra_config: String::new(),
            worker_config: String::new(),
            env: Vec::new(),
        }
    }

    /// No HTTP provider at all: the built-in offline model is the default, read from `models`.
    pub fn offline(models: &Path) -> Self {
        Self {
            llm_url: String::new(),
            worker_path: None,
            extra_config: String::new(),
            worker_config: String::new(),
            env: vec![("CAXTON_MODELS_DIR".into(), models.display().to_string())],
        }
    }
}

/// Where `scripts/fetch-models.sh` puts the weights (overridden by `CAXTON_MODELS_DIR`).
pub fn models_dir() -> PathBuf {
    std::env::var_os("CAXTON_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models")))
}

/// A data directory with a config file; a daemon may or may not be running on it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
}

impl Env {
    pub fn new(opts: &DaemonOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("caxton.toml");
        let worker = opts
            .worker_path
            .as_ref()
            .map(|p| format!("path = \"{}\"\n", p.display()))
            .unwrap_or_default();
        let fake = if opts.llm_url.is_empty() {
            String::new()
        } else {
            format!(
                "[providers.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"fake-model\"\ntimeout = \"20s\"\n\n",
                opts.llm_url
            )
        };
        let text = format!(
            "[worker]\n{worker}grace_period = \"300ms\"\n{}\n[shutdown]\ngrace_period = \"5s\"\n\n{fake}{}",
            opts.worker_config, opts.extra_config
        );
        std::fs::write(&config, text).expect("write config");
        let socket = dir.path().join("caxton.sock");
        Self {
            dir,
            config,
            socket,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Run the CLI against this environment.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, None)
    }

    /// Run the CLI with extra environment variables.
    pub fn cli_with_env(&self, args: &[&str], vars: &[(&str, PathBuf)]) -> Output {
        self.run_cli(args, None, vars)
    }

    pub fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_cli(args, stdin, &[])
    }

    fn run_cli(&self, args: &[&str], stdin: Option<&str>, vars: &[(&str, PathBuf)]) -> Output {
        let mut cmd = Command::new(caxton_bin());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args);
        cmd.env_remove("CAXTON_SOCKET")
            .env_remove("CAXTON_CONFIG")
            .env_remove("CAXTON_DATA_DIR")
            .env_remove("NOTIFY_SOCKET");
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn caxton");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("caxton output")
    }

    /// Write an agent file straight into the agents directory.
    pub fn agent_file(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.src.toml"));
        std::fs::write(&path, body).expect("write agent");
        path
    }

    /// Deploy an agent through the CLI and assert it worked.
    pub fn deploy(&self, name: &str, body: &str) {
        let file = self.agent_file(name, body);
        let out = self.cli(&["agent", "deploy", file.to_str().expect("utf8 path")]);
        assert!(out.status.success(), "deploy {name}: {}", text(&out.stderr));
    }
}

/// A minimal agent whose prompt is the request itself.
pub fn echo_agent(name: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"1.0.0\"\nuser_prompt_template = \"{{{{ request }}}}\"\n{extra}"
    )
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A child process killed (and reaped) on drop, so a failing test leaves nothing running.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `caxton serve`.
pub struct Daemon {
    pub env: Env,
    pub child: KillOnDrop,
    stderr_path: PathBuf,
}

impl Daemon {
    pub fn start(opts: DaemonOptions) -> Self {
        let env = Env::new(&opts);
        Self::start_in(env, &opts.env)
    }

    pub fn start_in(env: Env, extra_env: &[(String, String)]) -> Self {
        let stderr_path = env.data_dir().join("serve.log");
        let log = std::fs::File::create(&stderr_path).expect("log file");
        let mut cmd = Command::new(caxton_bin());
        cmd.arg("--config")
            .arg(&env.config)
            .arg("--data-dir")
            .arg(env.data_dir())
            .arg("serve");
        cmd.env_remove("NOTIFY_SOCKET")
            .env("CAXTON_LOG", "info,caxton_supervisor=debug");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        let child = KillOnDrop(cmd.spawn().expect("spawn caxton serve"));
        let mut daemon = Self {
            env,
            child,
            stderr_path,
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("caxton serve exited early with {status}: {}", self.log());
            }
            if let Ok((200, _)) = http(&self.env.socket, "GET", "/api/v1/health", None) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("caxton serve did not become ready: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.env.cli(args)
    }

    pub fn deploy(&self, name: &str, body: &str) {
        self.env.deploy(name, body);
    }

    /// `POST /api/v1/agents/NAME/run` with this request text.
    pub fn run(&self, agent: &str, request: &str) -> (u16, Value) {
        http(
            &self.env.socket,
            "POST",
            &format!("/api/v1/agents/{agent}/run"),
            Some(&serde_json::json!({"request": request}).to_string()),
        )
        .expect("run request")
    }

    /// Poll the live table until a worker for `agent` waits on the model; returns its PID.
    pub fn wait_for_worker(&self, agent: &str) -> u32 {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok((200, body)) = http(&self.env.socket, "GET", "/api/v1/workers", None)
                && let Some(pid) = body["workers"]
                    .as_array()
                    .and_then(|w| {
                        w.iter()
                            .find(|w| w["agent"] == agent && w["state"] == "awaiting_model")
                    })
                    .and_then(|w| w["pid"].as_u64())
            {
                return pid as u32;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no worker for {agent} appeared");
    }

    /// Send a signal to the daemon and wait for it to exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), signal) };
        wait_child(&mut self.child, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("daemon did not exit: {}", self.log()))
    }
}

pub fn wait_child(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Wait until a process is gone.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    wait_until(limit, || !process_alive(pid))
}

/// Poll `done` until it holds, up to `limit`; whether it did.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A loopback TCP port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request over a Unix socket; returns status and JSON body.
pub fn http(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    let mut stream = UnixStream::connect(socket)?;
    let body = body.unwrap_or("");
    // Large bodies ask first (as curl does), so a refusal (413) arrives before the body is sent
    // rather than racing a connection the server has already closed.
    let expect = if body.len() > 64 * 1024 {
        "Expect: 100-continue\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: caxton\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{expect}Connection: close\r\n\r\n",
        body.len()
    )?;
    if !expect.is_empty() {
        let mut first = [0u8; 25];
        let n = stream.read(&mut first)?;
        if !first[..n].starts_with(b"HTTP/1.1 100") {
            let mut rest = first[..n].to_vec();
            stream.read_to_end(&mut rest)?;
            return read_response(&mut &rest[..]);
        }
    }
    stream.write_all(body.as_bytes())?;
    read_response(&mut stream)
}

pub fn read_response(stream: &mut impl Read) -> std::io::Result<(u16, Value)> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Ok((status, value))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
