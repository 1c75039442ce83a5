//! Names for code addresses in the runtime's fatal messages ("... in my_crate::parse+0x3c").
//!
//! Only called on the way to `abort()`, after the message's async-signal-safe part is written:
//! it opens and parses the object's file (allocating), which is acceptable there and only there.
//! The symbol table of the file is used, so functions that are not exported are named too.

use std::fmt::Write;
use std::fs::File;

use memmap2::Mmap;
use object::Object;

use super::frames::object_for_address;

/// Appends ` in SYMBOL+0xOFFSET` for `pc`, or ` in FILE+0xOFFSET` when the file has no symbol
/// for it; nothing when `pc` is in no known object.
pub(crate) fn describe(pc: usize, out: &mut dyn Write) {
    let Some(loaded) = object_for_address(pc) else {
        return;
    };
    let Some(path) = &loaded.path else { return };
    let file_addr = pc.wrapping_sub(loaded.bias) as u64;
    if let Some((name, offset)) = symbol_in_file(path, file_addr) {
        let _ = write!(out, " in {:#}+{offset:#x}", rustc_demangle::demangle(&name));
    } else {
        let _ = write!(out, " in {}+{file_addr:#x}", path.display());
    }
}

fn symbol_in_file(path: &std::path::Path, addr: u64) -> Option<(String, u64)> {
    let file = File::open(path).ok()?;
    // SAFETY: a loaded object's file, mapped read-only for a moment; as for the loader's own
    // mapping, nobody rewrites a running program's files in place.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    let elf = object::File::parse(&*map).ok()?;
    let symbols = elf.symbol_map();
    let symbol = symbols.before(addr)?;
    Some((symbol.name().to_string(), addr - symbol.address()))
}
