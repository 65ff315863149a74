//! `enterprise-node`: the enterprise tier of the ISMS directive network. Acknowledges every
//! directive on receipt, applies its rules to the active rule set and the rules file, and
//! reports the outcome up.

use clap::Parser;
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
    command: cli::NodeCommand,
}

fn main() {
    std::process::exit(
        Args::parse()
            .command
            .run("enterprise-node", Tier::Enterprise),
    );
}
