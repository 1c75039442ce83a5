//! Adaptive initial stack size per spawn site.
//!
//! Coroutines spawned by one `spawn` call usually run the same code, so they need about the
//! same stack. A site whose coroutines keep growing past the runtime's initial size pays the
//! same moves (walk, copy, adjust) in every one of them; Go 1.19 answers with one global start
//! size, the average use measured at GC. Here each worker learns per site, from what its
//! finished coroutines did:
//!
//! - **Learn.** When [`LEARN`] coroutines of a site in a row grew, the site's coroutines start at
//!   the smallest final size among them (at most [`MAX_START`]).
//! - **Keep learning.** Coroutines that start at the learned size and still grow count the same
//!   way, so the size follows a site whose needs went up.
//! - **Forget.** Every [`PROBE`]-th coroutine of a site with a learned size starts at the
//!   runtime's size instead; if it finishes without growing, the site goes back to that size.
//!
//! The table is direct-mapped on the site's address ([`SLOTS`] entries, no allocation, one
//! compare per spawn); two sites sharing an entry take turns, each evicting what the other
//! learned. Per worker, like the stack pool, so no lock.

use std::panic::Location;

/// Coroutines of a site that must grow in a row before its start size changes.
pub(crate) const LEARN: u32 = 4;

/// One coroutine in this many of a site with a learned size starts small, to see whether the
/// site still needs the larger size.
pub(crate) const PROBE: u32 = 64;

/// The largest learned start size: 256 KiB (a worker's pool keeps 64 of them by default).
pub(crate) const MAX_START: usize = 256 << 10;

/// Entries of the table.
const SLOTS: usize = 64;

#[derive(Clone, Copy)]
struct Entry {
    /// The site's address; 0 for an empty entry.
    site: usize,
    /// The learned start size; 0 when the site starts at the runtime's size.
    start: usize,
    /// Growing coroutines in a row, and the smallest final size among them.
    streak: u32,
    streak_min: usize,
    /// Starts since the last probe.
    starts: u32,
}

const EMPTY: Entry = Entry {
    site: 0,
    start: 0,
    streak: 0,
    streak_min: usize::MAX,
    starts: 0,
};

/// How a coroutine's start size was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// The runtime's size: its site has learned nothing.
    Default,
    /// Its site's learned size.
    Learned,
    /// The runtime's size, to see whether its site still needs the learned one.
    Probe,
}

/// One worker's learned start sizes.
pub(crate) struct StartSizes {
    entries: [Entry; SLOTS],
}

impl Default for StartSizes {
    fn default() -> StartSizes {
        StartSizes {
            entries: [EMPTY; SLOTS],
        }
    }
}

fn key(site: &'static Location<'static>) -> (usize, usize) {
    let addr = site as *const Location<'static> as usize;
    // Locations are 8-aligned statics, often neighbours: mix the bits above the alignment.
    (addr, (addr >> 3 ^ addr >> 9) % SLOTS)
}

impl StartSizes {
    /// The stack size a coroutine spawned at `site` starts with, and how it was chosen.
    #[inline]
    pub(crate) fn start_size(
        &mut self,
        site: &'static Location<'static>,
        default: usize,
    ) -> (usize, Start) {
        let (addr, slot) = key(site);
        let entry = &mut self.entries[slot];
        if entry.site != addr || entry.start <= default {
            return (default, Start::Default);
        }
        entry.starts += 1;
        if entry.starts >= PROBE {
            entry.starts = 0;
            return (default, Start::Probe);
        }
        (entry.start, Start::Learned)
    }

    /// Learns from a coroutine of `site` that finished on a stack of `final_size()` bytes, and
    /// whether it grew (see the module docs).
    #[inline]
    pub(crate) fn finished(
        &mut self,
        site: &'static Location<'static>,
        grew: bool,
        final_size: impl FnOnce() -> usize,
        default: usize,
    ) {
        let (addr, slot) = key(site);
        let entry = &mut self.entries[slot];
        if entry.site != addr {
            if !grew {
                return; // nothing to learn, and nothing to evict for it
            }
            *entry = Entry {
                site: addr,
                ..EMPTY
            };
        }
        let final_size = final_size();
        if grew {
            entry.streak += 1;
            entry.streak_min = entry.streak_min.min(final_size);
            if entry.streak >= LEARN {
                entry.start = entry.streak_min.min(MAX_START.max(default));
                entry.streak = 0;
                entry.streak_min = usize::MAX;
            }
        } else {
            entry.streak = 0;
            entry.streak_min = usize::MAX;
            if entry.start > final_size {
                // A probe that started small and never grew: the site no longer needs more.
                entry.start = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn here() -> &'static Location<'static> {
        Location::caller()
    }

    const K4: usize = 4 << 10;

    #[test]
    fn learns_after_a_streak_probes_and_forgets() {
        let mut t = StartSizes::default();
        let site = here();
        let other = here();
        for _ in 0..LEARN - 1 {
            assert_eq!(t.start_size(site, K4), (K4, Start::Default));
            t.finished(site, true, || 32 << 10, K4);
        }
        // A coroutine that did not grow breaks the streak.
        t.finished(site, false, || K4, K4);
        for i in 0..LEARN {
            assert_eq!(t.start_size(site, K4), (K4, Start::Default));
            t.finished(site, true, || if i == 0 { 16 << 10 } else { 64 << 10 }, K4);
        }
        // The smallest final size of the streak.
        assert_eq!(t.start_size(site, K4), (16 << 10, Start::Learned));
        assert_eq!(t.start_size(other, K4), (K4, Start::Default), "per site");
        // Every PROBE-th start is small; a probe that grows keeps the size.
        let mut small = 0;
        for _ in 1..PROBE {
            if t.start_size(site, K4).1 == Start::Learned {
                t.finished(site, false, || 16 << 10, K4);
            } else {
                small += 1;
                t.finished(site, true, || 16 << 10, K4);
            }
        }
        assert_eq!(small, 1);
        assert_eq!(t.start_size(site, K4), (16 << 10, Start::Learned));
        // A probe that does not grow: back to the runtime's size.
        while t.start_size(site, K4).1 != Start::Probe {}
        t.finished(site, false, || K4, K4);
        assert_eq!(t.start_size(site, K4), (K4, Start::Default));
        // Capped.
        for _ in 0..LEARN {
            t.finished(site, true, || 8 << 20, K4);
        }
        assert_eq!(t.start_size(site, K4), (MAX_START, Start::Learned));
    }
}
