//! OPLOCK_BREAK acknowledgements ([MS-SMB2] 3.3.5.22): the client lowers
//! an oplock the server is breaking.

use bytes::BytesMut;
use protocol::msg::oplock_break::{LeaseBreakAck, OplockBreak};
use protocol::NtStatus;

use crate::pipeline::{Ctx, HResult, Resp};
use crate::state::lock;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let ack = match OplockBreak::parse(ctx.msg) {
        Ok(a) => a,
        // [MS-SMB2] 3.3.5.22.2: Duet grants no leases, so no lease key
        // is known.
        Err(_) if LeaseBreakAck::parse(ctx.msg).is_ok() => return Err(NtStatus::OBJECT_NAME_NOT_FOUND),
        Err(_) => return Err(NtStatus::INVALID_PARAMETER),
    };
    let open = ctx.open(ack.file_id)?;
    // 3.3.5.22.1: an open that is not being broken (pipes and
    // directories never are) gets STATUS_INVALID_OPLOCK_PROTOCOL, the
    // status Windows answers with.
    let key = open.key.ok_or(NtStatus::INVALID_OPLOCK_PROTOCOL)?;
    let level = lock(&ctx.server.files).ack_oplock(&key, open.persistent_id, ack.oplock_level)?;
    ctx.server.oplock_changed.notify_waiters();
    let mut body = BytesMut::with_capacity(24);
    OplockBreak { oplock_level: level, file_id: open.file_id() }.encode(&mut body);
    Ok(Resp::ok(body).file(open.file_id()))
}
