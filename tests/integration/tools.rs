//! Tool servers end to end: `caxton tool ...` against a daemon, the agent's tool loop through a
//! real worker, the execution record of each call, and a misbehaving tool costing only its call.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{Daemon, DaemonOptions, FakeLlm, echo_agent, http, text};

fn example(dir: &str) -> PathBuf {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tool-packages/examples"
    ))
    .join(dir);
    assert!(
        std::fs::read_dir(&path).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "wasm")),
        "{} is not built: run scripts/build-tools.sh",
        path.display()
    );
    path
}

/// A daemon whose built-in tools are the repository's (it finds them beside its build tree).
fn daemon(llm: &FakeLlm) -> Daemon {
    crate::support::builtin_tools_dir();
    Daemon::start(DaemonOptions::new(llm))
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn fails(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

#[test]
fn tool_servers_deploy_list_show_remove_and_survive_a_restart() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    let list = ok(&d.cli(&["tool", "list"]));
    assert!(list.contains("csv_parser"), "{list}");
    assert!(list.contains("built-in"), "{list}");

    let zig = example("echo-zig");
    let out = ok(&d.cli(&["tool", "deploy", zig.to_str().unwrap()]));
    assert!(
        out.contains("deployed tool server echo_zig 1.0.0 (echo)"),
        "{out}"
    );

    // Both examples provide a tool called `echo`: the second is refused and nothing changes.
    let err = fails(&d.cli(&["tool", "deploy", example("echo-c").to_str().unwrap()]));
    assert!(
        err.contains("\"echo\" of echo_c is already provided by tool server echo_zig"),
        "{err}"
    );

    // The memory tools belong to the supervisor: a package cannot shadow one.
    let shadow = tempfile::tempdir().unwrap();
    let echo_c = example("echo-c");
    std::fs::copy(
        echo_c.join("echo_c.wasm"),
        shadow.path().join("echo_c.wasm"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(echo_c.join("tool.toml"))
        .unwrap()
        .replace("name = \"echo_c\"", "name = \"shadow\"")
        .replace("name = \"echo\"", "name = \"memory_search\"");
    std::fs::write(shadow.path().join("tool.toml"), manifest).unwrap();
    let err = fails(&d.cli(&["tool", "deploy", shadow.path().to_str().unwrap()]));
    assert!(
        err.contains("\"memory_search\" of shadow is already provided by the supervisor's memory"),
        "{err}"
    );

    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("tool.toml"),
        "name = \"bad\"\nversion = \"1\"\nmodule = \"m.wasm\"\ntools = []\ncolour = \"red\"\n",
    )
    .unwrap();
    let err = fails(&d.cli(&["tool", "deploy", bad.path().to_str().unwrap()]));
    assert!(
        err.contains("tool.toml:5") && err.contains("colour"),
        "{err}"
    );

    let err = fails(&d.cli(&["tool", "remove", "csv_parser"]));
    assert!(err.contains("built-in"), "{err}");

    // A restart keeps what was deployed.
    let mut d = d;
    d.signal_and_wait(libc::SIGTERM);
    let Daemon { env, .. } = d;
    let d = Daemon::start_in(env, &[]);
    let shown: Value =
        serde_json::from_str(&ok(&d.cli(&["tool", "show", "echo_zig", "--json"]))).unwrap();
    assert_eq!(shown["source"], "deployed");
    assert_eq!(shown["manifest"]["tools"][0]["name"], "echo");
    assert_eq!(
        shown["manifest"]["tools"][0]["input_schema"]["required"],
        json!(["text"])
    );

    let out = ok(&d.cli(&["tool", "remove", "echo_zig"]));
    assert!(out.contains("removed tool server echo_zig"), "{out}");
    let list = ok(&d.cli(&["tool", "list"]));
    assert!(!list.contains("echo_zig"), "{list}");
}

/// Run `request` against `agent` with `--verbose`; returns (answer, details).
fn run_verbose(d: &Daemon, agent: &str, request: &str) -> (String, String) {
    let out = d.cli(&["agent", "run", agent, request, "--verbose"]);
    let answer = ok(&out);
    (answer, text(&out.stderr))
}

fn execution(d: &Daemon, details: &str) -> Value {
    let id = details
        .lines()
        .find_map(|l| l.strip_prefix("execution: "))
        .unwrap()
        .trim();
    let (status, body) = http(
        &d.env.socket,
        "GET",
        &format!("/api/v1/executions/{id}"),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn an_agent_calls_its_tools_and_the_execution_records_each_call() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    d.deploy(
        "analyst",
        &echo_agent("analyst", "tools = [\"csv_parser\"]\n"),
    );
    let request = r#"[call csv_stats {"csv": "region,total\nnorth,10\nsouth,32"}]"#;
    let (answer, details) = run_verbose(&d, "analyst", request);
    assert!(answer.starts_with("tool said: "), "{answer}");
    let stats: Value =
        serde_json::from_str(answer.trim().trim_start_matches("tool said: ")).unwrap();
    assert_eq!(stats["columns"][1]["name"], "total", "{stats}");
    assert_eq!(stats["columns"][1]["mean"], 21, "{stats}");
    assert!(details.contains("tool 1:    csv_stats("), "{details}");
    assert!(details.contains(", ok"), "{details}");

    let record = execution(&d, &details);
    let calls = record["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["tool"], "csv_stats");
    assert_eq!(calls[0]["outcome"], "ok");
    assert!(calls[0]["arguments"].as_str().unwrap().contains("north,10"));
    assert!(calls[0]["result_bytes"].as_u64().unwrap() > 10);
}

#[test]
fn a_tool_outside_the_agents_list_is_refused_and_the_call_budget_holds() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    d.deploy(
        "narrow",
        &echo_agent(
            "narrow",
            "tools = [\"json_query\"]\n[limits]\nmax_tool_calls = 2\n",
        ),
    );
    let (answer, details) = run_verbose(&d, "narrow", r#"[call csv_stats {"csv": "a\n1"}]"#);
    assert!(
        answer.contains("\"csv_stats\" is not in this agent's tools list"),
        "{answer}"
    );
    assert_eq!(
        execution(&d, &details)["tool_calls"][0]["outcome"],
        "refused"
    );
    assert!(
        d.log().contains("tool call refused"),
        "the refusal is logged"
    );

    let request = r#"[call-forever] [call json_query {"document": {"a": [1, 2]}, "path": "a[1]"}]"#;
    let (answer, details) = run_verbose(&d, "narrow", request);
    assert_eq!(answer.trim(), "no tools left after 2 results");
    let record = execution(&d, &details);
    let calls = record["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{record}");
    assert!(calls.iter().all(|c| c["outcome"] == "ok"), "{record}");

    // Arguments that break the tool's schema never reach the module.
    let (answer, details) = run_verbose(&d, "narrow", r#"[call json_query {"path": 7}]"#);
    assert!(
        answer.contains("invalid arguments for json_query"),
        "{answer}"
    );
    assert_eq!(
        execution(&d, &details)["tool_calls"][0]["outcome"],
        "invalid"
    );
}

/// A tool server whose one tool never returns.
const SPINNER: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_call") (param i32 i32 i32 i32) (result i64)
    (loop $forever (br $forever))
    (i64.const 0)))
"#;

/// A tool server with two misbehaving tools, told apart by the name's length: `grow` asks for
/// memory page after page until refused, `recurse` calls itself without end.
const HOG: &str = r#"
(module
  (memory (export "memory") 1)
  (func $recurse (call $recurse))
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_call") (param $np i32) (param $nl i32) (param i32 i32) (result i64)
    (if (i32.eq (local.get $nl) (i32.const 4))
      (then (loop $more (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))))
      (else (call $recurse)))
    unreachable))
"#;

/// A tool server whose one tool sleeps 20 ms in WASI, again and again, for ever: every host
/// call is short and spends almost no fuel.
const DOZER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_call") (param i32 i32 i32 i32) (result i64)
    ;; One relative monotonic clock subscription of 20 ms at 256, its event at 512.
    (i32.store8 (i32.const 264) (i32.const 0))
    (i32.store (i32.const 272) (i32.const 1))
    (i64.store (i32.const 280) (i64.const 20000000))
    (loop $again
      (drop (call $poll (i32.const 256) (i32.const 512) (i32.const 1) (i32.const 600)))
      (br $again))
    unreachable))
"#;

fn package(dir: &Path, name: &str, tool: &str, wat: &str, limits: &str) {
    std::fs::write(dir.join("m.wasm"), wat::parse_str(wat).unwrap()).unwrap();
    std::fs::write(
        dir.join("tool.toml"),
        format!(
            "name = \"{name}\"\nversion = \"1\"\nmodule = \"m.wasm\"\n\n[[tools]]\nname = \"{tool}\"\n\
             input_schema = {{ type = \"object\" }}\n\n[limits]\n{limits}\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_memory_hungry_or_endlessly_recursive_tool_costs_only_its_own_call() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    let pkg = tempfile::tempdir().unwrap();
    package(
        pkg.path(),
        "hog",
        "grow",
        HOG,
        "memory = \"4MB\"\ntimeout = \"5s\"",
    );
    // The manifest's second tool.
    let manifest = pkg.path().join("tool.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "\n[limits]",
        "\n[[tools]]\nname = \"recurse\"\ninput_schema = { type = \"object\" }\n\n[limits]",
    );
    std::fs::write(&manifest, text).unwrap();
    ok(&d.cli(&["tool", "deploy", pkg.path().to_str().unwrap()]));
    d.deploy(
        "hog",
        &echo_agent("hog", "tools = [\"hog\", \"csv_parser\"]\n"),
    );

    for (call, says) in [
        (
            "[call grow {}]",
            "exceeded its memory limit of 4000000 bytes",
        ),
        (
            "[call recurse {}]",
            "overflowed its stack (recursion too deep)",
        ),
    ] {
        let (answer, details) = run_verbose(&d, "hog", call);
        assert!(answer.contains(says), "{call}: {answer}");
        assert_eq!(
            execution(&d, &details)["tool_calls"][0]["outcome"],
            "failed",
            "{call}"
        );
        let (answer, _) = run_verbose(&d, "hog", r#"[call csv_parse {"csv": "x\n1"}]"#);
        assert!(
            answer.contains("tool said:"),
            "after {call}, the next call works: {answer}"
        );
    }
    assert!(
        d.cli(&["health"]).status.success(),
        "the supervisor stays healthy"
    );
}

#[test]
fn a_tool_looping_on_slow_host_calls_ends_at_its_time_limit() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    let pkg = tempfile::tempdir().unwrap();
    package(pkg.path(), "dozer", "doze", DOZER, "timeout = \"500ms\"");
    ok(&d.cli(&["tool", "deploy", pkg.path().to_str().unwrap()]));
    d.deploy(
        "doze",
        &echo_agent("doze", "tools = [\"dozer\", \"csv_parser\"]\n"),
    );
    let started = std::time::Instant::now();
    let (answer, details) = run_verbose(&d, "doze", "[call doze {}]");
    assert!(
        answer.contains("did not finish within 500ms, its time limit"),
        "{answer}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        execution(&d, &details)["tool_calls"][0]["outcome"],
        "failed"
    );
    let (answer, _) = run_verbose(&d, "doze", r#"[call csv_parse {"csv": "x\n1"}]"#);
    assert!(
        answer.contains("tool said:"),
        "the next call works: {answer}"
    );
}

#[test]
fn a_runaway_tool_costs_only_its_own_call() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    let pkg = tempfile::tempdir().unwrap();
    package(
        pkg.path(),
        "spinner",
        "spin",
        SPINNER,
        "fuel = 50000000\ntimeout = \"2s\"",
    );
    ok(&d.cli(&["tool", "deploy", pkg.path().to_str().unwrap()]));
    d.deploy(
        "spin",
        &echo_agent("spin", "tools = [\"spinner\", \"csv_parser\"]\n"),
    );

    let (answer, details) = run_verbose(&d, "spin", "[call spin {}]");
    assert!(answer.contains("used up its CPU budget"), "{answer}");
    assert_eq!(
        execution(&d, &details)["tool_calls"][0]["outcome"],
        "failed"
    );

    let (answer, _) = run_verbose(&d, "spin", r#"[call csv_parse {"csv": "x\n1"}]"#);
    assert!(
        answer.contains("tool said:"),
        "the next call works: {answer}"
    );
    let health = d.cli(&["health"]);
    assert!(health.status.success(), "the supervisor stays healthy");
}

/// A loopback HTTP server answering every request with `answer` (a whole HTTP response), and the
/// count of connections it accepted.
fn loopback_server(answer: &'static str) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (port, hits)
}

#[test]
fn an_agents_file_tool_reaches_nothing_outside_its_workspace() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    d.deploy(
        "reader",
        &echo_agent("reader", "tools = [\"file_system\"]\n"),
    );
    let workspace = d.env.data_dir().join("workspaces/reader");
    std::fs::create_dir_all(workspace.join("sub")).unwrap();
    std::fs::write(workspace.join("a.txt"), "inside the workspace").unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "the secret").unwrap();
    std::os::unix::fs::symlink(&secret, workspace.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), workspace.join("dirlink")).unwrap();

    let read = |path: &str| {
        let request = format!("[call fs_read {}]", json!({ "path": path }));
        run_verbose(&d, "reader", &request).0
    };
    assert!(read("a.txt").contains("inside the workspace"));
    assert!(read("sub/../a.txt").contains("inside the workspace"));
    let to_secret = format!(
        "../../../{}/secret.txt",
        outside.path().strip_prefix("/").unwrap().display()
    );
    for path in [
        "../reader/../../caxton.toml",
        to_secret.as_str(),
        secret.to_str().unwrap(),
        "/etc/passwd",
        "link",
        "link/",
        "dirlink/secret.txt",
        "dirlink/",
    ] {
        let answer = read(path);
        assert!(answer.contains("permission denied"), "{path}: {answer}");
        assert!(!answer.contains("the secret"), "{path}: {answer}");
    }
    // A write cannot land outside either.
    let answer = run_verbose(
        &d,
        "reader",
        &format!(
            "[call fs_write {}]",
            json!({"path": "dirlink/planted.txt", "content": "x"})
        ),
    )
    .0;
    assert!(answer.contains("permission denied"), "{answer}");
    assert!(!outside.path().join("planted.txt").exists());
    assert!(d.cli(&["health"]).status.success());
}

#[test]
fn an_agents_http_tool_reaches_no_internal_address_however_it_is_written() {
    let llm = FakeLlm::start();
    let d = daemon(&llm);
    let (port, hits) = loopback_server(
        "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
    );
    // The built-in HTTP client deployed again as operators do, listing one loopback port
    // literally and a public name.
    let pkg = tempfile::tempdir().unwrap();
    let builtin = crate::support::builtin_tools_dir().join("http");
    std::fs::copy(
        builtin.join("http_client.wasm"),
        pkg.path().join("http_client.wasm"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(builtin.join("tool.toml"))
        .unwrap()
        .replace(
            "http_hosts = []",
            &format!("http_hosts = [\"127.0.0.1:{port}\", \"example.com:443\"]"),
        );
    std::fs::write(pkg.path().join("tool.toml"), manifest).unwrap();
    ok(&d.cli(&["tool", "deploy", pkg.path().to_str().unwrap()]));
    d.deploy(
        "fetcher",
        &echo_agent("fetcher", "tools = [\"http_client\"]\n"),
    );
    let get = |url: &str| {
        let request = format!("[call http_get {}]", json!({ "url": url }));
        run_verbose(&d, "fetcher", &request).0
    };

    // The listed server is reached; its redirect to the metadata service is not followed.
    let answer = get(&format!("http://127.0.0.1:{port}/"));
    assert!(
        answer.contains("redirect to http://169.254.169.254/latest/meta-data refused"),
        "{answer}"
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "{answer}"
    );
    for url in [
        "http://169.254.169.254/latest/meta-data".to_owned(),
        format!("http://127.0.0.1:{}/", port + 1),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://0177.0.0.1:{}/", port + 1),
        format!("http://2130706433:{}/", port + 1),
        "http://0x7f.1/".to_owned(),
    ] {
        let answer = get(&url);
        assert!(
            answer.contains("allowlist") || answer.contains("loopback"),
            "{url}: {answer}"
        );
    }
    // None of them reached the server.
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(d.cli(&["health"]).status.success());
}
