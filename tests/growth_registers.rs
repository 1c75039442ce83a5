//! Registers across a growth by fault: the fault handler must move every general register, every
//! 64-bit lane of xmm0-15 and the upper halves of ymm0-15 that point into the old stack (or its
//! guard) by the distance the stack moved, and leave every other value alone.
//!
//! Inline asm loads known values into all of them, touches memory 64 KiB below the stack pointer
//! (inside the guard region of a 4 KiB stack: the coroutine grows by fault right there, with the
//! values in registers and nowhere else), then stores every register to a heap array. The test
//! compares each stored value with what was loaded plus the move's delta (measured from the
//! address of a local before and after, the "before" copy disguised so the move cannot fix it).

mod common;

use std::arch::asm;
use std::hint::black_box;

use common::{MASK, addr, default_stack_runtime};
use pagurus::stack;

/// Slots of the in/out arrays: general registers first (in this order) ...
const GPRS: [&str; 15] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
    "r15",
];
/// ... then the stack pointer as the asm saw it before the fault and after it ...
const RSP_BEFORE: usize = 15;
const RSP_AFTER: usize = 16;
/// ... then the vector registers: lane `l` (0-3) of ymm`n` at `VEC + 4 * n + l`; lanes 0-1 are
/// xmm`n`, lanes 2-3 its upper half.
const VEC: usize = 24;
const SLOTS: usize = VEC + 64;

// The byte offsets written out in the asm below.
const _: () = assert!(RSP_BEFORE * 8 == 120 && RSP_AFTER * 8 == 128 && VEC * 8 == 192);

/// Loads every general register from `input[0..15]` and the vector registers from
/// `input[VEC..]` (`$vload`: xmm only, or whole ymm), faults 64 KiB below the stack pointer,
/// then stores all of them to `out` (`$vstore`).
///
/// rbx and rbp are reserved by LLVM, so the asm saves them itself (push/pop around everything),
/// along with the output pointer, which it needs after the fault when every register holds a
/// test value. Those three pushed words are on the stack during the move, like any spill; CFI
/// directives describe the pushes, so the frame stays walkable (the handler walks it).
macro_rules! load_fault_store {
    ($input:expr, $out:expr, [$($vload:literal),* $(,)?], [$($vstore:literal),* $(,)?]) => {
        asm!(
            // The fault handler walks the stopped stack with its DWARF call-frame information
            // before moving it, so every push and pop says what it did to the frame (the
            // functions below have no frame pointer: their CFA is rsp-based).
            ".cfi_remember_state",
            "push rbx",
            ".cfi_adjust_cfa_offset 8",
            ".cfi_rel_offset rbx, 0",
            "push rbp",
            ".cfi_adjust_cfa_offset 8",
            ".cfi_rel_offset rbp, 0",
            "push rsi",
            ".cfi_adjust_cfa_offset 8",
            "mov [rsi + 120], rsp",
            $($vload,)*
            "mov rax, [rdi + 0]",
            "mov rbx, [rdi + 8]",
            "mov rcx, [rdi + 16]",
            "mov rdx, [rdi + 24]",
            "mov rsi, [rdi + 32]",
            "mov rbp, [rdi + 48]",
            "mov r8, [rdi + 56]",
            "mov r9, [rdi + 64]",
            "mov r10, [rdi + 72]",
            "mov r11, [rdi + 80]",
            "mov r12, [rdi + 88]",
            "mov r13, [rdi + 96]",
            "mov r14, [rdi + 104]",
            "mov r15, [rdi + 112]",
            "mov rdi, [rdi + 40]",
            // In the guard region of a 4 KiB stack: SIGSEGV, growth, and this store re-executes
            // on the new stack (where it lands below the stack pointer, in unused stack).
            "mov qword ptr [rsp - 65536], 0",
            // Every register still holds its test value (moved or not); get the output pointer
            // back from the stack without losing rax.
            "push rax",
            ".cfi_adjust_cfa_offset 8",
            "mov rax, [rsp + 8]",
            "mov [rax + 8], rbx",
            "mov [rax + 16], rcx",
            "mov [rax + 24], rdx",
            "mov [rax + 32], rsi",
            "mov [rax + 40], rdi",
            "mov [rax + 48], rbp",
            "mov [rax + 56], r8",
            "mov [rax + 64], r9",
            "mov [rax + 72], r10",
            "mov [rax + 80], r11",
            "mov [rax + 88], r12",
            "mov [rax + 96], r13",
            "mov [rax + 104], r14",
            "mov [rax + 112], r15",
            "lea rbx, [rsp + 8]",
            "mov [rax + 128], rbx",
            "pop rbx",
            ".cfi_adjust_cfa_offset -8",
            "mov [rax + 0], rbx",
            $($vstore,)*
            "add rsp, 8",
            ".cfi_adjust_cfa_offset -8",
            "pop rbp",
            ".cfi_adjust_cfa_offset -8",
            "pop rbx",
            ".cfi_restore_state",
            inout("rdi") $input => _,
            inout("rsi") $out => _,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            clobber_abi("sysv64"),
        )
    };
}

/// The xmm-only variant (SSE2, always available on x86_64).
///
/// # Safety
/// `input` and `out` point to `SLOTS` words; must run on a coroutine stack with less than 64 KiB
/// of headroom (or the store lands in unused stack and nothing grows).
#[inline(never)]
unsafe fn load_fault_store_xmm(input: *const u64, out: *mut u64) {
    // SAFETY: per the contract; the asm restores rbx, rbp and rsp, and declares every other
    // register it writes.
    unsafe {
        load_fault_store!(
            input,
            out,
            [
                "movdqu xmm0, [rdi + 192]",
                "movdqu xmm1, [rdi + 224]",
                "movdqu xmm2, [rdi + 256]",
                "movdqu xmm3, [rdi + 288]",
                "movdqu xmm4, [rdi + 320]",
                "movdqu xmm5, [rdi + 352]",
                "movdqu xmm6, [rdi + 384]",
                "movdqu xmm7, [rdi + 416]",
                "movdqu xmm8, [rdi + 448]",
                "movdqu xmm9, [rdi + 480]",
                "movdqu xmm10, [rdi + 512]",
                "movdqu xmm11, [rdi + 544]",
                "movdqu xmm12, [rdi + 576]",
                "movdqu xmm13, [rdi + 608]",
                "movdqu xmm14, [rdi + 640]",
                "movdqu xmm15, [rdi + 672]",
            ],
            [
                "movdqu [rax + 192], xmm0",
                "movdqu [rax + 224], xmm1",
                "movdqu [rax + 256], xmm2",
                "movdqu [rax + 288], xmm3",
                "movdqu [rax + 320], xmm4",
                "movdqu [rax + 352], xmm5",
                "movdqu [rax + 384], xmm6",
                "movdqu [rax + 416], xmm7",
                "movdqu [rax + 448], xmm8",
                "movdqu [rax + 480], xmm9",
                "movdqu [rax + 512], xmm10",
                "movdqu [rax + 544], xmm11",
                "movdqu [rax + 576], xmm12",
                "movdqu [rax + 608], xmm13",
                "movdqu [rax + 640], xmm14",
                "movdqu [rax + 672], xmm15",
            ]
        )
    }
}

/// The whole-ymm variant.
///
/// # Safety
/// As [`load_fault_store_xmm`], and the CPU supports AVX.
#[inline(never)]
#[target_feature(enable = "avx")]
unsafe fn load_fault_store_ymm(input: *const u64, out: *mut u64) {
    // SAFETY: as in `load_fault_store_xmm`; AVX is available per the contract.
    unsafe {
        load_fault_store!(
            input,
            out,
            [
                "vmovdqu ymm0, [rdi + 192]",
                "vmovdqu ymm1, [rdi + 224]",
                "vmovdqu ymm2, [rdi + 256]",
                "vmovdqu ymm3, [rdi + 288]",
                "vmovdqu ymm4, [rdi + 320]",
                "vmovdqu ymm5, [rdi + 352]",
                "vmovdqu ymm6, [rdi + 384]",
                "vmovdqu ymm7, [rdi + 416]",
                "vmovdqu ymm8, [rdi + 448]",
                "vmovdqu ymm9, [rdi + 480]",
                "vmovdqu ymm10, [rdi + 512]",
                "vmovdqu ymm11, [rdi + 544]",
                "vmovdqu ymm12, [rdi + 576]",
                "vmovdqu ymm13, [rdi + 608]",
                "vmovdqu ymm14, [rdi + 640]",
                "vmovdqu ymm15, [rdi + 672]",
            ],
            [
                "vmovdqu [rax + 192], ymm0",
                "vmovdqu [rax + 224], ymm1",
                "vmovdqu [rax + 256], ymm2",
                "vmovdqu [rax + 288], ymm3",
                "vmovdqu [rax + 320], ymm4",
                "vmovdqu [rax + 352], ymm5",
                "vmovdqu [rax + 384], ymm6",
                "vmovdqu [rax + 416], ymm7",
                "vmovdqu [rax + 448], ymm8",
                "vmovdqu [rax + 480], ymm9",
                "vmovdqu [rax + 512], ymm10",
                "vmovdqu [rax + 544], ymm11",
                "vmovdqu [rax + 576], ymm12",
                "vmovdqu [rax + 608], ymm13",
                "vmovdqu [rax + 640], ymm14",
                "vmovdqu [rax + 672], ymm15",
                "vzeroupper",
            ]
        )
    }
}

fn avx() -> bool {
    is_x86_feature_detected!("avx") && is_x86_feature_detected!("avx2")
}

/// What one slot of the input holds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    /// `8 * k` bytes below the local array (still in the stack, or in its guard region, whose
    /// addresses count as the stack's too): must move with the stack.
    Stack(usize),
    /// `bytes` below the local array, inside the guard region: must move too.
    Guard(usize),
    /// Anything else: must come back unchanged.
    Other(u64),
}

/// The result of one run, for the test thread to check.
#[derive(Debug)]
struct Run {
    input: Vec<u64>,
    out: Vec<u64>,
    kinds: Vec<Value>,
    delta: usize,
    size_before: usize,
    growths_before: u64,
    size_after: usize,
    growths_after: u64,
    ymm: bool,
}

/// Fills the registers as `kinds` says, runs the asm (which grows the stack by fault), and
/// reports what came back.
#[inline(never)]
fn run_case(ymm: bool, kinds: Vec<Value>) -> Run {
    assert_eq!(kinds.len(), SLOTS);
    let mut input = vec![0u64; SLOTS].into_boxed_slice();
    let mut out = vec![0u64; SLOTS].into_boxed_slice();
    // The registers point at and below this array (a local: on the coroutine's stack). Below,
    // not above: above it, release builds may have fewer than SLOTS words of stack left.
    let mut local = [0u64; 4];
    black_box(&mut local);
    let before = stack::current().unwrap();
    let base = addr(&local);
    // Where the array was, disguised: the move adjusts the live address, not this copy.
    let disguised = black_box(base ^ MASK);
    for (slot, kind) in kinds.iter().enumerate() {
        input[slot] = match *kind {
            Value::Stack(k) => (base - 8 * k) as u64,
            Value::Guard(bytes) => (base - bytes) as u64,
            Value::Other(v) => v,
        };
    }
    // SAFETY: both arrays hold SLOTS words; the callers run this on a fresh 4 KiB coroutine stack
    // (checked below through `size_before`), where 64 KiB down is the guard region.
    unsafe {
        if ymm {
            load_fault_store_ymm(input.as_ptr(), out.as_mut_ptr());
        } else {
            load_fault_store_xmm(input.as_ptr(), out.as_mut_ptr());
        }
    }
    black_box(&mut local);
    let after = stack::current().unwrap();
    let delta = addr(&local).wrapping_sub(black_box(disguised) ^ MASK);
    Run {
        input: input.into_vec(),
        out: out.into_vec(),
        kinds,
        delta,
        size_before: before.size,
        growths_before: before.growths,
        size_after: after.size,
        growths_after: after.growths,
        ymm,
    }
}

fn slot_name(slot: usize) -> String {
    match slot {
        s if s < GPRS.len() => GPRS[s].to_string(),
        RSP_BEFORE => "rsp (before)".into(),
        RSP_AFTER => "rsp (after)".into(),
        s if s >= VEC => {
            let (n, lane) = ((s - VEC) / 4, (s - VEC) % 4);
            if lane < 2 {
                format!("xmm{n} lane {lane}")
            } else {
                format!("ymm{n} upper lane {}", lane - 2)
            }
        }
        s => format!("unused slot {s}"),
    }
}

/// Whether the run loaded and stored `slot` at all.
fn used(run: &Run, slot: usize) -> bool {
    match slot {
        s if s < GPRS.len() => true,
        RSP_BEFORE | RSP_AFTER => false, // checked separately
        s if s >= VEC => run.ymm || (s - VEC) % 4 < 2,
        _ => false,
    }
}

/// Checks every register slot of `run`; returns how many moved.
fn check(run: &Run) -> usize {
    assert_eq!(
        run.size_before, 4096,
        "the asm must run on the default 4 KiB stack"
    );
    assert_eq!(run.growths_before, 0, "{run:?}");
    assert_eq!(
        run.growths_after, 1,
        "the touch 64 KiB below must grow the stack once, by fault"
    );
    assert!(run.size_after >= 64 << 10, "{}", run.size_after);
    assert!(run.size_after.is_power_of_two());
    assert_ne!(run.delta, 0, "the stack must have moved");
    assert_eq!(run.delta % 4096, 0, "stacks move by whole pages");
    let mut moved = 0;
    let mut wrong = Vec::new();
    for slot in (0..SLOTS).filter(|&s| used(run, s)) {
        let loaded = run.input[slot];
        let want = match run.kinds[slot] {
            Value::Stack(_) | Value::Guard(_) => {
                moved += 1;
                loaded.wrapping_add(run.delta as u64)
            }
            Value::Other(v) => v,
        };
        if run.out[slot] != want {
            wrong.push(format!(
                "{}: loaded {loaded:#x} ({:?}), got {:#x}, want {want:#x}",
                slot_name(slot),
                run.kinds[slot],
                run.out[slot]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "delta {:#x}; wrong registers:\n{}",
        run.delta,
        wrong.join("\n")
    );
    assert_eq!(
        run.out[RSP_AFTER],
        run.out[RSP_BEFORE].wrapping_add(run.delta as u64),
        "rsp moves by the same delta"
    );
    moved
}

/// Runs the registers test in a fresh coroutine of a default runtime (4 KiB stacks).
fn in_fresh_coroutine(ymm: bool, kinds: Vec<Value>) -> Run {
    let rt = default_stack_runtime(2);
    rt.block_on(|| pagurus::spawn(move || run_case(ymm, kinds)).join().unwrap())
}

/// Every slot holds a distinct stack address.
fn all_stack() -> Vec<Value> {
    (0..SLOTS).map(Value::Stack).collect()
}

#[test]
fn general_and_xmm_registers_follow_the_move() {
    let run = in_fresh_coroutine(false, all_stack());
    let moved = check(&run);
    assert_eq!(
        moved,
        GPRS.len() + 32,
        "15 general registers and 32 xmm lanes"
    );
}

#[test]
fn ymm_upper_halves_follow_the_move() {
    if !avx() {
        eprintln!("no AVX2 on this CPU: skipping the ymm part");
        return;
    }
    let run = in_fresh_coroutine(true, all_stack());
    let moved = check(&run);
    assert_eq!(
        moved,
        GPRS.len() + 64,
        "15 general registers and 64 ymm lanes"
    );
}

static A_STATIC: u64 = 7;

/// How far below the local array r11 points in the mixed case: deep in the guard region (44 KiB
/// below the 4 KiB stack's bottom; arena guards are 64 KiB, `stack::ARENA_GUARD_SIZE`), as a
/// stack probe's bound would (the guard is part of the range that moves).
const GUARD_BYTES: usize = 48 << 10;
const _: () = assert!(GUARD_BYTES < pagurus::stack::ARENA_GUARD_SIZE);

/// Half the slots hold stack addresses, half hold values that must not move (`others`, cycled):
/// small integers, 0 and all-ones, a heap pointer, a static's address, an address on the test
/// thread's own stack and one on another coroutine's stack. r11 holds an address deep in the
/// guard region: it must move too.
fn mixed(others: &[u64]) -> Vec<Value> {
    (0..SLOTS)
        .map(|slot| {
            if slot == 10 {
                Value::Guard(GUARD_BYTES) // r11
            } else if slot % 2 == 0 {
                Value::Stack(slot)
            } else {
                Value::Other(others[(slot / 2) % others.len()])
            }
        })
        .collect()
}

fn mixed_case(ymm: bool) {
    let on_thread_stack = [0u8; 16];
    let heap = Box::new(0u64);
    let rt = default_stack_runtime(2);
    let run = rt.block_on(|| {
        // A value on the main coroutine's stack: another stack's address, not this one's.
        let main_local = black_box([1u64; 4]);
        let others = vec![
            42,
            0,
            u64::MAX,
            1,
            addr(&*heap) as u64,
            addr(&A_STATIC) as u64,
            addr(&on_thread_stack) as u64,
            addr(&main_local) as u64,
            1.5f64.to_bits(),
            0x8000_0000_0000_0000,
        ];
        let kinds = mixed(&others);
        let run = pagurus::spawn(move || run_case(ymm, kinds)).join().unwrap();
        black_box(&main_local);
        run
    });
    let moved = check(&run);
    assert!(moved >= 8 + 16, "{moved}");
    black_box((&on_thread_stack, &heap));
}

#[test]
fn non_stack_values_in_registers_are_left_alone() {
    mixed_case(false);
    if avx() {
        mixed_case(true);
    }
}
