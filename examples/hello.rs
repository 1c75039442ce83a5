//! A first look: spawn coroutines, join them, watch the stacks.
//!
//! Run with `cargo run --example hello`.

fn main() {
    let total = pagurus::run(|| {
        let info = pagurus::stack::current().expect("the main coroutine runs on a coroutine stack");
        println!(
            "main coroutine: {} of {} stack bytes used",
            info.used, info.size
        );
        let handles: Vec<_> = (1..=1000u64)
            .map(|i| {
                pagurus::spawn(move || {
                    pagurus::yield_now();
                    i * i
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    println!("sum of the first 1000 squares, computed by 1000 coroutines: {total}");
    let stats = pagurus::stats();
    println!(
        "coroutines created: {}, live: {}, stack bytes still mapped: {}",
        stats.spawned, stats.live, stats.stack_bytes_reserved
    );
    assert_eq!(total, 333_833_500);
}
