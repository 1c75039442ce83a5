//! The register state of a thread stopped by a signal: x86_64 Linux `ucontext_t`, including the
//! vector registers in the signal frame's XSAVE area.
//!
//! Everything here is async-signal-safe (plain memory access), except [`prepare`], which reads
//! CPUID once from normal context.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// `magic1` of the signal frame's software-reserved bytes when an XSAVE area follows the legacy
/// FXSAVE image (Linux's FP_XSTATE_MAGIC1).
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
/// Offset of the software-reserved bytes (`struct _fpx_sw_bytes`) in the FXSAVE image.
const SW_RESERVED: usize = 464;
/// Offset of the XSAVE header (its first word is `xstate_bv`).
const XSAVE_HEADER: usize = 512;
/// Offset and size of XMM0-15 in the FXSAVE image.
const XMM: (usize, usize) = (160, 256);

/// XSAVE components holding parts of vector registers: AVX (upper halves of YMM0-15), AVX-512
/// ZMM_Hi256 (upper halves of ZMM0-15) and Hi16_ZMM (ZMM16-31). Their offsets in the standard
/// (non-compacted) format that signal frames use come from CPUID leaf 0xD.
const COMPONENTS: [u32; 3] = [2, 6, 7];
static OFFSETS: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];
static SIZES: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];

/// Reads the XSAVE layout from CPUID. Call once, from normal context, before any handler may use
/// [`SignalContext::for_each_vector_lane`].
pub(crate) fn prepare() {
    let max_leaf = core::arch::x86_64::__cpuid(0).eax;
    if max_leaf < 0xD {
        return;
    }
    for (i, component) in COMPONENTS.iter().enumerate() {
        let r = core::arch::x86_64::__cpuid_count(0xD, *component);
        OFFSETS[i].store(r.ebx, Relaxed);
        SIZES[i].store(r.eax, Relaxed);
    }
}

/// The register state in a signal frame.
pub(crate) struct SignalContext {
    uc: *mut libc::ucontext_t,
}

impl SignalContext {
    /// # Safety
    /// `uc` is the third argument of an SA_SIGINFO handler that is still running.
    pub(crate) unsafe fn from_raw(uc: *mut libc::c_void) -> SignalContext {
        SignalContext { uc: uc.cast() }
    }

    /// The raw ucontext, for the frame walker.
    ///
    /// # Safety
    /// No `&mut` obtained from this context may be alive while the reference is used.
    pub(crate) unsafe fn ucontext(&self) -> &libc::ucontext_t {
        // SAFETY: per `from_raw` the ucontext is live; the caller rules out aliasing.
        unsafe { &*self.uc }
    }

    /// Sets DWARF register `reg` of the interrupted state (see `dwarf::set_signal_register`).
    pub(crate) fn set_register(&mut self, reg: u16, value: usize) {
        // SAFETY: per `from_raw` the ucontext is live; `&mut self` rules out other references
        // made through this context.
        super::dwarf::set_signal_register(unsafe { &mut *self.uc }, reg, value);
    }

    fn gregs(&mut self) -> &mut [libc::greg_t; 23] {
        // SAFETY: per `from_raw`, `uc` points to the live signal frame's ucontext.
        unsafe { &mut (*self.uc).uc_mcontext.gregs }
    }

    pub(crate) fn sp(&mut self) -> usize {
        self.gregs()[libc::REG_RSP as usize] as usize
    }

    pub(crate) fn pc(&mut self) -> usize {
        self.gregs()[libc::REG_RIP as usize] as usize
    }

    /// The sixteen general registers, `rsp` included, `rip` excluded (it points into code, never
    /// into a stack), as words. Indices follow `REG_R8`..`REG_RSP` of `<sys/ucontext.h>`.
    pub(crate) fn general_registers(&mut self) -> &mut [usize] {
        let gregs = &mut self.gregs()[..=libc::REG_RSP as usize];
        // SAFETY: `greg_t` is `i64`, of the same size and alignment as `usize` on this target;
        // the new slice covers exactly the same memory and borrows it exclusively.
        unsafe { std::slice::from_raw_parts_mut(gregs.as_mut_ptr().cast::<usize>(), gregs.len()) }
    }

    /// Calls `f` on every vector register range the frame holds, as 64-bit lanes: XMM0-15, and
    /// the YMM/ZMM parts present in the XSAVE area (`xstate_bv` says which hold live state).
    pub(crate) fn for_each_vector_register_range(&mut self, mut f: impl FnMut(&mut [u64])) {
        // SAFETY: per `from_raw`, the ucontext is live; fpregs is null or points to the frame's
        // FP state.
        let fp = unsafe { (*self.uc).uc_mcontext.fpregs } as *mut u8;
        if fp.is_null() {
            return;
        }
        let mut lanes = |offset: usize, size: usize| {
            // SAFETY: callers pass ranges inside the FP state the kernel wrote (FXSAVE image,
            // or XSAVE components within xstate_size); 8-byte aligned (offsets are multiples
            // of 16, the area is 64-byte aligned); nothing else refers to them while the handler
            // runs.
            f(unsafe { std::slice::from_raw_parts_mut(fp.add(offset).cast::<u64>(), size / 8) });
        };
        lanes(XMM.0, XMM.1);
        // SAFETY: the software-reserved bytes lie inside the 512-byte FXSAVE image.
        let (magic, xstate_size) = unsafe {
            (
                fp.add(SW_RESERVED).cast::<u32>().read(),
                fp.add(SW_RESERVED + 16).cast::<u32>().read(),
            )
        };
        if magic != FP_XSTATE_MAGIC1 {
            return;
        }
        // SAFETY: magic1 says an XSAVE header follows the FXSAVE image.
        let xstate_bv = unsafe { fp.add(XSAVE_HEADER).cast::<u64>().read() };
        for (i, component) in COMPONENTS.iter().enumerate() {
            let offset = OFFSETS[i].load(Relaxed) as usize;
            let size = SIZES[i].load(Relaxed) as usize;
            let present = xstate_bv & (1 << component) != 0;
            if present && offset != 0 && offset.saturating_add(size) <= xstate_size as usize {
                lanes(offset, size);
            }
        }
    }
}
