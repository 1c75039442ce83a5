//! An HTTP/1.1 "Hello, World!" server: a coroutine per connection, keep-alive, pipelined
//! requests answered in order, requests parsed with `httparse`.
//!
//! ```text
//! cargo run --release --example http_hello -- 127.0.0.1:8080 [WORKERS]
//! curl -v http://127.0.0.1:8080/
//! ```

use std::io::{self, Read, Write};
use std::time::Duration;

use pagurus::net::{TcpListener, TcpStream};

const BODY: &[u8] = b"Hello, World!";
/// Requests with longer heads are refused (431).
const MAX_HEAD: usize = 16 * 1024;

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let mut builder = pagurus::Runtime::builder();
    if let Some(workers) = args.next() {
        builder = builder.workers(workers.parse().expect("WORKERS is a number"));
    }
    let rt = builder.build()?;
    rt.block_on(|| {
        let listener = TcpListener::bind(addr.as_str())?;
        eprintln!(
            "http_hello: listening on http://{}/",
            listener.local_addr()?
        );
        pagurus::spawn(move || {
            loop {
                match listener.accept() {
                    Ok((conn, _)) => {
                        pagurus::spawn(move || {
                            if let Err(err) = serve(conn) {
                                // Resets and half-open peers are routine for a server.
                                if err.kind() != io::ErrorKind::ConnectionReset {
                                    eprintln!("http_hello: {err}");
                                }
                            }
                        });
                    }
                    Err(err) => {
                        eprintln!("http_hello: accept: {err}");
                        pagurus::time::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// What one parsed request asks of the connection.
struct Request {
    /// Bytes of the head and body.
    len: usize,
    keep_alive: bool,
    /// A status other than 200 (the connection closes after it).
    error: Option<&'static str>,
}

/// Parses the request at the start of `buf`: `None` when it is not complete yet.
fn parse(buf: &[u8]) -> Option<Request> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Some(Request {
                len: buf.len(),
                keep_alive: false,
                error: Some("431 Request Header Fields Too Large"),
            });
        }
        Ok(httparse::Status::Partial) => return None,
        Err(_) => {
            return Some(Request {
                len: buf.len(),
                keep_alive: false,
                error: Some("400 Bad Request"),
            });
        }
    };
    let mut keep_alive = req.version == Some(1);
    let mut body = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value.to_ascii_lowercase();
            if v.windows(5).any(|w| w == b"close") {
                keep_alive = false;
            } else if v.windows(10).any(|w| w == b"keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            {
                Some(n) => body = n,
                None => {
                    return Some(Request {
                        len: buf.len(),
                        keep_alive: false,
                        error: Some("400 Bad Request"),
                    });
                }
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Some(Request {
                len: buf.len(),
                keep_alive: false,
                error: Some("501 Not Implemented"),
            });
        }
    }
    if buf.len() < head + body {
        return None;
    }
    Some(Request {
        len: head + body,
        keep_alive,
        error: None,
    })
}

fn respond(out: &mut Vec<u8>, req: &Request) {
    match req.error {
        None => {
            out.extend_from_slice(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ",
            );
            out.extend_from_slice(BODY.len().to_string().as_bytes());
            if !req.keep_alive {
                out.extend_from_slice(b"\r\nConnection: close");
            }
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(BODY);
        }
        Some(status) => {
            out.extend_from_slice(b"HTTP/1.1 ");
            out.extend_from_slice(status.as_bytes());
            out.extend_from_slice(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    }
}

/// Answers the requests of one connection, in order, until it closes or asks to.
fn serve(mut conn: TcpStream) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0; 1024];
    loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        // Every complete request in the buffer (pipelining), answered in one write.
        let mut used = 0;
        let mut close = false;
        while let Some(req) = parse(&buf[used..]) {
            used += req.len;
            respond(&mut out, &req);
            if !req.keep_alive {
                close = true;
                break;
            }
        }
        buf.drain(..used);
        if !out.is_empty() {
            conn.write_all(&out)?;
            out.clear();
        }
        if close {
            return conn.shutdown(std::net::Shutdown::Write);
        }
    }
}
