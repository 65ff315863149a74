//! `cargo +nightly fuzz run audit`: see FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isms_fuzzing::audit(data));
