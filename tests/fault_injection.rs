//! Fault injection: what happens when the kernel refuses memory for a stack. Each case runs in a
//! child process (this test binary re-run with `PAGURUS_FAULT_INJECTION` set) that lowers its
//! address-space limit (`RLIMIT_AS`) just above what it has mapped, so the next large mapping
//! fails with ENOMEM while ordinary small allocations still succeed.
//!
//! - A growth that cannot map its new stack aborts with the runtime's out-of-memory message
//!   naming the coroutine, by fault (a deep recursion, on the alternate signal stack) and by
//!   `stack::ensure`: never a bare SIGSEGV.
//! - A coroutine whose first stack cannot be mapped: `raw::Coroutine::new` returns the error;
//!   `spawn` (which returns a `JoinHandle`, the stack being mapped when the coroutine first runs
//!   on a worker) aborts with a message saying which mapping failed.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use common::assert_died_of;

const CASE: &str = "PAGURUS_FAULT_INJECTION";

fn in_child(test: &str, case: &str) -> Option<std::process::Output> {
    common::in_child(CASE, case, test)
}

/// Bytes of address space this process has mapped now (`/proc/self/statm`, first field).
fn mapped_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm.split_whitespace().next().unwrap().parse().unwrap();
    pages * pagurus::stack::PAGE_SIZE as u64
}

/// Limits this process's address space to what it has mapped plus `headroom` bytes.
fn limit_address_space(headroom: u64) {
    let limit = mapped_bytes() + headroom;
    let rlim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads `rlim`.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlim) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// A runtime with one worker on which a coroutine has run, so its threads, pools and the
/// calling thread's alternate signal stack and system stack exist before the limit is lowered.
fn warm_runtime() -> pagurus::Runtime {
    let rt = pagurus::Runtime::builder().workers(1).build().unwrap();
    assert_eq!(rt.block_on(|| pagurus::spawn(|| 6 * 7).join().unwrap()), 42);
    rt
}

const OOM_GROWING: &[&str] = &[
    "pagurus: out of memory growing the stack of coroutine ",
    "(os error 12)",
    "Check ulimit -v",
];

#[test]
fn growth_by_fault_that_cannot_map_aborts_with_the_out_of_memory_message() {
    let test = "growth_by_fault_that_cannot_map_aborts_with_the_out_of_memory_message";
    let Some(out) = in_child(test, "fault") else {
        let rt = warm_runtime();
        let result = rt.block_on(|| {
            pagurus::spawn(|| {
                // 64 MiB more address space: enough for the first growths, not for a stack of
                // 32 MiB (its guard, its size and its alignment padding) next to the old one.
                limit_address_space(64 << 20);
                common::recurse_kib(256 << 10)
            })
            .join()
        });
        black_box(result.ok());
        unreachable!("a 256 MiB recursion must not fit in 64 MiB more address space");
    };
    assert_died_of(&out, libc::SIGABRT, OOM_GROWING);
}

#[test]
fn growth_by_ensure_that_cannot_map_aborts_with_the_out_of_memory_message() {
    let test = "growth_by_ensure_that_cannot_map_aborts_with_the_out_of_memory_message";
    let Some(out) = in_child(test, "ensure") else {
        let rt = warm_runtime();
        let result = rt.block_on(|| {
            pagurus::spawn(|| {
                limit_address_space(64 << 20);
                pagurus::stack::ensure(256 << 20);
                pagurus::stack::current().unwrap().size
            })
            .join()
        });
        black_box(result.ok());
        unreachable!("a 256 MiB stack must not fit in 64 MiB more address space");
    };
    assert_died_of(&out, libc::SIGABRT, OOM_GROWING);
    assert!(String::from_utf8_lossy(&out.stderr).contains("to 536870912 bytes"));
}

#[test]
fn a_stack_that_cannot_be_mapped_at_spawn_is_an_error_or_a_clear_abort() {
    let test = "a_stack_that_cannot_be_mapped_at_spawn_is_an_error_or_a_clear_abort";
    let Some(out) = in_child(test, "spawn") else {
        // One mapping per stack, as on kernels without guard markers: an arena would serve
        // every stack below from the region it already mapped, which is the point of arenas.
        // SAFETY: the child is single-threaded here; nothing reads the environment concurrently.
        unsafe { std::env::set_var("PAGURUS_STACK_GUARDS", "mprotect") };
        let rt = warm_runtime();
        // Less than one new stack needs (its 4 MiB guard alone), enough for small allocations.
        limit_address_space(2 << 20);
        // The raw API maps the stack in `new` and returns the error.
        match pagurus::raw::Coroutine::new(4096, |_| ()) {
            Ok(_) => panic!("raw::Coroutine::new mapped a stack over the limit"),
            Err(err) => eprintln!("raw::Coroutine::new: {:?}", err.raw_os_error()),
        }
        // `spawn` maps the stack when the coroutine first runs: coroutines that all stay alive
        // (parked on a channel) need new stacks once the pools are empty.
        rt.block_on(|| {
            let (tx, rx) = pagurus::channel::unbounded::<()>();
            let started = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..64)
                .map(|_| {
                    let rx = rx.clone();
                    let started = started.clone();
                    pagurus::spawn(move || {
                        started.fetch_add(1, SeqCst);
                        rx.recv().is_err()
                    })
                })
                .collect();
            // Until all 64 are alive at once (a condition, not a duration).
            while started.load(SeqCst) < 64 {
                pagurus::yield_now();
            }
            drop(tx);
            assert!(handles.into_iter().all(|h| h.join().unwrap()));
        });
        unreachable!("64 live coroutines must not fit in 2 MiB more address space");
    };
    // The first mapping refused is a coroutine's stack, or the system stack of the worker thread
    // (mapped on its first use, which may come before it needs a new coroutine stack): either
    // way a message naming the mapping, through `fatal`.
    assert_died_of(
        &out,
        libc::SIGABRT,
        &[
            "raw::Coroutine::new: Some(12)",
            "(os error 12)",
            "vm.max_map_count",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pagurus: cannot map a 4096-byte coroutine stack")
            || stderr.contains("pagurus: cannot map this thread's 8388608-byte system stack"),
        "{stderr}"
    );
    assert!(!stderr.contains("memory allocation of"), "{stderr}");
}

#[test]
fn a_system_stack_that_cannot_be_mapped_aborts_with_a_message() {
    let test = "a_system_stack_that_cannot_be_mapped_aborts_with_a_message";
    let Some(out) = in_child(test, "system") else {
        // A raw coroutine on a fresh thread: its stack is mapped before the limit, the thread's
        // system stack (mapped on first use) after.
        std::thread::spawn(|| {
            let mut co = pagurus::raw::Coroutine::new(4096, |_| {
                limit_address_space(2 << 20);
                black_box(pagurus::stack::on_system_stack(|| black_box(1)));
            })
            .unwrap();
            co.resume();
        })
        .join()
        .unwrap();
        unreachable!("an 8 MiB system stack must not fit in 2 MiB more address space");
    };
    assert_died_of(
        &out,
        libc::SIGABRT,
        &[
            "pagurus: cannot map this thread's 8388608-byte system stack (os error 12)",
            "Check `ulimit -v`",
        ],
    );
}
