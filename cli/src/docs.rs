//! Shell completions and the man page of a program, generated from its command-line
//! definition (`clap_complete`, `clap_mangen`), so they never drift from it:
//! `NAME completions bash > /etc/bash_completion.d/NAME`, `NAME man > NAME.1`.

use super::*;

/// The two commands every program has for its own documentation.
#[derive(Debug, clap::Subcommand)]
pub enum DocsCommand {
    /// Print shell completions for this program (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print this program's man page (roff), e.g. `NAME man > /usr/share/man/man1/NAME.1`.
    Man,
}

impl DocsCommand {
    /// Writes to standard output for `program`, whose definition is `command`.
    pub fn run(self, mut command: clap::Command) -> i32 {
        let name = command.get_name().to_string();
        // Rendered whole first: the generators panic on a write error (a closed pipe).
        let mut text = Vec::new();
        match self {
            DocsCommand::Completions { shell } => {
                clap_complete::generate(shell, &mut command, name, &mut text);
            }
            DocsCommand::Man => {
                if let Err(e) = clap_mangen::Man::new(command).render(&mut text) {
                    eprintln!("error: {e}");
                    return exit::ERROR;
                }
            }
        }
        use std::io::Write;
        match std::io::stdout().write_all(&text) {
            Ok(()) => exit::OK,
            // A reader that stopped early (`| head`) is not an error of ours.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
            Err(e) => {
                eprintln!("error: {e}");
                exit::ERROR
            }
        }
    }
}
