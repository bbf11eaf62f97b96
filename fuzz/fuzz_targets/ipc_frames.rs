//! Fuzz target `ipc_frames`: see `caxton_fuzz_checks::ipc_frames` for what it checks.
//! `cargo +nightly fuzz run ipc_frames -- -jobs=1` (docs/fuzzing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| caxton_fuzz_checks::ipc_frames(data));
