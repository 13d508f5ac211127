//! Connection-oriented DCE/RPC PDUs ([C706 12.6], [MS-RPCE] 2.2.2).
//!
//! Each parser takes one whole PDU body (the bytes after the 16-byte common
//! header, up to frag_length); finding whole PDUs in the pipe's byte stream
//! is [`super::pipe`]'s job. Only little-endian integer representation is
//! understood. Encoders write whole PDUs, header included, and fill in
//! frag_length.

use std::fmt;

use bytes::{BufMut, BytesMut};

use crate::codec::Reader;
use crate::error::{ParseError, ParseResult};

/// Length of the common header ([C706 12.6.1]).
pub const HEADER_LEN: usize = 16;
/// Request header: common header, alloc_hint, p_cont_id, opnum ([C706 12.6.4.9]).
pub const REQUEST_HEADER_LEN: usize = 24;
/// Response header: common header, alloc_hint, p_cont_id, cancel_count, reserved ([C706 12.6.4.10]).
pub const RESPONSE_HEADER_LEN: usize = 24;

/// PDU types ([C706 12.6.4], table 12-7), in the standard's order.
pub mod ptype {
    pub const REQUEST: u8 = 0;
    pub const RESPONSE: u8 = 2;
    pub const FAULT: u8 = 3;
    pub const BIND: u8 = 11;
    pub const BIND_ACK: u8 = 12;
    pub const BIND_NAK: u8 = 13;
    pub const ALTER_CONTEXT: u8 = 14;
    pub const ALTER_CONTEXT_RESP: u8 = 15;
    pub const AUTH3: u8 = 16;
    pub const SHUTDOWN: u8 = 17;
    pub const CO_CANCEL: u8 = 18;
    pub const ORPHANED: u8 = 19;
}

/// pfc_flags bits ([C706 12.6.3.1], [MS-RPCE] 2.2.2.3).
pub mod pfc {
    pub const FIRST_FRAG: u8 = 0x01;
    pub const LAST_FRAG: u8 = 0x02;
    /// PFC_PENDING_CANCEL; in bind PDUs [MS-RPCE] reuses it as PFC_SUPPORT_HEADER_SIGN.
    pub const PENDING_CANCEL: u8 = 0x04;
    pub const CONC_MPX: u8 = 0x10;
    pub const DID_NOT_EXECUTE: u8 = 0x20;
    pub const MAYBE: u8 = 0x40;
    pub const OBJECT_UUID: u8 = 0x80;
}

/// Result of one presentation context in a bind_ack ([C706 12.6.3.1] p_cont_def_result_t, [MS-RPCE] 2.2.2.4).
pub mod result {
    pub const ACCEPTANCE: u16 = 0;
    pub const USER_REJECTION: u16 = 1;
    pub const PROVIDER_REJECTION: u16 = 2;
    /// [MS-RPCE] 3.3.1.5.3: the bind time feature negotiation context.
    pub const NEGOTIATE_ACK: u16 = 3;
}

/// Why a presentation context was rejected ([C706 12.6.3.1] p_provider_reason_t).
pub mod reason {
    pub const NOT_SPECIFIED: u16 = 0;
    pub const ABSTRACT_SYNTAX_NOT_SUPPORTED: u16 = 1;
    pub const PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED: u16 = 2;
    pub const LOCAL_LIMIT_EXCEEDED: u16 = 3;
}

/// Why a bind was refused ([C706 12.6.3.1] p_reject_reason_t, [MS-RPCE] 2.2.2.5).
pub mod reject {
    pub const REASON_NOT_SPECIFIED: u16 = 0;
    pub const LOCAL_LIMIT_EXCEEDED: u16 = 2;
    pub const PROTOCOL_VERSION_NOT_SUPPORTED: u16 = 4;
    pub const AUTHENTICATION_TYPE_NOT_RECOGNIZED: u16 = 8;
}

/// Fault status codes ([C706 appendix E], [MS-RPCE] 2.2.2.11 / 3.1.1.5.5).
pub mod fault {
    /// nca_s_op_rng_error: the opnum is out of range.
    pub const OP_RNG_ERROR: u32 = 0x1C01_0002;
    /// nca_unk_if: the presentation context is not known.
    pub const UNK_IF: u32 = 0x1C01_0003;
    /// nca_proto_error.
    pub const PROTO_ERROR: u32 = 0x1C01_000B;
    /// RPC_S_ACCESS_DENIED, what Windows sends for unusable authentication.
    pub const ACCESS_DENIED: u32 = 0x0000_0005;
    /// nca_s_fault_ndr (RPC_X_BAD_STUB_DATA): the stub data could not be unmarshalled.
    pub const NDR: u32 = 0x0000_06F7;
}

/// The status of a fault PDU: an `nca_s_*` code or a Win32 error ([C706 appendix E], [MS-RPCE] 2.2.2.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultStatus(pub u32);

/// A UUID in its NDR wire form: the first three fields little-endian, the last eight bytes as they are.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// Builds the wire form of `d1-d2-d3-d4[0..2]-d4[2..8]`.
    pub const fn new(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Uuid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Uuid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5], d4[6], d4[7],
        ])
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

/// An interface or transfer syntax: UUID and version ([C706 12.6.3.1] p_syntax_id_t).
/// `version` is the wire u32: major in the low 16 bits, minor in the high 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntaxId {
    pub uuid: Uuid,
    pub version: u32,
}

impl SyntaxId {
    /// The all-zero syntax, sent back with rejected contexts.
    pub const ZERO: SyntaxId = SyntaxId { uuid: Uuid([0; 16]), version: 0 };

    fn read(r: &mut Reader<'_>) -> ParseResult<SyntaxId> {
        Ok(SyntaxId { uuid: Uuid(r.guid("syntax uuid")?), version: r.u32("syntax version")? })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.uuid.0);
        out.put_u32_le(self.version);
    }

    /// If this is the bind time feature negotiation syntax ([MS-RPCE] 3.3.1.5.3:
    /// UUID prefix 6CB71C2C-9812-4540, version 1.0), the first octet of its
    /// BindTimeFeatureNegotiationBitmask ([MS-RPCE] 2.2.2.14).
    pub fn bind_time_features(&self) -> Option<u8> {
        let prefix = Uuid::new(0x6CB7_1C2C, 0x9812, 0x4540, [0; 8]);
        (self.uuid.0[..8] == prefix.0[..8] && self.version == 1).then_some(self.uuid.0[8])
    }
}

/// NDR 2.0 transfer syntax, 8a885d04-1ceb-11c9-9fe8-08002b104860 v2 ([C706 appendix I]).
pub const NDR20: SyntaxId = SyntaxId {
    uuid: Uuid::new(0x8A88_5D04, 0x1CEB, 0x11C9, [0x9F, 0xE8, 0x08, 0x00, 0x2B, 0x10, 0x48, 0x60]),
    version: 2,
};
/// NDR64 transfer syntax, 71710533-beba-4937-8319-b5dbef9ccc36 v1 ([MS-RPCE] 2.2.5.1); not supported.
pub const NDR64: SyntaxId = SyntaxId {
    uuid: Uuid::new(0x7171_0533, 0xBEBA, 0x4937, [0x83, 0x19, 0xB5, 0xDB, 0xEF, 0x9C, 0xCC, 0x36]),
    version: 1,
};
/// srvsvc, 4b324fc8-1670-01d3-1278-5a47bf6ee188 v3.0 ([MS-SRVS] 1.9).
pub const SRVSVC: SyntaxId = SyntaxId {
    uuid: Uuid::new(0x4B32_4FC8, 0x1670, 0x01D3, [0x12, 0x78, 0x5A, 0x47, 0xBF, 0x6E, 0xE1, 0x88]),
    version: 3,
};
/// wkssvc, 6bffd098-a112-3610-9833-46c3f87e345a v1.0 ([MS-WKST] 1.9).
pub const WKSSVC: SyntaxId = SyntaxId {
    uuid: Uuid::new(0x6BFF_D098, 0xA112, 0x3610, [0x98, 0x33, 0x46, 0xC3, 0xF8, 0x7E, 0x34, 0x5A]),
    version: 1,
};

/// The common header of every connection-oriented PDU ([C706 12.6.3.1]).
/// rpc_vers is always 5 and is checked, not stored.
// Format: { rpc_vers=5 u8 | rpc_vers_minor u8 | ptype u8 | pfc_flags u8 | packed_drep [4] | frag_length u16 | auth_length u16 | call_id u32 }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub rpc_vers_minor: u8,
    pub ptype: u8,
    pub pfc_flags: u8,
    pub packed_drep: [u8; 4],
    pub frag_length: u16,
    pub auth_length: u16,
    pub call_id: u32,
}

/// Data representation we send: little-endian integers, ASCII, IEEE floats ([C706 14.1]).
pub const DREP_LE: [u8; 4] = [0x10, 0, 0, 0];

impl Header {
    /// Parses the header. Refuses rpc_vers other than 5.0/5.1 and
    /// non-little-endian integer representation (as `Invalid`).
    pub fn parse(input: &[u8]) -> ParseResult<(&[u8], Header)> {
        let mut r = Reader::new(input);
        let vers = r.u8("rpc_vers")?;
        let rpc_vers_minor = r.u8("rpc_vers_minor")?;
        let ptype = r.u8("PTYPE")?;
        let pfc_flags = r.u8("pfc_flags")?;
        let d = r.take(4, "packed_drep")?;
        let packed_drep = [d[0], d[1], d[2], d[3]];
        let frag_length = r.u16("frag_length")?;
        let auth_length = r.u16("auth_length")?;
        let call_id = r.u32("call_id")?;
        if vers != 5 || rpc_vers_minor > 1 {
            return Err(ParseError::Invalid("rpc_vers"));
        }
        if !is_little_endian(packed_drep) {
            return Err(ParseError::Invalid("packed_drep"));
        }
        Ok((r.rest(), Header { rpc_vers_minor, ptype, pfc_flags, packed_drep, frag_length, auth_length, call_id }))
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(5);
        out.put_u8(self.rpc_vers_minor);
        out.put_u8(self.ptype);
        out.put_u8(self.pfc_flags);
        out.put_slice(&self.packed_drep);
        out.put_u16_le(self.frag_length);
        out.put_u16_le(self.auth_length);
        out.put_u32_le(self.call_id);
    }
}

/// Whether the integer representation in packed_drep is little-endian ([C706 14.1], figure 14-1).
pub fn is_little_endian(drep: [u8; 4]) -> bool {
    drep[0] & 0xF0 == 0x10
}

/// Writes a whole PDU: a header with the given type, flags and call id, then `body`.
fn encode_pdu(ptype: u8, pfc_flags: u8, call_id: u32, body: &[u8], out: &mut BytesMut) {
    // Our PDUs are bounded by the negotiated fragment size (at most 4280)
    // or a few hundred bytes for bind replies, so the length fits.
    let frag_length = u16::try_from(HEADER_LEN + body.len()).unwrap_or(u16::MAX);
    Header { rpc_vers_minor: 0, ptype, pfc_flags, packed_drep: DREP_LE, frag_length, auth_length: 0, call_id }
        .encode(out);
    out.put_slice(body);
}

/// One proposed presentation context ([C706 12.6.3.1] p_cont_elem_t).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextElem {
    pub context_id: u16,
    pub abstract_syntax: SyntaxId,
    pub transfer_syntaxes: Vec<SyntaxId>,
}

/// The body of a bind or alter_context PDU ([C706 12.6.4.3], 12.6.4.1). The
/// auth_verifier, if any, is not parsed: the header's auth_length says it is there.
// Format: { max_xmit_frag u16 | max_recv_frag u16 | assoc_group_id u32 | n_context_elem u8 | reserved u8 | reserved2 u16 |
//           { p_cont_id u16 | n_transfer_syn u8 | reserved u8 | abstract_syntax (20) | transfer_syntaxes (20 each) }* | auth_verifier? }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub max_xmit_frag: u16,
    pub max_recv_frag: u16,
    pub assoc_group_id: u32,
    pub contexts: Vec<ContextElem>,
}

impl Bind {
    pub fn parse(body: &[u8]) -> ParseResult<(&[u8], Bind)> {
        let mut r = Reader::new(body);
        let max_xmit_frag = r.u16("max_xmit_frag")?;
        let max_recv_frag = r.u16("max_recv_frag")?;
        let assoc_group_id = r.u32("assoc_group_id")?;
        let n = r.u8("n_context_elem")?;
        r.skip(3, "p_context_elem reserved")?;
        let mut contexts = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let context_id = r.u16("p_cont_id")?;
            let n_syn = r.u8("n_transfer_syn")?;
            r.skip(1, "p_cont_elem reserved")?;
            let abstract_syntax = SyntaxId::read(&mut r)?;
            let mut transfer_syntaxes = Vec::with_capacity(usize::from(n_syn));
            for _ in 0..n_syn {
                transfer_syntaxes.push(SyntaxId::read(&mut r)?);
            }
            contexts.push(ContextElem { context_id, abstract_syntax, transfer_syntaxes });
        }
        Ok((r.rest(), Bind { max_xmit_frag, max_recv_frag, assoc_group_id, contexts }))
    }

    /// Writes a whole bind PDU (for tests and tools).
    pub fn encode(&self, ptype: u8, call_id: u32, out: &mut BytesMut) {
        let mut b = BytesMut::new();
        b.put_u16_le(self.max_xmit_frag);
        b.put_u16_le(self.max_recv_frag);
        b.put_u32_le(self.assoc_group_id);
        b.put_u8(u8::try_from(self.contexts.len()).unwrap_or(u8::MAX));
        b.put_slice(&[0; 3]);
        for c in self.contexts.iter().take(usize::from(u8::MAX)) {
            b.put_u16_le(c.context_id);
            b.put_u8(u8::try_from(c.transfer_syntaxes.len()).unwrap_or(u8::MAX));
            b.put_u8(0);
            c.abstract_syntax.encode(&mut b);
            for t in c.transfer_syntaxes.iter().take(usize::from(u8::MAX)) {
                t.encode(&mut b);
            }
        }
        encode_pdu(ptype, pfc::FIRST_FRAG | pfc::LAST_FRAG, call_id, &b, out);
    }
}

/// The outcome for one presentation context ([C706 12.6.3.1] p_result_t).
/// For a negotiate_ack, `reason` carries the accepted feature bitmask ([MS-RPCE] 3.3.1.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextResult {
    pub result: u16,
    pub reason: u16,
    pub transfer_syntax: SyntaxId,
}

/// The body of a bind_ack or alter_context_resp PDU ([C706 12.6.4.4], 12.6.4.2).
// Format: { max_xmit_frag u16 | max_recv_frag u16 | assoc_group_id u32 | sec_addr.length u16 | port_spec (length, NUL included) |
//           pad to 4 | n_results u8 | reserved u8 | reserved2 u16 | { result u16 | reason u16 | transfer_syntax (20) }* }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindAck {
    pub max_xmit_frag: u16,
    pub max_recv_frag: u16,
    pub assoc_group_id: u32,
    /// The secondary address, e.g. `\PIPE\srvsvc`; empty in an alter_context_resp.
    pub sec_addr: String,
    pub results: Vec<ContextResult>,
}

impl BindAck {
    /// Writes a whole bind_ack (or, with `ptype::ALTER_CONTEXT_RESP`, alter_context_resp) PDU.
    pub fn encode(&self, ptype: u8, call_id: u32, out: &mut BytesMut) {
        let mut b = BytesMut::new();
        b.put_u16_le(self.max_xmit_frag);
        b.put_u16_le(self.max_recv_frag);
        b.put_u32_le(self.assoc_group_id);
        if self.sec_addr.is_empty() {
            b.put_u16_le(0);
        } else {
            let addr = self.sec_addr.as_bytes();
            b.put_u16_le(u16::try_from(addr.len() + 1).unwrap_or(u16::MAX));
            b.put_slice(addr);
            b.put_u8(0);
        }
        // The result list is aligned to 4 from the PDU start ([C706 12.6.4.4], pad2).
        b.put_bytes(0, (4 - (HEADER_LEN + b.len()) % 4) % 4);
        b.put_u8(u8::try_from(self.results.len()).unwrap_or(u8::MAX));
        b.put_slice(&[0; 3]);
        for res in self.results.iter().take(usize::from(u8::MAX)) {
            b.put_u16_le(res.result);
            b.put_u16_le(res.reason);
            res.transfer_syntax.encode(&mut b);
        }
        encode_pdu(ptype, pfc::FIRST_FRAG | pfc::LAST_FRAG, call_id, &b, out);
    }

    /// Parses a bind_ack body (for tests and tools).
    pub fn parse(body: &[u8]) -> ParseResult<(&[u8], BindAck)> {
        let mut r = Reader::new(body);
        let max_xmit_frag = r.u16("max_xmit_frag")?;
        let max_recv_frag = r.u16("max_recv_frag")?;
        let assoc_group_id = r.u32("assoc_group_id")?;
        let len = usize::from(r.u16("sec_addr length")?);
        let addr = r.take(len, "sec_addr")?;
        let addr = addr.strip_suffix(&[0]).unwrap_or(addr);
        let sec_addr = String::from_utf8(addr.to_vec()).map_err(|_| ParseError::Invalid("sec_addr"))?;
        let pad = (4 - (HEADER_LEN + r.pos()) % 4) % 4;
        r.skip(pad, "bind_ack pad")?;
        let n = r.u8("n_results")?;
        r.skip(3, "p_result_list reserved")?;
        let mut results = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let result = r.u16("result")?;
            let reason = r.u16("reason")?;
            let transfer_syntax = SyntaxId::read(&mut r)?;
            results.push(ContextResult { result, reason, transfer_syntax });
        }
        Ok((r.rest(), BindAck { max_xmit_frag, max_recv_frag, assoc_group_id, sec_addr, results }))
    }
}

/// A bind_nak ([C706 12.6.4.5], [MS-RPCE] 2.2.2.9): the reject reason and
/// the one protocol version we support, 5.0. No signature.
pub fn encode_bind_nak(call_id: u32, reject_reason: u16, out: &mut BytesMut) {
    let mut b = BytesMut::new();
    b.put_u16_le(reject_reason);
    b.put_u8(1); // n_protocols
    b.put_u8(5);
    b.put_u8(0);
    // Pad the PDU to a multiple of 4, as Windows and Samba do.
    b.put_bytes(0, (4 - (HEADER_LEN + b.len()) % 4) % 4);
    encode_pdu(ptype::BIND_NAK, pfc::FIRST_FRAG | pfc::LAST_FRAG, call_id, &b, out);
}

/// The body of a request PDU ([C706 12.6.4.9]). `stub` excludes any auth verifier.
// Format: { alloc_hint u32 | p_cont_id u16 | opnum u16 | object uuid (if PFC_OBJECT_UUID) | stub | auth_verifier? }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub alloc_hint: u32,
    pub context_id: u16,
    pub opnum: u16,
    pub object: Option<Uuid>,
    pub stub: &'a [u8],
}

impl<'a> Request<'a> {
    /// Parses the body of a request whose header is `hdr`; `body` is the
    /// PDU after the common header, exactly frag_length - 16 bytes.
    pub fn parse(hdr: &Header, body: &'a [u8]) -> ParseResult<Request<'a>> {
        let mut r = Reader::new(body);
        let alloc_hint = r.u32("alloc_hint")?;
        let context_id = r.u16("p_cont_id")?;
        let opnum = r.u16("opnum")?;
        let object = if hdr.pfc_flags & pfc::OBJECT_UUID != 0 { Some(Uuid(r.guid("object")?)) } else { None };
        let rest = r.rest();
        // auth verifier: 8-byte sec_trailer then auth_length bytes ([C706 13.2.6.1]).
        let trailer = if hdr.auth_length == 0 { 0 } else { usize::from(hdr.auth_length) + 8 };
        let stub_len = rest.len().checked_sub(trailer).ok_or(ParseError::Invalid("auth_length"))?;
        Ok(Request { alloc_hint, context_id, opnum, object, stub: &rest[..stub_len] })
    }

    /// Writes a whole request PDU without object or auth (for tests and tools).
    pub fn encode(&self, pfc_flags: u8, call_id: u32, out: &mut BytesMut) {
        let mut b = BytesMut::new();
        b.put_u32_le(self.alloc_hint);
        b.put_u16_le(self.context_id);
        b.put_u16_le(self.opnum);
        b.put_slice(self.stub);
        encode_pdu(ptype::REQUEST, pfc_flags, call_id, &b, out);
    }
}

/// A response PDU ([C706 12.6.4.10]).
// Format: { alloc_hint u32 | p_cont_id u16 | cancel_count u8 | reserved u8 | stub }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    pub alloc_hint: u32,
    pub context_id: u16,
    pub stub: &'a [u8],
}

impl<'a> Response<'a> {
    pub fn encode(&self, pfc_flags: u8, call_id: u32, out: &mut BytesMut) {
        let mut b = BytesMut::with_capacity(8 + self.stub.len());
        b.put_u32_le(self.alloc_hint);
        b.put_u16_le(self.context_id);
        b.put_u8(0); // cancel_count
        b.put_u8(0);
        b.put_slice(self.stub);
        encode_pdu(ptype::RESPONSE, pfc_flags, call_id, &b, out);
    }

    /// Parses a response body (for tests and tools).
    pub fn parse(body: &'a [u8]) -> ParseResult<Response<'a>> {
        let mut r = Reader::new(body);
        let alloc_hint = r.u32("alloc_hint")?;
        let context_id = r.u16("p_cont_id")?;
        r.skip(2, "cancel_count, reserved")?;
        Ok(Response { alloc_hint, context_id, stub: r.rest() })
    }
}

/// A fault PDU ([C706 12.6.4.7], [MS-RPCE] 2.2.2.11), 32 bytes, flagged as
/// not executed: none of our calls has side effects.
// Format: { alloc_hint u32 | p_cont_id u16 | cancel_count u8 | reserved u8 | status u32 | reserved2 u32 }
pub fn encode_fault(call_id: u32, context_id: u16, status: u32, out: &mut BytesMut) {
    let mut b = BytesMut::new();
    b.put_u32_le(0);
    b.put_u16_le(context_id);
    b.put_u8(0);
    b.put_u8(0);
    b.put_u32_le(status);
    b.put_u32_le(0);
    encode_pdu(ptype::FAULT, pfc::FIRST_FRAG | pfc::LAST_FRAG | pfc::DID_NOT_EXECUTE, call_id, &b, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    // smbclient's bind to srvsvc, captured against Samba 4.17 (testdata/samba-srvsvc.txt).
    const SMBCLIENT_BIND: &str = "05000b03100000004800000001000000b810b810000000000100000000000100\
                                  c84f324b7016d30112785a47bf6ee18803000000045d888aeb1cc9119fe808002b10486002000000";

    #[test]
    fn parses_smbclient_bind() {
        let pdu = hex(SMBCLIENT_BIND);
        let (body, h) = Header::parse(&pdu).unwrap();
        assert_eq!((h.ptype, h.pfc_flags, h.frag_length, h.auth_length, h.call_id), (ptype::BIND, 3, 72, 0, 1));
        let (rest, b) = Bind::parse(body).unwrap();
        assert!(rest.is_empty());
        assert_eq!((b.max_xmit_frag, b.max_recv_frag, b.assoc_group_id), (4280, 4280, 0));
        assert_eq!(b.contexts.len(), 1);
        assert_eq!(b.contexts[0].abstract_syntax, SRVSVC);
        assert_eq!(b.contexts[0].transfer_syntaxes, [NDR20]);
        let mut out = BytesMut::new();
        b.encode(ptype::BIND, 1, &mut out);
        assert_eq!(&out[..], &pdu[..]);
    }

    #[test]
    fn uuid_debug_is_canonical() {
        assert_eq!(format!("{:?}", SRVSVC.uuid), "4b324fc8-1670-01d3-1278-5a47bf6ee188");
        assert_eq!(format!("{:?}", NDR20.uuid), "8a885d04-1ceb-11c9-9fe8-08002b104860");
    }

    #[test]
    fn bind_time_feature_syntax() {
        let btfn = SyntaxId { uuid: Uuid::new(0x6CB7_1C2C, 0x9812, 0x4540, [3, 0, 0, 0, 0, 0, 0, 0]), version: 1 };
        assert_eq!(btfn.bind_time_features(), Some(3));
        assert_eq!(NDR20.bind_time_features(), None);
        assert_eq!(SyntaxId { version: 2, ..btfn }.bind_time_features(), None);
    }

    #[test]
    fn truncated_pdus_are_errors() {
        let pdu = hex(SMBCLIENT_BIND);
        for n in 0..HEADER_LEN {
            assert!(Header::parse(&pdu[..n]).is_err());
        }
        let body = &pdu[HEADER_LEN..];
        for n in 0..body.len() {
            assert!(Bind::parse(&body[..n]).is_err(), "bind truncated at {n}");
        }
        let h = Header::parse(&pdu).unwrap().1;
        for n in 0..8 {
            assert!(Request::parse(&h, &body[..n]).is_err());
        }
        let auth = Header { auth_length: 200, ..h };
        assert!(Request::parse(&auth, body).is_err());
    }

    #[test]
    fn header_rejects_version_and_big_endian() {
        let mut pdu = hex(SMBCLIENT_BIND);
        pdu[0] = 4;
        assert_eq!(Header::parse(&pdu).unwrap_err(), ParseError::Invalid("rpc_vers"));
        let mut pdu = hex(SMBCLIENT_BIND);
        pdu[4] = 0x00;
        assert_eq!(Header::parse(&pdu).unwrap_err(), ParseError::Invalid("packed_drep"));
    }

    #[test]
    fn bind_ack_round_trip_and_alignment() {
        let ack = BindAck {
            max_xmit_frag: 4280,
            max_recv_frag: 4280,
            assoc_group_id: 0x1234,
            sec_addr: "\\PIPE\\srvsvc".into(),
            results: vec![ContextResult { result: 0, reason: 0, transfer_syntax: NDR20 }],
        };
        let mut out = BytesMut::new();
        ack.encode(ptype::BIND_ACK, 1, &mut out);
        // 16 + 8 + 2 + 13 = 39, padded to 40, + 4 + 24.
        assert_eq!(out.len(), 68);
        let (body, h) = Header::parse(&out).unwrap();
        assert_eq!(usize::from(h.frag_length), out.len());
        let (rest, parsed) = BindAck::parse(body).unwrap();
        assert!(rest.is_empty());
        assert_eq!(parsed, ack);
        for n in 0..body.len() {
            assert!(BindAck::parse(&body[..n]).is_err());
        }
    }

    #[test]
    fn fault_and_nak_layout() {
        let mut out = BytesMut::new();
        encode_fault(7, 0, fault::OP_RNG_ERROR, &mut out);
        assert_eq!(out.len(), 32);
        assert_eq!(out[3], pfc::FIRST_FRAG | pfc::LAST_FRAG | pfc::DID_NOT_EXECUTE);
        assert_eq!(&out[24..28], &0x1C01_0002u32.to_le_bytes());
        let mut out = BytesMut::new();
        encode_bind_nak(1, reject::PROTOCOL_VERSION_NOT_SUPPORTED, &mut out);
        assert_eq!(out.len(), 24);
        assert_eq!(&out[16..21], &[4, 0, 1, 5, 0]);
    }
}
