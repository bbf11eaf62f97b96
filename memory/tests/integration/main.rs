//! Integration tests of the memory crate, one binary (faster to link, one place to look).
//! Everything here uses the deterministic test embedder except `model`, which loads the real
//! all-MiniLM-L6-v2 from the models directory.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot set up should fail loudly"
)]

mod common;
mod durability;
mod export;
mod graph;
mod model;
mod search;
mod storage;
