//! Repository rules checked as an ordinary test: every Rust file opens with a `//!` line
//! saying what it is for, and no source file carries `unsafe` code or a `dbg!`.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != ".git" && name != "devnet" {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_says_what_it_is_for() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let mut missing = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        if !text.trim_start().starts_with("//!") {
            missing.push(f.strip_prefix(&root).unwrap_or(f).display().to_string());
        }
        let forbidden = ["unsafe {", "dbg!("];
        for word in forbidden {
            // This file names them; that is not a use.
            if text.contains(word) && !f.ends_with("tidy.rs") {
                panic!("{} contains {word}", f.display());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a `//!` first line: {missing:?}"
    );
}
