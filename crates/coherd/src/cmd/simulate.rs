//! `coherd simulate` (placeholder until the simulator lands in this branch).
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("simulate is not built yet")
}
