//! NEGOTIATE request and response ([MS-SMB2] 2.2.3, 2.2.4) and the
//! negotiate contexts ([MS-SMB2] 2.2.3.1).

use bytes::{BufMut, BytesMut};
use nom::number::complete::{le_u16, le_u32};
use nom::bytes::complete::take;

use crate::codec::{body, pad_to, slice_at, structure_size, Reader};
use crate::error::{ParseError, ParseResult};
use crate::header::HEADER_LEN;

/// Dialect revisions ([MS-SMB2] 2.2.3).
pub mod dialect {
    pub const SMB2_0_2: u16 = 0x0202;
    pub const SMB2_1: u16 = 0x0210;
    pub const SMB3_0: u16 = 0x0300;
    pub const SMB3_0_2: u16 = 0x0302;
    pub const SMB3_1_1: u16 = 0x0311;
    /// "SMB 2.???": the answer to a multi-protocol SMB1 negotiate.
    pub const SMB2_WILDCARD: u16 = 0x02FF;
}

/// SecurityMode bits.
pub mod security_mode {
    pub const SIGNING_ENABLED: u16 = 0x0001;
    pub const SIGNING_REQUIRED: u16 = 0x0002;
}

/// Capabilities bits ([MS-SMB2] 2.2.3).
pub mod capabilities {
    pub const DFS: u32 = 0x0000_0001;
    pub const LEASING: u32 = 0x0000_0002;
    pub const LARGE_MTU: u32 = 0x0000_0004;
    pub const MULTI_CHANNEL: u32 = 0x0000_0008;
    pub const PERSISTENT_HANDLES: u32 = 0x0000_0010;
    pub const DIRECTORY_LEASING: u32 = 0x0000_0020;
    pub const ENCRYPTION: u32 = 0x0000_0040;
    pub const NOTIFICATIONS: u32 = 0x0000_0080;
}

/// Negotiate context types ([MS-SMB2] 2.2.3.1).
pub mod context_type {
    pub const PREAUTH_INTEGRITY_CAPABILITIES: u16 = 0x0001;
    pub const ENCRYPTION_CAPABILITIES: u16 = 0x0002;
    pub const COMPRESSION_CAPABILITIES: u16 = 0x0003;
    pub const NETNAME_NEGOTIATE_CONTEXT_ID: u16 = 0x0005;
    pub const TRANSPORT_CAPABILITIES: u16 = 0x0006;
    pub const RDMA_TRANSFORM_CAPABILITIES: u16 = 0x0007;
    pub const SIGNING_CAPABILITIES: u16 = 0x0008;
}

/// Hash algorithm ids for preauth integrity ([MS-SMB2] 2.2.3.1.1).
pub const HASH_SHA512: u16 = 0x0001;

/// Cipher ids ([MS-SMB2] 2.2.3.1.2).
pub mod cipher {
    pub const AES_128_CCM: u16 = 0x0001;
    pub const AES_128_GCM: u16 = 0x0002;
    pub const AES_256_CCM: u16 = 0x0003;
    pub const AES_256_GCM: u16 = 0x0004;
}

/// Signing algorithm ids ([MS-SMB2] 2.2.3.1.7).
pub mod signing_algorithm {
    pub const HMAC_SHA256: u16 = 0x0000;
    pub const AES_CMAC: u16 = 0x0001;
    pub const AES_GMAC: u16 = 0x0002;
}

/// One negotiate context, parsed into the kinds Duet acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiateContext<'a> {
    /// Format: `{ hash_algorithm_count: u16 | salt_length: u16 | hash_algorithms[count]: u16 | salt }`
    PreauthIntegrity { hash_algorithms: Vec<u16>, salt: &'a [u8] },
    /// Format: `{ cipher_count: u16 | ciphers[count]: u16 }`
    Encryption { ciphers: Vec<u16> },
    /// Format: `{ signing_algorithm_count: u16 | signing_algorithms[count]: u16 }`
    Signing { algorithms: Vec<u16> },
    /// Any other context, kept raw (compression, netname, transport, RDMA).
    Other { context_type: u16, data: &'a [u8] },
}

impl<'a> NegotiateContext<'a> {
    fn parse_data(context_type: u16, data: &'a [u8]) -> ParseResult<Self> {
        let mut r = Reader::new(data);
        Ok(match context_type {
            context_type::PREAUTH_INTEGRITY_CAPABILITIES => {
                let count = r.u16("hash algorithm count")?;
                let salt_len = r.u16("salt length")?;
                if count == 0 {
                    return Err(ParseError::Invalid("empty hash algorithm list"));
                }
                let hash_algorithms = (0..count).map(|_| r.u16("hash algorithm")).collect::<Result<_, _>>()?;
                let salt = r.take(salt_len as usize, "salt")?;
                NegotiateContext::PreauthIntegrity { hash_algorithms, salt }
            }
            context_type::ENCRYPTION_CAPABILITIES => {
                let count = r.u16("cipher count")?;
                if count == 0 {
                    return Err(ParseError::Invalid("empty cipher list"));
                }
                let ciphers = (0..count).map(|_| r.u16("cipher")).collect::<Result<_, _>>()?;
                NegotiateContext::Encryption { ciphers }
            }
            context_type::SIGNING_CAPABILITIES => {
                let count = r.u16("signing algorithm count")?;
                if count == 0 {
                    return Err(ParseError::Invalid("empty signing algorithm list"));
                }
                let algorithms = (0..count).map(|_| r.u16("signing algorithm")).collect::<Result<_, _>>()?;
                NegotiateContext::Signing { algorithms }
            }
            other => NegotiateContext::Other { context_type: other, data },
        })
    }

    fn context_type(&self) -> u16 {
        match self {
            NegotiateContext::PreauthIntegrity { .. } => context_type::PREAUTH_INTEGRITY_CAPABILITIES,
            NegotiateContext::Encryption { .. } => context_type::ENCRYPTION_CAPABILITIES,
            NegotiateContext::Signing { .. } => context_type::SIGNING_CAPABILITIES,
            NegotiateContext::Other { context_type, .. } => *context_type,
        }
    }

    fn encode_data(&self, out: &mut BytesMut) {
        match self {
            NegotiateContext::PreauthIntegrity { hash_algorithms, salt } => {
                out.put_u16_le(hash_algorithms.len() as u16);
                out.put_u16_le(salt.len() as u16);
                hash_algorithms.iter().for_each(|h| out.put_u16_le(*h));
                out.put_slice(salt);
            }
            NegotiateContext::Encryption { ciphers } => {
                out.put_u16_le(ciphers.len() as u16);
                ciphers.iter().for_each(|c| out.put_u16_le(*c));
            }
            NegotiateContext::Signing { algorithms } => {
                out.put_u16_le(algorithms.len() as u16);
                algorithms.iter().for_each(|a| out.put_u16_le(*a));
            }
            NegotiateContext::Other { data, .. } => out.put_slice(data),
        }
    }
}

/// Parses `count` contexts starting at `offset` of `msg`, 8-byte aligned.
///
/// Format of each: `{ context_type: u16 | data_length: u16 | _reserved: u32 | data | pad to 8 }`
fn parse_contexts(msg: &[u8], offset: usize, count: u16) -> ParseResult<Vec<NegotiateContext<'_>>> {
    let mut at = offset;
    let mut out = Vec::with_capacity(count.min(16) as usize);
    for i in 0..count {
        if i > 0 {
            at = (at + 7) & !7;
        }
        let head = slice_at(msg, at, 8, "negotiate context")?;
        let ctype = u16::from_le_bytes([head[0], head[1]]);
        let len = u16::from_le_bytes([head[2], head[3]]) as usize;
        let data = slice_at(msg, at + 8, len, "negotiate context data")?;
        out.push(NegotiateContext::parse_data(ctype, data)?);
        at += 8 + len;
    }
    Ok(out)
}

/// Encodes contexts; `base` is the offset of `out[0]` in the message, for
/// the 8-byte alignment between contexts.
fn encode_contexts(ctxs: &[NegotiateContext<'_>], base: usize, out: &mut BytesMut) {
    for (i, c) in ctxs.iter().enumerate() {
        if i > 0 {
            pad_to(out, base, 8);
        }
        let mut data = BytesMut::new();
        c.encode_data(&mut data);
        out.put_u16_le(c.context_type());
        out.put_u16_le(data.len() as u16);
        out.put_u32_le(0);
        out.put_slice(&data);
    }
}

/// SMB2 NEGOTIATE request ([MS-SMB2] 2.2.3).
///
/// Format: `{ structure_size=36: u16 | dialect_count: u16 | security_mode: u16 |
/// _reserved: u16 | capabilities: u32 | client_guid: [u8;16] |
/// negotiate_context_offset: u32 | negotiate_context_count: u16 | _reserved2: u16 |
/// dialects[dialect_count]: u16 | pad | negotiate_context_list }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiateRequest<'a> {
    pub security_mode: u16,
    pub capabilities: u32,
    pub client_guid: [u8; 16],
    pub dialects: Vec<u16>,
    /// Present only when the dialect list holds 3.1.1.
    pub contexts: Vec<NegotiateContext<'a>>,
}

impl<'a> NegotiateRequest<'a> {
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let i = structure_size(body(msg)?, 36)?;
        let (i, dialect_count) = le_u16::<_, nom::error::Error<&[u8]>>(i)?;
        let (i, security_mode) = le_u16::<_, nom::error::Error<&[u8]>>(i)?;
        let (i, _reserved) = le_u16::<_, nom::error::Error<&[u8]>>(i)?;
        let (i, capabilities) = le_u32::<_, nom::error::Error<&[u8]>>(i)?;
        let (i, guid) = take::<_, _, nom::error::Error<&[u8]>>(16usize)(i)?;
        let (i, ctx_offset) = le_u32::<_, nom::error::Error<&[u8]>>(i)?;
        let (i, ctx_count) = le_u16::<_, nom::error::Error<&[u8]>>(i)?;
        let (mut i, _reserved2) = le_u16::<_, nom::error::Error<&[u8]>>(i)?;
        if dialect_count == 0 {
            return Err(ParseError::Invalid("dialect count"));
        }
        let mut dialects = Vec::with_capacity(dialect_count as usize);
        for _ in 0..dialect_count {
            let (rest, d) = le_u16::<_, nom::error::Error<&[u8]>>(i)?;
            dialects.push(d);
            i = rest;
        }
        let contexts = if dialects.contains(&dialect::SMB3_1_1) && ctx_count > 0 {
            parse_contexts(msg, ctx_offset as usize, ctx_count)?
        } else {
            Vec::new()
        };
        let mut client_guid = [0u8; 16];
        client_guid.copy_from_slice(guid);
        Ok(NegotiateRequest { security_mode, capabilities, client_guid, dialects, contexts })
    }

    /// Encodes the body (a client's view; used by tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u16_le(36);
        out.put_u16_le(self.dialects.len() as u16);
        out.put_u16_le(self.security_mode);
        out.put_u16_le(0);
        out.put_u32_le(self.capabilities);
        out.put_slice(&self.client_guid);
        let ctx_at = HEADER_LEN + 36 + self.dialects.len() * 2;
        let ctx_at = (ctx_at + 7) & !7;
        out.put_u32_le(if self.contexts.is_empty() { 0 } else { ctx_at as u32 });
        out.put_u16_le(self.contexts.len() as u16);
        out.put_u16_le(0);
        self.dialects.iter().for_each(|d| out.put_u16_le(*d));
        if !self.contexts.is_empty() {
            let mut b = out.split_off(start);
            pad_to(&mut b, HEADER_LEN, 8);
            encode_contexts(&self.contexts, HEADER_LEN, &mut b);
            out.unsplit(b);
        }
    }
}

/// SMB2 NEGOTIATE response ([MS-SMB2] 2.2.4).
///
/// Format: `{ structure_size=65: u16 | security_mode: u16 | dialect_revision: u16 |
/// negotiate_context_count: u16 | server_guid: [u8;16] | capabilities: u32 |
/// max_transact_size: u32 | max_read_size: u32 | max_write_size: u32 |
/// system_time: u64 | server_start_time: u64 | security_buffer_offset: u16 |
/// security_buffer_length: u16 | negotiate_context_offset: u32 | buffer | pad |
/// negotiate_context_list }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiateResponse<'a> {
    pub security_mode: u16,
    pub dialect_revision: u16,
    pub server_guid: [u8; 16],
    pub capabilities: u32,
    pub max_transact_size: u32,
    pub max_read_size: u32,
    pub max_write_size: u32,
    /// FILETIME.
    pub system_time: u64,
    pub server_start_time: u64,
    pub security_buffer: &'a [u8],
    pub contexts: Vec<NegotiateContext<'a>>,
}

impl<'a> NegotiateResponse<'a> {
    /// Encodes the body. `out` must be positioned right after the header.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        let sec_off = HEADER_LEN + 64;
        out.put_u16_le(65);
        out.put_u16_le(self.security_mode);
        out.put_u16_le(self.dialect_revision);
        out.put_u16_le(self.contexts.len() as u16);
        out.put_slice(&self.server_guid);
        out.put_u32_le(self.capabilities);
        out.put_u32_le(self.max_transact_size);
        out.put_u32_le(self.max_read_size);
        out.put_u32_le(self.max_write_size);
        out.put_u64_le(self.system_time);
        out.put_u64_le(self.server_start_time);
        out.put_u16_le(sec_off as u16);
        out.put_u16_le(self.security_buffer.len() as u16);
        let ctx_at = (sec_off + self.security_buffer.len() + 7) & !7;
        out.put_u32_le(if self.contexts.is_empty() { 0 } else { ctx_at as u32 });
        out.put_slice(self.security_buffer);
        if self.security_buffer.is_empty() && self.contexts.is_empty() {
            out.put_u8(0); // the variable part is at least one byte
        }
        if !self.contexts.is_empty() {
            let mut b = out.split_off(start);
            pad_to(&mut b, HEADER_LEN, 8);
            encode_contexts(&self.contexts, HEADER_LEN, &mut b);
            out.unsplit(b);
        }
    }

    /// Parses a response body (a client's view; used by tests).
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let mut r = Reader::new(body(msg)?);
        if r.u16("structure size")? != 65 {
            return Err(ParseError::Invalid("structure size"));
        }
        let security_mode = r.u16("security mode")?;
        let dialect_revision = r.u16("dialect")?;
        let ctx_count = r.u16("context count")?;
        let server_guid = r.guid("server guid")?;
        let capabilities = r.u32("capabilities")?;
        let max_transact_size = r.u32("max transact")?;
        let max_read_size = r.u32("max read")?;
        let max_write_size = r.u32("max write")?;
        let system_time = r.u64("system time")?;
        let server_start_time = r.u64("start time")?;
        let sec_off = r.u16("security offset")? as usize;
        let sec_len = r.u16("security length")? as usize;
        let ctx_off = r.u32("context offset")? as usize;
        let security_buffer = slice_at(msg, sec_off, sec_len, "security buffer")?;
        let contexts = if dialect_revision == dialect::SMB3_1_1 && ctx_count > 0 {
            parse_contexts(msg, ctx_off, ctx_count)?
        } else {
            Vec::new()
        };
        Ok(NegotiateResponse {
            security_mode,
            dialect_revision,
            server_guid,
            capabilities,
            max_transact_size,
            max_read_size,
            max_write_size,
            system_time,
            server_start_time,
            security_buffer,
            contexts,
        })
    }
}

/// Does this SMB1 NEGOTIATE ([MS-SMB] 2.2.4.52) offer an SMB2 dialect?
///
/// `msg` starts at the SMB1 header (0xFF 'S' 'M' 'B'). The dialect strings
/// are `0x02`-prefixed, NUL-terminated. Returns `Some(true)` when "SMB 2.002"
/// or "SMB 2.???" is offered, `Some(false)` when it is a valid SMB1 negotiate
/// without them, and `None` when it is not an SMB1 negotiate at all.
pub fn smb1_negotiate_offers_smb2(msg: &[u8]) -> Option<bool> {
    if msg.len() < 35 || msg[0..4] != [0xFF, b'S', b'M', b'B'] || msg[4] != 0x72 {
        return None;
    }
    // 32-byte header, WordCount (0), ByteCount, dialects.
    let byte_count = u16::from_le_bytes([msg[33], msg[34]]) as usize;
    let dialects = msg.get(35..35 + byte_count).unwrap_or(&msg[35..]);
    let offered = dialects
        .split(|b| *b == 0)
        .map(|d| d.strip_prefix(&[0x02]).unwrap_or(d))
        .any(|d| d == b"SMB 2.002" || d == b"SMB 2.???");
    Some(offered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{Command, Header};

    fn with_header(body: &BytesMut) -> Vec<u8> {
        let mut m = BytesMut::new();
        Header { command: Command::Negotiate as u16, ..Default::default() }.encode(&mut m);
        m.extend_from_slice(body);
        m.to_vec()
    }

    #[test]
    fn request_roundtrip_with_contexts() {
        let salt = [7u8; 32];
        let req = NegotiateRequest {
            security_mode: security_mode::SIGNING_ENABLED,
            capabilities: capabilities::LARGE_MTU,
            client_guid: [3; 16],
            dialects: vec![dialect::SMB2_0_2, dialect::SMB3_0, dialect::SMB3_1_1],
            contexts: vec![
                NegotiateContext::PreauthIntegrity { hash_algorithms: vec![HASH_SHA512], salt: &salt },
                NegotiateContext::Encryption { ciphers: vec![cipher::AES_128_GCM, cipher::AES_128_CCM] },
                NegotiateContext::Signing { algorithms: vec![signing_algorithm::AES_GMAC] },
                NegotiateContext::Other { context_type: 5, data: b"n\0a\0" },
            ],
        };
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let msg = with_header(&b);
        assert_eq!(NegotiateRequest::parse(&msg).unwrap(), req);
    }

    #[test]
    fn response_roundtrip() {
        let resp = NegotiateResponse {
            security_mode: 1,
            dialect_revision: dialect::SMB3_1_1,
            server_guid: [1; 16],
            capabilities: capabilities::LARGE_MTU | capabilities::LEASING,
            max_transact_size: 8 << 20,
            max_read_size: 8 << 20,
            max_write_size: 8 << 20,
            system_time: 1,
            server_start_time: 0,
            security_buffer: b"\x60\x28blob",
            contexts: vec![NegotiateContext::Encryption { ciphers: vec![cipher::AES_128_GCM] }],
        };
        let mut b = BytesMut::new();
        resp.encode(&mut b);
        let msg = with_header(&b);
        assert_eq!(NegotiateResponse::parse(&msg).unwrap(), resp);
    }

    #[test]
    fn truncated_and_bad_contexts_are_errors() {
        let req = NegotiateRequest {
            security_mode: 1,
            capabilities: 0,
            client_guid: [0; 16],
            dialects: vec![dialect::SMB3_1_1],
            contexts: vec![NegotiateContext::Encryption { ciphers: vec![1] }],
        };
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let msg = with_header(&b);
        for cut in 0..msg.len() {
            assert!(NegotiateRequest::parse(&msg[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn smb1_negotiate_detection() {
        let mut m = vec![0xFF, b'S', b'M', b'B', 0x72];
        m.resize(32, 0);
        m.push(0); // word count
        let dialects = b"\x02NT LM 0.12\0\x02SMB 2.002\0\x02SMB 2.???\0";
        m.extend_from_slice(&(dialects.len() as u16).to_le_bytes());
        m.extend_from_slice(dialects);
        assert_eq!(smb1_negotiate_offers_smb2(&m), Some(true));
        let n = m.len();
        m.truncate(n - 22);
        assert_eq!(smb1_negotiate_offers_smb2(&m), Some(false));
        assert_eq!(smb1_negotiate_offers_smb2(b"junk"), None);
    }
}
