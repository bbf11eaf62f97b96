//! A call's time limit holds inside WASI too: a module that sleeps through `poll_oneoff` ends at
//! its deadline, and slow calls of one tool or one caller leave slots for everyone else.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_tool_host::{
    CallLimits, CallSlots, HostLimits, SlotLimits, ToolFault, ToolHost, ToolModule,
};
use tokio::sync::mpsc;

/// Sleeps through `poll_oneoff` with one clock subscription, chosen by the tool name's first
/// letter: `relative` (monotonic, 10 s from now), `absolute` (monotonic, absolute time now +
/// 10 s), `wallclock` (realtime, absolute time now + 10 s), `short` (monotonic, 20 ms from now),
/// `loop` (20 ms sleeps, one after another, for ever); anything else does not sleep. Returns `{"content":[],"errno":"NN"}` with poll_oneoff's errno.
const SLEEPER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $time (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 4096))
  (data (i32.const 1024) "{\"content\":[],\"errno\":\"00\"}")
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (local.get $p))
  ;; One clock subscription at 256 (userdata, tag 0 = clock, clock id, timeout, precision,
  ;; flags), one event at 512, the event count at 600.
  (func $sleep (param $clock i32) (param $timeout i64) (param $flags i32) (result i32)
    (i64.store (i32.const 256) (i64.const 7))
    (i32.store8 (i32.const 264) (i32.const 0))
    (i32.store (i32.const 272) (local.get $clock))
    (i64.store (i32.const 280) (local.get $timeout))
    (i64.store (i32.const 288) (i64.const 0))
    (i32.store16 (i32.const 296) (local.get $flags))
    (call $poll (i32.const 256) (i32.const 512) (i32.const 1) (i32.const 600)))
  (func $now (param $clock i32) (result i64)
    (drop (call $time (local.get $clock) (i64.const 1) (i32.const 608)))
    (i64.load (i32.const 608)))
  (func (export "caxton_call") (param $np i32) (param $nl i32) (param $ap i32) (param $al i32) (result i64)
    (local $c i32) (local $errno i32)
    (local.set $c (i32.load8_u (local.get $np)))
    (local.set $errno
      (if (result i32) (i32.eq (local.get $c) (i32.const 114))
        (then (call $sleep (i32.const 1) (i64.const 10000000000) (i32.const 0)))
        (else (if (result i32) (i32.eq (local.get $c) (i32.const 97))
          (then (call $sleep (i32.const 1)
            (i64.add (call $now (i32.const 1)) (i64.const 10000000000)) (i32.const 1)))
          (else (if (result i32) (i32.eq (local.get $c) (i32.const 119))
            (then (call $sleep (i32.const 0)
              (i64.add (call $now (i32.const 0)) (i64.const 10000000000)) (i32.const 1)))
            (else (if (result i32) (i32.eq (local.get $c) (i32.const 115))
              (then (call $sleep (i32.const 1) (i64.const 20000000) (i32.const 0)))
              (else (if (result i32) (i32.eq (local.get $c) (i32.const 108))
                (then
                  (loop $again
                    (drop (call $sleep (i32.const 1) (i64.const 20000000) (i32.const 0)))
                    (br $again))
                  (i32.const 0))
                (else (i32.const 0))))))))))))
    (i32.store8 (i32.const 1047) (i32.add (i32.const 48) (i32.div_u (local.get $errno) (i32.const 10))))
    (i32.store8 (i32.const 1048) (i32.add (i32.const 48) (i32.rem_u (local.get $errno) (i32.const 10))))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 27))))
"#;

fn host(cache: &std::path::Path, instances: u32) -> ToolHost {
    ToolHost::new(
        cache,
        HostLimits {
            max_instances: instances,
            max_memory_bytes: 16 << 20,
        },
    )
    .unwrap()
}

fn limits(wall: Duration) -> CallLimits {
    CallLimits {
        wall,
        ..CallLimits::default()
    }
}

#[test]
fn a_wasi_sleep_past_the_limit_ends_at_the_deadline() {
    let cache = tempfile::tempdir().unwrap();
    let h = host(cache.path(), 4);
    let m = h
        .load("sleeper", &wat::parse_str(SLEEPER).unwrap())
        .unwrap();
    let wall = Duration::from_millis(500);
    for tool in ["relative", "absolute", "wallclock"] {
        let started = Instant::now();
        let fault = m.call(tool, "{}", limits(wall)).unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(fault, ToolFault::WallClock { limit, .. } if limit == wall),
            "{tool}: {fault:?}"
        );
        assert!(fault.to_string().contains("time limit"), "{tool}: {fault}");
        // At the deadline: not before it, and nowhere near the 10 s it asked for.
        assert!(
            took >= wall && took < wall + Duration::from_secs(1),
            "{tool} took {took:?}"
        );
    }
    // Short host calls in a loop: each is within the limit and spends almost no fuel, so only
    // the call's own deadline can end it.
    let started = Instant::now();
    let fault = m.call("loop", "{}", limits(wall)).unwrap_err();
    assert!(
        matches!(fault, ToolFault::WallClock { limit, .. } if limit == wall),
        "{fault:?}"
    );
    assert!(started.elapsed() < wall + Duration::from_secs(1));
    // A sleep inside the limit is WASI's as before: it sleeps, and succeeds.
    let started = Instant::now();
    let ok = m.call("short", "{}", limits(wall)).unwrap();
    assert_eq!(ok["errno"], "00", "{ok}");
    assert!(started.elapsed() >= Duration::from_millis(20));
}

/// Starts one call per `(server, caller)` in `hogs`, each taking a slot and then sleeping in
/// WASI until its deadline; then checks that a call of an unrelated server and caller gets a
/// slot and finishes while every hog that got a slot is still sleeping in it.
async fn an_unrelated_call_runs_while(
    slots: Arc<CallSlots>,
    hogs: Vec<(String, String, Arc<ToolModule>)>,
    expected_running: usize,
    unrelated: Arc<ToolModule>,
) {
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (server, caller, module) in hogs {
        let (slots, started_tx, finished_tx) =
            (slots.clone(), started_tx.clone(), finished_tx.clone());
        tasks.push(tokio::spawn(async move {
            let slot = slots.acquire(&server, &caller).await.unwrap();
            started_tx.send(()).unwrap();
            let result = tokio::task::spawn_blocking(move || {
                module.call("relative", "{}", limits(Duration::from_millis(500)))
            })
            .await
            .unwrap();
            drop(slot);
            finished_tx.send(()).unwrap();
            result
        }));
    }
    for _ in 0..expected_running {
        started_rx.recv().await.unwrap();
    }
    // The hogs' shares are full: the rest of them wait, and the pool still has room.
    assert_eq!(slots.running(), expected_running);
    assert!(expected_running < slots.limits().total);

    let started = Instant::now();
    let slot = slots.acquire("ping", "someone-else").await.unwrap();
    let result = tokio::task::spawn_blocking(move || {
        unrelated.call("ping", "{}", limits(Duration::from_secs(5)))
    })
    .await
    .unwrap()
    .unwrap();
    drop(slot);
    assert_eq!(result["errno"], "00");
    assert!(
        finished_rx.try_recv().is_err(),
        "the unrelated call finished only after a hog gave its slot back ({:?})",
        started.elapsed()
    );

    for task in tasks {
        let fault = task.await.unwrap().unwrap_err();
        assert!(matches!(fault, ToolFault::WallClock { .. }), "{fault:?}");
    }
    assert_eq!(slots.running(), 0);
    assert_eq!(slots.tracked_shares(), 0, "idle shares are forgotten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_tool_cannot_take_every_slot() {
    let cache = tempfile::tempdir().unwrap();
    let h = host(cache.path(), 8);
    let wasm = wat::parse_str(SLEEPER).unwrap();
    let sleeper = Arc::new(h.load("sleeper", &wasm).unwrap());
    let ping = Arc::new(h.load("ping", &wasm).unwrap());
    let slots = Arc::new(CallSlots::new(SlotLimits::for_pool(8)));
    let per_server = slots.limits().per_server;
    // Many agents, one tool: each agent is within its own share; the tool's share is the bound.
    let hogs = (0..per_server + 2)
        .map(|i| ("sleeper".to_owned(), format!("agent-{i}"), sleeper.clone()))
        .collect();
    an_unrelated_call_runs_while(slots, hogs, per_server, ping).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slow_agent_cannot_take_every_slot() {
    let cache = tempfile::tempdir().unwrap();
    let h = host(cache.path(), 8);
    let wasm = wat::parse_str(SLEEPER).unwrap();
    let ping = Arc::new(h.load("ping", &wasm).unwrap());
    let slots = Arc::new(CallSlots::new(SlotLimits::for_pool(8)));
    let per_caller = slots.limits().per_caller;
    // One agent, many tools: each tool is within its share; the agent's share is the bound.
    let hogs = (0..per_caller + 2)
        .map(|i| {
            let name = format!("sleeper{i}");
            let module = Arc::new(h.load(&name, &wasm).unwrap());
            (name, "busy-agent".to_owned(), module)
        })
        .collect();
    an_unrelated_call_runs_while(slots, hogs, per_caller, ping).await;
}
