//! `/ui/oncall`: what is broken now, and what is being done about it.

use coherd_engine::Divergence;
use coherd_model::Time;
use maud::{Markup, html};

use crate::layout::{Nav, age, page, severity, th, when};
use crate::{member_href, service_href};

/// An alert as the on-call page lists it.
#[derive(Debug, Clone)]
pub struct AlertRow {
    /// `alertname`.
    pub name: String,
    /// Its `severity` label (`page`, `ticket`...).
    pub severity: String,
    /// Its `service` label.
    pub service: Option<String>,
    /// Its summary annotation.
    pub summary: String,
    /// Since when it fires.
    pub starts_at: Time,
    /// Held back by a silence.
    pub silenced: bool,
    /// Held back by an inhibition.
    pub inhibited: bool,
}

/// A remediation under way.
#[derive(Debug, Clone)]
pub struct RemediationRow {
    /// The action.
    pub action: String,
    /// The service.
    pub service: String,
    /// The member, for member-level divergences.
    pub member: Option<String>,
    /// The divergence.
    pub divergence_id: String,
    /// `planned`, `in_flight` or `awaiting verification`.
    pub phase: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Its wave (1-based).
    pub wave: Option<usize>,
}

/// A subject the reconciler stopped acting on.
#[derive(Debug, Clone)]
pub struct QuarantineRow {
    /// The divergence.
    pub divergence_id: String,
    /// Its service.
    pub service: String,
    /// The action whose thrash limit it reached.
    pub action: String,
    /// Since when.
    pub since: Time,
}

/// The on-call page's data.
#[derive(Debug, Clone, Default)]
pub struct Oncall {
    /// The time the data was read.
    pub now: Time,
    /// Open divergences, most severe then oldest first (one page).
    pub divergences: Vec<Divergence>,
    /// Open divergences in all.
    pub open_total: usize,
    /// Alerts known to the server.
    pub alerts: Vec<AlertRow>,
    /// Whether the reconcile loop runs here.
    pub reconcile: bool,
    /// Remediations under way.
    pub remediations: Vec<RemediationRow>,
    /// Quarantined subjects.
    pub quarantined: Vec<QuarantineRow>,
}

impl Oncall {
    /// The page.
    pub fn render(&self) -> Markup {
        let firing: Vec<&AlertRow> = self
            .alerts
            .iter()
            .filter(|a| !a.silenced && !a.inhibited)
            .collect();
        let held: Vec<&AlertRow> = self
            .alerts
            .iter()
            .filter(|a| a.silenced || a.inhibited)
            .collect();
        let body = html! {
            section.tiles aria-label="Now" {
                div.tile { div.k { "Open divergences" } div.v { (self.open_total) } }
                div.tile { div.k { "Alerts firing" } div.v { (firing.len()) } }
                div.tile { div.k { "Silenced or inhibited" } div.v { (held.len()) } }
                @if self.reconcile {
                    div.tile { div.k { "Remediations under way" } div.v { (self.remediations.len()) } }
                    div.tile { div.k { "Quarantined" } div.v { (self.quarantined.len()) } }
                }
            }
            h2 #divergences { "Open divergences" }
            @if self.divergences.is_empty() {
                p.note { "Nothing open: the fleet is coherent." }
            } @else {
                @if self.open_total > self.divergences.len() {
                    p.note { "The " (self.divergences.len()) " most severe of " (self.open_total) "; "
                        a href="/v1/divergences" { "/v1/divergences" } " pages through all." }
                }
                table.sortable #open {
                    thead { tr {
                        (th(0, "Severity", false)) (th(1, "Kind", false)) (th(2, "Service", false))
                        (th(3, "Age", true)) th scope="col" { "Subjects" } th scope="col" { "Evidence" }
                    } }
                    tbody {
                        @for d in &self.divergences { (divergence_row(self.now, d)) }
                    }
                }
            }
            h2 { "Alerts" }
            (alerts(&firing, "No alert is firing."))
            @if !held.is_empty() {
                h2 { "Silenced or inhibited" }
                (alerts(&held, ""))
            }
            @if self.reconcile {
                h2 { "Remediations under way" }
                @if self.remediations.is_empty() {
                    p.note { "None." }
                } @else {
                    table.sortable {
                        thead { tr {
                            (th(0, "Action", false)) (th(1, "Service", false)) (th(2, "Subject", false))
                            (th(3, "Phase", false)) (th(4, "Wave", true)) (th(5, "Attempts", true))
                        } }
                        tbody { @for r in &self.remediations {
                            tr {
                                td { (r.action) }
                                td { a href=(service_href(&r.service)) { (r.service) } }
                                td { @match &r.member {
                                    Some(m) => a href=(member_href(&r.service, m)) { (m) },
                                    None => (r.divergence_id),
                                } }
                                td { (r.phase) }
                                td.num { @if let Some(w) = r.wave { (w) } }
                                td.num { (r.attempts) }
                            }
                        } }
                    }
                }
                h2 { "Quarantined" }
                @if self.quarantined.is_empty() {
                    p.note { "None." }
                } @else {
                    p.note { "Repairs of these kept being undone; release one with " code { "coherd reconcile release ID" } "." }
                    table {
                        thead { tr { th scope="col" { "Divergence" } th scope="col" { "Service" } th scope="col" { "Action" } th scope="col" { "Since" } } }
                        tbody { @for q in &self.quarantined {
                            tr {
                                td { (q.divergence_id) }
                                td { a href=(service_href(&q.service)) { (q.service) } }
                                td { (q.action) }
                                td { (when(q.since)) }
                            }
                        } }
                    }
                }
            }
        };
        page("On-call", Nav::Oncall, true, body)
    }
}

/// One open divergence: its subjects link to their members.
pub(crate) fn divergence_row(now: Time, d: &Divergence) -> Markup {
    let member_level = d.kind.is_member_level();
    html! {
        tr data-id=(d.id) {
            td data-value=(d.severity as u8) { (severity(d.severity)) }
            td { (d.kind.as_str()) }
            td { a href=(service_href(&d.service)) { (d.service) } }
            td.num data-value=(now.since(d.opened_at).as_secs()) title=(when(d.opened_at)) { (age(now, d.opened_at)) }
            td {
                @for (i, s) in d.subjects.iter().take(8).enumerate() {
                    @if i > 0 { ", " }
                    @if member_level { a href=(member_href(&d.service, s)) { (s) } } @else { (s) }
                }
                @if d.subjects.len() > 8 { " and " (d.subjects.len() - 8) " more" }
            }
            td.evidence { (compact(&d.evidence)) }
        }
    }
}

/// Evidence as `key=value` pairs on one line.
fn compact(v: &serde_json::Value) -> String {
    match v.as_object() {
        Some(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => v.to_string(),
    }
}

fn alerts(list: &[&AlertRow], empty: &str) -> Markup {
    html! {
        @if list.is_empty() {
            @if !empty.is_empty() { p.note { (empty) } }
        } @else {
            table.sortable {
                thead { tr { (th(0, "Alert", false)) (th(1, "Severity", false)) (th(2, "Service", false)) (th(3, "Since", false)) th scope="col" { "Summary" } } }
                tbody { @for a in list {
                    tr {
                        td { (a.name) @if a.silenced { " " span.muted { "(silenced)" } } @if a.inhibited { " " span.muted { "(inhibited)" } } }
                        td { (a.severity) }
                        td { @if let Some(s) = &a.service { a href=(service_href(s)) { (s) } } }
                        td { (when(a.starts_at)) }
                        td { (a.summary) }
                    }
                } }
            }
        }
    }
}
