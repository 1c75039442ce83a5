//! Faults inside coroutines: growth limits and foreign faults are checked from a child process
//! (each such case re-runs this test binary
//! with `PAGURUS_FAULT_CASE` set, and the child does the faulty thing).

use std::hint::black_box;

mod common;

use common::assert_died_of;

const CASE: &str = "PAGURUS_FAULT_CASE";

fn in_child(test: &str, case: &str) -> Option<std::process::Output> {
    common::in_child(CASE, case, test)
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    if depth == 0 {
        frame[3]
    } else {
        recurse(depth - 1) + black_box(frame[7])
    }
}

#[test]
fn exceeding_max_stack_size_aborts_with_actionable_message() {
    let Some(out) = in_child(
        "exceeding_max_stack_size_aborts_with_actionable_message",
        "limit",
    ) else {
        let rt = pagurus::Runtime::builder()
            .workers(1)
            .max_stack_size(1 << 20)
            .build()
            .unwrap();
        rt.block_on(|| pagurus::spawn(|| recurse(1_000_000)).join().unwrap());
        unreachable!("the recursion must exceed a 1 MiB limit");
    };
    assert_died_of(
        &out,
        libc::SIGABRT,
        &[
            "pagurus: coroutine ",
            "over its max_stack_size of 1048576 bytes",
            "(it has 1048576)", // the size reached
            "Raise Builder::max_stack_size",
        ],
    );
}

#[test]
fn deep_recursion_in_a_raw_coroutine_grows() {
    let mut result = 0;
    // SAFETY: `result` lives on the test thread's own stack, which never moves.
    let co = unsafe {
        pagurus::raw::Coroutine::new_unchecked(4096, |_| {
            result = recurse(20_000);
        })
    };
    let mut co = co.unwrap();
    assert!(!co.resume());
    drop(co);
    assert_eq!(result, 20_000 * 20_001 / 2);
}

#[test]
fn null_dereference_in_coroutine_still_dies_with_sigsegv() {
    let Some(out) = in_child(
        "null_dereference_in_coroutine_still_dies_with_sigsegv",
        "null",
    ) else {
        pagurus::run(|| {
            let p: *const u64 = black_box(std::ptr::null());
            // SAFETY: none; this child process exists to fault here.
            black_box(unsafe { p.read_volatile() });
        });
        unreachable!("reading address 0 must fault");
    };
    assert_died_of(&out, libc::SIGSEGV, &[]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("pagurus:"));
}

#[test]
fn main_thread_overflow_still_reported_by_std() {
    let Some(out) = in_child("main_thread_overflow_still_reported_by_std", "thread") else {
        // Make sure the pagurus handler is installed, then overflow a plain thread's stack.
        pagurus::run(|| ());
        let t = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| recurse(1_000_000))
            .unwrap();
        black_box(t.join().ok());
        unreachable!("the recursion must overflow a 64 KiB thread stack");
    };
    assert_died_of(&out, libc::SIGABRT, &["has overflowed its stack"]); // std's message
    assert!(!String::from_utf8_lossy(&out.stderr).contains("pagurus:"));
}

#[test]
fn stale_pointer_into_a_moved_stack_is_reported_by_quarantine() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    // A global is invisible to the relocation engine: the pointer kept here goes stale.
    static STALE: AtomicUsize = AtomicUsize::new(0);
    let Some(out) = in_child(
        "stale_pointer_into_a_moved_stack_is_reported_by_quarantine",
        "stale",
    ) else {
        let rt = pagurus::Runtime::builder()
            .workers(1)
            .stack_quarantine(true)
            .build()
            .unwrap();
        rt.block_on(|| {
            pagurus::spawn(|| {
                let local = black_box([7u64; 4]);
                STALE.store(black_box(&local) as *const _ as usize, SeqCst);
                pagurus::stack::ensure(1 << 20);
                let stale = STALE.load(SeqCst) as *const u64;
                // SAFETY: none: this child exists to use a pointer that went stale.
                black_box(unsafe { stale.read_volatile() })
            })
            .join()
            .unwrap()
        });
        unreachable!("reading through the stale pointer must fault");
    };
    assert_died_of(
        &out,
        libc::SIGABRT,
        &[
            "pagurus: a pointer into the old stack of coroutine ",
            "was used after the stack moved",
            "instruction at 0x",
            "+0x", // with the function's (or object's) name and offset
        ],
    );
}

/// The same stale use from a plain std thread, which has only std's small alternate signal stack
/// (issue 12, defect 4): the report's async-signal-safe part is written first, and naming the
/// code (which parses ELF files) is skipped when the signal stack has no room for it.
#[test]
fn stale_pointer_used_from_a_std_thread_is_reported_by_quarantine() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::mpsc;
    let Some(out) = in_child(
        "stale_pointer_used_from_a_std_thread_is_reported_by_quarantine",
        "stale-thread",
    ) else {
        static STALE: AtomicUsize = AtomicUsize::new(0);
        let (moved_tx, moved_rx) = mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            moved_rx.recv().unwrap();
            let stale = STALE.load(SeqCst) as *const u64;
            // SAFETY: none: this child exists to use a pointer that went stale.
            black_box(unsafe { stale.read_volatile() })
        });
        let rt = pagurus::Runtime::builder()
            .workers(1)
            .stack_quarantine(true)
            .build()
            .unwrap();
        rt.block_on(|| {
            pagurus::spawn(move || {
                let local = black_box([7u64; 4]);
                STALE.store(black_box(&local) as *const _ as usize, SeqCst);
                pagurus::stack::ensure(1 << 20);
                moved_tx.send(()).unwrap();
                black_box(&local);
            })
            .join()
            .unwrap()
        });
        reader.join().unwrap();
        unreachable!("reading through the stale pointer must fault");
    };
    assert_died_of(
        &out,
        libc::SIGABRT,
        &[
            "pagurus: a pointer into the old stack of coroutine ",
            "was used after the stack moved",
            "instruction at 0x",
        ],
    );
}

/// A pointer kept in a `#[repr(packed)]` struct on the stack is not relocated (the move adjusts
/// aligned words only; design.md section 7 lists this as unsupported). Debug builds quarantine
/// old stacks by default, so a write through it after a move aborts with the quarantine message
/// instead of landing on the old stack (issue 12, defect 5). Release builds turn quarantine on
/// here to check the same.
#[test]
fn pointer_in_a_packed_struct_is_caught_by_quarantine() {
    #[repr(C, packed)]
    struct Packed {
        tag: u8,
        ptr: *mut u64,
    }
    /// Places `Packed` at an aligned address, so its pointer is at `8n + 1`.
    #[repr(C, align(8))]
    struct Holder(Packed);

    let Some(out) = in_child(
        "pointer_in_a_packed_struct_is_caught_by_quarantine",
        "packed",
    ) else {
        let mut builder = pagurus::Runtime::builder().workers(1);
        if !cfg!(debug_assertions) {
            builder = builder.stack_quarantine(true); // the debug default
        }
        let rt = builder.build().unwrap();
        rt.block_on(|| {
            pagurus::spawn(|| {
                let mut target = black_box(5u64);
                let holder = Holder(Packed {
                    tag: 1,
                    ptr: &mut target,
                });
                black_box(&holder);
                pagurus::stack::ensure(1 << 20);
                let ptr = black_box(&holder).0.ptr;
                assert_eq!(black_box(&holder).0.tag, 1);
                // SAFETY: none: this child exists to use the pointer the move could not see.
                unsafe { ptr.write_volatile(6) };
                black_box(target)
            })
            .join()
            .unwrap()
        });
        unreachable!("writing through the unrelocated pointer must fault");
    };
    assert_died_of(
        &out,
        libc::SIGABRT,
        &[
            "pagurus: a pointer into the old stack of coroutine ",
            "was used after the stack moved",
        ],
    );
}

/// Code whose unwind information does not describe it (here: inline asm that moves `rsp` and
/// clobbers `rbp` without CFI directives) cannot have its stack moved: the frame walk fails, and
/// the process aborts naming the frame instead of moving a stack it cannot describe.
#[test]
fn growth_through_code_without_valid_cfi_aborts_with_the_frame() {
    let Some(out) = in_child(
        "growth_through_code_without_valid_cfi_aborts_with_the_frame",
        "cfi",
    ) else {
        let rt = pagurus::Runtime::builder().workers(1).build().unwrap();
        rt.block_on(|| {
            pagurus::spawn(|| {
                // SAFETY: none needed for correctness here: the asm restores every register and
                // the stack pointer; it only lies to the unwinder while it touches the guard.
                unsafe {
                    std::arch::asm!(
                        "mov r12, rbp",
                        "mov rbp, 8",
                        "push rax",
                        "push rax",
                        "mov qword ptr [rsp - 65536], 0",
                        "pop rax",
                        "pop rax",
                        "mov rbp, r12",
                        out("rax") _,
                        out("r12") _,
                    )
                };
            })
            .join()
            .unwrap()
        });
        unreachable!("the touch below the stack must fault");
    };
    assert_died_of(
        &out,
        libc::SIGABRT,
        &[
            "pagurus: cannot grow the stack of coroutine ",
            "cannot unwind frame",
            "The stack was not moved",
        ],
    );
}

/// Burns stack until at most `target` bytes are left, then sends `sig` to thread `tid` of
/// process `pid` from there, with a bare system call: the signal is delivered as the call
/// returns, with the stack pointer of this frame (no further frame, no libc call: those would
/// need stack, and grow it first).
#[inline(never)]
fn signal_self_with_at_most(target: usize, pid: libc::pid_t, tid: libc::pid_t, sig: libc::c_int) {
    let pad = black_box([0u8; 48]);
    if pagurus::stack::remaining().unwrap() > target {
        signal_self_with_at_most(target, pid, tid, sig);
    } else {
        // SAFETY: tgkill with our own ids; the asm touches no memory.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") libc::SYS_tgkill => _,
                in("rdi") pid as usize,
                in("rsi") tid as usize,
                in("rdx") sig as usize,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            )
        };
    }
    black_box(pad);
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// A signal whose handler was installed without `SA_ONSTACK` arrives while a coroutine's stack
/// has less room than the kernel's signal frame: the kernel cannot push the frame and sends a
/// SIGSEGV of its own (`SI_KERNEL`, address 0), and the signal is lost. The process aborts with a
/// message naming the cause (issue 12, defect 13: it went on without its signal, or died
/// silently when a later fault met the default action).
#[test]
fn a_signal_handler_without_sa_onstack_is_named_when_its_frame_does_not_fit() {
    let Some(out) = in_child(
        "a_signal_handler_without_sa_onstack_is_named_when_its_frame_does_not_fit",
        "sa_onstack",
    ) else {
        // SAFETY: a zeroed sigaction is "no flags, empty mask"; the handler has the plain
        // signature and does nothing.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore_signal as *const () as usize;
            assert_eq!(
                libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
                0
            );
        }
        let rt = pagurus::Runtime::builder().workers(1).build().unwrap();
        rt.block_on(|| {
            pagurus::spawn(|| {
                // SAFETY: plain system calls without arguments.
                let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
                // Less than the kernel's signal frame (over 1 KiB with the vector registers).
                signal_self_with_at_most(1024, pid, tid, libc::SIGUSR1);
            })
            .join()
            .unwrap()
        });
        unreachable!("the signal frame cannot fit in the last KiB of the stack");
    };
    assert_died_of(
        &out,
        libc::SIGABRT,
        &[
            "pagurus: SIGSEGV from the kernel, not from a memory access",
            "while coroutine ",
            "installed without SA_ONSTACK",
        ],
    );
}

/// A C frame larger than the system stack and its guard together, entered without stack probes
/// in `Switch` mode, moves the stack pointer below the guard; its first store faults there (or,
/// were that memory mapped, would overwrite it). Reported with a message naming the cause; it
/// used to be a bare SIGSEGV (issue 12, defect 13).
#[test]
fn an_unprobed_frame_that_jumps_the_system_stack_guard_is_named() {
    let Some(out) = in_child(
        "an_unprobed_frame_that_jumps_the_system_stack_guard_is_named",
        "system_jump",
    ) else {
        let rt = pagurus::Runtime::builder()
            .workers(1)
            .ffi_mode(pagurus::ffi::Mode::Switch)
            .build()
            .unwrap();
        // SAFETY: the fixture has no preconditions (its frame is the point).
        rt.block_on(|| {
            pagurus::spawn(|| unsafe { pagurus_ffi_fixtures::ffi::pf_unprobed_14m(1) })
                .join()
                .unwrap()
        });
        unreachable!("a 14 MiB frame cannot fit on the 8 MiB system stack");
    };
    assert_died_of(
        &out,
        libc::SIGABRT,
        &[
            "pagurus: on the system stack (8388608 bytes above a 4194304-byte guard)",
            "bytes below the guard: a single frame larger than stack and guard together",
            "-fstack-clash-protection",
        ],
    );
}
