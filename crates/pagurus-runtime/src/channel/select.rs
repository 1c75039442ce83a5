//! Selection: the one waiting loop behind `recv`, `send`, their timeouts and `select!`.
//!
//! An operation (an *arm*: a receive or a send on one channel) is tried, registered, unregistered
//! and completed through [`Operation`]; [`select`] drives any number of them:
//!
//! 1. **Try** every arm once, in a fresh uniformly random order (a Fisher-Yates shuffle with the
//!    thread's xorshift), and complete the first that can complete now. Trying in random order
//!    is what makes the choice among ready arms uniform.
//! 2. Nothing ready: give up if the caller said so (`default`, a passed deadline); else take a
//!    [`Waiter`] and **register** it with each arm, in the same order. Registering checks,
//!    under the channel's lock, that the arm is still not ready; if one is (something arrived
//!    since step 1), stop, abort this round and start again at step 1.
//! 3. **Park** until the waiter is selected, the deadline passes (the caller's, or the nearest
//!    `after`/`tick` arm's), or the runtime cancels the coroutine. Spurious wake-ups re-check.
//! 4. Selected for arm *k*: **unregister** every other arm (send values come back), then
//!    **complete** arm *k* (collect the value handed to it, or learn of a disconnection).
//!    Given up (aborted): unregister every arm, then retry (an `after`/`tick` deadline), report
//!    the timeout, or unwind with `Cancelled`.
//!
//! The caller's stack holds only the arms and the array of references to them, and is never
//! reachable from a channel: the channels see the heap `Waiter` and the moved values.
//!
//! # Cancellation
//!
//! When the park reports [`Parked::Cancelled`], the waiter tries to abort. If it succeeds, no
//! counterpart can select it any more; it unregisters everywhere (a blocked send takes its value
//! back, to be dropped by the unwind) and raises `Cancelled`. If the abort fails, a counterpart
//! selected it first and already moved a value: the operation is completed normally (the
//! received value is returned to the caller, the send counts as done) and the cancellation is
//! deferred with [`defer_cancel`], so the coroutine unwinds at its next park. Putting a received
//! value back instead is not always possible (a rendezvous channel has no buffer to put it in),
//! so the value is never lost and never delivered twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::waiter::{
    State, Waiter, defer_cancellation, random_below, wait_for_deferred_cancellation,
};
use crate::sched::park::{Parked, WaitReason, park, park_until, raise_cancelled};

/// One arm of a selection. Each method locks at most one channel, briefly.
pub(crate) trait Operation {
    /// Completes the operation if it can complete without waiting.
    fn try_now(&mut self) -> bool;
    /// Registers operation `op` of `waiter`, unless the operation is ready now (then returns
    /// `false` and registers nothing).
    fn register(&mut self, waiter: &Arc<Waiter>, op: usize) -> bool;
    /// Undoes a registration that was not selected.
    fn unregister(&mut self, waiter: &Arc<Waiter>, op: usize);
    /// Completes a registration that was selected.
    fn complete(&mut self, waiter: &Arc<Waiter>, op: usize);
    /// When the arm becomes ready by itself (time flavours).
    fn deadline(&self) -> Option<Instant>;
}

/// An arm and its index, as `select` sees it (built by the `select!` macro).
pub struct Arm<'a> {
    pub(crate) index: usize,
    pub(crate) op: &'a mut (dyn Operation + 'a),
}

/// How long a selection may wait.
#[derive(Clone, Copy, Debug)]
pub enum Timeout {
    /// Not at all (`default =>`).
    Now,
    /// Until an arm completes.
    Never,
    /// Until this instant (`default(dur) =>`, `*_timeout`).
    At(Instant),
}

impl Timeout {
    /// A timeout `dur` from now (`Never` if that is beyond what `Instant` can say).
    pub fn after(dur: Duration) -> Timeout {
        Instant::now()
            .checked_add(dur)
            .map_or(Timeout::Never, Timeout::At)
    }
}

/// Why a round ended without a selection.
pub(super) enum GaveUp {
    /// An arm became ready (or a time arm's deadline passed): try again.
    Retry,
    TimedOut,
    Cancelled,
}

pub(super) enum Outcome {
    Selected { op: usize, cancelled: bool },
    GaveUp(GaveUp),
}

/// Completes one of `arms` and returns its index, or `None` when the timeout passed first.
///
/// # Panics
///
/// Unwinds with `Cancelled` when the runtime cancels the waiting coroutine (see the module
/// docs).
pub fn select(arms: &mut [Arm<'_>], timeout: Timeout) -> Option<usize> {
    loop {
        shuffle(arms);
        for arm in arms.iter_mut() {
            if arm.op.try_now() {
                return Some(arm.index);
            }
        }
        let deadline = match timeout {
            Timeout::Now => return None,
            Timeout::Never => None,
            Timeout::At(d) if Instant::now() >= d => return None,
            Timeout::At(d) => Some(d),
        };
        wait_for_deferred_cancellation();
        let waiter = Waiter::prepare();
        let mut registered = 0;
        let mut ready = false;
        for arm in arms.iter_mut() {
            if !arm.op.register(&waiter, arm.index) {
                ready = true;
                break;
            }
            registered += 1;
        }
        let outcome = if ready {
            match waiter.try_abort() {
                Ok(()) => Outcome::GaveUp(GaveUp::Retry),
                Err(op) => Outcome::Selected {
                    op,
                    cancelled: false,
                },
            }
        } else {
            let wake_at = arms
                .iter()
                .filter_map(|a| a.op.deadline())
                .chain(deadline)
                .min();
            wait(&waiter, wake_at, deadline)
        };
        let (arms_done, rest) = arms.split_at_mut(registered);
        match outcome {
            Outcome::Selected { op, cancelled } => {
                let mut chosen = None;
                for arm in arms_done {
                    if arm.index == op {
                        chosen = Some(arm);
                    } else {
                        arm.op.unregister(&waiter, arm.index);
                    }
                }
                let _ = rest;
                chosen
                    .expect("the selected arm was registered")
                    .op
                    .complete(&waiter, op);
                Waiter::release(waiter);
                if cancelled {
                    defer_cancellation();
                }
                return Some(op);
            }
            Outcome::GaveUp(why) => {
                for arm in arms_done {
                    arm.op.unregister(&waiter, arm.index);
                }
                Waiter::release(waiter);
                match why {
                    GaveUp::Retry => continue,
                    GaveUp::TimedOut => return None,
                    GaveUp::Cancelled => raise_cancelled(),
                }
            }
        }
    }
}

/// Parks until `waiter` is selected or the round must end (step 3).
pub(super) fn wait(
    waiter: &Arc<Waiter>,
    wake_at: Option<Instant>,
    deadline: Option<Instant>,
) -> Outcome {
    loop {
        match waiter.state() {
            State::Selected(op) => {
                return Outcome::Selected {
                    op,
                    cancelled: false,
                };
            }
            State::Aborted => unreachable!("only the waiter aborts itself"),
            State::Waiting => {}
        }
        let parked = match wake_at {
            Some(t) => {
                let now = Instant::now();
                if now >= t {
                    let why = if deadline.is_some_and(|d| now >= d) {
                        GaveUp::TimedOut
                    } else {
                        GaveUp::Retry
                    };
                    return match waiter.try_abort() {
                        Ok(()) => Outcome::GaveUp(why),
                        Err(op) => Outcome::Selected {
                            op,
                            cancelled: false,
                        },
                    };
                }
                park_until(t, WaitReason::Channel)
            }
            None => park(WaitReason::Channel),
        };
        if parked == Parked::Cancelled {
            return match waiter.try_abort() {
                Ok(()) => Outcome::GaveUp(GaveUp::Cancelled),
                Err(op) => Outcome::Selected {
                    op,
                    cancelled: true,
                },
            };
        }
    }
}

/// A uniformly random permutation (Fisher-Yates).
fn shuffle(arms: &mut [Arm<'_>]) {
    for i in (1..arms.len()).rev() {
        arms.swap(i, random_below(i + 1));
    }
}
