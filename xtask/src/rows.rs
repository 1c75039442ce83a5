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
const DESCRIPTIONS: &[(&str, &str, &str)] = &[
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
        "Go cgo",
        "the Go benchmark failed: Go figures not measured (the reason is under the table)",
    ),
    (
        "go/missing",
        "Go cgo",
        "Go toolchain not found on PATH: Go figures not measured",
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

/// What a row is compared with.
#[derive(Debug)]
pub struct Target {
    /// The median must not exceed this (ns), if it is a goal rather than a reference figure.
    pub limit_ns: Option<f64>,
    /// The target as the table says it.
    pub text: &'static str,
}

/// Targets from the issue, and Go's figures on the reference machine.
const TARGETS: &[(&str, Target)] = &[
    (
        "raw/resume_yield_round_trip",
        Target {
            limit_ns: Some(5.0),
            text: "≤ 5 ns (corosensei: 3.6 ns)",
        },
    ),
    (
        "sched/yield_now",
        Target {
            limit_ns: Some(20.0),
            text: "≤ 20 ns (Go Gosched: 49.5 ns)",
        },
    ),
    (
        "sched/yield_now_two_coroutines",
        Target {
            limit_ns: None,
            text: "Go channel ping-pong: 224 ns per round trip",
        },
    ),
    (
        "sched/spawn_join_1_workers",
        Target {
            limit_ns: Some(150.0),
            text: "≤ 150 ns (Go spawn+run+wait: 177-259 ns)",
        },
    ),
    (
        "sched/spawn_join_2_workers",
        Target {
            limit_ns: Some(150.0),
            text: "≤ 150 ns",
        },
    ),
    (
        "growth/chain_1m_fault",
        Target {
            limit_ns: Some(343_000.0),
            text: "≤ 343 µs (Go, 2 KiB -> 1 MiB)",
        },
    ),
    (
        "growth/chain_16m_fault",
        Target {
            limit_ns: None,
            text: "Go, 13 doublings to 16 MiB: 7.5 ms",
        },
    ),
    (
        "growth/grow_4k_to_8k_fault",
        Target {
            limit_ns: None,
            text: "a SIGSEGV round trip: ~2.6 µs",
        },
    ),
    (
        "growth/ensure_no_growth",
        Target {
            limit_ns: Some(2.0),
            text: "≤ 2 ns",
        },
    ),
    (
        "ffi/direct_rust_to_c",
        Target {
            limit_ns: None,
            text: "baseline (a plain Go call: 1.4 ns on the reference machine)",
        },
    ),
    (
        "ffi/mode_switch",
        Target {
            limit_ns: Some(3.0),
            text: "≤ 3 ns (Go cgo: ~36 ns)",
        },
    ),
    (
        "ffi/mode_reserve",
        Target {
            limit_ns: Some(2.5),
            text: "≤ 2.5 ns",
        },
    ),
    (
        "ffi/call_with_switch",
        Target {
            limit_ns: Some(3.0),
            text: "≤ 3 ns",
        },
    ),
    (
        "ffi/call_with_reserve",
        Target {
            limit_ns: Some(2.5),
            text: "≤ 2.5 ns",
        },
    ),
    (
        "ffi/callback_switch",
        Target {
            limit_ns: Some(10.0),
            text: "≤ 10 ns (Go cgo: ~92 ns)",
        },
    ),
    (
        "go/plain_call",
        Target {
            limit_ns: None,
            text: "reference machine: 1.4 ns",
        },
    ),
    (
        "go/cgo_call",
        Target {
            limit_ns: None,
            text: "reference machine: ~36 ns",
        },
    ),
    (
        "go/cgo_callback",
        Target {
            limit_ns: None,
            text: "reference machine: ~92 ns",
        },
    ),
];
