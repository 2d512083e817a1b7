//! Checking reports against the engine's own limits before they are stored,
//! so that a batch the engine would refuse in part is refused whole.

use std::collections::{HashMap, HashSet};

use coherd_model::Observation;

use crate::engine::{Engine, ObserveError};
use crate::ids::ServiceId;
use crate::state::Service;

/// What the reports admitted so far would add to `engine`: services, members
/// and facet names per service. Keep one across every batch of a commit, and
/// apply what was admitted in the order it was admitted.
pub struct Admission<'e> {
    engine: &'e Engine,
    /// The facet names each service tracks, or will once admitted reports apply.
    facets: HashMap<String, Vec<&'e str>>,
    added_facets: HashMap<String, Vec<String>>,
    new_services: HashSet<String>,
    new_members: HashSet<(String, String)>,
    /// Members the engine knew when this admission began.
    known_members: usize,
}

impl<'e> Admission<'e> {
    /// Admission against `engine`, which must not change until what was
    /// admitted is applied.
    pub fn new(engine: &'e Engine) -> Admission<'e> {
        Admission {
            engine,
            facets: HashMap::new(),
            added_facets: HashMap::new(),
            new_services: HashSet::new(),
            new_members: HashSet::new(),
            known_members: engine.member_count(),
        }
    }

    /// Admits a batch whole or not at all: on a refusal, the index of the
    /// first report refused and why, and nothing of the batch is admitted.
    pub fn admit(&mut self, batch: &[Observation]) -> Result<(), (usize, ObserveError)> {
        let config = &self.engine.config;
        // Services and members are checked one by one only when this batch
        // could reach their limit; facet names always, without hashing.
        let n = batch.len();
        let room = Room {
            services: self.engine.services.len() + self.new_services.len() + n
                <= config.max_services,
            members: self.known_members + self.new_members.len() + n <= config.max_members,
        };
        let mut undo = Vec::new();
        for (i, obs) in batch.iter().enumerate() {
            if let Err(e) = self.admit_one(obs, room, &mut undo) {
                // Nothing of a refused batch stays admitted.
                for step in undo.into_iter().rev() {
                    match step {
                        Undo::Service(s) => drop(self.new_services.remove(&s)),
                        Undo::Member(m) => drop(self.new_members.remove(&m)),
                        Undo::Facet(s) => {
                            if let Some(added) = self.added_facets.get_mut(&s) {
                                added.pop();
                            }
                        }
                    }
                }
                return Err((i, e));
            }
        }
        Ok(())
    }

    fn service(&self, name: &str) -> Option<&'e Service> {
        let engine = self.engine;
        let svc: ServiceId = *engine.service_index.get(&engine.syms.get(name)?)?;
        Some(&engine.services[svc])
    }

    fn admit_one(
        &mut self,
        obs: &Observation,
        room: Room,
        undo: &mut Vec<Undo>,
    ) -> Result<(), ObserveError> {
        let engine = self.engine;
        let config = &engine.config;
        if !room.services
            && self.service(&obs.service).is_none()
            && !self.new_services.contains(&obs.service)
        {
            if engine.services.len() + self.new_services.len() >= config.max_services {
                return Err(ObserveError::TooManyServices {
                    service: obs.service.clone(),
                    limit: config.max_services,
                });
            }
            self.new_services.insert(obs.service.clone());
            undo.push(Undo::Service(obs.service.clone()));
        }
        if !room.members && !engine.has_member(&obs.service, &obs.member) {
            let pair = (obs.service.clone(), obs.member.clone());
            if !self.new_members.contains(&pair) {
                if self.known_members + self.new_members.len() >= config.max_members {
                    return Err(ObserveError::TooManyMembers {
                        service: obs.service.clone(),
                        member: obs.member.clone(),
                        limit: config.max_members,
                    });
                }
                self.new_members.insert(pair.clone());
                undo.push(Undo::Member(pair));
            }
        }
        if obs.facets.is_empty() {
            return Ok(());
        }
        if !self.facets.contains_key(&obs.service) {
            let names = self.service(&obs.service).map_or_else(Vec::new, |s| {
                s.columns
                    .iter()
                    .map(|c| engine.syms.resolve(c.facet))
                    .collect()
            });
            self.facets.insert(obs.service.clone(), names);
        }
        let known = &self.facets[&obs.service];
        let added = self.added_facets.entry(obs.service.clone()).or_default();
        for f in obs.facets.keys() {
            if known.contains(&f.as_str()) || added.contains(f) {
                continue;
            }
            if known.len() + added.len() + 1 > config.max_facets_per_service {
                return Err(ObserveError::TooManyFacets {
                    service: obs.service.clone(),
                    facet: f.clone(),
                    limit: config.max_facets_per_service,
                });
            }
            added.push(f.clone());
            undo.push(Undo::Facet(obs.service.clone()));
        }
        Ok(())
    }
}

/// What one admitted report added, to take back when its batch is refused.
enum Undo {
    Service(String),
    Member((String, String)),
    Facet(String),
}

/// Whether a limit is out of this batch's reach.
#[derive(Debug, Clone, Copy)]
struct Room {
    services: bool,
    members: bool,
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
        let mut admission = Admission::new(&engine);
        admission.admit(&[obs(&["a", "c"])]).unwrap();
        let refused = admission.admit(&[obs(&["b"]), obs(&["d"])]);
        assert!(
            matches!(refused, Err((1, ObserveError::TooManyFacets { .. }))),
            "{refused:?}"
        );
        // The refused batch admitted nothing: a batch with only known names still fits.
        admission.admit(&[obs(&["a", "b", "c"])]).unwrap();
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
        let mut admission = Admission::new(&engine);
        admission
            .admit(&[report("a", "m1"), report("a", "m1"), report("a", "m2")])
            .unwrap();
        let e = admission.admit(&[report("b", "m1")]).unwrap_err();
        assert!(matches!(e.1, ObserveError::TooManyServices { .. }), "{e:?}");
        let e = admission.admit(&[report("a", "m3")]).unwrap_err();
        assert!(matches!(e.1, ObserveError::TooManyMembers { .. }), "{e:?}");
    }
}
