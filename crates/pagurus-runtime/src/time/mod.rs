//! Time: sleeping that parks only the calling coroutine.
//!
//! A sleeping coroutine is a timer on its worker (an ordered map keyed by deadline, O(log n) per
//! insert and removal) plus a park; the worker wakes it when it passes the deadline on its way
//! through the scheduler loop, or when its poller's timeout (the nearest deadline) expires. A
//! million sleepers cost a million map entries: no OS timer and no thread per sleeper.
//!
//! Outside a coroutine the same functions block the calling thread, like `std::thread::sleep`.
//!
//! [`after`] and [`tick`] are channels whose readiness is computed from the clock (the `at` and
//! `tick` flavours in `channel/`): receiving from them is a `park_until`, and they work as
//! [`select!`](crate::select!) arms.

use std::time::{Duration, Instant};

pub use crate::channel::{after, tick};

use crate::sched::park::{self, Parked, raise_cancelled};

/// Puts the calling coroutine to sleep for at least `dur`; its worker runs other coroutines
/// meanwhile. On a plain thread, sleeps the thread.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use std::time::{Duration, Instant};
/// pagurus::run(|| {
///     let start = Instant::now();
///     pagurus::time::sleep(Duration::from_millis(5));
///     assert!(start.elapsed() >= Duration::from_millis(5));
/// });
/// ```
pub fn sleep(dur: Duration) {
    let now = Instant::now();
    match now.checked_add(dur) {
        Some(deadline) => {
            if park::sleep_from(now, deadline) == Parked::Cancelled {
                raise_cancelled();
            }
        }
        // Further away than `Instant` can say: forever, for any purpose.
        None => loop {
            sleep_until(Instant::now() + Duration::from_secs(86_400 * 365));
        },
    }
}

/// Puts the calling coroutine (or thread) to sleep until `deadline`.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use std::time::{Duration, Instant};
/// pagurus::run(|| {
///     let deadline = Instant::now() + Duration::from_millis(3);
///     pagurus::time::sleep_until(deadline);
///     assert!(Instant::now() >= deadline);
/// });
/// ```
///
/// # Panics
///
/// Unwinds with [`Cancelled`](crate::Cancelled) when the coroutine's runtime is dropped while
/// it sleeps.
pub fn sleep_until(deadline: Instant) {
    if park::sleep_until(deadline) == Parked::Cancelled {
        raise_cancelled();
    }
}
