//! The `hook` point: a command the project cannot know (a URL filter, a DPI box's loader)
//! is given each change as JSON on standard input: the rules added and removed since it
//! last succeeded (all of them, `"full": true`, the first time after a start) and the whole
//! set. Its exit status 0 means the change is in force; one that runs past its timeout is
//! killed and the change failed.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::{Change, Point, run_command};

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
        run_command(
            &self.command,
            Some(input.to_string().into_bytes()),
            self.timeout,
        )?;
        self.accepted = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rule;

    fn rule(kind: &str, value: &str) -> Rule {
        Rule {
            directive: "d".into(),
            action: "block".into(),
            kind: kind.into(),
            value: value.into(),
            issuer: "ministry".into(),
            applied_at_ms: 0,
            effective_at_ms: 0,
            expires_at_ms: 0,
        }
    }

    #[test]
    fn the_hook_gets_each_change_and_a_hung_one_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seen = dir.path().join("seen.json");
        let cmd = vec![
            "sh".to_string(),
            "-c".to_string(),
            format!("cat > {}", seen.display()),
        ];
        let mut hook = HookPoint::new(cmd, Duration::from_secs(10));
        let (a, b) = (rule("url", "http://a.example/x"), rule("keyword", "kw"));
        hook.converge(&Change {
            version: 1,
            now_ms: 0,
            rules: &[&a, &b],
        })
        .expect("first");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&seen).expect("seen")).expect("json");
        assert_eq!(v["full"], true);
        assert_eq!(v["added"].as_array().map(Vec::len), Some(2));
        hook.converge(&Change {
            version: 2,
            now_ms: 0,
            rules: &[&b],
        })
        .expect("second");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&seen).expect("seen")).expect("json");
        assert_eq!(v["full"], false);
        assert_eq!(v["removed"][0]["value"], "http://a.example/x");
        assert_eq!(v["added"], serde_json::json!([]));

        let failing = vec!["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()];
        let err = HookPoint::new(failing, Duration::from_secs(10))
            .converge(&Change {
                version: 1,
                now_ms: 0,
                rules: &[&a],
            })
            .expect_err("exit 3");
        assert!(
            err.contains("exit status: 3") && err.contains("nope"),
            "{err}"
        );

        let hung = vec!["sleep".into(), "30".into()];
        let started = std::time::Instant::now();
        let err = HookPoint::new(hung, Duration::from_millis(300))
            .converge(&Change {
                version: 1,
                now_ms: 0,
                rules: &[&a],
            })
            .expect_err("hung");
        assert!(err.contains("was killed"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "killed, not waited for"
        );
    }
}
