//! Which crontab lines fire together, and when.

use super::*;

/// Lines that fire at the same minute, and how often.
pub(super) struct Collision {
    pub(super) lines: Vec<usize>,
    pub(super) times: usize,
    pub(super) first: DateTime,
}

pub(super) struct CrontabReport<'a> {
    pub(super) lines: &'a [CronLine],
    pub(super) period: Duration,
    pub(super) fires_per_line: Vec<usize>,
    pub(super) gaps: Vec<Duration>,
    pub(super) collisions: Vec<Collision>,
}

impl<'a> CrontabReport<'a> {
    pub(super) fn new(lines: &'a [CronLine], fires: &[Fire], period: Duration) -> Self {
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

    pub(super) fn label(&self, index: usize) -> String {
        let line = &self.lines[index];
        format!("{}:{} {}", line.file, line.line, line.job)
    }

    pub(super) fn lines_json(&self) -> Value {
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

    pub(super) fn collisions_json(&self) -> Value {
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

    pub(super) fn to_text(&self) -> String {
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
