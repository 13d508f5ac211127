//! OPLOCK_BREAK messages ([MS-SMB2] 2.2.23, 2.2.24, 2.2.25): the server's
//! break notifications, the client's acknowledgements and the server's
//! responses, each in an oplock form (StructureSize 24) and a lease form
//! (44 for the notification, 36 for acknowledgement and response).

use bytes::{BufMut, BytesMut};

use super::{fixed, peek_structure_size, FileId};
use crate::error::{ParseError, ParseResult};

/// Flags of a lease break notification ([MS-SMB2] 2.2.23.2).
pub mod lease_break_flags {
    pub const ACK_REQUIRED: u32 = 0x0000_0001;
}

/// The oplock form, shared by notification, acknowledgement and response
/// ([MS-SMB2] 2.2.23.1, 2.2.24.1, 2.2.25.1).
///
/// Format: `{ structure_size=24: u16 | oplock_level: u8 | _reserved: u8 |
/// _reserved2: u32 | file_id: FileId }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OplockBreak {
    /// [`super::create::oplock_level`]: the level broken to
    /// (notification), accepted (acknowledgement) or granted (response).
    pub oplock_level: u8,
    pub file_id: FileId,
}

impl OplockBreak {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(24);
        out.put_u8(self.oplock_level);
        out.put_u8(0);
        out.put_u32_le(0);
        self.file_id.encode(out);
    }

    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 24)?;
        let oplock_level = r.u8("oplock level")?;
        r.u8("reserved")?;
        r.u32("reserved2")?;
        Ok(OplockBreak { oplock_level, file_id: FileId::read(&mut r)? })
    }
}

/// Lease break notification ([MS-SMB2] 2.2.23.2), sent unsolicited with
/// MessageId 0xFFFFFFFFFFFFFFFF.
///
/// Format: `{ structure_size=44: u16 | new_epoch: u16 | flags: u32 |
/// lease_key: [u8;16] | current_lease_state: u32 | new_lease_state: u32 |
/// break_reason: u32 | access_mask_hint: u32 | share_mask_hint: u32 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseBreakNotification {
    /// The lease epoch (v2 leases; 0 for v1).
    pub new_epoch: u16,
    /// [`lease_break_flags`].
    pub flags: u32,
    pub lease_key: [u8; 16],
    /// [`super::create_context::lease_state`].
    pub current_lease_state: u32,
    pub new_lease_state: u32,
}

impl LeaseBreakNotification {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(44);
        out.put_u16_le(self.new_epoch);
        out.put_u32_le(self.flags);
        out.put_slice(&self.lease_key);
        out.put_u32_le(self.current_lease_state);
        out.put_u32_le(self.new_lease_state);
        out.put_u32_le(0); // break_reason
        out.put_u32_le(0); // access_mask_hint
        out.put_u32_le(0); // share_mask_hint
    }

    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 44)?;
        let new_epoch = r.u16("new epoch")?;
        let flags = r.u32("flags")?;
        let lease_key = r.guid("lease key")?;
        let current_lease_state = r.u32("current lease state")?;
        let new_lease_state = r.u32("new lease state")?;
        r.skip(12, "lease break hints")?;
        Ok(LeaseBreakNotification { new_epoch, flags, lease_key, current_lease_state, new_lease_state })
    }
}

/// Lease break acknowledgement and response ([MS-SMB2] 2.2.24.2,
/// 2.2.25.2); the same layout.
///
/// Format: `{ structure_size=36: u16 | _reserved: u16 | flags: u32 |
/// lease_key: [u8;16] | lease_state: u32 | lease_duration: u64 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseBreakAck {
    /// Must be 0.
    pub flags: u32,
    pub lease_key: [u8; 16],
    /// [`super::create_context::lease_state`].
    pub lease_state: u32,
    /// Must be 0.
    pub lease_duration: u64,
}

impl LeaseBreakAck {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(36);
        out.put_u16_le(0);
        out.put_u32_le(self.flags);
        out.put_slice(&self.lease_key);
        out.put_u32_le(self.lease_state);
        out.put_u64_le(self.lease_duration);
    }

    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 36)?;
        r.u16("reserved")?;
        let flags = r.u32("flags")?;
        let lease_key = r.guid("lease key")?;
        let lease_state = r.u32("lease state")?;
        let lease_duration = r.u64("lease duration")?;
        Ok(LeaseBreakAck { flags, lease_key, lease_state, lease_duration })
    }
}

/// A client's OPLOCK_BREAK request: an oplock or a lease break
/// acknowledgement ([MS-SMB2] 2.2.24), told apart by StructureSize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OplockBreakRequest {
    /// StructureSize 24 ([MS-SMB2] 2.2.24.1).
    Oplock(OplockBreak),
    /// StructureSize 36 ([MS-SMB2] 2.2.24.2).
    Lease(LeaseBreakAck),
}

impl OplockBreakRequest {
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        match peek_structure_size(msg)? {
            24 => OplockBreak::parse(msg).map(OplockBreakRequest::Oplock),
            36 => LeaseBreakAck::parse(msg).map(OplockBreakRequest::Lease),
            _ => Err(ParseError::Invalid("structure size")),
        }
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            OplockBreakRequest::Oplock(o) => o.encode(out),
            OplockBreakRequest::Lease(l) => l.encode(out),
        }
    }
}

/// The server's OPLOCK_BREAK response to an acknowledgement ([MS-SMB2] 2.2.25).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OplockBreakResponse {
    /// StructureSize 24 ([MS-SMB2] 2.2.25.1).
    Oplock(OplockBreak),
    /// StructureSize 36 ([MS-SMB2] 2.2.25.2).
    Lease(LeaseBreakAck),
}

impl OplockBreakResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            OplockBreakResponse::Oplock(o) => o.encode(out),
            OplockBreakResponse::Lease(l) => l.encode(out),
        }
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        match peek_structure_size(msg)? {
            24 => OplockBreak::parse(msg).map(OplockBreakResponse::Oplock),
            36 => LeaseBreakAck::parse(msg).map(OplockBreakResponse::Lease),
            _ => Err(ParseError::Invalid("structure size")),
        }
    }
}

/// The server's unsolicited break notification ([MS-SMB2] 2.2.23).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakNotification {
    /// StructureSize 24 ([MS-SMB2] 2.2.23.1).
    Oplock(OplockBreak),
    /// StructureSize 44 ([MS-SMB2] 2.2.23.2).
    Lease(LeaseBreakNotification),
}

impl BreakNotification {
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            BreakNotification::Oplock(o) => o.encode(out),
            BreakNotification::Lease(l) => l.encode(out),
        }
    }

    /// Parses a notification body (client side; tests).
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        match peek_structure_size(msg)? {
            24 => OplockBreak::parse(msg).map(BreakNotification::Oplock),
            44 => LeaseBreakNotification::parse(msg).map(BreakNotification::Lease),
            _ => Err(ParseError::Invalid("structure size")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn acknowledgements_roundtrip_and_truncation() {
        for req in [
            OplockBreakRequest::Oplock(OplockBreak { oplock_level: 1, file_id: FileId { persistent: 1, volatile: 2 } }),
            OplockBreakRequest::Lease(LeaseBreakAck { flags: 0, lease_key: [6; 16], lease_state: 1, lease_duration: 0 }),
        ] {
            let mut b = BytesMut::new();
            req.encode(&mut b);
            let msg = with_header(Command::OplockBreak, &b);
            assert_eq!(OplockBreakRequest::parse(&msg).unwrap(), req);
            prefixes_fail(&msg, msg.len(), OplockBreakRequest::parse);
        }
        let mut msg = with_header(Command::OplockBreak, &[44, 0, 0, 0]);
        msg.resize(64 + 44, 0);
        assert!(OplockBreakRequest::parse(&msg).is_err());
    }

    #[test]
    fn notifications_and_responses_roundtrip() {
        for n in [
            BreakNotification::Oplock(OplockBreak { oplock_level: 0, file_id: FileId { persistent: 3, volatile: 4 } }),
            BreakNotification::Lease(LeaseBreakNotification {
                new_epoch: 2,
                flags: lease_break_flags::ACK_REQUIRED,
                lease_key: [1; 16],
                current_lease_state: 7,
                new_lease_state: 1,
            }),
        ] {
            let mut b = BytesMut::new();
            n.encode(&mut b);
            let msg = with_header(Command::OplockBreak, &b);
            assert_eq!(BreakNotification::parse(&msg).unwrap(), n);
            prefixes_fail(&msg, msg.len(), BreakNotification::parse);
        }
        for r in [
            OplockBreakResponse::Oplock(OplockBreak { oplock_level: 1, file_id: FileId::default() }),
            OplockBreakResponse::Lease(LeaseBreakAck { flags: 0, lease_key: [2; 16], lease_state: 0, lease_duration: 0 }),
        ] {
            let mut b = BytesMut::new();
            r.encode(&mut b);
            assert_eq!(OplockBreakResponse::parse(&with_header(Command::OplockBreak, &b)).unwrap(), r);
        }
    }
}
