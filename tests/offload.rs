//! The blocking-call pool (`pagurus::offload::run`, the `Offload` foreign-call mode): a call is
//! never queued behind a blocked one while the pool is below its thread cap, and a call that
//! cannot get a thread runs inline instead of waiting for ever (issue 12, defect 7).
//!
//! The pool is process-wide; cases that need it in a known state (no thread yet, one idle thread)
//! run in a child process (this binary, re-run with `PAGURUS_OFFLOAD_CASE` set).

use std::ffi::c_int;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use pagurus::ffi::{self, Mode};
use pagurus::{Runtime, spawn};
use pagurus_ffi_fixtures::ffi::pf_wait_flag;

const CASE: &str = "PAGURUS_OFFLOAD_CASE";

/// Runs `test` in a child with `CASE` set, killing it after `limit`: the bugs these tests catch
/// are hangs. Returns `None` in the child itself.
fn in_child(test: &str, limit: Duration) -> Option<Output> {
    if std::env::var_os(CASE).is_some() {
        return None;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE, test)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the child");
    let start = Instant::now();
    while child.try_wait().expect("wait for the child").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect the child");
            panic!(
                "{test}: the child hung for {limit:?} (killed)\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child.wait_with_output().expect("collect the child"))
}

fn assert_child_passed(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child checks passed"),
        "child {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits up to `ms` for one byte on `fd` (a pipe's read end) and reads it; returns the bytes read
/// (0 on timeout). Blocks its thread, as a plain `read` would, but cannot hang a failing test.
fn read_byte_within(fd: c_int, ms: c_int) -> isize {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid pollfd for the duration of the call.
    if unsafe { libc::poll(&mut pfd, 1, ms) } != 1 {
        return 0;
    }
    let mut byte = 0u8;
    // SAFETY: reading one byte into a local.
    unsafe { libc::read(fd, (&raw mut byte).cast(), 1) }
}

/// With exactly one idle pool thread, two offloaded calls where the first blocks until the
/// second runs (a read, then the write on the same pipe). The idle thread was handed the read
/// but had not woken yet, so it still counted as idle and the write was queued behind the
/// blocked read: the read never saw its byte.
#[test]
fn a_call_is_not_queued_behind_a_blocked_one_below_the_cap() {
    const TEST: &str = "a_call_is_not_queued_behind_a_blocked_one_below_the_cap";
    if let Some(out) = in_child(TEST, Duration::from_secs(60)) {
        return assert_child_passed(&out);
    }
    let rt = Runtime::builder()
        .workers(1)
        .ffi_mode(Mode::Offload)
        .build()
        .unwrap();
    // One pool thread, idle again once its call returned.
    assert_eq!(rt.block_on(|| ffi::call(|| 1)), 1);
    std::thread::sleep(Duration::from_millis(100));
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let [read_end, write_end] = fds;
    let (read, written) = rt.block_on(|| {
        let reader = spawn(move || ffi::call(move || read_byte_within(read_end, 10_000)));
        let writer = spawn(move || {
            // SAFETY: writing one byte from a local to our pipe.
            ffi::call(move || unsafe { libc::write(write_end, [7u8].as_ptr().cast(), 1) })
        });
        (reader.join().unwrap(), writer.join().unwrap())
    });
    assert_eq!(
        (read, written),
        (1, 1),
        "the read must see the write's byte"
    );
    println!("child checks passed");
}

/// Eight calls that each block until a ninth runs, from eight coroutines of one worker, five
/// times over: the pool must grow to nine threads each time (far below its cap), whatever number
/// of idle threads earlier rounds left.
#[test]
fn blocking_calls_waiting_for_a_later_call_all_get_threads() {
    let rt = Runtime::builder()
        .workers(1)
        .ffi_mode(Mode::Offload)
        .build()
        .unwrap();
    for round in 0..5 {
        let seen = rt.block_on(|| {
            let flag = Arc::new(AtomicI32::new(0));
            let waiters: Vec<_> = (0..8)
                .map(|_| {
                    let flag = flag.clone();
                    // SAFETY: the flag outlives the call (the coroutine holds an Arc); C only
                    // reads it.
                    spawn(move || unsafe { pf_wait_flag(Arc::as_ptr(&flag), 10_000) })
                })
                .collect();
            let setter = {
                let flag = flag.clone();
                spawn(move || ffi::call(move || flag.store(1, SeqCst)))
            };
            setter.join().unwrap();
            waiters
                .into_iter()
                .map(|w| w.join().unwrap())
                .collect::<Vec<c_int>>()
        });
        assert_eq!(seen, [1; 8], "round {round}: a waiter timed out");
    }
}

/// When no pool thread exists and none can be started (here: the address-space limit leaves no
/// room for a thread stack), the call runs inline, on the calling worker's system stack, instead
/// of waiting for ever for a thread that will never come.
#[test]
fn a_call_that_cannot_get_a_thread_runs_inline() {
    const TEST: &str = "a_call_that_cannot_get_a_thread_runs_inline";
    if let Some(out) = in_child(TEST, Duration::from_secs(60)) {
        return assert_child_passed(&out);
    }
    let rt = Runtime::builder().workers(1).build().unwrap();
    let (value, thread, inline) = rt.block_on(|| {
        spawn(|| {
            let vm_kib: u64 = std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("VmSize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap();
            let mut old = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: `old` is valid for writes.
            assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut old) }, 0);
            // Room for small allocations, none for an 8 MiB thread stack.
            let tight = libc::rlimit {
                rlim_cur: (vm_kib + 2048) * 1024,
                rlim_max: old.rlim_max,
            };
            // The worker's system stack is mapped on first use, which needs address space too;
            // map it before the limit (a thread runs on it as soon as it runs foreign calls).
            ffi::call_with(Mode::Switch, || ());
            // SAFETY: lowering this process's soft limit; restored below.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &tight) }, 0);
            let out = ffi::call_with(Mode::Offload, || {
                let name = std::thread::current().name().map(str::to_owned);
                (6 * 7, name, pagurus::stack::current().is_none())
            });
            // SAFETY: restoring the soft limit read above (not above the hard limit).
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &old) }, 0);
            out
        })
        .join()
        .unwrap()
    });
    assert_eq!(value, 42);
    assert_eq!(
        thread.as_deref(),
        Some("pagurus-worker-0"),
        "ran on the caller's worker"
    );
    assert!(inline, "on the system stack, not the coroutine's");
    // Pool threads can be started again: the next call gets one.
    let thread = rt.block_on(|| {
        spawn(|| {
            ffi::call_with(Mode::Offload, || {
                std::thread::current().name().map(str::to_owned)
            })
        })
        .join()
        .unwrap()
    });
    assert!(thread.unwrap().starts_with("pagurus-offload-"));
    println!("child checks passed");
}

/// Burns stack until fewer than `target` bytes are left, then offloads a call that borrows a
/// local; returns what the call saw.
#[inline(never)]
fn offload_with_at_most(target: usize, depth: u32) -> u64 {
    let pad = std::hint::black_box([depth as u8; 48]);
    if pagurus::stack::remaining().unwrap() > target {
        let got = offload_with_at_most(target, depth + 1);
        std::hint::black_box(pad);
        return got;
    }
    let local = std::hint::black_box([depth as u64; 4]);
    pagurus::offload::run(|| local.iter().sum::<u64>() / 4) - u64::from(depth)
}

/// An offloaded call pins its coroutine's stack while the pool thread borrows it, so nothing may
/// grow it meanwhile: the call makes sure of its headroom before it pins, and its hand-off runs
/// on the system stack. Swept over the last 8 KiB of a 4 KiB-and-growing stack in 64-byte steps
/// (from a little over the headroom up: the recursion that gets there needs a frame's worth of
/// room below its target). It used to abort with "the stack of coroutine N had to move while it
/// is pinned" when the call started near the end of the stack.
#[test]
fn an_offloaded_call_never_grows_a_pinned_stack() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| {
        for target in (1024..8192).step_by(64) {
            let got = spawn(move || offload_with_at_most(target, 0))
                .join()
                .unwrap();
            assert_eq!(got, 0, "remaining <= {target}");
        }
    });
}
