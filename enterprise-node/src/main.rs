//! `enterprise-node`: the enterprise tier of the ISMS directive network. Acknowledges every
//! directive on receipt, applies its rules to the active rule set and the rules file, and
//! reports the outcome up.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use isms_node::cli;
use isms_node::identity::Tier;

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
    /// Run the node until SIGTERM or SIGINT.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show this node's link, backlog and active rule count.
    Status(cli::NodeStatusArgs),
}

fn main() {
    let code = match Args::parse().command {
        Command::Serve { config } => {
            isms_node::node::serve("enterprise-node", Tier::Enterprise, &config)
        }
        Command::Status(a) => cli::run_command(cli::node_status(a)),
    };
    std::process::exit(code);
}
