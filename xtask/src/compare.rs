//! Each row against its target and its peers, from the medians of one run.

use crate::rows::{Cond, Row, Target, peers};

/// Whether a row meets its target.
#[derive(Debug, Clone, PartialEq)]
pub enum Met {
    /// The row has no target (or only a reference text).
    NoTarget,
    Yes,
    /// Missed: the median is `over` times the limit.
    No {
        over: f64,
    },
    /// Cannot say: the row, or a row its target refers to, was not measured (which, in words).
    Unknown(String),
}

/// A row's target evaluated in this run.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The limit in ns this run's figures give (the strictest condition that could be
    /// evaluated), if any.
    pub limit: Option<f64>,
    /// Whether the limit is relative to another row (so worth printing next to the text).
    pub relative: bool,
    pub met: Met,
}

/// Evaluates `target` for a row with `median`, looking other rows' medians up with `median_of`.
pub fn verdict(
    target: Option<&Target>,
    median: Option<f64>,
    median_of: &dyn Fn(&str) -> Option<f64>,
) -> Verdict {
    let Some(target) = target.filter(|t| !t.conds.is_empty()) else {
        return Verdict {
            limit: None,
            relative: false,
            met: Met::NoTarget,
        };
    };
    let mut limit: Option<f64> = None;
    let mut missing = Vec::new();
    let mut relative = false;
    let mut reference = |other: &'static str, f: &dyn Fn(f64) -> f64| {
        relative = true;
        let m = median_of(other);
        if m.is_none() {
            missing.push(other);
        }
        m.map(f)
    };
    for cond in target.conds {
        let this = match *cond {
            Cond::AtMost(ns) => Some(ns),
            Cond::Times(k, other) => reference(other, &|m| k * m),
            Cond::Plus(other, ns) => reference(other, &|m| m + ns),
        };
        if let Some(this) = this {
            limit = Some(limit.map_or(this, |l| l.min(this)));
        }
    }
    let met = match (median, limit) {
        (None, _) => Met::Unknown("not measured".into()),
        (Some(m), Some(l)) if m > l => Met::No { over: m / l },
        _ if !missing.is_empty() => Met::Unknown(format!(
            "{} not measured",
            missing
                .iter()
                .map(|id| Row::new(id).label)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => Met::Yes,
    };
    Verdict {
        limit,
        relative,
        met,
    }
}

/// A row's fastest peer in this run.
#[derive(Debug, Clone, PartialEq)]
pub enum Peer {
    /// The row has no peers.
    None,
    /// It has peers, and none was measured in this run (their labels).
    NotMeasured(Vec<String>),
    /// The measured peer with the lowest median, and the row's median over it.
    Best {
        id: String,
        median: f64,
        ratio: Option<f64>,
    },
}

/// The fastest of `id`'s peers measured in this run.
pub fn best_peer(id: &str, median: Option<f64>, median_of: &dyn Fn(&str) -> Option<f64>) -> Peer {
    let all = peers(id);
    if all.is_empty() {
        return Peer::None;
    }
    let best = all
        .iter()
        .filter_map(|p| median_of(p).map(|m| (*p, m)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match best {
        None => Peer::NotMeasured(all.iter().map(|p| Row::new(p).label).collect()),
        Some((p, m)) => Peer::Best {
            id: p.to_string(),
            median: m,
            ratio: median.map(|x| x / m),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&'static str, f64)]) -> impl Fn(&str) -> Option<f64> {
        let map: HashMap<&str, f64> = pairs.iter().copied().collect();
        move |id| map.get(id).copied()
    }

    const ABSOLUTE: Target = Target {
        conds: &[Cond::AtMost(20.0)],
        text: "≤ 20 ns",
    };
    const BOTH: Target = Target {
        conds: &[Cond::AtMost(150.0), Cond::Times(1.0, "go/spawn_wait_1p")],
        text: "",
    };
    const RATIO: Target = Target {
        conds: &[Cond::Times(1.2, "sync/std_mutex_uncontended")],
        text: "",
    };
    const PLUS: Target = Target {
        conds: &[Cond::Plus("ffi/direct_rust_to_c", 2.0)],
        text: "",
    };

    #[test]
    fn absolute_targets() {
        let none = lookup(&[]);
        let v = verdict(Some(&ABSOLUTE), Some(19.0), &none);
        assert_eq!((v.limit, v.relative, v.met), (Some(20.0), false, Met::Yes));
        assert_eq!(
            verdict(Some(&ABSOLUTE), Some(30.0), &none).met,
            Met::No { over: 1.5 }
        );
        assert_eq!(
            verdict(Some(&ABSOLUTE), None, &none).met,
            Met::Unknown("not measured".into())
        );
        assert_eq!(verdict(None, Some(1.0), &none).met, Met::NoTarget);
        let reference = Target {
            conds: &[],
            text: "reference",
        };
        assert_eq!(
            verdict(Some(&reference), Some(1.0), &none).met,
            Met::NoTarget
        );
    }

    #[test]
    fn relative_targets_use_the_same_run() {
        let run = lookup(&[
            ("sync/std_mutex_uncontended", 10.0),
            ("ffi/direct_rust_to_c", 1.5),
        ]);
        let v = verdict(Some(&RATIO), Some(11.0), &run);
        assert_eq!((v.limit, v.relative, v.met), (Some(12.0), true, Met::Yes));
        let v = verdict(Some(&RATIO), Some(15.0), &run);
        assert_eq!(v.met, Met::No { over: 1.25 });
        assert_eq!(verdict(Some(&PLUS), Some(3.5), &run).met, Met::Yes);
        assert_eq!(verdict(Some(&PLUS), Some(3.6), &run).limit, Some(3.5));
        // The reference not measured: cannot say, and says which.
        let v = verdict(Some(&RATIO), Some(11.0), &lookup(&[]));
        assert_eq!(v.limit, None);
        assert_eq!(
            v.met,
            Met::Unknown("`sync/std_mutex_uncontended` not measured".into())
        );
    }

    #[test]
    fn every_condition_must_hold() {
        // Go faster than 150 ns: its figure is the limit.
        let run = lookup(&[("go/spawn_wait_1p", 120.0)]);
        assert_eq!(
            verdict(Some(&BOTH), Some(130.0), &run).met,
            Met::No {
                over: 130.0 / 120.0
            }
        );
        assert_eq!(verdict(Some(&BOTH), Some(110.0), &run).limit, Some(120.0));
        // Without Go, the absolute part can still be missed, but not met.
        let none = lookup(&[]);
        assert_eq!(
            verdict(Some(&BOTH), Some(300.0), &none).met,
            Met::No { over: 2.0 }
        );
        assert!(matches!(
            verdict(Some(&BOTH), Some(100.0), &none).met,
            Met::Unknown(why) if why.contains("Go: spawn + wait, 1 P")
        ));
    }

    #[test]
    fn best_peer_is_the_fastest_measured() {
        let run = lookup(&[
            ("channel/crossbeam_pingpong_threads", 900.0),
            ("go/chan_pingpong_2p", 400.0),
        ]);
        assert_eq!(
            best_peer("channel/pingpong_2_workers", Some(200.0), &run),
            Peer::Best {
                id: "go/chan_pingpong_2p".into(),
                median: 400.0,
                ratio: Some(0.5)
            }
        );
        // Only one measured.
        let run = lookup(&[("channel/crossbeam_pingpong_threads", 900.0)]);
        assert!(matches!(
            best_peer("channel/pingpong_2_workers", None, &run),
            Peer::Best {
                ratio: None,
                median: 900.0,
                ..
            }
        ));
        // None measured; no peers at all.
        assert_eq!(
            best_peer("sched/yield_now", Some(10.0), &lookup(&[])),
            Peer::NotMeasured(vec!["Go: Gosched".into()])
        );
        assert_eq!(best_peer("go/gosched", Some(50.0), &run), Peer::None);
    }
}
