//! Fuzz target `config`: see `caxton_fuzz_checks::config` for what it checks.
//! `cargo +nightly fuzz run config -- -jobs=1` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| caxton_fuzz_checks::config(data));
