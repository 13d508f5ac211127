//! QUERY_INFO ([MS-SMB2] 3.3.5.20): file, file-system and security
//! information.

use bytes::BytesMut;
use protocol::fscc::fs_info::fs_attributes;
use protocol::fscc::{self, file_info_class as fic, FileInfoCtx, FsStat};
use protocol::msg::query_info::{info_type, QueryInfoRequest, QueryInfoResponse};
use protocol::NtStatus;

use super::{bad, file_stat};
use crate::fs::{self, EaError};
use crate::handler::{Ctx, HResult, Resp};
use crate::state::files::access;
use crate::state::lock;
use crate::state::open::{Open, OpenKind};

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = QueryInfoRequest::parse(ctx.msg).map_err(bad)?;
    let open = ctx.open(req.file_id)?;
    // Beyond Connection.MaxTransactSize (3.3.5.20).
    if req.output_buffer_length > ctx.conn.max_io() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let fid = open.file_id();
    let max = req.output_buffer_length as usize;
    let mut out = BytesMut::new();
    let truncated = match req.info_type {
        info_type::FILE if req.file_info_class == fic::FILE_FULL_EA_INFORMATION => full_ea(&open, &req, max, &mut out)?,
        info_type::FILE => file_info(ctx, &open, req.file_info_class, max, &mut out)?,
        info_type::FILESYSTEM => fs_info(&open, req.file_info_class, max, &mut out)?,
        info_type::SECURITY => match security_info(
            &open,
            req.additional_information,
            ctx.conn.aapl & protocol::msg::aapl::caps::SUPPORTS_NFS_ACE != 0,
            max,
            &mut out,
        ) {
            // `out` holds the size the caller needs: it goes back as ErrorData.
            Err(NtStatus::BUFFER_TOO_SMALL) => return Ok(Resp::error_with_data(NtStatus::BUFFER_TOO_SMALL, &out)),
            r => r?,
        },
        info_type::QUOTA => return Err(NtStatus::NOT_SUPPORTED),
        _ => return Err(NtStatus::INVALID_PARAMETER),
    };
    let mut body = BytesMut::with_capacity(8 + out.len());
    QueryInfoResponse { output_buffer: &out }.encode(&mut body);
    let status = if truncated { NtStatus::BUFFER_OVERFLOW } else { NtStatus::SUCCESS };
    Ok(Resp::with_status(status, body).file(fid))
}

/// Access each file class needs ([MS-FSA] 2.1.5.12).
fn required_access(class: u8) -> u32 {
    match class {
        fic::FILE_BASIC_INFORMATION
        | fic::FILE_ALL_INFORMATION
        | fic::FILE_NETWORK_OPEN_INFORMATION
        | fic::FILE_ATTRIBUTE_TAG_INFORMATION => access::FILE_READ_ATTRIBUTES,
        fic::FILE_FULL_EA_INFORMATION => access::FILE_READ_EA,
        _ => 0,
    }
}

fn file_info(ctx: &Ctx<'_>, open: &Open, class: u8, max: usize, out: &mut BytesMut) -> Result<bool, NtStatus> {
    let need = required_access(class);
    if open.access & need != need {
        return Err(NtStatus::ACCESS_DENIED);
    }
    let h = match &open.kind {
        OpenKind::Fs(h) => h,
        OpenKind::Pipe(_) => return Err(NtStatus::NOT_SUPPORTED),
        OpenKind::Unopened => return Err(NtStatus::FILE_CLOSED),
    };
    let st = h.stat().map_err(|e| e.status())?;
    // The file's delete-pending and the open's delete-on-close, both the
    // model's, under one hold of its lock.
    let pending = open.key.is_some_and(|k| {
        let set = ctx.server.set();
        ctx.server.with_model(|m| {
            crate::state::file_fields::file_in(m, set, k).is_some_and(|f| f.delete_pending())
                || m.open(crate::model::PersistentFileId(open.persistent_id)).is_some_and(|o| o.delete_on_close())
        })
    });
    let mut fstat = file_stat(&st, pending);
    if ctx.conn.aapl != 0 {
        // Once AAPL is negotiated file ids are zero (as `vfs_fruit`'s
        // `zero_file_id`; see `create`'s QFid).
        fstat.file_id = 0;
    }
    if matches!(class, fic::FILE_EA_INFORMATION | fic::FILE_ALL_INFORMATION) {
        // [MS-FSCC] 2.4.13: the size of the file's EAs (smbd's rule, see
        // `fs::ea::list_size`); only these two classes carry it.
        fstat.ea_size = h.ea_size();
    }
    // The open's path is the model's (renames move it, a restart restores
    // it), read for the classes that carry a name.
    let named = matches!(
        class,
        fic::FILE_NAME_INFORMATION
            | fic::FILE_NORMALIZED_NAME_INFORMATION
            | fic::FILE_ALL_INFORMATION
            | fic::FILE_ALTERNATE_NAME_INFORMATION
    );
    let name = if named { format!("\\{}", ctx.server.path_of(open).unwrap_or_default()) } else { String::new() };
    let (position, mode) = {
        let s = lock(&open.st);
        (s.position, s.mode)
    };
    let volume_serial = open.share().map_or(0, |s| u64::from(s.fs.volume_serial()));
    if max < windows_min_size(class) {
        return Err(NtStatus::INFO_LENGTH_MISMATCH);
    }
    match class {
        fic::FILE_ALTERNATE_NAME_INFORMATION => {
            // The same mangled 8.3 name directory listings report
            // ([MS-FSA] 2.1.5.12.3: the short name of the open's link).
            let leaf = on_disk_path(ctx, open, &name);
            let leaf = leaf.rsplit('\\').next().unwrap_or("");
            if leaf.is_empty() {
                return Err(NtStatus::OBJECT_NAME_NOT_FOUND);
            }
            fscc::encode_file_name_information(&crate::fs::short_name(leaf), out).map_err(|e| e.status())?;
        }
        fic::FILE_NORMALIZED_NAME_INFORMATION => {
            // [MS-SMB2] 3.3.5.20.1: only over SMB 3.1.1. The share-relative
            // path in on-disk case, no leading separator ([MS-FSA]
            // 2.1.5.12.21); empty for the share root.
            if ctx.conn.dialect < protocol::msg::negotiate::dialect::SMB3_1_1 {
                return Err(NtStatus::NOT_SUPPORTED);
            }
            let mut path = on_disk_path(ctx, open, &name);
            // A stream's open: the file's path and `:` the stream's name as
            // kept (smbtorture smb2.getinfo.normalized).
            if let Some(s) = h.stream().as_ref().and_then(|x| crate::fs::stream::stream_name(x.to_bytes())) {
                path.push(':');
                path.push_str(s);
            }
            fscc::encode_file_name_information(&path, out).map_err(|e| e.status())?;
        }
        fic::FILE_STREAM_INFORMATION => {
            // [MS-FSCC] 2.4.43: `::$DATA` with the file's size (not for a
            // directory), then each named stream; the same list through a
            // stream's handle as through the file's.
            let base = h.base_stat().map_err(|e| e.status())?;
            let mut entries = Vec::new();
            if !base.is_dir {
                let base = file_stat(&base, false);
                entries.push(fscc::StreamEntry {
                    name: "::$DATA".into(),
                    size: base.end_of_file,
                    allocation_size: base.allocation_size,
                });
            }
            for s in h.streams().map_err(|e| e.status())? {
                // Once AAPL is negotiated, empty streams are not listed
                // (as `vfs_fruit`; see the open of one in `create`).
                if s.size == 0 && ctx.conn.aapl != 0 {
                    continue;
                }
                let name = format!(":{}:$DATA", s.name);
                entries.push(fscc::StreamEntry { name, size: s.size, allocation_size: s.size });
            }
            fscc::encode_stream_information(&entries, out).map_err(|e| e.status())?;
        }
        _ => {
            let info =
                FileInfoCtx { stat: &fstat, name: &name, access_mask: open.access, position, mode, volume_serial };
            fscc::encode_file_info(class, &info, out).map_err(|e| e.status())?;
        }
    }
    fscc::truncate_output(class, out, max).map_err(|e| e.status())
}

/// QUERY_INFO of FileFullEaInformation ([MS-SMB2] 2.2.37, 3.3.5.20.1;
/// [MS-FSCC] 2.4.15, 2.4.15.1). Needs FILE_READ_EA.
///
/// - With a FILE_GET_EA_INFORMATION list in the input buffer: the named
///   EAs in the list's order, a name the file does not have with an empty
///   value (as NTFS answers); a malformed list is
///   STATUS_EA_LIST_INCONSISTENT, a name no EA can have
///   STATUS_INVALID_EA_NAME. A server's own name is answered as absent.
/// - Else an enumeration: from EaIndex (1-based) with
///   SL_INDEX_SPECIFIED (0 or past the end + 1:
///   STATUS_NONEXISTENT_EA_ENTRY), from the first EA with
///   SL_RESTART_SCAN, else from where this open's last enumeration
///   stopped; STATUS_NO_MORE_EAS past the last.
/// - SL_RETURN_SINGLE_ENTRY returns one EA. Whole entries only: some fit
///   is STATUS_BUFFER_OVERFLOW, none fit STATUS_BUFFER_TOO_SMALL.
/// - No EAs at all (or no user xattrs): STATUS_NO_EAS_ON_FILE.
fn full_ea(open: &Open, req: &QueryInfoRequest<'_>, max: usize, out: &mut BytesMut) -> Result<bool, NtStatus> {
    use protocol::fscc::ea::{encode_full_ea_list_limited, parse_get_ea_list, FullEa};
    use protocol::msg::query_info::query_info_flags as qf;
    if open.access & access::FILE_READ_EA == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    let h = match &open.kind {
        OpenKind::Fs(h) => h,
        OpenKind::Pipe(_) => return Err(NtStatus::NOT_SUPPORTED),
        OpenKind::Unopened => return Err(NtStatus::FILE_CLOSED),
    };
    let eas = match h.eas() {
        Ok(eas) => eas,
        Err(EaError::NotSupported) => return Err(NtStatus::NO_EAS_ON_FILE),
        Err(e) => return Err(e.status()),
    };
    if eas.is_empty() {
        return Err(NtStatus::NO_EAS_ON_FILE);
    }
    let single = req.flags & qf::RETURN_SINGLE_ENTRY != 0;
    // By name without case (a GET list may name thousands); the first of
    // two spellings wins, as in a set.
    let mut by_name = std::collections::HashMap::new();
    for e in &eas {
        by_name.entry(e.name.to_ascii_lowercase()).or_insert(e);
    }
    let find = |name: &[u8]| by_name.get(&name.to_ascii_lowercase()).copied();
    let (picked, start): (Vec<FullEa<'_>>, Option<usize>) = if !req.input_buffer.is_empty() {
        let list = parse_get_ea_list(req.input_buffer).map_err(|_| NtStatus::EA_LIST_INCONSISTENT)?;
        let mut picked = Vec::with_capacity(list.len());
        for g in &list {
            match fs::ea::check_name(g.name) {
                Err(EaError::InvalidName) => return Err(NtStatus::INVALID_EA_NAME),
                Err(_) => picked.push(FullEa { flags: 0, name: g.name, value: b"" }),
                Ok(()) => picked.push(match find(g.name) {
                    Some(e) => FullEa { flags: 0, name: &e.name, value: &e.value },
                    None => FullEa { flags: 0, name: g.name, value: b"" },
                }),
            }
        }
        (picked, None)
    } else {
        let start = if req.flags & qf::INDEX_SPECIFIED != 0 {
            let index = req.additional_information as usize;
            if index == 0 || index > eas.len() + 1 {
                return Err(NtStatus::NONEXISTENT_EA_ENTRY);
            }
            index - 1
        } else if req.flags & qf::RESTART_SCAN != 0 {
            0
        } else {
            lock(&open.st).ea_next
        };
        if start >= eas.len() {
            return Err(NtStatus::NO_MORE_EAS);
        }
        let picked = eas[start..].iter().map(|e| FullEa { flags: 0, name: &e.name, value: &e.value }).collect();
        (picked, Some(start))
    };
    let picked = if single { &picked[..picked.len().min(1)] } else { &picked[..] };
    let n = encode_full_ea_list_limited(picked, max, out).map_err(|e| e.status())?;
    if n == 0 {
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    if let Some(start) = start {
        lock(&open.st).ea_next = start + n;
    }
    Ok(n < picked.len())
}

/// The open's share-relative path as it is on disk (no leading `\`),
/// falling back to the client's spelling `name` (which has one).
fn on_disk_path(ctx: &Ctx<'_>, open: &Open, name: &str) -> String {
    open.key
        .zip(open.share())
        .and_then(|(k, share)| ctx.server.disk_path(&share.fs, k))
        .map_or_else(|| name.trim_start_matches('\\').to_string(), |p| p.smb_path())
}

/// The smallest OutputBufferLength Windows accepts for a file class: the
/// C `sizeof` of its structure, trailing name array and padding included
/// ([MS-FSA] 2.1.5.12: "If OutputBufferSize is smaller than
/// sizeof(FILE_..._INFORMATION), fail with STATUS_INFO_LENGTH_MISMATCH").
/// Below this the answer is INFO_LENGTH_MISMATCH; between this and the
/// full length, a truncated answer with BUFFER_OVERFLOW.
fn windows_min_size(class: u8) -> usize {
    match class {
        // { u32 length | WCHAR[1] } padded to 8.
        fic::FILE_NAME_INFORMATION | fic::FILE_ALTERNATE_NAME_INFORMATION | fic::FILE_NORMALIZED_NAME_INFORMATION => 8,
        // basic 40 + standard 24 + internal 8 + ea 4 + access 4 + position 8
        // + mode 4 + alignment 4 + name 8 (one WCHAR, padded).
        fic::FILE_ALL_INFORMATION => 104,
        // { next, name_length: u32 | size, allocation: u64 | WCHAR[1] } padded.
        fic::FILE_STREAM_INFORMATION => 32,
        _ => fscc::fixed_size(class).unwrap_or(0),
    }
}

/// [`windows_min_size`] for file-system classes ([MS-FSA] 2.1.5.13).
fn windows_fs_min_size(class: u8) -> usize {
    use protocol::fscc::fs_info_class as fsc;
    match class {
        // { time: u64 | serial, label_length: u32 | supports_objects,
        //   reserved: u8 | WCHAR[1] } padded to 8.
        fsc::FILE_FS_VOLUME_INFORMATION => 24,
        // { attributes, max_name_length, name_length: u32 | WCHAR[1] } padded to 4.
        fsc::FILE_FS_ATTRIBUTE_INFORMATION => 16,
        _ => fscc::fs_fixed_size(class).unwrap_or(0),
    }
}

fn fs_info(open: &Open, class: u8, max: usize, out: &mut BytesMut) -> Result<bool, NtStatus> {
    let share = open.share().ok_or(NtStatus::NOT_SUPPORTED)?;
    let mut size = share.fs.statvfs().map_err(|e| e.status())?;
    let quota = share.cfg.time_machine_max_size;
    if share.cfg.time_machine && quota > 0 {
        // The Time Machine quota is the volume (`crate::fs::tmsize`), in
        // units of 1 KiB as smbd reports it.
        let free = quota.saturating_sub(share.fs.time_machine_used()) / 1024;
        size =
            crate::fs::FsSize { block_size: 1024, total_blocks: quota / 1024, avail_blocks: free, free_blocks: free };
    }
    let bytes_per_sector = 512u32;
    let sectors_per_unit = (size.block_size / u64::from(bytes_per_sector)).max(1) as u32;
    let fs = FsStat {
        total_units: size.total_blocks,
        free_units: size.free_blocks,
        caller_free_units: size.avail_blocks,
        sectors_per_unit,
        bytes_per_sector,
        volume_serial: u64::from(share.fs.volume_serial()),
        volume_label: share.cfg.name.clone(),
        creation_time: 0,
        attributes: if share.fs.supports_xattrs() {
            // EAs and named streams are user xattrs.
            fs_attributes::DUET | fs_attributes::FILE_SUPPORTS_EXTENDED_ATTRIBUTES | fs_attributes::FILE_NAMED_STREAMS
        } else {
            fs_attributes::DUET
        },
    };
    if max < windows_fs_min_size(class) {
        return Err(NtStatus::INFO_LENGTH_MISMATCH);
    }
    fscc::encode_fs_info(class, &fs, out).map_err(|e| e.status())?;
    fscc::truncate_fs_output(class, out, max).map_err(|e| e.status())
}

/// `nfs`: the connection was told AAPL's NFS_ACE ([`super::nfs_ace`]).
fn security_info(open: &Open, additional: u32, nfs: bool, max: usize, out: &mut BytesMut) -> Result<bool, NtStatus> {
    super::security::check_query_access(open.access, additional)?;
    let h = open.handle().ok_or(NtStatus::NOT_SUPPORTED)?;
    let st = h.base_stat().map_err(|e| e.status())?;
    super::security::encode(h, &st, additional, nfs, out)?;
    if out.len() > max {
        // The client learns the size it needs from the error data.
        let need = out.len() as u32;
        out.clear();
        out.extend_from_slice(&need.to_le_bytes());
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::fscc::fs_info_class as fsc;

    #[test]
    fn minimum_sizes_are_windows_sizeof() {
        // The sizes smbtorture smb2.getinfo.q*_buffercheck expects from Windows.
        for (class, size) in [
            (4, 40),
            (5, 24),
            (6, 8),
            (7, 4),
            (8, 4),
            (16, 4),
            (17, 4),
            (18, 104),
            (21, 8),
            (22, 32),
            (28, 16),
            (34, 56),
            (35, 8),
        ] {
            assert_eq!(windows_min_size(class), size, "file class {class}");
        }
        for (class, size) in [
            (fsc::FILE_FS_VOLUME_INFORMATION, 24),
            (fsc::FILE_FS_SIZE_INFORMATION, 24),
            (fsc::FILE_FS_DEVICE_INFORMATION, 8),
            (fsc::FILE_FS_ATTRIBUTE_INFORMATION, 16),
            (fsc::FILE_FS_CONTROL_INFORMATION, 48),
            (fsc::FILE_FS_FULL_SIZE_INFORMATION, 32),
            (fsc::FILE_FS_SECTOR_SIZE_INFORMATION, 28),
        ] {
            assert_eq!(windows_fs_min_size(class), size, "fs class {class}");
        }
    }
}
