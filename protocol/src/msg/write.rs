//! WRITE request and response ([MS-SMB2] 2.2.21, 2.2.22).

use bytes::{BufMut, BytesMut};

use super::{fixed, FileId};
use crate::codec::slice_at;
use crate::error::ParseResult;
use crate::header::HEADER_LEN;

/// Flags of a WRITE request ([MS-SMB2] 2.2.21).
pub mod write_flags {
    pub const WRITE_THROUGH: u32 = 0x0000_0001;
    pub const WRITE_UNBUFFERED: u32 = 0x0000_0002;
}

/// Offset of the request's Buffer: header + 48 fixed bytes (0x70).
const REQUEST_BUFFER_OFFSET: usize = HEADER_LEN + 48;

/// SMB2 WRITE request ([MS-SMB2] 2.2.21).
///
/// Format: `{ structure_size=49: u16 | data_offset: u16 | length: u32 |
/// offset: u64 | file_id: FileId | channel: u32 | remaining_bytes: u32 |
/// write_channel_info_offset: u16 | write_channel_info_length: u16 |
/// flags: u32 | buffer }`
///
/// `data` borrows the message. On an RDMA channel `data` is empty and the
/// descriptors are in `write_channel_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest<'a> {
    pub offset: u64,
    pub file_id: FileId,
    /// [`super::read::channel`].
    pub channel: u32,
    pub remaining_bytes: u32,
    /// [`write_flags`].
    pub flags: u32,
    pub data: &'a [u8],
    pub write_channel_info: &'a [u8],
}

impl<'a> WriteRequest<'a> {
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 49)?;
        let data_offset = r.u16("data offset")? as usize;
        let length = r.u32("length")? as usize;
        let offset = r.u64("offset")?;
        let file_id = FileId::read(&mut r)?;
        let channel = r.u32("channel")?;
        let remaining_bytes = r.u32("remaining bytes")?;
        let info_off = r.u16("write channel info offset")? as usize;
        let info_len = r.u16("write channel info length")? as usize;
        let flags = r.u32("flags")?;
        let data = slice_at(msg, data_offset, length, "write data")?;
        let write_channel_info = slice_at(msg, info_off, info_len, "write channel info")?;
        Ok(WriteRequest { offset, file_id, channel, remaining_bytes, flags, data, write_channel_info })
    }

    /// The fixed part of a WRITE whose data is not in `msg` (a server that
    /// reads the data straight into its file): the request with no `data`
    /// and no channel information, and the Length of its data. Only for a
    /// request whose data starts right after the fixed part, at 0x70, and
    /// that has no channel information; anything else is refused.
    pub fn parse_head(msg: &'a [u8]) -> ParseResult<(Self, usize)> {
        let mut r = fixed(msg, 49)?;
        let data_offset = r.u16("data offset")? as usize;
        let length = r.u32("length")? as usize;
        let offset = r.u64("offset")?;
        let file_id = FileId::read(&mut r)?;
        let channel = r.u32("channel")?;
        let remaining_bytes = r.u32("remaining bytes")?;
        let info_off = r.u16("write channel info offset")?;
        let info_len = r.u16("write channel info length")?;
        let flags = r.u32("flags")?;
        if data_offset != REQUEST_BUFFER_OFFSET || info_off != 0 || info_len != 0 {
            return Err(crate::error::ParseError::Invalid("write head with its data elsewhere"));
        }
        Ok((
            WriteRequest { offset, file_id, channel, remaining_bytes, flags, data: &[], write_channel_info: &[] },
            length,
        ))
    }

    /// Encodes the body (client side; tests and the fuzzer). The data
    /// comes first at 0x70, then the channel info.
    pub fn encode(&self, out: &mut BytesMut) {
        let info_at = REQUEST_BUFFER_OFFSET + self.data.len();
        out.put_u16_le(49);
        out.put_u16_le(REQUEST_BUFFER_OFFSET as u16);
        out.put_u32_le(self.data.len() as u32);
        out.put_u64_le(self.offset);
        self.file_id.encode(out);
        out.put_u32_le(self.channel);
        out.put_u32_le(self.remaining_bytes);
        out.put_u16_le(if self.write_channel_info.is_empty() { 0 } else { info_at as u16 });
        out.put_u16_le(self.write_channel_info.len() as u16);
        out.put_u32_le(self.flags);
        out.put_slice(self.data);
        out.put_slice(self.write_channel_info);
        if self.data.is_empty() && self.write_channel_info.is_empty() {
            out.put_u8(0);
        }
    }
}

/// SMB2 WRITE response ([MS-SMB2] 2.2.22).
///
/// Format: `{ structure_size=17: u16 | _reserved: u16 | count: u32 |
/// remaining: u32 | write_channel_info_offset: u16 |
/// write_channel_info_length: u16 }` plus one padding byte for the empty
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteResponse {
    /// Bytes written.
    pub count: u32,
}

impl WriteResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(17);
        out.put_u16_le(0);
        out.put_u32_le(self.count);
        out.put_u32_le(0);
        out.put_u16_le(0);
        out.put_u16_le(0);
        out.put_u8(0);
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 17)?;
        r.u16("reserved")?;
        let count = r.u32("count")?;
        r.skip(8, "write response")?;
        Ok(WriteResponse { count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn request_roundtrip_and_truncation() {
        let req = WriteRequest {
            offset: 4096,
            file_id: FileId { persistent: 1, volatile: 2 },
            channel: 0,
            remaining_bytes: 0,
            flags: write_flags::WRITE_THROUGH,
            data: b"some bytes to write",
            write_channel_info: b"",
        };
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let msg = with_header(Command::Write, &b);
        let back = WriteRequest::parse(&msg).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.data.as_ptr(), msg[0x70..].as_ptr());
        prefixes_fail(&msg, msg.len(), WriteRequest::parse);
    }

    #[test]
    fn data_out_of_bounds() {
        let req = WriteRequest {
            offset: 0,
            file_id: FileId::default(),
            channel: 0,
            remaining_bytes: 0,
            flags: 0,
            data: b"x",
            write_channel_info: b"",
        };
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let mut msg = with_header(Command::Write, &b);
        msg[68..72].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(WriteRequest::parse(&msg).is_err());
    }

    #[test]
    fn response_roundtrip() {
        let resp = WriteResponse { count: 19 };
        let mut b = BytesMut::new();
        resp.encode(&mut b);
        assert_eq!(WriteResponse::parse(&with_header(Command::Write, &b)).unwrap(), resp);
    }
}
