//! `cargo xtask bench idle [N]`: a million parked coroutines next to a million parked goroutines,
//! in one run. Builds and runs `examples/million.rs` (parked in `sleep`, in `recv` on a channel each, and
//! 100,000 holding 48 KiB of live stack each) and `benches/go/idle` (in `time.Sleep`, and on a
//! channel each), and prints one row per figure: spawn-and-park time, wake-and-join time, and
//! bytes per parked coroutine (`VmRSS` + `VmPTE` delta over N).

use std::process::Command;

use crate::go;

/// One run's figures, parsed from the `idle ...` line both programs print.
struct Idle {
    spawn_park_ns: f64,
    wake_join_ns: f64,
    bytes: f64,
    /// Stack bytes a parked coroutine uses (its compacted image); pagurus only.
    used: Option<f64>,
    maps: f64,
}

fn parse(stdout: &[u8]) -> Result<Idle, String> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("idle "))
        .ok_or_else(|| format!("no `idle` line in:\n{text}"))?;
    let field = |name: &str| -> Result<f64, String> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {name} in {line}"))
    };
    Ok(Idle {
        spawn_park_ns: field("spawn_park_ns")?,
        wake_join_ns: field("wake_join_ns")?,
        bytes: field("bytes")?,
        used: field("used").ok(),
        maps: field("maps")?,
    })
}

fn run(cmd: &mut Command) -> Result<Idle, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse(&out.stdout)
}

pub fn bench(args: &[String]) -> Result<(), String> {
    let n: u64 = match args.first() {
        Some(n) => n.replace('_', "").parse().map_err(|_| format!("N: {n}"))?,
        None => 1_000_000,
    };
    let root = crate::workspace_root();
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--release", "--example", "million"])
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("cargo build --example million failed".into());
    }
    let exe = root.join("target/release/examples/million");
    let mut rows: Vec<(String, Idle)> = Vec::new();
    for mode in ["sleep", "chan"] {
        let r = run(Command::new(&exe).args([n.to_string().as_str(), "--mode", mode]))?;
        rows.push((format!("pagurus {mode}"), r));
    }
    let deep = (n / 10).max(1);
    let r = run(Command::new(&exe).args([deep.to_string().as_str(), "--stack-bytes", "49152"]))?;
    rows.push((format!("pagurus sleep, {deep} x 48 KiB held"), r));
    match go::discover() {
        go::Found::At { go, .. } => {
            let bin = root.join("target/xtask/idle-bench");
            let status = Command::new(&go)
                .current_dir(root.join("benches/go"))
                .args(["build", "-o"])
                .arg(&bin)
                .arg("./idle")
                .status()
                .map_err(|e| e.to_string())?;
            if status.success() {
                for mode in ["sleep", "chan"] {
                    let r = run(Command::new(&bin).args(["-n", &n.to_string(), "-mode", mode]))?;
                    rows.push((format!("go {mode}"), r));
                }
            } else {
                eprintln!("xtask bench idle: building the Go program failed; Go rows left out");
            }
        }
        _ => eprintln!("xtask bench idle: no Go toolchain found; Go rows left out"),
    }
    println!(
        "{:<36} {:>16} {:>16} {:>12} {:>8}  target (issue 10)",
        "", "spawn-and-park", "wake-and-join", "B/parked", "maps"
    );
    for (name, r) in &rows {
        let target = if name.contains("48 KiB") {
            match r.used {
                Some(used) => format!(
                    "B/parked <= 1.1 x used ({used:.0} B): {:.2} x",
                    r.bytes / used
                ),
                None => "B/parked <= 1.1 x used".to_string(),
            }
        } else if name.starts_with("pagurus") && n >= 1_000_000 {
            "B/parked <= 1500".to_string()
        } else if name.starts_with("pagurus") {
            // The budget's uncompacted stacks (16 MiB per worker) weigh more below a million.
            "B/parked <= 1500 at 1,000,000 (not this N)".to_string()
        } else {
            String::new()
        };
        println!(
            "{name:<36} {:>14.3} s {:>14.3} s {:>12.0} {:>8.0}  {target}",
            r.spawn_park_ns / 1e9,
            r.wake_join_ns / 1e9,
            r.bytes,
            r.maps
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_idle_line() {
        let r = super::parse(
            b"noise\nidle n=10 mode=sleep held=0 spawn_park_ns=5 wake_join_ns=7 bytes=1200 used=600 maps=30\n",
        )
        .unwrap();
        assert_eq!(
            (r.spawn_park_ns, r.wake_join_ns, r.bytes, r.used, r.maps),
            (5.0, 7.0, 1200.0, Some(600.0), 30.0)
        );
    }
}
