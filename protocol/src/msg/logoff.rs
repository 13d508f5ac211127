//! LOGOFF request and response ([MS-SMB2] 2.2.7, 2.2.8): bodies with nothing
//! but a StructureSize of 4.

use bytes::BytesMut;

use super::{encode_empty4, parse_empty4};
use crate::error::ParseResult;

/// SMB2 LOGOFF request ([MS-SMB2] 2.2.7).
///
/// Format: `{ structure_size=4: u16 | _reserved: u16 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoffRequest;

impl LogoffRequest {
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        parse_empty4(msg).map(|()| LogoffRequest)
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        encode_empty4(out)
    }
}

/// SMB2 LOGOFF response ([MS-SMB2] 2.2.8).
///
/// Format: `{ structure_size=4: u16 | _reserved: u16 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoffResponse;

impl LogoffResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        encode_empty4(out)
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        parse_empty4(msg).map(|()| LogoffResponse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn roundtrip_and_truncation() {
        let mut b = BytesMut::new();
        LogoffRequest.encode(&mut b);
        let msg = with_header(Command::Logoff, &b);
        assert_eq!(LogoffRequest::parse(&msg).unwrap(), LogoffRequest);
        prefixes_fail(&msg, msg.len(), LogoffRequest::parse);
        let mut b = BytesMut::new();
        LogoffResponse.encode(&mut b);
        let msg = with_header(Command::Logoff, &b);
        assert_eq!(LogoffResponse::parse(&msg).unwrap(), LogoffResponse);
        let mut bad = msg.clone();
        bad[64] = 5;
        assert!(LogoffRequest::parse(&bad).is_err());
    }
}
