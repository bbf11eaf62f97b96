//! `cargo bench --bench spine`: the performance spine of Caxton, measured end to end against the
//! real release binaries and printed beside the limits it must meet.
//!
//! 1. Worker cold start (spawn to completed handshake, the `startup_ms` of each run report) versus
//!    spawn-to-exit of `/bin/true` from this process. Limit: worker p50 ≤ 3 × `/bin/true` p50.
//! 2. Client-side latency of one `agent run` through the daemon over its Unix socket, against an
//!    LLM server that answers instantly. Limit: p50 < 10 ms.
//! 3. Sustained runs per second with 16 concurrent clients versus `/bin/true` spawns per second
//!    from 16 concurrent threads, over the same window. Limit: ≥ 40 % of the `/bin/true` rate.
//! 4. Resident memory (VmRSS) of the idle supervisor with 100 agents deployed. Limit: < 40 MB.
//!
//! The benchmark builds nothing when the binaries exist: it uses `caxton` and `caxton-worker`
//! from the same target directory as itself (`target/release`), so run
//! `cargo build --release --workspace --bins` first to measure the current sources. If either
//! binary is missing it runs that build itself. Everything else (the fake LLM server, the config,
//! the data directory, the daemon: the test kit's, test-kit/) is set up here and torn down at the
//! end, also on panic. The process always exits 0: a benchmark reports, it does not gate.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use caxton_test_kit::api_client::{call, deploy_agent, fetch_metrics};
use caxton_test_kit::procfs::{clock_ticks_per_second, cpu_ticks, status_mb};
use caxton_test_kit::stats::Samples;
use caxton_test_kit::table::{Table, verdict};
use caxton_test_kit::{Binaries, Daemon, Env, FakeLlm};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

/// Sequential `/bin/true` spawns for the baseline percentiles.
const TRUE_SPAWNS: usize = 1000;
/// Runs before the measured series, so first-touch costs (page cache, connection pool to the
/// LLM server, SQLite file growth) do not land in the percentiles.
const WARMUP_RUNS: usize = 20;
/// Sequential measured runs; with 300 samples p99 is the 3rd-worst, not the single worst.
const SEQUENTIAL_RUNS: usize = 300;
/// Concurrent clients (and spawning threads for the baseline) in the throughput figure.
const CONCURRENCY: usize = 16;
/// Length of each throughput window.
const WINDOW: Duration = Duration::from_secs(5);
/// Agents deployed for the memory figure, `bench` included.
const AGENTS_FOR_MEMORY: usize = 100;
/// Time the daemon is left alone before its memory is read, so in-flight cleanup has finished.
const SETTLE: Duration = Duration::from_secs(2);

/// The limits, in one place so the table and the checks cannot disagree.
const STARTUP_FACTOR: f64 = 3.0;
const LATENCY_P50_LIMIT_MS: f64 = 10.0;
const THROUGHPUT_FRACTION: f64 = 0.40;
const RSS_LIMIT_MB: f64 = 40.0;

/// The agent every run goes to: no system prompt, the request as the whole user prompt.
const BENCH_AGENT: &str =
    "name = \"bench\"\nversion = \"1\"\nuser_prompt_template = \"{{ request }}\"\n";

fn main() {
    let bins = Binaries::for_bench("spine");
    println!("caxton:        {}", bins.caxton.display());
    println!("caxton-worker: {}", bins.worker.display());
    println!(
        "cpus: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    // The fake LLM server answers at once, so a run measures Caxton and not a model.
    let llm = FakeLlm::start_in(runtime.handle());
    let daemon = start_daemon(bins, &llm);
    let socket = daemon.env.socket.clone();
    deploy_agent(&socket, "bench", BENCH_AGENT);
    let rss_fresh_one = rss(&daemon);

    println!("\n[1] /bin/true spawn-to-exit, {TRUE_SPAWNS} sequential spawns ...");
    let true_seq = Samples::new(true_sequential(TRUE_SPAWNS));

    println!(
        "[1,2] {SEQUENTIAL_RUNS} sequential agent runs (after {WARMUP_RUNS} warm-up runs) ..."
    );
    let pid = daemon.child.id();
    let before = CpuSplit::now(pid);
    let series = runtime.block_on(sequential_runs(&socket, SEQUENTIAL_RUNS));
    let series_cpu = CpuSplit::now(pid).since(&before);

    println!(
        "[3] /bin/true spawns with {CONCURRENCY} threads for {} s ...",
        WINDOW.as_secs()
    );
    let before = CpuSplit::now(pid);
    let true_rate = true_concurrent(CONCURRENCY, WINDOW);
    let true_cpu = CpuSplit::now(pid).since(&before);

    println!(
        "[3] agent runs with {CONCURRENCY} clients for {} s ...",
        WINDOW.as_secs()
    );
    let before = CpuSplit::now(pid);
    let run_rate = runtime.block_on(sustained_runs(&socket, CONCURRENCY, WINDOW));
    let run_cpu = CpuSplit::now(pid).since(&before);

    println!("[4] deploying {} more agents ...", AGENTS_FOR_MEMORY - 1);
    for i in 0..AGENTS_FOR_MEMORY - 1 {
        let name = format!("bench-{i}");
        let source = BENCH_AGENT.replacen("\"bench\"", &format!("\"{name}\""), 1);
        deploy_agent(&socket, &name, &source);
    }
    std::thread::sleep(SETTLE);
    let rss_idle = rss(&daemon);
    let metrics = fetch_metrics(&socket);

    // A fresh daemon on the same data directory loads the 100 agents from disk and has served
    // nothing: the difference to `rss_idle` is what the workload left behind.
    let mut daemon = daemon.restart();
    std::thread::sleep(SETTLE);
    let rss_restarted = rss(&daemon);

    report(&Report {
        true_seq,
        series,
        true_rate,
        run_rate,
        cpu: [series_cpu, true_cpu, run_cpu],
        rss_fresh_one,
        rss_idle,
        rss_restarted,
        metrics,
    });
    daemon.stop();
}

/// `caxton serve` with the release worker and `llm` as its `fake` provider. `max_concurrent`
/// above the 16 clients so the throughput figure measures spawning, not the pool's queue.
fn start_daemon(bins: &Binaries, llm: &FakeLlm) -> Daemon {
    // A JSON string literal is also a valid TOML basic string, whatever the path.
    let worker = Value::from(bins.worker.to_string_lossy().into_owned()).to_string();
    let config = format!(
        "[worker]\npath = {worker}\nmax_concurrent = 64\n\n\
         [providers.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"m\"\n",
        llm.base_url()
    );
    // The daemon keeps this process's environment, as under a shell; it clears the workers'
    // environment itself. Its info-level log goes to a file: the terminal is for the table.
    Daemon::start_in(Env::with_config("caxton-spine-", &config), &[])
}

/// VmRSS of the daemon in MB; NaN if it cannot be read.
fn rss(daemon: &Daemon) -> f64 {
    status_mb(daemon.child.id(), "VmRSS:")
}

/// What one successful run reported, plus what the client saw.
struct RunTiming {
    client_ms: f64,
    startup_ms: f64,
    duration_ms: f64,
}

/// One `POST /api/v1/agents/bench/run`; `Err` unless the daemon answered 200 with an execution
/// that succeeded.
async fn run_once(socket: &Path) -> Result<RunTiming, String> {
    let body = json!({"request": "ping"});
    let started = Instant::now();
    let (status, _, bytes) = call(
        socket,
        Method::POST,
        "/api/v1/agents/bench/run",
        &[],
        Some(&body),
    )
    .await?;
    let client_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status != StatusCode::OK {
        return Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    let report: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("report is not JSON: {e}"))?;
    let field = |name: &str| {
        report
            .get(name)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("report has no numeric {name}: {report}"))
    };
    Ok(RunTiming {
        client_ms,
        startup_ms: field("startup_ms")?,
        duration_ms: field("duration_ms")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Measurements

/// Spawn-to-exit of `/bin/true`, sequentially: the cheapest a fresh process can be on this box.
fn true_sequential(n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let started = Instant::now();
            let status = Command::new("/bin/true")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("cannot spawn /bin/true");
            assert!(status.success(), "/bin/true failed: {status}");
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

/// Completions per second over a window.
struct Rate {
    done: u64,
    failed: u64,
    elapsed: Duration,
    first_error: Option<String>,
}

impl Rate {
    fn per_second(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }
}

/// `/bin/true` spawns from `threads` threads for `window`. Every started spawn is waited for and
/// the elapsed time runs until the last one ended, as for the daemon runs.
fn true_concurrent(threads: usize, window: Duration) -> Rate {
    let done = AtomicU64::new(0);
    let started = Instant::now();
    let end = started + window;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while Instant::now() < end {
                    let ok = Command::new("/bin/true")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success());
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    Rate {
        done: done.into_inner(),
        failed: 0,
        elapsed: started.elapsed(),
        first_error: None,
    }
}

/// The sequential series: warm-up, then `n` measured runs.
struct Series {
    client: Samples,
    startup: Samples,
    duration: Samples,
    failed: usize,
    first_error: Option<String>,
}

async fn sequential_runs(socket: &Path, n: usize) -> Series {
    for _ in 0..WARMUP_RUNS {
        if let Err(e) = run_once(socket).await {
            panic!("warm-up run failed: {e}");
        }
    }
    let (mut client, mut startup, mut duration) = (Vec::new(), Vec::new(), Vec::new());
    let mut failed = 0;
    let mut first_error = None;
    for _ in 0..n {
        match run_once(socket).await {
            Ok(t) => {
                client.push(t.client_ms);
                startup.push(t.startup_ms);
                duration.push(t.duration_ms);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    Series {
        client: Samples::new(client),
        startup: Samples::new(startup),
        duration: Samples::new(duration),
        failed,
        first_error,
    }
}

/// `clients` tasks, each running requests back to back until `window` has passed.
async fn sustained_runs(socket: &Path, clients: usize, window: Duration) -> Rate {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let end = started + window;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (socket, done, failed, first_error) = (
                socket.to_owned(),
                done.clone(),
                failed.clone(),
                first_error.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < end {
                    match run_once(&socket).await {
                        Ok(_) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(e);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let first_error = first_error.lock().ok().and_then(|mut s| s.take());
    Rate {
        done: done.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        elapsed,
        first_error,
    }
}

/// CPU time (user + system, ms) by who spent it, to show what dominates a figure. Workers are
/// reaped by the supervisor, so their CPU shows up in its children's counters; this process's
/// own counter covers the API clients and the fake LLM server, its children's the `/bin/true`s.
#[derive(Clone, Copy, Default)]
struct CpuSplit {
    supervisor: f64,
    workers: f64,
    bench: f64,
    bench_children: f64,
}

impl CpuSplit {
    fn now(daemon: u32) -> Self {
        let (supervisor, workers) = cpu_ms(daemon);
        let (bench, bench_children) = cpu_ms(std::process::id());
        Self {
            supervisor,
            workers,
            bench,
            bench_children,
        }
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            supervisor: self.supervisor - earlier.supervisor,
            workers: self.workers - earlier.workers,
            bench: self.bench - earlier.bench,
            bench_children: self.bench_children - earlier.bench_children,
        }
    }
}

/// (own, reaped children) CPU milliseconds of a process; zero if it cannot be read.
fn cpu_ms(pid: u32) -> (f64, f64) {
    let ms = 1000.0 / clock_ticks_per_second();
    cpu_ticks(pid).map_or((0.0, 0.0), |t| (t.own as f64 * ms, t.children as f64 * ms))
}

/// `NAME_sum / NAME_count` of a Prometheus histogram, in milliseconds.
fn histogram_mean_ms(metrics: &str, name: &str) -> Option<f64> {
    let value = |suffix: &str| {
        let key = format!("{name}{suffix} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let (sum, count) = (value("_sum")?, value("_count")?);
    (count > 0.0).then(|| sum / count * 1000.0)
}

// ---------------------------------------------------------------------------------------------
// The table

struct Report {
    true_seq: Samples,
    series: Series,
    true_rate: Rate,
    run_rate: Rate,
    /// CPU spent during the sequential series, the /bin/true window and the run window.
    cpu: [CpuSplit; 3],
    rss_fresh_one: f64,
    rss_idle: f64,
    rss_restarted: f64,
    metrics: String,
}

fn report(r: &Report) {
    let mut table = Table::default();
    let ms = |v: f64| format!("{v:.3} ms");

    let true_p50 = r.true_seq.pct(50.0);
    let startup_p50 = r.series.startup.pct(50.0);
    let startup_limit = STARTUP_FACTOR * true_p50;
    table.row(
        "1 worker cold start p50 (spawn→handshake)",
        ms(startup_p50),
        format!("≤ {STARTUP_FACTOR} × /bin/true p50 = {}", ms(startup_limit)),
        verdict(startup_p50 <= startup_limit),
    );
    table.row(
        "1 worker cold start p99",
        ms(r.series.startup.pct(99.0)),
        format!("/bin/true p99 = {}", ms(r.true_seq.pct(99.0))),
        "info",
    );
    table.row(
        format!("1 /bin/true spawn→exit p50 ({TRUE_SPAWNS} spawns)"),
        ms(true_p50),
        format!("ratio worker/true p50 = {:.2}×", startup_p50 / true_p50),
        "info",
    );

    let client_p50 = r.series.client.pct(50.0);
    table.row(
        format!("2 agent run latency p50 (client, {SEQUENTIAL_RUNS} runs)"),
        ms(client_p50),
        format!("< {LATENCY_P50_LIMIT_MS} ms"),
        verdict(client_p50 < LATENCY_P50_LIMIT_MS),
    );
    table.row(
        "2 agent run latency p99 (client)",
        ms(r.series.client.pct(99.0)),
        format!("failed runs: {}", r.series.failed),
        "info",
    );

    let true_rate = r.true_rate.per_second();
    let run_rate = r.run_rate.per_second();
    let rate_limit = THROUGHPUT_FRACTION * true_rate;
    table.row(
        format!(
            "3 sustained runs/s ({CONCURRENCY} clients, {} s)",
            WINDOW.as_secs()
        ),
        format!("{run_rate:.1}/s"),
        format!(
            "≥ {:.0}% of /bin/true = {rate_limit:.1}/s ({:.1}%)",
            THROUGHPUT_FRACTION * 100.0,
            100.0 * run_rate / true_rate
        ),
        verdict(r.run_rate.failed == 0 && run_rate >= rate_limit),
    );
    table.row(
        format!("3 /bin/true spawns/s ({CONCURRENCY} threads)"),
        format!("{true_rate:.1}/s"),
        format!(
            "runs ok {} / failed {} in {:.2} s",
            r.run_rate.done,
            r.run_rate.failed,
            r.run_rate.elapsed.as_secs_f64()
        ),
        "info",
    );

    table.row(
        format!("4 supervisor VmRSS idle, {AGENTS_FOR_MEMORY} agents, after load"),
        format!("{:.1} MB", r.rss_idle),
        format!("< {RSS_LIMIT_MB} MB"),
        verdict(r.rss_idle < RSS_LIMIT_MB),
    );
    table.row(
        format!("4 supervisor VmRSS idle, {AGENTS_FOR_MEMORY} agents, fresh restart"),
        format!("{:.1} MB", r.rss_restarted),
        format!("< {RSS_LIMIT_MB} MB"),
        verdict(r.rss_restarted < RSS_LIMIT_MB),
    );

    print!("{}", table.render("Caxton spine benchmark"));

    // Context for reading the figures: where a run's time goes, as the daemon itself reports it.
    println!("\ncontext (sequential series, ms):");
    println!(
        "  startup_ms   p50 {:>8.3}  p99 {:>8.3}  mean {:>8.3}",
        r.series.startup.pct(50.0),
        r.series.startup.pct(99.0),
        r.series.startup.mean()
    );
    println!(
        "  duration_ms  p50 {:>8.3}  p99 {:>8.3}  mean {:>8.3}   (spawn → worker reaped, server side)",
        r.series.duration.pct(50.0),
        r.series.duration.pct(99.0),
        r.series.duration.mean()
    );
    println!(
        "  client       p50 {:>8.3}  p99 {:>8.3}  mean {:>8.3}   (connect → full answer read)",
        r.series.client.pct(50.0),
        r.series.client.pct(99.0),
        r.series.client.mean()
    );
    println!(
        "  /bin/true    p50 {:>8.3}  p99 {:>8.3}  mean {:>8.3}",
        r.true_seq.pct(50.0),
        r.true_seq.pct(99.0),
        r.true_seq.mean()
    );
    if let Some(spawn) = histogram_mean_ms(&r.metrics, "caxton_worker_spawn_duration_seconds") {
        println!(
            "  mean worker spawn (fork+exec+pidfd+prlimit on the spawner thread, all runs): {spawn:.3}"
        );
    }
    if let Some(startup) = histogram_mean_ms(&r.metrics, "caxton_worker_startup_duration_seconds") {
        println!("  mean worker startup (all runs, incl. concurrent): {startup:.3}");
    }
    println!(
        "  supervisor VmRSS: {:.1} MB idle with 1 agent before any run, {:.1} MB with {AGENTS_FOR_MEMORY} agents after load, {:.1} MB fresh restart",
        r.rss_fresh_one, r.rss_idle, r.rss_restarted
    );
    let [series_cpu, true_cpu, run_cpu] = &r.cpu;
    let per = |cpu: &CpuSplit, n: f64| {
        format!(
            "supervisor {:.3}, workers {:.3}, bench clients+LLM server {:.3}, /bin/true children {:.3}",
            cpu.supervisor / n,
            cpu.workers / n,
            cpu.bench / n,
            cpu.bench_children / n
        )
    };
    let series_runs = (r.series.client.len().max(1)) as f64;
    println!(
        "  CPU ms per run, sequential series: {}",
        per(series_cpu, series_runs)
    );
    println!(
        "  CPU ms per run, {CONCURRENCY} clients: {}",
        per(run_cpu, r.run_rate.done.max(1) as f64)
    );
    println!(
        "  CPU ms per /bin/true, {CONCURRENCY} threads: {}",
        per(true_cpu, r.true_rate.done.max(1) as f64)
    );
    if let Some(e) = &r.series.first_error {
        println!("  first failed sequential run: {e}");
    }
    if let Some(e) = &r.run_rate.first_error {
        println!("  first failed concurrent run: {e}");
    }
}
