//! Even spread of a known membership over a window.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::DephaseError;
use crate::hash::{Purpose, from_nanos, scale, stable_hash};

/// Offsets for a known membership, evenly spaced over a window.
///
/// Members are ranked by a stable hash of `(member, job)`; the member at rank
/// `i` of `N` gets the offset `floor((i * W + c) / N)` nanoseconds, where `W`
/// is the window and `c = floor(phase * W)` for a stable per-job `phase` in
/// `[0, 1)`. Offsets are therefore `W / N` apart, never wrap, and stay in `[0, W)`.
///
/// # Guarantees
///
/// - **Slot bound.** Any half-open interval of length `L` (for example one slot
///   of a histogram) holds at most `ceil(N * L / W)` members, the ideal. Proof:
///   if `k` consecutive ranks fall in it, their offsets differ by at most
///   `L - 1` ns and by at least `floor((k - 1) * W / N)`, so `(k - 1) * W / N < L`.
///   The gap from the last offset round to the first (wrapping) is also `W / N`
///   (to the nanosecond), so the bound holds for the window seen as a circle too.
/// - **Small moves on join and leave.** When one member joins or leaves, the
///   ranking of the others is unchanged except that ranks after the change
///   move by one. Every other member's offset then moves by at most
///   `W / max(N_before, N_after)`, rounded up to the nanosecond. Proof for a leave from `N` to `N - 1`
///   (a join is the same move backwards), writing `p = c / W`: a member before
///   the one that left keeps rank `i <= N - 2` and moves by
///   `(i + p) * W / (N * (N - 1)) < W / N`; a member after it goes from rank `i >= 1`
///   to `i - 1` and moves by `(N - i - p) * W / (N * (N - 1)) <= W / N`. Both
///   offsets are floored to whole nanoseconds, so their difference is a whole
///   number of nanoseconds below `W / N + 1`, that is at most `ceil(W / N)`.
///
/// ```
/// use std::time::Duration;
/// use coherd_dephase::spread;
///
/// let window = Duration::from_secs(60);
/// let fleet = spread(["a", "b", "c"], "compact", window)?;
/// let mut offsets: Vec<Duration> = fleet.iter().map(|(_, offset)| offset).collect();
/// offsets.sort();
/// assert_eq!(offsets[1] - offsets[0], Duration::from_secs(20));
/// assert_eq!(offsets[2] - offsets[1], Duration::from_secs(20));
/// assert!(fleet.offset("b").is_some_and(|offset| offset < window));
/// # Ok::<(), coherd_dephase::DephaseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spread {
    window: Duration,
    /// Members with their offsets, in rank (and so offset) order.
    ranked: Vec<(String, Duration)>,
    /// Member id to its index in `ranked`.
    index: BTreeMap<String, usize>,
}

/// Spreads `members` evenly over `window` for `job`. See [`Spread`] for how and
/// for the guarantees.
///
/// # Errors
///
/// [`DephaseError::DuplicateMember`] when a member is listed twice, and
/// [`DephaseError::WindowTooLong`] for windows over `u64::MAX` nanoseconds.
pub fn spread<I, S>(members: I, job: &str, window: Duration) -> Result<Spread, DephaseError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    if window.as_nanos() > u128::from(u64::MAX) {
        return Err(DephaseError::WindowTooLong { window });
    }
    let mut keyed: Vec<(u64, String)> = Vec::new();
    let mut seen = BTreeMap::new();
    for member in members {
        let member = member.into();
        if seen.insert(member.clone(), ()).is_some() {
            return Err(DephaseError::DuplicateMember { member });
        }
        keyed.push((stable_hash(Purpose::Rank, &[&member, job]), member));
    }
    keyed.sort_unstable();

    let n = keyed.len() as u128;
    let w = window.as_nanos();
    let c = scale(stable_hash(Purpose::Phase, &[job]), window).as_nanos();
    let ranked: Vec<(String, Duration)> = keyed
        .into_iter()
        .enumerate()
        // i < n <= 2^64 and w, c < 2^64, so i * w + c < 2^128.
        .map(|(i, (_, member))| (member, from_nanos((i as u128 * w + c) / n)))
        .collect();
    let index = ranked
        .iter()
        .enumerate()
        .map(|(i, (member, _))| (member.clone(), i))
        .collect();
    Ok(Spread {
        window,
        ranked,
        index,
    })
}

impl Spread {
    /// The offset of `member`, or `None` if it is not in the membership.
    pub fn offset(&self, member: &str) -> Option<Duration> {
        self.index.get(member).map(|&i| self.ranked[i].1)
    }

    /// Members and their offsets, in increasing offset order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, Duration)> {
        self.ranked
            .iter()
            .map(|(member, offset)| (member.as_str(), *offset))
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.ranked.len()
    }

    /// Whether the membership is empty.
    pub fn is_empty(&self) -> bool {
        self.ranked.is_empty()
    }

    /// The window the members are spread over.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How far any other member's offset can move when one member joins or
    /// leaves this membership of `N = len()` members: `window / N`, rounded
    /// up to the nanosecond (see [`Spread`] for the proof). Zero when empty.
    pub fn move_bound(&self) -> Duration {
        match self.len() as u128 {
            0 => Duration::ZERO,
            n => from_nanos(self.window.as_nanos().div_ceil(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_single_memberships() {
        let window = Duration::from_secs(10);
        let none = spread(Vec::<String>::new(), "j", window).expect("empty is fine");
        assert!(none.is_empty());
        let one = spread(["only"], "j", window).expect("one member");
        assert!(one.offset("only").is_some_and(|o| o < window));
        assert_eq!(one.offset("other"), None);
    }

    #[test]
    fn duplicates_are_named() {
        let err = spread(["a", "b", "a"], "j", Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            err,
            DephaseError::DuplicateMember {
                member: "a".to_owned()
            }
        );
    }

    #[test]
    fn zero_window_puts_everyone_at_zero() {
        let fleet = spread(["a", "b"], "j", Duration::ZERO).expect("zero window");
        assert!(fleet.iter().all(|(_, o)| o.is_zero()));
    }

    #[test]
    fn too_long_window_is_refused() {
        assert!(matches!(
            spread(["a"], "j", Duration::MAX),
            Err(DephaseError::WindowTooLong { .. })
        ));
    }

    #[test]
    fn issue_example_thousand_members_sixty_slots() {
        let window = Duration::from_secs(600);
        let fleet = spread((0..1000).map(|i| format!("m{i}")), "job", window).expect("spread");
        let mut slots = [0usize; 60];
        for (_, offset) in fleet.iter() {
            slots[(offset.as_secs() / 10) as usize] += 1;
        }
        assert!(slots.iter().all(|&count| count <= 17), "{slots:?}");
    }
}
