//! Loom models of the channel waiter and the queue flavour's wait queues
//! (`RUSTFLAGS="--cfg loom"`).
//!
//! The real [`Channel`] and [`Waiter`] run between loom threads. The waiting side follows the
//! steps of `select::select` (register every arm, abort if one is ready, else park until
//! selected, or abort on a timeout or cancellation; then unregister the other arms and complete
//! the chosen one), with loom's thread park for the coroutine's park. Values are counted: none
//! may be lost or duplicated, and the channel's own debug assertions check its invariants.

use loom::thread;

use super::Channel;
use crate::channel::error::{TryRecvError, TrySendError};
use crate::channel::waiter::{State, Waiter};
use crate::loom::{Arc, Ordering::*};

/// How a receive round of a waiter ended.
#[derive(Debug, PartialEq)]
enum Round {
    /// Arm `op` completed with this result.
    Got(usize, Result<u32, ()>),
    /// Gave up (ready at registration, a timeout, or a cancellation): nothing received.
    GaveUp,
}

/// One `select!` round receiving from every channel of `chans` (arm `i` on `chans[i]`). With
/// `give_up`, the waiter does not park but aborts at once, as a timeout or a cancellation
/// landing right after registration does; otherwise it parks until selected.
fn select_recv(chans: &[&Channel<u32>], give_up: bool) -> Round {
    let waiter = Waiter::prepare();
    let mut registered = 0;
    let mut ready = false;
    for (op, chan) in chans.iter().enumerate() {
        if !chan.register_recv(&waiter, op) {
            ready = true;
            break;
        }
        registered += 1;
    }
    let selected = if ready || give_up {
        waiter.try_abort().err()
    } else {
        loop {
            match waiter.state() {
                State::Selected(op) => break Some(op),
                State::Aborted => unreachable!("only the waiter aborts itself"),
                State::Waiting => thread::park(),
            }
        }
    };
    let mut outcome = Round::GaveUp;
    for (op, chan) in chans[..registered].iter().enumerate() {
        if selected == Some(op) {
            outcome = Round::Got(op, chan.complete_recv(&waiter, op));
        } else {
            chan.unregister_recv(&waiter, op);
        }
    }
    outcome
}

/// Takes what is left in `chan`.
fn drain(chan: &Channel<u32>) -> Vec<u32> {
    let mut left = Vec::new();
    loop {
        match chan.try_recv() {
            Ok(v) => left.push(v),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => return left,
        }
    }
}

/// A `select!` over two channels, and a sender on each: at most one sender's value goes to the
/// selector (one CAS wins), the other's stays in its channel; both values exist exactly once.
#[test]
fn loom_select_two_senders() {
    loom::model(|| {
        let a = Arc::new(Channel::<u32>::new(Some(1)));
        let b = Arc::new(Channel::<u32>::new(Some(1)));
        let senders: Vec<_> = [(a.clone(), 1), (b.clone(), 2)]
            .into_iter()
            .map(|(chan, v)| thread::spawn(move || chan.try_send(v).map_err(|_| ()).unwrap()))
            .collect();
        // Until it receives something: a round that found a channel ready retries.
        let got = loop {
            match select_recv(&[&a, &b], false) {
                Round::Got(op, value) => break (op, value.unwrap()),
                Round::GaveUp => {
                    if let Ok(v) = a.try_recv() {
                        break (0, v);
                    }
                    if let Ok(v) = b.try_recv() {
                        break (1, v);
                    }
                }
            }
        };
        assert_eq!(
            got.1,
            [1, 2][got.0],
            "arm {} got the other channel's value",
            got.0
        );
        for s in senders {
            s.join().unwrap();
        }
        let mut all = vec![got.1];
        all.extend(drain(&a));
        all.extend(drain(&b));
        all.sort();
        assert_eq!(all, [1, 2], "a value is lost or duplicated");
    });
}

/// A receiver that gives up (timeout or cancellation) while a sender sends: either the sender
/// selected it first and the receiver completes with the value, or the value stays in the
/// channel. Never both, never neither.
#[test]
fn loom_recv_gives_up_while_sent() {
    loom::model(|| {
        let chan = Arc::new(Channel::<u32>::new(Some(1)));
        let sender = {
            let chan = chan.clone();
            thread::spawn(move || chan.try_send(7).map_err(|_| ()).unwrap())
        };
        let round = select_recv(&[&chan], true);
        sender.join().unwrap();
        let left = drain(&chan);
        match round {
            Round::Got(0, Ok(7)) => assert!(left.is_empty(), "the value was duplicated"),
            Round::GaveUp => assert_eq!(left, [7], "the value was lost"),
            other => panic!("unexpected round {other:?}"),
        }
    });
}

/// A blocked sender on a rendezvous channel gives up while a receiver takes: the value goes to
/// the receiver or back to the sender, exactly once.
#[test]
fn loom_send_gives_up_while_received() {
    loom::model(|| {
        let chan = Arc::new(Channel::<u32>::new(Some(0)));
        let receiver = {
            let chan = chan.clone();
            thread::spawn(move || chan.try_recv().ok())
        };
        let waiter = Waiter::prepare();
        let kept = match chan.register_send(&waiter, 0, 9) {
            // A receiver waits live (it never registers here: it only tries).
            Err(v) => Some(v),
            Ok(()) => match waiter.try_abort() {
                Ok(()) => Some(chan.unregister_send(&waiter, 0)),
                Err(0) => {
                    chan.complete_send(&waiter, 0).unwrap();
                    None
                }
                Err(op) => panic!("selected unknown op {op}"),
            },
        };
        let taken = receiver.join().unwrap();
        assert_eq!(
            [kept, taken].iter().flatten().count(),
            1,
            "kept {kept:?}, taken {taken:?}"
        );
    });
}

/// The last sender disconnects while a receiver waits, and the receiver gives up at the same
/// time: either it aborted (and unregisters), or disconnection selected it and it completes with
/// `Err` (nothing buffered). The channel's debug assertions check the selection was a
/// disconnection.
#[test]
fn loom_disconnect_races_give_up() {
    loom::model(|| {
        let chan = Arc::new(Channel::<u32>::new(Some(1)));
        let disconnector = {
            let chan = chan.clone();
            // The last `Sender` drops.
            thread::spawn(move || {
                if chan.senders.fetch_sub(1, AcqRel) == 1 {
                    chan.disconnect_senders();
                }
            })
        };
        let round = select_recv(&[&chan], true);
        disconnector.join().unwrap();
        assert!(matches!(round, Round::GaveUp | Round::Got(0, Err(()))));
        assert!(matches!(chan.try_recv(), Err(TryRecvError::Disconnected)));
        // And the other side: a send to a channel whose last receiver dropped fails.
        if chan.receivers.fetch_sub(1, AcqRel) == 1 {
            chan.disconnect_receivers();
        }
        assert!(matches!(
            chan.try_send(1),
            Err(TrySendError::Disconnected(1))
        ));
        assert_eq!(
            (chan.len(), chan.capacity(), chan.is_full()),
            (0, Some(1), false)
        );
    });
}
