//! LOCK request and response ([MS-SMB2] 2.2.26, 2.2.27).

use bytes::{BufMut, BytesMut};

use super::{encode_empty4, fixed, parse_empty4, FileId};
use crate::error::{ParseError, ParseResult};

/// Flags of a lock element ([MS-SMB2] 2.2.26.1).
pub mod lock_flags {
    pub const SHARED_LOCK: u32 = 0x0000_0001;
    pub const EXCLUSIVE_LOCK: u32 = 0x0000_0002;
    pub const UNLOCK: u32 = 0x0000_0004;
    pub const FAIL_IMMEDIATELY: u32 = 0x0000_0010;
}

/// SMB2_LOCK_ELEMENT ([MS-SMB2] 2.2.26.1).
///
/// Format: `{ offset: u64 | length: u64 | flags: u32 | _reserved: u32 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockElement {
    pub offset: u64,
    pub length: u64,
    /// [`lock_flags`].
    pub flags: u32,
}

impl LockElement {
    pub const LEN: usize = 24;
}

/// SMB2 LOCK request ([MS-SMB2] 2.2.26).
///
/// Format: `{ structure_size=48: u16 | lock_count: u16 |
/// lock_sequence: u32 | file_id: FileId | locks[lock_count]: LockElement }`
///
/// LockSequence holds LockSequenceNumber in its low 4 bits and
/// LockSequenceIndex in the other 28 ([MS-SMB2] 3.3.5.14); see
/// [`LockRequest::lock_sequence_number`] and
/// [`LockRequest::lock_sequence_index`]. A zero lock count is invalid; the
/// count is bounded by the message length before anything is allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    pub lock_sequence: u32,
    pub file_id: FileId,
    pub locks: Vec<LockElement>,
}

impl LockRequest {
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 48)?;
        let count = r.u16("lock count")? as usize;
        let lock_sequence = r.u32("lock sequence")?;
        let file_id = FileId::read(&mut r)?;
        if count == 0 {
            return Err(ParseError::Invalid("lock count"));
        }
        if count * LockElement::LEN > r.remaining() {
            return Err(ParseError::Truncated("lock elements"));
        }
        let mut locks = Vec::with_capacity(count);
        for _ in 0..count {
            let offset = r.u64("lock offset")?;
            let length = r.u64("lock length")?;
            let flags = r.u32("lock flags")?;
            r.u32("lock reserved")?;
            locks.push(LockElement { offset, length, flags });
        }
        Ok(LockRequest { lock_sequence, file_id, locks })
    }

    /// LockSequenceNumber: the low 4 bits.
    pub fn lock_sequence_number(&self) -> u8 {
        (self.lock_sequence & 0xF) as u8
    }

    /// LockSequenceIndex: the upper 28 bits (1..=64 is meaningful).
    pub fn lock_sequence_index(&self) -> u32 {
        self.lock_sequence >> 4
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(48);
        out.put_u16_le(self.locks.len() as u16);
        out.put_u32_le(self.lock_sequence);
        self.file_id.encode(out);
        for l in &self.locks {
            out.put_u64_le(l.offset);
            out.put_u64_le(l.length);
            out.put_u32_le(l.flags);
            out.put_u32_le(0);
        }
    }
}

/// SMB2 LOCK response ([MS-SMB2] 2.2.27).
///
/// Format: `{ structure_size=4: u16 | _reserved: u16 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockResponse;

impl LockResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        encode_empty4(out)
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        parse_empty4(msg).map(|()| LockResponse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn request_roundtrip_and_truncation() {
        let req = LockRequest {
            lock_sequence: (5 << 4) | 3,
            file_id: FileId { persistent: 1, volatile: 2 },
            locks: vec![
                LockElement { offset: 0, length: 10, flags: lock_flags::EXCLUSIVE_LOCK | lock_flags::FAIL_IMMEDIATELY },
                LockElement { offset: 100, length: 1, flags: lock_flags::UNLOCK },
            ],
        };
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let msg = with_header(Command::Lock, &b);
        let back = LockRequest::parse(&msg).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.lock_sequence_number(), 3);
        assert_eq!(back.lock_sequence_index(), 5);
        prefixes_fail(&msg, msg.len(), LockRequest::parse);
    }

    #[test]
    fn bad_counts() {
        let req = LockRequest {
            lock_sequence: 0,
            file_id: FileId::default(),
            locks: vec![LockElement { offset: 0, length: 1, flags: lock_flags::SHARED_LOCK }],
        };
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let mut msg = with_header(Command::Lock, &b);
        msg[66..68].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(LockRequest::parse(&msg), Err(ParseError::Invalid("lock count")));
        msg[66..68].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(LockRequest::parse(&msg).is_err());
    }

    #[test]
    fn response_roundtrip() {
        let mut b = BytesMut::new();
        LockResponse.encode(&mut b);
        assert_eq!(LockResponse::parse(&with_header(Command::Lock, &b)).unwrap(), LockResponse);
    }
}
