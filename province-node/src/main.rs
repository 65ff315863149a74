//! `province-node`: the provincial tier of the ISMS directive network. Relays directives
//! from the ministry to the enterprises of its jurisdiction and their statuses back up.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use isms_node::cli;
use isms_node::identity::Tier;

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
    /// Run the node until SIGTERM or SIGINT.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show this node's links, backlogs and counts.
    Status(cli::NodeStatusArgs),
    /// Directives received and what this province's enterprises did with them.
    #[command(subcommand)]
    Directive(DirectiveCommand),
}

#[derive(Subcommand)]
enum DirectiveCommand {
    /// Show one directive's state per enterprise of this province.
    Status(cli::StatusArgs),
    /// List directives, newest first.
    List(cli::ListArgs),
}

fn main() {
    let code = match Args::parse().command {
        Command::Serve { config } => {
            isms_node::node::serve("province-node", Tier::Province, &config)
        }
        Command::Status(a) => cli::run_command(cli::node_status(a)),
        Command::Directive(DirectiveCommand::Status(a)) => cli::run_command(cli::status(a)),
        Command::Directive(DirectiveCommand::List(a)) => cli::run_command(cli::list(a)),
    };
    std::process::exit(code);
}
