//! The report's rows: what each benchmark measures, in the report's words, and the targets.

/// One line of the table and one bar of the chart.
#[derive(Debug, Clone)]
pub struct Row {
    /// Criterion's full id (`ffi/mode_switch`), or `go/...` for the Go figures: the sort key.
    pub id: String,
    /// What the table and the chart call it.
    pub label: String,
    /// What it measures.
    pub what: String,
    /// Median, in nanoseconds per iteration; `None` if not measured in this run.
    pub median: Option<f64>,
    /// The spread around the median: criterion's 95% confidence interval of the median, or the
    /// fastest and slowest round of the Go benchmark (see `spread_note`).
    pub spread: Option<(f64, f64)>,
    /// Said after the spread, for figures that are not criterion's confidence interval.
    pub spread_note: &'static str,
    /// Instructions per call counted by callgrind, where measured.
    pub instructions: Option<f64>,
}

impl Row {
    /// A row for a benchmark id, described from [`DESCRIPTIONS`].
    pub fn new(id: &str) -> Row {
        let label = if id.starts_with("go/") {
            describe(id).0.to_string()
        } else {
            format!("`{id}`")
        };
        Row {
            id: id.to_string(),
            label,
            what: describe(id).1.to_string(),
            median: None,
            spread: None,
            spread_note: "",
            instructions: None,
        }
    }

    /// The label without Markdown code marks, for the chart.
    pub fn plain_label(&self) -> String {
        self.label.replace('`', "")
    }

    /// Where the row sorts: the order of [`DESCRIPTIONS`], unknown ids last.
    pub fn rank(&self) -> usize {
        DESCRIPTIONS
            .iter()
            .position(|(id, _, _)| *id == self.id)
            .unwrap_or(usize::MAX)
    }

    /// The row's target, if it has one.
    pub fn target(&self) -> Option<&'static Target> {
        TARGETS
            .iter()
            .find(|(id, _)| *id == self.id)
            .map(|(_, t)| t)
    }
}

/// `(label, description)` of a benchmark id; the label is only used for the Go rows.
fn describe(id: &str) -> (&'static str, &'static str) {
    DESCRIPTIONS
        .iter()
        .find(|(i, _, _)| *i == id)
        .map_or(("", ""), |(_, label, what)| (label, what))
}

/// The report's order: `(id, label for non-criterion rows, what it measures)`.
pub const DESCRIPTIONS: &[(&str, &str, &str)] = &[
    (
        "raw/resume_yield_round_trip",
        "",
        "raw coroutine: resume + suspend round trip",
    ),
    (
        "sched/yield_now",
        "",
        "scheduler: yield_now, one coroutine on its worker",
    ),
    (
        "sched/yield_now_two_coroutines",
        "",
        "scheduler: two coroutines yielding to each other (per pair of switches)",
    ),
    (
        "sched/spawn_join_1_workers",
        "",
        "scheduler: spawn + join, warm pool, 1 worker",
    ),
    (
        "sched/spawn_join_2_workers",
        "",
        "scheduler: spawn + join, warm pool, 2 workers",
    ),
    (
        "sched/wake_compacted",
        "",
        "compacted coroutine parked in recv (~1 KiB of live stack): wake (send, restore) and run to its end",
    ),
    (
        "sched/wake_parked",
        "",
        "the same, not compacted (default budget): the baseline of the row above",
    ),
    (
        "channel/pingpong_1_worker",
        "",
        "channels: ping-pong of two coroutines over two rendezvous channels, one worker (per round trip)",
    ),
    (
        "channel/pingpong_2_workers",
        "",
        "channels: the same ping-pong across two workers (per round trip)",
    ),
    (
        "channel/crossbeam_pingpong_threads",
        "",
        "peer: crossbeam-channel ping-pong between two OS threads, rendezvous channels (per round trip)",
    ),
    (
        "channel/bounded_1024_spsc",
        "",
        "channels: bounded(1024), one producer and one consumer coroutine (per message)",
    ),
    (
        "channel/crossbeam_bounded_1024_spsc",
        "",
        "peer: crossbeam-channel bounded(1024) between two OS threads (per message)",
    ),
    (
        "sync/mutex_uncontended",
        "",
        "sync: uncontended `Mutex::lock` + unlock",
    ),
    (
        "dump/parked_100k",
        "",
        "dumps: `pagurus::dump()` of 100,000 parked coroutines, text written to a sink",
    ),
    (
        "sync/std_mutex_uncontended",
        "",
        "peer: uncontended `std::sync::Mutex` lock + unlock",
    ),
    (
        "time/sleep_fanout_wall",
        "",
        "timers: 10,000 coroutines on 2 workers, each sleeping 1 ms ten times: wall time of the run",
    ),
    (
        "time/sleep_cpu_per_sleep",
        "",
        "timers: the same fan-out, process CPU time (user + system) per sleep",
    ),
    (
        "growth/chain_1m_fault",
        "",
        "growth: recursion from a 4 KiB stack down to 1 MiB, growing on faults",
    ),
    (
        "growth/chain_1m_pregrown",
        "",
        "growth: the same 1 MiB recursion on a stack grown beforehand",
    ),
    (
        "growth/chain_16m_fault",
        "",
        "growth: recursion from a 4 KiB stack down to 16 MiB, growing on faults",
    ),
    (
        "growth/chain_16m_pregrown",
        "",
        "growth: the same 16 MiB recursion on a stack grown beforehand",
    ),
    (
        "growth/grow_4k_to_8k_fault",
        "",
        "growth: one doubling, 4 KiB to 8 KiB, by a fault",
    ),
    (
        "growth/grow_4k_to_8k_ensure",
        "",
        "growth: one doubling, 4 KiB to 8 KiB, by `stack::ensure`",
    ),
    (
        "growth/ensure_no_growth",
        "",
        "growth: `stack::ensure` with enough headroom (the check alone)",
    ),
    (
        "ffi/direct_rust_to_c",
        "",
        "FFI baseline: plain `extern \"C\"` call of C `add` from a coroutine, no wrapper",
    ),
    (
        "ffi/mode_switch",
        "",
        "FFI: C `add` through a `foreign!` wrapper, Switch mode (on the system stack; the default)",
    ),
    (
        "ffi/mode_direct",
        "",
        "FFI: C `add` through a `foreign!` wrapper, Direct mode (on the coroutine stack)",
    ),
    (
        "ffi/mode_reserve",
        "",
        "FFI: C `add` through a `foreign!` wrapper, Reserve 64 KiB mode, headroom already there",
    ),
    (
        "ffi/mode_offload",
        "",
        "FFI: C `add` through a `foreign!` wrapper, Offload mode (a pool thread; the coroutine parks)",
    ),
    (
        "ffi/call_with_switch",
        "",
        "FFI: C `add` through `call_with(Mode::Switch, ..)` (mode named: no default-mode lookup)",
    ),
    (
        "ffi/call_with_direct",
        "",
        "FFI: C `add` through `call_with(Mode::Direct, ..)`",
    ),
    (
        "ffi/call_with_reserve",
        "",
        "FFI: C `add` through `call_with(Mode::Reserve { 64 KiB }, ..)`, headroom already there",
    ),
    (
        "ffi/callback_switch",
        "",
        "FFI: C->Rust callback round trip (`pf_callback` calls a Rust `extern \"C\" fn`), Switch mode",
    ),
    (
        "ffi/callback_direct",
        "",
        "FFI: C->Rust callback round trip, Direct mode",
    ),
    (
        "go/spawn_wait_1p",
        "Go: spawn + wait, 1 P",
        "Go: `go f()` + `WaitGroup.Wait`, one goroutine at a time, GOMAXPROCS=1",
    ),
    (
        "go/spawn_wait_2p",
        "Go: spawn + wait, 2 Ps",
        "Go: `go f()` + `WaitGroup.Wait`, one goroutine at a time, GOMAXPROCS=2",
    ),
    (
        "go/gosched",
        "Go: Gosched",
        "Go: `runtime.Gosched()`, one goroutine, GOMAXPROCS=1",
    ),
    (
        "go/chan_pingpong_1p",
        "Go: chan ping-pong, 1 P",
        "Go: ping-pong of two goroutines over two unbuffered channels, GOMAXPROCS=1 (per round trip)",
    ),
    (
        "go/chan_pingpong_2p",
        "Go: chan ping-pong, 2 Ps",
        "Go: the same ping-pong, GOMAXPROCS=2 (per round trip)",
    ),
    (
        "go/chan_buffered_1024",
        "Go: chan 1024 SPSC",
        "Go: `make(chan int, 1024)`, one producer and one consumer goroutine, GOMAXPROCS=2 (per message)",
    ),
    (
        "go/mutex_uncontended",
        "Go: sync.Mutex",
        "Go: uncontended `sync.Mutex` Lock + Unlock",
    ),
    (
        "go/sleep_fanout_wall",
        "Go: Sleep fan-out, wall",
        "Go: 10,000 goroutines each doing `time.Sleep(1ms)` ten times, GOMAXPROCS=2: wall time of the run",
    ),
    (
        "go/sleep_cpu_per_sleep",
        "Go: Sleep fan-out, CPU/sleep",
        "Go: the same fan-out, process CPU time (getrusage user + system) per sleep",
    ),
    (
        "go/growth_1m_fresh",
        "Go: growth 2 KiB -> 1 MiB",
        "Go: the same pointer-chain recursion down to 1 MiB in a new goroutine (2 KiB stack) per iteration",
    ),
    (
        "go/growth_1m_steady",
        "Go: 1 MiB recursion, grown",
        "Go: the same 1 MiB recursion again in a goroutine whose stack has grown already",
    ),
    (
        "go/growth_16m_fresh",
        "Go: growth 2 KiB -> 16 MiB",
        "Go: the same pointer-chain recursion down to 16 MiB in a new goroutine per iteration",
    ),
    (
        "go/growth_16m_steady",
        "Go: 16 MiB recursion, grown",
        "Go: the same 16 MiB recursion again in a goroutine whose stack has grown already",
    ),
    (
        "go/plain_call",
        "Go: plain call",
        "Go baseline: a plain (noinline) Go function call",
    ),
    (
        "go/cgo_call",
        "Go cgo: call",
        "Go cgo: the same C `add`, called from Go",
    ),
    (
        "go/cgo_callback",
        "Go cgo: C->Go callback",
        "Go cgo: C->Go callback round trip (Go -> C -> Go -> C -> Go)",
    ),
    (
        "go/failed",
        "Go",
        "a Go benchmark failed: its figures are not measured (the reason is under the table)",
    ),
    (
        "go/missing",
        "Go",
        "Go toolchain not found: Go figures not measured",
    ),
];

/// The criterion ids of the foreign-call benchmarks (the Go and callgrind steps run when the
/// filter selects one of them).
pub const FFI_IDS: &[&str] = &[
    "ffi/direct_rust_to_c",
    "ffi/mode_switch",
    "ffi/mode_direct",
    "ffi/mode_reserve",
    "ffi/mode_offload",
    "ffi/call_with_switch",
    "ffi/call_with_direct",
    "ffi/call_with_reserve",
    "ffi/callback_switch",
    "ffi/callback_direct",
];

/// One condition of a target; a target is met when all of its conditions are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cond {
    /// The median is at most this many ns.
    AtMost(f64),
    /// The median is at most `k` times another row's median in the same run.
    Times(f64, &'static str),
    /// The median is at most another row's median in the same run plus this many ns.
    Plus(&'static str, f64),
}

/// What a row is compared with.
#[derive(Debug)]
pub struct Target {
    /// Every condition must hold; empty for a reference figure that is not a goal.
    pub conds: &'static [Cond],
    /// The target as the table says it.
    pub text: &'static str,
}

/// Targets from the issues (8 and 11); a `Times` or `Plus` target is evaluated from the other
/// row measured in the same run.
pub const TARGETS: &[(&str, Target)] = &[
    (
        "raw/resume_yield_round_trip",
        Target {
            conds: &[Cond::AtMost(5.0)],
            text: "≤ 5 ns (corosensei: 3.6 ns)",
        },
    ),
    (
        "sched/yield_now",
        Target {
            conds: &[Cond::AtMost(20.0)],
            text: "≤ 20 ns",
        },
    ),
    (
        "sched/wake_compacted",
        Target {
            conds: &[Cond::AtMost(1000.0)],
            text: "≤ 1 µs",
        },
    ),
    (
        "sched/spawn_join_1_workers",
        Target {
            conds: &[Cond::AtMost(150.0), Cond::Times(1.0, "go/spawn_wait_1p")],
            text: "≤ 150 ns and ≤ Go's spawn + wait (1 P)",
        },
    ),
    (
        "sched/spawn_join_2_workers",
        Target {
            conds: &[Cond::AtMost(150.0), Cond::Times(1.0, "go/spawn_wait_2p")],
            text: "≤ 150 ns and ≤ Go's spawn + wait (2 Ps)",
        },
    ),
    (
        "channel/pingpong_1_worker",
        Target {
            conds: &[Cond::AtMost(80.0)],
            text: "≤ 80 ns",
        },
    ),
    (
        "channel/pingpong_2_workers",
        Target {
            conds: &[Cond::Times(1.0, "channel/crossbeam_pingpong_threads")],
            text: "≤ crossbeam's thread ping-pong",
        },
    ),
    (
        "dump/parked_100k",
        Target {
            conds: &[Cond::AtMost(1e9)],
            text: "≤ 1 s",
        },
    ),
    (
        "sync/mutex_uncontended",
        Target {
            conds: &[Cond::Times(1.2, "sync/std_mutex_uncontended")],
            text: "≤ 1.2x `std::sync::Mutex`",
        },
    ),
    (
        "time/sleep_fanout_wall",
        Target {
            conds: &[Cond::AtMost(20e6)],
            text: "≤ 20 ms",
        },
    ),
    (
        "time/sleep_cpu_per_sleep",
        Target {
            conds: &[Cond::AtMost(300.0)],
            text: "≤ 300 ns",
        },
    ),
    (
        "growth/chain_1m_fault",
        Target {
            conds: &[Cond::Times(0.75, "go/growth_1m_fresh")],
            text: "≤ 0.75x Go's 2 KiB -> 1 MiB",
        },
    ),
    (
        "growth/chain_16m_fault",
        Target {
            conds: &[Cond::Times(1.0, "go/growth_16m_fresh")],
            text: "≤ Go's 2 KiB -> 16 MiB",
        },
    ),
    (
        "growth/grow_4k_to_8k_fault",
        Target {
            conds: &[],
            text: "reference: a SIGSEGV round trip ~2.6 µs",
        },
    ),
    (
        "growth/ensure_no_growth",
        Target {
            conds: &[Cond::AtMost(2.0)],
            text: "≤ 2 ns",
        },
    ),
    (
        "ffi/direct_rust_to_c",
        Target {
            conds: &[],
            text: "baseline",
        },
    ),
    (
        "ffi/mode_switch",
        Target {
            conds: &[Cond::AtMost(3.0), Cond::Plus("ffi/direct_rust_to_c", 2.0)],
            text: "≤ 3 ns and ≤ the plain call + 2 ns",
        },
    ),
    (
        "ffi/mode_reserve",
        Target {
            conds: &[Cond::AtMost(2.5)],
            text: "≤ 2.5 ns",
        },
    ),
    (
        "ffi/call_with_switch",
        Target {
            conds: &[Cond::AtMost(3.0), Cond::Plus("ffi/direct_rust_to_c", 2.0)],
            text: "≤ 3 ns and ≤ the plain call + 2 ns",
        },
    ),
    (
        "ffi/call_with_reserve",
        Target {
            conds: &[Cond::AtMost(2.5)],
            text: "≤ 2.5 ns",
        },
    ),
    (
        "ffi/callback_switch",
        Target {
            conds: &[Cond::AtMost(10.0)],
            text: "≤ 10 ns",
        },
    ),
];

/// The peers a row is compared with (the fastest measured one is its "best peer").
pub const PEERS: &[(&str, &[&str])] = &[
    ("sched/yield_now", &["go/gosched"]),
    ("sched/yield_now_two_coroutines", &["go/chan_pingpong_1p"]),
    ("sched/spawn_join_1_workers", &["go/spawn_wait_1p"]),
    ("sched/spawn_join_2_workers", &["go/spawn_wait_2p"]),
    ("channel/pingpong_1_worker", &["go/chan_pingpong_1p"]),
    (
        "channel/pingpong_2_workers",
        &["channel/crossbeam_pingpong_threads", "go/chan_pingpong_2p"],
    ),
    (
        "channel/bounded_1024_spsc",
        &[
            "channel/crossbeam_bounded_1024_spsc",
            "go/chan_buffered_1024",
        ],
    ),
    (
        "sync/mutex_uncontended",
        &["sync/std_mutex_uncontended", "go/mutex_uncontended"],
    ),
    ("time/sleep_fanout_wall", &["go/sleep_fanout_wall"]),
    ("time/sleep_cpu_per_sleep", &["go/sleep_cpu_per_sleep"]),
    ("growth/chain_1m_fault", &["go/growth_1m_fresh"]),
    ("growth/chain_1m_pregrown", &["go/growth_1m_steady"]),
    ("growth/chain_16m_fault", &["go/growth_16m_fresh"]),
    ("growth/chain_16m_pregrown", &["go/growth_16m_steady"]),
    ("ffi/direct_rust_to_c", &["go/plain_call"]),
    ("ffi/mode_switch", &["go/cgo_call"]),
    ("ffi/mode_direct", &["go/cgo_call"]),
    ("ffi/mode_reserve", &["go/cgo_call"]),
    ("ffi/call_with_switch", &["go/cgo_call"]),
    ("ffi/call_with_direct", &["go/cgo_call"]),
    ("ffi/call_with_reserve", &["go/cgo_call"]),
    ("ffi/callback_switch", &["go/cgo_callback"]),
    ("ffi/callback_direct", &["go/cgo_callback"]),
];

/// The peers of a row id (none for the peers themselves).
pub fn peers(id: &str) -> &'static [&'static str] {
    PEERS.iter().find(|(i, _)| *i == id).map_or(&[], |(_, p)| p)
}

/// Whether row `id` is compared with row `other`: a peer of it, or named by its target.
pub fn refers_to(id: &str, other: &str) -> bool {
    let in_target = TARGETS.iter().any(|(i, t)| {
        *i == id
            && t.conds.iter().any(|c| match c {
                Cond::AtMost(_) => false,
                Cond::Times(_, o) | Cond::Plus(o, _) => *o == other,
            })
    });
    in_target || peers(id).contains(&other)
}

/// Whether a row id is a criterion benchmark of ours (as opposed to a Go figure or a marker).
pub fn is_criterion(id: &str) -> bool {
    !id.starts_with("go/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_and_peer_names_a_described_row() {
        let known = |id: &str| DESCRIPTIONS.iter().any(|(i, _, _)| *i == id);
        for (id, target) in TARGETS {
            assert!(known(id), "target for unknown row {id}");
            for cond in target.conds {
                if let Cond::Times(_, other) | Cond::Plus(other, _) = cond {
                    assert!(known(other), "{id}: target relative to unknown row {other}");
                }
            }
        }
        for (id, peers) in PEERS {
            assert!(known(id), "peers of unknown row {id}");
            for p in *peers {
                assert!(known(p), "{id}: unknown peer {p}");
            }
        }
        // Go rows have labels; criterion rows are labelled by their id.
        for (id, label, _) in DESCRIPTIONS {
            assert_eq!(is_criterion(id), label.is_empty(), "{id}");
        }
    }
}
