//! Measures of synchrony over event start times folded onto a period.

use std::f64::consts::TAU;
use std::time::Duration;

use crate::DephaseError;

/// The phase of `time` in `period`: `(time mod period) / period`, in `[0, 1)`.
/// Times are durations since any fixed epoch (for wall-clock times, the Unix
/// epoch, so that slot 0 of an hourly period starts at the top of the hour).
///
/// # Errors
///
/// [`DephaseError::ZeroPeriod`] when `period` is zero.
pub fn phase(time: Duration, period: Duration) -> Result<f64, DephaseError> {
    let period = period.as_nanos();
    if period == 0 {
        return Err(DephaseError::ZeroPeriod);
    }
    Ok((time.as_nanos() % period) as f64 / period as f64)
}

/// The Kuramoto order parameter `R = |mean(exp(i * 2 * pi * t / period))|` of
/// event start times: 1 when every event starts at the same phase, near 0
/// when they are spread evenly over the period.
///
/// ```
/// use std::time::Duration;
/// use coherd_dephase::order_parameter;
///
/// let hour = Duration::from_secs(3600);
/// let on_the_hour = (0..10).map(|day| Duration::from_secs(day * 86_400));
/// assert!((order_parameter(on_the_hour, hour)? - 1.0).abs() < 1e-9);
/// let every_six_minutes = (0..10).map(|i| Duration::from_secs(i * 360));
/// assert!(order_parameter(every_six_minutes, hour)? < 1e-9);
/// # Ok::<(), coherd_dephase::DephaseError>(())
/// ```
///
/// # Errors
///
/// [`DephaseError::ZeroPeriod`] for a zero period, [`DephaseError::NoEvents`]
/// when there are no times.
pub fn order_parameter(
    starts: impl IntoIterator<Item = Duration>,
    period: Duration,
) -> Result<f64, DephaseError> {
    let (mut cos, mut sin, mut n) = (0.0, 0.0, 0usize);
    for start in starts {
        let angle = TAU * phase(start, period)?;
        cos += angle.cos();
        sin += angle.sin();
        n += 1;
    }
    if period.is_zero() {
        return Err(DephaseError::ZeroPeriod);
    }
    if n == 0 {
        return Err(DephaseError::NoEvents);
    }
    Ok((cos.hypot(sin) / n as f64).min(1.0))
}

/// Counts of event starts per slot of the period: the period is cut into
/// `slots` equal slots and slot `k` counts the starts whose phase is in
/// `[k / slots, (k + 1) / slots)`.
///
/// # Errors
///
/// [`DephaseError::ZeroPeriod`] for a zero period, [`DephaseError::ZeroSlots`]
/// when `slots` is zero.
pub fn histogram(
    starts: impl IntoIterator<Item = Duration>,
    period: Duration,
    slots: usize,
) -> Result<Vec<usize>, DephaseError> {
    let p = period.as_nanos();
    if p == 0 {
        return Err(DephaseError::ZeroPeriod);
    }
    if slots == 0 {
        return Err(DephaseError::ZeroSlots);
    }
    let mut counts = vec![0; slots];
    for start in starts {
        let within = start.as_nanos() % p;
        // within < p and slots fits in 64 bits, so the product cannot overflow
        // for periods up to about 10^19 seconds; saturate beyond that.
        let slot = within.saturating_mul(slots as u128) / p;
        counts[(slot as usize).min(slots - 1)] += 1;
    }
    Ok(counts)
}

/// The peak-to-mean ratio of slot counts: the fullest slot over the average
/// slot. 1 for a perfectly flat histogram, `slots` when everything lands in one
/// slot; `None` when there are no slots or no counts.
///
/// ```
/// use coherd_dephase::peak_to_mean;
///
/// assert_eq!(peak_to_mean(&[2, 2, 2, 2]), Some(1.0));
/// assert_eq!(peak_to_mean(&[8, 0, 0, 0]), Some(4.0));
/// assert_eq!(peak_to_mean(&[0, 0]), None);
/// ```
pub fn peak_to_mean(counts: &[usize]) -> Option<f64> {
    let total: usize = counts.iter().sum();
    let peak = counts.iter().copied().max()?;
    if total == 0 {
        return None;
    }
    Some(peak as f64 * counts.len() as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn phase_folds_onto_the_period() {
        assert_eq!(phase(Duration::from_secs(5400), HOUR), Ok(0.5));
        assert_eq!(
            phase(Duration::ZERO, Duration::ZERO),
            Err(DephaseError::ZeroPeriod)
        );
    }

    #[test]
    fn order_parameter_needs_events_and_a_period() {
        assert_eq!(order_parameter([], HOUR), Err(DephaseError::NoEvents));
        assert_eq!(
            order_parameter([], Duration::ZERO),
            Err(DephaseError::ZeroPeriod)
        );
    }

    #[test]
    fn two_events_half_a_period_apart_cancel() {
        let r = order_parameter([Duration::ZERO, HOUR / 2], HOUR).expect("events");
        assert!(r < 1e-12, "{r}");
    }

    #[test]
    fn histogram_counts_per_slot() {
        let starts = [0, 59, 60, 3599, 3600].map(Duration::from_secs);
        let counts = histogram(starts, HOUR, 60).expect("valid");
        assert_eq!(counts[0], 3); // 0, 59 and 3600 (folded to 0)
        assert_eq!(counts[1], 1);
        assert_eq!(counts[59], 1);
        assert_eq!(counts.iter().sum::<usize>(), 5);
        assert_eq!(histogram([], HOUR, 0), Err(DephaseError::ZeroSlots));
    }

    proptest! {
        #[test]
        fn aligned_events_have_r_near_one(
            cycles in proptest::collection::vec(0u64..100_000, 1..200),
            phase_s in 0u64..3600,
            jitter_ms in proptest::collection::vec(0u64..1000, 200),
        ) {
            // Every event at the same phase of the hour, plus up to a second of noise.
            let starts = cycles.iter().zip(&jitter_ms).map(|(c, j)| {
                Duration::from_secs(c * 3600 + phase_s) + Duration::from_millis(*j)
            });
            let r = order_parameter(starts, HOUR).expect("events");
            prop_assert!(r > 0.99, "{}", r);
        }

        #[test]
        fn evenly_spread_events_have_r_below_a_tenth(
            n in 2usize..500,
            offset_ms in 0u64..3_600_000,
            cycles in proptest::collection::vec(0u64..1000, 500),
        ) {
            // n events evenly spaced over the hour, each in an arbitrary cycle.
            let starts = (0..n).map(|i| {
                Duration::from_millis(offset_ms) + HOUR * i as u32 / n as u32
                    + HOUR * cycles[i] as u32
            });
            let r = order_parameter(starts, HOUR).expect("events");
            prop_assert!(r < 0.1, "{}", r);
        }

        #[test]
        fn histogram_keeps_every_event(
            starts in proptest::collection::vec(0u64..1_000_000, 0..300),
            slots in 1usize..100,
        ) {
            let counts = histogram(starts.iter().map(|&s| Duration::from_secs(s)), HOUR, slots)
                .expect("valid");
            prop_assert_eq!(counts.len(), slots);
            prop_assert_eq!(counts.iter().sum::<usize>(), starts.len());
        }
    }
}
