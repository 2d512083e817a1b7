//! The agent's config file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use coherd_model::time::deserialize_duration;
use serde::Deserialize;

/// Facets and counters one agent may read.
pub const MAX_PROBES: usize = 32;

/// Everything `coherd agent` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// coherd's base URL.
    #[serde(default = "defaults::server")]
    pub server: String,
    /// A token with the report scope (or set `COHERD_TOKEN`).
    #[serde(default)]
    pub token: Option<String>,
    /// The member's service.
    pub service: String,
    /// The member's id (default: the host name).
    #[serde(default)]
    pub member: Option<String>,
    /// How often the facets are read.
    #[serde(default = "defaults::poll", deserialize_with = "deserialize_duration")]
    pub poll: Duration,
    /// Without a change, a report this often (at a stable offset per member).
    #[serde(
        default = "defaults::report_interval",
        deserialize_with = "deserialize_duration"
    )]
    pub report_interval: Duration,
    /// Where the last `seq` is kept across restarts.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Reports kept while coherd cannot be reached; the oldest go first.
    #[serde(default = "defaults::buffer")]
    pub buffer: usize,
    /// Time allowed for one report to coherd, and for each probe.
    #[serde(
        default = "defaults::timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
    /// Facets, by name, and where each is read.
    #[serde(default)]
    pub facets: BTreeMap<String, Probe>,
    /// Counters, by name, from Prometheus text endpoints.
    #[serde(default)]
    pub counters: BTreeMap<String, CounterProbe>,
}

mod defaults {
    use std::time::Duration;

    pub(super) fn server() -> String {
        "http://127.0.0.1:7070".into()
    }
    pub(super) fn poll() -> Duration {
        Duration::from_secs(2)
    }
    pub(super) fn report_interval() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn buffer() -> usize {
        1000
    }
    pub(super) fn timeout() -> Duration {
        Duration::from_secs(5)
    }
}

/// Where one facet's value is read: exactly one source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// `sha256:<hex>` of a file's bytes (a config hash).
    #[serde(default)]
    pub file_sha256: Option<PathBuf>,
    /// A program's standard output, trimmed (no shell).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// With `command` or `http`: the first capture group (or the match) of this regex.
    #[serde(default)]
    pub regex: Option<String>,
    /// An environment variable of the agent.
    #[serde(default)]
    pub env: Option<String>,
    /// A `GET` of this URL (a health endpoint): its body, trimmed.
    #[serde(default)]
    pub http: Option<String>,
    /// With `http`: the value at this JSON pointer of the body (`/status`).
    #[serde(default)]
    pub json_pointer: Option<String>,
    /// Values translated before reporting (`UP: ready`, `DOWN: draining`).
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// A fixed value.
    #[serde(default, rename = "static")]
    pub fixed: Option<String>,
}

/// A counter: a Prometheus metric summed over the series that match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterProbe {
    /// The text exposition endpoint (`http://127.0.0.1:9100/metrics`).
    pub prometheus: String,
    /// The metric's name.
    pub metric: String,
    /// Label values a series must have.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl AgentConfig {
    /// Reads and checks a config file; every problem is named.
    pub fn from_file(path: &std::path::Path) -> Result<AgentConfig, String> {
        let src = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let config: AgentConfig =
            coherd_model::yaml::from_str(&src).map_err(|e| format!("{}: {e}", path.display()))?;
        config
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        coherd_model::names::service(&self.service)
            .map_err(|e| problems.push(format!("service: {e}")))
            .ok();
        if let Some(m) = &self.member {
            coherd_model::names::member(m)
                .map_err(|e| problems.push(format!("member: {e}")))
                .ok();
        }
        if !(self.server.starts_with("http://") || self.server.starts_with("https://")) {
            problems.push(format!(
                "server {:?} must start with http:// or https://",
                self.server
            ));
        }
        if self.poll < Duration::from_millis(100) {
            problems.push("poll must be at least 100ms".into());
        }
        if self.report_interval < self.poll {
            problems.push("report_interval must be at least poll".into());
        }
        if self.buffer == 0 || self.buffer > 100_000 {
            problems.push("buffer must be 1 to 100000 reports".into());
        }
        if self.facets.len() + self.counters.len() > MAX_PROBES {
            problems.push(format!("at most {MAX_PROBES} facets and counters"));
        }
        for (name, p) in &self.facets {
            let sources = [
                p.file_sha256.is_some(),
                p.command.is_some(),
                p.env.is_some(),
                p.http.is_some(),
                p.fixed.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                problems.push(format!(
                    "facet {name}: give exactly one of file_sha256, command, env, http, static"
                ));
            }
            if p.command.as_ref().is_some_and(|c| c.is_empty()) {
                problems.push(format!("facet {name}: command needs at least the program"));
            }
            if let Some(r) = &p.regex {
                if p.command.is_none() && p.http.is_none() {
                    problems.push(format!(
                        "facet {name}: regex applies to command or http output"
                    ));
                }
                if let Err(e) = regex::Regex::new(r) {
                    problems.push(format!("facet {name}: regex: {e}"));
                }
            }
            if p.json_pointer.is_some() && p.http.is_none() {
                problems.push(format!("facet {name}: json_pointer applies to http"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}
