//! `cargo xtask <task>`: project chores that need more than one cargo command.
//!
//! - `bench [--quick] [FILTER]`: runs the criterion benchmarks under `benches/`, then prints one
//!   table of medians and writes it as Markdown to `target/xtask/bench/results.md`. `--quick`
//!   gives a short run for smoke-testing (CI runs it); a FILTER is passed on to criterion.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::SystemTime;

/// What each benchmark measures, in the report's words; the bench id is criterion's full id.
const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        "raw/resume_yield_round_trip",
        "raw coroutine: resume + suspend round trip",
    ),
    (
        "sched/yield_now",
        "scheduler: yield_now, one coroutine on its worker",
    ),
    (
        "sched/yield_now_two_coroutines",
        "scheduler: two coroutines yielding to each other (per pair of switches)",
    ),
    (
        "sched/spawn_join_1_workers",
        "scheduler: spawn + join, warm pool, 1 worker",
    ),
    (
        "sched/spawn_join_2_workers",
        "scheduler: spawn + join, warm pool, 2 workers",
    ),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => match bench(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("xtask bench: {err}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo xtask bench [--quick] [FILTER]");
            ExitCode::from(2)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn bench(args: &[String]) -> Result<(), String> {
    let root = workspace_root();
    let quick = args.iter().any(|a| a == "--quick");
    let filter: Vec<&String> = args.iter().filter(|a| *a != "--quick").collect();
    let started = SystemTime::now();

    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args(["bench", "--package", "pagurus", "--benches", "--"]);
    if quick {
        cmd.args([
            "--warm-up-time",
            "0.3",
            "--measurement-time",
            "0.5",
            "--sample-size",
            "10",
        ]);
    }
    cmd.args(filter);
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    if !status.success() {
        return Err(format!("cargo bench failed ({status})"));
    }

    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let mut rows = Vec::new();
    collect(&target.join("criterion"), started, &mut rows)?;
    if rows.is_empty() {
        return Err("criterion wrote no results (did the filter match nothing?)".into());
    }
    rows.sort_by_key(|row| {
        DESCRIPTIONS
            .iter()
            .position(|(id, _)| *id == row.id)
            .unwrap_or(usize::MAX)
    });

    let mut md =
        String::from("| benchmark | what | median | 95% CI of the median |\n|---|---|---:|---|\n");
    for row in &rows {
        let what = DESCRIPTIONS
            .iter()
            .find(|(id, _)| *id == row.id)
            .map_or("", |(_, w)| w);
        md.push_str(&format!(
            "| `{}` | {} | {} | {} to {} |\n",
            row.id,
            what,
            ns(row.median),
            ns(row.low),
            ns(row.high)
        ));
    }
    if quick {
        md.push_str("\n(--quick run: short measurement, for smoke-testing only)\n");
    }
    let out_dir = target.join("xtask").join("bench");
    fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let out = out_dir.join("results.md");
    fs::write(&out, &md).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("\n{md}\nwritten to {}", out.display());
    Ok(())
}

struct Row {
    id: String,
    median: f64,
    low: f64,
    high: f64,
}

/// Finds every `new/estimates.json` criterion wrote since `since`.
fn collect(dir: &Path, since: SystemTime, rows: &mut Vec<Row>) -> Result<(), String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let estimates = path.join("new").join("estimates.json");
        let fresh = fs::metadata(&estimates)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if fresh {
            rows.push(read_row(&path)?);
        } else {
            collect(&path, since, rows)?;
        }
    }
    Ok(())
}

fn read_row(dir: &Path) -> Result<Row, String> {
    let read = |name: &str| -> Result<serde_json::Value, String> {
        let path = dir.join("new").join(name);
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let bench = read("benchmark.json")?;
    let est = read("estimates.json")?;
    let median = &est["median"];
    let num = |v: &serde_json::Value| {
        v.as_f64()
            .ok_or_else(|| format!("{}: malformed estimates", dir.display()))
    };
    Ok(Row {
        id: bench["full_id"].as_str().unwrap_or("?").to_string(),
        median: num(&median["point_estimate"])?,
        low: num(&median["confidence_interval"]["lower_bound"])?,
        high: num(&median["confidence_interval"]["upper_bound"])?,
    })
}

/// Criterion's estimates are in nanoseconds per iteration.
fn ns(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} µs", v / 1000.0)
    } else {
        format!("{v:.2} ns")
    }
}
