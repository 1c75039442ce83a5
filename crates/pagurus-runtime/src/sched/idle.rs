//! The handshake between a worker about to block in its poller and the threads that send it
//! messages, such that no wake-up is lost. `worker.rs` uses it with the worker's inbox and its
//! `mio::Poll`/`mio::Waker`; the loom model at the bottom of this file uses it with a loom queue
//! and a loom condition variable standing in for the poller (`cfg(loom)`, see design.md).
//!
//! The worker stores `polling = true`, then (SeqCst fence) looks at its inbox and blocks only if
//! it is empty; a sender pushes its message, then (SeqCst fence) looks at `polling`. The fences
//! order the two store-then-load pairs, so at least one side sees the other's store: either the
//! worker finds the message and does not block, or the sender sees `polling` and fires the waker,
//! which makes the block return (an eventfd stays readable until read, so a wake that lands
//! before the worker blocks is not lost either). Of several senders, only the one that swaps
//! `polling` back to `false` fires the waker: a burst of sends costs one wake-up.

use crate::loom::{AtomicBool, Ordering::*, fence};

/// A worker's "I am (about to be) blocked in my poller" flag.
pub(crate) struct PollGate {
    polling: AtomicBool,
}

impl PollGate {
    pub(crate) fn new() -> PollGate {
        PollGate {
            polling: AtomicBool::new(false),
        }
    }

    /// The worker's side: runs `block` (the wait in the poller, which a fired waker ends) unless
    /// `inbox_empty` says a message is already there.
    #[inline]
    pub(crate) fn wait(&self, inbox_empty: impl FnOnce() -> bool, block: impl FnOnce()) {
        // Swaps, not stores: loom orders plain stores that race with the senders' swaps too
        // loosely (it then reports lost wake-ups that C11 rules out), and this is the path to a
        // system call anyway.
        self.polling.swap(true, SeqCst);
        fence(SeqCst);
        if inbox_empty() {
            block();
        }
        self.polling.swap(false, Relaxed);
    }

    /// The sender's side, after it pushed its message: whether it must fire the worker's waker.
    #[inline]
    pub(crate) fn must_wake(&self) -> bool {
        fence(SeqCst);
        self.polling.load(Relaxed) && self.polling.swap(false, AcqRel)
    }
}

#[cfg(all(test, loom))]
mod loom_models;
