//! `coherd ready`: whether a server is ready, for health checks and scripts.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use reqwest::Method;

use crate::client::{Client, READ, ServerArgs, runtime};

/// Exit 0 once the server answers /readyz with 200, else 1 (no token needed).
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  coherd ready --server http://127.0.0.1:7070\n  \
    coherd ready --wait 30s && coherd intent put intent.yaml\n  \
    HEALTHCHECK CMD [\"coherd\", \"ready\"]   (in a container image)"
)]
pub(crate) struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Keep asking this long before giving up.
    #[arg(long, default_value = "0s", value_parser = crate::client::parse_duration, value_name = "DURATION")]
    pub wait: Duration,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let client = Client::new(&args.server)?;
    let deadline = Instant::now() + args.wait;
    runtime()?.block_on(async {
        loop {
            let url = client.url("/readyz", &[]);
            let why = match client.send(client.request(Method::GET, url), READ).await {
                Ok(_) => {
                    println!("{} is ready", client.base());
                    return Ok(ExitCode::SUCCESS);
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                eprintln!("{} is not ready: {why}", client.base());
                return Ok(ExitCode::from(1));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}
