//! `ministry-node`: the ministry tier of the ISMS directive network. Serves the node, and
//! gives its operators the commands to issue and follow directives.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use isms_node::cli;
use isms_node::identity::Tier;

#[derive(Parser)]
#[command(
    name = "ministry-node",
    version,
    about = "Ministry node of the ISMS directive network"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node until SIGTERM or SIGINT.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show this node's links, backlogs and counts.
    Status(cli::NodeStatusArgs),
    /// Issue directives and follow them.
    #[command(subcommand)]
    Directive(DirectiveCommand),
}

#[derive(Subcommand)]
enum DirectiveCommand {
    /// Issue a disposal (takedown) directive.
    Issue(cli::IssueArgs),
    /// Show one directive's state per target.
    Status(cli::StatusArgs),
    /// List directives, newest first.
    List(cli::ListArgs),
}

fn main() {
    let code = match Args::parse().command {
        Command::Serve { config } => {
            isms_node::node::serve("ministry-node", Tier::Ministry, &config)
        }
        Command::Status(a) => cli::run_command(cli::node_status(a)),
        Command::Directive(DirectiveCommand::Issue(a)) => cli::run_command(cli::issue(a)),
        Command::Directive(DirectiveCommand::Status(a)) => cli::run_command(cli::status(a)),
        Command::Directive(DirectiveCommand::List(a)) => cli::run_command(cli::list(a)),
    };
    std::process::exit(code);
}
