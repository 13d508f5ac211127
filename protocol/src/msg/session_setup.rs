//! SESSION_SETUP request and response ([MS-SMB2] 2.2.5, 2.2.6).
//!
//! The security buffer is a GSS-API token (SPNEGO wrapping NTLMSSP); the
//! [`crate::auth`] module reads it. Here it is only borrowed.

use bytes::{BufMut, BytesMut};

use super::fixed;
use crate::codec::slice_at;
use crate::error::ParseResult;
use crate::header::HEADER_LEN;

/// Flags of a SESSION_SETUP request ([MS-SMB2] 2.2.5).
pub mod setup_flags {
    /// Bind this session to a new channel (multichannel).
    pub const BINDING: u8 = 0x01;
}

/// SessionFlags of a SESSION_SETUP response ([MS-SMB2] 2.2.6).
pub mod session_flags {
    pub const IS_GUEST: u16 = 0x0001;
    pub const IS_NULL: u16 = 0x0002;
    pub const ENCRYPT_DATA: u16 = 0x0004;
}

/// Offset of the request's buffer: header + 24 fixed bytes.
const REQUEST_BUFFER_OFFSET: usize = HEADER_LEN + 24;
/// Offset of the response's buffer: header + 8 fixed bytes.
const RESPONSE_BUFFER_OFFSET: usize = HEADER_LEN + 8;

/// SMB2 SESSION_SETUP request ([MS-SMB2] 2.2.5).
///
/// Format: `{ structure_size=25: u16 | flags: u8 | security_mode: u8 |
/// capabilities: u32 | channel: u32 | security_buffer_offset: u16 |
/// security_buffer_length: u16 | previous_session_id: u64 | buffer }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSetupRequest<'a> {
    /// [`setup_flags`].
    pub flags: u8,
    /// [`super::negotiate::security_mode`] bits (as a byte).
    pub security_mode: u8,
    /// [`super::negotiate::capabilities`]; only DFS is meaningful.
    pub capabilities: u32,
    /// Must be 0.
    pub channel: u32,
    pub previous_session_id: u64,
    pub security_buffer: &'a [u8],
}

impl<'a> SessionSetupRequest<'a> {
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 25)?;
        let flags = r.u8("flags")?;
        let security_mode = r.u8("security mode")?;
        let capabilities = r.u32("capabilities")?;
        let channel = r.u32("channel")?;
        let off = r.u16("security buffer offset")? as usize;
        let len = r.u16("security buffer length")? as usize;
        let previous_session_id = r.u64("previous session id")?;
        let security_buffer = slice_at(msg, off, len, "security buffer")?;
        Ok(SessionSetupRequest { flags, security_mode, capabilities, channel, previous_session_id, security_buffer })
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(25);
        out.put_u8(self.flags);
        out.put_u8(self.security_mode);
        out.put_u32_le(self.capabilities);
        out.put_u32_le(self.channel);
        out.put_u16_le(REQUEST_BUFFER_OFFSET as u16);
        out.put_u16_le(self.security_buffer.len() as u16);
        out.put_u64_le(self.previous_session_id);
        out.put_slice(self.security_buffer);
        if self.security_buffer.is_empty() {
            out.put_u8(0);
        }
    }
}

/// SMB2 SESSION_SETUP response ([MS-SMB2] 2.2.6).
///
/// Format: `{ structure_size=9: u16 | session_flags: u16 |
/// security_buffer_offset: u16 | security_buffer_length: u16 | buffer }`
///
/// An empty security buffer is sent as one zero byte (offset 0x48, length 0),
/// so the body is never shorter than its StructureSize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSetupResponse<'a> {
    /// [`session_flags`].
    pub session_flags: u16,
    pub security_buffer: &'a [u8],
}

impl<'a> SessionSetupResponse<'a> {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(9);
        out.put_u16_le(self.session_flags);
        out.put_u16_le(RESPONSE_BUFFER_OFFSET as u16);
        out.put_u16_le(self.security_buffer.len() as u16);
        out.put_slice(self.security_buffer);
        if self.security_buffer.is_empty() {
            out.put_u8(0);
        }
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 9)?;
        let session_flags = r.u16("session flags")?;
        let off = r.u16("security buffer offset")? as usize;
        let len = r.u16("security buffer length")? as usize;
        let security_buffer = slice_at(msg, off, len, "security buffer")?;
        Ok(SessionSetupResponse { session_flags, security_buffer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn request_roundtrip_and_truncation() {
        let req = SessionSetupRequest {
            flags: setup_flags::BINDING,
            security_mode: 1,
            capabilities: 1,
            channel: 0,
            previous_session_id: 0x1234,
            security_buffer: b"\x60\x48NTLMSSP\0",
        };
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let msg = with_header(Command::SessionSetup, &b);
        assert_eq!(SessionSetupRequest::parse(&msg).unwrap(), req);
        prefixes_fail(&msg, msg.len(), SessionSetupRequest::parse);
    }

    #[test]
    fn request_buffer_out_of_bounds() {
        let req = SessionSetupRequest {
            flags: 0,
            security_mode: 1,
            capabilities: 0,
            channel: 0,
            previous_session_id: 0,
            security_buffer: b"abcd",
        };
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let mut msg = with_header(Command::SessionSetup, &b);
        msg[64 + 12] = 0x10; // offset into the header
        assert!(SessionSetupRequest::parse(&msg).is_err());
        msg[64 + 12] = 0xFF; // past the end
        assert!(SessionSetupRequest::parse(&msg).is_err());
    }

    #[test]
    fn response_roundtrip() {
        for blob in [&b""[..], b"\xa1\x07blob"] {
            let resp = SessionSetupResponse { session_flags: session_flags::IS_GUEST, security_buffer: blob };
            let mut b = BytesMut::new();
            resp.encode(&mut b);
            assert!(b.len() >= 9);
            assert_eq!(SessionSetupResponse::parse(&with_header(Command::SessionSetup, &b)).unwrap(), resp);
        }
    }
}
