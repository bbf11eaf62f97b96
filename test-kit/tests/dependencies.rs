//! The test kit stays test-only and light, checked against the lock file: nothing that ships
//! depends on it, and it links no WebAssembly engine, model runtime, database or Caxton crate
//! (a test binary that links it should not rebuild those for the kit's sake).

use std::process::Command;

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
