//! Unit tests of this crate.

use super::*;

fn write(dir: &Path, body: &str) -> PathBuf {
    for f in ["ca.pem", "node.pem", "node.key"] {
        std::fs::write(dir.join(f), "x").expect("write");
    }
    let p = dir.join("node.toml");
    std::fs::write(&p, body).expect("write");
    p
}

const HEAD: &str = r#"
listen = "127.0.0.1:0"
data_dir = "store"
calendar_dir = "."
[tls]
ca = "ca.pem"
cert = "node.pem"
key = "node.key"
"#;

#[test]
fn errors_name_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("node_id = \"province/44\"\n", "parent"),
        (
            "node_id = \"province/44\"\n[parent]\nid = \"province/11\"\naddress = \"x:1\"\n",
            "parent.id",
        ),
        (
            "node_id = \"enterprise/e1\"\nrules_file = \"r.json\"\n[parent]\nid = \"ministry\"\naddress = \"nocolon\"\n",
            "parent.address",
        ),
        (
            "node_id = \"ministry\"\n[[children]]\nid = \"ministry\"\n",
            "children[0].id",
        ),
        (
            "node_id = \"ministry\"\n[link]\nwindow = 0\n",
            "link.window",
        ),
        (
            "node_id = \"ministry\"\n[link]\ngroup_linger = \"1s\"\n",
            "link.group_linger",
        ),
        (
            "node_id = \"ministry\"\nrules_file = \"r.json\"\n",
            "rules_file",
        ),
        (
            "node_id = \"ministry\"\nauto_confirm = [\"disposal\"]\n",
            "auto_confirm",
        ),
        (
            "node_id = \"ministry\"\n[audit]\nretention_days = 30\n",
            "audit.retention_days",
        ),
        (
            "node_id = \"ministry\"\n[data_export]\nfile = \"x.csv\"\n",
            "data_export",
        ),
        (
            "node_id = \"enterprise/e1\"\n[parent]\nid = \"province/44\"\naddress = \"x:1\"\n[data_export]\nfile = \"x.csv\"\nevery = \"10ms\"\n",
            "data_export.every",
        ),
        (
            "node_id = \"ministry\"\n[access_log_query]\ncommand = [\"q\"]\n",
            "access_log_query",
        ),
        (
            "node_id = \"enterprise/e1\"\n[parent]\nid = \"province/44\"\naddress = \"x:1\"\n[access_log_query]\ncommand = []\n",
            "access_log_query.command",
        ),
        (
            "node_id = \"enterprise/e1\"\n[parent]\nid = \"province/44\"\naddress = \"x:1\"\n[access_log_query]\ncommand = [\"q\"]\ntimeout = \"3h\"\n",
            "access_log_query.timeout",
        ),
        (
            "node_id = \"enterprise/e1\"\naccess_log_socket = \"a.sock\"\n[parent]\nid = \"province/44\"\naddress = \"x:1\"\n",
            "access_log_socket",
        ),
        (
            "node_id = \"ministry\"\n[four_eyes]\nexpires_after = \"0s\"\n",
            "four_eyes.expires_after",
        ),
        (
            "node_id = \"ministry\"\n[[enforcement]]\npoint = \"file\"\npath = \"x\"\n",
            "enforcement",
        ),
        (
            concat!(
                "node_id = \"enterprise/e1\"\nrules_file = \"r.json\"\n[parent]\nid = \"ministry\"\naddress = \"x:1\"\n",
                "[[enforcement]]\npoint = \"file\"\npath = \"x\"\nkinds = [\"dns\"]\n"
            ),
            "enforcement[0].kinds",
        ),
        (
            concat!(
                "node_id = \"enterprise/e1\"\nrules_file = \"r.json\"\n[parent]\nid = \"ministry\"\naddress = \"x:1\"\n",
                "[[enforcement]]\npoint = \"rpz\"\nzone = \"rpz\"\nzone_file = \"z\"\nreload = [\"x\"]\n"
            ),
            "enforcement[0].zone",
        ),
        (
            concat!(
                "node_id = \"enterprise/e1\"\nrules_file = \"r.json\"\n[parent]\nid = \"ministry\"\naddress = \"x:1\"\n",
                "[[enforcement]]\npoint = \"hook\"\ncommand = []\n"
            ),
            "enforcement[0].command",
        ),
    ];
    for (body, field) in cases {
        // Tables must follow top-level keys in TOML.
        let (top, tables) = body.split_once("\n[").map_or((body, ""), |(a, b)| (a, b));
        let text = if tables.is_empty() {
            format!("{top}{HEAD}")
        } else {
            format!("{top}\n{HEAD}[{tables}")
        };
        let p = write(dir.path(), &text);
        let err = Config::load(&p).expect_err(body).to_string();
        assert!(err.contains(&format!("`{field}`")), "{body}: {err}");
    }
}

#[test]
fn unknown_fields_and_bad_ids_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        &format!("node_id = \"ministry\"\nbogus = 1\n{HEAD}"),
    );
    assert!(
        Config::load(&p)
            .expect_err("bogus")
            .to_string()
            .contains("bogus")
    );
    // A policy the node does not set: the line, and the ones it does.
    let p = write(
        dir.path(),
        &format!("node_id = \"ministry\"\nscheduling = \"fifo\"\n{HEAD}"),
    );
    let err = Config::load(&p).expect_err("fifo").to_string();
    assert!(
        err.contains("scheduling = \"fifo\"") && err.contains("`batch` or `inherit`"),
        "{err}"
    );
    let p = write(dir.path(), &format!("node_id = \"province/4\"\n{HEAD}"));
    assert!(
        Config::load(&p)
            .expect_err("bad id")
            .to_string()
            .contains("two digits")
    );
}

#[test]
fn relative_paths_resolve_against_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), &format!("node_id = \"ministry\"\n{HEAD}"));
    let c = Config::load(&p).expect("valid");
    assert_eq!(c.data_dir, dir.path().join("store"));
}

#[test]
fn bad_console_and_metrics_addresses_point_at_their_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for table in ["console", "metrics"] {
        for bad in ["nowhere", "127.0.0.1", "127.0.0.1:99999"] {
            let text = format!("node_id = \"ministry\"\n{HEAD}[{table}]\nlisten = \"{bad}\"\n");
            let p = write(dir.path(), &text);
            let err = Config::load(&p).expect_err(bad).to_string();
            assert!(
                err.contains("invalid socket address") && err.contains("line 11"),
                "{err}"
            );
        }
    }
}
