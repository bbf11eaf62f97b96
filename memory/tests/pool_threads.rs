//! A dropped store leaves no thread behind: a process that opens stores one after another (the
//! CLI's commands, a library user, the import fuzzer) does not pile up threads. Its own test
//! binary, so no other test's store is open meanwhile.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use caxton_memory::{HashEmbedder, Memory, MemoryOptions};

/// This process's threads (the test harness's and this test's, and the stores').
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn a_dropped_store_stops_its_threads_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Memory::open(
            &dir.path().join("memory.db"),
            Arc::new(HashEmbedder),
            MemoryOptions::default(),
        )
        .unwrap()
    };
    let before = threads();
    let kept = open();
    let one_store = threads();
    assert!(one_store > before, "a store runs a thread of its own");
    for _ in 0..20 {
        drop(open());
    }
    // Before the fix, each dropped store's three threads stayed until r2d2's 30 s reaper ran.
    let give_up = Instant::now() + Duration::from_secs(2);
    while threads() > one_store && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(threads(), one_store, "dropped stores left threads behind");
    drop(kept);
}
