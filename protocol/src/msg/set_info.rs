//! SET_INFO request and response ([MS-SMB2] 2.2.39, 2.2.40).

use bytes::{BufMut, BytesMut};

use super::{fixed, FileId};
use crate::codec::slice_at;
use crate::error::ParseResult;
use crate::header::HEADER_LEN;

/// Offset of the request's Buffer: header + 32 fixed bytes (0x60).
const REQUEST_BUFFER_OFFSET: usize = HEADER_LEN + 32;

/// SMB2 SET_INFO request ([MS-SMB2] 2.2.39).
///
/// Format: `{ structure_size=33: u16 | info_type: u8 | file_info_class: u8 |
/// buffer_length: u32 | buffer_offset: u16 | _reserved: u16 |
/// additional_information: u32 | file_id: FileId | buffer }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetInfoRequest<'a> {
    /// [`super::query_info::info_type`].
    pub info_type: u8,
    pub file_info_class: u8,
    pub buffer: &'a [u8],
    /// [`super::query_info::additional_information`] for security.
    pub additional_information: u32,
    pub file_id: FileId,
}

impl<'a> SetInfoRequest<'a> {
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 33)?;
        let info_type = r.u8("info type")?;
        let file_info_class = r.u8("file info class")?;
        let len = r.u32("buffer length")? as usize;
        let off = r.u16("buffer offset")? as usize;
        r.u16("reserved")?;
        let additional_information = r.u32("additional information")?;
        let file_id = FileId::read(&mut r)?;
        let buffer = slice_at(msg, off, len, "set info buffer")?;
        Ok(SetInfoRequest { info_type, file_info_class, buffer, additional_information, file_id })
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(33);
        out.put_u8(self.info_type);
        out.put_u8(self.file_info_class);
        out.put_u32_le(self.buffer.len() as u32);
        out.put_u16_le(REQUEST_BUFFER_OFFSET as u16);
        out.put_u16_le(0);
        out.put_u32_le(self.additional_information);
        self.file_id.encode(out);
        out.put_slice(self.buffer);
        if self.buffer.is_empty() {
            out.put_u8(0);
        }
    }
}

/// SMB2 SET_INFO response ([MS-SMB2] 2.2.40).
///
/// Format: `{ structure_size=2: u16 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetInfoResponse;

impl SetInfoResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(2);
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        fixed(msg, 2).map(|_| SetInfoResponse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::query_info::info_type;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn request_roundtrip_and_truncation() {
        let req = SetInfoRequest {
            info_type: info_type::FILE,
            file_info_class: 0x14,
            buffer: &1234u64.to_le_bytes(),
            additional_information: 0,
            file_id: FileId { persistent: 5, volatile: 6 },
        };
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let msg = with_header(Command::SetInfo, &b);
        assert_eq!(SetInfoRequest::parse(&msg).unwrap(), req);
        prefixes_fail(&msg, msg.len(), SetInfoRequest::parse);
        let mut bad = msg.clone();
        bad[64 + 4..64 + 8].copy_from_slice(&9u32.to_le_bytes());
        assert!(SetInfoRequest::parse(&bad).is_err());
    }

    #[test]
    fn response_roundtrip() {
        let mut b = BytesMut::new();
        SetInfoResponse.encode(&mut b);
        assert_eq!(SetInfoResponse::parse(&with_header(Command::SetInfo, &b)).unwrap(), SetInfoResponse);
    }
}
