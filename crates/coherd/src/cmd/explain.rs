//! `coherd explain`: why members are not coherent, facet by facet.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::client::{Client, ServerArgs, runtime};

/// Say why a member, or each member of a service, is not coherent.
///
/// A member is coherent when it reports (silent or left members are unknown),
/// has no divergence open against it, and every facet the intent targets is
/// at its target (or an allowed older value within the rollout window).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  coherd explain checkout\n  \
    coherd explain checkout/c-7\n  \
    coherd explain checkout --limit 0 --json")]
pub(crate) struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    /// SERVICE, or SERVICE/MEMBER.
    pub what: String,
    /// Members to list for a service (0: all).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One reason, as the server gives it.
#[derive(Debug, Deserialize, serde::Serialize)]
struct Why {
    reason: String,
    facet: Option<String>,
    value: Option<String>,
    target: Option<String>,
}

/// A member, as the members API gives it.
#[derive(Debug, Deserialize, serde::Serialize)]
struct Member {
    member: String,
    state: String,
    coherent: bool,
    #[serde(default)]
    not_coherent: Vec<Why>,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let client = Client::new(&args.server)?;
    let rt = runtime()?;
    match args.what.split_once('/') {
        Some((service, member)) => {
            let path = format!(
                "/v1/services/{service}/members/{}",
                percent_encoding::utf8_percent_encode(member, percent_encoding::NON_ALPHANUMERIC)
            );
            let body: Value = match rt.block_on(client.get_json(&path, &[])) {
                Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => bail!(
                    "coherd at {} knows no member {member:?} in {service:?}; `coherd explain {service}` lists its members that are not coherent",
                    client.base()
                ),
                r => r?,
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(ExitCode::SUCCESS);
            }
            let m: Member = serde_json::from_value(body.clone())?;
            println!(
                "{service}/{}: {}, {}",
                m.member,
                m.state,
                if m.coherent {
                    "coherent"
                } else {
                    "not coherent"
                }
            );
            for w in &m.not_coherent {
                println!("  {}", sentence(w));
            }
            for d in body["divergences"].as_array().into_iter().flatten() {
                println!(
                    "  open: {} ({}, since {})",
                    d["id"].as_str().unwrap_or("?"),
                    d["severity"].as_str().unwrap_or("?"),
                    d["opened_at"].as_str().unwrap_or("?")
                );
            }
        }
        None => {
            let service = args.what.as_str();
            let path = format!("/v1/services/{service}/members");
            let members: Vec<Member> = match rt.block_on(client.get_all_in(
                &path,
                &[("limit", "1000")],
                Some("members"),
                None,
            )) {
                Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => bail!(
                    "coherd at {} knows no service {service:?}; `coherd status` lists the ones it knows",
                    client.base()
                ),
                r => r?,
            };
            let total = members.len();
            let not: Vec<&Member> = members.iter().filter(|m| !m.coherent).collect();
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "service": service, "members": total, "not_coherent": not,
                    }))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{service}: {} of {total} members coherent",
                total - not.len()
            );
            let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
            for w in not.iter().flat_map(|m| &m.not_coherent) {
                let key = match &w.facet {
                    Some(f) => format!("{} {f}", w.reason),
                    None => w.reason.clone(),
                };
                *reasons.entry(key).or_default() += 1;
            }
            for (reason, n) in &reasons {
                println!("  {n:>6}  {reason}");
            }
            let shown = if args.limit == 0 {
                not.len()
            } else {
                args.limit.min(not.len())
            };
            for m in &not[..shown] {
                let why: Vec<String> = m.not_coherent.iter().map(sentence).collect();
                println!("  {}: {}", m.member, why.join("; "));
            }
            if shown < not.len() {
                println!(
                    "  ... and {} more (--limit 0 lists all; `coherd explain {service}/MEMBER` for one)",
                    not.len() - shown
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One reason in words.
fn sentence(w: &Why) -> String {
    let facet = w.facet.as_deref().unwrap_or("");
    let target = w.target.as_deref().unwrap_or("?");
    let value = w.value.as_deref().unwrap_or("?");
    match w.reason.as_str() {
        "silent" => "silent: no report for 3 report intervals, so unknown".into(),
        "left" => "left: stopped and no longer reporting".into(),
        "divergence" => "a divergence is open against it".into(),
        "unknown" => format!("{facet} not reported (target {target})"),
        "lagging" => format!("{facet} {value} lags target {target} past the rollout window"),
        "foreign" => format!("{facet} {value} is not allowed (target {target})"),
        other => other.to_string(),
    }
}
