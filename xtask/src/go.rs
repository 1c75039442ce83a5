//! Go, side by side: the programs in `benches/go/` measured in the same run as the criterion
//! benchmarks.
//!
//! - `benches/go` (cgo): the same C `add` and C->Go callback as `benches/ffi.rs`.
//! - `benches/go/goroutines`: spawn + wait, `Gosched`, channel ping-pong and buffered channel,
//!   `sync.Mutex`, a `time.Sleep` fan-out and the pointer-chain stack growth of
//!   `benches/growth.rs`.
//!
//! Which Go: `PAGURUS_GO` if set (a `go` binary, or a GOROOT-style directory holding `bin/go`;
//! `none` to leave Go out), else `go` on PATH, else the newest `/usr/lib/go-*/bin/go` (where
//! Debian's `golang-1.NN-go` packages put it), else `/usr/local/go/bin/go` (the go.dev tarball).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{Note, Report};
use crate::rows::Row;
use crate::{find_in, is_executable, tail};

/// One figure a Go program prints, and the row it becomes.
#[derive(Debug)]
pub struct Figure {
    /// The row id (`go/...`).
    pub id: &'static str,
    /// The key the program prints.
    key: &'static str,
    /// The program's benchmark (`-bench` name) that prints it; empty for the cgo program.
    bench: &'static str,
}

/// A Go program under `benches/go`.
#[derive(Debug)]
struct Program {
    /// The binary's name under `target/xtask/bench/go/`.
    name: &'static str,
    /// The package to build, relative to `benches/go`.
    package: &'static str,
    cgo: bool,
    figures: &'static [Figure],
}

const CGO: Program = Program {
    name: "cgo-bench",
    package: ".",
    cgo: true,
    figures: &[
        Figure {
            id: "go/plain_call",
            key: "go_call_ns",
            bench: "",
        },
        Figure {
            id: "go/cgo_call",
            key: "cgo_call_ns",
            bench: "",
        },
        Figure {
            id: "go/cgo_callback",
            key: "cgo_callback_ns",
            bench: "",
        },
    ],
};

const GOROUTINES: Program = Program {
    name: "goroutine-bench",
    package: "./goroutines",
    cgo: false,
    figures: &[
        Figure {
            id: "go/spawn_wait_1p",
            key: "spawn_wait_1p_ns",
            bench: "spawn",
        },
        Figure {
            id: "go/spawn_wait_2p",
            key: "spawn_wait_2p_ns",
            bench: "spawn",
        },
        Figure {
            id: "go/gosched",
            key: "gosched_ns",
            bench: "gosched",
        },
        Figure {
            id: "go/chan_pingpong_1p",
            key: "chan_pingpong_1p_ns",
            bench: "pingpong",
        },
        Figure {
            id: "go/chan_pingpong_2p",
            key: "chan_pingpong_2p_ns",
            bench: "pingpong",
        },
        Figure {
            id: "go/chan_buffered_1024",
            key: "chan_buffered_1024_ns",
            bench: "buffered",
        },
        Figure {
            id: "go/mutex_uncontended",
            key: "mutex_uncontended_ns",
            bench: "mutex",
        },
        Figure {
            id: "go/sleep_fanout_wall",
            key: "sleep_fanout_wall_ns",
            bench: "sleep",
        },
        Figure {
            id: "go/sleep_cpu_per_sleep",
            key: "sleep_cpu_per_sleep_ns",
            bench: "sleep",
        },
        Figure {
            id: "go/growth_1m_fresh",
            key: "growth_1m_fresh_ns",
            bench: "growth1m",
        },
        Figure {
            id: "go/growth_1m_steady",
            key: "growth_1m_steady_ns",
            bench: "growth1m",
        },
        Figure {
            id: "go/growth_16m_fresh",
            key: "growth_16m_fresh_ns",
            bench: "growth16m",
        },
        Figure {
            id: "go/growth_16m_steady",
            key: "growth_16m_steady_ns",
            bench: "growth16m",
        },
    ],
};

/// Every Go figure's row id.
pub fn all_ids() -> impl Iterator<Item = &'static str> {
    CGO.figures.iter().chain(GOROUTINES.figures).map(|f| f.id)
}

/// Where the Go toolchain is, or why there is none.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// A `go` binary, and how it was found.
    At { go: PathBuf, how: &'static str },
    /// `PAGURUS_GO=none`: Go left out on purpose.
    Disabled,
    /// `PAGURUS_GO` names no Go binary: the user asked for one that is not there.
    BadOverride(String),
    /// None anywhere; the text says where we looked.
    Missing(String),
}

/// Finds Go as the module documentation says, from the real environment.
pub fn discover() -> Found {
    discover_in(
        std::env::var_os("PAGURUS_GO"),
        std::env::var_os("PATH"),
        Path::new("/usr/lib"),
        Path::new("/usr/local/go"),
    )
}

/// [`discover`] with its inputs spelled out (for tests).
fn discover_in(
    over: Option<OsString>,
    path: Option<OsString>,
    usr_lib: &Path,
    usr_local_go: &Path,
) -> Found {
    if let Some(over) = over {
        if over.is_empty() || over == "none" {
            return Found::Disabled;
        }
        let p = PathBuf::from(&over);
        let go = if p.is_dir() {
            p.join("bin").join("go")
        } else {
            p
        };
        return if is_executable(&go) {
            Found::At {
                go,
                how: "PAGURUS_GO",
            }
        } else {
            Found::BadOverride(format!(
                "PAGURUS_GO={} names no Go toolchain ({} is not an executable file); \
                 set it to a `go` binary or a directory holding `bin/go`, or to `none` to leave \
                 Go out",
                over.to_string_lossy(),
                go.display()
            ))
        };
    }
    if let Some(go) = path.as_deref().and_then(|p| find_in(p, "go")) {
        return Found::At { go, how: "PATH" };
    }
    if let Some(go) = newest_versioned(usr_lib) {
        return Found::At {
            go,
            how: "/usr/lib/go-*/bin/go, the newest; not on PATH",
        };
    }
    let go = usr_local_go.join("bin").join("go");
    if is_executable(&go) {
        return Found::At {
            go,
            how: "/usr/local/go/bin/go; not on PATH",
        };
    }
    Found::Missing(format!(
        "no Go toolchain found (PAGURUS_GO unset, no `go` on PATH, none in {}/go-*/bin or {}/bin)",
        usr_lib.display(),
        usr_local_go.display()
    ))
}

/// The `go-<version>/bin/go` under `dir` with the highest version (`go-1.23` beats `go-1.9`).
fn newest_versioned(dir: &Path) -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let name = entry.file_name();
        let Some(version) = name.to_str().and_then(|n| n.strip_prefix("go-")) else {
            continue;
        };
        let Some(version) = version
            .split('.')
            .map(|part| part.parse::<u32>().ok())
            .collect::<Option<Vec<u32>>>()
        else {
            continue;
        };
        let go = entry.path().join("bin").join("go");
        if is_executable(&go) && best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, go));
        }
    }
    best.map(|(_, go)| go)
}

/// `go1.23.5` from `go version`'s output (`go version go1.23.5 linux/amd64`).
fn parse_version(out: &str) -> Option<&str> {
    out.split_whitespace().find(|w| {
        w.strip_prefix("go")
            .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// Runs the Go programs whose figures are in `wanted` (row ids) and adds their rows. Without Go,
/// adds a row saying so. Returns the failures (a build or a run that failed, a bad `PAGURUS_GO`);
/// the report says what each was.
pub fn run(
    root: &Path,
    out_dir: &Path,
    quick: bool,
    wanted: &[&str],
    report: &mut Report,
) -> Vec<String> {
    let go = match discover() {
        Found::At { go, how } => (go, how),
        Found::Disabled => {
            eprintln!("xtask bench: PAGURUS_GO=none, skipping the Go benchmarks");
            missing_row(
                report,
                "Go left out (PAGURUS_GO=none): Go figures not measured",
            );
            return Vec::new();
        }
        Found::Missing(why) => {
            eprintln!("xtask bench: {why}; skipping the Go benchmarks");
            missing_row(
                report,
                &format!("{why}: Go figures not measured (README: getting Go)"),
            );
            return Vec::new();
        }
        Found::BadOverride(why) => {
            missing_row(report, &format!("{why}: Go figures not measured"));
            return vec![why];
        }
    };
    let (go, how) = go;
    let version = Command::new(&go)
        .arg("version")
        .output()
        .ok()
        .and_then(|o| parse_version(&String::from_utf8_lossy(&o.stdout)).map(str::to_string))
        .unwrap_or_else(|| "Go (version unknown)".into());
    eprintln!("xtask bench: Go: {version} at {} ({how})", go.display());
    report.notes.push(Note::Plain(format!(
        "Go rows: {version} at `{}` (found via {how}); `benches/go` (cgo) and \
         `benches/go/goroutines`, built and run right after the criterion benchmarks; each \
         figure is the median round, its spread the fastest to slowest round.",
        go.display()
    )));

    let mut failures = Vec::new();
    for program in [&CGO, &GOROUTINES] {
        let figures: Vec<&Figure> = program
            .figures
            .iter()
            .filter(|f| wanted.contains(&f.id))
            .collect();
        if figures.is_empty() {
            continue;
        }
        let result = build(&go, root, out_dir, program).and_then(|bin| {
            let mut cmd = Command::new(&bin);
            if program.cgo {
                let (calls, rounds) = if quick {
                    ("100000", "5")
                } else {
                    ("1000000", "21")
                };
                cmd.args(["-n", calls, "-rounds", rounds]);
            } else {
                let mut benches: Vec<&str> = figures.iter().map(|f| f.bench).collect();
                benches.dedup();
                cmd.args(["-rounds", if quick { "5" } else { "21" }])
                    .args(["-bench", &benches.join(",")]);
                if quick {
                    cmd.arg("-quick");
                }
            }
            eprintln!("xtask bench: running {cmd:?}");
            let out = cmd
                .output()
                .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                return Err(format!(
                    "{} failed ({}):\n{}{}",
                    bin.display(),
                    out.status,
                    tail(&out.stderr, 20),
                    tail(&out.stdout, 10)
                ));
            }
            let rows = parse_rows(&stdout, &figures)
                .map_err(|e| format!("{e}; its output was:\n{stdout}"))?;
            report.rows.extend(rows);
            if let Some(frame) = parse_pairs(&stdout).0.get("growth_frame_bytes") {
                report.notes.push(Note::Plain(format!(
                    "Go growth rows: goroutines start on 2 KiB stacks (GODEBUG=adaptivestackstart=0); \
                     one level of Go's recursion takes {frame} bytes of stack, and it recurses to \
                     the same number of bytes as pagurus's."
                )));
            }
            Ok(())
        });
        if let Err(err) = result {
            let err = format!("Go benchmark `{}` failed: {err}", program.name);
            let mut row = Row::new("go/failed");
            row.what = format!(
                "`benches/go/{}` failed: its figures are not measured (the reason is under the table)",
                program
                    .package
                    .trim_start_matches("./")
                    .trim_start_matches('.')
            );
            report.rows.push(row);
            failures.push(err);
        }
    }
    failures
}

/// The row that says Go was not run, and why.
fn missing_row(report: &mut Report, why: &str) {
    let mut row = Row::new("go/missing");
    row.what = why.to_string();
    report.rows.push(row);
}

/// Builds a program into `target/xtask/bench/go/<name>`.
fn build(go: &Path, root: &Path, out_dir: &Path, program: &Program) -> Result<PathBuf, String> {
    let src = root.join("benches").join("go");
    let bin_dir = out_dir.join("go");
    fs::create_dir_all(&bin_dir)
        .map_err(|e| format!("cannot create {}: {e}", bin_dir.display()))?;
    let bin = bin_dir.join(program.name);
    let mut cmd = Command::new(go);
    cmd.current_dir(&src)
        // cgo is off by default where Go finds no C compiler: say so rather than build without.
        .env("CGO_ENABLED", if program.cgo { "1" } else { "0" })
        // Never download another toolchain because of go.mod's `go` line.
        .env("GOTOOLCHAIN", "local");
    if std::env::var_os("GOCACHE").is_none() && std::env::var_os("HOME").is_none() {
        cmd.env("GOCACHE", bin_dir.join("cache"));
    }
    let out = cmd
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(program.package)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", go.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`go build {}` in {} failed ({}):\n{}",
            program.package,
            src.display(),
            out.status,
            tail(&out.stderr, 30)
        ));
    }
    Ok(bin)
}

/// The `name value` lines of a Go program's output: numbers, and words (`go_version`).
fn parse_pairs(stdout: &str) -> (HashMap<&str, f64>, HashMap<&str, &str>) {
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
    (numbers, words)
}

/// The rows of `figures` from a Go program's output; every one of them must be there.
fn parse_rows(stdout: &str, figures: &[&Figure]) -> Result<Vec<Row>, String> {
    let (numbers, words) = parse_pairs(stdout);
    let version = words.get("go_version").copied().unwrap_or("Go");
    let mut rows = Vec::new();
    for figure in figures {
        let key = figure.key;
        let Some(&median) = numbers.get(key) else {
            return Err(format!("the Go benchmark printed no `{key}` line"));
        };
        let get = |suffix: &str| numbers.get(format!("{key}_{suffix}").as_str()).copied();
        let rounds = get("rounds").or(numbers.get("rounds").copied());
        let per_round = get("n").or(numbers.get("calls_per_round").copied());
        let mut row = Row::new(figure.id);
        let of = match (rounds, per_round) {
            (Some(r), Some(1.0)) => format!(", median of {r} runs"),
            (Some(r), Some(n)) => format!(", median of {r} rounds of {n}"),
            (Some(r), None) => format!(", median of {r} rounds"),
            _ => String::new(),
        };
        row.what = format!("{} ({version}{of})", row.what);
        row.median = Some(median);
        if let (Some(min), Some(max)) = (get("min"), get("max")) {
            row.spread = Some((min, max));
            row.spread_note = " (fastest to slowest round)";
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn figures(program: &'static Program) -> Vec<&'static Figure> {
        program.figures.iter().collect()
    }

    #[test]
    fn parses_the_cgo_output() {
        let out = "go_version go1.23.1\nrounds 21\ncalls_per_round 1000000\n\
                   go_call_ns 1.402\ngo_call_ns_min 1.3\ngo_call_ns_max 1.9\n\
                   cgo_call_ns 35.2\ncgo_call_ns_min 34.0\ncgo_call_ns_max 41.0\n\
                   cgo_callback_ns 92.5\n";
        let rows = parse_rows(out, &figures(&CGO)).unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["go/plain_call", "go/cgo_call", "go/cgo_callback"]);
        assert_eq!(rows[1].median, Some(35.2));
        assert_eq!(rows[1].spread, Some((34.0, 41.0)));
        assert_eq!(rows[2].spread, None);
        assert!(rows[1].what.contains("go1.23.1"));
        assert!(
            rows[1].what.ends_with("median of 21 rounds of 1000000)"),
            "{}",
            rows[1].what
        );
        assert!(parse_rows("go_call_ns 1.4\n", &figures(&CGO)).is_err());
    }

    #[test]
    fn parses_the_goroutines_output_per_figure_rounds() {
        let out = "go_version go1.23.5\nrounds 5\ncpus 2\n# a comment\n\
                   sleep_fanout_wall_ns 12000000.000\nsleep_fanout_wall_ns_min 11e6\n\
                   sleep_fanout_wall_ns_max 13e6\nsleep_fanout_wall_ns_n 1\n\
                   sleep_fanout_wall_ns_rounds 5\n\
                   sleep_cpu_per_sleep_ns 512.5\nsleep_cpu_per_sleep_ns_n 100000\n\
                   sleep_cpu_per_sleep_ns_rounds 5\ngrowth_frame_bytes 120\n";
        let wanted: Vec<&Figure> = GOROUTINES
            .figures
            .iter()
            .filter(|f| f.bench == "sleep")
            .collect();
        let rows = parse_rows(out, &wanted).unwrap();
        assert_eq!(rows[0].id, "go/sleep_fanout_wall");
        assert_eq!(rows[0].median, Some(12e6));
        assert_eq!(rows[0].spread, Some((11e6, 13e6)));
        assert!(
            rows[0].what.ends_with("(go1.23.5, median of 5 runs)"),
            "{}",
            rows[0].what
        );
        assert_eq!(rows[1].median, Some(512.5));
        assert!(rows[1].what.ends_with("median of 5 rounds of 100000)"));
        // A figure asked for but not printed is an error.
        let all = figures(&GOROUTINES);
        let err = parse_rows(out, &all).unwrap_err();
        assert!(err.contains("spawn_wait_1p_ns"), "{err}");
    }

    #[test]
    fn every_figure_is_a_described_row_with_a_known_bench() {
        let known = [
            "spawn",
            "gosched",
            "pingpong",
            "buffered",
            "mutex",
            "sleep",
            "growth1m",
            "growth16m",
        ];
        for f in GOROUTINES.figures {
            assert!(known.contains(&f.bench), "{}", f.id);
        }
        for id in all_ids() {
            assert!(!Row::new(id).what.is_empty(), "{id} has no description");
            assert!(!crate::rows::is_criterion(id));
        }
    }

    #[test]
    fn version_from_go_version() {
        assert_eq!(
            parse_version("go version go1.23.5 linux/amd64\n"),
            Some("go1.23.5")
        );
        assert_eq!(
            parse_version("go version devel go1.24-abc linux/amd64"),
            Some("go1.24-abc")
        );
        assert_eq!(parse_version("nonsense"), None);
    }

    /// A scratch directory with fake `go` executables.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("xtask-go-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn go(&self, rel: &str) -> PathBuf {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn discovery_order() {
        let s = Scratch::new("order");
        let lib = s.0.join("lib");
        let local = s.0.join("local-go");
        let on_path = s.go("bin/go");
        let path_var = || {
            Some(OsString::from(format!(
                "/nonexistent:{}",
                s.0.join("bin").display()
            )))
        };
        let no_path = || Some(OsString::from("/nonexistent"));
        // Nothing anywhere.
        assert!(matches!(
            discover_in(None, no_path(), &lib, &local),
            Found::Missing(why) if why.contains("PAGURUS_GO unset")
        ));
        // /usr/local/go only.
        let tarball = s.go("local-go/bin/go");
        assert_eq!(
            discover_in(None, no_path(), &lib, &local),
            Found::At {
                go: tarball,
                how: "/usr/local/go/bin/go; not on PATH"
            }
        );
        // Versioned directories beat it, the newest by number (1.23 > 1.9), ignoring odd names
        // and directories without an executable.
        s.go("lib/go-1.9/bin/go");
        let newest = s.go("lib/go-1.23/bin/go");
        fs::create_dir_all(lib.join("go-1.24/bin")).unwrap();
        s.go("lib/go-tip/bin/go");
        s.go("lib/gold/bin/go");
        assert!(matches!(
            discover_in(None, no_path(), &lib, &local),
            Found::At { go, .. } if go == newest
        ));
        // PATH beats them.
        assert_eq!(
            discover_in(None, path_var(), &lib, &local),
            Found::At {
                go: on_path.clone(),
                how: "PATH"
            }
        );
        // PAGURUS_GO beats PATH: a binary, or a GOROOT-style directory.
        let pinned = s.go("pinned/bin/go");
        for over in [pinned.clone(), s.0.join("pinned")] {
            assert_eq!(
                discover_in(Some(over.into_os_string()), path_var(), &lib, &local),
                Found::At {
                    go: pinned.clone(),
                    how: "PAGURUS_GO"
                }
            );
        }
        // `none` (or empty) leaves Go out; a path with no Go is an error, not a fallback.
        for off in ["none", ""] {
            assert_eq!(
                discover_in(Some(off.into()), path_var(), &lib, &local),
                Found::Disabled
            );
        }
        assert!(matches!(
            discover_in(Some("/nonexistent/go".into()), path_var(), &lib, &local),
            Found::BadOverride(why) if why.contains("PAGURUS_GO=/nonexistent/go")
        ));
    }
}
