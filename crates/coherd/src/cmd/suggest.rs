//! `coherd intent suggest`: a starting intent from what the fleet reports now.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use coherd_model::Intent;

use crate::client::{Client, ServerArgs, ServiceDetail, ServiceSummary, runtime};

/// Write a starting intent from what a running server's fleet reports now.
///
/// Each facet's most common value becomes its target, with a comment giving
/// its share and the other values seen; facets whose values are nearly all
/// different (hostnames, ids) are left out, commented. Review before use: the
/// majority is not always what you want.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    coherd intent suggest > intent.yaml\n  \
    coherd intent suggest --service checkout -o checkout.yaml\n  \
    coherd intent suggest > intent.yaml && $EDITOR intent.yaml && coherd intent put intent.yaml")]
pub(crate) struct SuggestArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Only this service (default: every service the server knows).
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Facets the lifecycle machine owns, not targets.
const NOT_TARGETS: [&str; 1] = ["phase"];

pub(crate) fn suggest(args: SuggestArgs) -> Result<ExitCode> {
    let client = Client::new(&args.server)?;
    let rt = runtime()?;
    let services: Vec<ServiceSummary> = rt.block_on(client.get_json("/v1/services", &[]))?;
    let names: Vec<String> = services
        .iter()
        .map(|s| s.service.clone())
        .filter(|s| args.service.as_deref().is_none_or(|only| only == s))
        .collect();
    if names.is_empty() {
        anyhow::bail!(
            "coherd at {} has no reports{}: let the fleet report first (coherd report, or your agents)",
            client.base(),
            args.service
                .as_deref()
                .map(|s| format!(" from {s:?}"))
                .unwrap_or_default()
        );
    }
    let mut out = format!(
        "# A starting intent from what the fleet reported to {} at {}.\n\
         # Each target is the value most members report now, which is not always the\n\
         # one you want: review every line, then `coherd intent check` and `put` it.\n\
         services:\n",
        client.base(),
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
    );
    for name in &names {
        let detail: ServiceDetail =
            rt.block_on(client.get_json(&format!("/v1/services/{name}"), &[]))?;
        service_yaml(&mut out, &detail);
    }
    // What is written must be an intent coherd accepts.
    Intent::from_yaml(&out)
        .map_err(|e| anyhow::anyhow!("the suggestion is not valid ({e}); please report this"))?;
    match &args.output {
        Some(p) => {
            std::fs::write(p, &out).with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!(
                "wrote a suggested intent for {} services to {}",
                names.len(),
                p.display()
            );
        }
        None => print!("{out}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn service_yaml(out: &mut String, s: &ServiceDetail) {
    let _ = writeln!(out, "  {}:", s.service);
    let _ = writeln!(
        out,
        "    report_interval: 10s          # how often members report (silent after 3 intervals): check"
    );
    let _ = writeln!(
        out,
        "    expect_members: {}              # members seen now",
        s.members
    );
    let mut facets = String::new();
    for (facet, dist) in &s.facets {
        if NOT_TARGETS.contains(&facet.as_str()) {
            continue;
        }
        let seen: u64 = dist.values.values().sum();
        let mut values: Vec<(&String, &u64)> = dist.values.iter().collect();
        values.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let Some((top, n)) = values.first() else {
            continue;
        };
        if values.len() > 3 && values.len() as u64 * 2 > seen {
            let _ = writeln!(
                facets,
                "      # {facet}: {} distinct values among {seen} members: an id, not a target; tracked without one",
                values.len()
            );
            continue;
        }
        let others: Vec<String> = values[1..]
            .iter()
            .take(3)
            .map(|(v, n)| format!("{v} ({n})"))
            .collect();
        let also = if others.is_empty() {
            String::new()
        } else {
            format!("; also seen: {}", others.join(", "))
        };
        let _ = writeln!(
            facets,
            "      {facet}: {{target: {}, rollout_window: 30m}}   # {n} of {seen} members{also}",
            serde_json::to_string(top).unwrap_or_default()
        );
    }
    if !facets.is_empty() {
        let _ = writeln!(out, "    facets:");
        out.push_str(&facets);
    }
}
