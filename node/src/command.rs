//! The commands every binary has (`serve`, `status`, `clock`), dispatched: `serve` runs the
//! node here, the others are operator commands of `isms_operator::cli`.

use std::path::PathBuf;

use isms_domain::identity::Tier;
use isms_operator::cli::{ClockCommand, NodeStatusArgs, node_status, run_command};

/// Subcommands every binary has.
#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Run the node until SIGTERM or SIGINT.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show this node's links (up/down, since when), backlogs and counts.
    Status(NodeStatusArgs),
    /// Testing only: move the node's clock (needs `[testing] clock_file` in the config).
    #[command(subcommand)]
    Clock(ClockCommand),
}

impl NodeCommand {
    /// Runs the command for `binary` of `tier`; returns the exit code.
    pub fn run(self, binary: &str, tier: Tier) -> i32 {
        match self {
            NodeCommand::Serve { config } => crate::node::serve(binary, tier, &config),
            NodeCommand::Status(a) => run_command(node_status(a)),
            NodeCommand::Clock(c) => run_command(async move { c.run() }),
        }
    }
}
