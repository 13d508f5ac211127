//! Closing an open: what every way an open ends has in common (a CLOSE,
//! a logoff, a disconnect, a retained handle that expires): the per-file
//! table lets go of it, change-notify watchers hear of it, and a pending
//! delete is carried out when it was the last open.

use std::sync::Arc;

use tracing::{debug, warn};

use super::notify::{action, filter};
use super::{lock, Open, Server};
use crate::model::Delta;

/// Drops an open from the per-file table; deletes the file when it was the
/// last open and a delete is pending (or this open had delete-on-close).
///
/// The open leaves the state model: its delta is pushed to `out`.
pub fn close_open(server: &Arc<Server>, open: &Arc<Open>, out: &mut Vec<Delta>) {
    if open.key.is_some() {
        close_open_marked(server, open, server.delete_on_close_of(open), out);
    }
}

/// [`close_open`] of an open whose delete-on-close (`doc`) the caller read
/// from the model already (a CLOSE, with its ChannelSequence check).
pub fn close_open_marked(server: &Arc<Server>, open: &Arc<Open>, doc: bool, out: &mut Vec<Delta>) {
    let Some(key) = open.key else {
        return;
    };
    let written = lock(&open.st).written;
    if written && server.journal.keeps_records() {
        out.extend(super::deltas::closed_after_writing(server, open));
    }
    out.extend(super::deltas::open_down(open));
    lock(&server.notify).remove(open.persistent_id);
    if open.base.is_some() {
        close_stream(server, open, key, doc);
        return;
    }
    let (delete, watchers, actor) = {
        // A lease this was the last open of goes, in the model (once the
        // open's `OpenDown` is applied).
        let mut files = server.files();
        let pid = open.persistent_id;
        let (actor, last) =
            files.caching(|t, m| (t.parent_lease_of(m.model(), &key, pid), t.remove_open(m, &key, pid)));
        // The file's delete-pending is the model's: a delete-on-close open
        // that is not the last leaves it set for the others (at once: a
        // CREATE after this close is refused), the last one deletes.
        let delete = if last {
            doc || server.delete_pending(key)
        } else {
            if doc {
                server.set_delete_pending(key, true);
            }
            false
        };
        // A directory left delete-pending by this close: its watchers
        // (other opens) are told.
        let watchers = if doc && open.is_dir && !delete { files.open_ids(&key) } else { Vec::new() };
        (delete, watchers, actor)
    };
    if !watchers.is_empty() {
        lock(&server.notify).delete_pending(&watchers);
    }
    server.oplock_changed.notify_waiters();
    let Some(share) = open.share() else {
        return;
    };
    if written && !delete && server.changes_watched() {
        if let Some(p) = server.disk_path(&share.fs, key) {
            server.report_change(&share.cfg.name, p.components(), action::MODIFIED, filter::LAST_WRITE | filter::SIZE);
            // Its directory's listing shows the new size and time.
            server.break_parent_leases(&share.cfg.name, p.components(), actor);
        }
    }
    if !delete {
        return;
    }
    // Where the file is now: the model's path (its `OpenDown` is on its
    // way), which follows renames.
    let Some(resolved) = server.disk_path(&share.fs, key) else {
        warn!(pid = open.persistent_id, "delete on close: the file is not where the model has it");
        return;
    };
    let r = if open.is_dir { share.fs.rmdir(&resolved) } else { share.fs.unlink(&resolved) };
    match r {
        Ok(()) => {
            debug!(path = %resolved.smb_path(), "deleted on close");
            let f = if open.is_dir { filter::DIR_NAME } else { filter::FILE_NAME };
            server.report_change(&share.cfg.name, resolved.components(), action::REMOVED, f);
            server.break_parent_leases(&share.cfg.name, resolved.components(), actor);
        }
        Err(e) => warn!(path = %resolved.smb_path(), "delete on close failed: {e}"),
    }
}

/// True for a handle on a resource fork (`AFP_Resource`) that holds data,
/// which a delete on close leaves in place ([`crate::fs::afpinfo::is_resource`]).
fn keeps_resource_fork(h: &crate::fs::Handle) -> bool {
    let resource = h
        .stream()
        .as_ref()
        .and_then(|x| crate::fs::stream::stream_name(x.to_bytes()).map(crate::fs::afpinfo::is_resource))
        .unwrap_or(false);
    resource && h.size().map_or(true, |n| n > 0)
}

/// [`close_open`] of an open of a named stream: the stream is deleted when
/// this was its last open and a delete is pending on it (only the stream:
/// its xattr, through this open's descriptor of the file); the file when
/// this was the last open of the file and its streams and a delete is
/// pending on the file.
fn close_stream(server: &Arc<Server>, open: &Arc<Open>, key: crate::model::FileUid, doc: bool) {
    let Some(base) = open.base else {
        return;
    };
    let (stream_doomed, file_doomed) = {
        let mut files = server.files();
        let (stream_last, file_last) = files.caching(|t, m| t.remove_stream_open(m, &key, open.persistent_id));
        // Delete-pending is the model's, as for a file (`close_open_marked`):
        // the stream's record, and the file's, which waits for its
        // streams' last close when a delete is pending on it.
        let stream_doomed = if stream_last {
            doc || server.delete_pending(key)
        } else {
            if doc {
                server.set_delete_pending(key, true);
            }
            false
        };
        (stream_doomed, file_last && server.delete_pending(base))
    };
    server.oplock_changed.notify_waiters();
    if stream_doomed {
        if let Some(h) = open.handle().filter(|h| !keeps_resource_fork(h)) {
            match h.remove_stream() {
                Ok(()) => debug!(pid = open.persistent_id, "stream deleted on close"),
                Err(e) => warn!(pid = open.persistent_id, "stream delete on close failed: {e}"),
            }
        }
    }
    let Some(share) = open.share().filter(|_| file_doomed) else {
        return;
    };
    let Some(resolved) = server.disk_path(&share.fs, base) else {
        return;
    };
    let r = match share.fs.unlink(&resolved) {
        Err(crate::fs::FsError::IsADirectory) => share.fs.rmdir(&resolved),
        r => r,
    };
    match r {
        Ok(()) => {
            let f = if resolved.is_dir() { filter::DIR_NAME } else { filter::FILE_NAME };
            server.report_change(&share.cfg.name, resolved.components(), action::REMOVED, f);
            server.break_parent_leases(&share.cfg.name, resolved.components(), None);
        }
        Err(e) => warn!(path = %resolved.smb_path(), "delete on close after the last stream's close failed: {e}"),
    }
}
