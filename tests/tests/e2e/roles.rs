//! Roles (R-13.1), end to end: every RPC of the `Operator` service, read from its
//! descriptor, called by an operator of each role, on a directive of the node's own
//! jurisdiction and of another's. Each cell is allowed (and takes effect) or refused with
//! `PERMISSION_DENIED` naming the missing role, changes nothing, and is recorded once in the
//! node's audit trail. The roster is reloaded when its file changes; a bad one is not taken.

use std::collections::BTreeMap;
use std::time::Duration;

use isms_deploy::Topology;
use isms_domain::identity::Identity;
use isms_domain::records::{self, decode};
use isms_e2e::{TestNet, eventually};
use isms_proto::record::AuditRecord;
use isms_proto::v1::operator_client::OperatorClient;
use isms_proto::v1::{
    DecisionRequest, DirectiveKind, GetDirectiveRequest, IssueRequest, ListDirectivesRequest,
    ListPendingRequest, NodeStatusRequest, Rule, RuleKind, Urgency,
};
use prost::Message;
use tonic::transport::Channel;

const NODE: &str = "province/44";

/// The roster under test: one operator per role, and the harness's own `admin`.
const ROSTER: &str = r#"
[operators]
admin = ["viewer", "operator", "approver", "auditor", "admin"]
vera = ["viewer"]
otto = ["operator"]
april = ["approver"]
audrey = ["auditor"]
adam = ["admin"]
"#;

/// Who holds which role, as the issue states it, not as the code's table does.
const PEOPLE: [(&str, &str); 5] = [
    ("vera", "viewer"),
    ("otto", "operator"),
    ("april", "approver"),
    ("audrey", "auditor"),
    ("adam", "admin"),
];

/// The role a call needs: reading directives is every role's (none needed), changing
/// anything is the `operator` role's, the audit trail the `auditor`'s.
fn needs(method: &str) -> Option<&'static str> {
    match method {
        "GetDirective"
        | "GetDirectiveSummary"
        | "ListDirectives"
        | "NodeStatus"
        | "ListPending"
        | "GetBlacklist"
        | "BlacklistLag"
        | "NetworkStatus"
        | "NetworkNode"
        | "ListFaults"
        | "ListUpgrades"
        | "ListContacts"
        | "ListData"
        | "OperationReport"
        | "OpenConsole" => None,
        "IssueDirective" | "ConfirmDirective" | "ReturnDirective" | "ReportCorrected"
        | "VerifyBlacklist" | "ReportFault" | "AcknowledgeFault" | "ResolveFault"
        | "AnnounceUpgrade" | "SetContact" | "SubmitData" => Some("operator"),
        "ListAudit" | "VerifyAudit" | "ListAuditHeads" | "AuditExported" => Some("auditor"),
        "ApproveDirective" | "RejectDirective" => Some("approver"),
        other => panic!("RPC {other} has no cell in this test: give it one, and a table entry"),
    }
}

fn may(role: &str, method: &str) -> bool {
    needs(method).is_none_or(|needed| needed == role)
}

fn operator_methods() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(isms_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    let service = set
        .file
        .iter()
        .filter(|f| f.package() == "isms.v1")
        .flat_map(|f| f.service.iter())
        .find(|s| s.name() == "Operator")
        .expect("the Operator service");
    service
        .method
        .iter()
        .map(|m| m.name().to_string())
        .collect()
}

fn disposal(to: &str, domain: &str) -> IssueRequest {
    IssueRequest {
        id: uuid::Uuid::now_v7().to_string(),
        to: vec![to.into()],
        kind: DirectiveKind::Disposal as i32,
        urgency: Urgency::General as i32,
        rules: vec![Rule {
            kind: RuleKind::BlockDomain as i32,
            value: domain.to_string().into(),
            op: 0,
        }],
        ..Default::default()
    }
}

/// Calls `method` with a request about `subject` (a directive ID, or for an issue the
/// target); `Ok` or the status it was answered with.
async fn call(
    client: &mut OperatorClient<Channel>,
    method: &str,
    subject: &str,
    tag: &str,
) -> Result<(), tonic::Status> {
    let decision = || DecisionRequest {
        id: subject.to_string(),
        reason: "not ours".into(),
    };
    let get = || GetDirectiveRequest {
        id: subject.to_string(),
    };
    match method {
        "IssueDirective" => client
            .issue_directive(disposal(subject, &format!("{tag}.roles.example")))
            .await
            .map(drop),
        "GetDirective" => client.get_directive(get()).await.map(drop),
        "GetDirectiveSummary" => client.get_directive_summary(get()).await.map(drop),
        "ListDirectives" => client
            .list_directives(ListDirectivesRequest::default())
            .await
            .map(drop),
        "NodeStatus" => client.node_status(NodeStatusRequest {}).await.map(drop),
        "ConfirmDirective" => client.confirm_directive(decision()).await.map(drop),
        "ReturnDirective" => client.return_directive(decision()).await.map(drop),
        "ListPending" => client
            .list_pending(ListPendingRequest::default())
            .await
            .map(drop),
        "ReportCorrected" => client.report_corrected(decision()).await.map(drop),
        "ListAudit" => client
            .list_audit(isms_proto::v1::ListAuditRequest::default())
            .await
            .map(drop),
        "VerifyAudit" => client
            .verify_audit(isms_proto::v1::VerifyAuditRequest {})
            .await
            .map(drop),
        "ApproveDirective" => client.approve_directive(decision()).await.map(drop),
        "ListAuditHeads" => client
            .list_audit_heads(isms_proto::v1::ListAuditHeadsRequest::default())
            .await
            .map(drop),
        // Marks nothing: record 1 is not hashed to zeros.
        "AuditExported" => client
            .audit_exported(isms_proto::v1::AuditExportedRequest {
                through_seq: 1,
                hash: "00".repeat(32),
            })
            .await
            .map(drop),
        "RejectDirective" => client.reject_directive(decision()).await.map(drop),
        "GetBlacklist" => client
            .get_blacklist(isms_proto::v1::GetBlacklistRequest {})
            .await
            .map(drop),
        "VerifyBlacklist" => client
            .verify_blacklist(isms_proto::v1::GetBlacklistRequest {})
            .await
            .map(drop),
        "BlacklistLag" => client
            .blacklist_lag(isms_proto::v1::BlacklistLagRequest::default())
            .await
            .map(drop),
        "NetworkStatus" => client
            .network_status(isms_proto::v1::NetworkStatusRequest::default())
            .await
            .map(drop),
        "NetworkNode" => client
            .network_node(isms_proto::v1::NetworkNodeRequest { node: NODE.into() })
            .await
            .map(drop),
        "ReportFault" => client
            .report_fault(isms_proto::v1::ReportFaultRequest {
                severity: "minor".into(),
                summary: format!("{tag}'s test fault"),
                detail: String::new(),
            })
            .await
            .map(drop),
        "AcknowledgeFault" => client
            .acknowledge_fault(isms_proto::v1::DecideFaultRequest {
                id: subject.into(),
                note: "seen".into(),
            })
            .await
            .map(drop),
        "ResolveFault" => client
            .resolve_fault(isms_proto::v1::DecideFaultRequest {
                id: subject.into(),
                note: "done".into(),
            })
            .await
            .map(drop),
        "ListFaults" => client
            .list_faults(isms_proto::v1::ListFaultsRequest::default())
            .await
            .map(drop),
        "AnnounceUpgrade" => client
            .announce_upgrade(isms_proto::v1::AnnounceUpgradeRequest {
                at: "2099-01-05T22:00:00+08:00".into(),
                duration: "2h".into(),
                summary: format!("{tag}'s upgrade"),
            })
            .await
            .map(drop),
        "ListUpgrades" => client
            .list_upgrades(isms_proto::v1::ListUpgradesRequest {})
            .await
            .map(drop),
        "SetContact" => client
            .set_contact(isms_proto::v1::SetContactRequest {
                department: "NOC".into(),
                name: tag.into(),
                phone: "010-1234".into(),
                email: "noc@example.cn".into(),
                changed_on: "2026-01-05".into(),
            })
            .await
            .map(drop),
        "ListContacts" => client
            .list_contacts(isms_proto::v1::ListContactsRequest {})
            .await
            .map(drop),
        // A province submits no data: refused for its tier, not for the role.
        "SubmitData" => client
            .submit_data(isms_proto::v1::SubmitDataRequest::default())
            .await
            .map(drop),
        "ListData" => client
            .list_data(isms_proto::v1::ListDataRequest::default())
            .await
            .map(drop),
        "OpenConsole" => client
            .open_console(isms_proto::v1::OpenConsoleRequest {})
            .await
            .map(drop),
        "OperationReport" => client
            .operation_report(isms_proto::v1::OperationReportRequest {
                kind: "monthly".into(),
                period: "2026-01".into(),
            })
            .await
            .map(drop),
        other => panic!("RPC {other} has no cell in this test: give it one, and a table entry"),
    }
}

async fn client_of(net: &TestNet, name: &str, dir: &std::path::Path) -> OperatorClient<Channel> {
    let (cert, key) = net
        .net
        .ca
        .issue(&Identity::Operator {
            node: NODE.parse().expect("node id"),
            name: name.into(),
        })
        .expect("issue")
        .write(dir, name)
        .expect("write");
    isms_cli::connect(&isms_cli::ClientArgs {
        config: net.node(NODE).config_path.clone(),
        operator_cert: Some(cert),
        operator_key: Some(key),
    })
    .await
    .expect("operator client")
}

async fn directive_count(admin: &mut OperatorClient<Channel>) -> usize {
    admin
        .list_directives(ListDirectivesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .directives
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_by_every_role_is_allowed_or_refused_changing_nothing_and_audited() {
    let options = isms_deploy::Options {
        four_eyes: true,
        ..Default::default()
    };
    let net = TestNet::generate(&Topology::uniform(&["44", "11"], 1, 0), &options);
    std::fs::write(net.node(NODE).dir.join("roster.toml"), ROSTER).expect("roster");
    for n in net.net.nodes.clone() {
        net.spawn(n.id.as_str());
    }
    net.wait_linked();
    let certs = tempfile::tempdir().expect("tempdir");
    let mut admin = net.operator(NODE).await;
    let own = admin
        .issue_directive(disposal("enterprise/e4401", "own.roles.example"))
        .await
        .expect("the harness's operator issues")
        .into_inner()
        .id;
    // A major directive (to all of the province), for the approver's cells.
    let major = admin
        .issue_directive(disposal("all", "major.roles.example"))
        .await
        .expect("the harness's operator issues a major directive")
        .into_inner()
        .id;
    let methods = operator_methods();
    assert!(methods.len() >= 11, "{methods:?}");
    for m in &methods {
        assert!(
            isms_operator::authz::required_role(m).is_some(),
            "{m} has no entry in the permission table"
        );
    }

    let mut refused: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut issued = 0;
    for (name, role) in PEOPLE {
        let mut client = client_of(&net, name, certs.path()).await;
        for method in &methods {
            // Own jurisdiction and another province's: an enterprise of 44 and one of 11
            // (reached through the ministry's assistance path), a directive of 44 and one
            // this node has never seen.
            let subjects: [&str; 2] = if method == "IssueDirective" {
                ["enterprise/e4401", "enterprise/e1101"]
            } else if method.ends_with("Directive") && method != "GetDirective" {
                // Decisions: the approver's on the directive awaiting approval.
                match method.as_str() {
                    "ApproveDirective" | "RejectDirective" => {
                        [major.as_str(), "01890000-0000-7000-8000-000000000000"]
                    }
                    _ => [own.as_str(), "01890000-0000-7000-8000-000000000000"],
                }
            } else {
                [own.as_str(), "01890000-0000-7000-8000-000000000000"]
            };
            for subject in subjects {
                let before = directive_count(&mut admin).await;
                let answer = call(&mut client, method, subject, name).await;
                if may(role, method) {
                    // Allowed by role; the node may still refuse what its tier does not
                    // do (a province reports no correction), but never for the role.
                    if let Err(status) = &answer {
                        assert!(
                            !status.message().contains("role")
                                && !status.message().contains("roster"),
                            "{name} ({role}) was refused {method} on {subject}: {status:?}"
                        );
                    }
                    if method == "IssueDirective" {
                        answer.unwrap_or_else(|s| panic!("{name} issue to {subject}: {s:?}"));
                        issued += 1;
                        assert_eq!(directive_count(&mut admin).await, before + 1);
                    }
                } else {
                    let status = answer.expect_err("refused");
                    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
                    let needed = needs(method).expect("a refused call needs a role");
                    assert!(
                        status.message().contains(&format!("lacks role {needed}")),
                        "{name} {method}: {}",
                        status.message()
                    );
                    assert_eq!(
                        directive_count(&mut admin).await,
                        before,
                        "{name}'s refused {method} changed something"
                    );
                    *refused
                        .entry((name.to_string(), method.clone()))
                        .or_default() += 1;
                }
            }
        }
    }
    assert_eq!(issued, 2, "only the operator issues, to both jurisdictions");
    // The approver's approval took effect: the major directive left, approved by april.
    let view = admin
        .get_directive(GetDirectiveRequest { id: major.clone() })
        .await
        .expect("view")
        .into_inner();
    let approval = view.approval.expect("a major directive's approval");
    assert_eq!(
        (approval.state(), approval.decided_by.as_str()),
        (isms_proto::v1::ApprovalState::Approved, "april")
    );
    // An operator certificate whose name is not in the roster may do nothing at all.
    let mut stranger = client_of(&net, "mallory", certs.path()).await;
    let status = call(&mut stranger, "NodeStatus", "", "mallory")
        .await
        .expect_err("a stranger is refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status.message().contains("not in this node's roster"),
        "{status:?}"
    );
    refused.insert(("mallory".into(), "NodeStatus".into()), 1);

    // Every refusal is in the audit trail, once.
    net.stop(NODE);
    let store = isms_store::Store::open(&net.node(NODE).dir.join("store")).expect("store");
    let mut audited: BTreeMap<(String, String), usize> = BTreeMap::new();
    for entry in store.scan_prefix(records::AUDIT_PREFIX) {
        let (k, v) = entry.expect("read");
        let r: AuditRecord = decode(&k, &v).expect("audit record");
        if r.action == "refused" {
            assert!(r.peer.starts_with("127.0.0.1:"), "{r:?}");
            assert_eq!(r.args_digest.len(), 32, "{r:?}");
            *audited.entry((r.operator, r.subject)).or_default() += 1;
        }
    }
    assert_eq!(audited, refused);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_roster_takes_effect_without_a_restart_and_a_bad_one_is_not_taken() {
    let net = TestNet::start(&Topology::uniform(&["44"], 1, 0));
    let roster = net.node(NODE).dir.join("roster.toml");
    std::fs::write(&roster, ROSTER).expect("roster");
    let certs = tempfile::tempdir().expect("tempdir");
    let mut vera = client_of(&net, "vera", certs.path()).await;
    eventually(Duration::from_secs(20), "vera in the roster", || {
        net.log(NODE).contains("roster reloaded").then_some(())
    });
    let refused = call(&mut vera, "IssueDirective", "enterprise/e4401", "v1").await;
    assert_eq!(
        refused.expect_err("viewer").code(),
        tonic::Code::PermissionDenied
    );

    // Vera becomes an operator: the file changes, the node takes it.
    std::fs::write(
        &roster,
        ROSTER.replace(r#"vera = ["viewer"]"#, r#"vera = ["operator"]"#),
    )
    .expect("roster");
    let mut tries = 0;
    let rt = tokio::runtime::Handle::current();
    eventually(Duration::from_secs(20), "vera may issue", || {
        tries += 1;
        let mut vera = vera.clone();
        let tag = format!("v{tries}");
        tokio::task::block_in_place(|| {
            rt.block_on(call(&mut vera, "IssueDirective", "enterprise/e4401", &tag))
        })
        .ok()
    });

    // A roster naming an unknown role is not taken: vera keeps what she had.
    std::fs::write(&roster, "[operators]\nvera = [\"root\"]\n").expect("roster");
    eventually(Duration::from_secs(20), "the bad roster refused", || {
        net.log(NODE).contains("roster not reloaded").then_some(())
    });
    assert!(
        net.log(NODE).contains(r#"unknown role "root""#),
        "{}",
        net.log(NODE)
    );
    call(&mut vera, "IssueDirective", "enterprise/e4401", "v-after")
        .await
        .expect("the roster in force still lets vera issue");
    assert!(net.is_running(NODE));
}
