//! UDP over the netpoller.

use std::io;
use std::net::{self, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, RawFd};
use std::time::Duration;

use super::tcp::fd_traits;
use super::{Timeouts, each_addr};
use crate::sched::netpoll::{Direction, IoSource};

/// A UDP socket. Receives park the calling coroutine until a datagram arrives; sends park while
/// the send buffer is full.
pub struct UdpSocket {
    inner: IoSource<net::UdpSocket>,
    timeouts: Timeouts,
}

impl UdpSocket {
    /// Binds to `addr` (resolved on the blocking pool), trying each address in turn.
    pub fn bind<A: ToSocketAddrs + Send>(addr: A) -> io::Result<UdpSocket> {
        each_addr(addr, |addr| {
            let socket = net::UdpSocket::bind(addr)?;
            socket.set_nonblocking(true)?;
            Ok(UdpSocket::from_nonblocking(socket, Timeouts::default()))
        })
    }

    fn from_nonblocking(socket: net::UdpSocket, timeouts: Timeouts) -> UdpSocket {
        UdpSocket {
            inner: IoSource::new(socket),
            timeouts,
        }
    }

    /// Sets the default destination of [`send`](UdpSocket::send) and the only source
    /// [`recv`](UdpSocket::recv) accepts.
    pub fn connect<A: ToSocketAddrs + Send>(&self, addr: A) -> io::Result<()> {
        each_addr(addr, |addr| self.inner.get_ref().connect(addr))
    }

    /// Sends a datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner
            .io(Direction::Write, self.timeouts.write(), |s| s.send(buf))
    }

    /// Receives a datagram from the connected peer (excess bytes of a datagram longer than
    /// `buf` are discarded).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .io(Direction::Read, self.timeouts.read(), |s| s.recv(buf))
    }

    /// Sends a datagram to `addr` (resolved on the blocking pool; only its first address is
    /// used, as std does).
    pub fn send_to<A: ToSocketAddrs + Send>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let addr = each_addr(addr, |addr| Ok(*addr))?;
        self.inner.io(Direction::Write, self.timeouts.write(), |s| {
            s.send_to(buf, addr)
        })
    }

    /// Receives a datagram and the address it came from.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner
            .io(Direction::Read, self.timeouts.read(), |s| s.recv_from(buf))
    }

    /// Receives a datagram without removing it from the queue.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner
            .io(Direction::Read, self.timeouts.read(), |s| s.peek_from(buf))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// How long a receive may wait before it fails with `WouldBlock` (`None`: for ever).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as std.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeouts.set_read(timeout)
    }

    /// How long a send may wait before it fails with `WouldBlock` (`None`: for ever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeouts.set_write(timeout)
    }

    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.timeouts.read())
    }

    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.timeouts.write())
    }

    /// A second handle to the same socket, sharing the timeouts.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        let socket = self.inner.get_ref().try_clone()?;
        Ok(UdpSocket::from_nonblocking(socket, self.timeouts.share()))
    }

    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.inner.get_ref().set_broadcast(on)
    }

    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get_ref().take_error()
    }
}

impl From<net::UdpSocket> for UdpSocket {
    /// Takes over a std socket, switching it to non-blocking mode and keeping its timeouts.
    ///
    /// # Panics
    ///
    /// If the descriptor cannot be made non-blocking (it is not an open socket).
    fn from(socket: net::UdpSocket) -> UdpSocket {
        let timeouts = Timeouts::with(
            socket.read_timeout().ok().flatten(),
            socket.write_timeout().ok().flatten(),
        );
        socket
            .set_nonblocking(true)
            .expect("pagurus::net: cannot make a UdpSocket non-blocking");
        UdpSocket::from_nonblocking(socket, timeouts)
    }
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

fd_traits!(UdpSocket);
