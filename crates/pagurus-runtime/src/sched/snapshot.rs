//! Taking a coroutine dump: every worker copies its own bookkeeping (see design.md, "Coroutine
//! dumps").
//!
//! [`dump`] sends a [`Ticket`] to every worker and `block_on` thread of every live runtime (the
//! process-wide [`TARGETS`] list) and waits, parked, until each has answered or
//! [`PATIENCE`] has passed. A worker answers from its scheduler loop ([`answer`]), where none of
//! its coroutines runs: it is the only thread that resumes, moves or frees their stacks, so
//! while it answers every stack it owns stands still. It copies each live coroutine's header
//! fields and walks each suspended stack with the CFI walker, keeping only the return
//! addresses; the dumping thread then names them (`dump::symbolize`) without touching any
//! stack.

use std::ops::ControlFlow;
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use slab::Slab;

use super::park::{Parked, Unparker, WaitReason, defer_cancel, park_until};
use super::task::Header;
use super::task::TaskRef;
use super::worker::{Msg, WorkerCore, WorkerHandle};
use crate::dump::{CoroutineState, Dump, Raw, RawCoroutine, SpawnSite, StackInfo};
use crate::grow::frames::{self, Bounds, Regs};

/// How long a dump waits for a worker busy in a coroutine that does not suspend.
const PATIENCE: Duration = Duration::from_secs(1);

/// Frames kept per coroutine (deep recursion would otherwise fill the dump).
const MAX_DUMP_FRAMES: usize = 128;

/// Every worker and `block_on` thread that may own coroutines, with its worker index.
static TARGETS: Mutex<Vec<(Weak<WorkerHandle>, Option<usize>)>> = Mutex::new(Vec::new());

/// Spawn-site counts of finished coroutines whose worker is gone.
static RETIRED_SITES: Mutex<Vec<SpawnSite>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update of these lists is complete before anything can panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lists a worker (`index`) or a `block_on` thread (`None`) as a target of dumps, until its
/// handle is dropped.
pub(crate) fn register(handle: &Arc<WorkerHandle>, index: Option<usize>) {
    let mut targets = lock(&TARGETS);
    targets.retain(|(t, _)| t.strong_count() > 0);
    targets.push((Arc::downgrade(handle), index));
}

/// One dump request, shared by its tickets.
struct Request {
    parts: Mutex<Parts>,
    /// Tickets not yet answered or dropped.
    remaining: AtomicUsize,
    waiter: Unparker,
    /// The coroutine taking the dump, reported as running.
    dumper: Option<u64>,
}

#[derive(Default)]
struct Parts {
    raw: Raw,
    /// Which tickets have been answered or dropped.
    done: Vec<bool>,
}

/// A worker's part of a dump request: answered with [`answer`], or dropped (the worker is gone),
/// which counts as an empty answer.
pub(crate) struct Ticket {
    request: Arc<Request>,
    number: usize,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut parts = lock(&self.request.parts);
        if let Some(done) = parts.done.get_mut(self.number) {
            *done = true;
        }
        drop(parts);
        if self.request.remaining.fetch_sub(1, AcqRel) == 1 {
            self.request.waiter.unpark();
        }
    }
}

/// Per spawn site, what this worker's finished coroutines did to their stacks. Owned by one
/// worker (or `block_on` thread); folded into [`RETIRED_SITES`] when it goes.
#[derive(Default)]
pub(crate) struct SiteTable {
    sites: Vec<SpawnSite>,
    /// The index of the last site counted: most programs finish runs of coroutines from one
    /// site, so most counts are one pointer compare.
    last: usize,
}

impl SiteTable {
    /// Counts a finished coroutine.
    #[inline]
    pub(crate) fn finished(&mut self, task: &TaskRef) {
        let header = task.header();
        let at = header.spawned_at;
        let site = match self.sites.get_mut(self.last) {
            Some(s) if std::ptr::eq(s.location, at) => s,
            _ => self.find(at),
        };
        site.spawned += 1;
        let growths = header.ctx.growths();
        if growths != 0 {
            site.growths += growths;
            site.bytes_copied += header.ctx.bytes_copied();
        }
    }

    /// The entry of `at`, made if new, and remembered as the last one.
    #[cold]
    fn find(&mut self, at: &'static Location<'static>) -> &mut SpawnSite {
        let i = match self.sites.iter().position(|s| *s.location == *at) {
            Some(i) => i,
            None => {
                self.sites.push(SpawnSite {
                    location: at,
                    spawned: 0,
                    growths: 0,
                    bytes_copied: 0,
                });
                self.sites.len() - 1
            }
        };
        self.last = i;
        &mut self.sites[i]
    }
}

impl Drop for SiteTable {
    fn drop(&mut self) {
        if self.sites.is_empty() {
            return;
        }
        let mut retired = Raw {
            sites: std::mem::take(&mut *lock(&RETIRED_SITES)),
            ..Raw::default()
        };
        for site in self.sites.drain(..) {
            retired.add_site(site);
        }
        *lock(&RETIRED_SITES) = retired.sites;
    }
}

impl WorkerCore {
    /// Answers a dump request (see [`answer`]).
    pub(super) fn answer_dump(&self, ticket: Ticket) {
        let (queued, more) = self.queued_for_dump();
        for ticket in std::iter::once(ticket).chain(more) {
            answer(
                self.index,
                &self.live.borrow(),
                &queued,
                &self.sites.borrow(),
                ticket,
            );
        }
    }
}

/// Gives a starting task its `tracing` span (`coroutine` at INFO, with its id and spawn site),
/// unless no subscriber wants it. Off the resume path: called once per task, and only when the
/// INFO level is enabled at all.
#[cold]
#[inline(never)]
pub(super) fn make_span(header: &Header) {
    let span = tracing::info_span!("coroutine", id = header.id, spawned_at = %header.spawned_at);
    if !span.is_disabled() {
        let _ = header.span.set(Box::new(span));
    }
}

/// A worker's answer: copies its bookkeeping and walks its suspended stacks. Called by the
/// worker itself from its scheduler loop, never while one of its coroutines runs: `live` holds
/// every coroutine it started, all of them suspended, and nothing else can move their stacks.
/// `queued` are the unstarted coroutines in its queues: listed as ready, not started, with no
/// worker (they are not pinned yet).
fn answer(
    index: Option<usize>,
    live: &Slab<TaskRef>,
    queued: &[TaskRef],
    sites: &SiteTable,
    ticket: Ticket,
) {
    let now = Instant::now();
    let mut raw = Raw::default();
    for site in &sites.sites {
        raw.add_site(*site);
    }
    for (_, task) in live {
        let header = task.header();
        if header.state.is_done() {
            continue;
        }
        let dumper = ticket.request.dumper == Some(header.id);
        let state = if dumper {
            CoroutineState::Running
        } else if header.state.is_parked() {
            // Every park records its reason first; a missing one would be a runtime bug, shown
            // as the most generic wait.
            let reason = WaitReason::from_u8(header.wait_reason.load(Relaxed));
            CoroutineState::Parked(reason.unwrap_or(WaitReason::Future))
        } else {
            CoroutineState::Ready
        };
        let parked_for = match (state, header.parked_since.get()) {
            (CoroutineState::Parked(_), 0) => {
                // Parked before stamps were on: from now on it counts as parked since this
                // dump (a lower bound, as Go's wait times are).
                header.parked_since.set(crate::dump::stamp(now));
                None
            }
            (CoroutineState::Parked(_), since) => Some(crate::dump::since(since, now)),
            _ => None,
        };
        let ctx = &header.ctx;
        let span = ctx.span();
        let start = raw.pcs.len();
        let mut used = 0;
        let pcs = &mut raw.pcs;
        // Walks a suspended stack from its saved stack pointer, keeping the return addresses.
        let mut walk = |span: crate::stack::Span, sp: usize| {
            if !(span.bottom..span.top).contains(&sp) {
                return;
            }
            // SAFETY: the coroutine is suspended (this worker runs none of its coroutines now),
            // so `sp` is its saved stack pointer with the switch's frame above it (or the same
            // place in a scratch copy of its stack).
            let regs = unsafe { Regs::suspended(sp) };
            let mut each = |frame: &frames::Frame, _: &Regs| {
                pcs.push(frame.pc);
                if pcs.len() - start >= MAX_DUMP_FRAMES {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            // SAFETY: [bottom, top) of a coroutine's stack (or of the scratch copy) is mapped and
            // readable, and only this thread could move or free it, which it does not do while
            // it walks. A failed walk keeps the frames found before the failure.
            let _ = unsafe {
                frames::walk(&regs, false, Bounds::new(span.bottom, span.top), &mut each)
            };
        };
        if dumper {
            // The caller of `dump`: reported as running, without frames.
        } else if let Some(span) = span {
            let sp = ctx.saved_sp();
            if (span.bottom..span.top).contains(&sp) {
                used = span.top - sp;
            }
            walk(span, sp);
        } else if let Some(image) = header.image.take() {
            // Compacted: its frames are in the heap image; walk a scratch copy.
            used = image.used();
            // SAFETY: the image came from `compact` of this context, which has not run since:
            // only this worker resumes it, and it is answering a dump now.
            unsafe { crate::grow::compact::with_scratch_copy(ctx, &image, &mut walk) };
            header.image.set(Some(image));
        }
        raw.add_site(SpawnSite {
            location: header.spawned_at,
            spawned: 1,
            growths: ctx.growths(),
            bytes_copied: ctx.bytes_copied(),
        });
        raw.coroutines.push(RawCoroutine {
            id: header.id,
            state,
            worker: index,
            spawned_at: header.spawned_at,
            parked_for,
            stack: StackInfo {
                size: span.map_or(0, |s| s.size()),
                used,
                growths: ctx.growths(),
                bytes_copied: ctx.bytes_copied(),
            },
            pcs: start..raw.pcs.len(),
            started: true,
        });
    }
    for task in queued {
        let header = task.header();
        if header.state.is_done() {
            continue;
        }
        raw.coroutines.push(RawCoroutine {
            id: header.id,
            state: CoroutineState::Ready,
            worker: None,
            spawned_at: header.spawned_at,
            parked_for: None,
            stack: StackInfo::default(),
            pcs: 0..0,
            started: false,
        });
    }
    raw.coroutines.sort_unstable_by_key(|c| c.id);
    let mut parts = lock(&ticket.request.parts);
    parts.raw.append(raw);
    drop(parts);
    drop(ticket);
}

/// A snapshot of every live coroutine of every runtime in the process, with a backtrace of each
/// suspended one.
///
/// Each worker copies its own coroutines' bookkeeping from its scheduler loop, between two
/// coroutines, and walks their suspended stacks (it is the only thread that moves or frees
/// them); the names are looked up afterwards on the calling thread. A coroutine that is
/// running is reported as [`Running`](crate::CoroutineState::Running), without frames (so is
/// the caller, if it is a coroutine). A worker busy in a coroutine that does not suspend for a
/// second is left out, and the dump says so ([`Dump::unanswered_workers`]). The first dump of a
/// process also starts time-stamping parks, so later dumps tell how long each coroutine waits.
///
/// Coroutines spawned but not started yet (queued, holding only their closure) are listed as
/// [`Ready`](crate::CoroutineState::Ready) with [`started`](crate::CoroutineSnapshot::started)
/// false, no worker, no stack and no frames. One that moves between two workers' queues while
/// they answer (a steal) may be missed.
///
/// May be called from a coroutine (it parks while the workers answer), a `block_on` thread, or
/// any other thread.
///
/// # Panics
///
/// Where no blocking pagurus call may run: on the system stack (inside a foreign call in
/// `Switch` mode, or `stack::on_system_stack`), or on a worker thread outside any coroutine.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// let rt = pagurus::Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(|| {
///     let (tx, rx) = pagurus::channel::bounded::<u32>(1);
///     let h = pagurus::spawn(move || rx.recv());
///     let parked = pagurus::CoroutineState::Parked(pagurus::WaitReason::Channel);
///     // Wait until a worker has started it and it parked.
///     let dump = loop {
///         let dump = pagurus::dump();
///         if dump.coroutines().iter().any(|c| c.id == h.id() && c.state == parked) {
///             break dump;
///         }
///         pagurus::time::sleep(std::time::Duration::from_millis(1));
///     };
///     assert!(dump.to_string().contains(&format!("coroutine {} [parked: channel", h.id())));
///     tx.send(1).unwrap();
///     assert_eq!(h.join().unwrap(), Ok(1));
/// });
/// ```
pub fn dump() -> Dump {
    crate::dump::enable_park_stamps();
    let raw = collect();
    crate::stack::on_system_stack(|| Dump::from_raw(raw))
}

/// Sends a ticket to every target and waits for the answers.
fn collect() -> Raw {
    let dumper = super::can_park()
        .then(super::current_task)
        .flatten()
        .map(|t| t.header().id);
    let targets: Vec<(Arc<WorkerHandle>, Option<usize>)> = {
        let mut targets = lock(&TARGETS);
        targets.retain(|(t, _)| t.strong_count() > 0);
        targets
            .iter()
            .filter_map(|(t, i)| Some((t.upgrade()?, *i)))
            .collect()
    };
    let request = Arc::new(Request {
        parts: Mutex::new(Parts {
            raw: Raw::default(),
            done: vec![false; targets.len()],
        }),
        remaining: AtomicUsize::new(targets.len() + 1),
        waiter: Unparker::current(),
        dumper,
    });
    // Sending may allocate and wake threads: more stack than a small coroutine has to spare.
    crate::stack::on_system_stack(|| {
        for (number, (target, _)) in targets.iter().enumerate() {
            let ticket = Ticket {
                request: request.clone(),
                number,
            };
            target.send(Msg::Dump(ticket));
        }
    });
    // The extra count is ours: the last ticket cannot wake us before we wait.
    request.remaining.fetch_sub(1, AcqRel);
    let deadline = Instant::now() + PATIENCE;
    while request.remaining.load(Acquire) > 0 && Instant::now() < deadline {
        if park_until(deadline, WaitReason::Channel) == Parked::Cancelled {
            // The runtime is shutting down: give up waiting, and let the caller's next park
            // report the cancellation.
            defer_cancel();
            break;
        }
    }
    let mut parts = lock(&request.parts);
    let mut raw = std::mem::take(&mut parts.raw);
    for (done, (_, index)) in parts.done.iter().zip(&targets) {
        if !done {
            raw.unanswered.push(*index);
        }
    }
    drop(parts);
    for site in lock(&RETIRED_SITES).iter() {
        raw.add_site(*site);
    }
    // A coroutine stolen between two answers is listed by both workers, and one that started
    // meanwhile may be listed unstarted by one of them: keep one entry, the started one.
    let started: std::collections::HashSet<u64> = raw
        .coroutines
        .iter()
        .filter(|c| c.started)
        .map(|c| c.id)
        .collect();
    let mut unstarted = std::collections::HashSet::new();
    raw.coroutines
        .retain(|c| c.started || (!started.contains(&c.id) && unstarted.insert(c.id)));
    raw
}
