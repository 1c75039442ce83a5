//! Networking: TCP and UDP sockets whose blocking calls park only the calling coroutine.
//!
//! The types mirror `std::net` (same names, same methods, same errors): a read returns 0 at the
//! end of the stream, `shutdown(Write)` half-closes, a timeout is `ErrorKind::WouldBlock` (as
//! std reports it on Unix; `connect_timeout` gives `TimedOut`). Code written against them reads
//! like thread-per-connection code:
//!
//! ```
//! # use pagurus_runtime as pagurus;
//! use std::io::{Read, Write};
//! use pagurus::net::{TcpListener, TcpStream};
//!
//! pagurus::run(|| {
//!     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = pagurus::spawn(move || {
//!         let (mut conn, _) = listener.accept().unwrap();
//!         let mut buf = [0; 5];
//!         conn.read_exact(&mut buf).unwrap();
//!         conn.write_all(&buf).unwrap();
//!     });
//!     let mut client = TcpStream::connect(addr).unwrap();
//!     client.write_all(b"hello").unwrap();
//!     let mut echo = [0; 5];
//!     client.read_exact(&mut echo).unwrap();
//!     assert_eq!(&echo, b"hello");
//!     server.join().unwrap();
//! });
//! ```
//!
//! # How a call waits
//!
//! Every socket is non-blocking. A call first makes the system call; when that would block, the
//! coroutine parks on the socket's readiness (the netpoller in the scheduler, `sched/io.rs`) and
//! its worker runs other coroutines. Host names are resolved on the blocking-call pool
//! ([`offload`](crate::offload)), never on a worker. Outside a runtime (a plain thread) the same
//! types block the thread, as std's sockets do, so library code works in both places.
//!
//! A descriptor taken out with `IntoRawFd` stays in non-blocking mode.

mod tcp;
mod udp;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;

/// Resolves `addr` on the blocking-call pool (directly where nothing can park) and calls `f` on
/// each address in turn until one succeeds, as std's constructors do.
fn each_addr<A, T>(addr: A, mut f: impl FnMut(&SocketAddr) -> io::Result<T>) -> io::Result<T>
where
    A: ToSocketAddrs + Send,
{
    let addrs: Vec<SocketAddr> =
        crate::offload::run(move || addr.to_socket_addrs().map(Iterator::collect))?;
    let mut last = None;
    for addr in &addrs {
        match f(addr) {
            Ok(value) => return Ok(value),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// The read and write timeouts of a socket, shared by its clones (std's timeouts are socket
/// options, so clones share them too). Allocated when first set or shared.
#[derive(Default)]
struct Timeouts(OnceLock<Arc<TimeoutValues>>);

/// Nanoseconds, 0 for none (a zero timeout is refused when set).
#[derive(Default)]
struct TimeoutValues {
    read: AtomicU64,
    write: AtomicU64,
}

impl Timeouts {
    fn with(read: Option<Duration>, write: Option<Duration>) -> Timeouts {
        let timeouts = Timeouts::default();
        if read.is_some() || write.is_some() {
            let values = timeouts.values();
            values.read.store(nanos(read), Relaxed);
            values.write.store(nanos(write), Relaxed);
        }
        timeouts
    }

    fn values(&self) -> &Arc<TimeoutValues> {
        self.0.get_or_init(Arc::default)
    }

    fn read(&self) -> Option<Duration> {
        self.0.get().and_then(|v| duration(v.read.load(Relaxed)))
    }

    fn write(&self) -> Option<Duration> {
        self.0.get().and_then(|v| duration(v.write.load(Relaxed)))
    }

    fn set_read(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.values().read.store(nanos(timeout), Relaxed);
        Ok(())
    }

    fn set_write(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.values().write.store(nanos(timeout), Relaxed);
        Ok(())
    }

    /// The same timeouts, for a clone of the socket.
    fn share(&self) -> Timeouts {
        Timeouts(OnceLock::from(self.values().clone()))
    }
}

/// std refuses a zero timeout with `InvalidInput`.
fn check_timeout(timeout: Option<Duration>) -> io::Result<()> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        ));
    }
    Ok(())
}

fn nanos(timeout: Option<Duration>) -> u64 {
    timeout.map_or(0, |t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX))
}

fn duration(nanos: u64) -> Option<Duration> {
    (nanos != 0).then(|| Duration::from_nanos(nanos))
}
