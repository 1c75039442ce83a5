//! Channels: multi-producer multi-consumer queues whose blocking operations park only the
//! waiting coroutine (or block the calling OS thread), with crossbeam-channel's API and
//! disconnection rules, and [`select!`](crate::select!) over them.
//!
//! A worker pool: jobs fan out over one channel, results come back over another (the example of
//! the README).
//!
//! ```
//! # use pagurus_runtime as pagurus;
//! use pagurus::channel::bounded;
//!
//! let total = pagurus::run(|| {
//!     let (jobs_tx, jobs_rx) = bounded::<u64>(64);
//!     let (results_tx, results_rx) = bounded::<u64>(64);
//!     for _ in 0..8 {
//!         let (jobs, results) = (jobs_rx.clone(), results_tx.clone());
//!         pagurus::spawn(move || jobs.iter().for_each(|n| results.send(n * n).unwrap()));
//!     }
//!     drop((jobs_rx, results_tx)); // the workers hold the only clones now
//!     pagurus::spawn(move || (1..=1000).for_each(|n| jobs_tx.send(n).unwrap()));
//!     results_rx.iter().sum::<u64>() // ends when every worker has dropped its sender
//! });
//! assert_eq!(total, 333_833_500);
//! ```
//!
//! # Shape
//!
//! A channel is a flavour behind [`Sender`]/[`Receiver`]:
//!
//! | flavour | made by | file |
//! |---|---|---|
//! | queue | [`bounded`] (`cap` 0 = rendezvous), [`unbounded`] | `queue.rs` |
//! | at | [`after`], [`at`] | `at.rs` |
//! | tick | [`tick`] | `tick.rs` |
//! | never | [`never`] | (here: nothing to do) |
//!
//! Every blocking operation is a *selection* of one or more arms (`select.rs`, `arms.rs`):
//! `recv` is a selection of one receive arm, `send_timeout` of one send arm with a deadline,
//! `select!` of many. The waiting side is a heap [`Waiter`](waiter::Waiter) (`waiter.rs`).
//!
//! # Wait queues hold task references, never pointers into a stack
//!
//! Coroutine stacks move: they grow by copying, and later parked stacks will be compacted. So no
//! channel structure may point into a coroutine stack. Concretely:
//!
//! - a queue entry is `(Arc<Waiter>, arm index)`; the waiter holds an `Unparker`, which is a
//!   reference-counted task (or thread) handle;
//! - a blocked sender's value is *moved into* its queue entry, inside the channel's own state;
//! - a value for a blocked receiver is left in the channel (a *handoff* keyed by its waiter),
//!   never written to a slot on the receiver's stack;
//! - the arms of a `select!` live on the selecting coroutine's stack, but only that coroutine
//!   touches them; channels never see them.
//!
//! Crossbeam, by contrast, keeps its waiter contexts and rendezvous packets on the blocked
//! thread's stack: sound for threads, which never move, and exactly what a moving stack forbids.
//!
//! # Cancellation loses nothing
//!
//! A waiter that gives up (a timeout, `default(dur)`, or the runtime cancelling the coroutine)
//! first wins or loses one compare-and-swap on its state word against every counterpart. If it
//! wins, nobody can hand it anything any more, and it removes its entries from every queue it
//! joined (getting a blocked send's value back). If it loses, the operation was already
//! completed by a counterpart: it finishes the operation normally and, if this was a
//! cancellation, defers it with `defer_cancel` (the coroutine unwinds at its next park). A value is
//! therefore never handed to a waiter that is gone, and never lost. See `select.rs`.
//!
//! # Locks
//!
//! One lock per queue channel (a std `Mutex`: a futex, no spinning) guards the buffer and both
//! wait queues. It is held for a few moves and compare-and-swaps, never across a park, and
//! waiters are unparked after it is released.

mod arms;
mod at;
mod error;
mod queue;
mod select;
mod select_macro;
mod tick;
mod waiter;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::*;
use std::time::{Duration, Instant};

pub use error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

use arms::RecvArm;
use select::{Timeout, select};

/// What the `select!` macro expands to; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use super::arms::{RecvArm, SendArm};
    pub use super::select::{Arm, Timeout, select};
}

/// A channel of capacity `cap`: `send` waits while `cap` messages are queued. With `cap == 0`
/// it is a *rendezvous* channel: a send waits until a receiver takes the message.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// let (tx, rx) = pagurus::channel::bounded(0);
/// pagurus::run(move || {
///     let h = pagurus::spawn(move || rx.recv().unwrap() * 2);
///     tx.send(21).unwrap(); // waits for the receiver
///     assert_eq!(h.join().unwrap(), 42);
/// });
/// ```
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    new_queue(Some(cap))
}

/// A channel without a capacity limit: `send` never waits.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// let (tx, rx) = pagurus::channel::unbounded();
/// for i in 0..1000 {
///     tx.send(i).unwrap();
/// }
/// drop(tx);
/// assert_eq!(rx.iter().sum::<i32>(), 499_500);
/// ```
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    new_queue(None)
}

fn new_queue<T>(cap: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(queue::Channel::new(cap));
    (
        Sender { chan: chan.clone() },
        Receiver {
            flavor: Flavor::Queue(chan),
        },
    )
}

/// A receiver that gets one message, the instant it was due, `dur` from now.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use std::time::{Duration, Instant};
/// pagurus::run(|| {
///     let start = Instant::now();
///     let due = pagurus::channel::after(Duration::from_millis(5)).recv().unwrap();
///     assert!(due >= start + Duration::from_millis(5) && Instant::now() >= due);
/// });
/// ```
pub fn after(dur: Duration) -> Receiver<Instant> {
    match Instant::now().checked_add(dur) {
        Some(deadline) => at(deadline),
        None => never(),
    }
}

/// A receiver that gets one message, `when`, at `when`.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use std::time::{Duration, Instant};
/// let when = Instant::now() + Duration::from_millis(2);
/// assert_eq!(pagurus::channel::at(when).recv(), Ok(when));
/// ```
pub fn at(when: Instant) -> Receiver<Instant> {
    Receiver {
        flavor: Flavor::At(Arc::new(at::Channel::new(when)), instant),
    }
}

/// A receiver that gets a message every `period`: the instant the tick was due. Ticks a slow
/// receiver misses are dropped, not queued.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use std::time::{Duration, Instant};
/// pagurus::run(|| {
///     let start = Instant::now();
///     let ticker = pagurus::channel::tick(Duration::from_millis(2));
///     for _ in 0..3 {
///         ticker.recv().unwrap();
///     }
///     assert!(start.elapsed() >= Duration::from_millis(6));
/// });
/// ```
pub fn tick(period: Duration) -> Receiver<Instant> {
    Receiver {
        flavor: Flavor::Tick(Arc::new(tick::Channel::new(period)), instant),
    }
}

/// A receiver that never gets a message and never disconnects: a placeholder arm for
/// [`select!`](crate::select!).
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use std::time::Duration;
/// use pagurus::channel::{never, RecvTimeoutError};
/// let rx = never::<i32>();
/// assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Timeout));
/// ```
pub fn never<T>() -> Receiver<T> {
    Receiver {
        flavor: Flavor::Never,
    }
}

/// The message of the time flavours, which only exist as `Receiver<Instant>`: the constructors
/// store this identity function, which is how a `Receiver<T>` turns their `Instant` into its `T`
/// without a cast.
fn instant(t: Instant) -> Instant {
    t
}

/// The sending half of a channel. Clone it for more senders; when the last one is dropped, the
/// channel disconnects: receivers get what is queued, then `Err(RecvError)`.
///
/// `Send + Sync` for `T: Send`: share it by reference or clone it across coroutines and threads.
pub struct Sender<T> {
    chan: Arc<queue::Channel<T>>,
}

/// The receiving half of a channel. Clone it for more receivers (each message goes to one of
/// them); when the last one is dropped, sends fail with `SendError`.
pub struct Receiver<T> {
    flavor: Flavor<T>,
}

enum Flavor<T> {
    Queue(Arc<queue::Channel<T>>),
    At(Arc<at::Channel>, fn(Instant) -> T),
    Tick(Arc<tick::Channel>, fn(Instant) -> T),
    Never,
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full (for a rendezvous channel, until a
    /// receiver takes it). Fails, returning the value, when every receiver is gone.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let (tx, rx) = pagurus::channel::bounded(1);
    /// tx.send("hi").unwrap();
    /// assert_eq!(rx.recv(), Ok("hi"));
    /// drop(rx);
    /// assert_eq!(tx.send("bye").unwrap_err().into_inner(), "bye");
    /// ```
    ///
    /// # Panics
    ///
    /// Unwinds with [`Cancelled`](crate::Cancelled) when the waiting coroutine's runtime is
    /// dropped; the value is dropped with it, unless a receiver already took it (then the send
    /// returns `Ok` and the coroutine unwinds at its next wait).
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.send_until(value, Timeout::Never).map_err(|e| match e {
            SendTimeoutError::Disconnected(v) => SendError(v),
            SendTimeoutError::Timeout(_) => unreachable!("a send without deadline timed out"),
        })
    }

    /// Sends `value` if that needs no waiting.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// use pagurus::channel::TrySendError;
    /// let (tx, rx) = pagurus::channel::bounded(0);
    /// assert_eq!(tx.try_send(1), Err(TrySendError::Full(1))); // nobody waits to receive
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.chan.try_send(value)
    }

    /// Like [`send`](Sender::send), but gives up after `timeout`.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// use std::time::Duration;
    /// use pagurus::channel::SendTimeoutError;
    /// let (tx, rx) = pagurus::channel::bounded(1);
    /// tx.send(1).unwrap();
    /// let err = tx.send_timeout(2, Duration::from_millis(1));
    /// assert_eq!(err, Err(SendTimeoutError::Timeout(2)));
    /// ```
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_until(value, Timeout::after(timeout))
    }

    /// Like [`send`](Sender::send), but gives up at `deadline`.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// use std::time::{Duration, Instant};
    /// let (tx, _rx) = pagurus::channel::bounded(0);
    /// let deadline = Instant::now() + Duration::from_millis(1);
    /// assert!(tx.send_deadline(1, deadline).unwrap_err().is_timeout());
    /// ```
    pub fn send_deadline(&self, value: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_until(value, Timeout::At(deadline))
    }

    fn send_until(&self, value: T, timeout: Timeout) -> Result<(), SendTimeoutError<T>> {
        self.chan.send_blocking(value, timeout)
    }

    /// Whether no message is buffered.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let (tx, _rx) = pagurus::channel::unbounded::<u8>();
    /// assert!(tx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.chan.len() == 0
    }

    /// Whether the buffer is full (always, for a rendezvous channel; never, for unbounded).
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let (tx, _rx) = pagurus::channel::bounded(1);
    /// tx.send(()).unwrap();
    /// assert!(tx.is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        self.chan.is_full()
    }

    /// How many messages are buffered (always 0 for a rendezvous channel).
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let (tx, _rx) = pagurus::channel::bounded(4);
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// assert_eq!(tx.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// The capacity: `Some(cap)` for `bounded(cap)`, `None` for unbounded.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// assert_eq!(pagurus::channel::bounded::<u8>(3).0.capacity(), Some(3));
    /// assert_eq!(pagurus::channel::unbounded::<u8>().0.capacity(), None);
    /// ```
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }

    /// Whether both senders belong to one channel.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let (tx, _rx) = pagurus::channel::unbounded::<u8>();
    /// assert!(tx.same_channel(&tx.clone()));
    /// ```
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.chan.senders.fetch_add(1, Relaxed);
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.chan.senders.fetch_sub(1, AcqRel) == 1 {
            self.chan.disconnect_senders();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Sender { .. }")
    }
}

impl<T> Receiver<T> {
    /// Receives a message, waiting until one arrives. Once every sender is gone, returns the
    /// messages still queued, then `Err(RecvError)`.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let (tx, rx) = pagurus::channel::unbounded();
    /// std::thread::spawn(move || tx.send(5).unwrap());
    /// assert_eq!(rx.recv(), Ok(5));
    /// assert!(rx.recv().is_err()); // the sender is gone
    /// ```
    ///
    /// # Panics
    ///
    /// Unwinds with [`Cancelled`](crate::Cancelled) when the waiting coroutine's runtime is
    /// dropped, unless a message was already handed to it (then it is returned and the
    /// coroutine unwinds at its next wait).
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_until(Timeout::Never).map_err(|_| RecvError)
    }

    /// Receives a message if one is there.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// use pagurus::channel::TryRecvError;
    /// let (tx, rx) = pagurus::channel::unbounded();
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// ```
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match &self.flavor {
            Flavor::Queue(chan) => chan.try_recv(),
            Flavor::At(chan, wrap) => chan.try_recv().map(wrap),
            Flavor::Tick(chan, wrap) => chan.try_recv().map(wrap),
            Flavor::Never => Err(TryRecvError::Empty),
        }
    }

    /// Like [`recv`](Receiver::recv), but gives up after `timeout`.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// use std::time::Duration;
    /// let (tx, rx) = pagurus::channel::bounded::<i32>(1);
    /// assert!(rx.recv_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Timeout::after(timeout))
    }

    /// Like [`recv`](Receiver::recv), but gives up at `deadline`.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// use std::time::{Duration, Instant};
    /// let (_tx, rx) = pagurus::channel::bounded::<i32>(1);
    /// let deadline = Instant::now() + Duration::from_millis(1);
    /// assert!(rx.recv_deadline(deadline).unwrap_err().is_timeout());
    /// ```
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_until(Timeout::At(deadline))
    }

    fn recv_until(&self, timeout: Timeout) -> Result<T, RecvTimeoutError> {
        if let Flavor::Queue(chan) = &self.flavor {
            return chan.recv_blocking(timeout);
        }
        let mut arm = RecvArm::new(self);
        match select(&mut [arm.arm(0)], timeout) {
            Some(_) => arm
                .into_result()
                .map_err(|RecvError| RecvTimeoutError::Disconnected),
            None => Err(RecvTimeoutError::Timeout),
        }
    }

    /// A blocking iterator: `recv` until the channel is empty and disconnected.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let (tx, rx) = pagurus::channel::unbounded();
    /// pagurus::run(move || {
    ///     pagurus::spawn(move || (1..=3).for_each(|i| tx.send(i).unwrap()));
    ///     assert_eq!(rx.iter().collect::<Vec<_>>(), [1, 2, 3]);
    /// });
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// A non-blocking iterator: `try_recv` until nothing is there.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let (tx, rx) = pagurus::channel::unbounded();
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]); // tx is still alive
    /// ```
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// Whether no message is ready.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let (tx, rx) = pagurus::channel::unbounded();
    /// assert!(rx.is_empty());
    /// tx.send(()).unwrap();
    /// assert!(!rx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the buffer is full (for the time flavours: a message is ready).
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let (tx, rx) = pagurus::channel::bounded(1);
    /// tx.send(()).unwrap();
    /// assert!(rx.is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        match &self.flavor {
            Flavor::Queue(chan) => chan.is_full(),
            Flavor::At(chan, _) => chan.is_ready(),
            Flavor::Tick(chan, _) => chan.is_ready(),
            Flavor::Never => true,
        }
    }

    /// How many messages are ready (0 or 1 for the time flavours).
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let (tx, rx) = pagurus::channel::unbounded();
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        match &self.flavor {
            Flavor::Queue(chan) => chan.len(),
            Flavor::At(chan, _) => usize::from(chan.is_ready()),
            Flavor::Tick(chan, _) => usize::from(chan.is_ready()),
            Flavor::Never => 0,
        }
    }

    /// The capacity: `Some(cap)` for `bounded(cap)`, `None` for unbounded, `Some(1)` for the
    /// time flavours, `Some(0)` for `never`.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// assert_eq!(pagurus::channel::bounded::<u8>(0).1.capacity(), Some(0));
    /// ```
    pub fn capacity(&self) -> Option<usize> {
        match &self.flavor {
            Flavor::Queue(chan) => chan.capacity(),
            Flavor::At(..) | Flavor::Tick(..) => Some(1),
            Flavor::Never => Some(0),
        }
    }

    /// Whether both receivers belong to one channel.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let (_tx, rx) = pagurus::channel::unbounded::<u8>();
    /// assert!(rx.same_channel(&rx.clone()));
    /// ```
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        match (&self.flavor, &other.flavor) {
            (Flavor::Queue(a), Flavor::Queue(b)) => Arc::ptr_eq(a, b),
            (Flavor::At(a, _), Flavor::At(b, _)) => Arc::ptr_eq(a, b),
            (Flavor::Tick(a, _), Flavor::Tick(b, _)) => Arc::ptr_eq(a, b),
            (Flavor::Never, Flavor::Never) => true,
            _ => false,
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Receiver<T> {
        let flavor = match &self.flavor {
            Flavor::Queue(chan) => {
                chan.receivers.fetch_add(1, Relaxed);
                Flavor::Queue(chan.clone())
            }
            Flavor::At(chan, wrap) => Flavor::At(chan.clone(), *wrap),
            Flavor::Tick(chan, wrap) => Flavor::Tick(chan.clone(), *wrap),
            Flavor::Never => Flavor::Never,
        };
        Receiver { flavor }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if let Flavor::Queue(chan) = &self.flavor
            && chan.receivers.fetch_sub(1, AcqRel) == 1
        {
            chan.disconnect_receivers();
        }
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Receiver { .. }")
    }
}

/// The blocking iterator of [`Receiver::iter`].
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Iter { .. }")
    }
}

/// The non-blocking iterator of [`Receiver::try_iter`].
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

impl<T> fmt::Debug for TryIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("TryIter { .. }")
    }
}

/// The owning blocking iterator of `Receiver`'s `IntoIterator`.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// let (tx, rx) = pagurus::channel::unbounded();
/// tx.send('a').unwrap();
/// drop(tx);
/// assert_eq!(rx.into_iter().collect::<String>(), "a");
/// ```
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T> fmt::Debug for IntoIter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("IntoIter { .. }")
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}
