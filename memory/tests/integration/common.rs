//! Helpers shared by the tests: a memory on a temporary file, and child processes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use caxton_memory::{EntityInput, HashEmbedder, Memory, MemoryOptions, Scope};

/// A memory with the test embedder on a fresh temporary file.
pub fn memory() -> (tempfile::TempDir, Memory) {
    let dir = tempfile::tempdir().unwrap();
    let m = open(&dir.path().join("memory.db"), MemoryOptions::default());
    (dir, m)
}

/// Open `path` with the test embedder.
pub fn open(path: &Path, options: MemoryOptions) -> Memory {
    Memory::open(path, Arc::new(HashEmbedder), options).unwrap()
}

/// An entity input.
pub fn entity(name: &str, entity_type: &str, observations: &[&str]) -> EntityInput {
    EntityInput {
        name: name.into(),
        entity_type: entity_type.into(),
        observations: observations.iter().map(|s| (*s).to_owned()).collect(),
        metadata: None,
    }
}

/// A workspace scope.
pub fn ws(name: &str) -> Scope {
    Scope::workspace(name).unwrap()
}

/// Environment variable that tells an ignored test it runs as a child process.
pub const CHILD_ENV: &str = "CAXTON_MEMORY_TEST_CHILD";

/// Re-run this test binary as a child running only the ignored test `name`, with `arg` in
/// `CHILD_ENV` and stdout piped.
pub fn spawn_child(name: &str, arg: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, arg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The argument given to a child, or `None` when the ignored test was run by hand.
pub fn child_arg() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}
