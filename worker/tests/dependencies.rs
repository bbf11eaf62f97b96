//! The worker's architecture invariant, checked against the lock file: `caxton-worker` links no
//! async runtime, WebAssembly engine, model runtime or database, and only the supervisor links
//! the offline model. Spawn cost is on every request's path, and a worker that could open a
//! database or run a model would hold authority the supervisor alone should have.

use std::process::Command;

/// Crates the worker must never link, by the name `cargo tree` prints.
const FORBIDDEN_IN_WORKER: [&str; 9] = [
    "tokio",
    "wasmtime",
    "candle-core",
    "rusqlite",
    "libsqlite3-sys",
    "reqwest",
    "hyper",
    "caxton-local-llm",
    "caxton-memory",
];

/// `cargo tree` over the workspace's lock file, offline, one package per line.
fn cargo_tree(args: &[&str]) -> Vec<String> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--manifest-path", manifest, "--offline", "--locked"])
        .args(["--prefix", "none", "--color", "never"])
        .args(args)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_worker_links_no_runtime_engine_model_or_database() {
    let linked = cargo_tree(&["-p", "caxton-worker", "-e", "normal"]);
    assert!(
        linked.iter().any(|c| c == "caxton-ipc-protocol"),
        "{linked:?}"
    );
    let found: Vec<&str> = FORBIDDEN_IN_WORKER
        .into_iter()
        .filter(|f| linked.iter().any(|c| c == f))
        .collect();
    assert!(
        found.is_empty(),
        "caxton-worker links {found:?}; the worker must stay small and hold no authority"
    );
}

#[test]
fn only_the_supervisor_links_the_offline_model() {
    // Direct dependents of local-llm among normal dependencies: itself, then who uses it.
    let dependents = cargo_tree(&[
        "--workspace",
        "-i",
        "caxton-local-llm",
        "-e",
        "normal",
        "--depth",
        "1",
    ]);
    assert_eq!(
        dependents,
        ["caxton-local-llm", "caxton-supervisor"],
        "only the supervisor may link the offline model"
    );
}
