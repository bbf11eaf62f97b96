//! `cargo bench --bench providers`: what the LLM providers cost, measured on this machine and
//! printed beside the limits they must meet.
//!
//! 1. The local model (SmolLM2-135M-Instruct) through `caxton-local-llm` directly, in this
//!    process: time to first token for a ~100-token ChatML prompt (p50 of 5 after a warm-up;
//!    limit < 300 ms) and decode speed over 128 greedy tokens, computed as
//!    `(completion_tokens − 1) / (duration − time_to_first_token)` so prefill does not dilute it
//!    (limit ≥ 40 tokens/s). A short factual question is asked too, as a sanity line.
//! 2. Resident memory of `caxton serve` with the local model preloaded, read from
//!    /proc/PID/status once a run through the model has succeeded: VmRSS and VmHWM (peak), first
//!    on a fresh data directory (the daemon requantises the weights into its cache) and then
//!    after a restart on the same directory (the cache is reused). Limit: < 300 MB (MB here are
//!    2^20 bytes, /proc's kB / 1024, as in `spine`).
//! 3. Provider overhead: `llm_ms` of run reports (supervisor time from the worker's completion
//!    request arriving to the answer frame being written) against an OpenAI-compatible loopback
//!    server that answers instantly, beside a direct kept-alive HTTP/1.1 request from this
//!    process to the same server. Limit: `llm_ms` p50 − direct p50 < 2 ms.
//!
//! The weights are looked for in `$CAXTON_MODELS_DIR`, else in `models/` of this repository
//! (`scripts/fetch-models.sh` puts them there); without them figures 1 and 2 print as not run.
//! Thread count: candle reads `CANDLE_NUM_THREADS`, then `RAYON_NUM_THREADS`, else uses the
//! physical core count; set either to compare (the daemon inherits this process's environment).
//! Kernel: the local model multiplies with AVX-512 VNNI where the CPU has it, else AVX2;
//! `CAXTON_Q8_KERNEL=avx2` measures what a CPU without AVX-512 gets, `=off` candle's own kernels.
//!
//! As with `spine`, run `cargo build --release --workspace --bins` first: the daemon and the
//! worker are the binaries beside this bench in `target/release`. Arguments after `--` choose
//! sections (`local`, `memory`, `overhead`; default all). The process always exits 0: a benchmark
//! reports, it does not gate. The machine may be shared: before each timed series the bench
//! waits (up to 90 s) for other processes to go quiet, and it reports how much CPU they took.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use caxton_local_llm::{ChatTurn, FinishReason, Generation, GenerationParams, LocalModel, Role};
use caxton_test_kit::api_client::{deploy_agent, run_agent};
use caxton_test_kit::procfs::{self, clock_ticks_per_second, cpu_ticks, machine_busy_ticks};
use caxton_test_kit::stats::{Samples, ms};
use caxton_test_kit::table::{Table, verdict};
use caxton_test_kit::{Binaries, Daemon, Env, FakeLlm, models_dir};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// The GGUF file the built-in `local` provider loads.
const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The system prompt of every local prompt. An explicit one matters: with the template's default
/// ("...named SmolLM") the model misses the capital question (seen with llama.cpp and candle alike).
const SYSTEM: &str = "You are a helpful assistant.";
/// The user turn of the time-to-first-token prompt, sized so the whole ChatML prompt is about
/// 100 tokens, the prompt this model was first compared with llama.cpp on (the exact count is
/// printed).
const TTFT_USER: &str = "I am planning a week-long trip to Portugal in early autumn with two \
     friends who enjoy hiking, good food and quiet beaches. We land in Lisbon on a Monday \
     morning and fly home from Porto the following Sunday evening. We would rather take trains \
     than rent a car. Two of us are vegetarian, and we prefer small family-run restaurants to \
     famous ones. Please suggest a plan with one highlight per day.";
/// The user turn of the decode-speed prompt: open-ended, so greedy decoding runs the whole
/// budget instead of stopping early (a run that stops early is flagged).
const STORY_USER: &str = "Write a long and detailed story about a lighthouse keeper who finds a \
     message in a bottle. Describe the sea, the weather and the keeper's daily routine at length.";
/// The sanity question; with the system prompt above the answer names Paris.
const CAPITAL_USER: &str = "What is the capital of France?";

/// Measured time-to-first-token runs, after one warm-up.
const TTFT_RUNS: usize = 5;
/// Measured decode runs, after one warm-up; each is about a second and a half.
const DECODE_RUNS: usize = 3;
/// Greedy tokens per decode run.
const DECODE_TOKENS: usize = 128;
/// Runs before the overhead series: connection pools, page cache, SQLite file growth.
const WARMUP_RUNS: usize = 20;
/// Sequential runs (and direct requests) in the overhead series.
const OVERHEAD_RUNS: usize = 300;

/// The limits, in one place so the table and the checks cannot disagree.
const TTFT_LIMIT_MS: f64 = 300.0;
const TOKENS_PER_S_MIN: f64 = 40.0;
const RSS_LIMIT_MB: f64 = 300.0;
const OVERHEAD_LIMIT_MS: f64 = 2.0;

/// Longest wait for a quiet machine before a timed series.
const QUIET_WAIT: Duration = Duration::from_secs(90);
/// Share of the machine other processes may take before a figure is flagged as disturbed.
const NOISY: f64 = 0.05;
const NOISY_WARNING: &str = "warning: other processes were busy during a series above; \
     its figures are pessimistic, rerun when the machine is quiet";

/// The agent on the local model: a run of it proves the model is loaded, and 8 tokens keep that
/// run short.
const LOCAL_AGENT: &str = "name = \"local\"\nversion = \"1\"\n\
     system_prompt = \"You are a helpful assistant.\"\nuser_prompt_template = \"{{ request }}\"\n\n\
     [llm]\nprovider = \"local\"\nmax_tokens = 8\n";
/// The agent on the instant server: the request as the whole user prompt, nothing else.
const FAKE_AGENT: &str = "name = \"fake\"\nversion = \"1\"\nuser_prompt_template = \"{{ request }}\"\n\n\
     [llm]\nprovider = \"fake\"\n";

fn main() {
    let sections: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| sections.is_empty() || sections.iter().any(|s| s == name);

    let bins = Binaries::for_bench("providers");
    println!("caxton:        {}", bins.caxton.display());
    println!("caxton-worker: {}", bins.worker.display());
    let models_dir = models_dir();
    let model_path = models_dir.join(MODEL_FILE);
    let have_model = model_path.is_file();
    println!(
        "model: {} ({})",
        model_path.display(),
        if have_model {
            format!("{:.1} MB", file_mb(&model_path))
        } else {
            "missing: run scripts/fetch-models.sh".into()
        }
    );
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| "unset".into());
    println!(
        "cpus: {}; RAYON_NUM_THREADS={}, CANDLE_NUM_THREADS={} → candle uses {} thread(s); \
         local model's matmul kernel: {} (CAXTON_Q8_KERNEL={})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        env("RAYON_NUM_THREADS"),
        env("CANDLE_NUM_THREADS"),
        candle_threads(),
        caxton_local_llm::cpu_kernel(),
        env("CAXTON_Q8_KERNEL")
    );

    // The model runs before the runtime and the daemon exist, so nothing else competes for the
    // two cores while it is timed.
    let local = (have_model && wanted("local")).then(|| {
        println!("\n[1] local model: load, sanity question, {TTFT_RUNS}+1 TTFT runs, {DECODE_RUNS}+1 decode runs ...");
        local_model(&model_path)
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    let (memory, overhead) = if wanted("memory") || wanted("overhead") {
        // The fake LLM server answers at once, so a completion measures Caxton and not a model.
        let llm = FakeLlm::start_in(runtime.handle());
        // The model is preloaded only for the memory figure: loading it (requantising, on a
        // fresh directory) would otherwise compete with the overhead series for the cores.
        let measure_memory = have_model && wanted("memory");
        let mut daemon = start_daemon(bins, &llm, &models_dir, measure_memory);
        deploy_agent(&daemon.env.socket, "local", LOCAL_AGENT);
        deploy_agent(&daemon.env.socket, "fake", FAKE_AGENT);
        let mut memory = None;
        if measure_memory {
            println!("\n[2] supervisor memory with the model preloaded: fresh data directory ...");
            let cold = runtime.block_on(memory_once_loaded(&daemon));
            println!("[2] ... and restarted on the same directory (cached Q8_0 weights) ...");
            daemon = daemon.restart();
            let warm = runtime.block_on(memory_once_loaded(&daemon));
            let cache = cache_files(&daemon);
            memory = Some(MemoryFigures { cold, warm, cache });
        }
        let overhead = wanted("overhead").then(|| {
            println!(
                "\n[3] provider overhead: {OVERHEAD_RUNS} runs interleaved with {OVERHEAD_RUNS} direct requests (after {WARMUP_RUNS} of each) ..."
            );
            runtime.block_on(overhead(
                &daemon.env.socket,
                llm.addr.port(),
                daemon.child.id(),
            ))
        });
        daemon.stop();
        (memory, overhead)
    } else {
        (None, None)
    };

    report(local.as_ref(), memory.as_ref(), overhead.as_ref());
}

/// Threads candle's CPU kernels use, by its own rule (CANDLE_NUM_THREADS, RAYON_NUM_THREADS,
/// else physical cores).
fn candle_threads() -> usize {
    std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(candle_core::utils::get_num_threads)
}

/// Size of a file in the unit of the memory figures (MB of 2^20 bytes, as /proc counts kB).
fn file_mb(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(f64::NAN, |m| m.len() as f64 / (1024.0 * 1024.0))
}

// ---------------------------------------------------------------------------------------------
// 1. The local model, in process

struct LocalFigures {
    load_cold: Duration,
    load_warm: Duration,
    capital: Result<Generation, String>,
    ttft_prompt_tokens: usize,
    ttft: Samples,
    short_prompt_tokens: usize,
    short_ttft: Samples,
    decode_prompt_tokens: usize,
    /// (tokens/s, completion tokens, finish) of each measured decode run.
    decode: Vec<(f64, usize, FinishReason)>,
    /// Whole-call wall time of the decode runs, to set the rate against.
    decode_wall: Samples,
    /// Share of the machine's CPU other processes used during the long-prompt TTFT series, the
    /// short-prompt one and the decode runs.
    others: [f64; 3],
    /// VmRSS of this process in MB with the model loaded, and after its first answer.
    rss_loaded: f64,
    rss_answered: f64,
}

fn turns(user: &str) -> [ChatTurn<'_>; 2] {
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
}

fn local_model(path: &Path) -> LocalFigures {
    let hint = "run scripts/fetch-models.sh";
    // A fresh cache directory, so the first load shows what a new install pays (requantising
    // Q4_1 to Q8_0) and the second what every later start pays.
    let cache = tempfile::Builder::new()
        .prefix("caxton-providers-cache-")
        .tempdir()
        .expect("cannot create a temporary directory");
    let started = Instant::now();
    let model =
        LocalModel::load(path, cache.path(), hint, false).expect("cannot load the local model");
    let load_cold = started.elapsed();
    drop(model);
    let started = Instant::now();
    let mut model = LocalModel::load(path, cache.path(), hint, false)
        .expect("cannot load the local model again");
    let load_warm = started.elapsed();
    let self_mb = |field: &str| procfs::status_mb(std::process::id(), field);
    let rss_loaded = self_mb("VmRSS:");

    let mut generate = |user: &str, max_tokens: usize| {
        let params = GenerationParams {
            max_tokens,
            ..GenerationParams::default()
        };
        model
            .generate(&turns(user), &params, &mut |_| true)
            .map_err(|e| e.to_string())
    };
    let capital = generate(CAPITAL_USER, 32);
    // candle would pack some weights into a second, tiled copy on their first use (the tiles
    // replace its storage instead); reading the resident size again after one answer shows
    // whether anything grows on top of the load.
    let rss_answered = self_mb("VmRSS:");

    wait_for_quiet();
    let watch = Interference::start(&[std::process::id()]);
    let (ttft_prompt_tokens, ttft) = ttft_series(&mut generate, TTFT_USER);
    let ttft_others = watch.others();
    // A short prompt beside the long one separates the per-prompt-token cost of prefill from the
    // fixed cost of a call.
    wait_for_quiet();
    let watch = Interference::start(&[std::process::id()]);
    let (short_prompt_tokens, short_ttft) = ttft_series(&mut generate, CAPITAL_USER);
    let short_others = watch.others();

    let _ = generate(STORY_USER, DECODE_TOKENS).expect("warm-up generation failed");
    wait_for_quiet();
    let watch = Interference::start(&[std::process::id()]);
    let mut decode = Vec::new();
    let mut wall = Vec::new();
    let mut decode_prompt_tokens = 0;
    for _ in 0..DECODE_RUNS {
        let g = generate(STORY_USER, DECODE_TOKENS).expect("generation failed");
        decode_prompt_tokens = g.prompt_tokens;
        let decoding = (g.duration - g.time_to_first_token).as_secs_f64();
        let rate = g.completion_tokens.saturating_sub(1) as f64 / decoding;
        decode.push((rate, g.completion_tokens, g.finish));
        wall.push(ms(g.duration));
    }
    LocalFigures {
        load_cold,
        load_warm,
        capital,
        ttft_prompt_tokens,
        ttft,
        short_prompt_tokens,
        short_ttft,
        decode_prompt_tokens,
        decode,
        decode_wall: Samples::new(wall),
        others: [ttft_others, short_others, watch.others()],
        rss_loaded,
        rss_answered,
    }
}

/// Prompt tokens and time-to-first-token samples of `user`, after one warm-up call. One token
/// is all such a run needs: the clock stops at the first sample.
fn ttft_series(
    generate: &mut dyn FnMut(&str, usize) -> Result<Generation, String>,
    user: &str,
) -> (usize, Samples) {
    let warm = generate(user, 1).expect("warm-up generation failed");
    let runs: Vec<f64> = (0..TTFT_RUNS)
        .map(|_| {
            ms(generate(user, 1)
                .expect("generation failed")
                .time_to_first_token)
        })
        .collect();
    (warm.prompt_tokens, Samples::new(runs))
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// What the daemon's memory looked like once the model had answered.
struct Memory {
    /// VmRSS, VmHWM, RssAnon, RssFile in MB.
    rss: f64,
    hwm: f64,
    anon: f64,
    file: f64,
    /// Daemon start to the first local run having succeeded.
    loaded_after: Duration,
    answer: Result<String, String>,
}

struct MemoryFigures {
    cold: Memory,
    warm: Memory,
    /// Files in the daemon's cache directory and their sizes in MB.
    cache: Vec<(String, f64)>,
}

/// `caxton serve` on a fresh directory with the local provider (preloaded or not) and `llm` as
/// the `fake` one. The daemon keeps this process's environment (thread-count variables
/// included); its log goes to a file: the terminal is for the table.
fn start_daemon(bins: &Binaries, llm: &FakeLlm, models_dir: &Path, preload: bool) -> Daemon {
    // A JSON string literal is also a valid TOML basic string, whatever the path.
    let worker = Value::from(bins.worker.to_string_lossy().into_owned()).to_string();
    let config = format!(
        "[worker]\npath = {worker}\n\n\
         [providers.local]\nkind = \"local\"\npreload = {preload}\n\n\
         [providers.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"m\"\n",
        llm.base_url()
    );
    let models = models_dir.display().to_string();
    Daemon::start_in(
        Env::with_config("caxton-providers-", &config),
        &[("CAXTON_MODELS_DIR".into(), models)],
    )
}

/// Run the local agent once (it waits behind the preload for the model), then read the
/// daemon's memory.
async fn memory_once_loaded(daemon: &Daemon) -> Memory {
    let answer = run_agent(&daemon.env.socket, "local", "Say hi")
        .await
        .and_then(|report| {
            report
                .get("answer")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("report has no answer: {report}"))
        });
    let loaded_after = daemon.started_at().elapsed();
    let pid = daemon.child.id();
    let mb = |field: &str| procfs::status_mb(pid, field);
    Memory {
        rss: mb("VmRSS:"),
        hwm: mb("VmHWM:"),
        anon: mb("RssAnon:"),
        file: mb("RssFile:"),
        loaded_after,
        answer,
    }
}

/// Files in the daemon's cache directory and their sizes in MB.
fn cache_files(daemon: &Daemon) -> Vec<(String, f64)> {
    let Ok(entries) = std::fs::read_dir(daemon.env.data_dir().join("cache")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                file_mb(&e.path()),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 3. Provider overhead

struct OverheadFigures {
    llm: Samples,
    direct: Samples,
    /// Whole run as the daemon reports it, for scale.
    duration: Samples,
    failed: usize,
    first_error: Option<String>,
    /// Share of the machine's CPU other processes used during the series.
    others: f64,
}

/// A kept-alive HTTP/1.1 connection to the instant server, as the daemon's pooled client holds
/// one: what a completion costs with no Caxton in between.
struct DirectClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    port: u16,
}

impl DirectClient {
    async fn connect(port: u16) -> Self {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("cannot connect to the fake LLM server");
        // reqwest sets TCP_NODELAY by default; without it Nagle would add delay here only.
        stream
            .set_nodelay(true)
            .expect("cannot set TCP_NODELAY on the direct connection");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP handshake with the fake LLM server failed");
        tokio::spawn(connection);
        Self { sender, port }
    }

    /// One chat completion with the body the OpenAI provider sends for the `fake` agent; its
    /// round trip in milliseconds.
    async fn complete(&mut self) -> Result<f64, String> {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "ping"}]});
        let started = Instant::now();
        self.sender
            .ready()
            .await
            .map_err(|e| format!("ready: {e}"))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri("/v1/chat/completions")
            .header(header::HOST, format!("127.0.0.1:{}", self.port))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("request: {e}"))?;
        let response = self
            .sender
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
        // Parsed as the provider parses it, so both sides pay for the JSON.
        let parsed: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("answer is not JSON: {e}"))?;
        let elapsed = started.elapsed();
        if status != StatusCode::OK || parsed.get("choices").is_none() {
            return Err(format!("HTTP {status}: {parsed}"));
        }
        Ok(ms(elapsed))
    }
}

/// Runs of the `fake` agent interleaved with direct requests, so both series see the same
/// machine state and both connections sit idle for a similar time between uses.
async fn overhead(socket: &Path, port: u16, daemon: u32) -> OverheadFigures {
    let mut direct_client = DirectClient::connect(port).await;
    for _ in 0..WARMUP_RUNS {
        if let Err(e) = run_agent(socket, "fake", "ping").await {
            panic!("warm-up run failed: {e}");
        }
        if let Err(e) = direct_client.complete().await {
            panic!("warm-up direct request failed: {e}");
        }
    }
    wait_for_quiet();
    let watch = Interference::start(&[std::process::id(), daemon]);
    let (mut llm, mut direct, mut duration) = (Vec::new(), Vec::new(), Vec::new());
    let mut failed = 0;
    let mut first_error = None;
    for _ in 0..OVERHEAD_RUNS {
        let report = run_agent(socket, "fake", "ping").await.and_then(|r| {
            let field = |name: &str| {
                r.get(name)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| format!("report has no numeric {name}: {r}"))
            };
            Ok((field("llm_ms")?, field("duration_ms")?))
        });
        match report {
            Ok((l, d)) => {
                llm.push(l);
                duration.push(d);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        match direct_client.complete().await {
            Ok(t) => direct.push(t),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    OverheadFigures {
        llm: Samples::new(llm),
        direct: Samples::new(direct),
        duration: Samples::new(duration),
        failed,
        first_error,
        others: watch.others(),
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements

/// What the rest of the machine did while a series ran. This box is shared (builds of other
/// checkouts run on the same two cores) and candle's thread pool waits at a barrier for its
/// slowest thread, so one busy neighbour can double a prefill: each figure says how much CPU
/// processes other than ours took during it.
struct Interference {
    started: Instant,
    busy: u64,
    ours: u64,
    pids: Vec<u32>,
}

impl Interference {
    fn start(pids: &[u32]) -> Self {
        Self {
            started: Instant::now(),
            busy: machine_busy_ticks().unwrap_or(0),
            ours: pids.iter().filter_map(|&p| process_ticks(p)).sum(),
            pids: pids.to_vec(),
        }
    }

    /// Share of all CPUs (0 to 1) busy with other processes since `start`.
    fn others(&self) -> f64 {
        let wall = self.started.elapsed().as_secs_f64() * procfs::cpus() as f64;
        let busy = machine_busy_ticks().unwrap_or(0).saturating_sub(self.busy);
        let ours: u64 = self.pids.iter().filter_map(|&p| process_ticks(p)).sum();
        let others = busy.saturating_sub(ours.saturating_sub(self.ours));
        (others as f64 / clock_ticks_per_second() / wall).clamp(0.0, 1.0)
    }
}

/// Wait (at most `QUIET_WAIT`) until the machine is nearly idle, so a series does not start in
/// the middle of someone else's build. Called while this process and the daemon have nothing
/// to do, so any busy CPU is someone else's.
fn wait_for_quiet() {
    let quiet = procfs::wait_for_quiet(QUIET_WAIT, NOISY);
    if !quiet.quiet {
        println!(
            "    (the machine stayed busy for {} s; measuring anyway)",
            QUIET_WAIT.as_secs()
        );
    } else if quiet.waited > Duration::from_secs(2) {
        println!(
            "    (waited {:.0} s for other processes to go quiet)",
            quiet.waited.as_secs_f64()
        );
    }
}

/// utime + stime + cutime + cstime of a process in ticks; the children's part covers the
/// workers the daemon has reaped.
fn process_ticks(pid: u32) -> Option<u64> {
    cpu_ticks(pid).map(|t| t.own + t.children)
}

// ---------------------------------------------------------------------------------------------
// The table

type Row = (String, String, String, &'static str);

fn local_rows(rows: &mut Vec<Row>, notes: &mut Vec<String>, l: &LocalFigures) {
    let ttft = l.ttft.pct(50.0);
    let threads = candle_threads();
    rows.push((
        format!(
            "1 local TTFT p50, {}-token prompt, {threads} thread(s) ({TTFT_RUNS} runs)",
            l.ttft_prompt_tokens
        ),
        format!("{ttft:.1} ms"),
        format!("< {TTFT_LIMIT_MS} ms"),
        verdict(ttft < TTFT_LIMIT_MS),
    ));
    let rates = Samples::new(l.decode.iter().map(|d| d.0).collect());
    let rate = rates.pct(50.0);
    let full = l
        .decode
        .iter()
        .all(|&(_, n, f)| n == DECODE_TOKENS && f == FinishReason::Length);
    rows.push((
        format!(
            "1 local decode tokens/s, {DECODE_TOKENS} greedy tokens, {threads} thread(s) (p50 of {DECODE_RUNS})"
        ),
        format!("{rate:.1}/s"),
        format!("≥ {TOKENS_PER_S_MIN}/s"),
        verdict(full && rate >= TOKENS_PER_S_MIN),
    ));
    let capital = match &l.capital {
        Ok(g) => (
            format!("{:?}", g.text.trim()),
            verdict(g.text.contains("Paris")),
        ),
        Err(e) => (format!("error: {e}"), "FAIL"),
    };
    rows.push((
        "1 sanity: \"What is the capital of France?\"".into(),
        capital.0,
        "contains \"Paris\"".into(),
        capital.1,
    ));

    // Evidence for where the time goes: prefill cost per prompt token from two prompt lengths,
    // against decode cost per generated token.
    let short = l.short_ttft.pct(50.0);
    let per_prompt_token = (ttft - short) / (l.ttft_prompt_tokens - l.short_prompt_tokens) as f64;
    let fixed = short - per_prompt_token * l.short_prompt_tokens as f64;
    let per_decode_token = 1000.0 / rate;
    notes.push(format!(
        "local load: {:.0} ms with a fresh cache (requantise Q4_1 → Q8_0, then load), {:.0} ms from the cache",
        ms(l.load_cold),
        ms(l.load_warm)
    ));
    notes.push(format!(
        "bench process VmRSS with the model loaded: {:.1} MB, after its first answer: {:.1} MB \
         (+{:.1} MB on first use)",
        l.rss_loaded,
        l.rss_answered,
        l.rss_answered - l.rss_loaded
    ));
    notes.push(format!(
        "local TTFT ms, {}-token prompt: min {:.1} p50 {:.1} max {:.1}; {}-token prompt: min {:.1} p50 {:.1} max {:.1}",
        l.ttft_prompt_tokens,
        l.ttft.min(),
        ttft,
        l.ttft.max(),
        l.short_prompt_tokens,
        l.short_ttft.min(),
        short,
        l.short_ttft.max()
    ));
    notes.push(format!(
        "local prefill ≈ {per_prompt_token:.2} ms per prompt token + {fixed:.1} ms fixed; decode {per_decode_token:.2} ms per token \
         (prefill/decode per-token ratio {:.2}: 1.0 means the prompt is not batched at all)",
        per_prompt_token / per_decode_token
    ));
    notes.push(format!(
        "local decode runs ({}-token story prompt): {}; call wall p50 {:.0} ms",
        l.decode_prompt_tokens,
        l.decode
            .iter()
            .map(|(r, n, f)| format!("{r:.1}/s over {n} tokens ({f:?})"))
            .collect::<Vec<_>>()
            .join(", "),
        l.decode_wall.pct(50.0)
    ));
    notes.push(format!(
        "other processes' CPU share during: long-prompt TTFT {:.0}%, short-prompt TTFT {:.0}%, decode {:.0}%",
        l.others[0] * 100.0,
        l.others[1] * 100.0,
        l.others[2] * 100.0
    ));
    if l.others.iter().any(|&o| o > NOISY) {
        notes.push(NOISY_WARNING.to_owned());
    }
    if !full {
        notes.push(
            "a decode run stopped before its budget: its rate is over fewer tokens".to_owned(),
        );
    }
}

fn memory_rows(rows: &mut Vec<Row>, notes: &mut Vec<String>, m: &MemoryFigures) {
    for (label, mem) in [
        ("fresh data dir", &m.cold),
        ("restart, cached weights", &m.warm),
    ] {
        let ok = mem.answer.is_ok();
        rows.push((
            format!("2 supervisor VmRSS, model loaded, {label}"),
            format!("{:.1} MB", mem.rss),
            format!("< {RSS_LIMIT_MB} MB"),
            verdict(ok && mem.rss < RSS_LIMIT_MB),
        ));
        rows.push((
            format!("2 supervisor VmHWM (peak), {label}"),
            format!("{:.1} MB", mem.hwm),
            format!("< {RSS_LIMIT_MB} MB"),
            verdict(ok && mem.hwm < RSS_LIMIT_MB),
        ));
        notes.push(format!(
            "supervisor, {label}: RssAnon {:.1} MB + RssFile {:.1} MB; first local run done {:.0} ms after spawn; answer to \"Say hi\": {}",
            mem.anon,
            mem.file,
            ms(mem.loaded_after),
            match &mem.answer {
                Ok(a) => format!("{a:?}"),
                Err(e) => format!("FAILED: {e}"),
            }
        ));
    }
    notes.push(format!(
        "daemon cache directory: {}",
        if m.cache.is_empty() {
            "empty".to_owned()
        } else {
            m.cache
                .iter()
                .map(|(name, mb)| format!("{name} {mb:.1} MB"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
}

fn overhead_rows(rows: &mut Vec<Row>, notes: &mut Vec<String>, o: &OverheadFigures) {
    let (llm, direct) = (o.llm.pct(50.0), o.direct.pct(50.0));
    let overhead = llm - direct;
    rows.push((
        format!("3 provider overhead p50 (llm_ms − direct, {OVERHEAD_RUNS} each)"),
        format!("{overhead:.3} ms"),
        format!("< {OVERHEAD_LIMIT_MS} ms"),
        verdict(o.failed == 0 && overhead < OVERHEAD_LIMIT_MS),
    ));
    rows.push((
        "3 llm_ms p50 (through the daemon)".into(),
        format!("{llm:.3} ms"),
        format!("p99 {:.3} ms", o.llm.pct(99.0)),
        "info",
    ));
    rows.push((
        "3 direct request p50 (kept-alive HTTP/1.1)".into(),
        format!("{direct:.3} ms"),
        format!("p99 {:.3} ms", o.direct.pct(99.0)),
        "info",
    ));
    notes.push(format!(
        "overhead series: llm_ms min {:.3} / direct min {:.3}; run duration_ms p50 {:.3}; failed {}",
        o.llm.min(),
        o.direct.min(),
        o.duration.pct(50.0),
        o.failed
    ));
    notes.push(format!(
        "other processes' CPU share during the overhead series: {:.0}%",
        o.others * 100.0
    ));
    if o.others > NOISY {
        notes.push(NOISY_WARNING.to_owned());
    }
    if let Some(e) = &o.first_error {
        notes.push(format!("first failure in the overhead series: {e}"));
    }
}

fn report(
    local: Option<&LocalFigures>,
    memory: Option<&MemoryFigures>,
    overhead: Option<&OverheadFigures>,
) {
    // (figure, measured, limit or comparison, result)
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let not_run = |rows: &mut Vec<Row>, figure: &str| {
        rows.push((figure.into(), "—".into(), "not run".into(), "skip"));
    };
    match local {
        Some(l) => local_rows(&mut rows, &mut notes, l),
        None => not_run(&mut rows, "1 local model TTFT and tokens/s"),
    }
    match memory {
        Some(m) => memory_rows(&mut rows, &mut notes, m),
        None => not_run(&mut rows, "2 supervisor memory with the model loaded"),
    }
    match overhead {
        Some(o) => overhead_rows(&mut rows, &mut notes, o),
        None => not_run(&mut rows, "3 provider overhead"),
    }

    let mut table = Table::default();
    for (figure, measured, limit, result) in rows {
        table.row(figure, measured, limit, result);
    }
    let mut out = table.render("Caxton providers benchmark");
    let _ = writeln!(out, "\ncontext:");
    for note in &notes {
        let _ = writeln!(out, "  {note}");
    }
    print!("{out}");
}
