//! `future::block_on`: runtime-independent async code (here `async-channel`) from coroutines and
//! threads; the waiting coroutine parks, its worker runs others.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use pagurus::Runtime;
use pagurus::future::block_on;

fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

/// A coroutine awaits a value a plain thread sends later.
#[test]
fn coroutine_awaits_a_value_from_a_thread() {
    let rt = runtime(2);
    let (tx, rx) = async_channel::bounded::<u64>(1);
    let h = rt.block_on(|| pagurus::spawn(move || block_on(rx.recv()).unwrap() * 2));
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        tx.send_blocking(21).unwrap();
    });
    assert_eq!(h.join().unwrap(), 42);
    sender.join().unwrap();
}

/// Two coroutines on ONE worker ping-pong over async channels: if awaiting blocked the worker
/// instead of parking the coroutine, the other could never run and this would hang.
#[test]
fn coroutines_ping_pong_over_async_channels() {
    for workers in [1, 2] {
        let rt = runtime(workers);
        let (ping_tx, ping_rx) = async_channel::bounded::<u32>(1);
        let (pong_tx, pong_rx) = async_channel::bounded::<u32>(1);
        let total = rt.block_on(|| {
            let echo = pagurus::spawn(move || {
                let mut n = 0;
                while let Ok(v) = block_on(ping_rx.recv()) {
                    block_on(pong_tx.send(v + 1)).unwrap();
                    n += 1;
                }
                n
            });
            let player = pagurus::spawn(move || {
                let mut sum = 0u64;
                for i in 0..1_000 {
                    block_on(ping_tx.send(i)).unwrap();
                    sum += u64::from(block_on(pong_rx.recv()).unwrap());
                }
                sum
            });
            let sum = player.join().unwrap();
            assert_eq!(
                echo.join().unwrap(),
                1_000,
                "echo ends when the sender is dropped"
            );
            sum
        });
        assert_eq!(total, (1..=1_000).sum::<u64>(), "{workers} worker(s)");
    }
}

/// A plain thread blocks on a future a coroutine completes.
#[test]
fn thread_awaits_a_value_from_a_coroutine() {
    let rt = runtime(1);
    let (tx, rx) = async_channel::unbounded::<&'static str>();
    let h = rt.block_on(|| {
        pagurus::spawn(move || {
            pagurus::time::sleep(Duration::from_millis(10));
            block_on(tx.send("from a coroutine")).unwrap();
        })
    });
    assert_eq!(block_on(rx.recv()), Ok("from a coroutine"));
    h.join().unwrap();
}

/// The future may borrow the caller's locals, and deep polls run on the system stack: a 4 KiB
/// coroutine polls a future that needs 256 KiB of stack without growing.
#[test]
fn futures_borrow_locals_and_poll_deep() {
    let rt = runtime(1); // default 4 KiB initial stacks
    let (size, sum) = rt.block_on(|| {
        pagurus::spawn(|| {
            let local = vec![1u64, 2, 3];
            let (tx, rx) = async_channel::bounded::<u64>(4);
            let sum = block_on(async {
                for v in &local {
                    tx.send(*v).await.unwrap();
                }
                // Not held across an await, so not part of the future (which is moved by value).
                let mut sum = {
                    let big = std::hint::black_box([7u8; 256 * 1024]);
                    u64::from(big[1000])
                };
                for _ in 0..local.len() {
                    sum += rx.recv().await.unwrap();
                }
                sum
            });
            (pagurus::stack::current().unwrap().size, sum)
        })
        .join()
        .unwrap()
    });
    assert_eq!(sum, 13);
    assert!(
        size < 256 * 1024,
        "the coroutine stack grew to {size} bytes: the poll ran on it?"
    );
}

/// A future that wakes itself and returns `Pending` a few times (a cooperative yield), or wakes
/// from another thread after it completed, is fine.
#[test]
fn self_waking_and_late_wakes() {
    struct YieldTimes(u32, Arc<StdMutex<Option<Waker>>>);
    impl Future for YieldTimes {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            *self.1.lock().unwrap() = Some(cx.waker().clone());
            if self.0 == 0 {
                return Poll::Ready(7);
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    let rt = runtime(1);
    let slot = Arc::new(StdMutex::new(None));
    let s = slot.clone();
    let v = rt.block_on(|| {
        pagurus::spawn(move || block_on(YieldTimes(100, s)))
            .join()
            .unwrap()
    });
    assert_eq!(v, 7);
    let waker = slot.lock().unwrap().take().unwrap();
    waker.wake(); // the coroutine is gone: nothing happens
    assert_eq!(block_on(YieldTimes(3, slot.clone())), 7); // on a plain thread
}

/// A panic in the future resumes in the caller of `block_on`, after the future is dropped.
#[test]
fn panics_propagate_and_drop_the_future() {
    let drops = Arc::new(AtomicUsize::new(0));
    let rt = runtime(1);
    let d = drops.clone();
    let err = rt.block_on(|| {
        pagurus::spawn(move || {
            let guard = common::DropCounter(d);
            block_on(async move {
                let _guard = guard;
                panic!("in the future");
            })
        })
        .join()
        .unwrap_err()
    });
    assert_eq!(
        common::panic_message(&*err).as_deref(),
        Some("in the future")
    );
    assert_eq!(drops.load(SeqCst), 1);
}

/// Code inside the future must not park the coroutine: it runs on the system stack, and says so.
#[test]
fn parking_inside_a_polled_future_panics_with_a_message() {
    let rt = runtime(1);
    let err = rt.block_on(|| {
        pagurus::spawn(|| {
            let m = pagurus::sync::Mutex::new(());
            let _held = m.lock();
            block_on(async { drop(m.lock()) })
        })
        .join()
        .unwrap_err()
    });
    let msg = common::panic_message(&*err).unwrap();
    assert!(msg.contains("system stack"), "{msg}");
}
