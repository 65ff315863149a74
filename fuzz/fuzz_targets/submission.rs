//! `cargo +nightly fuzz run submission`: see FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isms_fuzzing::submission(data));
