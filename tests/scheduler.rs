//! Scheduling: yield order, spawn/join at volume, joins across threads, thread-local pinning.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread::{self, ThreadId};

use pagurus::{JoinHandle, Runtime, spawn, yield_now};

/// On one worker, coroutines that yield to each other take turns round-robin: once all of them
/// are running, every turn of the local FIFO queue runs each exactly once, in the same order.
///
/// Children spawned by a coroutine sit in the worker's LIFO slot and stealable deque, and a
/// coroutine that keeps yielding is picked ahead of unstarted ones (those start only when the
/// local queue empties or on a fairness tick). So each child first waits, yielding, until all
/// have started; from then on only the local queue is used and the order is fixed.
#[test]
fn yield_interleaving_is_deterministic() {
    const N: usize = 8;
    const ROUNDS: usize = 50;
    let rt = Runtime::builder().workers(1).build().unwrap();
    let log = Arc::new(Mutex::new(Vec::with_capacity(N * ROUNDS)));
    let started = Arc::new(AtomicUsize::new(0));
    let (log2, started2) = (log.clone(), started.clone());
    let sums: Vec<u64> = rt.block_on(move || {
        spawn(move || {
            let handles: Vec<JoinHandle<u64>> = (0..N)
                .map(|id| {
                    let log = log2.clone();
                    let started = started2.clone();
                    spawn(move || {
                        started.fetch_add(1, SeqCst);
                        while started.load(SeqCst) < N {
                            yield_now();
                        }
                        let mut acc = 0u64;
                        for round in 0..ROUNDS {
                            log.lock().unwrap().push((id, round));
                            acc += (id * 1000 + round) as u64;
                            yield_now();
                        }
                        acc
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
        .join()
        .unwrap()
    });

    let expected: Vec<u64> = (0..N)
        .map(|id| (0..ROUNDS).map(|r| (id * 1000 + r) as u64).sum())
        .collect();
    assert_eq!(sums, expected);
    assert_eq!(started.load(SeqCst), N);

    let log = log.lock().unwrap();
    assert_eq!(log.len(), N * ROUNDS);
    // Round r occupies exactly entries r*N .. (r+1)*N, and each round visits the coroutines in
    // the same order as round 0.
    let order: Vec<usize> = log[..N].iter().map(|&(id, _)| id).collect();
    let distinct: HashSet<usize> = order.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        N,
        "round 0 runs every coroutine once: {order:?}"
    );
    for (round, chunk) in log.chunks(N).enumerate() {
        let expected: Vec<(usize, usize)> = order.iter().map(|&id| (id, round)).collect();
        assert_eq!(chunk, &expected[..], "round {round} out of turn");
    }
}

/// 10,000 spawn/join pairs on the default 4 KiB stacks and several workers: one pair at a time
/// and all spawned before any is joined, from the main coroutine; and one pair at a time from a
/// spawned coroutine (each child goes through that worker's LIFO slot).
///
/// (Spawning thousands at once *from a spawned coroutine* overflows a 4 KiB stack: see
/// `tests/spawn_burst_default_stack.rs`.)
#[test]
fn ten_thousand_spawn_join_pairs() {
    const N: u64 = 10_000;
    let rt = Runtime::builder().workers(4).build().unwrap();
    assert_eq!(
        rt.block_on(|| pagurus::stack::current().map(|s| s.size)),
        Some(4096)
    );

    // One pair at a time, from the main coroutine.
    let sequential: Vec<u64> = rt.block_on(|| {
        (0..N)
            .map(|i| spawn(move || i * 3 + 1).join().unwrap())
            .collect()
    });
    assert_eq!(sequential, (0..N).map(|i| i * 3 + 1).collect::<Vec<_>>());

    // All spawned first, then all joined, from the main coroutine.
    let batch: Vec<u64> = rt.block_on(|| {
        let handles: Vec<JoinHandle<u64>> = (0..N).map(|i| spawn(move || i ^ 0x5a5a)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(batch, (0..N).map(|i| i ^ 0x5a5a).collect::<Vec<_>>());

    // One pair at a time from inside a spawned coroutine, on its 4 KiB stack.
    let (inner_seq, child_sizes_ok) = rt.block_on(|| {
        spawn(|| {
            let mut sum = 0u64;
            let mut sizes_ok = true;
            for i in 0..N {
                let (v, size) = spawn(move || (i * 2, pagurus::stack::current().map(|s| s.size)))
                    .join()
                    .unwrap();
                sum += v;
                sizes_ok &= size == Some(4096);
            }
            (sum, sizes_ok)
        })
        .join()
        .unwrap()
    });
    assert_eq!(inner_seq, N * (N - 1));
    assert!(child_sizes_ok, "every child ran on a 4 KiB stack");
}

/// A coroutine joins one that lives on another worker thread; the main coroutine joins a worker's
/// coroutine; a plain thread joins a coroutine and gets its value.
#[test]
fn join_coroutine_on_another_worker() {
    let rt = Runtime::builder()
        .workers(2)
        .initial_stack_size(64 * 1024)
        .build()
        .unwrap();
    let main_thread = thread::current().id();

    let barrier = Arc::new(Barrier::new(2));
    type Slot = Mutex<Option<JoinHandle<(ThreadId, u64)>>>;
    let slot: Arc<Slot> = Arc::new(Mutex::new(None));
    let (a_thread, b_thread, b_value, b_id, b_handle_id) = rt.block_on(|| {
        // B and A each block their OS thread in the barrier until the other arrives, so they run
        // on the two different workers at the same time.
        let b_barrier = barrier.clone();
        let b = spawn(move || {
            b_barrier.wait();
            let me = thread::current().id();
            let mut acc = 0u64;
            for i in 0..100u64 {
                acc += i;
                yield_now();
                if thread::current().id() != me {
                    acc += 1_000_000; // moved to another thread: spoils the value
                }
            }
            (me, acc)
        });
        let b_handle_id = b.id();
        *slot.lock().unwrap() = Some(b);
        let a_barrier = barrier.clone();
        let a_slot = slot.clone();
        let a = spawn(move || {
            a_barrier.wait();
            let me = thread::current().id();
            let b = a_slot.lock().unwrap().take().expect("B's handle");
            let b_id = b.id();
            let (b_thread, b_value) = b.join().unwrap();
            (me, b_thread, b_value, b_id)
        });
        let (a_thread, b_thread, b_value, b_id) = a.join().unwrap();
        (a_thread, b_thread, b_value, b_id, b_handle_id)
    });
    assert_ne!(
        a_thread, b_thread,
        "the barrier forces A and B onto different workers"
    );
    assert_ne!(a_thread, main_thread);
    assert_ne!(b_thread, main_thread);
    assert_eq!(b_value, 4950);
    assert_eq!(b_id, b_handle_id);

    // The main coroutine (on this thread) joins a coroutine running on a worker.
    let (value, worker_thread) = rt.block_on(|| {
        let h = spawn(|| {
            for _ in 0..10 {
                yield_now();
            }
            (thread::current().id(), 99u32)
        });
        let (tid, v) = h.join().unwrap();
        assert_eq!(thread::current().id(), main_thread);
        (v, tid)
    });
    assert_eq!(value, 99);
    assert_ne!(worker_thread, main_thread);

    // A plain thread, outside any coroutine, blocks in join until the coroutine is done.
    let go = Arc::new(AtomicBool::new(false));
    let go2 = go.clone();
    let handle = rt.block_on(|| {
        spawn(move || {
            while !go2.load(SeqCst) {
                yield_now();
            }
            42u64
        })
    });
    let joined = thread::spawn(move || {
        assert!(pagurus::stack::current().is_none());
        go.store(true, SeqCst);
        handle.join().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(joined, 42);
}

/// A plain thread that starts waiting before the coroutine can finish is woken by its completion.
#[test]
fn plain_thread_join_waits_for_completion() {
    let rt = Runtime::builder()
        .workers(2)
        .initial_stack_size(64 * 1024)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    // The coroutine cannot finish before the plain thread has sent its message, which it does
    // just before joining; either way the joiner must get the value.
    let handle = rt.block_on(|| {
        let rx = Arc::new(rx);
        spawn(move || {
            rx.lock().unwrap().recv().unwrap();
            7u8
        })
    });
    let value = thread::spawn(move || {
        tx.send(()).unwrap();
        handle.join().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(value, 7);
}

/// `JoinHandle::id` is unique and `is_finished` turns true once the coroutine has returned.
#[test]
fn join_handle_id_and_is_finished() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let (ids, finished_before, finished_after, value) = rt.block_on(|| {
        let gate = Arc::new(AtomicBool::new(false));
        let g = gate.clone();
        let waiting = spawn(move || {
            while !g.load(SeqCst) {
                yield_now();
            }
            5u32
        });
        let others: Vec<JoinHandle<()>> = (0..10).map(|_| spawn(|| ())).collect();
        let mut ids: Vec<u64> = others.iter().map(JoinHandle::id).collect();
        ids.push(waiting.id());
        let finished_before = waiting.is_finished();
        gate.store(true, SeqCst);
        while !waiting.is_finished() {
            yield_now();
        }
        for h in others {
            h.join().unwrap();
        }
        (
            ids,
            finished_before,
            waiting.is_finished(),
            waiting.join().unwrap(),
        )
    });
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "ids are unique: {ids:?}");
    assert!(
        ids[..10].windows(2).all(|w| w[0] < w[1]),
        "ids increase: {ids:?}"
    );
    assert!(!finished_before);
    assert!(finished_after);
    assert_eq!(value, 5);
}

thread_local! {
    static TL_VALUE: Cell<u64> = const { Cell::new(0) };
    static TL_MEMBERS: RefCell<HashSet<usize>> = RefCell::new(HashSet::new());
}

/// A coroutine never changes threads: its thread-locals and thread id stay put across yields, and
/// the main coroutine sees the calling thread's thread-locals.
#[test]
fn thread_locals_inside_coroutines() {
    // 64 KiB stacks: the coroutines below grow HashSets, which takes more than 4 KiB of stack in
    // unoptimised builds.
    const STACK: usize = 64 * 1024;
    // One worker: a coroutine alone on it keeps its thread-local value across many yields.
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(STACK)
        .build()
        .unwrap();
    TL_VALUE.with(|v| v.set(7));
    let (main_seen, main_after, worker_initial, worker_changed, main_tid, worker_tids) = rt
        .block_on(|| {
            // The main coroutine runs on this thread and sees this thread's value.
            let main_seen = TL_VALUE.with(Cell::get);
            let main_tid = thread::current().id();
            let h = spawn(|| {
                let initial = TL_VALUE.with(Cell::get);
                TL_VALUE.with(|v| v.set(42));
                let me = thread::current().id();
                let mut changed = 0;
                let mut tids = HashSet::new();
                for _ in 0..1000 {
                    yield_now();
                    if TL_VALUE.with(Cell::get) != 42 {
                        changed += 1;
                    }
                    tids.insert(thread::current().id());
                }
                assert!(tids.contains(&me));
                (initial, changed, tids)
            });
            let (initial, changed, tids) = h.join().unwrap();
            (
                main_seen,
                TL_VALUE.with(Cell::get),
                initial,
                changed,
                main_tid,
                tids,
            )
        });
    assert_eq!(main_seen, 7);
    assert_eq!(
        main_after, 7,
        "the worker's write did not reach the main thread"
    );
    assert_eq!(TL_VALUE.with(Cell::get), 7);
    assert_eq!(main_tid, thread::current().id());
    assert_eq!(
        worker_initial, 0,
        "a fresh worker thread has its own thread-locals"
    );
    assert_eq!(worker_changed, 0);
    assert_eq!(worker_tids.len(), 1, "the coroutine stayed on one thread");
    assert!(!worker_tids.contains(&main_tid));

    // Many coroutines on two workers: each registers itself in its thread's thread-local set and
    // finds itself there (and on the same thread) after every yield.
    const N: usize = 64;
    let rt = Runtime::builder()
        .workers(2)
        .initial_stack_size(STACK)
        .build()
        .unwrap();
    let results: Vec<(usize, usize, usize)> = rt.block_on(|| {
        let handles: Vec<JoinHandle<(usize, usize, usize)>> = (0..N)
            .map(|id| {
                spawn(move || {
                    TL_MEMBERS.with(|m| m.borrow_mut().insert(id));
                    let me = thread::current().id();
                    let mut ok = 0;
                    let mut bad = 0;
                    for _ in 0..200 {
                        yield_now();
                        let present = TL_MEMBERS.with(|m| m.borrow().contains(&id));
                        if present && thread::current().id() == me {
                            ok += 1;
                        } else {
                            bad += 1;
                        }
                    }
                    TL_MEMBERS.with(|m| m.borrow_mut().remove(&id));
                    (id, ok, bad)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results,
        (0..N).map(|id| (id, 200, 0)).collect::<Vec<_>>(),
        "every coroutine stayed on its thread"
    );
    assert!(
        TL_MEMBERS.with(|m| m.borrow().is_empty()),
        "the main thread's set is untouched"
    );
}

/// Work spread over several workers: every coroutine's result arrives, whichever thread ran it.
/// (64 KiB stacks: coroutines here spawn into their worker's deque, whose growth needs more than
/// a 4 KiB stack; see `tests/spawn_burst_default_stack.rs`.)
#[test]
fn spawned_coroutines_spread_and_all_complete() {
    let rt = Runtime::builder()
        .workers(2)
        .initial_stack_size(64 * 1024)
        .build()
        .unwrap();
    let counter = Arc::new(AtomicUsize::new(0));
    let c = counter.clone();
    let total: u64 = rt.block_on(move || {
        let handles: Vec<JoinHandle<u64>> = (0..500u64)
            .map(|i| {
                let c = c.clone();
                spawn(move || {
                    let kids: Vec<JoinHandle<u64>> =
                        (0..4u64).map(|k| spawn(move || i * 4 + k)).collect();
                    yield_now();
                    c.fetch_add(1, SeqCst);
                    kids.into_iter().map(|h| h.join().unwrap()).sum()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(total, (0..2000u64).sum::<u64>());
    assert_eq!(counter.load(SeqCst), 500);
}
