//! Fuzz target `agent_toml`: see `caxton_fuzz_checks::agent_toml` for what it checks.
//! `cargo +nightly fuzz run agent_toml -- -jobs=1` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| caxton_fuzz_checks::agent_toml(data));
