//! Stable offsets: the same key and job always get the same offset (Jenkins `H` style).

use std::time::Duration;

use crate::hash::{Purpose, scale, stable_hash};

/// The offset of `key` (a host, a member id) for `job` inside `window`.
///
/// The offset depends only on `key`, `job` and `window`: it is the same on every
/// run, machine and release, so a job keeps its slot across restarts. Over many
/// keys the offsets are uniformly distributed over `[0, window)` (a 64-bit
/// SipHash scaled to the window). Nothing coordinates the keys, so some slots
/// get more than their share; use [`spread`](crate::spread) when the whole
/// membership is known. A zero window gives a zero offset.
///
/// ```
/// use std::time::Duration;
/// use coherd_dephase::stable_offset;
///
/// let window = Duration::from_secs(600);
/// let offset = stable_offset("web-7", "logrotate", window);
/// assert!(offset < window);
/// assert_eq!(offset, stable_offset("web-7", "logrotate", window));
/// ```
pub fn stable_offset(key: &str, job: &str, window: Duration) -> Duration {
    scale(stable_hash(Purpose::Offset, &[key, job]), window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn same_inputs_same_offset_inside_window(
            key in ".{0,40}",
            job in ".{0,20}",
            window_ms in 0u64..10_000_000_000,
        ) {
            let window = Duration::from_millis(window_ms);
            let offset = stable_offset(&key, &job, window);
            prop_assert_eq!(offset, stable_offset(&key, &job, window));
            if window.is_zero() {
                prop_assert_eq!(offset, Duration::ZERO);
            } else {
                prop_assert!(offset < window);
            }
        }
    }

    #[test]
    fn different_jobs_on_one_host_get_different_offsets() {
        let window = Duration::from_secs(3600);
        assert_ne!(
            stable_offset("db-1", "backup", window),
            stable_offset("db-1", "vacuum", window)
        );
    }

    #[test]
    fn offsets_are_roughly_uniform() {
        // 10 000 keys over 10 buckets: each bucket should hold about 1 000.
        let window = Duration::from_secs(100);
        let mut buckets = [0usize; 10];
        for i in 0..10_000 {
            let offset = stable_offset(&format!("host-{i}"), "job", window);
            buckets[(offset.as_secs() / 10) as usize] += 1;
        }
        for count in buckets {
            assert!((850..1150).contains(&count), "{buckets:?}");
        }
    }
}
