//! `cargo xtask soak [--minutes N] [--seconds N] [--seed S]`: builds `examples/soak.rs` in
//! release mode and runs it for the given time (default one minute), streaming its output.
//!
//! The soak program checks everything itself (results, `stats()` back to zero, resident memory
//! and descriptors flat across rounds; see its doc comment for what it covers) and exits non-zero
//! on a failure. This task adds the outer watchdog: a soak still running well past its time
//! (its own per-round watchdog should have fired) is killed and reported as a hang.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cargo, workspace_root};

/// How long past its time the soak may run (the last round finishing, the runtime dropping)
/// before it counts as hung.
const GRACE: Duration = Duration::from_secs(180);

pub fn run(args: &[String]) -> Result<(), String> {
    let mut seconds = 60u64;
    let mut seed = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--minutes", Some(m)) => seconds = m * 60,
            ("--seconds", Some(s)) => seconds = s,
            ("--seed", Some(s)) => seed = Some(s),
            _ => {
                return Err(format!(
                    "bad argument {arg:?}: usage: cargo xtask soak [--minutes N] [--seconds N] \
                     [--seed S]"
                ));
            }
        }
    }
    let root = workspace_root();
    eprintln!("xtask soak: building examples/soak.rs (release)");
    let status = cargo()
        .current_dir(&root)
        .args(["build", "--release", "--example", "soak"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build --release --example soak failed ({status})"
        ));
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    let exe = target.join("release").join("examples").join("soak");
    let mut command = Command::new(&exe);
    command.args(["--seconds", &seconds.to_string()]);
    if let Some(seed) = seed {
        command.args(["--seed", &seed.to_string()]);
    }
    eprintln!("xtask soak: running {} for {seconds} s", exe.display());
    let mut child = command
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    let limit = Duration::from_secs(seconds) + GRACE;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("the soak failed ({status}); see above")),
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the soak was still running {} s after its {seconds} s: killed as hung",
                    GRACE.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("cannot wait for the soak: {e}")),
        }
    }
}
