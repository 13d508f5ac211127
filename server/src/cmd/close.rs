//! CLOSE ([MS-SMB2] 3.3.5.10). The teardown of an open that logoff, tree
//! disconnect and connection loss share is [`crate::state::close`].

use bytes::BytesMut;
use protocol::msg::close::{CloseAttributes, CloseRequest, CloseResponse};

use super::{bad, file_stat};
use crate::handler::{Ctx, HResult, Resp};
use crate::state::lock;

/// CLOSE flag: return the file's attributes.
const POSTQUERY_ATTRIB: u16 = 0x0001;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = CloseRequest::parse(ctx.msg).map_err(bad)?;
    // Its delete-on-close, read with the ChannelSequence check.
    let (open, doc) = ctx.open_reading(req.file_id, |o| o.is_some_and(|o| o.delete_on_close()))?;
    let session = ctx.session()?.clone();
    lock(&session.inner).opens.remove(&open.volatile_id);
    if !open.is_dir {
        crate::state::write_time::land(ctx.server, &open, true);
    }
    let attrs = if req.flags & POSTQUERY_ATTRIB != 0 {
        open.handle().and_then(|h| h.stat().ok()).map(|st| {
            let f = file_stat(&st, false);
            CloseAttributes {
                creation_time: f.creation_time,
                last_access_time: f.last_access_time,
                last_write_time: f.last_write_time,
                change_time: f.change_time,
                allocation_size: f.allocation_size,
                end_of_file: f.end_of_file,
                file_attributes: f.wire_attributes(),
            }
        })
    } else {
        None
    };
    crate::state::close::close_open_marked(ctx.server, &open, doc, &mut ctx.deltas);
    let mut body = BytesMut::with_capacity(60);
    CloseResponse { attributes: attrs }.encode(&mut body);
    Ok(Resp::ok(body).file(open.file_id()))
}
