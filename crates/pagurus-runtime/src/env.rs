//! Reading `PAGURUS_*` switches from the environment, one way for all of them.

use std::io;

/// The accepted values of an on/off variable (case and surrounding blanks ignored).
pub(crate) const ACCEPTED: &str = "1, 0, true, false, on, off";

/// The on/off variable `var`: `unset` when it is not set (`unset_note` says what that means, for
/// the error message). A value that is not one of [`ACCEPTED`] is an `InvalidInput` error naming
/// the variable and listing them.
pub(crate) fn flag(var: &str, unset: bool, unset_note: &str) -> io::Result<bool> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{var} is {what}: expected one of {ACCEPTED} (unset: {unset_note})"),
        )
    };
    match std::env::var(var) {
        Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "on" => Ok(true),
            "0" | "false" | "off" => Ok(false),
            _ => Err(bad(&format!("{value:?}"))),
        },
        Err(std::env::VarError::NotPresent) => Ok(unset),
        Err(std::env::VarError::NotUnicode(_)) => Err(bad("not valid UTF-8")),
    }
}
