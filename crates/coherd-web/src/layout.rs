//! The frame every page shares, and the small pieces tables are made of.

use coherd_model::{Severity, Time};
use maud::{DOCTYPE, Markup, html};

/// Which page the navigation marks as current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/ui/`.
    Executive,
    /// `/ui/oncall`.
    Oncall,
    /// A service or member page.
    Debug,
}

/// A whole page: `title`, the navigation, and `body` inside `<main>`. With
/// `live`, the script re-reads the page when the fleet changes.
pub fn page(title: &str, nav: Nav, live: bool, body: Markup) -> Markup {
    let current = |n: Nav| (n == nav).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · coherd" }
                link rel="stylesheet" href="/ui/assets/coherd.css";
                script src="/ui/assets/coherd.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "coherd" }
                    nav aria-label="Dashboards" {
                        a href="/ui/" aria-current=[current(Nav::Executive)] { "Executive" }
                        a href="/ui/oncall" aria-current=[current(Nav::Oncall)] { "On-call" }
                    }
                    @if live { span.live #live aria-live="polite" { "" } }
                }
                main #main data-live=(if live { "1" } else { "0" }) {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The login page: a read token, kept by the browser in a cookie only this server reads.
pub fn login(error: Option<&str>) -> Markup {
    page(
        "Sign in",
        Nav::Executive,
        false,
        html! {
            p.note { "This coherd requires a token with the read scope to show its dashboards." }
            form.login method="post" action="/ui/login" {
                @if let Some(e) = error { p role="alert" { (e) } }
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// A severity as a coloured badge with its name (colour is never the only signal).
pub(crate) fn severity(s: Severity) -> Markup {
    html! { span class={ "sev sev-" (s.as_str()) } { (s.as_str()) } }
}

/// A ratio as a percentage, or a dash when there is nothing to measure.
pub(crate) fn percent(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{:.1}%", v * 100.0),
        _ => "–".to_string(),
    }
}

/// How long ago `t` was, compactly (`42s`, `3m`, `5h`, `2d`).
pub(crate) fn age(now: Time, t: Time) -> String {
    let s = now.since(t).as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A time to the second, UTC.
pub(crate) fn when(t: Time) -> String {
    let s = t.to_string();
    match s.find('.') {
        Some(dot) => format!("{}Z", &s[..dot]),
        None => s,
    }
}

/// A sortable column header: a button, so the keyboard reaches it.
pub(crate) fn th(col: usize, label: &str, numeric: bool) -> Markup {
    html! {
        th scope="col" class=[numeric.then_some("num")] {
            button type="button" data-col=(col) { (label) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_read_compactly() {
        assert_eq!(percent(Some(0.98765)), "98.8%");
        assert_eq!(percent(None), "–");
        assert_eq!(percent(Some(f64::NAN)), "–");
        let t0 = Time::from_secs(1_000_000);
        assert_eq!(age(t0.add(std::time::Duration::from_secs(59)), t0), "59s");
        assert_eq!(age(t0.add(std::time::Duration::from_secs(7200)), t0), "2h");
        assert_eq!(
            when("2026-12-02T10:00:00.123Z".parse().unwrap()),
            "2026-12-02T10:00:00Z"
        );
    }

    #[test]
    fn the_sign_in_form_escapes_its_message() {
        let html = login(Some("<b>no</b>")).into_string();
        assert!(html.contains("&lt;b&gt;no&lt;/b&gt;") && !html.contains("<b>no"));
    }
}
