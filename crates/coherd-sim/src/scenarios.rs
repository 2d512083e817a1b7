//! The scenarios: each a fleet, an intent, and faults injected at known times.
//!
//! Faults are chosen by *rule index* (for example every member whose index is
//! 7 modulo 100 is a straggler); the seed permutes which member has which
//! index, so different seeds pick different members.

use std::collections::BTreeMap;
use std::time::Duration;

use coherd_engine::Kind;
use coherd_model::{Checksum, Lease, Observation, PeriodicEvent, Time, View};

use crate::fleet::{Truth, t0};

/// A scenario with ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// A version rollout in waves with stragglers, and a config deploy that stalls half way.
    Rollout,
    /// A few members get a hand-edited config, then revert.
    ConfigDrift,
    /// Rolling restarts with lagging balancer views; one balancer keeps routing to a draining member that still serves.
    Drain,
    /// A partition: two lease holders, then a deposed leader with a stale epoch.
    SplitBrain,
    /// Replica groups compare digests; one replica diverges, then re-syncs.
    Replica,
    /// Some members crash and go quiet; others stop cleanly and leave.
    Silent,
    /// Members cycle phases too often; one jumps `stopped -> ready`.
    Flap,
    /// A schema rollout with a compatible previous version and a few members on an incompatible one.
    IncompatibleMix,
    /// Every member runs an hourly `cron:compact` at minute 0, then switches to
    /// evenly spread offsets; `cron:backup` is spread from the start.
    Herd,
    /// A few members' clocks jump two minutes ahead, then NTP brings them
    /// back; others run a few seconds ahead, within `max_clock_skew`.
    ClockSkew,
    /// A canary of version v2 fails 5 % of requests where v1 fails 0.1 %;
    /// a config canary beside it fails as often as the old config.
    Canary,
    /// Replicas of shards advance together; a few stop applying for five
    /// minutes, then catch up.
    ReplicaLag,
}

impl Scenario {
    /// Every scenario, in order.
    pub const ALL: [Scenario; 12] = [
        Scenario::Rollout,
        Scenario::ConfigDrift,
        Scenario::Drain,
        Scenario::SplitBrain,
        Scenario::Replica,
        Scenario::Silent,
        Scenario::Flap,
        Scenario::IncompatibleMix,
        Scenario::Herd,
        Scenario::ClockSkew,
        Scenario::Canary,
        Scenario::ReplicaLag,
    ];

    /// The scenario's name, also its service's name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Rollout => "rollout",
            Scenario::ConfigDrift => "config-drift",
            Scenario::Drain => "drain",
            Scenario::SplitBrain => "split-brain",
            Scenario::Replica => "replica",
            Scenario::Silent => "silent",
            Scenario::Flap => "flap",
            Scenario::IncompatibleMix => "incompatible-mix",
            Scenario::Herd => "herd",
            Scenario::ClockSkew => "clock-skew",
            Scenario::Canary => "canary",
            Scenario::ReplicaLag => "replica-lag",
        }
    }

    /// How long the scenario runs when `requested` is asked for: `herd` needs
    /// two hours of its hourly jobs (herd is judged once a job has been
    /// watched for a whole period), so it runs at least that long.
    pub fn duration(self, requested: Duration) -> Duration {
        match self {
            Scenario::Herd => requested.max(HERD_MIN_DURATION),
            _ => requested,
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Who reports.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Actor {
    /// A member of the scenario's service, by slot.
    Member(usize),
    /// A load balancer that holds views (drain scenario).
    Balancer(usize),
}

const LBS: usize = 4;
const MIN: i64 = 60;
const HOUR: i64 = 3600;
const INTERVAL_SECS: f64 = crate::fleet::INTERVAL.as_secs() as f64;
/// How long one run of a periodic job in the herd scenario lasts.
const RUN_SECS: i64 = 30;
const HERD_MIN_DURATION: Duration = Duration::from_secs(2 * 3600);

pub(crate) struct World {
    scenario: Scenario,
    n: usize,
    /// rule index -> member slot
    perm: Vec<usize>,
    /// member slot -> rule index
    rule: Vec<usize>,
    /// Herd scenario: per member slot, its evenly spread offsets (seconds) for
    /// `cron:compact` and `cron:backup`, as the service would hand them out.
    offsets: Vec<(f64, f64)>,
    /// Canary scenario: each member's errors so far.
    errors: Vec<u64>,
}

fn at(secs: i64) -> Time {
    Time::from_nanos(t0().as_nanos() + secs * 1_000_000_000)
}

fn secs(t: Time) -> i64 {
    (t.as_nanos() - t0().as_nanos()).div_euclid(1_000_000_000)
}

impl World {
    pub(crate) fn new(scenario: Scenario, n: usize, seed: u64) -> World {
        let mut perm: Vec<usize> = (0..n).collect();
        fastrand::Rng::with_seed(seed ^ scenario as u64).shuffle(&mut perm);
        let mut rule = vec![0; n];
        for (i, &slot) in perm.iter().enumerate() {
            rule[slot] = i;
        }
        let offsets = if scenario == Scenario::Herd {
            let names: Vec<String> = (0..n)
                .map(|slot| format!("{}-{slot:05}", scenario.name()))
                .collect();
            let hour = Duration::from_secs(HOUR as u64);
            let of = |job: &str| {
                let s = coherd_dephase::spread(names.iter().cloned(), job, hour)
                    .expect("distinct member names");
                names
                    .iter()
                    .map(|m| s.offset(m).map_or(0.0, |o| o.as_secs_f64()))
                    .collect::<Vec<f64>>()
            };
            of("cron:compact")
                .into_iter()
                .zip(of("cron:backup"))
                .collect()
        } else {
            Vec::new()
        };
        World {
            scenario,
            n,
            perm,
            rule,
            offsets,
            errors: vec![0; n],
        }
    }

    fn svc(&self) -> &'static str {
        self.scenario.name()
    }

    /// The name of the member with rule index `i`.
    fn name(&self, i: usize) -> String {
        format!("{}-{:05}", self.svc(), self.perm[i])
    }

    pub(crate) fn actors(&self) -> Vec<Actor> {
        let mut a: Vec<Actor> = (0..self.n).map(Actor::Member).collect();
        if self.scenario == Scenario::Drain {
            a.extend((0..LBS).map(Actor::Balancer));
        }
        a
    }

    /// The intents as YAML, in time order.
    pub(crate) fn intent_sources(&self) -> Vec<(Time, String)> {
        let yaml = |s: &str| s.to_string();
        let svc = self.svc();
        match self.scenario {
            Scenario::Rollout => vec![
                (
                    at(0),
                    yaml(&format!(
                        "services:\n  {svc}:\n    facets:\n      version: {{target: v1}}\n      config: {{target: c1}}\n"
                    )),
                ),
                (
                    at(2 * MIN),
                    yaml(&format!(
                        "services:\n  {svc}:\n    facets:\n      version: {{target: v2}}\n      config: {{target: c2}}\n"
                    )),
                ),
            ],
            Scenario::ConfigDrift => vec![(
                at(0),
                yaml(&format!(
                    "services:\n  {svc}:\n    facets:\n      config: {{target: c1}}\n"
                )),
            )],
            Scenario::Drain => vec![(
                at(0),
                yaml(&format!(
                    "services:\n  {svc}:\n    phases:\n      agreement_timeout: 30s\n"
                )),
            )],
            Scenario::SplitBrain => vec![(
                at(0),
                yaml(&format!(
                    "services:\n  {svc}:\n    leases:\n      leader: {{exclusive: true}}\n"
                )),
            )],
            Scenario::IncompatibleMix => vec![(
                at(0),
                yaml(&format!(
                    "services:\n  {svc}:\n    facets:\n      schema: {{target: \"42\", compatible: [\"41\"], rollout_window: 30m}}\n"
                )),
            )],
            Scenario::Canary => {
                let facets = |v: &str, c: &str| {
                    format!(
                        "services:\n  {svc}:\n    facets:\n      version: {{target: {v}, rollout_window: 1h, canary: {{min_requests: 500, window: 5m}}}}\n      config: {{target: {c}, rollout_window: 1h, canary: {{min_requests: 500, window: 5m}}}}\n"
                    )
                };
                vec![
                    (at(0), facets("v1", "c1")),
                    (at(2 * MIN), facets("v2", "c2")),
                ]
            }
            Scenario::ReplicaLag => vec![(
                at(0),
                yaml(&format!(
                    "services:\n  {svc}:\n    datasets:\n{}",
                    (0..self.n.div_ceil(3))
                        .map(|g| format!("      shard-{g}: {{max_lag: 50}}\n"))
                        .collect::<String>()
                )),
            )],
            Scenario::Replica | Scenario::Silent | Scenario::Flap | Scenario::ClockSkew => {
                vec![(at(0), yaml("services: {}\n"))]
            }
            Scenario::Herd => {
                // Room for the evenly spread backups: at most ceil(N x run / period) + 1 overlap.
                let limit = (self.n as u64 * RUN_SECS as u64).div_ceil(HOUR as u64) + 2;
                vec![(
                    at(0),
                    yaml(&format!(
                        "services:\n  {svc}:\n    dephase:\n      jobs:\n        cron:compact: {{period: 1h}}\n        cron:backup: {{period: 1h, max_concurrent: {limit}}}\n"
                    )),
                )]
            }
        }
    }

    /// Rule indices with `i % 100 == r`.
    fn every_hundredth(&self, r: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.n).filter(move |i| i % 100 == r)
    }

    /// The faults this world injects, as the divergences they must cause.
    pub(crate) fn truths(&self) -> Vec<Truth> {
        let svc = self.svc();
        let t = |kind: Kind, subject: String, when: i64| Truth {
            id: kind.id(svc, &subject),
            kind,
            injected_at: at(when),
        };
        let mut out = Vec::new();
        match self.scenario {
            Scenario::Rollout => {
                out.push(t(Kind::Mixed, "version".into(), 2 * MIN));
                out.push(t(Kind::Mixed, "config".into(), 2 * MIN));
                for i in self.every_hundredth(7) {
                    out.push(t(Kind::Drift, format!("{}:version", self.name(i)), 2 * MIN));
                }
                for i in self.n / 2..self.n {
                    out.push(t(Kind::Drift, format!("{}:config", self.name(i)), 2 * MIN));
                }
            }
            Scenario::ConfigDrift => {
                let bad: Vec<usize> = self.every_hundredth(3).collect();
                if !bad.is_empty() {
                    out.push(t(Kind::Mixed, "config".into(), 5 * MIN));
                }
                for i in bad {
                    out.push(t(Kind::Drift, format!("{}:config", self.name(i)), 5 * MIN));
                }
            }
            Scenario::Drain => {
                if self.n > 2 {
                    out.push(t(
                        Kind::DrainViolation,
                        format!("{}:drain-lb/lb-{}", self.name(1), self.perm[1] % LBS),
                        10 * MIN,
                    ));
                    out.push(t(
                        Kind::PhaseDisagreement,
                        format!("{}:drain-lb/lb-{}", self.name(2), self.perm[2] % LBS),
                        12 * MIN,
                    ));
                }
            }
            Scenario::SplitBrain => {
                if self.n > 2 {
                    out.push(t(Kind::SplitBrain, "leader".into(), 5 * MIN));
                    out.push(t(
                        Kind::StaleEpoch,
                        format!("{}:leader", self.name(0)),
                        5 * MIN,
                    ));
                    out.push(t(
                        Kind::StaleEpoch,
                        format!("{}:leader", self.name(2)),
                        15 * MIN,
                    ));
                }
            }
            Scenario::Replica => {
                if self.n >= 3 {
                    out.push(t(
                        Kind::ReplicaDivergence,
                        format!("shard-{}", self.group_of_bad()),
                        6 * MIN,
                    ));
                }
            }
            Scenario::Silent => {
                for i in self.every_hundredth(5) {
                    out.push(t(Kind::Silent, self.name(i), 5 * MIN));
                }
            }
            Scenario::Flap => {
                for i in self.every_hundredth(9) {
                    out.push(t(Kind::Flapping, self.name(i), 5 * MIN));
                }
                for i in self.every_hundredth(4) {
                    out.push(t(Kind::IllegalTransition, self.name(i), 6 * MIN));
                }
            }
            Scenario::Herd => {
                if self.n >= coherd_engine::MIN_MEMBERS {
                    out.push(t(Kind::Herd, "cron:compact".into(), 0));
                }
            }
            Scenario::Canary => {
                if self.n >= 10 {
                    out.push(t(Kind::Mixed, "version".into(), 2 * MIN));
                    out.push(t(Kind::Mixed, "config".into(), 2 * MIN));
                    out.push(t(Kind::CanaryRegression, "version:v2".into(), 2 * MIN));
                }
            }
            Scenario::ReplicaLag => {
                for i in self.every_hundredth(6) {
                    let slot = self.perm[i];
                    out.push(t(
                        Kind::ReplicaLag,
                        format!("{}:shard-{}", self.name(i), slot / 3),
                        5 * MIN,
                    ));
                }
            }
            Scenario::ClockSkew => {
                for i in self.every_hundredth(2) {
                    out.push(t(Kind::ClockSkew, self.name(i), 5 * MIN));
                }
            }
            Scenario::IncompatibleMix => {
                let bad: Vec<usize> = self.every_hundredth(8).collect();
                if !bad.is_empty() {
                    out.push(t(Kind::Mixed, "schema".into(), 0));
                }
                for i in bad {
                    out.push(t(Kind::Drift, format!("{}:schema", self.name(i)), 0));
                }
            }
        }
        out
    }

    /// The replica group whose third replica diverges: the group of member slot 8 (or 2).
    fn group_of_bad(&self) -> usize {
        if self.n >= 9 { 2 } else { 0 }
    }

    /// The phase a member of the drain, flap or silent scenarios is in at `s` seconds.
    fn phase(&self, i: usize, s: i64) -> &'static str {
        let cycle = |start: i64, step: i64| -> &'static str {
            if s < start {
                return "ready";
            }
            ["draining", "stopped", "starting", "ready"][(((s - start) / step) % 4) as usize]
        };
        match self.scenario {
            Scenario::Drain => {
                if i == 1 {
                    // Stays draining a while after the balancer recovers, so they agree first.
                    return if (10 * MIN..20 * MIN + 30).contains(&s) {
                        "draining"
                    } else if (20 * MIN + 30..21 * MIN + 30).contains(&s) {
                        "stopped"
                    } else if (21 * MIN + 30..22 * MIN + 30).contains(&s) {
                        "starting"
                    } else {
                        "ready"
                    };
                }
                if i.is_multiple_of(10) {
                    let start = 5 * MIN + (i / 10) as i64 * 3;
                    if (start..start + 80).contains(&s) {
                        return cycle(start, 20);
                    }
                }
                "ready"
            }
            Scenario::Flap if i % 100 == 9 && (5 * MIN..15 * MIN).contains(&s) => {
                cycle(5 * MIN, 30)
            }
            Scenario::Flap if i % 100 == 4 => match s {
                x if x < 5 * MIN => "ready",
                x if x < 5 * MIN + 30 => "draining",
                x if x < 6 * MIN => "stopped",
                _ => "ready",
            },
            Scenario::Silent if i % 100 == 6 && s >= 5 * MIN => "stopped",
            _ => "ready",
        }
    }

    /// The report an actor makes at tick `k` (time `t`), if it reports.
    pub(crate) fn report(&mut self, actor: &Actor, k: u64, t: Time) -> Option<Observation> {
        let s = secs(t);
        let slot = match *actor {
            Actor::Member(slot) => slot,
            Actor::Balancer(lb) => return Some(self.balancer(lb, k, t)),
        };
        let i = self.rule[slot];
        let mut obs = Observation {
            service: self.svc().to_string(),
            member: format!("{}-{:05}", self.svc(), slot),
            seq: Some(k + 1),
            time: Some(t),
            ..Observation::default()
        };
        let mut requests = 100 * k;
        let phase = self.phase(i, s);
        obs.facets.insert("phase".into(), phase.into());
        let facet = |obs: &mut Observation, f: &str, v: &str| {
            obs.facets.insert(f.into(), v.into());
        };
        match self.scenario {
            Scenario::Rollout => {
                let version = if i % 100 != 7 && s >= 2 * MIN + (i % 5) as i64 * MIN {
                    "v2"
                } else {
                    "v1"
                };
                let config = if i < self.n / 2 && s >= 2 * MIN + 30 {
                    "c2"
                } else {
                    "c1"
                };
                facet(&mut obs, "version", version);
                facet(&mut obs, "config", config);
            }
            Scenario::ConfigDrift => {
                let manual = i % 100 == 3 && (5 * MIN..15 * MIN).contains(&s);
                let config = if manual {
                    format!("c-manual-{i}")
                } else {
                    "c1".into()
                };
                facet(&mut obs, "config", &config);
            }
            Scenario::Drain => {
                // Draining members stop serving, except the victim, which still serves.
                if i.is_multiple_of(10) && phase != "ready" {
                    requests = 100 * ((5 * MIN + (i / 10) as i64 * 3) / 10) as u64;
                }
            }
            Scenario::SplitBrain => {
                let lease = |epoch| Lease {
                    resource: "leader".into(),
                    epoch,
                    expires: t.add(Duration::from_secs(15)),
                };
                if i == 0 && s < 8 * MIN {
                    obs.leases.push(lease(1));
                }
                if i == 1 && s >= 5 * MIN {
                    obs.leases.push(lease(2));
                }
                if i == 2 && (15 * MIN..15 * MIN + 10).contains(&s) {
                    obs.leases.push(lease(1));
                }
            }
            Scenario::Replica => {
                let group = slot / 3;
                let bad_slot = self.group_of_bad() * 3 + 2;
                let diverged = slot == bad_slot && (6 * MIN..9 * MIN).contains(&(k as i64 * 10));
                let digest = if diverged {
                    format!("bad{k:x}")
                } else {
                    format!("{:016x}", mix(group as u64 * 1_000_003 + k))
                };
                obs.checksums.push(Checksum {
                    dataset: format!("shard-{group}"),
                    position: k,
                    digest,
                    position_time: None,
                });
            }
            Scenario::Silent => {
                if i % 100 == 5 && s >= 5 * MIN {
                    return None;
                }
                if i % 100 == 6 && s >= 5 * MIN + 20 {
                    return None;
                }
            }
            Scenario::Flap => {}
            Scenario::Herd => obs.events = self.runs_ended(slot, t),
            Scenario::Canary => {
                // One in ten members takes v2 at 2m, another one in ten c2.
                let canary = |r: usize| i % 10 == r && s >= 2 * MIN;
                let version = if canary(0) { "v2" } else { "v1" };
                facet(&mut obs, "version", version);
                facet(&mut obs, "config", if canary(1) { "c2" } else { "c1" });
                let p = if version == "v2" { 0.05 } else { 0.001 };
                let failed = (0..100u64)
                    .filter(|r| unit(mix(((slot as u64) << 32) ^ (k << 8) ^ r)) < p)
                    .count() as u64;
                self.errors[slot] += failed;
                obs.counters = BTreeMap::from([
                    ("requests".to_string(), requests),
                    ("errors".to_string(), self.errors[slot]),
                ]);
                return Some(obs);
            }
            Scenario::ReplicaLag => {
                // Each tick applies ten positions; members with rule index 6
                // mod 100 stop applying from 5m to 10m, then catch up.
                let stalled = i % 100 == 6 && (5 * MIN..10 * MIN).contains(&s);
                let position = if stalled {
                    10 * (5 * MIN / 10) as u64
                } else {
                    10 * k
                };
                let group = slot / 3;
                obs.checksums.push(Checksum {
                    dataset: format!("shard-{group}"),
                    position,
                    digest: format!("{:016x}", mix(group as u64 * 1_000_003 + position)),
                    position_time: None,
                });
            }
            Scenario::ClockSkew => {
                // The report's own time; it is received at `t`.
                let ahead = match i % 100 {
                    2 if (5 * MIN..15 * MIN).contains(&s) => 120,
                    3 => 10,
                    _ => 0,
                };
                obs.time = Some(t.add(Duration::from_secs(ahead)));
            }
            Scenario::IncompatibleMix => {
                let schema = if i % 100 == 8 {
                    "40"
                } else if s >= (i % 10) as i64 * MIN {
                    "42"
                } else {
                    "41"
                };
                facet(&mut obs, "schema", schema);
            }
        }
        obs.counters = BTreeMap::from([("requests".to_string(), requests)]);
        Some(obs)
    }

    /// Herd scenario: the runs of a member that ended in the report interval
    /// up to `t`. `cron:compact` runs at minute 0 in the first hour, at the
    /// member's even-spread offset after; `cron:backup` at its offset always.
    fn runs_ended(&self, slot: usize, t: Time) -> Vec<PeriodicEvent> {
        let nanos = (t.as_nanos() - t0().as_nanos()) as f64;
        let s = nanos / 1e9;
        let hour = (s as i64).div_euclid(HOUR);
        let (compact, backup) = self.offsets[slot];
        let mut out = Vec::new();
        for h in [hour - 1, hour] {
            if h < 0 {
                continue;
            }
            let compact = if h == 0 { 0.0 } else { compact };
            for (kind, offset) in [("cron:compact", compact), ("cron:backup", backup)] {
                let start = (h * HOUR) as f64 + offset;
                let end = start + RUN_SECS as f64;
                if end <= s && s < end + INTERVAL_SECS {
                    let at = |x: f64| Time::from_nanos(t0().as_nanos() + (x * 1e9).round() as i64);
                    out.push(PeriodicEvent {
                        kind: kind.into(),
                        start: at(start),
                        end: Some(at(end)),
                    });
                }
            }
        }
        out
    }

    /// A balancer's report: its view of each backend it routes to, a little behind.
    fn balancer(&self, lb: usize, k: u64, t: Time) -> Observation {
        let s = secs(t);
        let mut views = BTreeMap::new();
        for slot in (lb..self.n).step_by(LBS) {
            let i = self.rule[slot];
            let mut phase = self.phase(i, s - 8);
            if i == 1 && (10 * MIN..20 * MIN).contains(&s) {
                phase = "ready"; // stuck: keeps routing to a draining member
            }
            if i == 2 && (12 * MIN..18 * MIN).contains(&s) {
                phase = "starting"; // stale view of a serving member
            }
            views.insert(
                format!("drain/drain-{slot:05}"),
                View {
                    phase: Some(phase.into()),
                },
            );
        }
        Observation {
            service: "drain-lb".into(),
            member: format!("lb-{lb}"),
            seq: Some(k + 1),
            time: Some(t),
            views,
            ..Observation::default()
        }
    }
}

/// A hash as a number in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A cheap deterministic hash for digests.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x
}
