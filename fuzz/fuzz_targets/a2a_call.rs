//! Fuzz target `a2a_call`: see `caxton_fuzz_checks::a2a_call` for what it checks.
//! `cargo +nightly fuzz run a2a_call -- -jobs=1` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| caxton_fuzz_checks::a2a_call(data));
