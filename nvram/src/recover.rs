//! Recovery: scanning a ring from its head and sorting what it holds.
//!
//! The scan reads records in log order and stops at the first one that is not a valid
//! record of the current lap and of a run no older than the one before it. Nothing past
//! that point is ever turned into a record.

use std::collections::HashMap;
use std::io;

use bytes::Bytes;

use ids::{Flag, OpId};

use crate::format::{self, Kind, LogMeta, RecordHeader, RECORD_HEADER};

/// One record given back by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Sequence number: dense and increasing along a log.
    pub seq: u64,
    /// What the record says.
    pub kind: Kind,
    /// The operation it belongs to (`OpId(0)` for checkpoints).
    pub op: OpId,
    /// Compound element index for points 2 and 3, else 0.
    pub element: u16,
    /// Logical position of the record in its ring.
    pub pos: u64,
    /// Ring generation (run) that wrote it.
    pub generation: u32,
    /// The payload, as appended.
    pub payload: Bytes,
}

impl Record {
    /// For a post-completion record: its response bytes and its state delta.
    pub fn completion(&self) -> Option<(&[u8], &[u8])> {
        match self.kind {
            Kind::PostCompletion => format::split_completion(&self.payload),
            _ => None,
        }
    }

    /// The consistency point (1 to 4) of an operation record.
    pub fn point(&self) -> Option<u8> {
        self.kind.point()
    }
}

/// Why a scan stopped where it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogEnd {
    /// No record starts at the tail: zeroed bytes, or leftovers of an earlier lap or run.
    /// This is the ordinary end of a log. (A record whose header was never stored looks
    /// like this too, because an append writes its header last.)
    Clean,
    /// A record of the current lap and run starts at `pos` but is damaged: it was torn
    /// by the crash or garbled. It and everything after it were dropped.
    Torn {
        /// Logical position of the damaged record.
        pos: u64,
        /// What was wrong with it.
        reason: TornReason,
    },
}

/// What was wrong with a torn record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TornReason {
    /// The length runs past the ring end or past the live window.
    BadLength,
    /// Header and payload do not match the checksum.
    BadChecksum,
    /// The sequence number does not follow the previous record's.
    SequenceGap,
}

/// The operations of a log, by the consistency point of their latest record, each list
/// in order of the operations' first record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Points {
    /// Latest record is point 1: the request was received, nothing ran.
    pub pre_ack: Vec<OpId>,
    /// Latest record is point 2: an element may have run in part.
    pub pre_command: Vec<OpId>,
    /// Latest record is point 3: the response is saved but may not have been received.
    pub post_completion: Vec<OpId>,
    /// Latest record is point 4: done.
    pub post_reply_ack: Vec<OpId>,
}

/// What recovery found in one ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecovery {
    /// Where the scan started (the persisted head).
    pub head: u64,
    /// Just past the last valid record: where the next append goes.
    pub tail: u64,
    /// The last checkpoint in the log.
    pub checkpoint: Option<Record>,
    /// Every operation record from the head, in log order. Records before the
    /// checkpoint (lower `seq`) belong to operations that were still live when it was
    /// taken: the head never passes a live operation.
    pub records: Vec<Record>,
    /// The operations at each consistency point.
    pub points: Points,
    /// Why the scan stopped.
    pub end: LogEnd,
    /// The sequence number the next record gets.
    pub next_seq: u64,
}

/// What [`crate::Journal::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The flag as it was found, before anyone changed it.
    pub flag: Flag,
    /// The node generation of this run (already bumped).
    pub generation: u64,
    /// The node's own log.
    pub own: LogRecovery,
    /// The partner's mirror.
    pub partner: LogRecovery,
}

/// Where a scan reads region bytes from: the journal's storage, or a plain file (dump).
pub(crate) trait Source {
    /// Fills `buf` from absolute region offset `offset`.
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Appends `len` bytes from `offset` to `dst`.
    fn read_append(&self, offset: u64, len: usize, dst: &mut Vec<u8>) -> io::Result<()> {
        let at = dst.len();
        dst.resize(at + len, 0);
        self.read(offset, &mut dst[at..])
    }
}

impl<S: crate::Storage + ?Sized> Source for S {
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        crate::Storage::read(self, offset, buf);
        Ok(())
    }

    fn read_append(&self, offset: u64, len: usize, dst: &mut Vec<u8>) -> io::Result<()> {
        crate::Storage::read_append(self, offset, len, dst);
        Ok(())
    }
}

/// Scans one ring of `source`.
pub(crate) fn scan(source: &dyn Source, base: u64, cap: u64, meta: LogMeta) -> io::Result<LogRecovery> {
    let head = meta.head;
    let mut pos = head;
    let mut last_gen = 0u32;
    let mut prev_seq: Option<u64> = None;
    // Payloads land in one buffer, sized for a full ring so it never moves.
    let mut buf: Vec<u8> = Vec::with_capacity(cap as usize);
    // (header, pos, payload offset in buf)
    let mut found: Vec<(RecordHeader, u64, usize)> = Vec::new();
    let mut end = LogEnd::Clean;
    let mut hdr = [0u8; RECORD_HEADER];
    let mut tail = head;
    loop {
        let off = pos % cap;
        if cap - off < RECORD_HEADER as u64 {
            // Too little room left for a header: the writer skipped to the next lap.
            pos += cap - off;
            continue;
        }
        if pos + RECORD_HEADER as u64 > head + cap {
            break;
        }
        source.read(base + off, &mut hdr)?;
        // No record starts here unless the header is one of this lap and of a run no
        // older than the previous record's: anything else is zeroes or leftovers of an
        // earlier lap or run (whose bytes may be anything), the ordinary end.
        let Some((h, crc)) = RecordHeader::decode(&hdr) else { break };
        let lap = (pos / cap) as u32;
        if h.lap != lap || h.generation < last_gen || h.generation > meta.generation {
            break;
        }
        let total = h.total();
        if off + total > cap || pos + total > head + cap {
            end = LogEnd::Torn { pos, reason: TornReason::BadLength };
            break;
        }
        let at = buf.len();
        let len = h.len as usize;
        if h.kind != Kind::Pad {
            // Pad bytes are not covered by the checksum: only the pad's header is.
            source.read_append(base + off + RECORD_HEADER as u64, len, &mut buf)?;
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&hdr[..32]);
        if h.kind != Kind::Pad {
            hasher.update(&buf[at..]);
        }
        if hasher.finalize() != crc {
            buf.truncate(at);
            end = LogEnd::Torn { pos, reason: TornReason::BadChecksum };
            break;
        }
        if h.kind != Kind::Pad {
            if let Some(p) = prev_seq {
                if h.seq != p + 1 {
                    buf.truncate(at);
                    end = LogEnd::Torn { pos, reason: TornReason::SequenceGap };
                    break;
                }
            }
            prev_seq = Some(h.seq);
            found.push((h, pos, at));
        }
        last_gen = h.generation;
        pos += total;
        tail = pos;
    }

    let payloads = Bytes::from(buf);
    let mut checkpoint = None;
    let mut records = Vec::with_capacity(found.len());
    for (h, pos, at) in found {
        let r = Record {
            seq: h.seq,
            kind: h.kind,
            op: OpId(h.op),
            element: h.element,
            pos,
            generation: h.generation,
            payload: payloads.slice(at..at + h.len as usize),
        };
        if h.kind == Kind::Checkpoint {
            checkpoint = Some(r);
        } else {
            records.push(r);
        }
    }
    let next_seq = records.last().map(|r| r.seq).max(checkpoint.as_ref().map(|c: &Record| c.seq)).map_or(1, |s| s + 1);
    Ok(LogRecovery { head, tail, points: points(&records), checkpoint, records, end, next_seq })
}

/// A multiply-shift hasher for operation ids: recovery and the live-operation map hash
/// millions of them, and they come from our own server, not from the network.
#[derive(Clone, Copy, Default)]
pub(crate) struct OpHasher(u64);

impl std::hash::Hasher for OpHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
}

/// Builds [`OpHasher`]s.
pub(crate) type OpHash = std::hash::BuildHasherDefault<OpHasher>;

fn points(records: &[Record]) -> Points {
    let mut latest: HashMap<OpId, (usize, u8), OpHash> = HashMap::default();
    latest.reserve(records.len() / 2);
    for r in records {
        if let Some(p) = r.point() {
            let n = latest.len();
            latest.entry(r.op).or_insert((n, p)).1 = p;
        }
    }
    let mut ops: Vec<(usize, OpId, u8)> = latest.into_iter().map(|(op, (i, p))| (i, op, p)).collect();
    ops.sort_unstable();
    let mut points = Points::default();
    for (_, op, p) in ops {
        match p {
            1 => points.pre_ack.push(op),
            2 => points.pre_command.push(op),
            3 => points.post_completion.push(op),
            _ => points.post_reply_ack.push(op),
        }
    }
    points
}
