//! `coherd offsets`: every member's offset under an even spread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use coherd_dephase::spread;

/// Print every member's offset under an even spread.
#[derive(clap::Args)]
#[command(after_help = "\
Example:
  # members.txt holds one member id a line; blank lines and # comments are ignored.
  coherd offsets --window 1h --job compact --members-file members.txt
  coherd offsets --window 10m --members-file members.txt --json

Members are spaced window/N apart, so no slot of the window holds more than
its share, and when one member joins or leaves the others move by at most
window/N.")]
pub(crate) struct Args {
    /// The window to spread members over, e.g. 30s, 10m, 1h, 1d.
    #[arg(long, value_parser = humantime::parse_duration)]
    window: Duration,
    /// The job name: each job gets its own order and phase.
    #[arg(long, default_value = "")]
    job: String,
    /// A file with one member id a line.
    #[arg(long, value_name = "FILE")]
    members_file: PathBuf,
    /// Print `{"offsets": {"member": seconds, ...}}` instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `coherd offsets`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.members_file)
        .with_context(|| format!("could not read {}", args.members_file.display()))?;
    let members = parse_members(&args.members_file, &text)?;
    let fleet = spread(members.iter().cloned(), &args.job, args.window)?;

    if args.json {
        let offsets: serde_json::Map<String, serde_json::Value> = fleet
            .iter()
            .map(|(member, offset)| (member.to_owned(), offset.as_secs_f64().into()))
            .collect();
        let output = serde_json::json!({
            "window_seconds": args.window.as_secs_f64(),
            "job": args.job,
            "offsets": offsets,
        });
        println!("{output}");
    } else {
        for member in &members {
            if let Some(offset) = fleet.offset(member) {
                println!("{member}\t{:.3}", offset.as_secs_f64());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Member ids from a members file: one a line, trimmed; blank lines and
/// everything after a `#` are ignored; a member listed twice is an error.
fn parse_members(path: &Path, text: &str) -> anyhow::Result<Vec<String>> {
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    let mut members = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let member = line.split('#').next().unwrap_or_default().trim();
        if member.is_empty() {
            continue;
        }
        if let Some(first) = first_seen.insert(member, number) {
            bail!(
                "{}:{number}: member `{member}` is listed twice (first on line {first})",
                path.display()
            );
        }
        members.push(member.to_owned());
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let members = parse_members(Path::new("m.txt"), "# fleet\n\na\n  b  # web\n#c\n")
            .expect("valid file");
        assert_eq!(members, ["a", "b"]);
    }

    #[test]
    fn duplicates_name_both_lines() {
        let err = parse_members(Path::new("m.txt"), "a\nb\n\na\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.txt:4: member `a` is listed twice (first on line 1)"
        );
    }
}
