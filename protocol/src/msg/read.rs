//! READ request and response ([MS-SMB2] 2.2.19, 2.2.20).

use bytes::{BufMut, BytesMut};

use super::{fixed, FileId};
use crate::codec::slice_at;
use crate::error::ParseResult;
use crate::header::HEADER_LEN;

/// Flags of a READ request ([MS-SMB2] 2.2.19).
pub mod read_flags {
    pub const UNBUFFERED: u8 = 0x01;
    pub const REQUEST_COMPRESSED: u8 = 0x02;
}

/// Channel values of READ and WRITE ([MS-SMB2] 2.2.19, 2.2.21).
pub mod channel {
    pub const NONE: u32 = 0x0000_0000;
    pub const RDMA_V1: u32 = 0x0000_0001;
    pub const RDMA_V1_INVALIDATE: u32 = 0x0000_0002;
    pub const RDMA_TRANSFORM: u32 = 0x0000_0003;
}

/// Offset of the request's Buffer: header + 48 fixed bytes (0x70).
const REQUEST_BUFFER_OFFSET: usize = HEADER_LEN + 48;
/// Offset of the response's data: header + 16 fixed bytes (0x50).
pub const RESPONSE_DATA_OFFSET: usize = HEADER_LEN + 16;

/// SMB2 READ request ([MS-SMB2] 2.2.19).
///
/// Format: `{ structure_size=49: u16 | padding: u8 | flags: u8 |
/// length: u32 | offset: u64 | file_id: FileId | minimum_count: u32 |
/// channel: u32 | remaining_bytes: u32 | read_channel_info_offset: u16 |
/// read_channel_info_length: u16 | buffer }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest<'a> {
    /// Where the client wants the data in the response (offset from the
    /// header); Windows asks for 0x50 and servers may ignore it.
    pub padding: u8,
    /// [`read_flags`] (SMB 3.0.2+).
    pub flags: u8,
    pub length: u32,
    pub offset: u64,
    pub file_id: FileId,
    pub minimum_count: u32,
    /// [`channel`].
    pub channel: u32,
    pub remaining_bytes: u32,
    /// RDMA descriptors when `channel` is RDMA; empty otherwise.
    pub read_channel_info: &'a [u8],
}

impl<'a> ReadRequest<'a> {
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 49)?;
        let padding = r.u8("padding")?;
        let flags = r.u8("flags")?;
        let length = r.u32("length")?;
        let offset = r.u64("offset")?;
        let file_id = FileId::read(&mut r)?;
        let minimum_count = r.u32("minimum count")?;
        let channel = r.u32("channel")?;
        let remaining_bytes = r.u32("remaining bytes")?;
        let info_off = r.u16("read channel info offset")? as usize;
        let info_len = r.u16("read channel info length")? as usize;
        let read_channel_info = slice_at(msg, info_off, info_len, "read channel info")?;
        Ok(ReadRequest {
            padding,
            flags,
            length,
            offset,
            file_id,
            minimum_count,
            channel,
            remaining_bytes,
            read_channel_info,
        })
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(49);
        out.put_u8(self.padding);
        out.put_u8(self.flags);
        out.put_u32_le(self.length);
        out.put_u64_le(self.offset);
        self.file_id.encode(out);
        out.put_u32_le(self.minimum_count);
        out.put_u32_le(self.channel);
        out.put_u32_le(self.remaining_bytes);
        let info_len = self.read_channel_info.len();
        out.put_u16_le(if info_len == 0 { 0 } else { REQUEST_BUFFER_OFFSET as u16 });
        out.put_u16_le(info_len as u16);
        if info_len == 0 {
            out.put_u8(0);
        } else {
            out.put_slice(self.read_channel_info);
        }
    }
}

/// SMB2 READ response ([MS-SMB2] 2.2.20).
///
/// Format: `{ structure_size=17: u16 | data_offset: u8 | _reserved: u8 |
/// data_length: u32 | data_remaining: u32 | flags: u32 | buffer }`
///
/// The data sits at 0x50. To avoid copying file data, the server may write
/// the fixed part with [`ReadResponse::encode_header`] and append the data
/// itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResponse<'a> {
    pub data: &'a [u8],
    /// Bytes left to read on an RDMA channel; 0 otherwise.
    pub data_remaining: u32,
}

impl<'a> ReadResponse<'a> {
    pub fn encode(&self, out: &mut BytesMut) {
        ReadResponse::encode_header(self.data.len() as u32, self.data_remaining, out);
        out.put_slice(self.data);
    }

    /// Writes the 16 fixed bytes of a response whose `data_len` bytes of
    /// data the caller appends right after. With `data_len == 0` it also
    /// writes the one padding byte that stands in for the empty buffer, so
    /// the caller appends nothing.
    pub fn encode_header(data_len: u32, data_remaining: u32, out: &mut BytesMut) {
        out.put_u16_le(17);
        out.put_u8(RESPONSE_DATA_OFFSET as u8);
        out.put_u8(0);
        out.put_u32_le(data_len);
        out.put_u32_le(data_remaining);
        out.put_u32_le(0);
        if data_len == 0 {
            out.put_u8(0);
        }
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 17)?;
        let off = r.u8("data offset")? as usize;
        r.u8("reserved")?;
        let len = r.u32("data length")? as usize;
        let data_remaining = r.u32("data remaining")?;
        r.u32("flags")?;
        Ok(ReadResponse { data: slice_at(msg, off, len, "read data")?, data_remaining })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn request_roundtrip_and_truncation() {
        for info in [&b""[..], &[1u8; 16][..]] {
            let req = ReadRequest {
                padding: 0x50,
                flags: 0,
                length: 65536,
                offset: 1 << 40,
                file_id: FileId { persistent: 3, volatile: 4 },
                minimum_count: 1,
                channel: if info.is_empty() { channel::NONE } else { channel::RDMA_V1 },
                remaining_bytes: 0,
                read_channel_info: info,
            };
            let mut b = BytesMut::new();
            req.encode(&mut b);
            let msg = with_header(Command::Read, &b);
            assert_eq!(ReadRequest::parse(&msg).unwrap(), req);
            prefixes_fail(&msg, HEADER_LEN + 48 + info.len(), ReadRequest::parse);
        }
    }

    #[test]
    fn response_roundtrip_and_zero_copy_header() {
        let resp = ReadResponse { data: b"hello", data_remaining: 0 };
        let mut b = BytesMut::new();
        resp.encode(&mut b);
        let mut z = BytesMut::new();
        ReadResponse::encode_header(5, 0, &mut z);
        z.extend_from_slice(b"hello");
        assert_eq!(b, z);
        assert_eq!(ReadResponse::parse(&with_header(Command::Read, &b)).unwrap(), resp);
        let empty = ReadResponse { data: b"", data_remaining: 0 };
        let mut b = BytesMut::new();
        empty.encode(&mut b);
        assert_eq!(b.len(), 17);
        assert_eq!(ReadResponse::parse(&with_header(Command::Read, &b)).unwrap(), empty);
    }
}
