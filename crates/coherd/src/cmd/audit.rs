//! `coherd audit`: the reconcile loop's decisions, newest first.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

use crate::client::{Client, ServerArgs, runtime};

/// What the reconcile loop decided and why: planned, skipped, dispatched,
/// succeeded, failed, verified, unverified, gave up, quarantined.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  coherd audit --service checkout\n  \
    coherd audit --member c-7 --limit 20\n  coherd audit --action fix-config --json")]
pub(crate) struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Only this service's decisions.
    #[arg(long)]
    service: Option<String>,
    /// Only this member's.
    #[arg(long)]
    member: Option<String>,
    /// Only this action's.
    #[arg(long)]
    action: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print one JSON array.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let rt = runtime()?;
    let client = Client::new(&args.server)?;
    let page = args.limit.clamp(1, 1000).to_string();
    let mut query: Vec<(&str, &str)> = vec![("limit", &page)];
    for (k, v) in [
        ("service", &args.service),
        ("member", &args.member),
        ("action", &args.action),
    ] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    let records: Vec<Value> =
        rt.block_on(client.get_all_in("/v1/audit", &query, None, Some(args.limit)))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<5} {:<12} {:<16} {:<14} {:>3}  REASON",
        "TIME", "EPOCH", "DECISION", "ACTION", "MEMBER", "TRY"
    );
    for r in &records {
        let at = r["at"].as_str().unwrap_or("");
        let at = at.parse::<jiff::Timestamp>().map_or(at.to_string(), |t| {
            t.strftime("%Y-%m-%d %H:%M:%S").to_string()
        });
        println!(
            "{at:<20} {:<5} {:<12} {:<16} {:<14} {:>3}  {}",
            r["epoch"],
            r["decision"].as_str().unwrap_or(""),
            super::output::short(r["action"].as_str().unwrap_or(""), 16),
            super::output::short(
                r["member"]
                    .as_str()
                    .unwrap_or(r["service"].as_str().unwrap_or("")),
                14
            ),
            r["attempt"],
            r["reason"].as_str().unwrap_or("")
        );
    }
    if records.is_empty() {
        println!(
            "(no decisions recorded{})",
            args.service
                .map(|s| format!(" for {s}"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
