//! Coroutine dumps (`pagurus::dump()`): wait reasons, spawn sites and frames of parked
//! coroutines; dumps taken while coroutines churn; the dump signal (in child processes, which
//! re-run this test binary with `PAGURUS_DUMP_CASE` set); bad `PAGURUS_DUMP_SIGNAL` values.

use std::collections::HashSet;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::panic::Location;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pagurus::sync::{Condvar, Semaphore, WaitGroup};
use pagurus::{CoroutineSnapshot, CoroutineState, Dump, WaitReason};

const CASE: &str = "PAGURUS_DUMP_CASE";

#[inline(never)]
fn parked_in_join(h: pagurus::JoinHandle<()>) {
    h.join().unwrap();
    black_box(());
}

#[inline(never)]
fn parked_in_channel(rx: pagurus::channel::Receiver<u32>) {
    let _ = rx.recv();
    black_box(());
}

#[inline(never)]
fn parked_in_mutex(m: &pagurus::sync::Mutex<u32>) {
    *m.lock() += 1;
    black_box(());
}

#[inline(never)]
fn parked_in_condvar(pair: &(pagurus::sync::Mutex<bool>, Condvar)) {
    let guard = pair.0.lock();
    let guard = pair.1.wait_while(guard, |ready| !*ready);
    black_box(&*guard);
}

#[inline(never)]
fn parked_in_semaphore(s: &Semaphore) {
    let permit = s.acquire();
    black_box(&permit);
}

#[inline(never)]
fn parked_in_wait_group(wg: &WaitGroup) {
    wg.wait();
    black_box(());
}

#[inline(never)]
fn parked_in_sleep() {
    pagurus::time::sleep(Duration::from_secs(3600));
    black_box(());
}

#[inline(never)]
fn parked_in_io(mut stream: pagurus::net::TcpStream) {
    let mut byte = [0u8; 1];
    let _ = stream.read(&mut byte);
    black_box(byte);
}

#[inline(never)]
fn parked_in_foreign_call(release: &AtomicBool) {
    pagurus::offload::run(|| {
        while !release.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    black_box(());
}

#[inline(never)]
fn parked_in_future(rx: async_channel::Receiver<u32>) {
    let _ = pagurus::future::block_on(rx.recv());
    black_box(());
}

/// Spawns `f` and returns the caller's line: `spawn` is `#[track_caller]`, and so is this
/// helper, so the coroutine's spawn site is the caller's line too.
#[track_caller]
fn spawn_here<F: FnOnce() + Send + 'static>(f: F) -> (u32, pagurus::JoinHandle<()>) {
    (Location::caller().line(), pagurus::spawn(f))
}

/// [`spawn_here`] for a coroutine with a result.
#[track_caller]
fn spawn_returning<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (u32, pagurus::JoinHandle<T>) {
    (Location::caller().line(), pagurus::spawn(f))
}

/// Takes dumps until every id in `ids` is parked (a condition, not a duration).
fn dump_when_parked(ids: &[u64]) -> Dump {
    loop {
        let dump = pagurus::dump();
        let parked = ids.iter().all(|id| {
            dump.coroutines()
                .iter()
                .any(|c| c.id == *id && matches!(c.state, CoroutineState::Parked(_)))
        });
        if parked {
            return dump;
        }
        pagurus::time::sleep(Duration::from_millis(5));
    }
}

fn find(dump: &Dump, id: u64) -> &CoroutineSnapshot {
    dump.coroutines()
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("coroutine {id} not in the dump:\n{dump}"))
}

#[test]
fn dump_names_each_wait_reason_spawn_line_and_function() {
    // Idle compaction off: on a loaded machine the coroutines may wait a second before all of
    // them are parked, and this case checks uncompacted stacks.
    let builder = pagurus::Runtime::builder().workers(2).idle_compaction(None);
    names_each_wait_reason(builder, false);
}

/// The same with every parked coroutine compacted (its frames walked in a scratch copy of its
/// heap image).
#[test]
fn dump_walks_compacted_coroutines_too() {
    let builder = pagurus::Runtime::builder()
        .workers(2)
        .parked_stack_budget(0);
    names_each_wait_reason(builder, true);
}

fn names_each_wait_reason(builder: pagurus::Builder, compacted: bool) {
    let rt = builder.build().unwrap();
    let main_line = line!() + 1;
    rt.block_on(|| {
        let mut cases: Vec<(u64, WaitReason, u32, &str)> = Vec::new();

        let (tx_j, rx_j) = pagurus::channel::bounded::<u32>(1);
        let joined = pagurus::spawn(move || {
            let _ = rx_j.recv();
        });
        let (line, h) = spawn_here(move || parked_in_join(joined));
        cases.push((h.id(), WaitReason::Join, line, "parked_in_join"));
        let mut handles = vec![h];

        let (tx, rx) = pagurus::channel::bounded::<u32>(1);
        let (line, h) = spawn_here(move || parked_in_channel(rx));
        cases.push((h.id(), WaitReason::Channel, line, "parked_in_channel"));
        handles.push(h);

        let mutex = Arc::new(pagurus::sync::Mutex::new(0));
        let held = mutex.lock();
        let m = mutex.clone();
        let (line, h) = spawn_here(move || parked_in_mutex(&m));
        cases.push((h.id(), WaitReason::Mutex, line, "parked_in_mutex"));
        handles.push(h);

        let pair = Arc::new((pagurus::sync::Mutex::new(false), Condvar::new()));
        let p = pair.clone();
        let (line, h) = spawn_here(move || parked_in_condvar(&p));
        cases.push((h.id(), WaitReason::Condvar, line, "parked_in_condvar"));
        handles.push(h);

        let sem = Arc::new(Semaphore::new(0));
        let s = sem.clone();
        let (line, h) = spawn_here(move || parked_in_semaphore(&s));
        cases.push((h.id(), WaitReason::Semaphore, line, "parked_in_semaphore"));
        handles.push(h);

        let wg = Arc::new(WaitGroup::new());
        wg.add(1);
        let w = wg.clone();
        let (line, h) = spawn_here(move || parked_in_wait_group(&w));
        cases.push((h.id(), WaitReason::WaitGroup, line, "parked_in_wait_group"));
        handles.push(h);

        let (line, sleeper) = spawn_here(parked_in_sleep);
        cases.push((sleeper.id(), WaitReason::Sleep, line, "parked_in_sleep"));

        let listener = pagurus::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (line, h) =
            spawn_here(move || parked_in_io(pagurus::net::TcpStream::connect(addr).unwrap()));
        cases.push((h.id(), WaitReason::Io, line, "parked_in_io"));
        handles.push(h);
        let (mut peer, _) = listener.accept().unwrap();

        let release = Arc::new(AtomicBool::new(false));
        let r = release.clone();
        let (line, h) = spawn_here(move || parked_in_foreign_call(&r));
        cases.push((
            h.id(),
            WaitReason::ForeignCall,
            line,
            "parked_in_foreign_call",
        ));
        handles.push(h);

        let (atx, arx) = async_channel::bounded::<u32>(1);
        let (line, h) = spawn_here(move || parked_in_future(arx));
        cases.push((h.id(), WaitReason::Future, line, "parked_in_future"));
        handles.push(h);

        let ids: Vec<u64> = cases.iter().map(|c| c.0).collect();
        let dump = dump_when_parked(&ids);
        let text = dump.to_string();
        for &(id, reason, line, function) in &cases {
            let c = find(&dump, id);
            assert_eq!(c.state, CoroutineState::Parked(reason), "{text}");
            assert!(c.spawned_at.file().ends_with("dump.rs"), "{text}");
            assert_eq!(c.spawned_at.line(), line, "{text}");
            assert!(c.worker.is_some(), "{text}");
            assert!(c.stack.used > 0, "{text}");
            if compacted && reason != WaitReason::ForeignCall {
                // An offloaded call pins its stack: never compacted.
                assert_eq!(c.stack.size, 0, "{text}");
                assert!(text.contains(&format!("coroutine {id} [")), "{text}");
            } else {
                assert!(c.stack.size >= 4096, "{text}");
            }
            assert!(
                c.frames
                    .iter()
                    .any(|f| f.function.as_deref().is_some_and(|n| n.ends_with(function))),
                "coroutine {id}: no frame in {function}:\n{text}"
            );
            let header = format!("coroutine {id} [parked: {reason}");
            assert!(text.contains(&header), "{header:?} not in:\n{text}");
            assert!(
                text.contains(&format!("dump.rs:{line}, worker")),
                "spawn line {line} of {id} not in:\n{text}"
            );
            assert!(text.contains(function), "{function} not in:\n{text}");
        }
        // The runtime's own frames (the switch, the park machinery) are folded away: each
        // parked coroutine's innermost frame is its own code.
        for &(id, _, _, _) in &cases {
            let first = find(&dump, id)
                .frames
                .first()
                .and_then(|f| f.function.clone());
            let first = first.unwrap_or_default();
            assert!(
                !first.starts_with("pagurus_runtime::"),
                "coroutine {id} starts in {first}:\n{text}"
            );
        }
        // The caller (this main coroutine) is running, without frames. (The other test that
        // runs this function has a main coroutine spawned at the same line, maybe parked.)
        assert!(
            dump.coroutines().iter().any(|c| c.worker.is_none()
                && c.started
                && c.spawned_at.line() == main_line
                && c.state == CoroutineState::Running),
            "{text}"
        );
        let running_with_frames = dump
            .coroutines()
            .iter()
            .find(|c| c.state == CoroutineState::Running && !c.frames.is_empty());
        assert!(running_with_frames.is_none(), "{text}");

        // Parks are time-stamped once the process has taken a dump: a second one tells how
        // long (no bound asserted on the duration itself).
        let again = pagurus::dump();
        assert!(find(&again, sleeper.id()).parked_for.is_some(), "{again}");

        // Let everything go.
        tx_j.send(1).unwrap();
        tx.send(1).unwrap();
        drop(held);
        *pair.0.lock() = true;
        pair.1.notify_all();
        sem.add_permits(1);
        wg.done();
        peer.write_all(b"x").unwrap();
        release.store(true, SeqCst);
        atx.send_blocking(1).unwrap();
        for h in handles {
            h.join().unwrap();
        }
        drop(sleeper); // cancelled with the runtime
    });
}

#[inline(never)]
fn grow_and_finish(kib: u64) -> u64 {
    let frame = black_box([kib as u8; 1024]);
    if kib == 0 {
        pagurus::yield_now();
        return frame[0] as u64;
    }
    grow_and_finish(kib - 1) + frame[1] as u64
}

/// Spawns one churning coroutine; returns the line of the `spawn` (its spawn site).
fn churn_spawn(kib: u64) -> (u32, pagurus::JoinHandle<u64>) {
    (line!(), pagurus::spawn(move || grow_and_finish(kib)))
}

#[test]
fn dumps_during_churn_report_only_live_coroutines() {
    let rt = pagurus::Runtime::builder().workers(2).build().unwrap();
    let joined = Arc::new(Mutex::new(HashSet::<u64>::new()));
    let spawned = Arc::new(Mutex::new(HashSet::<u64>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let dumps = Arc::new(AtomicUsize::new(0));
    let reported = Arc::new(Mutex::new(HashSet::<(u64, u32)>::new()));

    // A plain thread dumps while the coroutines churn.
    let dumper = {
        let (joined, done, dumps, reported) = (
            joined.clone(),
            done.clone(),
            dumps.clone(),
            reported.clone(),
        );
        std::thread::spawn(move || {
            while !done.load(SeqCst) || dumps.load(SeqCst) < 3 {
                let before = joined.lock().unwrap().clone();
                let dump = pagurus::dump();
                let _ = dump.to_string();
                for c in dump.coroutines() {
                    assert!(
                        !before.contains(&c.id),
                        "coroutine {} was joined before the dump started:\n{dump}",
                        c.id
                    );
                    if c.spawned_at.file().ends_with("dump.rs") {
                        reported.lock().unwrap().insert((c.id, c.spawned_at.line()));
                    }
                }
                dumps.fetch_add(1, SeqCst);
            }
        })
    };

    let site = rt.block_on(|| {
        // A coroutine dumps too (it parks while its own worker answers).
        let (stop_tx, stop_rx) = pagurus::channel::bounded::<()>(1);
        let inner_dumper = pagurus::spawn(move || {
            let mut n = 0;
            while stop_rx.try_recv().is_err() || n < 3 {
                let dump = pagurus::dump();
                let me = dump
                    .coroutines()
                    .iter()
                    .find(|c| c.state == CoroutineState::Running);
                assert!(
                    me.is_some(),
                    "the dumping coroutine reports itself running:\n{dump}"
                );
                n += 1;
            }
        });
        let mut site = 0;
        for batch in 0..20 {
            let handles: Vec<_> = (0..50u64)
                .map(|i| {
                    let (line, h) = churn_spawn((i + batch) % 24);
                    site = line;
                    h
                })
                .collect();
            spawned
                .lock()
                .unwrap()
                .extend(handles.iter().map(|h| h.id()));
            for h in handles {
                let id = h.id();
                h.join().unwrap();
                joined.lock().unwrap().insert(id);
            }
        }
        stop_tx.send(()).unwrap();
        spawned.lock().unwrap().insert(inner_dumper.id());
        inner_dumper.join().unwrap();
        site
    });
    done.store(true, SeqCst);
    dumper.join().unwrap();
    let spawned = spawned.lock().unwrap();
    // Other tests' runtimes run in this process too: only this test's spawn site is checked.
    let reported = reported.lock().unwrap();
    let ours: Vec<u64> = reported
        .iter()
        .filter(|(_, line)| *line == site)
        .map(|(id, _)| *id)
        .collect();
    for id in &ours {
        assert!(
            spawned.contains(id),
            "coroutine {id} reported but never spawned"
        );
    }
    assert_eq!(spawned.len(), 1001);
}

#[test]
fn spawn_sites_count_growths() {
    let rt = pagurus::Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| {
        let mut line = 0;
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (l, h) = spawn_here(|| {
                    black_box(grow_and_finish(16));
                });
                line = l;
                h
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let dump = pagurus::dump();
        let site = dump
            .spawn_sites()
            .iter()
            .find(|s| s.location.file().ends_with("dump.rs") && s.location.line() == line)
            .unwrap_or_else(|| panic!("no site at line {line}:\n{dump}"));
        assert!(site.spawned >= 4);
        assert!(site.growths >= 4, "{dump}");
        assert!(site.bytes_copied > 0);
        assert!(dump.to_string().contains("stack growth by spawn site"));
    });
}

/// Runs this test binary as a child in `case`, waits for it to say it is ready, sends it
/// `signal`, and returns its stderr up to the end of the dump.
fn dump_child_on_signal(test: &str, case: &str, envs: &[(&str, &str)], signal: i32) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the child ended early"
        );
        if line.contains("dump child ready") {
            break;
        }
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        text.push_str(&line);
        if line.contains("end of coroutine dump") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    text
}

#[inline(never)]
fn waiting_for_a_signal(rx: pagurus::channel::Receiver<u32>) {
    // Not the same code as `parked_in_channel`: identical functions may share one address,
    // and without debug information the symbol table cannot tell them apart.
    let v = rx.recv().unwrap_or(7);
    black_box(v + 1);
}

/// The child's side: a coroutine parked in a channel, then "ready", then wait to be killed.
fn signal_child(builder: pagurus::Builder) {
    let rt = builder.workers(1).build().unwrap();
    rt.block_on(|| {
        let (_tx, rx) = pagurus::channel::bounded::<u32>(1);
        let h = pagurus::spawn(move || waiting_for_a_signal(rx));
        while pagurus::dump()
            .coroutines()
            .iter()
            .all(|c| c.id != h.id() || c.state == CoroutineState::Ready)
        {
            pagurus::yield_now();
        }
        println!("dump child ready");
        std::io::stdout().flush().unwrap();
        loop {
            pagurus::time::sleep(Duration::from_secs(3600));
        }
    });
}

#[test]
fn dump_on_signal_prints_to_stderr() {
    const TEST: &str = "dump_on_signal_prints_to_stderr";
    match std::env::var(CASE).as_deref() {
        Ok("builder") => {
            signal_child(pagurus::Runtime::builder().dump_on_signal(Some(libc::SIGUSR1)))
        }
        Ok("env") => signal_child(pagurus::Runtime::builder()),
        _ => {
            let text = dump_child_on_signal(TEST, "builder", &[], libc::SIGUSR1);
            for needle in [
                "[parked: channel",
                "waiting_for_a_signal",
                "dump.rs:",
                "end of coroutine dump",
            ] {
                assert!(
                    text.contains(needle),
                    "{needle:?} not in the child's stderr:\n{text}"
                );
            }
            let text = dump_child_on_signal(
                TEST,
                "env",
                &[("PAGURUS_DUMP_SIGNAL", "SIGQUIT")],
                libc::SIGQUIT,
            );
            for needle in [
                "[parked: channel",
                "waiting_for_a_signal",
                "end of coroutine dump",
            ] {
                assert!(
                    text.contains(needle),
                    "{needle:?} not in the child's stderr:\n{text}"
                );
            }
        }
    }
}

#[test]
fn bad_dump_signal_values_fail_build() {
    const TEST: &str = "bad_dump_signal_values_fail_build";
    if let Ok(value) = std::env::var("PAGURUS_DUMP_SIGNAL") {
        // The child: the environment is this process's own, set by the parent.
        let err = pagurus::Runtime::new().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let msg = err.to_string();
        assert!(msg.contains("PAGURUS_DUMP_SIGNAL"), "{msg}");
        assert!(msg.contains("SIGUSR1, SIGQUIT or off"), "{msg}");
        assert!(msg.contains(&value), "{msg}");
        // An explicit setting wins over the environment.
        assert!(
            pagurus::Runtime::builder()
                .dump_on_signal(None)
                .build()
                .is_ok()
        );
        return;
    }
    for value in ["SIGFOO", "usr1", "9"] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env("PAGURUS_DUMP_SIGNAL", value)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "child with PAGURUS_DUMP_SIGNAL={value}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    for signal in [libc::SIGSEGV, libc::SIGBUS, libc::SIGKILL, 0, 1000] {
        let err = pagurus::Runtime::builder()
            .dump_on_signal(Some(signal))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("dump_on_signal"));
    }
}

#[inline(never)]
fn parked_in_second_runtime(rx: pagurus::channel::Receiver<u32>) {
    let v = rx.recv().unwrap_or(3);
    black_box(v * 2);
}

#[test]
fn dump_covers_every_runtime_and_names_a_busy_worker() {
    let first = pagurus::Runtime::builder().workers(1).build().unwrap();
    let second = pagurus::Runtime::builder().workers(1).build().unwrap();
    let (tx1, rx1) = pagurus::channel::bounded::<u32>(1);
    let (tx2, rx2) = pagurus::channel::bounded::<u32>(1);
    let a = first.block_on(|| pagurus::spawn(move || parked_in_channel(rx1)));
    let b = second.block_on(|| pagurus::spawn(move || parked_in_second_runtime(rx2)));
    // From a plain thread: both runtimes' coroutines are in one dump.
    let dump = loop {
        let dump = pagurus::dump();
        let parked = |id| {
            dump.coroutines()
                .iter()
                .any(|c| c.id == id && matches!(c.state, CoroutineState::Parked(_)))
        };
        if parked(a.id()) && parked(b.id()) {
            break dump;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let text = dump.to_string();
    assert!(text.contains("parked_in_channel"), "{text}");
    assert!(text.contains("parked_in_second_runtime"), "{text}");

    // A worker that runs a coroutine that never suspends cannot answer: the dump says so and
    // goes on without it (the wait for it is bounded; nothing here measures it).
    let spinning = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let (s, r) = (spinning.clone(), release.clone());
    let busy = first.block_on(|| {
        pagurus::spawn(move || {
            s.store(true, SeqCst);
            while !r.load(SeqCst) {
                std::hint::spin_loop();
            }
        })
    });
    while !spinning.load(SeqCst) {
        std::thread::yield_now();
    }
    let dump = pagurus::dump();
    release.store(true, SeqCst);
    assert!(dump.unanswered_workers().contains(&Some(0)), "{dump}");
    assert!(dump.to_string().contains("did not answer in time"));
    // The other runtime answered.
    assert!(dump.coroutines().iter().any(|c| c.id == b.id()), "{dump}");

    tx1.send(1).unwrap();
    tx2.send(1).unwrap();
    first.block_on(|| {
        a.join().unwrap();
        busy.join().unwrap();
    });
    second.block_on(|| b.join().unwrap());
}

#[inline(never)]
fn queued_child(i: u32) -> u32 {
    black_box(i * 3)
}

/// Coroutines spawned but not started are listed too: ready, not started, no worker, no stack.
#[test]
fn dump_lists_coroutines_that_have_not_started() {
    let rt = pagurus::Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| {
        let running = Arc::new(AtomicBool::new(false));
        let go = Arc::new(AtomicBool::new(false));
        let (tx, rx) = pagurus::channel::bounded::<Dump>(1);
        let (r, g) = (running.clone(), go.clone());
        // The only worker runs this one and does not suspend until the children are queued;
        // then it takes the dump, which its worker answers before it looks at its queues again.
        let dumper = pagurus::spawn(move || {
            r.store(true, SeqCst);
            while !g.load(SeqCst) {
                std::hint::spin_loop();
            }
            tx.send(pagurus::dump()).unwrap();
        });
        while !running.load(SeqCst) {
            std::thread::yield_now();
        }
        let spawned: Vec<_> = (0..8)
            .map(|i| spawn_returning(move || queued_child(i)))
            .collect();
        let line = spawned[0].0;
        let children: Vec<_> = spawned.into_iter().map(|(_, h)| h).collect();
        go.store(true, SeqCst);
        let dump = rx.recv().unwrap();
        let text = dump.to_string();
        for child in &children {
            let listed: Vec<_> = dump
                .coroutines()
                .iter()
                .filter(|c| c.id == child.id())
                .collect();
            assert_eq!(listed.len(), 1, "coroutine {}:\n{text}", child.id());
            let c = listed[0];
            assert!(!c.started, "{text}");
            assert_eq!(c.state, CoroutineState::Ready);
            assert_eq!(c.worker, None);
            assert_eq!(c.stack, pagurus::StackInfo::default());
            assert!(c.frames.is_empty());
            assert_eq!(c.spawned_at.line(), line, "{text}");
            let block = format!(
                "coroutine {} [ready] spawned at {}:{line}, not started",
                child.id(),
                c.spawned_at.file()
            );
            assert!(text.contains(&block), "{block}\n{text}");
        }
        assert_eq!(find(&dump, dumper.id()).state, CoroutineState::Running);
        assert!(find(&dump, dumper.id()).started);
        dumper.join().unwrap();
        let results: Vec<u32> = children.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results, (0..8).map(|i| i * 3).collect::<Vec<_>>());
    });
}

#[inline(never)]
fn yielding_main(done: &pagurus::channel::Receiver<Dump>) -> Dump {
    loop {
        if let Ok(dump) = done.try_recv() {
            return dump;
        }
        pagurus::yield_now();
    }
}

/// A `block_on` main coroutine that only yields (never parks) still answers dumps: it is listed,
/// ready, with its frames, and its thread is not reported as silent.
#[test]
fn dump_is_answered_by_a_block_on_coroutine_that_only_yields() {
    let rt = pagurus::Runtime::builder().workers(1).build().unwrap();
    let main_line = line!() + 1;
    rt.block_on(|| {
        let (tx, rx) = pagurus::channel::bounded::<Dump>(1);
        let h = pagurus::spawn(move || tx.send(pagurus::dump()).unwrap());
        let dump = yielding_main(&rx);
        // Listed, so its thread answered. (Dumps cover the whole process: another test's
        // deliberately busy worker may be named as not answering.)
        let main = dump
            .coroutines()
            .iter()
            .find(|c| c.worker.is_none() && c.started && c.spawned_at.line() == main_line)
            .unwrap_or_else(|| panic!("no block_on coroutine in the dump:\n{dump}"));
        assert_eq!(main.state, CoroutineState::Ready, "{dump}");
        assert!(
            main.frames.iter().any(|f| f
                .function
                .as_deref()
                .is_some_and(|n| n.contains("yielding_main"))),
            "{dump}"
        );
        h.join().unwrap();
    });
}
