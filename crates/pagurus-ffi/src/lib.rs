//! Foreign calls from pagurus coroutines.
//!
//! C code expects a large stack; coroutines start with one page. This crate will offer the ways
//! to bridge the two (run the call on a large system stack, straight on the coroutine stack,
//! after reserving headroom, or on a blocking-offload thread), selectable per runtime, per call
//! or by environment variable. It is empty until the stack-growth engine it builds on lands;
//! see design.md, "Foreign calls".
