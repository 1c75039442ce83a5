//! Locks and coordination (`pagurus::sync`) from coroutines, from plain threads, and mixed.
//!
//! No timing assertions except lower bounds; every wait ends on a condition.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use common::wait_for;
use pagurus::Runtime;
use pagurus::sync::{Condvar, Mutex, RwLock, Semaphore, WaitGroup};

fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Mutex

/// 1,000 coroutines on 2 workers each add 1 a hundred times; a coroutine yields while holding
/// the lock now and then, so others really queue. The total is exact.
#[test]
fn mutex_counts_exactly_under_contention() {
    let rt = runtime(2);
    let counter = Arc::new(Mutex::new(0u64));
    rt.block_on(|| {
        let handles: Vec<_> = (0..1_000)
            .map(|i| {
                let counter = counter.clone();
                pagurus::spawn(move || {
                    for j in 0..100 {
                        let mut n = counter.lock();
                        let seen = *n;
                        if (i + j) % 17 == 0 {
                            pagurus::yield_now(); // hold it across a switch
                        }
                        *n = seen + 1;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_eq!(*counter.lock(), 100_000);
}

#[test]
fn mutex_try_lock_get_mut_into_inner() {
    let mut m = Mutex::new(vec![1]);
    {
        let g = m.try_lock().expect("free");
        assert!(m.try_lock().is_none(), "held");
        assert_eq!(*g, [1]);
    }
    m.try_lock().expect("free again").push(2);
    m.get_mut().push(3);
    assert_eq!(format!("{m:?}"), "Mutex { data: [1, 2, 3], .. }");
    let g = m.lock();
    assert_eq!(format!("{g:?}"), "[1, 2, 3]");
    drop(g);
    assert_eq!(m.into_inner(), [1, 2, 3]);
    assert_eq!(*Mutex::<u8>::default().lock(), 0);
}

/// A thread waits for a lock a coroutine holds, and a coroutine waits for one a thread holds.
#[test]
fn mutex_between_threads_and_coroutines() {
    let rt = runtime(2);
    let m = Arc::new(Mutex::new(0u32));
    let held = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));

    // Coroutine holds, thread waits.
    let h = {
        let (m, held, release) = (m.clone(), held.clone(), release.clone());
        rt.block_on(|| {
            pagurus::spawn(move || {
                let mut g = m.lock();
                held.store(true, SeqCst);
                common::spin_until(&release);
                *g += 1;
            })
        })
    };
    while !held.load(SeqCst) {
        thread::yield_now();
    }
    let waiter = {
        let m = m.clone();
        thread::spawn(move || {
            let mut g = m.lock();
            *g += 10;
            *g
        })
    };
    thread::sleep(Duration::from_millis(20));
    release.store(true, SeqCst);
    assert_eq!(
        waiter.join().unwrap(),
        11,
        "the thread ran after the coroutine"
    );
    h.join().unwrap();

    // Thread holds, coroutines wait.
    let g = m.lock();
    let waiting = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = rt.block_on(|| {
        (0..4)
            .map(|_| {
                let (m, waiting) = (m.clone(), waiting.clone());
                pagurus::spawn(move || {
                    waiting.fetch_add(1, SeqCst);
                    *m.lock() += 100;
                })
            })
            .collect()
    });
    wait_for(&waiting, 4);
    thread::sleep(Duration::from_millis(20));
    assert_eq!(*g, 11, "nobody got in while the thread held it");
    drop(g);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(*m.lock(), 411);
}

/// Coroutines and threads hammer one mutex together.
#[test]
fn mutex_mixed_hammering() {
    let rt = runtime(2);
    let m = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let m = m.clone();
            thread::spawn(move || {
                for _ in 0..20_000 {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    rt.block_on(|| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                pagurus::spawn(move || {
                    for i in 0..5_000 {
                        *m.lock() += 1;
                        if i % 100 == 0 {
                            pagurus::yield_now();
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(), 80_000);
}

/// Two coroutines on one worker re-lock in a loop and yield while holding the lock, so a
/// barging mutex would always have one of them first in line and the lock never free when
/// anyone else looks: a third waiter (a coroutine, then a thread, in turn) would never get it.
/// The hand-off mode gives it the lock after about a millisecond. Each acquisition must happen
/// while the hammers still run; they give up after 20 s, so a mutex without the hand-off fails
/// here instead of hanging.
#[test]
fn mutex_does_not_starve_a_waiter() {
    let rt = runtime(1);
    let m = Arc::new(Mutex::new(0u64));
    let running = Arc::new(AtomicBool::new(true));
    let waiter_done = Arc::new(AtomicBool::new(false));
    let hammers: Vec<_> = rt.block_on(|| {
        (0..2)
            .map(|_| {
                let (m, running, waiter_done) = (m.clone(), running.clone(), waiter_done.clone());
                pagurus::spawn(move || {
                    let give_up = Instant::now() + Duration::from_secs(20);
                    while !waiter_done.load(SeqCst) && Instant::now() < give_up {
                        let mut g = m.lock();
                        *g += 1;
                        pagurus::yield_now();
                        drop(g);
                    }
                    running.store(false, SeqCst);
                })
            })
            .collect()
    });
    while *m.lock() < 100 {
        thread::yield_now();
    }
    let mut got_while_hammered = 0;
    for round in 0..10 {
        let (m2, r2) = (m.clone(), running.clone());
        let acquire = move || {
            let g = m2.lock();
            let hammered = r2.load(SeqCst);
            drop(g);
            hammered
        };
        let hammered = if round % 2 == 0 {
            rt.block_on(|| pagurus::spawn(acquire).join().unwrap())
        } else {
            thread::spawn(acquire).join().unwrap()
        };
        got_while_hammered += usize::from(hammered);
    }
    waiter_done.store(true, SeqCst);
    for h in hammers {
        h.join().unwrap();
    }
    assert_eq!(got_while_hammered, 10, "the hammers starved the waiter");
}

/// A panic while the lock is held releases it (no poisoning); the data stays as left.
#[test]
fn mutex_panic_while_locked_releases_it() {
    let rt = runtime(1);
    let m = Arc::new(Mutex::new(1));
    let m2 = m.clone();
    let err = rt.block_on(|| {
        pagurus::spawn(move || {
            let mut g = m2.lock();
            *g = 2;
            panic!("half-way");
        })
        .join()
    });
    assert!(err.is_err());
    assert_eq!(*m.try_lock().expect("released by the unwind"), 2);
}

// ---------------------------------------------------------------------------------------------
// RwLock

#[test]
fn rwlock_try_read_try_write() {
    let mut l = RwLock::new(5);
    {
        let r1 = l.try_read().unwrap();
        let r2 = l.try_read().unwrap();
        assert!(l.try_write().is_none());
        assert_eq!(*r1 + *r2, 10);
    }
    {
        let mut w = l.try_write().unwrap();
        assert!(l.try_read().is_none());
        assert!(l.try_write().is_none());
        *w = 6;
    }
    *l.get_mut() += 1;
    assert_eq!(format!("{l:?}"), "RwLock { data: 7, .. }");
    assert_eq!(*l.read(), 7);
    *l.write() += 1;
    assert_eq!(l.into_inner(), 8);
}

/// Several readers hold the lock at once (a second coroutine's read gets in while one is held,
/// a write does not); a writer excludes everyone (under a mix of 40 coroutines it sees no reader
/// inside, and readers never see a writer inside).
#[test]
fn rwlock_readers_share_writers_exclude() {
    let rt = runtime(2);
    let lock = Arc::new(RwLock::new(0u64));
    let readers_in = Arc::new(AtomicUsize::new(0));
    let writer_in = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicUsize::new(0));
    rt.block_on(|| {
        // Sharing, deterministically: while this coroutine holds a read guard, another
        // coroutine's read gets in (and a write does not).
        let held = lock.read();
        let other = lock.clone();
        let shared = pagurus::spawn(move || {
            let second = other.read();
            (*second, other.try_write().is_none())
        });
        assert_eq!(
            shared.join().unwrap(),
            (0, true),
            "a second reader gets in, a writer not"
        );
        drop(held);
        // Exclusion, under a mix of 40 coroutines on two workers.
        let mut hs = Vec::new();
        for i in 0..40 {
            let (lock, readers_in, writer_in, violations) = (
                lock.clone(),
                readers_in.clone(),
                writer_in.clone(),
                violations.clone(),
            );
            hs.push(pagurus::spawn(move || {
                for round in 0..50 {
                    if (i + round) % 8 == 0 {
                        let mut w = lock.write();
                        writer_in.store(true, SeqCst);
                        if readers_in.load(SeqCst) != 0 {
                            violations.fetch_add(1, SeqCst);
                        }
                        *w += 1;
                        pagurus::yield_now();
                        writer_in.store(false, SeqCst);
                    } else {
                        let r = lock.read();
                        readers_in.fetch_add(1, SeqCst);
                        if writer_in.load(SeqCst) {
                            violations.fetch_add(1, SeqCst);
                        }
                        let _ = *r;
                        pagurus::yield_now(); // stay inside while others come in
                        readers_in.fetch_sub(1, SeqCst);
                    }
                }
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(violations.load(SeqCst), 0);
    assert_eq!(*lock.read(), 40 * 50 / 8);
}

/// Readers held by coroutines block a writer thread until they all leave, and readers that
/// arrive after the writer queued wait behind it.
#[test]
fn rwlock_writer_thread_waits_for_coroutine_readers() {
    let rt = runtime(2);
    let lock = Arc::new(RwLock::new(Vec::<&'static str>::new()));
    let inside = Arc::new(AtomicUsize::new(0));
    let leave = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = rt.block_on(|| {
        (0..3)
            .map(|_| {
                let (lock, inside, leave) = (lock.clone(), inside.clone(), leave.clone());
                pagurus::spawn(move || {
                    let r = lock.read();
                    inside.fetch_add(1, SeqCst);
                    common::spin_until(&leave);
                    r.len()
                })
            })
            .collect()
    });
    wait_for(&inside, 3);
    let writer = {
        let lock = lock.clone();
        thread::spawn(move || lock.write().push("writer"))
    };
    thread::sleep(Duration::from_millis(20));
    // The writer is queued: a new reader must not overtake it.
    assert!(
        lock.try_read().is_none(),
        "a reader jumped the queued writer"
    );
    let late_reader = {
        let lock = lock.clone();
        rt.block_on(|| pagurus::spawn(move || lock.read().clone()))
    };
    leave.store(true, SeqCst);
    for r in readers {
        assert_eq!(
            r.join().unwrap(),
            0,
            "readers saw the data before the writer"
        );
    }
    writer.join().unwrap();
    assert_eq!(late_reader.join().unwrap(), ["writer"]);
}

// ---------------------------------------------------------------------------------------------
// Condvar

/// `wait_while` re-checks its condition on every wake: spurious wake-ups (here: notify_all
/// before the condition holds, many times) never let it return early.
#[test]
fn condvar_wait_while_survives_spurious_wakes() {
    let rt = runtime(2);
    let state = Arc::new((Mutex::new(0u32), Condvar::new()));
    let waiting = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = rt.block_on(|| {
        (0..10)
            .map(|_| {
                let (state, waiting) = (state.clone(), waiting.clone());
                pagurus::spawn(move || {
                    let (m, cv) = &*state;
                    let g = m.lock();
                    waiting.fetch_add(1, SeqCst);
                    let g = cv.wait_while(g, |n| *n < 100);
                    *g
                })
            })
            .collect()
    });
    // A thread waits too.
    let thread_waiter = {
        let state = state.clone();
        thread::spawn(move || {
            let (m, cv) = &*state;
            *cv.wait_while(m.lock(), |n| *n < 100)
        })
    };
    wait_for(&waiting, 10);
    let (m, cv) = &*state;
    for _ in 0..100 {
        *m.lock() += 1;
        cv.notify_all(); // wakes everyone while the condition is still false (99 times)
        thread::yield_now();
    }
    for h in handles {
        assert_eq!(h.join().unwrap(), 100);
    }
    assert_eq!(thread_waiter.join().unwrap(), 100);
}

/// `notify_one` wakes one waiter per call; producer/consumer over a mutex-protected queue.
#[test]
fn condvar_notify_one_hands_items_to_consumers() {
    let rt = runtime(2);
    let state = Arc::new((Mutex::new((Vec::<u32>::new(), false)), Condvar::new()));
    let consumers: Vec<_> = rt.block_on(|| {
        (0..4)
            .map(|_| {
                let state = state.clone();
                pagurus::spawn(move || {
                    let (m, cv) = &*state;
                    let mut sum = 0u64;
                    loop {
                        let mut g = cv.wait_while(m.lock(), |(q, closed)| q.is_empty() && !*closed);
                        match g.0.pop() {
                            Some(v) => sum += u64::from(v),
                            None => return sum,
                        }
                    }
                })
            })
            .collect()
    });
    let (m, cv) = &*state;
    for v in 1..=1_000 {
        m.lock().0.push(v);
        cv.notify_one();
    }
    m.lock().1 = true;
    cv.notify_all();
    let total: u64 = consumers.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 500_500);
}

#[test]
fn condvar_wait_timeout_times_out_and_not() {
    let rt = runtime(2);
    let state = Arc::new((Mutex::new(false), Condvar::new()));
    // Times out: nobody notifies (coroutine and thread).
    let s = state.clone();
    let (elapsed, timed_out) = rt.block_on(|| {
        pagurus::spawn(move || {
            let (m, cv) = &*s;
            let start = Instant::now();
            let (g, timed_out) = cv.wait_timeout(m.lock(), Duration::from_millis(30));
            assert!(!*g);
            (start.elapsed(), timed_out)
        })
        .join()
        .unwrap()
    });
    assert!(timed_out);
    assert!(elapsed >= Duration::from_millis(30), "{elapsed:?}");
    let (m, cv) = &*state;
    let start = Instant::now();
    let (g, timed_out) = cv.wait_timeout(m.lock(), Duration::from_millis(10));
    assert!(timed_out && start.elapsed() >= Duration::from_millis(10));
    drop(g);

    // Notified long before a generous timeout.
    let s = state.clone();
    let started = Arc::new(AtomicBool::new(false));
    let st = started.clone();
    let h = rt.block_on(|| {
        pagurus::spawn(move || {
            let (m, cv) = &*s;
            let mut g = m.lock();
            st.store(true, SeqCst);
            loop {
                let (next, timed_out) = cv.wait_timeout(g, Duration::from_secs(600));
                g = next;
                if *g {
                    return timed_out;
                }
            }
        })
    });
    while !started.load(SeqCst) {
        thread::yield_now();
    }
    *m.lock() = true;
    cv.notify_one();
    assert!(!h.join().unwrap(), "reported a timeout it did not have");
    // The timed-out waiters left the queue: a notification finds nobody to wake.
    assert_eq!(format!("{cv:?}"), "Condvar { waiters: 0 }");
}

// ---------------------------------------------------------------------------------------------
// WaitGroup

#[test]
fn wait_group_over_ten_thousand_coroutines() {
    let rt = runtime(2);
    let finished = Arc::new(AtomicUsize::new(0));
    let wg = WaitGroup::new();
    let outside = {
        let wg = wg.clone();
        // A thread waits too, before any add: it returns at once (counter zero), then waits
        // for the real round below.
        let f = finished.clone();
        thread::spawn(move || {
            wg.wait();
            while f.load(SeqCst) == 0 {
                thread::yield_now();
            }
            wg.wait();
            f.load(SeqCst)
        })
    };
    rt.block_on(|| {
        wg.add(10_000);
        let waiters: Vec<_> = (0..10)
            .map(|_| {
                let (wg, finished) = (wg.clone(), finished.clone());
                pagurus::spawn(move || {
                    wg.wait();
                    finished.load(SeqCst)
                })
            })
            .collect();
        for i in 0..10_000u64 {
            let (wg, finished) = (wg.clone(), finished.clone());
            pagurus::spawn(move || {
                if i % 3 == 0 {
                    pagurus::yield_now();
                }
                finished.fetch_add(1, SeqCst);
                wg.done();
            });
        }
        wg.wait();
        assert_eq!(finished.load(SeqCst), 10_000);
        for w in waiters {
            assert_eq!(w.join().unwrap(), 10_000);
        }
    });
    assert_eq!(outside.join().unwrap(), 10_000);
    assert_eq!(wg.count(), 0);
    assert_eq!(format!("{wg:?}"), "WaitGroup { count: 0 }");
}

#[test]
fn wait_group_done_below_zero_panics() {
    let wg = WaitGroup::default();
    wg.add(1);
    wg.done();
    let err = std::panic::catch_unwind(|| wg.done()).unwrap_err();
    let msg = common::panic_message(&*err).unwrap();
    assert!(msg.contains("done called more times than add"), "{msg}");
    assert_eq!(wg.count(), 0, "left at zero");
    wg.wait(); // still usable
}

// ---------------------------------------------------------------------------------------------
// Semaphore

/// At most `permits` coroutines are inside at once, and that bound is reached.
#[test]
fn semaphore_bounds_concurrency() {
    const PERMITS: usize = 3;
    let rt = runtime(2);
    let sem = Arc::new(Semaphore::new(PERMITS));
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    rt.block_on(|| {
        let hs: Vec<_> = (0..200)
            .map(|_| {
                let (sem, inside, most) = (sem.clone(), inside.clone(), most.clone());
                pagurus::spawn(move || {
                    let _permit = sem.acquire();
                    let now = inside.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    for _ in 0..3 {
                        pagurus::yield_now();
                    }
                    inside.fetch_sub(1, SeqCst);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    let most = most.load(SeqCst);
    assert!(most <= PERMITS, "{most} inside with {PERMITS} permits");
    assert!(most >= 2, "never concurrent: {most}");
    assert_eq!(sem.available_permits(), PERMITS);
}

#[test]
fn semaphore_try_acquire_and_add_permits_across_threads() {
    let rt = runtime(2);
    let sem = Arc::new(Semaphore::new(0));
    assert!(sem.try_acquire().is_none());
    let got = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = rt.block_on(|| {
        (0..5)
            .map(|_| {
                let (sem, got) = (sem.clone(), got.clone());
                pagurus::spawn(move || {
                    let p = sem.acquire();
                    got.fetch_add(1, SeqCst);
                    std::mem::forget(p); // keep it: count how many were handed out
                })
            })
            .collect()
    });
    let t = {
        let (sem, got) = (sem.clone(), got.clone());
        thread::spawn(move || {
            std::mem::forget(sem.acquire());
            got.fetch_add(1, SeqCst);
        })
    };
    thread::sleep(Duration::from_millis(10));
    assert_eq!(got.load(SeqCst), 0);
    sem.add_permits(4);
    wait_for(&got, 4);
    thread::sleep(Duration::from_millis(10));
    assert_eq!(
        got.load(SeqCst),
        4,
        "exactly the added permits were handed out"
    );
    assert!(
        sem.try_acquire().is_none(),
        "waiters are owed the next permits"
    );
    sem.add_permits(3);
    wait_for(&got, 6);
    for h in hs {
        h.join().unwrap();
    }
    t.join().unwrap();
    assert_eq!(sem.available_permits(), 1);
    let p = sem.try_acquire().unwrap();
    assert_eq!(sem.available_permits(), 0);
    drop(p);
    assert_eq!(
        format!("{:?}", Semaphore::default()),
        "Semaphore { permits: 0, waiters: false }"
    );
}

// ---------------------------------------------------------------------------------------------
// Auto traits and defaults, as std's.

#[test]
fn send_sync_and_default_as_std() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    use std::cell::Cell;
    send_sync::<Mutex<Cell<u8>>>(); // T: Send is enough, as for std::sync::Mutex
    send_sync::<RwLock<Vec<u8>>>();
    send::<RwLock<Cell<u8>>>(); // Send, not Sync: readers would share the Cell
    send_sync::<Condvar>();
    send_sync::<WaitGroup>();
    send_sync::<Semaphore>();
    send_sync::<pagurus::sync::SemaphorePermit<'static>>();
    fn sync<T: Sync>() {}
    sync::<pagurus::sync::MutexGuard<'static, u8>>(); // Sync, not Send, like std's
    let _: (Mutex<u8>, RwLock<u8>, Condvar, WaitGroup, Semaphore) = Default::default();
    static GLOBAL: Mutex<u32> = Mutex::new(0); // const constructors
    *GLOBAL.lock() += 1;
    assert_eq!(*GLOBAL.lock(), 1);
}
