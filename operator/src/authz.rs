//! Who may do what (R-13.1): the roles, the roster that gives operators their roles, and the
//! one table of the role each operator RPC needs. Deny by default: an operator not in the
//! roster, a roster that is missing or an RPC without a table entry is refused.
//!
//! Must not decide jurisdiction (which enterprises a node may act on): the core does, as it
//! always has; a role only says which calls an operator may make at all.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

/// What an operator may do at a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read directives, their states and the node's status.
    Viewer,
    /// Issue, revoke, query, correct; confirm and return at a province; report a
    /// correction done at an enterprise.
    Operator,
    /// Approve or reject a major directive another operator issued (O-6).
    Approver,
    /// Read, verify and export the audit trail (R-13.2).
    Auditor,
    /// The roster and, in testing, the clock.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Operator,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = RosterError;
    fn from_str(s: &str) -> Result<Self, RosterError> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| RosterError::UnknownRole(s.to_string()))
    }
}

/// The role each operator RPC needs: the one table. An RPC of the `Operator` service that
/// is not here is refused to everyone (the end-to-end matrix test lists the service's
/// methods from its descriptor and fails on one missing here).
pub const PERMISSIONS: &[(&str, Role)] = &[
    ("IssueDirective", Role::Operator),
    ("GetDirective", Role::Viewer),
    ("GetDirectiveSummary", Role::Viewer),
    ("ListDirectives", Role::Viewer),
    ("NodeStatus", Role::Viewer),
    ("ConfirmDirective", Role::Operator),
    ("ReturnDirective", Role::Operator),
    ("ListPending", Role::Viewer),
    ("ReportCorrected", Role::Operator),
    ("ListAudit", Role::Auditor),
    ("VerifyAudit", Role::Auditor),
    ("ApproveDirective", Role::Approver),
    ("RejectDirective", Role::Approver),
    ("ListAuditHeads", Role::Auditor),
    ("AuditExported", Role::Auditor),
    ("GetBlacklist", Role::Viewer),
    // Asks the parent for the whole list when it finds a mismatch.
    ("VerifyBlacklist", Role::Operator),
    ("BlacklistLag", Role::Viewer),
    ("NetworkStatus", Role::Viewer),
    ("NetworkNode", Role::Viewer),
    ("ReportFault", Role::Operator),
    ("AcknowledgeFault", Role::Operator),
    ("ResolveFault", Role::Operator),
    ("ListFaults", Role::Viewer),
    ("AnnounceUpgrade", Role::Operator),
    ("ListUpgrades", Role::Viewer),
    ("SetContact", Role::Operator),
    ("ListContacts", Role::Viewer),
    ("SubmitData", Role::Operator),
    ("ListData", Role::Viewer),
    ("OperationReport", Role::Viewer),
    ("OpenConsole", Role::Viewer),
];

/// The role `method` (an RPC name of the `Operator` service) needs; none if it has no entry.
pub fn required_role(method: &str) -> Option<Role> {
    PERMISSIONS
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, role)| *role)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RosterError {
    #[error("cannot read the roster {path}: {why}")]
    Read { path: String, why: String },
    #[error("roster {path}: {why}")]
    Malformed { path: String, why: String },
    #[error("unknown role {0:?}: one of viewer, operator, approver, auditor, admin")]
    UnknownRole(String),
    #[error("operator {0:?} is not a valid operator name")]
    BadName(String),
}

/// Operators and their roles, from the roster file named by the config's `roster`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    roles: BTreeMap<String, BTreeSet<Role>>,
}

/// The file: `[operators]` maps each operator name to its roles.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterFile {
    #[serde(default)]
    operators: BTreeMap<String, Vec<String>>,
}

impl Roster {
    /// Parses a roster; `path` only names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Roster, RosterError> {
        let file: RosterFile = toml::from_str(text).map_err(|e| RosterError::Malformed {
            path: path.to_string(),
            why: e.message().to_string(),
        })?;
        let mut roles = BTreeMap::new();
        for (name, names) in file.operators {
            // The name is the last segment of an operator's SPIFFE ID.
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(RosterError::BadName(name));
            }
            let set = names
                .iter()
                .map(|r| r.parse())
                .collect::<Result<BTreeSet<Role>, _>>()?;
            roles.insert(name, set);
        }
        Ok(Roster { roles })
    }

    pub fn load(path: &Path) -> Result<Roster, RosterError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RosterError::Read {
            path: shown.clone(),
            why: e.to_string(),
        })?;
        Roster::parse(&text, &shown)
    }

    /// Whether `operator` may call `method`: `Err` names what is missing.
    pub fn authorize(&self, operator: &str, method: &str) -> Result<Role, String> {
        let Some(needed) = required_role(method) else {
            return Err(format!("{method} has no entry in the permission table"));
        };
        let Some(held) = self.roles.get(operator) else {
            return Err(format!(
                "operator {operator:?} is not in this node's roster (needs role {needed})"
            ));
        };
        // Reading is every role's: an approver looks at what it approves, an auditor at
        // what the trail names.
        if held.contains(&needed) || (needed == Role::Viewer && !held.is_empty()) {
            Ok(needed)
        } else {
            Err(format!(
                "operator {operator:?} lacks role {needed} for {method}"
            ))
        }
    }

    /// The roles of `operator`, for the audit trail and `status`.
    pub fn roles(&self, operator: &str) -> Option<&BTreeSet<Role>> {
        self.roles.get(operator)
    }

    pub fn len(&self) -> usize {
        self.roles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }
}

/// The roster in force, shared by every call and replaced whole when its file is reloaded
/// (SIGHUP, or a change of the file), so a call sees one roster, old or new.
#[derive(Debug, Clone)]
pub struct RosterHandle {
    path: Option<PathBuf>,
    current: Arc<RwLock<Arc<Roster>>>,
}

impl RosterHandle {
    /// Loads the roster at `path`; none configured is an empty roster, which refuses every
    /// call. A roster that does not load at start is an error: the node does not start.
    pub fn load(path: Option<&Path>) -> Result<RosterHandle, RosterError> {
        let roster = match path {
            Some(p) => Roster::load(p)?,
            None => Roster::default(),
        };
        Ok(RosterHandle {
            path: path.map(Path::to_path_buf),
            current: Arc::new(RwLock::new(Arc::new(roster))),
        })
    }

    /// A handle on a roster given in code (tests, tools).
    pub fn fixed(roster: Roster) -> RosterHandle {
        RosterHandle {
            path: None,
            current: Arc::new(RwLock::new(Arc::new(roster))),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn current(&self) -> Arc<Roster> {
        // A writer only swaps an Arc, so a poisoned lock still holds a whole roster.
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the file again. A roster that does not load leaves the one in force and is
    /// returned as the error; a good one replaces it, and its size is returned.
    pub fn reload(&self) -> Result<usize, RosterError> {
        let Some(path) = &self.path else {
            return Ok(self.current().len());
        };
        let roster = Roster::load(path)?;
        let operators = roster.len();
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(roster);
        Ok(operators)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROSTER: &str = r#"
[operators]
alice = ["operator"]
bob = ["approver"]
carol = ["viewer"]
"#;

    #[test]
    fn each_role_may_do_what_the_table_gives_it_and_nothing_else() {
        let r = Roster::parse(ROSTER, "roster.toml").expect("valid");
        assert_eq!(r.authorize("alice", "IssueDirective"), Ok(Role::Operator));
        assert_eq!(r.authorize("alice", "GetDirective"), Ok(Role::Viewer));
        assert_eq!(r.authorize("bob", "GetDirective"), Ok(Role::Viewer));
        let refused = r.authorize("carol", "IssueDirective").expect_err("viewer");
        assert!(refused.contains("lacks role operator"), "{refused}");
        let refused = r
            .authorize("bob", "ConfirmDirective")
            .expect_err("approver");
        assert!(refused.contains("role operator"), "{refused}");
        let refused = r
            .authorize("mallory", "GetDirective")
            .expect_err("stranger");
        assert!(refused.contains("not in this node's roster"), "{refused}");
        let refused = r.authorize("alice", "DropTables").expect_err("no entry");
        assert!(
            refused.contains("no entry in the permission table"),
            "{refused}"
        );
    }

    #[test]
    fn an_empty_roster_refuses_everyone() {
        let r = Roster::parse("", "roster.toml").expect("valid, empty");
        assert!(r.is_empty());
        for (method, _) in PERMISSIONS {
            assert!(r.authorize("alice", method).is_err(), "{method}");
        }
    }

    #[test]
    fn bad_rosters_are_refused_with_a_clear_error() {
        let unknown = Roster::parse("[operators]\nalice = [\"root\"]\n", "r.toml");
        assert_eq!(unknown, Err(RosterError::UnknownRole("root".into())));
        let malformed = Roster::parse("[operators\nalice = 1", "r.toml").expect_err("toml");
        assert!(
            malformed.to_string().starts_with("roster r.toml:"),
            "{malformed}"
        );
        let wrong_type = Roster::parse("[operators]\nalice = \"operator\"\n", "r.toml");
        assert!(matches!(wrong_type, Err(RosterError::Malformed { .. })));
        let stray = Roster::parse("[operators]\n[admins]\n", "r.toml");
        assert!(matches!(stray, Err(RosterError::Malformed { .. })));
        let bad_name = Roster::parse("[operators]\n\"a/b\" = [\"viewer\"]\n", "r.toml");
        assert_eq!(bad_name, Err(RosterError::BadName("a/b".into())));
        let missing = Roster::load(Path::new("/nonexistent/roster.toml")).expect_err("missing");
        assert!(matches!(missing, RosterError::Read { .. }));
    }

    #[test]
    fn a_bad_reload_keeps_the_roster_in_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("roster.toml");
        std::fs::write(&path, ROSTER).expect("write");
        let handle = RosterHandle::load(Some(&path)).expect("load");
        assert_eq!(
            handle.current().authorize("alice", "IssueDirective"),
            Ok(Role::Operator)
        );
        std::fs::write(&path, "[operators]\nalice = [\"superuser\"]\n").expect("write");
        assert_eq!(
            handle.reload(),
            Err(RosterError::UnknownRole("superuser".into()))
        );
        assert_eq!(
            handle.current().authorize("alice", "IssueDirective"),
            Ok(Role::Operator)
        );
        std::fs::write(&path, "[operators]\nalice = [\"viewer\"]\n").expect("write");
        assert_eq!(handle.reload(), Ok(1));
        assert!(
            handle
                .current()
                .authorize("alice", "IssueDirective")
                .is_err()
        );
        assert!(RosterHandle::load(Some(&dir.path().join("none.toml"))).is_err());
    }

    #[test]
    fn every_table_entry_names_a_role_and_no_rpc_twice() {
        let mut seen = BTreeSet::new();
        for (method, _) in PERMISSIONS {
            assert!(seen.insert(*method), "{method} twice");
        }
    }
}
