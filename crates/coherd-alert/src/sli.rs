//! The SLIs a rule may watch (DESIGN 4): their names in rules, where
//! Prometheus finds each one on coherd's `/metrics`, and their values in a
//! service's SLIs. One table, so that the built-in rules and the exported
//! Prometheus rules read the same numbers.

use coherd_engine::ServiceSlis;

/// One SLI a threshold rule may watch.
#[derive(Debug, Clone, Copy)]
pub struct SliDef {
    /// Its name in rules (`sli: drain_failure_rate`).
    pub name: &'static str,
    /// The gauge on `/metrics` that carries it, per service.
    pub metric: &'static str,
    /// The `window` label of that gauge, for windowed SLIs.
    pub window: Option<&'static str>,
    /// Whether it is per targeted facet (a `facet` label).
    pub per_facet: bool,
    /// What it measures.
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    metric: &'static str,
    window: Option<&'static str>,
    per_facet: bool,
    help: &'static str,
) -> SliDef {
    SliDef {
        name,
        metric,
        window,
        per_facet,
        help,
    }
}

/// Every SLI a rule may name.
pub const SLIS: [SliDef; 14] = [
    def(
        "coherence",
        "coherd_coherence_ratio",
        None,
        false,
        "live members coherent over known non-terminal members",
    ),
    def(
        "telemetry_completeness",
        "coherd_telemetry_completeness_ratio",
        None,
        false,
        "live members over expected members",
    ),
    def(
        "exposure",
        "coherd_exposure_window_ratio",
        Some("5m"),
        true,
        "requests served off target over the last 5 minutes",
    ),
    def(
        "exposure_unapproved",
        "coherd_exposure_unapproved_window_ratio",
        Some("5m"),
        true,
        "requests served lagging or foreign (outside an approved rollout window) over the last 5 minutes",
    ),
    def(
        "replica_divergence_rate",
        "coherd_replica_divergence_window_ratio",
        Some("1h"),
        false,
        "divergent replica comparisons over all comparisons in the last hour",
    ),
    def(
        "phase_mismatch_rate",
        "coherd_phase_mismatch_ratio",
        None,
        false,
        "observer and member pairs that disagree over all pairs with a view",
    ),
    def(
        "drain_failure_rate",
        "coherd_drain_failure_window_ratio",
        Some("5m"),
        false,
        "requests served while non-serving over all requests in the last 5 minutes",
    ),
    def(
        "flap_frequency",
        "coherd_phase_flips_per_member_hour",
        None,
        false,
        "phase changes per member over the last hour",
    ),
    def(
        "schema_error_rate",
        "coherd_schema_error_window_ratio",
        Some("5m"),
        false,
        "schema errors over requests in the last 5 minutes",
    ),
    def(
        "duplicate_rate",
        "coherd_duplicate_window_ratio",
        Some("5m"),
        false,
        "duplicates over requests in the last 5 minutes",
    ),
    def(
        "error_rate",
        "coherd_error_window_ratio",
        Some("5m"),
        false,
        "errors over requests in the last 5 minutes",
    ),
    def(
        "replica_lag_positions",
        "coherd_replica_lag_positions",
        None,
        false,
        "positions the live replica furthest behind trails its dataset's highest live position",
    ),
    def(
        "reconcile_halted",
        "coherd_reconcile_halted_rollouts",
        None,
        false,
        "reconcile rollouts halted by a repair that did not hold or an action that gave up",
    ),
    def(
        "reconcile_quarantined",
        "coherd_reconcile_quarantined_subjects",
        None,
        false,
        "subjects the reconcile loop stopped acting on because they kept reopening",
    ),
];

/// The SLIs the reconcile loop measures rather than the engine: their
/// samples come from [`reconcile_samples`], not [`samples`].
pub fn from_reconciler(name: &str) -> bool {
    name.starts_with("reconcile_")
}

/// The reconcile loop's SLIs of a service: rollouts halted and subjects quarantined.
pub fn reconcile_samples(halted: u32, quarantined: u32) -> [SliSample; 2] {
    [
        SliSample {
            sli: "reconcile_halted",
            facet: None,
            value: Some(f64::from(halted)),
        },
        SliSample {
            sli: "reconcile_quarantined",
            facet: None,
            value: Some(f64::from(quarantined)),
        },
    ]
}

/// The SLI named `name`.
pub fn lookup(name: &str) -> Option<&'static SliDef> {
    SLIS.iter().find(|d| d.name == name)
}

/// One value of one SLI of a service (per facet for facet SLIs).
#[derive(Debug, Clone, PartialEq)]
pub struct SliSample {
    /// Its name, as in [`SLIS`].
    pub sli: &'static str,
    /// The facet, for facet SLIs.
    pub facet: Option<String>,
    /// The value; `None` when there is nothing to measure (no members, no
    /// requests): a rule then holds its state.
    pub value: Option<f64>,
}

/// Every SLI of [`SLIS`] the engine measures, from a service's SLIs. Coherence counts only while
/// members report: a service with none live has no coherence to judge.
pub fn samples(s: &ServiceSlis) -> Vec<SliSample> {
    let one = |sli: &'static str, value: Option<f64>| SliSample {
        sli,
        facet: None,
        value,
    };
    let coherence = if s.live > 0 { s.coherence } else { None };
    let mut out = vec![
        one("coherence", coherence),
        one("telemetry_completeness", s.telemetry_completeness),
        one("replica_divergence_rate", s.replica_divergence_rate.w1h),
        one("phase_mismatch_rate", s.phase_mismatch_rate),
        one("drain_failure_rate", s.drain_failure_rate.w5m),
        one("flap_frequency", s.flap_frequency),
        one("schema_error_rate", s.schema_error_rate.w5m),
        one("duplicate_rate", s.duplicate_rate.w5m),
        one("error_rate", s.error_rate.w5m),
        one(
            "replica_lag_positions",
            s.replica_lag_positions.map(|p| p as f64),
        ),
    ];
    for (facet, e) in &s.exposure {
        for (sli, value) in [
            ("exposure", e.w5m),
            ("exposure_unapproved", e.unapproved.w5m),
        ] {
            out.push(SliSample {
                sli,
                facet: Some(facet.clone()),
                value,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use coherd_engine::Engine;
    use coherd_model::{Intent, Limits, Observation, Time};

    #[test]
    fn a_services_slis_give_a_sample_of_every_sli() {
        let mut engine = Engine::default();
        let t0: Time = "2026-11-22T08:00:00Z".parse().unwrap();
        let intent =
            Intent::from_yaml("services:\n  web:\n    facets:\n      version: {target: \"2\"}\n")
                .unwrap();
        engine.set_intent(t0, intent);
        let obs = Observation::from_json(
            r#"{"service":"web","member":"w1","seq":1,"facets":{"version":"1"},"counters":{"requests":5}}"#,
            &Limits::default(),
        )
        .unwrap();
        engine.observe(t0, &obs).unwrap();
        let s = engine.service_slis("web").unwrap();
        let got = samples(&s);
        for def in SLIS.iter().filter(|d| !from_reconciler(d.name)) {
            let found = got.iter().find(|x| x.sli == def.name);
            assert!(found.is_some(), "no sample of {}", def.name);
            assert_eq!(
                found.unwrap().facet.is_some(),
                def.per_facet,
                "{}",
                def.name
            );
        }
    }
}
