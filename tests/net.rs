//! `pagurus::net`: TCP and UDP over the netpoller, on loopback only. Every test is bounded in
//! connections and bytes, and a watchdog ends the process if one ever hangs (a lost wake-up).

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use pagurus::net::{TcpListener, TcpStream, UdpSocket};
use pagurus::{Runtime, spawn};

/// Aborts the process if the test has not finished after `secs` seconds.
struct Watchdog(mpsc::Sender<()>);

fn watchdog(secs: u64) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(secs)) {
            eprintln!("test {name} still running after {secs} s: aborting");
            std::process::abort();
        }
    });
    Watchdog(tx)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().unwrap()
}

/// Binds a listener on loopback and starts an accept loop that echoes every connection in a
/// coroutine of its own, with `chunk`-byte reads; returns the address.
fn echo_server(chunk: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    spawn(move || {
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            spawn(move || {
                let mut buf = vec![0; chunk];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed * 7) % 251) as u8)
        .collect()
}

#[test]
fn echo_many_connections_from_coroutines() {
    let _w = watchdog(120);
    let rt = runtime(2);
    rt.block_on(|| {
        let addr = echo_server(512);
        let clients: Vec<_> = (0..200)
            .map(|i| {
                spawn(move || {
                    let mut conn = TcpStream::connect(addr).unwrap();
                    let msg = pattern(3000 + i, i);
                    for piece in msg.chunks(700) {
                        conn.write_all(piece).unwrap();
                    }
                    let mut back = vec![0; msg.len()];
                    conn.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg);
                    conn.shutdown(Shutdown::Write).unwrap();
                    assert_eq!(
                        conn.read(&mut [0; 8]).unwrap(),
                        0,
                        "end of stream after half-close"
                    );
                    msg.len()
                })
            })
            .collect();
        let total: usize = clients.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, (0..200).map(|i| 3000 + i).sum::<usize>());
    });
}

#[test]
fn echo_clients_on_plain_threads_block_like_std() {
    let _w = watchdog(120);
    let rt = runtime(2);
    let addr = rt.block_on(|| echo_server(4096));
    let threads: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                // Outside any runtime: pagurus sockets block the thread.
                let mut conn = TcpStream::connect(addr).unwrap();
                conn.set_nodelay(true).unwrap();
                assert!(conn.nodelay().unwrap());
                for round in 0..50 {
                    let msg = pattern(64, i * 100 + round);
                    conn.write_all(&msg).unwrap();
                    let mut back = [0; 64];
                    conn.read_exact(&mut back).unwrap();
                    assert_eq!(&back[..], &msg[..]);
                }
                let mut peeked = [0; 3];
                conn.write_all(b"abc").unwrap();
                assert_eq!(conn.peek(&mut peeked).unwrap(), 3);
                let mut read = [0; 3];
                conn.read_exact(&mut read).unwrap();
                assert_eq!((&peeked, &read), (b"abc", b"abc"));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn one_mib_echoed_byte_exact_through_partial_reads_and_writes() {
    let _w = watchdog(120);
    let rt = runtime(2);
    rt.block_on(|| {
        // Odd read sizes on the server, odd write sizes on the client: every boundary differs.
        let addr = echo_server(1021);
        let conn = TcpStream::connect(addr).unwrap();
        let writer_half = conn.try_clone().unwrap();
        let msg = Arc::new(pattern(1 << 20, 3));
        let to_send = msg.clone();
        let writer = spawn(move || {
            let mut w = writer_half;
            let mut sent = 0;
            let mut size = 1;
            while sent < to_send.len() {
                let end = (sent + size).min(to_send.len());
                // Mixed plain and vectored writes; partial writes are resumed by write_all.
                if size % 2 == 0 {
                    let (a, b) = to_send[sent..end].split_at((end - sent) / 2);
                    let n = w
                        .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
                        .unwrap();
                    sent += n;
                } else {
                    w.write_all(&to_send[sent..end]).unwrap();
                    sent = end;
                }
                size = size * 3 % 65_521 + 1;
            }
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::with_capacity(msg.len());
        let mut buf = [0; 777];
        let mut conn = conn;
        loop {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
        writer.join().unwrap();
        assert_eq!(back.len(), msg.len());
        assert!(back == *msg, "echo differs from what was sent");
    });
}

#[test]
fn two_thousand_clients_connect_and_close_at_once() {
    let _w = watchdog(120);
    let rt = runtime(2);
    let ok = Arc::new(AtomicUsize::new(0));
    rt.block_on(|| {
        let addr = echo_server(64);
        let clients: Vec<_> = (0..2000)
            .map(|i| {
                let ok = ok.clone();
                spawn(move || {
                    // The listener's backlog may overflow for a moment: retry refused connects.
                    let mut conn = loop {
                        match TcpStream::connect(addr) {
                            Ok(conn) => break conn,
                            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                                pagurus::time::sleep(Duration::from_millis(5));
                            }
                            Err(e) => panic!("connect {i}: {e}"),
                        }
                    };
                    conn.write_all(&[i as u8]).unwrap();
                    let mut b = [0];
                    conn.read_exact(&mut b).unwrap();
                    assert_eq!(b[0], i as u8);
                    drop(conn);
                    ok.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    });
    assert_eq!(ok.load(Ordering::SeqCst), 2000);
}

/// Sets SO_LINGER to zero, so that closing sends a reset instead of a FIN.
fn set_linger_zero(fd: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

#[test]
fn peer_reset_mid_read_fails_that_coroutine_only() {
    use std::os::fd::AsRawFd;
    let _w = watchdog(60);
    let rt = runtime(2);
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(move || {
            let mut results = Vec::new();
            for _ in 0..2 {
                let (mut conn, _) = listener.accept().unwrap();
                results.push(spawn(move || {
                    let mut buf = [0; 16];
                    let n = conn.read(&mut buf)?; // the first message arrives
                    conn.write_all(&buf[..n])?;
                    let n = conn.read(&mut buf)?; // parked here when the reset comes
                    conn.write_all(&buf[..n])?;
                    Ok::<usize, io::Error>(n)
                }));
            }
            results
        });
        let mut victim = TcpStream::connect(addr).unwrap();
        let mut healthy = TcpStream::connect(addr).unwrap();
        let mut b = [0; 4];
        victim.write_all(b"one!").unwrap();
        victim.read_exact(&mut b).unwrap();
        healthy.write_all(b"one!").unwrap();
        healthy.read_exact(&mut b).unwrap();
        // Both server coroutines now wait in their second read. Reset one connection.
        set_linger_zero(victim.as_raw_fd());
        drop(victim);
        healthy.write_all(b"two!").unwrap();
        healthy.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"two!");
        let results: Vec<_> = server
            .join()
            .unwrap()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let reset = results.iter().filter(|r| {
            r.as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionReset)
        });
        assert_eq!(reset.count(), 1, "{results:?}");
        assert!(results.iter().any(|r| matches!(r, Ok(4))), "{results:?}");
    });
}

#[test]
fn writing_to_a_closed_peer_is_broken_pipe_not_sigpipe() {
    let _w = watchdog(60);
    let rt = runtime(2);
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut conn = TcpStream::connect(addr).unwrap();
        drop(listener.accept().unwrap()); // the peer closes at once
        let mut errors = Vec::new();
        for i in 0..1000 {
            let r = if i % 2 == 0 {
                conn.write(&[1; 1024])
            } else {
                conn.write_vectored(&[IoSlice::new(&[2; 512]), IoSlice::new(&[3; 512])])
            };
            if let Err(e) = r {
                errors.push(e.kind());
                if errors.len() == 3 {
                    break;
                }
            }
        }
        assert!(
            !errors.is_empty(),
            "writes to a closed peer kept succeeding"
        );
        assert!(
            errors.iter().all(|k| matches!(
                k,
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            )),
            "{errors:?}"
        );
        assert_eq!(
            *errors.last().unwrap(),
            io::ErrorKind::BrokenPipe,
            "{errors:?}"
        );
    });
}

#[test]
fn read_timeouts_fire_and_do_not_fire() {
    let _w = watchdog(60);
    let rt = runtime(2);
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conn = TcpStream::connect(addr).unwrap();
        let (mut server_side, _) = listener.accept().unwrap();
        assert_eq!(
            conn.set_read_timeout(Some(Duration::ZERO))
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        conn.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        assert_eq!(
            conn.read_timeout().unwrap(),
            Some(Duration::from_millis(50))
        );

        // Nothing arrives: the read gives up after the timeout.
        let start = Instant::now();
        let err = (&conn).read(&mut [0; 8]).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err:?}"
        );
        assert!(start.elapsed() >= Duration::from_millis(50));

        // The clone shares the timeout, as std's clones share the socket option.
        let clone = conn.try_clone().unwrap();
        assert_eq!(
            clone.read_timeout().unwrap(),
            Some(Duration::from_millis(50))
        );

        // Data arrives well before a long timeout: the read returns it.
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let writer = spawn(move || {
            pagurus::time::sleep(Duration::from_millis(20));
            server_side.write_all(b"late").unwrap();
            server_side
        });
        let mut buf = [0; 4];
        (&clone).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"late");
        drop(writer.join().unwrap());

        // Outside a runtime the same timeout applies, through poll(2).
        let lone = conn.try_clone().unwrap();
        lone.set_read_timeout(Some(Duration::from_millis(30)))
            .unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0; 1];
            let got = (&lone).read(&mut buf);
            // The server side was dropped above: end of stream, not a timeout.
            got.unwrap()
        });
        assert_eq!(t.join().unwrap(), 0);
    });
}

#[test]
fn connect_timeout_and_refused() {
    let _w = watchdog(60);
    let rt = runtime(1);
    rt.block_on(|| {
        let free = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = TcpStream::connect(free).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let err = TcpStream::connect_timeout(&free, Duration::ZERO).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let listener = TcpListener::bind(("localhost", 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        assert_eq!(conn.peer_addr().unwrap(), addr);
        assert_eq!(listener.accept().unwrap().1, conn.local_addr().unwrap());
    });
}

#[test]
fn udp_datagrams_of_zero_and_max_size() {
    let _w = watchdog(60);
    let rt = runtime(2);
    rt.block_on(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        let a_addr = a.local_addr().unwrap();
        let receiver = spawn(move || {
            let mut buf = vec![0; 70_000];
            let mut got = Vec::new();
            for _ in 0..3 {
                let (n, from) = b.recv_from(&mut buf).unwrap();
                got.push((buf[..n].to_vec(), from));
            }
            // Connected: recv and send.
            b.connect(a_addr).unwrap();
            b.send(b"pong").unwrap();
            got
        });
        let big = pattern(65_507, 9);
        a.send_to(&[], b_addr).unwrap();
        assert_eq!(a.send_to(&big, b_addr).unwrap(), 65_507);
        a.send_to(b"x", b_addr).unwrap();
        let got = receiver.join().unwrap();
        assert_eq!(got[0], (Vec::new(), a_addr));
        assert_eq!(got[1].0.len(), 65_507);
        assert!(got[1].0 == big);
        assert_eq!(got[2].0, b"x");
        // One byte more than fits a datagram is refused by the kernel.
        assert!(a.send_to(&vec![0; 65_508], b_addr).is_err());
        a.connect(b_addr).unwrap();
        let mut buf = [0; 8];
        assert_eq!(a.recv(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"pong");
        // A receive timeout.
        a.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let clone = a.try_clone().unwrap();
        let err = clone.recv(&mut buf).unwrap_err();
        assert!(matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
    });
}

#[test]
fn reader_and_writer_of_one_socket_on_different_workers() {
    let _w = watchdog(120);
    let rt = runtime(2);
    rt.block_on(|| {
        let addr = echo_server(333);
        let conn = Arc::new(TcpStream::connect(addr).unwrap());
        // Candidates report their worker and wait for a role: 0 none yet, 1 read, 2 write, 3 quit.
        let roles: Arc<Vec<AtomicUsize>> = Arc::new((0..16).map(|_| AtomicUsize::new(0)).collect());
        let names = Arc::new(Mutex::new(HashMap::new()));
        const ROUNDS: usize = 2000;
        let candidates: Vec<_> = (0..16)
            .map(|i| {
                let (roles, names, conn) = (roles.clone(), names.clone(), conn.clone());
                spawn(move || {
                    let me = std::thread::current().name().unwrap().to_owned();
                    names.lock().unwrap().insert(i, me.clone());
                    let role = loop {
                        match roles[i].load(Ordering::SeqCst) {
                            0 => pagurus::time::sleep(Duration::from_millis(1)),
                            r => break r,
                        }
                    };
                    match role {
                        1 => {
                            let mut got = vec![0; ROUNDS * 8];
                            (&*conn).read_exact(&mut got).unwrap();
                            for (k, word) in got.chunks(8).enumerate() {
                                assert_eq!(word, (k as u64).to_le_bytes());
                            }
                        }
                        2 => {
                            for k in 0..ROUNDS as u64 {
                                (&*conn).write_all(&k.to_le_bytes()).unwrap();
                                if k % 100 == 0 {
                                    pagurus::yield_now();
                                }
                            }
                        }
                        _ => return None,
                    }
                    assert_eq!(std::thread::current().name().unwrap(), me, "pinned");
                    Some((role, me))
                })
            })
            .collect();
        while names.lock().unwrap().len() < 16 {
            pagurus::time::sleep(Duration::from_millis(1));
        }
        let names = names.lock().unwrap().clone();
        let reader = (0..16).find(|i| names[i] == "pagurus-worker-0");
        let writer = (0..16).find(|i| names[i] == "pagurus-worker-1");
        let (Some(reader), Some(writer)) = (reader, writer) else {
            panic!("16 coroutines spawned one after another all started on one worker: {names:?}")
        };
        for (i, role) in roles.iter().enumerate() {
            let r = if i == reader {
                1
            } else if i == writer {
                2
            } else {
                3
            };
            role.store(r, Ordering::SeqCst);
        }
        let done: Vec<_> = candidates
            .into_iter()
            .filter_map(|c| c.join().unwrap())
            .collect();
        assert_eq!(done.len(), 2);
        assert_ne!(done[0].1, done[1].1);
    });
}

#[test]
fn std_conversions_and_raw_descriptors() {
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd};
    let _w = watchdog(60);
    let rt = runtime(1);
    rt.block_on(|| {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listener = TcpListener::from(std_listener);
        let addr = listener.local_addr().unwrap();
        let std_stream = std::net::TcpStream::connect(addr).unwrap();
        std_stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let stream = TcpStream::from(std_stream);
        assert_eq!(stream.read_timeout().unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(stream.as_fd().as_raw_fd(), stream.as_raw_fd());
        let (server, _) = listener.accept().unwrap();
        (&server).write_all(b"hi").unwrap();
        let fd = stream.into_raw_fd();
        // SAFETY: `fd` was just handed over by `into_raw_fd` and is owned by nobody else.
        let back = TcpStream::from(unsafe { std::net::TcpStream::from_raw_fd(fd) });
        let mut buf = [0; 2];
        (&back).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        let udp = UdpSocket::from(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        assert!(udp.as_raw_fd() >= 0);
        let _ = udp.into_raw_fd(); // leaked on purpose: closing it is the caller's job
    });
}

/// A read that returns less than asked leaves the socket known to be drained, so the next read
/// parks without a system call; an end of stream that arrived before that short read must still
/// end the next one (no new edge will announce it). Also a short read followed by more data.
#[test]
fn short_read_then_queued_end_of_stream_or_more_data() {
    let _w = watchdog(60);
    let rt = runtime(2);
    rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (sent_tx, sent_rx) = pagurus::channel::bounded::<()>(0);
        let (more_tx, more_rx) = pagurus::channel::bounded::<()>(0);
        let (go_tx, go_rx) = pagurus::channel::bounded::<()>(0);
        let peer = spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            go_rx.recv().unwrap();
            // First connection: data and the end of stream, both queued before any read.
            conn.write_all(b"0123456789").unwrap();
            conn.shutdown(Shutdown::Write).unwrap();
            sent_tx.send(()).unwrap();
            let (mut conn2, _) = listener.accept().unwrap();
            conn2.write_all(b"abc").unwrap();
            more_rx.recv().unwrap();
            conn2.write_all(b"defg").unwrap();
        });
        let mut client = TcpStream::connect(addr).unwrap();
        // The client's socket is registered by a read that would block, before anything comes.
        client
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        assert_eq!(
            client.read(&mut [0; 4]).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        client.set_read_timeout(None).unwrap();
        go_tx.send(()).unwrap();
        sent_rx.recv().unwrap();
        // Let the end of stream reach the socket and the poller before the short read.
        pagurus::time::sleep(Duration::from_millis(50));
        let mut buf = [0; 100];
        assert_eq!(client.read(&mut buf).unwrap(), 10);
        assert_eq!(&buf[..10], b"0123456789");
        assert_eq!(
            client.read(&mut buf).unwrap(),
            0,
            "end of stream after a short read"
        );

        let mut second = TcpStream::connect(addr).unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            let n = second.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        more_tx.send(()).unwrap();
        // Drained after "abc": this read parks until "defg" arrives.
        while got.len() < 7 {
            let n = second.read(&mut buf).unwrap();
            assert_ne!(n, 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"abcdefg");
        peer.join().unwrap();
    });
}
