//! LOCK ([MS-SMB2] 3.3.5.14): byte-range locks, shared and exclusive,
//! failing at once or waiting (async, cancellable), with lock replay
//! detection through the open's LockSequenceArray.
//!
//! A request either unlocks ([MS-SMB2] 3.3.5.14.1: element by element,
//! stopping at the first failure, earlier unlocks standing) or locks
//! ([MS-SMB2] 3.3.5.14.2: all elements or none). Its first element decides
//! which. Only a single-element lock request without FAIL_IMMEDIATELY
//! waits; it is woken by `Server::lock_released` whenever a lock goes away
//! (an unlock here, or an open closing).

use std::sync::Arc;

use bytes::BytesMut;
use protocol::msg::lock::{lock_flags as lf, LockElement, LockRequest, LockResponse};
use protocol::msg::negotiate::{capabilities, dialect};
use protocol::NtStatus;

use super::bad;
use crate::handler::{Ctx, HResult, Resp};
use crate::model::{Delta, Durability, PersistentFileId};
use crate::state::files::{ByteLock, FileUid};
use crate::state::{lock, Server};

fn body() -> BytesMut {
    let mut b = BytesMut::with_capacity(4);
    LockResponse.encode(&mut b);
    b
}

/// Where a request's LockSequence is recorded, when the open does lock
/// replay detection.
#[derive(Clone, Copy)]
struct Sequence {
    index: u32,
    number: u8,
}

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    let req = LockRequest::parse(ctx.msg).map_err(bad)?;
    let open = ctx.open(req.file_id)?;
    let fid = open.file_id();
    let key = open.key.ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    if open.is_dir {
        return Err(NtStatus::INVALID_DEVICE_REQUEST);
    }
    let pid = open.persistent_id;
    // [MS-SMB2] 3.3.5.14: durable (and resilient, persistent) opens, and
    // every open on a 3.x connection of a multichannel server, check the
    // LockSequence: a request whose number is already recorded at its
    // index is a replay and succeeds without being carried out again.
    let multichannel =
        ctx.conn.dialect >= dialect::SMB3_0 && ctx.conn.server_capabilities & capabilities::MULTI_CHANNEL != 0;
    let seq = (multichannel || ctx.server.durability_of(&open) != Durability::None)
        .then(|| Sequence { index: req.lock_sequence_index(), number: req.lock_sequence_number() });
    if let Some(s) = seq {
        let mut files = lock(&ctx.server.files);
        if files.lock_sequence_replayed(&key, pid, s.index, s.number) {
            return Ok(Resp::ok(body()).file(fid));
        }
        ctx.deltas.extend(files.set_lock_sequence(&key, pid, s.index, None));
    }
    let result = if req.locks[0].flags & lf::UNLOCK != 0 {
        let r = unlock(ctx.server, &key, pid, &req.locks, &mut ctx.deltas);
        if r == Err(NtStatus::RANGE_NOT_LOCKED) && ctx.hdr.flags & protocol::header::flags::REPLAY_OPERATION != 0 {
            // A resent unlock that finds nothing to unlock: its first
            // sending was carried out without the lock sequence showing it.
            tracing::info!(
                file_id = format_args!("{pid:#x}"),
                durable = ?ctx.server.durability_of(&open),
                index = req.lock_sequence_index(),
                number = req.lock_sequence_number(),
                "a replayed unlock finds its range not locked"
            );
        }
        r
    } else {
        match take(ctx.server, &key, pid, &req.locks, &mut ctx.deltas)? {
            Taken::Granted => Ok(()),
            Taken::Wait(l) => {
                let mut r = Resp::ok(BytesMut::new()).file(fid);
                r.pending = Some(Box::pin(wait(ctx.server.clone(), key, l, seq)));
                return Ok(r);
            }
        }
    };
    result?;
    if let Some(s) = seq {
        ctx.deltas.extend(lock(&ctx.server.files).set_lock_sequence(&key, pid, s.index, Some(s.number)));
    }
    Ok(Resp::ok(body()).file(fid))
}

/// Is the element's range valid ([MS-FSA] 2.1.5.8, 2.1.5.9): a non-empty
/// range may not run past the last 64-bit offset.
fn check_range(l: &LockElement) -> Result<(), NtStatus> {
    if l.length > 0 && l.offset.checked_add(l.length - 1).is_none() {
        return Err(NtStatus::INVALID_LOCK_RANGE);
    }
    Ok(())
}

/// [MS-SMB2] 3.3.5.14.1: each element must be a plain UNLOCK of a range
/// the open holds; the first that is not ends the request, and the
/// unlocks before it stand.
fn unlock(
    server: &Arc<Server>,
    key: &FileUid,
    pid: u64,
    locks: &[LockElement],
    out: &mut Vec<Delta>,
) -> Result<(), NtStatus> {
    let mut released = false;
    let mut result = Ok(());
    {
        let mut files = lock(&server.files);
        for l in locks {
            if l.flags != lf::UNLOCK {
                result = Err(NtStatus::INVALID_PARAMETER);
                break;
            }
            if let Err(e) = check_range(l) {
                result = Err(e);
                break;
            }
            let Some(exclusive) = files.unlock_kind(key, pid, l.offset, l.length) else {
                result = Err(NtStatus::RANGE_NOT_LOCKED);
                break;
            };
            out.push(Delta::LockRemoved { open: PersistentFileId(pid), offset: l.offset, length: l.length, exclusive });
            released = true;
        }
    }
    if released {
        server.lock_released.notify_waiters();
    }
    result
}

/// What a lock request came to, short of an error.
enum Taken {
    Granted,
    /// A single blocking lock that conflicts: wait for it.
    Wait(ByteLock),
}

/// [MS-SMB2] 3.3.5.14.2: validates the elements in order and takes their
/// locks, all or none. A conflict fails with LOCK_NOT_GRANTED when the
/// request may not wait; an invalid element fails the request and releases
/// what the elements before it took.
fn take(
    server: &Arc<Server>,
    key: &FileUid,
    pid: u64,
    locks: &[LockElement],
    out: &mut Vec<Delta>,
) -> Result<Taken, NtStatus> {
    if locks.len() > 1 && locks.iter().any(|l| l.flags & lf::FAIL_IMMEDIATELY == 0) {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let mut wanted = Vec::with_capacity(locks.len());
    let mut invalid = None;
    for l in locks {
        let exclusive = match l.flags & !lf::FAIL_IMMEDIATELY {
            lf::SHARED_LOCK => false,
            lf::EXCLUSIVE_LOCK => true,
            _ => {
                invalid = Some(NtStatus::INVALID_PARAMETER);
                break;
            }
        };
        if let Err(e) = check_range(l) {
            invalid = Some(e);
            break;
        }
        wanted.push(ByteLock { persistent_id: pid, offset: l.offset, length: l.length, exclusive });
    }
    // The valid elements before an invalid one are taken and released
    // again: only a conflict among them changes the answer.
    let granted = {
        let mut files = server.files();
        // Taking locks breaks level II oplocks ([MS-FSA] 2.1.4.12).
        if !wanted.is_empty() {
            files.break_level2(key, pid);
        }
        files.lock_ranges(key, &wanted, invalid.is_none())
    };
    match (granted, invalid) {
        (Ok(()), None) => {
            out.extend(wanted.iter().map(lock_added));
            Ok(Taken::Granted)
        }
        (Ok(()), Some(e)) => Err(e),
        (Err(_), _) if locks[0].flags & lf::FAIL_IMMEDIATELY != 0 || wanted.len() != 1 => {
            Err(NtStatus::LOCK_NOT_GRANTED)
        }
        (Err(_), _) => Ok(Taken::Wait(wanted.remove(0))),
    }
}

/// A blocked lock: retries after every release until it is granted, the
/// open goes away (RANGE_NOT_LOCKED), or CANCEL drops this future.
async fn wait(server: Arc<Server>, key: FileUid, l: ByteLock, seq: Option<Sequence>) -> HResult {
    let pid = l.persistent_id;
    let wanted = [l];
    loop {
        let notified = server.lock_released.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut files = lock(&server.files);
            if !files.get(&key).is_some_and(|f| f.opens.iter().any(|o| o.persistent_id == pid)) {
                return Err(NtStatus::RANGE_NOT_LOCKED);
            }
            if files.lock_ranges(&key, &wanted, true).is_ok() {
                let mut r = Resp::ok(body());
                r.deltas.push(lock_added(&wanted[0]));
                if let Some(s) = seq {
                    r.deltas.extend(files.set_lock_sequence(&key, pid, s.index, Some(s.number)));
                }
                return Ok(r);
            }
        }
        notified.await;
    }
}

/// The state model's record of a lock granted.
fn lock_added(l: &ByteLock) -> Delta {
    Delta::LockAdded {
        open: PersistentFileId(l.persistent_id),
        offset: l.offset,
        length: l.length,
        exclusive: l.exclusive,
    }
}
