//! Shipping every record to the partner: the [`Mirror`] trait, the acknowledgement
//! handle, and an in-process implementation for tests.
//!
//! The journal's publisher calls [`Mirror::ship`] for every run of records it publishes,
//! in log order, before it publishes them; so `ship` must not block for long. An implementation over a
//! network queues the bytes (copying them) and returns at once; when the partner says
//! the bytes are durable in its mirror ring, the implementation calls
//! [`MirrorAck::records`] with the end position, from any thread or task. An append
//! waiting in [`crate::Journal::commit`] returns once the acknowledgement covers it.
//!
//! # An asynchronous mirror
//!
//! The server's interconnect mirror fits this shape as follows. `ship` copies the
//! shipment (`pos` and the concatenated parts) into a message and `try_send`s it on a
//! channel to a tokio task that owns the TCP connection; it never awaits. The task
//! writes messages in order; the partner calls [`crate::Journal::receive`] for each and
//! answers with the highest end position it has stored; the task then calls
//! [`MirrorAck::records`] (the handle is `Clone + Send`, so a clone lives in the task).
//! It may also hold shipments back for a moment, to send many records in one message
//! (fewer wake-ups, frames and partner syncs): [`Mirror::flush`] then tells it that an
//! append waits for them.
//! A request task appends with [`crate::Journal::append_nowait`] (it only copies) and
//! waits for durability with [`crate::Journal::commit`] on a blocking thread, or polls
//! [`crate::Journal::is_durable`]. When the partner is lost, the server calls
//! [`crate::Journal::detach_mirror`], which releases every waiter.
//!
//! The partner's side is [`crate::Journal::receive`] and
//! [`crate::Journal::receive_meta`]: the mirror ring is a byte-for-byte copy of the
//! sender's own ring at the same logical positions, so the partner recovers it with the
//! same scan.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::journal::Journal;

/// Bytes to place at logical position `pos` of the partner's mirror ring: the parts
/// are contiguous, in order. A shipment is a run of whole records the publisher
/// published (up to 1 MiB, split at the ring end), or a chunk of a resync.
#[derive(Debug)]
pub struct Shipment<'a> {
    /// Logical position of the first byte.
    pub pos: u64,
    /// The bytes, in pieces (read back from the ring by the publisher, or, for a
    /// resync, chunks of it).
    pub parts: &'a [&'a [u8]],
}

impl Shipment<'_> {
    /// Number of bytes shipped.
    pub fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.len() as u64).sum()
    }

    /// Whether the shipment carries no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Logical position just past the last byte: what to acknowledge.
    pub fn end(&self) -> u64 {
        self.pos + self.len()
    }
}

/// A run of the own ring to ship (published records, or a chunk of a resync), read on
/// demand: a mirror that gathers records in a buffer of its own appends them there
/// straight from the ring ([`Run::read_append`]), with one copy.
pub struct Run<'a> {
    /// Logical position of the first byte.
    pub pos: u64,
    /// Number of bytes.
    pub len: u64,
    pub(crate) read: &'a dyn Fn(&mut Vec<u8>),
}

impl Run<'_> {
    /// Appends the run's `len` bytes to `dst`.
    pub fn read_append(&self, dst: &mut Vec<u8>) {
        (self.read)(dst)
    }

    /// Logical position just past the last byte: what to acknowledge.
    pub fn end(&self) -> u64 {
        self.pos + self.len
    }
}

impl std::fmt::Debug for Run<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run").field("pos", &self.pos).field("len", &self.len).finish()
    }
}

/// The sender's ring state that the partner keeps for its mirror ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MirrorMeta {
    /// Where the partner's recovery must start scanning.
    pub head: u64,
    /// The sender's ring generation.
    pub generation: u32,
    /// The sender's ring capacity (must equal the receiver's).
    pub capacity: u64,
}

/// Ships records to the partner. See the module documentation for the contract.
pub trait Mirror: Send + Sync {
    /// Sends bytes for the mirror ring. Called in log order, one caller at a time,
    /// by the publisher before it publishes the bytes: return quickly. Call
    /// [`MirrorAck::records`] once the partner has them durably.
    fn ship(&self, shipment: Shipment<'_>, ack: &MirrorAck);

    /// Ships a run of the own ring, as [`Mirror::ship`] does (called instead of it, in
    /// the same order, by the same caller). The default reads the run into a new buffer
    /// and calls `ship`; a mirror with a buffer of its own reads it there.
    fn ship_run(&self, run: Run<'_>, ack: &MirrorAck) {
        let mut buf = Vec::with_capacity(run.len as usize);
        run.read_append(&mut buf);
        self.ship(Shipment { pos: run.pos, parts: &[&buf] }, ack);
    }

    /// Sends the ring's head and generation. Call [`MirrorAck::head`] once the partner
    /// has stored them durably. May run concurrently with [`Mirror::ship`].
    fn ship_meta(&self, meta: MirrorMeta, ack: &MirrorAck);

    /// Someone waits for what was shipped so far to be acknowledged
    /// ([`crate::Journal::commit`] calls it before it waits): a mirror that holds
    /// shipments back to send many together sends what it holds now. One that sends
    /// each at once has nothing to do. May run concurrently with the other methods.
    fn flush(&self) {}
}

/// Shared state between a journal and its mirror's acknowledgements.
#[derive(Debug, Default)]
pub(crate) struct MirrorShared {
    pub(crate) epoch: AtomicU64,
    pub(crate) attached: AtomicBool,
    pub(crate) acked: AtomicU64,
    pub(crate) head: AtomicU64,
    pub(crate) lock: Mutex<()>,
    pub(crate) cv: Condvar,
}

impl MirrorShared {
    pub(crate) fn wake(&self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }
}

/// The handle through which a mirror says what the partner has made durable.
/// Cheap to clone; it can move into another thread or task. Acknowledgements from a
/// mirror that has since been detached are ignored.
#[derive(Clone, Debug)]
pub struct MirrorAck {
    pub(crate) shared: Arc<MirrorShared>,
    pub(crate) epoch: u64,
}

impl MirrorAck {
    fn current(&self) -> bool {
        self.shared.epoch.load(Ordering::Acquire) == self.epoch
    }

    /// Everything shipped below logical position `end` is durable at the partner.
    pub fn records(&self, end: u64) {
        if self.current() {
            self.shared.acked.fetch_max(end, Ordering::AcqRel);
            self.shared.wake();
        }
    }

    /// The partner has durably stored a head at `head`.
    pub fn head(&self, head: u64) {
        if self.current() {
            self.shared.head.fetch_max(head, Ordering::AcqRel);
        }
    }
}

/// An in-process mirror that writes straight into another journal's mirror ring and
/// acknowledges at once. For tests, and for both nodes of a pair run in one process.
///
/// ```
/// use std::sync::Arc;
/// use nvram::{ClusterId, Durability, Entry, Journal, LocalMirror, MemStorage, NodeId, OpId, Options};
///
/// let opts = |n| Options::new(ClusterId(7), NodeId(n), Durability::None);
/// let a = Journal::create(MemStorage::new(1 << 20), opts(1))?;
/// let b = Arc::new(Journal::create(MemStorage::new(1 << 20), opts(2))?);
/// a.attach_mirror(Arc::new(LocalMirror::new(b.clone())))?;
/// a.append(Entry::PreAck { op: OpId(1), request: b"request" })?;
/// # Ok::<(), nvram::Error>(())
/// ```
#[derive(Debug)]
pub struct LocalMirror {
    partner: Arc<Journal>,
}

impl LocalMirror {
    /// A mirror into `partner`'s mirror ring.
    pub fn new(partner: Arc<Journal>) -> Self {
        LocalMirror { partner }
    }
}

impl Mirror for LocalMirror {
    fn ship(&self, shipment: Shipment<'_>, ack: &MirrorAck) {
        if self.partner.receive(shipment.pos, shipment.parts).is_ok() {
            ack.records(shipment.end());
        }
    }

    fn ship_meta(&self, meta: MirrorMeta, ack: &MirrorAck) {
        if self.partner.receive_meta(meta).is_ok() {
            ack.head(meta.head);
        }
    }
}
