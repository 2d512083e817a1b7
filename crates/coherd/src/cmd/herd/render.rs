//! Terminal output: the histogram and small formatting helpers.

use super::*;

/// Rows of the terminal histogram.
pub(super) const HISTOGRAM_ROWS: usize = 8;

/// A vertical bar chart of slot counts, at most 80 columns wide for up to 72 slots.
pub(super) fn render_histogram(counts: &[usize], period: Duration) -> String {
    const EIGHTHS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let peak = counts.iter().copied().max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "starts per slot of the period (peak {peak}, {} slots)",
        counts.len()
    );
    // Each bar's height in eighths of a row.
    let heights: Vec<usize> = counts
        .iter()
        .map(|&count| {
            if peak == 0 {
                0
            } else {
                (count * HISTOGRAM_ROWS * 8).div_ceil(peak)
            }
        })
        .collect();
    for row in (0..HISTOGRAM_ROWS).rev() {
        let label = if row + 1 == HISTOGRAM_ROWS {
            peak.to_string()
        } else {
            String::new()
        };
        let _ = write!(out, "{label:>6} │");
        for &height in &heights {
            let filled = height.saturating_sub(row * 8).min(8);
            out.push(EIGHTHS[filled]);
        }
        out.truncate(out.trim_end_matches(' ').len());
        out.push('\n');
    }
    let _ = writeln!(out, "{:>6} └{}", 0, "─".repeat(counts.len()));
    // Time labels under every sixth of the axis.
    let mut axis = vec![' '; counts.len() + 12];
    let ticks = 6.min(counts.len());
    for tick in 0..ticks {
        let slot = tick * counts.len() / ticks;
        let at =
            period * u32::try_from(slot).unwrap_or(0) / u32::try_from(counts.len()).unwrap_or(1);
        for (i, c) in human(at).chars().enumerate() {
            if let Some(cell) = axis.get_mut(slot + i) {
                *cell = c;
            }
        }
    }
    let axis: String = axis.into_iter().collect();
    let _ = writeln!(out, "{:>6}  {}", "", axis.trim_end());
    out
}

/// A short human duration: `1h 30m`, `45s`, `0s`.
pub(super) fn human(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let whole = Duration::from_secs(duration.as_secs().max(u64::from(duration.as_secs() == 0)));
    humantime::format_duration(whole).to_string()
}

pub(super) fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(width.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

/// Rounds to 6 decimals for stable JSON output.
pub(super) fn round(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}
