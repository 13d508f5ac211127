//! The SMB2 packet header ([MS-SMB2] 2.2.1).
//!
//! Format (64 bytes, little-endian):
//! `{ 0xFE 'S' 'M' 'B' | structure_size=64: u16 | credit_charge: u16 |
//!   status (or channel_sequence: u16, _reserved: u16): u32 | command: u16 |
//!   credit_request/response: u16 | flags: u32 | next_command: u32 |
//!   message_id: u64 | (async_id: u64) or (_reserved: u32, tree_id: u32) |
//!   session_id: u64 | signature: [u8; 16] }`

use bytes::{BufMut, BytesMut};

use crate::error::{ParseError, ParseResult};
use crate::status::NtStatus;

/// Length of the header.
pub const HEADER_LEN: usize = 64;
/// The protocol id of an SMB2 message.
pub const PROTOCOL_ID: [u8; 4] = [0xFE, b'S', b'M', b'B'];
/// Offset of the signature field within the header.
pub const SIGNATURE_OFFSET: usize = 48;

/// SMB2 commands ([MS-SMB2] 2.2.1.2), in the standard's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Command {
    Negotiate = 0x0000,
    SessionSetup = 0x0001,
    Logoff = 0x0002,
    TreeConnect = 0x0003,
    TreeDisconnect = 0x0004,
    Create = 0x0005,
    Close = 0x0006,
    Flush = 0x0007,
    Read = 0x0008,
    Write = 0x0009,
    Lock = 0x000A,
    Ioctl = 0x000B,
    Cancel = 0x000C,
    Echo = 0x000D,
    QueryDirectory = 0x000E,
    ChangeNotify = 0x000F,
    QueryInfo = 0x0010,
    SetInfo = 0x0011,
    OplockBreak = 0x0012,
}

impl Command {
    /// Maps the wire value; unknown commands are `None`.
    pub fn from_u16(v: u16) -> Option<Command> {
        use Command::*;
        Some(match v {
            0x00 => Negotiate,
            0x01 => SessionSetup,
            0x02 => Logoff,
            0x03 => TreeConnect,
            0x04 => TreeDisconnect,
            0x05 => Create,
            0x06 => Close,
            0x07 => Flush,
            0x08 => Read,
            0x09 => Write,
            0x0A => Lock,
            0x0B => Ioctl,
            0x0C => Cancel,
            0x0D => Echo,
            0x0E => QueryDirectory,
            0x0F => ChangeNotify,
            0x10 => QueryInfo,
            0x11 => SetInfo,
            0x12 => OplockBreak,
            _ => return None,
        })
    }
}

/// Header flags ([MS-SMB2] 2.2.1.2).
pub mod flags {
    pub const SERVER_TO_REDIR: u32 = 0x0000_0001;
    pub const ASYNC_COMMAND: u32 = 0x0000_0002;
    pub const RELATED_OPERATIONS: u32 = 0x0000_0004;
    pub const SIGNED: u32 = 0x0000_0008;
    pub const PRIORITY_MASK: u32 = 0x0000_0070;
    pub const DFS_OPERATIONS: u32 = 0x1000_0000;
    pub const REPLAY_OPERATION: u32 = 0x2000_0000;
}

/// A parsed SMB2 header. Sync and async forms share the struct: for an
/// async header `async_id` is set and `tree_id` is 0.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    pub credit_charge: u16,
    /// In a request from an SMB 3.x client: ChannelSequence (low 16 bits)
    /// and reserved. In a response: the NTSTATUS.
    pub status: u32,
    /// Raw command code (may be unknown).
    pub command: u16,
    pub credits: u16,
    pub flags: u32,
    pub next_command: u32,
    pub message_id: u64,
    pub async_id: u64,
    pub tree_id: u32,
    pub session_id: u64,
    pub signature: [u8; 16],
}

impl Header {
    /// Parses the 64-byte header at the start of `msg`.
    pub fn parse(msg: &[u8]) -> ParseResult<Header> {
        if msg.len() < HEADER_LEN {
            return Err(ParseError::Truncated("SMB2 header"));
        }
        if msg[0..4] != PROTOCOL_ID {
            return Err(ParseError::Invalid("protocol id"));
        }
        if le16(msg, 4) != 64 {
            return Err(ParseError::Invalid("header structure size"));
        }
        let flags = le32(msg, 16);
        let (async_id, tree_id) = if flags & flags::ASYNC_COMMAND != 0 {
            (le64(msg, 32), 0)
        } else {
            (0, le32(msg, 36))
        };
        let mut signature = [0u8; 16];
        signature.copy_from_slice(&msg[48..64]);
        Ok(Header {
            credit_charge: le16(msg, 6),
            status: le32(msg, 8),
            command: le16(msg, 12),
            credits: le16(msg, 14),
            flags,
            next_command: le32(msg, 20),
            message_id: le64(msg, 24),
            async_id,
            tree_id,
            session_id: le64(msg, 40),
            signature,
        })
    }

    /// The known command, if any.
    pub fn command(&self) -> Option<Command> {
        Command::from_u16(self.command)
    }

    /// ChannelSequence of an SMB 3.x request.
    pub fn channel_sequence(&self) -> u16 {
        self.status as u16
    }

    pub fn is_async(&self) -> bool {
        self.flags & flags::ASYNC_COMMAND != 0
    }

    pub fn is_related(&self) -> bool {
        self.flags & flags::RELATED_OPERATIONS != 0
    }

    pub fn is_signed(&self) -> bool {
        self.flags & flags::SIGNED != 0
    }

    /// Writes the 64 header bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&PROTOCOL_ID);
        out.put_u16_le(64);
        out.put_u16_le(self.credit_charge);
        out.put_u32_le(self.status);
        out.put_u16_le(self.command);
        out.put_u16_le(self.credits);
        out.put_u32_le(self.flags);
        out.put_u32_le(self.next_command);
        out.put_u64_le(self.message_id);
        if self.is_async() {
            out.put_u64_le(self.async_id);
        } else {
            out.put_u32_le(0);
            out.put_u32_le(self.tree_id);
        }
        out.put_u64_le(self.session_id);
        out.put_slice(&self.signature);
    }

    /// A response header for this request: same command, message id,
    /// session and tree, with the server-to-redirector flag.
    pub fn response(&self, status: NtStatus) -> Header {
        Header {
            credit_charge: self.credit_charge,
            status: status.0,
            command: self.command,
            credits: 0,
            flags: flags::SERVER_TO_REDIR
                | (self.flags & (flags::RELATED_OPERATIONS | flags::PRIORITY_MASK)),
            next_command: 0,
            message_id: self.message_id,
            async_id: 0,
            tree_id: self.tree_id,
            session_id: self.session_id,
            signature: [0; 16],
        }
    }
}

/// Little-endian reads at fixed offsets. Callers check bounds first.
pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The SMB2 ERROR response body ([MS-SMB2] 2.2.2), with no error data.
pub fn encode_error_body(out: &mut BytesMut) {
    out.put_u16_le(9);
    out.put_u8(0); // ErrorContextCount
    out.put_u8(0);
    out.put_u32_le(0); // ByteCount
    out.put_u8(0); // ErrorData (one byte required)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_sync_and_async() {
        for flags in [0, flags::ASYNC_COMMAND | flags::SERVER_TO_REDIR] {
            let h = Header {
                credit_charge: 1,
                status: 0x103,
                command: Command::Read as u16,
                credits: 10,
                flags,
                next_command: 0,
                message_id: 42,
                async_id: if flags != 0 { 7 } else { 0 },
                tree_id: if flags != 0 { 0 } else { 5 },
                session_id: 0x1122334455667788,
                signature: [9; 16],
            };
            let mut b = BytesMut::new();
            h.encode(&mut b);
            assert_eq!(b.len(), HEADER_LEN);
            assert_eq!(Header::parse(&b).unwrap(), h);
        }
    }

    #[test]
    fn rejects_short_and_foreign() {
        assert!(Header::parse(&[0xFE, b'S', b'M', b'B']).is_err());
        let mut b = vec![0u8; 64];
        b[0..4].copy_from_slice(b"\xffSMB");
        assert_eq!(Header::parse(&b), Err(ParseError::Invalid("protocol id")));
    }
}
