//! Free lists keyed by size and placement, shared by the arena and the worker pools.
//!
//! Stacks are powers of two from a page, one size class each. A move into a stack of up to
//! [`KEYED_MAX_SIZE`] asks for a top congruent to the old one modulo 1 MiB (see `Placement`), so
//! free stacks of a class are kept in one list per `top mod 1 MiB` (256 per class), and a
//! request finds its list with a shift and a mask. A request for any placement (a fresh stack)
//! finds a non-empty list of its class in a bitmap. Nothing here allocates: the lists themselves
//! live in their stacks' memory.

use super::{MOVE_ALIGN, PAGE_SIZE, Placement};

/// Classes keyed by placement: one page up to 1 MiB.
pub(super) const KEYED_CLASSES: usize = 9;

/// The largest keyed size: 1 MiB.
pub(super) const KEYED_MAX_SIZE: usize = PAGE_SIZE << (KEYED_CLASSES - 1);

/// Lists per keyed class: one per page-aligned residue modulo [`MOVE_ALIGN`].
const KEYS: usize = MOVE_ALIGN / PAGE_SIZE;

/// Lists of all keyed classes.
pub(super) const KEYED_LISTS: usize = KEYED_CLASSES * KEYS;

const WORDS: usize = KEYED_LISTS.div_ceil(64);

/// The size class of `size` (a power of two, at least a page).
pub(super) fn class(size: usize) -> usize {
    (size / PAGE_SIZE).trailing_zeros() as usize
}

/// The list a free stack of `size` (at most [`KEYED_MAX_SIZE`]) whose top is `top` belongs to.
pub(super) fn list_of(size: usize, top: usize) -> usize {
    let class = class(size);
    debug_assert!(class < KEYED_CLASSES);
    class * KEYS + (top / PAGE_SIZE) % KEYS
}

/// The usable size of the stacks of list `list`.
pub(super) fn size_of_list(list: usize) -> usize {
    PAGE_SIZE << (list / KEYS)
}

/// Which lists are non-empty: one bit per list.
pub(super) struct Occupancy([u64; WORDS]);

impl Occupancy {
    pub(super) const fn new() -> Occupancy {
        Occupancy([0; WORDS])
    }

    pub(super) fn set(&mut self, list: usize, nonempty: bool) {
        let bit = 1u64 << (list % 64);
        if nonempty {
            self.0[list / 64] |= bit;
        } else {
            self.0[list / 64] &= !bit;
        }
    }

    fn get(&self, list: usize) -> bool {
        self.0[list / 64] & (1 << (list % 64)) != 0
    }

    /// A non-empty list holding stacks of `size` (at most [`KEYED_MAX_SIZE`]) that `placement`
    /// accepts, if there is one. A placement modulo more than [`MOVE_ALIGN`] finds none (the
    /// lists do not tell residues beyond it).
    pub(super) fn find(&self, size: usize, placement: Placement) -> Option<usize> {
        let class = class(size);
        debug_assert!(class < KEYED_CLASSES);
        let first = class * KEYS;
        let modulus = placement.modulus;
        if modulus > MOVE_ALIGN {
            return None;
        }
        // Keys (tops modulo 1 MiB, in pages) the placement accepts: every `step`-th from its
        // residue.
        let step = modulus / PAGE_SIZE;
        let key = placement.residue / PAGE_SIZE;
        if step == 1 {
            return self.first_set(first, first + KEYS);
        }
        (key..KEYS)
            .step_by(step)
            .map(|k| first + k)
            .find(|&list| self.get(list))
    }

    /// The first set bit in `lo..hi`.
    pub(super) fn first_set(&self, lo: usize, hi: usize) -> Option<usize> {
        let mut at = lo;
        while at < hi {
            let word = self.0[at / 64] >> (at % 64);
            if word != 0 {
                let found = at + word.trailing_zeros() as usize;
                return (found < hi).then_some(found);
            }
            at = (at / 64 + 1) * 64;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_keyed_by_top_modulo_1_mib() {
        assert_eq!(list_of(PAGE_SIZE, 0x7f00_0000_3000), 3);
        assert_eq!(list_of(PAGE_SIZE, 0x7f00_0010_3000), 3, "modulo 1 MiB");
        assert_eq!(list_of(2 * PAGE_SIZE, 0x7f00_0000_2000), KEYS + 2);
        assert_eq!(list_of(KEYED_MAX_SIZE, 0x7f00_000f_f000), KEYED_LISTS - 1);
        let mut occ = Occupancy::new();
        let want = |modulus, residue| Placement { modulus, residue };
        let size = 8 * PAGE_SIZE;
        assert_eq!(occ.find(size, Placement::ANY), None);
        let list = list_of(size, 0x7f00_0005_5000);
        occ.set(list, true);
        assert_eq!(occ.find(size, Placement::ANY), Some(list));
        assert_eq!(occ.find(size, want(MOVE_ALIGN, 0x5_5000)), Some(list));
        assert_eq!(occ.find(size, want(MOVE_ALIGN, 0x5000)), None);
        assert_eq!(occ.find(size, want(2 * PAGE_SIZE, 0x1000)), Some(list));
        assert_eq!(occ.find(size, want(2 * PAGE_SIZE, 0)), None);
        assert_eq!(
            occ.find(size, want(2 * MOVE_ALIGN, 0x5_5000)),
            None,
            "beyond 1 MiB"
        );
        assert_eq!(
            occ.find(4 * PAGE_SIZE, Placement::ANY),
            None,
            "other classes"
        );
        occ.set(list, false);
        assert_eq!(occ.find(size, Placement::ANY), None);
        let last = list_of(KEYED_MAX_SIZE, 0xff000);
        occ.set(last, true);
        assert_eq!(occ.find(KEYED_MAX_SIZE, Placement::ANY), Some(last));
        assert_eq!(occ.find(KEYED_MAX_SIZE / 2, Placement::ANY), None);
    }
}
