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
//! the data directory, the daemon) is set up here and torn down at the end, also on panic. The
//! process always exits 0: a benchmark reports, it does not gate.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
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

/// The chat-completions answer of the instant LLM server: the smallest body the OpenAI provider
/// accepts with usage filled in.
const COMPLETION: &str = r#"{"model":"m","choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;

/// The agent every run goes to: no system prompt, the request as the whole user prompt.
const BENCH_AGENT: &str =
    "name = \"bench\"\nversion = \"1\"\nuser_prompt_template = \"{{ request }}\"\n";

fn main() {
    let bins = locate_binaries();
    println!("caxton:        {}", bins.caxton.display());
    println!("caxton-worker: {}", bins.worker.display());
    warn_if_stale(&bins);
    println!(
        "cpus: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    let llm_port = runtime.block_on(start_llm_server());
    let daemon = runtime.block_on(Daemon::start(&bins, llm_port));
    let socket = daemon.socket.clone();
    runtime.block_on(deploy(&socket, "bench", BENCH_AGENT));
    let rss_fresh_one = daemon.rss();

    println!("\n[1] /bin/true spawn-to-exit, {TRUE_SPAWNS} sequential spawns ...");
    let true_seq = Samples::new(true_sequential(TRUE_SPAWNS));

    println!(
        "[1,2] {SEQUENTIAL_RUNS} sequential agent runs (after {WARMUP_RUNS} warm-up runs) ..."
    );
    let before = CpuSplit::now(daemon.pid());
    let series = runtime.block_on(sequential_runs(&socket, SEQUENTIAL_RUNS));
    let series_cpu = CpuSplit::now(daemon.pid()).since(&before);

    println!(
        "[3] /bin/true spawns with {CONCURRENCY} threads for {} s ...",
        WINDOW.as_secs()
    );
    let before = CpuSplit::now(daemon.pid());
    let true_rate = true_concurrent(CONCURRENCY, WINDOW);
    let true_cpu = CpuSplit::now(daemon.pid()).since(&before);

    println!(
        "[3] agent runs with {CONCURRENCY} clients for {} s ...",
        WINDOW.as_secs()
    );
    let before = CpuSplit::now(daemon.pid());
    let run_rate = runtime.block_on(sustained_runs(&socket, CONCURRENCY, WINDOW));
    let run_cpu = CpuSplit::now(daemon.pid()).since(&before);

    println!("[4] deploying {} more agents ...", AGENTS_FOR_MEMORY - 1);
    runtime.block_on(async {
        for i in 0..AGENTS_FOR_MEMORY - 1 {
            let name = format!("bench-{i}");
            let source = BENCH_AGENT.replacen("\"bench\"", &format!("\"{name}\""), 1);
            deploy(&socket, &name, &source).await;
        }
    });
    std::thread::sleep(SETTLE);
    let rss_idle = daemon.rss();
    let metrics = runtime.block_on(fetch_metrics(&socket));

    // A fresh daemon on the same data directory loads the 100 agents from disk and has served
    // nothing: the difference to `rss_idle` is what the workload left behind.
    let daemon = daemon.restart(&bins, llm_port, &runtime);
    std::thread::sleep(SETTLE);
    let rss_restarted = daemon.rss();

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
    drop(daemon);
}

// ---------------------------------------------------------------------------------------------
// Binaries

struct Binaries {
    caxton: PathBuf,
    worker: PathBuf,
}

/// `caxton` and `caxton-worker` beside this bench's own profile directory: the bench runs as
/// `target/release/deps/spine-<hash>`, the binaries live in `target/release/`.
fn locate_binaries() -> Binaries {
    let exe = std::env::current_exe().expect("cannot find the benchmark's own executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the benchmark executable is not inside a target/<profile>/deps directory")
        .to_owned();
    let bins = Binaries {
        caxton: dir.join("caxton"),
        worker: dir.join("caxton-worker"),
    };
    if bins.caxton.is_file() && bins.worker.is_file() {
        return bins;
    }
    // `cargo bench` builds the root package's `caxton` for us but never the worker, which lives
    // in another package; build both rather than measure a half-current pair.
    eprintln!(
        "release binaries missing in {}; running `cargo build --release --workspace --bins` \
         (run it yourself before `cargo bench --bench spine` to skip this)",
        dir.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--workspace", "--bins"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cannot run cargo; run `cargo build --release --workspace --bins` first");
    assert!(
        status.success(),
        "`cargo build --release --workspace --bins` failed"
    );
    assert!(
        bins.caxton.is_file() && bins.worker.is_file(),
        "{} or {} still missing after the build",
        bins.caxton.display(),
        bins.worker.display()
    );
    bins
}

/// Say so when a source is newer than the binary built from it: `cargo bench` rebuilds `caxton`
/// (a bin of the bench's own package) but never `caxton-worker`, so a stale worker would
/// otherwise be measured without a word.
fn warn_if_stale(bins: &Binaries) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let check = |binary: &Path, dirs: &[&str]| {
        let Some(built) = std::fs::metadata(binary).and_then(|m| m.modified()).ok() else {
            return;
        };
        let newest = dirs
            .iter()
            .filter_map(|d| newest_source(&root.join(d)))
            .max();
        if newest.is_some_and(|t| t > built) {
            println!(
                "warning: {} is older than sources under {}; run \
                 `cargo build --release --workspace --bins` to measure the current code",
                binary.display(),
                dirs.join(", ")
            );
        }
    };
    check(&bins.worker, &["worker", "ipc-protocol"]);
    check(&bins.caxton, &["src", "supervisor", "ipc-protocol"]);
}

/// Latest modification time of the `.rs` and `Cargo.toml` files under `dir`.
fn newest_source(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let found = if meta.is_dir() {
            newest_source(&path)
        } else if path.extension().is_some_and(|e| e == "rs")
            || path.file_name().is_some_and(|n| n == "Cargo.toml")
        {
            meta.modified().ok()
        } else {
            None
        };
        newest = newest.max(found);
    }
    newest
}

// ---------------------------------------------------------------------------------------------
// The instant LLM server

/// An OpenAI-compatible chat-completions endpoint on an ephemeral loopback port that answers at
/// once, so a run measures Caxton and not a model.
async fn start_llm_server() -> u16 {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            ([(header::CONTENT_TYPE, "application/json")], COMPLETION)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("cannot bind the fake LLM server to 127.0.0.1");
    let port = listener
        .local_addr()
        .expect("the fake LLM server has no local address")
        .port();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("fake LLM server stopped: {e}");
        }
    });
    port
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// A running `caxton serve` and its scratch directory. Dropping it stops the daemon (TERM, then
/// KILL) before the directory is removed, also while a panic unwinds.
struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    // Fields drop after `Drop::drop` has stopped the daemon, so the directory goes last. `None`
    // only once `restart` has handed it to the next daemon.
    dir: Option<tempfile::TempDir>,
}

impl Daemon {
    async fn start(bins: &Binaries, llm_port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("caxton-spine-")
            .tempdir()
            .expect("cannot create a temporary directory");
        Self::start_in(dir, bins, llm_port).await
    }

    async fn start_in(dir: tempfile::TempDir, bins: &Binaries, llm_port: u16) -> Self {
        let config = dir.path().join("caxton.toml");
        let data = dir.path().join("data");
        let socket = dir.path().join("caxton.sock");
        let log = dir.path().join("serve.log");
        // max_concurrent above the 16 clients so the throughput figure measures spawning, not the
        // pool's queue. A JSON string literal is also a valid TOML basic string, whatever the path.
        let worker = Value::from(bins.worker.to_string_lossy().into_owned()).to_string();
        let text = format!(
            "[worker]\npath = {worker}\nmax_concurrent = 64\n\n\
             [providers.fake]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{llm_port}/v1\"\nmodel = \"m\"\n",
        );
        std::fs::write(&config, text).expect("cannot write the supervisor config");
        let log_file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("cannot create the daemon log file");
        // The daemon keeps this process's environment, as under a shell; it clears the workers'
        // environment itself. Its info-level log goes to a file: the terminal is for the table.
        let child = Command::new(&bins.caxton)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .arg("--socket")
            .arg(&socket)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("cannot start `caxton serve`");
        let mut daemon = Self {
            child,
            socket,
            log,
            dir: Some(dir),
        };
        daemon.wait_ready().await;
        daemon
    }

    /// Poll `GET /api/v1/health` until the daemon answers 200, failing fast if it died.
    async fn wait_ready(&mut self) {
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "`caxton serve` exited with {status} before it was ready; its log:\n{}",
                    self.log_tail()
                );
            }
            if let Ok((StatusCode::OK, _)) =
                call(&self.socket, Method::GET, "/api/v1/health", None).await
            {
                return;
            }
            assert!(
                Instant::now() < give_up,
                "`caxton serve` not ready after 20 s; its log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop this daemon and start another on the same directory (same agents, same database).
    fn restart(
        mut self,
        bins: &Binaries,
        llm_port: u16,
        runtime: &tokio::runtime::Runtime,
    ) -> Self {
        self.stop();
        let dir = self
            .dir
            .take()
            .expect("a running daemon always owns its directory");
        drop(self);
        runtime.block_on(Self::start_in(dir, bins, llm_port))
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // TERM first so the daemon drains and removes its socket; KILL if it takes too long.
        // SAFETY: kill(2) on our own unreaped child; the PID cannot have been recycled.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let give_up = Instant::now() + Duration::from_secs(5);
        while Instant::now() < give_up {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// VmRSS of the daemon in MB, from /proc; NaN if it cannot be read.
    fn rss(&self) -> f64 {
        proc_status_kb(self.child.id(), "VmRSS:").map_or(f64::NAN, |kb| kb as f64 / 1024.0)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `kB` field of /proc/PID/status.
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The API client

/// One request on a fresh connection, as the `caxton` CLI makes it (src/client.rs): the connect
/// is part of what a user waits for.
async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<(StatusCode, Bytes), String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let payload = body.map(Value::to_string).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "caxton")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(payload)))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, bytes))
}

async fn deploy(socket: &Path, name: &str, source: &str) {
    let body = json!({"source": source, "file": format!("{name}.toml")});
    match call(socket, Method::POST, "/api/v1/agents", Some(&body)).await {
        Ok((status, _)) if status.is_success() => {}
        Ok((status, bytes)) => panic!(
            "deploying {name} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        ),
        Err(e) => panic!("deploying {name}: {e}"),
    }
}

async fn fetch_metrics(socket: &Path) -> String {
    match call(socket, Method::GET, "/metrics", None).await {
        Ok((StatusCode::OK, bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    }
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
    let (status, bytes) = call(
        socket,
        Method::POST,
        "/api/v1/agents/bench/run",
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

/// Sorted samples in milliseconds.
struct Samples(Vec<f64>);

impl Samples {
    fn new(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Self(v)
    }

    /// Nearest-rank percentile; NaN when empty so a broken series prints as such, not as 0.
    fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    fn mean(&self) -> f64 {
        self.0.iter().sum::<f64>() / self.0.len() as f64
    }
}

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
        let (supervisor, workers) = proc_cpu_ms(&daemon.to_string()).unwrap_or_default();
        let (bench, bench_children) = proc_cpu_ms("self").unwrap_or_default();
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

/// (own, reaped children) CPU milliseconds of a process, from /proc/PID/stat.
fn proc_cpu_ms(pid: &str) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; the fields after it do not.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // After the name, field 3 (state) is index 0, so utime (14) is 11 ... cstime (17) is 14.
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ms = 1000.0 / hz;
    Some(((tick(11)? + tick(12)?) * ms, (tick(13)? + tick(14)?) * ms))
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

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

fn report(r: &Report) {
    // (figure, measured, limit or comparison, result)
    let mut rows: Vec<(String, String, String, &str)> = Vec::new();
    let ms = |v: f64| format!("{v:.3} ms");

    let true_p50 = r.true_seq.pct(50.0);
    let startup_p50 = r.series.startup.pct(50.0);
    let startup_limit = STARTUP_FACTOR * true_p50;
    rows.push((
        "1 worker cold start p50 (spawn→handshake)".into(),
        ms(startup_p50),
        format!("≤ {STARTUP_FACTOR} × /bin/true p50 = {}", ms(startup_limit)),
        verdict(startup_p50 <= startup_limit),
    ));
    rows.push((
        "1 worker cold start p99".into(),
        ms(r.series.startup.pct(99.0)),
        format!("/bin/true p99 = {}", ms(r.true_seq.pct(99.0))),
        "info",
    ));
    rows.push((
        format!("1 /bin/true spawn→exit p50 ({TRUE_SPAWNS} spawns)"),
        ms(true_p50),
        format!("ratio worker/true p50 = {:.2}×", startup_p50 / true_p50),
        "info",
    ));

    let client_p50 = r.series.client.pct(50.0);
    rows.push((
        format!("2 agent run latency p50 (client, {SEQUENTIAL_RUNS} runs)"),
        ms(client_p50),
        format!("< {LATENCY_P50_LIMIT_MS} ms"),
        verdict(client_p50 < LATENCY_P50_LIMIT_MS),
    ));
    rows.push((
        "2 agent run latency p99 (client)".into(),
        ms(r.series.client.pct(99.0)),
        format!("failed runs: {}", r.series.failed),
        "info",
    ));

    let true_rate = r.true_rate.per_second();
    let run_rate = r.run_rate.per_second();
    let rate_limit = THROUGHPUT_FRACTION * true_rate;
    rows.push((
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
    ));
    rows.push((
        format!("3 /bin/true spawns/s ({CONCURRENCY} threads)"),
        format!("{true_rate:.1}/s"),
        format!(
            "runs ok {} / failed {} in {:.2} s",
            r.run_rate.done,
            r.run_rate.failed,
            r.run_rate.elapsed.as_secs_f64()
        ),
        "info",
    ));

    rows.push((
        format!("4 supervisor VmRSS idle, {AGENTS_FOR_MEMORY} agents, after load"),
        format!("{:.1} MB", r.rss_idle),
        format!("< {RSS_LIMIT_MB} MB"),
        verdict(r.rss_idle < RSS_LIMIT_MB),
    ));
    rows.push((
        format!("4 supervisor VmRSS idle, {AGENTS_FOR_MEMORY} agents, fresh restart"),
        format!("{:.1} MB", r.rss_restarted),
        format!("< {RSS_LIMIT_MB} MB"),
        verdict(r.rss_restarted < RSS_LIMIT_MB),
    ));

    let widths = rows.iter().fold([6, 8, 18, 6], |w, (a, b, c, d)| {
        [
            w[0].max(a.chars().count()),
            w[1].max(b.chars().count()),
            w[2].max(c.chars().count()),
            w[3].max(d.len()),
        ]
    });
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 4]| {
        let _ = writeln!(
            out,
            "| {:<w0$} | {:>w1$} | {:<w2$} | {:<w3$} |",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
    };
    let rule = format!(
        "|{}|{}|{}|{}|",
        "-".repeat(widths[0] + 2),
        "-".repeat(widths[1] + 2),
        "-".repeat(widths[2] + 2),
        "-".repeat(widths[3] + 2)
    );
    let _ = writeln!(out, "\nCaxton spine benchmark");
    line(
        &mut out,
        ["figure", "measured", "limit / comparison", "result"],
    );
    let _ = writeln!(out, "{rule}");
    for (a, b, c, d) in &rows {
        line(&mut out, [a, b, c, d]);
    }
    print!("{out}");

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
    let series_runs = (r.series.client.0.len().max(1)) as f64;
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
