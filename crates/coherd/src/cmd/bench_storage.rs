//! `coherd bench storage`: the real store and engine on a virtual clock.
//!
//! A fleet reports for a simulated span as fast as the machine goes: every
//! batch is stored (compressed, one transaction each) and applied, the
//! engine is checkpointed every checkpoint interval of simulated time and
//! the log truncated behind it, as the server does. At the end the engine is
//! rebuilt from the file as a server start does it. It prints what is on
//! disk, how it grew, what a checkpoint cost and how long the restart took.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use coherd_engine::{Driver, Engine, EngineConfig};
use coherd_model::{Intent, Observation, Time};
use coherd_store::{NewEntry, SqliteStore, Store};
use serde::Serialize;

use crate::client::parse_duration;

/// Measure the store: bytes on disk, checkpoint cost and restart time for a
/// fleet over a simulated span, on a virtual clock.
///
/// Each member reports five facets and a phase every report interval; a
/// member's `config` changes now and then (--changes-per-day), the rest
/// stays put, as in a steady fleet. Nothing listens on the network.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    coherd bench storage --members 100000 --duration 1h\n  \
    coherd bench storage --members 1000000 --duration 10m --json\n  \
    coherd bench storage --members 10000 --duration 1d --changes-per-day 24")]
pub(crate) struct StorageArgs {
    /// Members reporting.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub members: u64,
    /// Simulated time to run for.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub duration: Duration,
    /// Each member reports this often (simulated).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub report_interval: Duration,
    /// Real changes per member per simulated day (a config push each).
    #[arg(long, default_value_t = 2.0)]
    pub changes_per_day: f64,
    /// Simulated time between checkpoints, as `checkpoint_interval` of the server.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
    /// A checkpoint is also taken once this many observations came in since
    /// the last, as `checkpoint_after_observations` of the server.
    #[arg(long, default_value_t = 500_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_after_observations: u64,
    /// Observations per stored batch (one request of the server).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
    /// The database file [default: a temporary file, deleted at the end].
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What one run measured.
#[derive(Debug, Serialize)]
struct StorageReport {
    members: u64,
    simulated_seconds: f64,
    report_interval_seconds: f64,
    observations: u64,
    changes: u64,
    wall_seconds: f64,
    observations_per_s: f64,
    /// Bytes on disk (database, WAL and shared memory files) at each quarter of the run.
    disk_bytes_by_quarter: Vec<u64>,
    disk_bytes: u64,
    disk_bytes_per_member: f64,
    /// Growth from half-way to the end, per member and simulated day.
    growth_bytes_per_member_day: f64,
    checkpoints: u64,
    checkpoint_bytes: u64,
    /// Engine time: the copy of the state a checkpoint is encoded from.
    checkpoint_copy_ms: Summary,
    /// Off the engine: encode, compress, store, truncate.
    checkpoint_save_ms: Summary,
    restart_ms: f64,
    restart_members: u64,
    restart_replayed: u64,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    mean: f64,
    max: f64,
}

impl Summary {
    fn of(samples: &[f64]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        Summary {
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
            max: samples.iter().copied().fold(0.0, f64::max),
        }
    }
}

const SERVICE: &str = "bench";
const T0: &str = "2026-01-01T00:00:00Z";

fn intent(report_interval: Duration) -> String {
    format!(
        "services:\n  {SERVICE}:\n    report_interval: {}s\n    facets:\n      version: {{target: \"1.4.2\"}}\n",
        report_interval.as_secs_f64()
    )
}

/// The fleet: each member's next `seq` and its current config.
struct Fleet {
    names: Vec<String>,
    configs: Vec<u32>,
    seq: u64,
    rng: fastrand::Rng,
    /// Chance that a report carries a change.
    change_p: f64,
    changes: u64,
}

impl Fleet {
    /// Stores the reports of members `range` at `at` as one batch and
    /// applies them; returns the batch's id.
    fn store(
        &mut self,
        store: &mut SqliteStore,
        driver: &mut Driver,
        at: Time,
        range: std::ops::Range<usize>,
    ) -> Result<u64> {
        let batch: Vec<Observation> = range.map(|m| self.report(m)).collect();
        let entry = NewEntry::Observations {
            received_at: at,
            observations: batch,
        };
        let id = store.append(std::slice::from_ref(&entry))?[0];
        let NewEntry::Observations { observations, .. } = &entry else {
            unreachable!("built above")
        };
        let refs: Vec<&Observation> = observations.iter().collect();
        driver.observe_instant(at, &refs);
        Ok(id)
    }

    fn report(&mut self, m: usize) -> Observation {
        if self.rng.f64() < self.change_p {
            self.configs[m] += 1;
            self.changes += 1;
        }
        Observation {
            service: SERVICE.into(),
            member: self.names[m].clone(),
            seq: Some(self.seq),
            facets: BTreeMap::from([
                ("version".into(), "1.4.2".into()),
                ("config".into(), format!("sha256:{:08x}", self.configs[m])),
                ("schema".into(), "42".into()),
                ("flags".into(), format!("f{}", m % 4)),
                ("kernel".into(), format!("6.1.0-{}", m % 3)),
                ("phase".into(), "ready".into()),
            ]),
            ..Observation::default()
        }
    }
}

pub(crate) fn storage(args: StorageArgs) -> Result<ExitCode> {
    if args.report_interval.is_zero() || args.checkpoint_interval.is_zero() {
        bail!("--report-interval and --checkpoint-interval must be above 0s");
    }
    if !(0.0..=86_400.0).contains(&args.changes_per_day) {
        bail!("--changes-per-day must be between 0 and 86400");
    }
    let temp = args
        .db
        .is_none()
        .then(|| std::env::temp_dir().join(format!("coherd-bench-storage-{}", std::process::id())));
    let db = match (&args.db, &temp) {
        (Some(db), _) => db.clone(),
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir)?;
            dir.join("coherd.db")
        }
        (None, None) => unreachable!("a temporary folder without --db"),
    };
    if db.exists() {
        bail!(
            "{} exists: give --db a path that does not exist yet (the bench fills it from scratch)",
            db.display()
        );
    }
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let result = run(&args, &db);
    if let Some(dir) = temp {
        let _ = std::fs::remove_dir_all(dir);
    }
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", describe(&report, &db, args.db.is_some()));
    }
    Ok(ExitCode::SUCCESS)
}

fn run(args: &StorageArgs, db: &Path) -> Result<StorageReport> {
    let open = || SqliteStore::open(db).with_context(|| format!("cannot open {}", db.display()));
    let mut store = open()?;
    let mut saver = open()?;
    let t0: Time = T0.parse().expect("a valid time");
    let source = intent(args.report_interval);
    let mut driver = Driver::new(Engine::new(EngineConfig::default()));
    let parsed = Intent::from_yaml(&source).expect("the bench's intent is valid");
    store.append(&[NewEntry::Intent {
        at: t0,
        source: source.clone(),
    }])?;
    driver.set_intent(t0, parsed);

    let members = args.members as usize;
    let interval_ns = args.report_interval.as_nanos() as i64;
    let batches_per_interval = members.div_ceil(args.batch as usize);
    let total_ns = args.duration.as_nanos() as i64;
    let rounds = (total_ns / interval_ns).max(1);
    let mut fleet = Fleet {
        names: (0..members).map(|m| format!("m-{m:07}")).collect(),
        configs: vec![0; members],
        seq: 0,
        rng: fastrand::Rng::with_seed(7),
        change_p: args.changes_per_day * args.report_interval.as_secs_f64() / 86_400.0,
        changes: 0,
    };

    let progress = indicatif::ProgressBar::new(rounds as u64);
    if args.json {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} simulated {msg} [{bar:30}] {percent}% ({eta} left)",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );

    let checkpoint_ns = args.checkpoint_interval.as_nanos() as i64;
    let mut next_checkpoint = t0.as_nanos() + checkpoint_ns;
    let mut previous = None;
    let mut copy_ms = Vec::new();
    let mut save_ms = Vec::new();
    let mut checkpoint_bytes = 0;
    let mut quarters = Vec::new();
    let mut half_way = None;
    let mut observations = 0u64;
    let mut since_checkpoint = 0u64;
    let mut last_id;
    let started = Instant::now();
    for round in 0..rounds {
        fleet.seq = round as u64 + 1;
        for b in 0..batches_per_interval {
            let at = Time::from_nanos(
                t0.as_nanos()
                    + round * interval_ns
                    + b as i64 * interval_ns / batches_per_interval as i64,
            );
            let lo = b * args.batch as usize;
            let hi = (lo + args.batch as usize).min(members);
            last_id = fleet.store(&mut store, &mut driver, at, lo..hi)?;
            observations += (hi - lo) as u64;
            since_checkpoint += (hi - lo) as u64;

            if at.as_nanos() >= next_checkpoint
                || since_checkpoint >= args.checkpoint_after_observations
            {
                next_checkpoint = at.as_nanos() + checkpoint_ns;
                since_checkpoint = 0;
                // As the server: the engine is held for the copy; encoding,
                // compressing and storing happen off it.
                let t = Instant::now();
                let snapshot = driver.engine().snapshot();
                copy_ms.push(t.elapsed().as_secs_f64() * 1e3);
                let t = Instant::now();
                let bytes = coherd_server::encode_checkpoint(&snapshot, Some((&source, 1, t0)));
                drop(snapshot);
                let id = saver.save_checkpoint(last_id, at, &bytes)?;
                if let Some(keep) = previous.replace(id) {
                    saver.truncate(keep, None)?;
                }
                save_ms.push(t.elapsed().as_secs_f64() * 1e3);
                checkpoint_bytes = bytes.len() as u64;
            }
        }
        progress.set_message(coherd_model::time::format_duration(Duration::from_nanos(
            ((round + 1) * interval_ns) as u64,
        )));
        progress.inc(1);
        let done = round + 1;
        if done * 4 / rounds != round * 4 / rounds {
            quarters.push(disk_bytes(db));
        }
        if half_way.is_none() && done * 2 >= rounds {
            half_way = Some((disk_bytes(db), done * interval_ns));
        }
    }
    progress.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let disk = disk_bytes(db);
    // The worst case for a start: the server killed just before it would
    // take the next checkpoint, so the log after the newest is full.
    let mut at = t0.as_nanos() + rounds * interval_ns;
    let step = interval_ns / batches_per_interval as i64;
    let mut next = 0;
    while since_checkpoint + args.batch < args.checkpoint_after_observations {
        let hi = (next + args.batch as usize).min(members);
        fleet.store(&mut store, &mut driver, Time::from_nanos(at), next..hi)?;
        since_checkpoint += (hi - next) as u64;
        next = if hi == members { 0 } else { hi };
        at += step;
    }
    drop(store);
    drop(saver);
    drop(driver);

    let t = Instant::now();
    let mut store = open()?;
    let rebuilt = coherd_server::rebuild_engine(&mut store, EngineConfig::default())?;
    let restart_ms = t.elapsed().as_secs_f64() * 1e3;
    let restart_members = rebuilt
        .engine
        .services()
        .iter()
        .map(|s| u64::from(s.members))
        .sum();

    let simulated = rounds * interval_ns;
    let growth = half_way.map_or(0.0, |(bytes, at)| {
        let days = (simulated - at) as f64 / 86_400e9;
        if days > 0.0 {
            (disk as f64 - bytes as f64) / args.members as f64 / days
        } else {
            0.0
        }
    });
    Ok(StorageReport {
        members: args.members,
        simulated_seconds: simulated as f64 / 1e9,
        report_interval_seconds: args.report_interval.as_secs_f64(),
        observations,
        changes: fleet.changes,
        wall_seconds: wall,
        observations_per_s: observations as f64 / wall,
        disk_bytes_by_quarter: quarters,
        disk_bytes: disk,
        disk_bytes_per_member: disk as f64 / args.members as f64,
        growth_bytes_per_member_day: growth,
        checkpoints: copy_ms.len() as u64,
        checkpoint_bytes,
        checkpoint_copy_ms: Summary::of(&copy_ms),
        checkpoint_save_ms: Summary::of(&save_ms),
        restart_ms,
        restart_members,
        restart_replayed: rebuilt.replayed,
    })
}

/// The database and its WAL and shared-memory files, in bytes.
fn disk_bytes(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(PathBuf::from(p)).ok()
        })
        .map(|m| m.len())
        .sum()
}

fn describe(r: &StorageReport, db: &Path, kept: bool) -> String {
    let mb = |b: f64| b / 1e6;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "bench storage: {} members reporting every {}s for {} simulated ({:.1}s of wall time)",
        r.members,
        r.report_interval_seconds,
        coherd_model::time::format_duration(Duration::from_secs_f64(r.simulated_seconds)),
        r.wall_seconds
    );
    let _ = writeln!(
        out,
        "  stored          {} observations ({:.0}/s), {} real changes",
        r.observations, r.observations_per_s, r.changes
    );
    let quarters: Vec<String> = r
        .disk_bytes_by_quarter
        .iter()
        .map(|b| format!("{:.1}", mb(*b as f64)))
        .collect();
    let _ = writeln!(
        out,
        "  on disk         {:.1} MB = {:.0} bytes per member (by quarter: {} MB)",
        mb(r.disk_bytes as f64),
        r.disk_bytes_per_member,
        quarters.join(", ")
    );
    let _ = writeln!(
        out,
        "  growth          {:.0} bytes per member-day (second half of the run)",
        r.growth_bytes_per_member_day
    );
    let _ = writeln!(
        out,
        "  checkpoints     {} of {:.1} MB; copy (engine time) mean {:.1} ms, max {:.1} ms; encode and store mean {:.1} ms, max {:.1} ms",
        r.checkpoints,
        mb(r.checkpoint_bytes as f64),
        r.checkpoint_copy_ms.mean,
        r.checkpoint_copy_ms.max,
        r.checkpoint_save_ms.mean,
        r.checkpoint_save_ms.max
    );
    let _ = writeln!(
        out,
        "  restart         {:.0} ms: {} members, {} observations replayed after the newest checkpoint (the most a start replays)",
        r.restart_ms, r.restart_members, r.restart_replayed
    );
    if kept {
        let _ = writeln!(out, "  database        {}", db.display());
    }
    out
}
