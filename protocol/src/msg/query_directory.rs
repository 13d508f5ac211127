//! QUERY_DIRECTORY request and response ([MS-SMB2] 2.2.33, 2.2.34).
//!
//! The entries of the output buffer (FileIdBothDirectoryInformation and
//! friends) are built by [`crate::fscc`].

use bytes::{BufMut, BytesMut};

use super::{encode_output_header, fixed, parse_output_buffer, FileId};
use crate::codec::{put_utf16le, slice_at, utf16_len, utf16le};
use crate::error::ParseResult;
use crate::header::HEADER_LEN;

/// Flags of QUERY_DIRECTORY ([MS-SMB2] 2.2.33).
pub mod query_directory_flags {
    pub const RESTART_SCANS: u8 = 0x01;
    pub const RETURN_SINGLE_ENTRY: u8 = 0x02;
    pub const INDEX_SPECIFIED: u8 = 0x04;
    pub const REOPEN: u8 = 0x10;
}

/// Offset of the request's Buffer: header + 32 fixed bytes (0x60).
const REQUEST_BUFFER_OFFSET: usize = HEADER_LEN + 32;

/// SMB2 QUERY_DIRECTORY request ([MS-SMB2] 2.2.33).
///
/// Format: `{ structure_size=33: u16 | file_information_class: u8 |
/// flags: u8 | file_index: u32 | file_id: FileId | file_name_offset: u16 |
/// file_name_length: u16 | output_buffer_length: u32 | buffer }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryDirectoryRequest {
    /// An [MS-FSCC] 2.4 directory information class.
    pub file_information_class: u8,
    /// [`query_directory_flags`].
    pub flags: u8,
    pub file_index: u32,
    pub file_id: FileId,
    /// The search pattern (`*`, `foo*.txt`); may be empty.
    pub file_name: String,
    pub output_buffer_length: u32,
}

impl QueryDirectoryRequest {
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 33)?;
        let file_information_class = r.u8("file information class")?;
        let flags = r.u8("flags")?;
        let file_index = r.u32("file index")?;
        let file_id = FileId::read(&mut r)?;
        let name_off = r.u16("file name offset")? as usize;
        let name_len = r.u16("file name length")? as usize;
        let output_buffer_length = r.u32("output buffer length")?;
        let file_name = utf16le(slice_at(msg, name_off, name_len, "file name")?, "file name")?;
        Ok(QueryDirectoryRequest { file_information_class, flags, file_index, file_id, file_name, output_buffer_length })
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        let name_len = utf16_len(&self.file_name);
        out.put_u16_le(33);
        out.put_u8(self.file_information_class);
        out.put_u8(self.flags);
        out.put_u32_le(self.file_index);
        self.file_id.encode(out);
        out.put_u16_le(REQUEST_BUFFER_OFFSET as u16);
        out.put_u16_le(name_len as u16);
        out.put_u32_le(self.output_buffer_length);
        put_utf16le(&self.file_name, out);
        if name_len == 0 {
            out.put_u8(0);
        }
    }
}

/// SMB2 QUERY_DIRECTORY response ([MS-SMB2] 2.2.34).
///
/// Format: `{ structure_size=9: u16 | output_buffer_offset: u16 |
/// output_buffer_length: u32 | buffer }`, the buffer at 0x48.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryDirectoryResponse<'a> {
    pub output_buffer: &'a [u8],
}

impl<'a> QueryDirectoryResponse<'a> {
    pub fn encode(&self, out: &mut BytesMut) {
        Self::encode_header(self.output_buffer.len() as u32, out);
        out.put_slice(self.output_buffer);
    }

    /// Writes the 8 fixed bytes; the caller appends `len` bytes of entries
    /// (with `len == 0` the padding byte is written here).
    pub fn encode_header(len: u32, out: &mut BytesMut) {
        encode_output_header(len, out)
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        Ok(QueryDirectoryResponse { output_buffer: parse_output_buffer(msg)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn request_roundtrip_and_truncation() {
        for pattern in ["*", ""] {
            let req = QueryDirectoryRequest {
                file_information_class: 0x25,
                flags: query_directory_flags::RESTART_SCANS,
                file_index: 0,
                file_id: FileId { persistent: 1, volatile: 2 },
                file_name: pattern.into(),
                output_buffer_length: 65536,
            };
            let mut b = BytesMut::new();
            req.encode(&mut b);
            let msg = with_header(Command::QueryDirectory, &b);
            assert_eq!(QueryDirectoryRequest::parse(&msg).unwrap(), req);
            prefixes_fail(&msg, HEADER_LEN + 32 + utf16_len(pattern), QueryDirectoryRequest::parse);
        }
    }

    #[test]
    fn response_roundtrip() {
        for buf in [&b""[..], b"entries"] {
            let resp = QueryDirectoryResponse { output_buffer: buf };
            let mut b = BytesMut::new();
            resp.encode(&mut b);
            assert!(b.len() >= 9);
            assert_eq!(QueryDirectoryResponse::parse(&with_header(Command::QueryDirectory, &b)).unwrap(), resp);
        }
    }
}
