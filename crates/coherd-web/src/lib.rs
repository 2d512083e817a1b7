//! coherd's web dashboards, rendered on the server.
//!
//! Four pages answer the three questions an operator asks: the executive
//! page (how coherent is the fleet, where is the risk), the on-call page
//! (what is broken now, what is being done about it), and per service and
//! member the debug pages (where exactly, since when). Each page is a
//! function from plain data, copied out of the engine, the alerts, the
//! reconciler and the history by the server, to HTML: the first paint holds
//! the data and works without JavaScript; charts are inline SVG; every
//! value from the fleet is escaped (the templates are `maud`'s, which escape
//! whatever they interpolate). [`ASSETS`] holds the stylesheet and the small
//! script that sorts tables and re-reads a page when `/v1/stream` says the
//! fleet changed.

// Unit tests compile with the dev-dependencies that only benches and integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod chart;
mod executive;
mod layout;
mod member;
mod oncall;
mod service;

pub use executive::{Executive, ServiceRow, Totals};
pub use layout::{Nav, login, page};
pub use member::MemberPage;
pub use oncall::{AlertRow, Oncall, QuarantineRow, RemediationRow};
pub use service::{Curve, ServicePage};

/// A static file the pages use: its path under `/ui/assets/`, content type and bytes.
pub struct Asset {
    /// The file name.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its content.
    pub body: &'static str,
}

/// The stylesheet and the script, served from the binary.
pub const ASSETS: [Asset; 2] = [
    Asset {
        name: "coherd.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/coherd.css"),
    },
    Asset {
        name: "coherd.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/coherd.js"),
    },
];

/// Percent-encodes a path segment (service and member ids may hold `/` and `:`).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/ui/services/{service}`.
pub fn service_href(service: &str) -> String {
    format!("/ui/services/{}", segment(service))
}

/// `/ui/services/{service}/members/{member}`.
pub fn member_href(service: &str, member: &str) -> String {
    format!(
        "/ui/services/{}/members/{}",
        segment(service),
        segment(member)
    )
}
