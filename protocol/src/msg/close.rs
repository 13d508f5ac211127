//! CLOSE request and response ([MS-SMB2] 2.2.15, 2.2.16).

use bytes::{BufMut, BytesMut};

use super::{fixed, FileId};
use crate::error::ParseResult;

/// Flags of CLOSE ([MS-SMB2] 2.2.15).
pub mod close_flags {
    /// Return the file's attributes in the response.
    pub const POSTQUERY_ATTRIB: u16 = 0x0001;
}

/// SMB2 CLOSE request ([MS-SMB2] 2.2.15).
///
/// Format: `{ structure_size=24: u16 | flags: u16 | _reserved: u32 | file_id: FileId }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseRequest {
    /// [`close_flags`].
    pub flags: u16,
    pub file_id: FileId,
}

impl CloseRequest {
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 24)?;
        let flags = r.u16("flags")?;
        r.u32("reserved")?;
        Ok(CloseRequest { flags, file_id: FileId::read(&mut r)? })
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(24);
        out.put_u16_le(self.flags);
        out.put_u32_le(0);
        self.file_id.encode(out);
    }
}

/// The attributes a CLOSE response carries with POSTQUERY_ATTRIB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloseAttributes {
    /// FILETIMEs.
    pub creation_time: u64,
    pub last_access_time: u64,
    pub last_write_time: u64,
    pub change_time: u64,
    pub allocation_size: u64,
    pub end_of_file: u64,
    /// [`super::create::file_attributes`].
    pub file_attributes: u32,
}

/// SMB2 CLOSE response ([MS-SMB2] 2.2.16).
///
/// Format: `{ structure_size=60: u16 | flags: u16 | _reserved: u32 |
/// creation_time: u64 | last_access_time: u64 | last_write_time: u64 |
/// change_time: u64 | allocation_size: u64 | end_of_file: u64 |
/// file_attributes: u32 }`
///
/// `attributes: None` writes flags 0 and zeros, as the spec asks when the
/// request lacked POSTQUERY_ATTRIB; `Some` sets POSTQUERY_ATTRIB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseResponse {
    pub attributes: Option<CloseAttributes>,
}

impl CloseResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        let a = self.attributes.unwrap_or_default();
        out.put_u16_le(60);
        out.put_u16_le(if self.attributes.is_some() { close_flags::POSTQUERY_ATTRIB } else { 0 });
        out.put_u32_le(0);
        out.put_u64_le(a.creation_time);
        out.put_u64_le(a.last_access_time);
        out.put_u64_le(a.last_write_time);
        out.put_u64_le(a.change_time);
        out.put_u64_le(a.allocation_size);
        out.put_u64_le(a.end_of_file);
        out.put_u32_le(a.file_attributes);
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 60)?;
        let flags = r.u16("flags")?;
        r.u32("reserved")?;
        let a = CloseAttributes {
            creation_time: r.u64("creation time")?,
            last_access_time: r.u64("last access time")?,
            last_write_time: r.u64("last write time")?,
            change_time: r.u64("change time")?,
            allocation_size: r.u64("allocation size")?,
            end_of_file: r.u64("end of file")?,
            file_attributes: r.u32("file attributes")?,
        };
        Ok(CloseResponse { attributes: (flags & close_flags::POSTQUERY_ATTRIB != 0).then_some(a) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn request_roundtrip_and_truncation() {
        let req = CloseRequest { flags: close_flags::POSTQUERY_ATTRIB, file_id: FileId::ANY };
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let msg = with_header(Command::Close, &b);
        assert_eq!(CloseRequest::parse(&msg).unwrap(), req);
        prefixes_fail(&msg, msg.len(), CloseRequest::parse);
    }

    #[test]
    fn response_roundtrip() {
        for attributes in [
            None,
            Some(CloseAttributes {
                creation_time: 1,
                last_access_time: 2,
                last_write_time: 3,
                change_time: 4,
                allocation_size: 5,
                end_of_file: 6,
                file_attributes: 0x20,
            }),
        ] {
            let resp = CloseResponse { attributes };
            let mut b = BytesMut::new();
            resp.encode(&mut b);
            assert_eq!(b.len(), 60);
            assert_eq!(CloseResponse::parse(&with_header(Command::Close, &b)).unwrap(), resp);
        }
    }
}
