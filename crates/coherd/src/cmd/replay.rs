//! `coherd replay`: run a captured NDJSON stream through the engine.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use coherd_engine::{Divergence, Driver, Engine, ServiceSlis};
use coherd_model::{Intent, Limits, Observation, Time};
use serde::Serialize;

use super::output;

/// Replay a captured stream against an intent and print what coherd would have flagged.
///
/// Each line of the stream is an observation (DESIGN 2.1, with a `time`), an intent
/// change written as {"time": "...", "intent": {...}} (the intent as JSON, or its YAML
/// text as a string), or a member deletion written as
/// {"time": "...", "delete": {"service": "...", "member": "..."}}, as `coherd capture
/// export` writes them. A report received at one time that carries another (a
/// member whose clock runs ahead) is written {"time": "<received>", "report": {...}}
/// and is applied at the received time. Lines must not go back in time.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  coherd replay capture.ndjson --intent intent.yaml\n  \
    coherd replay capture.ndjson --intent intent.yaml --until +15m --json\n  \
    zcat capture.ndjson.gz | coherd replay - --intent intent.yaml"
)]
pub(crate) struct Args {
    /// NDJSON file to replay, or - for standard input.
    pub file: PathBuf,
    /// Intent YAML in force from the first line's time (without it, every service gets the defaults).
    #[arg(long)]
    pub intent: Option<PathBuf>,
    /// Tick the engine until this time after the last line: RFC 3339, or +DURATION after the last line.
    #[arg(long)]
    pub until: Option<String>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// How far ahead of its receive time a `report` line's own time may be
    /// before `clock_skew` opens: the `max_clock_skew` of the server the
    /// capture came from.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_skew)]
    pub max_clock_skew: std::time::Duration,
}

fn parse_skew(s: &str) -> Result<std::time::Duration, String> {
    coherd_model::time::parse_duration(s)
}

/// What a replay found.
#[derive(Serialize)]
pub(crate) struct Report {
    /// Every divergence episode, ordered by `opened_at`.
    pub divergences: Vec<Divergence>,
    /// SLIs per service at the end.
    pub slis: std::collections::BTreeMap<String, ServiceSlis>,
}

enum Line {
    Observation(Box<Observation>),
    Intent(Intent),
    Delete {
        service: String,
        member: Option<String>,
    },
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let intent = match &args.intent {
        Some(p) => Some(load_intent(p)?),
        None => None,
    };
    let input: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            File::open(&args.file)
                .with_context(|| format!("cannot open {}", args.file.display()))?,
        )
    };
    let config = coherd_engine::EngineConfig {
        max_clock_skew: args.max_clock_skew,
        ..Default::default()
    };
    let report = replay(BufReader::new(input), intent, args.until.as_deref(), config)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        output::print_divergences(&report.divergences);
        println!();
        output::print_slis(&report.slis);
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads and validates an intent file.
pub(crate) fn load_intent(path: &PathBuf) -> Result<Intent> {
    let src = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read intent file {}", path.display()))?;
    Intent::from_yaml(&src).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Replays a stream; see [`Args`]. The observations of one instant are
/// applied together, so their order within the instant does not matter.
pub(crate) fn replay(
    input: impl BufRead,
    intent: Option<Intent>,
    until: Option<&str>,
    config: coherd_engine::EngineConfig,
) -> Result<Report> {
    let limits = Limits::default();
    let mut driver = Driver::new(Engine::new(config));
    if let Some(intent) = intent {
        driver.intent_from_first_input(intent);
    }
    let mut last: Option<Time> = None;
    let mut instant: Vec<(usize, Observation)> = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("line {n}: cannot read"))?;
        if line.trim().is_empty() {
            continue;
        }
        let (time, parsed) = parse_line(&line, n, &limits)?;
        if let Some(prev) = last {
            if time < prev {
                bail!(
                    "line {n}: time {time} is before the previous line's time {prev}; lines must be in time order"
                );
            }
            if time > prev {
                flush(&mut driver, prev, &mut instant)?;
            }
        }
        last = Some(time);
        match parsed {
            Line::Observation(obs) => instant.push((n, *obs)),
            Line::Intent(new) => {
                flush(&mut driver, time, &mut instant)?;
                driver.set_intent(time, new);
            }
            Line::Delete { service, member } => {
                flush(&mut driver, time, &mut instant)?;
                match member {
                    Some(member) => driver.remove_member(time, &service, &member),
                    None => driver.remove_service(time, &service),
                };
            }
        }
    }
    let Some(last) = last else {
        bail!("the stream has no lines to replay")
    };
    flush(&mut driver, last, &mut instant)?;
    driver.tick(last);
    if let Some(until) = until {
        driver.tick(parse_until(until, last)?);
    }
    let mut engine = driver.into_engine();
    engine.refresh_open_subjects();
    let mut divergences = engine.divergences().to_vec();
    divergences.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then_with(|| a.id.cmp(&b.id)));
    let slis = engine.all_service_slis().into_iter().collect();
    Ok(Report { divergences, slis })
}

/// Applies the observations of one instant together.
fn flush(driver: &mut Driver, at: Time, instant: &mut Vec<(usize, Observation)>) -> Result<()> {
    if instant.is_empty() {
        return Ok(());
    }
    let batch: Vec<&Observation> = instant.iter().map(|(_, o)| o).collect();
    let results = driver.observe_instant(at, &batch);
    for ((n, _), r) in instant.iter().zip(results) {
        r.map_err(|e| anyhow::anyhow!("line {n}: {e}"))?;
    }
    instant.clear();
    Ok(())
}

fn parse_line(line: &str, n: usize, limits: &Limits) -> Result<(Time, Line)> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| anyhow::anyhow!("line {n}: not valid JSON: {e}"))?;
    let serde_json::Value::Object(mut map) = value else {
        bail!("line {n}: expected a JSON object")
    };
    if let Some(report) = map.remove("report") {
        // Received at `time`, carrying a time of its own (clock skew).
        let time = map
            .remove("time")
            .context(format!("line {n}: report line needs a \"time\""))?;
        if let Some(k) = map.keys().next() {
            bail!(
                "line {n}: unknown field `{k}` in report line; expected only `time` and `report`"
            );
        }
        let obs = observation(report, n, limits)?;
        return Ok((
            parse_time_value(&time, n)?,
            Line::Observation(Box::new(obs)),
        ));
    }
    for (field, parse) in [
        ("intent", intent_line as LineParser),
        ("delete", delete_line),
    ] {
        let Some(value) = map.remove(field) else {
            continue;
        };
        let time = map
            .remove("time")
            .context(format!("line {n}: {field} line needs a \"time\""))?;
        if let Some(k) = map.keys().next() {
            bail!(
                "line {n}: unknown field `{k}` in {field} line; expected only `time` and `{field}`"
            );
        }
        return Ok((parse_time_value(&time, n)?, parse(value, n)?));
    }
    let obs = observation(serde_json::Value::Object(map), n, limits)?;
    let time = obs.time.context(format!(
        "line {n}: every replayed observation needs a \"time\""
    ))?;
    Ok((time, Line::Observation(Box::new(obs))))
}

fn observation(value: serde_json::Value, n: usize, limits: &Limits) -> Result<Observation> {
    Observation::from_value(value, limits).map_err(|errs| {
        let list: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("line {n}: invalid observation: {}", list.join("; "))
    })
}

type LineParser = fn(serde_json::Value, usize) -> Result<Line>;

/// An intent as JSON, or its YAML text as a string.
fn intent_line(value: serde_json::Value, n: usize) -> Result<Line> {
    let intent = match &value {
        serde_json::Value::String(text) => Intent::from_yaml(text),
        _ => Intent::from_json(&value, n),
    };
    Ok(Line::Intent(
        intent.map_err(|e| anyhow::anyhow!("line {n}: {e}"))?,
    ))
}

fn delete_line(value: serde_json::Value, n: usize) -> Result<Line> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Delete {
        service: String,
        member: Option<String>,
    }
    let Delete { service, member } = serde_json::from_value(value).map_err(|e| {
        anyhow::anyhow!("line {n}: a delete line needs {{\"service\": ...}} and, for one member, \"member\": {e}")
    })?;
    Ok(Line::Delete { service, member })
}

fn parse_time_value(v: &serde_json::Value, n: usize) -> Result<Time> {
    let s = v
        .as_str()
        .context(format!("line {n}: time must be an RFC 3339 string"))?;
    s.parse().map_err(|e| anyhow::anyhow!("line {n}: {e}"))
}

fn parse_until(until: &str, last: Time) -> Result<Time> {
    let end = match until.strip_prefix('+') {
        Some(d) => last.add(
            coherd_model::time::parse_duration(d).map_err(|e| anyhow::anyhow!("--until: {e}"))?,
        ),
        None => until.parse().map_err(|e| anyhow::anyhow!("--until: {e}"))?,
    };
    if end < last {
        bail!("--until {until} is before the last line's time {last}");
    }
    Ok(end)
}
