//! Terminal tables shared by the commands.

use std::collections::BTreeMap;

use coherd_engine::{Divergence, ServiceSlis};

/// A ratio as a percentage, `-` when unknown.
pub(crate) fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:.1}%", v * 100.0))
}

/// `s` cut to `n` characters, with `…` when cut.
pub(crate) fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// A span of seconds, compactly: `42s`, `5m12s`, `3h04m`, `2d03h`.
pub(crate) fn span(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A table of divergences, one line each.
pub(crate) fn print_divergences(divs: &[Divergence]) {
    let open = divs.iter().filter(|d| d.is_open()).count();
    println!(
        "{} divergences ({} open, {} resolved)",
        divs.len(),
        open,
        divs.len() - open
    );
    if divs.is_empty() {
        return;
    }
    println!(
        "{:<19} {:<8} {:<20} {:<16} {:<22} SUBJECTS",
        "KIND", "SEVERITY", "OPENED", "RESOLVED", "SERVICE"
    );
    for d in divs {
        let resolved = d.resolved_at.map_or("open".to_string(), |r| {
            format!("+{}s", r.seconds_since(d.opened_at).round())
        });
        let subjects = match d.subjects.len() {
            0 => String::new(),
            1..=3 => d.subjects.join(","),
            n => format!("{},… ({n})", d.subjects[..2].join(",")),
        };
        println!(
            "{:<19} {:<8} {:<20} {:<16} {:<22} {}",
            d.kind.as_str(),
            d.severity.as_str(),
            d.opened_at.to_string().chars().take(20).collect::<String>(),
            resolved,
            short(&d.service, 22),
            short(&subjects, 40)
        );
    }
}

/// A table of the main SLIs per service.
pub(crate) fn print_slis(slis: &BTreeMap<String, ServiceSlis>) {
    println!(
        "{:<22} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "SERVICE", "MEMBERS", "LIVE", "COHERENCE", "COH 1H", "COMPLETE", "MISMATCH"
    );
    for (name, s) in slis {
        println!(
            "{:<22} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9}",
            short(name, 22),
            s.members,
            s.live,
            pct(s.coherence),
            pct(s.coherence_1h),
            pct(s.telemetry_completeness),
            pct(s.phase_mismatch_rate)
        );
    }
}
