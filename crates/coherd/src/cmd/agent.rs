//! `coherd agent`: runs beside a member and reports it to coherd (the agent
//! crate's command line; `coherd-agent` is the same alone).

use std::process::ExitCode;

use anyhow::{Result, anyhow};

pub(crate) use coherd_agent::cli::Args;

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    coherd_agent::cli::run(args).map_err(|e| anyhow!(e))
}
