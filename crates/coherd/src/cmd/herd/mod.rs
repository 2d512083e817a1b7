//! `coherd herd`: measure how synchronised periodic events or crontab schedules are,
//! and what stable or evenly spread offsets would do to them.

mod crontab;
mod input;
mod render;
mod report;

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

use crontab::*;
use input::*;
use render::*;
use report::*;

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
pub(crate) struct Args {
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
    /// With --crontab: the files are system crontabs, with a user before each
    /// command (detected for /etc/crontab and /etc/cron.d/*).
    #[arg(long, requires = "crontab")]
    system: bool,
    /// With --crontab: how long each run is assumed to last.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    runtime: Duration,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

/// One run of a periodic job: who ran what, when, and how far it may be delayed.
#[derive(Debug, Clone)]
pub(super) struct Run {
    pub(super) member: String,
    pub(super) kind: String,
    /// Since the Unix epoch.
    pub(super) start: Duration,
    pub(super) end: Duration,
    /// The largest delay a recommendation may add (the period, or a crontab
    /// line's shortest gap between fires).
    pub(super) window: Duration,
}

/// Runs `coherd herd`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
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
            let lines = parse_crontabs(&args.crontab, args.system)?;
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
