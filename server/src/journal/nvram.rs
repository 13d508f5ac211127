//! [`NvramJournal`]: the consistency points as records of the memory-mapped journal
//! (`nvram::Journal`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ::nvram::{Entry, Journal as Region};
use bytes::Bytes;

use super::{Durable, Error, Journal, OpId, ReplayIndex, ReplayKey, Saved, Ticket};

/// Bits of the per-run counter in an operation id; the bits above hold the low bits of
/// the journal's node generation, so a run never reuses the id of an operation an
/// earlier run left live in the journal.
const OP_COUNTER_BITS: u32 = 48;

/// At most this share (1/N) of the ring's capacity goes into carried answers
/// in a checkpoint (a checkpoint must fit in the eighth of the ring reserved
/// for it, with the model).
const CARRIED_SHARE: u64 = 32;

/// The journal over an NVRAM region: each point is one `nvram::Entry`.
///
/// | point | record |
/// |---|---|
/// | 1 | `Entry::PreAck { op, request: frame }` |
/// | 2 | `Entry::PreCommand { op, element }` |
/// | 3 | `Entry::PostCompletion { op, element, status, response, delta }` |
/// | 4 | `Entry::PostReplyAck { op }` |
/// | checkpoint | `Entry::Checkpoint { state }` |
/// | break notice | points 3 and 4 only, under an id of [`Journal::unsolicited`] |
///
/// Appends use `append_nowait` (the copy into the region; the record is published in
/// log order by whichever appender publishes, which under the `PerRecord` and `Pmem`
/// policies also syncs it) and return the record's ticket.
/// [`Journal::durable`] waits with `nvram::Journal::commit` on tokio's blocking pool
/// (`spawn_blocking`), not with `block_in_place`: commit may wait for a group-commit
/// leader's `msync` or for the partner's mirror acknowledgement, for as long as those
/// take, and `block_in_place` would hold an async worker meanwhile (two of them on this
/// machine, the whole runtime), and panics on a current-thread runtime (the fuzzer's,
/// `#[tokio::test]`'s). A ticket already durable never leaves the worker.
///
/// The element index is stored as a `u16`: an element past 65535 (a compound no client
/// sends) fails with [`Error::TooLarge`], which closes the connection.
///
/// The replay index (key to saved response) is kept in memory and filled at point 3;
/// after a restart it is rebuilt from the recovered point-1 and point-3 records (the
/// keys recomputed from the requests) and from the answers the last checkpoint
/// carried ([`NvramJournal::recover_replies`]). The saved responses stay in memory
/// until their operation is retired; those whose records may be gone from the log (a
/// released operation's, the ones a restart found) are written into every checkpoint
/// meanwhile ([`super::carry`]), at most [`CARRIED_SHARE`] of the ring's capacity.
pub struct NvramJournal {
    region: Arc<Region>,
    op_base: u64,
    next_op: AtomicU64,
    replies: Mutex<ReplayIndex>,
    /// The requests carried in checkpoints ([`Journal::carry_request`]), and
    /// their bytes in all (at most [`CARRIED_SHARE`] of the ring's capacity).
    requests: Mutex<(HashMap<OpId, Bytes>, usize)>,
    /// Whether the journal survives what the page cache does not (a power
    /// loss), so that WRITE data must be kept safe ([`Journal::write_data`]).
    write_data: bool,
}

impl std::fmt::Debug for NvramJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvramJournal").field("region", &self.region).finish_non_exhaustive()
    }
}

impl NvramJournal {
    /// The journal over an opened (or created) region.
    pub fn new(region: Arc<Region>) -> NvramJournal {
        let op_base = region.generation() << OP_COUNTER_BITS;
        NvramJournal {
            region,
            op_base,
            next_op: AtomicU64::new(1),
            replies: Mutex::new(ReplayIndex::default()),
            requests: Mutex::new((HashMap::new(), 0)),
            write_data: true,
        }
    }

    /// The same journal, keeping WRITE data safe (in the record or synced
    /// in the file) or not ([`Journal::write_data`]).
    pub fn keeping_write_data(mut self, keep: bool) -> NvramJournal {
        self.write_data = keep;
        self
    }

    /// The same journal, its operation ids above every one of `log`: a journal
    /// made for a taken-over set ([`crate::restart::takeover`]) keeps the partner's
    /// saved answers under the partner's operation ids, and must not retire them
    /// with an operation of its own (those of its records, and those its last
    /// checkpoint carried answers for, [`super::carry`]).
    pub fn ops_after(mut self, log: &::nvram::LogRecovery) -> NvramJournal {
        let carried = log
            .checkpoint
            .as_ref()
            .and_then(|ck| super::carry::split(&ck.payload).1)
            .and_then(|bytes| super::carry::decode(bytes).ok())
            .unwrap_or_default();
        let requests = log
            .checkpoint
            .as_ref()
            .and_then(|ck| super::carry::parts(&ck.payload).requests)
            .and_then(|bytes| super::carry::decode_requests(bytes).ok())
            .unwrap_or_default();
        let ops = log
            .records
            .iter()
            .map(|r| r.op)
            .chain(carried.iter().map(|(_, s, _)| s.op))
            .chain(requests.iter().map(|(op, _)| *op));
        let top = ops.map(|op| op.0 >> OP_COUNTER_BITS).max();
        if let Some(top) = top {
            self.op_base = self.op_base.max((top + 1) << OP_COUNTER_BITS);
        }
        self
    }

    /// The region, for what the trait does not cover (the flag, the mirror, `flush`).
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    fn next_op(&self) -> OpId {
        let n = self.next_op.fetch_add(1, Ordering::Relaxed) & ((1 << OP_COUNTER_BITS) - 1);
        OpId(self.op_base | n)
    }

    fn append(&self, entry: Entry<'_>) -> Result<Ticket, Error> {
        Ok(self.region.append_nowait(entry).map_err(from_nvram)?.into())
    }

    /// Fills the replay index from a recovered log: the answers its last
    /// checkpoint carried ([`super::carry`]) whose deadline has not passed,
    /// and the saved answer of every element whose point-3 record is there,
    /// under the key its point-1 request gives ([`ReplayKey::of_frame`]),
    /// kept for [`super::KEPT_AFTER_RESTART`]; in the order of their
    /// operations, so that a later request with the same key (a lock
    /// sequence number used again) shadows an earlier one's answer, and one
    /// that has no answer yet forgets it ([`Journal::forget`]). All of them
    /// are off the log (the caller retires the log's operations): carried in
    /// checkpoints until their deadline. Returns how many were found, and
    /// the operations of the carried ones (besides those of the log's
    /// records), for the caller to retire with them.
    /// Saves the answer of element `key` of `op`, an operation of a
    /// recovered log whose point-3 record is missing but whose work the
    /// restore found done ([`crate::restart::appends`]), as
    /// [`NvramJournal::recover_replies`] saves the log's answers: off the
    /// log, for [`super::KEPT_AFTER_RESTART`]. Call after it.
    pub fn recover_answer(&self, key: ReplayKey, op: OpId, status: u32, response: Bytes) {
        let deadline = super::wall_ms() + super::KEPT_AFTER_RESTART.as_millis() as u64;
        self.replies().insert_off_log(key, Saved { op, status, response, ticket: Ticket::DURABLE }, deadline);
    }

    pub fn recover_replies(&self, log: &::nvram::LogRecovery) -> (usize, Vec<OpId>) {
        use std::collections::BTreeMap;
        let now = super::wall_ms();
        let deadline = now + super::KEPT_AFTER_RESTART.as_millis() as u64;
        // By operation (ids grow with time, across runs too): the answers the
        // checkpoint carried, and the log's requests.
        let mut carried: BTreeMap<u64, Vec<(ReplayKey, Saved, u64)>> = BTreeMap::new();
        if let Some((_, Some(bytes))) = log.checkpoint.as_ref().map(|ck| super::carry::split(&ck.payload)) {
            match super::carry::decode(bytes) {
                Ok(answers) => {
                    for a in answers.into_iter().filter(|(_, _, d)| *d > now) {
                        carried.entry(a.1.op.0).or_default().push(a);
                    }
                }
                // The checkpoint's checksum held; a defect, reported.
                Err(e) => tracing::warn!("the answers the checkpoint carried do not decode: {e}"),
            }
        }
        let logged = Logged::of(log);
        let carried_ops: Vec<OpId> = carried.keys().map(|op| OpId(*op)).collect();
        let mut ops: Vec<u64> = carried.keys().chain(logged.frames.keys()).copied().collect();
        ops.sort_unstable();
        ops.dedup();
        let mut found = 0;
        let mut replies = self.replies();
        for op in ops {
            for (key, saved, until) in carried.remove(&op).unwrap_or_default() {
                replies.insert_off_log(key, saved, until);
                found += 1;
            }
            for (index, key) in logged.keys(op) {
                let Some((status, response)) = logged.answer(op, index) else {
                    // Under way, unanswered: an older answer under its key is not its.
                    replies.forget(&key);
                    continue;
                };
                let saved =
                    Saved { op: OpId(op), status, response: Bytes::copy_from_slice(response), ticket: Ticket::DURABLE };
                replies.insert_off_log(key, saved, deadline);
                found += 1;
            }
        }
        (found, carried_ops)
    }

    fn replies(&self) -> MutexGuard<'_, ReplayIndex> {
        self.replies.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The requests and answers of a recovered log, by operation: each point-1
/// frame, and each element's point-3 status and response body.
pub struct Logged<'a> {
    pub frames: std::collections::BTreeMap<u64, &'a [u8]>,
    answers: std::collections::HashMap<(u64, u16), (u32, &'a [u8])>,
}

impl<'a> Logged<'a> {
    pub fn of(log: &'a ::nvram::LogRecovery) -> Logged<'a> {
        let mut logged = Logged { frames: Default::default(), answers: Default::default() };
        for r in &log.records {
            match r.kind {
                ::nvram::Kind::PreAck => {
                    logged.frames.insert(r.op.0, &r.payload[..]);
                }
                ::nvram::Kind::PostCompletion => {
                    if let (Some((response, _)), Some(status)) = (r.completion(), r.status()) {
                        logged.answers.insert((r.op.0, r.element), (status, response));
                    }
                }
                _ => {}
            }
        }
        logged
    }

    /// Element `index` of `op`'s answer, if its point-3 record is in the log.
    pub fn answer(&self, op: u64, index: usize) -> Option<(u32, &'a [u8])> {
        self.answers.get(&(op, u16::try_from(index).ok()?)).copied()
    }

    /// The replay keys of `op`'s elements ([`ReplayKey::of_frame`]), a related
    /// element's file taken from the CREATE answers before it; none when the
    /// log has no request of `op`.
    pub fn keys(&self, op: u64) -> Vec<(usize, ReplayKey)> {
        let Some(frame) = self.frames.get(&op) else { return Vec::new() };
        ReplayKey::of_frame(frame, |i| self.answer(op, i).and_then(|(s, b)| super::created_file_id(s, b)))
    }
}

fn element(index: usize) -> Result<u16, Error> {
    u16::try_from(index).map_err(|_| Error::TooLarge { len: index as u64, max: u64::from(u16::MAX) })
}

/// The nvram crate's errors as the journal's: `Full` stays `Full` (back-pressure),
/// anything else that an append can meet is I/O.
fn from_nvram(e: ::nvram::Error) -> Error {
    match e {
        ::nvram::Error::Full { needed, free } => Error::Full { needed, free },
        ::nvram::Error::TooLarge { len, max } => Error::TooLarge { len, max },
        ::nvram::Error::Io(e) => Error::Io(e),
        other => Error::Io(std::io::Error::other(other)),
    }
}

impl Journal for NvramJournal {
    fn pre_ack(&self, _conn: u64, frame: &[u8]) -> Result<(OpId, Ticket), Error> {
        // The connection is not stored: a restore has no connection to give it to.
        let op = self.next_op();
        Ok((op, self.append(Entry::PreAck { op, request: frame })?))
    }

    fn pre_command(&self, op: OpId, index: usize) -> Result<Ticket, Error> {
        self.append(Entry::PreCommand { op, element: element(index)? })
    }

    fn decided(&self, op: OpId, index: usize, decision: &super::Decision) -> Result<Ticket, Error> {
        self.append(Entry::Decided { op, element: element(index)?, decision: &decision.encode() })
    }

    fn post_completion(
        &self,
        op: OpId,
        index: usize,
        key: Option<&ReplayKey>,
        status: u32,
        response: &[u8],
        delta: &[u8],
    ) -> Result<Ticket, Error> {
        let ticket = self.append(Entry::PostCompletion { op, element: element(index)?, status, response, delta })?;
        if let Some(key) = key {
            let mut replies = self.replies();
            replies.insert(*key, Saved { op, status, response: Bytes::copy_from_slice(response), ticket });
            // The answer of an operation released meanwhile (one that waited
            // long) is off the log from the start: its record may go.
            if self.region.is_released(op) {
                replies.off_log(op, super::wall_ms() + super::KEPT_UNANSWERED.as_millis() as u64);
            }
        }
        Ok(ticket)
    }

    fn post_reply_ack(&self, op: OpId) -> Result<Ticket, Error> {
        self.append(Entry::PostReplyAck { op })
    }

    /// A break notice's operation: a fresh id, nothing appended yet (its
    /// point-3 record, `PostCompletion` of element 0 with the notice as the
    /// response and no delta, and its point-4 record follow). No point-1
    /// record: a restore finds a completion whose operation has no request
    /// and ignores it, as it does a state change's
    /// ([`crate::restart::rebuild_log`], [`NvramJournal::recover_replies`]).
    fn unsolicited(&self, _conn: u64) -> OpId {
        self.next_op()
    }

    fn durable(&self, ticket: Ticket) -> Durable<'_> {
        let Some(t) = ticket.nvram() else {
            return Box::pin(std::future::ready(Ok(())));
        };
        if self.region.is_durable(&t) {
            return Box::pin(std::future::ready(Ok(())));
        }
        let region = self.region.clone();
        Box::pin(async move {
            let on_worker = region.clone();
            match tokio::task::spawn_blocking(move || on_worker.commit(&t)).await {
                Ok(r) => r.map_err(from_nvram),
                // The blocking pool is going (the runtime shuts down, at an
                // elective reboot): wait here rather than fail a request whose
                // records are on their way (it answered an exclusive CREATE
                // STATUS_INSUFFICIENT_RESOURCES in a crash run).
                Err(e) if e.is_cancelled() => region.commit(&t).map_err(from_nvram),
                Err(e) => Err(Error::Io(std::io::Error::other(e))),
            }
        })
    }

    fn is_durable(&self, ticket: Ticket) -> bool {
        ticket.nvram().is_none_or(|t| self.region.is_durable(&t))
    }

    fn must_wait(&self) -> bool {
        true
    }

    fn keeps_replies(&self) -> bool {
        true
    }

    fn replayed(&self, key: &ReplayKey) -> Option<Saved> {
        self.replies().get(key)
    }

    fn forget(&self, key: &ReplayKey) {
        self.replies().forget(key);
    }

    fn retire(&self, op: OpId) -> Result<(), Error> {
        self.replies().retire(op);
        self.region.retire(op).map_err(from_nvram)
    }

    fn release(&self, op: OpId) -> Result<(), Error> {
        // Its answer, if it has one, outlives its records: carried in
        // checkpoints until it is retired.
        self.replies().off_log(op, super::wall_ms() + super::KEPT_UNANSWERED.as_millis() as u64);
        self.region.release(op).map_err(from_nvram)
    }

    fn write_data(&self, len: usize) -> super::WriteData {
        match (self.write_data, len >= super::WRITE_IN_FILE_FROM) {
            (false, _) => super::WriteData::NotKept,
            (true, false) => super::WriteData::InRecord,
            (true, true) => super::WriteData::InFile,
        }
    }

    fn checkpoint(&self, state: &[u8]) -> Result<Ticket, Error> {
        let most = usize::try_from(self.region.capacity() / CARRIED_SHARE).unwrap_or(usize::MAX);
        let carried = self.replies().carried(super::wall_ms(), most);
        let requests: Vec<(OpId, Bytes)> = {
            let r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            r.0.iter().map(|(op, f)| (*op, f.clone())).collect()
        };
        let t = if carried.is_empty() && requests.is_empty() {
            self.region.checkpoint_nowait(state)
        } else {
            self.region.checkpoint_nowait(&super::carry::frame(state, &carried, &requests))
        };
        Ok(t.map_err(from_nvram)?.into())
    }

    fn state_change(&self, delta: &[u8]) -> Result<Ticket, Error> {
        // An operation of its own, finished as soon as it is written: no file data
        // to wait for, no answer to keep. Its record stays until a checkpoint that
        // folds it lets the head pass.
        let op = self.next_op();
        let ticket = self.append(Entry::PostCompletion { op, element: 0, status: 0, response: &[], delta })?;
        self.region.retire(op).map_err(from_nvram)?;
        Ok(ticket)
    }

    fn compact(&self) -> Result<(), Error> {
        self.region.compact().map_err(from_nvram)
    }

    fn carry_request(&self, op: OpId, frame: Bytes) -> bool {
        let most = usize::try_from(self.region.capacity() / CARRIED_SHARE).unwrap_or(usize::MAX);
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if r.0.contains_key(&op) || r.1 + frame.len() > most {
            return false;
        }
        r.1 += frame.len();
        r.0.insert(op, frame);
        true
    }

    fn end_carry(&self, op: OpId) {
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = r.0.remove(&op) {
            r.1 -= f.len();
        }
    }

    fn usage(&self) -> Option<super::Usage> {
        Some(super::Usage { used: self.region.tail() - self.region.head(), capacity: self.region.capacity() })
    }

    fn oldest_live(&self) -> Option<(OpId, u64)> {
        self.region.oldest_live()
    }
}

#[cfg(test)]
mod tests {
    use ::nvram::{ClusterId, Durability, Kind, MemStorage, NodeId, Options, Record};

    use super::*;
    use crate::model::ids::{CreateGuid, PersistentFileId};

    fn opts(durability: Durability) -> Options {
        Options::new(ClusterId(0xd0e7), NodeId(1), durability)
    }

    fn journal(len: usize, durability: Durability) -> (NvramJournal, MemStorage) {
        let storage = MemStorage::new(len);
        let region = Region::create(storage.clone(), opts(durability)).unwrap();
        (NvramJournal::new(Arc::new(region)), storage)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    const KEY: ReplayKey =
        ReplayKey::Request { file: PersistentFileId(0x0100_0000_0000_0007), command: 9, channel_sequence: 0, body: 42 };

    #[test]
    fn the_four_points_are_records_that_recovery_finds() {
        let (j, storage) = journal(1 << 20, Durability::GroupCommit);
        let (op, t1) = j.pre_ack(3, b"WRITE request").unwrap();
        assert_ne!(op, OpId(0));
        j.pre_command(op, 0).unwrap();
        let t3 = j.post_completion(op, 0, Some(&KEY), 0, b"WRITE response", b"size=9").unwrap();
        let t4 = j.post_reply_ack(op).unwrap();
        assert!(t1.nvram().unwrap().end <= t3.nvram().unwrap().pos);
        rt().block_on(j.durable(t4)).unwrap();
        assert!(j.is_durable(t1) && j.is_durable(t3) && j.is_durable(t4));
        drop(j);

        let (_, rec) =
            Region::open(MemStorage::from_image(storage.current_image()), opts(Durability::GroupCommit)).unwrap();
        let kinds: Vec<(Kind, OpId, u16)> =
            rec.own.records.iter().map(|r: &Record| (r.kind, r.op, r.element)).collect();
        assert_eq!(
            kinds,
            [
                (Kind::PreAck, op, 0),
                (Kind::PreCommand, op, 0),
                (Kind::PostCompletion, op, 0),
                (Kind::PostReplyAck, op, 0)
            ]
        );
        assert_eq!(&rec.own.records[0].payload[..], b"WRITE request");
        assert_eq!(rec.own.records[2].completion(), Some((&b"WRITE response"[..], &b"size=9"[..])));
    }

    #[test]
    fn a_saved_response_is_found_by_its_key_until_retired() {
        let (j, _) = journal(1 << 20, Durability::None);
        assert!(j.keeps_replies());
        let (op, _) = j.pre_ack(1, b"req").unwrap();
        j.pre_command(op, 0).unwrap();
        let create = ReplayKey::Create(CreateGuid([9; 16]));
        assert_eq!(j.replayed(&create), None);
        let t = j.post_completion(op, 0, Some(&create), 0, b"create response", b"").unwrap();
        // An element without a key is journaled, not indexed.
        j.post_completion(op, 1, None, 0, b"close response", b"").unwrap();
        let saved = j.replayed(&create).unwrap();
        assert_eq!((saved.op, &saved.response[..], saved.ticket), (op, &b"create response"[..], t));
        assert_eq!(j.replayed(&KEY), None);
        j.post_reply_ack(op).unwrap();
        j.retire(op).unwrap();
        assert_eq!(j.replayed(&create), None);
    }

    /// After a restart the saved answers found in the log outlive their
    /// records, which the restart retires: the next checkpoint carries them,
    /// and a second restart finds them there, with their deadline. A
    /// released operation's answer is carried the same way.
    #[test]
    fn saved_answers_outlive_their_records_through_checkpoints() {
        let (j, storage) = journal(1 << 20, Durability::None);
        let (op, _) = j.pre_ack(1, b"req").unwrap();
        j.post_completion(op, 0, Some(&KEY), 0, b"write answer", b"").unwrap();
        let (unanswered, _) = j.pre_ack(1, b"req 2").unwrap();
        let create = ReplayKey::Create(CreateGuid([3; 16]));
        j.post_completion(unanswered, 0, Some(&create), 0, b"create answer", b"").unwrap();
        // Its answer never left: released, and the head moves past it.
        j.release(unanswered).unwrap();
        j.retire(op).unwrap();
        j.checkpoint(b"model").unwrap();
        j.compact().unwrap();
        drop(j);
        // The first restart: the log holds neither operation's records now.
        let storage = MemStorage::from_image(storage.current_image());
        let (region, rec) = Region::open(storage.clone(), opts(Durability::None)).unwrap();
        assert!(rec.own.records.is_empty(), "{:?}", rec.own.records);
        // A journal for this log taken over numbers its operations above the
        // carried answers' too.
        let (fresh, _) = journal(1 << 20, Durability::None);
        let (mine, _) = fresh.ops_after(&rec.own).pre_ack(1, b"mine").unwrap();
        assert!(mine.0 >> OP_COUNTER_BITS > unanswered.0 >> OP_COUNTER_BITS, "{mine} {unanswered}");
        let j = NvramJournal::new(Arc::new(region));
        let (found, ops) = j.recover_replies(&rec.own);
        assert_eq!((found, ops), (1, vec![unanswered]));
        assert_eq!(j.replayed(&create).map(|s| s.response), Some(Bytes::from_static(b"create answer")));
        assert_eq!(j.replayed(&KEY), None, "retired after it was answered: not kept");
        // The model part of the checkpoint is what was given.
        let ck = rec.own.checkpoint.as_ref().unwrap();
        assert_eq!(super::super::carry::split(&ck.payload).0, b"model");
        // The restart checkpoints; a second crash; the answer is still there.
        j.checkpoint(b"model 2").unwrap();
        j.compact().unwrap();
        drop(j);
        let storage = MemStorage::from_image(storage.current_image());
        let (region, rec) = Region::open(storage.clone(), opts(Durability::None)).unwrap();
        let j = NvramJournal::new(Arc::new(region));
        let (found, _) = j.recover_replies(&rec.own);
        assert_eq!(found, 1);
        assert_eq!(j.replayed(&create).map(|s| s.op), Some(unanswered));
        // Once retired, no checkpoint carries it.
        j.retire(unanswered).unwrap();
        j.checkpoint(b"model 3").unwrap();
        drop(j);
        let (region, rec) =
            Region::open(MemStorage::from_image(storage.current_image()), opts(Durability::None)).unwrap();
        let j = NvramJournal::new(Arc::new(region));
        assert_eq!(j.recover_replies(&rec.own).0, 0);
        assert_eq!(super::super::carry::split(&rec.own.checkpoint.as_ref().unwrap().payload), (&b"model 3"[..], None));
    }

    /// A WRITE whose point-1 record keeps the digest of its data, not the
    /// data: its saved answer is found after a restart under the key of the
    /// client's resend.
    #[test]
    fn a_digested_write_is_answered_after_a_restart() {
        use bytes::BytesMut;
        use protocol::header::{flags, Command, Header};
        let write = |mid: u64, flags_: u32, volatile: u64| {
            let mut m = BytesMut::new();
            Header { command: Command::Write as u16, message_id: mid, flags: flags_, ..Default::default() }
                .encode(&mut m);
            let data = vec![0x5a; 70_000];
            protocol::msg::write::WriteRequest {
                offset: u64::MAX,
                file_id: protocol::msg::FileId { persistent: 0x0100_0000_0000_0007, volatile },
                channel: 0,
                remaining_bytes: 0,
                flags: 0,
                data: &data,
                write_channel_info: &[],
            }
            .encode(&mut m);
            m.to_vec()
        };
        let sent = write(5, 0, 1);
        let key = ReplayKey::of(&Header::parse(&sent).unwrap(), &sent, None).unwrap();
        let (j, storage) = journal(1 << 20, Durability::None);
        let record = super::super::digested_write(&sent, super::super::write_digest(&sent)).unwrap();
        let (op, _) = j.pre_ack(1, &record).unwrap();
        j.post_completion(op, 0, Some(&key), 0, b"17 bytes answer..", b"").unwrap();
        drop(j);
        let (region, rec) =
            Region::open(MemStorage::from_image(storage.current_image()), opts(Durability::None)).unwrap();
        let j = NvramJournal::new(Arc::new(region));
        assert_eq!(j.recover_replies(&rec.own).0, 1);
        let resent = write(1, flags::REPLAY_OPERATION, 9);
        let resent_key = ReplayKey::of(&Header::parse(&resent).unwrap(), &resent, None).unwrap();
        assert_eq!(j.replayed(&resent_key).map(|s| s.op), Some(op));
    }

    /// A request the same as an earlier one (a LOCK without a lock sequence,
    /// on the same range again), under way at the crash, shadows the answer
    /// the earlier one got, also when that answer was carried in a
    /// checkpoint; live, the new request forgets it.
    #[test]
    fn a_later_request_with_the_same_key_shadows_an_earlier_answer() {
        use bytes::BytesMut;
        use protocol::header::{Command, Header};
        use protocol::msg::lock::{LockElement, LockRequest};
        let lock = |mid: u64| {
            let mut m = BytesMut::new();
            Header { command: Command::Lock as u16, message_id: mid, ..Default::default() }.encode(&mut m);
            LockRequest {
                lock_sequence: 0,
                file_id: protocol::msg::FileId { persistent: 7, volatile: 7 },
                locks: vec![LockElement { offset: 0, length: 1, flags: 0x12 }],
            }
            .encode(&mut m);
            m.to_vec()
        };
        let key = ReplayKey::of(&Header::parse(&lock(1)).unwrap(), &lock(1), None).unwrap();
        assert!(matches!(key, ReplayKey::Request { .. }));
        for carried in [false, true] {
            let (j, storage) = journal(1 << 20, Durability::None);
            let (old, _) = j.pre_ack(1, &lock(1)).unwrap();
            j.post_completion(old, 0, Some(&key), 0xc000_0055, b"not granted", b"").unwrap();
            if carried {
                // Its records leave the log; its answer is carried.
                j.release(old).unwrap();
                j.checkpoint(b"model").unwrap();
                j.compact().unwrap();
            }
            let (new, _) = j.pre_ack(1, &lock(2)).unwrap();
            j.pre_command(new, 0).unwrap();
            j.forget(&key);
            assert_eq!(j.replayed(&key), None, "live");
            drop(j);
            let (region, rec) =
                Region::open(MemStorage::from_image(storage.current_image()), opts(Durability::None)).unwrap();
            assert_eq!(rec.own.checkpoint.is_some(), carried);
            let j = NvramJournal::new(Arc::new(region));
            j.recover_replies(&rec.own);
            assert_eq!(j.replayed(&key), None, "carried {carried}: the newer request had no answer");
        }
    }

    /// A break notice's operation has an id of its own and no point-1
    /// record; its points 3 and 4 are in the log, the restart saves no
    /// answer of it, and once retired it does not hold the head.
    #[test]
    fn a_break_notice_passes_points_3_and_4_under_an_op_of_its_own() {
        let (j, storage) = journal(1 << 20, Durability::None);
        let (req, _) = j.pre_ack(1, b"req").unwrap();
        let notice = j.unsolicited(1);
        assert!(notice != OpId(0) && notice != req, "{notice} {req}");
        j.post_completion(notice, 0, None, 0, b"break notice", b"").unwrap();
        j.post_reply_ack(notice).unwrap();
        let (region, rec) =
            Region::open(MemStorage::from_image(storage.current_image()), opts(Durability::None)).unwrap();
        let kinds: Vec<(Kind, OpId)> = rec.own.records.iter().map(|r| (r.kind, r.op)).collect();
        assert_eq!(kinds, [(Kind::PreAck, req), (Kind::PostCompletion, notice), (Kind::PostReplyAck, notice)]);
        assert_eq!(rec.own.records[1].completion(), Some((&b"break notice"[..], &b""[..])));
        assert_eq!(NvramJournal::new(Arc::new(region)).recover_replies(&rec.own), (0, vec![]));
        // Retired with the request, a checkpoint lets the head pass both.
        j.retire(req).unwrap();
        j.retire(notice).unwrap();
        j.checkpoint(b"model").unwrap();
        j.compact().unwrap();
        drop(j);
        let (_, rec) = Region::open(MemStorage::from_image(storage.current_image()), opts(Durability::None)).unwrap();
        assert!(rec.own.records.is_empty(), "{:?}", rec.own.records);
    }

    #[test]
    fn ops_differ_across_runs_of_one_region() {
        let (j, storage) = journal(1 << 20, Durability::None);
        let (a, _) = j.pre_ack(1, b"a").unwrap();
        let (b, _) = j.pre_ack(1, b"b").unwrap();
        assert_ne!(a, b);
        drop(j);
        let (region, _) =
            Region::open(MemStorage::from_image(storage.current_image()), opts(Durability::None)).unwrap();
        let j = NvramJournal::new(Arc::new(region));
        let (c, _) = j.pre_ack(1, b"c").unwrap();
        assert!(c != a && c != b, "{a} {b} {c}");
    }

    #[test]
    fn a_journal_for_a_taken_set_numbers_its_operations_after_the_partners() {
        // The partner's log, from a region a few runs on.
        let (partner, storage) = journal(1 << 20, Durability::None);
        drop(partner);
        let second_run = MemStorage::from_image(storage.current_image());
        let (region, _) = Region::open(second_run.clone(), opts(Durability::None)).unwrap();
        let partner = NvramJournal::new(Arc::new(region));
        let (theirs, _) = partner.pre_ack(1, b"theirs").unwrap();
        let (_, log) =
            Region::open(MemStorage::from_image(second_run.current_image()), opts(Durability::None)).unwrap();
        // A fresh region (generation 1) would number its first operation below theirs.
        let (fresh, _) = journal(1 << 20, Durability::None);
        let (plain, _) = fresh.pre_ack(1, b"mine").unwrap();
        assert!(plain.0 >> OP_COUNTER_BITS <= theirs.0 >> OP_COUNTER_BITS, "{plain} {theirs}");
        let (fresh, _) = journal(1 << 20, Durability::None);
        let taken = fresh.ops_after(&log.own);
        let (mine, _) = taken.pre_ack(1, b"mine").unwrap();
        assert!(mine.0 >> OP_COUNTER_BITS > theirs.0 >> OP_COUNTER_BITS, "{mine} {theirs}");
    }

    /// An operation released after a second without an answer (a CREATE
    /// waiting for a lease break, a CHANGE_NOTIFY) that answers later, with
    /// no acknowledgement (its client went): its late records hold the head
    /// no more than its first ones did. They held it until the operation was
    /// retired, a minute later, and a busy server filled its ring meanwhile
    /// (smbtorture's `smb2.lease` then `bench-path-contention-shared`).
    #[test]
    fn a_released_operation_s_later_records_do_not_hold_the_head() {
        let (j, _) = journal(1 << 20, Durability::None);
        let (waiting, _) = j.pre_ack(1, b"create").unwrap();
        j.pre_command(waiting, 0).unwrap();
        j.release(waiting).unwrap();
        assert_eq!(j.oldest_live(), None);
        // Its final answer comes later, with a key: off the log at once.
        let key = ReplayKey::Create(CreateGuid([7; 16]));
        j.post_completion(waiting, 0, Some(&key), 0, b"answer", b"").unwrap();
        assert_eq!(j.oldest_live(), None, "the late answer holds the head");
        assert_eq!(j.replies().carried(0, usize::MAX).len(), 1, "its answer is carried in checkpoints");
        // Other operations come and go; a checkpoint lets the head pass all.
        let (other, _) = j.pre_ack(1, b"echo").unwrap();
        assert_eq!(j.oldest_live().map(|(op, _)| op), Some(other));
        j.retire(other).unwrap();
        j.checkpoint(b"model").unwrap();
        j.compact().unwrap();
        let u = j.usage().unwrap();
        assert!(u.used < 256, "the head did not pass the released operation: {u:?}");
        // Retired, it is forgotten: a record it appends again is tracked.
        j.retire(waiting).unwrap();
        j.post_reply_ack(waiting).unwrap();
        assert_eq!(j.oldest_live().map(|(op, _)| op), Some(waiting));
    }

    #[test]
    fn a_full_ring_says_full_and_takes_records_again_after_retire_and_checkpoint() {
        // The smallest region nvram accepts: a few KiB of ring.
        let (j, _) = journal(::nvram::format::MIN_REGION as usize, Durability::None);
        let frame = vec![0x5a; 512];
        let mut ops = Vec::new();
        let full = loop {
            match j.pre_ack(1, &frame) {
                Ok((op, _)) => ops.push(op),
                Err(e) => break e,
            }
            assert!(ops.len() < 10_000, "never full");
        };
        assert!(matches!(full, Error::Full { .. }), "{full:?}");
        assert!(!ops.is_empty());
        // Still full until something is retired: nothing was overwritten.
        assert!(matches!(j.pre_ack(1, &frame), Err(Error::Full { .. })));
        for op in &ops {
            j.post_reply_ack(*op).ok();
            j.retire(*op).unwrap();
        }
        j.checkpoint(b"model").unwrap();
        j.compact().unwrap();
        j.pre_ack(1, &frame).unwrap();
        // A record that can never fit is not Full (retrying would not help).
        let huge = vec![0u8; ::nvram::format::MIN_REGION as usize];
        assert!(matches!(j.pre_ack(1, &huge), Err(Error::TooLarge { .. })));
    }

    #[test]
    fn waiting_for_durability_runs_off_the_async_workers() {
        let (j, _) = journal(1 << 20, Durability::GroupCommit);
        let (op, t) = j.pre_ack(1, b"req").unwrap();
        assert!(j.must_wait());
        // GroupCommit: appended, not yet synced.
        assert!(!j.is_durable(t));
        rt().block_on(async {
            j.durable(t).await.unwrap();
        });
        assert!(j.is_durable(t));
        assert!(j.is_durable(Ticket::DURABLE));
        let t2 = j.checkpoint(b"state").unwrap();
        rt().block_on(j.durable(t2)).unwrap();
        assert!(j.is_durable(t2));
        j.retire(op).unwrap();
    }

    #[test]
    fn an_element_past_u16_is_refused_not_truncated() {
        let (j, _) = journal(1 << 20, Durability::None);
        let (op, _) = j.pre_ack(1, b"req").unwrap();
        assert!(matches!(j.pre_command(op, 70_000), Err(Error::TooLarge { .. })));
        assert!(matches!(j.post_completion(op, 70_000, None, 0, b"", b""), Err(Error::TooLarge { .. })));
    }
}
