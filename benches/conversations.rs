//! `cargo bench --bench conversations`: how long `caxton conversation show ID` takes for a
//! conversation of 1,000 stored messages, against the real release binaries.
//!
//! The bench starts `caxton serve` with an LLM server that answers at once, deploys an echo agent
//! and builds one conversation of 500 turns (1,000 messages: each request and its answer) through
//! the API, a few turns at a time, plus a conversation of one turn (2 messages). Then, in rounds
//! whose order rotates so machine noise falls on every series alike, it times:
//!
//! - the CLI `caxton conversation show ID` of the 1,000 messages, a whole process as a user runs
//!   it (output to `/dev/null`): the figure with the goal, p99 under 50 ms;
//! - `GET /api/v1/conversations/ID` of the same conversation over the socket: the server's share;
//! - the CLI `caxton status`: the fixed cost of a CLI process and one API round trip;
//! - the CLI show of the 2-message conversation: the same command with nothing to carry.
//!
//! The binaries are `caxton` and `caxton-worker` beside this bench in `target/release`; run
//! `cargo build --release --workspace --bins` first to measure the current sources (a missing
//! one is built, a stale one reported). The process always exits 0: a benchmark reports.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use caxton_test_kit::api_client::{call, deploy_agent};
use caxton_test_kit::stats::{Samples, ms};
use caxton_test_kit::table::{Table, verdict};
use caxton_test_kit::{Daemon, Env};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

/// Turns of the long conversation; each stores the request and its answer.
const TURNS: usize = 500;
/// Messages the long conversation must hold.
const MESSAGES: u64 = 2 * TURNS as u64;
/// Turns in flight at once while the conversation is built.
const BUILD_CONCURRENCY: usize = 4;
/// Rounds before the measured ones (page cache, the statement cache of each pooled connection).
const WARMUP_ROUNDS: usize = 5;
/// Measured rounds; each times all four series once. With 100, p99 is the 2nd-worst sample.
const ROUNDS: usize = 100;
/// The goal: the CLI show of 1,000 messages, p99.
const GOAL_P99_MS: f64 = 50.0;

/// The agent: the request as the whole prompt, so the fake LLM echoes it.
const ECHO_AGENT: &str =
    "name = \"echo\"\nversion = \"1\"\nuser_prompt_template = \"{{ request }}\"\n";

/// What one round times.
#[derive(Clone, Copy)]
enum Probe {
    CliShowLong,
    ApiShowLong,
    CliStatus,
    CliShowShort,
}

const PROBES: [Probe; 4] = [
    Probe::CliShowLong,
    Probe::ApiShowLong,
    Probe::CliStatus,
    Probe::CliShowShort,
];

fn main() -> anyhow::Result<()> {
    let (bins, runtime, llm) = caxton_test_kit::bench_start("conversations")?;
    let mut daemon = Daemon::for_bench(bins, &llm, "caxton-conversations-", 16);
    let socket = daemon.env.socket.clone();
    deploy_agent(&socket, "echo", ECHO_AGENT);

    println!("\n[1] building a conversation of {TURNS} turns, {BUILD_CONCURRENCY} at a time ...");
    let started = Instant::now();
    let long = runtime.block_on(build_conversation(&socket, TURNS))?;
    println!(
        "    {TURNS} turns in {:.1} s ({:.1} ms a turn)",
        started.elapsed().as_secs_f64(),
        ms(started.elapsed()) / TURNS as f64
    );
    let short = runtime.block_on(build_conversation(&socket, 1))?;

    let (long_bytes, long_count) = runtime.block_on(show_api(&socket, &long))?;
    let (_, short_count) = runtime.block_on(show_api(&socket, &short))?;
    anyhow::ensure!(
        long_count == MESSAGES,
        "the long conversation holds {long_count} messages, not {MESSAGES}"
    );
    anyhow::ensure!(
        short_count == 2,
        "the short conversation holds {short_count} messages, not 2"
    );
    let cli = Cli {
        caxton: &bins.caxton,
        env: &daemon.env,
    };
    let long_printed = cli.output(&["conversation", "show", &long])?.len();
    let long_json_printed = cli
        .output(&["conversation", "show", "--json", &long])?
        .len();

    println!(
        "[2] {ROUNDS} rounds (after {WARMUP_ROUNDS} warm-up) of CLI show, API show, CLI status, CLI show of 2 messages ..."
    );
    let mut series: [Vec<f64>; 4] = Default::default();
    for round in 0..WARMUP_ROUNDS + ROUNDS {
        for k in 0..PROBES.len() {
            // Rotate the order each round, so each series takes every place in a round in turn.
            let i = (round + k) % PROBES.len();
            let t = Instant::now();
            match PROBES[i] {
                Probe::CliShowLong => cli.discard(&["conversation", "show", &long])?,
                Probe::ApiShowLong => {
                    runtime.block_on(get_detail(&socket, &long))?;
                }
                Probe::CliStatus => cli.discard(&["status"])?,
                Probe::CliShowShort => cli.discard(&["conversation", "show", &short])?,
            }
            if round >= WARMUP_ROUNDS {
                series[i].push(ms(t.elapsed()));
            }
        }
    }
    let [cli_long, api_long, status, cli_short] = series.map(Samples::new);

    let mut table = Table::default();
    let pct = |s: &Samples| format!("{:.2} / {:.2} ms", s.pct(50.0), s.pct(99.0));
    table.row(
        format!("CLI conversation show, {MESSAGES} messages p50 / p99"),
        pct(&cli_long),
        format!("p99 < {GOAL_P99_MS:.0} ms"),
        verdict(cli_long.pct(99.0) < GOAL_P99_MS),
    );
    table.row(
        format!("GET /api/v1/conversations/ID, {MESSAGES} messages"),
        pct(&api_long),
        format!("the server's share; {} KB of JSON", long_bytes / 1024),
        "info",
    );
    table.row(
        "CLI status (a CLI process + one round trip)",
        pct(&status),
        format!(
            "show - status p50 = {:.2} ms",
            cli_long.pct(50.0) - status.pct(50.0)
        ),
        "info",
    );
    table.row(
        "CLI conversation show, 2 messages",
        pct(&cli_short),
        format!(
            "show {MESSAGES} - show 2 p50 = {:.2} ms",
            cli_long.pct(50.0) - cli_short.pct(50.0)
        ),
        "info",
    );
    print!(
        "{}",
        table.render(&format!(
            "Caxton conversations benchmark ({ROUNDS} rounds each)"
        ))
    );
    println!(
        "\ncontext: show of {MESSAGES} messages prints {} KB as text, {} KB with --json",
        long_printed / 1024,
        long_json_printed / 1024
    );
    for (name, s) in [
        ("CLI show 1000", &cli_long),
        ("API show 1000", &api_long),
        ("CLI status   ", &status),
        ("CLI show 2   ", &cli_short),
    ] {
        println!("  {name}  {}", s.summary());
    }
    println!(
        "verdict: CLI show of {MESSAGES} messages p99 {:.2} ms, goal < {GOAL_P99_MS:.0} ms: {}",
        cli_long.pct(99.0),
        verdict(cli_long.pct(99.0) < GOAL_P99_MS)
    );
    daemon.stop();
    Ok(())
}

/// The CLI run as a user runs it against the daemon.
struct Cli<'a> {
    caxton: &'a Path,
    env: &'a Env,
}

impl Cli<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.caxton);
        cmd.arg("--config")
            .arg(&self.env.config)
            .arg("--data-dir")
            .arg(self.env.data_dir())
            .arg("--socket")
            .arg(&self.env.socket)
            .args(args)
            .env_remove("CAXTON_SOCKET")
            .env_remove("CAXTON_CONFIG")
            .env_remove("CAXTON_DATA_DIR")
            .stdin(Stdio::null());
        cmd
    }

    /// Run it with its output thrown away; `Err` unless it succeeded.
    fn discard(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "caxton {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Run it and return what it printed.
    fn output(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let out = self.command(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "caxton {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out.stdout)
    }
}

/// One turn of `conversation` (a new one if `None`); the conversation's id from the report.
async fn turn(socket: &Path, conversation: Option<&str>, n: usize) -> anyhow::Result<String> {
    let mut body = json!({"request": format!("turn {n}: what comes next?")});
    if let Some(id) = conversation {
        body["conversation"] = json!(id);
    }
    let (status, _, bytes) = call(
        socket,
        Method::POST,
        "/api/v1/agents/echo/run",
        &[],
        Some(&body),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "turn {n}: HTTP {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    let report: Value = serde_json::from_slice(&bytes)?;
    anyhow::ensure!(
        report["outcome"]["kind"] == "succeeded",
        "turn {n} did not succeed: {report}"
    );
    report["conversation_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("turn {n}: the report names no conversation: {report}"))
}

/// A conversation of `turns` turns: the first opens it, the rest continue it, up to
/// `BUILD_CONCURRENCY` at once.
async fn build_conversation(socket: &Path, turns: usize) -> anyhow::Result<String> {
    let id = turn(socket, None, 0).await?;
    let mut next = 1;
    while next < turns {
        let batch: Vec<_> = (next..turns.min(next + BUILD_CONCURRENCY))
            .map(|n| {
                let (socket, id) = (socket.to_owned(), id.clone());
                tokio::spawn(async move { turn(&socket, Some(&id), n).await })
            })
            .collect();
        next += batch.len();
        for task in batch {
            task.await??;
        }
    }
    Ok(id)
}

/// `GET /api/v1/conversations/ID` on a fresh connection, as the CLI makes it; the body, unparsed
/// (what is timed is the daemon's answer, not this client's parse).
async fn get_detail(socket: &Path, id: &str) -> anyhow::Result<bytes::Bytes> {
    let path = format!("/api/v1/conversations/{id}");
    let (status, _, body) = call(socket, Method::GET, &path, &[], None)
        .await
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "GET {path}: HTTP {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(body)
}

/// The size of the conversation's detail and the message count it reports (checked against the
/// messages it lists).
async fn show_api(socket: &Path, id: &str) -> anyhow::Result<(usize, u64)> {
    let body = get_detail(socket, id).await?;
    let detail: Value = serde_json::from_slice(&body)?;
    let counted = detail["conversation"]["messages"].as_u64().unwrap_or(0);
    let listed = detail["messages"].as_array().map_or(0, Vec::len) as u64;
    anyhow::ensure!(
        counted == listed,
        "the conversation counts {counted} messages but lists {listed}"
    );
    Ok((body.len(), counted))
}
