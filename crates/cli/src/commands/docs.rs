//! `keyhaven completions SHELL` and `keyhaven man [--dir DIR]`: shell completions and
//! man pages, generated from the command-line definition itself, so they never drift
//! from it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for. Install, e.g.:
    /// `keyhaven completions bash > /etc/bash_completion.d/keyhaven`,
    /// `keyhaven completions zsh > "${fpath[1]}/_keyhaven"`,
    /// `keyhaven completions fish > ~/.config/fish/completions/keyhaven.fish`.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write keyhaven.1 and one page per command (keyhaven-serve.1, …) into this
    /// directory instead of printing keyhaven.1 to stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script for `command` (the whole command line's definition).
pub fn completions(args: &CompletionsArgs, mut command: clap::Command) -> anyhow::Result<ExitCode> {
    // Into memory first: the generator panics on a failed write, and a closed pipe
    // (`keyhaven completions bash | head`) is a normal end.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "keyhaven", &mut script);
    print(&script)
}

/// Renders the man pages of `command` (the whole command line's definition).
pub fn man(args: &ManArgs, command: clap::Command) -> anyhow::Result<ExitCode> {
    match &args.dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            return print(&page);
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing man pages to {}", dir.display()))?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "man pages written to {}", dir.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    super::ignore_broken_pipe(out.write_all(bytes).and_then(|()| out.flush()))?;
    Ok(ExitCode::SUCCESS)
}
