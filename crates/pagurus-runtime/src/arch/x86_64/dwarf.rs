//! x86_64 registers as DWARF numbers them (System V psABI, figure 3.36), and where each one is
//! found in a stopped thread: a signal frame's `ucontext`, or a suspended coroutine's stack.
//!
//! 0 rax, 1 rdx, 2 rcx, 3 rbx, 4 rsi, 5 rdi, 6 rbp, 7 rsp, 8-15 r8-r15, 16 the return address
//! column (the frame's `rip`). The frame walker (`grow::frames`) and the movers use only the
//! names below, so a port supplies the same names with its own numbers.

/// The stack pointer.
pub(crate) const SP: u16 = 7;
/// The frame pointer.
pub(crate) const FP: u16 = 6;
/// The return-address column (the frame's program counter).
pub(crate) const RA: u16 = 16;
/// Registers a walker tracks: the sixteen general registers and the return-address column.
pub(crate) const REGISTERS: usize = 17;
/// The callee-saved registers besides the stack pointer, in DWARF numbers: rbx, rbp, r12-r15.
pub(crate) const CALLEE_SAVED: [u16; 6] = [3, 6, 12, 13, 14, 15];
/// `rbx`: with `FP` and `RA`, what a suspended coroutine's frame holds (see
/// [`suspended_registers`]).
const RBX: u16 = 3;

/// The `gregs` index in a signal frame's `ucontext` of each DWARF register `0..REGISTERS`.
const UCONTEXT_GREGS: [libc::c_int; REGISTERS] = [
    libc::REG_RAX,
    libc::REG_RDX,
    libc::REG_RCX,
    libc::REG_RBX,
    libc::REG_RSI,
    libc::REG_RDI,
    libc::REG_RBP,
    libc::REG_RSP,
    libc::REG_R8,
    libc::REG_R9,
    libc::REG_R10,
    libc::REG_R11,
    libc::REG_R12,
    libc::REG_R13,
    libc::REG_R14,
    libc::REG_R15,
    libc::REG_RIP,
];

/// Calls `set(dwarf_number, value)` for every register of the interrupted state in `uc`: the
/// sixteen general registers and `rip`. Async-signal-safe.
pub(crate) fn signal_registers(uc: &libc::ucontext_t, mut set: impl FnMut(u16, usize)) {
    for (dwarf, &greg) in (0u16..).zip(UCONTEXT_GREGS.iter()) {
        if let Some(&value) = usize::try_from(greg)
            .ok()
            .and_then(|i| uc.uc_mcontext.gregs.get(i))
        {
            set(dwarf, value as usize);
        }
    }
}

/// Sets DWARF register `reg` (one of the sixteen general registers or `rip`) of the interrupted
/// state in `uc` to `value`; other numbers are ignored. Async-signal-safe.
pub(crate) fn set_signal_register(uc: &mut libc::ucontext_t, reg: u16, value: usize) {
    if let Some(slot) = UCONTEXT_GREGS
        .get(usize::from(reg))
        .and_then(|&greg| usize::try_from(greg).ok())
        .and_then(|i| uc.uc_mcontext.gregs.get_mut(i))
    {
        *slot = value as libc::greg_t;
    }
}

/// Bytes of the frame a switch leaves below a suspended side's live frames: `rbx` at `sp + 0`,
/// `rbp` at `sp + 8`, the resume address at `sp + 16` (see the picture in `arch::x86_64`).
pub(crate) const SUSPENDED_FRAME_BYTES: usize = 24;

/// Calls `set(dwarf_number, value)` for the registers of a coroutine suspended at `sp`: `rbx`,
/// `rbp` and the resume address from the three words at `sp`, and the stack pointer the resume
/// address's frame had (`sp + 24`). Every other register was spilled by the compiler into the
/// frames the unwind information describes. Async-signal-safe.
///
/// # Safety
/// `sp` is the saved stack pointer of a suspended coroutine whose stack is mapped: the
/// [`SUSPENDED_FRAME_BYTES`] above it are the frame the switch wrote.
pub(crate) unsafe fn suspended_registers(sp: usize, mut set: impl FnMut(u16, usize)) {
    // SAFETY: per the contract, the three words at `sp` are readable and hold the saved frame.
    let word = |i: usize| unsafe { ((sp + 8 * i) as *const usize).read() };
    set(RBX, word(0));
    set(FP, word(1));
    set(RA, word(2));
    set(SP, sp + SUSPENDED_FRAME_BYTES);
}

/// `r11`: the register LLVM's inline stack probes keep their loop bound in.
const R11: u16 = 11;

/// LLVM's inline stack probe store, `movq $0x0, (%rsp)`.
const PROBE_STORE: [u8; 8] = [0x48, 0xc7, 0x04, 0x24, 0x00, 0x00, 0x00, 0x00];
/// The probe loops' compares with their bound: `cmp %r11, %rsp` and `cmp %rsp, %r11`.
const PROBE_COMPARES: [[u8; 3]; 2] = [[0x4c, 0x39, 0xdc], [0x49, 0x39, 0xe3]];
/// How far after the store the loop's compare may come: a `sub $0x1000, %rsp` (7 bytes) may sit
/// between them.
const PROBE_COMPARE_WITHIN: usize = 7;

/// The register holding the lower bound of the stack probe loop that faulted at `pc`, if `pc` is
/// the store of one of LLVM's inline probe loops (`movq $0, (%rsp)` followed by a compare of
/// `rsp` with `r11`).
///
/// A frame larger than a page is entered through such a loop: `r11` is set to where the frame
/// (or its realignment) will end, and the loop touches one page at a time down to it. When the
/// frame has no frame pointer, the loop's CFI names `r11` as the CFA register and the walker
/// finds it; when the frame realigns its stack for an over-aligned local, the CFA is `rbp`-based
/// and `r11` is named nowhere, so the fault path asks here. Async-signal-safe.
///
/// # Safety
/// `pc` is the address of the faulting instruction of the interrupted code: at least 18 bytes of
/// code are readable there (the store, and the compare or the `sub` and compare after it).
pub(crate) unsafe fn probe_loop_bound(pc: usize) -> Option<u16> {
    let code = pc as *const u8;
    // SAFETY: per the contract these bytes are mapped code.
    let at = |i: usize| unsafe { code.add(i).read() };
    if (0..PROBE_STORE.len()).any(|i| at(i) != PROBE_STORE[i]) {
        return None;
    }
    let after = PROBE_STORE.len();
    let compare_at = |start: usize| {
        PROBE_COMPARES
            .iter()
            .any(|cmp| (0..cmp.len()).all(|i| at(start + i) == cmp[i]))
    };
    (compare_at(after) || compare_at(after + PROBE_COMPARE_WITHIN)).then_some(R11)
}
