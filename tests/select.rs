//! `select!`: every arm kind, time arms, fairness among ready arms, disconnection, threads and
//! coroutines, giving up without losing anything.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use pagurus::Runtime;
use pagurus::channel::{RecvError, SendError, after, bounded, never, tick, unbounded};
use pagurus::select;

fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

#[test]
fn recv_arms_pick_the_ready_one() {
    let (tx1, rx1) = unbounded::<u32>();
    let (_tx2, rx2) = unbounded::<&str>();
    tx1.send(7).unwrap();
    let got = select! {
        recv(rx1) -> v => v.unwrap(),
        recv(rx2) -> _ => panic!("rx2 has nothing"),
    };
    assert_eq!(got, 7);
}

#[test]
fn send_arms() {
    let (tx1, rx1) = bounded::<u32>(0);
    let (tx2, rx2) = bounded::<u32>(1);
    // tx1 has no receiver waiting, tx2 has room: only the second arm can complete, and the
    // first arm's message is dropped.
    let which = select! {
        send(tx1, 1) -> _ => 1,
        send(tx2, 2) -> res => { res.unwrap(); 2 }
    };
    assert_eq!(which, 2);
    assert_eq!(rx2.try_recv(), Ok(2));
    assert!(rx1.try_recv().is_err());
    // A send arm waits for a receiver.
    let rt = runtime(2);
    rt.block_on(|| {
        let h = pagurus::spawn(move || rx1.recv().unwrap());
        let r = select! {
            send(tx1, 42) -> res => res,
        };
        assert_eq!(r, Ok(()));
        assert_eq!(h.join().unwrap(), 42);
    });
}

#[test]
fn default_runs_when_nothing_is_ready() {
    let (tx, rx) = bounded::<u8>(0);
    let mut defaults = 0;
    for _ in 0..3 {
        select! {
            recv(rx) -> _ => panic!("nothing to receive"),
            send(tx, 1) -> _ => panic!("nobody receives"),
            default => defaults += 1,
        }
    }
    assert_eq!(defaults, 3);
    // A ready arm wins over default.
    let (tx, rx) = unbounded();
    tx.send(()).unwrap();
    let got = select! {
        recv(rx) -> v => v.is_ok(),
        default => false,
    };
    assert!(got);
    // Only a default.
    let x = select! { default => 5 };
    assert_eq!(x, 5);
}

#[test]
fn default_with_timeout_fires_after_its_duration() {
    let check = || {
        let (_tx, rx) = unbounded::<u8>();
        let start = Instant::now();
        let timed_out = select! {
            recv(rx) -> _ => false,
            default(Duration::from_millis(20)) => true,
        };
        assert!(timed_out);
        assert!(start.elapsed() >= Duration::from_millis(20));
    };
    check();
    runtime(1).block_on(check);
    runtime(2).block_on(|| pagurus::spawn(check).join().unwrap());
}

#[test]
fn default_with_timeout_that_does_not_fire() {
    let rt = runtime(2);
    rt.block_on(|| {
        let (tx, rx) = bounded(0);
        pagurus::spawn(move || {
            pagurus::time::sleep(Duration::from_millis(5));
            tx.send("late but in time").unwrap();
        });
        let got = select! {
            recv(rx) -> v => v.unwrap(),
            default(Duration::from_secs(60)) => "timed out",
        };
        assert_eq!(got, "late but in time");
    });
}

/// A `select!` whose `default(dur)` won has left every queue: nothing is handed to it later, and
/// a send arm's value is not delivered.
#[test]
fn a_select_that_timed_out_left_every_queue() {
    let (tx, rx) = bounded::<u32>(0);
    let (tx2, rx2) = bounded::<u32>(0);
    let r = select! {
        recv(rx) -> _ => 0,
        send(tx2, 9) -> _ => 1,
        default(Duration::from_millis(2)) => 2,
    };
    assert_eq!(r, 2);
    assert!(tx.try_send(1).is_err(), "no receiver is left in rx's queue");
    assert!(rx2.try_recv().is_err(), "no sender is left in tx2's queue");
}

#[test]
fn after_and_tick_inside_select() {
    let check = || {
        let (_tx, rx) = unbounded::<u8>();
        let start = Instant::now();
        let timeout = after(Duration::from_millis(15));
        let fired = select! {
            recv(rx) -> _ => None,
            recv(timeout) -> at => Some(at.unwrap()),
        };
        let due = fired.expect("the after arm fires");
        assert!(due >= start + Duration::from_millis(15));
        assert!(Instant::now() >= due);

        // A ticker arm fires repeatedly; a far-away after arm never does.
        let ticker = tick(Duration::from_millis(3));
        let far = after(Duration::from_secs(3600));
        let start = Instant::now();
        let mut ticks = 0;
        while ticks < 5 {
            select! {
                recv(ticker) -> t => { assert!(t.is_ok()); ticks += 1; }
                recv(far) -> _ => panic!("an hour passed"),
            }
        }
        assert!(start.elapsed() >= Duration::from_millis(15));
        // A received after() message is not delivered again.
        let once = after(Duration::ZERO);
        assert!(once.recv().is_ok());
        let again = select! {
            recv(once) -> _ => true,
            default(Duration::from_millis(5)) => false,
        };
        assert!(!again);
    };
    check();
    runtime(1).block_on(check);
    runtime(2).block_on(|| pagurus::spawn(check).join().unwrap());
}

/// Two always-ready arms: each wins between 30% and 70% of 10,000 selects. The same for three
/// arms (each 20-47%), where a rotating start would be biased.
#[test]
fn fairness_among_ready_arms() {
    let (tx1, rx1) = unbounded::<()>();
    let (tx2, rx2) = unbounded::<()>();
    let (tx3, rx3) = unbounded::<()>();
    for _ in 0..10_000 {
        tx1.send(()).unwrap();
        tx2.send(()).unwrap();
    }
    let mut wins = [0usize; 2];
    for _ in 0..10_000 {
        select! {
            recv(rx1) -> _ => wins[0] += 1,
            recv(rx2) -> _ => wins[1] += 1,
        }
    }
    for w in wins {
        assert!((3_000..=7_000).contains(&w), "two arms: {wins:?}");
    }
    drop((tx1, tx2));
    // Disconnected channels are always ready too (their arms complete with an error).
    let mut wins = [0usize; 3];
    drop(tx3);
    let (tx1, rx1) = bounded::<()>(0);
    drop(tx1);
    let (tx2, rx2) = bounded::<()>(0);
    drop(tx2);
    for _ in 0..10_000 {
        select! {
            recv(rx1) -> r => { assert_eq!(r, Err(RecvError)); wins[0] += 1 }
            recv(rx2) -> r => { assert_eq!(r, Err(RecvError)); wins[1] += 1 }
            recv(rx3) -> r => { assert_eq!(r, Err(RecvError)); wins[2] += 1 }
        }
    }
    for w in wins {
        assert!((2_000..=4_700).contains(&w), "three arms: {wins:?}");
    }
    // And in a coroutine, with send arms.
    runtime(1).block_on(|| {
        let (tx1, rx1) = unbounded::<u8>();
        let (tx2, rx2) = unbounded::<u8>();
        for _ in 0..10_000 {
            select! {
                send(tx1, 1) -> r => r.unwrap(),
                send(tx2, 2) -> r => r.unwrap(),
            }
        }
        let n1 = rx1.len();
        assert_eq!(n1 + rx2.len(), 10_000);
        assert!((3_000..=7_000).contains(&n1), "send arms: {n1}");
    });
}

#[test]
fn disconnected_arms_complete_with_errors() {
    let (tx, rx) = bounded::<u8>(1);
    drop(rx);
    let r = select! {
        send(tx, 3) -> r => r,
    };
    assert_eq!(r, Err(SendError(3)));
    let (tx, rx) = bounded::<u8>(1);
    tx.send(1).unwrap();
    drop(tx);
    let first = select! { recv(rx) -> r => r };
    let second = select! { recv(rx) -> r => r };
    assert_eq!((first, second), (Ok(1), Err(RecvError)));
}

/// Waiting selects are woken by a disconnection of any of their channels.
#[test]
fn disconnection_wakes_a_waiting_select() {
    let rt = runtime(2);
    rt.block_on(|| {
        let (tx1, rx1) = bounded::<u8>(0);
        let (tx2, rx2) = bounded::<u8>(0);
        let h = pagurus::spawn(move || {
            select! {
                recv(rx1) -> r => (1, r),
                recv(rx2) -> r => (2, r),
            }
        });
        pagurus::time::sleep(Duration::from_millis(10));
        drop(tx2);
        assert_eq!(h.join().unwrap(), (2, Err(RecvError)));
        drop(tx1);
    });
}

/// Many coroutines select over several channels at once, receiving and sending; threads feed
/// and drain them. Every value is accounted for exactly once.
#[test]
fn many_selects_account_for_every_value() {
    const N: u64 = 20_000;
    let rt = runtime(2);
    let (in1_tx, in1_rx) = bounded::<u64>(0);
    let (in2_tx, in2_rx) = bounded::<u64>(4);
    let (out_tx, out_rx) = bounded::<u64>(0);
    let (side_tx, side_rx) = unbounded::<u64>();
    let feeders: Vec<_> = [in1_tx, in2_tx]
        .into_iter()
        .enumerate()
        .map(|(k, tx)| {
            thread::spawn(move || {
                for i in 0..N / 2 {
                    tx.send(i * 2 + k as u64).unwrap();
                }
            })
        })
        .collect();
    let drain = thread::spawn(move || out_rx.iter().fold((0u64, 0u64), |(s, c), v| (s + v, c + 1)));
    rt.block_on(|| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (in1, in2, out, side) = (
                    in1_rx.clone(),
                    in2_rx.clone(),
                    out_tx.clone(),
                    side_tx.clone(),
                );
                pagurus::spawn(move || {
                    let (mut in1_open, mut in2_open) = (true, true);
                    while in1_open || in2_open {
                        let v = select! {
                            recv(if in1_open { in1.clone() } else { never() }) -> v => match v {
                                Ok(v) => v,
                                Err(_) => { in1_open = false; continue; }
                            },
                            recv(if in2_open { in2.clone() } else { never() }) -> v => match v {
                                Ok(v) => v,
                                Err(_) => { in2_open = false; continue; }
                            },
                        };
                        // Send it on, or to the side channel if the drain is slow.
                        select! {
                            send(out, v) -> r => r.unwrap(),
                            default(Duration::from_micros(50)) => side.send(v).unwrap(),
                        }
                    }
                })
            })
            .collect();
        drop((in1_rx, in2_rx, out_tx, side_tx));
        hs.into_iter().for_each(|h| h.join().unwrap());
    });
    feeders.into_iter().for_each(|f| f.join().unwrap());
    let (sum, count) = drain.join().unwrap();
    let side: Vec<u64> = side_rx.try_iter().collect();
    assert_eq!(count + side.len() as u64, N);
    assert_eq!(sum + side.iter().sum::<u64>(), N * (N - 1) / 2);
}

/// A select with a send arm and a receive arm on the same rendezvous channel cannot meet itself.
#[test]
fn a_select_does_not_pair_with_itself() {
    let (tx, rx) = bounded::<u8>(0);
    let r = select! {
        send(tx, 1) -> _ => "sent",
        recv(rx) -> _ => "received",
        default(Duration::from_millis(5)) => "nobody else",
    };
    assert_eq!(r, "nobody else");
}

/// Arms are evaluated once, in order; bodies may break and continue; block bodies need no comma.
#[test]
fn macro_syntax() {
    let (tx, rx) = unbounded::<u32>();
    let order = Arc::new(AtomicUsize::new(0));
    let mark = |n: usize| {
        assert_eq!(order.fetch_add(1, SeqCst), n);
    };
    let mut seen = Vec::new();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    drop(tx);
    loop {
        select! {
            recv({ mark(seen.len() * 2); &rx }) -> v => {
                match v {
                    Ok(v) if v % 2 == 0 => { seen.push(v); continue }
                    Ok(v) => seen.push(v),
                    Err(_) => break,
                }
            }
            recv({ mark(seen.len() * 2 + 1); never::<u32>() }) -> _ => unreachable!()
        }
    }
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    let (tx, rx) = unbounded();
    let r = select! {
        send(tx, 1) -> r => r.is_ok(),
        recv(rx) -> _ => false,
        default(Duration::from_secs(1)) => false
    };
    assert!(r);
}

/// Dropping the runtime while coroutines wait in selects cancels them and leaves nothing in the
/// queues: a value sent afterwards stays in the channel for the test thread.
#[test]
fn cancelled_selects_leave_the_queues() {
    let rt = runtime(2);
    let (tx, rx) = bounded::<u32>(0);
    let (tx_b, rx_b) = bounded::<u32>(0);
    let waiting = Arc::new(AtomicUsize::new(0));
    let hs = rt.block_on(|| {
        (0..10)
            .map(|i| {
                let (rx, tx_b, waiting) = (rx.clone(), tx_b.clone(), waiting.clone());
                pagurus::spawn(move || {
                    waiting.fetch_add(1, SeqCst);
                    select! {
                        recv(rx) -> _ => {},
                        send(tx_b, i) -> _ => {},
                        recv(after(Duration::from_secs(3600))) -> _ => {},
                    }
                })
            })
            .collect::<Vec<_>>()
    });
    common::wait_for(&waiting, 10);
    thread::sleep(Duration::from_millis(30));
    drop(rt);
    for h in hs {
        assert!(
            h.join()
                .unwrap_err()
                .downcast_ref::<pagurus::Cancelled>()
                .is_some()
        );
    }
    assert!(tx.try_send(1).is_err(), "no cancelled receiver is left");
    assert!(rx_b.try_recv().is_err(), "no cancelled sender is left");
}
