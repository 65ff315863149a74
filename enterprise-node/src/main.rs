//! `enterprise-node`: the enterprise tier of the ISMS directive network. Acknowledges every
//! directive on receipt, applies its rules to the active rule set and the rules file, answers
//! access-log queries, and reports the outcome up.

use clap::{Parser, Subcommand};
use isms_cli as cli;
use isms_domain::identity::Tier;

#[derive(Parser)]
#[command(
    name = "enterprise-node",
    version,
    about = "Enterprise node of the ISMS directive network"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Node(cli::NodeCommand),
    /// Data-correction demands from the authorities.
    #[command(subcommand)]
    Directive(cli::CorrectionCommand),
    /// The versioned blacklists held here: show them, verify them.
    #[command(subcommand)]
    Blacklist(cli::HeldBlacklistCommand),
    #[command(flatten)]
    Reporting(cli::ReportingCommand),
    #[command(flatten)]
    Docs(cli::DocsCommand),
}

fn main() {
    let code = match Args::parse().command {
        Command::Node(c) => c.run("enterprise-node", Tier::Enterprise),
        Command::Directive(c) => c.run(),
        Command::Blacklist(c) => c.run(),
        Command::Reporting(c) => c.run(),
        Command::Docs(c) => c.run(<Args as clap::CommandFactory>::command()),
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
