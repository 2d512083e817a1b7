//! Clear errors for bad observations and intents: unknown fields at every
//! level, every limit, and every problem reported with its place (DESIGN 2).

#![allow(unused_crate_dependencies)] // a test target sees every dev-dependency of its package

use coherd_model::{FieldError, Intent, IntentError, Limits, Observation};

fn obs(json: &str) -> Result<Observation, Vec<FieldError>> {
    Observation::from_json(json, &Limits::default())
}

fn obs_err(json: &str) -> Vec<FieldError> {
    obs(json).expect_err("should be rejected")
}

/// The one error of a rejected observation.
#[track_caller]
fn one_err(json: &str) -> FieldError {
    let e = obs_err(json);
    assert_eq!(e.len(), 1, "{e:?}");
    e.into_iter().next().unwrap()
}

fn intent_errs(yaml: &str) -> Vec<IntentError> {
    Intent::from_yaml(yaml).expect_err("should be refused").0
}

// ---- observations: unknown fields at every level ----

#[test]
fn unknown_fields_are_rejected_at_every_level_of_an_observation() {
    let cases = [
        (r#"{"service":"a","member":"b","facts":{}}"#, "", "facts"),
        (
            r#"{"service":"a","member":"b","views":{"a/c":{"phaze":"ready"}}}"#,
            "views.a/c",
            "phaze",
        ),
        (
            r#"{"service":"a","member":"b","leases":[{"resource":"r","epoch":1,"expires":"2026-11-22T08:00:15Z","owner":"x"}]}"#,
            "leases[0]",
            "owner",
        ),
        (
            r#"{"service":"a","member":"b","checksums":[{"dataset":"d","position":1,"digest":"x","algo":"sha"}]}"#,
            "checksums[0]",
            "algo",
        ),
        (
            r#"{"service":"a","member":"b","events":[{"kind":"cron:x","start":"2026-11-22T08:00:00Z","stop":"2026-11-22T08:00:01Z"}]}"#,
            "events[0]",
            "stop",
        ),
    ];
    for (json, field, name) in cases {
        let e = one_err(json);
        // The path names the object holding the unknown field, or the field.
        let full = if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        };
        assert!(e.field == field || e.field == full, "{json}: {}", e.field);
        assert!(
            e.message.contains(&format!("unknown field `{name}`")),
            "{json}: {}",
            e.message
        );
    }
}

#[test]
fn wrong_types_name_their_field() {
    let e = one_err(r#"{"service":"a","member":"b","facets":{"version":5}}"#);
    assert_eq!(e.field, "facets.version");
    let e = one_err(r#"{"service":"a","member":"b","counters":{"requests":-1}}"#);
    assert_eq!(e.field, "counters.requests");
    let e = one_err(
        r#"{"service":"a","member":"b","leases":[{"resource":"r","epoch":1,"expires":"soon"}]}"#,
    );
    assert_eq!(e.field, "leases[0].expires");
    assert!(e.message.contains("RFC 3339"), "{}", e.message);
    let e = one_err(r#"{"service":"a","member":"b"} {}"#);
    assert!(e.message.contains("trailing"), "{}", e.message);
}

// ---- observations: limits and names ----

fn many(n: usize, f: impl Fn(usize) -> String) -> String {
    (0..n).map(f).collect::<Vec<_>>().join(",")
}

#[test]
fn every_list_limit_is_enforced_with_its_field() {
    let t = "2026-11-22T08:00:00Z";
    let cases = [
        (
            format!(
                r#"{{"service":"a","member":"b","labels":{{{}}}}}"#,
                many(17, |i| format!(r#""l{i}":"v""#))
            ),
            "labels",
            "at most 16",
        ),
        (
            format!(
                r#"{{"service":"a","member":"b","leases":[{}]}}"#,
                many(17, |i| format!(
                    r#"{{"resource":"r{i}","epoch":1,"expires":"{t}"}}"#
                ))
            ),
            "leases",
            "at most 16",
        ),
        (
            format!(
                r#"{{"service":"a","member":"b","checksums":[{}]}}"#,
                many(17, |i| format!(
                    r#"{{"dataset":"d","position":{i},"digest":"x"}}"#
                ))
            ),
            "checksums",
            "at most 16",
        ),
        (
            format!(
                r#"{{"service":"a","member":"b","counters":{{{}}}}}"#,
                many(17, |i| format!(r#""c{i}":1"#))
            ),
            "counters",
            "at most 16",
        ),
        (
            format!(
                r#"{{"service":"a","member":"b","events":[{}]}}"#,
                many(65, |_| format!(r#"{{"kind":"cron:x","start":"{t}"}}"#))
            ),
            "events",
            "at most 64",
        ),
        (
            format!(
                r#"{{"service":"a","member":"b","views":{{{}}}}}"#,
                many(1025, |i| format!(r#""m{i}":{{}}"#))
            ),
            "views",
            "at most 1024",
        ),
    ];
    for (json, field, msg) in cases {
        let e = one_err(&json);
        assert_eq!(e.field, field);
        assert!(e.message.contains(msg), "{field}: {}", e.message);
    }
}

#[test]
fn configured_limits_apply() {
    let limits = Limits {
        views: 1,
        value_bytes: 4,
        ..Limits::default()
    };
    let e = Observation::from_json(
        r#"{"service":"a","member":"b","views":{"c":{},"d":{}},"facets":{"version":"12345"}}"#,
        &limits,
    )
    .unwrap_err();
    let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["facets.version", "views"]);
    assert!(e[0].message.contains("at most 4"), "{}", e[0].message);
}

#[test]
fn limits_read_from_configuration_reject_unknown_fields() {
    let err = serde_json::from_str::<Limits>(r#"{"facets": 8, "view": 3}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `view`"), "{err}");
    let l: Limits = serde_json::from_str(r#"{"facets": 8}"#).unwrap();
    assert_eq!((l.facets, l.labels), (8, 16));
}

#[test]
fn values_names_and_keys_are_checked_with_their_path() {
    let long = "x".repeat(257);
    let cases = [
        (
            format!(r#"{{"service":"a","member":"b","deploy":"{long}"}}"#),
            "deploy",
        ),
        (
            format!(r#"{{"service":"a","member":"b","labels":{{"zone":"{long}"}}}}"#),
            "labels.zone",
        ),
        (
            r#"{"service":"a","member":"b","labels":{"9zone":"x"}}"#.to_string(),
            "labels.9zone",
        ),
        (
            r#"{"service":"a","member":"b","facets":{"9v":"x"}}"#.to_string(),
            "facets.9v",
        ),
        (
            r#"{"service":"a","member":"b","facets":{"version":"a\u0007b"}}"#.to_string(),
            "facets.version",
        ),
        (
            format!(r#"{{"service":"{}","member":"b"}}"#, "a".repeat(64)),
            "service",
        ),
        (r#"{"service":"-a","member":"b"}"#.to_string(), "service"),
        (
            format!(r#"{{"service":"a","member":"{}"}}"#, "m".repeat(254)),
            "member",
        ),
        (r#"{"service":"a","member":"b c"}"#.to_string(), "member"),
        (r#"{"service":"a","member":""}"#.to_string(), "member"),
        (
            r#"{"service":"a","member":"b","views":{"Bad/m":{}}}"#.to_string(),
            "views.Bad/m",
        ),
        (
            r#"{"service":"a","member":"b","counters":{"1x":1}}"#.to_string(),
            "counters.1x",
        ),
        (
            r#"{"service":"a","member":"b","checksums":[{"dataset":"","position":1,"digest":"x"}]}"#
                .to_string(),
            "checksums[0].dataset",
        ),
        (
            r#"{"service":"a","member":"b","leases":[{"resource":"r","epoch":1,"expires":"2026-11-22T08:00:15Z"},{"resource":"r","epoch":2,"expires":"2026-11-22T08:00:15Z"}]}"#
                .to_string(),
            "leases[1].resource",
        ),
        (
            r#"{"service":"a","member":"b","events":[{"kind":"cron:x","start":"2026-11-22T08:00:10Z","end":"2026-11-22T08:00:00Z"}]}"#
                .to_string(),
            "events[0].end",
        ),
    ];
    for (json, field) in cases {
        let e = one_err(&json);
        assert_eq!(e.field, field, "{json}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn boundaries_are_accepted() {
    let at_limit = "x".repeat(256);
    obs(&format!(
        r#"{{"service":"{}","member":"{}","facets":{{"version":"{at_limit}"}}}}"#,
        "a".repeat(63),
        "m".repeat(253)
    ))
    .expect("63-char service, 253-char member, 256-byte value");
    obs(r#"{"service":"a","member":"pod/x:1_2.3-4","views":{"b":{},"svc/pod/x":{}}}"#)
        .expect("member ids and view keys with / and :");
}

#[test]
fn several_problems_are_all_reported_in_field_order() {
    let e = obs_err(
        r#"{"service":"A","member":"","labels":{"9":"x"},"counters":{"1":1},"events":[{"kind":"9","start":"2026-11-22T08:00:00Z"}]}"#,
    );
    let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "service",
            "member",
            "labels.9",
            "counters.1",
            "events[0].kind"
        ]
    );
}

// ---- intent ----

#[test]
fn unknown_fields_are_refused_at_every_level_of_an_intent() {
    let src = "\
servicez: {}
services:
  web:
    report_intervall: 10s
    facets:
      version: {target: \"2\", windw: 1m}
    phases:
      hld: 1m
    leases:
      leader: {exclusiv: true}
    datasets:
      users: {replicas: 3}
";
    let errs = intent_errs(src);
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "servicez"),
            (4, "services.web.report_intervall"),
            (6, "services.web.facets.version.windw"),
            (8, "services.web.phases.hld"),
            (10, "services.web.leases.leader.exclusiv"),
            (12, "services.web.datasets.users.replicas"),
        ]
    );
    for e in &errs {
        assert!(e.message.contains("unknown field"), "{e}");
    }
    assert!(errs[1].message.contains("report_interval"), "{}", errs[1]);
}

#[test]
fn bad_values_are_refused_each_with_its_line() {
    let src = "\
services:
  web:
    report_interval: 0s
    expect_members: many
    facets:
      9bad: {uniform: true}
      phase: {target: ready}
      version: {target: \"2\", compatible: [\"2\"], uniform: maybe}
    phases:
      max_flips_per_hour: 10001
      agreement_timeout: later
    leases:
      leader: {exclusive: yes}
      Bad Lease: {}
    datasets:
      9users: {}
  Bad_Name: {}
";
    let errs = intent_errs(src);
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    for line in [3, 4, 6, 7, 8, 10, 11, 13, 14, 16, 17] {
        assert!(lines.contains(&line), "no error at line {line}: {errs:#?}");
    }
    let text = errs
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "longer than zero",
        "whole number",
        "invalid facet name",
        "phase machine",
        "lists the target",
        "true or false",
        "invalid duration",
        "invalid service name",
        "invalid name \"Bad Lease\"",
        "invalid name \"9users\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

/// Regression: a name that breaks the naming rules was reported at the line
/// of the mapping holding it, not at the name itself.
#[test]
fn an_invalid_name_is_reported_at_its_own_line() {
    let errs = intent_errs(
        "services:\n  web:\n    facets:\n      version: {target: \"1\"}\n      9bad: {}\n  Bad_Name: {}\n",
    );
    let got: Vec<(usize, usize, &str)> = errs
        .iter()
        .map(|e| (e.line, e.column, e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (5, 7, "services.web.facets.9bad"),
            (6, 3, "services.Bad_Name")
        ]
    );
}

/// Regression: `uniform: maybe` on a targeted facet also reported the
/// contradiction of `uniform: false`, which was never written.
#[test]
fn a_non_boolean_uniform_is_one_error() {
    let errs = intent_errs(
        "services:\n  web:\n    facets:\n      version: {target: \"1\", uniform: maybe}\n",
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("true or false"), "{}", errs[0]);
}

#[test]
fn phase_machine_rules_are_checked() {
    let errs =
        intent_errs("services:\n  web:\n    phases:\n      initial: []\n      transitions: {}\n");
    assert!(
        errs.iter().any(|e| e.path == "services.web.phases.initial"),
        "{errs:?}"
    );
    let errs = intent_errs("services:\n  web:\n    phases:\n      serving: [up]\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("transitions"), "{}", errs[0]);
}

#[test]
fn duplicate_keys_and_yaml_syntax_errors_have_their_place() {
    let errs = intent_errs("services:\n  web: {}\n  web: {}\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].line, errs[0].path.as_str()), (3, "services.web"));
    assert!(errs[0].message.contains("duplicate"), "{}", errs[0]);

    let errs = intent_errs("services:\n  web: {facets: [\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("not valid YAML"), "{}", errs[0]);
    assert!(errs[0].line >= 2, "{}", errs[0]);
}

#[test]
fn the_error_list_says_how_many_and_where() {
    let e = Intent::from_yaml("services:\n  web:\n    report_interval: x\n    expect_members: y\n")
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("the intent is invalid (2 errors):"),
        "{text}"
    );
    assert!(text.contains("line 3, column"), "{text}");
    assert!(text.contains("line 4, column"), "{text}");
}
