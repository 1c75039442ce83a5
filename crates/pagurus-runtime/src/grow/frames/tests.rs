//! Tests of the frame walker against libgcc's unwinder, the object files, and itself.

use std::cell::Cell;
use std::hint::black_box;
use std::mem::MaybeUninit;
use std::ops::ControlFlow;
use std::os::raw::{c_int, c_void};

use super::*;
use crate::arch::dwarf::FP;
use crate::coroutine::current_context;
use crate::raw::{Coroutine, Suspender};

/// Stores the caller's registers as they are at the return address of this call:
/// `[rip, rsp, rbp, rbx, r12, r13, r14, r15]`. The state describes the caller at a call
/// boundary, so walks from it start with `first_is_signal_frame = false`.
///
/// # Safety
/// `out` must be valid for a write of eight words.
#[unsafe(naked)]
unsafe extern "sysv64" fn capture_raw(out: *mut [usize; 8]) {
    core::arch::naked_asm!(
        "mov rax, [rsp]",
        "mov [rdi], rax",
        "lea rax, [rsp + 8]",
        "mov [rdi + 8], rax",
        "mov [rdi + 16], rbp",
        "mov [rdi + 24], rbx",
        "mov [rdi + 32], r12",
        "mov [rdi + 40], r13",
        "mov [rdi + 48], r14",
        "mov [rdi + 56], r15",
        "ret",
    )
}

fn regs_from_raw(raw: &[usize; 8]) -> Regs {
    let mut regs = Regs::new();
    // The capture's order: the return address, the stack and frame pointers, then the other
    // callee-saved registers in DWARF order (rbx, r12-r15).
    let order = [RA, SP, FP]
        .into_iter()
        .chain(CALLEE_SAVED.into_iter().filter(|&r| r != FP));
    for (reg, &value) in order.zip(raw) {
        regs.set(reg, value);
    }
    regs
}

/// The registers of the function this expands in, at the return address of a call in it.
macro_rules! capture {
    () => {{
        let mut raw = [0usize; 8];
        // SAFETY: `raw` is eight writable words.
        unsafe { capture_raw(&mut raw) };
        regs_from_raw(&raw)
    }};
}

/// Calls `f` from `depth + 1` nested frames of this function.
#[inline(never)]
fn nest(depth: usize, f: &mut dyn FnMut()) {
    if depth == 0 {
        f();
    } else {
        nest(depth - 1, f);
    }
    // Keeps the recursive call from being a tail call, so every level keeps its frame.
    black_box(depth);
}

fn nest_address() -> usize {
    nest as fn(usize, &mut dyn FnMut()) as *const () as usize
}

/// Program counters and CFAs of a stack, in a fixed buffer.
struct Trace {
    pcs: [usize; 128],
    cfas: [usize; 128],
    n: usize,
}

impl Trace {
    fn new() -> Trace {
        Trace {
            pcs: [0; 128],
            cfas: [0; 128],
            n: 0,
        }
    }

    fn push(&mut self, pc: usize, cfa: usize) -> ControlFlow<()> {
        if self.n == self.pcs.len() {
            return ControlFlow::Break(());
        }
        self.pcs[self.n] = pc;
        self.cfas[self.n] = cfa;
        self.n += 1;
        ControlFlow::Continue(())
    }

    fn pcs(&self) -> &[usize] {
        &self.pcs[..self.n]
    }

    fn cfas(&self) -> &[usize] {
        &self.cfas[..self.n]
    }
}

unsafe extern "C" {
    // libgcc's unwinder, which std links on this target.
    fn _Unwind_Backtrace(
        trace: unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int,
        data: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIP(ctx: *mut c_void) -> usize;
    fn _Unwind_GetCFA(ctx: *mut c_void) -> usize;
}

/// libgcc's view of the stack, starting with the caller of this function (inlined away).
#[inline(always)]
fn libgcc_backtrace(trace: &mut Trace) {
    /// # Safety
    /// `data` is the `Trace` passed below and `ctx` a context from `_Unwind_Backtrace`.
    unsafe extern "C" fn each(ctx: *mut c_void, data: *mut c_void) -> c_int {
        // SAFETY: per the contract.
        let (trace, ip, cfa) = unsafe {
            (
                &mut *data.cast::<Trace>(),
                _Unwind_GetIP(ctx),
                _Unwind_GetCFA(ctx),
            )
        };
        match trace.push(ip, cfa) {
            ControlFlow::Continue(()) => 0, // _URC_NO_REASON
            ControlFlow::Break(()) => 4,    // _URC_NORMAL_STOP
        }
    }
    // SAFETY: `each` matches the callback signature and `trace` outlives the call.
    unsafe { _Unwind_Backtrace(each, (trace as *mut Trace).cast()) };
}

/// `[lo, hi)` of the calling thread's stack.
fn thread_stack_bounds() -> Bounds {
    let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
    let mut addr = std::ptr::null_mut();
    let mut size = 0;
    // SAFETY: pthread_getattr_np initialises `attr` on success, which we check before using and
    // destroying it.
    unsafe {
        assert_eq!(
            libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()),
            0
        );
        assert_eq!(
            libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size),
            0
        );
        libc::pthread_attr_destroy(attr.as_mut_ptr());
    }
    Bounds::new(addr as usize, addr as usize + size)
}

/// The FDE covering `addr`, from the in-memory table.
fn fde_at(addr: usize) -> FdeRange {
    object_for_address(addr)
        .expect("address in a loaded object")
        .fde_range(addr)
        .expect("FDE for the address")
}

#[test]
fn thread_stack_matches_libgcc() {
    prepare_thread();
    let bounds = thread_stack_bounds();
    let mut ours = Trace::new();
    let mut theirs = Trace::new();
    let mut end = None;
    nest(4, &mut || {
        let regs = capture!();
        libgcc_backtrace(&mut theirs);
        // SAFETY: the bounds are this thread's stack, which is mapped.
        end = Some(unsafe { walk(&regs, false, bounds, &mut |f, _| ours.push(f.pc, f.cfa)) });
    });
    let end = end.expect("closure ran");
    let n = ours.n;
    assert!(n >= 6, "only {n} frames");
    // Frame 0 is the closure for both, at two different calls in it. From its caller on, the
    // same return addresses.
    assert_eq!(fde_at(ours.pcs[0] - 1), fde_at(theirs.pcs[0] - 1));
    assert!(theirs.n > n, "libgcc saw fewer frames: {} / {n}", theirs.n);
    assert_eq!(ours.pcs()[1..], theirs.pcs()[1..n]);
    // libgcc's context for a frame holds the CFA of the frame below it (the frame's own stack
    // pointer), so its CFAs are ours shifted by one.
    assert_eq!(ours.cfas(), &theirs.cfas()[1..=n]);
    match end {
        Ok(WalkEnd::Outermost { frames, pc, cfa }) => {
            assert_eq!(frames, n);
            // libgcc reports the outermost frame too, then one with pc 0 (its "end of stack").
            assert_eq!(theirs.pcs()[n..], [pc, 0]);
            assert_eq!(theirs.cfas[n + 1], cfa);
        }
        Ok(WalkEnd::Stopped { .. }) => assert_eq!(n, ours.pcs.len()),
        _ => panic!("walk failed: {end:?}"),
    }
    // Five of those frames are `nest`'s.
    let nest_fde = fde_at(nest_address());
    for &pc in &ours.pcs()[1..=5] {
        assert_eq!(fde_at(pc - 1), nest_fde);
    }
}

#[test]
fn coroutine_stack_ends_at_trampoline() {
    prepare_thread();
    let mut result = None;
    let body = |_: &Suspender| {
        nest(6, &mut || {
            let regs = capture!();
            let ctx = current_context();
            // SAFETY: the current context is this coroutine's, alive while it runs.
            let span = unsafe { (*ctx).span() }.expect("a running stack");
            let (bottom, size) = (span.bottom, span.size());
            let bounds = Bounds::new(bottom, bottom + size);
            let mut ours = Trace::new();
            let mut saved_ok = true;
            // SAFETY: the bounds are this coroutine's mapped stack.
            let end = unsafe {
                walk(&regs, false, bounds, &mut |f, r| {
                    // Every slot is inside the stack, and the frame's registers came from slots
                    // inside it too.
                    saved_ok &= f.saved().iter().all(|&(_, s)| bottom <= s && s < bounds.hi);
                    saved_ok &= r.slot(3).is_none_or(|s| bottom <= s && s < bounds.hi);
                    ours.push(f.pc, f.cfa)
                })
            };
            let mut theirs = Trace::new();
            libgcc_backtrace(&mut theirs);
            result = Some((end, ours, theirs, bounds, saved_ok));
        });
    };
    // SAFETY: `result` lives on the test thread's own stack, which does not move.
    let mut co = unsafe { Coroutine::new_unchecked(64 * 1024, body) }.expect("coroutine");
    assert!(!co.resume(), "the body runs to completion");
    drop(co);
    let (end, ours, theirs, bounds, saved_ok) = result.expect("body ran");
    assert!(saved_ok);
    let Ok(WalkEnd::Trampoline { frames, cfa }) = end else {
        panic!("walk did not end at the trampoline: {end:?}");
    };
    assert_eq!(frames, ours.n);
    // The closure, seven levels of `nest`, and the runtime's frames down to `entry`.
    assert!(frames >= 9, "only {frames} frames");
    let nest_fde = fde_at(nest_address());
    for &pc in &ours.pcs()[1..=7] {
        assert_eq!(fde_at(pc - 1), nest_fde);
    }
    // The trampoline runs with rsp = top - 16 (see arch), so its CFA is top - 8.
    assert_eq!(cfa, bounds.hi - 8);
    // libgcc stops at the same place: it reports the trampoline's frame, then one with pc 0; its
    // CFAs are shifted by one (see `thread_stack_matches_libgcc`).
    assert_eq!(theirs.n, frames + 2);
    assert_eq!(ours.pcs()[1..], theirs.pcs()[1..frames]);
    assert_eq!(theirs.pcs[frames + 1], 0);
    assert!(
        crate::arch::trampoline_start() < theirs.pcs[frames]
            && theirs.pcs[frames] - crate::arch::trampoline_start() < 64
    );
    assert_eq!(ours.cfas(), &theirs.cfas()[1..=frames]);
    assert_eq!(theirs.cfas[frames + 1], cfa);
}

/// Where the SIGUSR1 handler of `walks_from_a_signal_context` stores its walk.
struct SignalWalk {
    bounds: Bounds,
    trace: Trace,
    end: Option<Result<WalkEnd, WalkError>>,
}

thread_local! {
    static SIGNAL_WALK: Cell<*mut SignalWalk> = const { Cell::new(std::ptr::null_mut()) };
}

/// Walks the interrupted stack from the signal's register state, as the growth handler will.
extern "C" fn walk_on_signal(_sig: c_int, _info: *mut libc::siginfo_t, uc: *mut c_void) {
    let target = SIGNAL_WALK.with(|c| c.get());
    if target.is_null() {
        return;
    }
    // SAFETY: the test points SIGNAL_WALK at a live SignalWalk while it raises the signal on this
    // thread, and the kernel passes a valid ucontext to SA_SIGINFO handlers.
    let (target, uc) = unsafe { (&mut *target, &*uc.cast::<libc::ucontext_t>()) };
    let regs = Regs::from_ucontext(uc);
    let trace = &mut target.trace;
    // SAFETY: the bounds are the interrupted thread's stack, which this handler runs on.
    let end = unsafe {
        walk(&regs, true, target.bounds, &mut |f, _| {
            trace.push(f.pc, f.cfa)
        })
    };
    target.end = Some(end);
}

#[test]
fn walks_from_a_signal_context() {
    prepare_thread();
    // SAFETY: a zeroed sigaction is "no flags, empty mask"; the fields sigaction(2) reads are set.
    let mut action: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
    action.sa_sigaction = walk_on_signal as *const () as usize;
    action.sa_flags = libc::SA_SIGINFO;
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: valid action and a writable slot for the old one.
    assert_eq!(
        unsafe { libc::sigaction(libc::SIGUSR1, &action, old.as_mut_ptr()) },
        0
    );
    let mut target = SignalWalk {
        bounds: thread_stack_bounds(),
        trace: Trace::new(),
        end: None,
    };
    let mut theirs = Trace::new();
    nest(3, &mut || {
        SIGNAL_WALK.with(|c| c.set(&mut target));
        // SAFETY: raise(3) delivers the signal to this thread before it returns.
        unsafe { libc::raise(libc::SIGUSR1) };
        SIGNAL_WALK.with(|c| c.set(std::ptr::null_mut()));
        libgcc_backtrace(&mut theirs);
    });
    // SAFETY: restores the action read above.
    unsafe { libc::sigaction(libc::SIGUSR1, old.as_ptr(), std::ptr::null_mut()) };

    let end = target.end.expect("the handler ran");
    assert!(matches!(end, Ok(WalkEnd::Outermost { .. })), "{end:?}");
    // The walk starts in libc (the interrupted syscall in raise), then reaches the closure and
    // from there on sees what libgcc sees from the closure.
    let ours = target.trace.pcs();
    let k = ours
        .iter()
        .position(|&pc| pc == theirs.pcs[1])
        .expect("the walk reached the closure's caller");
    assert!(k >= 2, "libc frames and the closure precede it");
    assert_eq!(fde_at(ours[k - 1] - 1), fde_at(theirs.pcs[0] - 1));
    assert_eq!(ours[k..], theirs.pcs()[1..theirs.n - 2]);
    let interrupted = object_for_address(ours[0]).expect("pc in an object");
    assert_ne!(
        interrupted.eh_frame,
        object_for_address(nest_address())
            .expect("test binary")
            .eh_frame,
        "the signal interrupted libc, not the test binary"
    );
}

#[test]
fn memory_and_file_fdes_agree() {
    refresh_objects();
    let addrs = [
        // This crate, in the test binary.
        refresh_objects as fn() as *const () as usize,
        nest_address(),
        Unwinder::new as fn() -> Unwinder as *const () as usize,
        memory_and_file_fdes_agree as fn() as *const () as usize,
        // std, linked into the test binary.
        std::thread::current as fn() -> std::thread::Thread as *const () as usize,
        // libc.so.6: another object, with its own bias.
        libc::write as *const () as usize,
        libc::pthread_self as *const () as usize,
    ];
    let mut objects = Vec::new();
    for addr in addrs {
        let object = object_for_address(addr).expect("address in a loaded object");
        let memory = object.fde_range(addr).expect("in-memory FDE");
        assert!(memory.start <= addr as u64 && (addr as u64) < memory.start + memory.len);
        let file = FileCfi::for_object(object).expect("object file");
        assert_eq!(
            object.eh_frame,
            object.bias + file.eh_frame_address() as usize
        );
        assert_eq!(
            Some(object.eh_frame_hdr),
            file.eh_frame_hdr_address()
                .map(|a| object.bias + a as usize)
        );
        let svma = (addr - object.bias) as u64;
        for from_file in [file.fde_by_scan(svma), file.fde_by_hdr(svma)] {
            let from_file = from_file.expect("FDE in the file");
            let rebased = FdeRange {
                start: from_file.start + object.bias as u64,
                len: from_file.len,
            };
            assert_eq!(memory, rebased, "FDE for {addr:#x}");
        }
        if !objects.contains(&object.eh_frame) {
            objects.push(object.eh_frame);
        }
    }
    assert!(
        objects.len() >= 2,
        "checked only {} object(s)",
        objects.len()
    );
}

#[test]
fn direct_table_search_matches_gimli() {
    refresh_objects();
    let object = object_for_address(nest_address()).expect("test binary");
    assert!(object.has_direct_table(), "the linker's usual encoding");
    // Every return address on this stack, function starts, and addresses between functions.
    let mut addrs = vec![
        nest_address(),
        refresh_objects as fn() as *const () as usize,
    ];
    let regs = capture!();
    let mut unwinder = Unwinder::new();
    // SAFETY: the bounds are this thread's stack.
    let _ = unsafe {
        unwinder.walk(&regs, false, thread_stack_bounds(), &mut |f, _| {
            addrs.push(f.pc - 1);
            ControlFlow::Continue(())
        })
    };
    for addr in addrs.clone() {
        let fde = fde_at(addr);
        addrs.extend([fde.start as usize, (fde.start + fde.len) as usize]);
        addrs.push(fde.start as usize - 1);
    }
    for addr in addrs {
        let Some(object) = object_for_address(addr) else {
            continue;
        };
        assert_eq!(
            object.fde_range(addr),
            object.fde_range_gimli(addr),
            "{addr:#x}"
        );
    }
}

#[test]
fn cache_matches_gimli_and_hits() {
    refresh_objects();
    let bounds = thread_stack_bounds();
    let mut unwinder = Unwinder::new();
    let mut steps = [0usize; 2];
    let mut hits = [0u64; 2];
    let mut misses = [0u64; 2];
    let mut uncacheable = [0u64; 2];
    nest(5, &mut || {
        let regs = capture!();
        for pass in 0..2 {
            let before = (unwinder.hits, unwinder.misses, unwinder.uncacheable);
            let mut current = regs;
            let mut signal_frame = false;
            loop {
                let (mut f1, mut c1) = (Frame::new(), Regs::new());
                let (mut f2, mut c2) = (Frame::new(), Regs::new());
                // SAFETY: the bounds are this thread's stack.
                let plain = unsafe {
                    unwinder.step_uncached(&current, signal_frame, bounds, &mut f1, &mut c1)
                };
                // SAFETY: as above.
                let cached =
                    unsafe { unwinder.step(&current, signal_frame, bounds, &mut f2, &mut c2) };
                assert_eq!(plain, cached);
                steps[pass] += 1;
                if plain != Ok(Next::Caller) {
                    break;
                }
                assert_eq!(f1, f2);
                assert_eq!(c1, c2);
                current = c1;
                signal_frame = false;
            }
            hits[pass] = unwinder.hits - before.0;
            misses[pass] = unwinder.misses - before.1;
            uncacheable[pass] = unwinder.uncacheable - before.2;
        }
    });
    assert_eq!(steps[0], steps[1]);
    assert!(steps[0] >= 8, "{steps:?}");
    // The recursion repeats `nest`'s return address, so even the first pass hits.
    assert!(hits[0] >= 4, "{hits:?}");
    // On the second pass every cacheable row is a hit.
    assert_eq!(misses[1], uncacheable[1]);
    // Every step but an erroring last one goes through the cache.
    assert!(hits[1] + misses[1] + 1 >= steps[1] as u64);
    assert!(hits[1] > hits[0]);
}

#[test]
fn bogus_states_are_errors() {
    prepare_thread();
    let bounds = thread_stack_bounds();
    let run = |regs: &Regs, signal: bool, bounds: Bounds| {
        // SAFETY: every bounds used here lies in this thread's stack or in a live buffer.
        unsafe { walk(regs, signal, bounds, &mut |_, _| ControlFlow::Continue(())) }
    };
    let sp = bounds.hi - 4096;

    // A pc outside every object.
    let mut regs = Regs::new();
    regs.set(RA, 0x1000);
    regs.set(SP, sp);
    let err = run(&regs, true, bounds).unwrap_err();
    assert_eq!(
        (err.pc, err.frames, err.kind),
        (0x1000, 0, ErrorKind::NoObject)
    );

    // No pc, or pc 0.
    let mut regs = Regs::new();
    regs.set(SP, sp);
    assert_eq!(run(&regs, true, bounds).unwrap_err().kind, ErrorKind::NoPc);
    regs.set(RA, 0);
    assert_eq!(run(&regs, false, bounds).unwrap_err().kind, ErrorKind::NoPc);

    // A pc in code but not executable data: a string literal in .rodata.
    let rodata = "pagurus".as_ptr() as usize;
    regs.set(RA, rodata);
    assert_eq!(
        run(&regs, true, bounds).unwrap_err().kind,
        ErrorKind::NoObject
    );

    // A real pc whose CFA register is unknown, or points outside the bounds.
    let real = capture!();
    let mut regs = real;
    regs.invalidate(SP);
    regs.invalidate(FP);
    assert!(matches!(
        run(&regs, false, bounds).unwrap_err().kind,
        ErrorKind::UnknownRegister { .. }
    ));
    let mut regs = real;
    regs.set(SP, 0x10);
    regs.set(FP, 0x10);
    assert!(matches!(
        run(&regs, false, bounds).unwrap_err().kind,
        ErrorKind::OutOfBounds { .. }
    ));
    // Bounds that exclude the real stack: nothing is read.
    let elsewhere = Bounds::new(0x1000, 0x2000);
    assert!(matches!(
        run(&real, false, elsewhere).unwrap_err().kind,
        ErrorKind::OutOfBounds { .. }
    ));

    // Without a thread unwinder the walk says so.
    let unprepared = std::thread::spawn(move || run(&real, false, bounds).unwrap_err().kind)
        .join()
        .expect("thread");
    assert_eq!(unprepared, ErrorKind::NotPrepared);
}

#[test]
fn garbage_stacks_give_errors_not_faults() {
    refresh_objects();
    let mut unwinder = Unwinder::new();
    // Real return addresses, so that garbage walks get past the first frame.
    let mut real = Trace::new();
    let regs = capture!();
    // SAFETY: the bounds are this thread's stack.
    let _ = unsafe {
        unwinder.walk(&regs, false, thread_stack_bounds(), &mut |f, _| {
            real.push(f.pc, f.cfa)
        })
    };
    assert!(real.n >= 3);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as usize
    };
    const WORDS: usize = 1024;
    let mut stack = vec![0usize; WORDS];
    let base = stack.as_ptr() as usize;
    let bounds = Bounds::new(base, base + WORDS * 8);
    let mut deepest = 0;
    for _ in 0..500 {
        for word in stack.iter_mut() {
            let r = next();
            *word = match r % 4 {
                0 => r,
                1 => base + (r >> 8) % (WORDS * 8),
                _ => real.pcs()[(r >> 8) % real.n],
            };
        }
        let mut regs = Regs::new();
        regs.set(RA, real.pcs()[next() % real.n]);
        regs.set(SP, base + next() % (WORDS * 8));
        regs.set(FP, stack[next() % WORDS]);
        regs.set(3, next());
        let mut frames = 0;
        // SAFETY: the bounds are the live buffer.
        let _ = unsafe {
            unwinder.walk(&regs, false, bounds, &mut |f, _| {
                assert!(bounds.lo <= f.cfa && f.cfa <= bounds.hi);
                assert!(
                    f.saved()
                        .iter()
                        .all(|&(_, s)| bounds.lo <= s && s < bounds.hi)
                );
                frames += 1;
                ControlFlow::Continue(())
            })
        };
        deepest = deepest.max(frames);
    }
    assert!(deepest >= 2, "the garbage never got past one frame");
    black_box(&mut stack);
}

#[test]
fn refresh_without_changes_keeps_the_table() {
    refresh_objects();
    let first = objects::current().expect("table").generation;
    refresh_objects();
    let second = objects::current().expect("table").generation;
    assert_eq!(first, second);
    let table = objects::current().expect("table");
    assert!(table.trampoline.contains(&crate::arch::trampoline_start()));
    assert!(table.trampoline.len() > 1, "trampoline FDE found");
}

#[test]
fn thread_unwinder_is_checked_out_while_in_use() {
    prepare_thread();
    let nested = Cell::new(None);
    let outer = with_thread_unwinder(|_| nested.set(Some(with_thread_unwinder(|_| ()))));
    assert_eq!(outer, Some(()));
    assert_eq!(nested.get(), Some(None));
    assert_eq!(with_thread_unwinder(|_| 1), Some(1));
}

#[test]
fn ucontext_registers_map_to_dwarf_numbers() {
    // SAFETY: an all-zero ucontext is a valid value of the plain C struct.
    let mut uc: libc::ucontext_t = unsafe { MaybeUninit::zeroed().assume_init() };
    for (i, g) in uc.uc_mcontext.gregs.iter_mut().enumerate() {
        *g = 0x100 + i as i64;
    }
    let regs = Regs::from_ucontext(&uc);
    let greg = |r: c_int| 0x100 + r as usize;
    assert_eq!(regs.pc(), Some(greg(libc::REG_RIP)));
    assert_eq!(regs.sp(), Some(greg(libc::REG_RSP)));
    assert_eq!(regs.get(0), Some(greg(libc::REG_RAX)));
    assert_eq!(regs.get(1), Some(greg(libc::REG_RDX)));
    assert_eq!(regs.get(3), Some(greg(libc::REG_RBX)));
    assert_eq!(regs.get(FP), Some(greg(libc::REG_RBP)));
    assert_eq!(regs.get(11), Some(greg(libc::REG_R11)));
    assert_eq!(regs.get(15), Some(greg(libc::REG_R15)));
    assert_eq!(regs.get(17), None);
}
