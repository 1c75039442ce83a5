//! A worker's timers: a hashed wheel of quarter-millisecond slots, and an ordered map beyond it.
//!
//! Every parked coroutine with a deadline (`park_until`: sleeps, timeouts, `select!` with
//! `default(dur)`) has one timer on the worker it is pinned to. Only that worker touches its
//! timers, so there is no lock. Costs: arming and cancelling are O(1) for deadlines within
//! [`SLOTS`] ticks (1.024 s: the common case, sleeps and timeouts of up to a second), O(log n)
//! beyond; firing is O(1) per timer.
//!
//! ```text
//!   entries: Slab<Entry>          the armed timers: task, deadline tick, generation
//!   slots[tick % SLOTS]: Vec<Ref> (slab key, generation) of the timers due at that tick
//!   far: BTreeMap<(tick, gen)>    timers due SLOTS or more ticks after `next_tick`
//! ```
//!
//! A tick is a quarter of a millisecond ([`TICK_NANOS`]) since the wheel's origin. A timer due at
//! `deadline` goes to the tick `ceil(deadline)`, and a tick fires only once the clock has reached
//! it, so no timer fires early; it fires up to a tick late, plus the time the worker takes to
//! notice (an idle worker's wait ends at the tick through its wake timer, see `worker.rs`).
//!
//! Cancelling removes the slab entry and leaves its slot reference behind; a stale reference is
//! recognised by its generation (never reused) and dropped when its slot is drained, at most
//! [`SLOTS`] ticks later. The far map is exact. Between `next_tick` and `next_tick + SLOTS` each
//! slot holds only timers of one tick, because a timer is put in a slot only when its tick is in
//! that window (see [`Timers::arm`] and [`Timers::fire`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use slab::Slab;

use super::task::TaskRef;

/// Slots of the wheel: its horizon in ticks. A power of two.
const SLOTS: usize = 4096;
/// Nanoseconds per tick.
const TICK_NANOS: u32 = 250_000;
/// Ticks per second.
const TICKS_PER_SEC: u64 = 1_000_000_000 / TICK_NANOS as u64;
const WORDS: usize = SLOTS / 64;

/// Names an armed timer, to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    key: usize,
    generation: u64,
}

struct Entry {
    task: TaskRef,
    tick: u64,
    generation: u64,
    /// In `far` rather than in a slot.
    far: bool,
}

#[derive(Clone, Copy)]
struct SlotRef {
    key: usize,
    generation: u64,
}

pub(crate) struct Timers {
    origin: Instant,
    /// Every tick before this one has fired.
    next_tick: u64,
    entries: Slab<Entry>,
    /// Empty until the first timer is placed in the wheel (a `block_on` thread that never
    /// sleeps does not pay for the 4,096 slots).
    slots: Box<[Vec<SlotRef>]>,
    /// Which slots hold references (live or stale): bit `s % 64` of word `s / 64`.
    occupied: [u64; WORDS],
    far: BTreeMap<(u64, u64), usize>,
    generation: u64,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            origin: Instant::now(),
            next_tick: 0,
            entries: Slab::new(),
            slots: Box::default(),
            occupied: [0; WORDS],
            far: BTreeMap::new(),
            generation: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first tick at or after `deadline`.
    fn tick_at(&self, deadline: Instant) -> u64 {
        // In u64 (a u128 division per timer is measurable): whole ticks of the seconds, plus the
        // started tick of the rest. Saturates beyond 146 million years.
        let since = deadline.saturating_duration_since(self.origin);
        since
            .as_secs()
            .saturating_mul(TICKS_PER_SEC)
            .saturating_add(u64::from(since.subsec_nanos().div_ceil(TICK_NANOS)))
    }

    /// The latest tick the clock has reached at `now`.
    fn tick_now(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        since
            .as_secs()
            .saturating_mul(TICKS_PER_SEC)
            .saturating_add(u64::from(since.subsec_nanos() / TICK_NANOS))
    }

    fn instant_of(&self, tick: u64) -> Instant {
        let at = Duration::new(
            tick / TICKS_PER_SEC,
            (tick % TICKS_PER_SEC) as u32 * TICK_NANOS,
        );
        self.origin
            .checked_add(at)
            .unwrap_or_else(|| self.origin + Duration::from_secs(86_400 * 365 * 30))
    }

    /// Arms a timer that hands `task` to the waker of [`Timers::fire`] once `deadline` passes.
    pub(crate) fn arm(&mut self, deadline: Instant, task: TaskRef) -> TimerKey {
        let tick = self.tick_at(deadline).max(self.next_tick);
        let generation = self.generation;
        self.generation += 1;
        let key = self.entries.insert(Entry {
            task,
            tick,
            generation,
            far: false,
        });
        self.place(key, tick, generation);
        TimerKey { key, generation }
    }

    fn place(&mut self, key: usize, tick: u64, generation: u64) {
        if tick - self.next_tick < SLOTS as u64 {
            let slot = (tick % SLOTS as u64) as usize;
            if self.slots.is_empty() {
                self.slots = (0..SLOTS).map(|_| Vec::new()).collect();
            }
            self.slots[slot].push(SlotRef { key, generation });
            self.occupied[slot / 64] |= 1 << (slot % 64);
        } else {
            self.far.insert((tick, generation), key);
            if let Some(entry) = self.entries.get_mut(key) {
                entry.far = true;
            }
        }
    }

    /// Disarms a timer; returns whether it was still armed (`false`: it fired already).
    pub(crate) fn cancel(&mut self, timer: TimerKey) -> bool {
        match self.entries.get(timer.key) {
            Some(entry) if entry.generation == timer.generation => {
                let entry = self.entries.remove(timer.key);
                if entry.far {
                    self.far.remove(&(entry.tick, entry.generation));
                }
                true
            }
            _ => false,
        }
    }

    /// Fires every timer due by `now`, handing its task to `wake`; returns when the next timer
    /// is due, if any.
    pub(crate) fn fire(&mut self, now: Instant, mut wake: impl FnMut(TaskRef)) -> Option<Instant> {
        let current = self.tick_now(now);
        loop {
            // Everything due in [next_tick, next_tick + SLOTS) is in the wheel now.
            self.pull_far();
            if self.next_tick > current || self.entries.is_empty() {
                break;
            }
            match self.next_occupied_tick() {
                Some(tick) if tick <= current => {
                    let slot = (tick % SLOTS as u64) as usize;
                    let mut refs = std::mem::take(&mut self.slots[slot]);
                    self.occupied[slot / 64] &= !(1 << (slot % 64));
                    for r in refs.drain(..) {
                        if self
                            .entries
                            .get(r.key)
                            .is_some_and(|e| e.generation == r.generation)
                        {
                            wake(self.entries.remove(r.key).task);
                        }
                    }
                    // Keep the slot's allocation for its next round.
                    self.slots[slot] = refs;
                    self.next_tick = tick + 1;
                }
                _ => {
                    // Nothing in the wheel is due by `current`. Far timers are due at
                    // `next_tick + SLOTS` or later: jump so the first enters the window, if due.
                    let far = self.far.first_key_value().map_or(u64::MAX, |(k, _)| k.0);
                    if far > current {
                        break;
                    }
                    // Wheel timers are all due after `current`, so still inside the new window.
                    self.next_tick = far + 1 - SLOTS as u64;
                }
            }
        }
        if self.next_tick <= current {
            self.next_tick = current + 1;
            self.pull_far();
        }
        self.next_deadline()
    }

    /// Moves far timers whose tick entered the wheel's window into their slots.
    fn pull_far(&mut self) {
        while let Some((&(tick, generation), &key)) = self.far.first_key_value() {
            if tick - self.next_tick.min(tick) >= SLOTS as u64 {
                break;
            }
            self.far.pop_first();
            let tick = tick.max(self.next_tick);
            if let Some(entry) = self.entries.get_mut(key) {
                entry.tick = tick;
                entry.far = false;
            }
            self.place(key, tick, generation);
        }
    }

    /// The first tick at or after `next_tick` whose slot holds references.
    fn next_occupied_tick(&self) -> Option<u64> {
        let start = (self.next_tick % SLOTS as u64) as usize;
        for step in 0..=WORDS {
            let word = (start / 64 + step) % WORDS;
            let mut bits = self.occupied[word];
            if step == 0 {
                bits &= !0u64 << (start % 64);
            } else if step == WORDS {
                bits &= !(!0u64 << (start % 64));
            }
            if bits != 0 {
                let slot = word * 64 + bits.trailing_zeros() as usize;
                let ahead = (slot + SLOTS - start) % SLOTS;
                return Some(self.next_tick + ahead as u64);
            }
        }
        None
    }

    /// When the next timer is due (possibly a cancelled one's slot: an early return is only a
    /// spurious wake of the worker).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.entries.is_empty() {
            return None;
        }
        let wheel = self.next_occupied_tick();
        let far = self.far.first_key_value().map(|(k, _)| k.0);
        let tick = match (wheel, far) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(self.instant_of(tick))
    }

    /// Removes every timer (shutdown).
    pub(crate) fn clear(&mut self) -> Vec<TaskRef> {
        for slot in self.slots.iter_mut() {
            slot.clear();
        }
        self.occupied = [0; WORDS];
        self.far.clear();
        self.entries.drain().map(|e| e.task).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::task::TaskCell;
    use std::sync::Arc;

    fn task(id: u64) -> TaskRef {
        Arc::new(TaskCell::new(id, || ()))
    }

    fn ids(v: &[TaskRef]) -> Vec<u64> {
        let mut ids: Vec<u64> = v.iter().map(|t| t.header().id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn fires_in_deadline_order_never_early() {
        let mut t = Timers::new();
        let o = t.origin;
        let ms = Duration::from_millis;
        t.arm(o + ms(5), task(5));
        let us = Duration::from_micros;
        t.arm(o + ms(1) + us(300), task(2)); // tick 6: 1.5 ms
        t.arm(o + ms(3000), task(3000)); // beyond the wheel
        t.arm(o + ms(1024), task(1024)); // exactly the horizon
        let mut fired = Vec::new();
        assert_eq!(
            t.fire(o + ms(1), |x| fired.push(x)),
            Some(o + ms(1) + us(500))
        );
        assert!(fired.is_empty());
        // Never early, even inside the tick that holds the deadline.
        assert_eq!(
            t.fire(o + ms(1) + us(299), |x| fired.push(x)),
            Some(o + ms(1) + us(500))
        );
        assert!(fired.is_empty());
        assert_eq!(
            t.fire(o + ms(1) + us(500), |x| fired.push(x)),
            Some(o + ms(5))
        );
        assert_eq!(ids(&fired), vec![2]);
        fired.clear();
        assert_eq!(t.fire(o + ms(1023), |x| fired.push(x)), Some(o + ms(1024)));
        assert_eq!(ids(&fired), vec![5]);
        fired.clear();
        assert_eq!(t.fire(o + ms(2999), |x| fired.push(x)), Some(o + ms(3000)));
        assert_eq!(ids(&fired), vec![1024]);
        fired.clear();
        assert_eq!(t.fire(o + ms(3000), |x| fired.push(x)), None);
        assert_eq!(ids(&fired), vec![3000]);
        assert!(t.is_empty());
    }

    #[test]
    fn cancelled_timers_never_fire_and_report_whether_armed() {
        let mut t = Timers::new();
        let o = t.origin;
        let ms = Duration::from_millis;
        let near = t.arm(o + ms(10), task(1));
        let far = t.arm(o + ms(5000), task(2));
        let kept = t.arm(o + ms(10), task(3));
        assert!(t.cancel(near));
        assert!(!t.cancel(near));
        assert!(t.cancel(far));
        let mut fired = Vec::new();
        assert_eq!(t.fire(o + ms(6000), |x| fired.push(x)), None);
        assert_eq!(ids(&fired), vec![3]);
        assert!(!t.cancel(kept), "a fired timer is no longer armed");
        assert!(t.is_empty());
    }

    /// A slot reused by a later round holds only that round's timers; a stale reference left by
    /// a cancelled timer is skipped even after its key was reused.
    #[test]
    fn wraparound_and_key_reuse() {
        let mut t = Timers::new();
        let o = t.origin;
        let ms = Duration::from_millis;
        let mut fired = Vec::new();
        let a = t.arm(o + ms(7), task(1));
        assert!(t.cancel(a));
        let b = t.arm(o + ms(7 + 1024), task(2)); // same slot, far at first; may reuse a's key
        t.fire(o + ms(8), |x| fired.push(x));
        assert!(fired.is_empty());
        t.fire(o + ms(1030), |x| fired.push(x));
        assert!(fired.is_empty());
        t.fire(o + ms(1031), |x| fired.push(x));
        assert_eq!(ids(&fired), vec![2]);
        assert!(!t.cancel(b));
        // Randomised against a model: every armed, uncancelled timer fires exactly once, at or
        // after its deadline.
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut t = Timers::new();
        let o = t.origin;
        let mut armed: Vec<(TimerKey, u64, u64)> = Vec::new(); // key, id, deadline ms
        let mut deadline_of = std::collections::HashMap::new();
        let mut cancelled = std::collections::HashSet::new();
        let mut now = 0u64;
        let mut fired = Vec::new();
        for id in 0..5000u64 {
            let deadline = now + next() % 3000;
            let key = t.arm(o + ms(deadline), task(id));
            armed.push((key, id, deadline));
            deadline_of.insert(id, deadline);
            if next() % 4 == 0 {
                let i = (next() % armed.len() as u64) as usize;
                let (k, id, _) = armed.swap_remove(i);
                if t.cancel(k) {
                    cancelled.insert(id);
                }
            }
            if next() % 8 == 0 {
                now += next() % 50;
                t.fire(o + ms(now), |x| fired.push((x.header().id, now)));
            }
        }
        now += 4000;
        t.fire(o + ms(now), |x| fired.push((x.header().id, now)));
        let mut got: Vec<u64> = fired.iter().map(|(id, _)| *id).collect();
        got.sort_unstable();
        let expected: Vec<u64> = (0..5000).filter(|id| !cancelled.contains(id)).collect();
        assert!(
            cancelled.len() > 100,
            "the model cancels armed timers: {}",
            cancelled.len()
        );
        assert!(
            got == expected,
            "fired {} timers, expected {}",
            got.len(),
            expected.len()
        );
        for (id, at) in fired {
            assert!(
                at >= deadline_of[&id],
                "timer {id} fired at {at} before its deadline"
            );
        }
        assert!(t.is_empty());
    }
}
