//! Where new coroutines start. Started coroutines are pinned, so placement is the only balancing
//! there is: a coroutine that spawns one child at a time and then waits (an accept loop) must
//! deal its children out over the workers, not pin them all next to itself.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pagurus::net::{TcpListener, TcpStream};
use pagurus::{Runtime, spawn};

fn worker_name() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

fn assert_spread(names: &[String], what: &str) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for n in names {
        *counts.entry(n).or_default() += 1;
    }
    for w in ["pagurus-worker-0", "pagurus-worker-1"] {
        let share = counts.get(w).copied().unwrap_or(0);
        assert!(
            share * 10 >= names.len() * 3,
            "{what}: {w} got {share} of {}: {counts:?}",
            names.len()
        );
    }
}

/// 40 long-running coroutines, spawned one at a time by one coroutine that waits in between.
#[test]
fn children_spawned_one_at_a_time_spread_over_two_workers() {
    for waits_by in ["sleep", "yield"] {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let names = rt.block_on(|| {
            spawn(move || {
                let stop = Arc::new(AtomicBool::new(false));
                let names = Arc::new(Mutex::new(Vec::new()));
                let mut children = Vec::new();
                for _ in 0..40 {
                    let (stop, names) = (stop.clone(), names.clone());
                    children.push(spawn(move || {
                        names.lock().unwrap().push(worker_name());
                        // Long-running: busy (yielding) until told to stop.
                        while !stop.load(Ordering::Relaxed) {
                            pagurus::yield_now();
                        }
                    }));
                    if waits_by == "sleep" {
                        pagurus::time::sleep(Duration::from_millis(1));
                    } else {
                        pagurus::yield_now();
                    }
                }
                while names.lock().unwrap().len() < 40 {
                    pagurus::time::sleep(Duration::from_millis(1));
                }
                stop.store(true, Ordering::Relaxed);
                for c in children {
                    c.join().unwrap();
                }
                Arc::try_unwrap(names).unwrap().into_inner().unwrap()
            })
            .join()
            .unwrap()
        });
        assert_eq!(names.len(), 40);
        assert_spread(&names, waits_by);
    }
}

/// Connections accepted one at a time by one accept loop land on both workers.
#[test]
fn accepted_connections_spread_over_two_workers() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let names = rt.block_on(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        let n2 = names.clone();
        spawn(move || {
            for conn in listener.incoming().take(40) {
                let mut conn = conn.unwrap();
                let names = n2.clone();
                spawn(move || {
                    names.lock().unwrap().push(worker_name());
                    let mut buf = [0; 64];
                    while let Ok(n @ 1..) = conn.read(&mut buf) {
                        conn.write_all(&buf[..n]).unwrap();
                    }
                });
            }
        });
        // One connection at a time, each kept open until all are made.
        let mut open = Vec::new();
        for i in 0..40u8 {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(&[i]).unwrap();
            let mut b = [0];
            c.read_exact(&mut b).unwrap();
            assert_eq!(b[0], i);
            open.push(c);
        }
        drop(open);
        names.lock().unwrap().clone()
    });
    assert_eq!(names.len(), 40);
    assert_spread(&names, "accepted connections");
}

/// Spawn + join keeps the child next to its joiner: it runs on the joiner's worker.
#[test]
fn a_child_joined_at_once_runs_on_its_spawners_worker() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let same = rt.block_on(|| {
        spawn(|| {
            let me = worker_name();
            (0..100)
                .filter(|_| spawn(worker_name).join().unwrap() == me)
                .count()
        })
        .join()
        .unwrap()
    });
    assert_eq!(same, 100);
}
