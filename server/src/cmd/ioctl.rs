//! IOCTL ([MS-SMB2] 3.3.5.15): the FSCTLs clients send. Unknown ones get
//! STATUS_NOT_SUPPORTED.

use std::sync::Arc;

use bytes::BytesMut;
use protocol::msg::ioctl::{
    fsctl, IoctlRequest, IoctlResponse, NetworkInterfaceInfo, SrvCopychunkCopy, SrvCopychunkResponse,
    SrvRequestResumeKeyResponse, ValidateNegotiateInfoRequest, ValidateNegotiateInfoResponse,
};
use protocol::msg::FileId;

use protocol::NtStatus;
use tracing::warn;

use super::bad;
use crate::handler::{Ctx, HResult, Resp};
use crate::state::files::access;
use crate::state::open::OpenKind;
use crate::state::{lock, Open};

/// Copy-chunk limits we advertise ([MS-SMB2] 3.3.3: server defaults).
const MAX_CHUNKS: u32 = 256;
const MAX_CHUNK_SIZE: u32 = 1024 * 1024;
const MAX_TOTAL: u32 = 16 * 1024 * 1024;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = IoctlRequest::parse(ctx.msg).map_err(bad)?;
    if !req.is_fsctl() {
        return Err(NtStatus::NOT_SUPPORTED);
    }
    // Beyond Connection.MaxTransactSize (3.3.5.15).
    let max = ctx.conn.max_io();
    if req.max_output_response > max || req.input.len() > max as usize {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    // The charge covers the larger of the input and the output asked for
    // (3.2.4.20, 3.3.5.2.5).
    super::check_credit_charge(ctx, req.max_output_response.max(req.input.len() as u32))?;
    let max_out = req.max_output_response as usize;
    let mut out = BytesMut::new();
    let mut status = NtStatus::SUCCESS;
    let mut file_id = req.file_id;
    match req.ctl_code {
        fsctl::FSCTL_VALIDATE_NEGOTIATE_INFO => {
            let v = ValidateNegotiateInfoRequest::parse(req.input).map_err(bad)?;
            let conn = &*ctx.conn;
            let ok = v.capabilities == conn.client_capabilities
                && v.guid == conn.client_guid
                && v.security_mode == conn.client_security_mode
                && v.dialects.len() == conn.client_dialects.len()
                && v.dialects.iter().zip(&conn.client_dialects).all(|(a, b)| a == b);
            if !ok {
                // A tampered negotiation: drop the connection ([MS-SMB2] 3.3.5.15.12).
                warn!(peer = %conn.peer, "FSCTL_VALIDATE_NEGOTIATE_INFO mismatch: disconnecting");
                let mut r = Resp::with_status(NtStatus::ACCESS_DENIED, BytesMut::new());
                r.close = true;
                return Ok(r);
            }
            if max_out < 24 {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            ValidateNegotiateInfoResponse {
                capabilities: conn.server_capabilities,
                guid: ctx.server.guid,
                security_mode: conn.server_security_mode,
                dialect: conn.dialect,
            }
            .encode(&mut out);
        }
        fsctl::FSCTL_QUERY_NETWORK_INTERFACE_INFO => {
            // Not about a file: the FileId is all ones ([MS-SMB2] 3.3.5.15.11).
            if req.file_id != FileId::ANY {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            if !ctx.server.cfg.multichannel {
                return Err(NtStatus::NOT_SUPPORTED);
            }
            NetworkInterfaceInfo::encode_list(&interfaces(ctx.conn.local), &mut out);
        }
        fsctl::FSCTL_PIPE_TRANSCEIVE => {
            let open = ctx.open(req.file_id)?;
            file_id = open.file_id();
            let OpenKind::Pipe(p) = &open.kind else {
                return Err(NtStatus::INVALID_DEVICE_REQUEST);
            };
            let server = ctx.server.clone();
            let mut pipe = lock(p);
            let data = pipe.transceive(req.input, max_out, &*server).map_err(|e| e.status())?;
            if pipe.more_pending() {
                status = NtStatus::BUFFER_OVERFLOW;
            }
            out.extend_from_slice(&data);
        }
        fsctl::FSCTL_PIPE_WAIT => {}
        fsctl::FSCTL_DFS_GET_REFERRALS | fsctl::FSCTL_DFS_GET_REFERRALS_EX => return Err(NtStatus::FS_DRIVER_REQUIRED),
        fsctl::FSCTL_SRV_REQUEST_RESUME_KEY => {
            let open = ctx.open(req.file_id)?;
            file_id = open.file_id();
            if max_out < 32 {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            SrvRequestResumeKeyResponse { resume_key: resume_key(&open) }.encode(&mut out);
        }
        fsctl::FSCTL_SRV_COPYCHUNK | fsctl::FSCTL_SRV_COPYCHUNK_WRITE => {
            let open = ctx.open(req.file_id)?;
            file_id = open.file_id();
            if max_out < SRV_COPYCHUNK_RESPONSE_LEN {
                // [MS-SMB2] 3.3.5.15.6: no room for the answer.
                return Err(NtStatus::INVALID_PARAMETER);
            }
            let copy = SrvCopychunkCopy::parse(req.input).map_err(bad)?;
            match copychunk(ctx, &open, &copy, req.ctl_code == fsctl::FSCTL_SRV_COPYCHUNK) {
                Ok(r) => r.encode(&mut out),
                Err((s, r)) => {
                    status = s;
                    r.encode(&mut out);
                }
            }
        }
        fsctl::FSCTL_CREATE_OR_GET_OBJECT_ID | fsctl::FSCTL_GET_OBJECT_ID => {
            let open = ctx.open(req.file_id)?;
            file_id = open.file_id();
            let h = open.handle().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
            let st = h.stat().map_err(|e| e.status())?;
            let vol = open.share().map_or(0, |s| u64::from(s.fs.volume_serial()));
            if max_out < protocol::fscc::FileObjectIdBuffer::LEN {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            protocol::fscc::FileObjectIdBuffer::for_file(vol, st.file_id()).encode(&mut out);
        }
        fsctl::FSCTL_SET_SPARSE => {
            let open = ctx.open(req.file_id)?;
            file_id = open.file_id();
            set_sparse(&open, req.input)?;
        }
        fsctl::FSCTL_QUERY_ALLOCATED_RANGES => {
            let open = ctx.open(req.file_id)?;
            file_id = open.file_id();
            status = query_allocated_ranges(&open, req.input, max_out, &mut out)?;
        }
        fsctl::FSCTL_SET_ZERO_DATA => {
            let open = ctx.open(req.file_id)?;
            file_id = open.file_id();
            set_zero_data(ctx, &open, req.input)?;
        }
        fsctl::FSCTL_GET_COMPRESSION => {
            let open = ctx.open(req.file_id)?;
            file_id = open.file_id();
            if max_out < 2 {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            out.extend_from_slice(&0u16.to_le_bytes());
        }
        fsctl::FSCTL_SET_COMPRESSION => {
            let open = ctx.open(req.file_id)?;
            file_id = open.file_id();
            let fmt = req.input.get(..2).ok_or(NtStatus::INVALID_PARAMETER)?;
            if u16::from_le_bytes([fmt[0], fmt[1]]) != 0 {
                return Err(NtStatus::NOT_SUPPORTED);
            }
        }
        fsctl::FSCTL_GET_REPARSE_POINT => {
            let open = ctx.open(req.file_id)?;
            file_id = open.file_id();
            status = get_reparse_point(&open, max_out, &mut out)?;
        }
        fsctl::FSCTL_SET_REPARSE_POINT => {
            let open = ctx.open(req.file_id)?;
            file_id = open.file_id();
            set_reparse_point(ctx, &open, req.input)?;
        }
        fsctl::FSCTL_DELETE_REPARSE_POINT => {
            let open = ctx.open(req.file_id)?;
            file_id = open.file_id();
            delete_reparse_point(ctx, &open, req.input)?;
        }
        _ => return Err(NtStatus::NOT_SUPPORTED),
    }
    if out.len() > max_out {
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    let mut body = BytesMut::with_capacity(48 + out.len());
    IoctlResponse { ctl_code: req.ctl_code, file_id, input: &[], output: &out }.encode(&mut body);
    Ok(Resp::with_status(status, body).file(file_id))
}

/// Link speed reported when the kernel does not know one: 1 Gbit/s.
const DEFAULT_LINK_SPEED: u64 = 1_000_000_000;

/// The server's network interfaces for FSCTL_QUERY_NETWORK_INTERFACE_INFO
/// ([MS-SMB2] 3.3.5.15.11, 2.2.32.5): every IPv4 and IPv6 address of an
/// interface that is up. Loopback addresses are listed only to a client
/// that came in over loopback (to anyone else they would name the client
/// itself). The address the connection arrived on is always there.
fn interfaces(local: Option<std::net::SocketAddr>) -> Vec<NetworkInterfaceInfo> {
    use nix::net::if_::InterfaceFlags;
    let mut found = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            if !a.flags.contains(InterfaceFlags::IFF_UP) {
                continue;
            }
            let Some(sa) = a.address else { continue };
            let ip = if let Some(v4) = sa.as_sockaddr_in() {
                std::net::IpAddr::V4(v4.ip())
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                std::net::IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            let index = nix::net::if_::if_nametoindex(a.interface_name.as_str()).unwrap_or(0);
            found.push(Interface { index, ip, link_speed: link_speed(&a.interface_name) });
        }
    }
    select_interfaces(local.map(|l| l.ip()), found)
}

/// One address of a local interface.
struct Interface {
    index: u32,
    ip: std::net::IpAddr,
    link_speed: u64,
}

/// The entries to report, from the interfaces found (see [`interfaces`]).
fn select_interfaces(local: Option<std::net::IpAddr>, found: Vec<Interface>) -> Vec<NetworkInterfaceInfo> {
    let via_loopback = local.is_some_and(|l| l.is_loopback());
    let mut list: Vec<NetworkInterfaceInfo> = found
        .into_iter()
        .filter(|i| via_loopback || !i.ip.is_loopback() || Some(i.ip) == local)
        .map(|i| NetworkInterfaceInfo {
            if_index: i.index,
            // No RSS, no RDMA.
            capability: 0,
            link_speed: i.link_speed,
            address: std::net::SocketAddr::new(i.ip, 0),
        })
        .collect();
    if let Some(l) = local {
        if !list.iter().any(|e| e.address.ip() == l) {
            list.push(NetworkInterfaceInfo {
                if_index: 0,
                capability: 0,
                link_speed: DEFAULT_LINK_SPEED,
                address: std::net::SocketAddr::new(l, 0),
            });
        }
    }
    list
}

/// An interface's speed from /sys/class/net/NAME/speed (Mbit/s), in bit/s.
fn link_speed(name: &str) -> u64 {
    if name.contains('/') || name.starts_with('.') {
        return DEFAULT_LINK_SPEED;
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/speed"))
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|&mbit| mbit > 0)
        .map_or(DEFAULT_LINK_SPEED, |mbit| mbit as u64 * 1_000_000)
}

/// A resume key names an open: its ids, and a tag.
fn resume_key(open: &Open) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&open.persistent_id.to_le_bytes());
    k[8..16].copy_from_slice(&open.volatile_id.to_le_bytes());
    k[16..24].copy_from_slice(b"DUETRKEY");
    k
}

/// Server-side copy ([MS-SMB2] 3.3.5.15.6).
/// FSCTL_SET_SPARSE ([MS-FSA] 2.1.5.9.32): an empty input means "set";
/// otherwise the first byte (FILE_SET_SPARSE_BUFFER, [MS-FSCC] 2.3.64)
/// says whether to set or clear. Any write access will do.
fn set_sparse(open: &Open, input: &[u8]) -> Result<(), NtStatus> {
    if open.is_dir {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if open.access & (access::FILE_WRITE_DATA | access::FILE_WRITE_ATTRIBUTES | access::FILE_APPEND_DATA) == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    let sparse = input.first().is_none_or(|b| *b != 0);
    let h = open.handle().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    h.set_sparse(sparse).map_err(|e| e.status())
}

/// The symbolic link `h` (of `open`) is on, as clients see it: confined
/// from where the open's path puts it, else STATUS_ACCESS_DENIED.
fn link_of(open: &Open, h: &crate::fs::Handle) -> Result<crate::fs::Link, NtStatus> {
    let target = h.link_target().map_err(|e| e.status())?;
    let st = lock(&open.st);
    let resolved = st.resolved.as_ref().ok_or(NtStatus::ACCESS_DENIED)?;
    let dir = resolved.components().split_last().map_or(&[][..], |(_, d)| d);
    let root = open.share().and_then(|s| s.fs.root_components());
    crate::fs::Link::of_in(dir, &target, root).ok_or(NtStatus::ACCESS_DENIED)
}

/// The share-relative location of `open`, and the components of its
/// directory.
fn place_of(open: &Open) -> Result<(crate::fs::Resolved, Vec<String>), NtStatus> {
    let resolved = lock(&open.st).resolved.clone().ok_or(NtStatus::INVALID_PARAMETER)?;
    let dir = resolved.components().split_last().map_or(Vec::new(), |(_, d)| d.to_vec());
    Ok((resolved, dir))
}

/// FSCTL_GET_REPARSE_POINT ([MS-FSA] 2.1.5.10.15, [MS-FSCC] 2.3.41): the
/// symbolic link's REPARSE_DATA_BUFFER ([MS-FSCC] 2.1.2.4), its target
/// relative (SYMLINK_FLAG_RELATIVE) as both substitute and print name.
/// Anything but a link is STATUS_NOT_A_REPARSE_POINT. An output buffer
/// too small for the 8-byte header is STATUS_BUFFER_TOO_SMALL; one too
/// small for the rest gets what fits and STATUS_BUFFER_OVERFLOW.
fn get_reparse_point(open: &Open, max_out: usize, out: &mut BytesMut) -> Result<NtStatus, NtStatus> {
    use protocol::fscc::reparse::{SymlinkReparse, SYMLINK_FLAG_RELATIVE};
    let h = open.handle().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    if !h.is_link() {
        return Err(NtStatus::NOT_A_REPARSE_POINT);
    }
    let link = link_of(open, h)?;
    if max_out < 8 {
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    let data = SymlinkReparse {
        substitute_name: link.wire_target.clone(),
        print_name: link.wire_target,
        flags: SYMLINK_FLAG_RELATIVE,
    };
    data.encode(out).ok_or(NtStatus::ACCESS_DENIED)?;
    if out.len() > max_out {
        out.truncate(max_out);
        return Ok(NtStatus::BUFFER_OVERFLOW);
    }
    Ok(NtStatus::SUCCESS)
}

/// What setting or deleting a reparse point needs of the open: write
/// data or write attributes access (else STATUS_ACCESS_DENIED) on a
/// writable share (else STATUS_MEDIA_WRITE_PROTECTED).
fn may_change_reparse_point(open: &Open) -> Result<(), NtStatus> {
    if open.access & (access::FILE_WRITE_DATA | access::FILE_WRITE_ATTRIBUTES) == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    if open.tree.read_only {
        return Err(NtStatus::MEDIA_WRITE_PROTECTED);
    }
    Ok(())
}

/// FSCTL_SET_REPARSE_POINT ([MS-FSA] 2.1.5.10.37, [MS-FSCC] 2.3.81):
/// makes the open's empty file or directory a symbolic link (a POSIX
/// symlink, `fs::link`), or gives a link a new target.
///
/// - The open needs FILE_WRITE_DATA or FILE_WRITE_ATTRIBUTES
///   (STATUS_ACCESS_DENIED); a read-only share is
///   STATUS_MEDIA_WRITE_PROTECTED.
/// - The buffer is checked as [MS-FSA] says (`ReparseBuffer::parse`:
///   STATUS_INVALID_BUFFER_SIZE, STATUS_IO_REPARSE_DATA_INVALID,
///   STATUS_IO_REPARSE_TAG_INVALID).
/// - Only IO_REPARSE_TAG_SYMLINK is kept: another tag on a link is
///   STATUS_IO_REPARSE_TAG_MISMATCH, elsewhere STATUS_NOT_SUPPORTED.
/// - The target must be relative and stay inside the share from the
///   link's directory; else STATUS_ACCESS_DENIED (as for any escape).
/// - A file with data, or a stream, is STATUS_ACCESS_DENIED (Duet keeps
///   nothing behind a link); a directory with entries
///   STATUS_DIRECTORY_NOT_EMPTY; a file with other opens
///   STATUS_SHARING_VIOLATION (they would go on with the replaced file).
fn set_reparse_point(ctx: &Ctx<'_>, open: &Open, input: &[u8]) -> Result<(), NtStatus> {
    use protocol::fscc::reparse::{ReparseBuffer, SymlinkReparse, IO_REPARSE_TAG_SYMLINK, SYMLINK_FLAG_RELATIVE};
    let h = open.handle().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    may_change_reparse_point(open)?;
    let buf = ReparseBuffer::parse(input)?;
    if buf.tag != IO_REPARSE_TAG_SYMLINK {
        return Err(if h.is_link() { NtStatus::IO_REPARSE_TAG_MISMATCH } else { NtStatus::NOT_SUPPORTED });
    }
    let link = SymlinkReparse::parse(buf.data)?;
    if h.is_stream() {
        return Err(NtStatus::ACCESS_DENIED);
    }
    let share = open.share().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    let (resolved, dir) = place_of(open)?;
    if resolved.is_root() {
        return Err(NtStatus::ACCESS_DENIED);
    }
    if let Some(key) = open.key {
        if lock(&ctx.server.files).open_count(&key) > 1 {
            return Err(NtStatus::SHARING_VIOLATION);
        }
    }
    let st = h.stat().map_err(|e| e.status())?;
    let is_dir = st.is_dir || st.attributes & crate::fs::attr::DIRECTORY != 0;
    let relative = link.flags & SYMLINK_FLAG_RELATIVE != 0;
    let target =
        crate::fs::link::target_from_client(&dir, &link.substitute_name, relative, is_dir).map_err(|e| e.status())?;
    let fd = share.fs.make_symlink(&resolved, &target).map_err(|e| e.status())?;
    h.relink(fd).map_err(|e| e.status())
}

/// FSCTL_DELETE_REPARSE_POINT ([MS-FSA] 2.1.5.10.3, [MS-FSCC] 2.3.11):
/// puts an empty file (or directory, for a directory's link) in the
/// symbolic link's place. The buffer is a bare header (8 bytes, or 24
/// with a GUID) whose ReparseDataLength is 0 and whose tag is the link's:
/// STATUS_IO_REPARSE_DATA_INVALID, STATUS_IO_REPARSE_TAG_INVALID or
/// STATUS_IO_REPARSE_TAG_MISMATCH otherwise; not a link is
/// STATUS_NOT_A_REPARSE_POINT. The handle then shows the new file's
/// metadata; its data is for a new open.
fn delete_reparse_point(ctx: &Ctx<'_>, open: &Open, input: &[u8]) -> Result<(), NtStatus> {
    use protocol::fscc::reparse::{ReparseBuffer, IO_REPARSE_TAG_SYMLINK};
    let h = open.handle().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    may_change_reparse_point(open)?;
    let buf = ReparseBuffer::parse(input)?;
    if !buf.data.is_empty() && buf.data.len() != 16 {
        return Err(NtStatus::IO_REPARSE_DATA_INVALID);
    }
    if !h.is_link() {
        return Err(NtStatus::NOT_A_REPARSE_POINT);
    }
    if buf.tag != IO_REPARSE_TAG_SYMLINK {
        return Err(NtStatus::IO_REPARSE_TAG_MISMATCH);
    }
    let share = open.share().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    let (resolved, _) = place_of(open)?;
    if let Some(key) = open.key {
        if lock(&ctx.server.files).open_count(&key) > 1 {
            return Err(NtStatus::SHARING_VIOLATION);
        }
    }
    let is_dir = h.stat().map_err(|e| e.status())?.attributes & crate::fs::attr::DIRECTORY != 0;
    let fd = share.fs.unmake_symlink(&resolved, is_dir).map_err(|e| e.status())?;
    h.unlinked(fd).map_err(|e| e.status())
}

/// The two i64 fields of FILE_ALLOCATED_RANGE_BUFFER and
/// FILE_ZERO_DATA_INFORMATION ([MS-FSCC] 2.3.33, 2.3.74); negative values
/// are INVALID_PARAMETER.
fn two_offsets(input: &[u8]) -> Result<(u64, u64), NtStatus> {
    let field = |i: usize| -> Result<u64, NtStatus> {
        let b: [u8; 8] = input.get(i..i + 8).and_then(|b| b.try_into().ok()).ok_or(NtStatus::INVALID_PARAMETER)?;
        u64::try_from(i64::from_le_bytes(b)).map_err(|_| NtStatus::INVALID_PARAMETER)
    };
    Ok((field(0)?, field(8)?))
}

/// FSCTL_QUERY_ALLOCATED_RANGES ([MS-FSA] 2.1.5.9.21): the ranges of the
/// asked-for span that hold data, clipped to the end of file; a file that
/// is not sparse is allocated throughout. Answers BUFFER_OVERFLOW with the
/// ranges that fit when there are more, BUFFER_TOO_SMALL when none fits
/// (and success with no room when there is nothing to tell).
fn query_allocated_ranges(open: &Open, input: &[u8], max_out: usize, out: &mut BytesMut) -> Result<NtStatus, NtStatus> {
    const RANGE: usize = 16;
    let (offset, len) = two_offsets(input)?;
    if offset.checked_add(len).is_none_or(|end| end > i64::MAX as u64) {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if open.is_dir {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if open.access & access::FILE_READ_DATA == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    let h = open.handle().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    let (ranges, more) = h.allocated_ranges(offset, len, max_out / RANGE).map_err(|e| e.status())?;
    if ranges.is_empty() && more {
        // Not even one range fits.
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    for (o, l) in ranges {
        out.extend_from_slice(&o.to_le_bytes());
        out.extend_from_slice(&l.to_le_bytes());
    }
    Ok(if more { NtStatus::BUFFER_OVERFLOW } else { NtStatus::SUCCESS })
}

/// FSCTL_SET_ZERO_DATA ([MS-FSA] 2.1.5.9.34): zeroes `[FileOffset,
/// BeyondFinalZero)` within the file, as a write would (write access,
/// byte-range locks, level II oplocks broken); a sparse file gets a hole.
fn set_zero_data(ctx: &Ctx<'_>, open: &Arc<Open>, input: &[u8]) -> Result<(), NtStatus> {
    let (offset, beyond) = two_offsets(input)?;
    if offset > beyond || open.is_dir {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if open.access & access::FILE_WRITE_DATA == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    let h = open.handle().ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    if let Some(key) = open.key {
        if ctx.server.io_conflict(key, open.persistent_id, offset, beyond - offset, true) {
            return Err(NtStatus::FILE_LOCK_CONFLICT);
        }
        ctx.server.files().break_level2(&key, open.persistent_id);
    }
    let _writing = lock(&open.writing);
    h.zero_range(offset, beyond).map_err(|e| e.status())?;
    lock(&open.st).written = true;
    Ok(())
}

/// Size of SRV_COPYCHUNK_RESPONSE ([MS-SMB2] 2.2.32.1).
const SRV_COPYCHUNK_RESPONSE_LEN: usize = 12;

fn copychunk(
    ctx: &Ctx<'_>,
    dst: &Arc<Open>,
    copy: &SrvCopychunkCopy,
    need_read: bool,
) -> Result<SrvCopychunkResponse, (NtStatus, SrvCopychunkResponse)> {
    let limits = SrvCopychunkResponse {
        chunks_written: MAX_CHUNKS,
        chunk_bytes_written: MAX_CHUNK_SIZE,
        total_bytes_written: MAX_TOTAL,
    };
    let zero = SrvCopychunkResponse { chunks_written: 0, chunk_bytes_written: 0, total_bytes_written: 0 };
    let total: u64 = copy.chunks.iter().map(|c| u64::from(c.length)).sum();
    if copy.chunks.len() as u32 > MAX_CHUNKS
        || copy.chunks.iter().any(|c| c.length > MAX_CHUNK_SIZE || c.length == 0)
        || total > u64::from(MAX_TOTAL)
    {
        return Err((NtStatus::INVALID_PARAMETER, limits));
    }
    if &copy.source_key[16..24] != b"DUETRKEY" {
        return Err((NtStatus::OBJECT_NAME_NOT_FOUND, zero));
    }
    let vid = u64::from_le_bytes(copy.source_key[8..16].try_into().unwrap_or([0; 8]));
    let pid = u64::from_le_bytes(copy.source_key[..8].try_into().unwrap_or([0; 8]));
    let session = ctx.session().map_err(|s| (s, SrvCopychunkResponse { ..zero }))?;
    let src = session
        .open(vid)
        .filter(|o| o.persistent_id == pid)
        .ok_or((NtStatus::OBJECT_NAME_NOT_FOUND, SrvCopychunkResponse { ..zero }))?;
    // Reading the source takes read or execute access, as a READ does.
    if src.access & (access::FILE_READ_DATA | access::FILE_EXECUTE) == 0 {
        return Err((NtStatus::ACCESS_DENIED, zero));
    }
    if dst.access & access::FILE_WRITE_DATA == 0 || (need_read && dst.access & access::FILE_READ_DATA == 0) {
        return Err((NtStatus::ACCESS_DENIED, zero));
    }
    if copy.chunks.is_empty() && ctx.conn.aapl & protocol::msg::aapl::caps::SUPPORTS_OSX_COPYFILE != 0 {
        // macOS's copyfile ([`super::copyfile`]).
        let n = super::copyfile::copy(ctx, &src, dst).map_err(|s| (s, SrvCopychunkResponse { ..zero }))?;
        let total_bytes_written = u32::try_from(n).unwrap_or(u32::MAX);
        return Ok(SrvCopychunkResponse { chunks_written: 0, chunk_bytes_written: 0, total_bytes_written });
    }
    let (Some(sh), Some(_)) = (src.handle(), dst.handle()) else {
        return Err((NtStatus::INVALID_DEVICE_REQUEST, zero));
    };
    let mut written = 0u32;
    let mut n_chunks = 0u32;
    let mut buf = vec![0u8; MAX_CHUNK_SIZE as usize];
    for c in &copy.chunks {
        let len = c.length as usize;
        let n =
            sh.read_at(&mut buf[..len], c.source_offset).map_err(|e| (e.status(), SrvCopychunkResponse { ..zero }))?;
        if n < len {
            return Err((
                NtStatus::INVALID_VIEW_SIZE,
                SrvCopychunkResponse { chunks_written: n_chunks, chunk_bytes_written: 0, total_bytes_written: written },
            ));
        }
        // Each chunk is a read and a write as far as byte-range locks and
        // oplocks go ([MS-SMB2] 3.3.5.15.6).
        if let (Some(sk), Some(dk)) = (src.key, dst.key) {
            let server = ctx.server;
            if server.io_conflict(sk, src.persistent_id, c.source_offset, u64::from(c.length), false)
                || server.io_conflict(dk, dst.persistent_id, c.target_offset, u64::from(c.length), true)
            {
                return Err((NtStatus::FILE_LOCK_CONFLICT, zero));
            }
            server.files().break_level2(&dk, dst.persistent_id);
        }
        super::write::write_data(ctx.server, dst, &buf[..len], c.target_offset)
            .map_err(|e| (e, SrvCopychunkResponse { ..zero }))?;
        written += c.length;
        n_chunks += 1;
    }
    Ok(SrvCopychunkResponse { chunks_written: n_chunks, chunk_bytes_written: 0, total_bytes_written: written })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn iface(index: u32, ip: &str) -> Interface {
        Interface { index, ip: ip.parse().unwrap(), link_speed: 10_000_000_000 }
    }

    #[test]
    fn loopback_is_listed_only_to_loopback_clients() {
        let found = || vec![iface(1, "127.0.0.1"), iface(2, "192.0.2.7"), iface(2, "2001:db8::7")];
        let remote = select_interfaces(Some("192.0.2.7".parse().unwrap()), found());
        let ips: Vec<IpAddr> = remote.iter().map(|e| e.address.ip()).collect();
        assert_eq!(ips, ["192.0.2.7".parse::<IpAddr>().unwrap(), "2001:db8::7".parse().unwrap()]);
        assert!(remote.iter().all(|e| e.if_index == 2 && e.capability == 0 && e.link_speed == 10_000_000_000));
        let local = select_interfaces(Some("127.0.0.1".parse().unwrap()), found());
        assert_eq!(local.len(), 3);
        assert_eq!(local[0].if_index, 1);
    }

    #[test]
    fn the_connection_address_is_always_listed() {
        let list = select_interfaces(Some("127.0.0.5".parse().unwrap()), vec![iface(2, "192.0.2.7")]);
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].address, "127.0.0.5:0".parse().unwrap());
        assert_eq!(list[1].link_speed, DEFAULT_LINK_SPEED);
    }
}
