//! The per-thread rule cache: compact CFI rows keyed by lookup address.
//!
//! Finding an FDE and running its CFI program costs a few hundred nanoseconds per frame; a deep
//! stack repeats the same few return addresses many times, and a stack that grows once usually
//! grows again. Most rows on x86_64 are of a handful of simple forms (CFA = register + offset,
//! return address and the callee-saved registers at fixed offsets from the CFA), so a row of those
//! forms is kept here in one 64-byte entry and replayed without gimli.
//!
//! # Signal safety
//!
//! The table is a fixed-size open-addressed array allocated once, in normal context, by
//! `Unwinder::new` (which `prepare_thread` calls). Lookups and inserts only index into it: no
//! allocation, no lock, no atomic read-modify-write. Each thread has its own cache (inside its
//! `Unwinder`), so there is no sharing to synchronise. When a new object table is published the
//! cache notices the changed generation on its next use and empties itself in place (a 128 KiB
//! fill, once per change of the loaded objects).

use gimli::{CfaRule, Register, RegisterRule};

use super::objects::Row;
use super::{CALLEE_SAVED, RA, SP};

/// Number of entries: 2048 x 64 bytes = 128 KiB per thread, far more distinct return addresses
/// than a coroutine stack usually holds.
const SLOTS: usize = 2048;
/// Linear-probe distance before an insert evicts the entry at the home slot.
const PROBES: usize = 8;

/// A CFI row in the simple forms the cache can replay. One cache line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(align(64))]
pub(super) struct Compact {
    /// The lookup address (pc of the interrupted frame, return address minus one otherwise);
    /// 0 marks an empty slot.
    pub(super) key: usize,
    /// DWARF number of the register the CFA is based on (0-15).
    pub(super) cfa_reg: u8,
    /// The return address is undefined: the outermost frame.
    pub(super) outermost: bool,
    /// How many entries of `saved_regs`/`saved_offs` are used.
    pub(super) saved_len: u8,
    /// CFA = cfa_reg + cfa_off.
    pub(super) cfa_off: i32,
    /// Return address slot = CFA + ra_off (unused if `outermost`).
    pub(super) ra_off: i32,
    /// The lowest and highest slot offsets (return address included): one bounds check covers
    /// every slot.
    pub(super) min_off: i32,
    pub(super) max_off: i32,
    /// The callee-saved registers the frame saved, in register order, and their slot offsets
    /// from the CFA.
    pub(super) saved_regs: [u8; CALLEE_SAVED.len()],
    pub(super) saved_offs: [i32; CALLEE_SAVED.len()],
}

impl Compact {
    const EMPTY: Compact = Compact {
        key: 0,
        cfa_reg: 0,
        outermost: false,
        saved_len: 0,
        cfa_off: 0,
        ra_off: 0,
        min_off: 0,
        max_off: 0,
        saved_regs: [0; CALLEE_SAVED.len()],
        saved_offs: [0; CALLEE_SAVED.len()],
    };

    /// `(register, offset)` of each saved callee-saved register, in register order.
    #[inline]
    pub(super) fn saved(&self) -> impl Iterator<Item = (u16, i32)> + '_ {
        self.saved_regs
            .iter()
            .zip(&self.saved_offs)
            .take(usize::from(self.saved_len))
            .map(|(&r, &o)| (u16::from(r), o))
    }

    /// Compresses `row` (the row for `key`) if all its rules have forms the cache can replay,
    /// with exactly the meaning the general path (`apply_row`) gives them.
    pub(super) fn from_row(key: usize, row: &Row) -> Option<Compact> {
        let (cfa_reg, cfa_off) = match *row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } if register.0 < RA => {
                (u8::try_from(register.0).ok()?, i32::try_from(offset).ok()?)
            }
            _ => return None,
        };
        let mut compact = Compact {
            key,
            cfa_reg,
            cfa_off,
            ..Compact::EMPTY
        };
        match row.register(Register(RA))? {
            RegisterRule::Undefined => {
                // The general path ignores every other rule of an outermost frame.
                compact.outermost = true;
                return Some(compact);
            }
            RegisterRule::Offset(offset) => compact.ra_off = i32::try_from(offset).ok()?,
            _ => return None,
        }
        let mut offsets: [Option<i32>; CALLEE_SAVED.len()] = [None; CALLEE_SAVED.len()];
        for (register, rule) in row.registers() {
            let reg = register.0;
            let callee = CALLEE_SAVED.iter().position(|&r| r == reg);
            match (rule, callee) {
                (_, _) if reg == RA => {}
                (RegisterRule::Offset(offset), Some(i)) => {
                    *offsets.get_mut(i)? = Some(i32::try_from(*offset).ok()?);
                }
                (RegisterRule::SameValue, Some(_)) => {}
                // Undefined is what the general path assumes for caller-saved registers anyway,
                // and the stack pointer is always the CFA.
                (RegisterRule::Undefined, None) if reg < RA => {}
                (RegisterRule::SameValue | RegisterRule::Undefined, None) if reg == SP => {}
                _ => return None,
            }
        }
        let (mut min, mut max) = (compact.ra_off, compact.ra_off);
        for (&reg, offset) in CALLEE_SAVED.iter().zip(offsets) {
            let Some(offset) = offset else { continue };
            let i = usize::from(compact.saved_len);
            *compact.saved_regs.get_mut(i)? = u8::try_from(reg).ok()?;
            *compact.saved_offs.get_mut(i)? = offset;
            compact.saved_len += 1;
            (min, max) = (min.min(offset), max.max(offset));
        }
        (compact.min_off, compact.max_off) = (min, max);
        Some(compact)
    }
}

/// The cache proper. See the module docs for why it is signal-safe.
pub(super) struct RuleCache {
    /// A fixed-size array, so that masked indices need no bounds checks.
    slots: Box<[Compact; SLOTS]>,
    /// The object-table generation the entries were computed from.
    generation: u64,
}

impl RuleCache {
    /// Allocates the table (normal context only), empty and valid for object-table
    /// `generation`.
    pub(super) fn new(generation: u64) -> RuleCache {
        RuleCache {
            slots: vec![Compact::EMPTY; SLOTS]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("the vector has SLOTS entries")),
            generation,
        }
    }

    /// Empties the cache if it was filled from another object table than `generation`.
    pub(super) fn sync(&mut self, generation: u64) {
        if self.generation != generation {
            self.slots.fill(Compact::EMPTY);
            self.generation = generation;
        }
    }

    fn home(key: usize) -> usize {
        // Fibonacci hashing: code addresses share their low bits' alignment and high bits.
        ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize
    }

    pub(super) fn get(&self, key: usize) -> Option<&Compact> {
        if key == 0 {
            return None;
        }
        let home = Self::home(key);
        for i in 0..PROBES {
            let entry = &self.slots[(home + i) % SLOTS];
            if entry.key == key {
                return Some(entry);
            }
            if entry.key == 0 {
                return None;
            }
        }
        None
    }

    pub(super) fn insert(&mut self, entry: Compact) {
        if entry.key == 0 {
            return;
        }
        let home = Self::home(entry.key);
        // Nothing is ever removed, so a key is always within PROBES of its home slot or absent;
        // evicting the home entry keeps that true.
        let mut target = home;
        for i in 0..PROBES {
            let slot = (home + i) % SLOTS;
            let e = &self.slots[slot];
            if e.key == 0 || e.key == entry.key {
                target = slot;
                break;
            }
        }
        self.slots[target % SLOTS] = entry;
    }
}
