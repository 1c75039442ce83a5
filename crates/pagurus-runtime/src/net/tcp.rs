//! TCP: a listener and a stream over the netpoller.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{self, Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, RawFd};
use std::time::Duration;

use super::{Timeouts, each_addr};
use crate::sched::netpoll::{Direction, IoSource};

/// A TCP socket server, listening for connections.
///
/// [`accept`](TcpListener::accept) parks the calling coroutine until a connection arrives. At
/// the descriptor limit (`EMFILE`/`ENFILE`) it returns that error instead of waiting: pending
/// connections stay queued, and a later call (after the caller closed something or backed off)
/// takes them.
pub struct TcpListener {
    inner: IoSource<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds to `addr` (resolved on the blocking pool) and listens, like
    /// `std::net::TcpListener::bind` (`SO_REUSEADDR` set, backlog 1024).
    pub fn bind<A: ToSocketAddrs + Send>(addr: A) -> io::Result<TcpListener> {
        each_addr(addr, |addr| {
            let listener = mio::net::TcpListener::bind(*addr)?;
            Ok(TcpListener {
                inner: IoSource::new(listener),
            })
        })
    }

    /// Accepts a connection, parking until one arrives.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self.inner.io(Direction::Read, None, |l| l.accept())?;
        // mio accepts with SOCK_NONBLOCK | SOCK_CLOEXEC: no further system call.
        // SAFETY: `into_raw_fd` hands over the only owner of a valid, open socket descriptor.
        let stream = unsafe { net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
        Ok((
            TcpStream::from_nonblocking(stream, Timeouts::default()),
            addr,
        ))
    }

    /// An endless iterator of [`accept`](TcpListener::accept)ed streams.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Sets the IP time-to-live of accepted connections' packets.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get_ref().set_ttl(ttl)
    }

    /// The pending error of the socket (`SO_ERROR`), clearing it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get_ref().take_error()
    }
}

impl From<net::TcpListener> for TcpListener {
    /// Takes over a std listener, switching it to non-blocking mode.
    ///
    /// # Panics
    ///
    /// If the descriptor cannot be made non-blocking (it is not an open socket).
    fn from(listener: net::TcpListener) -> TcpListener {
        listener
            .set_nonblocking(true)
            .expect("pagurus::net: cannot make a TcpListener non-blocking");
        TcpListener {
            inner: IoSource::new(mio::net::TcpListener::from_std(listener)),
        }
    }
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

/// Iterator over a listener's connections, from [`TcpListener::incoming`]. Never returns `None`.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(stream, _)| stream))
    }
}

/// A TCP connection. Reads and writes park the calling coroutine while the socket is not
/// ready; one coroutine may read while another (on any worker) writes, through `&TcpStream` or
/// a [`try_clone`](TcpStream::try_clone).
pub struct TcpStream {
    inner: IoSource<net::TcpStream>,
    timeouts: Timeouts,
}

impl TcpStream {
    fn from_nonblocking(stream: net::TcpStream, timeouts: Timeouts) -> TcpStream {
        TcpStream {
            inner: IoSource::new(stream),
            timeouts,
        }
    }

    /// Opens a connection to `addr` (resolved on the blocking pool), trying each address in
    /// turn, parking until the connection is made or refused.
    pub fn connect<A: ToSocketAddrs + Send>(addr: A) -> io::Result<TcpStream> {
        each_addr(addr, |addr| connect(addr, None))
    }

    /// Opens a connection to `addr`, failing with `TimedOut` after `timeout`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero timeout, as std.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        connect(addr, Some(timeout))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Shuts down the read half, the write half (the peer reads end of stream) or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get_ref().shutdown(how)
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.get_ref().set_nodelay(nodelay)
    }

    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.get_ref().nodelay()
    }

    /// How long a read may wait before it fails with `WouldBlock` (`None`: for ever). Shared
    /// with this stream's clones.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeouts.set_read(timeout)
    }

    /// How long a write may wait before it fails with `WouldBlock` (`None`: for ever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeouts.set_write(timeout)
    }

    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.timeouts.read())
    }

    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.timeouts.write())
    }

    /// A second handle to the same connection (a duplicated descriptor, with its own
    /// registration, so it may wait on another worker), sharing the timeouts.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        let stream = self.inner.get_ref().try_clone()?;
        Ok(TcpStream::from_nonblocking(stream, self.timeouts.share()))
    }

    /// Receives data without removing it from the queue, parking until some is there.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .io(Direction::Read, self.timeouts.read(), |s| s.peek(buf))
    }

    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get_ref().set_ttl(ttl)
    }

    /// The pending error of the socket (`SO_ERROR`), clearing it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get_ref().take_error()
    }
}

/// Starts a non-blocking connect and waits until it completes or fails.
fn connect(addr: &SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
    let stream = mio::net::TcpStream::connect(*addr)?;
    // SAFETY: `into_raw_fd` hands over the only owner of a valid, open socket descriptor.
    let stream = unsafe { net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
    let stream = TcpStream::from_nonblocking(stream, Timeouts::default());
    // The connect is in progress: it is done once the socket is writable, then `SO_ERROR` says
    // how it ended.
    let done = stream.inner.io(Direction::Write, timeout, |s| {
        if let Some(err) = s.take_error()? {
            return Err(err);
        }
        match s.peer_addr() {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(err) => Err(err),
        }
    });
    match done {
        Ok(()) => Ok(stream),
        Err(err) if timeout.is_some() && err.kind() == io::ErrorKind::WouldBlock => Err(
            io::Error::new(io::ErrorKind::TimedOut, "connection timed out"),
        ),
        Err(err) => Err(err),
    }
}

impl From<net::TcpStream> for TcpStream {
    /// Takes over a std stream, switching it to non-blocking mode and keeping its timeouts.
    ///
    /// # Panics
    ///
    /// If the descriptor cannot be made non-blocking (it is not an open socket).
    fn from(stream: net::TcpStream) -> TcpStream {
        let timeouts = Timeouts::with(
            stream.read_timeout().ok().flatten(),
            stream.write_timeout().ok().flatten(),
        );
        stream
            .set_nonblocking(true)
            .expect("pagurus::net: cannot make a TcpStream non-blocking");
        TcpStream::from_nonblocking(stream, timeouts)
    }
}

impl Read for &TcpStream {
    /// A read that returns less than `buf` holds emptied the socket's receive queue: the next
    /// read parks at once (until the poller reports new data) instead of first failing a
    /// system call with `EAGAIN`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.inner.io_draining(
            Direction::Read,
            self.timeouts.read(),
            |mut s| s.read(buf),
            |&n| n > 0 && n < len,
        )
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        self.inner.io_draining(
            Direction::Read,
            self.timeouts.read(),
            |mut s| s.read_vectored(bufs),
            |&n| n > 0 && n < len,
        )
    }
}

impl Write for &TcpStream {
    /// Sends with `MSG_NOSIGNAL` (std does too): a closed peer is `BrokenPipe`, never `SIGPIPE`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner
            .io(Direction::Write, self.timeouts.write(), |mut s| {
                s.write(buf)
            })
    }

    /// `sendmsg` with `MSG_NOSIGNAL` (a plain `writev` could raise `SIGPIPE`).
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.inner.io(Direction::Write, self.timeouts.write(), |s| {
            send_vectored(s.as_raw_fd(), bufs)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes `bufs` with one `sendmsg(MSG_NOSIGNAL)`.
fn send_vectored(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is ABI-compatible with `iovec` on Unix (documented by std); the kernel only
    // reads the buffers.
    msg.msg_iov = bufs.as_ptr().cast_mut().cast::<libc::iovec>();
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    // SAFETY: `msg` describes `bufs`, which stay borrowed for the call; no name, no control data.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("addr", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

macro_rules! fd_traits {
    ($ty:ty) => {
        impl AsRawFd for $ty {
            fn as_raw_fd(&self) -> RawFd {
                self.inner.get_ref().as_raw_fd()
            }
        }

        impl AsFd for $ty {
            fn as_fd(&self) -> BorrowedFd<'_> {
                // SAFETY: the descriptor is open for as long as `self` is borrowed.
                unsafe { BorrowedFd::borrow_raw(self.as_raw_fd()) }
            }
        }

        impl IntoRawFd for $ty {
            /// Deregisters the descriptor and hands it over (still non-blocking).
            fn into_raw_fd(self) -> RawFd {
                self.inner.into_inner().into_raw_fd()
            }
        }
    };
}
pub(super) use fd_traits;

fd_traits!(TcpListener);
fd_traits!(TcpStream);
