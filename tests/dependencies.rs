//! The crate boundaries ARCHITECTURE.md states, checked against the lock file:
//! - `caxton-worker` links no async runtime, WebAssembly engine, model runtime or database, and
//!   only the supervisor links the offline model. Spawn cost is on every request's path, and a
//!   worker that could open a database or run a model would hold authority the supervisor alone
//!   should have.
//! - The API contract links no Caxton crate and no runtime, so a client links it alone and a
//!   worker-protocol change never reaches the API.
//! - The CLI does not depend on the worker protocol: it speaks the API contract.
//! - The test kit stays test-only and light: nothing that ships depends on it, and it links no
//!   WebAssembly engine, model runtime, database or Caxton crate (a test binary that links it
//!   should not rebuild those for the kit's sake).

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

/// Crates the kit must never link, by the name `cargo tree` prints.
const FORBIDDEN_IN_KIT: [&str; 9] = [
    "wasmtime",
    "candle-core",
    "rusqlite",
    "libsqlite3-sys",
    "caxton-supervisor",
    "caxton-tool-host",
    "caxton-local-llm",
    "caxton-memory",
    "caxton-ipc-protocol",
];

/// `cargo tree` over the workspace's lock file, offline, one package per line.
fn cargo_tree(args: &[&str]) -> Vec<String> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
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

#[test]
fn the_api_contract_links_no_caxton_crate_and_no_runtime() {
    let linked = cargo_tree(&["-p", "caxton-api-contract", "-e", "normal"]);
    let found: Vec<&String> = linked
        .iter()
        .filter(|c| {
            (c.starts_with("caxton-") && *c != "caxton-api-contract")
                || [
                    "tokio",
                    "hyper",
                    "axum",
                    "wasmtime",
                    "rusqlite",
                    "candle-core",
                ]
                .contains(&c.as_str())
        })
        .collect();
    assert!(
        found.is_empty(),
        "caxton-api-contract links {found:?}; it must stay plain data"
    );
}

#[test]
fn the_cli_speaks_the_api_contract_not_the_worker_protocol() {
    let direct = cargo_tree(&["-p", "caxton", "-e", "normal", "--depth", "1"]);
    assert!(
        direct.iter().any(|c| c == "caxton-api-contract"),
        "{direct:?}"
    );
    assert!(
        !direct.iter().any(|c| c == "caxton-ipc-protocol"),
        "the caxton CLI depends on the worker protocol directly: {direct:?}"
    );
}

#[test]
fn the_kit_links_no_engine_model_database_or_caxton_crate() {
    let linked = cargo_tree(&["-p", "caxton-test-kit", "-e", "normal"]);
    assert!(linked.iter().any(|c| c == "axum"), "{linked:?}");
    let found: Vec<&str> = FORBIDDEN_IN_KIT
        .into_iter()
        .filter(|f| linked.iter().any(|c| c == f))
        .collect();
    assert!(found.is_empty(), "caxton-test-kit links {found:?}");
}

#[test]
fn nothing_that_ships_depends_on_the_kit() {
    // Its dependents over normal and build edges: none but itself (the root package has it as a
    // dev-dependency, which this leaves out).
    let dependents = cargo_tree(&["--workspace", "-i", "caxton-test-kit", "-e", "normal,build"]);
    assert_eq!(
        dependents,
        ["caxton-test-kit"],
        "only tests and benches may use the test kit"
    );
}
