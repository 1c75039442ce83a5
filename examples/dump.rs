//! A coroutine dump: a few coroutines wait on different things, and `pagurus::dump()` shows
//! each one's wait, where it was spawned, its stack and its frames.
//!
//! `cargo run --example dump`. The runtime also prints a dump to stderr on `SIGUSR1`
//! (`Builder::dump_on_signal`; `PAGURUS_DUMP_SIGNAL=SIGUSR1` does the same for any program),
//! which also makes every park record when it started, so the first dump shows wait times.

use std::time::Duration;

use pagurus::{channel, sync, time};

#[inline(never)]
fn handle_client(rx: channel::Receiver<String>) -> usize {
    // Waits for a line that never comes.
    rx.recv().map_or(0, |line| line.len())
}

#[inline(never)]
fn update_totals(totals: &sync::Mutex<u64>) {
    *totals.lock() += 1;
}

#[inline(never)]
fn refresh_cache() {
    time::sleep(Duration::from_secs(3600));
}

#[inline(never)]
fn deep(n: u32) -> u32 {
    let pad = std::hint::black_box([n as u8; 512]);
    if n == 0 {
        time::sleep(Duration::from_secs(3600));
        return pad[0] as u32;
    }
    deep(n - 1) + pad[1] as u32
}

fn main() {
    let rt = pagurus::Runtime::builder()
        .workers(2)
        .dump_on_signal(Some(libc::SIGUSR1))
        .build()
        .unwrap();
    rt.block_on(|| {
        let (tx, rx) = channel::bounded::<String>(1);
        let client = pagurus::spawn(move || handle_client(rx));

        let totals = std::sync::Arc::new(sync::Mutex::new(0u64));
        let guard = totals.lock();
        let t = totals.clone();
        let updater = pagurus::spawn(move || update_totals(&t));

        let cache = pagurus::spawn(refresh_cache);
        let grower = pagurus::spawn(|| deep(8));

        time::sleep(Duration::from_millis(1500));
        print!("{}", pagurus::dump());

        drop(guard);
        updater.join().unwrap();
        drop(tx);
        client.join().unwrap();
        // The sleepers are cancelled when the runtime drops.
        drop((cache, grower));
    });
}
