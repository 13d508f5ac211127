//! CANCEL ([MS-SMB2] 3.3.5.16): no response; the cancelled operation
//! completes with STATUS_CANCELLED.

use protocol::NtStatus;

use crate::handler::{Ctx, HResult, Resp};
use crate::state::lock;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let mut pending = lock(&ctx.conn.pending);
    let key = if ctx.hdr.is_async() {
        pending.contains_key(&ctx.hdr.async_id).then_some(ctx.hdr.async_id)
    } else {
        pending
            .iter()
            .find(|(_, op)| op.message_id == ctx.hdr.message_id && op.session_id == ctx.hdr.session_id)
            .map(|(k, _)| *k)
    };
    if let Some(op) = key.and_then(|k| pending.remove(&k)) {
        let _ = op.cancel.send(());
    }
    let mut r = Resp::with_status(NtStatus::SUCCESS, Default::default());
    r.no_response = true;
    Ok(r)
}
