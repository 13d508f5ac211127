//! Durable handles ([MS-SMB2] 3.3.5.9.6 DHnQ, 3.3.5.9.7 DHnC, 3.3.5.9.10
//! DH2Q, 3.3.5.9.12 DH2C, 3.3.7.1): an open with a batch oplock, or a
//! lease with handle caching, that asked to be durable outlives its
//! connection for its timeout ([`TIMEOUT`] for version 1, what DH2Q was
//! granted for version 2), and the same user can take it back from a new
//! connection. A persistent handle (DH2Q on a continuously available
//! share) is kept whatever it caches.
//!
//! What is kept is the open itself (file descriptor, share-mode entry,
//! byte-range locks, oplock), not a copy: nothing about the file changes
//! while the client is away. Kept opens live in [`Server::durable`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::NtStatus;
use tracing::{debug, info, warn};

use super::files::access;
use super::lease::lease_state;
use super::open::{OpenKind, OpenState};
use super::oplock::level;
use super::{lock, Open, Server, Tree};
use crate::fs;
use crate::model::{Delta, PersistentFileId};

/// How long a disconnected durable open waits for its client.
pub use super::open::DURABLE_TIMEOUT as TIMEOUT;

/// How often the scavenger looks at the retained opens even when the
/// model names no deadline.
const SWEEP: Duration = Duration::from_secs(10);

/// A durable open whose connection is gone.
pub struct Disconnected {
    pub open: Arc<Open>,
    pub user: String,
    pub domain: String,
    pub since: Instant,
    /// Open.DurableOpenTimeout.
    pub timeout: Duration,
}

/// Keeps a durable open whose connection went away, when it still holds
/// its batch oplock or handle-caching lease ([MS-SMB2] 3.3.7.1); otherwise hands it back for the
/// caller to close.
///
/// A kept open is recorded as disconnected in the state model (its delta
/// pushed to `out`); one that expires leaves the model then.
pub fn preserve(
    server: &Arc<Server>,
    open: Arc<Open>,
    user: &str,
    domain: &str,
    out: &mut Vec<Delta>,
) -> Result<(), Arc<Open>> {
    // Only an oplock that is held, not one being broken: nobody is left
    // to acknowledge that break, and the open waiting for it goes ahead
    // once this one is closed.
    // A lease counts when it caches handles ([MS-SMB2] 3.3.5.9.6).
    let batch = open.key.is_some_and(|k| {
        let pid = open.persistent_id;
        server.files().caching(|t, m| {
            let m = m.model();
            let lease_h = t.open_lease(m, &k, pid).is_some_and(|(_, s)| s & lease_state::HANDLE_CACHING != 0);
            (t.oplock_level(m, &k, pid) == level::BATCH && !t.oplock_breaking_open(m, &k, pid))
                || (lease_h && !t.lease_breaking_open(m, &k, pid))
        })
    });
    // A handle with delete-on-close is kept too: the delete happens when
    // it is finally closed, on expiry or when another open purges it. A
    // persistent handle is kept whatever it caches ([MS-SMB2] 3.3.7.1:
    // Open.IsPersistent).
    let durability = server.durability_of(&open);
    let persistent = matches!(durability, crate::model::Durability::Persistent { .. });
    let Some(timeout_ms) = durability.timeout_ms() else {
        return Err(open);
    };
    if !batch && !persistent {
        return Err(open);
    }
    if let Some(k) = open.key {
        // The connection may linger a moment after this (its writer is
        // still open); a new open must not wait for it to answer a break.
        lock(&server.files).disconnect_oplock(&k, open.persistent_id);
    }
    let pid = open.persistent_id;
    let since = Instant::now();
    debug!(pid, "durable open kept");
    out.push(Delta::OpenDisconnected { open: PersistentFileId(pid), at: super::deltas::now() });
    let timeout = Duration::from_millis(u64::from(timeout_ms));
    lock(&server.durable).insert(pid, Disconnected { open, user: user.into(), domain: domain.into(), since, timeout });
    Ok(())
}

/// Closes retained opens whose time is up: one task for the whole
/// server, not a timer per handle. The deadlines are data in the state
/// model ([`crate::model::Model::poll_timeout`]): it sleeps until the
/// earliest, or until [`Server::apply`] records a new one, and closes the
/// opens that [`crate::model::Model::expired`] names ([MS-SMB2] 3.3.6.3,
/// the durable open scavenger timer).
pub async fn scavenger(server: Arc<Server>) {
    loop {
        let (next, due) = server.deadlines_at(super::deltas::now());
        let mut closed = break_time_outs(&server, &due);
        let mut expired_ids: Vec<u64> =
            due.iter().filter_map(|d| if let Delta::OpenDown { open } = d { Some(open.0) } else { None }).collect();
        // A retained open the model does not know (its delta was refused:
        // a defect, logged where it happened) still expires, a little late.
        expired_ids.extend(
            lock(&server.durable).iter().filter(|(_, e)| e.since.elapsed() > e.timeout + SWEEP).map(|(pid, _)| *pid),
        );
        for pid in expired_ids {
            let expired = lock(&server.durable).remove(&pid);
            if let Some(e) = expired {
                info!(pid, "durable open expired");
                let mut out = Vec::new();
                super::close::close_open(&server, &e.open, &mut out);
                server.apply(&out);
                closed = true;
            }
        }
        if closed {
            continue;
        }
        let wait = match next {
            Some(t) => Duration::from_millis(t.0.saturating_sub(super::deltas::now().0).max(1)).min(SWEEP),
            None => SWEEP,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = server.deadlines.notified() => {}
        }
    }
}

/// The oplock and lease breaks in `due` ([`crate::model::Model::expired`])
/// that nobody acknowledged in time lose what they were being broken from
/// ([MS-SMB2] 3.3.6.2, 3.3.6.5): the deadline is the model's, so a break
/// that no open waits for times out too. True when any did.
fn break_time_outs(server: &Server, due: &[Delta]) -> bool {
    let mut any = false;
    for d in due {
        let done = match d {
            Delta::OplockSet { open, .. } => server.files().caching(|t, m| t.oplock_time_out_open(m, open.0)),
            Delta::LeaseAcked { lease, .. } => {
                let id = super::lease::LeaseId { client_guid: lease.client.0, key: lease.key.0 };
                server.files().caching(|t, m| t.lease_time_out(m, &id))
            }
            _ => continue,
        };
        // The runtime has no such break, and the model still has it (it
        // was not acknowledged meanwhile): a change the model missed (a
        // defect; check mode reports it). The model's own verdict is
        // applied, so that the deadline does not come round again.
        if !done && server.deadlines_at(super::deltas::now()).1.contains(d) {
            warn!(?d, "a break the state model times out is not in progress");
            server.apply(std::slice::from_ref(d));
        }
        any = true;
    }
    if any {
        server.oplock_changed.notify_waiters();
    }
    any
}

/// Takes a kept open back for a reconnecting client ([MS-SMB2]
/// 3.3.5.9.7), as a new [`Open`] of `session_id` on `tree` with the same
/// file id, file description, state, locks and oplock. Only the user that
/// opened it may, and only when `check` accepts the kept open; anything
/// else is STATUS_OBJECT_NAME_NOT_FOUND, as if there were no such open
/// (or `check`'s error).
#[allow(clippy::too_many_arguments)]
pub fn reclaim(
    server: &Server,
    persistent_id: u64,
    user: &str,
    domain: &str,
    share: &str,
    session_id: u64,
    tree: &Arc<Tree>,
    check: impl FnOnce(&Open) -> Result<(), NtStatus>,
) -> Result<Open, NtStatus> {
    let e = {
        let mut d = lock(&server.durable);
        let e = d
            .get(&persistent_id)
            .filter(|e| {
                e.user.eq_ignore_ascii_case(user)
                    && e.domain.eq_ignore_ascii_case(domain)
                    && e.open.share().is_some_and(|s| s.cfg.name.eq_ignore_ascii_case(share))
            })
            .ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?;
        // The caller's own conditions (the lease, the name) are checked
        // before the open leaves the table: a refused reconnect leaves it
        // there for a correct one.
        check(&e.open)?;
        d.remove(&persistent_id).ok_or(NtStatus::OBJECT_NAME_NOT_FOUND)?
    };
    let old = e.open;
    // The old Open may still be referenced (a delayed write-time update
    // holds it for a while), so the new one gets its own descriptor of
    // the same open file and takes the state over.
    let handle = match &old.kind {
        OpenKind::Fs(h) => h.try_clone().ok(),
        OpenKind::Unopened => match open_retained(server, &old) {
            Ok(h) => Some(h),
            Err(why) => {
                // Its file is gone: the handle goes too.
                warn!(persistent_id, "a retained handle's file could not be opened again: {why}");
                forget(server, &old);
                return Err(NtStatus::OBJECT_NAME_NOT_FOUND);
            }
        },
        OpenKind::Pipe(_) => None,
    };
    let Some(handle) = handle else {
        lock(&server.durable).insert(persistent_id, Disconnected { open: old, ..e });
        return Err(NtStatus::OBJECT_NAME_NOT_FOUND);
    };
    let st = std::mem::replace(&mut *lock(&old.st), OpenState::new(None));
    Ok(Open {
        persistent_id: old.persistent_id,
        volatile_id: old.volatile_id,
        session_id,
        tree: tree.clone(),
        kind: OpenKind::Fs(handle),
        access: old.access,
        share_access: old.share_access,
        create_options: old.create_options,
        is_dir: old.is_dir,
        key: old.key,
        base: old.base,
        st: std::sync::Mutex::new(st),
        writing: std::sync::Mutex::new(()),
        // A second descriptor while the old open lingers: counted too.
        slot: server.resources.open_slot_unchecked(),
    })
}

/// Opens the file of a retained handle that a restart brought back
/// ([`OpenKind::Unopened`]) where the file table says it is now (a rename
/// while its client was away moved it), and checks that it is still the
/// file the handle was of.
fn open_retained(server: &Server, open: &Open) -> Result<fs::Handle, String> {
    let share = open.share().ok_or("no share")?;
    let key = open.key.ok_or("no file id")?;
    let path = server.disk_path(&share.fs, key).or_else(|| lock(&open.st).resolved.clone()).ok_or("no path")?;
    let write = !open.is_dir && open.access & (access::FILE_WRITE_DATA | access::FILE_APPEND_DATA) != 0;
    let handle = share.fs.open(&path, write).map_err(|e| format!("open: {e}"))?;
    let st = handle.stat().map_err(|e| format!("stat: {e}"))?;
    if st.is_dir != open.is_dir || share.fs.file_uid(&handle, &st) != key {
        return Err("the file there is another one now".into());
    }
    Ok(handle)
}

/// Drops a retained handle whose file is no longer there, or is another
/// file now: it leaves the file table (with its share modes, locks and
/// lease) and the model, and nothing on disk is touched (a delete-on-close
/// was of the file that is gone).
fn forget(server: &Server, open: &Open) {
    let Some(key) = open.key else {
        return;
    };
    // A pending delete is not carried out: its file is gone.
    let _ = server.files().caching(|t, m| t.remove_open(m, &key, open.persistent_id));
    server.apply(&[Delta::OpenDown { open: PersistentFileId(open.persistent_id) }]);
    server.oplock_changed.notify_waiters();
}

/// Closes a kept open now: another client needs the file and nobody is
/// there to answer the oplock break ([MS-SMB2] 3.3.4.6).
pub fn purge(server: &Arc<Server>, persistent_id: u64, out: &mut Vec<Delta>) {
    let e = lock(&server.durable).remove(&persistent_id);
    if let Some(e) = e {
        debug!(persistent_id, "durable open purged for a new open");
        super::close::close_open(server, &e.open, out);
    }
}
