//! Channels: buffered, unbounded and rendezvous; MPMC between coroutines, threads and both;
//! disconnection, try_* and timeouts; cancellation that loses nothing; stacks that move between
//! operations.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use common::{DropCounter, wait_for};
use pagurus::channel::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError, bounded,
    unbounded,
};
use pagurus::{Cancelled, Runtime};

fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

#[test]
fn buffered_basics() {
    let (tx, rx) = bounded(3);
    assert_eq!(tx.capacity(), Some(3));
    assert_eq!(rx.capacity(), Some(3));
    assert!(tx.is_empty() && rx.is_empty());
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    assert_eq!((tx.len(), rx.len()), (3, 3));
    assert!(tx.is_full());
    assert_eq!(tx.try_send(9), Err(TrySendError::Full(9)));
    assert_eq!((rx.recv(), rx.recv(), rx.try_recv()), (Ok(0), Ok(1), Ok(2)));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn unbounded_basics() {
    let (tx, rx) = unbounded();
    assert_eq!(tx.capacity(), None);
    for i in 0..100_000u32 {
        tx.send(i).unwrap();
    }
    assert!(!tx.is_full());
    assert_eq!(rx.len(), 100_000);
    drop(tx);
    assert!(rx.iter().eq(0..100_000));
}

#[test]
fn rendezvous_basics() {
    let (tx, rx) = bounded::<u32>(0);
    assert_eq!(tx.capacity(), Some(0));
    assert!(tx.is_full() && tx.is_empty());
    assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    let out = runtime(1).block_on(|| {
        let rx2 = rx.clone();
        let h = pagurus::spawn(move || (0..10).map(|_| rx2.recv().unwrap()).collect::<Vec<_>>());
        for i in 0..10 {
            tx.send(i).unwrap();
            assert_eq!(tx.len(), 0);
        }
        h.join().unwrap()
    });
    assert_eq!(out, (0..10).collect::<Vec<_>>());
}

/// A rendezvous send completes only when a receiver has the value: try_send succeeds exactly
/// when a receiver waits.
#[test]
fn rendezvous_try_send_meets_a_waiting_receiver() {
    let rt = runtime(1);
    rt.block_on(|| {
        let (tx, rx) = bounded(0);
        let h = pagurus::spawn(move || rx.recv().unwrap());
        while let Err(TrySendError::Full(_)) = tx.try_send(7) {
            pagurus::yield_now(); // let the receiver reach its wait
        }
        assert_eq!(h.join().unwrap(), 7);
    });
}

/// Per sender, messages arrive in the order sent, whatever the interleaving.
#[test]
fn fifo_per_sender() {
    const SENDERS: usize = 8;
    const EACH: u64 = 2_000;
    for cap in [0, 1, 16] {
        let rt = runtime(2);
        let (tx, rx) = bounded::<(usize, u64)>(cap);
        let last = rt.block_on(|| {
            for s in 0..SENDERS {
                let tx = tx.clone();
                pagurus::spawn(move || (0..EACH).for_each(|i| tx.send((s, i)).unwrap()));
            }
            drop(tx);
            let mut next = [0u64; SENDERS];
            for (s, i) in rx.iter() {
                assert_eq!(i, next[s], "sender {s} out of order (cap {cap})");
                next[s] += 1;
            }
            next
        });
        assert_eq!(last, [EACH; SENDERS]);
    }
}

/// Many senders and receivers on two workers: every value arrives exactly once.
#[test]
fn mpmc_sums_exactly() {
    const SENDERS: u64 = 16;
    const RECEIVERS: usize = 16;
    const EACH: u64 = 5_000;
    for cap in [0, 4, 1024] {
        let rt = runtime(2);
        let (tx, rx) = bounded::<u64>(cap);
        let (sum, count) = rt.block_on(|| {
            let receivers: Vec<_> = (0..RECEIVERS)
                .map(|_| {
                    let rx = rx.clone();
                    pagurus::spawn(move || rx.iter().fold((0u64, 0u64), |(s, c), v| (s + v, c + 1)))
                })
                .collect();
            drop(rx);
            let senders: Vec<_> = (0..SENDERS)
                .map(|s| {
                    let tx = tx.clone();
                    pagurus::spawn(move || {
                        for i in 0..EACH {
                            tx.send(s * EACH + i).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            senders.into_iter().for_each(|h| h.join().unwrap());
            receivers
                .into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |(s, c), (s2, c2)| (s + s2, c + c2))
        });
        let n = SENDERS * EACH;
        assert_eq!(count, n, "cap {cap}");
        assert_eq!(sum, n * (n - 1) / 2, "cap {cap}");
    }
}

/// Unbounded MPMC: every value arrives once (checked by identity, not only by sum).
#[test]
fn unbounded_mpmc_every_value_once() {
    let rt = runtime(2);
    let (tx, rx) = unbounded::<u32>();
    let seen = rt.block_on(|| {
        let receivers: Vec<_> = (0..4)
            .map(|_| {
                let rx = rx.clone();
                pagurus::spawn(move || rx.iter().collect::<Vec<_>>())
            })
            .collect();
        for s in 0..4u32 {
            let tx = tx.clone();
            pagurus::spawn(move || (0..10_000).for_each(|i| tx.send(s * 10_000 + i).unwrap()));
        }
        drop(tx);
        receivers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(seen.len(), 40_000);
    assert_eq!(seen.into_iter().collect::<HashSet<_>>().len(), 40_000);
}

/// Plain threads send to coroutines and receive from them, over rendezvous and buffered
/// channels: both directions block the threads and park the coroutines.
#[test]
fn threads_and_coroutines_both_directions() {
    for cap in [0, 2] {
        let rt = runtime(2);
        let (to_co, from_thread) = bounded::<u64>(cap);
        let (to_thread, from_co) = bounded::<u64>(cap);
        let producer = thread::spawn(move || (0..1_000).for_each(|i| to_co.send(i).unwrap()));
        let consumer = thread::spawn(move || from_co.iter().sum::<u64>());
        rt.block_on(|| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let (rx, tx) = (from_thread.clone(), to_thread.clone());
                    pagurus::spawn(move || rx.iter().for_each(|v| tx.send(v * 2).unwrap()))
                })
                .collect();
            drop((from_thread, to_thread));
            workers.into_iter().for_each(|h| h.join().unwrap());
        });
        producer.join().unwrap();
        assert_eq!(consumer.join().unwrap(), 999 * 1_000, "cap {cap}");
    }
}

/// One thread and one coroutine ping-pong over two rendezvous channels.
#[test]
fn thread_coroutine_ping_pong() {
    let rt = runtime(1);
    let (ping_tx, ping_rx) = bounded::<u32>(0);
    let (pong_tx, pong_rx) = bounded::<u32>(0);
    let th = thread::spawn(move || {
        for i in 0..2_000 {
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv(), Ok(i + 1));
        }
    });
    rt.block_on(|| {
        pagurus::spawn(move || ping_rx.iter().for_each(|v| pong_tx.send(v + 1).unwrap()))
            .join()
            .unwrap();
    });
    th.join().unwrap();
}

/// Two plain threads, no runtime at all.
#[test]
fn thread_to_thread() {
    let (tx, rx) = bounded(0);
    let h = thread::spawn(move || (0..1_000).map(|_| rx.recv().unwrap()).sum::<u64>());
    for i in 0..1_000 {
        tx.send(i).unwrap();
    }
    assert_eq!(h.join().unwrap(), 999 * 500);
}

#[test]
fn disconnect_senders_gone() {
    // recv drains what is buffered, then fails; try_recv and recv_timeout say Disconnected.
    let (tx, rx) = bounded(4);
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    let tx2 = tx.clone();
    drop(tx);
    assert_eq!(rx.recv(), Ok(1)); // one sender left
    drop(tx2);
    assert_eq!(rx.recv(), Ok(2));
    assert_eq!(rx.recv(), Err(RecvError));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(RecvTimeoutError::Disconnected)
    );
    assert_eq!(rx.iter().next(), None);
}

#[test]
fn disconnect_receivers_gone() {
    let (tx, rx) = bounded(4);
    let rx2 = rx.clone();
    drop(rx);
    tx.send(1).unwrap(); // one receiver left
    drop(rx2);
    assert_eq!(tx.send(2), Err(SendError(2)));
    assert_eq!(tx.try_send(3), Err(TrySendError::Disconnected(3)));
    assert_eq!(
        tx.send_timeout(4, Duration::from_secs(10)),
        Err(SendTimeoutError::Disconnected(4))
    );
    // Values still buffered are dropped with the channel, not leaked.
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = unbounded();
    tx.send(DropCounter(drops.clone())).unwrap();
    drop(rx);
    assert_eq!(drops.load(SeqCst), 0);
    assert!(tx.send(DropCounter(drops.clone())).is_err()); // the value comes back, dropped here
    assert_eq!(drops.load(SeqCst), 1);
    drop(tx);
    assert_eq!(drops.load(SeqCst), 2);
}

/// Waiters blocked when the other side disconnects are woken with the error: receivers in recv
/// and recv_timeout, senders in send and send_timeout, coroutines and threads.
#[test]
fn disconnect_wakes_blocked_waiters() {
    let rt = runtime(2);
    rt.block_on(|| {
        let (tx, rx) = bounded::<u32>(0);
        let parked = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::new();
        for i in 0..4 {
            let (rx, p) = (rx.clone(), parked.clone());
            hs.push(pagurus::spawn(move || {
                p.fetch_add(1, SeqCst);
                if i % 2 == 0 {
                    rx.recv().is_err()
                } else {
                    rx.recv_timeout(Duration::from_secs(60)) == Err(RecvTimeoutError::Disconnected)
                }
            }));
        }
        let th = {
            let rx = rx.clone();
            thread::spawn(move || rx.recv())
        };
        wait_for(&parked, 4);
        pagurus::time::sleep(Duration::from_millis(20)); // let them reach their park
        drop(tx);
        assert!(hs.into_iter().all(|h| h.join().unwrap()));
        assert_eq!(th.join().unwrap(), Err(RecvError));

        let (tx, rx) = bounded::<u32>(1);
        tx.send(0).unwrap();
        let parked = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let (tx, p) = (tx.clone(), parked.clone());
                pagurus::spawn(move || {
                    p.fetch_add(1, SeqCst);
                    if i % 2 == 0 {
                        tx.send(i) == Err(SendError(i))
                    } else {
                        tx.send_timeout(i, Duration::from_secs(60))
                            == Err(SendTimeoutError::Disconnected(i))
                    }
                })
            })
            .collect();
        wait_for(&parked, 4);
        pagurus::time::sleep(Duration::from_millis(20));
        drop(rx);
        assert!(hs.into_iter().all(|h| h.join().unwrap()));
    });
}

#[test]
fn timeouts_that_fire() {
    let check = || {
        let (tx, rx) = bounded::<u8>(1);
        let start = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        tx.send(1).unwrap();
        let start = Instant::now();
        assert_eq!(
            tx.send_timeout(2, Duration::from_millis(20)),
            Err(SendTimeoutError::Timeout(2))
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        let deadline = Instant::now() + Duration::from_millis(5);
        assert!(rx.recv_deadline(deadline).is_ok()); // the buffered 1
        assert_eq!(rx.recv_deadline(deadline), Err(RecvTimeoutError::Timeout));
        assert!(Instant::now() >= deadline);
        // Zero and past deadlines still take what is ready.
        tx.send(3).unwrap();
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(3));
        assert_eq!(
            rx.recv_timeout(Duration::ZERO),
            Err(RecvTimeoutError::Timeout)
        );
    };
    check(); // on a thread
    runtime(1).block_on(check); // in a coroutine
    runtime(1).block_on(|| pagurus::spawn(check).join().unwrap());
}

#[test]
fn timeouts_that_do_not_fire() {
    let rt = runtime(2);
    rt.block_on(|| {
        let (tx, rx) = bounded::<u32>(0);
        let h = pagurus::spawn(move || {
            pagurus::time::sleep(Duration::from_millis(5));
            tx.send_timeout(1, Duration::from_secs(60)).unwrap();
            tx
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(1));
        let tx = h.join().unwrap();
        let h = pagurus::spawn(move || {
            pagurus::time::sleep(Duration::from_millis(5));
            rx.recv_timeout(Duration::from_secs(60))
        });
        assert_eq!(tx.send_timeout(2, Duration::from_secs(60)), Ok(()));
        assert_eq!(h.join().unwrap(), Ok(2));
        // Huge timeouts mean "for ever".
        let (tx, rx) = bounded(1);
        tx.send(5).unwrap();
        assert_eq!(rx.recv_timeout(Duration::MAX), Ok(5));
    });
}

/// A waiter that timed out is gone from the queue: a later send is not handed to it, and it
/// gets its unsent value back.
#[test]
fn timed_out_waiters_leave_the_queue() {
    let rt = runtime(1);
    rt.block_on(|| {
        let (tx, rx) = bounded::<u32>(0);
        assert!(rx.recv_timeout(Duration::from_millis(2)).is_err());
        assert_eq!(tx.try_send(1), Err(TrySendError::Full(1))); // nobody waits any more
        assert_eq!(
            tx.send_timeout(2, Duration::from_millis(2)),
            Err(SendTimeoutError::Timeout(2))
        );
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty)); // nobody offers any more
    });
}

/// A coroutine's stack grows (moves) between channel operations: nothing a channel keeps points
/// into it. The receiver deepens its stack by 256 KiB between two receives while the sender
/// waits for it on a rendezvous channel.
#[test]
fn stack_growth_between_operations() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(|| {
        let (tx, rx) = bounded::<Vec<u64>>(0);
        let (back_tx, back_rx) = bounded::<u64>(0);
        let h = pagurus::spawn(move || {
            let before = pagurus::stack::current().unwrap();
            let mut total = 0;
            let a = rx.recv().unwrap();
            pagurus::stack::ensure(256 * 1024);
            total += common::recurse_kib(64);
            let b = rx.recv().unwrap();
            back_tx
                .send(a.iter().sum::<u64>() + b.iter().sum::<u64>())
                .unwrap();
            let after = pagurus::stack::current().unwrap();
            (total, before.size, after.size)
        });
        tx.send(vec![1, 2, 3]).unwrap();
        tx.send(vec![4, 5]).unwrap();
        assert_eq!(back_rx.recv(), Ok(15));
        let (total, before, after) = h.join().unwrap();
        assert_eq!(total, 64 * 65 / 2);
        assert!(after >= 256 * 1024 && after > before, "{before} -> {after}");
    });
}

/// A coroutine parked in recv whose stack grew before it parked, with a select-free path:
/// the value is delivered to the moved coroutine.
#[test]
fn values_reach_a_coroutine_whose_stack_moved_before_it_parked() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| {
        let (tx, rx) = unbounded::<String>();
        let h = pagurus::spawn(move || {
            let mut got = Vec::new();
            for round in 0..4 {
                pagurus::stack::ensure((16 * 1024) << round);
                got.push(rx.recv().unwrap());
            }
            got
        });
        for i in 0..4 {
            pagurus::yield_now();
            tx.send(format!("m{i}")).unwrap();
        }
        assert_eq!(h.join().unwrap(), ["m0", "m1", "m2", "m3"]);
    });
}

/// Conservation under cancellation: senders and receivers parked on a small bounded channel when
/// the runtime is dropped. Every value a sender reported sent was either received by a
/// receiver that reported it, or is still in the channel.
#[test]
fn cancellation_conserves_values() {
    for cap in [0, 3] {
        let rt = runtime(2);
        let (tx, rx) = bounded::<u64>(cap);
        let sent = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let handles = rt.block_on(|| {
            let mut hs = Vec::new();
            for s in 0..20u64 {
                let (tx, sent, started) = (tx.clone(), sent.clone(), started.clone());
                hs.push(pagurus::spawn(move || {
                    started.fetch_add(1, SeqCst);
                    for i in 0.. {
                        tx.send(s * 1_000_000 + i).unwrap();
                        sent.fetch_add(1, SeqCst);
                    }
                }));
            }
            for r in 0..10 {
                let (rx, received, started) = (rx.clone(), received.clone(), started.clone());
                hs.push(pagurus::spawn(move || {
                    started.fetch_add(1, SeqCst);
                    loop {
                        // Receivers alternate between plain, timed and select receives, and stop
                        // for a while now and then, so senders pile up parked.
                        let got = match r % 3 {
                            0 => rx.recv().ok(),
                            1 => rx.recv_timeout(Duration::from_millis(1)).ok(),
                            _ => pagurus::select! {
                                recv(rx) -> v => v.ok(),
                                default(Duration::from_millis(1)) => None,
                            },
                        };
                        if got.is_some() {
                            let n = received.fetch_add(1, SeqCst);
                            if n % 1_000 == 0 {
                                pagurus::time::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                }));
            }
            hs
        });
        wait_for(&started, 30);
        while received.load(SeqCst) < 20_000 {
            thread::yield_now();
        }
        drop(rt);
        let cancelled = handles
            .into_iter()
            .map(|h| h.join())
            .filter(|r| {
                r.as_ref()
                    .is_err_and(|p| p.downcast_ref::<Cancelled>().is_some())
            })
            .count();
        assert_eq!(cancelled, 30, "cap {cap}: every coroutine was cancelled");
        let queued = rx.try_iter().count();
        assert_eq!(
            received.load(SeqCst) + queued,
            sent.load(SeqCst),
            "cap {cap}: received + still queued == sent"
        );
    }
}

/// Dropping a runtime with coroutines parked in channel operations cancels them: their
/// destructors run and their joins return `Err(Cancelled)`; the channel works afterwards.
#[test]
fn dropping_runtime_cancels_parked_channel_ops() {
    let rt = runtime(2);
    let drops = Arc::new(AtomicUsize::new(0));
    let parked = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = bounded::<DropCounter>(0);
    let (_keep_tx, never_rx) = unbounded::<u8>();
    let handles = rt.block_on(|| {
        let mut hs = Vec::new();
        for i in 0..12 {
            let (tx, rx, never_rx) = (tx.clone(), rx.clone(), never_rx.clone());
            let (drops, parked) = (drops.clone(), parked.clone());
            hs.push(pagurus::spawn(move || {
                let _guard = DropCounter(drops.clone());
                parked.fetch_add(1, SeqCst);
                match i % 4 {
                    0 => drop(never_rx.recv()),
                    1 => drop(tx.send(DropCounter(drops))), // rendezvous: nobody receives
                    2 => drop(never_rx.recv_timeout(Duration::from_secs(3600))),
                    _ => pagurus::select! {
                        recv(never_rx) -> _ => {},
                        send(tx, DropCounter(drops)) -> _ => {},
                    },
                }
                drop(rx);
            }));
        }
        hs
    });
    wait_for(&parked, 12);
    thread::sleep(Duration::from_millis(50)); // let them reach their parks
    drop(rt);
    // 12 guards, plus the 6 values of the senders (3 sends, 3 select send arms), dropped by the
    // unwind after they were taken back from the channel.
    assert_eq!(drops.load(SeqCst), 12 + 6);
    for h in handles {
        let err = h.join().unwrap_err();
        assert!(err.downcast_ref::<Cancelled>().is_some());
    }
    // Nobody is left in the queues: a send finds no receiver.
    assert!(matches!(
        tx.try_send(DropCounter(drops.clone())),
        Err(TrySendError::Full(_))
    ));
    drop(rx);
}

#[test]
fn senders_and_receivers_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<pagurus::channel::Sender<String>>();
    check::<pagurus::channel::Receiver<String>>();
    check::<pagurus::channel::Receiver<Instant>>();
    fn error<E: std::error::Error + Send + Sync + 'static>() {}
    error::<SendError<u8>>();
    error::<TrySendError<u8>>();
    error::<SendTimeoutError<u8>>();
    error::<RecvError>();
    error::<TryRecvError>();
    error::<RecvTimeoutError>();
    assert_eq!(
        SendError(1).to_string(),
        "sending on a disconnected channel"
    );
    assert_eq!(format!("{:?}", TrySendError::Full(1)), "Full(..)");
    assert_eq!(
        TrySendError::from(SendError(3)),
        TrySendError::Disconnected(3)
    );
    assert_eq!(TryRecvError::from(RecvError), TryRecvError::Disconnected);
}

#[test]
fn iterators() {
    let (tx, rx) = unbounded();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.try_iter().take(2).collect::<Vec<_>>(), [0, 1]);
    let mut seen = Vec::new();
    drop(tx);
    for v in &rx {
        seen.push(v);
    }
    assert_eq!(seen, [2, 3, 4]);
    let (tx, rx) = unbounded();
    tx.send(9).unwrap();
    drop(tx);
    assert_eq!(rx.into_iter().collect::<Vec<_>>(), [9]);
}
