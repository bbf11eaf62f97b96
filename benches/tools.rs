//! `cargo bench --bench tools`: a trivial MCP tool call inside the supervisor's tool host, fresh
//! instance included, beside a bare call of the same export on an already-instantiated module,
//! both measured in this run on one thread (issue 4's first figure).
//!
//! Goals: p99 under 1 ms and at least 50,000 calls per second on one core.

use std::time::{Duration, Instant};

use caxton_tool_host::{CallLimits, HostLimits, ToolHost};

const CALLS: usize = 100_000;
const WARMUP: usize = 2_000;
const RESULT: &str = r#"{"content":[{"type":"text","text":"pong"}],"isError":false}"#;

fn module() -> Vec<u8> {
    let escaped = RESULT.replace('"', "\\\"");
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
        len = RESULT.len()
    );
    wat::parse_str(wat).expect("the benchmark module is valid WAT")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let wasm = module();
    let cache = tempfile::tempdir().expect("cannot create a temporary directory");

    // Through the host: fresh instance, arguments in, CallToolResult parsed and checked.
    let host =
        ToolHost::new(cache.path(), HostLimits::default()).expect("cannot start the tool host");
    let started = Instant::now();
    let tool = host.load("ping", &wasm).expect("cannot load the module");
    let first_load = started.elapsed();
    let started = Instant::now();
    let tool = {
        drop(tool);
        host.load("ping", &wasm)
            .expect("cannot load the module from the cache")
    };
    let cached_load = started.elapsed();
    let limits = CallLimits::default();
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
        samples.push(t.elapsed());
        std::hint::black_box(result);
    }
    let total = all.elapsed();
    samples.sort();

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
        bare.push(t.elapsed());
    }
    bare.sort();

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let rate = CALLS as f64 / total.as_secs_f64();
    let p99 = percentile(&samples, 0.99);
    println!("Caxton tool-host benchmark ({CALLS} calls, one thread)");
    println!("| figure | measured | limit / comparison | result |");
    println!("|---|---|---|---|");
    println!(
        "| tool call p50, fresh instance | {:.1} µs | bare call on a live instance p50 {:.3} µs | info |",
        us(percentile(&samples, 0.5)),
        us(percentile(&bare, 0.5))
    );
    println!(
        "| tool call p99, fresh instance | {:.1} µs | < 1000 µs (bare p99 {:.3} µs) | {} |",
        us(p99),
        us(percentile(&bare, 0.99)),
        if p99 < Duration::from_millis(1) {
            "PASS"
        } else {
            "FAIL"
        }
    );
    println!(
        "| tool calls per second, one core | {rate:.0}/s | ≥ 50000/s | {} |",
        if rate >= 50_000.0 { "PASS" } else { "FAIL" }
    );
    println!(
        "| module load: compile / from the disk cache | {:.2} ms / {:.2} ms | cache under 10 ms | {} |",
        first_load.as_secs_f64() * 1e3,
        cached_load.as_secs_f64() * 1e3,
        if cached_load < Duration::from_millis(10) {
            "PASS"
        } else {
            "FAIL"
        }
    );
}
