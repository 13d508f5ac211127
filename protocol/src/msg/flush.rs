//! FLUSH request and response ([MS-SMB2] 2.2.17, 2.2.18).

use bytes::{BufMut, BytesMut};

use super::{encode_empty4, fixed, parse_empty4, FileId};
use crate::error::ParseResult;

/// SMB2 FLUSH request ([MS-SMB2] 2.2.17).
///
/// Format: `{ structure_size=24: u16 | _reserved1: u16 | _reserved2: u32 | file_id: FileId }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushRequest {
    pub file_id: FileId,
}

impl FlushRequest {
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 24)?;
        r.skip(6, "reserved")?;
        Ok(FlushRequest { file_id: FileId::read(&mut r)? })
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(24);
        out.put_u16_le(0);
        out.put_u32_le(0);
        self.file_id.encode(out);
    }
}

/// SMB2 FLUSH response ([MS-SMB2] 2.2.18).
///
/// Format: `{ structure_size=4: u16 | _reserved: u16 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushResponse;

impl FlushResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        encode_empty4(out)
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        parse_empty4(msg).map(|()| FlushResponse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn roundtrip_and_truncation() {
        let req = FlushRequest { file_id: FileId { persistent: 1, volatile: 2 } };
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let msg = with_header(Command::Flush, &b);
        assert_eq!(FlushRequest::parse(&msg).unwrap(), req);
        prefixes_fail(&msg, msg.len(), FlushRequest::parse);
        let mut b = BytesMut::new();
        FlushResponse.encode(&mut b);
        assert_eq!(FlushResponse::parse(&with_header(Command::Flush, &b)).unwrap(), FlushResponse);
    }
}
