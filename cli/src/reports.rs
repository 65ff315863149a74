//! What operators report upward and decide: `fault report|ack|resolve|list` (R-10.2, O-2,
//! ), `upgrade announce|list` and `contact set|list`.

use super::*;
use isms_domain::reports::{fault_state_name, severity_name};
use isms_proto::v1::{
    AnnounceUpgradeRequest, Contact, DecideFaultRequest, FaultView, ListContactsRequest,
    ListFaultsRequest, ListUpgradesRequest, ReportFaultReply, ReportFaultRequest,
    SetContactRequest, UpgradeNotice,
};

/// What every node's operators report upward, flattened into each program's commands.
#[derive(Debug, clap::Subcommand)]
pub enum ReportingCommand {
    /// Faults reported here or below: report, acknowledge, resolve, list (R-10.2, O-2).
    #[command(subcommand)]
    Fault(FaultCommand),
    /// Planned upgrades announced 5 working days ahead.
    #[command(subcommand)]
    Upgrade(UpgradeCommand),
    /// The responsible department and contact, reported upward.
    #[command(subcommand)]
    Contact(ContactCommand),
    /// Enterprises' basic and active-resource data and its validation.
    #[command(subcommand)]
    Data(crate::data::DataCommand),
}

impl ReportingCommand {
    pub fn run(self) -> i32 {
        match self {
            ReportingCommand::Fault(c) => c.run(),
            ReportingCommand::Upgrade(c) => c.run(),
            ReportingCommand::Contact(c) => c.run(),
            ReportingCommand::Data(c) => c.run(),
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum FaultCommand {
    /// Report a fault of this node to the authority above it (and on to the ministry).
    Report(FaultReportArgs),
    /// Acknowledge a fault reported below this node; the reporter sees it.
    Ack(FaultDecideArgs),
    /// Resolve a fault reported below this node (a note is required).
    Resolve(FaultDecideArgs),
    /// Faults reported here or below, newest first.
    List(FaultListArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct FaultReportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// minor, major or critical.
    #[arg(long)]
    pub severity: String,
    #[arg(long)]
    pub summary: String,
    #[arg(long, default_value = "")]
    pub detail: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FaultDecideArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The fault's ID.
    pub id: String,
    #[arg(long, default_value = "")]
    pub note: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FaultListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only faults not yet resolved.
    #[arg(long)]
    pub open: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum UpgradeCommand {
    /// Announce a planned upgrade (R-11.2: 5 working days ahead; a later one is taken and
    /// marked late). During the window, this node's silence shows as maintenance.
    Announce(UpgradeAnnounceArgs),
    /// Upgrade notices of this node and those below it.
    List(JsonArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct UpgradeAnnounceArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// When it starts, RFC 3339 (`2026-12-14T22:00:00+08:00`).
    #[arg(long)]
    pub at: String,
    /// How long it lasts (`2h`).
    #[arg(long)]
    pub duration: String,
    #[arg(long)]
    pub summary: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum ContactCommand {
    /// Set this node's responsible department and contact, reported upward (R-15.1: within
    /// 5 working days of the change; a later one is marked late).
    Set(ContactSetArgs),
    /// The contacts of this node and those below it.
    List(JsonArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ContactSetArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[arg(long)]
    pub department: String,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub phone: String,
    #[arg(long)]
    pub email: String,
    /// The day the contact changed, YYYY-MM-DD.
    #[arg(long)]
    pub changed_on: String,
}

impl FaultCommand {
    pub fn run(self) -> i32 {
        match self {
            FaultCommand::Report(a) => run_command(report_fault(a)),
            FaultCommand::Ack(a) => run_command(decide_fault(a, false)),
            FaultCommand::Resolve(a) => run_command(decide_fault(a, true)),
            FaultCommand::List(a) => run_command(list_faults(a)),
        }
    }
}

impl UpgradeCommand {
    pub fn run(self) -> i32 {
        match self {
            UpgradeCommand::Announce(a) => run_command(announce(a)),
            UpgradeCommand::List(a) => run_command(list_upgrades(a)),
        }
    }
}

impl ContactCommand {
    pub fn run(self) -> i32 {
        match self {
            ContactCommand::Set(a) => run_command(set_contact(a)),
            ContactCommand::List(a) => run_command(list_contacts(a)),
        }
    }
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", s.message())
}

/// Prints the ID, and what the node noted of it on standard error.
fn print_reply(r: &ReportFaultReply) -> i32 {
    println!("{}", r.id);
    if !r.note.is_empty() {
        eprintln!("{}", r.note);
    }
    exit::OK
}

async fn report_fault(a: FaultReportArgs) -> anyhow::Result<i32> {
    let mut client = connect(&a.client).await?;
    let r = client
        .report_fault(ReportFaultRequest {
            severity: a.severity,
            summary: a.summary,
            detail: a.detail,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    Ok(print_reply(&r))
}

async fn decide_fault(a: FaultDecideArgs, resolve: bool) -> anyhow::Result<i32> {
    let mut client = connect(&a.client).await?;
    let request = DecideFaultRequest {
        id: a.id,
        note: a.note,
    };
    let r = if resolve {
        client.resolve_fault(request).await
    } else {
        client.acknowledge_fault(request).await
    }
    .map_err(status_error)?
    .into_inner();
    Ok(print_reply(&r))
}

fn fault_json(v: &FaultView) -> serde_json::Value {
    let f = v.fault.clone().unwrap_or_default();
    json!({
        "id": f.id,
        "reporter": f.reporter,
        "severity": severity_name(f.severity()),
        "summary": f.summary,
        "detail": f.detail,
        "at_ms": f.at_ms,
        "automatic": f.automatic,
        "by": f.by,
        "state": fault_state_name(v.state()),
        "updates": v.updates.iter().map(|u| json!({
            "state": fault_state_name(u.state()), "node": u.node, "by": u.by,
            "note": u.note, "at_ms": u.at_ms,
        })).collect::<Vec<_>>(),
    })
}

async fn list_faults(a: FaultListArgs) -> anyhow::Result<i32> {
    let mut client = connect(&a.client).await?;
    let faults = client
        .list_faults(ListFaultsRequest { open_only: a.open })
        .await
        .map_err(status_error)?
        .into_inner()
        .faults;
    if a.json {
        println!(
            "{}",
            json!({ "faults": faults.iter().map(fault_json).collect::<Vec<_>>() })
        );
        return Ok(exit::OK);
    }
    if faults.is_empty() {
        println!("no faults");
    }
    for v in &faults {
        let f = v.fault.clone().unwrap_or_default();
        println!(
            "{}  {:<12} {:<8} {:<20} {}  {}{}",
            f.id,
            fault_state_name(v.state()),
            severity_name(f.severity()),
            f.reporter,
            format_ms(f.at_ms),
            f.summary,
            if f.automatic {
                " (raised by the node)"
            } else {
                ""
            }
        );
        for u in &v.updates {
            println!(
                "    {} by {} at {}  {}",
                fault_state_name(u.state()),
                u.by,
                u.node,
                u.note
            );
        }
    }
    Ok(exit::OK)
}

async fn announce(a: UpgradeAnnounceArgs) -> anyhow::Result<i32> {
    let mut client = connect(&a.client).await?;
    let r = client
        .announce_upgrade(AnnounceUpgradeRequest {
            at: a.at,
            duration: a.duration,
            summary: a.summary,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    Ok(print_reply(&r))
}

fn upgrade_json(n: &UpgradeNotice) -> serde_json::Value {
    json!({
        "id": n.id, "node": n.node, "at_ms": n.at_ms, "duration_ms": n.duration_ms,
        "summary": n.summary, "announced_at_ms": n.announced_at_ms, "late": n.late,
        "working_days_ahead": n.working_days_ahead, "by": n.by,
    })
}

async fn list_upgrades(a: JsonArgs) -> anyhow::Result<i32> {
    let mut client = connect(&a.client).await?;
    let notices = client
        .list_upgrades(ListUpgradesRequest {})
        .await
        .map_err(status_error)?
        .into_inner()
        .notices;
    if a.json {
        println!(
            "{}",
            json!({ "upgrades": notices.iter().map(upgrade_json).collect::<Vec<_>>() })
        );
        return Ok(exit::OK);
    }
    if notices.is_empty() {
        println!("no upgrade notices");
    }
    for n in &notices {
        println!(
            "{:<20} {} for {}  {}{}",
            n.node,
            format_ms(n.at_ms),
            format_span(n.duration_ms),
            n.summary,
            if n.late {
                format!("  LATE ({} working days ahead)", n.working_days_ahead)
            } else {
                String::new()
            }
        );
    }
    Ok(exit::OK)
}

async fn set_contact(a: ContactSetArgs) -> anyhow::Result<i32> {
    let mut client = connect(&a.client).await?;
    let r = client
        .set_contact(SetContactRequest {
            department: a.department,
            name: a.name,
            phone: a.phone,
            email: a.email,
            changed_on: a.changed_on,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    Ok(print_reply(&r))
}

fn contact_json(c: &Contact) -> serde_json::Value {
    json!({
        "node": c.node, "department": c.department, "name": c.name, "phone": c.phone,
        "email": c.email, "changed_on": c.changed_on, "reported_at_ms": c.reported_at_ms,
        "late": c.late, "by": c.by,
    })
}

async fn list_contacts(a: JsonArgs) -> anyhow::Result<i32> {
    let mut client = connect(&a.client).await?;
    let contacts = client
        .list_contacts(ListContactsRequest {})
        .await
        .map_err(status_error)?
        .into_inner()
        .contacts;
    if a.json {
        println!(
            "{}",
            json!({ "contacts": contacts.iter().map(contact_json).collect::<Vec<_>>() })
        );
        return Ok(exit::OK);
    }
    if contacts.is_empty() {
        println!("no contacts");
    }
    for c in &contacts {
        println!(
            "{:<20} {:<16} {:<16} {:<18} {:<28} changed {}{}",
            c.node,
            c.department,
            c.name,
            c.phone,
            c.email,
            c.changed_on,
            if c.late { "  LATE" } else { "" }
        );
    }
    Ok(exit::OK)
}
