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
//!
//! The locks and the LockSequenceArray are the state model's alone: each
//! step reads and changes them there at once ([`crate::state::byte_locks`]).

use std::sync::Arc;

use bytes::BytesMut;
use protocol::msg::lock::{lock_flags as lf, LockElement, LockRequest, LockResponse};
use protocol::msg::negotiate::{capabilities, dialect};
use protocol::NtStatus;

use super::bad;
use crate::handler::{Ctx, HResult, Resp};
use crate::model::{ByteLock, Durability, PersistentFileId};
use crate::state::byte_locks::{Refused, Sequence};
use crate::state::files::FileUid;
use crate::state::Server;

fn body() -> BytesMut {
    let mut b = BytesMut::with_capacity(4);
    LockResponse.encode(&mut b);
    b
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
        let (replayed, kept) = ctx.server.lock_replayed(pid, s);
        ctx.kept |= kept;
        if replayed {
            return Ok(Resp::ok(body()).file(fid));
        }
    }
    if req.locks[0].flags & lf::UNLOCK != 0 {
        let r = unlock(ctx, pid, &req.locks, seq);
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
        r?;
    } else if let Taken::Wait(l) = take(ctx, &key, pid, &req.locks, seq)? {
        let mut r = Resp::ok(BytesMut::new()).file(fid);
        r.pending = Some(Box::pin(wait(ctx.server.clone(), pid, l, seq)));
        return Ok(r);
    }
    Ok(Resp::ok(body()).file(fid))
}

/// Is the element's range valid ([MS-FSA] 2.1.5.8, 2.1.5.9): a non-empty
/// range may not run past the last 64-bit offset.
fn check_range(l: &LockElement) -> Result<(), NtStatus> {
    if !ByteLock::valid_range(l.offset, l.length) {
        return Err(NtStatus::INVALID_LOCK_RANGE);
    }
    Ok(())
}

/// [MS-SMB2] 3.3.5.14.1: each element must be a plain UNLOCK of a range
/// the open holds; the first that is not ends the request, and the
/// unlocks before it stand. A request that succeeds records `seq`.
fn unlock(ctx: &mut Ctx<'_>, pid: u64, locks: &[LockElement], seq: Option<Sequence>) -> Result<(), NtStatus> {
    let mut ranges = Vec::with_capacity(locks.len());
    let mut invalid = None;
    for l in locks {
        if l.flags != lf::UNLOCK {
            invalid = Some(NtStatus::INVALID_PARAMETER);
            break;
        }
        if let Err(e) = check_range(l) {
            invalid = Some(e);
            break;
        }
        ranges.push((l.offset, l.length));
    }
    let (released, kept) = ctx.server.unlock(pid, &ranges, seq.filter(|_| invalid.is_none()));
    ctx.kept |= kept;
    released.map_err(|_| NtStatus::RANGE_NOT_LOCKED)?;
    invalid.map_or(Ok(()), Err)
}

/// What a lock request came to, short of an error.
enum Taken {
    Granted,
    /// A single blocking lock that conflicts: wait for it.
    Wait(ByteLock),
}

/// [MS-SMB2] 3.3.5.14.2: validates the elements in order and takes their
/// locks, all or none, recording `seq` with them. A conflict fails with
/// LOCK_NOT_GRANTED when the request may not wait; an invalid element
/// fails the request and releases what the elements before it took.
fn take(
    ctx: &mut Ctx<'_>,
    key: &FileUid,
    pid: u64,
    locks: &[LockElement],
    seq: Option<Sequence>,
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
        wanted.push(ByteLock { owner: PersistentFileId(pid), offset: l.offset, length: l.length, exclusive });
    }
    // Taking locks breaks level II oplocks ([MS-FSA] 2.1.4.12).
    if !wanted.is_empty() {
        ctx.server.files().break_level2(key, pid);
    }
    // The valid elements before an invalid one are checked, not taken:
    // only a conflict among them changes the answer.
    let commit = invalid.is_none();
    let (granted, kept) = ctx.server.take_locks(pid, &wanted, commit, seq.filter(|_| commit));
    ctx.kept |= kept;
    match (granted, invalid) {
        (Ok(()), None) => Ok(Taken::Granted),
        (Ok(()), Some(e)) => Err(e),
        (Err(Refused::NoOpen), _) => Err(NtStatus::FILE_CLOSED),
        (Err(_), _) if locks[0].flags & lf::FAIL_IMMEDIATELY != 0 || wanted.len() != 1 => {
            Err(NtStatus::LOCK_NOT_GRANTED)
        }
        (Err(_), _) => Ok(Taken::Wait(wanted.remove(0))),
    }
}

/// A blocked lock: retries whenever a lock goes from the model or an open
/// leaves it ([`Server::lock_released`]) until it is granted, its open
/// goes away (RANGE_NOT_LOCKED), or CANCEL drops this future.
async fn wait(server: Arc<Server>, pid: u64, l: ByteLock, seq: Option<Sequence>) -> HResult {
    let wanted = [l];
    loop {
        let notified = server.lock_released.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match server.take_locks(pid, &wanted, true, seq) {
            (Ok(()), kept) => {
                let mut r = Resp::ok(body());
                r.kept = kept;
                return Ok(r);
            }
            (Err(Refused::NoOpen), _) => return Err(NtStatus::RANGE_NOT_LOCKED),
            (Err(Refused::Conflict(_)), _) => {}
        }
        notified.await;
    }
}
