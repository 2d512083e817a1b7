//! A stable hash: the same bytes give the same value on every platform, build and release.
//!
//! std's `DefaultHasher` and `RandomState` may change between Rust releases (and
//! `RandomState` is seeded per process), so offsets computed with them would move
//! after an upgrade. SipHash-1-3 with a fixed key does not.

use std::hash::Hasher as _;
use std::time::Duration;

use siphasher::sip::SipHasher13;

/// The fixed SipHash key. Changing it moves every offset: never do that.
const KEY: (u64, u64) = (0x636f_6865_7264_2d64, 0x6570_6861_7365_2d31);

/// What a hash is used for, so that the same strings hashed for two purposes
/// give independent values.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// [`stable_offset`](crate::stable_offset).
    Offset = 1,
    /// The rank of a member inside a [`Spread`](crate::Spread).
    Rank = 2,
    /// The per-job phase of a [`Spread`](crate::Spread).
    Phase = 3,
}

/// Hashes `parts` for `purpose`. Each part is length-prefixed, so
/// `("ab", "c")` and `("a", "bc")` hash differently.
pub(crate) fn stable_hash(purpose: Purpose, parts: &[&str]) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(KEY.0, KEY.1);
    hasher.write_u8(purpose as u8);
    for part in parts {
        hasher.write(&(part.len() as u64).to_le_bytes());
        hasher.write(part.as_bytes());
    }
    hasher.finish()
}

/// Scales a 64-bit hash to `[0, window)` as `floor(hash * window / 2^64)`,
/// exactly, for any window. A zero window gives zero.
pub(crate) fn scale(hash: u64, window: Duration) -> Duration {
    let nanos = window.as_nanos();
    // window = high * 2^64 + low, so hash * window / 2^64 = hash * high + (hash * low) / 2^64.
    let high = nanos >> 64;
    let low = nanos & u128::from(u64::MAX);
    let scaled = u128::from(hash) * high + ((u128::from(hash) * low) >> 64);
    from_nanos(scaled)
}

/// A `Duration` from a nanosecond count that is known to fit (it is below some `Duration`).
pub(crate) fn from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it fits in u32.
    Duration::new(secs, (nanos % NANOS_PER_SEC) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_pinned_across_releases() {
        // If this value changes, every offset in every fleet moves.
        assert_eq!(
            stable_hash(Purpose::Offset, &["web-1", "compact"]),
            4_187_879_036_950_713_119
        );
    }

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(
            stable_hash(Purpose::Offset, &["ab", "c"]),
            stable_hash(Purpose::Offset, &["a", "bc"])
        );
    }

    #[test]
    fn purposes_are_independent() {
        assert_ne!(
            stable_hash(Purpose::Offset, &["m", "j"]),
            stable_hash(Purpose::Rank, &["m", "j"])
        );
    }

    #[test]
    fn scale_stays_below_window() {
        let window = Duration::from_secs(600);
        assert_eq!(scale(0, window), Duration::ZERO);
        assert!(scale(u64::MAX, window) < window);
        assert_eq!(scale(1 << 63, window), Duration::from_secs(300));
        assert_eq!(scale(u64::MAX, Duration::ZERO), Duration::ZERO);
        assert!(scale(u64::MAX, Duration::MAX) < Duration::MAX);
    }
}
