//! Loom model of the worker's sleep/wake handshake (`RUSTFLAGS="--cfg loom"`).
//!
//! The real [`PollGate`] runs with a stand-in inbox and poller: the inbox is a message count
//! with only the ordering any queue guarantees (a push happens before the pop or emptiness
//! check that sees it: Release/Acquire, nothing SeqCst), and the poller is an eventfd made of a
//! loom mutex and condition variable (a wake sets it, a wait blocks until it is set and clears
//! it: a wake that lands before the wait is not lost, as with the real eventfd).

use loom::sync::{Condvar, Mutex};
use loom::thread;

use super::PollGate;
use crate::loom::{Arc, AtomicUsize, Ordering::*};

struct Worker {
    gate: PollGate,
    /// Messages ever pushed into the inbox.
    inbox: AtomicUsize,
    eventfd: Mutex<bool>,
    readable: Condvar,
}

impl Worker {
    /// `WorkerHandle::send`: push, then wake the worker if it is polling.
    fn send(&self) {
        self.inbox.fetch_add(1, Release);
        if self.gate.must_wake() {
            *self.eventfd.lock().unwrap() = true;
            self.readable.notify_one();
        }
    }

    /// `Poll::poll` without a timeout, woken only by the waker.
    fn poll(&self) {
        let mut fd = self.eventfd.lock().unwrap();
        while !*fd {
            fd = self.readable.wait(fd).unwrap();
        }
        *fd = false;
    }
}

/// Two threads send to a worker that goes to sleep whenever its inbox looks empty: it always
/// receives both messages (a message left unseen with the worker asleep deadlocks the model).
#[test]
fn loom_no_lost_wake_up() {
    const SENDERS: usize = 2;
    loom::model(|| {
        let worker = Arc::new(Worker {
            gate: PollGate::new(),
            inbox: AtomicUsize::new(0),
            eventfd: Mutex::new(false),
            readable: Condvar::new(),
        });
        let senders: Vec<_> = (0..SENDERS)
            .map(|_| {
                let worker = worker.clone();
                thread::spawn(move || worker.send())
            })
            .collect();
        // The worker's loop: drain the inbox, then sleep in the poller (`idle_wait`).
        let mut received = 0;
        while received < SENDERS {
            let pushed = worker.inbox.load(Acquire);
            if pushed > received {
                received = pushed;
                continue;
            }
            worker
                .gate
                .wait(|| worker.inbox.load(Acquire) == received, || worker.poll());
        }
        for s in senders {
            s.join().unwrap();
        }
    });
}
