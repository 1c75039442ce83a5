//! Instructions per foreign call, counted by callgrind: a figure machine noise does not move.
//!
//! `examples/ffi_calls.rs <mode> <count>` makes `count` calls in one mode from a coroutine. It
//! runs twice under callgrind, with a small and a big count; the difference of the two totals,
//! divided by the difference of the counts, is the cost of one call (start-up and shutdown cancel
//! out).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::report::{Note, Report};
use crate::rows::Row;
use crate::{cargo, find_on_path, tail, workspace_root};

/// A mode of `examples/ffi_calls.rs` and the criterion benchmark that measures the same calls.
#[derive(Debug)]
pub struct Mode {
    pub arg: &'static str,
    pub id: &'static str,
}

pub const MODES: &[Mode] = &[
    Mode {
        arg: "baseline",
        id: "ffi/direct_rust_to_c",
    },
    Mode {
        arg: "switch",
        id: "ffi/mode_switch",
    },
    Mode {
        arg: "direct",
        id: "ffi/mode_direct",
    },
    Mode {
        arg: "reserve",
        id: "ffi/mode_reserve",
    },
    Mode {
        arg: "offload",
        id: "ffi/mode_offload",
    },
    Mode {
        arg: "call_with_switch",
        id: "ffi/call_with_switch",
    },
    Mode {
        arg: "call_with_direct",
        id: "ffi/call_with_direct",
    },
    Mode {
        arg: "call_with_reserve",
        id: "ffi/call_with_reserve",
    },
    Mode {
        arg: "callback_switch",
        id: "ffi/callback_switch",
    },
    Mode {
        arg: "callback_direct",
        id: "ffi/callback_direct",
    },
];

/// Counts instructions per call in each of `modes` and puts them in their rows; without
/// valgrind, adds a note saying so.
pub fn run(
    out_dir: &Path,
    quick: bool,
    modes: &[&Mode],
    report: &mut Report,
) -> Result<(), String> {
    let Some(valgrind) = find_on_path("valgrind") else {
        eprintln!("xtask bench: no `valgrind` on PATH, skipping instruction counts");
        report.notes.push(Note::Plain(
            "valgrind not found on PATH: instructions per call not measured.".into(),
        ));
        return Ok(());
    };
    if modes.is_empty() {
        return Ok(());
    }
    let version = Command::new(&valgrind)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "valgrind".into());
    let bin = build_example()?;
    let dir = out_dir.join("callgrind");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (small, big) = if quick {
        (2_000u64, 22_000u64)
    } else {
        (10_000, 110_000)
    };

    let mut errors = Vec::new();
    for mode in modes {
        let measured = count(&valgrind, &bin, mode.arg, small, &dir).and_then(|ir_small| {
            count(&valgrind, &bin, mode.arg, big, &dir).map(|ir_big| (ir_small, ir_big))
        });
        let (ir_small, ir_big) = match measured {
            Ok(pair) => pair,
            Err(err) => {
                errors.push(format!("mode {}: {err}", mode.arg));
                continue;
            }
        };
        let per_call = (ir_big as f64 - ir_small as f64) / (big - small) as f64;
        eprintln!(
            "xtask bench: callgrind {:>16}: {per_call:.1} instructions per call",
            mode.arg
        );
        match report.rows.iter_mut().find(|r| r.id == mode.id) {
            Some(row) => row.instructions = Some(per_call),
            None => {
                let mut row = Row::new(mode.id);
                row.instructions = Some(per_call);
                report.rows.push(row);
            }
        }
    }
    if errors.len() == modes.len() {
        return Err(errors.join("\n"));
    }
    report.notes.push(Note::Plain(format!(
        "instructions/call: callgrind ({version}) totals of `examples/ffi_calls.rs` (release) \
         run with {small} and {big} calls, (Ir({big}) - Ir({small})) / {}; the raw outputs are \
         in `{}`.",
        big - small,
        dir.display()
    )));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// Builds `examples/ffi_calls.rs` in release mode and returns the executable's path.
fn build_example() -> Result<PathBuf, String> {
    let out = cargo()
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "--package",
            "pagurus",
            "--example",
            "ffi_calls",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo build --example ffi_calls: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build --release --example ffi_calls failed ({}); see cargo's output above",
            out.status
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "ffi_calls")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo build --example ffi_calls named no executable".into())
}

/// Runs `bin mode n` under callgrind and returns the total instruction count.
fn count(valgrind: &Path, bin: &Path, mode: &str, n: u64, dir: &Path) -> Result<u64, String> {
    let file = dir.join(format!("callgrind.{mode}.{n}.out"));
    let out = Command::new(valgrind)
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(bin)
        .arg(mode)
        .arg(n.to_string())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", valgrind.display()))?;
    if !out.status.success() {
        return Err(format!(
            "valgrind --tool=callgrind {} {mode} {n} failed ({}):\n{}",
            bin.display(),
            out.status,
            tail(&out.stderr, 20)
        ));
    }
    let text =
        fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    total(&text).ok_or_else(|| format!("{}: no `summary:` or `totals:` line", file.display()))
}

/// The first event count (instructions, `Ir`) of the `summary:` line of a callgrind output file,
/// or of its `totals:` line.
fn total(text: &str) -> Option<u64> {
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    line("summary:").or_else(|| line("totals:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_totals() {
        let file = "version: 1\ncmd: x\nevents: Ir\nfn=(1) main\n0 5\nsummary: 1049997\n\n\
                    totals: 1049997\n";
        assert_eq!(total(file), Some(1_049_997));
        assert_eq!(total("events: Ir Dr\ntotals: 12 7\n"), Some(12));
        assert_eq!(total("events: Ir\n"), None);
    }
}
