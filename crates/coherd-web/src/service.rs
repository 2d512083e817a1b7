//! `/ui/services/{service}`: where exactly, and since when.

use std::collections::BTreeMap;

use coherd_engine::{
    Divergence, FacetDistribution, JobStats, Kind, LeaseView, MemberView, ServiceSummary,
};
use coherd_model::Time;
use maud::{Markup, html};

use crate::chart::{bars, line};
use crate::layout::{Nav, age, page, percent, th, when};
use crate::member_href;
use crate::oncall::divergence_row;

/// A facet's rollout: the share of members at target each minute since
/// the target changed.
#[derive(Debug, Clone)]
pub struct Curve {
    /// The facet.
    pub facet: String,
    /// When its target changed.
    pub since: Time,
    /// (minutes since the change, share at target).
    pub points: Vec<(f64, f64)>,
}

/// The service page's data.
#[derive(Debug, Clone)]
pub struct ServicePage {
    /// When the data was read.
    pub now: Time,
    /// Members, live, coherence.
    pub summary: ServiceSummary,
    /// Observer and member pairs that disagree, over all pairs with a view.
    pub phase_mismatch: Option<f64>,
    /// Value distribution per facet.
    pub facets: BTreeMap<String, FacetDistribution>,
    /// One page of members, by id.
    pub members: Vec<MemberView>,
    /// Members in all.
    pub members_total: usize,
    /// The next page of members.
    pub next: Option<String>,
    /// Per targeted facet, its rollout since the target last changed.
    pub convergence: Vec<Curve>,
    /// The most severe open divergences of the service.
    pub open: Vec<Divergence>,
    /// Leases the members hold.
    pub leases: Vec<LeaseView>,
    /// Periodic jobs.
    pub jobs: Vec<JobStats>,
}

const STATES: [(&str, &str, &str); 5] = [
    ("at_target", "✓", "at target"),
    ("converging", "→", "converging (inside the rollout window)"),
    ("lagging", "lag", "lagging (previous target)"),
    ("foreign", "✗", "foreign (neither target nor previous)"),
    ("unknown", "?", "unknown (not reported)"),
];

impl ServicePage {
    /// The page.
    pub fn render(&self) -> Markup {
        let sum = &self.summary;
        let targeted: Vec<&String> = self
            .facets
            .iter()
            .filter(|(_, d)| d.target.is_some())
            .map(|(f, _)| f)
            .collect();
        let pairs: Vec<&Divergence> = self
            .open
            .iter()
            .filter(|d| matches!(d.kind, Kind::PhaseDisagreement | Kind::DrainViolation))
            .collect();
        let body = html! {
            section.tiles aria-label="Service" {
                div.tile { div.k { "Members live / known" } div.v { (sum.live) " / " (sum.members) } }
                div.tile { div.k { "Coherence" } div.v { (percent(sum.coherence)) } }
                div.tile { div.k { "Open divergences" } div.v { (sum.open_divergences) } }
                div.tile { div.k { "Phase mismatch" } div.v { (percent(self.phase_mismatch)) } }
            }
            h2 { "Open divergences" }
            @if self.open.is_empty() { p.note { "Nothing open." } } @else {
                table.sortable {
                    thead { tr {
                        (th(0, "Severity", false)) (th(1, "Kind", false)) (th(2, "Service", false))
                        (th(3, "Age", true)) th scope="col" { "Subjects" } th scope="col" { "Evidence" }
                    } }
                    tbody { @for d in &self.open { (divergence_row(self.now, d)) } }
                }
            }
            h2 { "Facets" }
            @if self.facets.is_empty() { p.note { "No facet reported." } } @else {
                table {
                    thead { tr { th scope="col" { "Facet" } th scope="col" { "Target" } th scope="col" { "Values (members)" } } }
                    tbody { @for (facet, d) in &self.facets {
                        tr {
                            td { (facet) }
                            td { @if let Some(t) = &d.target { code { (t) } } @else { span.muted { "none" } } }
                            td { @for (v, n) in &d.values { code { (v) } " " (n) "  " } }
                        }
                    } }
                }
            }
            h2 { "Members × targeted facets" }
            p.legend { @for (class, mark, words) in STATES { span class={ "st-" (class) } { (mark) " " (words) } } }
            table.sortable.matrix {
                caption.muted { (self.members.len()) " of " (self.members_total) " members, by id" }
                thead { tr {
                    (th(0, "Member", false)) (th(1, "State", false)) (th(2, "Phase", false))
                    @for (i, f) in targeted.iter().enumerate() { (th(3 + i, f, false)) }
                } }
                tbody { @for m in &self.members {
                    tr {
                        td { a href=(member_href(&sum.service, &m.member)) { (m.member) } }
                        td { (m.state) }
                        td { (m.phase.as_deref().unwrap_or("–")) }
                        @for f in &targeted {
                            @let st = m.facet_states.get(f.as_str()).copied().unwrap_or("unknown");
                            @let (mark, words) = STATES.iter().find(|s| s.0 == st).map_or(("?", st), |s| (s.1, s.2));
                            td class={ "cell st-" (st) } data-value=(st) title={ (f) ": " (m.facets.get(f.as_str()).map_or("not reported", String::as_str)) ", " (words) } {
                                (mark) " " (m.facets.get(f.as_str()).map_or("", String::as_str))
                            }
                        }
                    }
                } }
            }
            @if let Some(next) = &self.next { p.pager { a href=(next) rel="next" { "Next members →" } } }
            h2 { "Rollout convergence" }
            @if self.convergence.is_empty() { p.note { "No targeted facet has history yet." } }
            @for c in &self.convergence {
                h3 { (c.facet) span.muted { " since the target changed " (when(c.since)) } }
                (line(&c.points, &format!("share of members at target for {} since its last change", c.facet), "minutes since the change"))
            }
            h2 { "Phase agreement" }
            p.note { "Observers (balancers, discovery) that disagree with a member's own phase." }
            @if pairs.is_empty() { p.note { "Every observer agrees with every member." } } @else {
                table {
                    thead { tr { th scope="col" { "Kind" } th scope="col" { "Member, as observer sees it" } th scope="col" { "Since" } th scope="col" { "Evidence" } } }
                    tbody { @for d in &pairs {
                        tr { td { (d.kind.as_str()) } td { (d.subjects.join(", ")) } td { (age(self.now, d.opened_at)) } td.evidence { (d.evidence.to_string()) } }
                    } }
                }
            }
            h2 { "Leases" }
            @if self.leases.is_empty() { p.note { "No member reports a lease." } } @else {
                table.sortable {
                    thead { tr { (th(0, "Resource", false)) (th(1, "Holder", false)) (th(2, "Epoch", true)) (th(3, "Expires", false)) } }
                    tbody { @for l in &self.leases {
                        tr {
                            td { (l.resource) }
                            td { a href=(member_href(&sum.service, &l.member)) { (l.member) } }
                            td.num { (l.epoch) }
                            td { (when(l.expires)) @if l.expires <= self.now { " " span.muted { "(expired)" } } }
                        }
                    } }
                }
            }
            h2 { "Periodic jobs" }
            @if self.jobs.is_empty() { p.note { "No periodic job reported." } } @else {
                table {
                    thead { tr { th scope="col" { "Job" } th.num scope="col" { "Members" } th.num scope="col" { "Order parameter" } th.num scope="col" { "Peak at once" } th scope="col" { "Starts per slot" } } }
                    tbody { @for j in &self.jobs {
                        tr {
                            td { (j.job) }
                            td.num { (j.members) }
                            td.num { @match j.order_parameter { Some(r) => (format!("{r:.2}")), None => "–" } }
                            td.num { (j.peak_concurrency) }
                            td { (bars(&j.start_slots, &format!("starts of {} per slot of its period", j.job))) }
                        }
                    } }
                }
            }
        };
        page(&format!("Service {}", sum.service), Nav::Debug, true, body)
    }
}
