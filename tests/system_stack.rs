//! `stack::on_system_stack`: large stacks for a moment, panics across the switch, nesting.

use pagurus::{Runtime, stack};

fn runtime() -> Runtime {
    Runtime::builder().workers(1).build().unwrap()
}

#[test]
fn a_panic_on_the_system_stack_reaches_the_caller_and_the_coroutine_goes_on() {
    let (msg, info_after, yielded) = runtime().block_on(|| {
        pagurus::spawn(|| {
            let err = std::panic::catch_unwind(|| {
                stack::on_system_stack(|| -> u32 { panic!("deep {}", std::hint::black_box(42)) })
            })
            .unwrap_err();
            let msg = err
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            // Back on the coroutine stack, with the system stack marked inactive again.
            let info = stack::current();
            pagurus::yield_now();
            (msg, info, true)
        })
        .join()
        .unwrap()
    });
    assert_eq!(msg, "deep 42");
    assert!(info_after.is_some(), "on the coroutine stack again");
    assert!(yielded);
}

#[test]
fn the_system_stack_holds_megabytes_and_nests() {
    let (sum, nested_is_none, outside_is_some) = runtime().block_on(|| {
        pagurus::spawn(|| {
            let sum = stack::on_system_stack(|| {
                let big = std::hint::black_box([3u8; 2 << 20]); // 2 MiB in one frame
                let inner = stack::on_system_stack(|| stack::current().is_none());
                (big.iter().map(|&b| b as u64).sum::<u64>(), inner)
            });
            (sum.0, sum.1, stack::current().is_some())
        })
        .join()
        .unwrap()
    });
    assert_eq!(sum, 3 * (2 << 20) as u64);
    assert!(nested_is_none && outside_is_some);
    assert_eq!(stack::SYSTEM_STACK_SIZE, 8 << 20);
}

#[test]
fn ensure_on_the_system_stack_does_nothing() {
    let growths = runtime().block_on(|| {
        pagurus::spawn(|| {
            stack::on_system_stack(|| {
                assert_eq!(stack::remaining(), None);
                stack::ensure(64 << 20);
            });
            stack::current().unwrap().growths
        })
        .join()
        .unwrap()
    });
    assert_eq!(growths, 0);
}
