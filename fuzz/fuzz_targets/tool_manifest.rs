//! Fuzz target `tool_manifest`: see `caxton_fuzz_checks::tool_manifest` for what it checks.
//! `cargo +nightly fuzz run tool_manifest -- -jobs=1` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| caxton_fuzz_checks::tool_manifest(data));
