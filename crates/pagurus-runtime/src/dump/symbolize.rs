//! Names for return addresses: DWARF line tables and inlining (`addr2line` over the object's
//! own sections, read with `object`), falling back to the symbol table when a binary has no
//! debug information (a release build without `debug`).
//!
//! Runs on the dumping thread, never in a signal handler and never on a worker. Each object's
//! file is mapped once for the life of the process (read-only, shared pages: address space, not
//! memory), and what was parsed of its DWARF stays, with the names of every return address
//! looked up so far: dumps of many coroutines parked at the same few places, and repeated
//! dumps, name each place once. (A library unloaded and another loaded at its addresses would
//! be named after the first; the runtime never unloads code.) Dumps taken at once name their
//! frames one after the other.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Mutex;

use addr2line::gimli::{self, EndianSlice, RunTimeEndian, Section};
use memmap2::Mmap;
use object::{Object, ObjectSection, ObjectSymbol};

use super::Frame;
use crate::grow::frames::object_for_address;

type Reader = EndianSlice<'static, RunTimeEndian>;

/// Files mapped for symbolisation, kept for the process: `addr2line` borrows their bytes.
static MAPPED: Mutex<Vec<(PathBuf, &'static [u8])>> = Mutex::new(Vec::new());

fn mapped(path: &PathBuf) -> Option<&'static [u8]> {
    let mut files = MAPPED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, bytes)) = files.iter().find(|(p, _)| p == path) {
        return Some(bytes);
    }
    let file = File::open(path).ok()?;
    // SAFETY: a loaded object's file, mapped read-only; as for the loader's own mapping,
    // nobody rewrites a running program's files in place.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    let bytes: &'static [u8] = Box::leak(Box::new(map));
    files.push((path.clone(), bytes));
    Some(bytes)
}

/// One object's debug information and symbols.
struct Names {
    dwarf: Option<addr2line::Context<Reader>>,
    /// `(address, name)` sorted by address: the symbol table, for code without DWARF.
    symbols: Vec<(u64, &'static str)>,
}

impl Names {
    fn load(bytes: &'static [u8]) -> Option<Names> {
        let file = object::File::parse(bytes).ok()?;
        let endian = if file.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let section = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
            let data = file
                .section_by_name(id.name())
                .and_then(|s| s.data().ok())
                .unwrap_or(&[]);
            Ok(EndianSlice::new(data, endian))
        };
        let dwarf = gimli::Dwarf::load(section)
            .ok()
            .filter(|d| !d.debug_info.reader().is_empty())
            .and_then(|d| addr2line::Context::from_dwarf(d).ok());
        let mut symbols: Vec<(u64, &'static str)> = file
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.name().ok()?)))
            .collect();
        symbols.sort_unstable();
        Some(Names { dwarf, symbols })
    }

    /// Appends the frames at file address `probe` (inlined ones first, innermost first), each
    /// with whether it is the runtime's own; file names under `cwd` are made relative to it.
    fn frames(&self, pc: usize, probe: u64, cwd: &str, out: &mut Vec<Named>) {
        let before = out.len();
        if let Some(dwarf) = &self.dwarf
            && let Ok(mut iter) = dwarf.find_frames(probe).skip_all_loads()
        {
            while let Ok(Some(frame)) = iter.next() {
                let function = frame
                    .function
                    .as_ref()
                    .and_then(|f| f.raw_name().ok())
                    .map(|name| demangle(&name));
                let (file, line) = frame.location.map_or((None, None), |l| (l.file, l.line));
                out.push(Named {
                    internal: file.is_some_and(internal_file),
                    frame: Frame {
                        pc,
                        function,
                        file: file.map(|f| relative(f, cwd)),
                        line,
                    },
                });
            }
        }
        let symbol = || {
            let i = self.symbols.partition_point(|&(addr, _)| addr <= probe);
            i.checked_sub(1)
                .and_then(|i| self.symbols.get(i))
                .map(|&(_, name)| demangle(name))
        };
        if out.len() == before || out[before..].iter().all(|n| n.frame.function.is_none()) {
            out.truncate(before);
            out.push(Named {
                internal: false,
                frame: Frame {
                    pc,
                    function: symbol(),
                    file: None,
                    line: None,
                },
            });
        } else if let Some(outer) = out.last_mut()
            && let Some(short) = outer
                .frame
                .function
                .as_deref()
                .filter(|f| !f.contains("::"))
            && let Some(qualified) = symbol().filter(|q| last_segment(q) == last_segment(short))
        {
            // Line tables alone (`debug = "line-tables-only"`) name functions without their
            // path; the symbol table has the physical (outermost) frame's full name, when the
            // nearest symbol is that function (a function without a symbol of its own would
            // get its neighbour's).
            outer.frame.function = Some(qualified);
        }
        for named in &mut out[before..] {
            named.internal |= super::is_internal(&named.frame);
        }
    }
}

/// A function name's last path segment without generic arguments: `recv` for both `recv<u32>`
/// and `pagurus_runtime::channel::Receiver<T>::recv`.
fn last_segment(name: &str) -> &str {
    let mut depth = 0usize;
    let mut start = 0;
    let bytes = name.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'<' => depth += 1,
            b'>' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => start = i + 2,
            _ => {}
        }
    }
    let last = &name[start.min(name.len())..];
    last.split('<').next().unwrap_or(last)
}

/// A frame as named, with whether it is the runtime's own (folded away in a dump).
pub(super) struct Named {
    pub(super) frame: Frame,
    pub(super) internal: bool,
}

/// Where the runtime's own source files are (as its debug information records them).
const RUNTIME_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

/// Whether a source file is the runtime's, the standard library's (`/rustc/<hash>/library/`,
/// as rustc records it) or crossbeam's: frames that name no path (line tables alone) are told
/// apart by their file.
fn internal_file(file: &str) -> bool {
    file.starts_with(RUNTIME_SRC) || file.starts_with("/rustc/") || file.contains("/crossbeam-")
}

fn relative(file: &str, cwd: &str) -> String {
    match file.strip_prefix(cwd) {
        Some(rest) if !cwd.is_empty() && rest.starts_with('/') => rest[1..].to_owned(),
        _ => file.to_owned(),
    }
}

fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

static CACHE: Mutex<Option<Symbolizer>> = Mutex::new(None);

/// Runs `f` with the process's symbolizer (one dump at a time).
pub(super) fn with_symbolizer<R>(f: impl FnOnce(&mut Symbolizer) -> R) -> R {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    f(cache.get_or_insert_with(Symbolizer::new))
}

/// Names return addresses.
pub(super) struct Symbolizer {
    objects: HashMap<PathBuf, Option<Names>>,
    done: HashMap<usize, Vec<Named>>,
    cwd: String,
}

impl Symbolizer {
    fn new() -> Symbolizer {
        Symbolizer {
            objects: HashMap::new(),
            done: HashMap::new(),
            cwd: std::env::current_dir()
                .ok()
                .and_then(|d| d.to_str().map(str::to_owned))
                .unwrap_or_default(),
        }
    }

    /// Names return address `pc`, unless it already has its names.
    pub(super) fn prepare(&mut self, pc: usize) {
        if !self.done.contains_key(&pc) {
            let mut frames = Vec::new();
            self.name(pc, &mut frames);
            self.done.insert(pc, frames);
        }
    }

    /// The frames of a return address [`prepare`](Symbolizer::prepare)d before (inlined ones
    /// first, innermost first).
    pub(super) fn named(&self, pc: usize) -> &[Named] {
        self.done.get(&pc).map_or(&[], Vec::as_slice)
    }

    fn name(&mut self, pc: usize, out: &mut Vec<Named>) {
        let unknown = Named {
            internal: true,
            frame: Frame {
                pc,
                function: None,
                file: None,
                line: None,
            },
        };
        let Some(loaded) = object_for_address(pc) else {
            out.push(unknown);
            return;
        };
        let Some(path) = &loaded.path else {
            out.push(unknown);
            return;
        };
        let names = self
            .objects
            .entry(path.clone())
            .or_insert_with(|| mapped(path).and_then(Names::load));
        match names {
            // A return address: the call is the instruction before it.
            Some(names) => {
                let probe = pc.wrapping_sub(loaded.bias).wrapping_sub(1) as u64;
                names.frames(pc, probe, &self.cwd, out);
            }
            None => out.push(unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_segments_and_internal_files() {
        assert_eq!(last_segment("recv<u32>"), "recv");
        assert_eq!(
            last_segment("pagurus_runtime::channel::Receiver<T>::recv"),
            "recv"
        );
        assert_eq!(last_segment("my_server::handle_client"), "handle_client");
        assert_eq!(last_segment("<a::B as c::D<e::F>>::call"), "call");
        assert_eq!(last_segment("plain"), "plain");
        assert!(internal_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/sched/park.rs"
        )));
        assert!(internal_file(
            "/rustc/0123abcd/library/std/src/panicking.rs"
        ));
        assert!(!internal_file("/home/me/server/src/main.rs"));
    }
}
