//! Every stack switch, and every entry to the system stack, is growable at any stack depth
//! (issue 12, defect 1).
//!
//! Each test sweeps the stack pointer over the last 4 KiB of a fresh 4 KiB coroutine stack in
//! 16-byte steps (recursion `d` levels deep, then one frame padded by `16 * p + 8` bytes) and does
//! one operation there, so that for some `(d, p)` the few words the switch pushes land in the
//! guard region. Each operation runs in a child process, so that one that kills the process is
//! reported by name.

use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

use pagurus::{raw::Coroutine, stack};

mod common;

const CASE: &str = "PAGURUS_SWITCH_AT_BOTTOM";
/// The recursion depths swept: enough 48-byte frames to cross a 4 KiB stack from the top.
const DEPTHS: usize = 96;
/// The paddings swept: `16 * p + 8` bytes, p in `0..PADS`.
const PADS: usize = 17;

/// The lowest stack pointer the operation started at, as a distance above the bottom of the
/// original 4 KiB stack (negative: below it, in frames not yet touched).
static CLOSEST: AtomicIsize = AtomicIsize::new(isize::MAX);
/// Which 16-byte steps of the last KiB above the bottom the operation started at: checks that the
/// sweep really walked the switch across the bottom.
static STEPS: [AtomicBool; 64] = [const { AtomicBool::new(false) }; 64];

/// The current stack pointer, read without touching the stack.
#[inline(always)]
fn sp() -> usize {
    let sp: usize;
    // SAFETY: reads a register.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    sp
}

/// Stores the stack pointer at `*at`, disguised with `common::MASK` (a growth adjusts every word
/// that looks like a pointer into the moving stack), without touching the stack (a debug build
/// would call functions, pushing below the stack pointer, for an ordinary store).
#[inline(always)]
fn record_sp(at: *mut usize) {
    // SAFETY: `at` is valid for a word-sized write (the caller's local).
    unsafe {
        std::arch::asm!(
            "mov {t}, rsp",
            "xor {t}, {mask}",
            "mov [{at}], {t}",
            at = in(reg) at,
            mask = in(reg) common::MASK,
            t = out(reg) _,
            options(nostack),
        )
    };
}

/// A frame padded by `BYTES` bytes; runs `op` from it.
#[inline(never)]
fn padded<const BYTES: usize>(op: &dyn Fn(*mut usize), at: *mut usize) -> u8 {
    // One array in every build (`black_box` of the array itself copies it in debug builds).
    let pad = [(BYTES / 16) as u8; BYTES];
    black_box(&pad);
    op(at);
    black_box(&pad)[0]
}

/// Dispatches to the padded frame for `p` (const generics need one function per padding).
fn pad(p: usize, op: &dyn Fn(*mut usize), at: *mut usize) -> u8 {
    macro_rules! pads {
        ($($n:literal)*) => {
            match p {
                $($n => padded::<{ 16 * $n + 8 }>(op, at),)*
                _ => unreachable!(),
            }
        };
    }
    pads!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// Recursion through `d` small frames (48 bytes in release builds), then the padded frame.
#[inline(never)]
fn descend(d: usize, p: usize, op: &dyn Fn(*mut usize), at: *mut usize) -> usize {
    let frame = black_box([d as u32; 4]);
    if d == 0 {
        usize::from(pad(p, op, at))
    } else {
        descend(d - 1, p, op, at) + black_box(frame)[3] as usize
    }
}

/// Runs `op` at every `(d, p)` of the sweep, each in a fresh coroutine on a 4 KiB stack, with
/// `setup` run first at the coroutine's top and `finish` after the sweep point returned.
fn sweep<S: 'static>(
    setup: impl Fn() -> S + Send + Sync + Copy + 'static,
    op: impl Fn(&S) + Send + Sync + Copy + 'static,
    finish: impl Fn(S) + Send + Sync + Copy + 'static,
) {
    let rt = pagurus::Runtime::builder()
        .workers(1)
        .adaptive_stack_size(false)
        .build()
        .unwrap();
    rt.block_on(|| {
        for d in 0..DEPTHS {
            for p in 0..PADS {
                let done = pagurus::spawn(move || {
                    let info = stack::current().unwrap();
                    assert_eq!((info.size, info.growths), (4096, 0), "a fresh 4 KiB stack");
                    // Disguised: a growth adjusts words that look like pointers into the stack.
                    let bottom =
                        std::hint::black_box((sp() + info.used - info.size) ^ common::MASK);
                    let state = setup();
                    let mut at = 0usize;
                    let run = |at: *mut usize| {
                        record_sp(at);
                        op(&state);
                    };
                    let sum = descend(d, p, &run, &mut at);
                    assert_eq!(sum, d * (d + 1) / 2 + p, "frames kept their contents");
                    // Only a stack pointer on the original stack (or its guard) says how close
                    // to its bottom the operation ran; one in a stack the recursion grew into
                    // does not.
                    let (at, bottom) = (common::reveal(at), common::reveal(bottom));
                    if at < bottom + 4096 && at + stack::GUARD_SIZE > bottom {
                        let distance = at as isize - bottom as isize;
                        CLOSEST.fetch_min(distance, Ordering::Relaxed);
                        if let Some(step) = STEPS.get(distance as usize / 16) {
                            step.store(true, Ordering::Relaxed);
                        }
                    }
                    finish(state);
                    true
                })
                .join()
                .unwrap();
                assert!(done);
            }
        }
    });
    let closest = CLOSEST.load(Ordering::Relaxed);
    let steps: String = STEPS
        .iter()
        .map(|s| if s.load(Ordering::Relaxed) { 'x' } else { '.' })
        .collect();
    // Every 16-byte step of the last KiB: the operation's own frames and the switch's pushes
    // start at some fixed distance below the recorded stack pointer, so some step puts them
    // exactly across the bottom.
    assert!(
        !steps.contains('.'),
        "the sweep missed 16-byte steps of the last KiB of the stack, so it may test nothing: \
         {steps} (closest {closest})"
    );
    println!("sweep done, closest {closest}, steps {steps}");
}

/// Runs `run` (a sweep) for `test` in a child process and checks it finished.
fn check_in_child(test: &str, run: impl FnOnce()) {
    let Some(out) = common::in_child(CASE, "1", test) else {
        run();
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("sweep done"),
        "{test}: the child failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn yield_now_at_the_bottom() {
    check_in_child("yield_now_at_the_bottom", || {
        sweep(|| (), |_| pagurus::yield_now(), |_| ())
    });
}

#[test]
fn join_at_the_bottom() {
    check_in_child("join_at_the_bottom", || {
        sweep(
            || Cell::new(Some(pagurus::spawn(|| black_box(5u8)))),
            |h| assert_eq!(h.take().unwrap().join().unwrap(), 5),
            |_| (),
        )
    });
}

#[test]
fn park_on_a_timer_at_the_bottom() {
    check_in_child("park_on_a_timer_at_the_bottom", || {
        sweep(
            || (),
            |_| pagurus::time::sleep(std::time::Duration::from_micros(1)),
            |_| (),
        )
    });
}

#[test]
fn ensure_at_the_bottom() {
    check_in_child("ensure_at_the_bottom", || {
        sweep(|| (), |_| stack::ensure(16 * 1024), |_| ())
    });
}

#[test]
fn on_system_stack_at_the_bottom() {
    check_in_child("on_system_stack_at_the_bottom", || {
        sweep(
            || (),
            |_| assert_eq!(stack::on_system_stack(|| black_box(7)), 7),
            |_| (),
        )
    });
}

#[test]
fn ffi_switch_at_the_bottom() {
    check_in_child("ffi_switch_at_the_bottom", || {
        sweep(
            || (),
            |_| {
                let r = pagurus::ffi::call_with(pagurus::ffi::Mode::Switch, || black_box(9));
                assert_eq!(r, 9);
            },
            |_| (),
        )
    });
}

#[test]
fn second_spawn_at_the_bottom() {
    check_in_child("second_spawn_at_the_bottom", || {
        // The first spawn takes the worker's `lifo` slot; the second pushes it to the deque,
        // on the system stack.
        sweep(
            || RefCell::new(vec![pagurus::spawn(|| black_box(1u8))]),
            |hs| hs.borrow_mut().push(pagurus::spawn(|| black_box(2u8))),
            |hs| {
                let sum: u8 = hs.into_inner().into_iter().map(|h| h.join().unwrap()).sum();
                assert_eq!(sum, 3);
            },
        )
    });
}

#[test]
fn raw_resume_at_the_bottom() {
    check_in_child("raw_resume_at_the_bottom", || {
        sweep(
            || {
                RefCell::new(
                    Coroutine::new(4096, |s| {
                        s.suspend();
                        black_box(());
                    })
                    .unwrap(),
                )
            },
            |co| assert!(co.borrow_mut().resume(), "suspended once"),
            |co| assert!(!co.into_inner().resume(), "then done"),
        )
    });
}
