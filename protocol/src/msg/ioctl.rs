//! IOCTL request and response ([MS-SMB2] 2.2.31, 2.2.32), the FSCTL codes,
//! and the FSCTL structures the server reads or writes: VALIDATE_NEGOTIATE_INFO
//! (2.2.31.4, 2.2.32.6), NETWORK_INTERFACE_INFO (2.2.32.5), SRV_COPYCHUNK_COPY
//! (2.2.31.1, 2.2.32.1), SRV_REQUEST_RESUME_KEY (2.2.32.3), LMR resiliency
//! (2.2.31.3) and SRV_SNAPSHOT_ARRAY (2.2.32.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, BytesMut};

use super::{fixed, FileId};
use crate::codec::{slice_at, Reader};
use crate::error::{ParseError, ParseResult};
use crate::header::HEADER_LEN;

/// FSCTL and IOCTL codes ([MS-SMB2] 2.2.31, [MS-FSCC] 2.3).
pub mod fsctl {
    pub const FSCTL_DFS_GET_REFERRALS: u32 = 0x0006_0194;
    pub const FSCTL_DFS_GET_REFERRALS_EX: u32 = 0x0006_01B0;
    pub const FSCTL_PIPE_PEEK: u32 = 0x0011_400C;
    pub const FSCTL_PIPE_WAIT: u32 = 0x0011_0018;
    pub const FSCTL_PIPE_TRANSCEIVE: u32 = 0x0011_C017;
    pub const FSCTL_SRV_COPYCHUNK: u32 = 0x0014_40F2;
    pub const FSCTL_SRV_ENUMERATE_SNAPSHOTS: u32 = 0x0014_4064;
    pub const FSCTL_SRV_REQUEST_RESUME_KEY: u32 = 0x0014_0078;
    pub const FSCTL_SRV_READ_HASH: u32 = 0x0014_41BB;
    pub const FSCTL_SRV_COPYCHUNK_WRITE: u32 = 0x0014_80F2;
    pub const FSCTL_LMR_REQUEST_RESILIENCY: u32 = 0x0014_01D4;
    pub const FSCTL_QUERY_NETWORK_INTERFACE_INFO: u32 = 0x0014_01FC;
    pub const FSCTL_VALIDATE_NEGOTIATE_INFO: u32 = 0x0014_0204;
    pub const FSCTL_IS_PATHNAME_VALID: u32 = 0x0009_002C;
    pub const FSCTL_GET_COMPRESSION: u32 = 0x0009_003C;
    pub const FSCTL_SET_COMPRESSION: u32 = 0x0009_C040;
    pub const FSCTL_GET_NTFS_VOLUME_DATA: u32 = 0x0009_0064;
    pub const FSCTL_GET_RETRIEVAL_POINTERS: u32 = 0x0009_0073;
    pub const FSCTL_FIND_FILES_BY_SID: u32 = 0x0009_008F;
    pub const FSCTL_SET_OBJECT_ID: u32 = 0x0009_0098;
    pub const FSCTL_GET_OBJECT_ID: u32 = 0x0009_009C;
    pub const FSCTL_DELETE_OBJECT_ID: u32 = 0x0009_00A0;
    pub const FSCTL_SET_REPARSE_POINT: u32 = 0x0009_00A4;
    pub const FSCTL_GET_REPARSE_POINT: u32 = 0x0009_00A8;
    pub const FSCTL_DELETE_REPARSE_POINT: u32 = 0x0009_00AC;
    pub const FSCTL_CREATE_OR_GET_OBJECT_ID: u32 = 0x0009_00C0;
    pub const FSCTL_SET_SPARSE: u32 = 0x0009_00C4;
    pub const FSCTL_READ_FILE_USN_DATA: u32 = 0x0009_00EB;
    pub const FSCTL_SET_ZERO_DATA: u32 = 0x0009_80C8;
    pub const FSCTL_QUERY_ALLOCATED_RANGES: u32 = 0x0009_40CF;
    pub const FSCTL_FILE_LEVEL_TRIM: u32 = 0x0009_8208;
    pub const FSCTL_OFFLOAD_READ: u32 = 0x0009_4264;
    pub const FSCTL_OFFLOAD_WRITE: u32 = 0x0009_8268;
    pub const FSCTL_GET_INTEGRITY_INFORMATION: u32 = 0x0009_027C;
    pub const FSCTL_SET_INTEGRITY_INFORMATION: u32 = 0x0009_C280;
    pub const FSCTL_QUERY_FILE_REGIONS: u32 = 0x0009_0284;
    pub const FSCTL_QUERY_SHARED_VIRTUAL_DISK_SUPPORT: u32 = 0x0009_0300;
    pub const FSCTL_SVHDX_SYNC_TUNNEL_REQUEST: u32 = 0x0009_0304;
    pub const FSCTL_DUPLICATE_EXTENTS_TO_FILE: u32 = 0x0009_8344;
}

/// Flags of IOCTL ([MS-SMB2] 2.2.31).
pub mod ioctl_flags {
    pub const IS_IOCTL: u32 = 0x0000_0000;
    pub const IS_FSCTL: u32 = 0x0000_0001;
}

/// Capability bits of NETWORK_INTERFACE_INFO ([MS-SMB2] 2.2.32.5).
pub mod interface_capability {
    pub const RSS_CAPABLE: u32 = 0x0000_0001;
    pub const RDMA_CAPABLE: u32 = 0x0000_0002;
}

/// Offset of the request's Buffer: header + 56 fixed bytes (0x78).
const REQUEST_BUFFER_OFFSET: usize = HEADER_LEN + 56;
/// Offset of the response's Buffer: header + 48 fixed bytes (0x70).
const RESPONSE_BUFFER_OFFSET: usize = HEADER_LEN + 48;

/// SMB2 IOCTL request ([MS-SMB2] 2.2.31).
///
/// Format: `{ structure_size=57: u16 | _reserved: u16 | ctl_code: u32 |
/// file_id: FileId | input_offset: u32 | input_count: u32 |
/// max_input_response: u32 | output_offset: u32 | output_count: u32 |
/// max_output_response: u32 | flags: u32 | _reserved2: u32 | buffer }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoctlRequest<'a> {
    /// [`fsctl`].
    pub ctl_code: u32,
    /// [`FileId::ANY`] for FSCTLs that address no file.
    pub file_id: FileId,
    pub input: &'a [u8],
    pub max_input_response: u32,
    /// Must be empty per the spec; borrowed anyway.
    pub output: &'a [u8],
    pub max_output_response: u32,
    /// [`ioctl_flags`].
    pub flags: u32,
}

impl<'a> IoctlRequest<'a> {
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 57)?;
        r.u16("reserved")?;
        let ctl_code = r.u32("ctl code")?;
        let file_id = FileId::read(&mut r)?;
        let in_off = r.u32("input offset")? as usize;
        let in_len = r.u32("input count")? as usize;
        let max_input_response = r.u32("max input response")?;
        let out_off = r.u32("output offset")? as usize;
        let out_len = r.u32("output count")? as usize;
        let max_output_response = r.u32("max output response")?;
        let flags = r.u32("flags")?;
        r.u32("reserved2")?;
        let input = slice_at(msg, in_off, in_len, "ioctl input")?;
        let output = slice_at(msg, out_off, out_len, "ioctl output")?;
        Ok(IoctlRequest { ctl_code, file_id, input, max_input_response, output, max_output_response, flags })
    }

    pub fn is_fsctl(&self) -> bool {
        self.flags & ioctl_flags::IS_FSCTL != 0
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        let (in_off, out_off) = buffer_offsets(REQUEST_BUFFER_OFFSET, self.input.len());
        out.put_u16_le(57);
        out.put_u16_le(0);
        out.put_u32_le(self.ctl_code);
        self.file_id.encode(out);
        out.put_u32_le(in_off as u32);
        out.put_u32_le(self.input.len() as u32);
        out.put_u32_le(self.max_input_response);
        out.put_u32_le(if self.output.is_empty() { 0 } else { out_off as u32 });
        out.put_u32_le(self.output.len() as u32);
        out.put_u32_le(self.max_output_response);
        out.put_u32_le(self.flags);
        out.put_u32_le(0);
        put_buffers(self.input, self.output, in_off, out_off, out);
    }
}

/// Offsets of the input (at `base`) and output (after the input, 8-aligned).
fn buffer_offsets(base: usize, input_len: usize) -> (usize, usize) {
    (base, (base + input_len + 7) & !7)
}

/// Writes input, alignment, output; one zero byte if both are empty.
fn put_buffers(input: &[u8], output: &[u8], in_off: usize, out_off: usize, out: &mut BytesMut) {
    out.put_slice(input);
    if !output.is_empty() {
        out.put_bytes(0, out_off - in_off - input.len());
        out.put_slice(output);
    }
    if input.is_empty() && output.is_empty() {
        out.put_u8(0);
    }
}

/// SMB2 IOCTL response ([MS-SMB2] 2.2.32).
///
/// Format: `{ structure_size=49: u16 | _reserved: u16 | ctl_code: u32 |
/// file_id: FileId | input_offset: u32 | input_count: u32 |
/// output_offset: u32 | output_count: u32 | flags: u32 | _reserved2: u32 |
/// buffer }`
///
/// Input at 0x70, output after it 8-aligned (so also at 0x70 when the
/// input is empty, as Windows sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoctlResponse<'a> {
    pub ctl_code: u32,
    pub file_id: FileId,
    /// Usually empty (Windows echoes input only for some FSCTLs).
    pub input: &'a [u8],
    pub output: &'a [u8],
}

impl<'a> IoctlResponse<'a> {
    pub fn encode(&self, out: &mut BytesMut) {
        let (in_off, out_off) = buffer_offsets(RESPONSE_BUFFER_OFFSET, self.input.len());
        out.put_u16_le(49);
        out.put_u16_le(0);
        out.put_u32_le(self.ctl_code);
        self.file_id.encode(out);
        out.put_u32_le(in_off as u32);
        out.put_u32_le(self.input.len() as u32);
        out.put_u32_le(out_off as u32);
        out.put_u32_le(self.output.len() as u32);
        out.put_u32_le(0);
        out.put_u32_le(0);
        put_buffers(self.input, self.output, in_off, out_off, out);
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 49)?;
        r.u16("reserved")?;
        let ctl_code = r.u32("ctl code")?;
        let file_id = FileId::read(&mut r)?;
        let in_off = r.u32("input offset")? as usize;
        let in_len = r.u32("input count")? as usize;
        let out_off = r.u32("output offset")? as usize;
        let out_len = r.u32("output count")? as usize;
        r.u32("flags")?;
        r.u32("reserved2")?;
        Ok(IoctlResponse {
            ctl_code,
            file_id,
            input: slice_at(msg, in_off, in_len, "ioctl input")?,
            output: slice_at(msg, out_off, out_len, "ioctl output")?,
        })
    }
}

/// Rejects bytes left after a fixed structure.
fn done(r: &Reader<'_>, what: &'static str) -> ParseResult<()> {
    if r.remaining() != 0 {
        return Err(ParseError::Invalid(what));
    }
    Ok(())
}

/// VALIDATE_NEGOTIATE_INFO request ([MS-SMB2] 2.2.31.4), the IOCTL input.
///
/// Format: `{ capabilities: u32 | guid: [u8;16] | security_mode: u16 |
/// dialect_count: u16 | dialects[dialect_count]: u16 }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateNegotiateInfoRequest {
    pub capabilities: u32,
    pub guid: [u8; 16],
    pub security_mode: u16,
    pub dialects: Vec<u16>,
}

impl ValidateNegotiateInfoRequest {
    /// Parses the IOCTL input buffer. Extra bytes after the dialects are
    /// an error, so is a count the buffer cannot hold.
    pub fn parse(input: &[u8]) -> ParseResult<Self> {
        let mut r = Reader::new(input);
        let capabilities = r.u32("validate negotiate")?;
        let guid = r.guid("validate negotiate")?;
        let security_mode = r.u16("validate negotiate")?;
        let count = r.u16("validate negotiate")? as usize;
        if count * 2 != r.remaining() {
            return Err(ParseError::Invalid("validate negotiate dialect count"));
        }
        let dialects = (0..count).map(|_| r.u16("dialect")).collect::<ParseResult<Vec<_>>>()?;
        Ok(ValidateNegotiateInfoRequest { capabilities, guid, security_mode, dialects })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.capabilities);
        out.put_slice(&self.guid);
        out.put_u16_le(self.security_mode);
        out.put_u16_le(self.dialects.len() as u16);
        self.dialects.iter().for_each(|d| out.put_u16_le(*d));
    }
}

/// VALIDATE_NEGOTIATE_INFO response ([MS-SMB2] 2.2.32.6), the IOCTL output.
///
/// Format: `{ capabilities: u32 | guid: [u8;16] | security_mode: u16 | dialect: u16 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidateNegotiateInfoResponse {
    pub capabilities: u32,
    /// The server's GUID.
    pub guid: [u8; 16],
    pub security_mode: u16,
    pub dialect: u16,
}

impl ValidateNegotiateInfoResponse {
    pub const LEN: usize = 24;

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.capabilities);
        out.put_slice(&self.guid);
        out.put_u16_le(self.security_mode);
        out.put_u16_le(self.dialect);
    }

    pub fn parse(output: &[u8]) -> ParseResult<Self> {
        let mut r = Reader::new(output);
        let v = ValidateNegotiateInfoResponse {
            capabilities: r.u32("validate negotiate")?,
            guid: r.guid("validate negotiate")?,
            security_mode: r.u16("validate negotiate")?,
            dialect: r.u16("validate negotiate")?,
        };
        done(&r, "validate negotiate length")?;
        Ok(v)
    }
}

/// One NETWORK_INTERFACE_INFO entry ([MS-SMB2] 2.2.32.5).
///
/// Format: `{ next: u32 | if_index: u32 | capability: u32 | _reserved: u32 |
/// link_speed: u64 | sockaddr_storage: [u8;128] }`; the sockaddr is
/// `{ family=0x2: u16 | port: u16 (big-endian) | ipv4: [u8;4] | zeros }` or
/// `{ family=0x17: u16 | port: u16 (big-endian) | flow_info: u32 | ipv6: [u8;16] | scope_id: u32 | zeros }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkInterfaceInfo {
    pub if_index: u32,
    /// [`interface_capability`].
    pub capability: u32,
    /// Bits per second.
    pub link_speed: u64,
    pub address: SocketAddr,
}

impl NetworkInterfaceInfo {
    /// Length of one entry.
    pub const LEN: usize = 152;
    const AF_INET: u16 = 0x0002;
    const AF_INET6: u16 = 0x0017;

    /// Encodes the FSCTL_QUERY_NETWORK_INTERFACE_INFO output: the entries
    /// chained by `next` (152 each, 0 for the last).
    pub fn encode_list(list: &[NetworkInterfaceInfo], out: &mut BytesMut) {
        for (i, e) in list.iter().enumerate() {
            let next = if i + 1 == list.len() { 0 } else { Self::LEN as u32 };
            out.put_u32_le(next);
            out.put_u32_le(e.if_index);
            out.put_u32_le(e.capability);
            out.put_u32_le(0);
            out.put_u64_le(e.link_speed);
            let start = out.len();
            match e.address {
                SocketAddr::V4(a) => {
                    out.put_u16_le(Self::AF_INET);
                    out.put_u16(a.port());
                    out.put_slice(&a.ip().octets());
                }
                SocketAddr::V6(a) => {
                    out.put_u16_le(Self::AF_INET6);
                    out.put_u16(a.port());
                    out.put_u32(a.flowinfo());
                    out.put_slice(&a.ip().octets());
                    out.put_u32_le(a.scope_id());
                }
            }
            out.put_bytes(0, 128 - (out.len() - start));
        }
    }

    /// Parses an interface list (client side; tests).
    pub fn parse_list(buf: &[u8]) -> ParseResult<Vec<NetworkInterfaceInfo>> {
        let mut out = Vec::new();
        let mut at = 0usize;
        while at < buf.len() {
            let mut r = Reader::new(&buf[at..]);
            let next = r.u32("interface info")? as usize;
            let if_index = r.u32("interface info")?;
            let capability = r.u32("interface info")?;
            r.u32("interface info")?;
            let link_speed = r.u64("interface info")?;
            let mut sa = Reader::new(r.take(128, "sockaddr")?);
            let family = sa.u16("sockaddr")?;
            let port_b = sa.take(2, "sockaddr")?;
            let port = u16::from_be_bytes([port_b[0], port_b[1]]);
            let address = match family {
                Self::AF_INET => {
                    let ip = sa.take(4, "sockaddr")?;
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])), port)
                }
                Self::AF_INET6 => {
                    sa.u32("sockaddr")?;
                    let mut ip = [0u8; 16];
                    ip.copy_from_slice(sa.take(16, "sockaddr")?);
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)
                }
                _ => return Err(ParseError::Invalid("sockaddr family")),
            };
            out.push(NetworkInterfaceInfo { if_index, capability, link_speed, address });
            if next == 0 {
                break;
            }
            if next < Self::LEN {
                return Err(ParseError::Invalid("interface info next"));
            }
            at += next;
        }
        Ok(out)
    }
}

/// One chunk of SRV_COPYCHUNK_COPY ([MS-SMB2] 2.2.31.1.1).
///
/// Format: `{ source_offset: u64 | target_offset: u64 | length: u32 | _reserved: u32 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrvCopychunk {
    pub source_offset: u64,
    pub target_offset: u64,
    pub length: u32,
}

/// SRV_COPYCHUNK_COPY ([MS-SMB2] 2.2.31.1), the input of
/// FSCTL_SRV_COPYCHUNK and FSCTL_SRV_COPYCHUNK_WRITE.
///
/// Format: `{ source_key: [u8;24] | chunk_count: u32 | _reserved: u32 |
/// chunks[chunk_count] }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvCopychunkCopy {
    pub source_key: [u8; 24],
    pub chunks: Vec<SrvCopychunk>,
}

impl SrvCopychunkCopy {
    /// Parses the IOCTL input. The chunk count must match the buffer.
    pub fn parse(input: &[u8]) -> ParseResult<Self> {
        let mut r = Reader::new(input);
        let mut source_key = [0u8; 24];
        source_key.copy_from_slice(r.take(24, "copychunk source key")?);
        let count = r.u32("copychunk count")? as usize;
        r.u32("copychunk reserved")?;
        if count.checked_mul(24) != Some(r.remaining()) {
            return Err(ParseError::Invalid("copychunk count"));
        }
        let mut chunks = Vec::with_capacity(count);
        for _ in 0..count {
            let source_offset = r.u64("copychunk")?;
            let target_offset = r.u64("copychunk")?;
            let length = r.u32("copychunk")?;
            r.u32("copychunk")?;
            chunks.push(SrvCopychunk { source_offset, target_offset, length });
        }
        Ok(SrvCopychunkCopy { source_key, chunks })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.source_key);
        out.put_u32_le(self.chunks.len() as u32);
        out.put_u32_le(0);
        for c in &self.chunks {
            out.put_u64_le(c.source_offset);
            out.put_u64_le(c.target_offset);
            out.put_u32_le(c.length);
            out.put_u32_le(0);
        }
    }
}

/// SRV_COPYCHUNK_RESPONSE ([MS-SMB2] 2.2.32.1).
///
/// Format: `{ chunks_written: u32 | chunk_bytes_written: u32 | total_bytes_written: u32 }`
///
/// On STATUS_INVALID_PARAMETER the same fields carry the server's limits
/// (max chunks, max chunk size, max total).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrvCopychunkResponse {
    pub chunks_written: u32,
    pub chunk_bytes_written: u32,
    pub total_bytes_written: u32,
}

impl SrvCopychunkResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.chunks_written);
        out.put_u32_le(self.chunk_bytes_written);
        out.put_u32_le(self.total_bytes_written);
    }

    pub fn parse(output: &[u8]) -> ParseResult<Self> {
        let mut r = Reader::new(output);
        let v = SrvCopychunkResponse {
            chunks_written: r.u32("copychunk response")?,
            chunk_bytes_written: r.u32("copychunk response")?,
            total_bytes_written: r.u32("copychunk response")?,
        };
        done(&r, "copychunk response length")?;
        Ok(v)
    }
}

/// SRV_REQUEST_RESUME_KEY response ([MS-SMB2] 2.2.32.3).
///
/// Format: `{ resume_key: [u8;24] | context_length=0: u32 | context: [u8;4] }`
/// (32 bytes, the unused context zeroed, as Windows sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrvRequestResumeKeyResponse {
    pub resume_key: [u8; 24],
}

impl SrvRequestResumeKeyResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.resume_key);
        out.put_u32_le(0);
        out.put_u32_le(0);
    }

    pub fn parse(output: &[u8]) -> ParseResult<Self> {
        let mut r = Reader::new(output);
        let mut resume_key = [0u8; 24];
        resume_key.copy_from_slice(r.take(24, "resume key")?);
        Ok(SrvRequestResumeKeyResponse { resume_key })
    }
}

/// NETWORK_RESILIENCY_REQUEST ([MS-SMB2] 2.2.31.3), the input of
/// FSCTL_LMR_REQUEST_RESILIENCY.
///
/// Format: `{ timeout: u32 | _reserved: u32 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkResiliencyRequest {
    /// Milliseconds.
    pub timeout: u32,
}

impl NetworkResiliencyRequest {
    pub fn parse(input: &[u8]) -> ParseResult<Self> {
        let mut r = Reader::new(input);
        let timeout = r.u32("resiliency timeout")?;
        r.u32("resiliency reserved")?;
        Ok(NetworkResiliencyRequest { timeout })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.timeout);
        out.put_u32_le(0);
    }
}

/// SRV_SNAPSHOT_ARRAY ([MS-SMB2] 2.2.32.2), the output of
/// FSCTL_SRV_ENUMERATE_SNAPSHOTS.
///
/// Format: `{ number_of_snapshots: u32 | number_of_snapshots_returned: u32 |
/// snapshot_array_size: u32 | snapshots: multi-sz UTF-16 "@GMT-..." }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvSnapshotArray {
    /// "@GMT-YYYY.MM.DD-HH.MM.SS" names.
    pub snapshots: Vec<String>,
}

impl SrvSnapshotArray {
    /// Encodes as many names as fit in `max_output` bytes. With no room
    /// for the names (a client's first 16-byte probe), only the counts and
    /// the needed array size go out.
    pub fn encode(&self, max_output: usize, out: &mut BytesMut) {
        let mut names = BytesMut::new();
        for s in &self.snapshots {
            crate::codec::put_utf16le(s, &mut names);
            names.put_u16_le(0);
        }
        names.put_u16_le(0);
        let fits = 12 + names.len() <= max_output;
        out.put_u32_le(self.snapshots.len() as u32);
        out.put_u32_le(if fits { self.snapshots.len() as u32 } else { 0 });
        out.put_u32_le(names.len() as u32);
        if fits {
            out.put_slice(&names);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn request_roundtrip_and_truncation() {
        let vni = ValidateNegotiateInfoRequest {
            capabilities: 0x7F,
            guid: [4; 16],
            security_mode: 1,
            dialects: vec![0x0202, 0x0210, 0x0300, 0x0302],
        };
        let mut input = BytesMut::new();
        vni.encode(&mut input);
        for output in [&b""[..], b"xyz"] {
            let req = IoctlRequest {
                ctl_code: fsctl::FSCTL_VALIDATE_NEGOTIATE_INFO,
                file_id: FileId::ANY,
                input: &input,
                max_input_response: 0,
                output,
                max_output_response: 24,
                flags: ioctl_flags::IS_FSCTL,
            };
            let mut b = BytesMut::new();
            req.encode(&mut b);
            let msg = with_header(Command::Ioctl, &b);
            let back = IoctlRequest::parse(&msg).unwrap();
            assert_eq!(back, req);
            assert!(back.is_fsctl());
            assert_eq!(ValidateNegotiateInfoRequest::parse(back.input).unwrap(), vni);
            prefixes_fail(&msg, msg.len(), IoctlRequest::parse);
        }
        prefixes_fail(&input, input.len(), ValidateNegotiateInfoRequest::parse);
    }

    #[test]
    fn response_roundtrip() {
        let vni = ValidateNegotiateInfoResponse { capabilities: 0x44, guid: [8; 16], security_mode: 1, dialect: 0x0302 };
        let mut output = BytesMut::new();
        vni.encode(&mut output);
        assert_eq!(output.len(), ValidateNegotiateInfoResponse::LEN);
        for (input, output) in [(&b""[..], &output[..]), (b"in", b"out"), (b"", b"")] {
            let resp = IoctlResponse { ctl_code: fsctl::FSCTL_VALIDATE_NEGOTIATE_INFO, file_id: FileId::ANY, input, output };
            let mut b = BytesMut::new();
            resp.encode(&mut b);
            let msg = with_header(Command::Ioctl, &b);
            assert_eq!(IoctlResponse::parse(&msg).unwrap(), resp);
        }
        assert_eq!(ValidateNegotiateInfoResponse::parse(&output).unwrap(), vni);
        let mut b = BytesMut::new();
        IoctlResponse { ctl_code: 0, file_id: FileId::ANY, input: b"", output: b"o" }.encode(&mut b);
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 0x70);
    }

    #[test]
    fn network_interfaces() {
        let list = vec![
            NetworkInterfaceInfo {
                if_index: 1,
                capability: interface_capability::RSS_CAPABLE,
                link_speed: 10_000_000_000,
                address: "127.0.0.11:445".parse().unwrap(),
            },
            NetworkInterfaceInfo { if_index: 2, capability: 0, link_speed: 1_000_000_000, address: "[::1]:445".parse().unwrap() },
        ];
        let mut b = BytesMut::new();
        NetworkInterfaceInfo::encode_list(&list, &mut b);
        assert_eq!(b.len(), 2 * NetworkInterfaceInfo::LEN);
        assert_eq!(&b[24..28], &[0x02, 0x00, 0x01, 0xBD]);
        assert_eq!(NetworkInterfaceInfo::parse_list(&b).unwrap(), list);
        assert!(NetworkInterfaceInfo::parse_list(&[]).unwrap().is_empty());
        for cut in 1..NetworkInterfaceInfo::LEN {
            assert!(NetworkInterfaceInfo::parse_list(&b[..cut]).is_err());
        }
    }

    #[test]
    fn copychunk() {
        let cc = SrvCopychunkCopy {
            source_key: [7; 24],
            chunks: vec![
                SrvCopychunk { source_offset: 0, target_offset: 0, length: 1 << 20 },
                SrvCopychunk { source_offset: 1 << 20, target_offset: 1 << 21, length: 5 },
            ],
        };
        let mut b = BytesMut::new();
        cc.encode(&mut b);
        assert_eq!(SrvCopychunkCopy::parse(&b).unwrap(), cc);
        prefixes_fail(&b, b.len(), SrvCopychunkCopy::parse);
        let mut bad = b.to_vec();
        bad[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(SrvCopychunkCopy::parse(&bad).is_err());
        let resp = SrvCopychunkResponse { chunks_written: 2, chunk_bytes_written: 0, total_bytes_written: (1 << 20) + 5 };
        let mut b = BytesMut::new();
        resp.encode(&mut b);
        assert_eq!(SrvCopychunkResponse::parse(&b).unwrap(), resp);
        let key = SrvRequestResumeKeyResponse { resume_key: [3; 24] };
        let mut b = BytesMut::new();
        key.encode(&mut b);
        assert_eq!(b.len(), 32);
        assert_eq!(SrvRequestResumeKeyResponse::parse(&b).unwrap(), key);
    }

    #[test]
    fn resiliency_and_snapshots() {
        let r = NetworkResiliencyRequest { timeout: 120_000 };
        let mut b = BytesMut::new();
        r.encode(&mut b);
        assert_eq!(NetworkResiliencyRequest::parse(&b).unwrap(), r);
        assert!(NetworkResiliencyRequest::parse(&b[..7]).is_err());
        let s = SrvSnapshotArray { snapshots: vec!["@GMT-2026.11.23-18.00.00".into()] };
        let mut b = BytesMut::new();
        s.encode(16, &mut b);
        assert_eq!(b.len(), 12);
        assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 52);
        let mut b = BytesMut::new();
        s.encode(4096, &mut b);
        assert_eq!(b.len(), 12 + 52);
    }
}
