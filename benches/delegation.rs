//! `cargo bench --bench delegation`: what delegation and broadcast cost, against the real release
//! binaries.
//!
//! The bench starts `caxton serve` with an LLM server that answers at once (on the bench's own
//! runtime) and times two figures, each beside what it is compared with in the same run:
//!
//! 1. a request with one delegation: `parent` (whose agent file has a `[delegation]` table) is
//!    asked `[call ask_agent {"agent":"child",...}]`, so its model calls `ask_agent` on its first
//!    turn and answers with the child's answer on its second, and the child's model answers at
//!    once: two workers, three model turns. Beside it, a plain run of one agent (one worker, one
//!    model turn), alternating round by round. Goal: delegated p50 and p99 each at most 2.5×
//!    the plain run's, so routing, guards and records add little beyond the second worker. The
//!    reports' own timings (the parent's and child's `duration_ms`, the `ask_agent` call as the
//!    parent saw it) say where the time goes.
//! 2. a broadcast to 16 agents sharing a capability
//!    (`POST /api/v1/capabilities/shared/run?strategy=broadcast`) beside 16 sequential runs of
//!    the same agents, one after the other, alternating. No goal; the speed-up is printed.
//!
//! Every answer is checked (the delegated one must be `tool said: echo: ...`, every broadcast
//! must hold 16 succeeded reports), so the bench cannot time a failure.
//!
//! The binaries are `caxton` and `caxton-worker` beside this bench in `target/release`; run
//! `cargo build --release --workspace --bins` first to measure the current sources (a missing
//! one is built, a stale one reported). The process always exits 0 after printing its verdicts.

use std::path::Path;
use std::time::Instant;

use caxton_test_kit::api_client::{call, deploy_agent, run_agent};
use caxton_test_kit::stats::{Samples, ms};
use caxton_test_kit::table::{Table, verdict};
use caxton_test_kit::{Daemon, ask, echo_agent};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

/// Rounds of figure 1 before the measured ones (page cache, pooled connections, the allocator).
const WARMUP_ROUNDS: usize = 5;
/// Measured rounds of figure 1; each times one delegated and one plain request. With 100, p99 is
/// the 2nd-worst sample rather than the worst.
const ROUNDS: usize = 100;
/// Rounds of figure 2 before the measured ones.
const BROADCAST_WARMUP: usize = 3;
/// Measured rounds of figure 2; each times one broadcast and 16 sequential runs. With 100, p99
/// is the 2nd-worst sample.
const BROADCAST_ROUNDS: usize = 100;
/// Agents sharing the broadcast capability.
const FANOUT: usize = 16;
/// The goal of figure 1: delegated at most this many times the plain run, at p50 and at p99.
const LIMIT_RATIO: f64 = 2.5;

/// The reports' own timings of one delegated request, milliseconds.
struct Breakdown {
    /// The parent's `duration_ms`.
    parent: f64,
    /// The parent worker's start-up (spawn to handshake).
    parent_startup: f64,
    /// The `ask_agent` call as the parent's worker timed it: the whole child round trip.
    ask_agent: f64,
    /// The child's `duration_ms`.
    child: f64,
    /// The child's start after the parent's.
    child_offset: f64,
}

fn main() -> anyhow::Result<()> {
    let (bins, runtime, llm) = caxton_test_kit::bench_start("delegation")?;
    // The broadcast needs FANOUT workers at once; the delegation two.
    let mut daemon = Daemon::for_bench(bins, &llm, "caxton-delegation-", 2 * FANOUT);
    let socket = daemon.env.socket.clone();
    deploy_agent(&socket, "child", &echo_agent("child", ""));
    deploy_agent(
        &socket,
        "parent",
        &echo_agent("parent", "\n[delegation]\nagents = [\"child\"]\n"),
    );
    deploy_agent(&socket, "plain", &echo_agent("plain", ""));
    let sharing: Vec<String> = (0..FANOUT).map(|i| format!("shared-{i:02}")).collect();
    for name in &sharing {
        deploy_agent(
            &socket,
            name,
            &echo_agent(name, "capabilities = [\"shared\"]\n"),
        );
    }

    println!(
        "\n[1] {ROUNDS} rounds (after {WARMUP_ROUNDS} warm-up) of a delegated request (parent asks child) and a plain run ..."
    );
    let (mut delegated, mut plain) = (Vec::new(), Vec::new());
    let (mut plain_duration, mut plain_startup) = (Vec::new(), Vec::new());
    let mut breakdowns = Vec::new();
    for round in 0..WARMUP_ROUNDS + ROUNDS {
        let measured = round >= WARMUP_ROUNDS;
        // Alternate which goes first, so machine noise falls on both alike.
        for k in 0..2 {
            if (round + k) % 2 == 0 {
                let t = Instant::now();
                let report = runtime.block_on(delegate(&socket, round))?;
                let wall = ms(t.elapsed());
                if measured {
                    delegated.push(wall);
                    breakdowns.push(runtime.block_on(breakdown(&socket, &report))?);
                }
            } else {
                let t = Instant::now();
                let report = runtime.block_on(plain_run(&socket, "plain", round))?;
                let wall = ms(t.elapsed());
                if measured {
                    plain.push(wall);
                    plain_duration.push(report["duration_ms"].as_f64().unwrap_or(f64::NAN));
                    plain_startup.push(report["startup_ms"].as_f64().unwrap_or(f64::NAN));
                }
            }
        }
    }

    println!(
        "[2] {BROADCAST_ROUNDS} rounds (after {BROADCAST_WARMUP} warm-up) of a broadcast to {FANOUT} agents and {FANOUT} sequential runs ..."
    );
    let (mut broadcast, mut sequential) = (Vec::new(), Vec::new());
    for round in 0..BROADCAST_WARMUP + BROADCAST_ROUNDS {
        let measured = round >= BROADCAST_WARMUP;
        for k in 0..2 {
            let t = Instant::now();
            if (round + k) % 2 == 0 {
                runtime.block_on(broadcast_run(&socket, round))?;
                if measured {
                    broadcast.push(ms(t.elapsed()));
                }
            } else {
                for name in &sharing {
                    runtime.block_on(plain_run(&socket, name, round))?;
                }
                if measured {
                    sequential.push(ms(t.elapsed()));
                }
            }
        }
    }

    let delegated = Samples::new(delegated);
    let plain = Samples::new(plain);
    let broadcast = Samples::new(broadcast);
    let sequential = Samples::new(sequential);
    let column = |f: fn(&Breakdown) -> f64| Samples::new(breakdowns.iter().map(f).collect());
    let parent = column(|b| b.parent);
    let parent_startup = column(|b| b.parent_startup);
    let ask = column(|b| b.ask_agent);
    let child = column(|b| b.child);
    let child_offset = column(|b| b.child_offset);
    let ask_overhead = column(|b| b.ask_agent - b.child);
    let plain_duration = Samples::new(plain_duration);
    let plain_startup = Samples::new(plain_startup);

    let ratio50 = delegated.pct(50.0) / plain.pct(50.0);
    let ratio99 = delegated.pct(99.0) / plain.pct(99.0);
    let speedup50 = sequential.pct(50.0) / broadcast.pct(50.0);
    let speedup99 = sequential.pct(99.0) / broadcast.pct(99.0);
    let pct = |s: &Samples| format!("{:.2} / {:.2} ms", s.pct(50.0), s.pct(99.0));

    let mut table = Table::default();
    table.row(
        "delegated request p50 / p99 (2 workers, 3 model turns)",
        pct(&delegated),
        format!("plain run {}", pct(&plain)),
        "info",
    );
    table.row(
        "delegated / plain at p50",
        format!("{ratio50:.2}×"),
        format!("≤ {LIMIT_RATIO}×"),
        verdict(ratio50 <= LIMIT_RATIO),
    );
    table.row(
        "delegated / plain at p99",
        format!("{ratio99:.2}×"),
        format!("≤ {LIMIT_RATIO}×"),
        verdict(ratio99 <= LIMIT_RATIO),
    );
    table.row(
        format!("broadcast to {FANOUT} agents p50 / p99"),
        pct(&broadcast),
        format!("{FANOUT} sequential runs {}", pct(&sequential)),
        "info",
    );
    table.row(
        "broadcast speed-up over sequential, p50 / p99",
        format!("{speedup50:.2}× / {speedup99:.2}×"),
        "> 1× is faster",
        "info",
    );
    print!(
        "{}",
        table.render(&format!(
            "Caxton delegation benchmark ({ROUNDS} rounds of figure 1, {BROADCAST_ROUNDS} of figure 2)"
        ))
    );

    println!("\nwhere a delegated request's time goes (the reports' own timings, ms):");
    for (name, s) in [
        ("client wall, delegated        ", &delegated),
        ("parent duration_ms            ", &parent),
        ("parent startup_ms             ", &parent_startup),
        ("ask_agent call in the parent  ", &ask),
        ("child duration_ms             ", &child),
        ("ask_agent - child duration    ", &ask_overhead),
        ("child start - parent start    ", &child_offset),
        ("client wall, plain            ", &plain),
        ("plain duration_ms             ", &plain_duration),
        ("plain startup_ms              ", &plain_startup),
        ("broadcast wall                ", &broadcast),
        ("sequential wall               ", &sequential),
    ] {
        println!("  {name}  {}", s.summary());
    }
    println!(
        "  p50: delegated wall - plain wall = {:.2} ms; parent duration - ask_agent = {:.2} ms \
         (the parent's own worker, two model turns); wall - parent duration = {:.2} ms \
         (plain: {:.2} ms)",
        delegated.pct(50.0) - plain.pct(50.0),
        parent.pct(50.0) - ask.pct(50.0),
        delegated.pct(50.0) - parent.pct(50.0),
        plain.pct(50.0) - plain_duration.pct(50.0),
    );
    println!(
        "verdict: delegated / plain {ratio50:.2}× at p50, {ratio99:.2}× at p99, goal ≤ {LIMIT_RATIO}×: {}",
        verdict(ratio50 <= LIMIT_RATIO && ratio99 <= LIMIT_RATIO)
    );
    println!(
        "broadcast to {FANOUT}: {:.1} ms p50 against {:.1} ms for {FANOUT} sequential runs, {speedup50:.2}× {}",
        broadcast.pct(50.0),
        sequential.pct(50.0),
        if speedup50 > 1.0 {
            "faster"
        } else {
            "(not faster)"
        }
    );
    daemon.stop();
    Ok(())
}

/// One plain run of `agent`; the report, checked to be the echo of this round's request.
async fn plain_run(socket: &Path, agent: &str, round: usize) -> anyhow::Result<Value> {
    let request = format!("hi {round}");
    let report = run_agent(socket, agent, &request)
        .await
        .map_err(anyhow::Error::msg)?;
    let expected = format!("echo: {request}");
    anyhow::ensure!(
        report["answer"] == expected.as_str(),
        "{agent} answered {:?}, not {expected:?}: {report}",
        report["answer"]
    );
    Ok(report)
}

/// One request to `parent` that makes its model ask `child`; the report, checked to carry the
/// child's answer.
async fn delegate(socket: &Path, round: usize) -> anyhow::Result<Value> {
    let inner = format!("hi {round}");
    let request = ask("child", &inner);
    let report = run_agent(socket, "parent", &request)
        .await
        .map_err(anyhow::Error::msg)?;
    let expected = format!("tool said: echo: {inner}");
    anyhow::ensure!(
        report["answer"] == expected.as_str(),
        "the delegated request answered {:?}, not {expected:?}: {report}",
        report["answer"]
    );
    Ok(report)
}

/// The timings of a delegated request, from its report and its child's record (read after the
/// clock stopped).
async fn breakdown(socket: &Path, report: &Value) -> anyhow::Result<Breakdown> {
    let conversation = report["conversation_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the report names no conversation: {report}"))?;
    let shown = get(socket, &format!("/api/v1/conversations/{conversation}")).await?;
    let child_id = shown["executions"][0]["children"][0]["execution_id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the conversation shows no child: {shown}"))?;
    let child = get(socket, &format!("/api/v1/executions/{child_id}")).await?;
    anyhow::ensure!(
        child["parent_execution_id"] == report["execution_id"],
        "the child's parent is not the request: {child}"
    );
    let call = &report["tool_calls"][0];
    anyhow::ensure!(
        call["tool"] == "ask_agent" && call["outcome"] == "ok",
        "the parent's first tool call is not a successful ask_agent: {report}"
    );
    let number = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    Ok(Breakdown {
        parent: number(&report["duration_ms"]),
        parent_startup: number(&report["startup_ms"]),
        ask_agent: number(&call["duration_ms"]),
        child: number(&child["duration_ms"]),
        child_offset: (number(&child["started_at"]) - number(&report["started_at"])) * 1000.0,
    })
}

/// A broadcast of this round's request to every agent declaring `shared`, checked to hold one
/// succeeded report for each.
async fn broadcast_run(socket: &Path, round: usize) -> anyhow::Result<()> {
    let request = format!("hi {round}");
    let (status, _, bytes) = call(
        socket,
        Method::POST,
        "/api/v1/capabilities/shared/run?strategy=broadcast",
        &[],
        Some(&json!({ "request": request })),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "broadcast: HTTP {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    let answer: Value = serde_json::from_slice(&bytes)?;
    let reports = answer["answers"].as_array().map_or(&[][..], Vec::as_slice);
    let expected = format!("echo: {request}");
    let succeeded = reports
        .iter()
        .filter(|r| r["outcome"]["kind"] == "succeeded" && r["answer"] == expected.as_str())
        .count();
    anyhow::ensure!(
        reports.len() == FANOUT && succeeded == FANOUT,
        "broadcast: {succeeded} of {} reports succeeded, {FANOUT} expected: {answer}",
        reports.len()
    );
    Ok(())
}

/// A GET over the socket, as JSON; `Err` unless 200.
async fn get(socket: &Path, path: &str) -> anyhow::Result<Value> {
    let (status, _, body) = call(socket, Method::GET, path, &[], None)
        .await
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "GET {path}: HTTP {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(serde_json::from_slice(&body)?)
}
