//! The `at` flavour (`after(dur)`, `at(instant)`): one message, the deadline itself, receivable
//! from the deadline on.
//!
//! Readiness is computed from the clock, as crossbeam's `at` flavour does: no thread, no OS timer
//! and no wait queue. A receiver that must wait parks until the deadline (a timer on its worker,
//! `park_until`); `select!` parks until the nearest deadline of its arms and looks again.

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::time::Instant;

use super::error::TryRecvError;

pub(crate) struct Channel {
    delivery_time: Instant,
    /// Set by the one receive that gets the message.
    received: AtomicBool,
}

impl Channel {
    pub(crate) fn new(delivery_time: Instant) -> Channel {
        Channel {
            delivery_time,
            received: AtomicBool::new(false),
        }
    }

    pub(crate) fn try_recv(&self) -> Result<Instant, TryRecvError> {
        if self.received.load(Relaxed) || Instant::now() < self.delivery_time {
            return Err(TryRecvError::Empty);
        }
        if self.received.swap(true, AcqRel) {
            Err(TryRecvError::Empty)
        } else {
            Ok(self.delivery_time)
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        !self.received.load(Acquire) && Instant::now() >= self.delivery_time
    }

    /// When the message becomes receivable; `None` once it was received (never again).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        (!self.received.load(Acquire)).then_some(self.delivery_time)
    }
}
