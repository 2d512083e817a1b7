//! Checking reports against the engine's own limits before they are stored,
//! so that a batch the engine would refuse in part is refused whole.

use std::collections::{BTreeMap, BTreeSet};

use coherd_model::Observation;

use crate::engine::{Engine, ObserveError};

/// What the reports admitted so far would add: services, members and facet
/// names per service. Keep one across every batch of a commit, and apply what
/// was admitted in the order it was admitted.
#[derive(Debug, Default, Clone)]
pub struct Admission {
    new_facets: BTreeMap<String, BTreeSet<String>>,
    new_services: BTreeSet<String>,
    new_members: BTreeSet<(String, String)>,
    /// Members the engine knew when this admission first looked.
    known_members: Option<usize>,
}

impl Admission {
    /// Admits a batch whole or not at all: on a refusal, the index of the
    /// first report refused and why, and nothing of the batch is admitted.
    pub fn admit(
        &mut self,
        engine: &Engine,
        batch: &[Observation],
    ) -> Result<(), (usize, ObserveError)> {
        let mut trial = self.clone();
        for (i, obs) in batch.iter().enumerate() {
            trial.admit_one(engine, obs).map_err(|e| (i, e))?;
        }
        *self = trial;
        Ok(())
    }

    fn admit_one(&mut self, engine: &Engine, obs: &Observation) -> Result<(), ObserveError> {
        let config = &engine.config;
        let known_service = engine
            .syms
            .get(&obs.service)
            .is_some_and(|s| engine.service_index.contains_key(&s));
        if !known_service && !self.new_services.contains(&obs.service) {
            if engine.services.len() + self.new_services.len() >= config.max_services {
                return Err(ObserveError::TooManyServices {
                    service: obs.service.clone(),
                    limit: config.max_services,
                });
            }
            self.new_services.insert(obs.service.clone());
        }
        let pair = (obs.service.clone(), obs.member.clone());
        if !engine.has_member(&obs.service, &obs.member) && !self.new_members.contains(&pair) {
            let known = *self
                .known_members
                .get_or_insert_with(|| engine.member_count());
            if known + self.new_members.len() >= config.max_members {
                return Err(ObserveError::TooManyMembers {
                    service: obs.service.clone(),
                    member: obs.member.clone(),
                    limit: config.max_members,
                });
            }
            self.new_members.insert(pair);
        }
        let limit = config.max_facets_per_service;
        let known = engine.facet_names(&obs.service);
        let added = self.new_facets.entry(obs.service.clone()).or_default();
        for f in obs.facets.keys() {
            if known.contains(&f.as_str()) || added.contains(f) {
                continue;
            }
            if known.len() + added.len() + 1 > limit {
                return Err(ObserveError::TooManyFacets {
                    service: obs.service.clone(),
                    facet: f.clone(),
                    limit,
                });
            }
            added.insert(f.clone());
        }
        Ok(())
    }
}

impl Engine {
    /// The facet names a service tracks.
    pub(crate) fn facet_names(&self, service: &str) -> Vec<&str> {
        let Some(svc) = self
            .syms
            .get(service)
            .and_then(|s| self.service_index.get(&s))
        else {
            return Vec::new();
        };
        self.services[*svc]
            .columns
            .iter()
            .map(|c| self.syms.resolve(c.facet))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use coherd_model::{Limits, Time};

    use super::*;
    use crate::EngineConfig;

    fn obs(facets: &[&str]) -> Observation {
        let f: Vec<String> = facets.iter().map(|f| format!("\"{f}\":\"v\"")).collect();
        Observation::from_json(
            &format!(
                r#"{{"service":"api","member":"a","facets":{{{}}}}}"#,
                f.join(",")
            ),
            &Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_batch_that_would_pass_the_facet_limit_is_admitted_not_at_all() {
        let mut engine = Engine::new(EngineConfig {
            max_facets_per_service: 3,
            ..EngineConfig::default()
        });
        let t: Time = "2026-11-22T08:00:00Z".parse().unwrap();
        engine.observe(t, &obs(&["a", "b"])).unwrap();
        let mut admission = Admission::default();
        admission.admit(&engine, &[obs(&["a", "c"])]).unwrap();
        let refused = admission.admit(&engine, &[obs(&["b"]), obs(&["d"])]);
        assert!(
            matches!(refused, Err((1, ObserveError::TooManyFacets { .. }))),
            "{refused:?}"
        );
        // The refused batch admitted nothing: a batch with only known names still fits.
        admission.admit(&engine, &[obs(&["a", "b", "c"])]).unwrap();
    }

    #[test]
    fn services_and_members_are_bounded() {
        let engine = Engine::new(EngineConfig {
            max_services: 1,
            max_members: 2,
            ..EngineConfig::default()
        });
        let report = |service: &str, member: &str| {
            Observation::from_json(
                &format!(r#"{{"service":"{service}","member":"{member}"}}"#),
                &Limits::default(),
            )
            .unwrap()
        };
        let mut admission = Admission::default();
        admission
            .admit(
                &engine,
                &[report("a", "m1"), report("a", "m1"), report("a", "m2")],
            )
            .unwrap();
        let e = admission.admit(&engine, &[report("b", "m1")]).unwrap_err();
        assert!(matches!(e.1, ObserveError::TooManyServices { .. }), "{e:?}");
        let e = admission.admit(&engine, &[report("a", "m3")]).unwrap_err();
        assert!(matches!(e.1, ObserveError::TooManyMembers { .. }), "{e:?}");
    }
}
