//! The agent's loop: read, decide, buffer, send.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use coherd_dephase::{Backoff, Jitter, stable_offset};
use coherd_model::Time;
use serde_json::{Value, json};

use crate::config::AgentConfig;
use crate::probe;

/// What the probes read in one poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// Facet values.
    pub facets: BTreeMap<String, String>,
    /// Counter values.
    pub counters: BTreeMap<String, f64>,
}

/// An agent: its config, what it last reported, and what waits to be sent.
pub struct Agent {
    config: AgentConfig,
    member: String,
    client: reqwest::Client,
    token: Option<String>,
    seq: u64,
    last: Option<BTreeMap<String, String>>,
    next_report: Time,
    buffer: VecDeque<Value>,
    retry_at: Time,
    retries: coherd_dephase::Retries,
    /// Reports dropped because the buffer was full.
    pub dropped: u64,
}

impl Agent {
    /// An agent for `config`, resuming its `seq` from its state directory.
    pub fn new(config: AgentConfig) -> Result<Agent, String> {
        let member = match &config.member {
            Some(m) => m.clone(),
            None => hostname()?,
        };
        coherd_model::names::member(&member)
            .map_err(|e| format!("member {member:?}: {e}; set member: in the config"))?;
        let token = config
            .token
            .clone()
            .or_else(|| std::env::var("COHERD_TOKEN").ok())
            .filter(|t| !t.is_empty());
        // https:// servers and endpoints: ring's primitives, unless the process chose others.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let seq = read_seq(&seq_file(&config, &member));
        let retries = backoff(&config).retries();
        Ok(Agent {
            member,
            client,
            token,
            seq,
            last: None,
            next_report: Time::EPOCH,
            buffer: VecDeque::new(),
            retry_at: Time::EPOCH,
            retries,
            dropped: 0,
            config,
        })
    }

    /// The member this agent reports as.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// Reports waiting to be sent.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// Reads every facet and counter; a probe that fails is logged and left out.
    pub async fn read(&self) -> Reading {
        let mut r = Reading::default();
        for (name, p) in &self.config.facets {
            match probe::facet(p, &self.client, self.config.timeout).await {
                Ok(Some(v)) => {
                    r.facets.insert(name.clone(), v);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(facet = %name, error = %e, "cannot read a facet"),
            }
        }
        for (name, c) in &self.config.counters {
            match probe::counter(c, &self.client, self.config.timeout).await {
                Ok(Some(v)) => {
                    r.counters.insert(name.clone(), v);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(counter = %name, error = %e, "cannot read a counter"),
            }
        }
        r
    }

    /// The observation `reading` makes at `now`, with the next `seq` (kept in the state directory).
    pub fn observation(&mut self, reading: &Reading, now: Time) -> Value {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        // Increasing across restarts even without a state file, unless the clock steps back.
        self.seq = (self.seq + 1).max(wall);
        let path = seq_file(&self.config, &self.member);
        if let Err(e) = write_seq(&path, self.seq) {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep seq; it restarts from the clock");
        }
        let counters: BTreeMap<&String, u64> = reading
            .counters
            .iter()
            .filter(|(_, v)| **v >= 0.0 && **v < u64::MAX as f64)
            .map(|(k, v)| (k, *v as u64))
            .collect();
        let mut obs = json!({
            "service": self.config.service,
            "member": self.member,
            "seq": self.seq,
            "time": now,
            "facets": reading.facets,
        });
        if !counters.is_empty() {
            obs["counters"] = json!(counters);
        }
        obs
    }

    /// One poll at `now`: reports at once when the facets changed, else at
    /// the member's stable slot of `report_interval`; then sends what waits
    /// unless a backoff runs. Returns whether a report was made.
    pub async fn poll(&mut self, now: Time) -> bool {
        let reading = self.read().await;
        let changed = self.last.as_ref() != Some(&reading.facets);
        let due = now >= self.next_report;
        if changed || due {
            let obs = self.observation(&reading, now);
            self.push(obs);
            self.last = Some(reading.facets);
            self.next_report = next_slot(&self.config, &self.member, now);
        }
        if !self.buffer.is_empty() && now >= self.retry_at {
            self.flush(now).await;
        }
        changed || due
    }

    fn push(&mut self, obs: Value) {
        if self.buffer.len() >= self.config.buffer {
            self.buffer.pop_front();
            self.dropped += 1;
        }
        self.buffer.push_back(obs);
    }

    /// Sends every waiting report in one request; on failure, backs off
    /// (decorrelated jitter) and keeps them.
    pub async fn flush(&mut self, now: Time) {
        let batch: Vec<&Value> = self.buffer.iter().collect();
        let url = format!(
            "{}/v1/observations",
            self.config.server.trim_end_matches('/')
        );
        let mut req = self.client.post(&url).json(&batch);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let outcome = match req.send().await {
            Ok(r) if r.status().is_success() => {
                let body: Value = r.json().await.unwrap_or_default();
                for rej in body["rejected"].as_array().into_iter().flatten() {
                    tracing::warn!(item = %rej, "coherd refused a report for its time");
                }
                Ok(())
            }
            Ok(r)
                if r.status().is_client_error()
                    && r.status().as_u16() != 408
                    && r.status().as_u16() != 429 =>
            {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                tracing::error!(%status, %body, "coherd refused the reports; they are dropped (fix the config or the token)");
                Ok(())
            }
            Ok(r) => Err(format!("coherd answered {}", r.status())),
            Err(e) => Err(probe::cause(&e)),
        };
        match outcome {
            Ok(()) => {
                self.buffer.clear();
                self.retries = backoff(&self.config).retries();
                self.retry_at = Time::EPOCH;
            }
            Err(why) => {
                let delay = self
                    .retries
                    .next_delay(&mut || fastrand::f64())
                    .unwrap_or(self.config.report_interval);
                self.retry_at = now.add(delay);
                tracing::warn!(error = %why, waiting = self.buffer.len(), retry_in_ms = delay.as_millis() as u64, "cannot reach coherd; keeping the reports");
            }
        }
    }

    /// Runs until `stop` resolves: a poll every `poll`.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(self.config.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stop => return,
            }
            self.poll(coherd_model::time::wall_now()).await;
        }
    }
}

fn backoff(config: &AgentConfig) -> Backoff {
    let cap = config.report_interval.max(Duration::from_secs(1));
    Backoff::new(
        Duration::from_millis(500).min(cap),
        cap,
        Jitter::Decorrelated,
    )
    .expect("base below cap")
}

/// The next instant on this member's stable offset of `report_interval` after `now`.
fn next_slot(config: &AgentConfig, member: &str, now: Time) -> Time {
    let period = config.report_interval.as_nanos().max(1) as i64;
    let offset = stable_offset(member, &config.service, config.report_interval).as_nanos() as i64;
    let n = now.as_nanos();
    let base = n - n.rem_euclid(period) + offset;
    Time::from_nanos(if base > n { base } else { base + period })
}

fn seq_file(config: &AgentConfig, member: &str) -> PathBuf {
    let dir = config
        .state_dir
        .clone()
        .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    dir.join(format!(
        "coherd-agent.{}.{}.seq",
        config.service,
        member.replace('/', "_")
    ))
}

fn read_seq(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn write_seq(path: &std::path::Path, seq: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, seq.to_string())?;
    std::fs::rename(tmp, path)
}

fn hostname() -> Result<String, String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .map_err(|e| format!("cannot read the host name ({e}); set member: in the config"))
}
