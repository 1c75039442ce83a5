//! The soak: random mixes of everything the runtime does, round after round, with runtimes
//! dropped while coroutines are still in flight; run by `cargo xtask soak` (release build).
//!
//! ```text
//! soak [--seconds N] [--seed S]
//! ```
//!
//! Each round builds a runtime with random settings (1-3 workers, 4 or 16 KiB initial stacks,
//! pool on or off, quarantine on or off, a random default foreign-call mode), runs a few hundred
//! coroutines, each a random sequence of the workloads in [`WORKLOADS`], and checks every result.
//! About one round in three then leaves coroutines parked in every kind of wait (sleeping,
//! queued on a mutex, a semaphore and a wait group, yielding in a loop, deep in a grown stack,
//! receiving from an empty channel, sending on a full one, in a `select!`, reading a TCP socket
//! nobody writes to, waiting on a condition variable) and drops the runtime under them: each
//! must unwind (its destructors run, counted; its sockets close) and its
//! join must return `Cancelled`.
//!
//! After every round, with the runtime gone: `pagurus::stats()` shows no live coroutine and no
//! stack bytes reserved or pooled (nothing leaked), and the process's resident memory (VmRSS)
//! and open descriptors are sampled. After a warm-up (the first fifth of the run, at least five
//! rounds), they must stay flat: the last quarter of the samples may not exceed the first
//! post-warm-up quarter by more than [`RSS_SLACK`] (medians), and descriptors must come back to
//! the same count. Any failed check prints what failed, with the seed, and exits with status 1;
//! a round that takes longer than [`ROUND_LIMIT`] aborts the process (a hang).
//!
//! Covered: stack growth (recursion by faults, `stack::ensure`, frames pointing into each other),
//! yields, spawn/join trees, panics (payloads checked), `pagurus::sync` (Mutex, RwLock, Condvar,
//! Semaphore, WaitGroup), `pagurus::time::sleep`, `pagurus::channel` (rendezvous, bounded and
//! unbounded channels with several producers and consumers, counts, sums and per-producer order
//! checked; `select!` with recv and send arms and `default(dur)`, `time::after` and
//! `time::tick` in a `select!`), `pagurus::net` (a TCP echo over loopback between coroutines,
//! bytes checked; UDP round trips), foreign calls in every mode (`crates/ffi-fixtures`: plain
//! calls, 64 KiB unprobed frames, deep C stacks, callbacks, errno, a blocking call woken by
//! another coroutine), and cancellation of all the waits above.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::c_int;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use pagurus::channel::{self, Receiver, Sender};
use pagurus::ffi::{self, Mode};
use pagurus::net::{TcpListener, TcpStream, UdpSocket};
use pagurus::sync::{Condvar, Mutex, RwLock, Semaphore, WaitGroup};
use pagurus::{Cancelled, JoinHandle, Runtime, select, spawn, stack, stats, time, yield_now};
use pagurus_ffi_fixtures::ffi::{
    pf_add, pf_callback, pf_fail_with_errno, pf_unprobed_64k, pf_use_stack, pf_wait_flag,
};
use pagurus_ffi_fixtures::{double_it, unprobed_64k_expected, use_stack_expected};

/// Tolerated growth of resident memory between the start and the end of the measured rounds.
const RSS_SLACK: u64 = 24 << 20;
/// The longest a round may take before the soak calls it a hang.
const ROUND_LIMIT: Duration = Duration::from_secs(120);
/// Coroutines a round runs (each a few workloads).
const TASKS_PER_ROUND: usize = 200;

/// A failed check: panics with a message the round reports.
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            panic!("soak check: {}", format!($($fmt)+));
        }
    };
}

/// One workload: runs in a coroutine with its own random stream, checks its own results (a
/// failed check panics with a message starting `soak check`), returns a number that went into
/// them, so that nothing is optimised away.
type Workload = fn(&mut Rng) -> u64;

/// What a round mixes. Adding a primitive to the soak is adding a function here.
const WORKLOADS: &[(&str, Workload)] = &[
    ("grow by recursion", grow_by_recursion),
    ("grow by ensure", grow_by_ensure),
    ("frames pointing at frames", pointer_chain),
    ("yields", yields),
    ("spawn and join a tree", spawn_tree),
    ("panic and join", panic_and_join),
    ("mutex", mutex),
    ("semaphore", semaphore),
    ("wait group", wait_group),
    ("sleep", sleep),
    ("channels", channels),
    ("select with timers", select_with_timers),
    ("rwlock", rwlock),
    ("condvar", condvar),
    ("tcp echo", tcp_echo),
    ("udp round trip", udp_round_trip),
    ("foreign calls", foreign_calls),
    ("blocking foreign call", blocking_foreign_call),
];

fn main() -> ExitCode {
    let mut seconds = 60u64;
    let mut seed = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--seconds", Some(v)) => seconds = v,
            ("--seed", Some(v)) => seed = Some(v),
            _ => {
                eprintln!("usage: soak [--seconds N] [--seed S]");
                return ExitCode::from(2);
            }
        }
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    quiet_intended_panics();
    println!("soak: {seconds} s, seed {seed}");
    match soak(Duration::from_secs(seconds), seed) {
        Ok(summary) => {
            println!("soak: ok: {summary}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("soak: FAILED (seed {seed}): {failure}");
            ExitCode::FAILURE
        }
    }
}

/// What the soak did, for the closing line.
#[derive(Default)]
struct Totals {
    rounds: u64,
    cancelled_rounds: u64,
    coroutines: u64,
    cancelled: u64,
    workloads: u64,
}

fn soak(duration: Duration, seed: u64) -> Result<String, String> {
    let start = Instant::now();
    let mut rng = Rng::new(seed);
    let mut totals = Totals::default();
    let mut samples: Vec<(u64, usize)> = Vec::new();
    let baseline = stats();
    while start.elapsed() < duration {
        let round_seed = rng.next();
        let watchdog = Watchdog::arm(totals.rounds, round_seed);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| round(round_seed, &mut totals)));
        drop(watchdog);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => {
                return Err(format!(
                    "round {} (seed {round_seed}): {failure}",
                    totals.rounds
                ));
            }
            Err(payload) => {
                return Err(format!(
                    "round {} (seed {round_seed}) panicked: {}",
                    totals.rounds,
                    message(&*payload)
                ));
            }
        }
        totals.rounds += 1;
        let now = stats();
        if now.live != baseline.live
            || now.stack_bytes_reserved != baseline.stack_bytes_reserved
            || now.stack_bytes_pooled != baseline.stack_bytes_pooled
        {
            return Err(format!(
                "round {}: stats do not return to the baseline with every runtime gone: \
                 {baseline:?} -> {now:?}",
                totals.rounds
            ));
        }
        samples.push((rss_bytes(), open_fds()));
        if totals.rounds % 20 == 0 {
            let (rss, fds) = samples[samples.len() - 1];
            println!(
                "soak: {:>4} s, {} rounds, {} coroutines, RSS {} KiB, {fds} fds",
                start.elapsed().as_secs(),
                totals.rounds,
                totals.coroutines,
                rss >> 10
            );
        }
    }
    let flat = check_flat(&samples, start.elapsed())?;
    Ok(format!(
        "{} rounds ({} dropping a runtime under {} waiting coroutines), {} coroutines, {} \
         workloads, {} growths, {} MiB copied; {flat}",
        totals.rounds,
        totals.cancelled_rounds,
        totals.cancelled,
        totals.coroutines,
        totals.workloads,
        stats().growths - baseline.growths,
        (stats().bytes_copied - baseline.bytes_copied) >> 20,
    ))
}

/// Resident memory and descriptors after the warm-up: flat, or an error saying how they grew.
fn check_flat(samples: &[(u64, usize)], elapsed: Duration) -> Result<String, String> {
    let warm_up = (samples.len() / 5).max(5);
    let measured = samples.get(warm_up..).unwrap_or(&[]);
    if measured.len() < 8 {
        return Ok(format!(
            "too few rounds after warm-up ({}) in {} s to judge RSS and descriptors",
            measured.len(),
            elapsed.as_secs()
        ));
    }
    let quarter = measured.len() / 4;
    let median = |part: &[(u64, usize)], f: fn(&(u64, usize)) -> u64| {
        let mut v: Vec<u64> = part.iter().map(f).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (first, last) = (&measured[..quarter], &measured[measured.len() - quarter..]);
    let (rss_first, rss_last) = (median(first, |s| s.0), median(last, |s| s.0));
    let (fds_first, fds_last) = (median(first, |s| s.1 as u64), median(last, |s| s.1 as u64));
    let rss_max = measured.iter().map(|s| s.0).max().unwrap_or(0);
    if rss_last > rss_first + RSS_SLACK {
        return Err(format!(
            "resident memory grows: median {} KiB over the first quarter after warm-up, {} KiB \
             over the last (more than {} KiB apart; {} rounds measured)",
            rss_first >> 10,
            rss_last >> 10,
            RSS_SLACK >> 10,
            measured.len()
        ));
    }
    if fds_last > fds_first {
        return Err(format!(
            "open descriptors grow: median {fds_first} over the first quarter after warm-up, \
             {fds_last} over the last"
        ));
    }
    Ok(format!(
        "RSS flat ({} -> {} KiB medians, max {} KiB), descriptors flat ({fds_first} -> \
         {fds_last}), over {} rounds after {warm_up} of warm-up",
        rss_first >> 10,
        rss_last >> 10,
        rss_max >> 10,
        measured.len()
    ))
}

/// One round: a runtime with random settings, a few hundred coroutines of random workloads, and
/// sometimes a drop of the runtime under parked coroutines.
fn round(seed: u64, totals: &mut Totals) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let mode = random_mode(&mut rng);
    let rt = Runtime::builder()
        .workers(1 + rng.below(3) as usize)
        .initial_stack_size(if rng.below(4) == 0 { 16 << 10 } else { 4 << 10 })
        .max_stack_size(64 << 20)
        .stack_pool_bytes(if rng.below(4) == 0 { 0 } else { 4 << 20 })
        .stack_quarantine(rng.below(4) == 0)
        .ffi_mode(mode)
        .build()
        .map_err(|e| format!("cannot build the runtime: {e}"))?;
    let tasks = TASKS_PER_ROUND / 2 + rng.below(TASKS_PER_ROUND as u64) as usize;
    let seeds: Vec<u64> = (0..tasks).map(|_| rng.next()).collect();
    let results = rt.block_on(|| {
        let handles: Vec<JoinHandle<(u64, u64)>> = seeds
            .iter()
            .map(|&seed| {
                spawn(move || {
                    let mut rng = Rng::new(seed);
                    let mut done = 0;
                    let mut acc = 0u64;
                    for _ in 0..1 + rng.below(4) {
                        let (_, work) = WORKLOADS[rng.below(WORKLOADS.len() as u64) as usize];
                        acc = acc.wrapping_add(work(&mut rng));
                        done += 1;
                    }
                    (done, acc)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(JoinHandle::join)
            .collect::<Vec<_>>()
    });
    totals.coroutines += tasks as u64;
    for result in results {
        match result {
            Ok((done, _)) => totals.workloads += done,
            Err(payload) => return Err(format!("a coroutine failed: {}", message(&*payload))),
        }
    }
    if rng.below(3) == 0 {
        totals.cancelled += drop_under_waiters(rt, &mut rng)?;
        totals.cancelled_rounds += 1;
    }
    Ok(())
}

/// Parks coroutines in every kind of wait, then drops the runtime under them: every one must
/// unwind (its guard's destructor runs) and its join must give `Cancelled`. Returns how many.
fn drop_under_waiters(rt: Runtime, rng: &mut Rng) -> Result<u64, String> {
    let n = 8 + rng.below(24) as usize;
    let dropped = Arc::new(AtomicUsize::new(0));
    let parked = Arc::new(AtomicUsize::new(0));
    let lock = Arc::new(Mutex::new(0u64));
    let (open_tx, open_rx) = channel::unbounded::<u64>();
    let (full_tx, full_rx) = channel::bounded::<u64>(1);
    full_tx.send(0).unwrap();
    let waits = Arc::new(Waits {
        lock: lock.clone(),
        none: Semaphore::new(0),
        never: WaitGroup::new(),
        parked: parked.clone(),
        empty: open_rx,
        full: full_tx,
        cv: (Mutex::new(false), Condvar::new()),
    });
    waits.never.add(1);
    let kinds: Vec<u64> = (0..n).map(|_| rng.below(WAIT_KINDS)).collect();
    let handles = rt.block_on(|| {
        // Holds the lock for ever (until cancelled), so that lockers queue behind it.
        let holder = {
            let (lock, parked) = (lock.clone(), parked.clone());
            spawn(move || {
                let _guard = lock.lock();
                parked.fetch_add(1, SeqCst);
                pagurus::time::sleep(Duration::from_secs(3600));
            })
        };
        while parked.load(SeqCst) == 0 {
            yield_now();
        }
        let mut handles: Vec<JoinHandle<()>> = kinds
            .iter()
            .map(|&kind| {
                let guard = Guard(dropped.clone());
                let waits = waits.clone();
                spawn(move || {
                    let _guard = guard;
                    park_forever(kind, &waits);
                })
            })
            .collect();
        handles.push(holder);
        // Let them all reach their waits (each counts itself just before).
        while parked.load(SeqCst) < n + 1 {
            pagurus::time::sleep(Duration::from_millis(1));
        }
        handles
    });
    drop(rt);
    let unwound = dropped.load(SeqCst);
    if unwound != n {
        return Err(format!(
            "{unwound} of {n} cancelled coroutines ran their destructors"
        ));
    }
    for handle in handles {
        match handle.join() {
            Err(payload) if payload.downcast_ref::<Cancelled>().is_some() => {}
            Err(payload) => {
                return Err(format!(
                    "a cancelled join gave another panic: {}",
                    message(&*payload)
                ));
            }
            Ok(()) => return Err("a coroutine parked for ever finished".to_owned()),
        }
    }
    // The other ends stayed open all along, so the channel waits were never disconnected.
    drop((open_tx, full_rx));
    Ok(n as u64 + 1)
}

/// What the coroutines of [`drop_under_waiters`] wait on. Nothing here is ever released.
struct Waits {
    /// Held for ever by one coroutine.
    lock: Arc<Mutex<u64>>,
    /// A semaphore without permits.
    none: Semaphore,
    /// A wait group that never reaches zero.
    never: WaitGroup,
    /// Counts the coroutines about to wait.
    parked: Arc<AtomicUsize>,
    /// An empty channel whose sender stays open.
    empty: Receiver<u64>,
    /// A full channel (capacity 1) whose receiver stays open.
    full: Sender<u64>,
    /// A flag never set, and its condition variable.
    cv: (Mutex<bool>, Condvar),
}

/// How many kinds of wait [`wait_once`] knows.
const WAIT_KINDS: u64 = 11;

/// Waits in the way `kind` says, after counting itself in `parked`, then sleeps for ever.
///
/// The second wait matters: dropping a runtime is not one instant for all its workers. A mutex
/// waiter whose worker has not yet seen the shutdown may be handed the lock by the holder's
/// cancellation on another worker and go on normally (design.md: a waiter already handed the lock
/// completes, and is cancelled at its next park). What every coroutine here must do is unwind at
/// its next park, never finish.
fn park_forever(kind: u64, waits: &Waits) {
    wait_once(kind, waits);
    pagurus::time::sleep(Duration::from_secs(3600));
}

/// The first wait of [`park_forever`].
fn wait_once(kind: u64, waits: &Waits) {
    let parked = &*waits.parked;
    match kind {
        0 => {
            parked.fetch_add(1, SeqCst);
            pagurus::time::sleep(Duration::from_secs(3600));
        }
        1 => {
            parked.fetch_add(1, SeqCst);
            *waits.lock.lock() += 1;
        }
        2 => {
            parked.fetch_add(1, SeqCst);
            drop(waits.none.acquire());
        }
        3 => {
            parked.fetch_add(1, SeqCst);
            waits.never.wait();
        }
        4 => {
            parked.fetch_add(1, SeqCst);
            loop {
                yield_now();
            }
        }
        5 => {
            // Deep in a grown stack, with a guard in every frame.
            fn deep(depth: u32, parked: &AtomicUsize) {
                let frame = std::hint::black_box([depth as u64; 32]);
                if depth == 0 {
                    parked.fetch_add(1, SeqCst);
                    pagurus::time::sleep(Duration::from_secs(3600));
                } else {
                    deep(depth - 1, parked);
                }
                std::hint::black_box(frame);
            }
            deep(200, parked);
        }
        6 => {
            parked.fetch_add(1, SeqCst);
            let got = waits.empty.recv();
            check!(
                got.is_err(),
                "received {got:?} from a channel nobody sends on"
            );
        }
        7 => {
            parked.fetch_add(1, SeqCst);
            let sent = waits.full.send(7);
            check!(sent.is_err(), "sent on a channel that stays full");
        }
        8 => {
            parked.fetch_add(1, SeqCst);
            select! {
                recv(waits.empty) -> v => check!(v.is_err(), "select received {v:?}"),
                send(waits.full, 8) -> r => check!(r.is_err(), "select sent on a full channel"),
                recv(time::after(Duration::from_secs(3600))) -> _ => {}
            }
        }
        9 => {
            // A TCP read on a connection whose peer never writes; the three sockets close as the
            // coroutine unwinds (the soak checks descriptors stay flat).
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (_server, _) = listener.accept().unwrap();
            parked.fetch_add(1, SeqCst);
            let mut buf = [0u8; 16];
            let got = client.read(&mut buf);
            check!(false, "a read nobody writes to returned {got:?}");
        }
        _ => {
            let (flag, cv) = &waits.cv;
            parked.fetch_add(1, SeqCst);
            let set = cv.wait_while(flag.lock(), |set| !*set);
            check!(false, "a condition never set was seen set: {}", *set);
        }
    }
}

/// Counts its drop.
struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads

fn grow_by_recursion(rng: &mut Rng) -> u64 {
    #[inline(never)]
    fn recurse(n: u64) -> u64 {
        let frame = std::hint::black_box([n; 64]); // 512 bytes
        if n == 0 {
            0
        } else {
            recurse(n - 1) + std::hint::black_box(frame)[63]
        }
    }
    let n = rng.below(4000);
    let got = recurse(n);
    check!(
        got == n * (n + 1) / 2,
        "recursion of {n} frames summed to {got}"
    );
    got
}

fn grow_by_ensure(rng: &mut Rng) -> u64 {
    let bytes = 1usize << (12 + rng.below(9)); // 4 KiB .. 1 MiB
    let marker = std::hint::black_box([0x5eed_u64, bytes as u64]);
    stack::ensure(bytes);
    let left = stack::remaining().unwrap_or(usize::MAX);
    check!(left >= bytes, "ensure({bytes}) left {left} bytes");
    // The local moved with the stack (or stayed), and kept its contents.
    check!(
        marker == [0x5eed, bytes as u64],
        "a local changed across ensure"
    );
    bytes as u64
}

fn pointer_chain(rng: &mut Rng) -> u64 {
    struct Link<'a> {
        value: u64,
        up: Option<&'a Link<'a>>,
        pad: [u64; 16],
    }
    #[inline(never)]
    fn down(depth: u64, up: Option<&Link<'_>>) -> u64 {
        let link = Link {
            value: depth,
            up,
            pad: std::hint::black_box([depth; 16]),
        };
        if depth == 0 {
            // Walk back up through every frame's pointer (fixed by each move on the way down).
            let mut sum = 0;
            let mut at = Some(&link);
            while let Some(l) = at {
                sum += l.value + l.pad[15] - l.pad[0];
                at = l.up;
            }
            sum
        } else {
            down(depth - 1, Some(&link))
        }
    }
    let n = rng.below(3000);
    let got = down(n, None);
    check!(
        got == n * (n + 1) / 2,
        "pointer chain of {n} frames summed to {got}"
    );
    got
}

fn yields(rng: &mut Rng) -> u64 {
    let n = rng.below(50);
    let local = Cell::new(0u64);
    for _ in 0..n {
        local.set(local.get() + 1);
        yield_now();
    }
    check!(
        local.get() == n,
        "yielded {n} times, counted {}",
        local.get()
    );
    n
}

fn spawn_tree(rng: &mut Rng) -> u64 {
    fn tree(depth: u32, fan: u64) -> u64 {
        if depth == 0 {
            return 1;
        }
        let children: Vec<_> = (0..fan)
            .map(|_| spawn(move || tree(depth - 1, fan)))
            .collect();
        1 + children.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    }
    let depth = rng.below(4) as u32;
    let fan = 1 + rng.below(3);
    let got = tree(depth, fan);
    let want: u64 = (0..=depth).map(|d| fan.pow(d)).sum();
    check!(
        got == want,
        "a tree of depth {depth}, fan-out {fan} counted {got} nodes"
    );
    got
}

/// The payload of the panics the soak raises on purpose (the panic hook keeps them quiet).
struct Intended(u64);

fn panic_and_join(rng: &mut Rng) -> u64 {
    let value = rng.next();
    let depth = rng.below(500);
    let dropped = Arc::new(AtomicUsize::new(0));
    let guard = Guard(dropped.clone());
    let handle = spawn(move || {
        let _guard = guard;
        #[inline(never)]
        fn dive(depth: u64, value: u64) -> u64 {
            let frame = std::hint::black_box([value; 16]);
            if depth == 0 {
                panic::panic_any(Intended(value));
            }
            dive(depth - 1, value) + frame[3]
        }
        dive(depth, value)
    });
    match handle.join() {
        Err(payload) => {
            let got = payload.downcast_ref::<Intended>().map(|p| p.0);
            check!(got == Some(value), "the panic payload came back as {got:?}");
        }
        Ok(v) => check!(false, "a panicking coroutine returned {v}"),
    }
    check!(
        dropped.load(SeqCst) == 1,
        "the unwound coroutine's guard did not drop"
    );
    value
}

fn mutex(rng: &mut Rng) -> u64 {
    let lockers = 1 + rng.below(6);
    let rounds = 1 + rng.below(20);
    let counter = Arc::new(Mutex::new(0u64));
    let handles: Vec<_> = (0..lockers)
        .map(|_| {
            let counter = counter.clone();
            spawn(move || {
                for _ in 0..rounds {
                    let mut guard = counter.lock();
                    let seen = *guard;
                    yield_now(); // hold it across a switch
                    *guard = seen + 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let got = *counter.lock();
    check!(
        got == lockers * rounds,
        "{lockers} x {rounds} locked increments gave {got}"
    );
    got
}

fn semaphore(rng: &mut Rng) -> u64 {
    let permits = 1 + rng.below(3) as usize;
    let users = 1 + rng.below(8);
    let sem = Arc::new(Semaphore::new(permits));
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..users)
        .map(|_| {
            let (sem, inside, most) = (sem.clone(), inside.clone(), most.clone());
            spawn(move || {
                let _permit = sem.acquire();
                let now = inside.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                yield_now();
                inside.fetch_sub(1, SeqCst);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let most = most.load(SeqCst);
    check!(
        most <= permits,
        "{most} holders of a {permits}-permit semaphore at once"
    );
    check!(
        sem.available_permits() == permits,
        "permits not all returned"
    );
    most as u64
}

fn wait_group(rng: &mut Rng) -> u64 {
    let n = rng.below(10) as usize;
    let wg = WaitGroup::new();
    let done = Arc::new(AtomicUsize::new(0));
    for i in 0..n {
        wg.add(1);
        let (wg, done) = (wg.clone(), done.clone());
        spawn(move || {
            if i % 2 == 0 {
                yield_now();
            }
            done.fetch_add(1, SeqCst);
            wg.done();
        });
    }
    wg.wait();
    check!(
        done.load(SeqCst) == n,
        "wait returned with {} of {n} done",
        done.load(SeqCst)
    );
    n as u64
}

fn sleep(rng: &mut Rng) -> u64 {
    let dur = Duration::from_micros(rng.below(3000));
    let start = Instant::now();
    pagurus::time::sleep(dur);
    let slept = start.elapsed();
    check!(slept >= dur, "sleep({dur:?}) returned after {slept:?}");
    dur.as_micros() as u64
}

/// Producers and consumers on a random flavour (rendezvous, bounded, unbounded): every value
/// arrives exactly once (count and sum), each producer's values in order at every consumer.
fn channels(rng: &mut Rng) -> u64 {
    let (tx, rx) = match rng.below(3) {
        0 => channel::bounded(0),
        1 => channel::bounded(1 + rng.below(8) as usize),
        _ => channel::unbounded(),
    };
    let producers = 1 + rng.below(4);
    let per = 1 + rng.below(60);
    let consumers = 1 + rng.below(3);
    let sent: Vec<_> = (0..producers)
        .map(|p| {
            let tx: Sender<u64> = tx.clone();
            spawn(move || {
                for k in 0..per {
                    tx.send(p << 32 | k).unwrap();
                    if k % 7 == 0 {
                        yield_now();
                    }
                }
            })
        })
        .collect();
    drop(tx);
    let received: Vec<_> = (0..consumers)
        .map(|_| {
            let rx: Receiver<u64> = rx.clone();
            spawn(move || {
                let mut next = vec![0u64; producers as usize];
                let (mut n, mut sum) = (0u64, 0u64);
                for v in rx.iter() {
                    let (p, k) = ((v >> 32) as usize, v & 0xffff_ffff);
                    check!(k >= next[p], "producer {p}: {k} after {}", next[p]);
                    next[p] = k + 1;
                    n += 1;
                    sum = sum.wrapping_add(v);
                }
                (n, sum)
            })
        })
        .collect();
    drop(rx);
    for h in sent {
        h.join().unwrap();
    }
    let (n, sum) = received
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0u64), |a, b| (a.0 + b.0, a.1.wrapping_add(b.1)));
    let want: u64 = (0..producers)
        .flat_map(|p| (0..per).map(move |k| p << 32 | k))
        .fold(0, u64::wrapping_add);
    check!(
        n == producers * per && sum == want,
        "{producers} x {per} sent, {n} received (sum {sum:#x}, expected {want:#x})"
    );
    n
}

/// A forwarder `select!`s over two inputs (a small bounded one and an unbounded one) and a send
/// arm to the output, with `default(dur)` when idle; the receiver `select!`s over the output, a
/// `tick` and an `after`. Every value arrives exactly once; ticks come in order; the `after`
/// fires no earlier than asked.
fn select_with_timers(rng: &mut Rng) -> u64 {
    let (a_tx, a_rx) = channel::bounded::<u64>(rng.below(3) as usize);
    let (b_tx, b_rx) = channel::unbounded::<u64>();
    let (out_tx, out_rx) = channel::bounded::<u64>(rng.below(2) as usize);
    let n = 1 + rng.below(60);
    let idle_wait = Duration::from_micros(50 + rng.below(500));
    let producer = spawn(move || {
        for i in 0..n {
            if i % 2 == 0 {
                a_tx.send(i)
            } else {
                b_tx.send(i)
            }
            .unwrap();
            if i % 5 == 0 {
                yield_now();
            }
        }
    });
    let forwarder = spawn(move || {
        let mut pending = VecDeque::new();
        let (mut a, mut b) = (a_rx, b_rx);
        let (mut a_open, mut b_open, mut idle) = (true, true, 0u64);
        while a_open || b_open || !pending.is_empty() {
            match pending.front().copied() {
                Some(front) => select! {
                    recv(a) -> v => match v {
                        Ok(v) => pending.push_back(v),
                        Err(_) => a_open = false,
                    },
                    recv(b) -> v => match v {
                        Ok(v) => pending.push_back(v),
                        Err(_) => b_open = false,
                    },
                    send(out_tx, front) -> r => {
                        r.unwrap();
                        pending.pop_front();
                    }
                },
                None => select! {
                    recv(a) -> v => match v {
                        Ok(v) => pending.push_back(v),
                        Err(_) => a_open = false,
                    },
                    recv(b) -> v => match v {
                        Ok(v) => pending.push_back(v),
                        Err(_) => b_open = false,
                    },
                    default(idle_wait) => idle += 1,
                },
            }
            // A disconnected input is always ready: stop listening to it.
            if !a_open {
                a = channel::never();
            }
            if !b_open {
                b = channel::never();
            }
        }
        idle
    });
    let start = Instant::now();
    let delay = Duration::from_micros(rng.below(2000));
    let mut timer = time::after(delay);
    let ticker = time::tick(Duration::from_micros(200 + rng.below(800)));
    let (mut got, mut sum, mut fired, mut ticks) = (0u64, 0u64, false, 0u64);
    let mut last_tick = start;
    let mut out = out_rx.clone();
    let mut closed = false;
    while got < n || !fired {
        if closed {
            out = channel::never();
        }
        select! {
            recv(out) -> v => match v {
                Ok(v) => {
                    sum += v;
                    got += 1;
                }
                // The forwarder is done; the timer may still be pending.
                Err(_) => {
                    check!(got == n, "the forwarder stopped after {got} of {n}");
                    closed = true;
                }
            },
            recv(timer) -> t => {
                let t = t.unwrap();
                check!(t >= start + delay, "after({delay:?}) fired {:?} early", start + delay - t);
                fired = true;
                timer = channel::never();
            }
            recv(ticker) -> t => {
                let t = t.unwrap();
                check!(t > last_tick, "tick went backwards");
                last_tick = t;
                ticks += 1;
            }
        }
    }
    check!(out_rx.recv().is_err(), "the forwarder sent more than {n}");
    producer.join().unwrap();
    let idle = forwarder.join().unwrap();
    check!(
        sum == n * (n - 1) / 2,
        "select forwarded {got} values, sum {sum}"
    );
    sum.wrapping_add(ticks).wrapping_add(idle)
}

/// Writers keep two fields equal only between their two increments (with a yield in between,
/// under the write lock); readers must always see them equal.
fn rwlock(rng: &mut Rng) -> u64 {
    let pair = Arc::new(RwLock::new((0u64, 0u64)));
    let writers = 1 + rng.below(3);
    let readers = 1 + rng.below(4);
    let rounds = 1 + rng.below(20);
    let mut handles: Vec<JoinHandle<()>> = (0..writers)
        .map(|_| {
            let pair = pair.clone();
            spawn(move || {
                for _ in 0..rounds {
                    let mut g = pair.write();
                    g.0 += 1;
                    yield_now();
                    g.1 += 1;
                }
            })
        })
        .collect();
    handles.extend((0..readers).map(|_| {
        let pair = pair.clone();
        spawn(move || {
            for _ in 0..rounds {
                let g = pair.read();
                let (a, b) = *g;
                yield_now();
                check!(a == b && *g == (a, b), "a reader saw {a} and {b}");
            }
        })
    }));
    for h in handles {
        h.join().unwrap();
    }
    let (a, b) = *pair.read();
    check!(
        a == writers * rounds && b == a,
        "{writers} x {rounds} writes gave ({a}, {b})"
    );
    a
}

/// A queue under a `Mutex` with a `Condvar`: producers push and notify, consumers wait while it
/// is empty; an end marker per consumer. Every item is taken exactly once.
fn condvar(rng: &mut Rng) -> u64 {
    let shared = Arc::new((Mutex::new(VecDeque::<Option<u64>>::new()), Condvar::new()));
    let consumers = 1 + rng.below(3);
    let items = rng.below(100);
    let taken: Vec<_> = (0..consumers)
        .map(|_| {
            let shared = shared.clone();
            spawn(move || {
                let (queue, cv) = &*shared;
                let (mut n, mut sum) = (0u64, 0u64);
                loop {
                    let mut q = cv.wait_while(queue.lock(), |q| q.is_empty());
                    match q.pop_front().unwrap() {
                        Some(v) => {
                            n += 1;
                            sum += v;
                        }
                        None => return (n, sum),
                    }
                }
            })
        })
        .collect();
    let (queue, cv) = &*shared;
    for i in 0..items {
        queue.lock().push_back(Some(i));
        if rng.below(2) == 0 {
            cv.notify_one()
        } else {
            cv.notify_all()
        }
        if i % 9 == 0 {
            yield_now();
        }
    }
    for _ in 0..consumers {
        queue.lock().push_back(None);
        cv.notify_all();
    }
    let (n, sum) = taken
        .into_iter()
        .map(|h| h.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    check!(
        n == items && sum == items * items.saturating_sub(1) / 2,
        "{items} items pushed, {n} taken (sum {sum})"
    );
    n
}

/// A TCP echo over loopback between coroutines: a server echoes what it reads until the end of
/// the stream; the client writes random bytes in random chunks while another coroutine reads the
/// echo back. The bytes must come back exactly.
fn tcp_echo(rng: &mut Rng) -> u64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut echoed = 0;
        loop {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                return echoed;
            }
            conn.write_all(&buf[..n]).unwrap();
            echoed += n;
        }
    });
    let salt = rng.next();
    let data: Vec<u8> = (0..1 + rng.below(128 << 10))
        .map(|i| (i.wrapping_mul(0x9e37_79b9) ^ salt) as u8)
        .collect();
    let mut client = TcpStream::connect(addr).unwrap();
    let mut reader = client.try_clone().unwrap();
    let echo = spawn(move || {
        let mut back = Vec::new();
        reader.read_to_end(&mut back).unwrap();
        back
    });
    let mut rest = &data[..];
    while !rest.is_empty() {
        let chunk = (1 + rng.below(16 << 10) as usize).min(rest.len());
        client.write_all(&rest[..chunk]).unwrap();
        rest = &rest[chunk..];
    }
    client.shutdown(Shutdown::Write).unwrap();
    let back = echo.join().unwrap();
    let echoed = server.join().unwrap();
    check!(
        echoed == data.len() && back == data,
        "tcp echo: {} bytes sent, {echoed} echoed, {} came back (equal: {})",
        data.len(),
        back.len(),
        back == data
    );
    data.len() as u64
}

/// UDP datagrams over loopback to an echoing coroutine and back, one at a time: each comes back
/// whole, from the echo's address.
fn udp_round_trip(rng: &mut Rng) -> u64 {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_addr = b.local_addr().unwrap();
    let n = 1 + rng.below(8);
    let echo = spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..n {
            let (len, from) = b.recv_from(&mut buf).unwrap();
            b.send_to(&buf[..len], from).unwrap();
        }
    });
    let mut total = 0;
    let mut buf = [0u8; 2048];
    for i in 0..n {
        let len = 1 + rng.below(1400) as usize;
        let msg: Vec<u8> = (0..len).map(|k| (k as u64 ^ i ^ n) as u8).collect();
        a.send_to(&msg, b_addr).unwrap();
        let (got, from) = a.recv_from(&mut buf).unwrap();
        check!(
            from == b_addr && buf[..got] == msg[..],
            "udp datagram {i}: {got} bytes from {from}, sent {len} to {b_addr}"
        );
        total += got as u64;
    }
    echo.join().unwrap();
    total
}

fn random_mode(rng: &mut Rng) -> Mode {
    match rng.below(4) {
        0 => Mode::Switch,
        1 => Mode::Direct,
        2 => Mode::Reserve {
            bytes: 64 << (rng.below(4) * 2), // 64 KiB .. 4 MiB
        },
        _ => Mode::Offload,
    }
}

fn foreign_calls(rng: &mut Rng) -> u64 {
    let mode = random_mode(rng);
    let (a, b) = (rng.next() as i64 >> 2, rng.next() as i64 >> 2);
    let seed = rng.below(1000) as i64;
    // SAFETY (every call below): the fixtures have no preconditions beyond their arguments.
    let sum = ffi::call_with(mode, move || unsafe { pf_add(a, b) });
    check!(sum == a + b, "{mode}: pf_add");
    let big = ffi::call_with(mode, move || unsafe { pf_unprobed_64k(seed) });
    check!(
        big == unprobed_64k_expected(seed),
        "{mode}: pf_unprobed_64k"
    );
    // Direct runs on the coroutine stack and grows it by faults; keep it within reason there.
    let bytes = 1024 << rng.below(if mode == Mode::Direct { 7 } else { 10 }) as usize;
    let deep = ffi::call_with(mode, move || unsafe { pf_use_stack(bytes, seed) });
    check!(
        deep == use_stack_expected(bytes, seed),
        "{mode}: pf_use_stack({bytes})"
    );
    let back = ffi::call_with(mode, move || unsafe { pf_callback(double_it, seed) });
    check!(back == 2 * seed + 1, "{mode}: pf_callback");
    let err = 1 + rng.below(100) as c_int;
    let (r, errno) = ffi::call_with(mode, move || {
        let r = unsafe { pf_fail_with_errno(err) };
        (r, std::io::Error::last_os_error().raw_os_error())
    });
    check!(
        r == -1 && errno == Some(err),
        "{mode}: errno {errno:?}, want {err}"
    );
    // And what the caller reads after the call, whatever thread ran it.
    unsafe { pf_fail_with_errno(err) };
    let after = std::io::Error::last_os_error().raw_os_error();
    check!(
        after == Some(err),
        "errno after a call in the default mode: {after:?}"
    );
    sum.wrapping_add(big).wrapping_add(deep) as u64
}

/// A blocking call that another coroutine ends (Offload: the worker runs the other one
/// meanwhile).
fn blocking_foreign_call(rng: &mut Rng) -> u64 {
    let flag = Arc::new(AtomicI32::new(0));
    let setter = {
        let flag = flag.clone();
        let delay = rng.below(3);
        spawn(move || {
            pagurus::time::sleep(Duration::from_millis(delay));
            flag.store(1, SeqCst);
        })
    };
    let seen = {
        let flag = SendPtr(Arc::as_ptr(&flag));
        ffi::call_with(Mode::Offload, move || {
            let flag = flag;
            // SAFETY: the flag outlives the call (the caller holds an Arc); C only reads it.
            unsafe { pf_wait_flag(flag.0, 20_000) }
        })
    };
    setter.join().unwrap();
    check!(
        seen == 1,
        "an offloaded wait did not see the flag another coroutine set"
    );
    1
}

/// A pointer to a flag the caller keeps alive across an offloaded call.
struct SendPtr(*const AtomicI32);
// SAFETY: it points to an atomic, which any thread may read.
unsafe impl Send for SendPtr {}

// ---------------------------------------------------------------------------------------------
// Plumbing

/// A small deterministic random stream (xorshift64*), so that a seed replays a failure.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Aborts the process if a round outlives [`ROUND_LIMIT`]: a hang is a failure, and the soak
/// must say so rather than wait for ever.
struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    fn arm(round: u64, seed: u64) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !flag.load(SeqCst) {
                if start.elapsed() > ROUND_LIMIT {
                    eprintln!(
                        "soak: FAILED: round {round} (seed {seed}) still running after \
                         {ROUND_LIMIT:?}: a hang"
                    );
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// Keeps the default panic message for real failures and silences the intended ones.
fn quiet_intended_panics() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<Intended>().is_none() {
            default(info);
        }
    }));
}

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if payload.downcast_ref::<Cancelled>().is_some() {
        "Cancelled".to_owned()
    } else {
        "a non-string payload".to_owned()
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib << 10)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}
