//! FLUSH ([MS-SMB2] 3.3.5.11).

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
            h.sync().map_err(|e| e.status())?;
            crate::state::write_time::land(ctx.server, &open, false);
        }
    }
    let mut body = BytesMut::with_capacity(4);
    FlushResponse.encode(&mut body);
    Ok(Resp::ok(body).file(open.file_id()))
}
