//! Parked-stack compaction: a parked coroutine's live bytes copied to the heap and its stack
//! given back, then restored (relocated when the address differs, shrunk when it used less than
//! a quarter) when it is woken. `parked_stack_budget(0)` compacts every park.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use pagurus::sync::Semaphore;
use pagurus::{Runtime, spawn, stack, stats, time};

fn compacting(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .parked_stack_budget(0)
        .build()
        .unwrap()
}

/// A stack address, hidden from the relocation (see `tests/common`'s MASK), to see it moved.
/// The reference goes through `black_box` too, so the address is taken anew at each call
/// instead of reusing the first call's masked value.
fn disguised<T>(r: &T) -> usize {
    black_box(black_box(r) as *const T as usize ^ 0x5a5a_5a5a_5a5a_5a5a)
}

/// Frames that point at each other: each holds a reference to its caller's local, and the
/// innermost parks before the chain is read back.
#[inline(never)]
fn chain(depth: u64, prev: Option<&u64>, park: &dyn Fn()) -> u64 {
    let mine = black_box(depth * 3 + prev.copied().unwrap_or(0));
    if depth == 0 {
        park();
        // Every `prev` was adjusted: reading them back gives the same sums.
        return mine;
    }
    let below = chain(depth - 1, Some(&mine), park);
    below + mine + prev.copied().unwrap_or(0)
}

fn expected_chain(depth: u64) -> u64 {
    chain(depth, None, &|| {})
}

#[test]
fn frames_pointing_at_each_other_survive_compaction_and_relocation() {
    let rt = compacting(1);
    let want = expected_chain(40);
    let before = stats().compactions;
    let (got, moved) = rt.block_on(|| {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let a = spawn(move || {
            let local = 0u8;
            let at = disguised(&local);
            let sum = chain(40, None, &|| time::sleep(Duration::from_millis(20)));
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            (sum, at != disguised(&local))
        });
        // A neighbour that runs (yields, never parks) while the first is compacted takes its old
        // stack from the pool, so the compacted coroutine comes back at a different address.
        let b = spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                pagurus::yield_now();
            }
        });
        let r = a.join().unwrap();
        b.join().unwrap();
        r
    });
    assert_eq!(got, want);
    assert!(moved, "the compacted coroutine came back on another stack");
    assert!(stats().compactions > before);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn vector_values_live_across_a_compacted_park() {
    use std::arch::x86_64::*;
    let rt = compacting(2);
    let out: Vec<[f64; 2]> = rt.block_on(|| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                spawn(move || {
                    let x = i as f64;
                    // SAFETY: SSE2 is part of x86_64.
                    unsafe {
                        let a = _mm_set_pd(x + 0.5, x * 2.0);
                        let b = _mm_set_pd(x * x, 1.25);
                        time::sleep(Duration::from_millis(2));
                        let c = _mm_add_pd(black_box(a), black_box(b));
                        let mut r = [0f64; 2];
                        _mm_storeu_pd(r.as_mut_ptr(), c);
                        r
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, r) in out.iter().enumerate() {
        let x = i as f64;
        assert_eq!(*r, [x * 2.0 + 1.25, x + 0.5 + x * x]);
    }
}

#[inline(never)]
fn deep(n: u64) -> u64 {
    let frame = black_box([n; 128]);
    if n == 0 {
        frame[5]
    } else {
        deep(n - 1) + frame[9]
    }
}

#[test]
fn a_compacted_coroutine_grows_right_after_waking() {
    let rt = compacting(1);
    let before = stats();
    let (sum, info) = rt.block_on(|| {
        spawn(|| {
            time::sleep(Duration::from_millis(1));
            let sum = deep(500); // about 500 KiB of frames
            (sum, stack::current().unwrap())
        })
        .join()
        .unwrap()
    });
    assert_eq!(sum, (0..=500).sum::<u64>());
    assert!(info.growths > 0 && info.size >= 512 << 10, "{info:?}");
    assert!(stats().compactions > before.compactions);
}

#[test]
fn a_coroutine_that_used_little_of_its_stack_comes_back_on_a_smaller_one() {
    let rt = compacting(1);
    let before = stats();
    let (grown, after) = rt.block_on(|| {
        spawn(|| {
            stack::ensure(60 << 10);
            let grown = stack::current().unwrap().size;
            time::sleep(Duration::from_millis(1));
            (grown, stack::current().unwrap().size)
        })
        .join()
        .unwrap()
    });
    assert!(grown >= 64 << 10, "{grown}");
    assert!(after <= grown / 4, "{grown} -> {after}");
    assert!(stats().shrinks > before.shrinks);
}

#[test]
fn a_pinned_stack_is_never_compacted() {
    let rt = compacting(1);
    let r = rt.block_on(|| {
        spawn(|| {
            let data = black_box([7u64; 64]);
            // The offloaded call borrows the parked coroutine's stack: compacting it would
            // leave the borrow dangling.
            pagurus::offload::run(|| {
                std::thread::sleep(Duration::from_millis(5));
                data.iter().sum::<u64>()
            })
        })
        .join()
        .unwrap()
    });
    assert_eq!(r, 7 * 64);
}

#[test]
fn compaction_off_keeps_parked_coroutines_on_their_stacks() {
    let rt = Runtime::builder()
        .workers(1)
        .parked_stack_budget(0)
        .compaction(false)
        .build()
        .unwrap();
    let before = stats().compactions;
    rt.block_on(|| {
        let hs: Vec<_> = (0..16)
            .map(|_| spawn(|| time::sleep(Duration::from_millis(1))))
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
    });
    // Other tests of this binary may compact meanwhile; this runtime alone has 17 parks.
    let _ = before;
    assert_eq!(
        rt.block_on(|| {
            let sem = Arc::new(Semaphore::new(0));
            let s = sem.clone();
            let h = spawn(move || {
                let local = 5u64;
                let at = disguised(&local);
                drop(s.acquire());
                (local, at == disguised(&local))
            });
            time::sleep(Duration::from_millis(1));
            sem.add_permits(1);
            h.join().unwrap()
        }),
        (5, true),
        "an uncompacted coroutine wakes at the same address"
    );
}

/// A scaled-down million: 100,000 coroutines parked at once (on a semaphore), with the default
/// budget, so that all but the first few thousand are compacted; then all woken and every result
/// checked.
#[test]
fn hundred_thousand_parked_coroutines() {
    const N: u64 = 100_000;
    const WORKERS: usize = 2;
    let rt = Runtime::builder().workers(WORKERS).build().unwrap();
    let before = stats();
    let sum = rt.block_on(|| {
        let gate = Arc::new(Semaphore::new(0));
        let arrived = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let gate = gate.clone();
                let arrived = arrived.clone();
                spawn(move || {
                    let x = black_box(i * 2);
                    arrived.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    drop(gate.acquire());
                    x + 1
                })
            })
            .collect();
        // Until all of them are parked (conditions, not durations). Other tests of this binary
        // park a few hundred coroutines at most, so `parked >= N` means ours are parked.
        while arrived.load(std::sync::atomic::Ordering::Relaxed) < N {
            time::sleep(Duration::from_millis(2));
        }
        let now = loop {
            let now = stats();
            if now.parked >= N {
                break now;
            }
            time::sleep(Duration::from_millis(2));
        };
        // The budget (16 MiB per worker) bounds the stack they hold; the rest are compacted.
        assert!(now.stack_bytes_parked < (N as usize) * 4096 / 4, "{now:?}");
        assert!(now.compacted >= N - WORKERS as u64 * 4096 - 1000, "{now:?}");
        gate.add_permits(N as usize);
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(sum, N * (N - 1) + N);
    let after = stats();
    assert!(after.compactions >= before.compactions + N - WORKERS as u64 * 4096 - 1000);
}

#[test]
fn parked_stack_budget_env_is_validated() {
    const CASE: &str = "PAGURUS_COMPACTION_CASE";
    if std::env::var(CASE).is_ok() {
        // SAFETY: the child runs this one test on one thread.
        unsafe { std::env::set_var("PAGURUS_PARKED_STACK_BUDGET", "lots") };
        let Err(err) = Runtime::builder().build() else {
            panic!("rejected")
        };
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let msg = err.to_string();
        assert!(
            msg.contains("PAGURUS_PARKED_STACK_BUDGET") && msg.contains("off"),
            "{msg}"
        );
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "parked_stack_budget_env_is_validated",
            "--exact",
            "--test-threads=1",
        ])
        .env(CASE, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[inline(never)]
fn parked_sum(rx: pagurus::channel::Receiver<u64>, i: u64) -> u64 {
    let mine = black_box(i * 7);
    let at = black_box(&mine);
    rx.recv().unwrap() + *at
}

/// `idle_compaction(None)`: a coroutine parked for many ticks of the default clock stays on its
/// stack (`tests/idle_memory.rs` has the other side).
#[test]
fn idle_compaction_off_keeps_stacks() {
    let rt = Runtime::builder()
        .workers(1)
        .idle_compaction(None)
        .build()
        .unwrap();
    rt.block_on(|| {
        let (tx, rx) = pagurus::channel::bounded::<u64>(1);
        let h = spawn(move || parked_sum(rx, 1));
        let on_stack = |dump: &pagurus::Dump| {
            dump.coroutines()
                .iter()
                .find(|c| c.id == h.id())
                .is_some_and(|c| {
                    matches!(c.state, pagurus::CoroutineState::Parked(_)) && c.stack.size == 4096
                })
        };
        while !on_stack(&pagurus::dump()) {
            pagurus::time::sleep(Duration::from_millis(1));
        }
        // Several ticks of the default clock later, still on its stack.
        pagurus::time::sleep(Duration::from_millis(1_500));
        let dump = pagurus::dump();
        assert!(on_stack(&dump), "{dump}");
        tx.send(5).unwrap();
        assert_eq!(h.join().unwrap(), 12);
    });
}
