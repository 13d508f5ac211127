//! What the state model records of the runtime objects: the [`Delta`]s
//! that bring a session, a tree connect or an open into the model, change a
//! session (a re-authentication), and take them out again. Only what a restart or a takeover needs is recorded:
//! sessions that completed authentication, tree connects of disk shares,
//! and opens of files and directories (not IPC$ and its pipes).

use std::sync::atomic::Ordering;

use crate::model::{
    AppInstanceId, Caching, ClientGuid, CreateGuid, Delta, LeaseKey, NewOpen, OpenInfo, OplockLevel, Owner,
    PersistentFileId, SessionId, SessionInfo, SessionKeys, Timestamp, TreeId, TreeInfo, VolatileFileId,
};

use super::open::OpenFields;
use super::session::SessionInner;
use super::{Open, Session, Tree};

/// Now, as the model keeps times (wall-clock milliseconds).
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(d.as_millis() as u64)
}

/// Who a completed authentication says the user is.
pub struct Identity {
    pub owner: Owner,
    pub guest: bool,
    pub anonymous: bool,
}

/// A session whose authentication completed, with the keys it has now
/// (`inner.crypto`): its `SessionUp` the first time, which brings in the
/// ClientGuid of the connection it was set up on; a
/// `SessionReauthenticated` after that ([MS-SMB2] 3.3.5.5.3), which keeps
/// the ClientGuid, creation time and expiry of the record the handle holds
/// (`None` when it holds none yet).
pub fn session_authenticated(
    session: &Session,
    inner: &SessionInner,
    who: Identity,
    client_guid: [u8; 16],
) -> Option<Delta> {
    let keys = inner.crypto.as_ref().map_or_else(SessionKeys::default, |c| SessionKeys {
        session_key: Vec::new(),
        signing: c.signing_key.clone(),
        encryption: c.encryption_key.clone(),
        decryption: c.decryption_key.clone(),
        application: Vec::new(),
    });
    let c = inner.crypto.as_deref();
    let info = SessionInfo {
        id: SessionId(session.id),
        owner: who.owner,
        guest: who.guest,
        anonymous: who.anonymous,
        client_guid: ClientGuid(client_guid),
        dialect: c.map_or(0, |c| c.dialect),
        signing_algorithm: c.map_or(0, |c| c.signing_alg as u16),
        cipher: c.map_or(0, |c| c.cipher),
        signing_required: c.is_some_and(|c| c.signing_required),
        encrypt_data: c.is_some_and(|c| c.encrypt_data),
        keys,
        created_at: now(),
        expires_at: None,
    };
    if !session.up.swap(true, Ordering::AcqRel) {
        return Some(Delta::SessionUp(Box::new(info)));
    }
    let was = inner.info()?;
    Some(Delta::SessionReauthenticated(Box::new(SessionInfo {
        client_guid: was.client_guid,
        created_at: was.created_at,
        expires_at: was.expires_at,
        ..info
    })))
}

/// A session ends: `None` when the model never had it.
pub fn session_down(session: &Session) -> Option<Delta> {
    session.up.swap(false, Ordering::AcqRel).then_some(Delta::SessionDown { session: SessionId(session.id) })
}

/// A tree connect of a disk share (IPC$ is not recorded): `None` when the
/// model does not have the session.
pub fn tree_up(session: &Session, tree: TreeInfo) -> Option<Delta> {
    session.up.load(Ordering::Acquire).then_some(Delta::TreeUp { session: SessionId(session.id), tree })
}

pub fn tree_down(session: &Session, tree: &Tree) -> Option<Delta> {
    (tree.share().is_some() && session.up.load(Ordering::Acquire))
        .then_some(Delta::TreeDown { session: SessionId(session.id), tree: TreeId(tree.id) })
}

/// A new open of a file or directory (pipes are not recorded), at `path`
/// (share-relative, as the client named it; `file:stream` for a named
/// stream), with what its CREATE decided of its long-lived fields, which
/// from now on only the model keeps (the path too: [`super::file_fields`]).
pub fn open_up(open: &Open, path: &str, inner: &SessionInner, client_guid: [u8; 16], f: &OpenFields) -> Option<Delta> {
    let key = open.key?;
    let share = open.share()?;
    let path = path.trim_start_matches('\\').to_string();
    Some(Delta::OpenUp(Box::new(NewOpen {
        info: OpenInfo {
            persistent: PersistentFileId(open.persistent_id),
            file: key,
            share: share.cfg.name.clone(),
            create_guid: f.create_guid.map(CreateGuid),
            client_guid: ClientGuid(client_guid),
            app_instance_id: f.app_instance.map(|a| AppInstanceId(a.id)),
            app_instance_version: f.app_instance.and_then(|a| a.version),
            owner: inner.owner(),
            durability: f.durability,
            replay_eligible: f.replay_eligible,
            granted_access: open.access,
            share_access: open.share_access,
            create_options: open.create_options,
            is_dir: open.is_dir,
            create_action: f.create_action,
        },
        path,
        session: SessionId(open.session_id),
        tree: TreeId(open.tree.id),
        volatile: VolatileFileId(open.volatile_id),
        caching: Caching::None,
        channel_sequence: f.channel_sequence,
        delete_on_close: f.delete_on_close,
    })))
}

/// What a CREATE granted: an oplock level (wire value, none included) or
/// the lease of this key.
#[derive(Debug, Clone, Copy)]
pub enum Grant {
    Oplock(u8),
    Lease([u8; 16]),
}

/// A new open's delta ([`open_up`]) with what its CREATE granted, so that
/// the open never is in the model without its oplock or lease ([MS-SMB2]
/// 3.3.5.9: Open.OplockLevel, Open.Lease are set as the open is made).
pub fn with_grant(mut up: Delta, grant: Grant) -> Delta {
    if let Delta::OpenUp(n) = &mut up {
        n.caching = match grant {
            Grant::Lease(key) => Caching::Lease(LeaseKey(key)),
            Grant::Oplock(level) => match OplockLevel::from_u8(level) {
                None | Some(OplockLevel::None) => Caching::None,
                Some(level) => Caching::Oplock { level, breaking: None },
            },
        };
    }
    up
}

/// An open that wrote is closing: where its file is, for a redo that no
/// longer finds the open's `OpenUp` in the log ([`Delta::ClosedAfterWriting`]).
pub fn closed_after_writing(server: &super::Server, open: &Open) -> Option<Delta> {
    let file = open.key?;
    let share = open.share()?.cfg.name.clone();
    let path = server.path_of(open)?;
    Some(Delta::ClosedAfterWriting { open: PersistentFileId(open.persistent_id), share, path, file })
}

/// An open closed (CLOSE, teardown, a retained handle expired or purged).
pub fn open_down(open: &Open) -> Option<Delta> {
    open.key.map(|_| Delta::OpenDown { open: PersistentFileId(open.persistent_id) })
}
