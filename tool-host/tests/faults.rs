//! Modules that misbehave on purpose: each fault is an error for that call only, naming the
//! cause, and the next call works.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot set up should fail loudly"
)]

use std::time::Duration;

use caxton_tool_host::{CallLimits, HostLimits, LoadError, ToolFault, ToolHost};

const RESULT: &str = r#"{"content":[{"type":"text","text":"pong"}],"isError":false}"#;

/// A module implementing the ABI whose `caxton_call` runs `body` and then returns the bytes of
/// `result` from a data segment.
fn module(body: &str, result: &str) -> Vec<u8> {
    let escaped = result.replace('\\', "\\\\").replace('"', "\\\"");
    let wat = format!(
        r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 4096))
  (data (i32.const 1024) "{escaped}")
  (func $recurse (call $recurse))
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (local.get $p))
  (func (export "caxton_call") (param i32 i32 i32 i32) (result i64)
    {body}
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const {len}))))"#,
        len = result.len()
    );
    wat::parse_str(wat).unwrap()
}

fn limits() -> CallLimits {
    CallLimits {
        fuel: 20_000_000,
        wall: Duration::from_secs(5),
        memory_bytes: 4 << 20,
    }
}

fn host(dir: &std::path::Path) -> ToolHost {
    ToolHost::new(
        dir,
        HostLimits {
            max_instances: 8,
            max_memory_bytes: 16 << 20,
        },
    )
    .unwrap()
}

#[test]
fn a_well_behaved_tool_answers_with_a_call_tool_result() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let ok = host.load("ping", &module("", RESULT)).unwrap();
    let result = ok.call("ping", r#"{"x":1}"#, limits()).unwrap();
    assert_eq!(result["content"][0]["text"], "pong");
    // Fresh instances: the bump allocator starts over every call, so a thousand calls never
    // exhaust the one page of memory.
    for _ in 0..1000 {
        ok.call("ping", &"y".repeat(1000), limits()).unwrap();
    }
}

#[test]
fn compiled_modules_are_cached_on_disk_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    host.load("ping", &module("", RESULT)).unwrap();
    let cached: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(cached.len(), 1, "one .cwasm file");
    let again = host.load("ping", &module("", RESULT)).unwrap();
    assert_eq!(
        again.call("ping", "{}", limits()).unwrap()["content"][0]["text"],
        "pong"
    );
}

fn assert_fault(
    body: &str,
    result: &str,
    call_limits: CallLimits,
    expected: impl Fn(&ToolFault) -> bool,
    words: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let bad = host.load("bad", &module(body, result)).unwrap();
    let fault = bad.call("t", "{}", call_limits).unwrap_err();
    assert!(expected(&fault), "{fault:?}");
    assert!(fault.to_string().contains(words), "{fault}");
    // The host is fine: the next call to a good module works.
    let ok = host.load("ping", &module("", RESULT)).unwrap();
    assert_eq!(
        ok.call("ping", "{}", limits()).unwrap()["content"][0]["text"],
        "pong"
    );
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    assert_fault(
        "(loop $l (br $l))",
        RESULT,
        limits(),
        |f| matches!(f, ToolFault::OutOfFuel { .. }),
        "CPU budget",
    );
}

#[test]
fn an_infinite_loop_with_fuel_to_spare_hits_the_wall_clock() {
    let slow = CallLimits {
        fuel: u64::MAX,
        wall: Duration::from_millis(50),
        ..limits()
    };
    assert_fault(
        "(loop $l (br $l))",
        RESULT,
        slow,
        |f| matches!(f, ToolFault::WallClock { .. }),
        "did not finish within 50ms",
    );
}

#[test]
fn growing_memory_stops_at_the_limit() {
    let grow =
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable";
    assert_fault(
        grow,
        RESULT,
        limits(),
        |f| matches!(f, ToolFault::OutOfMemory { limit, .. } if *limit == 4 << 20),
        "memory limit of 4194304 bytes",
    );
}

#[test]
fn deep_recursion_overflows_the_stack() {
    assert_fault(
        "(call $recurse)",
        RESULT,
        limits(),
        |f| matches!(f, ToolFault::StackOverflow { .. }),
        "recursion too deep",
    );
}

#[test]
fn a_trap_is_a_crash_of_that_call() {
    assert_fault(
        "unreachable",
        RESULT,
        limits(),
        |f| matches!(f, ToolFault::Trap { .. }),
        "unreachable",
    );
}

#[test]
fn output_that_is_not_json_is_refused() {
    assert_fault(
        "",
        "this is not json",
        limits(),
        |f| matches!(f, ToolFault::BadOutput { .. }),
        "not JSON",
    );
    assert_fault(
        "",
        r#"{"text":"no content"}"#,
        limits(),
        |f| matches!(f, ToolFault::BadOutput { .. }),
        "no `content` array",
    );
}

#[test]
fn a_module_with_the_wrong_signature_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let wrong = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "caxton_alloc") (param i32) (result i32) (i32.const 0))
             (func (export "caxton_call") (param i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let err = host.load("wrong", &wrong).err().unwrap();
    assert!(matches!(err, LoadError::Abi { .. }), "{err}");
    assert!(err.to_string().contains("`caxton_call` has type"), "{err}");
    let err = host.load("garbage", b"not wasm").err().unwrap();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
}
