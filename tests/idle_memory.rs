//! Memory given back while coroutines sit idle: coroutines parked longer than
//! `Builder::idle_compaction` are compacted however far under budget their worker is, the stacks
//! that frees are unmapped from the pools and the arena over the next few ticks, and the
//! process's resident memory falls to a few hundred bytes per parked coroutine. Then every one
//! of them wakes, runs on a stack again, and returns the right answer.
//!
//! Its own test binary (one process) so that the resident-set comparison sees no other test's
//! memory.

use std::hint::black_box;
use std::time::Duration;

use pagurus::{Runtime, spawn, stats};

const PARKED: usize = 4_000;

/// Resident bytes of this process (`/proc/self/statm`).
fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[inline(never)]
fn wait_then_add(rx: pagurus::channel::Receiver<u64>, i: u64) -> u64 {
    // A frame with a pointer into itself, to be adjusted by each restore.
    let mine = black_box(i * 7);
    let at = black_box(&mine);
    let v = rx.recv().unwrap();
    v + *at
}

#[test]
fn idle_coroutines_give_their_stacks_back() {
    // Far under the default budget (16 MiB per worker): only idleness compacts these.
    let rt = Runtime::builder()
        .workers(2)
        .idle_compaction(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    rt.block_on(|| {
        let before = resident();
        let compactions = stats().compactions;
        let (txs, handles): (Vec<_>, Vec<_>) = (0..PARKED as u64)
            .map(|i| {
                let (tx, rx) = pagurus::channel::bounded::<u64>(1);
                (tx, spawn(move || wait_then_add(rx, i)))
            })
            .unzip();
        // All of them parked on their stacks first.
        let mut rounds = 0;
        while stats().parked < PARKED as u64 {
            pagurus::time::sleep(Duration::from_millis(5));
            rounds += 1;
            assert!(rounds < 2_000, "never all parked: {:?}", stats());
        }
        let parked_resident = resident().saturating_sub(before);
        // Then, idle, compacted and their stacks unmapped: a condition, checked in rounds; the
        // bound only keeps a broken build from hanging (50 ms is asked for; 20 s allowed).
        let mut rounds = 0;
        loop {
            let s = stats();
            if s.compacted >= PARKED as u64 && s.stack_bytes_pooled == 0 {
                break;
            }
            rounds += 1;
            assert!(rounds < 1_000, "not given back: {s:?}");
            pagurus::time::sleep(Duration::from_millis(20));
        }
        assert!(stats().compactions - compactions >= PARKED as u64);
        let idle_resident = resident().saturating_sub(before);
        let images = stats().compacted_bytes;
        // Each held a 4 KiB stack page while parked on it (not asserted: on a loaded machine
        // the first ones are compacted before the last one parks); compacted, each holds its
        // image (a few hundred bytes in release, more in debug builds' larger frames) and the
        // rest of its task, and no stack page.
        let besides_images = idle_resident.saturating_sub(images) / PARKED;
        assert!(
            besides_images < 1_500,
            "idle: {} B each, {} of them images ({parked_resident} B while parked on stacks)",
            idle_resident / PARKED,
            images / PARKED
        );
        // Each wakes on a stack again (taken from the released slots), with its frame's
        // pointer adjusted.
        for (i, tx) in txs.iter().enumerate() {
            tx.send(i as u64).unwrap();
        }
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), i as u64 * 8);
        }
    });
}
