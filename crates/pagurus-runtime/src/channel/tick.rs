//! The `tick` flavour (`tick(period)`): a message every `period`, the time it was due.
//!
//! As with `at`, readiness is computed from the clock: the channel is one atomic word, the next
//! delivery time (in nanoseconds since the channel was made). A receive that finds it due moves it
//! one period past *now* with a compare-and-swap, so ticks missed by a slow receiver are dropped,
//! not queued (crossbeam's behaviour).

use std::sync::atomic::{AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use super::error::TryRecvError;

pub(crate) struct Channel {
    start: Instant,
    /// The next delivery time, in nanoseconds after `start`.
    next: AtomicU64,
    period: Duration,
}

impl Channel {
    pub(crate) fn new(period: Duration) -> Channel {
        let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        Channel {
            start: Instant::now(),
            next: AtomicU64::new(period_ns),
            period,
        }
    }

    fn at(&self, nanos: u64) -> Instant {
        self.start + Duration::from_nanos(nanos)
    }

    fn since_start(&self, t: Instant) -> u64 {
        u64::try_from(t.duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn try_recv(&self) -> Result<Instant, TryRecvError> {
        let mut next = self.next.load(Acquire);
        loop {
            let now = Instant::now();
            if self.since_start(now) < next {
                return Err(TryRecvError::Empty);
            }
            let following = self
                .since_start(now)
                .saturating_add(u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX));
            match self
                .next
                .compare_exchange_weak(next, following, AcqRel, Acquire)
            {
                Ok(_) => return Ok(self.at(next)),
                Err(actual) => next = actual,
            }
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.since_start(Instant::now()) >= self.next.load(Acquire)
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        Some(self.at(self.next.load(Acquire)))
    }
}
