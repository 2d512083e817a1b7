//! A retry budget: a token bucket that caps retries at a share of requests.

/// Tokens are counted in thousandths so that deposits of a fraction of a token
/// add up exactly.
const MILLI: u64 = 1000;

/// A token-bucket retry budget: every request deposits `ratio` tokens (up to
/// `burst` tokens in the bucket) and every retry takes one whole token. Over
/// time retries are limited to `ratio` times the requests, so a failing
/// dependency sees at most `1 + ratio` times its normal load instead of a retry
/// storm. The bucket starts full.
///
/// ```
/// use coherd_dephase::RetryBudget;
///
/// let mut budget = RetryBudget::new(0.1, 2); // 10% retries, bursts of 2
/// assert!(budget.try_retry());
/// assert!(budget.try_retry());
/// assert!(!budget.try_retry()); // bucket empty
/// for _ in 0..10 {
///     budget.on_request();
/// }
/// assert!(budget.try_retry()); // ten requests earned one retry
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryBudget {
    tokens: u64,
    capacity: u64,
    deposit: u64,
}

impl RetryBudget {
    /// A full budget allowing `ratio` retries per request on average and at
    /// most `burst` retries in a row. `ratio` is clamped to `[0, 1000]`, NaN to 0.
    pub fn new(ratio: f64, burst: u32) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1000.0)
        };
        let capacity = u64::from(burst) * MILLI;
        Self {
            tokens: capacity,
            capacity,
            // At most 10^6, so the cast is exact.
            deposit: (ratio * MILLI as f64).round() as u64,
        }
    }

    /// Records one ordinary request (first attempt), earning `ratio` tokens.
    pub fn on_request(&mut self) {
        self.tokens = (self.tokens + self.deposit).min(self.capacity);
    }

    /// Takes one token for a retry if there is one; `false` means do not retry.
    pub fn try_retry(&mut self) -> bool {
        match self.tokens.checked_sub(MILLI) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }

    /// The tokens in the bucket now.
    pub fn tokens(&self) -> f64 {
        self.tokens as f64 / MILLI as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_limited_to_the_ratio_over_time() {
        let mut budget = RetryBudget::new(0.2, 5);
        let mut retries = 0;
        for _ in 0..1000 {
            budget.on_request();
            // Every request fails and wants to retry.
            if budget.try_retry() {
                retries += 1;
            }
        }
        // 5 from the initial burst, then one per five requests.
        assert!((200..=205).contains(&retries), "{retries}");
    }

    #[test]
    fn bucket_never_exceeds_the_burst() {
        let mut budget = RetryBudget::new(1.0, 3);
        for _ in 0..100 {
            budget.on_request();
        }
        assert_eq!(budget.tokens(), 3.0);
    }

    #[test]
    fn zero_burst_never_retries() {
        let mut budget = RetryBudget::new(f64::NAN, 0);
        budget.on_request();
        assert!(!budget.try_retry());
    }
}
