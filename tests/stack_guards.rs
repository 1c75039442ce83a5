//! How stacks are guarded: arenas with `MADV_GUARD_INSTALL` markers where the kernel has them
//! (a handful of mappings for any number of stacks), one mapping per stack elsewhere, which
//! stops short of `vm.max_map_count` with a message instead of hanging. Cases that must run in a
//! fresh process (the mode is chosen once per process) re-run this binary with
//! `PAGURUS_GUARDS_CASE` set.

use pagurus::raw::Coroutine;
use pagurus::{StackGuards, stats};

mod common;

const CASE: &str = "PAGURUS_GUARDS_CASE";

fn maps_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether this kernel installs guard markers (Linux 6.13+): tried on a scratch mapping.
fn kernel_has_guard_markers() -> bool {
    // SAFETY: a private anonymous mapping of our own, unmapped before returning.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let ok = libc::madvise(p, 4096, 102) == 0;
        libc::munmap(p, 8192);
        ok
    }
}

/// More suspended coroutines than per-stack mappings could ever hold on the default
/// `vm.max_map_count`, in a few mappings.
#[test]
fn more_stacks_than_the_map_count_allows_in_a_few_mappings() {
    if !kernel_has_guard_markers() {
        eprintln!("skipped: this kernel has no MADV_GUARD_INSTALL");
        return;
    }
    let n = max_map_count() / 2 + 8_000;
    let before = maps_count();
    let mut coroutines: Vec<Coroutine<'_>> = (0..n)
        .map(|i| {
            Coroutine::new(4096, move |s| {
                let x = std::hint::black_box(i);
                s.suspend();
                assert_eq!(x, i);
            })
            .unwrap()
        })
        .collect();
    for co in &mut coroutines {
        assert!(co.resume(), "suspended");
    }
    let during = maps_count();
    assert_eq!(stats().stack_guards, StackGuards::Madvise);
    assert!(
        during < before + 64,
        "{n} suspended coroutines took {} mappings",
        during - before
    );
    for co in &mut coroutines {
        assert!(!co.resume(), "finished");
    }
}

/// With one mapping per stack, the spawn that would walk into `vm.max_map_count` aborts with a
/// message naming the limit and the sysctl (it used to hang the process).
#[test]
fn per_stack_mappings_stop_short_of_the_map_count() {
    let test = "per_stack_mappings_stop_short_of_the_map_count";
    let Some(out) = common::in_child(CASE, "mprotect", test) else {
        // SAFETY: the child runs this one test on one thread, before any stack exists.
        unsafe { std::env::set_var("PAGURUS_STACK_GUARDS", "mprotect") };
        let rt = pagurus::Runtime::builder().workers(1).build().unwrap();
        assert_eq!(stats().stack_guards, StackGuards::Mprotect);
        let mut held = Vec::new();
        for i in 0..max_map_count() {
            held.push(
                Coroutine::new(4096, move |s| {
                    s.suspend();
                    std::hint::black_box(i);
                })
                .unwrap(),
            );
            held.last_mut().unwrap().resume();
        }
        drop(rt);
        unreachable!("{} stacks fit under vm.max_map_count", held.len());
    };
    common::assert_died_of(
        &out,
        libc::SIGABRT,
        &[
            "vm.max_map_count",
            "sysctl",
            &format!("= {}", max_map_count()),
        ],
    );
}

/// `PAGURUS_STACK_GUARDS` accepts `madvise` and `mprotect`; anything else is `InvalidInput`
/// naming both.
#[test]
fn stack_guards_env_is_validated() {
    let test = "stack_guards_env_is_validated";
    let Some(out) = common::in_child(CASE, "bad", test) else {
        // SAFETY: the child runs this one test on one thread, before any stack exists.
        unsafe { std::env::set_var("PAGURUS_STACK_GUARDS", "guard-pages") };
        let Err(err) = pagurus::Runtime::builder().build() else {
            panic!("rejected")
        };
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let msg = err.to_string();
        assert!(msg.contains("PAGURUS_STACK_GUARDS"), "{msg}");
        assert!(msg.contains("madvise") && msg.contains("mprotect"), "{msg}");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
