//! Large I/O buffers: allocator tuning, and the budget they are drawn from.
//!
//! READ and WRITE move up to 8 MiB per request. With glibc's defaults such
//! buffers are mapped fresh from the kernel and unmapped again on every
//! request, and each page faults on first touch; keeping them in the heap
//! lets the next request reuse memory that is already mapped.
//!
//! How many are alive at once is bounded server-wide by [`IO_BUDGET`]: a
//! large request frame (a WRITE's) is read off the socket only once a
//! [`Lease`] of its size is granted (`conn::Inbox`), and a deferred READ
//! takes one for its data before it reads; a connection reads no further
//! request while it waits. A WRITE's lease is held until the data is
//! written; a READ's travels with its response frame ([`leased`]) and
//! returns when the writer has put the frame on the socket and dropped it,
//! so frames waiting in a connection's writer queue count too. The same
//! goes for the connection's own slots ([`slots_for`]): 16 MiB in flight
//! per connection. Freed buffers go back to the heap, and the next lease's
//! buffer is carved from them ([`size_class`]): the heap, and so resident
//! memory, stays within the budget plus the small buffers.
//!
//! A connection whose peer stops reading keeps its leases until it is
//! closed; the budget is large enough for several such connections
//! before others wait.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use protocol::header::{Command, Header};
use protocol::msg::read::ReadRequest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::conn::MAX_DEFERRED;

/// Bytes of large READ and WRITE buffers in flight at once, server-wide.
pub const IO_BUDGET: usize = 32 << 20;
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

/// Waits for `bytes` of the budget (all of it, for more than the budget).
pub async fn lease(bytes: usize) -> Lease {
    lease_from(budget(), IO_BUDGET, bytes).await
}

async fn lease_from(budget: &Arc<Semaphore>, total: usize, bytes: usize) -> Lease {
    let units = bytes.div_ceil(UNIT).min(total / UNIT);
    if units == 0 {
        return Lease::default();
    }
    // The semaphore is never closed; a u32 holds the budget's units.
    let permit = budget.clone().acquire_many_owned(units as u32).await.ok();
    Lease { budget: permit, slot: None }
}

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

/// The connection slots a deferred operation of `cost` bytes takes.
pub fn slots_for(cost: usize) -> u32 {
    cost.div_ceil(SLOT_BYTES).clamp(1, MAX_DEFERRED) as u32
}

/// The budget a deferred operation needs: a READ's data, a WRITE's request
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
        assert_eq!(slots_for(0), 1);
        assert_eq!(slots_for(64 << 10), 1);
        assert_eq!(slots_for(4 << 20), 1);
        assert_eq!(slots_for((4 << 20) + 1), 2);
        assert_eq!(slots_for(8 << 20), 2);
        assert_eq!(slots_for(64 << 20), MAX_DEFERRED as u32);
    }

    #[tokio::test]
    async fn a_lease_returns_when_its_frame_is_dropped() {
        let total = 32 << 20;
        let budget = Arc::new(Semaphore::new(total / UNIT));
        let frame = leased(BytesMut::from(&b"frame"[..]), lease_from(&budget, total, 8 << 20).await);
        assert_eq!(budget.available_permits(), (24 << 20) / UNIT);
        let copy = frame.clone();
        drop(frame);
        assert_eq!(budget.available_permits(), (24 << 20) / UNIT);
        assert_eq!(&copy[..], b"frame");
        drop(copy);
        assert_eq!(budget.available_permits(), total / UNIT);
        // More than the budget waits for all of it, not forever.
        let all = lease_from(&budget, total, total * 2).await;
        assert_eq!(budget.available_permits(), 0);
        // And the next one waits until it is back.
        let next = tokio::spawn({
            let budget = budget.clone();
            async move { lease_from(&budget, total, 1).await }
        });
        tokio::task::yield_now().await;
        assert!(!next.is_finished());
        drop(all);
        let one = next.await.expect("lease");
        assert_eq!(budget.available_permits(), total / UNIT - 1);
        drop(one);
        // Nothing to hold: a plain frame.
        assert_eq!(&leased(BytesMut::from(&b"x"[..]), lease(0).await)[..], b"x");
    }
}
