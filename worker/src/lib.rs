//! The worker's library: what the `caxton-worker` binary and the test fixtures share.

pub mod sandbox;
