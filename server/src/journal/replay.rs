//! The replay key: what identifies a request across a resend, so that a replayed request
//! whose point-3 record exists gets its saved response instead of running again
//! (DESIGN.md, "Exactly once").
//!
//! The keys are listed on [`ReplayKey`].

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use protocol::header::{flags, Command, Header, HEADER_LEN};
use protocol::msg::create::CreateRequest;
use protocol::msg::create_context::RequestContext;
use protocol::msg::FileId;

use super::{OpId, Ticket};
use crate::model::ids::{CreateGuid, PersistentFileId};

/// What identifies a request across a resend.
///
/// | request | key |
/// |---|---|
/// | CREATE with a DH2Q context ([MS-SMB2] 2.2.13.2.11) | its CreateGuid ([`ReplayKey::Create`]) |
/// | LOCK with a LockSequenceIndex in 1..=64 ([MS-SMB2] 2.2.26, 3.3.5.14) | the open's persistent id and the LockSequence field ([`ReplayKey::Lock`]) |
/// | a WRITE ([MS-SMB2] 2.2.21) | persistent file id, command, ChannelSequence and a hash of its fixed part and of the [`write_digest`] of its data ([`ReplayKey::Request`]) |
/// | any other request that names an open ([MS-SMB2] 3.3.5.2.10) | persistent file id, command, ChannelSequence and a hash of the body ([`ReplayKey::Request`]) |
/// | requests that name no open (NEGOTIATE, SESSION_SETUP, LOGOFF, TREE_CONNECT, TREE_DISCONNECT, ECHO, CANCEL, a CREATE without DH2Q), and an IOCTL on no file | none: [MS-SMB2] has no replay detection for them, and a key without an open would be shared by every client |
///
/// The body hash leaves out everything of the SMB2 header (MessageId, SessionId, TreeId,
/// Flags with SMB2_FLAGS_REPLAY_OPERATION, credits, the signature change on a resend;
/// the command and ChannelSequence are in the key as fields), and the 16 FileId bytes of
/// the body (the volatile half changes when a durable handle is reconnected; the
/// persistent half is in the key). A WRITE's data enters its hash as a digest
/// of its own ([`write_digest`]), so that the key can be rebuilt from a point-1
/// record that keeps the digest instead of the data ([`digested_write`]: a
/// large WRITE, or any under the `process` policy). The hash is [`body_hash`],
/// a stable, non-cryptographic 64-bit hash: a key is scoped to one open, so a
/// client can only confuse its own replays with a crafted collision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplayKey {
    /// A CREATE with a DH2Q context: Open.CreateGuid ([MS-SMB2] 3.3.5.9.10).
    Create(CreateGuid),
    /// A LOCK on an open with a lock sequence in use ([MS-SMB2] 3.3.5.14).
    Lock {
        /// The open (FileId.Persistent of the request).
        file: PersistentFileId,
        /// The LockSequence field as sent: LockSequenceNumber in the low 4 bits,
        /// LockSequenceIndex (1..=64) in the other 28 ([MS-SMB2] 2.2.26).
        lock_sequence: u32,
    },
    /// Any other request on an open ([MS-SMB2] 3.3.5.2.10).
    Request {
        /// The open (FileId.Persistent of the request, or of the chain for a related
        /// compound element).
        file: PersistentFileId,
        /// The command code.
        command: u16,
        /// ChannelSequence from the header.
        channel_sequence: u16,
        /// [`body_hash`] of the body without its FileId.
        body: u64,
    },
}

impl ReplayKey {
    /// The key of one request element. `msg` is the element with its 64-byte header
    /// (as the `protocol` parsers take it) and `hdr` its parsed header; `chain_file` is
    /// the file a related compound element inherits ([MS-SMB2] 3.3.5.2.7.2), used when
    /// the element names the all-ones FileId.
    ///
    /// `None` for requests without replay detection (see [`ReplayKey`]) and for
    /// bodies too short to hold their FileId (the handler refuses those anyway).
    pub fn of(hdr: &Header, msg: &[u8], chain_file: Option<FileId>) -> Option<ReplayKey> {
        ReplayKey::of_digested(hdr, msg, chain_file, None)
    }

    /// [`ReplayKey::of`], with the [`write_digest`] of a WRITE's data when
    /// the caller has it already (point 1 computed it for a
    /// [`digested_write`] record): a large WRITE's data is hashed once.
    pub fn of_digested(hdr: &Header, msg: &[u8], chain_file: Option<FileId>, digest: Option<u64>) -> Option<ReplayKey> {
        let body = msg.get(HEADER_LEN..)?;
        let command = hdr.command()?;
        if command == Command::Create {
            return create_guid(msg).map(|g| ReplayKey::Create(CreateGuid(g)));
        }
        let at = file_id_offset(command, body)?;
        let (_, mut id) = FileId::parse(body.get(at..)?).ok()?;
        if id.is_any() {
            id = chain_file?;
            if id.is_any() {
                return None;
            }
        }
        let file = PersistentFileId(id.persistent);
        if command == Command::Lock {
            // LockSequence follows StructureSize and LockCount ([MS-SMB2] 2.2.26).
            let lock_sequence = u32::from_le_bytes(body.get(4..8)?.try_into().ok()?);
            if (1..=64).contains(&(lock_sequence >> 4)) {
                return Some(ReplayKey::Lock { file, lock_sequence });
            }
        }
        let body = if command == Command::Write {
            write_hash(body, digest)?
        } else {
            body_hash(body_hash(0, &body[..at]), &body[at + FileId::LEN..])
        };
        Some(ReplayKey::Request { file, command: command as u16, channel_sequence: hdr.channel_sequence(), body })
    }

    /// Whether an element's answer is saved for a replay: only those of
    /// requests that would not give the same answer when carried out again
    /// (a READ, a query, an ECHO would, and saving them would keep every
    /// READ's data in memory until it is retired).
    pub fn saves_answer(hdr: &Header) -> bool {
        matches!(
            hdr.command(),
            Some(Command::Create | Command::Close | Command::Write | Command::Lock | Command::SetInfo | Command::Ioctl)
        )
    }

    /// The keys of the elements of a request frame (a compound chain, as
    /// point 1 recorded it) whose answers are saved, by element index, with
    /// the FileId a related element inherits taken from the answers in
    /// `created` (element index to the FileId its CREATE answered).
    pub fn of_frame(frame: &[u8], created: impl Fn(usize) -> Option<FileId>) -> Vec<(usize, ReplayKey)> {
        let mut out = Vec::new();
        let mut chain_file = None;
        for (index, hdr, elem) in frame_elements(frame) {
            if !hdr.is_related() {
                chain_file = None;
            }
            if Self::saves_answer(&hdr) {
                if let Some(k) = ReplayKey::of(&hdr, elem, chain_file).filter(ReplayKey::answered_from_saved) {
                    out.push((index, k));
                }
            }
            if let Some(f) = created(index) {
                chain_file = Some(f);
            }
        }
        out
    }

    /// Whether a request with this key is answered from a saved answer. A
    /// LOCK with a lock sequence is not: its replay is its handler's to
    /// detect, by the open's LockSequenceArray in the state model ([MS-SMB2]
    /// 3.3.5.14), which holds the latest number of each index only; an
    /// answer saved under an (open, index, number) would outlive the client's
    /// next use of that number (numbers wrap after 16) and answer a resend of
    /// it that was never carried out.
    pub fn answered_from_saved(&self) -> bool {
        !matches!(self, ReplayKey::Lock { .. })
    }

    /// Whether the request says it is a replay (SMB2_FLAGS_REPLAY_OPERATION, [MS-SMB2]
    /// 2.2.1.2). A resend after a reconnect may also come without it.
    pub fn flagged(hdr: &Header) -> bool {
        hdr.flags & flags::REPLAY_OPERATION != 0
    }
}

/// The elements of a request frame (a compound chain, as point 1 recorded
/// it): index, header and bytes of each, up to the first that does not
/// parse. Each step moves on by at least a header, within the frame.
pub fn frame_elements(frame: &[u8]) -> impl Iterator<Item = (usize, Header, &[u8])> {
    let (mut at, mut index, mut done) = (0usize, 0usize, false);
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let rest = frame.get(at..)?;
        let hdr = Header::parse(rest).ok()?;
        let len = if hdr.next_command == 0 { rest.len() } else { hdr.next_command as usize };
        let elem = rest.get(..len)?;
        done = hdr.next_command == 0 || len < HEADER_LEN;
        let item = (index, hdr, elem);
        at += len;
        index += 1;
        Some(item)
    })
}

/// The WRITE request's fixed part ([MS-SMB2] 2.2.21): the bytes of its body
/// before its Buffer.
pub const WRITE_FIXED: usize = 48;

/// The StructureSize a [`digested_write`] record holds in place of the
/// WRITE's 49: 49 with the high bit set, so that nothing takes the record for
/// the request it stands for ([`protocol::msg::write::WriteRequest::parse`]
/// refuses it, and the redo after a power loss with it).
const DIGESTED: u16 = 0x8000 | 49;

/// The digest of a WRITE's data: [`body_hash`] of every byte of `msg` (a
/// WRITE element with its header) after the WRITE's fixed part. It is what
/// the replay key of a WRITE holds of its data ([`write_hash`]), and what a
/// [`digested_write`] record keeps of it.
pub fn write_digest(msg: &[u8]) -> u64 {
    body_hash(0, msg.get(HEADER_LEN + WRITE_FIXED..).unwrap_or_default())
}

/// What point 1 records of a lone WRITE whose data the journal does not keep
/// in its record ([`super::WriteData::InFile`], [`super::WriteData::NotKept`]):
///
/// ```text
/// // Format: { header: [u8; 64] | fixed part: [u8; 48], StructureSize 0x8031 | digest: u64 }
/// ```
///
/// `digest` is the [`write_digest`] of `msg`. The replay key rebuilt from
/// such a record after a restart or a takeover ([`ReplayKey::of`]) is the
/// key of the WRITE itself: a resend of it is answered from its saved answer.
/// `None` when `msg` is not a WRITE with its whole fixed part.
pub fn digested_write(msg: &[u8], digest: u64) -> Option<Vec<u8>> {
    let fixed = msg.get(..HEADER_LEN + WRITE_FIXED)?;
    let mut out = Vec::with_capacity(fixed.len() + 8);
    out.extend_from_slice(fixed);
    out[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&DIGESTED.to_le_bytes());
    out.extend_from_slice(&digest.to_le_bytes());
    Some(out)
}

/// The StructureSize a [`spliced_write`] record holds in place of the
/// WRITE's 49 (which [`protocol::msg::write::WriteRequest::parse`] refuses,
/// as it does [`DIGESTED`]).
const SPLICED: u16 = 0xC000 | 49;

/// What point 1 records of a WRITE whose data is moved from the socket
/// into its file without passing through memory
/// ([`crate::transport::WriteHead`]): its header and fixed part, and no
/// digest of its data, which nobody reads.
///
/// ```text
/// // Format: { header: [u8; 64] | fixed part: [u8; 48], StructureSize 0xC031 }
/// ```
///
/// Such a WRITE has no replay key ([`ReplayKey::of`] is `None` for the
/// record as for the request): its answer is not kept for a replay, and a
/// resend of it is carried out again, which writes the same bytes at the
/// same offset (the WRITE is never an append: an append records where its
/// data went, [`super::Decision`], and keeps the digest to check it).
/// `None` when `msg` is not a WRITE with its whole fixed part.
pub fn spliced_write(msg: &[u8]) -> Option<Vec<u8>> {
    let mut out = msg.get(..HEADER_LEN + WRITE_FIXED)?.to_vec();
    out[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&SPLICED.to_le_bytes());
    Some(out)
}

/// The [`write_digest`] of a WRITE's data as point 1 recorded the WRITE:
/// kept in a [`digested_write`] record, else computed from the data the
/// record holds.
pub fn recorded_digest(msg: &[u8]) -> u64 {
    let at = HEADER_LEN + WRITE_FIXED;
    match (msg.get(HEADER_LEN..HEADER_LEN + 2), msg.get(at..)) {
        (Some(size), Some(digest)) if size == DIGESTED.to_le_bytes() && digest.len() == 8 => {
            u64::from_le_bytes(digest.try_into().unwrap_or_default())
        }
        _ => write_digest(msg),
    }
}

/// The body hash of a WRITE's replay key: its fixed part without the FileId,
/// then the digest of its data: from the request (`digest` when known, else
/// computed), or from a [`digested_write`] record. `None` when the body is
/// shorter than the fixed part, and for a [`spliced_write`] record.
fn write_hash(body: &[u8], digest: Option<u64>) -> Option<u64> {
    let fixed = body.get(..WRITE_FIXED)?;
    if fixed[..2] == SPLICED.to_le_bytes() {
        return None;
    }
    let mut head: [u8; 16] = fixed[..16].try_into().ok()?;
    let digest = if head[..2] == DIGESTED.to_le_bytes() && body.len() == WRITE_FIXED + 8 {
        head[..2].copy_from_slice(&49u16.to_le_bytes());
        u64::from_le_bytes(body[WRITE_FIXED..].try_into().ok()?)
    } else {
        digest.unwrap_or_else(|| body_hash(0, &body[WRITE_FIXED..]))
    };
    let h = body_hash(body_hash(0, &head), &fixed[16 + FileId::LEN..]);
    Some(body_hash(h, &digest.to_le_bytes()))
}

/// The FileId a successful CREATE answered with ([MS-SMB2] 2.2.14), from
/// its status and body as point 3 recorded them.
pub fn created_file_id(status: u32, body: &[u8]) -> Option<FileId> {
    if status != 0 {
        return None;
    }
    FileId::parse(body.get(64..80)?).ok().map(|(_, id)| id)
}

/// The CreateGuid of a CREATE's DH2Q context, if it has one and parses.
fn create_guid(msg: &[u8]) -> Option<[u8; 16]> {
    let req = CreateRequest::parse(msg).ok()?;
    match req.context(|c| matches!(c, RequestContext::DurableHandleRequestV2(_)))? {
        RequestContext::DurableHandleRequestV2(d) => Some(d.create_guid),
        _ => None,
    }
}

/// Where the FileId sits in a request body, for the commands that name an open
/// ([MS-SMB2] 2.2.15 CLOSE, 2.2.17 FLUSH, 2.2.19 READ, 2.2.21 WRITE, 2.2.24.1 OPLOCK_BREAK
/// acknowledgment, 2.2.26 LOCK, 2.2.31 IOCTL, 2.2.33 QUERY_DIRECTORY, 2.2.35
/// CHANGE_NOTIFY, 2.2.37 QUERY_INFO, 2.2.39 SET_INFO). A lease break acknowledgment
/// (2.2.24.2, StructureSize 36) names a lease, not an open.
fn file_id_offset(command: Command, body: &[u8]) -> Option<usize> {
    match command {
        Command::Close
        | Command::Flush
        | Command::Lock
        | Command::Ioctl
        | Command::QueryDirectory
        | Command::ChangeNotify => Some(8),
        Command::OplockBreak => (body.get(..2)? == 24u16.to_le_bytes()).then_some(8),
        Command::Read | Command::Write | Command::SetInfo => Some(16),
        Command::QueryInfo => Some(24),
        _ => None,
    }
}

/// A stable 64-bit hash of `data`, chained from `seed` (the hash of what came before, or
/// 0). Not cryptographic. The function is part of what a node and its partner must agree
/// on (keys are recomputed from point-1 records after a restore), so it never changes
/// without a new format version.
///
/// Algorithm: 16-byte blocks (the last padded with zeros), each folded into the state
/// with one 64×64→128-bit multiply (the high and low halves xored), then the length.
pub fn body_hash(seed: u64, data: &[u8]) -> u64 {
    const P: [u64; 4] = [0xa076_1d64_78bd_642f, 0xe703_7ed1_a0b4_28db, 0x8ebc_6af0_9c88_c6e3, 0x5899_65cc_7537_4cc3];
    fn fold(a: u64, b: u64) -> u64 {
        let r = u128::from(a) * u128::from(b);
        (r as u64) ^ ((r >> 64) as u64)
    }
    fn le64(b: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    }
    let mut h = seed ^ P[0];
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        h = fold(le64(&b[..8]) ^ P[1] ^ h, le64(&b[8..]) ^ P[2] ^ h.rotate_left(32));
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        let (a, b) = rest.split_at(rest.len().min(8));
        h = fold(le64(a) ^ P[1] ^ h, le64(b) ^ P[2] ^ h.rotate_left(32));
    }
    fold(h ^ P[3], (data.len() as u64) ^ P[0])
}

/// The saved responses of point-3 records, by replay key: what a journal's
/// [`super::Journal::replayed`] looks in. Kept in memory; a journal rebuilds it from its
/// records when it is opened after a restart (issue 13).
///
/// A key maps to the latest element appended with it. [`ReplayIndex::retire`] forgets an
/// operation's keys, unless a later operation has taken the key over since.
///
/// The answers held are capped at [`ReplayIndex::DEFAULT_CAP`] bytes: an
/// operation stays here until its answer is acknowledged and its data
/// flushed (or, unacknowledged, for up to a minute), so a client that never
/// acknowledges could otherwise pin its answers' memory. Past the cap the
/// oldest operations' answers are forgotten first (a replay of one of them
/// is then carried out again), and the server says so in its log.
///
/// An operation's answers are either backed by its point-3 records in the log,
/// or no longer ([`ReplayIndex::off_log`]: records released or retired while
/// the answers are still kept for a replay, after a restart or while the
/// client is away). Those carry a deadline (wall-clock milliseconds since the
/// Unix epoch) and go into every checkpoint until it passes
/// ([`ReplayIndex::carried`]), so that a second crash does not lose them.
#[derive(Debug)]
pub struct ReplayIndex {
    by_key: HashMap<ReplayKey, Saved>,
    /// Each operation's place in `order`, keys, and deadline when off the log.
    by_op: HashMap<OpId, OpAnswers>,
    /// The operations held, oldest first.
    order: BTreeMap<u64, OpId>,
    next: u64,
    /// Bytes held: every saved answer's body and [`ENTRY_BYTES`] per key.
    bytes: usize,
    cap: usize,
    /// Operations forgotten to keep under `cap`, since the start.
    evicted: u64,
}

/// One operation's entry in a [`ReplayIndex`].
#[derive(Debug)]
struct OpAnswers {
    place: u64,
    keys: Vec<ReplayKey>,
    /// `Some(deadline)`: its records may be gone from the log; its answers
    /// are carried in checkpoints until the deadline.
    off_log: Option<u64>,
}

/// What a key costs beyond its answer's body (the key, the entry, the
/// lists), counted against the cap.
const ENTRY_BYTES: usize = 128;

impl Default for ReplayIndex {
    fn default() -> ReplayIndex {
        ReplayIndex::with_cap(ReplayIndex::DEFAULT_CAP)
    }
}

/// A saved response: what a replayed request is answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    /// The operation that ran it.
    pub op: OpId,
    /// The element's response status.
    pub status: u32,
    /// The element's response body, as passed to point 3.
    pub response: Bytes,
    /// The point-3 record's ticket: answer from it only once it is durable.
    pub ticket: Ticket,
}

impl ReplayIndex {
    /// How many bytes of saved answers are held at most (64 MiB).
    pub const DEFAULT_CAP: usize = 64 << 20;

    /// An empty index that holds at most `cap` bytes.
    pub fn with_cap(cap: usize) -> ReplayIndex {
        ReplayIndex {
            by_key: HashMap::new(),
            by_op: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            bytes: 0,
            cap,
            evicted: 0,
        }
    }

    /// Remembers the response of `op` under `key`, backed by its point-3
    /// record in the log (an operation off the log is back on it); forgets
    /// the oldest operations' responses while more than the cap is held.
    pub fn insert(&mut self, key: ReplayKey, saved: Saved) {
        self.insert_until(key, saved, None);
    }

    /// [`ReplayIndex::insert`] for an answer whose record is not (or will not
    /// stay) in the log: kept until `deadline` ([`ReplayIndex::off_log`]).
    pub fn insert_off_log(&mut self, key: ReplayKey, saved: Saved, deadline: u64) {
        self.insert_until(key, saved, Some(deadline));
    }

    fn insert_until(&mut self, key: ReplayKey, saved: Saved, off_log: Option<u64>) {
        let op = saved.op;
        let (order, next) = (&mut self.order, &mut self.next);
        let entry = self.by_op.entry(op).or_insert_with(|| {
            *next += 1;
            order.insert(*next, op);
            OpAnswers { place: *next, keys: Vec::new(), off_log }
        });
        entry.keys.push(key);
        entry.off_log = off_log;
        self.bytes += saved.response.len() + ENTRY_BYTES;
        if let Some(old) = self.by_key.insert(key, saved) {
            self.bytes -= old.response.len() + ENTRY_BYTES;
        }
        while self.bytes > self.cap {
            let Some((_, oldest)) = self.order.first_key_value().map(|(s, o)| (*s, *o)) else { break };
            if oldest == op && self.order.len() == 1 {
                // One operation alone over the cap: kept (its own answers
                // are bounded by the frame size).
                break;
            }
            self.retire(oldest);
            self.evicted += 1;
            if self.evicted.is_power_of_two() {
                tracing::warn!(
                    cap = self.cap,
                    evicted = self.evicted,
                    "saved answers over their memory cap: the oldest forgotten (their replays would run again)"
                );
            }
        }
    }

    /// The saved response for `key`.
    pub fn get(&self, key: &ReplayKey) -> Option<Saved> {
        self.by_key.get(key).cloned()
    }

    /// The records of `op` may leave the log (released, or retired at a
    /// restart) while its answers are kept: they are carried in checkpoints
    /// until `deadline` ([`ReplayIndex::carried`]).
    pub fn off_log(&mut self, op: OpId, deadline: u64) {
        if let Some(e) = self.by_op.get_mut(&op) {
            e.off_log = Some(e.off_log.map_or(deadline, |d| d.min(deadline)));
        }
    }

    /// The answers to carry in a checkpoint taken at `now`: those of the
    /// operations off the log whose deadline is after `now`, newest
    /// operations first, as many as fit in `max_bytes` (answer bodies and
    /// [`ENTRY_BYTES`] per key; past it the oldest are left out, with a
    /// warning: their replays would run again after a crash).
    pub fn carried(&self, now: u64, max_bytes: usize) -> Vec<(ReplayKey, Saved, u64)> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut bytes = 0usize;
        for op in self.order.values().rev() {
            let Some(e) = self.by_op.get(op) else { continue };
            let Some(deadline) = e.off_log.filter(|d| *d > now) else { continue };
            for key in &e.keys {
                let Some(saved) = self.by_key.get(key).filter(|s| s.op == *op) else { continue };
                if !seen.insert(*key) {
                    continue;
                }
                bytes += saved.response.len() + ENTRY_BYTES;
                if bytes > max_bytes {
                    tracing::warn!(
                        max_bytes,
                        carried = out.len(),
                        "saved answers off the log exceed what a checkpoint carries: the oldest left out \
                         (their replays would run again after a crash)"
                    );
                    return out;
                }
                out.push((*key, saved.clone(), deadline));
            }
        }
        out
    }

    /// Forgets the response saved under `key` (a newer request with the
    /// same key is under way: the saved one is not its answer).
    pub fn forget(&mut self, key: &ReplayKey) {
        if let Some(old) = self.by_key.remove(key) {
            self.bytes -= old.response.len() + ENTRY_BYTES;
        }
    }

    /// Forgets the responses of `op`.
    pub fn retire(&mut self, op: OpId) {
        let Some(OpAnswers { place, keys, .. }) = self.by_op.remove(&op) else {
            return;
        };
        self.order.remove(&place);
        for key in keys {
            if self.by_key.get(&key).is_some_and(|s| s.op == op) {
                if let Some(old) = self.by_key.remove(&key) {
                    self.bytes -= old.response.len() + ENTRY_BYTES;
                }
            }
        }
    }

    /// Bytes held (answers and per-key overhead), against the cap.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use protocol::msg::create::CreateRequest;
    use protocol::msg::create_context::DurableHandleRequestV2;
    use protocol::msg::lock::{LockElement, LockRequest};

    use super::*;

    fn msg(command: Command, flags_: u32, channel_sequence: u16, message_id: u64, body: &[u8]) -> (Header, Vec<u8>) {
        let hdr = Header {
            command: command as u16,
            status: u32::from(channel_sequence),
            flags: flags_,
            message_id,
            session_id: message_id * 7,
            tree_id: 3,
            credits: 1,
            ..Default::default()
        };
        let mut m = BytesMut::new();
        hdr.encode(&mut m);
        m.extend_from_slice(body);
        (hdr, m.to_vec())
    }

    fn key(command: Command, flags_: u32, cs: u16, mid: u64, body: &[u8]) -> Option<ReplayKey> {
        let (h, m) = msg(command, flags_, cs, mid, body);
        ReplayKey::of(&h, &m, None)
    }

    fn write_body(file: FileId, offset: u64, data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&49u16.to_le_bytes());
        b.extend_from_slice(&((HEADER_LEN + 48) as u16).to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
        let mut id = BytesMut::new();
        file.encode(&mut id);
        b.extend_from_slice(&id);
        b.extend_from_slice(&[0; 16]); // channel, remaining bytes, write channel info
        b.extend_from_slice(data);
        b
    }

    const F: FileId = FileId { persistent: 0x0102_0000_0000_0001, volatile: 9 };

    #[test]
    fn a_resend_has_the_same_key_whatever_the_header_says() {
        let body = write_body(F, 4096, b"stamped block");
        let first = key(Command::Write, 0, 5, 10, &body).unwrap();
        // New connection: other message id, session, flags (REPLAY_OPERATION), signature.
        let resent = key(Command::Write, flags::REPLAY_OPERATION | flags::SIGNED, 5, 99, &body).unwrap();
        assert_eq!(first, resent);
        // After a durable reconnect the volatile half differs: same key.
        let reopened = write_body(FileId { volatile: 77, ..F }, 4096, b"stamped block");
        assert_eq!(key(Command::Write, flags::REPLAY_OPERATION, 5, 100, &reopened), Some(first));
        match first {
            ReplayKey::Request { file, command, channel_sequence, .. } => {
                assert_eq!(file, PersistentFileId(F.persistent));
                assert_eq!(command, Command::Write as u16);
                assert_eq!(channel_sequence, 5);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A point-1 record that keeps a WRITE's fixed part and the digest of its
    /// data (not the data) gives the WRITE's own key, whatever the data's
    /// size; the record is no WRITE request to anything that parses one.
    #[test]
    fn a_spliced_write_record_has_no_key() {
        let data = vec![3u8; 65536];
        let (h, m) = msg(Command::Write, 0, 3, 10, &write_body(F, 1 << 20, &data));
        let record = spliced_write(&m[..HEADER_LEN + WRITE_FIXED]).unwrap();
        assert_eq!(record.len(), HEADER_LEN + WRITE_FIXED);
        assert_eq!(record, spliced_write(&m).unwrap(), "the fixed part alone, whatever follows");
        // No key from the record, as a restart or the partner reads it (the
        // pipeline gives the running WRITE none either, `Chain::spliced`).
        assert_eq!(ReplayKey::of(&Header::parse(&record).unwrap(), &record, None), None);
        assert!(ReplayKey::of(&h, &m, None).is_some(), "the WRITE itself, read whole, has one");
        // Neither redone nor taken for a request.
        assert!(protocol::msg::write::WriteRequest::parse(&record).is_err());
        assert!(protocol::msg::write::WriteRequest::parse_head(&record).is_err());
        let (head, len) = protocol::msg::write::WriteRequest::parse_head(&m[..HEADER_LEN + WRITE_FIXED]).unwrap();
        assert_eq!((head.offset, head.file_id, head.data.len(), len), (1 << 20, F, 0, 65536));
        assert_eq!(spliced_write(&m[..HEADER_LEN + 10]), None);
    }

    #[test]
    fn a_digested_write_record_gives_the_key_of_its_write() {
        for len in [9, 4096, 65536, 1 << 20] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let (h, m) = msg(Command::Write, 0, 3, 10, &write_body(F, u64::MAX, &data));
            let key = ReplayKey::of(&h, &m, None).unwrap();
            let digest = write_digest(&m);
            assert_eq!(ReplayKey::of_digested(&h, &m, None, Some(digest)), Some(key));
            let record = digested_write(&m, digest).unwrap();
            assert_eq!(record.len(), HEADER_LEN + WRITE_FIXED + 8);
            let rh = Header::parse(&record).unwrap();
            assert_eq!(ReplayKey::of(&rh, &record, None), Some(key), "{len}");
            assert!(protocol::msg::write::WriteRequest::parse(&record).is_err());
            // The digest of the data, from the record as from the WRITE.
            assert_eq!((recorded_digest(&record), recorded_digest(&m)), (digest, digest));
            assert_eq!(digest, body_hash(0, &data));
            // The resend after a reconnect: another header, the volatile id another.
            let reopened = write_body(FileId { volatile: 5, ..F }, u64::MAX, &data);
            let (h2, m2) = msg(Command::Write, flags::REPLAY_OPERATION, 3, 99, &reopened);
            assert_eq!(ReplayKey::of(&h2, &m2, None), Some(key));
            // Another append of the same length is another request.
            let mut other = data.clone();
            other[len / 2] ^= 1;
            let (h3, m3) = msg(Command::Write, 0, 3, 11, &write_body(F, u64::MAX, &other));
            assert_ne!(ReplayKey::of(&h3, &m3, None), Some(key));
            let other = digested_write(&m3, write_digest(&m3)).unwrap();
            assert_ne!(ReplayKey::of(&Header::parse(&other).unwrap(), &other, None), Some(key));
        }
        // Too short for the fixed part: no record, no key.
        let (h, m) = msg(Command::Write, 0, 0, 1, &[49, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(digested_write(&m, 0), None);
        assert_eq!(ReplayKey::of(&h, &m, None), None);
    }

    #[test]
    fn another_request_has_another_key() {
        let base = key(Command::Write, 0, 5, 10, &write_body(F, 4096, b"stamped block")).unwrap();
        let others = [
            key(Command::Write, 0, 5, 10, &write_body(F, 8192, b"stamped block")),
            key(Command::Write, 0, 5, 10, &write_body(F, 4096, b"stamped blocK")),
            key(Command::Write, 0, 6, 10, &write_body(F, 4096, b"stamped block")),
            key(Command::Write, 0, 5, 10, &write_body(FileId { persistent: 2, ..F }, 4096, b"stamped block")),
            key(Command::Read, 0, 5, 10, &write_body(F, 4096, b"stamped block")),
        ];
        for o in others {
            assert_ne!(o.unwrap(), base);
        }
    }

    #[test]
    fn create_with_dh2q_is_keyed_by_its_create_guid() {
        let guid = [0x5a; 16];
        let create = |create_contexts| {
            let mut b = BytesMut::new();
            CreateRequest {
                security_flags: 0,
                requested_oplock_level: 0,
                impersonation_level: 2,
                smb_create_flags: 0,
                desired_access: 0x0012_0089,
                file_attributes: 0,
                share_access: 7,
                create_disposition: 1,
                create_options: 0,
                name: "a.txt".into(),
                create_contexts,
            }
            .encode(&mut b);
            b
        };
        let b = create(vec![RequestContext::DurableHandleRequestV2(DurableHandleRequestV2 {
            timeout: 0,
            flags: 0,
            create_guid: guid,
        })]);
        assert_eq!(key(Command::Create, 0, 0, 4, &b), Some(ReplayKey::Create(CreateGuid(guid))));
        assert_eq!(key(Command::Create, flags::REPLAY_OPERATION, 1, 8, &b), Some(ReplayKey::Create(CreateGuid(guid))));

        // Without DH2Q a CREATE has no replay detection.
        let plain = create(vec![]);
        assert_eq!(key(Command::Create, 0, 0, 4, &plain), None);
        // Nor has a garbled one.
        assert_eq!(key(Command::Create, 0, 0, 4, &b[..20]), None);
    }

    #[test]
    fn lock_is_keyed_by_the_lock_sequence_when_one_is_in_use() {
        let lock = |lock_sequence: u32, offset: u64| {
            let mut b = BytesMut::new();
            LockRequest { lock_sequence, file_id: F, locks: vec![LockElement { offset, length: 1, flags: 2 }] }
                .encode(&mut b);
            b
        };
        let seq = (3 << 4) | 1;
        let k = key(Command::Lock, 0, 0, 4, &lock(seq, 0)).unwrap();
        assert_eq!(k, ReplayKey::Lock { file: PersistentFileId(F.persistent), lock_sequence: seq });
        assert_eq!(key(Command::Lock, flags::REPLAY_OPERATION, 0, 9, &lock(seq, 0)), Some(k));
        // Its replay is the handler's (the open's lock sequence array), not a saved answer's.
        assert!(!k.answered_from_saved());
        // Index 0 (or past 64): no lock sequence, the general key.
        for s in [1, 65 << 4] {
            assert!(matches!(key(Command::Lock, 0, 0, 4, &lock(s, 0)), Some(ReplayKey::Request { .. })));
        }
    }

    #[test]
    fn related_elements_take_the_chain_file() {
        let body = write_body(FileId::ANY, 0, b"x");
        let (h, m) = msg(Command::Write, flags::RELATED_OPERATIONS, 0, 3, &body);
        assert_eq!(ReplayKey::of(&h, &m, None), None);
        let Some(ReplayKey::Request { file, .. }) = ReplayKey::of(&h, &m, Some(F)) else { panic!() };
        assert_eq!(file, PersistentFileId(F.persistent));
    }

    #[test]
    fn requests_that_name_no_open_have_no_key() {
        for c in [
            Command::Negotiate,
            Command::SessionSetup,
            Command::Logoff,
            Command::TreeConnect,
            Command::TreeDisconnect,
            Command::Echo,
            Command::Cancel,
        ] {
            assert_eq!(key(c, flags::REPLAY_OPERATION, 0, 1, &[4, 0, 0, 0, 0, 0, 0, 0]), None, "{c:?}");
        }
        // A lease break acknowledgment names a lease.
        let mut ack = vec![0u8; 36];
        ack[0] = 36;
        assert_eq!(key(Command::OplockBreak, 0, 0, 1, &ack), None);
        // Truncated bodies and unknown commands.
        assert_eq!(key(Command::Write, 0, 0, 1, &[49, 0, 0]), None);
        let (mut h, m) = msg(Command::Echo, 0, 0, 1, &[4, 0, 0, 0]);
        h.command = 0x55;
        assert_eq!(ReplayKey::of(&h, &m, None), None);
        assert_eq!(ReplayKey::of(&h, &m[..10], None), None);
    }

    #[test]
    fn body_hash_is_stable_and_sees_every_byte() {
        // Pinned: the hash is part of what both nodes of a pair must agree on.
        assert_eq!(body_hash(0, b""), 0xfaee_c0dc_331e_9e62);
        assert_eq!(body_hash(0, b"The quick brown fox jumps over the lazy dog"), 0xb562_de6a_fb08_7ac1);
        let data: Vec<u8> = (0..100u8).collect();
        let h = body_hash(0, &data);
        for i in 0..data.len() {
            let mut d = data.clone();
            d[i] ^= 1;
            assert_ne!(body_hash(0, &d), h, "byte {i}");
        }
        // Trailing zeros and the seed count.
        assert_ne!(
            body_hash(0, &data[..99]),
            body_hash(0, &{
                let mut d = data[..99].to_vec();
                d.push(0);
                d
            })
        );
        assert_ne!(body_hash(1, &data), h);
    }

    fn saved(op: u64, len: usize) -> Saved {
        Saved { op: OpId(op), status: 0, response: Bytes::from(vec![7u8; len]), ticket: Ticket::DURABLE }
    }

    fn lock_key(n: u32) -> ReplayKey {
        ReplayKey::Lock { file: PersistentFileId(1), lock_sequence: n }
    }

    #[test]
    fn saved_answers_over_the_cap_forget_the_oldest_operations_first() {
        let entry = 1000 + ENTRY_BYTES;
        let mut idx = ReplayIndex::with_cap(3 * entry);
        for op in 1..=3 {
            idx.insert(lock_key(op as u32), saved(op, 1000));
        }
        assert_eq!((idx.len(), idx.bytes()), (3, 3 * entry));
        idx.insert(lock_key(4), saved(4, 1000));
        assert_eq!(idx.get(&lock_key(1)), None, "the oldest went");
        assert!(idx.get(&lock_key(2)).is_some() && idx.get(&lock_key(4)).is_some());
        assert_eq!((idx.len(), idx.bytes()), (3, 3 * entry));
        // One large answer pushes out as many old ones as it needs.
        idx.insert(lock_key(5), saved(5, 2000));
        assert_eq!(idx.get(&lock_key(2)), None);
        assert_eq!(idx.get(&lock_key(3)), None);
        assert!(idx.bytes() <= 3 * entry, "{}", idx.bytes());
        assert!(idx.get(&lock_key(4)).is_some() && idx.get(&lock_key(5)).is_some());
    }

    #[test]
    fn answers_off_the_log_are_carried_until_their_deadline() {
        let mut idx = ReplayIndex::default();
        idx.insert(lock_key(1), saved(1, 10));
        idx.insert(lock_key(2), saved(2, 10));
        idx.insert_off_log(lock_key(3), saved(3, 10), 5_000);
        assert_eq!(idx.carried(0, usize::MAX).iter().map(|c| c.0).collect::<Vec<_>>(), [lock_key(3)]);
        // Released: off the log from now, until its deadline.
        idx.off_log(OpId(1), 2_000);
        let carried = idx.carried(1_000, usize::MAX);
        let carried: Vec<_> = carried.iter().map(|c| (c.0, c.2)).collect();
        assert_eq!(carried, [(lock_key(3), 5_000), (lock_key(1), 2_000)]);
        assert_eq!(idx.carried(2_000, usize::MAX).len(), 1, "past its deadline");
        assert!(idx.carried(5_000, usize::MAX).is_empty());
        // A record appended later puts it back on the log.
        idx.insert(lock_key(4), saved(1, 10));
        assert_eq!(idx.carried(0, usize::MAX).len(), 1);
        // Over the budget the newest operations are carried first.
        idx.off_log(OpId(2), 9_000);
        let one = 10 + ENTRY_BYTES;
        assert_eq!(idx.carried(0, one).iter().map(|c| c.0).collect::<Vec<_>>(), [lock_key(3)]);
        // Retired: gone.
        idx.retire(OpId(3));
        assert_eq!(idx.carried(0, usize::MAX).iter().map(|c| c.0).collect::<Vec<_>>(), [lock_key(2)]);
    }

    #[test]
    fn retiring_gives_the_bytes_back_and_a_key_taken_over_stays() {
        let mut idx = ReplayIndex::default();
        idx.insert(lock_key(1), saved(1, 10));
        idx.insert(lock_key(2), saved(1, 20));
        idx.insert(lock_key(1), saved(2, 30));
        assert_eq!(idx.bytes(), 20 + 30 + 2 * ENTRY_BYTES);
        idx.retire(OpId(1));
        assert_eq!(idx.get(&lock_key(1)).map(|s| s.op), Some(OpId(2)), "op 2 took key 1 over");
        assert_eq!(idx.get(&lock_key(2)), None);
        assert_eq!(idx.bytes(), 30 + ENTRY_BYTES);
        idx.retire(OpId(2));
        assert_eq!((idx.len(), idx.bytes()), (0, 0));
        assert!(idx.order.is_empty() && idx.by_op.is_empty());
    }
}
