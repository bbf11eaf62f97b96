//! Fuzz target `mcp_message`: see `caxton_fuzz_checks::mcp_message` for what it checks.
//! `cargo +nightly fuzz run mcp_message -- -jobs=1` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| caxton_fuzz_checks::mcp_message(data));
