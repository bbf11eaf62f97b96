//! `cargo bench --bench tracing`: what exporting OpenTelemetry traces costs a request and the
//! daemon's memory, against the real release binaries.
//!
//! The bench starts two `caxton serve` side by side with the same config and the same LLM server
//! that answers at once (on the bench's own runtime): one traced, started with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` naming a loopback OTLP/HTTP receiver in this bench (it accepts
//! `POST /v1/traces`, counts requests, bytes and spans, and answers 200 with an empty body), and
//! one untraced (no variable: tracing off). Each has an echo agent. The SDK's own defaults are
//! left alone (a 2,048-span queue, exported every 5 s or when 512 spans wait), as an operator
//! who only sets the endpoint gets them. Two figures, each beside the untraced daemon in the
//! same run:
//!
//! 1. `POST /api/v1/agents/echo/run` (a worker process and one model turn, as `caxton agent run`
//!    makes it: a fresh connection) timed on each daemon, alternating which goes first round by
//!    round so machine noise falls on both alike. Goal: the traced p50 at most 5% or 0.3 ms
//!    (whichever is larger) above the untraced p50.
//! 2. Each daemon's VmRSS after 100 runs and after 10,000 (with readings between, run 4 at a
//!    time on each daemon at once). Goal: the traced daemon grows at most [`ALLOWANCE_MB`] more
//!    than the untraced one; the export queue is bounded, so anything beyond it is a leak.
//!    The traced-minus-untraced growth is printed at every reading, so a reader sees whether it
//!    levels off.
//!
//! `CAXTON_TRACING_BENCH_RUNS=N` makes figure 2 a soak of N runs per daemon (at least 2,000):
//! readings after 100, then at N/k, 2N/k, ... N with k = N/2,500 kept between 4 and 20 (every
//! 5,000 runs for N = 100,000), and the same goal over the whole. Unset, N is 10,000 (readings
//! every 2,500). The runs go at some 200 a second on each daemon on 2 cores, so 100,000 take
//! about 8 minutes.
//!
//! Every answer is checked (the echo of its request, a trace id in the traced daemon's reports
//! and none in the other's), and the receiver's counts prove spans were exported while the
//! figures were taken.
//!
//! The binaries are `caxton` and `caxton-worker` beside this bench in `target/release`; run
//! `cargo build --release --workspace --bins` first to measure the current sources (a missing
//! one is built, a stale one reported). The process always exits 0 after printing its verdicts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use caxton_test_kit::Daemon;
use caxton_test_kit::api_client::{deploy_agent, run_agent};
use caxton_test_kit::procfs;
use caxton_test_kit::stats::{Samples, ms};
use caxton_test_kit::table::{Table, verdict};

/// Rounds of figure 1 before the measured ones (page cache, the allocator, the exporter's
/// connection).
const WARMUP_ROUNDS: usize = 20;
/// Measured rounds of figure 1; each times one run on each daemon. With 300, p99 is the
/// 3rd-worst sample.
const ROUNDS: usize = 300;
/// Figure 1's goal: the traced p50 at most this share above the untraced p50 ...
const LIMIT_SHARE: f64 = 0.05;
/// ... or this many milliseconds, whichever is larger.
const LIMIT_FLOOR_MS: f64 = 0.3;
/// Runs each daemon has made at figure 2's first reading, its baseline. Figure 1 is taken after
/// it, and its runs count.
const FIRST_CHECKPOINT: usize = 100;
/// Figure 2's runs per daemon, unless `CAXTON_TRACING_BENCH_RUNS` says otherwise.
const DEFAULT_RUNS: usize = 10_000;
/// Runs between the readings after the first, as near as an even split allows; there are at
/// least 4 such steps (readings enough to see a trend) and at most 20 (a table one can read).
const CHECKPOINT_SPACING: usize = 2_500;
const MIN_STEPS: usize = 4;
const MAX_STEPS: usize = 20;
/// The fewest runs a soak may ask for: the first step must reach past the first reading and
/// figure 1's runs.
const MIN_RUNS: usize = 2_000;
/// Runs in flight on each daemon during figure 2 (both daemons at once: 8 in all, the 2-core
/// machine kept busy without queueing in the daemons).
const CONCURRENCY: usize = 4;
/// The SDK's span queue (`OTEL_BSP_MAX_QUEUE_SIZE`'s default): what the traced daemon may hold
/// beyond the untraced one.
const QUEUE_SPANS: f64 = 2048.0;
/// What one queued span may cost in memory: its name, ids, times and a dozen attributes as owned
/// strings, with the allocator's rounding. Generous beside its protobuf on the wire (printed).
const SPAN_MEMORY_KB: f64 = 4.0;
/// Beyond the queue: the exporter thread's own allocator arena, the batch being encoded and
/// posted, and the HTTP client's buffers.
const EXPORTER_SLACK_MB: f64 = 8.0;
/// Figure 2's goal: the traced daemon's growth from the first reading to the last, minus the
/// untraced daemon's, at most the full queue plus the exporter's slack: 2,048 × 4 KB + 8 MB.
const ALLOWANCE_MB: f64 = QUEUE_SPANS * SPAN_MEMORY_KB / 1024.0 + EXPORTER_SLACK_MB;
/// How long figure 1 waits for the machine to go quiet (it is shared), and what counts as busy.
const QUIET_WAIT: Duration = Duration::from_secs(30);
const NOISY: f64 = 0.2;

/// The agent: the request as the whole prompt, so the fake LLM echoes it.
const ECHO_AGENT: &str =
    "name = \"echo\"\nversion = \"1\"\nuser_prompt_template = \"{{ request }}\"\n";

fn main() -> anyhow::Result<()> {
    let checkpoints = checkpoints()?;
    let (bins, runtime, llm) = caxton_test_kit::bench_start("tracing")?;
    let received = Arc::new(Received::default());
    let receiver = start_receiver(runtime.handle(), received.clone())?;
    let endpoint = format!("http://{receiver}");
    println!("OTLP receiver: {endpoint}/v1/traces");

    let max_concurrent = 2 * CONCURRENCY;
    let mut traced = Daemon::for_bench_with_env(
        bins,
        &llm,
        "caxton-tracing-on-",
        max_concurrent,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.clone())],
    );
    let mut untraced = Daemon::for_bench(bins, &llm, "caxton-tracing-off-", max_concurrent);
    let on = Side {
        socket: traced.env.socket.clone(),
        traced: true,
    };
    let off = Side {
        socket: untraced.env.socket.clone(),
        traced: false,
    };
    deploy_agent(&on.socket, "echo", ECHO_AGENT);
    deploy_agent(&off.socket, "echo", ECHO_AGENT);
    let (on_pid, off_pid) = (traced.pid() as u32, untraced.pid() as u32);

    let mut done = 0;
    let mut readings: Vec<Reading> = Vec::new();
    let started = Instant::now();
    println!(
        "\n[2] {} runs on each daemon, {CONCURRENCY} at a time ...",
        checkpoints[0]
    );
    runtime.block_on(run_both(&on, &off, done, checkpoints[0]))?;
    done = checkpoints[0];
    readings.push(Reading::take(done, on_pid, off_pid, &received));

    println!(
        "[1] {ROUNDS} rounds (after {WARMUP_ROUNDS} warm-up) of a run on each daemon, alternating ..."
    );
    let quiet = procfs::wait_for_quiet(QUIET_WAIT, NOISY);
    if !quiet.quiet {
        println!(
            "    (the machine stayed {:.0}% busy for {} s; measuring anyway)",
            quiet.share * 100.0,
            QUIET_WAIT.as_secs()
        );
    }
    let exported_before = received.snapshot();
    let (mut on_ms, mut off_ms) = (Vec::new(), Vec::new());
    for round in 0..WARMUP_ROUNDS + ROUNDS {
        for k in 0..2 {
            // Alternate which goes first, so machine noise falls on both alike.
            let side = if (round + k) % 2 == 0 { &on } else { &off };
            let request = format!("hi {}", done + round);
            let t = Instant::now();
            let report = runtime.block_on(run_agent(&side.socket, "echo", &request));
            let wall = ms(t.elapsed());
            side.check(&request, report)?;
            if round >= WARMUP_ROUNDS {
                if side.traced {
                    on_ms.push(wall);
                } else {
                    off_ms.push(wall);
                }
            }
        }
    }
    let exported_during = received.snapshot().minus(&exported_before);
    done += WARMUP_ROUNDS + ROUNDS;

    println!(
        "[2] on to {} runs on each daemon ...",
        checkpoints[checkpoints.len() - 1]
    );
    for &checkpoint in &checkpoints[1..] {
        runtime.block_on(run_both(&on, &off, done, checkpoint))?;
        done = checkpoint;
        let reading = Reading::take(done, on_pid, off_pid, &received);
        println!(
            "    {done:>6} runs: VmRSS traced {:.1} MB, untraced {:.1} MB, growth traced beyond \
             untraced {:+.1} MB ({:.0} s so far)",
            reading.on_mb,
            reading.off_mb,
            reading.excess_over(&readings[0]),
            started.elapsed().as_secs_f64()
        );
        readings.push(reading);
    }

    // Stopping the traced daemon exports what its queue still holds, so the receiver's final
    // count is every span it made, or shows the ones it dropped.
    let stopped = Instant::now();
    traced.stop();
    let stop_ms = ms(stopped.elapsed());
    untraced.stop();
    let total = received.snapshot();

    let on_s = Samples::new(on_ms);
    let off_s = Samples::new(off_ms);
    let diff = on_s.pct(50.0) - off_s.pct(50.0);
    let bound = (LIMIT_SHARE * off_s.pct(50.0)).max(LIMIT_FLOOR_MS);
    let first = &readings[0];
    let last = &readings[readings.len() - 1];
    let mid = &readings[readings.len() / 2];
    let on_growth = last.on_mb - first.on_mb;
    let off_growth = last.off_mb - first.off_mb;
    let excess = on_growth - off_growth;
    let late_excess = (last.on_mb - mid.on_mb) - (last.off_mb - mid.off_mb);
    let late_spans = last.exported.spans.saturating_sub(mid.exported.spans);
    let runs_total = done as f64;
    let span_bytes = if total.spans > 0 {
        total.bytes as f64 / total.spans as f64
    } else {
        f64::NAN
    };

    let pct = |s: &Samples| format!("{:.2} / {:.2} ms", s.pct(50.0), s.pct(99.0));
    let mut table = Table::default();
    table.row(
        "agent run p50 / p99, tracing on (exporting)",
        pct(&on_s),
        format!("tracing off {}", pct(&off_s)),
        "info",
    );
    table.row(
        "agent run p50, on - off",
        format!("{diff:+.2} ms ({:+.1}%)", 100.0 * diff / off_s.pct(50.0)),
        format!(
            "≤ {bound:.2} ms (max of {:.0}% of off p50, {LIMIT_FLOOR_MS} ms)",
            LIMIT_SHARE * 100.0
        ),
        verdict(diff <= bound),
    );
    table.row(
        "agent run p99, on - off",
        format!("{:+.2} ms", on_s.pct(99.0) - off_s.pct(99.0)),
        "no goal",
        "info",
    );
    table.row(
        format!(
            "VmRSS after {} / {} runs, tracing on",
            first.runs, last.runs
        ),
        format!("{:.1} / {:.1} MB", first.on_mb, last.on_mb),
        format!("growth {on_growth:+.1} MB"),
        "info",
    );
    table.row(
        format!(
            "VmRSS after {} / {} runs, tracing off",
            first.runs, last.runs
        ),
        format!("{:.1} / {:.1} MB", first.off_mb, last.off_mb),
        format!("growth {off_growth:+.1} MB"),
        "info",
    );
    table.row(
        "growth with tracing beyond growth without",
        format!("{excess:+.1} MB"),
        format!(
            "≤ {ALLOWANCE_MB:.0} MB ({QUEUE_SPANS:.0}-span queue × {SPAN_MEMORY_KB:.0} KB + {EXPORTER_SLACK_MB:.0} MB)"
        ),
        verdict(excess <= ALLOWANCE_MB),
    );
    table.row(
        format!("the same from {} to {} runs", mid.runs, last.runs),
        format!("{late_excess:+.1} MB"),
        format!(
            "over {late_spans} spans exported meanwhile: {:.0} bytes a span",
            late_excess * 1024.0 * 1024.0 / late_spans as f64
        ),
        "info",
    );
    print!(
        "{}",
        table.render(&format!(
            "Caxton tracing benchmark ({ROUNDS} rounds of figure 1, {} runs per daemon for figure 2)",
            last.runs
        ))
    );

    println!("\nfigure 1, client wall time of POST /api/v1/agents/echo/run (ms):");
    println!("  tracing on   {}", on_s.summary());
    println!("  tracing off  {}", off_s.summary());
    println!(
        "  during the timed series the receiver got {} export requests, {} spans, {} KB",
        exported_during.requests,
        exported_during.spans,
        exported_during.bytes / 1024
    );
    // The excess is the traced daemon's growth since the first reading minus the untraced one's;
    // its step is the change in the excess since the reading before, per span exported
    // meanwhile: near 0 once the queue is full, a steady positive figure if spans leak. The
    // anonymous share of VmRSS (heap, stacks) leaves out the binary's and libraries' pages.
    println!("\nfigure 2, memory of each daemon (MB) as the runs add up:");
    println!(
        "  {:>7}  {:>8}  {:>8}  {:>8}  {:>12}  {:>8}  {:>8}  {:>14}",
        "runs", "on", "off", "excess", "step B/span", "on anon", "off anon", "spans exported"
    );
    for (i, r) in readings.iter().enumerate() {
        let step = match i.checked_sub(1).map(|p| &readings[p]) {
            Some(prev) if r.exported.spans > prev.exported.spans => format!(
                "{:+.1}",
                (r.excess_over(first) - prev.excess_over(first)) * 1024.0 * 1024.0
                    / (r.exported.spans - prev.exported.spans) as f64
            ),
            _ => "-".into(),
        };
        println!(
            "  {:>7}  {:>8.1}  {:>8.1}  {:>+8.1}  {:>12}  {:>8.1}  {:>8.1}  {:>14}",
            r.runs,
            r.on_mb,
            r.off_mb,
            r.excess_over(first),
            step,
            r.on_anon_mb,
            r.off_anon_mb,
            r.exported.spans
        );
    }
    // The set-up's API requests (the health check, the deploy) add a few spans to the runs'.
    println!(
        "\nthe receiver, in all: {} export requests, {} spans, {:.1} MB ({span_bytes:.0} bytes a span on the wire), \
         {:.3} spans a run over {done} runs (whole, but for the set-up's few, if none was dropped){}; \
         the traced daemon stopped in {stop_ms:.0} ms",
        total.requests,
        total.spans,
        total.bytes as f64 / (1024.0 * 1024.0),
        total.spans as f64 / runs_total,
        if total.undecoded > 0 {
            format!(" ({} requests not counted: compressed)", total.undecoded)
        } else {
            String::new()
        }
    );
    println!(
        "verdict: tracing adds {diff:+.2} ms to the agent run p50 ({:.2} ms off), limit {bound:.2} ms: {}",
        off_s.pct(50.0),
        verdict(diff <= bound)
    );
    println!(
        "verdict: with tracing the daemon grew {excess:+.1} MB more than without over {} runs, limit {ALLOWANCE_MB:.0} MB: {}",
        last.runs - first.runs,
        verdict(excess <= ALLOWANCE_MB)
    );
    Ok(())
}

/// Figure 2's readings: after [`FIRST_CHECKPOINT`] runs, then evenly spaced up to the total
/// (`CAXTON_TRACING_BENCH_RUNS`, else [`DEFAULT_RUNS`]).
fn checkpoints() -> anyhow::Result<Vec<usize>> {
    let total = match std::env::var("CAXTON_TRACING_BENCH_RUNS") {
        Ok(v) => v
            .trim()
            .replace(['_', ','], "")
            .parse::<usize>()
            .map_err(|e| {
                anyhow::anyhow!("CAXTON_TRACING_BENCH_RUNS={v:?} is not a number of runs: {e}")
            })?,
        Err(std::env::VarError::NotPresent) => DEFAULT_RUNS,
        Err(e) => anyhow::bail!("CAXTON_TRACING_BENCH_RUNS: {e}"),
    };
    anyhow::ensure!(
        total >= MIN_RUNS,
        "CAXTON_TRACING_BENCH_RUNS={total}: at least {MIN_RUNS} runs, so that figure 2 has \
         readings after figure 1's {} runs",
        FIRST_CHECKPOINT + WARMUP_ROUNDS + ROUNDS
    );
    let steps = (total / CHECKPOINT_SPACING).clamp(MIN_STEPS, MAX_STEPS);
    let mut points = vec![FIRST_CHECKPOINT];
    points.extend((1..=steps).map(|i| total * i / steps));
    Ok(points)
}

/// One daemon as the bench drives it.
struct Side {
    socket: PathBuf,
    /// Whether its reports must carry a trace id.
    traced: bool,
}

impl Side {
    /// `Err` unless the run answered the echo of `request`, with a trace id exactly when traced.
    fn check(
        &self,
        request: &str,
        report: Result<serde_json::Value, String>,
    ) -> anyhow::Result<()> {
        let report = report.map_err(anyhow::Error::msg)?;
        let expected = format!("echo: {request}");
        anyhow::ensure!(
            report["answer"] == expected.as_str(),
            "answered {:?}, not {expected:?}: {report}",
            report["answer"]
        );
        let has_trace = report["trace_id"].as_str().is_some_and(|t| t.len() == 32);
        anyhow::ensure!(
            has_trace == self.traced,
            "the {} daemon's report {} a trace id: {report}",
            if self.traced { "traced" } else { "untraced" },
            if has_trace { "carries" } else { "lacks" }
        );
        Ok(())
    }

    /// Runs `from..to` (their numbers make the requests distinct), `CONCURRENCY` at a time.
    async fn run_range(&self, from: usize, to: usize) -> anyhow::Result<()> {
        let mut lanes = Vec::new();
        for lane in 0..CONCURRENCY {
            let socket = self.socket.clone();
            let traced = self.traced;
            lanes.push(tokio::spawn(async move {
                let side = Side { socket, traced };
                for n in (from + lane..to).step_by(CONCURRENCY) {
                    let request = format!("run {n}");
                    let report = run_agent(&side.socket, "echo", &request).await;
                    side.check(&request, report)?;
                }
                anyhow::Ok(())
            }));
        }
        for lane in lanes {
            lane.await??;
        }
        Ok(())
    }
}

/// Runs `from..to` on both daemons at once.
async fn run_both(on: &Side, off: &Side, from: usize, to: usize) -> anyhow::Result<()> {
    let (a, b) = tokio::join!(on.run_range(from, to), off.run_range(from, to));
    a.and(b)
}

/// Both daemons' VmRSS once each has made `runs` runs.
struct Reading {
    runs: usize,
    on_mb: f64,
    off_mb: f64,
    /// RssAnon: the part of VmRSS that is the process's own (heap, stacks), not file pages.
    on_anon_mb: f64,
    off_anon_mb: f64,
    exported: Counts,
}

impl Reading {
    fn take(runs: usize, on_pid: u32, off_pid: u32, received: &Received) -> Self {
        // A moment for the last workers to be reaped and their records written, alike on both.
        std::thread::sleep(Duration::from_millis(300));
        Self {
            runs,
            on_mb: procfs::status_mb(on_pid, "VmRSS:"),
            off_mb: procfs::status_mb(off_pid, "VmRSS:"),
            on_anon_mb: procfs::status_mb(on_pid, "RssAnon:"),
            off_anon_mb: procfs::status_mb(off_pid, "RssAnon:"),
            exported: received.snapshot(),
        }
    }

    /// The traced daemon's VmRSS growth since `first` minus the untraced one's (MB).
    fn excess_over(&self, first: &Reading) -> f64 {
        (self.on_mb - first.on_mb) - (self.off_mb - first.off_mb)
    }
}

/// What the receiver has been sent.
#[derive(Default)]
struct Received {
    requests: AtomicU64,
    bytes: AtomicU64,
    spans: AtomicU64,
    /// Requests whose spans were not counted (a compressed body).
    undecoded: AtomicU64,
}

#[derive(Clone, Copy, Default)]
struct Counts {
    requests: u64,
    bytes: u64,
    spans: u64,
    undecoded: u64,
}

impl Counts {
    fn minus(&self, earlier: &Counts) -> Counts {
        Counts {
            requests: self.requests - earlier.requests,
            bytes: self.bytes - earlier.bytes,
            spans: self.spans - earlier.spans,
            undecoded: self.undecoded - earlier.undecoded,
        }
    }
}

impl Received {
    fn snapshot(&self) -> Counts {
        Counts {
            requests: self.requests.load(Ordering::SeqCst),
            bytes: self.bytes.load(Ordering::SeqCst),
            spans: self.spans.load(Ordering::SeqCst),
            undecoded: self.undecoded.load(Ordering::SeqCst),
        }
    }
}

/// The loopback OTLP/HTTP receiver on `runtime`: `POST /v1/traces` counted and answered 200
/// with an empty body (an empty `ExportTraceServiceResponse`: everything accepted).
fn start_receiver(
    runtime: &tokio::runtime::Handle,
    received: Arc<Received>,
) -> anyhow::Result<SocketAddr> {
    use axum::http::{HeaderMap, StatusCode, header};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let _entered = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
                let received = received.clone();
                async move {
                    received.requests.fetch_add(1, Ordering::SeqCst);
                    received
                        .bytes
                        .fetch_add(body.len() as u64, Ordering::SeqCst);
                    match (
                        headers.contains_key(header::CONTENT_ENCODING),
                        count_spans(&body),
                    ) {
                        (false, Some(n)) => {
                            received.spans.fetch_add(n, Ordering::SeqCst);
                        }
                        _ => {
                            received.undecoded.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/x-protobuf")],
                    )
                }
            }),
        )
        // A batch of 512 spans can pass axum's default 2 MB limit.
        .layer(axum::extract::DefaultBodyLimit::disable());
    runtime.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("OTLP receiver stopped: {e}");
        }
    });
    Ok(addr)
}

/// The spans in an `ExportTraceServiceRequest`: `resource_spans` (field 1) hold `scope_spans`
/// (field 2), which hold `spans` (field 2). A walk over the protobuf's length-delimited fields,
/// nothing decoded; `None` if it is not well formed.
fn count_spans(request: &[u8]) -> Option<u64> {
    let mut n = 0;
    for resource_spans in fields(request, 1)? {
        for scope_spans in fields(resource_spans, 2)? {
            n += fields(scope_spans, 2)?.len() as u64;
        }
    }
    Some(n)
}

/// The length-delimited fields numbered `wanted` of a protobuf message, others skipped.
fn fields(mut message: &[u8], wanted: u64) -> Option<Vec<&[u8]>> {
    let mut found = Vec::new();
    while !message.is_empty() {
        let key = varint(&mut message)?;
        let skip = match key & 7 {
            0 => {
                varint(&mut message)?;
                0
            }
            1 => 8,
            2 => {
                let len = usize::try_from(varint(&mut message)?).ok()?;
                let value = message.get(..len)?;
                if key >> 3 == wanted {
                    found.push(value);
                }
                len
            }
            5 => 4,
            _ => return None,
        };
        message = message.get(skip..)?;
    }
    Some(found)
}

/// A protobuf varint from the front of `bytes`, which moves past it.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}
