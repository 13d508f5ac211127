//! QUERY_INFO ([MS-SMB2] 3.3.5.20): file, file-system and security
//! information.

use bytes::BytesMut;
use protocol::fscc::{self, file_info_class as fic, FileInfoCtx, FsStat};
use protocol::msg::query_info::{info_type, QueryInfoRequest, QueryInfoResponse};
use protocol::NtStatus;

use super::{bad, file_stat};
use crate::conn::MAX_IO;
use crate::pipeline::{Ctx, HResult, Resp};
use crate::state::files::access;
use crate::state::lock;
use crate::state::open::{Open, OpenKind};

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = QueryInfoRequest::parse(ctx.msg).map_err(bad)?;
    let open = ctx.open(req.file_id)?;
    if req.output_buffer_length > MAX_IO {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let fid = open.file_id();
    let max = req.output_buffer_length as usize;
    let mut out = BytesMut::new();
    let truncated = match req.info_type {
        info_type::FILE => file_info(ctx, &open, req.file_info_class, max, &mut out)?,
        info_type::FILESYSTEM => fs_info(&open, req.file_info_class, max, &mut out)?,
        info_type::SECURITY => security_info(&open, req.additional_information, max, &mut out)?,
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
    };
    if class == fic::FILE_FULL_EA_INFORMATION {
        return Err(NtStatus::NO_EAS_ON_FILE);
    }
    let st = h.stat().map_err(|e| e.status())?;
    let pending = open.key.is_some_and(|k| lock(&ctx.server.files).is_delete_pending(&k))
        || lock(&open.st).delete_on_close;
    let fstat = file_stat(&st, pending);
    let (name, position, mode) = {
        let s = lock(&open.st);
        (format!("\\{}", s.path), s.position, s.mode)
    };
    let volume_serial = open.share().map_or(0, |s| u64::from(s.fs.volume_serial()));
    let info = FileInfoCtx { stat: &fstat, name: &name, access_mask: open.access, position, mode, volume_serial };
    fscc::encode_file_info(class, &info, out).map_err(|e| e.status())?;
    fscc::truncate_output(class, out, max).map_err(|e| e.status())
}

fn fs_info(open: &Open, class: u8, max: usize, out: &mut BytesMut) -> Result<bool, NtStatus> {
    let share = open.share().ok_or(NtStatus::NOT_SUPPORTED)?;
    let size = share.fs.statvfs().map_err(|e| e.status())?;
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
    };
    fscc::encode_fs_info(class, &fs, out).map_err(|e| e.status())?;
    fscc::truncate_fs_output(class, out, max).map_err(|e| e.status())
}

fn security_info(open: &Open, additional: u32, max: usize, out: &mut BytesMut) -> Result<bool, NtStatus> {
    if open.access & access::READ_CONTROL == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    let h = open.handle().ok_or(NtStatus::NOT_SUPPORTED)?;
    let st = h.stat().map_err(|e| e.status())?;
    super::security::encode_for_stat(&st, additional, out);
    if out.len() > max {
        // The client learns the size it needs from the error data.
        let need = out.len() as u32;
        out.clear();
        out.extend_from_slice(&need.to_le_bytes());
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    Ok(false)
}
