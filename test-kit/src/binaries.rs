//! `caxton` and `caxton-worker` as cargo built them for the running test or bench.
//!
//! A test runs as `target/debug/deps/integration-<hash>` and a bench as
//! `target/release/deps/spine-<hash>`: the binaries are two levels up, in the same profile's
//! directory, so tests start the debug build and benches the release build without being told.
//! Cargo builds the root package's `caxton` for its own tests and benches, but never
//! `caxton-worker` (another package), so a stale worker would be used without a word; a binary
//! older than the sources it is built from is reported.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::workspace_root;

/// What each binary is built from: directories (relative to the workspace root) whose `.rs`
/// files and `Cargo.toml` count. `caxton` links every library crate of the workspace.
const WORKER_SOURCES: &[&str] = &["worker", "ipc-protocol"];
const CAXTON_SOURCES: &[&str] = &[
    "src",
    "supervisor",
    "ipc-protocol",
    "tool-host",
    "local-llm",
    "memory",
];

/// The binaries of one profile directory.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `target/<profile>`.
    pub dir: PathBuf,
    /// The CLI and daemon.
    pub caxton: PathBuf,
    /// The per-request worker.
    pub worker: PathBuf,
}

/// The binaries of this process, located (and checked) once.
static BINARIES: OnceLock<Binaries> = OnceLock::new();

impl Binaries {
    /// The binaries beside the running executable; checks nothing.
    pub fn locate() -> Self {
        let exe = std::env::current_exe().expect("cannot find the running executable");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the running executable is not inside a target/<profile>/deps directory")
            .to_owned();
        Self {
            caxton: dir.join("caxton"),
            worker: dir.join("caxton-worker"),
            dir,
        }
    }

    /// The binaries the harness starts. The first call locates them, panics if `caxton` is
    /// missing, and reports on stderr a missing or stale `caxton-worker` (a test's output shows
    /// it when the test fails).
    pub fn get() -> &'static Self {
        BINARIES.get_or_init(|| {
            let bins = Self::locate();
            assert!(
                bins.caxton.is_file(),
                "{} is missing: run `{}`",
                bins.caxton.display(),
                bins.build_command()
            );
            for problem in bins.problems() {
                eprintln!("warning: {problem}");
            }
            bins
        })
    }

    /// The binaries for a benchmark named `bench`: built with `cargo build --release
    /// --workspace --bins` when either is missing (rather than measure a half-current pair),
    /// and a warning printed for any older than its sources.
    pub fn for_bench(bench: &str) -> &'static Self {
        BINARIES.get_or_init(|| {
            let bins = Self::locate();
            if !(bins.caxton.is_file() && bins.worker.is_file()) {
                eprintln!(
                    "release binaries missing in {}; running `cargo build --release --workspace --bins` \
                     (run it yourself before `cargo bench --bench {bench}` to skip this)",
                    bins.dir.display()
                );
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let status = Command::new(cargo)
                    .args(["build", "--release", "--workspace", "--bins"])
                    .current_dir(workspace_root())
                    .status()
                    .expect("cannot run cargo; run `cargo build --release --workspace --bins` first");
                assert!(
                    status.success(),
                    "`cargo build --release --workspace --bins` failed"
                );
                assert!(
                    bins.caxton.is_file() && bins.worker.is_file(),
                    "{} or {} still missing after the build",
                    bins.caxton.display(),
                    bins.worker.display()
                );
            }
            for problem in bins.problems() {
                println!("warning: {problem}");
            }
            bins
        })
    }

    /// What is wrong with these binaries: each one missing, or older than a source it is built
    /// from, with the command that fixes it.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (binary, sources) in [
            (&self.worker, WORKER_SOURCES),
            (&self.caxton, CAXTON_SOURCES),
        ] {
            let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
                problems.push(format!(
                    "{} is missing; run `{}`",
                    binary.display(),
                    self.build_command()
                ));
                continue;
            };
            let newest = sources
                .iter()
                .filter_map(|d| newest_source(&workspace_root().join(d)))
                .max();
            if newest.is_some_and(|t| t > built) {
                problems.push(format!(
                    "{} is older than sources under {}; run `{}` to {} the current code",
                    binary.display(),
                    sources.join(", "),
                    self.build_command(),
                    if self.is_release() { "measure" } else { "test" }
                ));
            }
        }
        problems
    }

    fn is_release(&self) -> bool {
        self.dir.file_name().is_some_and(|n| n == "release")
    }

    /// The build that brings this profile's binaries up to date.
    fn build_command(&self) -> &'static str {
        if self.is_release() {
            "cargo build --release --workspace --bins"
        } else {
            "cargo build --workspace"
        }
    }
}

/// Latest modification time of the `.rs` and `Cargo.toml` files under `dir`, leaving out
/// `tests/` and `benches/` (they are not in the binary).
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let found = if meta.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "tests" || n == "benches")
            {
                None
            } else {
                newest_source(&path)
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            || path.file_name().is_some_and(|n| n == "Cargo.toml")
        {
            meta.modified().ok()
        } else {
            None
        };
        newest = newest.max(found);
    }
    newest
}
