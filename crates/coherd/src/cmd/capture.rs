//! `coherd capture export`: what a server applied, as a stream `coherd replay` takes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use coherd_model::Time;
use coherd_store::{Entry, NewEntry, SqliteStore, Store, StoreError};
use serde_json::json;

/// Work with what a server stored.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do with the capture.
#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Write the stored reports, intents and deletions as NDJSON for `coherd replay`.
    ///
    /// Every line carries the instant the server applied it at (its wall
    /// clock when the report arrived), so replaying the export gives the
    /// divergences the server gave. The database may be in use by a server.
    #[command(
        after_help = "Examples:\n  coherd capture export --db coherd.db > capture.ndjson\n  \
        coherd capture export --db coherd.db --since 2026-11-22T08:00:00Z --until 2026-11-22T09:00:00Z -o hour.ndjson\n  \
        coherd replay capture.ndjson --json"
    )]
    Export {
        /// The server's SQLite database.
        #[arg(long, default_value = "coherd.db")]
        db: PathBuf,
        /// Only entries at or after this time (RFC 3339); the intent then in force comes first.
        #[arg(long)]
        since: Option<Time>,
        /// Only entries before this time (RFC 3339).
        #[arg(long)]
        until: Option<Time>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

pub(crate) fn run(args: Args) -> Result<ExitCode> {
    let Command::Export {
        db,
        since,
        until,
        output,
    } = args.command;
    if !db.exists() {
        anyhow::bail!(
            "no database at {}: give the file `coherd serve --db` uses",
            db.display()
        );
    }
    let mut store =
        SqliteStore::open(&db).with_context(|| format!("cannot open {}", db.display()))?;
    let out: Box<dyn Write> = match &output {
        Some(p) => {
            Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut export = Export {
        out: BufWriter::new(out),
        since: since.unwrap_or(Time::EPOCH),
        until,
        earlier_intent: None,
        lines: 0,
        first_batch: None,
    };
    // Without raw capture the log is truncated behind the checkpoints.
    let truncated_through = store
        .checkpoints()
        .with_context(|| format!("cannot read {}", db.display()))?
        .last()
        .map(|c| c.covers);
    store
        .load(0, &mut |entry| {
            let id = entry.id;
            export.entry(entry).map_err(|e| StoreError::replay(id, e))
        })
        .with_context(|| format!("cannot read {}", db.display()))?;
    export.out.flush().context("cannot write the export")?;
    eprintln!("exported {} lines", export.lines);
    if let (Some(covers), Some((id, at))) = (truncated_through, export.first_batch)
        && id > covers
    {
        eprintln!(
            "note: the log starts at {at}: older reports live only in checkpoints. \
             Start the server with --capture-raw DURATION to keep raw reports for export."
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct Export<W: Write> {
    out: W,
    since: Time,
    until: Option<Time>,
    /// The last intent before `since`, written before the first entry after it.
    earlier_intent: Option<(Time, String)>,
    lines: u64,
    /// The first observation batch in the log: its id and time.
    first_batch: Option<(u64, Time)>,
}

const SECOND: i64 = 1_000_000_000;

impl<W: Write> Export<W> {
    fn entry(&mut self, Entry { id, body }: Entry) -> std::io::Result<()> {
        let at = body.time();
        if matches!(body, NewEntry::Observations { .. }) && self.first_batch.is_none() {
            self.first_batch = Some((id, at));
        }
        if at < self.since {
            if let NewEntry::Intent { at, source } = body {
                self.earlier_intent = Some((at, source));
            }
            return Ok(());
        }
        if self.until.is_some_and(|until| at >= until) {
            return Ok(());
        }
        if let Some((at, source)) = self.earlier_intent.take() {
            self.line(&json!({"time": at, "intent": source}))?;
        }
        match body {
            NewEntry::Observations {
                received_at,
                observations,
            } => {
                for mut o in observations {
                    match o.time {
                        // Ahead by a second or more: the skew may matter
                        // (max_clock_skew is at least 1 s), so it is kept.
                        Some(t)
                            if t.as_nanos().saturating_sub(received_at.as_nanos()) >= SECOND =>
                        {
                            self.line(&json!({"time": received_at, "report": o}))?;
                        }
                        _ => {
                            o.time = Some(received_at);
                            self.line(&o)?;
                        }
                    }
                }
            }
            NewEntry::Intent { at, source } => {
                self.line(&json!({"time": at, "intent": source}))?;
            }
            NewEntry::DeleteService { at, service } => {
                self.line(&json!({"time": at, "delete": {"service": service}}))?;
            }
            NewEntry::DeleteMember {
                at,
                service,
                member,
            } => {
                self.line(&json!({"time": at, "delete": {"service": service, "member": member}}))?;
            }
        }
        Ok(())
    }

    fn line(&mut self, value: &impl serde::Serialize) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.lines += 1;
        self.out.write_all(b"\n")
    }
}
