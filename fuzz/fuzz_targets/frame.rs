//! `cargo +nightly fuzz run frame`: see FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isms_fuzzing::frame(data));
