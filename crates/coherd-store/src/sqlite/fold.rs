//! Folding a member's reports into one observation that stands for its state.
//!
//! Pruning replaces a member's old reports by one observation; replaying that
//! observation must leave the engine with the member state the reports left.
//! So the fold follows the engine's rules for applying a report (DESIGN 2.1):
//! a report whose `seq` is at or below the last applied one is a duplicate and
//! changes nothing; labels, facets and counters merge by key; `deploy` keeps
//! the last one given; views, leases and periodic events are those of the last
//! applied report; checksums keep the last digest reported per dataset.

use coherd_model::Observation;

/// Applies `later` to `state` as the engine would; returns `false` when it
/// is a duplicate and changed nothing.
pub(crate) fn fold(state: &mut Observation, later: &Observation) -> bool {
    if let (Some(applied), Some(seq)) = (state.seq, later.seq)
        && seq <= applied
    {
        return false;
    }
    state.seq = later.seq.or(state.seq);
    state.time = later.time;
    if later.deploy.is_some() {
        state.deploy.clone_from(&later.deploy);
    }
    merge(&mut state.labels, &later.labels);
    merge(&mut state.facets, &later.facets);
    merge(&mut state.counters, &later.counters);
    state.views.clone_from(&later.views);
    state.leases.clone_from(&later.leases);
    state.events.clone_from(&later.events);
    for c in &later.checksums {
        state.checksums.retain(|old| old.dataset != c.dataset);
        state.checksums.push(c.clone());
    }
    true
}

fn merge<V: Clone>(
    into: &mut std::collections::BTreeMap<String, V>,
    from: &std::collections::BTreeMap<String, V>,
) {
    for (k, v) in from {
        into.insert(k.clone(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coherd_model::Limits;

    fn obs(json: &str) -> Observation {
        Observation::from_json(json, &Limits::default()).unwrap()
    }

    #[test]
    fn merges_by_key_and_replaces_lists() {
        let mut s = obs(
            r#"{"service":"a","member":"m","seq":1,"labels":{"zone":"b"},"facets":{"version":"1","config":"x"},
                "leases":[{"resource":"r","epoch":1,"expires":"2026-11-22T08:00:15Z"}],
                "checksums":[{"dataset":"users","position":1,"digest":"aa"},{"dataset":"orders","position":5,"digest":"cc"}]}"#,
        );
        let later = obs(
            r#"{"service":"a","member":"m","seq":2,"deploy":"d2","facets":{"version":"2"},
                "checksums":[{"dataset":"users","position":2,"digest":"bb"}]}"#,
        );
        assert!(fold(&mut s, &later));
        assert_eq!(s.seq, Some(2));
        assert_eq!(s.deploy.as_deref(), Some("d2"));
        assert_eq!(s.labels["zone"], "b");
        assert_eq!(s.facets["version"], "2");
        assert_eq!(s.facets["config"], "x");
        assert!(s.leases.is_empty(), "the later report holds no lease");
        let digests: Vec<_> = s.checksums.iter().map(|c| c.digest.as_str()).collect();
        assert_eq!(digests, ["cc", "bb"]);
    }

    #[test]
    fn duplicates_change_nothing() {
        let mut s = obs(r#"{"service":"a","member":"m","seq":5,"facets":{"version":"2"}}"#);
        let before = s.clone();
        let retry = obs(r#"{"service":"a","member":"m","seq":4,"facets":{"version":"1"}}"#);
        assert!(!fold(&mut s, &retry));
        assert_eq!(s, before);
        let unsequenced = obs(r#"{"service":"a","member":"m","facets":{"version":"3"}}"#);
        assert!(fold(&mut s, &unsequenced));
        assert_eq!((s.seq, s.facets["version"].as_str()), (Some(5), "3"));
    }
}
