//! `peer-tokio echo|http ADDR WORKERS`: tokio's side of `cargo xtask bench net`, a task per
//! connection, doing exactly what `examples/echo.rs` and `examples/http_hello.rs` do.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, addr, workers] = &args[..] else {
        eprintln!("usage: peer-tokio echo|http ADDR WORKERS");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.parse().expect("WORKERS is a number"))
        .enable_io()
        .enable_time()
        .build()?;
    let http = match mode.as_str() {
        "echo" => false,
        "http" => true,
        _ => panic!("mode is echo or http"),
    };
    rt.block_on(async move {
        let listener = TcpListener::bind(addr.as_str()).await?;
        eprintln!("peer-tokio: {mode} on {}", listener.local_addr()?);
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    tokio::spawn(async move {
                        let _ = if http { serve_http(conn).await } else { echo(conn).await };
                    });
                }
                Err(err) => {
                    eprintln!("peer-tokio: accept: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    })
}

async fn echo(mut conn: TcpStream) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut buf = [0; 1024];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        conn.write_all(&buf[..n]).await?;
    }
}

const BODY: &[u8] = b"Hello, World!";

/// Length and keep-alive of the complete request at the start of `buf`, if there is one.
fn parse(buf: &[u8]) -> Result<Option<(usize, bool)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let mut keep_alive = req.version == Some(1);
    let mut body = 0;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            keep_alive = !h.value.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            body = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(())?;
        }
    }
    Ok((buf.len() >= head + body).then_some((head + body, keep_alive)))
}

async fn serve_http(mut conn: TcpStream) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0; 1024];
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        let mut close = false;
        loop {
            match parse(&buf[used..]) {
                Ok(Some((len, keep_alive))) => {
                    used += len;
                    out.extend_from_slice(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n",
                    );
                    out.extend_from_slice(BODY);
                    if !keep_alive {
                        close = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(()) => return Ok(()),
            }
        }
        buf.drain(..used);
        if !out.is_empty() {
            conn.write_all(&out).await?;
            out.clear();
        }
        if close {
            return Ok(());
        }
    }
}
