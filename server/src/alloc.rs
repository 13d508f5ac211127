//! Large I/O buffers: allocator tuning, and the budget they are drawn from.
//!
//! READ and WRITE move up to 8 MiB per request. With glibc's defaults such
//! buffers are mapped fresh from the kernel and unmapped again on every
//! request, and each page faults on first touch; keeping them in the heap
//! lets the next request reuse memory that is already mapped.
//!
//! A large request frame (a WRITE's) is read, when the server-wide
//! [`IO_BUDGET`] has room for it, into one buffer of its size class: the
//! connection takes a [`Lease`] of the frame's size, reads the frame into
//! that buffer and no further, and the lease stays with the frame until
//! its data is written ([`leased`] carries it in the answer's frame, which
//! the writer drops once it is on the socket). Without room, the frame is
//! read as any other, its buffer growing as its bytes arrive; nothing
//! waits for the budget, so connections that hold their leases (a peer
//! trickling a frame in, or not reading its answers) cannot stall others.
//! A deferred READ of [`LEASE_FROM`] or more takes a lease too when there
//! is room. A connection's large operations are bounded by its slots
//! ([`slots_for`]), answers waiting in its writer queue included: up to
//! 16 MiB of READs with leases (two of 8 MiB: one read from disk while the
//! other is sent), else one large operation at a time, so a connection
//! putting a file holds the frame being written and the next one.
//!
//! Freed buffers go back to the heap and the next one of the same size
//! class fits where they were ([`size_class`]), and one arena serves every
//! thread ([`tune`]): the heap, and so resident memory, follows what is in
//! flight.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use protocol::header::{Command, Header};
use protocol::msg::read::ReadRequest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};


/// Bytes of large request frames read into buffers of their own at once,
/// server-wide.
/// Large READs and WRITEs in flight per connection (each holds up to
/// [`crate::connection::MAX_IO`] bytes).
pub const MAX_DEFERRED: usize = 4;

pub const IO_BUDGET: usize = 64 << 20;
/// What one of a connection's [`MAX_DEFERRED`] slots stands for: a large
/// operation takes one slot per 4 MiB, so a connection has at most 16 MiB
/// in flight (two 8 MiB READs, or four of 4 MiB or less).
const SLOT_BYTES: usize = 4 << 20;
/// The budget's unit.
const UNIT: usize = 64 * 1024;

/// Call once at startup, before any thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc malloc's parameters; it is called
    // once, before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        // Large buffers are allocated on one thread (the connection's, or
        // a blocking pool thread for READ) and freed on another; with more
        // than one arena each keeps its own free 8 MiB blocks, and the heap
        // grows to a multiple of what is in flight (two arenas: 38 to 80 MiB
        // resident after one 512 MiB put or get, where one arena stays at
        // 30). Small allocations mostly come from glibc's per-thread caches
        // and do not take the arena's lock.
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// The server-wide budget's semaphore (tests hold it whole).
pub(crate) fn budget() -> &'static Arc<Semaphore> {
    static BUDGET: OnceLock<Arc<Semaphore>> = OnceLock::new();
    BUDGET.get_or_init(|| Arc::new(Semaphore::new(IO_BUDGET / UNIT)))
}

/// A share of [`IO_BUDGET`] (and of the connection's own slots), given
/// back when dropped.
#[derive(Default)]
pub struct Lease {
    budget: Option<OwnedSemaphorePermit>,
    slot: Option<OwnedSemaphorePermit>,
}

impl Lease {
    /// Also holds the connection's slot for a large operation, so that it
    /// too is given back only when the response is on the socket.
    pub fn with_slot(mut self, slot: OwnedSemaphorePermit) -> Lease {
        self.slot = Some(slot);
        self
    }
}

/// A lease of `bytes` of the budget if it has room now (and `bytes` is
/// within it), else `None`.
pub fn try_lease(bytes: usize) -> Option<Lease> {
    try_lease_from(budget(), IO_BUDGET, bytes)
}

fn try_lease_from(budget: &Arc<Semaphore>, total: usize, bytes: usize) -> Option<Lease> {
    let units = bytes.div_ceil(UNIT);
    if units == 0 || units > total / UNIT {
        return None;
    }
    // A u32 holds the budget's units.
    let permit = budget.clone().try_acquire_many_owned(units as u32).ok()?;
    Some(Lease { budget: Some(permit), slot: None })
}

/// Frames and READs at least this large are worth a share of the budget.
pub const LEASE_FROM: usize = 256 * 1024;

/// The capacity to allocate for a buffer of `n` bytes: large ones are
/// rounded up to whole MiB, so that every 8 MiB READ body and WRITE frame
/// has the same size and fits exactly where the last one was freed (with
/// sizes a few bytes apart, a freed block is often a little too small for
/// the next, and the heap grows instead). The pages past `n` are never
/// touched and take no memory.
pub fn size_class(n: usize) -> usize {
    const MIB: usize = 1 << 20;
    if n < MIB {
        n
    } else {
        n.next_multiple_of(MIB)
    }
}

/// The connection slots a deferred operation of `cost` bytes takes. One
/// that may overlap others on its connection (`overlap`: a READ with a
/// share of the server's budget) takes one per 4 MiB, so that a connection
/// has at most 16 MiB of them in flight; any other of [`LEASE_FROM`] or
/// more takes them all and runs alone.
pub fn slots_for(cost: usize, overlap: bool) -> u32 {
    if !overlap && cost >= LEASE_FROM {
        return MAX_DEFERRED as u32;
    }
    cost.div_ceil(SLOT_BYTES).clamp(1, MAX_DEFERRED) as u32
}

/// The I/O a deferred operation holds: a READ's data, a WRITE's request
/// frame (which holds its data until it is written); nothing otherwise.
pub fn io_cost(hdr: &Header, msg: &[u8]) -> usize {
    match hdr.command() {
        Some(Command::Read) => ReadRequest::parse(msg).map_or(0, |r| r.length as usize),
        Some(Command::Write) => msg.len(),
        _ => 0,
    }
}

/// A response frame that holds `lease` until the writer drops it.
pub fn leased(frame: BytesMut, lease: Lease) -> Bytes {
    if lease.budget.is_none() && lease.slot.is_none() {
        return frame.freeze();
    }
    Bytes::from_owner(Leased { frame, _lease: lease })
}

struct Leased {
    frame: BytesMut,
    _lease: Lease,
}

impl AsRef<[u8]> for Leased {
    fn as_ref(&self) -> &[u8] {
        &self.frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes() {
        assert_eq!(size_class(100), 100);
        assert_eq!(size_class((1 << 20) - 1), (1 << 20) - 1);
        assert_eq!(size_class(1 << 20), 1 << 20);
        assert_eq!(size_class((8 << 20) + 136), 9 << 20);
        assert_eq!(size_class((8 << 20) + 116), 9 << 20);
    }

    #[test]
    fn slots_by_size() {
        assert_eq!(slots_for(0, false), 1);
        assert_eq!(slots_for(64 << 10, false), 1);
        assert_eq!(slots_for(LEASE_FROM, false), MAX_DEFERRED as u32);
        assert_eq!(slots_for(8 << 20, false), MAX_DEFERRED as u32);
        assert_eq!(slots_for(4 << 20, true), 1);
        assert_eq!(slots_for((4 << 20) + 1, true), 2);
        assert_eq!(slots_for(8 << 20, true), 2);
        assert_eq!(slots_for(64 << 20, true), MAX_DEFERRED as u32);
    }

    #[test]
    fn a_lease_returns_when_its_frame_is_dropped() {
        let total = 32 << 20;
        let budget = Arc::new(Semaphore::new(total / UNIT));
        let lease = try_lease_from(&budget, total, 8 << 20).expect("room");
        let frame = leased(BytesMut::from(&b"frame"[..]), lease);
        assert_eq!(budget.available_permits(), (24 << 20) / UNIT);
        let copy = frame.clone();
        drop(frame);
        assert_eq!(budget.available_permits(), (24 << 20) / UNIT);
        assert_eq!(&copy[..], b"frame");
        drop(copy);
        assert_eq!(budget.available_permits(), total / UNIT);
        // No room: no lease, and no wait.
        let most = try_lease_from(&budget, total, total - UNIT).expect("room");
        assert!(try_lease_from(&budget, total, 2 * UNIT).is_none());
        assert!(try_lease_from(&budget, total, UNIT).is_some());
        drop(most);
        // More than the whole budget, or nothing: never.
        assert!(try_lease_from(&budget, total, total + 1).is_none());
        assert!(try_lease_from(&budget, total, 0).is_none());
        // Nothing to hold: a plain frame.
        assert_eq!(&leased(BytesMut::from(&b"x"[..]), Lease::default())[..], b"x");
    }
}
