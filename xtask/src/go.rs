//! The Go cgo benchmark (`benches/go/`): the same C `add`, called from Go, measured in the same
//! run when a Go toolchain is on PATH.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::report::{Note, Report};
use crate::rows::Row;
use crate::{find_on_path, tail};

/// `(row id, key the Go program prints, whether it must be there)`.
const FIGURES: &[(&str, &str, bool)] = &[
    ("go/plain_call", "go_call_ns", false),
    ("go/cgo_call", "cgo_call_ns", true),
    ("go/cgo_callback", "cgo_callback_ns", true),
];

/// Builds and runs the Go benchmark and adds its rows; without Go, adds a row saying so.
pub fn run(root: &Path, out_dir: &Path, quick: bool, report: &mut Report) -> Result<(), String> {
    let Some(go) = find_on_path("go") else {
        eprintln!("xtask bench: no `go` on PATH, skipping the Go cgo benchmark");
        report.rows.push(Row::new("go/missing"));
        return Ok(());
    };
    let src = root.join("benches").join("go");
    let bin_dir = out_dir.join("go");
    fs::create_dir_all(&bin_dir)
        .map_err(|e| format!("cannot create {}: {e}", bin_dir.display()))?;
    let bin = bin_dir.join("cgo-bench");

    let out = Command::new(&go)
        .current_dir(&src)
        // cgo is off by default where Go finds no C compiler; say so rather than build without.
        .env("CGO_ENABLED", "1")
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(".")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", go.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`{} build` in {} failed ({}):\n{}",
            go.display(),
            src.display(),
            out.status,
            tail(&out.stderr, 30)
        ));
    }

    let (calls, rounds) = if quick {
        ("100000", "5")
    } else {
        ("1000000", "21")
    };
    eprintln!(
        "xtask bench: running {} ({rounds} rounds of {calls} calls)",
        bin.display()
    );
    let out = Command::new(&bin)
        .args(["-n", calls, "-rounds", rounds])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}{}",
            bin.display(),
            out.status,
            tail(&out.stderr, 20),
            tail(&out.stdout, 10)
        ));
    }
    add_rows(&stdout, report).map_err(|e| format!("{e}; its output was:\n{stdout}"))
}

/// Parses the `name value` lines the Go program prints into rows.
fn add_rows(stdout: &str, report: &mut Report) -> Result<(), String> {
    let mut numbers = HashMap::new();
    let mut words = HashMap::new();
    for line in stdout.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        match value.parse::<f64>() {
            Ok(x) if x.is_finite() => {
                numbers.insert(key, x);
            }
            _ => {
                words.insert(key, value);
            }
        }
    }
    let version = words.get("go_version").copied().unwrap_or("Go");
    let rounds = numbers.get("rounds").copied().unwrap_or(0.0);
    let calls = numbers.get("calls_per_round").copied().unwrap_or(0.0);
    for &(id, key, required) in FIGURES {
        let Some(&median) = numbers.get(key) else {
            if required {
                return Err(format!("the Go benchmark printed no `{key}` line"));
            }
            continue;
        };
        let mut row = Row::new(id);
        row.what = format!(
            "{} ({version}, median of {rounds} rounds of {calls} calls)",
            row.what
        );
        row.median = Some(median);
        let min = numbers.get(format!("{key}_min").as_str());
        let max = numbers.get(format!("{key}_max").as_str());
        if let (Some(&min), Some(&max)) = (min, max) {
            row.spread = Some((min, max));
            row.spread_note = " (fastest to slowest round)";
        }
        report.rows.push(row);
    }
    report.notes.push(Note::Plain(format!(
        "Go rows: `benches/go` (cgo, {version}), built and run right after the criterion \
         benchmarks; ns per call, the median of {rounds} rounds of {calls} calls."
    )));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_go_output() {
        let out = "go_version go1.23.1\nrounds 21\ncalls_per_round 1000000\n\
                   go_call_ns 1.402\ngo_call_ns_min 1.3\ngo_call_ns_max 1.9\n\
                   cgo_call_ns 35.2\ncgo_call_ns_min 34.0\ncgo_call_ns_max 41.0\n\
                   cgo_callback_ns 92.5\n";
        let mut report = Report::new(false);
        add_rows(out, &mut report).unwrap();
        let ids: Vec<&str> = report.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["go/plain_call", "go/cgo_call", "go/cgo_callback"]);
        assert_eq!(report.rows[1].median, Some(35.2));
        assert_eq!(report.rows[1].spread, Some((34.0, 41.0)));
        assert_eq!(report.rows[2].spread, None);
        assert!(report.rows[1].what.contains("go1.23.1"));
        assert!(add_rows("go_call_ns 1.4\n", &mut Report::new(false)).is_err());
    }
}
