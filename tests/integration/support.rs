//! What only the integration tests need, beside the test kit's harness (test-kit/, re-exported
//! here so every test module reaches it as `crate::support::X`): the misbehaving worker, the
//! built-in tool packages, the test clients' cache and the echo agent.

use std::path::{Path, PathBuf};

pub use caxton_test_kit::api_client::{free_port, http, http_text, read_response};
pub use caxton_test_kit::harness::{
    Daemon, DaemonOptions, Env, KillOnDrop, process_alive, text, wait_child, wait_gone, wait_until,
};
pub use caxton_test_kit::{FakeLlm, ask, echo_agent, models_dir};

/// The `caxton` binary under test.
pub fn caxton_bin() -> PathBuf {
    caxton_test_kit::Binaries::get().caxton.clone()
}

/// The misbehaving worker, optionally under another name (its pre-handshake mode).
pub fn fixture_worker(dir: &Path, mode: &str) -> PathBuf {
    let real = caxton_test_kit::Binaries::get()
        .dir
        .join("caxton-fixture-worker");
    assert!(
        real.exists(),
        "{} missing: run `cargo test --workspace` (it builds the fixtures)",
        real.display()
    );
    if mode.is_empty() {
        return real;
    }
    let link = dir.join(format!("{mode}-worker"));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&real, &link).expect("symlink fixture");
    link
}

/// The repository's built-in tool packages (built by `scripts/build-tools.sh`).
pub fn builtin_tools_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tool-packages/builtin"
    ));
    assert!(
        dir.join("csv/csv_parser.wasm").is_file(),
        "built-in tools are not built: run scripts/build-tools.sh (scripts/setup.sh does)"
    );
    dir
}

/// Where `scripts/install-test-clients.sh` installs the test clients and reference tools.
pub fn test_clients_cache() -> PathBuf {
    std::env::var_os("CAXTON_TOOLS_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("caxton")))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/caxton")
        })
}
