//! `coherd divergences`: list what a running server has found.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::Value;

use super::output::{short, span};
use crate::client::{Client, DivergenceRecord, ServerArgs, runtime};

/// List divergences: open ones by default.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    coherd divergences\n  \
    coherd divergences --all --service checkout\n  \
    coherd divergences --kind drain_violation --json")]
pub(crate) struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Only open divergences (the default).
    #[arg(long, group = "state")]
    pub open: bool,
    /// Only resolved divergences.
    #[arg(long, group = "state")]
    pub resolved: bool,
    /// Open and resolved divergences.
    #[arg(long, group = "state")]
    pub all: bool,
    /// Only this kind, such as `drift`, `mixed` or `split_brain`.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only this service.
    #[arg(long, value_name = "SERVICE")]
    pub service: Option<String>,
    /// At most this many, oldest first (0: all; pages are fetched as needed).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Print the server's JSON array.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let state = if args.all {
        "all"
    } else if args.resolved {
        "resolved"
    } else {
        "open"
    };
    let client = Client::new(&args.server)?;
    let query = [
        ("service", args.service.as_deref().unwrap_or("")),
        ("kind", args.kind.as_deref().unwrap_or("")),
        ("state", state),
    ];
    let max = (args.limit > 0).then_some(args.limit);
    let raw: Vec<Value> =
        runtime()?.block_on(client.get_all_in("/v1/divergences", &query, None, max))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(ExitCode::SUCCESS);
    }
    let divs: Vec<DivergenceRecord> =
        client.decode("/v1/divergences", &Value::Array(raw).to_string())?;
    if divs.is_empty() {
        let what = if state == "all" { "" } else { state };
        println!(
            "no {what}{}divergences",
            if what.is_empty() { "" } else { " " }
        );
    } else {
        print_table(&divs, jiff::Timestamp::now());
    }
    Ok(ExitCode::SUCCESS)
}

/// A table of divergences, one line each, fitting 100 columns.
pub(crate) fn print_table(divs: &[DivergenceRecord], now: jiff::Timestamp) {
    let open = divs.iter().filter(|d| d.resolved_at.is_none()).count();
    println!(
        "{} divergence{} ({open} open, {} resolved)",
        divs.len(),
        if divs.len() == 1 { "" } else { "s" },
        divs.len() - open
    );
    println!(
        "{:<18} {:<8} {:<16} {:<20} {:<19} AGE",
        "KIND", "SEVERITY", "SERVICE", "SUBJECTS", "OPENED (UTC)"
    );
    for d in divs {
        let opened = d.opened_at.parse::<jiff::Timestamp>().ok();
        let age = match (opened, d.resolved_at.as_deref()) {
            (Some(o), None) => format!("open {}", span(seconds(o, now))),
            (Some(o), Some(r)) => match r.parse::<jiff::Timestamp>() {
                Ok(r) => format!("lasted {}", span(seconds(o, r))),
                Err(_) => "resolved".into(),
            },
            (None, r) => if r.is_some() { "resolved" } else { "open" }.into(),
        };
        let reopens = if d.reopens > 0 {
            format!(" ↻{}", d.reopens)
        } else {
            String::new()
        };
        println!(
            "{:<18} {:<8} {:<16} {:<20} {:<19} {age}{reopens}",
            short(&d.kind, 18),
            short(&d.severity, 8),
            short(&d.service, 16),
            short(&subjects(&d.subjects), 20),
            opened.map_or_else(|| short(&d.opened_at, 19), clock),
        );
    }
}

/// Subjects joined, with a count when there are many.
pub(crate) fn subjects(s: &[String]) -> String {
    match s.len() {
        0 => "-".into(),
        1..=2 => s.join(","),
        n => format!("{},… ({n})", s[0]),
    }
}

/// `2026-11-22 08:00:00` in UTC.
pub(crate) fn clock(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn seconds(from: jiff::Timestamp, to: jiff::Timestamp) -> f64 {
    (to.as_millisecond() - from.as_millisecond()) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_shorten_long_lists() {
        assert_eq!(subjects(&[]), "-");
        assert_eq!(subjects(&["a".into(), "b".into()]), "a,b");
        assert_eq!(subjects(&["a".into(), "b".into(), "c".into()]), "a,… (3)");
    }

    #[test]
    fn spans_are_compact() {
        assert_eq!(span(42.4), "42s");
        assert_eq!(span(312.0), "5m12s");
        assert_eq!(span(3.0 * 3600.0 + 240.0), "3h04m");
        assert_eq!(span(2.0 * 86400.0 + 3.0 * 3600.0), "2d03h");
    }

    #[test]
    fn clock_is_utc_seconds() {
        let t: jiff::Timestamp = "2026-11-22T08:00:00.123Z".parse().unwrap();
        assert_eq!(clock(t), "2026-11-22 08:00:00");
    }
}
