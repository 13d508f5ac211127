//! CHANGE_NOTIFY ([MS-SMB2] 3.3.5.19): waits (async) until a change in the
//! watched directory, then returns FILE_NOTIFY_INFORMATION entries
//! ([MS-FSCC] 2.7.1). The first request on a handle makes its watch, which
//! sees Duet's own changes and, through inotify, those made on disk
//! ([`crate::state::notify`]).

use std::sync::Arc;

use bytes::BytesMut;
use protocol::msg::change_notify::{
    encode_notify_list, ChangeNotifyRequest, ChangeNotifyResponse, FileNotifyInformation,
};
use protocol::NtStatus;

use super::bad;
use crate::handler::{Ctx, HResult, Resp};
use crate::state::files::access;
use crate::state::lock;
use crate::state::notify::{self, Queue, Watch};

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = ChangeNotifyRequest::parse(ctx.msg).map_err(bad)?;
    let open = ctx.open(req.file_id)?;
    let fid = open.file_id();
    if !open.is_dir {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if open.access & access::FILE_READ_DATA == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    // Beyond Connection.MaxTransactSize (3.3.5.19).
    if req.output_buffer_length > ctx.conn.max_io() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let share = open.share().ok_or(NtStatus::INVALID_PARAMETER)?;
    let disk_dir: Vec<String> = ctx
        .server
        .disk_path(&share.fs, open.key.ok_or(NtStatus::INVALID_PARAMETER)?)
        .map(|p| p.components().to_vec())
        .unwrap_or_default();
    let dir = disk_dir.iter().map(|c| c.to_lowercase()).collect();
    let armed = lock(&ctx.server.notify).watch(open.persistent_id).is_some();
    if !armed {
        // Changes on disk too, from now on (the reader thread starts with
        // the server's first watch).
        notify::ensure_reader(ctx.server);
    }
    let (queue, wake) = {
        let mut table = lock(&ctx.server.notify);
        match table.watch(open.persistent_id) {
            Some(w) => w,
            None => {
                let w = Watch {
                    open_id: open.persistent_id,
                    share: share.cfg.name.clone(),
                    dir,
                    disk_dir,
                    client: ctx.conn.client_guid,
                    held: Vec::new(),
                    recursive: req.watch_tree(),
                    filter: req.completion_filter,
                    queue: Arc::new(std::sync::Mutex::new(Queue {
                        max_len: req.output_buffer_length as usize,
                        ..Default::default()
                    })),
                    wake: Arc::new(tokio::sync::Notify::new()),
                };
                let r = (w.queue.clone(), w.wake.clone());
                table.add(w, &share.fs, &ctx.server.cfg.limits);
                r
            }
        }
    };
    let max = (req.output_buffer_length as usize).min(lock(&queue).max_len);
    let place = {
        let mut q = lock(&queue);
        if q.waiting.is_empty() {
            if let Some(r) = take(&mut q, max) {
                return r.map(|r| r.file(fid));
            }
        }
        q.join()
    };
    // Leaves the line however the wait ends (answered, cancelled, or
    // dropped before it ever ran), and lets the next request look.
    let guard = Place { queue: queue.clone(), wake: wake.clone(), id: place };
    let mut resp = Resp::ok(BytesMut::new()).file(fid);
    resp.pending = Some(Box::pin(async move {
        let _place = guard;
        loop {
            let n = wake.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            {
                let mut q = lock(&queue);
                if q.closed || q.first(place) {
                    if let Some(r) = take(&mut q, max) {
                        return r;
                    }
                }
            }
            n.await;
        }
    }));
    Ok(resp)
}

/// A request's place in a watch's line of waiting requests.
struct Place {
    queue: Arc<std::sync::Mutex<Queue>>,
    wake: Arc<tokio::sync::Notify>,
    id: u64,
}

impl Drop for Place {
    fn drop(&mut self) {
        lock(&self.queue).leave(self.id);
        self.wake.notify_waiters();
    }
}

/// Drains the queue into a response, if anything is there.
fn take(q: &mut Queue, max: usize) -> Option<Result<Resp, NtStatus>> {
    if q.closed {
        return Some(Ok(Resp::with_status(NtStatus::NOTIFY_CLEANUP, body(&[]))));
    }
    if q.delete_pending {
        return Some(Err(NtStatus::DELETE_PENDING));
    }
    if q.overflow {
        q.overflow = false;
        q.events.clear();
        return Some(Err(NtStatus::NOTIFY_ENUM_DIR));
    }
    if q.events.is_empty() {
        return None;
    }
    let entries: Vec<FileNotifyInformation> =
        q.events.drain(..).map(|(action, file_name)| FileNotifyInformation { action, file_name }).collect();
    let mut list = BytesMut::new();
    if !encode_notify_list(&entries, max, &mut list) {
        return Some(Err(NtStatus::NOTIFY_ENUM_DIR));
    }
    Some(Ok(Resp::ok(body(&list))))
}

fn body(list: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(8 + list.len());
    ChangeNotifyResponse { output_buffer: list }.encode(&mut b);
    b
}
