//! TREE_DISCONNECT request and response ([MS-SMB2] 2.2.11, 2.2.12): bodies with nothing
//! but a StructureSize of 4.

use bytes::BytesMut;

use super::{encode_empty4, parse_empty4};
use crate::error::ParseResult;

/// SMB2 TREE_DISCONNECT request ([MS-SMB2] 2.2.11).
///
/// Format: `{ structure_size=4: u16 | _reserved: u16 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeDisconnectRequest;

impl TreeDisconnectRequest {
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        parse_empty4(msg).map(|()| TreeDisconnectRequest)
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        encode_empty4(out)
    }
}

/// SMB2 TREE_DISCONNECT response ([MS-SMB2] 2.2.12).
///
/// Format: `{ structure_size=4: u16 | _reserved: u16 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeDisconnectResponse;

impl TreeDisconnectResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        encode_empty4(out)
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        parse_empty4(msg).map(|()| TreeDisconnectResponse)
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
        TreeDisconnectRequest.encode(&mut b);
        let msg = with_header(Command::TreeDisconnect, &b);
        assert_eq!(TreeDisconnectRequest::parse(&msg).unwrap(), TreeDisconnectRequest);
        prefixes_fail(&msg, msg.len(), TreeDisconnectRequest::parse);
        let mut b = BytesMut::new();
        TreeDisconnectResponse.encode(&mut b);
        let msg = with_header(Command::TreeDisconnect, &b);
        assert_eq!(TreeDisconnectResponse::parse(&msg).unwrap(), TreeDisconnectResponse);
        let mut bad = msg.clone();
        bad[64] = 5;
        assert!(TreeDisconnectRequest::parse(&bad).is_err());
    }
}
