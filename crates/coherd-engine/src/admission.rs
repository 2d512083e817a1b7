//! Checking reports against the engine's own limits before they are stored,
//! so that a batch the engine would refuse in part is refused whole.

use std::collections::{BTreeMap, BTreeSet};

use coherd_model::Observation;

use crate::engine::{Engine, ObserveError};

/// What the reports admitted so far would add: new facet names per service.
/// Keep one across every batch of a commit, and apply what was admitted in
/// the order it was admitted.
#[derive(Debug, Default, Clone)]
pub struct Admission {
    new_facets: BTreeMap<String, BTreeSet<String>>,
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
        let limit = engine.config.max_facets_per_service;
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
}
