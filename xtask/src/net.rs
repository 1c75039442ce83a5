//! `cargo xtask bench net [--quick]`: echo and HTTP servers under load, pagurus next to tokio
//! and Go, measured in one run by one load generator.
//!
//! Servers (each its own process, 2 worker threads, on a free loopback port):
//! - pagurus: `examples/echo.rs` and `examples/http_hello.rs` (release);
//! - tokio: `benches/peers` (a package outside the workspace, so tokio never enters the library's
//!   dependencies), the same two servers as a task per connection;
//! - Go: `benches/go/echo`, a goroutine per connection, `GOMAXPROCS=2`, when Go is found.
//!
//! The load generator is this crate's own (`xtask loadgen`, built in release and run as a process
//! of its own): C connections spread over 2 threads, each connection sending a 64-byte message
//! (or an HTTP/1.1 GET) and waiting for the whole answer before it sends the next; a fixed
//! warm-up, then a fixed measuring window, reporting round trips per second and the p50/p99
//! latency of the round trips completed in the window. Memory per idle connection: the server's
//! `VmRSS` before and after 10,000 connections have each done one round trip, divided by
//! 10,000: read 0.5 s after the last connection, and again once all have been idle 5 s.
//!
//! The table goes to `target/xtask/bench/net/results.md`, the chart to `results.svg`. Server and
//! load generator share the machine, so compare ratios within one run.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use crate::{cargo, tail, workspace_root};

const WORKERS: usize = 2;
const LOAD_THREADS: usize = 2;
const MESSAGE: usize = 64;
const IDLE_CONNS: usize = 10_000;
const HTTP_CONNS: usize = 1_000;
/// Rounds of each load in a full run (a quick run does one).
const ROUNDS: usize = 3;
const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Server {
    Pagurus,
    Tokio,
    Go,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Pagurus => "pagurus",
            Server::Tokio => "tokio",
            Server::Go => "Go",
        }
    }
}

/// What one load run measured.
#[derive(Clone, Copy, Debug, Default)]
struct Load {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
    /// Rounds this is the median of (1 for a single run), and the range of their rates.
    rounds: usize,
    min_per_sec: f64,
    max_per_sec: f64,
}

impl Load {
    /// Each figure's median over `runs` (the middle one, or the mean of the middle two), and the
    /// range of the rates.
    fn median(runs: &[Load]) -> Load {
        let mid = |f: fn(&Load) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        };
        let rates = runs.iter().map(|l| l.per_sec);
        Load {
            per_sec: mid(|l| l.per_sec),
            p50_us: mid(|l| l.p50_us),
            p99_us: mid(|l| l.p99_us),
            errors: runs.iter().map(|l| l.errors).sum(),
            rounds: runs.len(),
            min_per_sec: rates.clone().fold(f64::INFINITY, f64::min),
            max_per_sec: rates.fold(0.0, f64::max),
        }
    }
}

/// Which load a server answers.
#[derive(Clone, Copy)]
enum Kind {
    Echo,
    Http,
}

/// Runs each of `loads` (a key, the server, its connections) `rounds` times, the loads taking
/// turns within each round so that a slow stretch of the shared machine hits each of them
/// alike, and returns each key's median.
fn median_of_rounds<K: Copy + Eq + std::hash::Hash>(
    bins: &Binaries,
    kind: Kind,
    loads: &[(K, Server, usize)],
    rounds: usize,
    warmup: Duration,
    window: Duration,
) -> Result<HashMap<K, Load>, String> {
    let (label, mode, http) = match kind {
        Kind::Echo => ("echo", "echo", false),
        Kind::Http => ("HTTP hello", "http", true),
    };
    let mut runs: HashMap<K, Vec<Load>> = HashMap::new();
    for round in 1..=rounds {
        for &(key, server, conns) in loads {
            eprintln!(
                "xtask bench net: {label}, {} at C = {conns}, round {round} of {rounds}",
                server.name()
            );
            let load = with_server(bins, server, http, |addr| {
                run_load(&bins.loadgen, addr, mode, conns, warmup, window)
            })?;
            runs.entry(key).or_default().push(load);
        }
    }
    Ok(runs
        .into_iter()
        .map(|(key, runs)| (key, Load::median(&runs)))
        .collect())
}

/// The binaries of one run.
struct Binaries {
    echo: PathBuf,
    http: PathBuf,
    tokio: PathBuf,
    go: Option<PathBuf>,
    loadgen: PathBuf,
}

/// `cargo xtask bench net [--quick]`.
pub fn bench(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    let (warmup, window, rounds) = if quick {
        (Duration::from_millis(300), Duration::from_secs(1), 1)
    } else {
        (Duration::from_secs(2), Duration::from_secs(5), ROUNDS)
    };
    let root = workspace_root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out_dir = target.join("xtask").join("bench").join("net");
    fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let clock = Instant::now();
    let bins = build(&root, &target, &out_dir)?;
    let mut notes = Vec::new();
    if bins.go.is_none() {
        notes.push("Go not measured: no Go toolchain found (see `xtask/src/go.rs`).".to_owned());
    }
    let mut servers = vec![Server::Pagurus, Server::Tokio];
    if bins.go.is_some() {
        servers.push(Server::Go);
    }

    let echo_loads: Vec<((Server, usize), Server, usize)> = [100, 1_000, 5_000]
        .into_iter()
        .flat_map(|conns| servers.iter().map(move |&s| ((s, conns), s, conns)))
        .collect();
    let echo = median_of_rounds(&bins, Kind::Echo, &echo_loads, rounds, warmup, window)?;
    let mut memory: HashMap<Server, IdleMemory> = HashMap::new();
    for &server in &servers {
        eprintln!(
            "xtask bench net: memory, {} with {IDLE_CONNS} idle connections",
            server.name()
        );
        let bytes = with_server_pid(&bins, server, false, |addr, pid| {
            idle_memory(&bins.loadgen, addr, pid)
        })?;
        memory.insert(server, bytes);
    }
    let http_loads: Vec<(Server, Server, usize)> = [Server::Pagurus, Server::Tokio]
        .into_iter()
        .map(|s| (s, s, HTTP_CONNS))
        .collect();
    let http = median_of_rounds(&bins, Kind::Http, &http_loads, rounds, warmup, window)?;

    let md = markdown(&servers, &echo, &memory, &http, quick, &notes);
    let svg = svg(&servers, &echo, &http);
    let md_path = out_dir.join("results.md");
    let svg_path = out_dir.join("results.svg");
    fs::write(&md_path, &md).map_err(|e| format!("cannot write {}: {e}", md_path.display()))?;
    fs::write(&svg_path, svg).map_err(|e| format!("cannot write {}: {e}", svg_path.display()))?;
    println!(
        "\n{md}\nwritten to {} and {} ({:.0} s in all)",
        md_path.display(),
        svg_path.display(),
        clock.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds the servers and the load generator (release).
fn build(root: &Path, target: &Path, out_dir: &Path) -> Result<Binaries, String> {
    eprintln!("xtask bench net: building the servers and the load generator (release)");
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run the build of {what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "building {what} failed:\n{}",
                tail(&out.stderr, 30)
            ))
        }
    };
    run(
        cargo().current_dir(root).args([
            "build",
            "--release",
            "--package",
            "pagurus",
            "--example",
            "echo",
            "--example",
            "http_hello",
        ]),
        "the pagurus examples",
    )?;
    run(
        cargo()
            .current_dir(root)
            .args(["build", "--release", "--package", "xtask"]),
        "the load generator",
    )?;
    let peers_target = target.join("xtask").join("peers");
    run(
        cargo().current_dir(root.join("benches/peers")).args([
            "build",
            "--release",
            "--target-dir",
            peers_target.to_str().ok_or("target dir is not UTF-8")?,
        ]),
        "the tokio peer (benches/peers)",
    )?;
    let go = match crate::go::discover() {
        crate::go::Found::At { go, .. } => {
            let bin = out_dir.join("go-echo");
            run(
                Command::new(&go)
                    .current_dir(root.join("benches/go"))
                    .env("GOFLAGS", "-mod=mod")
                    .args(["build", "-o"])
                    .arg(&bin)
                    .arg("./echo"),
                "the Go echo server (benches/go/echo)",
            )?;
            Some(bin)
        }
        _ => None,
    };
    let release = target.join("release");
    Ok(Binaries {
        echo: release.join("examples/echo"),
        http: release.join("examples/http_hello"),
        tokio: peers_target.join("release/peer-tokio"),
        go,
        loadgen: release.join("xtask"),
    })
}

/// A server process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `server` on a free loopback port, waits until it accepts, and runs `f` with its
/// address and pid.
fn with_server_pid<T>(
    bins: &Binaries,
    server: Server,
    http: bool,
    f: impl FnOnce(SocketAddr, u32) -> Result<T, String>,
) -> Result<T, String> {
    let addr = free_port()?;
    let a = addr.to_string();
    let w = WORKERS.to_string();
    let mut cmd = match (server, http) {
        (Server::Pagurus, false) => Command::new(&bins.echo),
        (Server::Pagurus, true) => Command::new(&bins.http),
        (Server::Tokio, _) => {
            let mut c = Command::new(&bins.tokio);
            c.arg(if http { "http" } else { "echo" });
            c
        }
        (Server::Go, _) => {
            let mut c = Command::new(bins.go.as_ref().ok_or("no Go echo server")?);
            c.env("GOMAXPROCS", &w);
            c
        }
    };
    cmd.arg(&a);
    if server != Server::Go {
        cmd.arg(&w);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the {} server: {e}", server.name()))?;
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "the {} server did not start listening on {addr}",
                server.name()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the probe connection's coroutine finish before anything is measured.
    std::thread::sleep(Duration::from_millis(100));
    let result = f(addr, running.0.id());
    drop(running);
    result
}

fn with_server<T>(
    bins: &Binaries,
    server: Server,
    http: bool,
    f: impl FnOnce(SocketAddr) -> Result<T, String>,
) -> Result<T, String> {
    with_server_pid(bins, server, http, |addr, _| f(addr))
}

fn free_port() -> Result<SocketAddr, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map_err(|e| e.to_string())
}

/// Runs the load generator against `addr` and parses its report.
fn run_load(
    loadgen: &Path,
    addr: SocketAddr,
    mode: &str,
    conns: usize,
    warmup: Duration,
    window: Duration,
) -> Result<Load, String> {
    let out = Command::new(loadgen)
        .args([
            "loadgen",
            mode,
            &addr.to_string(),
            &conns.to_string(),
            &warmup.as_millis().to_string(),
            &window.as_millis().to_string(),
        ])
        .output()
        .map_err(|e| format!("cannot run the load generator: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "the load generator failed ({}):\n{}",
            out.status,
            tail(&out.stderr, 20)
        ));
    }
    let field = |key: &str| -> Result<f64, String> {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("the load generator printed no {key}: {text}"))
    };
    let per_sec = field("per_sec")?;
    Ok(Load {
        per_sec,
        p50_us: field("p50_us")?,
        p99_us: field("p99_us")?,
        errors: field("errors")? as u64,
        rounds: 1,
        min_per_sec: per_sec,
        max_per_sec: per_sec,
    })
}

fn vm_rss(pid: u32) -> Result<u64, String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Server RSS growth per connection with `IDLE_CONNS` connections open: shortly after the last
/// one did its round trip, and once they have all been idle for [`IDLE_SETTLE`].
#[derive(Clone, Copy, Debug)]
struct IdleMemory {
    fresh: f64,
    settled: f64,
}

/// How long the idle connections sit before the second reading: long enough for a runtime
/// that gives idle memory back (pagurus compacts coroutines parked for a second and unmaps the
/// stacks that frees over the next seconds; Go's scavenger works in the background) to have
/// done so.
const IDLE_SETTLE: Duration = Duration::from_secs(5);

fn idle_memory(loadgen: &Path, addr: SocketAddr, pid: u32) -> Result<IdleMemory, String> {
    let before = vm_rss(pid)?;
    let mut child = Command::new(loadgen)
        .args([
            "loadgen",
            "idle",
            &addr.to_string(),
            &IDLE_CONNS.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run the load generator: {e}"))?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let ready = lines.next().and_then(Result::ok).unwrap_or_default();
    let per_conn = |after: u64| after.saturating_sub(before) as f64 / IDLE_CONNS as f64;
    let result = if ready.trim() == "idle-ready" {
        std::thread::sleep(Duration::from_millis(500));
        vm_rss(pid).map(per_conn).and_then(|fresh| {
            std::thread::sleep(IDLE_SETTLE - Duration::from_millis(500));
            let settled = per_conn(vm_rss(pid)?);
            Ok(IdleMemory { fresh, settled })
        })
    } else {
        Err(format!(
            "the load generator did not open its connections: {ready:?}"
        ))
    };
    drop(child.stdin.take()); // EOF: the load generator closes everything and exits
    let _ = child.wait();
    result
}

// ---------------------------------------------------------------------------------------------
// The report.
// ---------------------------------------------------------------------------------------------

fn rate(l: &Load) -> String {
    format!("{:.1}k/s", l.per_sec / 1e3)
}

/// The range of a median's rounds (nothing for a single round).
fn spread(l: &Load) -> String {
    if l.rounds > 1 {
        format!(
            ", {:.1}k-{:.1}k over {} rounds",
            l.min_per_sec / 1e3,
            l.max_per_sec / 1e3,
            l.rounds
        )
    } else {
        String::new()
    }
}

fn markdown(
    servers: &[Server],
    echo: &HashMap<(Server, usize), Load>,
    memory: &HashMap<Server, IdleMemory>,
    http: &HashMap<Server, Load>,
    quick: bool,
    notes: &[String],
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Network I/O: echo and HTTP hello, {WORKERS} server threads{}\n",
        if quick { " (quick run)" } else { "" }
    );
    let mut head = "| benchmark |".to_owned();
    let mut rule = "|---|".to_owned();
    for s in servers {
        let _ = write!(head, " {} |", s.name());
        rule.push_str("---:|");
    }
    head.push_str(" pagurus / tokio | target | met |");
    rule.push_str("---:|---|---|");
    let _ = writeln!(md, "{head}\n{rule}");
    for conns in [100, 1_000, 5_000] {
        let mut row = format!("| echo round trips, C = {conns} |");
        for s in servers {
            let l = &echo[&(*s, conns)];
            let _ = write!(
                row,
                " {} (p50 {:.0} us, p99 {:.0} us{}{}) |",
                rate(l),
                l.p50_us,
                l.p99_us,
                spread(l),
                if l.errors > 0 {
                    format!(", {} errors", l.errors)
                } else {
                    String::new()
                }
            );
        }
        let ratio = echo[&(Server::Pagurus, conns)].per_sec / echo[&(Server::Tokio, conns)].per_sec;
        let _ = writeln!(
            md,
            "{row} {ratio:.2} | >= tokio | {} |",
            if ratio >= 1.0 { "yes" } else { "no" }
        );
    }
    let mut row = format!("| bytes per connection ({IDLE_CONNS} open, 0.5 s after the last) |");
    for s in servers {
        let _ = write!(row, " {:.0} B |", memory[s].fresh);
    }
    let ratio = memory[&Server::Pagurus].fresh / memory[&Server::Tokio].fresh;
    let _ = writeln!(md, "{row} {ratio:.2} | - | - |");
    let mut row = format!(
        "| bytes per idle connection ({IDLE_CONNS} open, idle {} s) |",
        IDLE_SETTLE.as_secs()
    );
    for s in servers {
        let _ = write!(row, " {:.0} B |", memory[s].settled);
    }
    let settled = memory[&Server::Pagurus].settled;
    let ratio = settled / memory[&Server::Tokio].settled;
    let _ = writeln!(
        md,
        "{row} {ratio:.2} | <= 3,000 B | {} |",
        if settled <= 3000.0 { "yes" } else { "no" }
    );
    let mut row = format!("| HTTP hello requests, C = {HTTP_CONNS} |");
    for s in servers {
        match http.get(s) {
            Some(l) => {
                let _ = write!(
                    row,
                    " {} (p50 {:.0} us, p99 {:.0} us{}) |",
                    rate(l),
                    l.p50_us,
                    l.p99_us,
                    spread(l)
                );
            }
            None => row.push_str(" - |"),
        }
    }
    let ratio = http[&Server::Pagurus].per_sec / http[&Server::Tokio].per_sec;
    let _ = writeln!(md, "{row} {ratio:.2} | next to tokio | - |");
    let _ = writeln!(
        md,
        "\nServers and the load generator (2 threads, {MESSAGE}-byte messages, one in flight per \
         connection) share this machine: compare ratios within a run. {}",
        if quick {
            "One round of each load.".to_owned()
        } else {
            format!(
                "Each load ran {ROUNDS} times, the servers taking turns; the figures are the \
                 medians, with the range of the rates."
            )
        }
    );
    for n in notes {
        let _ = writeln!(md, "\n{n}");
    }
    md
}

/// Grouped bars: round trips (or requests) per second per server, one group per load.
fn svg(
    servers: &[Server],
    echo: &HashMap<(Server, usize), Load>,
    http: &HashMap<Server, Load>,
) -> String {
    let groups: Vec<(String, Vec<Option<f64>>)> = [100, 1_000, 5_000]
        .iter()
        .map(|&c| {
            (
                format!("echo C={c}"),
                servers
                    .iter()
                    .map(|s| echo.get(&(*s, c)).map(|l| l.per_sec))
                    .collect(),
            )
        })
        .chain(std::iter::once((
            format!("HTTP C={HTTP_CONNS}"),
            servers
                .iter()
                .map(|s| http.get(s).map(|l| l.per_sec))
                .collect(),
        )))
        .collect();
    let max = groups
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(1.0f64, |a, &b| a.max(b));
    let colors = ["#c0392b", "#2c3e50", "#16a085"];
    let (w, h, top, bottom, left) = (760.0, 340.0, 40.0, 50.0, 60.0);
    let plot_h = h - top - bottom;
    let group_w = (w - left - 20.0) / groups.len() as f64;
    let bar_w = group_w * 0.8 / servers.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <text x=\"{left}\" y=\"20\" font-size=\"14\">Round trips / requests per second \
         (higher is better), {WORKERS} server threads</text>\n"
    );
    for (gi, (label, values)) in groups.iter().enumerate() {
        let gx = left + gi as f64 * group_w + group_w * 0.1;
        for (si, v) in values.iter().enumerate() {
            let Some(v) = v else { continue };
            let bh = plot_h * v / max;
            let x = gx + si as f64 * bar_w;
            let y = top + plot_h - bh;
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{:.0}k</text>",
                bar_w - 2.0,
                colors[si % colors.len()],
                x + bar_w / 2.0,
                y - 3.0,
                v / 1e3
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            gx + group_w * 0.4,
            h - bottom + 18.0
        );
    }
    for (si, server) in servers.iter().enumerate() {
        let x = left + si as f64 * 110.0;
        let _ = writeln!(
            s,
            "<rect x=\"{x}\" y=\"{:.0}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.0}\" y=\"{:.0}\">{}</text>",
            h - 20.0,
            colors[si % colors.len()],
            x + 16.0,
            h - 10.0,
            server.name()
        );
    }
    s.push_str("</svg>\n");
    s
}

// ---------------------------------------------------------------------------------------------
// The load generator: `xtask loadgen echo|http ADDR CONNS WARMUP_MS WINDOW_MS`, or
// `xtask loadgen idle ADDR CONNS` (open, one round trip each, print `idle-ready`, hold until
// stdin closes).
// ---------------------------------------------------------------------------------------------

pub fn loadgen_main(args: &[String]) -> ExitCode {
    match loadgen(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask loadgen: {err}");
            ExitCode::FAILURE
        }
    }
}

fn loadgen(args: &[String]) -> Result<(), String> {
    let usage = "usage: xtask loadgen echo|http ADDR CONNS WARMUP_MS WINDOW_MS | idle ADDR CONNS";
    let mode = args.first().ok_or(usage)?.as_str();
    let addr: SocketAddr = args.get(1).and_then(|a| a.parse().ok()).ok_or(usage)?;
    let conns: usize = args.get(2).and_then(|a| a.parse().ok()).ok_or(usage)?;
    if mode == "idle" {
        return hold_idle(addr, conns);
    }
    let ms = |i: usize| -> Result<Duration, String> {
        Ok(Duration::from_millis(
            args.get(i).and_then(|a| a.parse().ok()).ok_or(usage)?,
        ))
    };
    let (warmup, window) = (ms(3)?, ms(4)?);
    let http = match mode {
        "echo" => false,
        "http" => true,
        _ => return Err(usage.into()),
    };
    let barrier = Arc::new(Barrier::new(LOAD_THREADS + 1));
    let threads: Vec<_> = (0..LOAD_THREADS)
        .map(|t| {
            let n = conns / LOAD_THREADS + usize::from(t < conns % LOAD_THREADS);
            let barrier = barrier.clone();
            std::thread::spawn(move || drive(addr, n, http, warmup, window, &barrier))
        })
        .collect();
    barrier.wait();
    let mut lat = Vec::new();
    let mut done = 0u64;
    let mut errors = 0u64;
    for t in threads {
        let r = t.join().map_err(|_| "a load thread panicked")??;
        done += r.0;
        errors += r.1;
        lat.extend(r.2);
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p) as usize] as f64
        }
    };
    println!(
        "conns={conns} per_sec={:.0} p50_us={:.0} p99_us={:.0} errors={errors}",
        done as f64 / window.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}

struct Conn {
    stream: MioStream,
    sent_at: Instant,
    /// Bytes of the current answer received so far (echo), or the answer itself (HTTP).
    got: usize,
    rbuf: Vec<u8>,
    /// Unsent tail of the current request.
    pending: &'static [u8],
    live: bool,
}

fn connect_blocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut tries = 0;
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return Ok(s),
            // A full accept queue refuses or times out for a moment: retry a few times.
            Err(e) if tries < 50 => {
                tries += 1;
                if tries == 50 {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// One load thread: opens `n` connections, waits at the barrier, then keeps one request in
/// flight on each until the window ends. Returns (round trips in the window, errors,
/// latencies in microseconds).
fn drive(
    addr: SocketAddr,
    n: usize,
    http: bool,
    warmup: Duration,
    window: Duration,
    barrier: &Barrier,
) -> Result<(u64, u64, Vec<u32>), String> {
    static ECHO: [u8; MESSAGE] = [b'x'; MESSAGE];
    let request: &'static [u8] = if http { HTTP_REQUEST } else { &ECHO };
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut conns = Vec::with_capacity(n);
    let mut connect_error = None;
    for i in 0..n {
        match connect_blocking(addr) {
            Ok(s) => {
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                let mut stream = MioStream::from_std(s);
                poll.registry()
                    .register(
                        &mut stream,
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .map_err(|e| e.to_string())?;
                conns.push(Conn {
                    stream,
                    sent_at: Instant::now(),
                    got: 0,
                    rbuf: Vec::new(),
                    pending: &[],
                    live: true,
                });
            }
            Err(e) => {
                connect_error = Some(format!("connect {i}: {e}"));
                break;
            }
        }
    }
    barrier.wait();
    if let Some(e) = connect_error {
        return Err(e);
    }
    let start = Instant::now();
    let (from, until) = (start + warmup, start + warmup + window);
    let mut lat = Vec::with_capacity(1 << 20);
    let mut done = 0u64;
    let mut errors = 0u64;
    for c in &mut conns {
        c.sent_at = Instant::now();
        c.pending = request;
        flush(c, &mut errors);
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some(until - now))
            && e.kind() != io::ErrorKind::Interrupted
        {
            return Err(e.to_string());
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if !c.live {
                continue;
            }
            if ev.is_writable() && !c.pending.is_empty() {
                flush(c, &mut errors);
            }
            if !ev.is_readable() {
                continue;
            }
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        c.live = false;
                        errors += 1;
                        break;
                    }
                    Ok(k) => {
                        let complete = if http {
                            c.rbuf.extend_from_slice(&buf[..k]);
                            match http_response_len(&c.rbuf) {
                                Some(len) => {
                                    c.rbuf.drain(..len);
                                    true
                                }
                                None => false,
                            }
                        } else {
                            c.got += k;
                            if c.got >= MESSAGE {
                                c.got -= MESSAGE;
                                true
                            } else {
                                false
                            }
                        };
                        if complete {
                            let now = Instant::now();
                            if now >= from && now < until {
                                done += 1;
                                lat.push(now.duration_since(c.sent_at).as_micros() as u32);
                            }
                            c.sent_at = now;
                            c.pending = request;
                            flush(c, &mut errors);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        c.live = false;
                        errors += 1;
                        break;
                    }
                }
            }
        }
    }
    Ok((done, errors, lat))
}

/// Writes what is pending of a connection's request, leaving the rest for its next writable event.
fn flush(c: &mut Conn, errors: &mut u64) {
    while !c.pending.is_empty() {
        match c.stream.write(c.pending) {
            Ok(k) => c.pending = &c.pending[k..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                c.live = false;
                *errors += 1;
                return;
            }
        }
    }
}

/// The length of the complete HTTP response at the start of `buf`, if it is all there.
fn http_response_len(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..head]).ok()?;
    let body = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head + body).then_some(head + body)
}

/// Opens `conns` connections, does one echo round trip on each, prints `idle-ready`, and holds
/// them until stdin closes.
fn hold_idle(addr: SocketAddr, conns: usize) -> Result<(), String> {
    let threads: Vec<_> = (0..LOAD_THREADS)
        .map(|t| {
            let n = conns / LOAD_THREADS + usize::from(t < conns % LOAD_THREADS);
            std::thread::spawn(move || -> Result<Vec<TcpStream>, String> {
                let mut open = Vec::with_capacity(n);
                for i in 0..n {
                    let mut s = connect_blocking(addr).map_err(|e| format!("connect {i}: {e}"))?;
                    s.write_all(&[b'i'; MESSAGE]).map_err(|e| e.to_string())?;
                    let mut back = [0; MESSAGE];
                    s.read_exact(&mut back).map_err(|e| e.to_string())?;
                    open.push(s);
                }
                Ok(open)
            })
        })
        .collect();
    let mut open = Vec::new();
    for t in threads {
        open.extend(t.join().map_err(|_| "a connecting thread panicked")??);
    }
    println!("idle-ready");
    io::stdout().flush().map_err(|e| e.to_string())?;
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    drop(open);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Load;

    fn load(per_sec: f64, p99_us: f64) -> Load {
        Load {
            per_sec,
            p50_us: per_sec / 1e3,
            p99_us,
            errors: 1,
            rounds: 1,
            min_per_sec: per_sec,
            max_per_sec: per_sec,
        }
    }

    #[test]
    fn median_takes_each_figure_s_middle_and_keeps_the_range() {
        let m = Load::median(&[load(90.0, 5.0), load(70.0, 9.0), load(110.0, 1.0)]);
        assert_eq!((m.per_sec, m.p50_us, m.p99_us), (90.0, 0.09, 5.0));
        assert_eq!(
            (m.min_per_sec, m.max_per_sec, m.rounds, m.errors),
            (70.0, 110.0, 3, 3)
        );
        let m = Load::median(&[load(80.0, 4.0), load(60.0, 2.0)]);
        assert_eq!((m.per_sec, m.p99_us), (70.0, 3.0));
    }
}
