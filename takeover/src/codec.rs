//! The interconnect codec: frames and the messages they carry.
//!
//! Sans-IO: [`Frame::encode`] appends bytes to a buffer, [`decode`] finds one whole frame at
//! the front of a stream buffer (returning `Ok(None)` while more bytes are needed) and
//! [`Frame::parse`] reads exactly one frame. Nothing here trusts its input: every length is
//! checked, leftover bytes are an error, and a frame whose checksum does not match is refused.
//!
//! ```text
//! // Format (big-endian): { magic u16 = 0xD0E7 | version u8 = 0x01 | kind u8 | cluster u64
//! //   | node u16 | generation u32 | seq u64 | len u32 | payload [len] | crc32 u32 }
//! ```
//!
//! The crc32 covers every byte before it. `generation` is the sender's boot generation, so
//! that `(generation, seq)` increases across restarts and the receiver can tell a late or
//! duplicated frame from a new one.
//!
//! Payloads, by kind (see [`Message`]):
//!
//! ```text
//! 0x01 Hello, 0x02 Heartbeat: { health u8 | fault u8 | count u8 | count × { set u16 | owner u16 | epoch u64 | serving u8 } }
//! 0x03 TakeoverRequest:       { set u16 | reason u8 (0x00 operator, else a FaultKind) }
//! 0x04 TakeoverDenied:        { set u16 | reason u8 }
//! 0x05 ShutdownRequest:       { set u16 | epoch u64 }
//! 0x06 ShutdownDone:          { set u16 | epoch u64 | last_seq u64 }
//! 0x07 StayDown:              { set u16 | epoch u64 }
//! 0x08 GivebackRequest:       { set u16 }
//! 0x09 GivebackDone:          { set u16 | epoch u64 | last_seq u64 }
//! 0x10 Mirror:                { pos u64 | records (opaque bytes of the sender's own ring at pos) }
//! 0x11 MirrorAck:             { end u64 }   (every byte below `end` is durable in the mirror)
//! 0x12 Join:                  { incarnation u64 | ring u64 | nonce 16 bytes }
//! 0x13 Refuse:                { reason u8 | incarnation u64 }
//! 0x14 MirrorMeta:            { head u64 | generation u32 | capacity u64 }
//! 0x15 MirrorMetaAck:         { head u64 }
//! 0x16 MirrorCurrent:         { end u64 }   (the resync is done: the mirror holds all up to `end`,
//!                                          and every record after it is acknowledged before it counts)
//! 0x17 Proof:                 { mac 32 bytes }   (the sender knows the interconnect key: an
//!                                          HMAC-SHA256 over both joins' nonces, server/src/pair/key.rs)
//! ```
//!
//! Join, Proof and Refuse are the identity check when a link comes up (the sender's cluster
//! and node are in the header; the proof answers the other side's nonce); the mirror messages carry the journal's own ring to the
//! partner's mirror ring at the same logical positions (`nvram::Mirror`).

use bytes::Bytes;

use crate::types::{ClusterId, Epoch, FaultKind, Health, NodeId, SetId};

/// First two bytes of every frame.
pub const MAGIC: u16 = 0xD0E7;
/// The only frame version this crate speaks.
pub const VERSION: u8 = 0x01;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 30;
/// Bytes after the payload (the crc32).
pub const TRAILER_LEN: usize = 4;
/// The largest payload accepted (a mirror record plus room).
pub const MAX_PAYLOAD: u32 = 4 << 20;
/// The most set entries a status may carry.
pub const MAX_SETS: usize = 16;

/// A frame that could not be read. Each is counted by the [`crate::Node`] that refuses it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FrameError {
    /// The frame does not start with [`MAGIC`].
    #[error("bad magic {0:#06x}")]
    BadMagic(u16),
    /// A frame version this crate does not speak.
    #[error("unsupported version {0:#04x}")]
    UnsupportedVersion(u8),
    /// The payload length is over [`MAX_PAYLOAD`].
    #[error("payload of {0} bytes is too long")]
    TooLong(u32),
    /// The checksum does not match.
    #[error("crc32 mismatch")]
    BadChecksum,
    /// A message kind this crate does not know.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// The payload does not parse as its kind.
    #[error("malformed {0} payload")]
    Malformed(&'static str),
    /// Bytes are left over after one whole frame.
    #[error("{0} bytes after the frame")]
    TrailingBytes(usize),
    /// The buffer ends before the frame does.
    #[error("truncated frame")]
    Truncated,
}

/// The sender's identity and position, carried by every frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The sender's cluster.
    pub cluster: ClusterId,
    /// The sender.
    pub node: NodeId,
    /// The sender's boot generation.
    pub generation: u32,
    /// The sender's frame counter within this generation.
    pub seq: u64,
}

/// One frame: a header and a message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Who sent it, and when in its sequence.
    pub header: Header,
    /// What it says.
    pub message: Message,
}

/// Why a takeover is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TakeoverReason {
    /// An operator asked.
    Operator,
    /// The sender detected a fault of its own.
    Fault(FaultKind),
}

/// Why a node refuses a partner's [`Message::Join`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// The receiver of the refusal has the older configuration incarnation: it must not serve.
    OlderIncarnation = 0x01,
    /// The sender of the join belongs to another cluster.
    ForeignCluster = 0x02,
    /// The sender of the join has the refusing node's own node id.
    SameNode = 0x03,
    /// The sender of the join is not the partner the refusing node is configured for.
    UnexpectedNode = 0x04,
    /// The two journals' rings differ in size: one cannot mirror the other.
    RingSize = 0x05,
    /// The sender of the join did not prove that it knows the interconnect key.
    Unproven = 0x06,
}

impl RefuseReason {
    fn from_u8(b: u8) -> Option<RefuseReason> {
        Some(match b {
            0x01 => RefuseReason::OlderIncarnation,
            0x02 => RefuseReason::ForeignCluster,
            0x03 => RefuseReason::SameNode,
            0x04 => RefuseReason::UnexpectedNode,
            0x05 => RefuseReason::RingSize,
            0x06 => RefuseReason::Unproven,
            _ => return None,
        })
    }
}

/// Why a takeover request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The partner lacks a storage path the set needs.
    MissingPath = 0x01,
    /// The partner lacks the capacity the set needs.
    NoCapacity = 0x02,
    /// The partner is busy with another transition, or not ready.
    Busy = 0x03,
    /// The partner is itself faulty.
    Faulty = 0x04,
}

impl DenyReason {
    fn from_u8(b: u8) -> Option<DenyReason> {
        Some(match b {
            0x01 => DenyReason::MissingPath,
            0x02 => DenyReason::NoCapacity,
            0x03 => DenyReason::Busy,
            0x04 => DenyReason::Faulty,
            _ => return None,
        })
    }
}

/// One set as the sender sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SetStatus {
    /// The set.
    pub set: SetId,
    /// Its owner in the newest record the sender knows.
    pub owner: NodeId,
    /// That record's epoch.
    pub epoch: Epoch,
    /// Whether the sender serves it now.
    pub serving: bool,
}

/// The sender's view of ownership and its health, carried by hello and heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Status {
    /// The sender's health.
    pub health: Health,
    /// The sets the sender knows about.
    pub sets: Vec<SetStatus>,
}

/// A message between the two nodes of a pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// Sent on boot until the partner answers.
    Hello(Status),
    /// Sent every beat.
    Heartbeat(Status),
    /// "Please take over my set."
    TakeoverRequest { set: SetId, reason: TakeoverReason },
    /// "I will not take over your set."
    TakeoverDenied { set: SetId, reason: DenyReason },
    /// "Hand me your set, which you hold at `epoch`."
    ShutdownRequest { set: SetId, epoch: Epoch },
    /// "I released the set I held at `epoch`; my mirror ends at `last_seq`."
    ShutdownDone { set: SetId, epoch: Epoch, last_seq: u64 },
    /// "I hold the set at `epoch`: do not serve it."
    StayDown { set: SetId, epoch: Epoch },
    /// "Give my home set back."
    GivebackRequest { set: SetId },
    /// "I released your set, which I held at `epoch`; my mirror ends at `last_seq`."
    GivebackDone { set: SetId, epoch: Epoch, last_seq: u64 },
    /// Bytes of the sender's own journal ring from logical position `pos` (whole records,
    /// opaque here), for the receiver's mirror ring.
    Mirror { pos: u64, records: Bytes },
    /// The receiver of [`Message::Mirror`]s has every byte below `end` durably (a
    /// contiguous end position).
    MirrorAck { end: u64 },
    /// "I am this node (header) at configuration `incarnation`, my journal's rings hold
    /// `ring` bytes; prove yourself over `nonce`": the first message on a new link, from
    /// each side.
    Join { incarnation: u64, ring: u64, nonce: [u8; 16] },
    /// The answer to the other side's [`Message::Join`]: a MAC, with the interconnect
    /// key, over both joins (the second message on a new link, from each side).
    Proof { mac: [u8; 32] },
    /// "I refuse your join": the link closes after it.
    Refuse { reason: RefuseReason, incarnation: u64 },
    /// The sender's ring head and generation, for the receiver's mirror ring.
    MirrorMeta { head: u64, generation: u32, capacity: u64 },
    /// The receiver of a [`Message::MirrorMeta`] stored `head` durably.
    MirrorMetaAck { head: u64 },
    /// The sender's mirror at the receiver is current: the receiver holds every record of
    /// the sender's log up to `end` (the resync of this link is done), and while the link
    /// lives the sender answers nothing the receiver has not acknowledged. The receiver
    /// may take the sender's sets over from its mirror only after this.
    MirrorCurrent { end: u64 },
}

impl Message {
    fn kind(&self) -> u8 {
        match self {
            Message::Hello(_) => 0x01,
            Message::Heartbeat(_) => 0x02,
            Message::TakeoverRequest { .. } => 0x03,
            Message::TakeoverDenied { .. } => 0x04,
            Message::ShutdownRequest { .. } => 0x05,
            Message::ShutdownDone { .. } => 0x06,
            Message::StayDown { .. } => 0x07,
            Message::GivebackRequest { .. } => 0x08,
            Message::GivebackDone { .. } => 0x09,
            Message::Mirror { .. } => 0x10,
            Message::MirrorAck { .. } => 0x11,
            Message::Join { .. } => 0x12,
            Message::Refuse { .. } => 0x13,
            Message::MirrorMeta { .. } => 0x14,
            Message::MirrorMetaAck { .. } => 0x15,
            Message::MirrorCurrent { .. } => 0x16,
            Message::Proof { .. } => 0x17,
        }
    }

    /// Whether the message is a mirror record or its acknowledgement (delivered in stream
    /// order, never dropped as stale).
    pub fn is_mirror(&self) -> bool {
        matches!(
            self,
            Message::Mirror { .. }
                | Message::MirrorAck { .. }
                | Message::MirrorMeta { .. }
                | Message::MirrorMetaAck { .. }
                | Message::MirrorCurrent { .. }
        )
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello(s) | Message::Heartbeat(s) => {
                let (h, f) = match s.health {
                    Health::Healthy => (0u8, 0u8),
                    Health::Faulty(k) => (1, k as u8),
                };
                out.push(h);
                out.push(f);
                let n = s.sets.len().min(MAX_SETS);
                out.push(n as u8);
                for e in &s.sets[..n] {
                    out.extend_from_slice(&e.set.0.to_be_bytes());
                    out.extend_from_slice(&e.owner.0.to_be_bytes());
                    out.extend_from_slice(&e.epoch.0.to_be_bytes());
                    out.push(e.serving as u8);
                }
            }
            Message::TakeoverRequest { set, reason } => {
                out.extend_from_slice(&set.0.to_be_bytes());
                out.push(match reason {
                    TakeoverReason::Operator => 0,
                    TakeoverReason::Fault(k) => *k as u8,
                });
            }
            Message::TakeoverDenied { set, reason } => {
                out.extend_from_slice(&set.0.to_be_bytes());
                out.push(*reason as u8);
            }
            Message::ShutdownRequest { set, epoch } | Message::StayDown { set, epoch } => {
                out.extend_from_slice(&set.0.to_be_bytes());
                out.extend_from_slice(&epoch.0.to_be_bytes());
            }
            Message::ShutdownDone { set, epoch, last_seq } | Message::GivebackDone { set, epoch, last_seq } => {
                out.extend_from_slice(&set.0.to_be_bytes());
                out.extend_from_slice(&epoch.0.to_be_bytes());
                out.extend_from_slice(&last_seq.to_be_bytes());
            }
            Message::GivebackRequest { set } => out.extend_from_slice(&set.0.to_be_bytes()),
            Message::Mirror { pos, records } => {
                out.extend_from_slice(&pos.to_be_bytes());
                out.extend_from_slice(records);
            }
            Message::MirrorAck { end: v } | Message::MirrorMetaAck { head: v } | Message::MirrorCurrent { end: v } => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            Message::Join { incarnation, ring, nonce } => {
                out.extend_from_slice(&incarnation.to_be_bytes());
                out.extend_from_slice(&ring.to_be_bytes());
                out.extend_from_slice(nonce);
            }
            Message::Proof { mac } => out.extend_from_slice(mac),
            Message::Refuse { reason, incarnation } => {
                out.push(*reason as u8);
                out.extend_from_slice(&incarnation.to_be_bytes());
            }
            Message::MirrorMeta { head, generation, capacity } => {
                out.extend_from_slice(&head.to_be_bytes());
                out.extend_from_slice(&generation.to_be_bytes());
                out.extend_from_slice(&capacity.to_be_bytes());
            }
        }
    }

    fn read(kind: u8, payload: &[u8]) -> Result<Message, FrameError> {
        let mut r = Reader { buf: payload };
        let msg = match kind {
            0x01 | 0x02 => {
                let what = "status";
                let h = r.u8(what)?;
                let f = r.u8(what)?;
                let health = match (h, f) {
                    (0, 0) => Health::Healthy,
                    (1, k) => Health::Faulty(FaultKind::from_u8(k).ok_or(FrameError::Malformed(what))?),
                    _ => return Err(FrameError::Malformed(what)),
                };
                let n = r.u8(what)? as usize;
                if n > MAX_SETS {
                    return Err(FrameError::Malformed(what));
                }
                let mut sets = Vec::with_capacity(n);
                for _ in 0..n {
                    let set = SetId(r.u16(what)?);
                    let owner = NodeId(r.u16(what)?);
                    let epoch = Epoch(r.u64(what)?);
                    let serving = match r.u8(what)? {
                        0 => false,
                        1 => true,
                        _ => return Err(FrameError::Malformed(what)),
                    };
                    sets.push(SetStatus { set, owner, epoch, serving });
                }
                let s = Status { health, sets };
                if kind == 0x01 {
                    Message::Hello(s)
                } else {
                    Message::Heartbeat(s)
                }
            }
            0x03 => {
                let what = "takeover request";
                let set = SetId(r.u16(what)?);
                let reason = match r.u8(what)? {
                    0 => TakeoverReason::Operator,
                    k => TakeoverReason::Fault(FaultKind::from_u8(k).ok_or(FrameError::Malformed(what))?),
                };
                Message::TakeoverRequest { set, reason }
            }
            0x04 => {
                let what = "takeover denied";
                let set = SetId(r.u16(what)?);
                let reason = DenyReason::from_u8(r.u8(what)?).ok_or(FrameError::Malformed(what))?;
                Message::TakeoverDenied { set, reason }
            }
            0x05 | 0x07 => {
                let what = if kind == 0x05 { "shutdown request" } else { "stay-down" };
                let set = SetId(r.u16(what)?);
                let epoch = Epoch(r.u64(what)?);
                if kind == 0x05 {
                    Message::ShutdownRequest { set, epoch }
                } else {
                    Message::StayDown { set, epoch }
                }
            }
            0x06 | 0x09 => {
                let what = if kind == 0x06 { "shutdown done" } else { "giveback done" };
                let set = SetId(r.u16(what)?);
                let epoch = Epoch(r.u64(what)?);
                let last_seq = r.u64(what)?;
                if kind == 0x06 {
                    Message::ShutdownDone { set, epoch, last_seq }
                } else {
                    Message::GivebackDone { set, epoch, last_seq }
                }
            }
            0x08 => Message::GivebackRequest { set: SetId(r.u16("giveback request")?) },
            0x10 => {
                let pos = r.u64("mirror")?;
                let records = Bytes::copy_from_slice(r.buf);
                r.buf = &[];
                Message::Mirror { pos, records }
            }
            0x11 => Message::MirrorAck { end: r.u64("mirror ack")? },
            0x12 => {
                let what = "join";
                Message::Join { incarnation: r.u64(what)?, ring: r.u64(what)?, nonce: r.array(what)? }
            }
            0x13 => {
                let what = "refuse";
                let reason = RefuseReason::from_u8(r.u8(what)?).ok_or(FrameError::Malformed(what))?;
                Message::Refuse { reason, incarnation: r.u64(what)? }
            }
            0x14 => {
                let what = "mirror meta";
                Message::MirrorMeta { head: r.u64(what)?, generation: r.u32(what)?, capacity: r.u64(what)? }
            }
            0x15 => Message::MirrorMetaAck { head: r.u64("mirror meta ack")? },
            0x16 => Message::MirrorCurrent { end: r.u64("mirror current")? },
            0x17 => Message::Proof { mac: r.array("proof")? },
            k => return Err(FrameError::UnknownKind(k)),
        };
        if !r.buf.is_empty() {
            return Err(FrameError::Malformed("trailing payload"));
        }
        Ok(msg)
    }
}

impl Frame {
    /// Appends the encoded frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.push(VERSION);
        out.push(self.message.kind());
        out.extend_from_slice(&self.header.cluster.0.to_be_bytes());
        out.extend_from_slice(&self.header.node.0.to_be_bytes());
        out.extend_from_slice(&self.header.generation.to_be_bytes());
        out.extend_from_slice(&self.header.seq.to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        self.message.encode_payload(out);
        let len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }

    /// The encoded frame as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Reads exactly one whole frame; bytes left over are an error.
    pub fn parse(buf: &[u8]) -> Result<Frame, FrameError> {
        match decode(buf)? {
            None => Err(FrameError::Truncated),
            Some((f, n)) if n == buf.len() => Ok(f),
            Some((_, n)) => Err(FrameError::TrailingBytes(buf.len() - n)),
        }
    }
}

/// Finds one frame at the front of a stream buffer: `Ok(None)` while more bytes are needed,
/// `Ok(Some((frame, consumed)))` for a whole frame, and `Err` when the stream is corrupt (the
/// caller drops the connection).
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() >= 2 {
        let magic = u16::from_be_bytes([buf[0], buf[1]]);
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
    }
    if buf.len() >= 3 && buf[2] != VERSION {
        return Err(FrameError::UnsupportedVersion(buf[2]));
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[26], buf[27], buf[28], buf[29]]);
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    let total = HEADER_LEN + len as usize + TRAILER_LEN;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[..total - TRAILER_LEN];
    let crc = u32::from_be_bytes([buf[total - 4], buf[total - 3], buf[total - 2], buf[total - 1]]);
    if crc32fast::hash(body) != crc {
        return Err(FrameError::BadChecksum);
    }
    let mut r = Reader { buf: &buf[4..HEADER_LEN] };
    let header = Header {
        cluster: ClusterId(r.u64("header")?),
        node: NodeId(r.u16("header")?),
        generation: r.u32("header")?,
        seq: r.u64("header")?,
    };
    let message = Message::read(buf[3], &body[HEADER_LEN..])?;
    Ok(Some((Frame { header, message }, total)))
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Malformed(what));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, FrameError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, FrameError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, FrameError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, FrameError> {
        let b = self.take(8, what)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FrameError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header { cluster: ClusterId(7), node: NodeId(1), generation: 3, seq: 42 }
    }

    pub(crate) fn all_messages() -> Vec<Message> {
        let set = SetId(1);
        let epoch = Epoch(9);
        let status = Status {
            health: Health::Faulty(FaultKind::DiskErrors),
            sets: vec![
                SetStatus { set: SetId(1), owner: NodeId(1), epoch, serving: true },
                SetStatus { set: SetId(2), owner: NodeId(1), epoch: Epoch(2), serving: false },
            ],
        };
        vec![
            Message::Hello(status.clone()),
            Message::Heartbeat(Status { health: Health::Healthy, sets: vec![] }),
            Message::Heartbeat(status),
            Message::TakeoverRequest { set, reason: TakeoverReason::Operator },
            Message::TakeoverRequest { set, reason: TakeoverReason::Fault(FaultKind::JournalFailure) },
            Message::TakeoverDenied { set, reason: DenyReason::NoCapacity },
            Message::ShutdownRequest { set, epoch },
            Message::ShutdownDone { set, epoch, last_seq: 77 },
            Message::StayDown { set, epoch },
            Message::GivebackRequest { set },
            Message::GivebackDone { set, epoch, last_seq: 5 },
            Message::Mirror { pos: 4096, records: Bytes::from_static(b"opaque record") },
            Message::Mirror { pos: 0, records: Bytes::new() },
            Message::MirrorAck { end: 1 << 40 },
            Message::Join { incarnation: 3, ring: 64 << 20, nonce: [9; 16] },
            Message::Proof { mac: [0xA5; 32] },
            Message::Refuse { reason: RefuseReason::Unproven, incarnation: 2 },
            Message::Refuse { reason: RefuseReason::OlderIncarnation, incarnation: 4 },
            Message::Refuse { reason: RefuseReason::RingSize, incarnation: 0 },
            Message::MirrorMeta { head: 1 << 33, generation: 7, capacity: 1 << 26 },
            Message::MirrorMetaAck { head: 12 },
            Message::MirrorCurrent { end: 1 << 20 },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in all_messages() {
            let f = Frame { header: header(), message: m };
            let bytes = f.to_bytes();
            assert_eq!(Frame::parse(&bytes).unwrap(), f);
        }
    }

    #[test]
    fn split_reads_need_more_then_decode() {
        let f =
            Frame { header: header(), message: Message::ShutdownDone { set: SetId(1), epoch: Epoch(3), last_seq: 8 } };
        let mut bytes = f.to_bytes();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        let n = bytes.len();
        bytes.extend_from_slice(&bytes.clone());
        let (g, used) = decode(&bytes).unwrap().unwrap();
        assert_eq!((g, used), (f.clone(), n));
        assert_eq!(Frame::parse(&bytes), Err(FrameError::TrailingBytes(n)));
    }

    #[test]
    fn corruption_is_refused() {
        let f = Frame { header: header(), message: Message::StayDown { set: SetId(1), epoch: Epoch(3) } };
        let bytes = f.to_bytes();
        for i in 4..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Frame::parse(&b).is_err(), "flip at {i} accepted");
        }
        let mut b = bytes.clone();
        b[0] = 0;
        assert_eq!(Frame::parse(&b), Err(FrameError::BadMagic(0x00E7)));
        let mut b = bytes.clone();
        b[2] = 2;
        assert_eq!(Frame::parse(&b), Err(FrameError::UnsupportedVersion(2)));
    }

    #[test]
    fn unknown_kind_and_bad_payloads_are_refused() {
        let f = Frame { header: header(), message: Message::GivebackRequest { set: SetId(1) } };
        let mut b = f.to_bytes();
        b[3] = 0x7f;
        let crc_at = b.len() - 4;
        let crc = crc32fast::hash(&b[..crc_at]);
        b[crc_at..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(Frame::parse(&b), Err(FrameError::UnknownKind(0x7f)));
        // A payload one byte short for its kind.
        let mut b = f.to_bytes();
        b.truncate(b.len() - 4);
        b.pop();
        b[29] = 1;
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(Frame::parse(&b), Err(FrameError::Malformed("giveback request")));
    }

    #[test]
    fn oversized_length_is_refused_early() {
        let mut b = Frame { header: header(), message: Message::MirrorAck { end: 1 } }.to_bytes();
        b[26..30].copy_from_slice(&(MAX_PAYLOAD + 1).to_be_bytes());
        assert_eq!(decode(&b[..HEADER_LEN]), Err(FrameError::TooLong(MAX_PAYLOAD + 1)));
    }
}
