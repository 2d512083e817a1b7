//! `coherd completions` and `coherd man`: shell completions and a man page,
//! generated from the same definitions as `--help`.

use std::process::ExitCode;

use anyhow::Result;

/// Print shell completions for coherd.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  coherd completions bash > /etc/bash_completion.d/coherd\n  \
    coherd completions zsh > \"${fpath[1]}/_coherd\"\n  \
    coherd completions fish > ~/.config/fish/completions/coherd.fish"
)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// Print coherd's man page (roff).
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  coherd man > /usr/local/share/man/man1/coherd.1\n  \
    coherd man | man -l -"
)]
pub(crate) struct ManArgs {}

pub(crate) fn completions(args: CompletionsArgs, mut command: clap::Command) -> Result<ExitCode> {
    clap_complete::generate(args.shell, &mut command, "coherd", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn man(_: ManArgs, command: clap::Command) -> Result<ExitCode> {
    clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}
