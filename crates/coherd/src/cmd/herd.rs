//! `coherd herd`: measure how synchronised periodic events or crontab schedules are,
//! and what stable or evenly spread offsets would do to them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use coherd_dephase::{
    histogram, order_parameter, peak_concurrency, peak_to_mean, spread, stable_offset,
};
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::Deserialize;
use serde_json::{Value, json};

/// Measure how synchronised periodic events or crontab schedules are.
#[derive(clap::Args)]
#[command(after_help = "\
Example:
  # Events: NDJSON, each line a coherd observation with \"events\", or one
  # {\"member\",\"kind\",\"start\",\"end\"} object a line (RFC 3339 times).
  coherd herd --events observations.ndjson --period 1h
  # Which crontab lines fire together, and when, over one week:
  coherd herd --crontab /etc/crontab hosts/*.cron --json

R is the Kuramoto order parameter of start times folded onto the period: 1
means every run starts at the same phase, near 0 means they are spread out.")]
pub struct Args {
    /// An NDJSON file of observations or events.
    #[arg(long, value_name = "FILE", required_unless_present = "crontab")]
    events: Option<PathBuf>,
    /// One or more crontab files (one per host); each fire is assumed to run for --runtime.
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with = "events")]
    crontab: Vec<PathBuf>,
    /// The period start times are folded onto, e.g. 10m, 1h, 1d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    period: Duration,
    /// How many slots the period is cut into for the histogram (1 to 72).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u16).range(1..=72))]
    slots: u16,
    /// With --crontab: how long each run is assumed to last.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    runtime: Duration,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

/// One run of a periodic job: who ran what, when, and how far it may be delayed.
#[derive(Debug, Clone)]
struct Run {
    member: String,
    kind: String,
    /// Since the Unix epoch.
    start: Duration,
    end: Duration,
    /// The largest delay a recommendation may add (the period, or a crontab
    /// line's shortest gap between fires).
    window: Duration,
}

/// Runs `coherd herd`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.period.is_zero() {
        bail!("--period must be longer than zero");
    }
    let slots = usize::from(args.slots);
    let (runs, crontab) = match &args.events {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read {}", path.display()))?;
            (parse_events(path, &text)?, None)
        }
        None => {
            let lines = parse_crontabs(&args.crontab)?;
            let fires = expand(&lines, args.period)?;
            let runs = crontab_runs(&lines, &fires, args.runtime);
            (runs, Some((lines, fires)))
        }
    };
    if runs.is_empty() {
        bail!("no events to measure in the input");
    }
    let report = Report::new(&runs, args.period, slots)?;
    let cron_report = crontab
        .as_ref()
        .map(|(lines, fires)| CrontabReport::new(lines, fires, args.period));

    if args.json {
        let mut output = report.to_json(args.period, slots);
        if let (Some(cron), Value::Object(map)) = (&cron_report, &mut output) {
            map.insert("lines".to_owned(), cron.lines_json());
            map.insert("collisions".to_owned(), cron.collisions_json());
        }
        println!("{output}");
    } else {
        print!("{}", report.to_text(args.period, slots));
        if let Some(cron) = &cron_report {
            print!("{}", cron.to_text());
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------
// Events input
// ---------------------------------------------------------------------------

/// A coherd observation; only the fields this command needs.
#[derive(Deserialize)]
struct Observation {
    #[serde(rename = "service")]
    _service: String,
    member: String,
    #[serde(default)]
    events: Vec<Value>,
}

/// One event inside an observation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObservedEvent {
    kind: String,
    start: Timestamp,
    end: Timestamp,
}

/// One event a line.
#[derive(Deserialize)]
struct FlatEvent {
    member: String,
    kind: String,
    start: Timestamp,
    end: Timestamp,
}

/// Parses NDJSON events; errors name the file, line and problem.
fn parse_events(path: &Path, text: &str) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), index + 1);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).map_err(|err| anyhow!("{at}: not valid JSON: {err}"))?;
        if !value.is_object() {
            bail!("{at}: expected a JSON object, found {value}");
        }
        if value.get("service").is_some() {
            let observation: Observation = serde_json::from_value(value)
                .map_err(|err| anyhow!("{at}: not a valid observation: {err}"))?;
            for (k, event) in observation.events.into_iter().enumerate() {
                let event: ObservedEvent = serde_json::from_value(event)
                    .map_err(|err| anyhow!("{at}: events[{k}]: {err}"))?;
                let run = to_run(&observation.member, event.kind, event.start, event.end)
                    .map_err(|err| anyhow!("{at}: events[{k}]: {err}"))?;
                runs.push(run);
            }
        } else {
            let event: FlatEvent = serde_json::from_value(value)
                .map_err(|err| anyhow!("{at}: not a valid event: {err}"))?;
            let run = to_run(&event.member, event.kind, event.start, event.end)
                .map_err(|err| anyhow!("{at}: {err}"))?;
            runs.push(run);
        }
    }
    Ok(runs)
}

/// Checks an event's times and turns it into a run.
fn to_run(member: &str, kind: String, start: Timestamp, end: Timestamp) -> anyhow::Result<Run> {
    if end < start {
        bail!("end {end} is before start {start}");
    }
    Ok(Run {
        member: member.to_owned(),
        kind,
        start: since_epoch(start)?,
        end: since_epoch(end)?,
        window: Duration::ZERO,
    })
}

/// A timestamp as a duration since the Unix epoch.
fn since_epoch(at: Timestamp) -> anyhow::Result<Duration> {
    Duration::try_from(at.as_duration()).map_err(|_| anyhow!("time {at} is before 1970"))
}

// ---------------------------------------------------------------------------
// Crontab input
// ---------------------------------------------------------------------------

/// One schedule line of a crontab file.
struct CronLine {
    file: String,
    line: usize,
    schedule: String,
    command: String,
    /// A short job name: the command's program name, made unique per file.
    job: String,
    cron: croner::Cron,
}

/// When the expansion of crontab schedules starts: a Monday at midnight, UTC.
const CRON_EPOCH: DateTime = jiff::civil::date(2024, 1, 1).at(0, 0, 0, 0);
/// Crontab schedules are expanded over at least one week.
const CRON_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);
/// A guard against schedules that fire absurdly often.
const MAX_FIRES_PER_LINE: usize = 200_000;

/// Parses crontab files: comments, blank lines, variable assignments and
/// `@reboot` lines are skipped; errors name the file, line and problem.
fn parse_crontabs(paths: &[PathBuf]) -> anyhow::Result<Vec<CronLine>> {
    let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
    let mut lines = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let file = path.display().to_string();
        let mut jobs = BTreeSet::new();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || is_assignment(line) {
                continue;
            }
            let field_count = if line.starts_with('@') { 1 } else { 5 };
            let Some((schedule, command)) = split_schedule(line, field_count) else {
                bail!("{file}:{number}: expected {field_count} schedule field(s) and a command");
            };
            if schedule.eq_ignore_ascii_case("@reboot") {
                continue;
            }
            let cron = parser
                .parse(&schedule)
                .map_err(|err| anyhow!("{file}:{number}: invalid schedule `{schedule}`: {err}"))?;
            let mut job = program_name(command);
            if !jobs.insert(job.clone()) {
                job = format!("{job}-{number}");
                jobs.insert(job.clone());
            }
            lines.push(CronLine {
                file: file.clone(),
                line: number,
                schedule,
                command: command.to_owned(),
                job,
                cron,
            });
        }
    }
    Ok(lines)
}

/// Whether a crontab line sets a variable, like `MAILTO=ops` or `PATH = /bin`.
fn is_assignment(line: &str) -> bool {
    let name_len = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(line.len());
    let starts_like_a_name = line.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    starts_like_a_name && line[name_len..].trim_start().starts_with('=')
}

/// Splits the first `fields` whitespace-separated fields from the command.
fn split_schedule(line: &str, fields: usize) -> Option<(String, &str)> {
    let mut rest = line;
    let mut schedule = Vec::with_capacity(fields);
    for _ in 0..fields {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace)?;
        schedule.push(&rest[..end]);
        rest = &rest[end..];
    }
    let command = rest.trim();
    (!command.is_empty()).then(|| (schedule.join(" "), command))
}

/// The base name of a command's program, e.g. `logrotate` for `/usr/sbin/logrotate -f x`.
fn program_name(command: &str) -> String {
    let program = command.split_whitespace().next().unwrap_or("job");
    program.rsplit('/').next().unwrap_or(program).to_owned()
}

/// Fire times of every line over the horizon: `(line index, since epoch, civil time)`.
type Fire = (usize, Duration, DateTime);

/// Expands every line over at least a week (and a whole number of periods).
fn expand(lines: &[CronLine], period: Duration) -> anyhow::Result<Vec<Fire>> {
    let periods = CRON_HORIZON.as_nanos().div_ceil(period.as_nanos()).max(1);
    let horizon = u32::try_from(periods)
        .ok()
        .and_then(|n| period.checked_mul(n))
        .context("--period is too short to expand crontab schedules over a week")?;
    let end = CRON_EPOCH
        .checked_add(horizon)
        .map_err(|err| anyhow!("--period {period:?} is too long: {err}"))?;
    let mut fires = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let times = line
            .cron
            .iter_from(CRON_EPOCH, croner::Direction::Forward)
            .take_while(|at| *at < end)
            .take(MAX_FIRES_PER_LINE);
        for at in times {
            let since = at
                .to_zoned(TimeZone::UTC)
                .map_err(|err| anyhow!("{}:{}: {err}", line.file, line.line))
                .and_then(|zoned| since_epoch(zoned.timestamp()))?;
            fires.push((index, since, at));
        }
    }
    Ok(fires)
}

/// Runs for every fire, lasting `runtime`, each allowed a delay up to the
/// line's shortest gap between fires (at most the period, applied later).
fn crontab_runs(lines: &[CronLine], fires: &[Fire], runtime: Duration) -> Vec<Run> {
    let gaps = shortest_gaps(lines.len(), fires);
    fires
        .iter()
        .map(|&(index, start, _)| Run {
            member: lines[index].file.clone(),
            kind: lines[index].job.clone(),
            start,
            end: start + runtime,
            window: gaps[index],
        })
        .collect()
}

/// Each line's shortest gap between consecutive fires (the horizon if it fires once).
fn shortest_gaps(count: usize, fires: &[Fire]) -> Vec<Duration> {
    let mut gaps = vec![CRON_HORIZON; count];
    let mut last: Vec<Option<Duration>> = vec![None; count];
    for &(index, at, _) in fires {
        if let Some(previous) = last[index] {
            gaps[index] = gaps[index].min(at - previous);
        }
        last[index] = Some(at);
    }
    gaps
}

// ---------------------------------------------------------------------------
// Measures and recommendations
// ---------------------------------------------------------------------------

/// R, peak concurrency, peak-to-mean and histogram of a set of runs.
struct Measures {
    order_parameter: f64,
    peak_concurrency: usize,
    peak_to_mean: f64,
    histogram: Vec<usize>,
}

impl Measures {
    fn of(runs: &[Run], period: Duration, slots: usize) -> anyhow::Result<Self> {
        let starts = || runs.iter().map(|run| run.start);
        let histogram = histogram(starts(), period, slots)?;
        Ok(Self {
            order_parameter: order_parameter(starts(), period)?,
            peak_concurrency: peak_concurrency(runs.iter().map(|run| (run.start, run.end))),
            peak_to_mean: peak_to_mean(&histogram).unwrap_or(0.0),
            histogram,
        })
    }

    fn to_json(&self) -> Value {
        json!({
            "order_parameter": round(self.order_parameter),
            "peak_concurrency": self.peak_concurrency,
            "peak_to_mean": round(self.peak_to_mean),
            "histogram": self.histogram,
        })
    }
}

/// Per-kind breakdown.
struct KindReport {
    kind: String,
    events: usize,
    members: usize,
    measures: Measures,
}

/// What delaying every run by a recommended offset would give.
struct Recommendation {
    method: &'static str,
    description: &'static str,
    measures: Measures,
    /// Kind to member to offset.
    offsets: BTreeMap<String, BTreeMap<String, Duration>>,
}

/// The whole report.
struct Report {
    events: usize,
    members: usize,
    measures: Measures,
    kinds: Vec<KindReport>,
    recommendations: Vec<Recommendation>,
}

impl Report {
    fn new(runs: &[Run], period: Duration, slots: usize) -> anyhow::Result<Self> {
        let mut by_kind: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
        for run in runs {
            by_kind.entry(&run.kind).or_default().push(run.clone());
        }
        let kinds = by_kind
            .iter()
            .map(|(kind, kind_runs)| {
                Ok(KindReport {
                    kind: (*kind).to_owned(),
                    events: kind_runs.len(),
                    members: distinct_members(kind_runs),
                    measures: Measures::of(kind_runs, period, slots)?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let recommendations = vec![
            recommend_spread(&by_kind, period, slots)?,
            recommend_stable(&by_kind, period, slots)?,
        ];
        Ok(Self {
            events: runs.len(),
            members: distinct_members(runs),
            measures: Measures::of(runs, period, slots)?,
            kinds,
            recommendations,
        })
    }

    fn to_json(&self, period: Duration, slots: usize) -> Value {
        let mut output = self.measures.to_json();
        let kinds: Vec<Value> = self
            .kinds
            .iter()
            .map(|kind| {
                let mut value = kind.measures.to_json();
                value["kind"] = json!(kind.kind);
                value["events"] = json!(kind.events);
                value["members"] = json!(kind.members);
                value
            })
            .collect();
        let recommendations: Vec<Value> = self
            .recommendations
            .iter()
            .map(|rec| {
                let mut value = rec.measures.to_json();
                value["method"] = json!(rec.method);
                value["description"] = json!(rec.description);
                value["offsets"] = json!(
                    rec.offsets
                        .iter()
                        .map(|(kind, members)| {
                            let seconds: BTreeMap<&str, f64> = members
                                .iter()
                                .map(|(member, offset)| (member.as_str(), offset.as_secs_f64()))
                                .collect();
                            (kind.clone(), seconds)
                        })
                        .collect::<BTreeMap<_, _>>()
                );
                value
            })
            .collect();
        output["events"] = json!(self.events);
        output["members"] = json!(self.members);
        output["period_seconds"] = json!(period.as_secs_f64());
        output["slots"] = json!(slots);
        output["kinds"] = json!(kinds);
        output["recommendations"] = json!(recommendations);
        output
    }

    fn to_text(&self, period: Duration, slots: usize) -> String {
        let slot = period / u32::try_from(slots).unwrap_or(u32::MAX);
        let m = &self.measures;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} events of {} kind(s) from {} member(s), folded onto a period of {}\n",
            self.events,
            self.kinds.len(),
            self.members,
            human(period)
        );
        let _ = writeln!(
            out,
            "order parameter R  {:.3}  (1 = all start at the same phase, ~0 = spread)",
            m.order_parameter
        );
        let _ = writeln!(out, "peak concurrency   {}", m.peak_concurrency);
        let _ = writeln!(
            out,
            "peak-to-mean       {:.2}  (over {slots} slots of {})\n",
            m.peak_to_mean,
            human(slot)
        );
        out.push_str(&render_histogram(&m.histogram, period));
        let _ = writeln!(out, "\nby kind");
        let _ = writeln!(
            out,
            "  {:<28} {:>7} {:>7} {:>6} {:>6} {:>6}",
            "kind", "events", "members", "R", "peak", "p/mean"
        );
        for kind in &self.kinds {
            let _ = writeln!(
                out,
                "  {:<28} {:>7} {:>7} {:>6.3} {:>6} {:>6.2}",
                truncate(&kind.kind, 28),
                kind.events,
                kind.members,
                kind.measures.order_parameter,
                kind.measures.peak_concurrency,
                kind.measures.peak_to_mean
            );
        }
        let _ = writeln!(out, "\nrecommendations (delay each run by an offset)");
        for rec in &self.recommendations {
            let _ = writeln!(out, "  {}: {}", rec.method, rec.description);
            let _ = writeln!(
                out,
                "    -> R {:.3}, peak concurrency {}, peak-to-mean {:.2}",
                rec.measures.order_parameter,
                rec.measures.peak_concurrency,
                rec.measures.peak_to_mean
            );
        }
        out
    }
}

/// Spread each kind's members evenly over the kind's window.
fn recommend_spread(
    by_kind: &BTreeMap<&str, Vec<Run>>,
    period: Duration,
    slots: usize,
) -> anyhow::Result<Recommendation> {
    let mut offsets = BTreeMap::new();
    for (kind, runs) in by_kind {
        let members: BTreeSet<&str> = runs.iter().map(|run| run.member.as_str()).collect();
        let fleet = spread(members, kind, kind_window(runs, period))?;
        let kind_offsets = fleet
            .iter()
            .map(|(member, offset)| (member.to_owned(), offset))
            .collect();
        offsets.insert((*kind).to_owned(), kind_offsets);
    }
    recommendation(
        "spread",
        "even spread of each kind's members (see `coherd offsets --job KIND`)",
        by_kind,
        offsets,
        period,
        slots,
    )
}

/// A stable per-member, per-kind offset, as `coherd splay --job KIND` would wait.
fn recommend_stable(
    by_kind: &BTreeMap<&str, Vec<Run>>,
    period: Duration,
    slots: usize,
) -> anyhow::Result<Recommendation> {
    let mut offsets = BTreeMap::new();
    for (kind, runs) in by_kind {
        let window = kind_window(runs, period);
        let kind_offsets = runs
            .iter()
            .map(|run| {
                let offset = stable_offset(&run.member, kind, window);
                (run.member.clone(), offset)
            })
            .collect();
        offsets.insert((*kind).to_owned(), kind_offsets);
    }
    recommendation(
        "stable_offset",
        "stable offset per member and kind (see `coherd splay --job KIND`)",
        by_kind,
        offsets,
        period,
        slots,
    )
}

/// Measures the runs delayed by `offsets`.
fn recommendation(
    method: &'static str,
    description: &'static str,
    by_kind: &BTreeMap<&str, Vec<Run>>,
    offsets: BTreeMap<String, BTreeMap<String, Duration>>,
    period: Duration,
    slots: usize,
) -> anyhow::Result<Recommendation> {
    let delayed: Vec<Run> = by_kind
        .iter()
        .flat_map(|(kind, runs)| {
            let kind_offsets = offsets.get(*kind);
            runs.iter().map(move |run| {
                let offset = kind_offsets
                    .and_then(|members| members.get(&run.member))
                    .copied()
                    .unwrap_or_default();
                Run {
                    start: run.start + offset,
                    end: run.end + offset,
                    ..run.clone()
                }
            })
        })
        .collect();
    Ok(Recommendation {
        method,
        description,
        measures: Measures::of(&delayed, period, slots)?,
        offsets,
    })
}

/// The largest delay allowed for a kind: the period, or less if one of its
/// runs says so (a crontab line that fires more often than the period).
fn kind_window(runs: &[Run], period: Duration) -> Duration {
    runs.iter()
        .map(|run| run.window)
        .filter(|window| !window.is_zero())
        .fold(period, Duration::min)
}

fn distinct_members(runs: &[Run]) -> usize {
    runs.iter()
        .map(|run| run.member.as_str())
        .collect::<BTreeSet<_>>()
        .len()
}

// ---------------------------------------------------------------------------
// Crontab collisions
// ---------------------------------------------------------------------------

/// Lines that fire at the same minute, and how often.
struct Collision {
    lines: Vec<usize>,
    times: usize,
    first: DateTime,
}

struct CrontabReport<'a> {
    lines: &'a [CronLine],
    period: Duration,
    fires_per_line: Vec<usize>,
    gaps: Vec<Duration>,
    collisions: Vec<Collision>,
}

impl<'a> CrontabReport<'a> {
    fn new(lines: &'a [CronLine], fires: &[Fire], period: Duration) -> Self {
        let mut at_minute: BTreeMap<Duration, (DateTime, BTreeSet<usize>)> = BTreeMap::new();
        let mut fires_per_line = vec![0; lines.len()];
        for &(index, since, civil) in fires {
            fires_per_line[index] += 1;
            let minute = Duration::from_secs(since.as_secs() / 60 * 60);
            at_minute
                .entry(minute)
                .or_insert_with(|| (civil, BTreeSet::new()))
                .1
                .insert(index);
        }
        let mut groups: BTreeMap<Vec<usize>, Collision> = BTreeMap::new();
        for (civil, together) in at_minute.into_values() {
            if together.len() < 2 {
                continue;
            }
            let key: Vec<usize> = together.into_iter().collect();
            groups
                .entry(key.clone())
                .or_insert(Collision {
                    lines: key,
                    times: 0,
                    first: civil,
                })
                .times += 1;
        }
        let mut collisions: Vec<Collision> = groups.into_values().collect();
        collisions.sort_by(|a, b| {
            (b.lines.len(), b.times, a.first).cmp(&(a.lines.len(), a.times, b.first))
        });
        Self {
            lines,
            period,
            fires_per_line,
            gaps: shortest_gaps(lines.len(), fires),
            collisions,
        }
    }

    fn label(&self, index: usize) -> String {
        let line = &self.lines[index];
        format!("{}:{} {}", line.file, line.line, line.job)
    }

    fn lines_json(&self) -> Value {
        let lines: Vec<Value> = self
            .lines
            .iter()
            .enumerate()
            .map(|(index, line)| {
                json!({
                    "file": line.file,
                    "line": line.line,
                    "schedule": line.schedule,
                    "command": line.command,
                    "job": line.job,
                    "fires_per_week": self.fires_per_line[index],
                    "shortest_gap_seconds": self.gaps[index].as_secs(),
                })
            })
            .collect();
        json!(lines)
    }

    fn collisions_json(&self) -> Value {
        let collisions: Vec<Value> = self
            .collisions
            .iter()
            .map(|collision| {
                json!({
                    "lines": collision.lines.iter().map(|&i| self.label(i)).collect::<Vec<_>>(),
                    "times_per_week": collision.times,
                    "first": collision.first.strftime("%a %H:%M").to_string(),
                })
            })
            .collect();
        json!(collisions)
    }

    fn to_text(&self) -> String {
        const SHOWN: usize = 10;
        let mut out = String::new();
        if self.collisions.is_empty() {
            let _ = writeln!(out, "\nno two crontab lines fire in the same minute");
            return out;
        }
        let _ = writeln!(
            out,
            "\ncollisions (lines firing in the same minute, over one week from a Monday)"
        );
        for collision in self.collisions.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "  {} lines, {} time(s) a week, first {}:",
                collision.lines.len(),
                collision.times,
                collision.first.strftime("%a %H:%M")
            );
            for &index in &collision.lines {
                let _ = writeln!(
                    out,
                    "    {}  `{}`",
                    truncate(&self.label(index), 40),
                    self.lines[index].schedule
                );
            }
        }
        if self.collisions.len() > SHOWN {
            let _ = writeln!(
                out,
                "  ... and {} more groups (see --json)",
                self.collisions.len() - SHOWN
            );
        }
        let example = self.collisions[0].lines[0];
        let line = &self.lines[example];
        let _ = writeln!(
            out,
            "\nwrap a colliding line's command, e.g.:\n  {} coherd splay --window {} --job {} -- {}",
            line.schedule,
            human(self.gaps[example].min(self.period)),
            line.job,
            line.command,
        );
        out
    }
}

// ---------------------------------------------------------------------------
// Output helpers
// ---------------------------------------------------------------------------

/// Rows of the terminal histogram.
const HISTOGRAM_ROWS: usize = 8;

/// A vertical bar chart of slot counts, at most 80 columns wide for up to 72 slots.
fn render_histogram(counts: &[usize], period: Duration) -> String {
    const EIGHTHS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let peak = counts.iter().copied().max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "starts per slot of the period (peak {peak}, {} slots)",
        counts.len()
    );
    // Each bar's height in eighths of a row.
    let heights: Vec<usize> = counts
        .iter()
        .map(|&count| {
            if peak == 0 {
                0
            } else {
                (count * HISTOGRAM_ROWS * 8).div_ceil(peak)
            }
        })
        .collect();
    for row in (0..HISTOGRAM_ROWS).rev() {
        let label = if row + 1 == HISTOGRAM_ROWS {
            peak.to_string()
        } else {
            String::new()
        };
        let _ = write!(out, "{label:>6} │");
        for &height in &heights {
            let filled = height.saturating_sub(row * 8).min(8);
            out.push(EIGHTHS[filled]);
        }
        out.truncate(out.trim_end_matches(' ').len());
        out.push('\n');
    }
    let _ = writeln!(out, "{:>6} └{}", 0, "─".repeat(counts.len()));
    // Time labels under every sixth of the axis.
    let mut axis = vec![' '; counts.len() + 12];
    let ticks = 6.min(counts.len());
    for tick in 0..ticks {
        let slot = tick * counts.len() / ticks;
        let at =
            period * u32::try_from(slot).unwrap_or(0) / u32::try_from(counts.len()).unwrap_or(1);
        for (i, c) in human(at).chars().enumerate() {
            if let Some(cell) = axis.get_mut(slot + i) {
                *cell = c;
            }
        }
    }
    let axis: String = axis.into_iter().collect();
    let _ = writeln!(out, "{:>6}  {}", "", axis.trim_end());
    out
}

/// A short human duration: `1h 30m`, `45s`, `0s`.
fn human(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let whole = Duration::from_secs(duration.as_secs().max(u64::from(duration.as_secs() == 0)));
    humantime::format_duration(whole).to_string()
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(width.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

/// Rounds to 6 decimals for stable JSON output.
fn round(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_are_recognised() {
        assert!(is_assignment("MAILTO=ops@example.invalid"));
        assert!(is_assignment("PATH = /usr/bin"));
        assert!(!is_assignment("*/5 * * * * run"));
        assert!(!is_assignment("@daily run --flag=1"));
    }

    #[test]
    fn schedule_and_command_are_split() {
        let (schedule, command) = split_schedule("0  3 * * 1   backup --all", 5).expect("fields");
        assert_eq!(schedule, "0 3 * * 1");
        assert_eq!(command, "backup --all");
        assert!(split_schedule("0 3 * *", 5).is_none());
        assert_eq!(program_name("/usr/sbin/logrotate -f conf"), "logrotate");
    }

    #[test]
    fn event_errors_name_file_line_and_problem() {
        let path = Path::new("e.ndjson");
        let err = parse_events(path, "\n{\"member\":\"a\",\"kind\":\"k\"}\n").unwrap_err();
        assert!(err.to_string().starts_with("e.ndjson:2: "), "{err}");
        assert!(err.to_string().contains("start"), "{err}");
        let err = parse_events(
            path,
            r#"{"service":"s","member":"a","events":[{"kind":"k","start":"2024-01-01T00:00:00Z","end":"2023-01-01T00:00:00Z"}]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("e.ndjson:1: events[0]: end"),
            "{err}"
        );
    }

    #[test]
    fn histogram_fits_eighty_columns() {
        let counts: Vec<usize> = (0..72).collect();
        let text = render_histogram(&counts, Duration::from_secs(3600));
        assert!(
            text.lines().all(|line| line.chars().count() <= 80),
            "{text}"
        );
    }
}
