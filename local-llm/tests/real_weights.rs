//! The real SmolLM2 weights, fetched by `scripts/fetch-models.sh` (run by `scripts/setup.sh`).

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot set up should fail loudly"
)]

use std::path::PathBuf;

use caxton_local_llm::{ChatTurn, FinishReason, GenerationParams, LocalModel, Role};

fn model_path() -> PathBuf {
    let dir = std::env::var_os("CAXTON_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models")));
    dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn answers_the_capital_of_france_greedily_and_stops_on_its_own() {
    let cache = tempfile::tempdir().unwrap();
    let mut model = LocalModel::load(
        &model_path(),
        cache.path(),
        "run scripts/fetch-models.sh",
        false,
    )
    .unwrap();
    let turns = [
        ChatTurn {
            role: Role::System,
            content: "You are a helpful assistant.",
        },
        ChatTurn {
            role: Role::User,
            content: "What is the capital of France?",
        },
    ];
    let mut streamed = String::new();
    let params = GenerationParams {
        max_tokens: 48,
        ..Default::default()
    };
    let answer = model
        .generate(&turns, &params, &mut |t| {
            streamed.push_str(t);
            true
        })
        .unwrap();
    assert!(answer.text.contains("Paris"), "{:?}", answer.text);
    assert_eq!(
        streamed, answer.text,
        "streamed pieces add up to the answer"
    );
    assert_eq!(answer.finish, FinishReason::Stop);
    assert!(answer.prompt_tokens > 10 && answer.completion_tokens > 0);

    // Stop sequences cut the answer; greedy decoding repeats itself exactly.
    let params = GenerationParams {
        max_tokens: 48,
        stop: vec!["Paris".into()],
        ..Default::default()
    };
    let cut = model.generate(&turns, &params, &mut |_| true).unwrap();
    assert!(
        !cut.text.contains("Paris") && answer.text.starts_with(&cut.text),
        "{:?}",
        cut.text
    );

    // A token budget is honoured.
    let params = GenerationParams {
        max_tokens: 3,
        ..Default::default()
    };
    let short = model.generate(&turns, &params, &mut |_| true).unwrap();
    assert_eq!(short.completion_tokens, 3);
    assert_eq!(short.finish, FinishReason::Length);
}

#[test]
fn a_missing_file_names_itself_and_the_fix() {
    let cache = tempfile::tempdir().unwrap();
    let err = LocalModel::load(
        &cache.path().join("nope.gguf"),
        cache.path(),
        "run scripts/fetch-models.sh",
        false,
    )
    .err()
    .unwrap();
    let message = err.to_string();
    assert!(
        message.contains("nope.gguf is missing") && message.contains("scripts/fetch-models.sh"),
        "{message}"
    );
}
