//! Both HTTP provider protocols, OpenAI-compatible and Anthropic, against loopback servers that
//! speak them: every case asserts what the user sees.

use std::time::{Duration, Instant};

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
