//! `/ui/services/{service}/members/{member}`: one member's state and history.

use coherd_engine::{Divergence, MemberView};
use coherd_model::Time;
use maud::{Markup, html};

use crate::layout::{Nav, page, when};
use crate::oncall::divergence_row;
use crate::service_href;

/// The member page's data.
#[derive(Debug, Clone)]
pub struct MemberPage {
    /// When the data was read.
    pub now: Time,
    /// Its service.
    pub service: String,
    /// The member now.
    pub member: MemberView,
    /// Divergences open against it.
    pub open: Vec<Divergence>,
    /// Its timeline, newest first: (when, what, the event as the history holds it).
    pub timeline: Vec<(Time, String, serde_json::Value)>,
}

impl MemberPage {
    /// The page.
    pub fn render(&self) -> Markup {
        let m = &self.member;
        let body = html! {
            p { "Service " a href=(service_href(&self.service)) { (self.service) } }
            section.tiles aria-label="Member" {
                div.tile { div.k { "State" } div.v { (m.state) } }
                div.tile { div.k { "Phase" } div.v { (m.phase.as_deref().unwrap_or("–")) } }
                div.tile { div.k { "Coherent" } div.v { @if m.coherent { span.sev.sev-ok { "yes" } } @else { span.sev.sev-warning { "no" } } } }
                div.tile { div.k { "Last report" } div.v { (when(m.last_report)) } }
            }
            @if !m.not_coherent.is_empty() {
                h2 { "Why it is not coherent" }
                ul { @for w in &m.not_coherent {
                    li { (w.reason)
                        @if let Some(f) = &w.facet { ": " (f) }
                        @if let Some(v) = &w.value { " is " code { (v) } }
                        @if let Some(t) = &w.target { ", target " code { (t) } }
                    }
                } }
            }
            @if !m.labels.is_empty() || m.deploy.is_some() {
                p { @if let Some(d) = &m.deploy { "Deploy " code { (d) } " " }
                    @for (k, v) in &m.labels { span.muted { (k) "=" } code { (v) } " " } }
            }
            h2 { "Facets" }
            table {
                thead { tr { th scope="col" { "Facet" } th scope="col" { "Value" } th scope="col" { "Against target" } } }
                tbody { @for (f, v) in &m.facets {
                    tr {
                        td { (f) }
                        td { code { (v) } }
                        td { @if let Some(st) = m.facet_states.get(f) { span class={ "st-" (st) } { (st) } } @else { span.muted { "not targeted" } } }
                    }
                } }
            }
            h2 { "Open divergences" }
            @if self.open.is_empty() { p.note { "Nothing open against this member." } } @else {
                table {
                    thead { tr { th scope="col" { "Severity" } th scope="col" { "Kind" } th scope="col" { "Service" } th scope="col" { "Age" } th scope="col" { "Subjects" } th scope="col" { "Evidence" } } }
                    tbody { @for d in &self.open { (divergence_row(self.now, d)) } }
                }
            }
            h2 { "Timeline" }
            @if self.timeline.is_empty() { p.note { "No event in the history yet." } } @else {
                table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Detail" } } }
                    tbody { @for (at, what, event) in &self.timeline {
                        tr { td { (when(*at)) } td { (what) } td.evidence { (detail(event)) } }
                    } }
                }
            }
        };
        page(&format!("Member {}", m.member), Nav::Debug, true, body)
    }
}

/// An event's fields besides its time and kind, as `key=value`.
fn detail(event: &serde_json::Value) -> String {
    event
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| {
                    !matches!(k.as_str(), "at" | "what" | "service" | "member") && !v.is_null()
                })
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
