//! The regression corpus: every input under `fuzz/regressions/<target>/` (seeds, and each
//! crash fuzzing ever found) goes through its harness in the normal test suite, so CI runs
//! what the fuzzers taught without running the fuzzers.

use std::path::PathBuf;

#[test]
fn every_regression_input_passes_through_its_harness() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    for (name, harness) in isms_fuzzing::TARGETS {
        let dir = root.join(name);
        let inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        assert!(!inputs.is_empty(), "no regression input for {name}");
        for input in inputs {
            let data = std::fs::read(&input).expect("read");
            harness(&data);
        }
    }
}
