//! The loaded-object table: where each object's code lies and where its call-frame information
//! (`.eh_frame_hdr`, `.eh_frame`) is mapped.
//!
//! [`refresh_objects`] runs in normal context: it enumerates the loaded objects with
//! `dl_iterate_phdr` (which takes the dynamic linker's lock, so the signal handler must never call
//! it), parses each object's in-memory `PT_GNU_EH_FRAME` segment and publishes an immutable
//! [`Table`] through an `AtomicPtr` (Release). The walker loads it (Acquire) and only reads it.
//!
//! # Lifetime of tables and objects
//!
//! Old tables are never freed. A signal handler on another thread may be reading one at any
//! moment, and there is no signal-safe way to learn when it is done; objects appear rarely and
//! an unchanged set of objects does not rebuild the table (the loader's `dlpi_adds`/`dlpi_subs`
//! counters say so), so the leak is a few KiB per `dlopen`/`dlclose`.
//!
//! The table borrows the objects' own mappings (`&'static` slices into their `.eh_frame_hdr`
//! and `.eh_frame`). An object unloaded with `dlclose` leaves dangling entries until the next
//! refresh: the walker only reads an object's CFI when a program counter lies in its code, so
//! this matters only if a stack still holds a return address into unloaded code (the stack is
//! broken then anyway) or if another object is mapped over the old one before the next refresh.
//! Code that unloads libraries should call [`refresh_objects`] afterwards.
//!
//! # Reading the same information from the file
//!
//! [`FileCfi`] maps an object's file and finds the same two sections through its section headers.
//! The walker never uses it (opening files is not signal-safe); it exists so that a test can check
//! the in-memory lookup against an independent one, and for diagnostics.

use std::ffi::{CStr, OsStr};
use std::mem::{offset_of, size_of};
use std::ops::Range;
use std::os::raw::{c_int, c_void};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, Ordering};

use gimli::{
    BaseAddresses, EhFrame, EhFrameHdr, EhFrameOffset, EndianSlice, FrameDescriptionEntry,
    LittleEndian, ParsedEhFrameHdr, UnwindContext, UnwindSection, UnwindTableRow,
};

use super::FixedStorage;
#[cfg(test)]
use {
    memmap2::Mmap,
    object::{Object as _, ObjectSection as _},
    std::{fs::File, io, path::Path},
};

/// The reader every in-memory lookup uses: a slice of a loaded object's own mapping.
pub(super) type Slice = EndianSlice<'static, LittleEndian>;

/// The row of the CFI table for one address, in the walker's preallocated context.
pub(super) type Row = UnwindTableRow<usize, FixedStorage>;

/// The extent of one FDE: the code range its CFI describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FdeRange {
    /// First address covered.
    pub(crate) start: u64,
    /// Bytes covered.
    pub(crate) len: u64,
}

impl FdeRange {
    fn of(fde: &FrameDescriptionEntry<impl gimli::Reader>) -> FdeRange {
        FdeRange {
            start: fde.initial_address(),
            len: fde.len(),
        }
    }
}

/// One loaded object that has CFI, as mapped in this process.
pub(crate) struct LoadedObject {
    /// The load bias (`dlpi_addr`): runtime address minus the file's virtual address.
    pub(crate) bias: usize,
    /// The object's file, for [`FileCfi`]: `/proc/self/exe` for the main program, `None` when the
    /// loader gave no name.
    pub(crate) path: Option<PathBuf>,
    /// Runtime address of `.eh_frame_hdr`.
    pub(crate) eh_frame_hdr: usize,
    /// Runtime address of `.eh_frame`.
    pub(crate) eh_frame: usize,
    hdr: ParsedEhFrameHdr<Slice>,
    /// The search table as `(initial location, FDE address)` pairs of `i32`s relative to
    /// `.eh_frame_hdr`, when it has that (usual) encoding: searched directly, without gimli's
    /// per-probe pointer decoding, which was a third of the cost of an uncached step.
    sdata4_table: Option<&'static [u8]>,
    frame: EhFrame<Slice>,
    bases: BaseAddresses,
}

impl LoadedObject {
    /// The FDE covering `addr`, found through the `.eh_frame_hdr` binary-search table.
    /// Allocation-free and lock-free.
    fn fde(&self, addr: usize) -> gimli::Result<FrameDescriptionEntry<Slice>> {
        match self.sdata4_table {
            Some(table) => self.fde_sdata4(table, addr),
            None => self.fde_gimli(addr),
        }
    }

    /// [`LoadedObject::fde`] through gimli's decoding of the search table, for any encoding.
    fn fde_gimli(&self, addr: usize) -> gimli::Result<FrameDescriptionEntry<Slice>> {
        // Objects whose header has no search table (the linker may omit it) are not searched
        // linearly: a linear scan of a large `.eh_frame` in a signal handler would be too slow,
        // and every toolchain we know of emits the table.
        let table = self
            .hdr
            .table()
            .ok_or(gimli::Error::NoUnwindInfoForAddress)?;
        table.fde_for_address(
            &self.frame,
            &self.bases,
            addr as u64,
            EhFrame::cie_from_offset,
        )
    }

    /// [`LoadedObject::fde`] for a `datarel | sdata4` search table: a binary search over its
    /// 8-byte entries, then gimli parses the one FDE it points to.
    fn fde_sdata4(&self, table: &[u8], addr: usize) -> gimli::Result<FrameDescriptionEntry<Slice>> {
        let none = gimli::Error::NoUnwindInfoForAddress;
        let entry = |i: usize| -> Option<(usize, usize)> {
            let bytes = table.get(i.checked_mul(8)?..)?.get(..8)?;
            let field = |at: usize| {
                let word = bytes.get(at..at + 4)?.try_into().ok()?;
                let rel = isize::try_from(i32::from_le_bytes(word)).ok()?;
                self.eh_frame_hdr.checked_add_signed(rel)
            };
            Some((field(0)?, field(4)?))
        };
        // The last entry whose initial location is <= addr.
        let (mut lo, mut hi) = (0, table.len() / 8);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (start, _) = entry(mid).ok_or(none)?;
            if start <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let (_, fde) = entry(lo.checked_sub(1).ok_or(none)?).ok_or(none)?;
        let offset = fde.checked_sub(self.eh_frame).ok_or(none)?;
        let fde = self.frame.fde_from_offset(
            &self.bases,
            EhFrameOffset(offset),
            EhFrame::cie_from_offset,
        )?;
        if fde.contains(addr as u64) {
            Ok(fde)
        } else {
            Err(none)
        }
    }

    /// [`LoadedObject::fde_range`] through gimli's table search, to check the direct one.
    #[cfg(test)]
    pub(super) fn fde_range_gimli(&self, addr: usize) -> gimli::Result<FdeRange> {
        self.fde_gimli(addr).map(|fde| FdeRange::of(&fde))
    }

    /// Whether the object's search table is searched directly (see `sdata4_table`).
    #[cfg(test)]
    pub(super) fn has_direct_table(&self) -> bool {
        self.sdata4_table.is_some()
    }

    /// The extent of the FDE covering `addr` (a runtime address). Signal-safe.
    pub(crate) fn fde_range(&self, addr: usize) -> gimli::Result<FdeRange> {
        self.fde(addr).map(|fde| FdeRange::of(&fde))
    }

    /// Runs the CFI program of the FDE covering `addr` up to the row for `addr`, in `ctx`.
    /// Allocation-free and lock-free: `ctx` has fixed-size storage.
    pub(super) fn row<'ctx>(
        &self,
        ctx: &'ctx mut UnwindContext<usize, FixedStorage>,
        addr: usize,
    ) -> gimli::Result<&'ctx Row> {
        let fde = self.fde(addr)?;
        fde.unwind_info_for_address(&self.frame, &self.bases, ctx, addr as u64)
    }
}

/// A range of executable addresses (one `PT_LOAD` segment with `PF_X`) and its object.
struct TextRange {
    start: usize,
    end: usize,
    object: usize,
}

/// An immutable snapshot of the loaded objects, published by [`refresh_objects`].
pub(super) struct Table {
    /// Distinguishes tables, so that rule caches filled from an older one are dropped.
    pub(super) generation: u64,
    /// Sorted by `start`, non-overlapping.
    ranges: Box<[TextRange]>,
    objects: Box<[LoadedObject]>,
    /// The code range of the coroutine entry trampoline (from its FDE).
    pub(super) trampoline: Range<usize>,
    /// The loader's object counters when this table was built.
    counts: Option<(u64, u64)>,
}

impl Table {
    /// The object whose code contains `addr`. Signal-safe: a binary search over a slice.
    pub(super) fn object_for(&self, addr: usize) -> Option<&LoadedObject> {
        let i = self.ranges.partition_point(|r| r.start <= addr);
        let range = self.ranges.get(i.checked_sub(1)?)?;
        if addr < range.end {
            self.objects.get(range.object)
        } else {
            None
        }
    }
}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(ptr::null_mut());

/// Serialises refreshes, so that a slower refresh cannot publish an older snapshot over a newer
/// one. Only normal context takes it; the walker never does.
static REFRESH: Mutex<u64> = Mutex::new(0);

/// The current table, if [`refresh_objects`] ever ran. Signal-safe (one atomic load).
pub(super) fn current() -> Option<&'static Table> {
    let table = TABLE.load(Ordering::Acquire);
    // SAFETY: non-null values come from Box::into_raw in `refresh_objects` and are never freed
    // (see the module docs), and a published table is never written again. The Acquire load
    // pairs with the Release store, so its contents are visible.
    unsafe { table.as_ref() }
}

/// The loaded object whose code contains `addr`. Signal-safe once [`refresh_objects`] has run.
pub(crate) fn object_for_address(addr: usize) -> Option<&'static LoadedObject> {
    current()?.object_for(addr)
}

/// Enumerates the loaded objects and publishes a new table if they changed since the last one.
///
/// Normal context only: `dl_iterate_phdr` takes the dynamic linker's lock, and this allocates.
/// Call it at runtime start and whenever objects may have been loaded or unloaded; with no
/// change it costs one `dl_iterate_phdr` callback.
pub(crate) fn refresh_objects() {
    let mut generation = REFRESH.lock().unwrap_or_else(|e| e.into_inner());
    let mut scan = Scan {
        previous: current().and_then(|t| t.counts),
        counts: None,
        unchanged: false,
        seen: 0,
        objects: Vec::new(),
    };
    // SAFETY: `collect` has the signature dl_iterate_phdr expects and only uses `data` as the
    // `Scan` we pass, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(collect), (&raw mut scan).cast()) };
    if scan.unchanged && current().is_some() {
        return;
    }
    *generation = generation.wrapping_add(1);
    let table = build(scan, *generation);
    // Old tables are intentionally leaked: see the module docs.
    TABLE.store(Box::into_raw(Box::new(table)), Ordering::Release);
}

/// What `dl_iterate_phdr` reported about one object.
struct RawObject {
    bias: usize,
    path: Option<PathBuf>,
    /// Every `PT_LOAD` segment, as runtime address ranges.
    loads: Vec<Range<usize>>,
    /// The executable ones.
    texts: Vec<Range<usize>>,
    /// `PT_GNU_EH_FRAME`: runtime address and size of `.eh_frame_hdr`.
    eh_frame_hdr: Option<(usize, usize)>,
}

struct Scan {
    previous: Option<(u64, u64)>,
    counts: Option<(u64, u64)>,
    unchanged: bool,
    seen: usize,
    objects: Vec<RawObject>,
}

/// The `dl_iterate_phdr` callback: records each object's segments.
///
/// # Safety
/// `info` must be valid for `size` bytes and `data` must point to a `Scan`, as `dl_iterate_phdr`
/// guarantees for the `data` given to it in [`refresh_objects`].
unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    size: libc::size_t,
    data: *mut c_void,
) -> c_int {
    // SAFETY: per the contract; the loader keeps `info` valid during the callback, and nothing
    // else refers to the Scan while dl_iterate_phdr runs.
    let (info, scan) = unsafe { (&*info, &mut *data.cast::<Scan>()) };
    let first = scan.seen == 0;
    scan.seen += 1;
    // Older loaders pass a shorter struct without the counters.
    let has_counts = size >= offset_of!(libc::dl_phdr_info, dlpi_subs) + size_of::<u64>();
    if first && has_counts {
        scan.counts = Some((info.dlpi_adds, info.dlpi_subs));
        if scan.previous.is_some() && scan.counts == scan.previous {
            scan.unchanged = true;
            return 1; // stop: the objects are the ones the current table describes
        }
    }
    let bias = info.dlpi_addr as usize;
    let name = if info.dlpi_name.is_null() {
        &[][..]
    } else {
        // SAFETY: a non-null dlpi_name is a NUL-terminated string owned by the loader.
        unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    // The loader reports the main program first, with an empty name.
    let path = match (name.is_empty(), first) {
        (true, true) => Some(PathBuf::from("/proc/self/exe")),
        (true, false) => None,
        (false, _) => Some(PathBuf::from(OsStr::from_bytes(name))),
    };
    let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: the loader gives dlpi_phnum program headers at dlpi_phdr.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let mut object = RawObject {
        bias,
        path,
        loads: Vec::new(),
        texts: Vec::new(),
        eh_frame_hdr: None,
    };
    for ph in phdrs {
        let start = bias.wrapping_add(ph.p_vaddr as usize);
        let range = start..start.wrapping_add(ph.p_memsz as usize);
        match ph.p_type {
            libc::PT_LOAD => {
                if ph.p_flags & libc::PF_X != 0 {
                    object.texts.push(range.clone());
                }
                object.loads.push(range);
            }
            libc::PT_GNU_EH_FRAME => object.eh_frame_hdr = Some((start, ph.p_memsz as usize)),
            _ => {}
        }
    }
    scan.objects.push(object);
    0
}

/// Parses the objects' CFI headers and builds the sorted table.
fn build(scan: Scan, generation: u64) -> Table {
    let mut objects = Vec::new();
    let mut ranges = Vec::new();
    for raw in scan.objects {
        // Objects without PT_GNU_EH_FRAME (the vDSO on some kernels, data-only objects) have no
        // CFI we can use; a pc inside them makes the walk fail with `NoObject`.
        let Some(object) = parse_object(&raw) else {
            continue;
        };
        let index = objects.len();
        objects.push(object);
        ranges.extend(raw.texts.into_iter().map(|text| TextRange {
            start: text.start,
            end: text.end,
            object: index,
        }));
    }
    ranges.sort_by_key(|r| r.start);
    let mut table = Table {
        generation,
        ranges: ranges.into_boxed_slice(),
        objects: objects.into_boxed_slice(),
        trampoline: 0..0,
        counts: scan.counts,
    };
    let start = crate::arch::trampoline_start();
    table.trampoline = match table.object_for(start).map(|o| o.fde_range(start)) {
        Some(Ok(fde)) => fde.start as usize..fde.start.saturating_add(fde.len) as usize,
        // Cannot happen for a binary built with unwind tables; the one-byte range still lets a
        // walk recognise a return address pushed at the trampoline's first instruction.
        _ => start..start.saturating_add(1),
    };
    table
}

fn parse_object(raw: &RawObject) -> Option<LoadedObject> {
    let (hdr_addr, hdr_len) = raw.eh_frame_hdr?;
    // The header must lie in a loaded segment, or reading it would fault.
    if !raw.loads.iter().any(|seg| {
        seg.start <= hdr_addr && hdr_addr.checked_add(hdr_len).is_some_and(|e| e <= seg.end)
    }) {
        return None;
    }
    // SAFETY: PT_GNU_EH_FRAME of a loaded object, inside one of its loaded segments (checked
    // above), which stays mapped while the object is loaded (see the module docs on unloading).
    let hdr_bytes: &'static [u8] =
        unsafe { std::slice::from_raw_parts(hdr_addr as *const u8, hdr_len) };
    let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_addr as u64);
    let hdr = EhFrameHdr::new(hdr_bytes, LittleEndian)
        .parse(&bases, size_of::<usize>() as u8)
        .ok()?;
    let eh_frame = usize::try_from(hdr.eh_frame_ptr().direct().ok()?).ok()?;
    // Memory does not record `.eh_frame`'s length; it ends (zero-terminated) before the end of
    // the loaded segment that contains it, so that end bounds every read.
    let segment = raw.loads.iter().find(|seg| seg.contains(&eh_frame))?;
    // SAFETY: [eh_frame, segment end) lies in one loaded segment of a loaded object.
    let frame_bytes: &'static [u8] =
        unsafe { std::slice::from_raw_parts(eh_frame as *const u8, segment.end - eh_frame) };
    Some(LoadedObject {
        bias: raw.bias,
        path: raw.path.clone(),
        eh_frame_hdr: hdr_addr,
        eh_frame,
        sdata4_table: sdata4_table(hdr_bytes),
        hdr,
        frame: EhFrame::new(frame_bytes, LittleEndian),
        bases: bases.set_eh_frame(eh_frame as u64),
    })
}

/// The search table of an `.eh_frame_hdr` whose encodings are the ones every x86_64 linker
/// writes (`eh_frame_ptr`: pcrel|sdata4, `fde_count`: udata4, table: datarel|sdata4), as the
/// bytes of its `fde_count` 8-byte entries; `None` for any other layout (gimli handles those).
fn sdata4_table(hdr: &'static [u8]) -> Option<&'static [u8]> {
    const EH_FRAME_PTR: u8 = 0x1b; // DW_EH_PE_pcrel | DW_EH_PE_sdata4
    const FDE_COUNT: u8 = 0x03; // DW_EH_PE_udata4
    const TABLE: u8 = 0x3b; // DW_EH_PE_datarel | DW_EH_PE_sdata4
    if hdr.get(..4)? != [1, EH_FRAME_PTR, FDE_COUNT, TABLE] {
        return None;
    }
    let count = u32::from_le_bytes(hdr.get(8..12)?.try_into().ok()?);
    hdr.get(12..)?
        .get(..usize::try_from(count).ok()?.checked_mul(8)?)
}

/// Where a section lies in a mapped file.
#[cfg(test)]
#[derive(Clone, Copy)]
struct FileSection {
    offset: usize,
    size: usize,
    /// The section's virtual address in the file (before the load bias).
    address: u64,
}

/// An object's `.eh_frame` and `.eh_frame_hdr` read from its file (normal context only): the
/// tests' independent view of what the in-memory tables must say.
#[cfg(test)]
pub(crate) struct FileCfi {
    map: Mmap,
    eh_frame: FileSection,
    eh_frame_hdr: Option<FileSection>,
}

#[cfg(test)]
impl FileCfi {
    /// Maps and parses the file of a loaded object.
    pub(crate) fn for_object(object: &LoadedObject) -> io::Result<FileCfi> {
        match &object.path {
            Some(path) => FileCfi::open(path),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the loader gave this object no file name",
            )),
        }
    }

    /// Maps the ELF file at `path` and finds its `.eh_frame` (required) and `.eh_frame_hdr`.
    pub(crate) fn open(path: &Path) -> io::Result<FileCfi> {
        let file = File::open(path)?;
        // SAFETY: the file is a loaded object's image, mapped read-only; like the loader's own
        // mapping, ours assumes nobody rewrites the file in place while it is in use (the kernel
        // refuses writes to a running executable; replacing a library installs a new file).
        let map = unsafe { Mmap::map(&file)? };
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let elf = object::File::parse(&*map).map_err(|e| invalid(&e.to_string()))?;
        let find = |name: &str| -> Option<FileSection> {
            let section = elf.section_by_name(name)?;
            let (offset, size) = section.file_range()?;
            Some(FileSection {
                offset: usize::try_from(offset).ok()?,
                size: usize::try_from(size).ok()?,
                address: section.address(),
            })
        };
        let eh_frame = find(".eh_frame").ok_or_else(|| invalid("no .eh_frame section"))?;
        let eh_frame_hdr = find(".eh_frame_hdr");
        for s in [Some(eh_frame), eh_frame_hdr].into_iter().flatten() {
            if s.offset
                .checked_add(s.size)
                .is_none_or(|end| end > map.len())
            {
                return Err(invalid("section extends past the end of the file"));
            }
        }
        Ok(FileCfi {
            map,
            eh_frame,
            eh_frame_hdr,
        })
    }

    /// The file virtual address of `.eh_frame`.
    pub(crate) fn eh_frame_address(&self) -> u64 {
        self.eh_frame.address
    }

    /// The file virtual address of `.eh_frame_hdr`, if the file has one.
    pub(crate) fn eh_frame_hdr_address(&self) -> Option<u64> {
        self.eh_frame_hdr.map(|s| s.address)
    }

    fn bytes(&self, s: FileSection) -> &[u8] {
        // Bounds checked in `open`.
        self.map.get(s.offset..s.offset + s.size).unwrap_or(&[])
    }

    fn bases(&self) -> BaseAddresses {
        let bases = BaseAddresses::default().set_eh_frame(self.eh_frame.address);
        match self.eh_frame_hdr {
            Some(hdr) => bases.set_eh_frame_hdr(hdr.address),
            None => bases,
        }
    }

    /// The FDE covering `svma` (a file virtual address), by a linear scan of `.eh_frame`: a
    /// lookup independent of the binary-search table.
    pub(crate) fn fde_by_scan(&self, svma: u64) -> gimli::Result<FdeRange> {
        let frame = EhFrame::new(self.bytes(self.eh_frame), LittleEndian);
        let fde = frame.fde_for_address(&self.bases(), svma, EhFrame::cie_from_offset)?;
        Ok(FdeRange::of(&fde))
    }

    /// The FDE covering `svma`, through the file's `.eh_frame_hdr` search table.
    pub(crate) fn fde_by_hdr(&self, svma: u64) -> gimli::Result<FdeRange> {
        let hdr = self
            .eh_frame_hdr
            .ok_or(gimli::Error::NoUnwindInfoForAddress)?;
        let bases = self.bases();
        let parsed = EhFrameHdr::new(self.bytes(hdr), LittleEndian)
            .parse(&bases, size_of::<usize>() as u8)?;
        let table = parsed.table().ok_or(gimli::Error::NoUnwindInfoForAddress)?;
        let frame = EhFrame::new(self.bytes(self.eh_frame), LittleEndian);
        let fde = table.fde_for_address(&frame, &bases, svma, EhFrame::cie_from_offset)?;
        Ok(FdeRange::of(&fde))
    }
}
