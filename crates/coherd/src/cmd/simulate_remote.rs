//! `coherd simulate --server`: a scenario sent to a running server in real time, then scored.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use coherd_engine::Kind;
use coherd_model::time::wall_now;
use coherd_sim::{Found, Scenario, Step, Tally};
use indicatif::{ProgressBar, ProgressStyle};

use super::simulate::Args;

pub(crate) fn run(
    server: &str,
    token: Option<&str>,
    scenario: Scenario,
    args: &Args,
) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(drive(server.trim_end_matches('/'), token, scenario, args))
}

async fn drive(
    server: &str,
    token: Option<&str>,
    scenario: Scenario,
    args: &Args,
) -> Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let auth = |r: reqwest::RequestBuilder| match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let start = wall_now();
    let (feed, truths) = coherd_sim::feed(scenario, args.members, args.seed, args.duration, start);
    let bar = ProgressBar::new(feed.ticks());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} intervals, {elapsed} of {duration}",
        )
        .expect("valid template"),
    );
    bar.set_message(format!("sending {} to {server}", scenario.name()));
    for step in feed {
        let at = match &step {
            Step::Intent { at, .. } | Step::Tick { at, .. } => *at,
        };
        let wait = at.as_nanos() - wall_now().as_nanos();
        if wait > 0 {
            tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
        }
        match step {
            Step::Intent { yaml, .. } => {
                let r = auth(client.put(format!("{server}/v1/intent")).body(yaml))
                    .send()
                    .await
                    .with_context(|| {
                        format!("cannot reach coherd at {server}; is `coherd serve` running?")
                    })?;
                if !r.status().is_success() {
                    bail!(
                        "the server refused the scenario's intent ({}): {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                }
            }
            Step::Tick { reports, .. } => {
                for chunk in reports.chunks(1000) {
                    let body: Vec<String> = chunk
                        .iter()
                        .map(serde_json::to_string)
                        .collect::<Result<_, _>>()?;
                    let r = auth(client.post(format!("{server}/v1/observations")))
                        .header("Content-Type", "application/x-ndjson")
                        .body(body.join("\n"))
                        .send()
                        .await
                        .with_context(|| format!("cannot reach coherd at {server}"))?;
                    if !r.status().is_success() {
                        bail!(
                            "the server refused reports ({}): {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        );
                    }
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    // Give the server a tick to fire what is due, then read what it found.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let url = format!(
        "{server}/v1/divergences?state=all&service={}",
        scenario.name()
    );
    let mut list: Vec<serde_json::Value> = Vec::new();
    let mut next = Some(url);
    while let Some(url) = next.take() {
        let resp = auth(client.get(&url)).send().await?.error_for_status()?;
        next = resp
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::client::next_link)
            .map(|path| format!("{server}{path}"));
        list.extend(resp.json::<Vec<serde_json::Value>>().await?);
    }
    let found: Vec<Found> = list
        .iter()
        .filter_map(|d| {
            Some(Found {
                id: d["id"].as_str()?.to_string(),
                kind: Kind::parse(d["kind"].as_str()?)?,
                opened_at: d["opened_at"].as_str()?.parse().ok()?,
            })
        })
        .collect();
    let mut tally = Tally::default();
    let outcome = tally.add(&truths, &found);
    let kinds = tally.finish();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"kinds": kinds, "scenario": outcome})
            )?
        );
    } else {
        super::simulate::print_kinds(&kinds);
        for id in &outcome.missed {
            println!("missed: {id}");
        }
        for id in &outcome.false_positives {
            println!("false positive: {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
