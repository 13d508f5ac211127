//! WRITE ([MS-SMB2] 3.3.5.13), to files and named pipes.

use bytes::BytesMut;
use protocol::msg::write::{WriteRequest, WriteResponse};
use protocol::NtStatus;

use super::bad;
use crate::conn::MAX_IO;
use crate::pipeline::{Ctx, HResult, Resp};
use crate::state::files::access;
use crate::state::lock;
use crate::state::open::OpenKind;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = WriteRequest::parse(ctx.msg).map_err(bad)?;
    let open = ctx.open(req.file_id)?;
    if req.data.len() > MAX_IO as usize {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    super::check_credit_charge(ctx, req.data.len() as u32)?;
    let fid = open.file_id();
    let count = match &open.kind {
        OpenKind::Pipe(p) => {
            let server = ctx.server.clone();
            lock(p).write(req.data, &*server).map_err(|e| e.status())?;
            req.data.len()
        }
        OpenKind::Fs(h) => {
            if open.is_dir {
                return Err(NtStatus::INVALID_DEVICE_REQUEST);
            }
            let append_only = open.access & access::FILE_WRITE_DATA == 0 && open.access & access::FILE_APPEND_DATA != 0;
            if open.access & (access::FILE_WRITE_DATA | access::FILE_APPEND_DATA) == 0 {
                return Err(NtStatus::ACCESS_DENIED);
            }
            let offset = if req.offset == u64::MAX || append_only {
                h.stat().map_err(|e| e.status())?.size
            } else {
                req.offset
            };
            if offset.checked_add(req.data.len() as u64).is_none_or(|end| end > i64::MAX as u64) {
                return Err(NtStatus::INVALID_PARAMETER);
            }
            if let Some(key) = open.key {
                if lock(&ctx.server.files).io_conflict(&key, open.persistent_id, offset, req.data.len() as u64, true) {
                    return Err(NtStatus::FILE_LOCK_CONFLICT);
                }
            }
            let n = h.write_at(req.data, offset).map_err(|e| e.status())?;
            let mut st = lock(&open.st);
            st.position = offset + n as u64;
            st.written = true;
            n
        }
    };
    let mut body = BytesMut::with_capacity(17);
    WriteResponse { count: count as u32 }.encode(&mut body);
    Ok(Resp::ok(body).file(fid))
}
