//! Getters: SLIs, per-service summaries and members, for the shell to serve.

use std::collections::BTreeMap;

use coherd_model::Time;
use serde::Serialize;

use crate::divergence::Subject;
use crate::engine::Engine;
use crate::ids::{MemberSlot, ServiceId};
use crate::intern::{NONE, Sym};
use crate::sli::{
    Convergence, Exposure, ServiceSlis, UnapprovedExposure, W1H, W5M, Windowed, ratio,
};
use crate::state::{Class, flag};

/// One service at a glance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSummary {
    /// The service.
    pub service: String,
    /// Known members.
    pub members: u32,
    /// Members reporting.
    pub live: u32,
    /// Coherence now; `None` with no known members.
    pub coherence: Option<f64>,
    /// Divergences open now.
    pub open_divergences: u32,
}

/// A facet's value distribution among counting members.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FacetDistribution {
    /// The target, if the facet has one.
    pub target: Option<String>,
    /// When the target last changed (the start of its rollout), if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_since: Option<Time>,
    /// Members per value.
    pub values: BTreeMap<String, u32>,
}

/// One member as the engine sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    /// Member id.
    pub member: String,
    /// Latest phase.
    pub phase: Option<String>,
    /// `live`, `silent` or `left`.
    pub state: &'static str,
    /// Facet values.
    pub facets: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Latest deploy id.
    pub deploy: Option<String>,
    /// When it last reported.
    pub last_report: Time,
    /// Latest applied `seq`.
    pub seq: Option<u64>,
    /// At target on every targeted facet, with nothing open against it.
    pub coherent: bool,
    /// Member-level divergences open against it.
    pub open_divergences: u16,
    /// Why it is not coherent, one entry per reason (empty when it is).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_coherent: Vec<Why>,
    /// How each targeted facet stands: `at_target`, `converging`, `lagging`,
    /// `foreign`, or `unknown` when the member does not report it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub facet_states: BTreeMap<String, &'static str>,
}

/// A lease a member holds, as it last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseView {
    /// The exclusive resource.
    pub resource: String,
    /// The member holding it.
    pub member: String,
    /// Its fencing epoch.
    pub epoch: u64,
    /// When it expires.
    pub expires: Time,
}

/// One reason a member is not coherent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Why {
    /// `silent` or `left` (not reporting: unknown, so never coherent),
    /// `divergence` (open against it), `unknown` (a targeted facet it does
    /// not report), `lagging` (an older allowed value past the rollout
    /// window) or `foreign` (a value the intent does not allow).
    pub reason: &'static str,
    /// The facet, for facet reasons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facet: Option<String>,
    /// The member's value of the facet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The facet's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// `live`, `silent` or `left`.
fn member_state(m: &crate::state::Member) -> &'static str {
    if m.has(flag::LIVE) {
        "live"
    } else if m.has(flag::TERMINAL) {
        "left"
    } else {
        "silent"
    }
}

impl Engine {
    /// Names of every service the engine knows, sorted.
    pub fn service_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.services.iter().map(|s| s.name_str.as_str()).collect();
        v.sort_unstable();
        v
    }

    pub(crate) fn svc(&self, service: &str) -> Option<ServiceId> {
        self.syms
            .get(service)
            .and_then(|s| self.service_index.get(&s))
            .copied()
            .filter(|&i| !self.services[i].forgotten)
    }

    /// A summary of every service, sorted by name.
    pub fn services(&self) -> Vec<ServiceSummary> {
        let mut open: BTreeMap<ServiceId, u32> = BTreeMap::new();
        for d in self.open_divergences() {
            *open.entry(d.key.svc).or_default() += 1;
        }
        let mut out: Vec<ServiceSummary> = self
            .services
            .iter_enumerated()
            .filter(|(_, s)| !s.forgotten)
            .map(|(i, s)| ServiceSummary {
                service: s.name_str.clone(),
                members: s.known,
                live: s.live,
                coherence: ratio(s.coherent as u64, s.coherence_denominator() as u64),
                open_divergences: open.get(&i).copied().unwrap_or(0),
            })
            .collect();
        out.sort_by(|a, b| a.service.cmp(&b.service));
        out
    }

    /// Value distributions per facet of a service.
    pub fn facet_distributions(
        &self,
        service: &str,
    ) -> Option<BTreeMap<String, FacetDistribution>> {
        let s = &self.services[self.svc(service)?];
        Some(
            s.columns
                .iter()
                .map(|c| {
                    let rule = c.rule.as_ref().filter(|r| r.targeted());
                    let target = rule.map(|r| self.syms.resolve(r.target).to_string());
                    let target_since = rule.map(|r| r.tc);
                    let values = c
                        .counts
                        .iter()
                        .map(|(&v, &n)| (self.syms.resolve(v).to_string(), n))
                        .collect();
                    (
                        self.syms.resolve(c.facet).to_string(),
                        FacetDistribution {
                            target,
                            target_since,
                            values,
                        },
                    )
                })
                .collect(),
        )
    }

    /// Whether `service` knows `member` (it has not been forgotten or deleted).
    pub fn has_member(&self, service: &str, member: &str) -> bool {
        let (Some(svc), Some(m)) = (self.svc(service), self.syms.get(member)) else {
            return false;
        };
        self.services[svc].slot_of(m).is_some()
    }

    /// The leases a service's members hold, as each last reported them, by
    /// resource then highest epoch first.
    pub fn leases(&self, service: &str) -> Option<Vec<LeaseView>> {
        let s = &self.services[self.svc(service)?];
        let mut out: Vec<LeaseView> = s
            .members
            .iter()
            .filter(|m| !m.has(flag::REMOVED))
            .flat_map(|m| {
                let held = m
                    .extra
                    .as_ref()
                    .map(|x| x.leases.as_slice())
                    .unwrap_or_default();
                held.iter().map(move |l| LeaseView {
                    resource: self.syms.resolve(l.resource).to_string(),
                    member: self.syms.resolve(m.name).to_string(),
                    epoch: l.epoch,
                    expires: l.expires,
                })
            })
            .collect();
        out.sort_by(|a, b| a.resource.cmp(&b.resource).then(b.epoch.cmp(&a.epoch)));
        Some(out)
    }

    /// How synchronised each declared periodic job of a service is now, by job name.
    pub fn job_stats(&self, service: &str) -> Vec<JobStats> {
        let Some(svc) = self.svc(service) else {
            return Vec::new();
        };
        let mut out: Vec<JobStats> = self.services[svc]
            .jobs
            .iter()
            .map(|(&job, j)| JobStats {
                job: self.syms.resolve(job).to_string(),
                order_parameter: j.order_parameter(self.now),
                peak_concurrency: j.peak_concurrency(self.now),
                members: j.members(self.now).len(),
                start_slots: j.start_slots(self.now, START_SLOTS),
            })
            .collect();
        out.sort_by(|a, b| a.job.cmp(&b.job));
        out
    }

    /// One member as the engine sees it, with why it is not coherent.
    pub fn member(&self, service: &str, member: &str) -> Option<MemberView> {
        let svc = self.svc(service)?;
        let slot = self.services[svc].slot_of(self.syms.get(member)?)?;
        Some(self.member_view(svc, slot))
    }

    /// Members of a service, sorted by id.
    pub fn members(&self, service: &str) -> Option<Vec<MemberView>> {
        self.members_page(service, None, None, usize::MAX)
            .map(|page| page.members)
    }

    /// One page of a service's members sorted by id: at most `limit` whose
    /// id sorts after `after`, optionally only those in `state` (`live`,
    /// `silent` or `left`), with the number that match in all and whether more
    /// follow the page. Memory is the page's: one pass keeps the `limit`
    /// smallest ids, and only those become views.
    pub fn members_page(
        &self,
        service: &str,
        state: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Option<MembersPage> {
        let svc = self.svc(service)?;
        let s = &self.services[svc];
        let mut total = 0;
        let mut following = 0;
        let mut page: std::collections::BinaryHeap<(&str, MemberSlot)> =
            std::collections::BinaryHeap::with_capacity(limit.min(1024));
        for (slot, m) in s.members.iter_enumerated() {
            if m.has(flag::REMOVED) || state.is_some_and(|st| member_state(m) != st) {
                continue;
            }
            total += 1;
            let name = self.syms.resolve(m.name);
            if after.is_some_and(|a| name <= a) {
                continue;
            }
            following += 1;
            if page.len() < limit {
                page.push((name, slot));
            } else if page.peek().is_some_and(|top| (name, slot) < *top) {
                page.pop();
                page.push((name, slot));
            }
        }
        let members: Vec<MemberView> = page
            .into_sorted_vec()
            .into_iter()
            .map(|(_, slot)| self.member_view(svc, slot))
            .collect();
        Some(MembersPage {
            total,
            more: following > members.len(),
            members,
        })
    }

    fn member_view(&self, svc: ServiceId, slot: MemberSlot) -> MemberView {
        let s = &self.services[svc];
        let m = &s.members[slot];
        let name = |x| {
            if x == NONE {
                None
            } else {
                Some(self.syms.resolve(x).to_string())
            }
        };
        MemberView {
            member: self.syms.resolve(m.name).to_string(),
            phase: name(m.phase),
            state: member_state(m),
            facets: s
                .columns
                .iter()
                .filter(|c| c.values[slot] != NONE)
                .map(|c| {
                    (
                        self.syms.resolve(c.facet).to_string(),
                        self.syms.resolve(c.values[slot]).to_string(),
                    )
                })
                .collect(),
            labels: self
                .labels_of(m.labels)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            deploy: name(m.deploy),
            last_report: m.last_report,
            seq: m.has(flag::HAS_SEQ).then_some(m.seq),
            coherent: m.has(flag::COHERENT),
            open_divergences: m.open_divs,
            not_coherent: if m.has(flag::COHERENT) {
                Vec::new()
            } else {
                self.why_not_coherent(svc, slot)
            },
            facet_states: s
                .columns
                .iter()
                .filter_map(|c| {
                    let rule = c.rule.as_ref().filter(|r| r.targeted())?;
                    let v = c.values[slot];
                    let state = if v == NONE {
                        "unknown"
                    } else {
                        rule.classify(v, self.now).as_str()
                    };
                    Some((self.syms.resolve(c.facet).to_string(), state))
                })
                .collect(),
        }
    }

    /// The reasons behind a member's `coherent: false`, in the order the
    /// coherence rule checks them.
    fn why_not_coherent(&self, svc: ServiceId, slot: MemberSlot) -> Vec<Why> {
        let s = &self.services[svc];
        let m = &s.members[slot];
        let mut why = Vec::new();
        let plain = |reason| Why {
            reason,
            facet: None,
            value: None,
            target: None,
        };
        if !m.is_counting() {
            why.push(plain(member_state(m)));
        }
        if m.open_divs > 0 {
            why.push(plain("divergence"));
        }
        for c in &s.columns {
            let Some(rule) = c.rule.as_ref().filter(|r| r.targeted()) else {
                continue;
            };
            let v = c.values[slot];
            let reason = if v == NONE {
                "unknown"
            } else {
                match rule.classify(v, self.now) {
                    crate::state::Class::Lagging => "lagging",
                    crate::state::Class::Foreign => "foreign",
                    _ => continue,
                }
            };
            why.push(Why {
                reason,
                facet: Some(self.syms.resolve(c.facet).to_string()),
                value: (v != NONE).then(|| self.syms.resolve(v).to_string()),
                target: Some(self.syms.resolve(rule.target).to_string()),
            });
        }
        why
    }

    /// Brings the subjects and evidence of open `mixed` and `herd` divergences up to date
    /// (they are kept lazily because computing them costs a pass over the service).
    pub fn refresh_open_subjects(&mut self) {
        let open: Vec<(usize, ServiceId, Sym)> = self
            .table
            .open()
            .filter_map(|(k, i, _)| match k.subject {
                Subject::Facet(facet) => Some((i, k.svc, facet)),
                _ => None,
            })
            .collect();
        for (i, svc, facet) in open {
            let Some(c) = self.services[svc].column_of(facet) else {
                continue;
            };
            let (subjects, evidence) = self.mixed_view(svc, c, None);
            let r = &mut self.table.records[i];
            r.subjects = subjects;
            r.evidence = evidence;
        }
        self.refresh_open_herds();
    }

    /// Every service's SLIs at the engine's current time, by name.
    pub fn all_service_slis(&mut self) -> BTreeMap<String, ServiceSlis> {
        let names: Vec<String> = self.service_names().into_iter().map(String::from).collect();
        names
            .into_iter()
            .filter_map(|s| self.service_slis(&s).map(|x| (s, x)))
            .collect()
    }

    /// Every SLI of a service at the engine's current time.
    pub fn service_slis(&mut self, service: &str) -> Option<ServiceSlis> {
        let svc = self.svc(service)?;
        let now = self.now;
        let (pairs, disagree) = self.phase_pairs(svc);
        let s = &mut self.services[svc];
        let coherence_5m = s.windows.coherence_over(now, W5M);
        let coherence_1h = s.windows.coherence_over(now, W1H);
        let (w5, w1) = (s.windows.sum(now, W5M), s.windows.sum(now, W1H));
        let non_terminal = s.coherence_denominator();
        let counting = s.counting;
        let silent = s
            .members
            .iter()
            .filter(|m| !m.has(flag::REMOVED) && !m.has(flag::LIVE) && !m.has(flag::TERMINAL))
            .count() as u32;
        let mut exposure = BTreeMap::new();
        let mut convergence = BTreeMap::new();
        for c in &s.columns {
            let Some(r) = c.rule.as_ref().filter(|r| r.targeted()) else {
                continue;
            };
            let facet = self.syms.resolve(c.facet).to_string();
            let off = counting.saturating_sub(c.count(r.target));
            let now_share = ratio(off as u64, counting as u64);
            let unapproved_now: u32 = c
                .counts
                .iter()
                .filter(|(v, _)| matches!(r.classify(**v, now), Class::Lagging | Class::Foreign))
                .map(|(_, n)| n)
                .sum();
            let unapproved_share = ratio(unapproved_now as u64, counting as u64);
            let u = self.signals.unapproved.get(&svc);
            let unapproved = |b: &crate::sli::Bucket, span: i64| {
                if b.requests > 0 {
                    let n = u.map_or(0, |u| u.sum(now, span, c.facet));
                    ratio(n, b.requests)
                } else {
                    unapproved_share
                }
            };
            let windowed = |b: &crate::sli::Bucket| {
                if b.requests > 0 {
                    ratio(b.exposed(c.facet), b.requests)
                } else {
                    now_share
                }
            };
            exposure.insert(
                facet.clone(),
                Exposure {
                    now: now_share,
                    w5m: windowed(&w5),
                    w1h: windowed(&w1),
                    unapproved: UnapprovedExposure {
                        now: unapproved_share,
                        w5m: unapproved(&w5, W5M),
                        w1h: unapproved(&w1, W1H),
                    },
                },
            );
            convergence.insert(
                facet,
                Convergence {
                    revision: r.revision,
                    target: self.syms.resolve(r.target).to_string(),
                    started_at: r.tc,
                    p95_seconds: c.converged.0.map(|t| t.seconds_since(r.tc)),
                    p100_seconds: c.converged.1.map(|t| t.seconds_since(r.tc)),
                },
            );
        }
        let rate =
            |num: fn(&crate::sli::Bucket) -> u64, den: fn(&crate::sli::Bucket) -> u64| Windowed {
                w5m: ratio(num(&w5), den(&w5)),
                w1h: ratio(num(&w1), den(&w1)),
            };
        let live_non_terminal = counting;
        Some(ServiceSlis {
            members: s.known,
            live: s.live,
            silent,
            coherence: ratio(s.coherent as u64, non_terminal as u64),
            coherence_5m,
            coherence_1h,
            telemetry_completeness: match s.cfg.expect_members {
                Some(n) => ratio(live_non_terminal as u64, n as u64),
                None => ratio(live_non_terminal as u64, non_terminal as u64),
            },
            exposure,
            convergence,
            replica_divergence_rate: rate(|b| b.divergent_comparisons, |b| b.comparisons),
            phase_mismatch_rate: ratio(disagree, pairs),
            drain_failure_rate: rate(|b| b.nonserving_requests, |b| b.requests),
            phase_change_latency_seconds: s.windows.phase_change_latency.snapshot(),
            flap_frequency: ratio(w1.flips, s.known as u64),
            detection_latency_seconds: s.windows.detection_latency.snapshot(),
            schema_error_rate: rate(|b| b.schema_errors, |b| b.requests),
            duplicate_rate: rate(|b| b.duplicates, |b| b.requests),
            error_rate: rate(|b| b.errors, |b| b.requests),
            canary: self.canary_traffic_of(svc),
            replica_lag_positions: self.max_replica_lag(svc),
            breakdown: self.breakdown_slis(svc),
        })
    }

    /// Approximate heap bytes held by the fleet model (members, columns, names).
    pub fn approx_heap_bytes(&self) -> usize {
        let mut n = self.syms.heap_bytes() + self.herd_heap_bytes();
        for s in self.services.iter() {
            n += s.members.capacity() * std::mem::size_of::<crate::state::Member>();
            n += s.by_name.capacity() * 9;
            for c in &s.columns {
                n += c.values.capacity() * 4 + c.counts.capacity() * 9;
            }
        }
        n
    }
}

/// How synchronised one periodic job is ([`Engine::job_stats`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStats {
    /// The job (its event kind).
    pub job: String,
    /// Kuramoto order parameter of start times over the job's window: 1 all at
    /// once, near 0 spread out; `None` without runs.
    pub order_parameter: Option<f64>,
    /// Most runs in progress at once over the window.
    pub peak_concurrency: usize,
    /// Members with a run in the window.
    pub members: usize,
    /// Run starts in the window per twelfth of the period ([`START_SLOTS`]
    /// slots): a flat histogram is a job spread out, one tall slot a herd.
    pub start_slots: Vec<usize>,
}

/// Slots of a job's period in [`JobStats::start_slots`].
pub const START_SLOTS: usize = 12;

/// A page of a service's members ([`Engine::members_page`]).
#[derive(Debug, Clone, Serialize)]
pub struct MembersPage {
    /// Members matching the filter, on every page.
    pub total: usize,
    /// This page's members, sorted by id.
    pub members: Vec<MemberView>,
    /// Whether members follow this page.
    #[serde(skip)]
    pub more: bool,
}
