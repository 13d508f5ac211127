//! The bytes under the journal: the [`Storage`] trait, its two implementations, and the
//! ring allocator that hands out exclusive write claims.
//!
//! This is the only file of the crate with `unsafe` code. The rule that makes it sound:
//! a byte of a [`MmapStorage`] is only ever written through a [`Claim`] (an exclusive,
//! never-overlapping range handed out by [`Ring`]) by its holder until the holder marks
//! it ready, then by the one publisher until it is published, under the header lock, or
//! under the mirror-receive lock; and is only read once it is marked ready or published,
//! or before the journal is shared between threads.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use memmap2::{MmapOptions, MmapRaw};

/// A fixed-size byte region that the journal lives in.
///
/// Two implementations ship with the crate: [`MmapStorage`] (a file mapped with
/// `memmap2`, the production one) and [`MemStorage`] (plain memory that remembers which
/// bytes were synced, for crash tests). Offsets are absolute byte offsets in the region.
pub trait Storage: Send + Sync {
    /// Size of the region in bytes. It never changes.
    fn len(&self) -> u64;

    /// Whether the region has no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`.
    ///
    /// # Panics
    /// If the range lies outside the region.
    fn read(&self, offset: u64, dst: &mut [u8]);

    /// Appends the `len` bytes starting at `offset` to `dst`. Recovery reads payloads
    /// with it; an implementation can spare the zero-filling of the default.
    ///
    /// # Panics
    /// If the range lies outside the region.
    fn read_append(&self, offset: u64, len: usize, dst: &mut Vec<u8>) {
        let at = dst.len();
        dst.resize(at + len, 0);
        self.read(offset, &mut dst[at..]);
    }

    /// Copies `src` into the region at `offset`.
    ///
    /// # Panics
    /// If the range lies outside the region.
    ///
    /// # Safety
    /// No other `read` or `write` of an overlapping range may run at the same time.
    unsafe fn write(&self, offset: u64, src: &[u8]);

    /// Makes the bytes of `offset..offset + len` durable (`msync` for a mapped file).
    fn sync(&self, offset: u64, len: u64) -> io::Result<()>;

    /// The bytes of `offset..offset + len` are not needed in memory now: the free part
    /// of a ring, which the journal writes again before it reads it. What they hold
    /// stays as it is; a mapped file drops the pages wholly inside the range from the
    /// process's mapping, so that its resident memory is what the journal uses, not the
    /// size of its file. The default: nothing to drop.
    fn discard(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
}

fn check_range(region: u64, offset: u64, len: usize) {
    let end = offset.checked_add(len as u64).expect("range overflows");
    assert!(end <= region, "range {offset}..{end} outside region of {region} bytes");
}

/// A region backed by a file mapped shared and writable with `memmap2`.
///
/// ```
/// use nvram::{MmapStorage, Storage};
/// let dir = tempfile::tempdir().unwrap();
/// let s = MmapStorage::create(&dir.path().join("nvram"), 1 << 20).unwrap();
/// assert_eq!(s.len(), 1 << 20);
/// ```
#[derive(Debug)]
pub struct MmapStorage {
    map: MmapRaw,
    _file: File,
}

impl MmapStorage {
    /// Creates (or truncates) the file at `path`, sizes it to `len` bytes and maps it.
    /// No page is touched: each is faulted in when the ring first reaches it.
    pub fn create(path: &Path, len: u64) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        file.set_len(len)?;
        let map = MmapOptions::new().map_raw(&file)?;
        Ok(MmapStorage { map, _file: file })
    }

    /// Maps the existing file at `path`, whatever its size.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        // Populate: fault every page in now, in one go, rather than one fault at a time
        // during recovery's scan (which costs twice as long). The journal discards what
        // is outside the live part of its rings once the scan is done.
        let map = MmapOptions::new().populate().map_raw(&file)?;
        Ok(MmapStorage { map, _file: file })
    }
}

/// The page size [`Storage::discard`] aligns to.
fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

impl Storage for MmapStorage {
    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    fn read(&self, offset: u64, dst: &mut [u8]) {
        check_range(self.len(), offset, dst.len());
        // SAFETY: the range is inside the mapping (checked above), which lives as long
        // as `self`. `dst` is a distinct Rust allocation, so the two do not overlap. The
        // journal reads a range only while no claim covers it (see the module doc), so
        // no write races with this copy.
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.as_ptr().add(offset as usize), dst.as_mut_ptr(), dst.len());
        }
    }

    fn read_append(&self, offset: u64, len: usize, dst: &mut Vec<u8>) {
        check_range(self.len(), offset, len);
        // SAFETY: the range is inside the mapping (checked above), which lives as long as
        // `self`; the slice lives only for this copy, and as in `read`, no write races
        // with a range the journal reads.
        let src = unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset as usize), len) };
        dst.extend_from_slice(src);
    }

    unsafe fn write(&self, offset: u64, src: &[u8]) {
        check_range(self.len(), offset, src.len());
        // SAFETY: the range is inside the writable shared mapping (checked above), which
        // lives as long as `self`; `src` is a Rust slice and cannot alias the mapping's
        // range that the caller holds exclusively (the caller's contract).
        unsafe { copy_in(self.map.as_mut_ptr().add(offset as usize), src) }
    }

    fn sync(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.map.flush_range(offset as usize, len as usize)
    }

    fn discard(&self, offset: u64, len: u64) {
        let page = page_size();
        let end = offset.saturating_add(len).min(self.len()) / page * page;
        let start = offset.div_ceil(page) * page;
        if start >= end {
            return;
        }
        // SAFETY: the range is page-aligned and inside the mapping, which lives as long
        // as `self`. MADV_DONTNEED on a shared file mapping only unmaps the pages from
        // this process: their contents (written back or still dirty) stay in the page
        // cache and the file, and the next access maps them again. No Rust reference
        // into the mapping exists (every access copies through a raw pointer), so
        // nothing observes the pages going.
        let r = unsafe {
            libc::madvise(self.map.as_mut_ptr().add(start as usize).cast(), (end - start) as usize, libc::MADV_DONTNEED)
        };
        if r != 0 {
            warn_once(io::Error::last_os_error());
        }
    }
}

/// Copies of at least this many bytes into a mapped region use non-temporal stores.
const STREAM_MIN: usize = 4096;

/// Copies `src` to `dst`, a mapped region's bytes. A large copy goes with non-temporal
/// stores where the CPU has AVX2: the ring's tail is never in the cache, and a store
/// that bypasses it spares the read of each line before it is overwritten (and on
/// persistent memory, the write-back that a flush would do later). The stores are
/// fenced before this returns, so that they are ordered before whatever marks the
/// bytes written.
///
/// # Safety
/// `dst..dst + src.len()` must be valid for writes and not overlap `src`.
unsafe fn copy_in(dst: *mut u8, src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if src.len() >= STREAM_MIN && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked above); the range is the caller's.
        return unsafe { stream::copy(dst, src) };
    }
    // SAFETY: the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) }
}

#[cfg(target_arch = "x86_64")]
mod stream {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm256_stream_si256, _mm_sfence};

    /// Bytes per iteration: four 32-byte stores, two cache lines.
    const STEP: usize = 128;

    /// Copies `src` to `dst` with 32-byte non-temporal stores from the first 32-byte
    /// boundary of `dst` on (plain copies before it and for the tail), then fences.
    ///
    /// # Safety
    /// The CPU has AVX2; `dst..dst + src.len()` is valid for writes and does not
    /// overlap `src`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn copy(dst: *mut u8, src: &[u8]) {
        let len = src.len();
        let head = dst.align_offset(32).min(len);
        // SAFETY (whole function): every access stays inside `dst..dst + len` and
        // `src`, which the caller guarantees; the streamed stores go to 32-byte aligned
        // addresses (`head` aligns them); the loads are unaligned ones.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), dst, head);
            let mut i = head;
            while i + STEP <= len {
                let s = src.as_ptr().add(i).cast::<__m256i>();
                let d = dst.add(i).cast::<__m256i>();
                let (a, b, c, e) = (
                    _mm256_loadu_si256(s),
                    _mm256_loadu_si256(s.add(1)),
                    _mm256_loadu_si256(s.add(2)),
                    _mm256_loadu_si256(s.add(3)),
                );
                _mm256_stream_si256(d, a);
                _mm256_stream_si256(d.add(1), b);
                _mm256_stream_si256(d.add(2), c);
                _mm256_stream_si256(d.add(3), e);
                i += STEP;
            }
            std::ptr::copy_nonoverlapping(src.as_ptr().add(i), dst.add(i), len - i);
            _mm_sfence();
        }
    }
}

/// A failed `madvise` costs memory, not correctness: said once on stderr.
fn warn_once(e: io::Error) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| eprintln!("nvram: madvise(MADV_DONTNEED) of the journal's free space failed: {e}"));
}

/// A region backed by a file on a DAX file system (persistent memory, NVDIMM), mapped
/// with `MAP_SHARED_VALIDATE | MAP_SYNC`: stores go to the medium through the CPU
/// cache, with no page cache and no `msync`. [`Storage::sync`] writes the cache lines
/// of the range back (`clwb` where the CPU has it, else `clflushopt`, else `clflush`,
/// chosen once) and fences (`sfence`): then the bytes are durable.
///
/// The kernel refuses `MAP_SYNC` on a file system that is not DAX; opening then fails
/// with [`io::ErrorKind::Unsupported`] and "not on a DAX file system: MAP_SYNC refused".
/// Linux on x86-64 only: elsewhere opening is refused the same way.
///
/// ```
/// use nvram::DaxStorage;
/// let dir = tempfile::tempdir().unwrap();
/// // A temporary directory is (almost always) not on a DAX file system.
/// if let Err(e) = DaxStorage::create(&dir.path().join("nvram"), 1 << 20) {
///     assert!(e.to_string().contains("not on a DAX file system: MAP_SYNC refused"));
/// }
/// ```
#[derive(Debug)]
pub struct DaxStorage {
    ptr: *mut u8,
    len: usize,
    flush: Flush,
    _file: File,
}

// SAFETY: the mapping is plain shared memory, valid until `drop`; the pointer is never
// handed out, and every access goes through the `Storage` methods, whose contract
// (and the journal's claims) keeps concurrent writes apart.
unsafe impl Send for DaxStorage {}
// SAFETY: as for `Send`.
unsafe impl Sync for DaxStorage {}

impl DaxStorage {
    /// Creates (or truncates) the file at `path`, sizes it to `len` bytes and maps it
    /// with `MAP_SYNC`; on a refusal the file is removed again.
    pub fn create(path: &Path, len: u64) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        file.set_len(len)?;
        Self::map(file, path).inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })
    }

    /// Maps the existing file at `path` with `MAP_SYNC`, whatever its size.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Self::map(file, path)
    }

    /// How this storage writes cache lines back.
    pub fn flush_instruction(&self) -> &'static str {
        self.flush.name()
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn map(file: File, path: &Path) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        let len = usize::try_from(file.metadata()?.len()).map_err(|_| io::Error::other("file too large to map"))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot map an empty file"));
        }
        // SAFETY: a fresh shared mapping of a file we hold open; no memory of ours is
        // touched. The result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC | libc::MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EOPNOTSUPP | libc::EINVAL) => io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{}: not on a DAX file system: MAP_SYNC refused ({e})", path.display()),
                ),
                _ => e,
            });
        }
        Ok(DaxStorage { ptr: ptr.cast(), len, flush: Flush::detect(), _file: file })
    }

    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    fn map(_file: File, path: &Path) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{}: not on a DAX file system: MAP_SYNC refused (pmem needs Linux on x86-64)", path.display()),
        ))
    }
}

impl Drop for DaxStorage {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        // SAFETY: the mapping made in `map`, unmapped once; nothing refers to it after.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

impl Storage for DaxStorage {
    fn len(&self) -> u64 {
        self.len as u64
    }

    fn read(&self, offset: u64, dst: &mut [u8]) {
        check_range(self.len(), offset, dst.len());
        // SAFETY: as in `MmapStorage::read`: inside the live mapping, not overlapping
        // `dst`, and no write races with a range the journal reads.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(offset as usize), dst.as_mut_ptr(), dst.len()) }
    }

    unsafe fn write(&self, offset: u64, src: &[u8]) {
        check_range(self.len(), offset, src.len());
        // SAFETY: as in `MmapStorage::write`: inside the live writable mapping, and the
        // caller holds the range exclusively.
        unsafe { copy_in(self.ptr.add(offset as usize), src) }
    }

    fn sync(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len(), offset, len as usize);
        if len == 0 {
            return Ok(());
        }
        self.flush.range(self.ptr as usize + offset as usize, len as usize);
        Ok(())
    }
}

/// The size of a CPU cache line on x86-64: the unit that a flush writes back.
pub(crate) const CACHE_LINE: usize = 64;

/// The start address of every cache line that `addr..addr + len` touches, in order:
/// the line holding `addr` first, the line holding the last byte last.
pub(crate) fn cache_lines(addr: usize, len: usize) -> std::iter::StepBy<std::ops::Range<usize>> {
    let first = addr & !(CACHE_LINE - 1);
    let end = if len == 0 { first } else { addr + len };
    (first..end).step_by(CACHE_LINE)
}

/// The instruction that writes a cache line back to persistent memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flush {
    /// Writes the line back and may keep it cached (the cheapest).
    Clwb,
    /// Writes the line back and evicts it, unordered.
    Clflushopt,
    /// Writes the line back and evicts it, ordered (every x86-64 CPU has it).
    Clflush,
}

impl Flush {
    /// The best the CPU has (CPUID leaf 7: EBX bit 24 is CLWB, bit 23 CLFLUSHOPT).
    #[cfg(target_arch = "x86_64")]
    fn detect() -> Flush {
        #[allow(unused_unsafe)]
        // SAFETY: CPUID exists on every x86-64 CPU; leaf 7 reads as zeros where absent.
        let ebx = unsafe { std::arch::x86_64::__cpuid_count(7, 0) }.ebx;
        if ebx & (1 << 24) != 0 {
            Flush::Clwb
        } else if ebx & (1 << 23) != 0 {
            Flush::Clflushopt
        } else {
            Flush::Clflush
        }
    }

    fn name(self) -> &'static str {
        match self {
            Flush::Clwb => "clwb",
            Flush::Clflushopt => "clflushopt",
            Flush::Clflush => "clflush",
        }
    }

    /// Writes back every cache line of `addr..addr + len`, then fences: the stores
    /// before are durable when this returns.
    #[cfg(target_arch = "x86_64")]
    fn range(self, addr: usize, len: usize) {
        use std::arch::asm;
        for line in cache_lines(addr, len) {
            // SAFETY: `line` is the start of a cache line holding a byte of the range,
            // which lies in a live mapping (checked by the caller); mappings are
            // page-aligned, so the whole line is mapped. These instructions only write
            // the line back; they change no memory.
            unsafe {
                match self {
                    Flush::Clwb => asm!("clwb [{0}]", in(reg) line, options(nostack, preserves_flags)),
                    Flush::Clflushopt => asm!("clflushopt [{0}]", in(reg) line, options(nostack, preserves_flags)),
                    Flush::Clflush => asm!("clflush [{0}]", in(reg) line, options(nostack, preserves_flags)),
                }
            }
        }
        // SAFETY: a store fence; no memory is touched.
        unsafe { asm!("sfence", options(nostack, preserves_flags)) }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn detect() -> Flush {
        Flush::Clflush
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn range(self, _addr: usize, _len: usize) {
        unreachable!("DaxStorage is only mapped on x86-64")
    }
}

/// A region in plain memory that tracks which bytes are durable.
///
/// Every write lands in the *current* image. [`Storage::sync`] copies a range to the
/// *durable* image. A test simulates a process crash with [`MemStorage::current_image`]
/// (what a killed process leaves in the page cache or on an NVDIMM) and a power loss
/// with [`MemStorage::durable_image`], then reopens the journal on
/// [`MemStorage::from_image`]. Clones share the same bytes.
///
/// ```
/// use nvram::{MemStorage, Storage};
/// let s = MemStorage::new(4096);
/// // SAFETY: nothing else touches the region.
/// unsafe { s.write(10, b"abc") };
/// assert_eq!(&s.current_image()[10..13], b"abc");
/// assert_eq!(&s.durable_image()[10..13], &[0, 0, 0]);
/// s.sync(0, 4096).unwrap();
/// assert_eq!(&s.durable_image()[10..13], b"abc");
/// ```
#[derive(Clone, Debug)]
pub struct MemStorage {
    inner: std::sync::Arc<MemInner>,
}

#[derive(Debug)]
struct MemInner {
    current: Box<[AtomicU8]>,
    durable: Mutex<Vec<u8>>,
}

impl MemStorage {
    /// A zero-filled region of `len` bytes.
    pub fn new(len: usize) -> Self {
        Self::from_image(vec![0; len])
    }

    /// A region whose current and durable contents are both `image`.
    pub fn from_image(image: Vec<u8>) -> Self {
        let current = image.iter().map(|&b| AtomicU8::new(b)).collect();
        MemStorage { inner: std::sync::Arc::new(MemInner { current, durable: Mutex::new(image) }) }
    }

    /// Every byte written so far, synced or not.
    pub fn current_image(&self) -> Vec<u8> {
        self.inner.current.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }

    /// Only the bytes as of their last sync; the rest as they were before.
    pub fn durable_image(&self) -> Vec<u8> {
        self.inner.durable.lock().unwrap().clone()
    }
}

impl Storage for MemStorage {
    fn len(&self) -> u64 {
        self.inner.current.len() as u64
    }

    fn read(&self, offset: u64, dst: &mut [u8]) {
        check_range(self.len(), offset, dst.len());
        let src = &self.inner.current[offset as usize..][..dst.len()];
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.load(Ordering::Relaxed);
        }
    }

    unsafe fn write(&self, offset: u64, src: &[u8]) {
        check_range(self.len(), offset, src.len());
        let dst = &self.inner.current[offset as usize..][..src.len()];
        for (d, s) in dst.iter().zip(src) {
            d.store(*s, Ordering::Relaxed);
        }
    }

    fn sync(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len(), offset, len as usize);
        let mut durable = self.inner.durable.lock().unwrap();
        let (o, l) = (offset as usize, len as usize);
        for (d, s) in durable[o..o + l].iter_mut().zip(&self.inner.current[o..o + l]) {
            *d = s.load(Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The owned storage plus the locks that make every write exclusive.
pub(crate) struct Region {
    storage: Box<dyn Storage>,
    header_lock: Mutex<()>,
    receive_lock: Mutex<()>,
}

impl Region {
    pub(crate) fn new(storage: Box<dyn Storage>) -> Self {
        Region { storage, header_lock: Mutex::new(()), receive_lock: Mutex::new(()) }
    }

    /// Reads a range that no claim covers: a published range, the header, or anything
    /// before the journal is shared.
    pub(crate) fn read(&self, offset: u64, dst: &mut [u8]) {
        self.storage.read(offset, dst)
    }

    pub(crate) fn sync(&self, offset: u64, len: u64) -> io::Result<()> {
        self.storage.sync(offset, len)
    }

    /// Drops the logical range `from..to` of the ring at `base` (of `cap` bytes) from
    /// memory ([`Storage::discard`]): the free part of a ring.
    pub(crate) fn discard_ring(&self, base: u64, cap: u64, from: u64, to: u64) {
        let to = to.min(from.saturating_add(cap));
        let mut pos = from;
        while pos < to {
            let off = pos % cap;
            let n = (to - pos).min(cap - off);
            self.storage.discard(base + off, n);
            pos += n;
        }
    }

    /// Writes a header slot. The header lock makes the write exclusive.
    pub(crate) fn write_header(&self, offset: u64, src: &[u8]) {
        let _guard = self.header_lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: header bytes are written only here, under `header_lock`, and read
        // only at open (before the region is shared) or under the same lock.
        unsafe { self.storage.write(offset, src) }
    }

    /// Runs `f` with a writer for the partner's mirror ring. The receive lock makes the
    /// writes exclusive.
    pub(crate) fn with_receiver<R>(&self, base: u64, cap: u64, f: impl FnOnce(&Receiver<'_>) -> R) -> R {
        let _guard = self.receive_lock.lock().unwrap_or_else(|e| e.into_inner());
        f(&Receiver { region: self, base, cap })
    }

    /// Writes `src` at byte `at` of a claimed range.
    pub(crate) fn write_claim(&self, ring: &Ring, claim: &Claim, at: u64, src: &[u8]) {
        assert!(claim.start + at + src.len() as u64 <= claim.end);
        let physical = ring.physical(claim.start + at);
        assert!(physical + src.len() as u64 <= ring.base + ring.cap, "claim straddles the ring end");
        // SAFETY: `claim` was handed out by `ring.reserve`, which never hands out two
        // live claims whose physical ranges overlap and never lets a claim cover a
        // byte that is being read (see `Ring::reserve`). The assertions above keep the
        // write inside the claim.
        unsafe { self.storage.write(physical, src) }
    }
}

impl Region {
    /// Reads `dst.len()` bytes at logical position `pos` of a ring, from a range that is
    /// published or marked ready (its writer is done with it). Must not straddle the
    /// ring end.
    pub(crate) fn read_ring(&self, ring: &Ring, pos: u64, dst: &mut [u8]) {
        let physical = ring.physical(pos);
        assert!(physical + dst.len() as u64 <= ring.base + ring.cap, "read straddles the ring end");
        self.storage.read(physical, dst)
    }

    /// Appends `len` bytes at logical position `pos` of a ring to `dst`, from a range as
    /// [`Region::read_ring`] reads.
    pub(crate) fn read_ring_append(&self, ring: &Ring, pos: u64, len: usize, dst: &mut Vec<u8>) {
        let physical = ring.physical(pos);
        assert!(physical + len as u64 <= ring.base + ring.cap, "read straddles the ring end");
        self.storage.read_append(physical, len, dst)
    }

    /// Writes the header of a claim its holder marked ready, at logical position `pos`.
    /// Only the journal's publisher calls this, under its lock.
    pub(crate) fn write_ready(&self, ring: &Ring, pos: u64, src: &[u8]) {
        let physical = ring.physical(pos);
        assert!(physical + src.len() as u64 <= ring.base + ring.cap, "write straddles the ring end");
        assert!(pos >= ring.published() && pos + src.len() as u64 <= ring.reserved());
        // SAFETY: the range lies in a claim that is reserved but not published (checked
        // above), so no other claim covers it and no reader reads it; its holder marked it
        // ready and writes it no more; and only the publisher, of which there is one at
        // a time (the journal's publishing flag), writes a ready claim.
        unsafe { self.storage.write(physical, src) }
    }
}

/// Writes into the partner's mirror ring, which only one thread at a time may hold.
pub(crate) struct Receiver<'a> {
    region: &'a Region,
    base: u64,
    cap: u64,
}

impl Receiver<'_> {
    /// Writes `src` at logical position `pos` of the mirror ring, splitting at the end.
    pub(crate) fn write(&self, pos: u64, mut src: &[u8]) -> (u64, u64) {
        let mut pos = pos;
        let first = self.base + pos % self.cap;
        while !src.is_empty() {
            let off = pos % self.cap;
            let n = src.len().min((self.cap - off) as usize);
            // SAFETY: the mirror ring is written only through a `Receiver`, which exists
            // only while `receive_lock` is held, and it is read only at open, before
            // the region is shared.
            unsafe { self.region.storage.write(self.base + off, &src[..n]) };
            src = &src[n..];
            pos += n as u64;
        }
        (first, pos)
    }
}

/// Entries in a ring's table of ready claims' lengths ([`Ring`]'s hints).
const HINTS: usize = 4096;

/// Busy-wait iterations before a waiting appender yields, and yields before it sleeps.
const SPINS: u32 = 64;
const YIELDS: u32 = 16;

/// A claim on `start..end` of a ring: logical positions that only its holder writes.
///
/// `record` is where the record itself starts; `start..record` is padding that skips
/// the end of the ring.
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) start: u64,
    pub(crate) record: u64,
    pub(crate) end: u64,
}

/// The lock-free allocator of one ring: an atomic tail, a contiguous published frontier,
/// a limit set by the head, and the marks of claims that are written but not yet
/// published.
///
/// Logical positions grow forever; the physical offset is `base + pos % cap` and the
/// lap is `pos / cap`. A claim never straddles the end of the ring: when a record does
/// not fit before the end, its claim starts with padding up to it.
///
/// A claim's holder writes it, then marks it *ready* ([`Ring::mark_ready`]) and gives
/// it up: from then on nobody writes its bytes but the one publisher (the journal's,
/// under its lock), which finds ready claims at the published frontier
/// ([`Ring::is_ready`], [`Ring::take_ready`]), seals them, and moves the frontier past
/// them ([`Ring::publish_to`]). The marks are two bitmaps of one bit per 8-byte position
/// of the ring: one marks a ready claim's start, the other its end, so that the
/// publisher learns where a claim ends from memory, never from the claim's bytes.
///
/// Finding the end mark means scanning the end bitmap from the start (a 64 KiB claim
/// spans 128 words, 16 cache lines that each lap finds cold): so the holder also leaves
/// its claim's length in a small table of hints ([`HINTS`] entries, indexed by the
/// start), which the publisher takes instead when the entry is the claim's and the end
/// mark is where it says. A hint is only a shortcut: an entry overwritten by another
/// claim's, or missing, sends the publisher to the scan.
#[derive(Debug)]
pub(crate) struct Ring {
    pub(crate) base: u64,
    pub(crate) cap: u64,
    tail: AtomicU64,
    published: AtomicU64,
    limit: AtomicU64,
    starts: Box<[AtomicU64]>,
    ends: Box<[AtomicU64]>,
    /// Ready claims' lengths, by start: `(start / 8) as u32` in the high half, the
    /// length in 8-byte units in the low half; 0 when empty. Every entry belongs to a
    /// claim marked ready and not yet taken (the publisher empties the entry of each
    /// claim it takes), and such claims lie within `cap` of each other, so the 32 bits
    /// of the start tell them apart as long as `cap / 8 <= 2^32` (otherwise no hints
    /// are left; see [`Ring::hint_of`]).
    hints: Box<[AtomicU64]>,
    sleepers: AtomicU64,
    turn_lock: Mutex<()>,
    turn_cv: std::sync::Condvar,
}

impl Ring {
    /// A ring whose records up to `tail` are all published.
    pub(crate) fn new(base: u64, cap: u64, tail: u64, limit: u64) -> Self {
        let words = (cap / 8).div_ceil(64) as usize;
        Ring {
            base,
            cap,
            tail: AtomicU64::new(tail),
            published: AtomicU64::new(tail),
            limit: AtomicU64::new(limit),
            starts: (0..words).map(|_| AtomicU64::new(0)).collect(),
            ends: (0..words).map(|_| AtomicU64::new(0)).collect(),
            hints: (0..HINTS).map(|_| AtomicU64::new(0)).collect(),
            sleepers: AtomicU64::new(0),
            turn_lock: Mutex::new(()),
            turn_cv: std::sync::Condvar::new(),
        }
    }

    pub(crate) fn physical(&self, pos: u64) -> u64 {
        self.base + pos % self.cap
    }

    /// Every position below this is written and published.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Every position below this is claimed (written or being written).
    pub(crate) fn reserved(&self) -> u64 {
        self.tail.load(Ordering::Acquire)
    }

    /// Sets the highest position a claim may reach (`head + cap`).
    pub(crate) fn set_limit(&self, limit: u64) {
        self.limit.fetch_max(limit, Ordering::AcqRel);
    }

    /// Claims `len` bytes (a multiple of 8, at most half the ring), leaving at least
    /// `keep_free` bytes unclaimed, or says how many bytes are free beyond those.
    ///
    /// Exclusivity: a claim ends at most at `published + cap`, and every live claim
    /// lies in `published..tail`, so no two live claims share a physical byte. Readers
    /// read only below `published` (or a claim marked ready, which its holder no longer
    /// writes) and at or above `limit - cap`, which the journal keeps at or below its
    /// head.
    pub(crate) fn reserve(&self, len: u64, keep_free: u64) -> Result<Claim, u64> {
        debug_assert!(len & 7 == 0 && len <= self.cap / 2);
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            let off = tail % self.cap;
            let pad = if off + len > self.cap { self.cap - off } else { 0 };
            let end = tail + pad + len;
            let bound = self.limit.load(Ordering::Acquire).min(self.published.load(Ordering::Acquire) + self.cap);
            if end + keep_free > bound {
                return Err(bound.saturating_sub(tail + keep_free));
            }
            match self.tail.compare_exchange_weak(tail, end, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(Claim { start: tail, record: tail + pad, end }),
                Err(t) => tail = t,
            }
        }
    }

    fn bit(&self, pos: u64) -> (usize, u64) {
        let i = (pos % self.cap) / 8;
        ((i / 64) as usize, 1 << (i % 64))
    }

    /// Marks a claim written: its holder gives it up to the publisher. Its end is marked
    /// first, then its start, sequentially consistent, so that a publisher that releases
    /// its lock and then looks again at the frontier sees the mark of a holder that
    /// found the lock taken (see `Journal::publish_ready`).
    pub(crate) fn mark_ready(&self, claim: Claim) {
        if let Some((slot, hint)) = self.hint_of(claim.start, claim.end) {
            // Published by the sequentially consistent marks below: a publisher that
            // sees the start mark sees this entry, or a later one.
            self.hints[slot].store(hint, Ordering::Relaxed);
        }
        let (w, b) = self.bit(claim.end);
        let old = self.ends[w].fetch_or(b, Ordering::SeqCst);
        debug_assert_eq!(old & b, 0, "claim ending at {} marked twice", claim.end);
        let (w, b) = self.bit(claim.start);
        let old = self.starts[w].fetch_or(b, Ordering::SeqCst);
        debug_assert_eq!(old & b, 0, "claim at {} marked twice", claim.start);
    }

    /// Whether the claim starting at `pos` is marked ready. Only meaningful for `pos`
    /// at the published frontier (or at the end of a ready claim after it).
    pub(crate) fn is_ready(&self, pos: u64) -> bool {
        let (w, b) = self.bit(pos);
        self.starts[w].load(Ordering::SeqCst) & b != 0
    }

    /// The end of the ready claim at `pos` (the publisher's, at the frontier), whose
    /// marks it clears. The end is the first end mark after `pos`: every claim before
    /// it is published (its marks cleared), and every claim after it ends beyond it.
    /// Positions up to `pos + cap` have distinct marks, and every claim ends before.
    pub(crate) fn take_ready(&self, pos: u64) -> u64 {
        debug_assert!(self.is_ready(pos));
        let end = self.end_from_hint(pos).unwrap_or_else(|| self.scan_end(pos));
        let (w, b) = self.bit(end);
        self.ends[w].fetch_and(!b, Ordering::AcqRel);
        let (w, b) = self.bit(pos);
        self.starts[w].fetch_and(!b, Ordering::AcqRel);
        end
    }

    /// The hint entry of a claim `start..end`: its slot and value, or `None` when the
    /// ring is too large for the 32-bit tag to tell live claims apart (or the claim for
    /// the 32-bit length).
    fn hint_of(&self, start: u64, end: u64) -> Option<(usize, u64)> {
        let units = (end - start) / 8;
        if self.cap / 8 > 1 << 32 || units == 0 || units > u64::from(u32::MAX) {
            return None;
        }
        let slot = ((start / 8) % HINTS as u64) as usize;
        Some((slot, ((start / 8) & 0xffff_ffff) << 32 | units))
    }

    /// The end of the ready claim at `pos` as its hint says, if the entry is still the
    /// claim's and an end mark stands where it says; the entry is emptied either way
    /// if it was the claim's.
    fn end_from_hint(&self, pos: u64) -> Option<u64> {
        let (slot, _) = self.hint_of(pos, pos + 8)?;
        let hint = self.hints[slot].load(Ordering::Acquire);
        if hint == 0 || hint >> 32 != (pos / 8) & 0xffff_ffff {
            return None;
        }
        // Only this claim's holder wrote this value, and only the publisher empties it:
        // a failure means another claim's holder has just put its own entry there.
        let _ = self.hints[slot].compare_exchange(hint, 0, Ordering::AcqRel, Ordering::Relaxed);
        let end = pos + 8 * (hint & 0xffff_ffff);
        let (w, b) = self.bit(end);
        (end - pos <= self.cap && self.ends[w].load(Ordering::SeqCst) & b != 0).then_some(end)
    }

    /// The end of the ready claim at `pos` from the end bitmap: its first mark after
    /// `pos`.
    fn scan_end(&self, pos: u64) -> u64 {
        let mut at = pos + 8;
        let end = loop {
            assert!(at <= pos + self.cap, "a ready claim at {pos} has no end mark");
            let (w, b) = self.bit(at);
            // The marks at `at` and after it in this word.
            let word = self.ends[w].load(Ordering::SeqCst) & !(b - 1);
            if word != 0 {
                break at + 8 * u64::from(word.trailing_zeros() - b.trailing_zeros());
            }
            // On to the next word, or to the ring start after the last one.
            let next_word = (at % self.cap / 8 / 64 + 1) * 64 * 8;
            at += next_word.min(self.cap) - at % self.cap;
        };
        end
    }

    /// Moves the published frontier to `end` (the end of a ready claim; by the
    /// publisher only) and wakes whoever waits for it.
    pub(crate) fn publish_to(&self, end: u64) {
        debug_assert!(self.published.load(Ordering::Relaxed) <= end);
        self.published.store(end, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = self.turn_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.turn_cv.notify_all();
        }
    }

    /// Waits until every position below `pos` is published.
    ///
    /// Spins briefly, then yields, then sleeps until a publication wakes it: with more
    /// appenders than cores, the appender whose record holds the frontier back needs
    /// the CPU.
    pub(crate) fn wait_published(&self, pos: u64) {
        let mut spins = 0u32;
        while self.published.load(Ordering::Acquire) < pos {
            if spins < SPINS {
                std::hint::spin_loop();
            } else if spins < SPINS + YIELDS {
                std::thread::yield_now();
            } else {
                let mut guard = self.turn_lock.lock().unwrap_or_else(|e| e.into_inner());
                self.sleepers.fetch_add(1, Ordering::SeqCst);
                while self.published.load(Ordering::SeqCst) < pos {
                    guard = self
                        .turn_cv
                        .wait_timeout(guard, std::time::Duration::from_millis(1))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            spins += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_lines_cover_every_byte_of_a_range_and_nothing_else() {
        for addr in [0usize, 1, 63, 64, 65, 100, 127, 4095, 4096 + 17] {
            for len in [0usize, 1, 2, 63, 64, 65, 127, 128, 129, 1000, 4096] {
                let lines: Vec<usize> = cache_lines(addr, len).collect();
                // Every line starts on a line boundary, in order, one line apart.
                assert!(lines.iter().all(|l| l % CACHE_LINE == 0), "{addr}+{len}: {lines:?}");
                assert!(lines.windows(2).all(|w| w[1] == w[0] + CACHE_LINE), "{addr}+{len}: {lines:?}");
                // Every byte of the range lies in one of them ...
                for b in addr..addr + len {
                    assert!(lines.iter().any(|l| (*l..l + CACHE_LINE).contains(&b)), "{addr}+{len}: byte {b}");
                }
                // ... and every line holds a byte of the range.
                for l in &lines {
                    assert!((addr..addr + len).any(|b| (*l..l + CACHE_LINE).contains(&b)), "{addr}+{len}: line {l}");
                }
                if len == 0 {
                    assert!(lines.is_empty());
                }
            }
        }
        assert_eq!(cache_lines(63, 2).collect::<Vec<_>>(), [0, 64]);
        assert_eq!(cache_lines(64, 64).collect::<Vec<_>>(), [64]);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn flushing_runs_over_unaligned_ranges_and_keeps_the_bytes() {
        // Flushing ordinary memory is allowed (it only writes lines back); the bytes
        // stay as they were.
        let buf: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let flush = Flush::detect();
        for (off, len) in [(0, 1000), (1, 1), (3, 130), (63, 2), (64, 64), (999, 1)] {
            flush.range(buf.as_ptr() as usize + off, len);
        }
        for f in [Flush::Clflush, flush] {
            f.range(buf.as_ptr() as usize + 5, 700);
        }
        assert!(buf.iter().enumerate().all(|(i, b)| *b == (i as u32 * 7) as u8));
    }

    /// Claims of `lens` bytes in a fresh ring of `cap` bytes, all marked ready in the
    /// order `ready` gives (indexes into `lens`); then the publisher takes them all.
    fn take_all(cap: u64, lens: &[u64], ready: &[usize]) -> Vec<(u64, u64)> {
        let ring = Ring::new(0, cap, 0, cap);
        let claims: Vec<Claim> = lens.iter().map(|&l| ring.reserve(l, 0).unwrap()).collect();
        let spans: Vec<(u64, u64)> = claims.iter().map(|c| (c.start, c.end)).collect();
        let mut claims: Vec<Option<Claim>> = claims.into_iter().map(Some).collect();
        for &i in ready {
            ring.mark_ready(claims[i].take().unwrap());
        }
        let mut taken = Vec::new();
        let mut pos = 0;
        while ring.is_ready(pos) {
            let end = ring.take_ready(pos);
            taken.push((pos, end));
            ring.publish_to(end);
            pos = end;
        }
        assert_eq!(taken, spans);
        assert!(ring.hints.iter().all(|h| h.load(Ordering::Relaxed) == 0), "an entry outlived its claim");
        assert!(ring.starts.iter().chain(ring.ends.iter()).all(|w| w.load(Ordering::Relaxed) == 0));
        taken
    }

    #[test]
    fn ready_claims_are_taken_with_their_ends_whatever_the_hints_hold() {
        // Two claims whose starts share a hint entry (HINTS * 8 bytes apart), marked
        // ready in either order: the second overwrites the first's entry, whose claim
        // is then found by the scan.
        let apart = HINTS as u64 * 8;
        take_all(1 << 20, &[apart, 64, 4096], &[0, 1, 2]);
        take_all(1 << 20, &[apart, 64, 4096], &[2, 1, 0]);
        take_all(1 << 20, &[apart, 64, 4096], &[1, 2, 0]);
        // Many small claims, more than there are entries, marked ready backwards.
        let lens = vec![48u64; 3 * HINTS];
        let order: Vec<usize> = (0..lens.len()).rev().collect();
        take_all(1 << 20, &lens, &order);
    }

    #[test]
    fn concurrent_holders_and_one_publisher_agree_on_every_claims_end() {
        // Four holders claim and mark ready records of assorted sizes (many a multiple
        // of the hint table's span apart, so entries collide), round a small ring many
        // times; the publisher, as `Journal::publish_ready` does, takes whatever is
        // ready at the frontier. Every end it takes must be the one the holder claimed.
        let ring = std::sync::Arc::new(Ring::new(0, 1 << 20, 0, 1 << 20));
        let claimed = std::sync::Arc::new(Mutex::new(std::collections::HashMap::new()));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let holders: Vec<_> = (0..4u64)
            .map(|t| {
                let (ring, claimed, done) = (ring.clone(), claimed.clone(), done.clone());
                std::thread::spawn(move || {
                    let sizes = [48u64, 4096, HINTS as u64 * 8, 65536, 200, HINTS as u64 * 8 - 8];
                    for i in 0..3000u64 {
                        let len = sizes[((i * 7 + t) % sizes.len() as u64) as usize];
                        let claim = loop {
                            match ring.reserve(len, 0) {
                                Ok(c) => break c,
                                Err(_) => std::thread::yield_now(),
                            }
                        };
                        claimed.lock().unwrap().insert(claim.start, claim.end);
                        if i % 5 == t {
                            std::thread::yield_now(); // a holder slow to finish
                        }
                        ring.mark_ready(claim);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        let mut pos = 0;
        let mut taken = 0;
        while done.load(Ordering::SeqCst) < 4 || ring.is_ready(pos) {
            if !ring.is_ready(pos) {
                std::thread::yield_now();
                continue;
            }
            let end = ring.take_ready(pos);
            let want = claimed.lock().unwrap().remove(&pos);
            assert_eq!(Some(end), want, "the claim at {pos}");
            ring.publish_to(end);
            ring.set_limit(end + ring.cap); // the head follows the frontier
            pos = end;
            taken += 1;
        }
        for h in holders {
            h.join().unwrap();
        }
        assert_eq!(taken, 4 * 3000);
        assert_eq!(pos, ring.reserved());
        assert!(ring.hints.iter().all(|h| h.load(Ordering::Relaxed) == 0), "an entry outlived its claim");
    }

    #[test]
    fn a_hint_that_is_not_the_claims_sends_the_publisher_to_the_scan() {
        let ring = Ring::new(0, 1 << 20, 0, 1 << 20);
        let a = ring.reserve(4096, 0).unwrap();
        let b = ring.reserve(64, 0).unwrap();
        let (a_end, b_end) = (a.end, b.end);
        ring.mark_ready(a);
        ring.mark_ready(b);
        // An entry lost (another claim's holder overwrote it, and that claim was
        // taken since): the scan finds the end.
        let (slot, _) = ring.hint_of(0, 8).unwrap();
        ring.hints[slot].store(0, Ordering::Relaxed);
        assert_eq!(ring.take_ready(0), a_end);
        ring.publish_to(a_end);
        // An entry whose length ends where no end mark stands is not believed.
        let (slot, hint) = ring.hint_of(a_end, b_end + 8).unwrap();
        ring.hints[slot].store(hint, Ordering::Relaxed);
        assert_eq!(ring.take_ready(a_end), b_end);
        assert_eq!(ring.hints[slot].load(Ordering::Relaxed), 0, "the claim's entry is emptied");
    }

    #[test]
    fn copies_in_of_any_alignment_and_length_write_exactly_their_bytes() {
        let src: Vec<u8> = (0..70_000u32).map(|i| (i * 31 + 7) as u8).collect();
        for dst_off in [0usize, 1, 8, 31, 32, 33, 63] {
            for (src_off, len) in
                [(0, 0), (0, 1), (3, 4095), (0, STREAM_MIN), (5, STREAM_MIN + 1), (1, 65536), (0, 65_599)]
            {
                let mut dst = vec![0xeeu8; 70_100];
                // SAFETY: the range lies inside `dst`, a distinct allocation from `src`.
                unsafe { copy_in(dst.as_mut_ptr().add(dst_off), &src[src_off..src_off + len]) };
                assert!(dst[..dst_off].iter().all(|&b| b == 0xee), "{dst_off}/{src_off}/{len}: before");
                assert_eq!(&dst[dst_off..dst_off + len], &src[src_off..src_off + len], "{dst_off}/{src_off}/{len}");
                assert!(dst[dst_off + len..].iter().all(|&b| b == 0xee), "{dst_off}/{src_off}/{len}: after");
            }
        }
    }

    #[test]
    fn reserve_pads_at_ring_end_and_respects_limit() {
        let ring = Ring::new(0, 1024, 1000, 1024 + 1000);
        let c = ring.reserve(64, 0).unwrap();
        assert_eq!((c.start, c.record, c.end), (1000, 1024, 1088));
        ring.mark_ready(c);
        assert!(ring.is_ready(1000));
        assert_eq!(ring.take_ready(1000), 1088);
        assert!(!ring.is_ready(1000));
        ring.publish_to(1088);
        // 1088 + 936 = 2024 is the limit.
        assert_eq!(ring.reserve(512, 500).unwrap_err(), 2024 - 1088 - 500, "the room kept free is not given out");
        assert!(ring.reserve(512, 0).is_ok());
        assert_eq!(ring.reserve(512, 0).unwrap_err(), 2024 - 1600);
    }
}
