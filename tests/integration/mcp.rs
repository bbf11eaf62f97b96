//! `/mcp` with the official MCP Python SDK as the client, over TCP with the API's bearer token,
//! plus the transport's error cases on the raw wire.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{Daemon, DaemonOptions, FakeLlm, read_response};

const TOKEN: &str = "mcp-test-token-of-sufficient-length";

/// Where `scripts/install-test-clients.sh` puts the MCP Python SDK.
fn mcp_sdk() -> PathBuf {
    let cache = crate::support::test_clients_cache();
    let dir = cache.join("python-mcp-2.3.0");
    assert!(
        dir.join(".installed").is_file(),
        "the MCP Python SDK is not installed: run scripts/install-test-clients.sh (scripts/setup.sh does)"
    );
    dir
}

fn daemon_on_tcp() -> (FakeLlm, Daemon, u16) {
    crate::support::builtin_tools_dir();
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    let port = opts.listen_tcp(TOKEN, "");
    let daemon = Daemon::start(opts);
    (llm, daemon, port)
}

#[test]
fn the_official_mcp_sdk_lists_and_calls_the_hosted_tools() {
    let (_llm, daemon, port) = daemon_on_tcp();
    // Enough deployed tools that tools/list needs more than one page.
    let extra = tempfile::tempdir().unwrap();
    for i in 0..60 {
        let dir = extra.path().join(format!("t{i}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join("m.wasm"),
            wat::parse_str(
                r#"(module (memory (export "memory") 1)
                  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
                  (func (export "caxton_call") (param i32 i32 i32 i32) (result i64) (i64.const 0)))"#,
            )
            .unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join("tool.toml"),
            format!(
                "name = \"extra{i}\"\nversion = \"1\"\nmodule = \"m.wasm\"\n[[tools]]\nname = \"extra_{i}\"\ninput_schema = {{ type = \"object\" }}\n"
            ),
        )
        .unwrap();
        let out = daemon.cli(&["tool", "deploy", dir.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/mcp/sdk_client.py"
        ))
        .arg(format!("http://127.0.0.1:{port}/mcp"))
        .arg(TOKEN)
        .env("PYTHONPATH", mcp_sdk())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "SDK client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["protocol_version"], "2025-06-18", "{seen}");
    assert_eq!(seen["server_name"], "caxton");
    assert_eq!(seen["tools_capability"], true);
    assert_eq!(seen["ping"], true);
    let tools: Vec<&str> = seen["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(seen["pages"].as_u64().unwrap() >= 2, "{seen}");
    assert!(
        tools.contains(&"csv_stats") && tools.contains(&"extra_59"),
        "{seen}"
    );
    assert_eq!(
        tools.len(),
        60 + 11,
        "every tool exactly once across pages: {seen}"
    );
    assert_eq!(seen["stats_is_error"], false);
    assert!(
        seen["stats_text"].as_str().unwrap().contains("\"mean\":21"),
        "{seen}"
    );
    assert_eq!(seen["bad_args_is_error"], true);
    assert!(
        seen["bad_args_text"]
            .as_str()
            .unwrap()
            .contains("invalid arguments"),
        "{seen}"
    );
    assert_eq!(seen["unknown_tool_error"]["code"], -32602, "{seen}");
}

/// One raw HTTP request to the daemon's TCP listener.
fn post(port: u16, headers: &str, body: &str) -> (u16, Value, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (status, value) = read_response(&mut &raw[..]).unwrap();
    (status, value, text)
}

#[test]
fn the_mcp_transport_refuses_what_the_protocol_says_to_refuse() {
    let (_llm, _daemon, port) = daemon_on_tcp();
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
    .to_string();

    let (status, _, _) = post(port, "", &init);
    assert_eq!(status, 401, "the API's authentication applies to /mcp");

    let (status, body, raw) = post(port, &auth, &init);
    assert_eq!(status, 200, "{raw}");
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18");
    let session = raw
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("mcp-session-id: ")
                .map(str::to_owned)
        })
        .expect("a session id header");
    let with_session =
        format!("{auth}Mcp-Session-Id: {session}\r\nMCP-Protocol-Version: 2025-06-18\r\n");

    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    assert_eq!(post(port, &auth, &list).0, 400, "no session header");
    assert_eq!(
        post(port, &format!("{auth}Mcp-Session-Id: nope\r\n"), &list).0,
        404,
        "unknown session"
    );
    let (status, body, _) = post(port, &with_session, "{not json");
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!(-32700))
    );
    let (_, body, _) = post(
        port,
        &with_session,
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/frobnicate"}).to_string(),
    );
    assert_eq!(body["error"]["code"], -32601);
    let (_, body, _) = post(
        port,
        &with_session,
        &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"cursor": "x"}})
            .to_string(),
    );
    assert_eq!(body["error"]["code"], -32602);
    let (status, _, _) = post(
        port,
        &with_session,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
    );
    assert_eq!(status, 202, "notifications are accepted without a body");
    let (status, _, _) = post(
        port,
        &format!("{with_session}Origin: https://evil.example\r\n"),
        &list,
    );
    assert_eq!(status, 403, "a foreign Origin is refused");
    let (status, body, _) = post(port, &with_session, &list);
    assert_eq!(status, 200);
    assert!(
        body["result"]["tools"].as_array().unwrap().len() >= 11,
        "{body}"
    );
}
