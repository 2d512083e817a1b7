//! Capped exponential retry backoff with jitter, as in the AWS Architecture
//! Blog note "Exponential Backoff And Jitter".

use std::time::Duration;

use crate::DephaseError;
use crate::hash::{from_nanos, scale};

/// How a retry delay is randomised. With `exp = min(cap, base * 2^attempt)`:
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Jitter {
    /// `exp`: no randomness; every client retries in lockstep.
    None,
    /// `random(0, exp)`.
    Full,
    /// `exp / 2 + random(0, exp / 2)`.
    Equal,
    /// `min(cap, random(base, previous * 3))`, where `previous` is the last
    /// delay (the base before the first retry); ignores `attempt`.
    Decorrelated,
}

/// A capped exponential backoff policy. It holds no state; [`Backoff::retries`]
/// starts the state of one operation's retries.
///
/// Randomness is passed in as a closure returning numbers in `[0, 1)` (values
/// outside are clamped), so tests can be deterministic and the crate needs no
/// random number generator.
///
/// ```
/// use std::time::Duration;
/// use coherd_dephase::{Backoff, Jitter};
///
/// let policy = Backoff::new(Duration::from_millis(100), Duration::from_secs(5), Jitter::Full)?
///     .with_max_retries(3);
/// let mut random = || 0.5; // a real caller passes an RNG, e.g. `|| rng.f64()`
/// let mut retries = policy.retries();
/// assert_eq!(retries.next_delay(&mut random), Some(Duration::from_millis(50)));
/// assert_eq!(retries.next_delay(&mut random), Some(Duration::from_millis(100)));
/// assert_eq!(retries.next_delay(&mut random), Some(Duration::from_millis(200)));
/// assert_eq!(retries.next_delay(&mut random), None); // three retries used up
/// # Ok::<(), coherd_dephase::DephaseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    jitter: Jitter,
    max_retries: Option<u32>,
}

impl Backoff {
    /// A policy starting at `base`, doubling per attempt, never above `cap`,
    /// with unlimited retries (see [`Backoff::with_max_retries`]).
    ///
    /// # Errors
    ///
    /// [`DephaseError::BaseAboveCap`] when `base > cap`.
    pub fn new(base: Duration, cap: Duration, jitter: Jitter) -> Result<Self, DephaseError> {
        if base > cap {
            return Err(DephaseError::BaseAboveCap { base, cap });
        }
        Ok(Self {
            base,
            cap,
            jitter,
            max_retries: None,
        })
    }

    /// Allows at most `max_retries` retries per operation.
    #[must_use]
    pub fn with_max_retries(self, max_retries: u32) -> Self {
        Self {
            max_retries: Some(max_retries),
            ..self
        }
    }

    /// The jitter of this policy.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The delay before retry number `attempt` (0 for the first retry), given
    /// the `previous` delay (only [`Jitter::Decorrelated`] uses it) and a random
    /// number `random` in `[0, 1)`. Never above the cap.
    pub fn delay(&self, attempt: u32, previous: Duration, random: f64) -> Duration {
        let u = clamp_unit(random);
        let exp = self.exponential(attempt);
        match self.jitter {
            Jitter::None => exp,
            Jitter::Full => between(Duration::ZERO, exp, u),
            Jitter::Equal => {
                let half = exp / 2;
                half + between(Duration::ZERO, exp - half, u)
            }
            Jitter::Decorrelated => {
                let high = previous.max(self.base).saturating_mul(3);
                between(self.base, high, u).min(self.cap)
            }
        }
    }

    /// Starts the retries of one operation.
    pub fn retries(&self) -> Retries {
        Retries {
            policy: *self,
            attempt: 0,
            previous: self.base,
        }
    }

    /// `min(cap, base * 2^attempt)`, without overflow.
    fn exponential(&self, attempt: u32) -> Duration {
        if attempt >= 64 {
            return self.cap;
        }
        let grown = self.base.as_nanos().saturating_mul(1u128 << attempt);
        from_nanos(grown.min(self.cap.as_nanos()))
    }
}

/// The retries of one operation under a [`Backoff`] policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retries {
    policy: Backoff,
    attempt: u32,
    previous: Duration,
}

impl Retries {
    /// The delay to wait before the next retry, or `None` when the policy's
    /// retries are used up. `random` returns numbers in `[0, 1)`.
    pub fn next_delay(&mut self, random: &mut impl FnMut() -> f64) -> Option<Duration> {
        if self
            .policy
            .max_retries
            .is_some_and(|max| self.attempt >= max)
        {
            return None;
        }
        let delay = self.policy.delay(self.attempt, self.previous, random());
        self.attempt = self.attempt.saturating_add(1);
        self.previous = delay;
        Some(delay)
    }

    /// How many retries have been handed out so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// `low + u * (high - low)`, for `u` in `[0, 1)`, rounded down to the
/// nanosecond and always below `high` (or `low` when `high <= low`).
fn between(low: Duration, high: Duration, u: f64) -> Duration {
    // u in [0, 1) as a 64-bit fraction; the float-to-int cast saturates.
    let fraction = (u * 18_446_744_073_709_551_616.0) as u64;
    low + scale(fraction, high.saturating_sub(low))
}

/// Clamps a random number to `[0, 1)`; NaN becomes 0.
fn clamp_unit(random: f64) -> f64 {
    if random.is_nan() || random < 0.0 {
        0.0
    } else {
        random.min(1.0 - f64::EPSILON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy(jitter: Jitter) -> Backoff {
        Backoff::new(ms(100), ms(1000), jitter).expect("base below cap")
    }

    #[test]
    fn none_doubles_up_to_the_cap() {
        let mut retries = policy(Jitter::None).retries();
        let delays: Vec<_> = (0..6)
            .map_while(|_| retries.next_delay(&mut || 0.9))
            .collect();
        assert_eq!(
            delays,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
    }

    #[test]
    fn full_and_equal_use_the_random_number() {
        assert_eq!(policy(Jitter::Full).delay(2, ms(0), 0.0), ms(0));
        assert_eq!(policy(Jitter::Full).delay(2, ms(0), 0.5), ms(200));
        assert_eq!(policy(Jitter::Equal).delay(2, ms(0), 0.0), ms(200));
        assert_eq!(policy(Jitter::Equal).delay(2, ms(0), 0.5), ms(300));
    }

    #[test]
    fn decorrelated_grows_from_the_previous_delay() {
        let p = policy(Jitter::Decorrelated);
        assert_eq!(p.delay(0, ms(100), 0.0), ms(100));
        assert_eq!(p.delay(0, ms(100), 0.5), ms(200));
        assert_eq!(p.delay(5, ms(300), 0.5), ms(500));
        assert_eq!(p.delay(5, ms(900), 0.9), ms(1000));
    }

    #[test]
    fn out_of_range_random_numbers_are_clamped() {
        let p = policy(Jitter::Full);
        assert_eq!(p.delay(0, ms(0), f64::NAN), ms(0));
        assert_eq!(p.delay(0, ms(0), -3.0), ms(0));
        assert!(p.delay(0, ms(0), 7.0) < ms(100));
    }

    #[test]
    fn huge_attempts_do_not_overflow() {
        assert_eq!(policy(Jitter::None).delay(u32::MAX, ms(0), 0.0), ms(1000));
        let big = Backoff::new(Duration::MAX, Duration::MAX, Jitter::Decorrelated).expect("equal");
        assert_eq!(big.delay(3, Duration::MAX, 0.99), Duration::MAX);
    }

    #[test]
    fn base_above_cap_is_refused() {
        assert!(Backoff::new(ms(2), ms(1), Jitter::None).is_err());
    }

    proptest! {
        #[test]
        fn delays_stay_within_base_and_cap(
            jitter in prop_oneof![
                Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::Decorrelated)
            ],
            base_ms in 0u64..10_000,
            extra_ms in 0u64..100_000,
            seed in any::<u64>(),
        ) {
            let p = Backoff::new(ms(base_ms), ms(base_ms + extra_ms), jitter)
                .expect("base below cap")
                .with_max_retries(20);
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut retries = p.retries();
            let mut n = 0;
            while let Some(delay) = retries.next_delay(&mut || rng.f64()) {
                prop_assert!(delay <= ms(base_ms + extra_ms));
                if jitter == Jitter::Decorrelated || jitter == Jitter::None {
                    prop_assert!(delay >= ms(base_ms));
                }
                n += 1;
            }
            prop_assert_eq!(n, 20);
        }
    }
}
