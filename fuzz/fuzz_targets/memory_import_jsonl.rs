//! Fuzz target `memory_import_jsonl`: see `caxton_fuzz_checks::memory_import_jsonl` for what it checks.
//! `cargo +nightly fuzz run memory_import_jsonl -- -jobs=1` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| caxton_fuzz_checks::memory_import_jsonl(data));
