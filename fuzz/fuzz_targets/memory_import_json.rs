//! Fuzz target `memory_import_json`: see `caxton_fuzz_checks::memory_import_json` for what it checks.
//! `cargo +nightly fuzz run memory_import_json -- -jobs=1` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| caxton_fuzz_checks::memory_import_json(data));
