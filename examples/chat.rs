//! A line chat server: every line a client sends goes to every other client.
//!
//! ```text
//! cargo run --release --example chat -- 127.0.0.1:7001 [IDLE_SECS]
//! ```
//!
//! Connect with `nc 127.0.0.1 7001` from a few terminals. A client that sends nothing for
//! IDLE_SECS (default 60) is told so and dropped.
//!
//! Each connection has a coroutine that waits, with `select!`, for whichever comes first: a line
//! from its client (read by a helper coroutine and passed through a channel), a line from another
//! client (through its own outbox channel), or the idle timeout. A hub coroutine owns the list
//! of clients and forwards each line to every other outbox; a full outbox (a client that does not
//! read) loses the line rather than stall the room.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pagurus::channel::{Receiver, Sender, bounded, unbounded};
use pagurus::net::{TcpListener, TcpStream};

/// Lines a client may fall behind by before it misses some.
const OUTBOX: usize = 64;
/// Longest line accepted, in bytes.
const MAX_LINE: u64 = 4096;

enum Event {
    Join(u64, Sender<Arc<str>>),
    Line(u64, String),
    Leave(u64),
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7001".into());
    let idle = Duration::from_secs(
        args.next()
            .map_or(60, |s| s.parse().expect("IDLE_SECS is a number")),
    );
    pagurus::run(|| {
        let listener = TcpListener::bind(addr.as_str())?;
        eprintln!(
            "chat: listening on {}, dropping clients idle for {idle:?}",
            listener.local_addr()?
        );
        let (events, inbox) = unbounded();
        pagurus::spawn(move || hub(inbox));
        let mut next_id = 0;
        loop {
            match listener.accept() {
                Ok((conn, _)) => {
                    next_id += 1;
                    let (id, events) = (next_id, events.clone());
                    pagurus::spawn(move || {
                        if let Err(err) = client(id, conn, events, idle) {
                            eprintln!("chat: user{id}: {err}");
                        }
                    });
                }
                Err(err) => {
                    eprintln!("chat: accept: {err}");
                    pagurus::time::sleep(Duration::from_millis(100));
                }
            }
        }
    })
}

/// Owns the room: forwards every line to every other client's outbox.
fn hub(inbox: Receiver<Event>) {
    let mut clients: HashMap<u64, Sender<Arc<str>>> = HashMap::new();
    for event in inbox {
        let (from, text): (u64, Arc<str>) = match event {
            Event::Join(id, outbox) => {
                clients.insert(id, outbox);
                (id, format!("* user{id} joined").into())
            }
            Event::Leave(id) => {
                clients.remove(&id);
                (id, format!("* user{id} left").into())
            }
            Event::Line(id, line) => (id, format!("user{id}: {line}").into()),
        };
        for (id, outbox) in &clients {
            if *id != from {
                // Full: that client is not reading; it misses the line. Gone: it is leaving.
                let _ = outbox.try_send(text.clone());
            }
        }
    }
}

/// One client's life: join, relay lines both ways until it leaves or idles out, leave.
fn client(id: u64, conn: TcpStream, events: Sender<Event>, idle: Duration) -> io::Result<()> {
    let (outbox, mail) = bounded(OUTBOX);
    let _ = events.send(Event::Join(id, outbox));
    let result = relay(id, &conn, &events, &mail, idle);
    let _ = events.send(Event::Leave(id));
    // Ends the reader coroutine too: its next read sees the end of the stream.
    let _ = conn.shutdown(Shutdown::Both);
    result
}

fn relay(
    id: u64,
    conn: &TcpStream,
    events: &Sender<Event>,
    mail: &Receiver<Arc<str>>,
    idle: Duration,
) -> io::Result<()> {
    // The socket is read by a helper coroutine, so that this one can wait on channels and a
    // timeout at once.
    let (line_tx, lines) = bounded::<String>(16);
    let reader = conn.try_clone()?;
    pagurus::spawn(move || {
        let mut reader = BufReader::new(reader);
        loop {
            let mut line = String::new();
            match (&mut reader).take(MAX_LINE).read_line(&mut line) {
                Ok(0) | Err(_) => return, // dropping line_tx tells the client coroutine
                Ok(_) => {
                    let line = line.trim_end_matches(['\r', '\n']).to_owned();
                    if line_tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut out = conn;
    writeln!(out, "* welcome, user{id}")?;
    // Idle means the client sent nothing: only its own lines move the deadline.
    let mut deadline = Instant::now() + idle;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        pagurus::select! {
            recv(lines) -> line => match line {
                Ok(line) => {
                    deadline = Instant::now() + idle;
                    let _ = events.send(Event::Line(id, line));
                }
                Err(_) => return Ok(()), // the client closed the connection
            },
            recv(mail) -> text => {
                if let Ok(text) = text {
                    writeln!(out, "{text}")?;
                }
            }
            default(left) => {
                writeln!(out, "* idle for {} s: bye", idle.as_secs())?;
                return Ok(());
            }
        }
    }
}
