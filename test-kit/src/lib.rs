//! The Caxton test kit: what the end-to-end tests (`tests/integration/`) and the benchmarks
//! (`benches/`) share, in one copy.
//!
//! - [`binaries`]: `caxton` and `caxton-worker` in the target directory of the running test or
//!   bench (`target/debug` for tests, `target/release` for benches), with a clear message when
//!   one is missing or older than its sources.
//! - [`harness`]: a daemon under test. [`Env`] is a scratch data directory with a config file,
//!   [`Daemon`] a `caxton serve` started on it, ready once its health endpoint answers, stopped
//!   with SIGTERM (and killed on drop, so a failing test leaves nothing running).
//! - [`fake_llm`]: [`FakeLlm`], the loopback OpenAI- and Anthropic-compatible server, scripted by
//!   the request text and as strict as llama.cpp's server.
//! - [`api_client`]: HTTP/1.1 over the daemon's Unix socket: a blocking client for tests and
//!   set-up, and the async hyper client the benches time.
//! - [`stats`], [`procfs`], [`table`]: percentiles, readings of `/proc`, the benches' result table.
//!
//! The harness is synchronous (std processes and sockets): the tests are plain `#[test]`
//! functions and starting, waiting for and stopping one daemon needs no concurrency. Only the
//! fake LLM server (which must answer concurrent and hanging requests) and the client the
//! benches measure run on tokio. This crate is a dev-dependency only and links no engine, model
//! runtime or database.

#![allow(
    clippy::unwrap_used,
    reason = "a test or bench that cannot set up should fail loudly"
)]

pub mod agent_files;
pub mod api_client;
pub mod binaries;
pub mod fake_llm;
pub mod harness;
pub mod procfs;
pub mod stats;
pub mod table;

pub use agent_files::{ask, echo_agent};
pub use api_client::{free_port, http, read_response};
pub use binaries::Binaries;
pub use fake_llm::FakeLlm;
pub use harness::{
    Daemon, DaemonOptions, Env, KillOnDrop, process_alive, text, wait_child, wait_gone, wait_until,
};

use std::path::{Path, PathBuf};

/// The root of the Caxton workspace (where `Cargo.toml`, `models/` and `tools/` are).
pub fn workspace_root() -> &'static Path {
    // This crate lives in `test-kit/` directly under the root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-kit/ sits inside the workspace")
}

/// Where `scripts/fetch-models.sh` puts the weights; `CAXTON_MODELS_DIR` overrides it.
pub fn models_dir() -> PathBuf {
    std::env::var_os("CAXTON_MODELS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("models"))
}

/// What every bench starts with: the release binaries it measures (printed, so a reader knows
/// which), a multi-threaded runtime, and the fake LLM server on that runtime, scheduled with
/// the bench's own clients.
pub fn bench_start(
    bench: &str,
) -> std::io::Result<(&'static Binaries, tokio::runtime::Runtime, FakeLlm)> {
    let bins = Binaries::for_bench(bench);
    println!("caxton:        {}", bins.caxton.display());
    println!("caxton-worker: {}", bins.worker.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let llm = FakeLlm::start_in(runtime.handle());
    Ok((bins, runtime, llm))
}
