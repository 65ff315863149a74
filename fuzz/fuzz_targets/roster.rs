//! `cargo +nightly fuzz run roster`: see FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isms_fuzzing::roster(data));
