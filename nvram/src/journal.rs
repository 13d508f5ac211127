//! The journal: opening and creating a region, appending, durability, retiring,
//! checkpoints, the flag, and the receiving side of a mirror.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use ids::{ClusterId, Flag, NodeId, OpId};

use crate::error::{Error, Result};
use crate::format::{
    self, align, Header, Kind, LogMeta, RecordHeader, HEADER_LEN, MIN_REGION, RECORD_HEADER, SLOT_SIZE,
};
use crate::mirror::{Mirror, MirrorAck, MirrorMeta, MirrorShared, Run, Shipment};
use crate::recover::{self, OpHash, Recovery};
use crate::region::{Claim, DaxStorage, MmapStorage, Region, Ring, Storage};

/// When an append counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// A store is durable (NVDIMM, DAX): never sync. Also right for tests.
    None,
    /// `msync` each record before it is published.
    PerRecord,
    /// One `msync` covers every record published so far; concurrent committers wait
    /// for one leader instead of each syncing.
    GroupCommit,
    /// Persistent memory (DAX, NVDIMM): the region is mapped with `MAP_SYNC`
    /// ([`DaxStorage`]; [`Journal::open_file`] and [`Journal::create_file`] refuse a file
    /// that is not on a DAX file system), and a record counts as durable once its
    /// cache lines are written back (`clwb`, `clflushopt` or `clflush`) and fenced,
    /// which the publisher does before it publishes, as `PerRecord` does with `msync`.
    Pmem,
}

/// Who opens a region, and how it syncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The cluster this node belongs to.
    pub cluster: ClusterId,
    /// This node.
    pub node: NodeId,
    /// The durability policy.
    pub durability: Durability,
    /// Drop the own ring's pages behind the head from memory as the head moves on
    /// ([`Storage::discard`], a MiB at a time), so that resident memory follows the
    /// live records; the tail then faults each page in again when it comes round (a
    /// page fault per 4 KiB appended, about 0.3 to 0.5 µs here: half the speed of
    /// 4 KiB appends at several GiB/s, nothing at a server's MB/s). Off by default:
    /// pages stay mapped once the ring has used them.
    pub release_free: bool,
}

impl Options {
    /// Options for `node` of `cluster` with the given policy.
    pub fn new(cluster: ClusterId, node: NodeId, durability: Durability) -> Self {
        Options { cluster, node, durability, release_free: false }
    }

    /// The same with [`Options::release_free`] set to `on`.
    pub fn releasing_free(self, on: bool) -> Self {
        Options { release_free: on, ..self }
    }
}

/// One record to append. Payloads are opaque bytes, copied once into the region.
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// Point 1: the whole request (or compound chain) as read off the socket.
    PreAck {
        /// The operation.
        op: OpId,
        /// The request bytes.
        request: &'a [u8],
    },
    /// Point 2: compound element `element` is about to run.
    PreCommand {
        /// The operation.
        op: OpId,
        /// Index of the element in the compound.
        element: u16,
    },
    /// Point 2 again, with a payload: what element `element` decided before it changed
    /// anything, for a restore that finds no point-3 record of it (where an append's
    /// data goes, so that the restore can tell whether it was written). Stored as a
    /// [`Kind::PreCommand`] record that has a payload.
    Decided {
        /// The operation.
        op: OpId,
        /// Index of the element in the compound.
        element: u16,
        /// What it decided, opaque to the journal.
        decision: &'a [u8],
    },
    /// Point 3: element `element` finished; its response and state delta.
    PostCompletion {
        /// The operation.
        op: OpId,
        /// Index of the element in the compound.
        element: u16,
        /// The response's NTSTATUS (its header's Status field).
        status: u32,
        /// The response bytes (its body) to send again on replay.
        response: &'a [u8],
        /// The state delta (new open, lock granted, …), opaque to the journal.
        delta: &'a [u8],
    },
    /// Point 4: TCP acknowledged the whole response.
    PostReplyAck {
        /// The operation.
        op: OpId,
    },
    /// Long-lived state folded into one record; the head may then pass every retired
    /// operation before it.
    Checkpoint {
        /// The serialized state.
        state: &'a [u8],
    },
}

impl<'a> Entry<'a> {
    /// Kind, operation, element and payload pieces. `len` holds the response length.
    fn parts(&self, len: &'a mut [u8; 8]) -> (Kind, u64, u16, [&'a [u8]; 3]) {
        match *self {
            Entry::PreAck { op, request } => (Kind::PreAck, op.0, 0, [request, &[], &[]]),
            Entry::PreCommand { op, element } => (Kind::PreCommand, op.0, element, [&[], &[], &[]]),
            Entry::Decided { op, element, decision } => (Kind::PreCommand, op.0, element, [decision, &[], &[]]),
            Entry::PostCompletion { op, element, status, response, delta } => {
                len[..4].copy_from_slice(&(response.len() as u32).to_le_bytes());
                len[4..].copy_from_slice(&status.to_le_bytes());
                (Kind::PostCompletion, op.0, element, [&len[..], response, delta])
            }
            Entry::PostReplyAck { op } => (Kind::PostReplyAck, op.0, 0, [&[], &[], &[]]),
            Entry::Checkpoint { state } => (Kind::Checkpoint, 0, 0, [state, &[], &[]]),
        }
    }
}

/// Proof of an append: where the record went. Pass it to [`Journal::commit`] or
/// [`Journal::is_durable`]. (It carries no sequence number: the publisher numbers a
/// record when it publishes it, which may be after its append returned.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// Logical position of the record.
    pub pos: u64,
    /// Logical position just past it: durable once the durable frontier reaches it.
    pub end: u64,
}

const SHARDS: usize = 16;
const COPY_CHUNK: usize = 16 * 1024;
/// The most bytes the publisher ships to the mirror in one piece.
const SHIP_CHUNK: u64 = 1 << 20;
const NO_CHECKPOINT: u64 = u64::MAX;
/// How far the head moves before the ring behind it is dropped from memory
/// ([`Options::release_free`]).
const DISCARD_CHUNK: u64 = 1 << 20;

/// Live operations of one shard: operation to the position of its first record.
#[derive(Default)]
struct Shard {
    ops: HashMap<u64, u64, OpHash>,
    firsts: BTreeSet<(u64, u64)>,
    /// Operations released ([`Journal::release`]) and not yet retired: records they
    /// append later do not hold the head either.
    released: std::collections::HashSet<u64, OpHash>,
}

/// A node's journal: the own ring it appends to and the partner's mirror ring it
/// receives into. Share it between threads with `Arc`; every method takes `&self`.
///
/// ```
/// use nvram::{ClusterId, Durability, Entry, Journal, MemStorage, NodeId, OpId, Options};
///
/// let storage = MemStorage::new(1 << 20);
/// let opts = Options::new(ClusterId(1), NodeId(1), Durability::None);
/// let journal = Journal::create(storage.clone(), opts)?;
/// let op = OpId(42);
/// journal.append(Entry::PreAck { op, request: b"WRITE ..." })?;
/// journal.append(Entry::PreCommand { op, element: 0 })?;
/// journal.append(Entry::PostCompletion { op, element: 0, status: 0, response: b"OK", delta: b"size=9" })?;
/// drop(journal); // crash
///
/// let (journal, recovery) = Journal::open(MemStorage::from_image(storage.current_image()), opts)?;
/// assert_eq!(recovery.own.records.len(), 3);
/// assert_eq!(recovery.own.points.post_completion, vec![op]);
/// journal.append(Entry::PostReplyAck { op })?;
/// journal.retire(op)?;
/// # Ok::<(), nvram::Error>(())
/// ```
pub struct Journal {
    region: Region,
    own: Ring,
    partner_base: u64,
    cap: u64,
    durability: Durability,
    generation: u32,
    header: Mutex<Header>,
    /// The next sequence number; taken by the publisher only.
    next_seq: AtomicU64,
    /// Whether some thread is publishing (see [`Journal::publish_ready`]).
    publishing: AtomicBool,
    /// The start of the first run of records whose `PerRecord` sync failed (`u64::MAX`:
    /// none): no record from there on counts as durable.
    sync_failed: AtomicU64,
    /// The storage lost a write (see [`Journal::seal`]): nothing counts as durable.
    broken: AtomicBool,
    synced: AtomicU64,
    sync_leader: Mutex<bool>,
    sync_cv: Condvar,
    mirror: Mutex<Option<Arc<dyn Mirror>>>,
    mirror_shared: Arc<MirrorShared>,
    shards: [Mutex<Shard>; SHARDS],
    last_checkpoint: AtomicU64,
    /// The latest checkpoint appended but not yet known durable: `(pos, end)`.
    pending_checkpoint: Mutex<Option<(u64, u64)>>,
    mem_head: AtomicU64,
    persisted_head: AtomicU64,
    head_lock: Mutex<()>,
    retired: AtomicU64,
    /// [`Options::release_free`]: how far behind the head the own ring was dropped
    /// from memory (a logical position), or `None` when pages stay mapped.
    discarded: Option<AtomicU64>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("capacity", &self.cap)
            .field("head", &self.head())
            .field("tail", &self.own.published())
            .field("mem_head", &self.mem_head.load(Ordering::Relaxed))
            .field("last_checkpoint", &self.last_checkpoint.load(Ordering::Relaxed))
            .field("pending_checkpoint", &*lock(&self.pending_checkpoint))
            .field("synced", &self.synced.load(Ordering::Relaxed))
            .field("mirror_head", &self.mirror_shared.head.load(Ordering::Relaxed))
            .field("mirror_acked", &self.mirror_shared.acked.load(Ordering::Relaxed))
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Journal {
    /// Formats `storage` as an empty journal owned by `opts.node` of `opts.cluster`,
    /// with the flag [`Flag::CleanShutdown`]. The storage must be zero-filled (as
    /// [`MmapStorage::create`] and [`crate::MemStorage::new`] give it).
    pub fn create(storage: impl Storage + 'static, opts: Options) -> Result<Journal> {
        let len = storage.len();
        if len < MIN_REGION {
            return Err(Error::BadSize { expected: MIN_REGION, actual: len });
        }
        let header = Header {
            counter: 0,
            cluster: opts.cluster,
            node: opts.node,
            flag: Flag::CleanShutdown,
            generation: 1,
            region_len: len,
            ring_cap: format::ring_capacity(len),
            own: LogMeta { head: 0, tail_hint: 0, generation: 1 },
            partner: LogMeta::default(),
        };
        let journal = Journal::build(Box::new(storage), header, opts, 1, 0);
        {
            let mut h = lock(&journal.header);
            journal.write_header(&mut h)?;
            journal.write_header(&mut h)?; // both slots are ours
        }
        Ok(journal)
    }

    /// Creates the file at `path` with `len` bytes and formats it; see [`Journal::create`].
    /// With [`Durability::Pmem`] the file is mapped with `MAP_SYNC` ([`DaxStorage`]),
    /// which fails (and removes the file) when it is not on a DAX file system.
    pub fn create_file(path: &Path, len: u64, opts: Options) -> Result<Journal> {
        match opts.durability {
            Durability::Pmem => Journal::create(DaxStorage::create(path, len)?, opts),
            _ => Journal::create(MmapStorage::create(path, len)?, opts),
        }
    }

    /// Opens a journal, recovers both rings and starts a new run (the node and own-ring
    /// generations are bumped). The flag is left as it was found; the recovery holds it.
    ///
    /// A region of another cluster or node is refused with [`Error::ForeignCluster`]
    /// or [`Error::ForeignNode`] before any record is read.
    ///
    /// Every recovered operation counts as live again: the server retires each one it
    /// has finished (restored, redone or found complete), and checkpoints, before the
    /// head can move past them.
    pub fn open<S: Storage + 'static>(storage: S, opts: Options) -> Result<(Journal, Recovery)> {
        let mut header = read_header(&storage)?;
        if let Some(e) = Error::foreign((opts.cluster, opts.node), (header.cluster, header.node)) {
            return Err(e);
        }
        if header.region_len != storage.len() || header.ring_cap != format::ring_capacity(storage.len()) {
            return Err(Error::BadSize { expected: header.region_len, actual: storage.len() });
        }
        let cap = header.ring_cap;
        // The two rings are scanned in parallel: recovery time is on the restart path.
        let scan = |base: u64, meta: LogMeta| recover::scan(&storage, base, cap, meta);
        let (own, partner) = std::thread::scope(|s| {
            let partner = s.spawn(|| scan(header.partner_base(), header.partner));
            let own = scan(header.own_base(), header.own);
            (own, partner.join().expect("partner scan panicked"))
        });
        let (own, partner) = (own?, partner?);
        let flag = header.flag;

        header.generation += 1;
        header.own.generation += 1;
        header.own.tail_hint = own.tail;
        let journal = Journal::build(Box::new(storage), header, opts, own.next_seq, own.tail);
        for r in &own.records {
            journal.track(r.op.0, r.pos);
        }
        if let Some(c) = &own.checkpoint {
            journal.last_checkpoint.store(c.pos, Ordering::Relaxed);
        }
        // A killed process leaves records in the page cache that were never synced, and
        // this scan took them into the log: sync them before any new record counts as
        // durable, or a power loss would cut the log before the new records.
        if opts.durability != Durability::None {
            sync_ring(&journal.region, journal.own.base, cap, own.head, own.tail)?;
            sync_ring(&journal.region, journal.partner_base, cap, partner.head, partner.tail)?;
        }
        {
            let mut h = lock(&journal.header);
            journal.write_header(&mut h)?;
        }
        // The scan mapped every page of both rings; keep the live parts only (a page
        // of the free part is mapped again when the tail reaches it: once a lap would
        // put a page fault on the append path every 4 KiB, so pages stay mapped once
        // used, and the resident part of a ring is what its load has used of it).
        journal.region.discard_ring(journal.own.base, cap, own.tail, own.head + cap);
        journal.region.discard_ring(journal.partner_base, cap, partner.tail, partner.head + cap);
        let recovery = Recovery { flag, generation: header.generation, own, partner };
        Ok((journal, recovery))
    }

    /// Maps the file at `path` and opens it; see [`Journal::open`]. With
    /// [`Durability::Pmem`] the file is mapped with `MAP_SYNC` ([`DaxStorage`]), which
    /// fails, leaving the file as it was, when it is not on a DAX file system.
    pub fn open_file(path: &Path, opts: Options) -> Result<(Journal, Recovery)> {
        match opts.durability {
            Durability::Pmem => Journal::open(DaxStorage::open(path)?, opts),
            _ => Journal::open(MmapStorage::open(path)?, opts),
        }
    }

    fn build(storage: Box<dyn Storage>, header: Header, opts: Options, next_seq: u64, tail: u64) -> Journal {
        let durability = opts.durability;
        let cap = header.ring_cap;
        let head = header.own.head;
        Journal {
            region: Region::new(storage),
            own: Ring::new(header.own_base(), cap, tail, head + cap),
            partner_base: header.partner_base(),
            cap,
            durability,
            generation: header.own.generation,
            header: Mutex::new(header),
            next_seq: AtomicU64::new(next_seq),
            publishing: AtomicBool::new(false),
            sync_failed: AtomicU64::new(u64::MAX),
            broken: AtomicBool::new(false),
            synced: AtomicU64::new(tail),
            sync_leader: Mutex::new(false),
            sync_cv: Condvar::new(),
            mirror: Mutex::new(None),
            mirror_shared: Arc::new(MirrorShared::default()),
            shards: Default::default(),
            last_checkpoint: AtomicU64::new(NO_CHECKPOINT),
            pending_checkpoint: Mutex::new(None),
            mem_head: AtomicU64::new(head),
            persisted_head: AtomicU64::new(head),
            head_lock: Mutex::new(()),
            retired: AtomicU64::new(0),
            discarded: opts.release_free.then(|| AtomicU64::new(head)),
        }
    }

    // ---- appending ----------------------------------------------------------------

    /// Appends a record and waits until it is durable: synced as the policy says and,
    /// when a mirror is attached, acknowledged by it. This is what the request pipeline
    /// calls at each consistency point.
    ///
    /// Fails with [`Error::Full`] when the ring has no room (back-pressure: retire
    /// finished operations, checkpoint, retry) and never overwrites a live record.
    pub fn append(&self, entry: Entry<'_>) -> Result<Ticket> {
        let ticket = self.append_nowait(entry)?;
        self.commit(&ticket)?;
        Ok(ticket)
    }

    /// Appends a record without waiting for durability: it is copied into the region
    /// and will be published (sealed with its sequence number, shipped to the mirror)
    /// in log order, after every record appended before it. Follow with
    /// [`Journal::commit`] (for example on a blocking thread) or poll
    /// [`Journal::is_durable`].
    ///
    /// An appender never waits for the appenders before it: once its payload is
    /// copied it marks its record ready and returns. Whoever holds the publisher's turn
    /// (the first appender to find it free) seals and publishes every ready record at
    /// the frontier, its neighbours' as well as its own; a record whose appender is
    /// still copying holds back those after it until it is ready too (recovery stops at
    /// the first hole).
    pub fn append_nowait(&self, entry: Entry<'_>) -> Result<Ticket> {
        let mut len_buf = [0u8; 8];
        let (kind, op, element, parts) = entry.parts(&mut len_buf);
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if len > self.max_payload() {
            return Err(Error::TooLarge { len, max: self.max_payload() });
        }
        let total = align(RECORD_HEADER as u64 + len);
        let claim = self.reserve(total, kind)?;
        if kind != Kind::Checkpoint {
            self.track(op, claim.record);
        }

        // Copy the payload into the region, checksumming each chunk while it is hot.
        let mut payload_crc = crc32fast::Hasher::new();
        let mut at = claim.record - claim.start + RECORD_HEADER as u64;
        for part in parts {
            for chunk in part.chunks(COPY_CHUNK) {
                payload_crc.update(chunk);
                self.region.write_claim(&self.own, &claim, at, chunk);
                at += chunk.len() as u64;
            }
        }
        self.write_pad(&claim);
        let hdr = self.provisional(kind, len, element, op, claim.record, payload_crc.finalize());
        self.region.write_claim(&self.own, &claim, claim.record - claim.start, &hdr);
        let ticket = Ticket { pos: claim.record, end: claim.end };
        self.own.mark_ready(claim);
        self.publish_ready();
        Ok(ticket)
    }

    /// The header of a record written but not yet published: no kind (byte 4 is zero,
    /// which no reader takes for a record), the kind kept in reserved byte 36, and the
    /// payload's checksum alone in the checksum field. [`Journal::publish_ready`] turns
    /// it into the real header.
    fn provisional(&self, kind: Kind, len: u64, element: u16, op: u64, pos: u64, crc: u32) -> [u8; RECORD_HEADER] {
        let mut hdr = RecordHeader {
            len: len as u32,
            kind,
            element,
            lap: (pos / self.cap) as u32,
            generation: self.generation,
            seq: 0,
            op,
        }
        .encode();
        hdr[4] = 0;
        hdr[32..36].copy_from_slice(&crc.to_le_bytes());
        hdr[36] = kind as u8;
        hdr
    }

    /// Publishes every ready record at the frontier, if no one else is publishing:
    /// numbers and seals each (the header is written last), syncs them under
    /// `PerRecord`, ships them to the mirror in log order, and moves the frontier.
    ///
    /// One publisher at a time (`publishing`). An appender that marks its record ready
    /// and finds the flag taken leaves it to the holder, which looks at the frontier
    /// again after dropping the flag: both sides use sequentially consistent
    /// operations, so either the appender sees the flag free or the holder sees the
    /// mark.
    fn publish_ready(&self) {
        loop {
            if self.publishing.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                return;
            }
            let start = self.own.published();
            let mut pos = start;
            while self.own.is_ready(pos) {
                pos = self.seal(pos);
            }
            if pos > start {
                let per_record = matches!(self.durability, Durability::PerRecord | Durability::Pmem);
                if per_record && self.sync_own(start, pos).is_err() {
                    self.sync_failed.fetch_min(start, Ordering::AcqRel);
                }
                self.ship(start, pos);
                self.own.publish_to(pos);
            }
            self.publishing.store(false, Ordering::SeqCst);
            if !self.own.is_ready(self.own.published()) {
                return;
            }
        }
    }

    /// Seals the ready claim starting at `pos` and returns its end: its provisional
    /// header becomes the real one, with the next sequence number (pads: 0).
    ///
    /// Where the claim ends and where its record starts come from memory (the ready
    /// marks); only the header's fields come from the region. A provisional header that
    /// does not match its claim means the storage lost a write (a failed medium, or a
    /// simulated power loss): the record is left unsealed and the journal fails every
    /// commit from then on.
    fn seal(&self, pos: u64) -> u64 {
        let end = self.own.take_ready(pos);
        let room = self.cap - pos % self.cap;
        // A claim that runs past the ring end starts with padding up to it (sealed by
        // its holder when there is room for a header; `write_pad`).
        let record = if end - pos > room { pos + room } else { pos };
        let mut hdr = [0u8; RECORD_HEADER];
        self.region.read_ring(&self.own, record, &mut hdr);
        let len = u64::from(u32::from_le_bytes(hdr[0..4].try_into().expect("4 bytes")));
        let kind = Kind::from_u8(hdr[36]).filter(|_| hdr[4] == 0 && record + align(RECORD_HEADER as u64 + len) == end);
        let Some(kind) = kind else {
            self.broken.store(true, Ordering::Release);
            return end;
        };
        let crc = u32::from_le_bytes(hdr[32..36].try_into().expect("4 bytes"));
        let seq = if kind == Kind::Pad { 0 } else { self.next_seq.fetch_add(1, Ordering::Relaxed) };
        hdr[4] = kind as u8;
        hdr[16..24].copy_from_slice(&seq.to_le_bytes());
        hdr[32..40].fill(0);
        RecordHeader::seal(&mut hdr, &crc32fast::Hasher::new_with_initial_len(crc, len));
        self.region.write_ready(&self.own, record, &hdr);
        if kind == Kind::Checkpoint {
            // The head may rely on it only once it is durable (see `promote_checkpoint`).
            *lock(&self.pending_checkpoint) = Some((record, end));
        }
        end
    }

    /// Ships `from..to` of the own ring (sealed, not yet published) to the mirror.
    fn ship(&self, mut from: u64, to: u64) {
        let Some(m) = lock(&self.mirror).clone() else {
            return;
        };
        let ack = self.ack_handle();
        while from < to {
            let n = (to - from).min(self.cap - from % self.cap).min(SHIP_CHUNK);
            let at = from;
            let read = |dst: &mut Vec<u8>| self.region.read_ring_append(&self.own, at, n as usize, dst);
            m.ship_run(Run { pos: from, len: n, read: &read }, &ack);
            from += n;
        }
    }

    /// Waits until the record of `ticket` (and so every earlier one) is durable.
    pub fn commit(&self, ticket: &Ticket) -> Result<()> {
        self.own.wait_published(ticket.end);
        self.check_synced(ticket)?;
        // Before the local sync, so that the partner's round trip runs while it does.
        self.flush_mirror(ticket.end);
        if self.durability == Durability::GroupCommit {
            self.group_sync(ticket.end)?;
        }
        self.wait_mirror(ticket.end);
        Ok(())
    }

    /// Fails if a `PerRecord` sync of the record of `ticket` (or of one before it)
    /// failed, or if the storage lost a write.
    fn check_synced(&self, ticket: &Ticket) -> Result<()> {
        if self.broken.load(Ordering::Acquire) {
            return Err(Error::Io(std::io::Error::other("the journal's storage lost a write")));
        }
        let failed = self.sync_failed.load(Ordering::Acquire);
        if ticket.end > failed {
            return Err(Error::Io(std::io::Error::other(format!("msync of the journal at {failed} failed"))));
        }
        Ok(())
    }

    /// Makes every record appended so far durable.
    pub fn flush(&self) -> Result<()> {
        let end = self.own.reserved();
        self.commit(&Ticket { pos: end, end })
    }

    /// Whether the record of `ticket` is durable, without waiting.
    pub fn is_durable(&self, ticket: &Ticket) -> bool {
        let local = match self.durability {
            Durability::GroupCommit => self.synced.load(Ordering::Acquire),
            _ => self.own.published(),
        };
        local >= ticket.end
            && self.mirror_covers(ticket.end)
            && ticket.end <= self.sync_failed.load(Ordering::Acquire)
            && !self.broken.load(Ordering::Acquire)
    }

    /// The largest payload a record may carry: half the ring's capacity, minus the
    /// header and alignment.
    pub fn max_payload(&self) -> u64 {
        self.cap / 2 - RECORD_HEADER as u64 - 8
    }

    /// Claims room for a record. Every record but a checkpoint leaves
    /// [`Journal::checkpoint_reserve`] bytes free: a ring filled with records whose
    /// operations are retired can still take the checkpoint that lets its head move
    /// past them (without it, such a ring would stay full for ever). A new operation's
    /// first record (point 1) leaves as much again: the operations already started can
    /// always append the records that finish them (points 2 to 4), or a ring filled
    /// with the first records of operations would hold them all back for ever.
    fn reserve(&self, total: u64, kind: Kind) -> Result<Claim> {
        let keep = match kind {
            Kind::Checkpoint => 0,
            Kind::PreAck => 2 * self.checkpoint_reserve(),
            _ => self.checkpoint_reserve(),
        };
        match self.own.reserve(total, keep) {
            Ok(c) => Ok(c),
            Err(_) => {
                self.advance_head(true)?;
                self.refresh_limit();
                self.own.reserve(total, keep).map_err(|free| Error::Full { needed: total, free })
            }
        }
    }

    /// Bytes of the ring that only a checkpoint may use: an eighth of it.
    pub fn checkpoint_reserve(&self) -> u64 {
        self.cap / 8
    }

    /// Writes the pad of a claim that skips the ring end, if there is room for a header.
    /// It is sealed at once: nothing is read past it before the record after it is.
    fn write_pad(&self, claim: &Claim) {
        let pad = claim.record - claim.start;
        if pad < RECORD_HEADER as u64 {
            return;
        }
        let mut hdr = self.pad_header(claim.start, pad);
        RecordHeader::seal(&mut hdr, &crc32fast::Hasher::new());
        self.region.write_claim(&self.own, claim, 0, &hdr);
    }

    fn pad_header(&self, pos: u64, total: u64) -> [u8; RECORD_HEADER] {
        RecordHeader {
            len: (total - RECORD_HEADER as u64) as u32,
            kind: Kind::Pad,
            element: 0,
            lap: (pos / self.cap) as u32,
            generation: self.generation,
            seq: 0,
            op: 0,
        }
        .encode()
    }

    fn sync_own(&self, from: u64, to: u64) -> Result<()> {
        sync_ring(&self.region, self.own.base, self.cap, from, to)
    }

    fn group_sync(&self, end: u64) -> Result<()> {
        loop {
            if self.synced.load(Ordering::Acquire) >= end {
                return Ok(());
            }
            let mut leader = lock(&self.sync_leader);
            if self.synced.load(Ordering::Acquire) >= end {
                return Ok(());
            }
            if *leader {
                drop(self.sync_cv.wait(leader).unwrap_or_else(|e| e.into_inner()));
                continue;
            }
            *leader = true;
            drop(leader);
            let from = self.synced.load(Ordering::Acquire);
            let to = self.own.published();
            let r = self.sync_own(from, to);
            if r.is_ok() {
                self.synced.fetch_max(to, Ordering::AcqRel);
            }
            *lock(&self.sync_leader) = false;
            self.sync_cv.notify_all();
            r?;
        }
    }

    // ---- space ----------------------------------------------------------------------

    fn track(&self, op: u64, pos: u64) {
        let mut shard = lock(&self.shards[shard_of(op)]);
        if shard.released.contains(&op) {
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(v) = shard.ops.entry(op) {
            v.insert(pos);
            shard.firsts.insert((pos, op));
        }
    }

    /// The operation is done (past point 4, its file data flushed): its records may be
    /// overwritten once the head passes them. Retiring an unknown operation does nothing.
    pub fn retire(&self, op: OpId) -> Result<()> {
        {
            let mut shard = lock(&self.shards[shard_of(op.0)]);
            shard.released.remove(&op.0);
            match shard.ops.remove(&op.0) {
                Some(pos) => shard.firsts.remove(&(pos, op.0)),
                None => return Ok(()),
            };
        }
        self.retired_one()
    }

    /// The operation is not done, but its records may be overwritten once the head
    /// passes them, and so may those it appends later, until [`Journal::retire`]
    /// forgets it (for an operation that waits long, or whose answer will never be
    /// acknowledged: what it must not lose, its caller keeps elsewhere).
    pub fn release(&self, op: OpId) -> Result<()> {
        {
            let mut shard = lock(&self.shards[shard_of(op.0)]);
            shard.released.insert(op.0);
            match shard.ops.remove(&op.0) {
                Some(pos) => shard.firsts.remove(&(pos, op.0)),
                None => return Ok(()),
            };
        }
        self.retired_one()
    }

    /// Was the operation released ([`Journal::release`]) and not retired since?
    pub fn is_released(&self, op: OpId) -> bool {
        lock(&self.shards[shard_of(op.0)]).released.contains(&op.0)
    }

    fn retired_one(&self) -> Result<()> {
        // Moving the head looks at every shard: do it every so many retirements (and
        // whenever the ring is full, and after each checkpoint).
        if self.retired.fetch_add(1, Ordering::Relaxed) % 64 == 63 {
            self.advance_head(false)?;
        }
        Ok(())
    }

    /// Appends a checkpoint of long-lived state and waits until it is durable. Once it
    /// is, the head may pass every retired operation before it.
    pub fn checkpoint(&self, state: &[u8]) -> Result<Ticket> {
        let t = self.append(Entry::Checkpoint { state })?;
        self.advance_head(false)?;
        Ok(t)
    }

    /// Appends a checkpoint without waiting for it to be durable (for a caller that
    /// must append it under a lock of its own, so that no state change falls between
    /// the state it folds and its place in the log). Wait with [`Journal::commit`],
    /// then call [`Journal::compact`] so the head may pass it.
    pub fn checkpoint_nowait(&self, state: &[u8]) -> Result<Ticket> {
        self.append_nowait(Entry::Checkpoint { state })
    }

    /// Moves the head up to the oldest byte still needed (the latest durable
    /// checkpoint, the first record of the oldest live operation) and persists it.
    pub fn compact(&self) -> Result<()> {
        self.advance_head(true)
    }

    /// Makes the latest appended checkpoint the one the head may move up to, once it is
    /// durable. Until then the head stays at or before the previous durable one: a power
    /// loss must find a checkpoint at or after the head.
    fn promote_checkpoint(&self) {
        let mut pending = lock(&self.pending_checkpoint);
        if let Some((pos, end)) = *pending {
            if self.is_durable(&Ticket { pos, end }) {
                self.last_checkpoint.store(pos, Ordering::Release);
                *pending = None;
            }
        }
    }

    /// Moves the head to the oldest byte still needed and persists it when it moved far
    /// (or always, with `force`).
    fn advance_head(&self, force: bool) -> Result<()> {
        self.promote_checkpoint();
        // Published first: every record below it has registered its operation.
        let mut head = self.own.published();
        head = head.min(self.last_checkpoint.load(Ordering::Acquire));
        for s in &self.shards {
            if let Some(&(pos, _)) = lock(s).firsts.first() {
                head = head.min(pos);
            }
        }
        let head = self.mem_head.fetch_max(head, Ordering::AcqRel).max(head);
        self.discard_behind(head);
        let persisted = self.persisted_head.load(Ordering::Acquire);
        if head > persisted && (force || head - persisted >= self.cap / 4) {
            self.persist_head()?;
        }
        Ok(())
    }

    /// With [`Options::release_free`], drops the own ring's bytes behind `head` from
    /// memory, a [`DISCARD_CHUNK`] or more at a time.
    fn discard_behind(&self, head: u64) {
        let Some(discarded) = &self.discarded else { return };
        let from = discarded.load(Ordering::Acquire);
        if head < from.saturating_add(DISCARD_CHUNK) {
            return;
        }
        if discarded.compare_exchange(from, head, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.region.discard_ring(self.own.base, self.cap, from, head);
        }
    }

    fn persist_head(&self) -> Result<()> {
        let _g = lock(&self.head_lock);
        let head = self.mem_head.load(Ordering::Acquire);
        {
            let mut h = lock(&self.header);
            if head <= h.own.head {
                return Ok(());
            }
            h.own.head = head;
            h.own.tail_hint = self.own.published();
            // Under `None` nothing else is ever synced, and a store outlives a killed
            // process (or is durable by itself, on persistent memory): a sync here would
            // only stall the appenders that wait for room (a disk flush, milliseconds,
            // with the head lock held) for no guarantee the policy gives.
            if self.durability == Durability::None {
                self.store_header(&mut h);
            } else {
                self.write_header(&mut h)?;
            }
        }
        self.persisted_head.store(head, Ordering::Release);
        let mirror = lock(&self.mirror).clone();
        if let Some(m) = mirror {
            let meta = MirrorMeta { head, generation: self.generation, capacity: self.cap };
            m.ship_meta(meta, &self.ack_handle());
        }
        self.refresh_limit();
        Ok(())
    }

    fn refresh_limit(&self) {
        let mut head = self.persisted_head.load(Ordering::Acquire);
        if self.mirror_shared.attached.load(Ordering::Acquire) {
            head = head.min(self.mirror_shared.head.load(Ordering::Acquire));
        }
        self.own.set_limit(head + self.cap);
    }

    /// The live operation (not retired) whose first record is the oldest, with that
    /// record's position: what holds the head back when no checkpoint can move it.
    pub fn oldest_live(&self) -> Option<(OpId, u64)> {
        self.shards
            .iter()
            .filter_map(|s| lock(s).firsts.first().map(|&(pos, op)| (OpId(op), pos)))
            .min_by_key(|&(_, pos)| pos)
    }

    /// Logical position of the head: the oldest byte recovery would read.
    pub fn head(&self) -> u64 {
        self.persisted_head.load(Ordering::Acquire)
    }

    /// Logical position just past the last published record.
    pub fn tail(&self) -> u64 {
        self.own.published()
    }

    /// Capacity of each ring in bytes.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    // ---- header -------------------------------------------------------------------

    fn write_header(&self, h: &mut Header) -> Result<()> {
        let off = self.store_header(h);
        self.region.sync(off, SLOT_SIZE)?;
        Ok(())
    }

    /// Writes the header to its next slot without syncing it; returns the slot's offset.
    fn store_header(&self, h: &mut Header) -> u64 {
        h.counter += 1;
        let bytes = h.encode();
        let off = h.slot_offset();
        self.region.write_header(off, &bytes);
        off
    }

    /// The flag value in the header.
    pub fn flag(&self) -> Flag {
        lock(&self.header).flag
    }

    /// Sets and persists the flag (the header is synced whatever the policy).
    pub fn set_flag(&self, flag: Flag) -> Result<()> {
        let mut h = lock(&self.header);
        h.flag = flag;
        h.own.tail_hint = self.own.published();
        self.write_header(&mut h)
    }

    /// The node generation of this run.
    pub fn generation(&self) -> u64 {
        lock(&self.header).generation
    }

    /// The cluster and node that own the region.
    pub fn identity(&self) -> (ClusterId, NodeId) {
        let h = lock(&self.header);
        (h.cluster, h.node)
    }

    // ---- mirror, sending side -------------------------------------------------------

    fn ack_handle(&self) -> MirrorAck {
        MirrorAck { shared: self.mirror_shared.clone(), epoch: self.mirror_shared.epoch.load(Ordering::Acquire) }
    }

    fn mirror_covers(&self, end: u64) -> bool {
        !self.mirror_shared.attached.load(Ordering::Acquire) || self.mirror_shared.acked.load(Ordering::Acquire) >= end
    }

    /// Tells the mirror that an append waits for `end`, unless it is covered already.
    fn flush_mirror(&self, end: u64) {
        if self.mirror_covers(end) {
            return;
        }
        if let Some(m) = lock(&self.mirror).clone() {
            m.flush();
        }
    }

    fn wait_mirror(&self, end: u64) {
        if self.mirror_covers(end) {
            return;
        }
        let shared = &self.mirror_shared;
        let mut g = lock(&shared.lock);
        while !self.mirror_covers(end) {
            g = shared.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Attaches a mirror: the partner is sent the ring's head and generation and every
    /// byte from the head on, then every new record. From now on an append is durable
    /// only once the mirror acknowledged it. Replaces any earlier mirror.
    pub fn attach_mirror(&self, mirror: Arc<dyn Mirror>) -> Result<()> {
        // A pad record of our own holds the frontier: once every record before it is
        // published (and shipped to the previous mirror, if any), nothing more is
        // published until we mark it ready.
        let claim = self.reserve(RECORD_HEADER as u64, Kind::Pad)?;
        self.own.wait_published(claim.start);
        let head_guard = lock(&self.head_lock);
        let shared = &self.mirror_shared;
        shared.epoch.fetch_add(1, Ordering::AcqRel);
        let head = self.persisted_head.load(Ordering::Acquire);
        shared.acked.store(0, Ordering::Release);
        shared.head.store(head, Ordering::Release);
        shared.attached.store(true, Ordering::Release);
        let ack = self.ack_handle();
        mirror.ship_meta(MirrorMeta { head, generation: self.generation, capacity: self.cap }, &ack);
        // Resync the live part of the ring, chunk by chunk.
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = head;
        while pos < claim.start {
            let off = pos % self.cap;
            let n = (claim.start - pos).min(self.cap - off).min(buf.len() as u64) as usize;
            self.region.read(self.own.base + off, &mut buf[..n]);
            mirror.ship(Shipment { pos, parts: &[&buf[..n]] }, &ack);
            pos += n as u64;
        }
        // From our pad on, the publisher ships to the new mirror. The pad goes where the
        // claim's record goes: when fewer than a header's bytes were left before the
        // ring end, the claim skips them (readers do too). Under `PerRecord` the
        // publisher syncs it: a lost pad would end the log before the records after it.
        *lock(&self.mirror) = Some(mirror);
        drop(head_guard);
        self.write_pad(&claim);
        let hdr = self.provisional(Kind::Pad, 0, 0, 0, claim.record, crc32fast::Hasher::new().finalize());
        self.region.write_claim(&self.own, &claim, claim.record - claim.start, &hdr);
        let end = claim.end;
        self.own.mark_ready(claim);
        self.publish_ready();
        self.own.wait_published(end);
        self.check_synced(&Ticket { pos: end, end })
    }

    /// Detaches the mirror (the partner is gone): appends are durable on local sync
    /// alone again, and appends waiting for the mirror return.
    pub fn detach_mirror(&self) {
        *lock(&self.mirror) = None;
        let shared = &self.mirror_shared;
        shared.epoch.fetch_add(1, Ordering::AcqRel);
        shared.attached.store(false, Ordering::Release);
        shared.wake();
    }

    // ---- mirror, receiving side -----------------------------------------------------
    /// Scans the partner's mirror ring as it stands now, with the scan [`Journal::open`]
    /// runs at start: what a takeover rebuilds the partner's state from. Meant for when
    /// the partner's records no longer arrive (its links are down); a record being
    /// received meanwhile ends the scan as a torn one would.
    pub fn scan_partner(&self) -> Result<recover::LogRecovery> {
        let meta = lock(&self.header).partner;
        Ok(recover::scan(&RegionSource(&self.region), self.partner_base, self.cap, meta)?)
    }

    /// Stores bytes shipped by the partner at logical position `pos` of the mirror ring
    /// and syncs them as this journal's policy says. Calls must come in the partner's
    /// log order.
    pub fn receive(&self, pos: u64, parts: &[&[u8]]) -> Result<()> {
        let end = self.region.with_receiver(self.partner_base, self.cap, |rx| {
            let mut p = pos;
            for part in parts {
                rx.write(p, part);
                p += part.len() as u64;
            }
            p
        });
        if self.durability != Durability::None {
            sync_ring(&self.region, self.partner_base, self.cap, pos, end)?;
        }
        Ok(())
    }

    /// Stores the partner's ring head and generation in the header.
    pub fn receive_meta(&self, meta: MirrorMeta) -> Result<()> {
        if meta.capacity != self.cap {
            return Err(Error::BadSize { expected: self.cap, actual: meta.capacity });
        }
        // A head no writer reaches would make our own header unreadable at the next open.
        if meta.head > format::MAX_POSITION {
            return Err(Error::BadHeader);
        }
        let mut h = lock(&self.header);
        h.partner.head = meta.head;
        h.partner.generation = meta.generation;
        self.write_header(&mut h)
    }
}

/// A live journal's region as the scan's byte source.
struct RegionSource<'a>(&'a Region);

impl recover::Source for RegionSource<'_> {
    fn read(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.0.read(offset, buf);
        Ok(())
    }
}

fn shard_of(op: u64) -> usize {
    (op.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % SHARDS
}

fn sync_ring(region: &Region, base: u64, cap: u64, mut from: u64, to: u64) -> Result<()> {
    while from < to {
        let off = from % cap;
        let n = (to - from).min(cap - off);
        region.sync(base + off, n)?;
        from += n;
    }
    Ok(())
}

/// Reads and checks the newer valid header slot of a region.
pub(crate) fn read_header(storage: &dyn Storage) -> Result<Header> {
    if storage.len() < MIN_REGION {
        return Err(Error::BadSize { expected: MIN_REGION, actual: storage.len() });
    }
    let mut a = [0u8; HEADER_LEN];
    let mut b = [0u8; HEADER_LEN];
    storage.read(0, &mut a);
    storage.read(SLOT_SIZE, &mut b);
    Header::pick(&a, &b)
}
