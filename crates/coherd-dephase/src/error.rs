//! The one error type of this crate.

use std::time::Duration;

/// Why a dephasing computation could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DephaseError {
    /// The same member was listed twice in a membership given to [`spread`](crate::spread).
    #[error("member `{member}` is listed more than once")]
    DuplicateMember {
        /// The member id that appears twice.
        member: String,
    },
    /// A window longer than the supported maximum (`u64::MAX` nanoseconds, about 584 years).
    #[error("window {window:?} is longer than the supported maximum of about 584 years")]
    WindowTooLong {
        /// The window that was given.
        window: Duration,
    },
    /// A period of zero was given where phases need a positive period.
    #[error("the period must be longer than zero")]
    ZeroPeriod,
    /// A histogram was asked for with zero slots.
    #[error("the number of slots must be at least one")]
    ZeroSlots,
    /// A measure was asked for over no events at all.
    #[error("there are no events to measure")]
    NoEvents,
    /// A backoff whose base delay is longer than its cap.
    #[error("backoff base {base:?} is longer than its cap {cap:?}")]
    BaseAboveCap {
        /// The base (first) delay.
        base: Duration,
        /// The cap on any delay.
        cap: Duration,
    },
}
