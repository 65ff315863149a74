//! The `file` point: the rules in force as a JSON file (written atomically), for systems
//! that read a file. What an enterprise without other points writes (`rules_file`).

use std::path::PathBuf;

use crate::{Change, Point, Rule, write_atomically};

/// The rules file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RuleFile {
    pub generated_at_ms: i64,
    pub rules: Vec<Rule>,
}

pub(crate) struct FilePoint {
    path: PathBuf,
}

impl FilePoint {
    pub(crate) fn new(path: PathBuf) -> Self {
        FilePoint { path }
    }
}

impl Point for FilePoint {
    fn name(&self) -> &'static str {
        "file"
    }

    fn wants_every_change(&self) -> bool {
        true
    }

    fn converge(&mut self, change: &Change<'_>) -> Result<(), String> {
        let file = RuleFile {
            generated_at_ms: change.now_ms,
            rules: change.rules.iter().map(|r| (*r).clone()).collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        write_atomically(&self.path, &bytes)
            .map_err(|e| format!("{} not written: {e}", self.path.display()))
    }
}
