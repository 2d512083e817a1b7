//! `coherd-agent`: the agent alone, a smaller binary than `coherd` for hosts
//! where every megabyte counts; the same as `coherd agent`.

#![allow(unused_crate_dependencies)] // a binary target sees every dependency of its package

use std::process::ExitCode;

use clap::Parser;

/// Report this member to coherd (the same as `coherd agent`).
#[derive(Parser)]
#[command(name = "coherd-agent", version)]
struct Cli {
    #[command(flatten)]
    args: coherd_agent::cli::Args,
}

fn main() -> ExitCode {
    match coherd_agent::cli::run(Cli::parse().args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
