//! Dumps on a signal (`Builder::dump_on_signal`, `PAGURUS_DUMP_SIGNAL`).
//!
//! The handler does one async-signal-safe thing: it writes the signal's number into a pipe.
//! A thread of the runtime (`pagurus-dump`, one per process, started by the first runtime built
//! with a dump signal) blocks reading that pipe, takes the dump ([`super::snapshot::dump`]) and
//! writes it to stderr. Nothing else runs in the handler: a dump allocates, locks and parses
//! debug information.

use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};

use libc::c_int;

/// The values `PAGURUS_DUMP_SIGNAL` accepts.
const ACCEPTED: &str = "SIGUSR1, SIGQUIT or off";

/// The signal `PAGURUS_DUMP_SIGNAL` names (case and blanks ignored): `Ok(None)` when unset,
/// empty or `off`.
pub(crate) fn signal_from_env() -> io::Result<Option<c_int>> {
    let Some(value) = std::env::var_os("PAGURUS_DUMP_SIGNAL") else {
        return Ok(None);
    };
    match value
        .to_str()
        .map(|v| v.trim().to_ascii_uppercase())
        .as_deref()
    {
        Some("" | "OFF") => Ok(None),
        Some("SIGUSR1") => Ok(Some(libc::SIGUSR1)),
        Some("SIGQUIT") => Ok(Some(libc::SIGQUIT)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("PAGURUS_DUMP_SIGNAL must be {ACCEPTED}, got {value:?}"),
        )),
    }
}

/// Checks a signal given to `Builder::dump_on_signal`: one a handler may be installed for, and
/// not one the runtime's stack growth handles itself.
pub(crate) fn validate(signal: c_int) -> io::Result<()> {
    let reserved = [libc::SIGSEGV, libc::SIGBUS, libc::SIGKILL, libc::SIGSTOP];
    if (1..libc::SIGRTMAX()).contains(&signal) && !reserved.contains(&signal) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "dump_on_signal must name a signal other than SIGSEGV, SIGBUS (stack growth uses \
             them), SIGKILL and SIGSTOP, got {signal}"
        ),
    ))
}

/// The write end of the pipe the handler writes to; -1 until the dump thread starts.
static PIPE: AtomicI32 = AtomicI32::new(-1);

/// Signals with the handler installed.
static INSTALLED: Mutex<Vec<c_int>> = Mutex::new(Vec::new());

/// Makes `signal` print a dump to stderr, starting the dump thread if it is not running yet.
/// The handler stays for the life of the process.
pub(crate) fn install(signal: c_int) -> io::Result<()> {
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if installed.contains(&signal) {
        return Ok(());
    }
    if PIPE.load(Relaxed) < 0 {
        start_thread()?;
    }
    // SAFETY: a zeroed sigaction is a valid starting point; every field we rely on is set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_signal as extern "C" fn(c_int) as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `sa_mask` is a sigset_t owned by `action`.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is fully initialised and its handler is async-signal-safe (one write).
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    installed.push(signal);
    crate::dump::enable_park_stamps();
    Ok(())
}

/// The handler: one `write` of the signal number to the pipe (async-signal-safe), `errno`
/// preserved. A full pipe drops the request: dumps are already pending.
extern "C" fn on_signal(signal: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno slot, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    let fd = PIPE.load(Relaxed);
    let byte = signal as u8;
    // SAFETY: writing one byte from a live local to a descriptor (or failing harmlessly with
    // EBADF); `write` is async-signal-safe.
    unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn start_thread() -> io::Result<()> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read_end, write_end] = fds;
    // The handler must never block: a full pipe fails its write instead.
    // SAFETY: `write_end` is a descriptor we own; F_SETFL with O_NONBLOCK changes only its flags.
    unsafe { libc::fcntl(write_end, libc::F_SETFL, libc::O_NONBLOCK) };
    std::thread::Builder::new()
        .name("pagurus-dump".into())
        .spawn(move || serve(read_end))?;
    PIPE.store(write_end, Relaxed);
    Ok(())
}

/// The dump thread: a dump to stderr for every signal byte read.
fn serve(read_end: c_int) {
    let mut buf = [0u8; 16];
    loop {
        // SAFETY: reading into a live local buffer of the length given.
        let n = unsafe { libc::read(read_end, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if n == 0 {
            return;
        }
        // Several signals that arrived while the last dump was printed ask for one dump.
        let dump = super::snapshot::dump();
        // Streamed block by block, through a buffer: stderr itself is unbuffered.
        let mut err = io::BufWriter::with_capacity(64 * 1024, io::stderr().lock());
        let _ = writeln!(err, "pagurus: coroutine dump (signal {})", buf[0]);
        let _ = writeln!(err, "{dump}");
        let _ = writeln!(err, "pagurus: end of coroutine dump");
        let _ = err.flush();
    }
}
