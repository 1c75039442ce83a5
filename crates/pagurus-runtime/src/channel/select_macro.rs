//! `select!`: crossbeam's syntax over [`select`](super::select::select).
//!
//! The macro parses the arms into a list (`__pagurus_select_parse`), binds each channel and send
//! message in source order to an arm on the stack (`__pagurus_select_bind`), calls the core with
//! the arms and the timeout the `default` arm asks for, and runs the body of the arm that
//! completed (`__pagurus_select_dispatch`). The identifiers of the arms come from one list made
//! where the macro is entered, so they resolve across the recursive expansions.

/// Waits until one of several channel operations completes, then runs that arm.
///
/// The syntax is crossbeam-channel's:
///
/// ```text
/// select! {
///     recv(rx) -> res => body,         // res: Result<T, RecvError>
///     send(tx, value) -> res => body,  // res: Result<(), SendError<T>>
///     default => body,                 // run at once if no operation is ready
///     default(duration) => body,       // or: run if none completes within `duration`
/// }
/// ```
///
/// Any number of `recv` and `send` arms (up to 32), in any order, and at most one `default`.
/// Without a `default` the macro waits as long as it takes. A disconnected channel is ready (its
/// arm completes with an error). When several arms are ready, **one is chosen uniformly at
/// random**. Bodies may `break`, `continue` or `return`.
///
/// One difference from crossbeam: the channel expressions *and every send arm's message* are
/// evaluated once, in source order, when the `select!` starts (as in Go); the messages of the arms
/// that do not complete are dropped when the `select!` ends. Crossbeam evaluates a message only
/// for the arm it chooses, which needs the chosen sender to produce it while a receiver waits
/// for it in a packet on its stack: a stack address handed to another coroutine, which moving
/// stacks forbid.
///
/// Works in coroutines (parking only the coroutine) and on plain threads (blocking the thread).
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use std::time::Duration;
/// use pagurus::channel::{after, bounded, unbounded};
///
/// pagurus::run(|| {
///     let (tx, rx) = unbounded();
///     let (done_tx, done_rx) = bounded::<()>(0);
///     pagurus::spawn(move || {
///         tx.send(1).unwrap();
///         drop(done_tx); // disconnects done_rx
///     });
///     let mut got = Vec::new();
///     loop {
///         pagurus::select! {
///             recv(rx) -> v => match v {
///                 Ok(v) => got.push(v),
///                 Err(_) => break, // the sender is gone
///             },
///             recv(done_rx) -> r => { assert!(r.is_err()); break; }
///             recv(after(Duration::from_secs(5))) -> _ => panic!("timed out"),
///         }
///     }
///     // The coroutine sent before it disconnected, but select! may see either first.
///     got.extend(rx.try_iter());
///     assert_eq!(got, [1]);
///
///     let (tx, rx) = bounded(1);
///     let sent = pagurus::select! {
///         send(tx, "x") -> res => res.is_ok(),
///         default => false,
///     };
///     assert!(sent);
///     let timed_out = pagurus::select! {
///         send(tx, "y") -> _ => false, // full: nobody receives
///         default(Duration::from_millis(2)) => true,
///     };
///     assert!(timed_out);
///     assert_eq!(rx.recv(), Ok("x"));
/// });
/// ```
///
/// # Panics
///
/// Unwinds with [`Cancelled`](crate::Cancelled) when the runtime is dropped while the coroutine
/// waits (see [`Receiver::recv`](crate::channel::Receiver::recv)).
#[macro_export]
macro_rules! select {
    ($($tokens:tt)*) => {
        $crate::__pagurus_select_parse!(
            ()
            ()
            ((0usize _arm0) (1usize _arm1) (2usize _arm2) (3usize _arm3) (4usize _arm4) (5usize _arm5) (6usize _arm6) (7usize _arm7) (8usize _arm8) (9usize _arm9) (10usize _arm10) (11usize _arm11) (12usize _arm12) (13usize _arm13) (14usize _arm14) (15usize _arm15) (16usize _arm16) (17usize _arm17) (18usize _arm18) (19usize _arm19) (20usize _arm20) (21usize _arm21) (22usize _arm22) (23usize _arm23) (24usize _arm24) (25usize _arm25) (26usize _arm26) (27usize _arm27) (28usize _arm28) (29usize _arm29) (30usize _arm30) (31usize _arm31))
            ($($tokens)*)
        )
    };
}

/// Parses `select!` arms: `(parsed arms) (default) (unused labels) (tokens left)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __pagurus_select_parse {
    // Done: bind the arms.
    ($arms:tt $default:tt $labels:tt ()) => {
        $crate::__pagurus_select_bind!($arms $arms $default)
    };

    // recv arms.
    (($($arms:tt)*) $default:tt (($i:tt $var:ident) $($labels:tt)*)
        (recv($r:expr) -> $res:pat => $body:block, $($tail:tt)*)) => {
        $crate::__pagurus_select_parse!(
            ($($arms)* [recv $i $var ($r) ($res) ($body)]) $default ($($labels)*) ($($tail)*))
    };
    (($($arms:tt)*) $default:tt (($i:tt $var:ident) $($labels:tt)*)
        (recv($r:expr) -> $res:pat => $body:block $($tail:tt)*)) => {
        $crate::__pagurus_select_parse!(
            ($($arms)* [recv $i $var ($r) ($res) ($body)]) $default ($($labels)*) ($($tail)*))
    };
    (($($arms:tt)*) $default:tt (($i:tt $var:ident) $($labels:tt)*)
        (recv($r:expr) -> $res:pat => $body:expr, $($tail:tt)*)) => {
        $crate::__pagurus_select_parse!(
            ($($arms)* [recv $i $var ($r) ($res) ($body)]) $default ($($labels)*) ($($tail)*))
    };
    (($($arms:tt)*) $default:tt (($i:tt $var:ident) $($labels:tt)*)
        (recv($r:expr) -> $res:pat => $body:expr)) => {
        $crate::__pagurus_select_parse!(
            ($($arms)* [recv $i $var ($r) ($res) ($body)]) $default ($($labels)*) ())
    };

    // send arms.
    (($($arms:tt)*) $default:tt (($i:tt $var:ident) $($labels:tt)*)
        (send($s:expr, $m:expr) -> $res:pat => $body:block, $($tail:tt)*)) => {
        $crate::__pagurus_select_parse!(
            ($($arms)* [send $i $var ($s) ($m) ($res) ($body)]) $default ($($labels)*) ($($tail)*))
    };
    (($($arms:tt)*) $default:tt (($i:tt $var:ident) $($labels:tt)*)
        (send($s:expr, $m:expr) -> $res:pat => $body:block $($tail:tt)*)) => {
        $crate::__pagurus_select_parse!(
            ($($arms)* [send $i $var ($s) ($m) ($res) ($body)]) $default ($($labels)*) ($($tail)*))
    };
    (($($arms:tt)*) $default:tt (($i:tt $var:ident) $($labels:tt)*)
        (send($s:expr, $m:expr) -> $res:pat => $body:expr, $($tail:tt)*)) => {
        $crate::__pagurus_select_parse!(
            ($($arms)* [send $i $var ($s) ($m) ($res) ($body)]) $default ($($labels)*) ($($tail)*))
    };
    (($($arms:tt)*) $default:tt (($i:tt $var:ident) $($labels:tt)*)
        (send($s:expr, $m:expr) -> $res:pat => $body:expr)) => {
        $crate::__pagurus_select_parse!(
            ($($arms)* [send $i $var ($s) ($m) ($res) ($body)]) $default ($($labels)*) ())
    };

    // default arms (at most one).
    ($arms:tt () $labels:tt (default => $body:block, $($tail:tt)*)) => {
        $crate::__pagurus_select_parse!($arms (default () ($body)) $labels ($($tail)*))
    };
    ($arms:tt () $labels:tt (default => $body:block $($tail:tt)*)) => {
        $crate::__pagurus_select_parse!($arms (default () ($body)) $labels ($($tail)*))
    };
    ($arms:tt () $labels:tt (default => $body:expr, $($tail:tt)*)) => {
        $crate::__pagurus_select_parse!($arms (default () ($body)) $labels ($($tail)*))
    };
    ($arms:tt () $labels:tt (default => $body:expr)) => {
        $crate::__pagurus_select_parse!($arms (default () ($body)) $labels ())
    };
    ($arms:tt () $labels:tt (default($d:expr) => $body:block, $($tail:tt)*)) => {
        $crate::__pagurus_select_parse!($arms (default ($d) ($body)) $labels ($($tail)*))
    };
    ($arms:tt () $labels:tt (default($d:expr) => $body:block $($tail:tt)*)) => {
        $crate::__pagurus_select_parse!($arms (default ($d) ($body)) $labels ($($tail)*))
    };
    ($arms:tt () $labels:tt (default($d:expr) => $body:expr, $($tail:tt)*)) => {
        $crate::__pagurus_select_parse!($arms (default ($d) ($body)) $labels ($($tail)*))
    };
    ($arms:tt () $labels:tt (default($d:expr) => $body:expr)) => {
        $crate::__pagurus_select_parse!($arms (default ($d) ($body)) $labels ())
    };
    ($arms:tt ($($default:tt)+) $labels:tt (default $($tail:tt)*)) => {
        ::core::compile_error!("`select!` has more than one `default` arm")
    };

    // Errors.
    ($arms:tt $default:tt () ($($tail:tt)+)) => {
        ::core::compile_error!("`select!` has more than 32 arms")
    };
    ($arms:tt $default:tt $labels:tt ($($tail:tt)+)) => {
        ::core::compile_error!(::core::concat!(
            "`select!` expects `recv(rx) -> res => body`, `send(tx, value) -> res => body`, ",
            "`default => body` or `default(duration) => body`, found: ",
            ::core::stringify!($($tail)+)
        ))
    };
}

/// Binds each arm's channel (and message) in order, then selects:
/// `(arms to bind) (all arms) (default)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __pagurus_select_bind {
    (([recv $i:tt $var:ident ($r:expr) $res:tt $body:tt] $($rest:tt)*) $all:tt $default:tt) => {
        match $r {
            ref rx => {
                let mut $var = $crate::channel::__private::RecvArm::new(rx);
                $crate::__pagurus_select_bind!(($($rest)*) $all $default)
            }
        }
    };
    (([send $i:tt $var:ident ($s:expr) ($m:expr) $res:tt $body:tt] $($rest:tt)*) $all:tt
        $default:tt) => {
        match $s {
            ref tx => {
                let mut $var = $crate::channel::__private::SendArm::new(tx, $m);
                $crate::__pagurus_select_bind!(($($rest)*) $all $default)
            }
        }
    };
    (() ($([$kind:ident $i:tt $var:ident $($x:tt)*])*) $default:tt) => {{
        let selected = $crate::channel::__private::select(
            &mut [$($var.arm($i)),*],
            $crate::__pagurus_select_timeout!($default),
        );
        $crate::__pagurus_select_dispatch!(selected ($([$kind $i $var $($x)*])*) $default)
    }};
}

/// The timeout a `default` arm asks for.
#[doc(hidden)]
#[macro_export]
macro_rules! __pagurus_select_timeout {
    (()) => {
        $crate::channel::__private::Timeout::Never
    };
    ((default () $body:tt)) => {
        $crate::channel::__private::Timeout::Now
    };
    ((default ($d:expr) $body:tt)) => {
        $crate::channel::__private::Timeout::after($d)
    };
}

/// Runs the body of the arm that completed.
#[doc(hidden)]
#[macro_export]
macro_rules! __pagurus_select_dispatch {
    ($sel:ident ([recv $i:tt $var:ident $r:tt ($res:pat) ($body:expr)] $($rest:tt)*) $default:tt) => {
        if $sel == ::core::option::Option::Some($i) {
            let $res = $var.into_result();
            $body
        } else {
            $crate::__pagurus_select_dispatch!($sel ($($rest)*) $default)
        }
    };
    ($sel:ident ([send $i:tt $var:ident $s:tt $m:tt ($res:pat) ($body:expr)] $($rest:tt)*)
        $default:tt) => {
        if $sel == ::core::option::Option::Some($i) {
            let $res = $var.into_result();
            $body
        } else {
            $crate::__pagurus_select_dispatch!($sel ($($rest)*) $default)
        }
    };
    ($sel:ident () ()) => {
        ::core::unreachable!("select! without a default completed no arm")
    };
    ($sel:ident () (default $d:tt ($body:expr))) => {
        $body
    };
}
