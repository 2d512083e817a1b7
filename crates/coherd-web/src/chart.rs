//! Inline SVG charts: sparklines, a line over time and bars.

use maud::{Markup, html};

/// A sparkline of `points` (gaps where `None`) scaled to `[lo, hi]`.
pub(crate) fn sparkline(points: &[Option<f64>], lo: f64, hi: f64, label: &str) -> Markup {
    let (w, h) = (120.0, 24.0);
    let n = points.len().max(2) as f64 - 1.0;
    let span = (hi - lo).max(f64::EPSILON);
    let mut runs: Vec<String> = Vec::new();
    let mut run = String::new();
    for (i, p) in points.iter().enumerate() {
        match p {
            Some(v) if v.is_finite() => {
                let x = i as f64 / n * w;
                let y = h - ((v.clamp(lo, hi) - lo) / span * (h - 2.0)) - 1.0;
                run.push_str(&format!("{x:.1},{y:.1} "));
            }
            _ if !run.is_empty() => runs.push(std::mem::take(&mut run)),
            _ => {}
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    html! {
        svg.spark width="120" height="24" viewBox="0 0 120 24" role="img" aria-label=(label) {
            title { (label) }
            @for r in &runs { polyline points=(r.trim_end()) {} }
        }
    }
}

/// A line of `(x, y)` points, x in seconds from the first, y in `[0, 1]`,
/// with its axes labelled.
pub(crate) fn line(points: &[(f64, f64)], label: &str, x_label: &str) -> Markup {
    let (w, h, left, bottom) = (480.0, 140.0, 34.0, 18.0);
    let x_max = points.iter().map(|p| p.0).fold(1.0_f64, f64::max);
    let pts: String = points
        .iter()
        .map(|(x, y)| {
            let px = left + x / x_max * (w - left - 6.0);
            let py = (h - bottom) - y.clamp(0.0, 1.0) * (h - bottom - 6.0);
            format!("{px:.1},{py:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ");
    html! {
        svg.chart width="480" height="140" viewBox="0 0 480 140" role="img" aria-label=(label) {
            title { (label) }
            line.axis x1=(left) y1="6" x2=(left) y2=(h - bottom) {}
            line.axis x1=(left) y1=(h - bottom) x2=(w - 6.0) y2=(h - bottom) {}
            text x="2" y="12" { "100%" }
            text x="8" y=(h - bottom) { "0%" }
            text x=(left) y=(h - 4.0) { (x_label) }
            polyline points=(pts) {}
        }
    }
}

/// Bars of `counts`, one per slot.
pub(crate) fn bars(counts: &[usize], label: &str) -> Markup {
    let (w, h) = (240.0, 48.0);
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bw = w / counts.len().max(1) as f64;
    html! {
        svg.bars width="240" height="48" viewBox="0 0 240 48" role="img" aria-label=(label) {
            title { (label) }
            @for (i, c) in counts.iter().enumerate() {
                @let bh = *c as f64 / max * (h - 2.0);
                rect x=(format!("{:.1}", i as f64 * bw)) y=(format!("{:.1}", h - bh)) width=(format!("{:.1}", (bw - 1.0).max(1.0))) height=(format!("{bh:.1}")) {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_breaks_at_gaps_and_stays_in_its_box() {
        let svg = sparkline(
            &[Some(1.0), Some(0.5), None, Some(0.0), Some(2.0)],
            0.0,
            1.0,
            "c",
        )
        .into_string();
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(
            svg.contains("0.0,1.0 30.0,12.0"),
            "1 at the top, 0.5 halfway: {svg}"
        );
        assert!(svg.contains("120.0,1.0"), "2 is clamped to the top: {svg}");
        assert!(svg.contains("aria-label=\"c\""));
    }

    #[test]
    fn bars_scale_to_the_largest_slot_and_labels_are_escaped() {
        let svg = bars(&[0, 2, 4], "starts of <job>").into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(
            svg.contains("height=\"46.0\""),
            "the largest fills the height: {svg}"
        );
        assert!(svg.contains("starts of &lt;job&gt;"), "{svg}");
    }
}
