//! A simulated page cache and power supply, for crash tests that go beyond a killed
//! process.
//!
//! [`PageCacheStorage`] models a mapped file the way the kernel keeps it: every write
//! lands in memory (the page cache) and marks its 4 KiB page dirty; [`Storage::sync`]
//! (`msync`) writes the pages of a range back to the medium. The kernel also writes dirty
//! pages back on its own, whenever it likes: so can the model (one random dirty page
//! every so many writes). A [`Power`] is shared by one or more storages and fails them
//! all at once:
//!
//! - [`Failure::Kill`]: the processes die. Nothing more is written or synced, but the
//!   page cache survives: the next run reads every byte written, synced or not.
//! - [`Failure::PowerLoss`]: the machine loses power. Each dirty page independently
//!   either reached the medium (with a chance the test chooses) or is lost; after
//!   [`Power::restore`], memory holds exactly what the medium holds.
//!
//! A failure can be armed to fire inside the n-th storage operation from now (or the
//! n-th sync), so it lands in the middle of an append. Random choices come from the
//! seed given to [`Power::new`]; which operations they meet depends on thread
//! scheduling, so a multi-threaded run is not replayable byte for byte.
//!
//! There is no `unsafe` code here: a region's bytes sit behind a mutex, which also makes
//! each write, sync and page writeback one step.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::region::Storage;

/// Size of a page of the simulated page cache.
pub const PAGE: usize = 4096;

/// How a [`Power`] fails its storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The processes are killed (SIGKILL): the page cache survives, dirty pages and all.
    Kill,
    /// The power is lost: each dirty page reaches the medium or not, at random.
    PowerLoss,
}

/// Counts of what the failures so far did with dirty pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PowerStats {
    /// Failures that fired.
    pub failures: u64,
    /// Dirty pages written back at a power loss.
    pub written_back: u64,
    /// Dirty pages lost at a power loss.
    pub lost: u64,
    /// Dirty pages written back early, as the kernel's flusher would.
    pub background: u64,
}

/// The power supply of one or more [`PageCacheStorage`]s. Clones share it.
///
/// ```
/// use nvram::{Failure, PageCacheStorage, Power, Storage};
///
/// let power = Power::new(7).writeback_percent(0);
/// let s = PageCacheStorage::new(2 * 4096, &power);
/// // SAFETY: nothing else touches the region.
/// unsafe { s.write(0, b"synced") };
/// s.sync(0, 6).unwrap();
/// unsafe { s.write(4096, b"dirty") };
/// power.fail(Failure::PowerLoss);
/// assert!(power.is_down() && s.sync(0, 6).is_err());
/// power.restore();
/// let image = s.current_image();
/// assert_eq!((&image[..6], &image[4096..4101]), (&b"synced"[..], &[0u8; 5][..]));
/// ```
#[derive(Clone, Debug)]
pub struct Power {
    inner: Arc<PowerInner>,
}

#[derive(Debug)]
struct PowerInner {
    /// Set from a failure until [`Power::restore`].
    down: AtomicBool,
    /// Operations left before the armed failure fires; 0 when none is armed.
    countdown: AtomicU64,
    /// Whether the countdown counts syncs only.
    syncs_only: AtomicBool,
    /// Writes so far, for the background writeback cadence.
    writes: AtomicU64,
    /// Every this many writes, one random dirty page is written back (0: never).
    background_every: AtomicU64,
    state: Mutex<PowerState>,
}

#[derive(Debug)]
struct PowerState {
    rng: u64,
    writeback_percent: u64,
    armed: Option<Failure>,
    last: Option<Failure>,
    regions: Vec<Weak<Mutex<Pages>>>,
    stats: PowerStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PowerState {
    /// SplitMix64.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn regions(&mut self) -> Vec<Arc<Mutex<Pages>>> {
        self.regions.retain(|w| w.strong_count() > 0);
        self.regions.iter().filter_map(Weak::upgrade).collect()
    }
}

impl Power {
    /// A working power supply whose random choices follow from `seed`. At a power loss
    /// each dirty page is written back with a chance of 50%; no background writeback.
    pub fn new(seed: u64) -> Self {
        Power {
            inner: Arc::new(PowerInner {
                down: AtomicBool::new(false),
                countdown: AtomicU64::new(0),
                syncs_only: AtomicBool::new(false),
                writes: AtomicU64::new(0),
                background_every: AtomicU64::new(0),
                state: Mutex::new(PowerState {
                    rng: seed,
                    writeback_percent: 50,
                    armed: None,
                    last: None,
                    regions: Vec::new(),
                    stats: PowerStats::default(),
                }),
            }),
        }
    }

    /// The chance, in percent, that a dirty page reaches the medium at a power loss.
    pub fn writeback_percent(self, percent: u64) -> Self {
        lock(&self.inner.state).writeback_percent = percent.min(100);
        self
    }

    /// Writes one random dirty page back every `writes` writes (0: never), as the
    /// kernel's flusher does behind the program's back.
    pub fn background_writeback(self, writes: u64) -> Self {
        self.inner.background_every.store(writes, Ordering::Relaxed);
        self
    }

    /// Whether a failure has fired and the power was not restored since.
    pub fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::SeqCst)
    }

    /// What the failures so far did.
    pub fn stats(&self) -> PowerStats {
        lock(&self.inner.state).stats
    }

    /// Arms `failure` to fire inside the `ops`-th storage operation (write or sync, on
    /// any storage of this supply) from now; that operation and every later one is
    /// dropped (a sync fails).
    pub fn fail_after(&self, ops: u64, failure: Failure) {
        self.arm(ops, failure, false)
    }

    /// Like [`Power::fail_after`], counting only syncs of more than one page: the
    /// failure lands where data spanning pages was written and is about to be made
    /// durable, so a power loss can keep one of its pages and lose another.
    pub fn fail_at_sync(&self, syncs: u64, failure: Failure) {
        self.arm(syncs, failure, true)
    }

    fn arm(&self, n: u64, failure: Failure, syncs_only: bool) {
        lock(&self.inner.state).armed = Some(failure);
        self.inner.syncs_only.store(syncs_only, Ordering::SeqCst);
        self.inner.countdown.store(n.max(1), Ordering::SeqCst);
    }

    /// Fails every storage of this supply now. Does nothing while it is down.
    pub fn fail(&self, failure: Failure) {
        let mut state = lock(&self.inner.state);
        if self.is_down() {
            return;
        }
        state.armed = None;
        self.inner.countdown.store(0, Ordering::SeqCst);
        let regions = state.regions();
        // Holding every region's lock, the failure is one instant for all of them: a
        // write or sync either finished before it or is dropped.
        let mut pages: Vec<MutexGuard<'_, Pages>> = regions.iter().map(|r| lock(r)).collect();
        self.inner.down.store(true, Ordering::SeqCst);
        state.last = Some(failure);
        state.stats.failures += 1;
        if failure == Failure::PowerLoss {
            for p in &mut pages {
                for page in 0..p.dirty.len() {
                    if !p.dirty[page] {
                        continue;
                    }
                    if state.next() % 100 < state.writeback_percent {
                        p.write_back(page);
                        state.stats.written_back += 1;
                    } else {
                        state.stats.lost += 1;
                    }
                }
            }
        }
    }

    /// Brings the storages back up: after a power loss, memory holds what the medium
    /// holds and no page is dirty; after a kill, the page cache is as the processes left
    /// it. Call it only once nothing uses the storages.
    pub fn restore(&self) {
        let mut state = lock(&self.inner.state);
        let regions = state.regions();
        if state.last == Some(Failure::PowerLoss) && self.is_down() {
            for r in &regions {
                let p = &mut *lock(r);
                p.current.copy_from_slice(&p.durable);
                p.dirty.fill(false);
            }
        }
        state.armed = None;
        self.inner.countdown.store(0, Ordering::SeqCst);
        self.inner.down.store(false, Ordering::SeqCst);
    }

    /// Counts one storage operation (a write, or a sync of `sync_pages` pages); fires the
    /// armed failure when its turn comes. Returns whether the power is up for it.
    fn tick(&self, sync_pages: Option<usize>) -> bool {
        let inner = &self.inner;
        let counts = !inner.syncs_only.load(Ordering::Relaxed) || sync_pages.is_some_and(|n| n > 1);
        if inner.countdown.load(Ordering::Relaxed) != 0 && counts {
            let prev = inner
                .countdown
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1));
            if prev == Ok(1) {
                let failure = lock(&inner.state).armed.take();
                if let Some(f) = failure {
                    self.fail(f);
                }
            }
        }
        !self.is_down()
    }

    /// Writes back one random dirty page of `pages`, if the cadence says so.
    fn maybe_background(&self, pages: &Mutex<Pages>) {
        let every = self.inner.background_every.load(Ordering::Relaxed);
        if every == 0 || self.inner.writes.fetch_add(1, Ordering::Relaxed) % every != every - 1 {
            return;
        }
        let mut state = lock(&self.inner.state);
        let mut p = lock(pages);
        let dirty: Vec<usize> = (0..p.dirty.len()).filter(|&i| p.dirty[i]).collect();
        if dirty.is_empty() || self.is_down() {
            return;
        }
        let page = dirty[(state.next() % dirty.len() as u64) as usize];
        p.write_back(page);
        state.stats.background += 1;
    }
}

/// The memory of one region: what programs see, which pages are dirty, and the medium.
#[derive(Debug)]
struct Pages {
    current: Vec<u8>,
    dirty: Vec<bool>,
    durable: Vec<u8>,
}

impl Pages {
    /// Copies a page to the medium.
    fn write_back(&mut self, page: usize) {
        self.dirty[page] = false;
        let start = page * PAGE;
        let end = (start + PAGE).min(self.current.len());
        self.durable[start..end].copy_from_slice(&self.current[start..end]);
    }
}

/// A region in a simulated page cache, on a [`Power`] supply. Clones share the same
/// bytes. See the [module documentation](self).
///
/// ```
/// use nvram::{ClusterId, Durability, Entry, Failure, Journal, NodeId, OpId, Options, PageCacheStorage, Power};
///
/// let power = Power::new(1);
/// let storage = PageCacheStorage::new(1 << 20, &power);
/// let opts = Options::new(ClusterId(1), NodeId(1), Durability::PerRecord);
/// let journal = Journal::create(storage.clone(), opts)?;
/// journal.append(Entry::PreAck { op: OpId(1), request: b"acknowledged" })?;
/// power.fail(Failure::PowerLoss);
/// drop(journal);
/// power.restore();
/// let (_, recovery) = Journal::open(storage, opts)?;
/// assert_eq!(recovery.own.records[0].op, OpId(1));
/// # Ok::<(), nvram::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct PageCacheStorage {
    len: u64,
    pages: Arc<Mutex<Pages>>,
    power: Power,
}

impl PageCacheStorage {
    /// A zero-filled region of `len` bytes on `power`.
    pub fn new(len: usize, power: &Power) -> Self {
        Self::from_image(vec![0; len], power)
    }

    /// A region on `power` whose memory and medium both hold `image`.
    pub fn from_image(image: Vec<u8>, power: &Power) -> Self {
        let len = image.len();
        let pages = Arc::new(Mutex::new(Pages {
            current: image.clone(),
            dirty: vec![false; image.len().div_ceil(PAGE)],
            durable: image,
        }));
        lock(&power.inner.state).regions.push(Arc::downgrade(&pages));
        PageCacheStorage { len: len as u64, pages, power: power.clone() }
    }

    /// What programs see: every byte written so far.
    pub fn current_image(&self) -> Vec<u8> {
        lock(&self.pages).current.clone()
    }

    /// What the medium holds.
    pub fn durable_image(&self) -> Vec<u8> {
        lock(&self.pages).durable.clone()
    }

    /// How many pages are dirty.
    pub fn dirty_pages(&self) -> usize {
        lock(&self.pages).dirty.iter().filter(|&&d| d).count()
    }
}

fn check_range(region: u64, offset: u64, len: usize) -> std::ops::Range<usize> {
    let end = offset.checked_add(len as u64).expect("range overflows");
    assert!(end <= region, "range {offset}..{end} outside region of {region} bytes");
    offset as usize..end as usize
}

impl Storage for PageCacheStorage {
    fn len(&self) -> u64 {
        self.len
    }

    fn read(&self, offset: u64, dst: &mut [u8]) {
        let range = check_range(self.len, offset, dst.len());
        dst.copy_from_slice(&lock(&self.pages).current[range]);
    }

    fn read_append(&self, offset: u64, len: usize, dst: &mut Vec<u8>) {
        let range = check_range(self.len, offset, len);
        dst.extend_from_slice(&lock(&self.pages).current[range]);
    }

    unsafe fn write(&self, offset: u64, src: &[u8]) {
        let range = check_range(self.len, offset, src.len());
        if !self.power.tick(None) || range.is_empty() {
            return;
        }
        {
            let mut p = lock(&self.pages);
            // Checked again under the lock: a failure holds every region's lock.
            if self.power.is_down() {
                return;
            }
            p.dirty[range.start / PAGE..=(range.end - 1) / PAGE].fill(true);
            p.current[range].copy_from_slice(src);
        }
        self.power.maybe_background(&self.pages);
    }

    fn sync(&self, offset: u64, len: u64) -> io::Result<()> {
        let range = check_range(self.len, offset, len as usize);
        // msync works on whole pages.
        let pages = if range.is_empty() { 0..0 } else { range.start / PAGE..(range.end - 1) / PAGE + 1 };
        let up = self.power.tick(Some(pages.len()));
        let mut p = lock(&self.pages);
        if !up || self.power.is_down() {
            return Err(io::Error::other("the power is down"));
        }
        for page in pages {
            p.write_back(page);
        }
        Ok(())
    }
}
