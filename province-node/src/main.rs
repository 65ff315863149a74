//! `province-node`: the provincial tier of the ISMS directive network. Relays directives
//! from the ministry to the enterprises of its jurisdiction and their statuses back up.

use clap::{Parser, Subcommand};
use isms_cli as cli;
use isms_domain::identity::Tier;

// Relays allocate and free many mid-sized buffers per group (sled leaves, encoded blocks),
// where glibc malloc spent a third of the core thread consolidating free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "province-node",
    version,
    about = "Province node of the ISMS directive network"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Node(cli::NodeCommand),
    /// Requirements received: confirm or return them, and follow what this province's
    /// enterprises did with them.
    #[command(subcommand)]
    Directive(Box<DirectiveCommand>),
    /// This node's versioned blacklist: which enterprises lag behind it.
    #[command(subcommand)]
    Blacklist(cli::IssuedBlacklistCommand),
    /// This province's network in one view: its enterprises' state and health.
    #[command(subcommand)]
    Network(cli::NetworkCommand),
    /// Operation reports (O-5, O-3, R-17.1) as Markdown, HTML with charts, JSON or CSV.
    #[command(subcommand)]
    Report(cli::ReportCommand),
    #[command(flatten)]
    Reporting(cli::ReportingCommand),
    #[command(flatten)]
    Docs(cli::DocsCommand),
}

#[derive(Subcommand)]
enum DirectiveCommand {
    /// Issue a directive to enterprises of this province; enterprises of another
    /// province are reached through the ministry as a request for assistance.
    Issue(cli::IssueArgs),
    /// Ask enterprises for access-log records.
    Query(cli::QueryArgs),
    /// Order enterprises to correct and re-report data.
    Correct(cli::CorrectArgs),
    /// Withdraw a directive this province issued.
    Revoke(cli::RevokeArgs),
    #[command(flatten)]
    Decision(cli::DecisionCommand),
    #[command(flatten)]
    Approval(cli::ApprovalCommand),
    #[command(flatten)]
    View(cli::DirectiveQuery),
}

fn main() {
    let code = match Args::parse().command {
        Command::Node(c) => c.run("province-node", Tier::Province),
        Command::Directive(d) => match *d {
            DirectiveCommand::Issue(a) => cli::run_command(cli::issue(a)),
            DirectiveCommand::Query(a) => cli::run_command(cli::query(a)),
            DirectiveCommand::Correct(a) => cli::run_command(cli::correct(a)),
            DirectiveCommand::Revoke(a) => cli::run_command(cli::revoke(a)),
            DirectiveCommand::Decision(d) => d.run(),
            DirectiveCommand::Approval(a) => a.run(),
            DirectiveCommand::View(q) => q.run(),
        },
        Command::Blacklist(c) => c.run(),
        Command::Reporting(c) => c.run(),
        Command::Docs(c) => c.run(<Args as clap::CommandFactory>::command()),
        Command::Network(c) => c.run(),
        Command::Report(c) => c.run(),
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    /// Every command and argument is well formed (clap checks names and conflicts only
    /// when a command is built, so a clash would otherwise show first at a user's call).
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Args as clap::CommandFactory>::command().debug_assert();
    }
}
