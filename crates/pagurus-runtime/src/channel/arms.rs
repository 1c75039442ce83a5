//! The two kinds of arm, [`RecvArm`] and [`SendArm`]: one operation on one channel, typed, with
//! room for its result. `recv`/`send` and their timeouts use one arm; `select!` builds one per
//! arm on the caller's stack and hands [`select`](super::select::select) references to them.
//! They are dispatched to the channel's flavour here.

use std::sync::Arc;
use std::time::Instant;

use super::error::{RecvError, SendError, TryRecvError, TrySendError};
use super::select::{Arm, Operation};
use super::waiter::Waiter;
use super::{Flavor, Receiver, Sender};

/// A receive on `rx`, and its result once it completed.
pub struct RecvArm<'a, T> {
    rx: &'a Receiver<T>,
    result: Option<Result<T, RecvError>>,
}

impl<'a, T> RecvArm<'a, T> {
    pub fn new(rx: &'a Receiver<T>) -> RecvArm<'a, T> {
        RecvArm { rx, result: None }
    }

    /// This arm as arm number `index` of a selection.
    pub fn arm(&mut self, index: usize) -> Arm<'_> {
        Arm { index, op: self }
    }

    /// The result of the completed receive.
    ///
    /// # Panics
    ///
    /// If the arm did not complete.
    pub fn into_result(self) -> Result<T, RecvError> {
        self.result.expect("select! completed this arm")
    }
}

impl<T> Operation for RecvArm<'_, T> {
    fn try_now(&mut self) -> bool {
        let attempt = match &self.rx.flavor {
            Flavor::Queue(chan) => chan.try_recv(),
            Flavor::At(chan, wrap) => chan.try_recv().map(wrap),
            Flavor::Tick(chan, wrap) => chan.try_recv().map(wrap),
            Flavor::Never => Err(TryRecvError::Empty),
        };
        match attempt {
            Ok(value) => self.result = Some(Ok(value)),
            Err(TryRecvError::Disconnected) => self.result = Some(Err(RecvError)),
            Err(TryRecvError::Empty) => return false,
        }
        true
    }

    fn register(&mut self, waiter: &Arc<Waiter>, op: usize) -> bool {
        match &self.rx.flavor {
            Flavor::Queue(chan) => chan.register_recv(waiter, op),
            Flavor::At(chan, _) => !chan.is_ready(),
            Flavor::Tick(chan, _) => !chan.is_ready(),
            Flavor::Never => true,
        }
    }

    fn unregister(&mut self, waiter: &Arc<Waiter>, op: usize) {
        if let Flavor::Queue(chan) = &self.rx.flavor {
            chan.unregister_recv(waiter, op);
        }
    }

    fn complete(&mut self, waiter: &Arc<Waiter>, op: usize) {
        match &self.rx.flavor {
            Flavor::Queue(chan) => {
                self.result = Some(chan.complete_recv(waiter, op).map_err(|()| RecvError));
            }
            // Time flavours queue nobody, so nobody selects their arms.
            _ => unreachable!("only queue channels select a waiter"),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.rx.flavor {
            Flavor::At(chan, _) => chan.deadline(),
            Flavor::Tick(chan, _) => chan.deadline(),
            Flavor::Queue(_) | Flavor::Never => None,
        }
    }
}

/// A send of `value` on `tx`, and its result once it completed.
pub struct SendArm<'a, T> {
    tx: &'a Sender<T>,
    /// The value, while the arm holds it (not while a channel queue does).
    value: Option<T>,
    result: Option<Result<(), SendError<T>>>,
}

impl<'a, T> SendArm<'a, T> {
    pub fn new(tx: &'a Sender<T>, value: T) -> SendArm<'a, T> {
        SendArm {
            tx,
            value: Some(value),
            result: None,
        }
    }

    /// This arm as arm number `index` of a selection.
    pub fn arm(&mut self, index: usize) -> Arm<'_> {
        Arm { index, op: self }
    }

    /// The result of the completed send.
    ///
    /// # Panics
    ///
    /// If the arm did not complete.
    pub fn into_result(self) -> Result<(), SendError<T>> {
        self.result.expect("select! completed this arm")
    }
}

impl<T> Operation for SendArm<'_, T> {
    fn try_now(&mut self) -> bool {
        let value = self.value.take().expect("an untried send holds its value");
        match self.tx.chan.try_send(value) {
            Ok(()) => self.result = Some(Ok(())),
            Err(TrySendError::Disconnected(v)) => self.result = Some(Err(SendError(v))),
            Err(TrySendError::Full(v)) => {
                self.value = Some(v);
                return false;
            }
        }
        true
    }

    fn register(&mut self, waiter: &Arc<Waiter>, op: usize) -> bool {
        let value = self
            .value
            .take()
            .expect("an unregistered send holds its value");
        match self.tx.chan.register_send(waiter, op, value) {
            Ok(()) => true,
            Err(v) => {
                self.value = Some(v);
                false
            }
        }
    }

    fn unregister(&mut self, waiter: &Arc<Waiter>, op: usize) {
        self.value = Some(self.tx.chan.unregister_send(waiter, op));
    }

    fn complete(&mut self, waiter: &Arc<Waiter>, op: usize) {
        self.result = Some(self.tx.chan.complete_send(waiter, op).map_err(SendError));
    }

    fn deadline(&self) -> Option<Instant> {
        None
    }
}
