//! The queue flavour: every `bounded(cap)` (including the rendezvous `bounded(0)`) and
//! `unbounded()` channel.
//!
//! One lock guards the whole state: the buffer and both wait queues, like Go's `hchan`. The three
//! capacities differ only in when the buffer counts as full (never, at `cap`, always), so they
//! share this one implementation instead of one file each as in crossbeam (whose flavours differ
//! because each is lock-free in its own way).
//!
//! # Rules of the state
//!
//! - A *live* entry is one whose waiter is still `WAITING` (see `waiter.rs`); other entries are
//!   stale. A waiter removes its own entries when it is done (`unregister_*`, `complete_*`). A
//!   stale send entry holds its waiter's value, so only that waiter may remove it; a stale
//!   receive entry holds nothing, and a sender passing by drops it.
//! - A receiver registers only when nothing is receivable, a sender only when nothing can take
//!   its value; both checks and the registration happen in one critical section, so a later
//!   counterpart always finds the entry. So: live receivers imply an empty buffer, live senders
//!   imply a full one.
//! - Selecting a waiter (`Waiter::try_select`) and completing its operation happen in one
//!   critical section: a selected sender's value is taken out of its entry, a selected
//!   receiver's value is left in `handoffs` under its waiter's id. The waiter, seeing itself
//!   selected, takes the lock and collects (`complete_*`); the lock orders it after the handoff.
//! - The only other way to select a waiter is disconnection (`disconnect_*`, which sets the
//!   `*_gone` flag in the same critical section): the entry stays, no handoff is made, and the
//!   waiter learns the outcome by finding its own entry still queued.
//! - Waiters are unparked after the lock is released.
//!
//! Values are moved, never dropped, under the lock: dropping a `T` runs user code.

use std::collections::VecDeque;
#[cfg(not(loom))]
use std::time::Instant;

use crate::loom::{Arc, AtomicUsize, Mutex, MutexGuard};

use super::error::{TryRecvError, TrySendError};
use super::waiter::Waiter;
#[cfg(not(loom))]
use {
    super::error::{RecvTimeoutError, SendTimeoutError},
    super::select::{GaveUp, Outcome, Timeout, wait},
    super::waiter::{
        defer_cancellation, deferred_cancellation_owed, wait_for_deferred_cancellation,
    },
    crate::sched::park::raise_cancelled,
};

/// A channel of the queue flavour, shared by its senders and receivers.
pub(crate) struct Channel<T> {
    inner: Mutex<Inner<T>>,
    /// `usize::MAX` for unbounded.
    cap: usize,
    /// Live `Sender`s and `Receiver`s; the last one of a side to drop disconnects it.
    pub(crate) senders: AtomicUsize,
    pub(crate) receivers: AtomicUsize,
}

struct Inner<T> {
    buf: VecDeque<T>,
    /// Blocked senders, oldest first, each with the value it offers.
    senders: VecDeque<SendEntry<T>>,
    /// Blocked receivers, oldest first.
    receivers: VecDeque<Entry>,
    /// Values handed to selected receivers that have not collected them yet.
    handoffs: Vec<Handoff<T>>,
    senders_gone: bool,
    receivers_gone: bool,
}

/// Operation `op` of `waiter` waits in this channel.
struct Entry {
    waiter: Arc<Waiter>,
    op: usize,
}

impl Entry {
    fn is(&self, waiter: &Arc<Waiter>, op: usize) -> bool {
        self.op == op && Arc::ptr_eq(&self.waiter, waiter)
    }

    /// Whether a counterpart other than `me` could complete with this entry now.
    fn is_live_other(&self, me: &Arc<Waiter>) -> bool {
        !Arc::ptr_eq(&self.waiter, me) && self.waiter.is_waiting()
    }
}

struct SendEntry<T> {
    entry: Entry,
    value: T,
}

/// A value for the receiver `op` of the waiter whose id is `waiter`.
struct Handoff<T> {
    waiter: usize,
    op: usize,
    value: T,
}

impl<T> Channel<T> {
    pub(crate) fn new(cap: Option<usize>) -> Channel<T> {
        Channel {
            inner: Mutex::new(Inner {
                buf: VecDeque::with_capacity(cap.unwrap_or(0).min(1024)),
                senders: VecDeque::new(),
                receivers: VecDeque::new(),
                handoffs: Vec::new(),
                senders_gone: false,
                receivers_gone: false,
            }),
            cap: cap.unwrap_or(usize::MAX),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // No user code runs under the lock (values are only moved), so a panic cannot leave the
        // state half-changed; poisoning carries no information.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let woken = self.lock().send(value, self.cap)?;
        if let Some(waiter) = woken {
            waiter.unpark();
        }
        Ok(())
    }

    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        let (value, woken) = self.lock().recv()?;
        if let Some(waiter) = woken {
            waiter.unpark();
        }
        Ok(value)
    }

    /// A blocking `send` (`send`, `send_timeout`, `send_deadline`): one arm, so the try and the
    /// registration share one critical section, and a send that a receiver completes needs no
    /// lock after the park (see [`complete_send`](Channel::complete_send)). The protocol is
    /// `select`'s (`select.rs`) for one arm.
    #[cfg(not(loom))]
    pub(crate) fn send_blocking(
        &self,
        mut value: T,
        timeout: Timeout,
    ) -> Result<(), SendTimeoutError<T>> {
        let mut checked_deferred = false;
        let (waiter, deadline) = loop {
            let mut g = self.lock();
            value = match g.send(value, self.cap) {
                Ok(woken) => {
                    drop(g);
                    if let Some(waiter) = woken {
                        waiter.unpark();
                    }
                    return Ok(());
                }
                Err(TrySendError::Disconnected(v)) => {
                    return Err(SendTimeoutError::Disconnected(v));
                }
                Err(TrySendError::Full(v)) => v,
            };
            let Some(deadline) = still_waiting(timeout) else {
                return Err(SendTimeoutError::Timeout(value));
            };
            if deferred_check_due(&mut checked_deferred) {
                drop(g);
                wait_for_deferred_cancellation();
                continue;
            }
            let waiter = Waiter::prepare();
            g.senders.push_back(SendEntry {
                entry: Entry {
                    waiter: waiter.clone(),
                    op: 0,
                },
                value,
            });
            break (waiter, deadline);
        };
        let result = match wait(&waiter, deadline, deadline) {
            Outcome::Selected { op, cancelled } => {
                let result = self.complete_send(&waiter, op);
                if cancelled {
                    defer_cancellation();
                }
                result.map_err(SendTimeoutError::Disconnected)
            }
            Outcome::GaveUp(why) => {
                let value = self.unregister_send(&waiter, 0);
                match why {
                    GaveUp::Cancelled => {
                        Waiter::release(waiter);
                        drop(value);
                        raise_cancelled();
                    }
                    // `wait` retries only for time arms, and a single send has none.
                    GaveUp::TimedOut | GaveUp::Retry => Err(SendTimeoutError::Timeout(value)),
                }
            }
        };
        Waiter::release(waiter);
        result
    }

    /// A blocking `recv` (`recv`, `recv_timeout`, `recv_deadline`), like
    /// [`send_blocking`](Channel::send_blocking).
    #[cfg(not(loom))]
    pub(crate) fn recv_blocking(&self, timeout: Timeout) -> Result<T, RecvTimeoutError> {
        let mut checked_deferred = false;
        let (waiter, deadline) = loop {
            let mut g = self.lock();
            match g.recv() {
                Ok((value, woken)) => {
                    drop(g);
                    if let Some(waiter) = woken {
                        waiter.unpark();
                    }
                    return Ok(value);
                }
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            let Some(deadline) = still_waiting(timeout) else {
                return Err(RecvTimeoutError::Timeout);
            };
            if deferred_check_due(&mut checked_deferred) {
                drop(g);
                wait_for_deferred_cancellation();
                continue;
            }
            let waiter = Waiter::prepare();
            g.receivers.push_back(Entry {
                waiter: waiter.clone(),
                op: 0,
            });
            break (waiter, deadline);
        };
        let result = match wait(&waiter, deadline, deadline) {
            Outcome::Selected { op, cancelled } => {
                let result = self.complete_recv(&waiter, op);
                if cancelled {
                    defer_cancellation();
                }
                result.map_err(|()| RecvTimeoutError::Disconnected)
            }
            Outcome::GaveUp(why) => {
                self.unregister_recv(&waiter, 0);
                match why {
                    GaveUp::Cancelled => {
                        Waiter::release(waiter);
                        raise_cancelled();
                    }
                    GaveUp::TimedOut | GaveUp::Retry => Err(RecvTimeoutError::Timeout),
                }
            }
        };
        Waiter::release(waiter);
        result
    }

    /// Queues `value` as operation `op` of `waiter`, unless a send could complete now (then the
    /// value comes back in `Err` and nothing was queued).
    pub(crate) fn register_send(&self, waiter: &Arc<Waiter>, op: usize, value: T) -> Result<(), T> {
        let mut g = self.lock();
        let ready = g.receivers_gone
            || g.buf.len() < self.cap
            || g.receivers.iter().any(|e| e.is_live_other(waiter));
        if ready {
            return Err(value);
        }
        g.senders.push_back(SendEntry {
            entry: Entry {
                waiter: waiter.clone(),
                op,
            },
            value,
        });
        Ok(())
    }

    /// Queues operation `op` of `waiter` as a receiver, unless a receive could complete now
    /// (then returns `false` and nothing was queued).
    pub(crate) fn register_recv(&self, waiter: &Arc<Waiter>, op: usize) -> bool {
        let mut g = self.lock();
        let ready = g.senders_gone
            || !g.buf.is_empty()
            || g.senders.iter().any(|e| e.entry.is_live_other(waiter));
        if ready {
            return false;
        }
        g.receivers.push_back(Entry {
            waiter: waiter.clone(),
            op,
        });
        true
    }

    /// Removes the entry of a send that was not selected; returns its value.
    pub(crate) fn unregister_send(&self, waiter: &Arc<Waiter>, op: usize) -> T {
        let mut g = self.lock();
        let i = g
            .senders
            .iter()
            .position(|e| e.entry.is(waiter, op))
            .expect("an unselected send is still queued");
        g.senders.remove(i).expect("index from position").value
    }

    /// Removes the entry of a receive that was not selected.
    pub(crate) fn unregister_recv(&self, waiter: &Arc<Waiter>, op: usize) {
        let mut g = self.lock();
        if let Some(i) = g.receivers.iter().position(|e| e.is(waiter, op)) {
            g.receivers.remove(i);
        }
    }

    /// Completes a send that was selected: `Ok` if a receiver took the value, `Err(value)` if
    /// the receivers disconnected. Only the disconnection needs the lock: a receiver that
    /// selects a sender takes its entry with the value in the same critical section.
    pub(crate) fn complete_send(&self, waiter: &Arc<Waiter>, op: usize) -> Result<(), T> {
        if !waiter.selected_by_disconnection() {
            return Ok(());
        }
        let mut g = self.lock();
        debug_assert!(g.receivers_gone, "a disconnection selected the send");
        let i = g
            .senders
            .iter()
            .position(|e| e.entry.is(waiter, op))
            .expect("a send selected by a disconnection is still queued");
        Err(g.senders.remove(i).expect("index from position").value)
    }

    /// Completes a receive that was selected: the value handed to it, or (selected by the
    /// senders' disconnection) what is left in the buffer, or `Err` when it is empty.
    pub(crate) fn complete_recv(&self, waiter: &Arc<Waiter>, op: usize) -> Result<T, ()> {
        let id = waiter.id();
        let mut g = self.lock();
        if let Some(i) = g.handoffs.iter().position(|h| h.waiter == id && h.op == op) {
            return Ok(g.handoffs.swap_remove(i).value);
        }
        if let Some(i) = g.receivers.iter().position(|e| e.is(waiter, op)) {
            g.receivers.remove(i);
        }
        debug_assert!(
            g.senders_gone,
            "a receive selected without a handoff is a disconnection"
        );
        match g.recv() {
            Ok((value, woken)) => {
                drop(g);
                debug_assert!(woken.is_none(), "no sender waits on a disconnected channel");
                Ok(value)
            }
            Err(_) => Err(()),
        }
    }

    /// The last sender is gone: receivers waiting now will wait for ever, so wake them.
    pub(crate) fn disconnect_senders(&self) {
        let woken = {
            let mut g = self.lock();
            g.senders_gone = true;
            g.receivers
                .iter()
                .filter(|e| e.waiter.try_select_disconnected(e.op))
                .map(|e| e.waiter.clone())
                .collect::<Vec<_>>()
        };
        woken.iter().for_each(|w| w.unpark());
    }

    /// The last receiver is gone: waiting senders fail, so wake them.
    pub(crate) fn disconnect_receivers(&self) {
        let woken = {
            let mut g = self.lock();
            g.receivers_gone = true;
            g.senders
                .iter()
                .filter(|e| e.entry.waiter.try_select_disconnected(e.entry.op))
                .map(|e| e.entry.waiter.clone())
                .collect::<Vec<_>>()
        };
        woken.iter().for_each(|w| w.unpark());
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().buf.len()
    }

    pub(crate) fn capacity(&self) -> Option<usize> {
        (self.cap != usize::MAX).then_some(self.cap)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() >= self.cap
    }
}

/// For a blocking operation that found nothing ready: `None` when it may not wait (`Now`, or a
/// deadline already passed), else how long it may (`Some(None)`: for ever).
/// Whether a blocking operation about to register must first see whether its coroutine owes a
/// deferred unwind (`wait_for_deferred_cancellation`, which unwinds if so), with the lock
/// released; then it tries again. Once per operation: the cheap check only says that some
/// coroutine of this thread owes one.
#[cfg(not(loom))]
#[inline]
fn deferred_check_due(checked: &mut bool) -> bool {
    let due = !*checked && deferred_cancellation_owed();
    *checked |= due;
    due
}

#[cfg(not(loom))]
#[inline]
fn still_waiting(timeout: Timeout) -> Option<Option<Instant>> {
    match timeout {
        Timeout::Now => None,
        Timeout::Never => Some(None),
        Timeout::At(deadline) if Instant::now() >= deadline => None,
        Timeout::At(deadline) => Some(Some(deadline)),
    }
}

impl<T> Inner<T> {
    /// Sends without waiting: to the oldest live receiver, else into the buffer. On success,
    /// returns the receiver to unpark.
    fn send(&mut self, value: T, cap: usize) -> Result<Option<Arc<Waiter>>, TrySendError<T>> {
        if self.receivers_gone {
            return Err(TrySendError::Disconnected(value));
        }
        while let Some(entry) = self.receivers.pop_front() {
            if entry.waiter.try_select(entry.op) {
                self.handoffs.push(Handoff {
                    waiter: entry.waiter.id(),
                    op: entry.op,
                    value,
                });
                return Ok(Some(entry.waiter));
            }
            // Stale: its waiter was selected elsewhere or gave up, and removes nothing itself
            // once it is out of the queue (`unregister_recv` tolerates that). Dropping it here
            // keeps the queue short.
        }
        if self.buf.len() < cap {
            self.buf.push_back(value);
            return Ok(None);
        }
        Err(TrySendError::Full(value))
    }

    /// Receives without waiting: from the buffer (refilling it from the oldest live sender),
    /// else straight from the oldest live sender. Returns the sender to unpark.
    fn recv(&mut self) -> Result<(T, Option<Arc<Waiter>>), TryRecvError> {
        if let Some(value) = self.buf.pop_front() {
            let woken = self.take_live_sender().map(|(waiter, v)| {
                self.buf.push_back(v);
                waiter
            });
            return Ok((value, woken));
        }
        if let Some((waiter, value)) = self.take_live_sender() {
            return Ok((value, Some(waiter)));
        }
        if self.senders_gone {
            Err(TryRecvError::Disconnected)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    /// Selects the oldest live sender and takes its value.
    fn take_live_sender(&mut self) -> Option<(Arc<Waiter>, T)> {
        // The common case, a live entry at the front, without shifting the queue.
        let front = self.senders.front()?;
        if front.entry.waiter.try_select(front.entry.op) {
            let e = self.senders.pop_front().expect("front exists");
            return Some((e.entry.waiter, e.value));
        }
        let i = self
            .senders
            .iter()
            .skip(1)
            .position(|e| e.entry.waiter.try_select(e.entry.op))?
            + 1;
        let e = self.senders.remove(i).expect("index from position");
        Some((e.entry.waiter, e.value))
    }
}

#[cfg(all(test, loom))]
mod loom_models;
