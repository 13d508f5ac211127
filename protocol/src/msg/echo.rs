//! ECHO request and response ([MS-SMB2] 2.2.28, 2.2.29): bodies with nothing
//! but a StructureSize of 4.

use bytes::BytesMut;

use super::{encode_empty4, parse_empty4};
use crate::error::ParseResult;

/// SMB2 ECHO request ([MS-SMB2] 2.2.28).
///
/// Format: `{ structure_size=4: u16 | _reserved: u16 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EchoRequest;

impl EchoRequest {
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        parse_empty4(msg).map(|()| EchoRequest)
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        encode_empty4(out)
    }
}

/// SMB2 ECHO response ([MS-SMB2] 2.2.29).
///
/// Format: `{ structure_size=4: u16 | _reserved: u16 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EchoResponse;

impl EchoResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        encode_empty4(out)
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        parse_empty4(msg).map(|()| EchoResponse)
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
        EchoRequest.encode(&mut b);
        let msg = with_header(Command::Echo, &b);
        assert_eq!(EchoRequest::parse(&msg).unwrap(), EchoRequest);
        prefixes_fail(&msg, msg.len(), EchoRequest::parse);
        let mut b = BytesMut::new();
        EchoResponse.encode(&mut b);
        let msg = with_header(Command::Echo, &b);
        assert_eq!(EchoResponse::parse(&msg).unwrap(), EchoResponse);
        let mut bad = msg.clone();
        bad[64] = 5;
        assert!(EchoRequest::parse(&bad).is_err());
    }
}
