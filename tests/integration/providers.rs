//! Both HTTP provider protocols, OpenAI-compatible and Anthropic, against loopback servers that
//! speak them: every case asserts what the user sees.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// A daemon whose only agent, `asker`, uses a provider of `kind` on the fake server, with a
/// short timeout so a hung server is quick to see.
fn daemon_for(kind: &str) -> (FakeLlm, Daemon) {
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.extra_config = format!(
        "[providers.under-test]\nkind = \"{kind}\"\nbase_url = \"{}\"\nmodel = \"fake-model\"\napi_key_env = \"FAKE_KEY\"\ntimeout = \"1s\"\n",
        llm.base_url()
    );
    opts.env.push(("FAKE_KEY".into(), "sk-test".into()));
    let daemon = Daemon::start(opts);
    daemon.deploy(
        "asker",
        &echo_agent("asker", "[llm]\nprovider = \"under-test\"\n"),
    );
    (llm, daemon)
}

fn message(body: &serde_json::Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn exercise(kind: &str) {
    let (_llm, daemon) = daemon_for(kind);
    let tag = format!("({kind})");

    // A plain answer, with the provider's token counts recorded.
    let (code, body) = daemon.run("asker", &format!("plain {tag}"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["answer"], format!("echo: plain {tag}"));
    assert_eq!(body["usage"]["provider"], "under-test");
    assert_eq!(body["usage"]["prompt_tokens"], 5);
    assert_eq!(body["usage"]["completion_tokens"], 2);

    // Streaming, piece by piece through the worker.
    let out = daemon.cli(&[
        "agent",
        "run",
        "asker",
        &format!("streamed words {tag}"),
        "--stream",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("echo: streamed words {tag}\n"));

    // 429 with Retry-After is waited out; a 500 then success is retried.
    let started = Instant::now();
    assert_eq!(daemon.run("asker", &format!("[429once] {tag}")).0, 200);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(daemon.run("asker", &format!("[500once] {tag}")).0, 200);

    // A refused key, a hung server and a malformed answer each say what happened.
    let (code, body) = daemon.run("asker", &format!("[401] {tag}"));
    assert_eq!(code, 502);
    assert!(
        message(&body).contains("refused the API key (HTTP 401): check the key in FAKE_KEY"),
        "{body}"
    );
    let (_, body) = daemon.run("asker", &format!("[hang] {tag}"));
    assert!(
        message(&body).contains("did not answer within 1s"),
        "{body}"
    );
    let (_, body) = daemon.run("asker", &format!("[garbage] {tag}"));
    assert!(message(&body).contains("malformed answer"), "{body}");

    // A server that reports no token counts: the usage is unknown, not 0 + 0, in the answer, in
    // the execution's record and in what `--verbose` prints, plain and streamed.
    let (code, body) = daemon.run("asker", &format!("[no-usage] {tag}"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["answer"], format!("echo: [no-usage] {tag}"));
    assert_eq!(body["usage"]["provider"], "under-test");
    assert_eq!(body["usage"]["prompt_tokens"], Value::Null, "{body}");
    assert_eq!(body["usage"]["completion_tokens"], Value::Null, "{body}");
    let id = body["execution_id"].as_str().unwrap();
    let (_, record) = http(
        &daemon.env.socket,
        "GET",
        &format!("/api/v1/executions/{id}"),
        None,
    )
    .unwrap();
    assert_eq!(record["provider"], "under-test", "{record}");
    assert_eq!(record["prompt_tokens"], Value::Null, "{record}");
    assert_eq!(record["completion_tokens"], Value::Null, "{record}");
    for stream in [&[][..], &["--stream"][..]] {
        let request = format!("[no-usage] verbose {tag}");
        let mut args = vec!["agent", "run", "asker", &request, "--verbose"];
        args.extend_from_slice(stream);
        let out = daemon.cli(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("echo: {request}\n"));
        let details = text(&out.stderr);
        assert!(details.contains("usage unknown"), "{stream:?}: {details}");
        assert!(!details.contains("0 prompt"), "{stream:?}: {details}");
    }

    // And the next request works.
    assert_eq!(daemon.run("asker", &format!("still fine {tag}")).0, 200);
}

#[test]
fn openai_compatible_servers() {
    exercise("openai");
}

#[test]
fn anthropic_messages_api() {
    exercise("anthropic");
}

/// An agent on the fake server (as strict as llama.cpp's) with one tool; `llm` is its `[llm]`.
fn tool_agent(name: &str, llm: &str) -> String {
    echo_agent(name, &format!("tools = [\"json_query\"]\n\n[llm]\n{llm}"))
}

#[test]
fn tool_calls_work_against_a_server_as_strict_as_llama_cpp_and_tool_choice_is_honoured() {
    builtin_tools_dir();
    let llm = FakeLlm::start();
    let mut opts = DaemonOptions::new(&llm);
    opts.extra_config = format!(
        "[providers.reluctant]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"fake-model\"\ntool_choice = \"none\"\n",
        llm.base_url()
    );
    let daemon = Daemon::start(opts);
    daemon.deploy("caller", &tool_agent("caller", "provider = \"fake\"\n"));
    let request = r#"[call json_query {"document": {"a": [1, 2]}, "path": "a[1]"}]"#;
    let answered = r#"tool said: {"count":1,"matches":[2],"truncated":false}"#;

    // The server calls tools only when tool_choice asks, refuses a tool-call turn sent back
    // with null content, and streams a first chunk with "tool_calls": null.
    let (code, body) = daemon.run("caller", request);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["answer"], answered, "{body}");
    assert_eq!(body["tool_calls"][0]["tool"], "json_query", "{body}");
    let out = daemon.cli(&["agent", "run", "caller", request, "--stream"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{answered}\n"));

    // A provider's tool_choice applies to its agents; an agent's own overrides it.
    daemon.deploy(
        "reluctant",
        &tool_agent("reluctant", "provider = \"reluctant\"\n"),
    );
    let (code, body) = daemon.run("reluctant", request);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["answer"], "tool_choice none: answered without tools");
    daemon.deploy(
        "eager",
        &tool_agent(
            "eager",
            "provider = \"reluctant\"\ntool_choice = \"required\"\n",
        ),
    );
    let (code, body) = daemon.run("eager", request);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["answer"], answered, "{body}");

    // A word the protocols do not have is refused where it is written.
    let file = daemon.env.agent_file(
        "bad",
        &tool_agent("bad", "provider = \"fake\"\ntool_choice = \"sometimes\"\n"),
    );
    let out = daemon.cli(&["agent", "deploy", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:8:", file.display())) && err.contains("sometimes"),
        "{err}"
    );
}
