//! Quick timing of the local model in isolation, for work on its kernels: time to first token
//! of the benchmark's ~100-token prompt (p50 of 7), decode speed over 128 greedy tokens, the
//! capital question's answer, and this process's resident memory.
//! `cargo run --release -p caxton-local-llm --example local_timing [ttft]` (`ttft`: 20 more
//! prompts instead of the decode run, for a profiler); `CAXTON_Q8_KERNEL=avx2` or `=off` picks a
//! slower kernel (see `q8_tiled`). The full figures
//! are `cargo bench --bench providers -- local`.

#![allow(
    clippy::unwrap_used,
    reason = "a timing tool that cannot set up should fail loudly"
)]

use std::path::PathBuf;
use std::time::Instant;

use caxton_local_llm::{ChatTurn, GenerationParams, LocalModel, Role};

const SYSTEM: &str = "You are a helpful assistant.";
const TTFT_USER: &str = "I am planning a week-long trip to Portugal in early autumn with two \
     friends who enjoy hiking, good food and quiet beaches. We land in Lisbon on a Monday \
     morning and fly home from Porto the following Sunday evening. We would rather take trains \
     than rent a car. Two of us are vegetarian, and we prefer small family-run restaurants to \
     famous ones. Please suggest a plan with one highlight per day.";
const STORY_USER: &str = "Write a long and detailed story about a lighthouse keeper who finds a \
     message in a bottle. Describe the sea, the weather and the keeper's daily routine at length.";

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let dir = std::env::var_os("CAXTON_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models")));
    let cache = std::env::temp_dir().join("caxton-local-timing-cache");
    let mut model = LocalModel::load(
        &dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        &cache,
        "run scripts/fetch-models.sh",
        false,
    )
    .unwrap();
    println!("rss loaded: {:.0} MB", rss_mb());
    let turns = |user| {
        [
            ChatTurn {
                role: Role::System,
                content: SYSTEM,
            },
            ChatTurn {
                role: Role::User,
                content: user,
            },
        ]
    };
    let mut run = |user, max_tokens| {
        let params = GenerationParams {
            max_tokens,
            ..Default::default()
        };
        model
            .generate(&turns(user), &params, &mut |_| true)
            .unwrap()
    };
    let capital = run("What is the capital of France?", 32);
    println!("capital: {:?}", capital.text);
    println!("rss answered: {:.0} MB", rss_mb());
    let warm = run(TTFT_USER, 1);
    let mut ttft: Vec<f64> = (0..7)
        .map(|_| run(TTFT_USER, 1).time_to_first_token.as_secs_f64() * 1000.0)
        .collect();
    ttft.sort_by(f64::total_cmp);
    println!(
        "ttft {} tokens: p50 {:.0} ms (min {:.0}, max {:.0})",
        warm.prompt_tokens, ttft[3], ttft[0], ttft[6]
    );
    if std::env::args().any(|a| a == "ttft") {
        for _ in 0..20 {
            run(TTFT_USER, 1);
        }
        return;
    }
    let started = Instant::now();
    let g = run(STORY_USER, 128);
    let decoding = (g.duration - g.time_to_first_token).as_secs_f64();
    println!(
        "decode: {:.1} tok/s ({} tokens, {:.0} ms total)",
        g.completion_tokens.saturating_sub(1) as f64 / decoding,
        g.completion_tokens,
        started.elapsed().as_secs_f64() * 1000.0
    );
    println!("rss end: {:.0} MB", rss_mb());
}
