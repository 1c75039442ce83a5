//! The chat example, run as a process: lines reach the other clients, and a client that sends
//! nothing for longer than the idle timeout is dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The example binary cargo built next to this test (`target/<profile>/examples/chat`).
fn chat_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("chat")
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn connect(addr: &str) -> (TcpStream, BufReader<TcpStream>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let r = BufReader::new(s.try_clone().unwrap());
                return (s, r);
            }
            Err(e) if Instant::now() > deadline => panic!("chat server not up: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    s.trim_end().to_owned()
}

#[test]
fn lines_reach_the_others_and_idle_clients_are_dropped() {
    let bin = chat_binary();
    if !bin.exists() {
        // A plain `cargo test` builds the examples; `cargo test --test chat_example` does not.
        let release = bin.components().any(|c| c.as_os_str() == "release");
        let mut build = Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
        build.args(["build", "--example", "chat"]);
        if release {
            build.arg("--release");
        }
        assert!(
            build.status().unwrap().success(),
            "building examples/chat.rs failed"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _server = Server(
        Command::new(&bin)
            .args([addr.as_str(), "1"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (mut a, mut ar) = connect(&addr);
    assert_eq!(line(&mut ar), "* welcome, user1");
    let (_b, mut br) = connect(&addr);
    let joined = Instant::now();
    assert_eq!(line(&mut br), "* welcome, user2");
    assert_eq!(line(&mut ar), "* user2 joined");
    a.write_all(b"hello\n").unwrap();
    assert_eq!(line(&mut br), "user1: hello");
    // user1 stays active, so that it outlives user2 by a few hundred milliseconds.
    std::thread::sleep(Duration::from_millis(400));
    a.write_all(b"still here\n").unwrap();
    assert_eq!(line(&mut br), "user1: still here");
    // user2 says nothing: after the 1 s idle timeout it is told so and disconnected.
    assert_eq!(line(&mut br), "* idle for 1 s: bye");
    assert!(
        joined.elapsed() >= Duration::from_millis(900),
        "dropped before its idle timeout"
    );
    let mut rest = String::new();
    assert_eq!(br.read_line(&mut rest).unwrap(), 0, "connection closed");
    // user1 sees user2 leave; it idles out itself about a second after its own line, so its
    // connection then ends too.
    let mut seen = Vec::new();
    loop {
        let mut l = String::new();
        if ar.read_line(&mut l).unwrap() == 0 {
            break;
        }
        seen.push(l.trim_end().to_owned());
    }
    assert!(seen.iter().any(|l| l == "* user2 left"), "{seen:?}");
    assert_eq!(
        seen.last().map(String::as_str),
        Some("* idle for 1 s: bye"),
        "{seen:?}"
    );
}
