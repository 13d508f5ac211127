//! CLOSE ([MS-SMB2] 3.3.5.10), and the teardown of an open that logoff,
//! tree disconnect and connection loss share.

use std::sync::Arc;

use bytes::BytesMut;
use protocol::msg::close::{CloseAttributes, CloseRequest, CloseResponse};
use tracing::{debug, warn};

use super::{bad, file_stat};
use crate::pipeline::{Ctx, HResult, Resp};
use crate::state::notify::{action, filter};
use crate::state::{lock, Open, Server};

/// CLOSE flag: return the file's attributes.
const POSTQUERY_ATTRIB: u16 = 0x0001;

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = CloseRequest::parse(ctx.msg).map_err(bad)?;
    let open = ctx.open(req.file_id)?;
    let session = ctx.session()?.clone();
    lock(&session.inner).opens.remove(&open.volatile_id);
    if !open.is_dir {
        super::write_time::land(ctx.server, &open, true);
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
    close_open(ctx.server, &open);
    let mut body = BytesMut::with_capacity(60);
    CloseResponse { attributes: attrs }.encode(&mut body);
    Ok(Resp::ok(body).file(open.file_id()))
}

/// Drops an open from the per-file table; deletes the file when it was the
/// last open and a delete is pending (or this open had delete-on-close).
pub fn close_open(server: &Arc<Server>, open: &Arc<Open>) {
    let Some(key) = open.key else {
        return;
    };
    lock(&server.notify).remove(open.persistent_id);
    let (doc, written) = {
        let st = lock(&open.st);
        (st.delete_on_close, st.written)
    };
    let (delete, path, watchers) = {
        let mut files = lock(&server.files);
        if doc {
            files.set_delete_pending(&key, true);
        }
        let path = files.path(&key);
        let delete = files.remove_open(&key, open.persistent_id);
        // A directory left delete-pending by this close: its watchers
        // (other opens) are told.
        let watchers = if doc && open.is_dir && delete.is_none() { files.open_ids(&key) } else { Vec::new() };
        (delete, path, watchers)
    };
    if !watchers.is_empty() {
        lock(&server.notify).delete_pending(&watchers);
    }
    server.lock_released.notify_waiters();
    server.oplock_changed.notify_waiters();
    let Some(share) = open.share() else {
        return;
    };
    if written && delete.is_none() {
        if let Some(p) = &path {
            server.report_change(&share.cfg.name, p.components(), action::MODIFIED, filter::LAST_WRITE | filter::SIZE);
        }
    }
    let Some(resolved) = delete else {
        return;
    };
    let r = if open.is_dir { share.fs.rmdir(&resolved) } else { share.fs.unlink(&resolved) };
    match r {
        Ok(()) => {
            debug!(path = %lock(&open.st).path, "deleted on close");
            let f = if open.is_dir { filter::DIR_NAME } else { filter::FILE_NAME };
            server.report_change(&share.cfg.name, resolved.components(), action::REMOVED, f);
        }
        Err(e) => warn!(path = %lock(&open.st).path, "delete on close failed: {e}"),
    }
}

