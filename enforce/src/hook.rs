//! The `hook` point: a command the project cannot know (a URL filter, a DPI box's loader)
//! is given each change as JSON on standard input: the rules added and removed since it
//! last succeeded (all of them, `"full": true`, the first time after a start) and the whole
//! set. Its exit status 0 means the change is in force; one that runs past its timeout is
//! killed and the change failed.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::{Change, Point, run};

pub(crate) struct HookPoint {
    command: Vec<String>,
    timeout: Duration,
    /// What the command last accepted: (kind, value, action).
    accepted: Option<BTreeSet<(String, String, String)>>,
}

impl HookPoint {
    pub(crate) fn new(command: Vec<String>, timeout: Duration) -> Self {
        HookPoint {
            command,
            timeout,
            accepted: None,
        }
    }
}

impl Point for HookPoint {
    fn name(&self) -> &'static str {
        "hook"
    }

    fn converge(&mut self, change: &Change<'_>) -> Result<(), String> {
        let now: BTreeSet<(String, String, String)> = change
            .rules
            .iter()
            .map(|r| (r.kind.clone(), r.value.clone(), r.action.clone()))
            .collect();
        let before = self.accepted.clone().unwrap_or_default();
        let as_json = |set: Vec<&(String, String, String)>| {
            set.into_iter()
                .map(
                    |(kind, value, action)| json!({"kind": kind, "value": value, "action": action}),
                )
                .collect::<Vec<_>>()
        };
        let input = json!({
            "version": change.version,
            "full": self.accepted.is_none(),
            "added": as_json(now.difference(&before).collect()),
            "removed": as_json(before.difference(&now).collect()),
            "rules": as_json(now.iter().collect()),
        });
        run(
            &self.command,
            Some(input.to_string().into_bytes()),
            self.timeout,
        )?;
        self.accepted = Some(now);
        Ok(())
    }
}
