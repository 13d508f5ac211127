//! LOCK ([MS-SMB2] 3.3.5.14): byte-range locks, shared and exclusive,
//! failing at once or waiting (async, cancellable).

use std::sync::Arc;

use bytes::BytesMut;
use protocol::msg::lock::{lock_flags as lf, LockElement, LockRequest, LockResponse};
use protocol::NtStatus;

use super::bad;
use crate::pipeline::{Ctx, HResult, Resp};
use crate::state::files::{ByteLock, FileKey};
use crate::state::{lock, Server};

fn body() -> BytesMut {
    let mut b = BytesMut::with_capacity(4);
    LockResponse.encode(&mut b);
    b
}

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = LockRequest::parse(ctx.msg).map_err(bad)?;
    let open = ctx.open(req.file_id)?;
    let fid = open.file_id();
    if req.locks.is_empty() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let key = open.key.ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    if open.is_dir {
        return Err(NtStatus::INVALID_DEVICE_REQUEST);
    }
    let pid = open.persistent_id;
    if req.locks[0].flags & lf::UNLOCK != 0 {
        // An unlock request holds unlocks only.
        if req.locks.iter().any(|l| l.flags != lf::UNLOCK) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let mut files = lock(&ctx.server.files);
        for l in &req.locks {
            files.unlock(&key, pid, l.offset, l.length).map_err(|_| NtStatus::RANGE_NOT_LOCKED)?;
        }
        drop(files);
        ctx.server.lock_released.notify_waiters();
        return Ok(Resp::ok(body()).file(fid));
    }
    for l in &req.locks {
        let kind = l.flags & !lf::FAIL_IMMEDIATELY;
        if kind != lf::SHARED_LOCK && kind != lf::EXCLUSIVE_LOCK {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if req.locks.len() > 1 && l.flags & lf::FAIL_IMMEDIATELY == 0 {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if l.length > 0 && l.offset.checked_add(l.length - 1).is_none() {
            return Err(NtStatus::INVALID_LOCK_RANGE);
        }
    }
    match try_all(&ctx.server, &key, pid, &req.locks) {
        Ok(()) => Ok(Resp::ok(body()).file(fid)),
        Err(()) if req.locks[0].flags & lf::FAIL_IMMEDIATELY != 0 => Err(NtStatus::LOCK_NOT_GRANTED),
        Err(()) => {
            // Wait for a release, then try again, until granted or cancelled.
            let server = ctx.server.clone();
            let locks = req.locks.clone();
            let mut r = Resp::ok(BytesMut::new()).file(fid);
            r.pending = Some(Box::pin(async move {
                loop {
                    let notified = server.lock_released.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if try_all(&server, &key, pid, &locks).is_ok() {
                        return Ok(Resp::ok(body()).file(fid));
                    }
                    if lock(&server.files).get(&key).is_none_or(|f| !f.opens.iter().any(|o| o.persistent_id == pid)) {
                        // The handle was closed while waiting.
                        return Err(NtStatus::RANGE_NOT_LOCKED);
                    }
                    notified.await;
                }
            }));
            Ok(r)
        }
    }
}

/// Takes every lock of the request, or none.
fn try_all(server: &Arc<Server>, key: &FileKey, pid: u64, locks: &[LockElement]) -> Result<(), ()> {
    let mut files = lock(&server.files);
    for (i, l) in locks.iter().enumerate() {
        let bl = ByteLock { persistent_id: pid, offset: l.offset, length: l.length, exclusive: l.flags & lf::EXCLUSIVE_LOCK != 0 };
        if files.try_lock(key, bl).is_err() {
            for taken in &locks[..i] {
                let _ = files.unlock(key, pid, taken.offset, taken.length);
            }
            return Err(());
        }
    }
    Ok(())
}
