//! `cargo bench --bench tools`: issue 4's figures for the WebAssembly tool servers, each printed
//! beside the limit or the comparison it is judged by, all measured in this one run. Run
//! `cargo build --release --workspace --bins` first: figures 2 and 4 start the release `caxton`
//! and `caxton-worker` from this bench's own target directory (built if missing, with a warning
//! if older than their sources). `cargo bench --bench tools -- 2 4` runs only figures 2 and 4.
//!
//! 1. **A trivial tool call inside the supervisor**: `ToolModule::call` (a fresh instance from the
//!    pre-linked `InstancePre`, the arguments in, the `CallToolResult` parsed) on one thread:
//!    p50, p99 and calls per second, beside a bare call of the same export on one live instance
//!    (no instantiation, no JSON). Goals: p99 < 1 ms, ≥ 50,000 calls/s.
//! 2. **A tool call from a worker through the supervisor and back**. A real `caxton serve` runs
//!    with an OpenAI-compatible server on loopback that answers at once, and figure 1's tool
//!    deployed with `caxton tool deploy`. The daemon's `[worker] path` is this benchmark's own
//!    executable: started with `--supervisor-pid` it is a probe worker that does the handshake,
//!    takes the job and then, round after round, sends the `CallTools` frame a worker sends when
//!    the model calls a tool and waits for `ToolResults`, timing each round trip on its own
//!    monotonic clock. That covers the frame encode, the socketpair, the supervisor's dispatch
//!    (allow-list check, `ToolRegistry::call` on the blocking pool with a fresh instance, the
//!    result cut to size, the call's record), the answer frame and its decode: the p99 of these
//!    is judged against 2 ms. Beside it, timed the same way by the same worker in alternate
//!    rounds: the plain LLM round trip (`Complete` → `Completion`) through the daemon to the
//!    instant server, and the supervisor's own `duration_ms` of each call from the execution
//!    record (the part spent in `ToolRegistry::call`). As a check with the real `caxton-worker`,
//!    runs of one agent whose model calls the tool once (scripted by `[call ping {}]`, as the
//!    test kit's fake LLM server reads it) alternate with runs whose model answers at once; the
//!    difference in time spent outside the model (`duration_ms − llm_ms` of each run) is the
//!    real worker's whole tool step: the hop above plus turning the reply into the next request.
//!    That difference is of two percentiles, not a percentile of differences, so it is shown for
//!    information only.
//! 3. **Start-up of a deployed tool server from the on-disk cache**, as after a restart: a fresh
//!    `ToolRegistry::open` on a tools directory holding the deployed package, then its first call
//!    (the module deserialised from the compile cache, pre-linked, its schema validators built,
//!    one call in a fresh instance) until the result is back. Judged: the first call alone (the
//!    server's own start-up; the engine is the daemon's, made once however many servers there
//!    are) and open + first call (the whole restart), p50 of repeated fresh registries, against
//!    10 ms; beside each, the same with the cache emptied first (compile). Also measured for the
//!    built-in `json_query` (a Zig module) when `scripts/build-tools.sh` has built it. The cache
//!    file is in the page cache: a cold disk adds its read.
//! 4. **Idle memory per deployed tool server**: a fresh `caxton serve` with no tool server is
//!    measured (VmRSS), then 1,000 distinct small servers (WAT modules each returning its own
//!    constant, so no compiled code can be shared) are deployed through the API and each is called
//!    once over MCP (`/mcp` `tools/call`); after the daemon has settled, (VmRSS − baseline) / 1,000.
//!    The same again after a restart on the same data directory (every module from the disk cache,
//!    each called once), which leaves out what the 1,000 compilations left in the allocator.
//!    Goal: < 1 MB each.
//!
//! Everything (fake LLM server, configs, data directories, daemons: the test kit's, test-kit/) is
//! set up here and torn down at the end, also on panic. The process exits 0 whatever the
//! verdicts: a benchmark reports, it does not gate. The machine's load average is printed at the
//! start and the end; on a shared machine, rerun when it is low.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use caxton_supervisor::tools::{MAX_CONCURRENT_CALLS, ToolRegistry};
use caxton_test_kit::api_client::{call, deploy_agent, run_agent};
use caxton_test_kit::procfs::status_mb;
use caxton_test_kit::stats::{Samples, ms};
use caxton_test_kit::table::{Table, verdict};
use caxton_test_kit::{Binaries, Daemon, Env, FakeLlm, workspace_root};
use caxton_tool_host::{CallContext, CallLimits, HostLimits, ToolHost};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

/// Figure 1: calls measured in each series, after the warm-up calls.
const CALLS: usize = 100_000;
const WARMUP: usize = 2_000;
/// Figure 2: probe runs (each a worker of its own) and tool + LLM rounds in each.
const PROBE_RUNS: usize = 4;
const PROBE_ROUNDS: usize = 500;
/// Figure 2: real-worker runs with one tool call, and as many without, alternating.
const LOOP_PAIRS: usize = 200;
const LOOP_WARMUP_PAIRS: usize = 10;
/// Figure 3: fresh registries per series.
const STARTUPS: usize = 30;
/// Figure 4: tool servers deployed.
const SERVERS: usize = 1_000;
/// Time a daemon is left alone before its memory is read, so in-flight cleanup has finished.
const SETTLE: Duration = Duration::from_secs(2);

/// The limits, in one place so the table and the checks cannot disagree.
const CALL_P99_LIMIT_MS: f64 = 1.0;
const CALL_RATE_LIMIT: f64 = 50_000.0;
const HOP_P99_LIMIT_MS: f64 = 2.0;
const STARTUP_LIMIT_MS: f64 = 10.0;
const SERVER_MEMORY_LIMIT_MB: f64 = 1.0;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--supervisor-pid") {
        // Started by `caxton serve` as its worker (figure 2).
        std::process::exit(probe::run());
    }
    let wanted: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let run = |figure: u32| wanted.is_empty() || wanted.contains(&figure);
    println!("load average at start: {}", load_average());
    let mut table = Figures::default();
    if run(1) {
        figure_1(&mut table);
    }
    // Figures 2 and 4 drive real daemons: the release binaries, a runtime, the LLM server.
    let daemons = (run(2) || run(4)).then(|| {
        let bins = Binaries::for_bench("tools");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime");
        // Answers at once; `[call NAME {json}]` in the first user message scripts a tool call.
        let llm = FakeLlm::start_in(runtime.handle());
        (bins, runtime, llm)
    });
    if let Some((bins, runtime, llm)) = &daemons
        && run(2)
    {
        figure_2(&mut table, bins, llm, runtime);
    }
    if run(3) {
        figure_3(&mut table);
    }
    if let Some((bins, runtime, llm)) = &daemons
        && run(4)
    {
        figure_4(&mut table, bins, llm, runtime);
    }
    table.print();
    println!("load average at end: {}", load_average());
}

// ---------------------------------------------------------------------------------------------
// Figure 1: a call inside the tool host

/// The trivial tool server: `caxton_call` returns `text` as a `CallToolResult`, whatever it is
/// asked; `caxton_alloc` bumps a pointer.
fn module_returning(text: &str) -> Vec<u8> {
    let result = json!({"content": [{"type": "text", "text": text}], "isError": false}).to_string();
    let escaped = result.replace('\\', "\\\\").replace('"', "\\\"");
    let wat = format!(
        r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 4096))
  (data (i32.const 1024) "{escaped}")
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (local.get $p))
  (func (export "caxton_call") (param i32 i32 i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const {len}))))"#,
        len = result.len()
    );
    wat::parse_str(wat).expect("the benchmark module is valid WAT")
}

/// The manifest of a trivial server providing one tool that takes no arguments.
fn manifest_for(server: &str, tool: &str) -> String {
    format!(
        "name = \"{server}\"\nversion = \"1.0.0\"\ndescription = \"benchmark tool\"\n\
         module = \"{server}.wasm\"\n\n[[tools]]\nname = \"{tool}\"\ndescription = \"answers pong\"\n\
         input_schema = {{ type = \"object\" }}\n"
    )
}

fn figure_1(table: &mut Figures) {
    println!("[1] {CALLS} tool calls with a fresh instance, then {CALLS} bare calls ...");
    let wasm = module_returning("pong");
    let cache = tempfile::tempdir().expect("cannot create a temporary directory");

    // Through the host: fresh instance, arguments in, CallToolResult parsed and checked.
    let host =
        ToolHost::new(cache.path(), HostLimits::default()).expect("cannot start the tool host");
    let tool = host.load("ping", &wasm).expect("cannot load the module");
    let limits = CallLimits::default();
    let first = tool
        .call("ping", "{}", limits)
        .expect("the first call failed");
    assert_eq!(
        first["content"][0]["text"], "pong",
        "unexpected result {first}"
    );
    for _ in 0..WARMUP {
        tool.call("ping", "{}", limits)
            .expect("the warm-up call failed");
    }
    let mut samples = Vec::with_capacity(CALLS);
    let all = Instant::now();
    for _ in 0..CALLS {
        let t = Instant::now();
        let result = tool
            .call("ping", "{}", limits)
            .expect("a measured call failed");
        samples.push(ms(t.elapsed()));
        std::hint::black_box(result);
    }
    let total = all.elapsed();
    let samples = Samples::new(samples);

    // The floor: the same export called on one live instance, no instantiation, no JSON.
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, &wasm).expect("cannot compile the module");
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("cannot instantiate");
    let call = instance
        .get_typed_func::<(i32, i32, i32, i32), i64>(&mut store, "caxton_call")
        .expect("caxton_call has the ABI's type");
    let mut bare = Vec::with_capacity(CALLS);
    for _ in 0..WARMUP {
        call.call(&mut store, (0, 0, 0, 0))
            .expect("bare warm-up call");
    }
    for _ in 0..CALLS {
        let t = Instant::now();
        std::hint::black_box(call.call(&mut store, (0, 0, 0, 0)).expect("bare call"));
        bare.push(ms(t.elapsed()));
    }
    let bare = Samples::new(bare);

    let rate = CALLS as f64 / total.as_secs_f64();
    let p99 = samples.pct(99.0);
    table.row(
        "1 tool call in the host, fresh instance, p50",
        us(samples.pct(50.0)),
        format!("bare call on a live instance p50 {}", us(bare.pct(50.0))),
        "info",
    );
    table.row(
        "1 tool call in the host, fresh instance, p99",
        us(p99),
        format!(
            "< {} (bare p99 {})",
            us(CALL_P99_LIMIT_MS),
            us(bare.pct(99.0))
        ),
        verdict(p99 < CALL_P99_LIMIT_MS),
    );
    table.row(
        format!("1 tool calls per second, one thread ({CALLS} calls)"),
        format!("{rate:.0}/s"),
        format!(
            "≥ {CALL_RATE_LIMIT:.0}/s (bare {:.0}/s)",
            1000.0 / bare.mean()
        ),
        verdict(rate >= CALL_RATE_LIMIT),
    );
}

// ---------------------------------------------------------------------------------------------
// Figure 2: worker → supervisor → tool → worker

/// The agent the probe worker runs: every round trip of a run goes through one worker.
const PROBE_AGENT: &str = "name = \"probe\"\nversion = \"1\"\nuser_prompt_template = \"{{ request }}\"\n\
tools = [\"ping\"]\n\n[limits]\nmax_tool_calls = 1000\ntimeout = \"300s\"\n";

/// The agent the real worker runs, with or without a scripted tool call.
const LOOP_AGENT: &str = "name = \"loop\"\nversion = \"1\"\nuser_prompt_template = \"{{ request }}\"\n\
tools = [\"ping\"]\n";

/// One real-worker run as its execution report tells it.
struct LoopRun {
    client_ms: f64,
    duration_ms: f64,
    llm_ms: f64,
    tool_ms: Option<f64>,
}

fn figure_2(
    table: &mut Figures,
    bins: &Binaries,
    fake_llm: &FakeLlm,
    runtime: &tokio::runtime::Runtime,
) {
    let me = std::env::current_exe().expect("cannot find the benchmark's own executable");
    let package = tempfile::tempdir().expect("cannot create a temporary directory");
    std::fs::write(
        package.path().join("tool.toml"),
        manifest_for("ping", "ping"),
    )
    .expect("cannot write the tool package");
    std::fs::write(package.path().join("ping.wasm"), module_returning("pong"))
        .expect("cannot write the tool package");

    // The probe worker: every tool and LLM round trip timed inside the worker process.
    println!(
        "[2] probe worker: {PROBE_RUNS} runs × {PROBE_ROUNDS} tool calls and {PROBE_ROUNDS} completions ..."
    );
    let mut daemon = start_daemon(&me, fake_llm, "caxton-tools-probe-");
    cli_deploy_tool(&daemon, package.path());
    deploy_agent(&daemon.env.socket, "probe", PROBE_AGENT);
    let (mut tool, mut llm, mut recorded) = (Vec::new(), Vec::new(), Vec::new());
    let mut probe_errors = Vec::new();
    for i in 0..=PROBE_RUNS {
        // Run 0 is a short warm-up: connection pool to the LLM server, the blocking pool, the
        // module's first instance.
        let rounds = if i == 0 { 50 } else { PROBE_ROUNDS };
        let report = runtime
            .block_on(run_agent(
                &daemon.env.socket,
                "probe",
                &format!("probe {rounds}"),
            ))
            .unwrap_or_else(|e| panic!("probe run failed: {e}"));
        let answer: Value = report["answer"]
            .as_str()
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or_else(|| panic!("the probe's answer is not its JSON: {report}"));
        if let Some(e) = answer["first_error"].as_str() {
            probe_errors.push(e.to_owned());
        }
        if i == 0 {
            continue;
        }
        let ns_to_ms = |key: &str| -> Vec<f64> {
            answer[key]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(Value::as_f64)
                        .map(|ns| ns / 1e6)
                        .collect()
                })
                .unwrap_or_default()
        };
        tool.extend(ns_to_ms("tool_ns"));
        llm.extend(ns_to_ms("llm_ns"));
        recorded.extend(
            report["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["duration_ms"].as_f64()),
        );
    }
    daemon.stop();
    let (tool, llm, recorded) = (
        Samples::new(tool),
        Samples::new(llm),
        Samples::new(recorded),
    );

    // The real worker's whole tool step, from run reports.
    println!(
        "[2] caxton-worker: {LOOP_PAIRS} runs with one tool call alternating with {LOOP_PAIRS} without ..."
    );
    let mut daemon = start_daemon(&bins.worker, fake_llm, "caxton-tools-loop-");
    cli_deploy_tool(&daemon, package.path());
    deploy_agent(&daemon.env.socket, "loop", LOOP_AGENT);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..LOOP_WARMUP_PAIRS + LOOP_PAIRS {
        let called = runtime
            .block_on(loop_run(&daemon.env.socket, true))
            .unwrap_or_else(|e| panic!("run with a tool call failed: {e}"));
        let plain = runtime
            .block_on(loop_run(&daemon.env.socket, false))
            .unwrap_or_else(|e| panic!("run without a tool call failed: {e}"));
        if i >= LOOP_WARMUP_PAIRS {
            with.push(called);
            without.push(plain);
        }
    }
    daemon.stop();
    let outside =
        |runs: &[LoopRun]| Samples::new(runs.iter().map(|r| r.duration_ms - r.llm_ms).collect());
    let (with_out, without_out) = (outside(&with), outside(&without));
    let client = |runs: &[LoopRun]| Samples::new(runs.iter().map(|r| r.client_ms).collect());
    let (with_client, without_client) = (client(&with), client(&without));
    let loop_recorded = Samples::new(with.iter().filter_map(|r| r.tool_ms).collect());

    let hop_p99 = tool.pct(99.0);
    let n = tool.len();
    table.row(
        format!("2 tool call worker→supervisor→tool→worker p50 ({n} calls)"),
        ms3(tool.pct(50.0)),
        format!(
            "plain LLM round trip worker→supervisor→instant LLM→worker p50 {}",
            ms3(llm.pct(50.0))
        ),
        "info",
    );
    table.row(
        "2 tool call worker→supervisor→tool→worker p99",
        ms3(hop_p99),
        format!(
            "< {} (plain LLM round trip p99 {})",
            ms3(HOP_P99_LIMIT_MS),
            ms3(llm.pct(99.0))
        ),
        verdict(hop_p99 < HOP_P99_LIMIT_MS && probe_errors.is_empty() && n > 0),
    );
    table.row(
        "2 of which in ToolRegistry::call (record duration_ms) p50 / p99",
        format!("{} / {}", ms3(recorded.pct(50.0)), ms3(recorded.pct(99.0))),
        format!("max {}", ms3(recorded.max())),
        "info",
    );
    table.row(
        "2 caxton-worker tool step: Δ time outside the model p50 / p99",
        format!(
            "{} / {}",
            ms3(with_out.pct(50.0) - without_out.pct(50.0)),
            ms3(with_out.pct(99.0) - without_out.pct(99.0))
        ),
        format!(
            "runs with one tool call − runs without, {LOOP_PAIRS} each (difference of percentiles)"
        ),
        "info",
    );

    let mut context = String::new();
    let _ = writeln!(context, "figure 2 (ms):");
    let _ = writeln!(
        context,
        "  probe, CallTools→ToolResults       {}",
        tool.summary()
    );
    let _ = writeln!(
        context,
        "  probe, Complete→Completion         {}",
        llm.summary()
    );
    let _ = writeln!(
        context,
        "  record duration_ms (probe runs)    {}",
        recorded.summary()
    );
    let _ = writeln!(
        context,
        "  caxton-worker run, outside model   with tool {}",
        with_out.summary()
    );
    let _ = writeln!(
        context,
        "                                     without   {}",
        without_out.summary()
    );
    let _ = writeln!(
        context,
        "  caxton-worker run, client latency  with tool {}",
        with_client.summary()
    );
    let _ = writeln!(
        context,
        "                                     without   {}",
        without_client.summary()
    );
    let _ = writeln!(
        context,
        "  record duration_ms (worker runs)   {}",
        loop_recorded.summary()
    );
    for e in probe_errors.iter().take(3) {
        let _ = writeln!(context, "  probe tool error: {e}");
    }
    table.context.push(context);
}

/// One run of the `loop` agent; with `call`, its model calls the tool once before answering.
async fn loop_run(socket: &Path, call: bool) -> Result<LoopRun, String> {
    let request = if call { "[call ping {}]" } else { "hello" };
    let started = Instant::now();
    let report = run_agent(socket, "loop", request).await?;
    let client_ms = ms(started.elapsed());
    let answer = report["answer"].as_str().unwrap_or_default();
    let calls = report["tool_calls"].as_array().map_or(0, Vec::len);
    if call && (answer != "tool said: pong" || calls != 1) {
        return Err(format!("the tool call did not go through: {report}"));
    }
    if !call && calls != 0 {
        return Err(format!("a tool was called unasked: {report}"));
    }
    let field = |name: &str| {
        report[name]
            .as_f64()
            .ok_or_else(|| format!("report has no numeric {name}: {report}"))
    };
    Ok(LoopRun {
        client_ms,
        duration_ms: field("duration_ms")?,
        llm_ms: field("llm_ms")?,
        tool_ms: report["tool_calls"][0]["duration_ms"].as_f64(),
    })
}

/// The probe worker: speaks the worker protocol on fd 0 and times round trips itself.
mod probe {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    use caxton_ipc_protocol::{
        ChatMessage, ChatRole, CompletionRequest, Hello, PROTOCOL_VERSION, SupervisorMessage,
        ToolCall, WorkerMessage, read_frame, write_frame,
    };

    /// Exit code of the probe: 0 when it answered, 3 when it could not.
    pub fn run() -> i32 {
        // Die with the supervisor, as the real worker does.
        // SAFETY: prctl with constant arguments.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        // SAFETY: the supervisor hands its worker a connected socket as fd 0, owned by no one else.
        let socket = UnixStream::from(unsafe { OwnedFd::from_raw_fd(0) });
        match converse(socket) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("tools bench probe worker: {e}");
                3
            }
        }
    }

    fn converse(mut socket: UnixStream) -> Result<(), String> {
        let io = |e: caxton_ipc_protocol::ProtocolError| e.to_string();
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            worker_version: "tools-bench-probe".into(),
            pid: std::process::id(),
            sandbox: caxton_ipc_protocol::SandboxReport::default(),
        };
        write_frame(&mut socket, &WorkerMessage::Hello(hello)).map_err(io)?;
        match read_frame(&mut socket).map_err(io)? {
            SupervisorMessage::Welcome => {}
            other => return Err(format!("expected Welcome, received {other:?}")),
        }
        let job = match read_frame(&mut socket).map_err(io)? {
            SupervisorMessage::Job(job) => job,
            other => return Err(format!("expected Job, received {other:?}")),
        };
        let rounds: usize = job
            .input
            .request
            .strip_prefix("probe ")
            .and_then(|n| n.parse().ok())
            .ok_or("the request must be `probe N`")?;
        let tool = job
            .agent
            .tools
            .first()
            .ok_or("the probe agent is offered no tool")?
            .name
            .clone();
        let (mut tool_ns, mut llm_ns) = (Vec::new(), Vec::new());
        let mut first_error = None;
        let mut call_id = 0u32;
        for round in 0..rounds {
            // What a worker sends when the model called one tool.
            call_id += 1;
            let message = WorkerMessage::CallTools {
                call_id,
                calls: vec![ToolCall {
                    id: format!("call_{round}"),
                    name: tool.clone(),
                    arguments_json: "{}".into(),
                }],
            };
            let started = Instant::now();
            write_frame(&mut socket, &message).map_err(io)?;
            let reply = read_frame(&mut socket).map_err(io)?;
            let elapsed = started.elapsed();
            match reply {
                SupervisorMessage::ToolResults {
                    call_id: answered,
                    results,
                } if answered == call_id && results.len() == 1 => {
                    if results[0].is_error {
                        first_error.get_or_insert_with(|| results[0].content.clone());
                    } else {
                        tool_ns.push(elapsed.as_nanos() as u64);
                    }
                }
                other => return Err(format!("expected ToolResults, received {other:?}")),
            }
            // A plain completion through the same daemon, for comparison.
            call_id += 1;
            let message = WorkerMessage::Complete {
                call_id,
                request: CompletionRequest {
                    messages: vec![ChatMessage::text(ChatRole::User, "ping")],
                    tools: Vec::new(),
                    stream: false,
                },
            };
            let started = Instant::now();
            write_frame(&mut socket, &message).map_err(io)?;
            let reply = read_frame(&mut socket).map_err(io)?;
            let elapsed = started.elapsed();
            match reply {
                SupervisorMessage::Completion {
                    call_id: answered,
                    result,
                } if answered == call_id => match result {
                    Ok(_) => llm_ns.push(elapsed.as_nanos() as u64),
                    Err(e) => {
                        first_error.get_or_insert(e.message);
                    }
                },
                other => return Err(format!("expected Completion, received {other:?}")),
            }
        }
        let answer = serde_json::json!({
            "tool_ns": tool_ns,
            "llm_ns": llm_ns,
            "first_error": first_error,
        })
        .to_string();
        write_frame(
            &mut socket,
            &WorkerMessage::Finished {
                execution_id: job.execution_id,
                answer,
            },
        )
        .map_err(io)
    }
}

// ---------------------------------------------------------------------------------------------
// Figure 3: start-up from the disk cache

/// Start-up times of one server, in ms.
struct Startups {
    open: Samples,
    first_call: Samples,
    total: Samples,
    second_call: Samples,
}

/// A deployed server to start: its package and one call that must succeed.
struct StartupCase {
    label: &'static str,
    manifest: String,
    wasm: Vec<u8>,
    tool: String,
    arguments: Value,
}

fn figure_3(table: &mut Figures) {
    let mut cases = vec![StartupCase {
        label: "trivial WAT tool",
        manifest: manifest_for("ping", "ping"),
        wasm: module_returning("pong"),
        tool: "ping".into(),
        arguments: json!({}),
    }];
    match builtin_json_query() {
        Ok(case) => cases.push(case),
        Err(why) => table
            .context
            .push(format!("figure 3: json_query not measured: {why}\n")),
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    // What the registry's open spends before any server: the engine with its instance pool, the
    // epoch thread and the I/O runtime, as `ToolRegistry::open` sizes them.
    let scratch = tempfile::tempdir().expect("cannot create a temporary directory");
    let hosts = Samples::new(
        (0..STARTUPS)
            .map(|_| {
                let started = Instant::now();
                let host = ToolHost::new(
                    scratch.path(),
                    HostLimits {
                        max_instances: MAX_CONCURRENT_CALLS as u32,
                        ..HostLimits::default()
                    },
                )
                .expect("cannot start the tool host");
                let elapsed = started.elapsed();
                drop(host);
                ms(elapsed)
            })
            .collect(),
    );
    // Of which the engine: the same pooling settings as `ToolHost::new` (copied here, so only a
    // guide to where the time goes), without the threads.
    let engines = Samples::new(
        (0..STARTUPS)
            .map(|_| {
                let started = Instant::now();
                let engine = pooling_engine(MAX_CONCURRENT_CALLS as u32);
                let elapsed = started.elapsed();
                drop(engine);
                ms(elapsed)
            })
            .collect(),
    );
    table.context.push(format!(
        "figure 3 (ms):\n  ToolHost::new (engine, pooling allocator, epoch thread, I/O runtime) {}\n  \
         pooling Engine::new alone, settings as ToolHost's                    {}\n",
        hosts.summary(),
        engines.summary()
    ));
    for case in &cases {
        println!(
            "[3] {}: {STARTUPS} restarts with the compile cache warm, {STARTUPS} with it empty ...",
            case.label
        );
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let (tools, cache) = (dir.path().join("tools"), dir.path().join("cache"));
        {
            let registry = ToolRegistry::open(&tools, None, &cache, &[])
                .expect("cannot open the tool registry");
            registry
                .deploy(dir.path(), &case.manifest, &case.wasm)
                .unwrap_or_else(|e| panic!("cannot deploy {}: {e}", case.label));
        }
        let warm = startups(&runtime, &tools, &cache, case, false);
        let cold = startups(&runtime, &tools, &cache, case, true);
        let first = warm.first_call.pct(50.0);
        let total = warm.total.pct(50.0);
        table.row(
            format!("3 {}: start-up from the cache, first call p50", case.label),
            ms3(first),
            format!(
                "< {} (empty cache: {}; max {})",
                ms3(STARTUP_LIMIT_MS),
                ms3(cold.first_call.pct(50.0)),
                ms3(warm.first_call.max())
            ),
            verdict(first < STARTUP_LIMIT_MS),
        );
        table.row(
            format!("3 {}: registry open + first call p50", case.label),
            ms3(total),
            format!(
                "< {} (empty cache: {}; max {})",
                ms3(STARTUP_LIMIT_MS),
                ms3(cold.total.pct(50.0)),
                ms3(warm.total.max())
            ),
            verdict(total < STARTUP_LIMIT_MS),
        );
        let mut context = format!("figure 3, {} (ms, {STARTUPS} each):\n", case.label);
        for (name, s) in [
            ("warm open        ", &warm.open),
            ("warm first call  ", &warm.first_call),
            ("warm second call ", &warm.second_call),
            ("cold open        ", &cold.open),
            ("cold first call  ", &cold.first_call),
            ("cold second call ", &cold.second_call),
        ] {
            let _ = writeln!(context, "  {name} {}", s.summary());
        }
        table.context.push(context);
    }
}

/// An engine with the tool host's settings (tool-host/src/lib.rs `ToolHost::new`).
fn pooling_engine(instances: u32) -> wasmtime::Engine {
    let limits = HostLimits::default();
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_core_instances(instances)
        .total_memories(instances)
        .total_tables(instances)
        .max_memory_size(limits.max_memory_bytes);
    let mut config = wasmtime::Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 << 10)
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    wasmtime::Engine::new(&config).expect("cannot create the engine")
}

/// `STARTUPS` fresh registries on `tools`, each timed from open to its first call's result;
/// with `cold`, the compile cache is emptied before each.
fn startups(
    runtime: &tokio::runtime::Runtime,
    tools: &Path,
    cache: &Path,
    case: &StartupCase,
    cold: bool,
) -> Startups {
    let (mut open, mut first_call, mut total, mut second_call) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let call = |registry: &ToolRegistry| {
        let outcome = runtime.block_on(registry.call(
            &case.tool,
            case.arguments.clone(),
            CallContext::default(),
        ));
        assert_eq!(
            outcome.record.outcome, "ok",
            "{} failed: {:?}",
            case.label, outcome.record.error
        );
    };
    for _ in 0..STARTUPS {
        if cold {
            let _ = std::fs::remove_dir_all(cache.join("wasm"));
        }
        let started = Instant::now();
        let registry =
            ToolRegistry::open(tools, None, cache, &[]).expect("cannot open the registry");
        let opened = started.elapsed();
        call(&registry);
        let called = started.elapsed();
        call(&registry);
        let again = started.elapsed();
        open.push(ms(opened));
        first_call.push(ms(called - opened));
        total.push(ms(called));
        second_call.push(ms(again - called));
    }
    Startups {
        open: Samples::new(open),
        first_call: Samples::new(first_call),
        total: Samples::new(total),
        second_call: Samples::new(second_call),
    }
}

/// The built-in `json_query` server, when its module has been built.
fn builtin_json_query() -> Result<StartupCase, String> {
    let dir = workspace_root().join("tool-packages/builtin/json");
    let manifest = std::fs::read_to_string(dir.join("tool.toml")).map_err(|e| e.to_string())?;
    let module = manifest
        .lines()
        .find_map(|l| l.strip_prefix("module = \""))
        .and_then(|l| l.strip_suffix('"'))
        .ok_or("tool.toml names no module")?;
    let wasm = std::fs::read(dir.join(module))
        .map_err(|e| format!("{module}: {e} (run scripts/build-tools.sh)"))?;
    Ok(StartupCase {
        label: "built-in json_query",
        manifest,
        wasm,
        tool: "json_query".into(),
        arguments: json!({"document": {"a": [1, 2, 3]}, "path": "$.a[1]"}),
    })
}

// ---------------------------------------------------------------------------------------------
// Figure 4: memory per deployed server

/// VmRSS and its anonymous and file-backed parts, in MB.
#[derive(Clone, Copy)]
struct Rss {
    total: f64,
    anon: f64,
    file: f64,
}

impl Rss {
    fn of(pid: u32) -> Self {
        let mb = |field| status_mb(pid, field);
        Self {
            total: mb("VmRSS:"),
            anon: mb("RssAnon:"),
            file: mb("RssFile:") + mb("RssShmem:"),
        }
    }
}

impl std::fmt::Display for Rss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} MB (anon {:.1}, file+shmem {:.1})",
            self.total, self.anon, self.file
        )
    }
}

fn figure_4(
    table: &mut Figures,
    bins: &Binaries,
    fake_llm: &FakeLlm,
    runtime: &tokio::runtime::Runtime,
) {
    println!("[4] {SERVERS} tool servers: deploy through the API, call each once over MCP ...");
    let daemon = start_daemon(&bins.worker, fake_llm, "caxton-tools-memory-");
    let socket = daemon.env.socket.clone();
    // The baseline has been through MCP too, so the session machinery is in both readings.
    runtime.block_on(async {
        let session = mcp_session(&socket).await;
        mcp_rpc(&socket, &session, "tools/list", json!({})).await;
    });
    std::thread::sleep(SETTLE);
    let baseline = Rss::of(daemon.child.id());

    let started = Instant::now();
    runtime.block_on(async {
        for i in 0..SERVERS {
            let server = format!("ping-{i:04}");
            let tool = format!("ping_{i:04}");
            let body = json!({
                "manifest": manifest_for(&server, &tool),
                "module_base64": base64::engine::general_purpose::STANDARD
                    .encode(module_returning(&format!("pong {i:04}"))),
                "origin": format!("/bench/{server}"),
            });
            match call(&socket, Method::POST, "/api/v1/tools", &[], Some(&body)).await {
                Ok((status, _, _)) if status.is_success() => {}
                Ok((status, _, bytes)) => panic!(
                    "deploying {server} answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ),
                Err(e) => panic!("deploying {server}: {e}"),
            }
        }
    });
    let deploy_time = started.elapsed();
    std::thread::sleep(SETTLE);
    let deployed = Rss::of(daemon.child.id());
    let started = Instant::now();
    runtime.block_on(call_every_server(&socket));
    let call_time = started.elapsed();
    std::thread::sleep(SETTLE);
    let called = Rss::of(daemon.child.id());

    println!("[4] restart on the same data directory, call each once again ...");
    let mut daemon = daemon.restart();
    std::thread::sleep(SETTLE);
    let restarted = Rss::of(daemon.child.id());
    let started = Instant::now();
    runtime.block_on(call_every_server(&socket));
    let restart_call_time = started.elapsed();
    std::thread::sleep(SETTLE);
    let restarted_called = Rss::of(daemon.child.id());
    daemon.stop();

    let per_server = |after: &Rss| (after.total - baseline.total) / SERVERS as f64;
    let kb = |mb: f64| format!("{:.0} KB", mb * 1024.0);
    let after_deploy = per_server(&called);
    let after_restart = per_server(&restarted_called);
    table.row(
        format!("4 idle memory per tool server, {SERVERS} deployed + each called once"),
        kb(after_deploy),
        format!(
            "< {SERVER_MEMORY_LIMIT_MB} MB ((VmRSS {:.1} − baseline {:.1} MB) / {SERVERS})",
            called.total, baseline.total
        ),
        verdict(after_deploy < SERVER_MEMORY_LIMIT_MB),
    );
    table.row(
        format!("4 idle memory per tool server, after restart, {SERVERS} each called once"),
        kb(after_restart),
        format!(
            "< {SERVER_MEMORY_LIMIT_MB} MB ((VmRSS {:.1} − baseline {:.1} MB) / {SERVERS})",
            restarted_called.total, baseline.total
        ),
        verdict(after_restart < SERVER_MEMORY_LIMIT_MB),
    );
    let mut context = String::new();
    let _ = writeln!(context, "figure 4 (daemon VmRSS):");
    let _ = writeln!(context, "  no tool server (baseline)        {baseline}");
    let _ = writeln!(
        context,
        "  {SERVERS} deployed, none called       {deployed}   ({:.2} s to deploy)",
        deploy_time.as_secs_f64()
    );
    let _ = writeln!(
        context,
        "  {SERVERS} deployed, each called once  {called}   ({:.2} s for the calls)",
        call_time.as_secs_f64()
    );
    let _ = writeln!(context, "  restarted, none called yet        {restarted}");
    let _ = writeln!(
        context,
        "  restarted, each called once       {restarted_called}   ({:.2} s for the calls, each loaded from the cache)",
        restart_call_time.as_secs_f64()
    );
    table.context.push(context);
}

/// One MCP `tools/call` to each of the figure's servers, checking each answers its own text.
async fn call_every_server(socket: &Path) {
    let session = mcp_session(socket).await;
    for i in 0..SERVERS {
        let result = mcp_rpc(
            socket,
            &session,
            "tools/call",
            json!({"name": format!("ping_{i:04}"), "arguments": {}}),
        )
        .await;
        let text = result["result"]["content"][0]["text"].as_str();
        assert_eq!(
            text,
            Some(format!("pong {i:04}").as_str()),
            "ping_{i:04} answered {result}"
        );
    }
}

/// `initialize` on `/mcp`; returns the session id.
async fn mcp_session(socket: &Path) -> String {
    let body = json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "caxton-tools-bench", "version": "1"}
        }
    });
    let (status, headers, bytes) = call(socket, Method::POST, "/mcp", &[], Some(&body))
        .await
        .unwrap_or_else(|e| panic!("MCP initialize: {e}"));
    assert_eq!(
        status,
        StatusCode::OK,
        "MCP initialize: {}",
        String::from_utf8_lossy(&bytes)
    );
    headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("MCP initialize answered without a session id")
        .to_owned()
}

/// One JSON-RPC request in an MCP session; panics unless it is answered 200.
async fn mcp_rpc(socket: &Path, session: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let headers = [
        ("mcp-session-id", session),
        ("mcp-protocol-version", "2025-06-18"),
        ("accept", "application/json, text/event-stream"),
    ];
    let (status, _, bytes) = call(socket, Method::POST, "/mcp", &headers, Some(&body))
        .await
        .unwrap_or_else(|e| panic!("MCP {method}: {e}"));
    assert_eq!(
        status,
        StatusCode::OK,
        "MCP {method}: {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("MCP {method} answer: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// `caxton serve` on a fresh directory whose name starts with `prefix`, with `worker` as its
/// worker and `llm` as its `fake` provider.
fn start_daemon(worker: &Path, llm: &FakeLlm, prefix: &str) -> Daemon {
    let env = Env::with_config(prefix, "");
    // No built-in tool servers: the repository's are built by others while this runs, and the
    // memory baseline must not depend on them. A JSON string is a valid TOML basic string.
    let builtin = env.data_dir().join("no-builtin-tools");
    std::fs::create_dir_all(&builtin).expect("cannot create a directory");
    let path = |p: &Path| Value::from(p.to_string_lossy().into_owned()).to_string();
    env.write_config(&format!(
        "builtin_tools_dir = {}\n\n[worker]\npath = {}\n\n\
         [providers.fake]\nkind = \"openai\"\nbase_url = \"{}\"\nmodel = \"m\"\n",
        path(&builtin),
        path(worker),
        llm.base_url(),
    ));
    Daemon::start_in(env, &[])
}

/// `caxton tool deploy DIR` against this daemon, as an operator would.
fn cli_deploy_tool(daemon: &Daemon, package: &Path) {
    let out = daemon.cli(&["tool", "deploy", &package.to_string_lossy()]);
    assert!(
        out.status.success(),
        "`caxton tool deploy` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The 1, 5 and 15 minute load averages, as `uptime` prints them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

// ---------------------------------------------------------------------------------------------
// Samples and the table

fn ms3(v: f64) -> String {
    format!("{v:.3} ms")
}

fn us(v: f64) -> String {
    format!("{:.3} µs", v * 1000.0)
}

/// The figures, one row each (figure, measured, limit or comparison, result), and context lines.
#[derive(Default)]
struct Figures {
    table: Table,
    context: Vec<String>,
}

impl Figures {
    fn row(&mut self, figure: impl Into<String>, measured: String, limit: String, result: &str) {
        self.table.row(figure, measured, limit, result);
    }

    fn print(&self) {
        let mut out = self.table.render("Caxton tool benchmark (issue 4)");
        for context in &self.context {
            let _ = write!(out, "\n{context}");
        }
        print!("{out}");
    }
}
