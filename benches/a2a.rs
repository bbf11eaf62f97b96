//! `cargo bench --bench a2a`: what A2A costs, in and out, against the real release binaries.
//!
//! The bench starts two `caxton serve` daemons, `a` and `b`, with the same LLM server that answers
//! at once (on the bench's own runtime); `b` also listens on TCP loopback with a bearer token.
//! Two figures, each beside what it is compared with in the same run, alternating round by round
//! so machine noise falls on both alike:
//!
//! 1. Inbound: `message/send` to `POST /a2a/echo` on `a` (a fresh connection each, as a client
//!    makes it; the answer checked to be a `completed` task whose artifact is the echo) beside
//!    the same request through `POST /api/v1/agents/echo/run`. Goal: the A2A p50 at most
//!    [`LIMIT_MS`] above the run's.
//! 2. Outbound: on `a`, `boss` asks `helper` on `b` through `[[delegation.remote]]` (the card
//!    fetched, the message streamed over TCP, a worker on each server) beside `local-boss` asking
//!    `helper` on `a` itself (two workers on one server). Both are checked to answer
//!    `tool said: echo: ...`. No goal; the difference is printed with where it goes.
//!
//! The binaries are `caxton` and `caxton-worker` beside this bench in `target/release`; run
//! `cargo build --release --workspace --bins` first to measure the current sources (a missing
//! one is built, a stale one reported). The process always exits 0 after printing its verdicts.

use std::path::Path;
use std::time::Instant;

use caxton_test_kit::api_client::{call, deploy_agent, free_port, run_agent};
use caxton_test_kit::stats::{Samples, ms};
use caxton_test_kit::table::{Table, verdict};
use caxton_test_kit::{Binaries, Daemon, FakeLlm, ask, echo_agent};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

/// Rounds before the measured ones (page cache, the allocator, the card's first fetch).
const WARMUP_ROUNDS: usize = 10;
/// Measured rounds of each figure; with 200, p99 is the 2nd-worst sample.
const ROUNDS: usize = 200;
/// Figure 1's goal: `message/send` p50 at most this many milliseconds above the run's.
const LIMIT_MS: f64 = 0.5;
/// `b`'s API token.
const TOKEN: &str = "bench-token-of-sufficient-length";

/// A daemon of the bench's binaries with `llm` as its provider and `extra` config.
fn daemon(
    bins: &Binaries,
    llm: &FakeLlm,
    prefix: &str,
    extra: &str,
    env: &[(String, String)],
) -> Daemon {
    Daemon::for_bench_configured(bins, llm, prefix, "max_concurrent = 8\n", extra, env)
}

fn main() -> anyhow::Result<()> {
    let (bins, runtime, llm) = caxton_test_kit::bench_start("a2a")?;

    let port_b = free_port();
    let mut b = daemon(
        bins,
        &llm,
        "caxton-a2a-b-",
        &format!("[api]\ntcp_listen = \"127.0.0.1:{port_b}\"\ntoken_env = \"OWN_TOKEN\"\n"),
        &[("OWN_TOKEN".into(), TOKEN.into())],
    );
    deploy_agent(&b.env.socket, "helper", &echo_agent("helper", ""));
    let mut a = daemon(
        bins,
        &llm,
        "caxton-a2a-a-",
        "",
        &[("B_TOKEN".into(), TOKEN.into())],
    );
    let socket = a.env.socket.clone();
    deploy_agent(&socket, "echo", &echo_agent("echo", ""));
    deploy_agent(&socket, "helper", &echo_agent("helper", ""));
    deploy_agent(
        &socket,
        "boss",
        &echo_agent(
            "boss",
            &format!(
                "[delegation]\n[[delegation.remote]]\nname = \"far-helper\"\n\
                 card = \"http://127.0.0.1:{port_b}/a2a/helper/.well-known/agent-card.json\"\n\
                 token_env = \"B_TOKEN\"\n"
            ),
        ),
    );
    deploy_agent(
        &socket,
        "local-boss",
        &echo_agent("local-boss", "[delegation]\nagents = [\"helper\"]\n"),
    );

    println!(
        "\n[1] {ROUNDS} rounds (after {WARMUP_ROUNDS} warm-up) of message/send and the same run ..."
    );
    let (mut a2a, mut plain) = (Vec::new(), Vec::new());
    for round in 0..WARMUP_ROUNDS + ROUNDS {
        for k in 0..2 {
            let request = format!("hi {round}");
            let t = Instant::now();
            if (round + k) % 2 == 0 {
                runtime.block_on(send(&socket, &request))?;
                if round >= WARMUP_ROUNDS {
                    a2a.push(ms(t.elapsed()));
                }
            } else {
                let report = runtime
                    .block_on(run_agent(&socket, "echo", &request))
                    .map_err(anyhow::Error::msg)?;
                anyhow::ensure!(
                    report["answer"] == format!("echo: {request}").as_str(),
                    "{report}"
                );
                if round >= WARMUP_ROUNDS {
                    plain.push(ms(t.elapsed()));
                }
            }
        }
    }

    println!(
        "[2] {ROUNDS} rounds (after {WARMUP_ROUNDS} warm-up) of a delegation to b and one on a ..."
    );
    let (mut remote, mut local) = (Vec::new(), Vec::new());
    let mut remote_calls = Vec::new();
    for round in 0..WARMUP_ROUNDS + ROUNDS {
        for k in 0..2 {
            let far = (round + k) % 2 == 0;
            let (agent, target) = if far {
                ("boss", "far-helper")
            } else {
                ("local-boss", "helper")
            };
            let t = Instant::now();
            let report = runtime.block_on(delegate(&socket, agent, target, round))?;
            let wall = ms(t.elapsed());
            if round < WARMUP_ROUNDS {
                continue;
            }
            if far {
                remote.push(wall);
                remote_calls.push(
                    report["tool_calls"][0]["duration_ms"]
                        .as_f64()
                        .unwrap_or(f64::NAN),
                );
            } else {
                local.push(wall);
            }
        }
    }

    let a2a = Samples::new(a2a);
    let plain = Samples::new(plain);
    let remote = Samples::new(remote);
    let local = Samples::new(local);
    let remote_calls = Samples::new(remote_calls);
    let overhead = a2a.pct(50.0) - plain.pct(50.0);
    let pct = |s: &Samples| format!("{:.2} / {:.2} ms", s.pct(50.0), s.pct(99.0));
    let mut table = Table::default();
    table.row(
        "message/send p50 / p99",
        pct(&a2a),
        format!("/api/v1/agents/echo/run {}", pct(&plain)),
        "info",
    );
    table.row(
        "message/send overhead at p50",
        format!("{overhead:+.2} ms"),
        format!("≤ {LIMIT_MS} ms"),
        verdict(overhead <= LIMIT_MS),
    );
    table.row(
        "delegation to an agent on b p50 / p99",
        pct(&remote),
        format!("delegation on a {}", pct(&local)),
        "info",
    );
    table.row(
        "remote / local delegation at p50",
        format!(
            "{:.2}× ({:+.2} ms)",
            remote.pct(50.0) / local.pct(50.0),
            remote.pct(50.0) - local.pct(50.0)
        ),
        "no goal",
        "info",
    );
    print!(
        "{}",
        table.render(&format!(
            "Caxton A2A benchmark ({ROUNDS} rounds of each figure)"
        ))
    );
    println!(
        "\n  ask_agent to b as the boss's worker timed it: {}",
        remote_calls.summary()
    );
    println!(
        "verdict: message/send {overhead:+.2} ms over the same run at p50, goal ≤ {LIMIT_MS} ms: {}",
        verdict(overhead <= LIMIT_MS)
    );
    a.stop();
    b.stop();
    Ok(())
}

/// `message/send` of `request` to `echo`, checked to be a completed task answering the echo.
async fn send(socket: &Path, request: &str) -> anyhow::Result<()> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {
        "kind": "message", "messageId": request, "role": "user",
        "parts": [{"kind": "text", "text": request}]}}});
    let (status, _, bytes) = call(socket, Method::POST, "/a2a/echo", &[], Some(&body))
        .await
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(status == StatusCode::OK, "message/send: HTTP {status}");
    let answer: Value = serde_json::from_slice(&bytes)?;
    let task = &answer["result"];
    anyhow::ensure!(
        task["status"]["state"] == "completed"
            && task["artifacts"][0]["parts"][0]["text"] == format!("echo: {request}").as_str(),
        "message/send answered {answer}"
    );
    Ok(())
}

/// `agent` asked to delegate this round's request to `target`; the report, checked to carry the
/// target's answer.
async fn delegate(socket: &Path, agent: &str, target: &str, round: usize) -> anyhow::Result<Value> {
    let inner = format!("hi {round}");
    let request = ask(target, &inner);
    let report = run_agent(socket, agent, &request)
        .await
        .map_err(anyhow::Error::msg)?;
    let expected = format!("tool said: echo: {inner}");
    anyhow::ensure!(
        report["answer"] == expected.as_str(),
        "{agent} answered {:?}, not {expected:?}: {report}",
        report["answer"]
    );
    Ok(report)
}
