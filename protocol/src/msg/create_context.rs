//! Create contexts ([MS-SMB2] 2.2.13.2 requests, 2.2.14.2 responses).
//!
//! A list of contexts chained by `next` offsets; each is
//! `{ next: u32 | name_offset: u16 | name_length: u16 | _reserved: u16 |
//! data_offset: u16 | data_length: u32 | buffer }`, with name and data
//! offsets counted from the start of the context and each context 8-byte
//! aligned. [`parse_list`] yields raw [`CreateContext`]s; [`RequestContext`]
//! and [`ResponseContext`] are the typed forms the server handles.

use bytes::{BufMut, BytesMut};

use super::aapl::{ServerQuery, ServerQueryReply};
use super::FileId;
use crate::codec::Reader;
use crate::error::{ParseError, ParseResult};

/// Context names ([MS-SMB2] 2.2.13.2). The tags are ASCII; the others are
/// GUIDs in their on-the-wire byte order.
pub mod name {
    pub const EA_BUFFER: &[u8] = b"ExtA";
    pub const SD_BUFFER: &[u8] = b"SecD";
    pub const DURABLE_HANDLE_REQUEST: &[u8] = b"DHnQ";
    pub const DURABLE_HANDLE_RECONNECT: &[u8] = b"DHnC";
    pub const ALLOCATION_SIZE: &[u8] = b"AlSi";
    pub const QUERY_MAXIMAL_ACCESS: &[u8] = b"MxAc";
    pub const TIMEWARP_TOKEN: &[u8] = b"TWrp";
    pub const QUERY_ON_DISK_ID: &[u8] = b"QFid";
    /// Lease request and response, v1 and v2 (told apart by length).
    pub const LEASE: &[u8] = b"RqLs";
    pub const DURABLE_HANDLE_REQUEST_V2: &[u8] = b"DH2Q";
    pub const DURABLE_HANDLE_RECONNECT_V2: &[u8] = b"DH2C";
    /// Apple's extensions (macOS clients), see [`super::aapl`].
    pub const AAPL: &[u8] = b"AAPL";
    pub const APP_INSTANCE_ID: &[u8] = &[
        0x45, 0xBC, 0xA6, 0x6A, 0xEF, 0xA7, 0xF7, 0x4A, 0x90, 0x08, 0xFA, 0x46, 0x2E, 0x14, 0x4D, 0x74,
    ];
    pub const APP_INSTANCE_VERSION: &[u8] = &[
        0xB9, 0x82, 0xD0, 0xB7, 0x3B, 0x56, 0x07, 0x4F, 0xA0, 0x7B, 0x52, 0x4A, 0x81, 0x16, 0xA0, 0x10,
    ];
}

/// LeaseState bits ([MS-SMB2] 2.2.13.2.8).
pub mod lease_state {
    pub const NONE: u32 = 0x00;
    pub const READ_CACHING: u32 = 0x01;
    pub const HANDLE_CACHING: u32 = 0x02;
    pub const WRITE_CACHING: u32 = 0x04;
}

/// LeaseFlags bits ([MS-SMB2] 2.2.13.2.10, 2.2.14.2.10).
pub mod lease_flags {
    pub const BREAK_IN_PROGRESS: u32 = 0x02;
    pub const PARENT_LEASE_KEY_SET: u32 = 0x04;
}

/// Flags of DH2Q / DH2C ([MS-SMB2] 2.2.13.2.11, 2.2.13.2.12).
pub mod durable_v2_flags {
    pub const PERSISTENT: u32 = 0x02;
}

/// Length of a context's fixed header.
const HEADER: usize = 16;

/// One raw create context, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateContext<'a> {
    pub name: &'a [u8],
    pub data: &'a [u8],
}

/// Parses the chain of contexts in `buf` (the CreateContexts area, from
/// CreateContextsOffset for CreateContextsLength bytes).
///
/// Each `next` must be a multiple of 8, move forward and stay inside `buf`;
/// names and data must lie inside their own context. So the loop ends
/// after at most `buf.len() / 16` contexts.
pub fn parse_list(buf: &[u8]) -> ParseResult<Vec<CreateContext<'_>>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    if buf.is_empty() {
        return Ok(out);
    }
    loop {
        let ctx = &buf[at..];
        let mut r = Reader::new(ctx);
        let next = r.u32("create context")? as usize;
        let name_offset = r.u16("create context")? as usize;
        let name_length = r.u16("create context")? as usize;
        r.u16("create context")?;
        let data_offset = r.u16("create context")? as usize;
        let data_length = r.u32("create context")? as usize;
        // The context's own extent: up to `next`, or the rest of the list.
        let extent = if next == 0 { ctx.len() } else { next };
        if next != 0 && (!next.is_multiple_of(8) || next < HEADER || next > ctx.len()) {
            return Err(ParseError::Invalid("create context next"));
        }
        let within = |off: usize, len: usize, what| {
            let end = off.checked_add(len).ok_or(ParseError::OutOfBounds(what))?;
            if off < HEADER || end > extent {
                return Err(ParseError::OutOfBounds(what));
            }
            Ok(&ctx[off..end])
        };
        if name_length == 0 {
            return Err(ParseError::Invalid("create context name"));
        }
        let name = within(name_offset, name_length, "create context name")?;
        let data = if data_length == 0 { &[][..] } else { within(data_offset, data_length, "create context data")? };
        out.push(CreateContext { name, data });
        if next == 0 {
            return Ok(out);
        }
        at += next;
    }
}

/// Encodes a chain of contexts. `out` must be 8-byte aligned in its
/// message (CREATE puts contexts at an 8-aligned offset). Each context is
/// `{ header | name | pad to 8 | data }`, padded to 8 before the next.
pub fn encode_list<'c>(ctxs: impl IntoIterator<Item = (&'c [u8], &'c [u8])>, out: &mut BytesMut) {
    let list_start = out.len();
    let mut prev: Option<usize> = None;
    for (name, data) in ctxs {
        if let Some(p) = prev {
            while !(out.len() - list_start).is_multiple_of(8) {
                out.put_u8(0);
            }
            let next = (out.len() - p) as u32;
            out[p..p + 4].copy_from_slice(&next.to_le_bytes());
        }
        prev = Some(out.len());
        let data_offset = if data.is_empty() { 0 } else { (HEADER + name.len() + 7) & !7 };
        out.put_u32_le(0);
        out.put_u16_le(HEADER as u16);
        out.put_u16_le(name.len() as u16);
        out.put_u16_le(0);
        out.put_u16_le(data_offset as u16);
        out.put_u32_le(data.len() as u32);
        out.put_slice(name);
        if !data.is_empty() {
            out.put_bytes(0, data_offset - HEADER - name.len());
            out.put_slice(data);
        }
    }
}

/// A lease context, v1 or v2 ([MS-SMB2] 2.2.13.2.8, 2.2.13.2.10,
/// 2.2.14.2.10, 2.2.14.2.11). Same layout in request and response.
///
/// Format: v1 (32 bytes) `{ lease_key: [u8;16] | lease_state: u32 |
/// lease_flags: u32 | lease_duration: u64 }`; v2 (52 bytes) adds
/// `{ parent_lease_key: [u8;16] | epoch: u16 | _reserved: u16 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub lease_key: [u8; 16],
    /// [`lease_state`].
    pub lease_state: u32,
    /// [`lease_flags`].
    pub lease_flags: u32,
    /// Must be 0.
    pub lease_duration: u64,
    /// Present in v2 only.
    pub v2: Option<LeaseV2>,
}

/// The v2 part of a lease context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseV2 {
    pub parent_lease_key: [u8; 16],
    pub epoch: u16,
}

impl Lease {
    pub const V1_LEN: usize = 32;
    pub const V2_LEN: usize = 52;

    pub fn parse(data: &[u8]) -> ParseResult<Lease> {
        if data.len() != Self::V1_LEN && data.len() != Self::V2_LEN {
            return Err(ParseError::Invalid("lease context length"));
        }
        let mut r = Reader::new(data);
        let lease_key = r.guid("lease key")?;
        let lease_state = r.u32("lease state")?;
        let lease_flags = r.u32("lease flags")?;
        let lease_duration = r.u64("lease duration")?;
        let v2 = if data.len() == Self::V2_LEN {
            let parent_lease_key = r.guid("parent lease key")?;
            let epoch = r.u16("epoch")?;
            Some(LeaseV2 { parent_lease_key, epoch })
        } else {
            None
        };
        Ok(Lease { lease_key, lease_state, lease_flags, lease_duration, v2 })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.lease_key);
        out.put_u32_le(self.lease_state);
        out.put_u32_le(self.lease_flags);
        out.put_u64_le(self.lease_duration);
        if let Some(v2) = &self.v2 {
            out.put_slice(&v2.parent_lease_key);
            out.put_u16_le(v2.epoch);
            out.put_u16_le(0);
        }
    }
}

/// DH2Q request data ([MS-SMB2] 2.2.13.2.11).
///
/// Format: `{ timeout: u32 | flags: u32 | _reserved: u64 | create_guid: [u8;16] }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableHandleRequestV2 {
    /// Milliseconds; 0 lets the server choose.
    pub timeout: u32,
    /// [`durable_v2_flags`].
    pub flags: u32,
    pub create_guid: [u8; 16],
}

/// DH2C request data ([MS-SMB2] 2.2.13.2.12).
///
/// Format: `{ file_id: FileId | create_guid: [u8;16] | flags: u32 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableHandleReconnectV2 {
    pub file_id: FileId,
    pub create_guid: [u8; 16],
    /// [`durable_v2_flags`].
    pub flags: u32,
}

/// A create context of a CREATE request, decoded by name.
///
/// Unknown names are kept as [`RequestContext::Other`]; a known name
/// with malformed data is a [`ParseError::Invalid`] (the server answers
/// STATUS_INVALID_PARAMETER, as Windows does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestContext<'a> {
    /// ExtA ([MS-SMB2] 2.2.13.2.1): FILE_FULL_EA_INFORMATION list, raw.
    EaBuffer(&'a [u8]),
    /// SecD (2.2.13.2.2): a self-relative security descriptor, raw.
    SecurityDescriptor(&'a [u8]),
    /// DHnQ (2.2.13.2.3): 16 reserved bytes.
    DurableHandleRequest,
    /// DHnC (2.2.13.2.4).
    DurableHandleReconnect { file_id: FileId },
    /// AlSi (2.2.13.2.6).
    AllocationSize(u64),
    /// MxAc (2.2.13.2.5): an optional FILETIME.
    QueryMaximalAccess { timestamp: Option<u64> },
    /// TWrp (2.2.13.2.7): a FILETIME naming a snapshot.
    TimewarpToken(u64),
    /// QFid (2.2.13.2.9): no data.
    QueryOnDiskId,
    /// RqLs (2.2.13.2.8, 2.2.13.2.10).
    Lease(Lease),
    /// DH2Q (2.2.13.2.11).
    DurableHandleRequestV2(DurableHandleRequestV2),
    /// DH2C (2.2.13.2.12).
    DurableHandleReconnectV2(DurableHandleReconnectV2),
    /// App instance id (2.2.13.2.13): `{ structure_size=20: u16 | _reserved: u16 | app_instance_id: [u8;16] }`.
    AppInstanceId([u8; 16]),
    /// App instance version (2.2.13.2.15): `{ structure_size=24: u16 | _reserved: u16 |
    /// _padding: u32 | high: u64 | low: u64 }`.
    AppInstanceVersion { high: u64, low: u64 },
    /// AAPL server query (Apple's extension, [`super::aapl`]).
    Aapl(ServerQuery),
    Other(CreateContext<'a>),
}

impl<'a> RequestContext<'a> {
    /// Decodes one raw context.
    pub fn decode(c: CreateContext<'a>) -> ParseResult<Self> {
        let d = c.data;
        let mut r = Reader::new(d);
        let exact = |n: usize, what| if d.len() == n { Ok(()) } else { Err(ParseError::Invalid(what)) };
        Ok(match c.name {
            name::EA_BUFFER => RequestContext::EaBuffer(d),
            name::SD_BUFFER => RequestContext::SecurityDescriptor(d),
            name::DURABLE_HANDLE_REQUEST => {
                exact(16, "DHnQ length")?;
                RequestContext::DurableHandleRequest
            }
            name::DURABLE_HANDLE_RECONNECT => {
                exact(16, "DHnC length")?;
                RequestContext::DurableHandleReconnect { file_id: FileId::read(&mut r)? }
            }
            name::ALLOCATION_SIZE => {
                exact(8, "AlSi length")?;
                RequestContext::AllocationSize(r.u64("AlSi")?)
            }
            name::QUERY_MAXIMAL_ACCESS => match d.len() {
                0 => RequestContext::QueryMaximalAccess { timestamp: None },
                8 => RequestContext::QueryMaximalAccess { timestamp: Some(r.u64("MxAc")?) },
                _ => return Err(ParseError::Invalid("MxAc length")),
            },
            name::TIMEWARP_TOKEN => {
                exact(8, "TWrp length")?;
                RequestContext::TimewarpToken(r.u64("TWrp")?)
            }
            name::QUERY_ON_DISK_ID => RequestContext::QueryOnDiskId,
            name::LEASE => RequestContext::Lease(Lease::parse(d)?),
            name::DURABLE_HANDLE_REQUEST_V2 => {
                exact(32, "DH2Q length")?;
                let timeout = r.u32("DH2Q")?;
                let flags = r.u32("DH2Q")?;
                r.skip(8, "DH2Q")?;
                let create_guid = r.guid("DH2Q")?;
                RequestContext::DurableHandleRequestV2(DurableHandleRequestV2 { timeout, flags, create_guid })
            }
            name::DURABLE_HANDLE_RECONNECT_V2 => {
                exact(36, "DH2C length")?;
                let file_id = FileId::read(&mut r)?;
                let create_guid = r.guid("DH2C")?;
                let flags = r.u32("DH2C")?;
                RequestContext::DurableHandleReconnectV2(DurableHandleReconnectV2 { file_id, create_guid, flags })
            }
            name::APP_INSTANCE_ID => {
                exact(20, "app instance id length")?;
                if r.u16("app instance id")? != 20 {
                    return Err(ParseError::Invalid("app instance id structure size"));
                }
                r.u16("app instance id")?;
                RequestContext::AppInstanceId(r.guid("app instance id")?)
            }
            name::APP_INSTANCE_VERSION => {
                exact(24, "app instance version length")?;
                if r.u16("app instance version")? != 24 {
                    return Err(ParseError::Invalid("app instance version structure size"));
                }
                r.skip(6, "app instance version")?;
                let high = r.u64("app instance version")?;
                RequestContext::AppInstanceVersion { high, low: r.u64("app instance version")? }
            }
            name::AAPL => RequestContext::Aapl(ServerQuery::parse(d)?),
            _ => RequestContext::Other(c),
        })
    }

    pub fn name(&self) -> &'a [u8] {
        match self {
            RequestContext::EaBuffer(_) => name::EA_BUFFER,
            RequestContext::SecurityDescriptor(_) => name::SD_BUFFER,
            RequestContext::DurableHandleRequest => name::DURABLE_HANDLE_REQUEST,
            RequestContext::DurableHandleReconnect { .. } => name::DURABLE_HANDLE_RECONNECT,
            RequestContext::AllocationSize(_) => name::ALLOCATION_SIZE,
            RequestContext::QueryMaximalAccess { .. } => name::QUERY_MAXIMAL_ACCESS,
            RequestContext::TimewarpToken(_) => name::TIMEWARP_TOKEN,
            RequestContext::QueryOnDiskId => name::QUERY_ON_DISK_ID,
            RequestContext::Lease(_) => name::LEASE,
            RequestContext::DurableHandleRequestV2(_) => name::DURABLE_HANDLE_REQUEST_V2,
            RequestContext::DurableHandleReconnectV2(_) => name::DURABLE_HANDLE_RECONNECT_V2,
            RequestContext::AppInstanceId(_) => name::APP_INSTANCE_ID,
            RequestContext::AppInstanceVersion { .. } => name::APP_INSTANCE_VERSION,
            RequestContext::Aapl(_) => name::AAPL,
            RequestContext::Other(c) => c.name,
        }
    }

    /// Appends the context's data (client side; tests and the fuzzer).
    pub fn encode_data(&self, out: &mut BytesMut) {
        match self {
            RequestContext::EaBuffer(d) | RequestContext::SecurityDescriptor(d) => out.put_slice(d),
            RequestContext::Aapl(q) => q.encode(out),
            RequestContext::DurableHandleRequest => out.put_bytes(0, 16),
            RequestContext::DurableHandleReconnect { file_id } => file_id.encode(out),
            RequestContext::AllocationSize(v) | RequestContext::TimewarpToken(v) => out.put_u64_le(*v),
            RequestContext::QueryMaximalAccess { timestamp } => {
                if let Some(t) = timestamp {
                    out.put_u64_le(*t)
                }
            }
            RequestContext::QueryOnDiskId => {}
            RequestContext::Lease(l) => l.encode(out),
            RequestContext::DurableHandleRequestV2(d) => {
                out.put_u32_le(d.timeout);
                out.put_u32_le(d.flags);
                out.put_u64_le(0);
                out.put_slice(&d.create_guid);
            }
            RequestContext::DurableHandleReconnectV2(d) => {
                d.file_id.encode(out);
                out.put_slice(&d.create_guid);
                out.put_u32_le(d.flags);
            }
            RequestContext::AppInstanceId(g) => {
                out.put_u16_le(20);
                out.put_u16_le(0);
                out.put_slice(g);
            }
            RequestContext::AppInstanceVersion { high, low } => {
                out.put_u16_le(24);
                out.put_u16_le(0);
                out.put_u32_le(0);
                out.put_u64_le(*high);
                out.put_u64_le(*low);
            }
            RequestContext::Other(c) => out.put_slice(c.data),
        }
    }
}

/// Parses and decodes the CreateContexts area of a request.
pub fn parse_request_contexts(buf: &[u8]) -> ParseResult<Vec<RequestContext<'_>>> {
    parse_list(buf)?.into_iter().map(RequestContext::decode).collect()
}

/// A create context of a CREATE response ([MS-SMB2] 2.2.14.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseContext<'a> {
    /// DHnQ response (2.2.14.2.3): 8 reserved bytes.
    DurableHandle,
    /// MxAc response (2.2.14.2.5): `{ query_status: u32 | maximal_access: u32 }`.
    MaximalAccess { query_status: u32, maximal_access: u32 },
    /// QFid response (2.2.14.2.9): `{ disk_file_id: u64 | volume_id: u64 | _reserved: [u8;16] }`.
    OnDiskId { disk_file_id: u64, volume_id: u64 },
    /// RqLs response v1/v2 (2.2.14.2.10, 2.2.14.2.11).
    Lease(Lease),
    /// DH2Q response (2.2.14.2.12): `{ timeout: u32 | flags: u32 }`.
    DurableHandleV2 { timeout: u32, flags: u32 },
    /// AAPL server query reply ([`super::aapl`]).
    Aapl(ServerQueryReply),
    Other(CreateContext<'a>),
}

impl<'a> ResponseContext<'a> {
    pub fn name(&self) -> &'a [u8] {
        match self {
            ResponseContext::DurableHandle => name::DURABLE_HANDLE_REQUEST,
            ResponseContext::MaximalAccess { .. } => name::QUERY_MAXIMAL_ACCESS,
            ResponseContext::OnDiskId { .. } => name::QUERY_ON_DISK_ID,
            ResponseContext::Lease(_) => name::LEASE,
            ResponseContext::DurableHandleV2 { .. } => name::DURABLE_HANDLE_REQUEST_V2,
            ResponseContext::Aapl(_) => name::AAPL,
            ResponseContext::Other(c) => c.name,
        }
    }

    pub fn encode_data(&self, out: &mut BytesMut) {
        match self {
            ResponseContext::DurableHandle => out.put_bytes(0, 8),
            ResponseContext::MaximalAccess { query_status, maximal_access } => {
                out.put_u32_le(*query_status);
                out.put_u32_le(*maximal_access);
            }
            ResponseContext::OnDiskId { disk_file_id, volume_id } => {
                out.put_u64_le(*disk_file_id);
                out.put_u64_le(*volume_id);
                out.put_bytes(0, 16);
            }
            ResponseContext::Lease(l) => l.encode(out),
            ResponseContext::DurableHandleV2 { timeout, flags } => {
                out.put_u32_le(*timeout);
                out.put_u32_le(*flags);
            }
            ResponseContext::Aapl(r) => r.encode(out),
            ResponseContext::Other(c) => out.put_slice(c.data),
        }
    }

    /// Decodes one raw context (client side; tests).
    pub fn decode(c: CreateContext<'a>) -> ParseResult<Self> {
        let d = c.data;
        let mut r = Reader::new(d);
        let exact = |n: usize, what| if d.len() == n { Ok(()) } else { Err(ParseError::Invalid(what)) };
        Ok(match c.name {
            name::DURABLE_HANDLE_REQUEST => {
                exact(8, "DHnQ length")?;
                ResponseContext::DurableHandle
            }
            name::QUERY_MAXIMAL_ACCESS => {
                exact(8, "MxAc length")?;
                ResponseContext::MaximalAccess { query_status: r.u32("MxAc")?, maximal_access: r.u32("MxAc")? }
            }
            name::QUERY_ON_DISK_ID => {
                exact(32, "QFid length")?;
                ResponseContext::OnDiskId { disk_file_id: r.u64("QFid")?, volume_id: r.u64("QFid")? }
            }
            name::LEASE => ResponseContext::Lease(Lease::parse(d)?),
            name::DURABLE_HANDLE_REQUEST_V2 => {
                exact(8, "DH2Q length")?;
                ResponseContext::DurableHandleV2 { timeout: r.u32("DH2Q")?, flags: r.u32("DH2Q")? }
            }
            name::AAPL => ResponseContext::Aapl(ServerQueryReply::parse(d)?),
            _ => ResponseContext::Other(c),
        })
    }
}

/// Encodes typed contexts as a chained list (see [`encode_list`]).
pub fn encode_request_contexts(ctxs: &[RequestContext<'_>], out: &mut BytesMut) {
    let datas: Vec<BytesMut> = ctxs
        .iter()
        .map(|c| {
            let mut d = BytesMut::new();
            c.encode_data(&mut d);
            d
        })
        .collect();
    encode_list(ctxs.iter().zip(datas.iter()).map(|(c, d)| (c.name(), &d[..])), out);
}

/// Encodes typed response contexts as a chained list (see [`encode_list`]).
pub fn encode_response_contexts(ctxs: &[ResponseContext<'_>], out: &mut BytesMut) {
    let datas: Vec<BytesMut> = ctxs
        .iter()
        .map(|c| {
            let mut d = BytesMut::new();
            c.encode_data(&mut d);
            d
        })
        .collect();
    encode_list(ctxs.iter().zip(datas.iter()).map(|(c, d)| (c.name(), &d[..])), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_request_contexts() -> Vec<RequestContext<'static>> {
        vec![
            RequestContext::EaBuffer(b"\0\0\0\0\0\x01\x01\0ab\0z"),
            RequestContext::SecurityDescriptor(b"\x01\0\x04\x80sd"),
            RequestContext::DurableHandleRequest,
            RequestContext::DurableHandleReconnect { file_id: FileId { persistent: 7, volatile: 8 } },
            RequestContext::AllocationSize(4096),
            RequestContext::QueryMaximalAccess { timestamp: None },
            RequestContext::QueryMaximalAccess { timestamp: Some(5) },
            RequestContext::TimewarpToken(0x01D0_0000_0000_0000),
            RequestContext::QueryOnDiskId,
            RequestContext::Lease(Lease {
                lease_key: [1; 16],
                lease_state: lease_state::READ_CACHING | lease_state::HANDLE_CACHING,
                lease_flags: 0,
                lease_duration: 0,
                v2: None,
            }),
            RequestContext::Lease(Lease {
                lease_key: [2; 16],
                lease_state: 7,
                lease_flags: lease_flags::PARENT_LEASE_KEY_SET,
                lease_duration: 0,
                v2: Some(LeaseV2 { parent_lease_key: [3; 16], epoch: 4 }),
            }),
            RequestContext::DurableHandleRequestV2(DurableHandleRequestV2 {
                timeout: 60_000,
                flags: durable_v2_flags::PERSISTENT,
                create_guid: [9; 16],
            }),
            RequestContext::DurableHandleReconnectV2(DurableHandleReconnectV2 {
                file_id: FileId { persistent: 1, volatile: 2 },
                create_guid: [9; 16],
                flags: 0,
            }),
            RequestContext::AppInstanceId([0xA; 16]),
            RequestContext::AppInstanceVersion { high: 3, low: 4 },
            RequestContext::Aapl(ServerQuery { request_bitmap: 7, client_caps: 4 }),
            RequestContext::Other(CreateContext { name: b"Xyz", data: b"odd" }),
        ]
    }

    #[test]
    fn request_contexts_roundtrip() {
        let ctxs = all_request_contexts();
        let mut b = BytesMut::new();
        encode_request_contexts(&ctxs, &mut b);
        assert_eq!(parse_request_contexts(&b).unwrap(), ctxs);
        // Every context but the last starts 8-aligned and none has trailing pad.
        let raw = parse_list(&b).unwrap();
        assert_eq!(raw.len(), ctxs.len());
        assert!(b.ends_with(b"odd"));
    }

    #[test]
    fn response_contexts_roundtrip() {
        let ctxs = vec![
            ResponseContext::MaximalAccess { query_status: 0, maximal_access: 0x001F_01FF },
            ResponseContext::OnDiskId { disk_file_id: 42, volume_id: 0xABCD },
            ResponseContext::Lease(Lease {
                lease_key: [1; 16],
                lease_state: 1,
                lease_flags: 0,
                lease_duration: 0,
                v2: Some(LeaseV2 { parent_lease_key: [0; 16], epoch: 1 }),
            }),
            ResponseContext::DurableHandle,
            ResponseContext::DurableHandleV2 { timeout: 60_000, flags: 0 },
            ResponseContext::Aapl(ServerQueryReply {
                reply_bitmap: 7,
                server_caps: 4,
                volume_caps: 0,
                model: "Duet".into(),
            }),
        ];
        let mut b = BytesMut::new();
        encode_response_contexts(&ctxs, &mut b);
        let back: Vec<_> =
            parse_list(&b).unwrap().into_iter().map(ResponseContext::decode).collect::<Result<_, _>>().unwrap();
        assert_eq!(back, ctxs);
    }

    #[test]
    fn truncated_and_malformed_lists_fail() {
        let ctxs = all_request_contexts();
        let mut b = BytesMut::new();
        encode_request_contexts(&ctxs, &mut b);
        for cut in 1..b.len() {
            assert!(parse_request_contexts(&b[..cut]).is_err(), "cut at {cut}");
        }
        // A `next` pointing backwards, unaligned, or past the end.
        for bad in [0u32, 3, 0x7FFF_FFF8] {
            let mut m = b.to_vec();
            if bad == 0 {
                // a zero next on the first context ends the list early: valid
                m[0..4].copy_from_slice(&bad.to_le_bytes());
                assert_eq!(parse_list(&m).unwrap().len(), 1);
                continue;
            }
            m[0..4].copy_from_slice(&bad.to_le_bytes());
            assert!(parse_list(&m).is_err());
        }
        // Wrong lengths for fixed-size contexts.
        let c = CreateContext { name: name::LEASE, data: &[0; 33] };
        assert!(RequestContext::decode(c).is_err());
        let c = CreateContext { name: name::DURABLE_HANDLE_REQUEST_V2, data: &[0; 31] };
        assert!(RequestContext::decode(c).is_err());
        // AAPL: 24 bytes and the server-query command, or invalid.
        for data in [&[0u8; 23][..], &[0; 25], &[0; 24], &[2, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]] {
            assert!(RequestContext::decode(CreateContext { name: name::AAPL, data }).is_err());
        }
        // Name outside its context.
        let mut m = b.to_vec();
        m[4..6].copy_from_slice(&0xFFF0u16.to_le_bytes());
        assert!(parse_list(&m).is_err());
    }
}
