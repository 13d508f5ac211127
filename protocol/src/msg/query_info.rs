//! QUERY_INFO request and response ([MS-SMB2] 2.2.37, 2.2.38).
//!
//! The info classes themselves are encoded by [`crate::fscc`].

use bytes::{BufMut, BytesMut};

use super::{encode_output_header, fixed, parse_output_buffer, FileId};
use crate::codec::slice_at;
use crate::error::ParseResult;
use crate::header::HEADER_LEN;

/// InfoType of QUERY_INFO and SET_INFO ([MS-SMB2] 2.2.37).
pub mod info_type {
    pub const FILE: u8 = 0x01;
    pub const FILESYSTEM: u8 = 0x02;
    pub const SECURITY: u8 = 0x03;
    pub const QUOTA: u8 = 0x04;
}

/// AdditionalInformation bits for security queries ([MS-SMB2] 2.2.37).
pub mod additional_information {
    pub const OWNER_SECURITY_INFORMATION: u32 = 0x0000_0001;
    pub const GROUP_SECURITY_INFORMATION: u32 = 0x0000_0002;
    pub const DACL_SECURITY_INFORMATION: u32 = 0x0000_0004;
    pub const SACL_SECURITY_INFORMATION: u32 = 0x0000_0008;
    pub const LABEL_SECURITY_INFORMATION: u32 = 0x0000_0010;
    pub const ATTRIBUTE_SECURITY_INFORMATION: u32 = 0x0000_0020;
    pub const SCOPE_SECURITY_INFORMATION: u32 = 0x0000_0040;
    pub const BACKUP_SECURITY_INFORMATION: u32 = 0x0001_0000;
}

/// Flags of QUERY_INFO ([MS-SMB2] 2.2.37), for quota and EA queries.
pub mod query_info_flags {
    pub const RESTART_SCAN: u32 = 0x0000_0001;
    pub const RETURN_SINGLE_ENTRY: u32 = 0x0000_0002;
    pub const INDEX_SPECIFIED: u32 = 0x0000_0004;
}

/// Offset of the request's Buffer: header + 40 fixed bytes (0x68).
const REQUEST_BUFFER_OFFSET: usize = HEADER_LEN + 40;

/// SMB2 QUERY_INFO request ([MS-SMB2] 2.2.37).
///
/// Format: `{ structure_size=41: u16 | info_type: u8 | file_info_class: u8 |
/// output_buffer_length: u32 | input_buffer_offset: u16 | _reserved: u16 |
/// input_buffer_length: u32 | additional_information: u32 | flags: u32 |
/// file_id: FileId | buffer }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryInfoRequest<'a> {
    /// [`info_type`].
    pub info_type: u8,
    /// An [MS-FSCC] 2.4 / 2.5 class; 0 for security.
    pub file_info_class: u8,
    pub output_buffer_length: u32,
    /// SMB2_QUERY_QUOTA_INFO or FILE_GET_EA_INFORMATION list; usually empty.
    pub input_buffer: &'a [u8],
    /// [`additional_information`] for security; EA index otherwise.
    pub additional_information: u32,
    /// [`query_info_flags`].
    pub flags: u32,
    pub file_id: FileId,
}

impl<'a> QueryInfoRequest<'a> {
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 41)?;
        let info_type = r.u8("info type")?;
        let file_info_class = r.u8("file info class")?;
        let output_buffer_length = r.u32("output buffer length")?;
        let in_off = r.u16("input buffer offset")? as usize;
        r.u16("reserved")?;
        let in_len = r.u32("input buffer length")? as usize;
        let additional_information = r.u32("additional information")?;
        let flags = r.u32("flags")?;
        let file_id = FileId::read(&mut r)?;
        let input_buffer = slice_at(msg, in_off, in_len, "query info input buffer")?;
        Ok(QueryInfoRequest {
            info_type,
            file_info_class,
            output_buffer_length,
            input_buffer,
            additional_information,
            flags,
            file_id,
        })
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(41);
        out.put_u8(self.info_type);
        out.put_u8(self.file_info_class);
        out.put_u32_le(self.output_buffer_length);
        out.put_u16_le(if self.input_buffer.is_empty() { 0 } else { REQUEST_BUFFER_OFFSET as u16 });
        out.put_u16_le(0);
        out.put_u32_le(self.input_buffer.len() as u32);
        out.put_u32_le(self.additional_information);
        out.put_u32_le(self.flags);
        self.file_id.encode(out);
        out.put_slice(self.input_buffer);
        if self.input_buffer.is_empty() {
            out.put_u8(0);
        }
    }
}

/// SMB2 QUERY_INFO response ([MS-SMB2] 2.2.38).
///
/// Format: `{ structure_size=9: u16 | output_buffer_offset: u16 |
/// output_buffer_length: u32 | buffer }`, the buffer at 0x48.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryInfoResponse<'a> {
    pub output_buffer: &'a [u8],
}

impl<'a> QueryInfoResponse<'a> {
    pub fn encode(&self, out: &mut BytesMut) {
        Self::encode_header(self.output_buffer.len() as u32, out);
        out.put_slice(self.output_buffer);
    }

    /// Writes the 8 fixed bytes; the caller appends `len` bytes (with
    /// `len == 0` the padding byte is written here).
    pub fn encode_header(len: u32, out: &mut BytesMut) {
        encode_output_header(len, out)
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        Ok(QueryInfoResponse { output_buffer: parse_output_buffer(msg)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn request_roundtrip_and_truncation() {
        for input in [&b""[..], b"\0\0\0\0\x04\0\0\0sid!"] {
            let req = QueryInfoRequest {
                info_type: info_type::SECURITY,
                file_info_class: 0,
                output_buffer_length: 4096,
                input_buffer: input,
                additional_information: additional_information::DACL_SECURITY_INFORMATION,
                flags: 0,
                file_id: FileId { persistent: 9, volatile: 10 },
            };
            let mut b = BytesMut::new();
            req.encode(&mut b);
            let msg = with_header(Command::QueryInfo, &b);
            assert_eq!(QueryInfoRequest::parse(&msg).unwrap(), req);
            prefixes_fail(&msg, HEADER_LEN + 40 + input.len(), QueryInfoRequest::parse);
        }
    }

    #[test]
    fn response_roundtrip() {
        for buf in [&b""[..], b"info"] {
            let resp = QueryInfoResponse { output_buffer: buf };
            let mut b = BytesMut::new();
            resp.encode(&mut b);
            assert_eq!(QueryInfoResponse::parse(&with_header(Command::QueryInfo, &b)).unwrap(), resp);
        }
    }
}
