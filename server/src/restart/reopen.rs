//! A retained handle of the restored model given its file back: the runtime
//! [`Open`] that a DHnC or DH2C reconnect takes over ([`crate::state::durable::reclaim`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::fs;
use crate::model::{Caching, Model, OpenRecord, OplockLevel};
use crate::state::durable::Disconnected;
use crate::state::files::{Inode, OpenRef};
use crate::state::lease::LeaseId;
use crate::state::open::{OpenKind, OpenState};
use crate::state::oplock::BreakSink;
use crate::state::tree::{Tree, TreeKind};
use crate::state::{lock, Open, Server, ShareEntry};

/// Opens the file at the share-relative `path` of `share` (for writing with
/// `write`): where it resolves to, the handle and its metadata.
pub(super) fn open_in_share(
    share: &ShareEntry,
    path: &str,
    write: bool,
) -> Result<(fs::Resolved, fs::Handle, fs::Stat), String> {
    let smb = fs::Share::parse_path(path).map_err(|e| format!("path: {e}"))?;
    let resolved = share.fs.resolve(&smb).map_err(|e| format!("resolve: {e}"))?;
    let handle = share.fs.open(&resolved, write).map_err(|e| format!("open: {e}"))?;
    let st = handle.stat().map_err(|e| format!("stat: {e}"))?;
    Ok((resolved, handle, st))
}

/// Where a retained open's file is now: what [`locate`] found, for
/// [`reopen`].
pub struct Located {
    resolved: fs::Resolved,
    inode: Inode,
    /// The name a rename under way at the crash gave the file.
    moved: Option<String>,
}

/// Finds the file of the retained open `o` again, without opening it for
/// I/O ([`fs::Share::probe`]; the descriptor is opened when its client
/// reclaims the handle, [`crate::state::durable::reclaim`]): the file
/// system part of [`reopen`], which touches nothing shared and so runs on
/// several threads at once. A file not found under its recorded name is
/// looked for under `renamed`, the name a rename of it that was under way
/// when the node died was giving it (the rename may have happened on disk
/// without its record). Fails when the share is gone or nothing is there.
pub fn locate(server: &Server, o: &OpenRecord, renamed: Option<&str>) -> Result<Located, String> {
    let info = o.info();
    let share = server.share(&info.share).ok_or_else(|| format!("share {:?} is not served", info.share))?;
    let probe = |path: &str| -> Result<(fs::Resolved, Inode), String> {
        let smb = fs::Share::parse_path(path).map_err(|e| format!("path: {e}"))?;
        let (resolved, dev, ino) = share.fs.probe(&smb).map_err(|e| format!("open: {e}"))?;
        if resolved.is_dir() != info.is_dir {
            return Err("the file there is another one now".into());
        }
        Ok((resolved, Inode { dev, ino }))
    };
    match (probe(o.path()), renamed) {
        (Ok((resolved, inode)), _) => Ok(Located { resolved, inode, moved: None }),
        (Err(first), Some(to)) => match probe(to) {
            Ok((resolved, inode)) => Ok(Located { resolved, inode, moved: Some(to.to_string()) }),
            Err(_) => Err(first),
        },
        (Err(e), None) => Err(e),
    }
}

/// Puts the retained open `o` of `model`, whose file [`locate`] found,
/// among the server's retained handles, with its share modes, oplock or
/// lease and delete-on-close (its byte-range locks and lock sequences stay
/// in the model, their one home); a file found under the name of a rename
/// under way at the crash is recorded as moved. Fails (and changes
/// nothing) when its share modes or lease conflict with what was restored
/// before it. That the file is still the one the open was of is
/// checked when the handle is reclaimed and the file opened.
pub fn reopen(server: &Arc<Server>, model: &Model, o: &OpenRecord, found: Located) -> Result<(), String> {
    let info = o.info();
    let share = server.share(&info.share).ok_or_else(|| format!("share {:?} is not served", info.share))?;
    let Located { resolved, inode, moved } = found;
    let uid = info.file;
    if let Some(to) = &moved {
        tracing::info!(from = o.path(), to, "a retained handle's file was renamed by a rename under way at the crash");
        server.apply(&[crate::model::Delta::FileMoved { set: server.set(), file: uid, path: to.clone() }]);
    }
    let pid = info.persistent.0;
    {
        let mut files = lock(&server.files);
        // The opens restored before it are the model's already: their share
        // modes are read there.
        if !server.with_model(|m| files.check_share(&uid, info.granted_access, info.share_access, m)) {
            return Err("its share modes conflict with an open restored before it".into());
        }
        if files.uid_of(inode).is_some_and(|k| k != uid) {
            return Err("another retained handle's file is there now".into());
        }
        if let Caching::Lease(key) = o.caching() {
            let lid = crate::model::LeaseId { client: info.client_guid, key };
            if model.partition(server.set()).and_then(|p| p.lease(lid)).is_none() {
                return Err("its lease is not in the model".into());
            }
        }
        files.add_open(uid, inode, OpenRef::restored(pid, info.granted_access));
        // Its byte-range locks and lock sequences are the model's, restored
        // already (`state::byte_locks`): nothing to copy.
        let sink = || BreakSink {
            tx: BreakSink::unreachable(),
            session_id: 0,
            file_id: Default::default(),
            encrypt: None,
            client: None,
        };
        // The oplock or lease is the model's, a break in progress included:
        // it goes on, and its notice is sent again when the handle is
        // reclaimed (`cmd::create`'s reconnect). The table links the open to
        // it, with where its notices go; nothing is copied.
        match o.caching() {
            Caching::Lease(key) => {
                let id = LeaseId { client_guid: info.client_guid.0, key: key.0 };
                files.restore_lease(&uid, pid, id, sink());
            }
            Caching::Oplock { level, .. } if level != OplockLevel::None => files.restore_oplock(&uid, pid, sink()),
            _ => {}
        }
    }
    let tree = Arc::new(Tree {
        id: 0,
        kind: TreeKind::Disk(share.clone()),
        encrypt: share.cfg.encrypt,
        read_only: share.cfg.read_only,
        maximal_access: info.granted_access,
    });
    // Its long-lived fields (durability, CreateGuid, ChannelSequence,
    // delete-on-close, ...) are the model's, restored already.
    // Its path (and its file's delete-pending) too: the runtime keeps none.
    let state = OpenState::new(Some(resolved));
    let open = Open {
        persistent_id: pid,
        volatile_id: o.volatile().0,
        session_id: 0,
        tree,
        kind: OpenKind::Unopened,
        access: info.granted_access,
        share_access: info.share_access,
        create_options: info.create_options,
        is_dir: info.is_dir,
        key: Some(uid),
        base: None,
        st: Mutex::new(state),
        writing: Mutex::new(()),
        slot: server.resources.open_slot_unchecked(),
    };
    let entry = Disconnected {
        open: Arc::new(open),
        user: info.owner.user.clone(),
        domain: info.owner.domain.clone(),
        since: Instant::now(),
        timeout: std::time::Duration::from_millis(u64::from(info.durability.timeout_ms().unwrap_or(0))),
    };
    lock(&server.durable).insert(pid, entry);
    Ok(())
}
