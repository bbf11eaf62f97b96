//! `cargo bench --bench sandbox`: what the worker's confinement costs a request, against the real
//! release binaries.
//!
//! The bench starts two `caxton serve` side by side with the same config and the same LLM server
//! that answers at once (on the bench's own runtime), one with `[worker] sandbox = "strict"`
//! (every inherited fd closed, no_new_privs, Landlock, seccomp) and one with `"off"`, each with an
//! echo agent, and times `POST /api/v1/agents/echo/run` on each (a fresh connection, as
//! `caxton agent run` makes it), alternating which goes first round by round so machine noise
//! falls on both alike. Two figures, each beside the unconfined daemon in the same run:
//!
//! 1. the run's p50 as the client waits for it. Goal: strict at most [`LIMIT_MS`] above off.
//! 2. the worker's cold start, spawn to answered Hello (the report's `startup_ms`), which holds
//!    the confinement itself. Goal: the same.
//!
//! Every answer is checked to be the echo of its request, and the strict daemon's worker is
//! checked to report all four layers, so the bench cannot time an unconfined worker as strict.
//!
//! The binaries are `caxton` and `caxton-worker` beside this bench in `target/release`; run
//! `cargo build --release --workspace --bins` first to measure the current sources (a missing
//! one is built, a stale one reported). The process always exits 0 after printing its verdicts.

use std::path::Path;
use std::time::{Duration, Instant};

use caxton_test_kit::api_client::{deploy_agent, run_agent};
use caxton_test_kit::stats::{Samples, ms};
use caxton_test_kit::table::{Table, verdict};
use caxton_test_kit::{Binaries, Daemon, FakeLlm, echo_agent};

/// Rounds before the measured ones (page cache, the allocator).
const WARMUP_ROUNDS: usize = 20;
/// Measured rounds; each times one run on each daemon. With 300, p99 is the 3rd-worst sample.
const ROUNDS: usize = 300;
/// The goal of both figures: strict at most this many milliseconds above off at p50.
const LIMIT_MS: f64 = 0.3;

fn daemon(bins: &Binaries, llm: &FakeLlm, mode: &str) -> Daemon {
    Daemon::for_bench_configured(
        bins,
        llm,
        &format!("caxton-sandbox-{mode}-"),
        &format!("max_concurrent = 4\nsandbox = \"{mode}\"\n"),
        "",
        &[],
    )
}

fn main() -> anyhow::Result<()> {
    let (bins, runtime, llm) = caxton_test_kit::bench_start("sandbox")?;
    let mut strict = daemon(bins, &llm, "strict");
    let mut off = daemon(bins, &llm, "off");
    for d in [&strict, &off] {
        deploy_agent(&d.env.socket, "echo", &echo_agent("echo", ""));
    }
    check_layers(&strict.env.socket)?;

    println!(
        "\n{ROUNDS} rounds (after {WARMUP_ROUNDS} warm-up) of a run on each daemon, alternating ..."
    );
    let (mut strict_ms, mut off_ms) = (Vec::new(), Vec::new());
    let (mut strict_start, mut off_start) = (Vec::new(), Vec::new());
    for round in 0..WARMUP_ROUNDS + ROUNDS {
        for k in 0..2 {
            let confined = (round + k) % 2 == 0;
            let socket = if confined {
                &strict.env.socket
            } else {
                &off.env.socket
            };
            let request = format!("hi {round}");
            let t = Instant::now();
            let report = runtime
                .block_on(run_agent(socket, "echo", &request))
                .map_err(anyhow::Error::msg)?;
            let wall = ms(t.elapsed());
            anyhow::ensure!(
                report["answer"] == format!("echo: {request}").as_str(),
                "{report}"
            );
            if round < WARMUP_ROUNDS {
                continue;
            }
            let startup = report["startup_ms"].as_f64().unwrap_or(f64::NAN);
            if confined {
                strict_ms.push(wall);
                strict_start.push(startup);
            } else {
                off_ms.push(wall);
                off_start.push(startup);
            }
        }
    }
    let (strict_ms, off_ms) = (Samples::new(strict_ms), Samples::new(off_ms));
    let (strict_start, off_start) = (Samples::new(strict_start), Samples::new(off_start));
    let run_diff = strict_ms.pct(50.0) - off_ms.pct(50.0);
    let start_diff = strict_start.pct(50.0) - off_start.pct(50.0);
    let pct = |s: &Samples| format!("{:.2} / {:.2} ms", s.pct(50.0), s.pct(99.0));
    let mut table = Table::default();
    table.row(
        "agent run p50 / p99, strict",
        pct(&strict_ms),
        format!("off {}", pct(&off_ms)),
        "info",
    );
    table.row(
        "agent run, strict - off at p50",
        format!("{run_diff:+.3} ms"),
        format!("≤ {LIMIT_MS} ms"),
        verdict(run_diff <= LIMIT_MS),
    );
    table.row(
        "worker cold start p50 / p99, strict",
        pct(&strict_start),
        format!("off {}", pct(&off_start)),
        "info",
    );
    table.row(
        "worker cold start, strict - off at p50",
        format!("{start_diff:+.3} ms"),
        format!("≤ {LIMIT_MS} ms"),
        verdict(start_diff <= LIMIT_MS),
    );
    print!(
        "{}",
        table.render(&format!(
            "Caxton worker sandbox benchmark ({ROUNDS} rounds)"
        ))
    );
    println!(
        "verdict: strict costs {run_diff:+.3} ms a run and {start_diff:+.3} ms a cold start at p50, goal ≤ {LIMIT_MS} ms: {}",
        verdict(run_diff <= LIMIT_MS && start_diff <= LIMIT_MS)
    );
    strict.stop();
    off.stop();
    Ok(())
}

/// The strict daemon's worker must say it applied every layer: a hanging run is started, the
/// live worker's report read, and the run killed.
fn check_layers(socket: &Path) -> anyhow::Result<()> {
    let request = socket.to_owned();
    let hung = std::thread::spawn(move || {
        caxton_test_kit::http(
            &request,
            "POST",
            "/api/v1/agents/echo/run",
            Some(r#"{"request": "[hang]"}"#),
        )
    });
    let give_up = Instant::now() + Duration::from_secs(10);
    let sandbox = loop {
        let (_, workers) = caxton_test_kit::http(socket, "GET", "/api/v1/workers", None)?;
        if let Some(s) = workers["workers"][0]["sandbox"].as_str() {
            break s.to_owned();
        }
        anyhow::ensure!(
            Instant::now() < give_up,
            "no worker reported its sandbox: {workers}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (_, workers) = caxton_test_kit::http(socket, "GET", "/api/v1/workers", None)?;
    let pid = workers["workers"][0]["pid"].as_u64().unwrap_or(0);
    caxton_test_kit::http(
        socket,
        "POST",
        &format!("/api/v1/workers/{pid}/kill"),
        Some(r#"{"signal": "KILL"}"#),
    )?;
    let _ = hung.join();
    anyhow::ensure!(
        sandbox == "strict: fds no_new_privs landlock seccomp",
        "the strict worker reported {sandbox:?}"
    );
    println!("strict worker's sandbox: {sandbox}");
    Ok(())
}
