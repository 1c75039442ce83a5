//! Dropping a runtime with coroutines parked in `accept`, `read` and `write` cancels them and
//! closes every socket they own: the process's open descriptors return to their count from
//! before the runtime was built. Alone in its binary, so no other test opens descriptors
//! meanwhile; the EMFILE test runs in a child process (it lowers the descriptor limit).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use pagurus::net::{TcpListener, TcpStream};
use pagurus::{Runtime, spawn};

/// Held by each test: the other one's descriptors (a child's pipes) must not be counted.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Aborts the process if the test has not finished after `secs` seconds.
fn watchdog(secs: u64) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs)) {
            eprintln!("still running after {secs} s: aborting");
            std::process::abort();
        }
    });
    tx
}

#[test]
fn dropping_the_runtime_closes_the_sockets_of_parked_coroutines() {
    if std::env::var_os("PAGURUS_EMFILE_CHILD").is_some() {
        return;
    }
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog(60);
    // Warm what lives for the whole process (the blocking pool, thread-locals, the watchdog).
    std::thread::spawn(|| ()).join().unwrap();
    let before = open_fds();
    let parked = Arc::new(AtomicUsize::new(0));
    {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let p = parked.clone();
        rt.block_on(move || {
            // Listener A: readers of connections whose clients never send (both sides park in
            // read). Listener B: connections kept but never read, so their clients park in
            // write once the buffers are full. Both acceptors then park in accept.
            let a = TcpListener::bind("127.0.0.1:0").unwrap();
            let b = TcpListener::bind("127.0.0.1:0").unwrap();
            let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            let pa = p.clone();
            spawn(move || {
                for _ in 0..8 {
                    let (mut conn, _) = a.accept().unwrap();
                    let p = pa.clone();
                    spawn(move || {
                        p.fetch_add(1, Ordering::SeqCst);
                        let _ = conn.read(&mut [0; 16]);
                        unreachable!("a reader was resumed, but nothing was sent");
                    });
                }
                let _ = a.accept();
            });
            spawn(move || {
                let kept: Vec<_> = (0..8).map(|_| b.accept().unwrap()).collect();
                let _ = b.accept();
                drop(kept);
            });
            for _ in 0..8 {
                let p1 = p.clone();
                spawn(move || {
                    let mut conn = TcpStream::connect(a_addr).unwrap();
                    p1.fetch_add(1, Ordering::SeqCst);
                    let _ = conn.read(&mut [0; 16]);
                    unreachable!("a silent client was resumed, but nothing was sent");
                });
                let p = p.clone();
                spawn(move || {
                    let mut conn = TcpStream::connect(b_addr).unwrap();
                    p.fetch_add(1, Ordering::SeqCst);
                    let chunk = vec![7u8; 64 * 1024];
                    loop {
                        conn.write_all(&chunk).unwrap();
                    }
                });
            }
            while p.load(Ordering::SeqCst) < 24 {
                pagurus::time::sleep(Duration::from_millis(1));
            }
            // Let the writers fill their buffers and park.
            pagurus::time::sleep(Duration::from_millis(100));
        });
        assert!(
            open_fds() >= before + 2 + 32,
            "the sockets are open while the runtime lives"
        );
    }
    assert_eq!(parked.load(Ordering::SeqCst), 24);
    assert_eq!(open_fds(), before, "every socket and poller closed");
}

/// At the descriptor limit, `accept` returns `EMFILE` instead of spinning; once descriptors are
/// free again, the pending connection is accepted.
#[test]
fn accept_at_the_descriptor_limit_returns_the_error() {
    if std::env::var_os("PAGURUS_EMFILE_CHILD").is_none() {
        let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "accept_at_the_descriptor_limit_returns_the_error",
                "--nocapture",
            ])
            .env("PAGURUS_EMFILE_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("EMFILE seen"), "{text}");
        return;
    }
    let _w = watchdog(60);
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(addr).unwrap();
        // Fill the table up to a limit just above what is open now.
        let limit = open_fds() + 8;
        let rl = libc::rlimit {
            rlim_cur: limit as libc::rlim_t,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: a valid rlimit for this process.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) };
        let mut hogs = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            hogs.push(f);
        }
        let err = listener.accept().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
        println!("EMFILE seen");
        hogs.clear();
        let (conn, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        drop(conn);
    });
}
