//! Reading runs from NDJSON events and crontab files.

use super::*;

/// A coherd observation; only the fields this command needs.
#[derive(Deserialize)]
pub(super) struct Observation {
    #[serde(rename = "service")]
    pub(super) _service: String,
    pub(super) member: String,
    #[serde(default)]
    pub(super) events: Vec<Value>,
}

/// One event inside an observation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ObservedEvent {
    pub(super) kind: String,
    pub(super) start: Timestamp,
    pub(super) end: Timestamp,
}

/// One event a line.
#[derive(Deserialize)]
pub(super) struct FlatEvent {
    pub(super) member: String,
    pub(super) kind: String,
    pub(super) start: Timestamp,
    pub(super) end: Timestamp,
}

/// Parses NDJSON events; errors name the file, line and problem.
pub(super) fn parse_events(path: &Path, text: &str) -> anyhow::Result<Vec<Run>> {
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
pub(super) fn to_run(
    member: &str,
    kind: String,
    start: Timestamp,
    end: Timestamp,
) -> anyhow::Result<Run> {
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
pub(super) fn since_epoch(at: Timestamp) -> anyhow::Result<Duration> {
    Duration::try_from(at.as_duration()).map_err(|_| anyhow!("time {at} is before 1970"))
}

/// One schedule line of a crontab file.
pub(super) struct CronLine {
    pub(super) file: String,
    pub(super) line: usize,
    pub(super) schedule: String,
    pub(super) command: String,
    /// A short job name: the command's program name, made unique per file.
    pub(super) job: String,
    pub(super) cron: croner::Cron,
}

/// When the expansion of crontab schedules starts: a Monday at midnight, UTC.
pub(super) const CRON_EPOCH: DateTime = jiff::civil::date(2024, 1, 1).at(0, 0, 0, 0);
/// Crontab schedules are expanded over at least one week.
pub(super) const CRON_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);
/// A guard against schedules that fire absurdly often.
pub(super) const MAX_FIRES_PER_LINE: usize = 200_000;

/// Parses crontab files: comments, blank lines, variable assignments and
/// `@reboot` lines are skipped; errors name the file, line and problem.
/// System crontabs (`/etc/crontab`, `/etc/cron.d/*`) have a user field
/// before the command; it is not part of the job.
pub(super) fn parse_crontabs(paths: &[PathBuf], system: bool) -> anyhow::Result<Vec<CronLine>> {
    let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
    let mut lines = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let file = path.display().to_string();
        let system = system || is_system_crontab(path);
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
            let command = if system {
                match command.split_once(char::is_whitespace) {
                    Some((_user, rest)) if !rest.trim().is_empty() => rest.trim_start(),
                    _ => bail!(
                        "{file}:{number}: a system crontab line needs a user and then a command"
                    ),
                }
            } else {
                command
            };
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

/// Whether `path` is a system crontab, whose lines name the user to run as.
fn is_system_crontab(path: &std::path::Path) -> bool {
    path == std::path::Path::new("/etc/crontab") || path.starts_with("/etc/cron.d")
}

/// Whether a crontab line sets a variable, like `MAILTO=ops` or `PATH = /bin`.
pub(super) fn is_assignment(line: &str) -> bool {
    let name_len = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(line.len());
    let starts_like_a_name = line.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    starts_like_a_name && line[name_len..].trim_start().starts_with('=')
}

/// Splits the first `fields` whitespace-separated fields from the command.
pub(super) fn split_schedule(line: &str, fields: usize) -> Option<(String, &str)> {
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
pub(super) fn program_name(command: &str) -> String {
    let program = command.split_whitespace().next().unwrap_or("job");
    program.rsplit('/').next().unwrap_or(program).to_owned()
}

/// Fire times of every line over the horizon: `(line index, since epoch, civil time)`.
pub(super) type Fire = (usize, Duration, DateTime);

/// Expands every line over at least a week (and a whole number of periods).
pub(super) fn expand(lines: &[CronLine], period: Duration) -> anyhow::Result<Vec<Fire>> {
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
pub(super) fn crontab_runs(lines: &[CronLine], fires: &[Fire], runtime: Duration) -> Vec<Run> {
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
pub(super) fn shortest_gaps(count: usize, fires: &[Fire]) -> Vec<Duration> {
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
