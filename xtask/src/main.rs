//! `cargo xtask <task>`: project chores that need more than one cargo command.
//!
//! - `soak [--minutes N] [--seconds N] [--seed S]`: builds and runs `examples/soak.rs` (release)
//!   for the given time, default one minute: random mixes of growth, yields, spawns, panics,
//!   locks, timers and foreign calls with runtimes dropped mid-flight, checking results, `stats()`
//!   and that memory and descriptors stay flat (see `soak.rs`). CI runs one minute.
//! - `layers`: checks that each module of `pagurus-runtime` imports only from the layers below it
//!   (the diagram at the top of its `lib.rs`; see `layers.rs`). Fails listing `file:line`.
//! - `bench [--quick] [FILTER]`: runs the criterion benchmarks under `benches/`, then:
//!   - if a Go toolchain is found (`go.rs`: `PAGURUS_GO`, PATH, `/usr/lib/go-*/bin/go`), builds
//!     and runs the Go programs in `benches/go/` for the Go figures the selected rows are
//!     compared with (the cgo calls, spawn, channels, sleep, growth...), in the same run;
//!   - when the filter selects the foreign-call benchmarks (or there is none) and valgrind is on
//!     PATH, counts instructions per foreign call in each mode with callgrind
//!     (`examples/ffi_calls.rs`, run with two call counts; the difference cancels the setup).
//!
//!   It prints one table (median, target and whether it is met, best peer in the same run and
//!   the ratio to it) and writes it as Markdown to `target/xtask/bench/results.md` and as a bar
//!   chart to `target/xtask/bench/results.svg`. `--quick` gives a short run for
//!   smoke-testing (CI runs it); a FILTER is passed on to criterion. Criterion's own files go to
//!   `target/xtask/bench/criterion/` (or `$CRITERION_HOME`), where no other run writes.

mod callgrind;
mod compare;
mod criterion;
mod go;
mod idle;
mod layers;
mod net;
mod report;
mod rows;
mod soak;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Instant, SystemTime};

use report::{Note, Report};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        // `bench net`: the network servers under load (`net.rs`); `loadgen` is its load
        // generator, run as a process of its own.
        Some("bench") if args.get(1).is_some_and(|a| a == "net") => match net::bench(&args[2..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("xtask bench net: {err}");
                ExitCode::FAILURE
            }
        },
        Some("loadgen") => net::loadgen_main(&args[1..]),
        Some("bench") if args.get(1).map(String::as_str) == Some("idle") => {
            match idle::bench(&args[2..]) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("xtask bench idle: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("bench") => match bench(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("xtask bench: {err}");
                ExitCode::FAILURE
            }
        },
        Some("soak") => match soak::run(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("xtask soak: {err}");
                ExitCode::FAILURE
            }
        },
        Some("layers") => match layers::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("xtask layers: {err}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!(
                "usage: cargo xtask bench [--quick] [FILTER] | cargo xtask bench net [--quick] | cargo xtask bench idle [N] | \
                 cargo xtask layers | cargo xtask soak [--minutes N] [--seconds N] [--seed S]"
            );
            ExitCode::from(2)
        }
    }
}

/// The workspace root (where `Cargo.toml` and `benches/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The cargo that runs us (so that `cargo +toolchain xtask` uses that toolchain throughout).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The first executable file called `name` in a directory of PATH, as a shell would find it.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    find_in(&std::env::var_os("PATH")?, name)
}

/// The first executable file called `name` in a directory of a PATH-style list.
pub fn find_in(path: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file someone may execute.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The last lines of a command's output, for error messages.
pub fn tail(text: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn bench(args: &[String]) -> Result<(), String> {
    let root = workspace_root();
    let quick = args.iter().any(|a| a == "--quick");
    let criterion_args: Vec<&String> = args.iter().filter(|a| *a != "--quick").collect();
    // What criterion takes as name filters (its other arguments start with a dash).
    let filters: Vec<&str> = criterion_args
        .iter()
        .map(|a| a.as_str())
        .filter(|a| !a.starts_with('-'))
        .collect();
    let started = SystemTime::now();
    let clock = Instant::now();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out_dir = target.join("xtask").join("bench");
    fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;

    // Step 1: the criterion benchmarks. Their failure is fatal: there would be nothing to report.
    // Criterion writes where only this task looks (unless CRITERION_HOME says otherwise), so that
    // a plain `cargo bench` running meanwhile cannot slip its results into this report.
    let criterion_home =
        std::env::var_os("CRITERION_HOME").map_or_else(|| out_dir.join("criterion"), PathBuf::from);
    eprintln!(
        "xtask bench: [1/4] cargo bench (criterion){}",
        if quick { ", quick" } else { "" }
    );
    let mut cmd = cargo();
    cmd.current_dir(&root)
        .env("CRITERION_HOME", &criterion_home)
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
    cmd.args(&criterion_args);
    let status = cmd
        .status()
        .map_err(|e| format!("step 1 (cargo bench): cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "step 1 (cargo bench) failed ({status}); see cargo's output above"
        ));
    }
    let mut report = Report::new(quick);
    criterion::collect(&criterion_home, started, &mut report.rows)
        .map_err(|e| format!("step 1 (reading criterion's results): {e}"))?;
    if report.rows.is_empty() {
        return Err(
            "step 1 (cargo bench): criterion wrote no results (did the filter match nothing?)"
                .into(),
        );
    }
    eprintln!(
        "xtask bench: criterion done after {:.0} s",
        clock.elapsed().as_secs_f64()
    );

    // Rows the filter selects that did not run say "not measured" (a benchmark missing from
    // this tree, or renamed), rather than vanishing from the table.
    let wants = |id: &str| filters.is_empty() || filters.iter().any(|f| id.contains(f));
    for (id, _, _) in rows::DESCRIPTIONS {
        if rows::is_criterion(id) && wants(id) && !report.rows.iter().any(|r| r.id == *id) {
            report.rows.push(rows::Row::new(id));
        }
    }

    // Steps 2 and 3 add to the table; their failures are reported in it and make the task fail
    // at the end, after the results are written.
    let mut failures = Vec::new();
    // The Go figures that some selected row is compared with.
    let go_wanted: Vec<&str> = go::all_ids()
        .filter(|go_id| {
            rows::DESCRIPTIONS
                .iter()
                .any(|(id, _, _)| wants(id) && rows::refers_to(id, go_id))
        })
        .collect();
    if go_wanted.is_empty() {
        report.notes.push(Note::Plain(
            "Go figures not measured: the filter selects no row with a Go peer.".into(),
        ));
    } else {
        eprintln!("xtask bench: [2/4] Go benchmarks (benches/go)");
        for err in go::run(&root, &out_dir, quick, &go_wanted, &mut report) {
            let err = format!("step 2 (Go): {err}");
            eprintln!("xtask bench: {err}");
            report.notes.push(Note::Failure(err.clone()));
            failures.push(err);
        }
    }

    let ffi_wanted = rows::FFI_IDS.iter().any(|id| wants(id));
    if !ffi_wanted {
        report.notes.push(Note::Plain(
            "Instructions per call (callgrind) not measured: the filter selects no `ffi/` \
             benchmark."
                .into(),
        ));
    } else {
        eprintln!("xtask bench: [3/4] instructions per call (callgrind)");
        let modes: Vec<&callgrind::Mode> =
            callgrind::MODES.iter().filter(|m| wants(m.id)).collect();
        match callgrind::run(&out_dir, quick, &modes, &mut report) {
            Ok(()) => {}
            Err(err) => {
                let err = format!("step 3 (callgrind) failed: {err}");
                eprintln!("xtask bench: {err}");
                report.notes.push(Note::Failure(err.clone()));
                failures.push(err);
            }
        }
    }

    // Step 4: the report.
    eprintln!("xtask bench: [4/4] writing the report");
    report.sort();
    let md = report.markdown();
    let md_path = out_dir.join("results.md");
    fs::write(&md_path, &md)
        .map_err(|e| format!("step 4 (report): cannot write {}: {e}", md_path.display()))?;
    let svg_path = out_dir.join("results.svg");
    fs::write(&svg_path, report.svg())
        .map_err(|e| format!("step 4 (report): cannot write {}: {e}", svg_path.display()))?;
    println!(
        "\n{md}\nwritten to {} and {} ({:.0} s in all)",
        md_path.display(),
        svg_path.display(),
        clock.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}
