//! OPLOCK_BREAK acknowledgements ([MS-SMB2] 3.3.5.22): the client lowers
//! an oplock (3.3.5.22.1) or a lease (3.3.5.22.2) the server is breaking.

use bytes::BytesMut;
use protocol::msg::oplock_break::{LeaseBreakAck, OplockBreak, OplockBreakRequest, OplockBreakResponse};
use protocol::NtStatus;

use crate::handler::{Ctx, HResult, Resp};
use crate::state::lease::LeaseId;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let ack = match OplockBreakRequest::parse(ctx.msg) {
        Ok(OplockBreakRequest::Oplock(a)) => a,
        Ok(OplockBreakRequest::Lease(a)) => return lease_ack(ctx, a),
        Err(_) => return Err(NtStatus::INVALID_PARAMETER),
    };
    let open = ctx.open(ack.file_id)?;
    // 3.3.5.22.1: an open that is not being broken (pipes and
    // directories never are) gets STATUS_INVALID_OPLOCK_PROTOCOL, the
    // status Windows answers with.
    let key = open.key.ok_or(NtStatus::INVALID_OPLOCK_PROTOCOL)?;
    let level = ctx.server.files().caching(|t, m| t.ack_oplock(m, &key, open.persistent_id, ack.oplock_level))?;
    ctx.server.oplock_changed.notify_waiters();
    let mut body = BytesMut::with_capacity(24);
    OplockBreak { oplock_level: level, file_id: open.file_id() }.encode(&mut body);
    Ok(Resp::ok(body).file(open.file_id()))
}

/// [MS-SMB2] 3.3.5.22.2: the lease is found by the connection's
/// ClientGuid and the key; the response (2.2.25.2) repeats the key and
/// the state now held.
fn lease_ack(ctx: &mut Ctx<'_>, ack: LeaseBreakAck) -> HResult {
    let id = LeaseId { client_guid: ctx.conn.client_guid, key: ack.lease_key };
    let state = ctx.server.files().caching(|t, m| t.ack_lease(m, &id, ack.lease_state))?;
    ctx.server.oplock_changed.notify_waiters();
    let mut body = BytesMut::with_capacity(36);
    OplockBreakResponse::Lease(LeaseBreakAck {
        flags: 0,
        lease_key: ack.lease_key,
        lease_state: state,
        lease_duration: 0,
    })
    .encode(&mut body);
    Ok(Resp::ok(body))
}
