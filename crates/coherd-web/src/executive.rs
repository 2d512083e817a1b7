//! `/ui/`: coherence and risk per service, and the fleet's totals.

use coherd_engine::ServiceSummary;
use maud::{Markup, html};

use crate::chart::sparkline;
use crate::layout::{Nav, page, percent, th};
use crate::service_href;

/// The fleet's totals.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Services known.
    pub services: usize,
    /// Members known.
    pub members: u64,
    /// Members reporting.
    pub live: u64,
    /// Coherent members over counted members, fleet-wide.
    pub coherence: Option<f64>,
    /// Open divergences: info, warning, critical.
    pub open: [u64; 3],
}

/// One service's row.
#[derive(Debug, Clone)]
pub struct ServiceRow {
    /// Members, live, coherence, open divergences.
    pub summary: ServiceSummary,
    /// Open divergences: info, warning, critical.
    pub open: [u32; 3],
    /// Requests served off target in the last 5 minutes, per targeted facet.
    pub exposure: Vec<(String, Option<f64>)>,
    /// Error budget left of its coherence SLO, as a share.
    pub budget_left: Option<f64>,
    /// Coherence over the last 24 hours, oldest first, in even steps.
    pub coherence_24h: Vec<Option<f64>>,
}

/// The executive page's data.
#[derive(Debug, Clone, Default)]
pub struct Executive {
    /// Fleet-wide.
    pub totals: Totals,
    /// One page of services, least coherent first.
    pub services: Vec<ServiceRow>,
    /// The next page's link, when more services follow.
    pub next: Option<String>,
}

impl Executive {
    /// The page.
    pub fn render(&self) -> Markup {
        let t = &self.totals;
        let body = html! {
            section.tiles aria-label="Fleet totals" {
                div.tile { div.k { "Services" } div.v { (t.services) } }
                div.tile { div.k { "Members live / known" } div.v { (t.live) " / " (t.members) } }
                div.tile { div.k { "Coherence" } div.v { (percent(t.coherence)) } }
                div.tile { div.k { "Open critical" } div.v { span.sev.sev-critical { (t.open[2]) } } }
                div.tile { div.k { "Open warning" } div.v { span.sev.sev-warning { (t.open[1]) } } }
                div.tile { div.k { "Open info" } div.v { span.sev.sev-info { (t.open[0]) } } }
            }
            h2 { "Services" }
            @if self.services.is_empty() {
                p.note { "No service has reported yet." }
            } @else {
                table.sortable {
                    caption.muted { "Least coherent first; select a header to sort." }
                    thead { tr {
                        (th(0, "Service", false)) (th(1, "Members", true)) (th(2, "Live", true))
                        (th(3, "Coherence", true)) (th(4, "Critical", true)) (th(5, "Warning", true))
                        (th(6, "Info", true)) (th(7, "Budget left", true))
                        th scope="col" { "Exposure (5m)" }
                        th scope="col" { "Coherence, 24 h" }
                    } }
                    tbody {
                        @for s in &self.services { (row(s)) }
                    }
                }
                @if let Some(next) = &self.next {
                    p.pager { a href=(next) rel="next" { "Next services →" } }
                }
            }
        };
        page("Fleet coherence", Nav::Executive, true, body)
    }
}

fn row(s: &ServiceRow) -> Markup {
    let sum = &s.summary;
    let coherence = sum.coherence.unwrap_or(-1.0);
    html! {
        tr {
            td { a href=(service_href(&sum.service)) { (sum.service) } }
            td.num { (sum.members) }
            td.num { (sum.live) }
            td.num data-value=(coherence) { (percent(sum.coherence)) }
            td.num { @if s.open[2] > 0 { span.sev.sev-critical { (s.open[2]) } } @else { "0" } }
            td.num { @if s.open[1] > 0 { span.sev.sev-warning { (s.open[1]) } } @else { "0" } }
            td.num { (s.open[0]) }
            td.num data-value=(s.budget_left.unwrap_or(2.0)) { (percent(s.budget_left)) }
            td {
                @for (facet, e) in &s.exposure {
                    span.muted { (facet) ": " } (percent(*e)) " "
                }
            }
            td { (sparkline(&s.coherence_24h, 0.0, 1.0, &format!("coherence of {} over 24 hours", sum.service))) }
        }
    }
}
