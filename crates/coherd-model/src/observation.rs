//! Observation JSON (v1): one report from one member at one time.
//!
//! Parsing rejects unknown fields at every level; [`Observation::validate`]
//! then checks names, sizes and the [`Limits`], collecting every problem with
//! its field path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::FieldError;
use crate::names;
use crate::time::Time;

/// One report from one member (DESIGN 2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// The member's service.
    pub service: String,
    /// The member's id, unique in its service.
    pub member: String,
    /// Per-member sequence number; reports at or below the last applied one are duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// When the member made the report; defaults to the receive time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Free-form labels, merged by key.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_keys"
    )]
    pub labels: BTreeMap<String, String>,
    /// The deploy that produced this member's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<String>,
    /// Facet values, merged by key (`phase` is the member's lifecycle phase).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_keys"
    )]
    pub facets: BTreeMap<String, String>,
    /// What this member believes about other members, keyed `service/member`.
    /// Replaces the previous report's views; absent means none.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_keys"
    )]
    pub views: BTreeMap<String, View>,
    /// Leases the member holds now; replaces the previous list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<Lease>,
    /// Dataset digests at positions; added to history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checksums: Vec<Checksum>,
    /// Monotonic totals since the member started, merged by key.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_keys"
    )]
    pub counters: BTreeMap<String, u64>,
    /// Periodic work the member ran; added to history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<PeriodicEvent>,
}

/// An observer's view of another member.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct View {
    /// The phase the observer believes the member is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// A lease on a resource, with a fencing epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// The leased resource, scoped to the member's service.
    pub resource: String,
    /// The fencing epoch.
    pub epoch: u64,
    /// When the lease ends unless renewed.
    pub expires: Time,
}

/// A digest of a dataset at a position (a log offset, a version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checksum {
    /// The dataset's name.
    pub dataset: String,
    /// The position the digest was taken at.
    pub position: u64,
    /// The digest, opaque.
    pub digest: String,
    /// When the data at `position` was written (for lag in time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_time: Option<Time>,
}

/// One run of periodic work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicEvent {
    /// The job, such as `cron:compact`.
    pub kind: String,
    /// When it started.
    pub start: Time,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,
}

/// Per-observation and per-request limits (DESIGN 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Facets per observation.
    pub facets: usize,
    /// Labels per observation.
    pub labels: usize,
    /// Views per observation.
    pub views: usize,
    /// Leases per observation.
    pub leases: usize,
    /// Checksums per observation.
    pub checksums: usize,
    /// Counters per observation.
    pub counters: usize,
    /// Events per observation.
    pub events: usize,
    /// Bytes in one facet value, label value, digest or deploy id.
    pub value_bytes: usize,
    /// Bytes in one request body.
    pub body_bytes: usize,
    /// Observations in one batch.
    pub batch: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            facets: 32,
            labels: 16,
            views: 1024,
            leases: 16,
            checksums: 16,
            counters: 16,
            events: 64,
            value_bytes: 256,
            body_bytes: 1 << 20,
            batch: 10_000,
        }
    }
}

impl Observation {
    /// Parses one observation from JSON and validates it.
    pub fn from_json(json: &str, limits: &Limits) -> Result<Observation, Vec<FieldError>> {
        let mut de = serde_json::Deserializer::from_str(json);
        let obs: Observation = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| vec![FieldError::from_serde(&e)])?;
        de.end().map_err(|e| {
            vec![FieldError::new(
                "",
                format!("trailing characters after the observation ({e})"),
            )]
        })?;
        obs.validate(limits)?;
        Ok(obs)
    }

    /// Parses one observation from a JSON value and validates it.
    pub fn from_value(
        value: serde_json::Value,
        limits: &Limits,
    ) -> Result<Observation, Vec<FieldError>> {
        let obs: Observation = serde_path_to_error::deserialize(value)
            .map_err(|e| vec![FieldError::from_serde(&e)])?;
        obs.validate(limits)?;
        Ok(obs)
    }

    /// Checks names, sizes and limits; returns every problem found.
    pub fn validate(&self, limits: &Limits) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut check = |field: String, r: Result<(), String>| {
            if let Err(message) = r {
                errs.push(FieldError::new(field, message));
            }
        };
        check("service".into(), names::service(&self.service));
        check("member".into(), names::member(&self.member));
        if let Some(d) = &self.deploy {
            check("deploy".into(), names::value(d, limits.value_bytes));
        }
        check(
            "labels".into(),
            names::count(self.labels.len(), limits.labels, "labels"),
        );
        for (k, v) in &self.labels {
            check(
                format!("labels.{k}"),
                names::label_key(k).and_then(|()| names::value(v, limits.value_bytes)),
            );
        }
        check(
            "facets".into(),
            names::count(self.facets.len(), limits.facets, "facets"),
        );
        for (k, v) in &self.facets {
            check(
                format!("facets.{k}"),
                names::facet(k).and_then(|()| names::value(v, limits.value_bytes)),
            );
        }
        check(
            "views".into(),
            names::count(self.views.len(), limits.views, "views"),
        );
        for (k, v) in &self.views {
            check(format!("views.{k}"), names::view_key(k));
            if let Some(p) = &v.phase {
                check(
                    format!("views.{k}.phase"),
                    names::value(p, limits.value_bytes),
                );
            }
        }
        check(
            "leases".into(),
            names::count(self.leases.len(), limits.leases, "leases"),
        );
        for (i, l) in self.leases.iter().enumerate() {
            check(format!("leases[{i}].resource"), names::name(&l.resource));
            if self.leases[..i].iter().any(|o| o.resource == l.resource) {
                check(
                    format!("leases[{i}].resource"),
                    Err(format!(
                        "resource {:?} is listed twice; list each lease once",
                        l.resource
                    )),
                );
            }
        }
        check(
            "checksums".into(),
            names::count(self.checksums.len(), limits.checksums, "checksums"),
        );
        for (i, c) in self.checksums.iter().enumerate() {
            check(format!("checksums[{i}].dataset"), names::name(&c.dataset));
            check(
                format!("checksums[{i}].digest"),
                names::value(&c.digest, limits.value_bytes),
            );
        }
        check(
            "counters".into(),
            names::count(self.counters.len(), limits.counters, "counters"),
        );
        for k in self.counters.keys() {
            check(format!("counters.{k}"), names::name(k));
        }
        check(
            "events".into(),
            names::count(self.events.len(), limits.events, "events"),
        );
        for (i, e) in self.events.iter().enumerate() {
            check(format!("events[{i}].kind"), names::name(&e.kind));
            if let Some(end) = e.end
                && end < e.start
            {
                check(
                    format!("events[{i}].end"),
                    Err(format!("end {end} is before start {}", e.start)),
                );
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// The phase this member reports for itself, if any.
    pub fn phase(&self) -> Option<&str> {
        self.facets.get("phase").map(String::as_str)
    }
}

/// A JSON object as a map, refusing a key given twice (serde would keep the
/// last one silently; YAML intents refuse them too).
fn unique_keys<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "key {key:?} is given twice; give each key once"
                    )));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique(std::marker::PhantomData))
}

/// Splits a view key at the first `/` into (service, member); a key without
/// `/` names a member of `own_service`.
pub fn split_view_key<'a>(key: &'a str, own_service: &'a str) -> (&'a str, &'a str) {
    match key.split_once('/') {
        Some((s, m)) => (s, m),
        None => (own_service, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{
      "service": "checkout", "member": "checkout-7f9c", "seq": 42,
      "time": "2026-11-22T08:00:00Z",
      "labels": {"region": "eu-west-1", "zone": "b"},
      "deploy": "rel-2026-11-22.1",
      "facets": {"version": "1.4.2", "config": "sha256:ab12", "schema": "42", "phase": "ready"},
      "views": {"checkout/checkout-a1": {"phase": "ready"}, "search/search-3": {"phase": "ready"}},
      "leases": [{"resource": "scheduler", "epoch": 17, "expires": "2026-11-22T08:00:15Z"}],
      "checksums": [{"dataset": "users", "position": 123456, "digest": "9f2c0e"}],
      "counters": {"requests": 1203344, "errors": 12, "schema_errors": 0, "duplicates": 0},
      "events": [{"kind": "cron:compact", "start": "2026-11-22T07:59:00Z", "end": "2026-11-22T07:59:40Z"}]
    }"#;

    fn parse(s: &str) -> Result<Observation, Vec<FieldError>> {
        Observation::from_json(s, &Limits::default())
    }

    #[test]
    fn parses_the_design_example() {
        let o = parse(FULL).unwrap();
        assert_eq!(o.seq, Some(42));
        assert_eq!(o.phase(), Some("ready"));
        assert_eq!(o.leases[0].epoch, 17);
        assert_eq!(o.views.len(), 2);
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let e = parse(r#"{"service":"a","member":"b","leases":[{"resource":"r","epoch":1,"expires":"2026-11-22T08:00:15Z","epoh":2}]}"#).unwrap_err();
        assert_eq!(e[0].field, "leases[0].epoh");
        assert!(
            e[0].message.contains("unknown field `epoh`"),
            "{}",
            e[0].message
        );
        let e = parse(r#"{"service":"a","member":"b","facet":{}}"#).unwrap_err();
        assert!(
            e[0].message.contains("unknown field `facet`"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn missing_member_and_bad_types() {
        let e = parse(r#"{"service":"a"}"#).unwrap_err();
        assert!(e[0].message.contains("member"), "{:?}", e);
        let e = parse(r#"{"service":"a","member":"b","seq":-1}"#).unwrap_err();
        assert_eq!(e[0].field, "seq");
        let e = parse(r#"{"service":"a","member":"b","time":"noon"}"#).unwrap_err();
        assert_eq!(e[0].field, "time");
    }

    #[test]
    fn every_validation_error_is_reported() {
        let long = "x".repeat(300);
        let json = format!(
            r#"{{"service":"Bad Name","member":"ok","facets":{{"version":"{long}"}},"views":{{"/m":{{}}}}}}"#
        );
        let e = parse(&json).unwrap_err();
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["service", "facets.version", "views./m"]);
    }

    #[test]
    fn limits_are_enforced() {
        let facets: Vec<String> = (0..33).map(|i| format!(r#""f{i}":"v""#)).collect();
        let json = format!(
            r#"{{"service":"a","member":"b","facets":{{{}}}}}"#,
            facets.join(",")
        );
        let e = parse(&json).unwrap_err();
        assert_eq!(e[0].field, "facets");
        assert!(e[0].message.contains("at most 32"), "{}", e[0].message);
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let e = parse(r#"{"service":"a","member":"b","facets":{"version":"1","version":"2"}}"#)
            .unwrap_err();
        assert_eq!(e[0].field, "facets");
        assert!(e[0].message.contains("given twice"), "{}", e[0].message);
        let e = parse(r#"{"service":"a","service":"b","member":"b"}"#).unwrap_err();
        assert!(e[0].message.contains("duplicate field"), "{}", e[0].message);
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let e = parse(r#"{"service":"a"}"#).unwrap_err();
        assert_eq!(e[0].field, "member");
        let e = parse(r#"{"service":"a","member":"b","leases":[{"resource":"r","epoch":1}]}"#)
            .unwrap_err();
        assert_eq!(e[0].field, "leases[0].expires");
    }

    #[test]
    fn view_keys_split_at_the_first_slash() {
        assert_eq!(
            split_view_key("search/search-3", "checkout"),
            ("search", "search-3")
        );
        assert_eq!(split_view_key("a1", "checkout"), ("checkout", "a1"));
        assert_eq!(split_view_key("svc/pod/x", "checkout"), ("svc", "pod/x"));
    }
}
