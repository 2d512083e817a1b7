//! The `reconcile:` section of the server's config file, and its checks.

use std::collections::BTreeMap;
use std::time::Duration;

use coherd_model::time::deserialize_duration;
use coherd_model::{Kind, Severity};
use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Deserializer};

/// Actions one config may define.
pub const MAX_ACTIONS: usize = 64;
/// Headers one webhook may add.
pub const MAX_HEADERS: usize = 32;
/// Waves one action may define.
pub const MAX_WAVES: usize = 16;

/// The reconcile loop's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// How long the `reconciler` lease lasts unless renewed; a restarted or
    /// second coherd waits this long for a holder that vanished.
    #[serde(deserialize_with = "deserialize_duration")]
    pub lease_ttl: Duration,
    /// Actions in flight at once across all actions and services.
    pub max_in_flight: usize,
    /// The dispatches one round decides are spread over this long, so a wave
    /// does not fire in one instant.
    #[serde(deserialize_with = "deserialize_duration")]
    pub dispatch_spread: Duration,
    /// How long the audit log is kept.
    #[serde(deserialize_with = "deserialize_duration")]
    pub audit_retention: Duration,
    /// What to do about which divergences.
    pub actions: Vec<ActionConfig>,
}

impl Default for ReconcileConfig {
    fn default() -> ReconcileConfig {
        ReconcileConfig {
            lease_ttl: Duration::from_secs(15),
            max_in_flight: 20,
            dispatch_spread: Duration::from_secs(2),
            audit_retention: Duration::from_secs(90 * 86_400),
            actions: Vec::new(),
        }
    }
}

/// One action: which divergences it repairs, how, and how carefully.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// Its name in the audit log, the API and metrics.
    pub name: String,
    /// Which divergences it acts on.
    #[serde(rename = "match")]
    pub matcher: MatchConfig,
    /// Call a webhook...
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// ...or run a program (config file only).
    #[serde(default)]
    pub exec: Option<ExecConfig>,
    /// The divergence must have been open this long.
    #[serde(
        default = "defaults::debounce",
        deserialize_with = "deserialize_duration"
    )]
    pub debounce: Duration,
    /// Actions in flight at once per service.
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// Cumulative share of the subjects open at each wave's start.
    #[serde(default = "defaults::waves")]
    pub waves: Vec<WaveSize>,
    /// After a wave is verified, before the next.
    #[serde(
        default = "defaults::wave_pause",
        deserialize_with = "deserialize_duration"
    )]
    pub wave_pause: Duration,
    /// The divergence must resolve this long after the action succeeded.
    #[serde(
        default = "defaults::verify_within",
        deserialize_with = "deserialize_duration"
    )]
    pub verify_within: Duration,
    /// Off for guards (pause a rollout, page a team): the action is not
    /// meant to resolve the divergence, so its success ends the task.
    #[serde(default = "defaults::verify")]
    pub verify: bool,
    /// Delay between attempts (decorrelated jitter).
    #[serde(default)]
    pub backoff: BackoffConfig,
    /// Attempts per divergence episode.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// When a subject that keeps coming back is quarantined.
    #[serde(default)]
    pub thrash: ThrashConfig,
    /// Decide and audit, dispatch nothing.
    #[serde(default)]
    pub dry_run: bool,
}

mod defaults {
    use std::time::Duration;

    pub(super) fn debounce() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn max_in_flight() -> usize {
        5
    }
    pub(super) fn waves() -> Vec<super::WaveSize> {
        vec![super::WaveSize::Percent(100)]
    }
    pub(super) fn wave_pause() -> Duration {
        Duration::from_secs(60)
    }
    pub(super) fn verify_within() -> Duration {
        Duration::from_secs(120)
    }
    pub(super) fn verify() -> bool {
        true
    }
    pub(super) fn max_attempts() -> u32 {
        3
    }
}

/// Which divergences an action acts on; every field given must match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Kinds (one or a list).
    #[serde(default, deserialize_with = "one_or_many")]
    pub kind: Vec<Kind>,
    /// The facet, a glob (`config`, `schema*`).
    #[serde(default)]
    pub facet: Option<String>,
    /// The service, a glob (`checkout*`).
    #[serde(default)]
    pub service: Option<String>,
    /// Severities (one or a list); none given: any.
    #[serde(default, deserialize_with = "one_or_many")]
    pub severity: Vec<Severity>,
}

fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(t) => vec![t],
        OneOrMany::Many(v) => v,
    })
}

/// `POST` the action to a URL; 2xx is success.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://`.
    pub url: String,
    /// Time allowed for one attempt.
    #[serde(
        default = "defaults_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
    /// Headers added to every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn defaults_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Run a program; exit status 0 is success. `{service}`, `{member}`,
/// `{facet}`, `{target}`, `{kind}`, `{divergence_id}`, `{action}`,
/// `{idempotency_key}` and `{fencing_epoch}` in `argv` are replaced.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// The program and its arguments; no shell.
    pub argv: Vec<String>,
    /// Time allowed for one run; then it is killed.
    #[serde(
        default = "defaults_exec_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
}

fn defaults_exec_timeout() -> Duration {
    Duration::from_secs(30)
}

/// One wave's cumulative size: a count of subjects or a share (`"10%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveSize {
    /// This many subjects in all, counting the earlier waves.
    Count(u32),
    /// This share, in percent, of the subjects open at the wave's start.
    Percent(u8),
}

impl WaveSize {
    /// How many subjects the waves up to this one may take in all, of `total`.
    pub fn cumulative(self, total: usize) -> usize {
        match self {
            WaveSize::Count(n) => (n as usize).min(total),
            WaveSize::Percent(p) => (total * p as usize).div_ceil(100),
        }
    }
}

impl<'de> Deserialize<'de> for WaveSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<WaveSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Text(String),
        }
        let bad = || {
            serde::de::Error::custom(
                "a wave is a count of subjects (such as 1) or a share such as \"10%\" (1% to 100%)",
            )
        };
        match Raw::deserialize(d).map_err(|_| bad())? {
            Raw::Count(0) => Err(bad()),
            Raw::Count(n) => Ok(WaveSize::Count(n)),
            Raw::Text(t) => match t.trim().strip_suffix('%').map(|p| p.trim().parse::<u8>()) {
                Some(Ok(p)) if (1..=100).contains(&p) => Ok(WaveSize::Percent(p)),
                _ => t
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(WaveSize::Count)
                    .ok_or_else(bad),
            },
        }
    }
}

/// Decorrelated-jitter backoff between attempts.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// The shortest delay.
    #[serde(deserialize_with = "deserialize_duration")]
    pub base: Duration,
    /// The longest delay.
    #[serde(deserialize_with = "deserialize_duration")]
    pub cap: Duration,
}

impl Default for BackoffConfig {
    fn default() -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(600),
        }
    }
}

/// A subject that reopens `reopens` times within `within` is quarantined.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrashConfig {
    /// Reopens that quarantine.
    pub reopens: u32,
    /// The window they are counted in.
    #[serde(deserialize_with = "deserialize_duration")]
    pub within: Duration,
}

impl Default for ThrashConfig {
    fn default() -> ThrashConfig {
        ThrashConfig {
            reopens: 3,
            within: Duration::from_secs(3600),
        }
    }
}

/// A checked configuration, its globs compiled.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// As configured.
    pub config: ReconcileConfig,
    matchers: Vec<CompiledMatch>,
}

#[derive(Debug, Clone)]
struct CompiledMatch {
    facet: Option<GlobMatcher>,
    service: Option<GlobMatcher>,
}

impl Policy {
    /// Checks `config`; every problem is named, and one problem refuses it whole.
    pub fn new(config: ReconcileConfig) -> Result<Policy, String> {
        let mut problems = Vec::new();
        if config.lease_ttl < Duration::from_secs(2) {
            problems.push("reconcile.lease_ttl must be at least 2s".to_string());
        }
        if config.max_in_flight == 0 {
            problems.push("reconcile.max_in_flight must be at least 1".to_string());
        }
        if config.dispatch_spread > Duration::from_secs(60) {
            problems.push("reconcile.dispatch_spread must be at most 1m".to_string());
        }
        if config.audit_retention < Duration::from_secs(3600) {
            problems.push("reconcile.audit_retention must be at least 1h".to_string());
        }
        if config.actions.len() > MAX_ACTIONS {
            problems.push(format!("reconcile.actions: at most {MAX_ACTIONS} actions"));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut matchers = Vec::new();
        for (i, a) in config.actions.iter().enumerate() {
            let at = format!("reconcile.actions[{i}] ({})", a.name);
            let mut bad = |m: String| problems.push(format!("{at}: {m}"));
            if a.name.is_empty()
                || a.name.len() > 64
                || !a
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bad("name must be 1 to 64 letters, digits, '-' or '_'".into());
            }
            if !names.insert(a.name.as_str()) {
                bad("another action has this name".into());
            }
            match (&a.webhook, &a.exec) {
                (Some(w), None) => {
                    if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                        bad(format!(
                            "webhook.url {:?} must start with http:// or https://",
                            w.url
                        ));
                    }
                    if w.headers.len() > MAX_HEADERS {
                        bad(format!("webhook.headers: at most {MAX_HEADERS}"));
                    }
                    for (k, v) in &w.headers {
                        let token = !k.is_empty()
                            && k.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
                            });
                        if !token || v.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
                            bad(format!("webhook header {k:?} is not a valid header"));
                        }
                    }
                    check_timeout(&mut bad, "webhook.timeout", w.timeout);
                }
                (None, Some(e)) => {
                    if e.argv.is_empty() || e.argv[0].is_empty() {
                        bad("exec.argv needs at least the program".into());
                    }
                    check_timeout(&mut bad, "exec.timeout", e.timeout);
                }
                _ => bad("give exactly one of webhook or exec".into()),
            }
            if a.matcher.kind.is_empty() {
                bad("match.kind is required (such as drift)".into());
            }
            if a.max_in_flight == 0 {
                bad("max_in_flight must be at least 1".into());
            }
            if a.max_attempts == 0 || a.max_attempts > 100 {
                bad("max_attempts must be 1 to 100".into());
            }
            if a.backoff.base.is_zero() || a.backoff.base > a.backoff.cap {
                bad("backoff.base must be above 0 and at most backoff.cap".into());
            }
            if a.thrash.reopens == 0 || a.thrash.within.is_zero() {
                bad("thrash.reopens and thrash.within must be above 0".into());
            }
            if a.waves.is_empty() || a.waves.len() > MAX_WAVES {
                bad(format!("waves: 1 to {MAX_WAVES} waves"));
            } else if a.waves.last() != Some(&WaveSize::Percent(100)) {
                bad("the last wave must be \"100%\", so every subject is reached".into());
            }
            let counts: Vec<u32> = a
                .waves
                .iter()
                .filter_map(|w| match w {
                    WaveSize::Count(n) => Some(*n),
                    _ => None,
                })
                .collect();
            let percents: Vec<u8> = a
                .waves
                .iter()
                .filter_map(|w| match w {
                    WaveSize::Percent(p) => Some(*p),
                    _ => None,
                })
                .collect();
            if counts.windows(2).any(|w| w[0] >= w[1]) || percents.windows(2).any(|w| w[0] >= w[1])
            {
                bad("waves are cumulative: each must be larger than the one before".into());
            }
            let glob = |what: &str, p: &Option<String>, bad: &mut dyn FnMut(String)| {
                p.as_ref().and_then(|p| match Glob::new(p) {
                    Ok(g) => Some(g.compile_matcher()),
                    Err(e) => {
                        bad(format!("match.{what} {p:?}: {e}"));
                        None
                    }
                })
            };
            let facet = glob("facet", &a.matcher.facet, &mut bad);
            let service = glob("service", &a.matcher.service, &mut bad);
            matchers.push(CompiledMatch { facet, service });
        }
        if problems.is_empty() {
            Ok(Policy { config, matchers })
        } else {
            Err(problems.join("; "))
        }
    }

    /// The actions, in configured order.
    pub fn actions(&self) -> &[ActionConfig] {
        &self.config.actions
    }

    /// Whether action `i` acts on a divergence like this.
    pub fn matches(
        &self,
        i: usize,
        kind: Kind,
        severity: Severity,
        service: &str,
        facet: Option<&str>,
    ) -> bool {
        let (a, m) = (&self.config.actions[i], &self.matchers[i]);
        a.matcher.kind.contains(&kind)
            && (a.matcher.severity.is_empty() || a.matcher.severity.contains(&severity))
            && m.service.as_ref().is_none_or(|g| g.is_match(service))
            && m.facet
                .as_ref()
                .is_none_or(|g| facet.is_some_and(|f| g.is_match(f)))
    }

    /// Whether any action could act on divergences of `kind` in `service`
    /// (checked before anything is copied out of the engine).
    pub fn wants(&self, kind: Kind, service: &str) -> bool {
        (0..self.matchers.len()).any(|i| {
            self.config.actions[i].matcher.kind.contains(&kind)
                && self.matchers[i]
                    .service
                    .as_ref()
                    .is_none_or(|g| g.is_match(service))
        })
    }
}

fn check_timeout(bad: &mut impl FnMut(String), what: &str, t: Duration) {
    if t < Duration::from_millis(100) || t > Duration::from_secs(3600) {
        bad(format!("{what} must be 100ms to 1h"));
    }
}
