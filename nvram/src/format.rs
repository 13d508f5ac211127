//! The on-disk format: region layout, the header slots and the record header.
//!
//! Everything is little-endian. The same layout is drawn in `nvram/README.md`.
//!
//! ```text
//! | header slot A (4 KiB) | header slot B (4 KiB) | own log (cap) | partner's mirror (cap) |
//! ```

use ids::{ClusterId, Flag, NodeId};

use crate::error::{Error, Result};

/// Bytes reserved for the two header slots.
pub const HEADER_AREA: u64 = 8192;
/// Size of one header slot; slot `n` starts at `n * SLOT_SIZE`.
pub const SLOT_SIZE: u64 = 4096;
/// Bytes of a header slot that carry data (the rest is zero).
pub const HEADER_LEN: usize = 116;
/// The magic at the start of every header slot.
pub const MAGIC: [u8; 8] = *b"DUETNVRM";
/// The format version this crate writes and reads. Version 2 narrowed the header's
/// cluster id to `u64` and node id to `u16`, the widths of [`ids`].
pub const VERSION: u32 = 0x0003;
/// Size of a record header.
pub const RECORD_HEADER: usize = 40;
/// Records start and end on this alignment.
pub const ALIGN: u64 = 8;
/// The smallest region: the header and two rings of 64 KiB.
pub const MIN_REGION: u64 = HEADER_AREA + 2 * 65536;
/// The largest logical position a header may hold as a head (2^62 bytes appended: never
/// reached), so that a scan's position arithmetic cannot overflow.
pub const MAX_POSITION: u64 = 1 << 62;

/// Capacity of each ring of a region of `len` bytes: half the space after the header,
/// rounded down to 4 KiB pages.
pub fn ring_capacity(len: u64) -> u64 {
    (len.saturating_sub(HEADER_AREA) / 2) & !4095
}

/// Rounds `n` up to the record alignment.
pub fn align(n: u64) -> u64 {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// The state of one ring kept in the header.
///
// Format: { head:u64 | tail_hint:u64 | generation:u32 | _reserved:u32 }
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogMeta {
    /// Logical position of the oldest byte recovery must read.
    pub head: u64,
    /// The published tail when the header was last written (informative only).
    pub tail_hint: u64,
    /// Incarnation of the ring: bumped each time a writer starts after recovery.
    pub generation: u32,
}

impl LogMeta {
    const LEN: usize = 24;

    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.head.to_le_bytes());
        out[8..16].copy_from_slice(&self.tail_hint.to_le_bytes());
        out[16..20].copy_from_slice(&self.generation.to_le_bytes());
        out[20..24].fill(0);
    }

    fn decode(b: &[u8]) -> Self {
        LogMeta { head: u64_at(b, 0), tail_hint: u64_at(b, 8), generation: u32_at(b, 16) }
    }
}

/// One header slot. Two slots alternate; the valid one with the higher counter wins, so
/// a torn header write never loses the previous header.
///
// Format: { magic:[u8;8] | version:u32 | len:u32 | counter:u64 | cluster:u64 | node:u16 |
//           _reserved:u16 | flag:u32 | generation:u64 | region_len:u64 | ring_cap:u64 |
//           own:LogMeta(24) | partner:LogMeta(24) | crc32:u32 }   (crc32 over every byte before it)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bumped on every header write; picks the newer slot.
    pub counter: u64,
    /// The cluster the region belongs to.
    pub cluster: ClusterId,
    /// The node that owns the region.
    pub node: NodeId,
    /// The flag value.
    pub flag: Flag,
    /// The node's generation: bumped each time the journal is opened.
    pub generation: u64,
    /// Size of the whole region.
    pub region_len: u64,
    /// Capacity of each ring.
    pub ring_cap: u64,
    /// The node's own log.
    pub own: LogMeta,
    /// The partner's mirror.
    pub partner: LogMeta,
}

impl Header {
    /// Encodes into `HEADER_LEN` bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.counter.to_le_bytes());
        b[24..32].copy_from_slice(&self.cluster.0.to_le_bytes());
        b[32..34].copy_from_slice(&self.node.0.to_le_bytes());
        b[36..40].copy_from_slice(&(self.flag as u32).to_le_bytes());
        b[40..48].copy_from_slice(&self.generation.to_le_bytes());
        b[48..56].copy_from_slice(&self.region_len.to_le_bytes());
        b[56..64].copy_from_slice(&self.ring_cap.to_le_bytes());
        self.own.encode(&mut b[64..88]);
        self.partner.encode(&mut b[88..112]);
        let crc = crc32fast::hash(&b[..112]);
        b[112..116].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes one slot.
    pub fn decode(b: &[u8]) -> Result<Header> {
        if b.len() < HEADER_LEN || b[0..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u32_at(b, 8);
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        if u32_at(b, 12) as usize != HEADER_LEN || crc32fast::hash(&b[..112]) != u32_at(b, 112) {
            return Err(Error::BadHeader);
        }
        let flag = u32_at(b, 36);
        let h = Header {
            counter: u64_at(b, 16),
            cluster: ClusterId(u64_at(b, 24)),
            node: NodeId(u16_at(b, 32)),
            flag: Flag::from_u32(flag).ok_or(Error::UnknownFlag(flag))?,
            generation: u64_at(b, 40),
            region_len: u64_at(b, 48),
            ring_cap: u64_at(b, 56),
            own: LogMeta::decode(&b[64..64 + LogMeta::LEN]),
            partner: LogMeta::decode(&b[88..88 + LogMeta::LEN]),
        };
        // A checksum only says the bytes are as written: a slot whose sizes or heads no
        // writer produces is corrupt too, and must not reach a scan.
        if h.region_len < MIN_REGION
            || h.ring_cap != ring_capacity(h.region_len)
            || h.own.head > MAX_POSITION
            || h.partner.head > MAX_POSITION
        {
            return Err(Error::BadHeader);
        }
        Ok(h)
    }

    /// Picks the newer valid slot of the two, or the error of slot A when neither is.
    pub fn pick(a: &[u8], b: &[u8]) -> Result<Header> {
        match (Header::decode(a), Header::decode(b)) {
            (Ok(x), Ok(y)) => Ok(if y.counter > x.counter { y } else { x }),
            (Ok(x), Err(_)) | (Err(_), Ok(x)) => Ok(x),
            (Err(e), Err(_)) => Err(e),
        }
    }

    /// Where the slot for this header's counter lives.
    pub fn slot_offset(&self) -> u64 {
        (self.counter % 2) * SLOT_SIZE
    }

    /// Byte offset of the own ring.
    pub fn own_base(&self) -> u64 {
        HEADER_AREA
    }

    /// Byte offset of the partner's mirror ring.
    pub fn partner_base(&self) -> u64 {
        HEADER_AREA + self.ring_cap
    }
}

/// What a record says. The first four are the consistency points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// Point 1: the whole request bytes, before any answer leaves.
    PreAck = 0x01,
    /// Point 2: one compound element is about to run; with a payload, what it decided
    /// before it changed anything ([`crate::Entry::Decided`]).
    PreCommand = 0x02,
    /// Point 3: an element finished; its response bytes and state delta.
    PostCompletion = 0x03,
    /// Point 4: TCP acknowledged the whole response.
    PostReplyAck = 0x04,
    /// Long-lived state folded into one record.
    Checkpoint = 0x10,
    /// Filler up to the end of the ring.
    Pad = 0xff,
}

impl Kind {
    /// The kind with this stored value.
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            0x01 => Kind::PreAck,
            0x02 => Kind::PreCommand,
            0x03 => Kind::PostCompletion,
            0x04 => Kind::PostReplyAck,
            0x10 => Kind::Checkpoint,
            0xff => Kind::Pad,
            _ => return None,
        })
    }

    /// The consistency point (1 to 4) of an operation record.
    pub fn point(self) -> Option<u8> {
        match self {
            Kind::PreAck => Some(1),
            Kind::PreCommand => Some(2),
            Kind::PostCompletion => Some(3),
            Kind::PostReplyAck => Some(4),
            Kind::Checkpoint | Kind::Pad => None,
        }
    }
}

/// The fixed header in front of every record's payload.
///
/// The checksum covers bytes `0..32` of the header and then the payload. `lap` is the
/// logical position divided by the ring capacity, so a record left from an earlier lap
/// is never taken for a new one; `generation` is the ring's incarnation, so a record
/// left beyond a torn tail by an earlier run is never taken for a new one either. Pad
/// records have sequence number 0.
///
// Format: { len:u32 | kind:u8 | _reserved:u8 | element:u16 | lap:u32 | generation:u32 |
//           seq:u64 | op:u64 | crc32:u32 | _reserved:u32 | payload[len] | zero pad to 8 }
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length in bytes.
    pub len: u32,
    /// Record kind.
    pub kind: Kind,
    /// Compound element index (points 2 and 3), else 0.
    pub element: u16,
    /// Lap of the ring the record was written in.
    pub lap: u32,
    /// Ring generation the record was written in.
    pub generation: u32,
    /// Sequence number, dense over the ring's records.
    pub seq: u64,
    /// Operation id (0 for checkpoints and pads).
    pub op: u64,
}

impl RecordHeader {
    /// Encodes the header without its checksum (bytes 32.. are zero).
    pub fn encode(&self) -> [u8; RECORD_HEADER] {
        let mut b = [0u8; RECORD_HEADER];
        b[0..4].copy_from_slice(&self.len.to_le_bytes());
        b[4] = self.kind as u8;
        b[6..8].copy_from_slice(&self.element.to_le_bytes());
        b[8..12].copy_from_slice(&self.lap.to_le_bytes());
        b[12..16].copy_from_slice(&self.generation.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.op.to_le_bytes());
        b
    }

    /// Stores the checksum of the encoded header and a payload whose crc state is
    /// `payload` (a hasher fed with the payload only).
    pub fn seal(b: &mut [u8; RECORD_HEADER], payload: &crc32fast::Hasher) {
        let mut h = crc32fast::Hasher::new();
        h.update(&b[..32]);
        h.combine(payload);
        b[32..36].copy_from_slice(&h.finalize().to_le_bytes());
    }

    /// Decodes a header, without checking the checksum. `None` for an unknown kind or
    /// nonzero reserved bytes.
    pub fn decode(b: &[u8; RECORD_HEADER]) -> Option<(RecordHeader, u32)> {
        let kind = Kind::from_u8(b[4])?;
        if b[5] != 0 || b[36..40] != [0; 4] {
            return None;
        }
        Some((
            RecordHeader {
                len: u32_at(b, 0),
                kind,
                element: u16_at(b, 6),
                lap: u32_at(b, 8),
                generation: u32_at(b, 12),
                seq: u64_at(b, 16),
                op: u64_at(b, 24),
            },
            u32_at(b, 32),
        ))
    }

    /// Bytes the record takes in the ring, header and alignment included.
    pub fn total(&self) -> u64 {
        align(RECORD_HEADER as u64 + self.len as u64)
    }
}

/// Splits a post-completion payload into response and state delta.
///
// Format: { response_len:u32 | status:u32 | response[response_len] | delta[..] }
pub fn split_completion(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let rest = payload.get(8..)?;
    (n <= rest.len()).then(|| rest.split_at(n))
}

/// The response status of a post-completion payload.
pub fn completion_status(payload: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(payload.get(4..8)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(flag: Flag) -> Header {
        Header {
            counter: 7,
            cluster: ClusterId(0x1234_5678_9abc_def0),
            node: NodeId(2),
            flag,
            generation: 3,
            region_len: 1 << 20,
            ring_cap: ring_capacity(1 << 20),
            own: LogMeta { head: 100, tail_hint: 200, generation: 4 },
            partner: LogMeta { head: 5, tail_hint: 6, generation: 7 },
        }
    }

    #[test]
    fn header_round_trips_every_flag() {
        for flag in Flag::ALL {
            let h = header(flag);
            assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        }
    }

    #[test]
    fn header_rejects_garbage() {
        let mut b = header(Flag::CleanShutdown).encode();
        b[50] ^= 1;
        assert!(matches!(Header::decode(&b), Err(Error::BadHeader)));
        b[0] = b'X';
        assert!(matches!(Header::decode(&b), Err(Error::BadMagic)));
        assert!(matches!(Header::decode(&[0; HEADER_LEN]), Err(Error::BadMagic)));
    }

    #[test]
    fn header_of_another_version_is_refused() {
        // Version 1 had a u128 cluster id and a u32 node id: its slots must not be read
        // with the version 2 offsets.
        let mut b = header(Flag::CleanShutdown).encode();
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(Header::decode(&b), Err(Error::UnsupportedVersion(1))));
    }

    #[test]
    fn header_keeps_the_widest_ids() {
        let h = Header { cluster: ClusterId(u64::MAX), node: NodeId(u16::MAX), ..header(Flag::NonElectiveTakeover) };
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn newer_slot_wins_and_torn_slot_is_ignored() {
        let a = header(Flag::CleanShutdown);
        let b = Header { counter: 8, flag: Flag::ElectiveReboot, ..a };
        assert_eq!(Header::pick(&a.encode(), &b.encode()).unwrap(), b);
        let mut torn = b.encode();
        torn[100] ^= 0xff;
        assert_eq!(Header::pick(&a.encode(), &torn).unwrap(), a);
    }

    #[test]
    fn record_header_round_trips() {
        let h = RecordHeader {
            len: 5,
            kind: Kind::PostCompletion,
            element: 3,
            lap: 9,
            generation: 2,
            seq: 77,
            op: 0xdead_beef,
        };
        let mut b = h.encode();
        let mut p = crc32fast::Hasher::new();
        p.update(b"hello");
        RecordHeader::seal(&mut b, &p);
        let (d, crc) = RecordHeader::decode(&b).unwrap();
        assert_eq!(d, h);
        let mut whole = b[..32].to_vec();
        whole.extend_from_slice(b"hello");
        assert_eq!(crc, crc32fast::hash(&whole));
        assert_eq!(h.total(), 48);
    }

    #[test]
    fn completion_split() {
        let mut p = 3u32.to_le_bytes().to_vec();
        p.extend_from_slice(&0xC000_0022u32.to_le_bytes());
        p.extend_from_slice(b"abcXY");
        assert_eq!(split_completion(&p), Some((&b"abc"[..], &b"XY"[..])));
        assert_eq!(completion_status(&p), Some(0xC000_0022));
        assert_eq!(split_completion(&[9, 0, 0, 0, 0, 0, 0, 0, 1]), None);
        assert_eq!(split_completion(&[1, 0, 0, 0, 1]), None, "too short for the status");
    }
}
