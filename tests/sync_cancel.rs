//! Cancellation loses nothing: a runtime dropped while coroutines wait on every `sync` primitive
//! (and on a future in `future::block_on`) cancels them cleanly (destructors run, `join` gives
//! `Err(Cancelled)`), and afterwards each primitive is fully usable from the test thread: no
//! waiter left in a queue, no lock or permit leaked, also when the lock or permit had already
//! been handed to the waiter when it learned of the cancellation.
//!
//! Reads the process-wide `stats()`, so this file holds exactly one test.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

use common::{DropCounter, wait_for};
use pagurus::sync::{Condvar, Mutex, RwLock, Semaphore, WaitGroup};
use pagurus::{Cancelled, JoinHandle, Runtime, stats};

fn runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .initial_stack_size(64 * 1024)
        .build()
        .unwrap()
}

fn assert_cancelled<T: std::fmt::Debug + Send + 'static>(h: JoinHandle<T>) {
    match h.join() {
        Ok(v) => panic!("expected Cancelled, got Ok({v:?})"),
        Err(payload) => assert_eq!(payload.downcast_ref::<Cancelled>(), Some(&Cancelled)),
    }
}

#[test]
fn cancelled_waiters_leave_every_primitive_usable() {
    let before = stats();
    normal_use();
    queued_waiters_are_removed();
    granted_waiters_pass_on_what_they_were_handed();
    let after = stats();
    assert_eq!(after.live, before.live, "{before:?} -> {after:?}");
    assert_eq!(after.stack_bytes_reserved, before.stack_bytes_reserved);
}

/// Waiting and waking in every primitive, completed normally: nothing stays alive afterwards.
fn normal_use() {
    let rt = runtime(2);
    let mutex = Arc::new(Mutex::new(0u32));
    let sem = Arc::new(Semaphore::new(2));
    let rwlock = Arc::new(RwLock::new(0u32));
    let cond = Arc::new((Mutex::new(0u32), Condvar::new()));
    let wg = WaitGroup::new();
    rt.block_on(|| {
        wg.add(1_000);
        for i in 0..1_000 {
            let (mutex, sem, rwlock, cond, wg) = (
                mutex.clone(),
                sem.clone(),
                rwlock.clone(),
                cond.clone(),
                wg.clone(),
            );
            pagurus::spawn(move || {
                let permit = sem.acquire();
                *mutex.lock() += 1;
                if i % 10 == 0 {
                    *rwlock.write() += 1;
                } else {
                    drop(rwlock.read());
                }
                *cond.0.lock() += 1;
                cond.1.notify_all();
                let (tx, rx) = async_channel::bounded(1);
                let h = pagurus::spawn(move || pagurus::future::block_on(tx.send(i)).unwrap());
                assert_eq!(pagurus::future::block_on(rx.recv()), Ok(i));
                h.join().unwrap();
                drop(permit);
                wg.done();
            });
        }
        drop(cond.1.wait_while(cond.0.lock(), |n| *n < 1_000));
        wg.wait();
    });
    assert_eq!(*mutex.lock(), 1_000);
    assert_eq!(*rwlock.read(), 100);
    assert_eq!(sem.available_permits(), 2);
}

/// Waiters still queued when the runtime goes: each removes itself.
fn queued_waiters_are_removed() {
    let rt = runtime(2);
    let mutex = Arc::new(Mutex::new(0u32));
    let rwlock = Arc::new(RwLock::new(0u32));
    let sem = Arc::new(Semaphore::new(2));
    let cond = Arc::new((Mutex::new(false), Condvar::new()));
    let wg = WaitGroup::new();
    let (tx, rx) = async_channel::unbounded::<u32>();
    let drops = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));

    // The test thread holds everything the coroutines will wait for.
    let mutex_guard = mutex.lock();
    let write_guard = rwlock.write();
    let permits = (sem.acquire(), sem.acquire());
    wg.add(1);

    let handles: Vec<JoinHandle<()>> = rt.block_on(|| {
        let mut hs = Vec::new();
        let mut spawn = |f: Box<dyn FnOnce() + Send>| {
            let (drops, started) = (drops.clone(), started.clone());
            hs.push(pagurus::spawn(move || {
                let _guard = DropCounter(drops);
                started.fetch_add(1, SeqCst);
                f();
            }));
        };
        for _ in 0..3 {
            let m = mutex.clone();
            spawn(Box::new(move || *m.lock() += 1));
            let l = rwlock.clone();
            spawn(Box::new(move || drop(l.read())));
            let l = rwlock.clone();
            spawn(Box::new(move || *l.write() += 1));
            let s = sem.clone();
            spawn(Box::new(move || drop(s.acquire())));
            let c = cond.clone();
            spawn(Box::new(move || {
                drop(c.1.wait_while(c.0.lock(), |ready| !*ready))
            }));
            let w = wg.clone();
            spawn(Box::new(move || w.wait()));
            let r = rx.clone();
            spawn(Box::new(move || {
                let _ = pagurus::future::block_on(r.recv());
            }));
        }
        hs
    });
    wait_for(&started, handles.len());
    // Let the last ones reach their park (a coroutine still running when the drop comes is
    // cancelled at its park all the same).
    thread::sleep(Duration::from_millis(50));
    drop(rt);

    assert_eq!(drops.load(SeqCst), handles.len(), "every destructor ran");
    for h in handles {
        assert_cancelled(h);
    }

    // Everything works from the test thread, with the queues empty.
    drop(mutex_guard);
    *mutex.try_lock().expect("the mutex is free") += 1;
    assert_eq!(*mutex.lock(), 1, "no cancelled waiter got the lock");
    drop(write_guard);
    drop(rwlock.try_write().expect("the rwlock is free"));
    let (r1, r2) = (rwlock.try_read().unwrap(), rwlock.try_read().unwrap());
    drop((r1, r2));
    assert_eq!(*rwlock.read(), 0);
    drop(permits);
    assert_eq!(sem.available_permits(), 2, "all permits available");
    let both = (sem.try_acquire().unwrap(), sem.try_acquire().unwrap());
    assert!(sem.try_acquire().is_none());
    drop(both);
    assert_eq!(format!("{:?}", cond.1), "Condvar { waiters: 0 }");
    *cond.0.lock() = true;
    cond.1.notify_all();
    wg.done();
    wg.wait();
    assert_eq!(wg.count(), 0);
    tx.send_blocking(7).unwrap();
    assert_eq!(rx.try_recv(), Ok(7), "no cancelled future took the value");
}

/// Waiters that were already handed something when their runtime went: a semaphore permit,
/// read access, or (the mutex) the turn to look. The one worker is kept busy by a coroutine that
/// never yields while the test thread hands these over, so the waiters' wake-ups wait in the
/// worker's inbox; the runtime's drop queues its shutdown behind them, and the worker, draining
/// its inbox, cancels the waiters before it ever runs them. Each must pass on what it got.
fn granted_waiters_pass_on_what_they_were_handed() {
    let rt = runtime(1);
    let mutex = Arc::new(Mutex::new(0u32));
    let rwlock = Arc::new(RwLock::new(0u32));
    let sem = Arc::new(Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let busy = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));

    let mutex_guard = mutex.lock();
    let write_guard = rwlock.write();
    let waiters: Vec<JoinHandle<u32>> = rt.block_on(|| {
        let (m, l, s) = (mutex.clone(), rwlock.clone(), sem.clone());
        let st = [started.clone(), started.clone(), started.clone()];
        let [a, b, c] = st;
        vec![
            pagurus::spawn(move || {
                a.fetch_add(1, SeqCst);
                let g = m.lock();
                *g
            }),
            pagurus::spawn(move || {
                b.fetch_add(1, SeqCst);
                let g = l.read();
                *g
            }),
            pagurus::spawn(move || {
                c.fetch_add(1, SeqCst);
                std::mem::forget(s.acquire()); // would keep it: the test sees if it ran
                1
            }),
        ]
    });
    wait_for(&started, 3);
    thread::sleep(Duration::from_millis(50)); // they park
    let spinner = {
        let (busy, release) = (busy.clone(), release.clone());
        rt.block_on(|| {
            pagurus::spawn(move || {
                busy.store(true, SeqCst);
                while !release.load(SeqCst) {
                    std::hint::spin_loop(); // never yields: the worker is stuck here
                }
            })
        })
    };
    while !busy.load(SeqCst) {
        thread::yield_now();
    }
    // Hand things over while the worker cannot run the waiters.
    sem.add_permits(1); // granted to the waiter
    drop(write_guard); // read access granted to the waiter
    drop(mutex_guard); // the waiter is told to look
    let releaser = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        release.store(true, SeqCst);
    });
    drop(rt); // queues the shutdown behind the wake-ups; the spinner ends when released
    releaser.join().unwrap();
    spinner.join().unwrap();
    for h in waiters {
        assert_cancelled(h);
    }
    assert_eq!(sem.available_permits(), 1, "the granted permit came back");
    assert!(
        rwlock.try_write().is_some(),
        "the granted read access was released"
    );
    assert!(mutex.try_lock().is_some(), "the mutex is free");
}
