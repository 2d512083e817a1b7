//! Exact peak concurrency of half-open intervals.

/// The largest number of half-open intervals `[start, end)` that overlap at
/// any instant. An interval ending at `t` and one starting at `t` do not
/// overlap; intervals with `end <= start` are empty and never count. Exact for
/// any ordered time type (seconds, `Duration`s, timestamps); `O(n log n)`.
///
/// ```
/// use coherd_dephase::peak_concurrency;
///
/// assert_eq!(peak_concurrency([(0, 10), (5, 15), (10, 20)]), 2);
/// assert_eq!(peak_concurrency([(0, 10), (10, 20)]), 1); // they only touch
/// assert_eq!(peak_concurrency::<u32>([]), 0);
/// ```
pub fn peak_concurrency<T: Ord>(intervals: impl IntoIterator<Item = (T, T)>) -> usize {
    // At one instant, ends (false) sort before starts (true): half-open intervals.
    let mut edges: Vec<(T, bool)> = Vec::new();
    for (start, end) in intervals {
        if start < end {
            edges.push((start, true));
            edges.push((end, false));
        }
    }
    edges.sort_unstable();
    let (mut open, mut peak) = (0usize, 0usize);
    for (_, is_start) in edges {
        if is_start {
            open += 1;
            peak = peak.max(open);
        } else {
            open -= 1;
        }
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_made_intervals() {
        // Three nested, one touching the end: peak 3 inside [4, 5).
        assert_eq!(peak_concurrency([(0, 10), (2, 8), (4, 5), (10, 12)]), 3);
        // Touching chains never overlap.
        assert_eq!(peak_concurrency([(0, 1), (1, 2), (2, 3), (3, 4)]), 1);
        // Identical intervals all overlap.
        assert_eq!(peak_concurrency([(5, 6); 7]), 7);
        // Empty and reversed intervals are ignored.
        assert_eq!(peak_concurrency([(3, 3), (5, 1)]), 0);
        // An interval ending where two others start.
        assert_eq!(peak_concurrency([(0, 5), (5, 9), (5, 7), (6, 8)]), 3);
    }

    proptest! {
        #[test]
        fn matches_a_brute_force_count(
            intervals in proptest::collection::vec((0u8..50, 0u8..50), 0..40)
        ) {
            let brute = (0u8..50)
                .map(|t| intervals.iter().filter(|&&(s, e)| s <= t && t < e).count())
                .max()
                .unwrap_or(0);
            prop_assert_eq!(peak_concurrency(intervals.iter().copied()), brute);
        }
    }
}
