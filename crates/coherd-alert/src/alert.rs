//! Alerts: labelled, with a start and (once resolved) an end.

use std::collections::BTreeMap;

use coherd_model::Time;
use serde::Serialize;

/// Label set, sorted.
pub type Labels = BTreeMap<String, String>;

/// One alert as notifiers see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Identity: `alertname`, `service`, `severity` and the rest.
    pub labels: Labels,
    /// Human text: `summary`, `description`, `runbook`.
    pub annotations: Labels,
    /// When it started firing.
    pub starts_at: Time,
    /// When it resolved; `None` while firing.
    pub ends_at: Option<Time>,
}

impl Alert {
    /// A stable fingerprint of the labels.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.labels)
    }

    /// Whether it is firing.
    pub fn is_firing(&self) -> bool {
        self.ends_at.is_none()
    }
}

/// FNV-1a over the sorted labels, as 16 hex digits.
pub fn fingerprint(labels: &Labels) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}
