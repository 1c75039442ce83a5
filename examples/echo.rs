//! An echo server with a coroutine per connection, written as plain blocking code.
//!
//! ```text
//! cargo run --release --example echo -- 127.0.0.1:7000 [WORKERS]
//! ```
//!
//! Try it with `nc 127.0.0.1 7000`. `cargo xtask bench net` measures it against tokio and Go.

use std::io::{self, Read, Write};
use std::time::Duration;

use pagurus::net::{TcpListener, TcpStream};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let mut builder = pagurus::Runtime::builder();
    if let Some(workers) = args.next() {
        builder = builder.workers(workers.parse().expect("WORKERS is a number"));
    }
    let rt = builder.build()?;
    rt.block_on(|| {
        let listener = TcpListener::bind(addr.as_str())?;
        eprintln!("echo: listening on {}", listener.local_addr()?);
        // The accept loop runs on a worker, which deals the connections' coroutines out over
        // all workers as it spawns them.
        pagurus::spawn(move || accept_loop(listener))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn accept_loop(listener: TcpListener) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                pagurus::spawn(move || echo(conn));
            }
            // Out of descriptors (EMFILE/ENFILE) or a connection that died in the queue: say so,
            // back off, and go on. Accept never spins.
            Err(err) => {
                eprintln!("echo: accept: {err}");
                pagurus::time::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn echo(mut conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    // Small enough to leave the coroutine on its first 4 KiB stack page.
    let mut buf = [0; 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
