//! CANCEL request ([MS-SMB2] 2.2.30). It has no response: the cancelled
//! request completes (usually with STATUS_CANCELLED) instead. Which request
//! it cancels is in the header (MessageId, or AsyncId when async).

use bytes::BytesMut;

use super::{encode_empty4, parse_empty4};
use crate::error::ParseResult;

/// SMB2 CANCEL request ([MS-SMB2] 2.2.30).
///
/// Format: `{ structure_size=4: u16 | _reserved: u16 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CancelRequest;

impl CancelRequest {
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        parse_empty4(msg).map(|()| CancelRequest)
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        encode_empty4(out)
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
        CancelRequest.encode(&mut b);
        let msg = with_header(Command::Cancel, &b);
        assert_eq!(CancelRequest::parse(&msg).unwrap(), CancelRequest);
        prefixes_fail(&msg, msg.len(), CancelRequest::parse);
    }
}
