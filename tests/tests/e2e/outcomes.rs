//! What an enterprise reports when it cannot carry out an order (and when a retry then
//! can), and orders too large for a single store page or frame: the national blacklist
//! push.

use std::time::Duration;

use isms_e2e::isms_deploy::Topology;
use isms_e2e::{TestNet, states};
use isms_proto::v1::{IssueRequest, Rule, RuleKind};

#[test]
fn an_enterprise_that_cannot_write_its_rules_file_reports_failed_and_executed_once_it_can() {
    let net = TestNet::generate(&Topology::uniform(&["44"], 2, 0), &Default::default());
    // A directory where the rules file should be: the atomic rename over it fails.
    let rules = net
        .node("enterprise/e4401")
        .rules_path()
        .expect("enterprise");
    std::fs::create_dir_all(&rules).expect("mkdir");
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();

    let out = net.cli(
        "ministry",
        &[
            "directive",
            "issue",
            "--to",
            "all",
            "--block-domain",
            "x.example",
            "--wait",
            "--json",
            "--timeout",
            "30s",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "some target failed: exit 2");
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let by_node = states(&view["targets"]);
    assert_eq!(by_node["enterprise/e4401"], "failed");
    assert_eq!(by_node["enterprise/e4402"], "executed");
    let failed = view["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["node"] == "enterprise/e4401"))
        .expect("e4401");
    let detail = failed["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("not in force: file:"), "{detail:?}");
    assert!(detail.contains("not written"), "{detail:?}");
    // The rules stay in the set, and the point is tried again: once the file can be
    // written the target becomes `executed`, without a new directive.
    let status = net.node_status("enterprise/e4401").expect("status");
    assert_eq!(status["active_rules"], 1);
    std::fs::remove_dir(&rules).expect("rmdir");
    let id = view["id"].as_str().expect("id").to_string();
    net.wait_all(&id, "executed", Duration::from_secs(30));
    assert_eq!(net.rule_values("enterprise/e4401"), ["x.example"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_blacklist_reaches_every_enterprise() {
    const RULES: usize = 20_000;
    let net = TestNet::start(&Topology::uniform(&["11", "44"], 2, 1));
    let mut client = net.operator("ministry").await;
    let request = IssueRequest {
        id: uuid::Uuid::now_v7().to_string(),
        to: vec!["all".into()],
        rules: (0..RULES)
            .map(|i| Rule {
                kind: RuleKind::BlockDomain as i32,
                value: format!("bl{i:05}.blacklist.example").into(),
                op: 0,
            })
            .collect(),
        ..Default::default()
    };
    let id = client
        .issue_directive(request)
        .await
        .expect("issued")
        .into_inner()
        .id;
    net.wait_all(&id, "executed", Duration::from_secs(120));
    for e in net.enterprises() {
        let rules = net.rules(&e);
        assert_eq!(rules.len(), RULES, "{e}");
        let mut values: Vec<&str> = rules.iter().filter_map(|r| r["value"].as_str()).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), RULES, "{e} holds duplicates");
    }
}
