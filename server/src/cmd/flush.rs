//! FLUSH ([MS-SMB2] 3.3.5.11): `fdatasync` of the file, a full `fsync`
//! on a Time Machine share (what macOS's `F_FULLFSYNC` asks for).

use bytes::BytesMut;
use protocol::msg::flush::{FlushRequest, FlushResponse};
use protocol::NtStatus;

use super::bad;
use crate::handler::{Ctx, HResult, Resp};
use crate::state::files::access;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = FlushRequest::parse(ctx.msg).map_err(bad)?;
    let open = ctx.open(req.file_id)?;
    if open.access & (access::FILE_WRITE_DATA | access::FILE_APPEND_DATA) == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    if let Some(h) = open.handle() {
        if !open.is_dir {
            // A Time Machine share's FLUSH is a full sync (F_FULLFSYNC).
            let full = open.share().is_some_and(|s| s.cfg.time_machine);
            if full { h.sync_full() } else { h.sync() }.map_err(|e| e.status())?;
            crate::state::write_time::land(ctx.server, &open, false);
        }
    }
    let mut body = BytesMut::with_capacity(4);
    FlushResponse.encode(&mut body);
    Ok(Resp::ok(body).file(open.file_id()))
}
