//! A million parked coroutines: spawns N (default 1,000,000), parks each one (in `sleep`, or in
//! `recv` on a channel of its own with `--mode chan`), prints what a parked coroutine costs (`VmRSS` +
//! `VmPTE` delta per coroutine) and the process's mapping count, then wakes them all and checks
//! every result.
//!
//! ```text
//! cargo run --release --example million -- [N] [--mode sleep|chan] [--stack-bytes B]
//! ```
//!
//! `--stack-bytes B` makes each coroutine hold about B bytes of live stack while parked. The last
//! line is machine-readable (`cargo xtask bench idle` reads it).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pagurus::channel::{self, Receiver, Sender};
use pagurus::{Runtime, spawn, stats, time};

/// `VmRSS + VmPTE` of this process, in bytes.
fn resident() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .filter(|l| l.starts_with("VmRSS:") || l.starts_with("VmPTE:"))
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<usize>()
                .unwrap()
                * 1024
        })
        .sum()
}

fn maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Holds about `bytes` of live stack across `park`.
#[inline(never)]
fn hold(bytes: usize, i: u64, park: &dyn Fn()) -> u64 {
    if bytes < 1024 {
        park();
        return i;
    }
    let frame = black_box([i; 128]); // 1 KiB
    hold(bytes - 1024, i, park) + frame[(i % 128) as usize] - i
}

fn main() {
    let mut n: u64 = 1_000_000;
    let mut mode = "sleep".to_string();
    let mut stack_bytes = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mode" => mode = args.next().expect("--mode sleep|chan"),
            "--stack-bytes" => stack_bytes = args.next().unwrap().parse().unwrap(),
            n_arg => n = n_arg.replace('_', "").parse().expect("N"),
        }
    }
    let rt = Runtime::new().unwrap();
    let base = resident();
    let maps_before = maps();
    let (spawn_park, bytes, used, maps_parked, wake_join) = rt.block_on(|| {
        assert!(mode == "sleep" || mode == "chan", "--mode sleep|chan");
        // A rendezvous channel per coroutine (as Go's `make(chan int)`); the coroutine keeps
        // the receiver, this one the sender.
        let (senders, mut receivers): (Vec<Sender<u64>>, Vec<Option<Receiver<u64>>>) =
            if mode == "chan" {
                (0..n)
                    .map(|_| {
                        let (tx, rx) = channel::bounded(0);
                        (tx, Some(rx))
                    })
                    .unzip()
            } else {
                (Vec::new(), Vec::new())
            };
        let parked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // Stack bytes in use at the park, summed over all coroutines.
        let used_sum = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let t0 = Instant::now();
        // Sleepers wake at a deadline far enough off for every spawn to park first.
        let deadline = Instant::now()
            + Duration::from_secs(5)
            + Duration::from_micros(n * (30 + 3 * (stack_bytes as u64 / 1024)));
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let parked = parked.clone();
                let used_sum = used_sum.clone();
                let rx = receivers.get_mut(i as usize).and_then(Option::take);
                spawn(move || {
                    let got = std::cell::Cell::new(i);
                    let held = hold(stack_bytes, i, &|| {
                        let used = pagurus::stack::current().unwrap().used as u64;
                        used_sum.fetch_add(used, std::sync::atomic::Ordering::Relaxed);
                        parked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        match &rx {
                            Some(rx) => got.set(rx.recv().expect("sent")),
                            None => time::sleep_until(deadline),
                        }
                    });
                    assert_eq!(held, i);
                    got.get() * 2
                })
            })
            .collect();
        while parked.load(std::sync::atomic::Ordering::Relaxed) < n {
            time::sleep(Duration::from_millis(1));
        }
        let spawn_park = t0.elapsed();
        let bytes = resident().saturating_sub(base) as f64 / n as f64;
        let st = stats();
        // What a parked coroutine uses of its stack, on average.
        let used = used_sum.load(std::sync::atomic::Ordering::Relaxed) / n;
        eprintln!(
            "parked: {} ({} compacted, {} B of images, {} B each; {} B of stacks held); {used} B \
             of stack used each",
            st.parked,
            st.compacted,
            st.compacted_bytes,
            st.compacted_bytes / st.compacted.max(1) as usize,
            st.stack_bytes_parked
        );
        let maps_parked = maps();
        let t1 = if mode == "chan" {
            let t1 = Instant::now();
            for (i, tx) in senders.iter().enumerate() {
                tx.send(i as u64).expect("the coroutine waits");
            }
            t1
        } else {
            assert!(
                Instant::now() < deadline,
                "spawning took longer than the sleep"
            );
            time::sleep_until(deadline);
            deadline
        };
        let mut bad = 0;
        for (i, h) in handles.into_iter().enumerate() {
            if h.join().unwrap() != 2 * i as u64 {
                bad += 1;
            }
        }
        assert_eq!(bad, 0, "wrong results");
        (spawn_park, bytes, used, maps_parked, t1.elapsed())
    });
    let s = stats();
    println!(
        "{n} coroutines parked ({mode}, {stack_bytes} B held): spawn-and-park {:.3} s, \
         {bytes:.0} B each (VmRSS + VmPTE), {} mappings (was {maps_before}), wake-and-join {:.3} s; \
         guards {:?}, {} arenas, {} compactions, {} shrinks",
        spawn_park.as_secs_f64(),
        maps_parked,
        wake_join.as_secs_f64(),
        s.stack_guards,
        s.stack_arenas,
        s.compactions,
        s.shrinks,
    );
    println!(
        "idle n={n} mode={mode} held={stack_bytes} spawn_park_ns={} wake_join_ns={} bytes={bytes:.0} used={used} maps={maps_parked}",
        spawn_park.as_nanos(),
        wake_join.as_nanos()
    );
}
