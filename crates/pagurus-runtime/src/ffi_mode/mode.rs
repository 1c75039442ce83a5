//! The [`Mode`] type: its spellings, and its encoding in one atomic word. No dependencies.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Where a foreign call runs.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use pagurus::ffi_mode::Mode;
/// assert_eq!("reserve:256k".parse::<Mode>().unwrap(), Mode::Reserve { bytes: 256 * 1024 });
/// assert_eq!(Mode::Switch.to_string(), "switch");
/// assert!("fast".parse::<Mode>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// On this thread's large system stack (8 MiB), like cgo: safe for any C code, a few
    /// nanoseconds per call. The default.
    Switch,
    /// Straight on the coroutine stack, no check: as cheap as a plain call. C frames that fault
    /// in the guard region grow the stack like Rust frames; a single unprobed frame larger than
    /// the guard (4 MiB) would not be detected.
    Direct,
    /// On the coroutine stack after making sure `bytes` of it are free (`stack::ensure`).
    Reserve {
        /// Headroom to guarantee before the call.
        bytes: usize,
    },
    /// On a thread of the blocking-call pool while the calling coroutine parks, so the other
    /// coroutines of its worker keep running: for calls that sleep or block.
    Offload,
}

/// The accepted spellings, for error messages.
const ACCEPTED: &str =
    "switch, direct, reserve:<size> (e.g. reserve:256k, reserve:1m, reserve:65536), offload";

impl FromStr for Mode {
    type Err = io::Error;

    fn from_str(s: &str) -> io::Result<Mode> {
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid foreign-call mode {s:?}: expected one of {ACCEPTED}"),
            )
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "switch" => Ok(Mode::Switch),
            "direct" => Ok(Mode::Direct),
            "offload" => Ok(Mode::Offload),
            other => {
                let size = other.strip_prefix("reserve:").ok_or_else(bad)?;
                let (digits, unit) = match size.as_bytes().last() {
                    Some(b'k') => (&size[..size.len() - 1], 1 << 10),
                    Some(b'm') => (&size[..size.len() - 1], 1 << 20),
                    Some(b'g') => (&size[..size.len() - 1], 1 << 30),
                    _ => (size, 1),
                };
                let n: usize = digits.parse().map_err(|_| bad())?;
                let bytes = n.checked_mul(unit).ok_or_else(bad)?;
                Ok(Mode::Reserve { bytes })
            }
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Switch => f.write_str("switch"),
            Mode::Direct => f.write_str("direct"),
            Mode::Offload => f.write_str("offload"),
            Mode::Reserve { bytes } => write!(f, "reserve:{bytes}"),
        }
    }
}

/// A [`Mode`] in one atomic word (the variant in the low two bits, `Reserve`'s bytes above),
/// with the largest `Reserve` its runtime accepts.
///
/// Every mode stored is checked against that bound first, and the bound is far below what the
/// word holds, so the encoding never drops bits: a `Reserve` too large for the word was once
/// stored as `bytes << 2` and came back as `Reserve { bytes: 0 }`.
#[derive(Debug)]
pub(crate) struct AtomicMode {
    word: AtomicU64,
    /// The largest `Reserve` accepted: half the runtime's `max_stack_size`, or [`ENCODABLE`]
    /// for the word of calls made outside runtimes.
    max_reserve: usize,
}

/// The largest `Reserve` the word can hold.
const ENCODABLE: usize = (u64::MAX >> 2) as usize;

/// The largest `Reserve` a runtime whose stacks grow to `max_stack_size` accepts: half of it, so
/// that the reserved bytes and the caller's own frames fit in a stack of the largest size (a
/// larger one aborted at the first call).
pub(crate) const fn max_reserve(max_stack_size: usize) -> usize {
    max_stack_size / 2
}

impl AtomicMode {
    /// The word of calls made outside runtimes: `Switch`, any `Reserve` the word can hold (the
    /// mode changes nothing there: there is no coroutine stack).
    pub(crate) const fn new_outside() -> AtomicMode {
        AtomicMode {
            word: AtomicU64::new(0),
            max_reserve: ENCODABLE,
        }
    }

    /// The word of a runtime whose stacks grow to `max_stack_size`, holding `mode`; an
    /// `InvalidInput` error if `mode` is out of its range.
    pub(crate) fn new(mode: Mode, max_stack_size: usize) -> io::Result<AtomicMode> {
        let max_reserve = max_reserve(max_stack_size).min(ENCODABLE);
        check(mode, max_reserve)?;
        Ok(AtomicMode {
            word: AtomicU64::new(encode(mode)),
            max_reserve,
        })
    }

    #[inline]
    pub(crate) fn load(&self) -> Mode {
        decode(self.word.load(Relaxed))
    }

    /// Stores `mode`, or leaves the word alone and returns `InvalidInput` when it is out of
    /// range.
    pub(crate) fn store(&self, mode: Mode) -> io::Result<()> {
        check(mode, self.max_reserve)?;
        self.word.store(encode(mode), Relaxed);
        Ok(())
    }
}

/// Whether `mode` is in the range of a word accepting `Reserve`s up to `max_reserve` bytes.
fn check(mode: Mode, max_reserve: usize) -> io::Result<()> {
    match mode {
        Mode::Reserve { bytes } if bytes > max_reserve => {
            let bound = if max_reserve == ENCODABLE {
                format!("at most {ENCODABLE} bytes")
            } else {
                format!("at most half of max_stack_size ({max_reserve} bytes)")
            };
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("Reserve {{ bytes: {bytes} }} is out of range: {bound}"),
            ))
        }
        _ => Ok(()),
    }
}

fn encode(mode: Mode) -> u64 {
    match mode {
        Mode::Switch => 0,
        Mode::Direct => 1,
        Mode::Offload => 2,
        Mode::Reserve { bytes } => {
            debug_assert!(bytes <= ENCODABLE, "checked before it is encoded");
            3 | ((bytes as u64) << 2)
        }
    }
}

#[inline]
fn decode(word: u64) -> Mode {
    match word & 3 {
        0 => Mode::Switch,
        1 => Mode::Direct,
        2 => Mode::Offload,
        _ => Mode::Reserve {
            bytes: (word >> 2) as usize,
        },
    }
}

/// The mode a runtime starts with when its builder does not say: `PAGURUS_FFI_MODE` if set (an
/// invalid value is an error), else [`Mode::Switch`].
pub(crate) fn mode_from_env() -> io::Result<Mode> {
    match std::env::var("PAGURUS_FFI_MODE") {
        Ok(value) => value
            .parse()
            .map_err(|e: io::Error| io::Error::new(e.kind(), format!("PAGURUS_FFI_MODE: {e}"))),
        Err(std::env::VarError::NotPresent) => Ok(Mode::Switch),
        Err(std::env::VarError::NotUnicode(_)) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("PAGURUS_FFI_MODE is not valid UTF-8: expected one of {ACCEPTED}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_and_round_trips() {
        for (text, mode) in [
            ("switch", Mode::Switch),
            ("DIRECT", Mode::Direct),
            (" offload ", Mode::Offload),
            ("reserve:256k", Mode::Reserve { bytes: 256 << 10 }),
            ("reserve:4m", Mode::Reserve { bytes: 4 << 20 }),
            ("reserve:1g", Mode::Reserve { bytes: 1 << 30 }),
            ("reserve:65536", Mode::Reserve { bytes: 65536 }),
        ] {
            let parsed: Mode = text.parse().unwrap();
            assert_eq!(parsed, mode, "{text}");
            assert_eq!(decode(encode(mode)), mode);
            let word = AtomicMode::new(mode, 1 << 31).unwrap();
            assert_eq!(word.load(), mode);
            assert_eq!(parsed.to_string().parse::<Mode>().unwrap(), mode);
        }
        for bad in [
            "",
            "fast",
            "reserve",
            "reserve:",
            "reserve:12x",
            "reserve:-1k",
        ] {
            let err = bad.parse::<Mode>().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(
                err.to_string().contains("switch, direct, reserve:<size>"),
                "{err}"
            );
        }
    }

    #[test]
    fn out_of_range_reserves_are_refused_not_truncated() {
        let outside = AtomicMode::new_outside();
        for bytes in [1usize << 62, usize::MAX] {
            let err = outside.store(Mode::Reserve { bytes }).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(
                outside.load(),
                Mode::Switch,
                "a refused mode changes nothing"
            );
        }
        outside.store(Mode::Reserve { bytes: ENCODABLE }).unwrap();
        assert_eq!(outside.load(), Mode::Reserve { bytes: ENCODABLE });

        let err = AtomicMode::new(
            Mode::Reserve {
                bytes: (1 << 19) + 1,
            },
            1 << 20,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("at most half of max_stack_size (524288 bytes)"),
            "{err}"
        );
        let word = AtomicMode::new(Mode::Reserve { bytes: 1 << 19 }, 1 << 20).unwrap();
        assert!(word.store(Mode::Reserve { bytes: 1 << 62 }).is_err());
        assert_eq!(word.load(), Mode::Reserve { bytes: 1 << 19 });
    }
}
