//! Every change to the model, as one value ([`Delta`]). Handlers return deltas, the
//! pipeline journals them (consistency point 3) and applies them with
//! [`crate::model::Model::apply`]; recovery applies the journaled ones to the last
//! checkpoint with the same function.
//!
//! A delta names the partition it changes: through the set bits of the session or
//! persistent file id it carries ([`crate::model::ids`]), or an explicit `set` where it
//! carries neither (generations, id blocks, leases and files).
//!
//! A delta records a decision, it does not make one: protocol rules (share modes, lock
//! conflicts, which oplock or lease state to grant, who may reclaim an open) are the
//! handlers'. `apply` refuses only what would make the model inconsistent (unknown or
//! duplicate ids, a lock whose owner is not an open, a lease state with unknown bits, an
//! open reconnected while connected, ...).

use ids::SetId;

use super::ids::{FileUid, LeaseKey, PersistentFileId, SessionId, Timestamp, TreeId, VolatileFileId};
use super::lease::{LeaseId, LeaseVersion};
use super::open::{NewOpen, OplockLevel};
use super::session::{SessionInfo, TreeInfo};

/// One change to the model. The variants' order is their encoding's kind byte
/// ([`crate::model::codec`]), from 0x01.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delta {
    /// The partition was restored (after a restart, or on the partner after a takeover):
    /// its generation goes up by one and its id counter starts over.
    NewGeneration { set: SetId },
    /// The partition's id counter moves up to `through` (a block of ids taken at once
    /// by the runtime allocator; never moves down).
    IdsReserved { set: SetId, through: u32 },
    /// A session completed authentication ([MS-SMB2] 3.3.5.5). Its id is of the
    /// partition's current generation; the counter moves up to it.
    SessionUp(Box<SessionInfo>),
    /// Session.ExpirationTime changed (a re-authentication).
    SessionExpiry { session: SessionId, expires_at: Option<Timestamp> },
    /// A session ended (LOGOFF, its last channel gone, a reconnect with
    /// PreviousSessionId). It has no tree connects and no connected opens left.
    SessionDown { session: SessionId },
    /// A TREE_CONNECT succeeded.
    TreeUp { session: SessionId, tree: TreeInfo },
    /// A TREE_DISCONNECT (or the session's end). The tree has no connected opens left.
    TreeDown { session: SessionId, tree: TreeId },
    /// A CREATE made an open (a file record is made with it when it is the file's
    /// first). Its persistent id is of the partition's current generation.
    OpenUp(Box<NewOpen>),
    /// An open was closed (CLOSE, a purge, expiry). Its locks go; so does its file
    /// record when it was the file's last open. Its lease stays until `LeaseGone`.
    OpenDown { open: PersistentFileId },
    /// A durable open's connection went ([MS-SMB2] 3.3.7.1): it waits, detached from
    /// its session and tree, until `at` plus its timeout.
    OpenDisconnected { open: PersistentFileId, at: Timestamp },
    /// A disconnected open was reclaimed by a reconnect ([MS-SMB2] 3.3.5.9.7, 3.3.5.9.12).
    OpenReconnected { open: PersistentFileId, session: SessionId, tree: TreeId, volatile: VolatileFileId },
    /// The open's oplock is now `level` (a grant after the open, an acknowledgement, a
    /// break from level II, a time-out); any break in progress is over.
    OplockSet { open: PersistentFileId, level: OplockLevel },
    /// A break of the open's exclusive or batch oplock to `to` (none or level II) was
    /// sent; the holder has until `deadline` to acknowledge.
    OplockBreaking { open: PersistentFileId, to: OplockLevel, deadline: Timestamp },
    /// A new lease ([MS-SMB2] 3.3.5.9.8, 3.3.5.9.11).
    LeaseGranted {
        set: SetId,
        lease: LeaseId,
        file: FileUid,
        parent: Option<LeaseKey>,
        version: LeaseVersion,
        state: u32,
        epoch: u16,
    },
    /// A lease's state changed outside a break: an upgrade by a later open, or a break
    /// that needs no acknowledgement (from R alone).
    LeaseChanged { set: SetId, lease: LeaseId, state: u32, epoch: u16 },
    /// A lease break was sent ([MS-SMB2] 3.3.4.7), or one in progress needs more
    /// (`required` lower). `to` is below the current state.
    LeaseBreaking { set: SetId, lease: LeaseId, to: u32, required: u32, epoch: u16, deadline: Timestamp },
    /// A lease break ended: acknowledged ([MS-SMB2] 3.3.5.22.2) with `state` (at most
    /// what the break asked for), or timed out (`state` 0).
    LeaseAcked { set: SetId, lease: LeaseId, state: u32 },
    /// A lease that no open uses is dropped (its last open closed, or the open it was
    /// granted for failed).
    LeaseGone { set: SetId, lease: LeaseId },
    /// A byte-range lock was granted to the open.
    LockAdded { open: PersistentFileId, offset: u64, length: u64, exclusive: bool },
    /// One of the open's locks with exactly this range and kind was released (the
    /// oldest such).
    LockRemoved { open: PersistentFileId, offset: u64, length: u64, exclusive: bool },
    /// The open's LockSequenceArray entry at `index` (1..=64) is recorded (`Some`) or
    /// invalidated (`None`) ([MS-SMB2] 3.3.5.14).
    LockSequenceSet { open: PersistentFileId, index: u8, number: Option<u8> },
    /// Open.ChannelSequence moved ([MS-SMB2] 3.3.5.2.10).
    ChannelSequenceSet { open: PersistentFileId, sequence: u16 },
    /// The open's delete-on-close was set or cleared.
    DeleteOnCloseSet { open: PersistentFileId, on: bool },
    /// The file's delete-pending state was set or cleared (FileDispositionInformation).
    DeletePendingSet { set: SetId, file: FileUid, on: bool },
    /// The file was renamed to `path` (share-relative); its opens name it so from now on.
    FileMoved { set: SetId, file: FileUid, path: String },
    /// Open.IsReplayEligible became FALSE ([MS-SMB2] 3.3.5.9.10): a request other than
    /// its CREATE named the open, so a replayed CREATE no longer gets it back.
    ReplayIneligible { open: PersistentFileId },
    /// A WRITE of an append-only open put its data at `offset`, the end of the file when
    /// the data was written (not the offset the request named). The model keeps nothing of
    /// it: the log does, for a redo after a power loss ([`crate::restart::redo`]).
    AppendedAt { open: PersistentFileId, offset: u64 },
    /// The open, about to close, wrote to `file`, at `path` of `share` now. The model
    /// keeps nothing of it: a redo after a power loss places the open's answered WRITEs
    /// by it when the log no longer has the open's `OpenUp` ([`crate::restart::redo`]).
    ClosedAfterWriting { open: PersistentFileId, share: String, path: String, file: FileUid },
    /// A re-authentication of the session completed ([MS-SMB2] 3.3.5.5.3): its user,
    /// keys, policies and expiry are now these (its id, ClientGuid and creation time
    /// stay; its tree connects and opens are unchanged).
    SessionReauthenticated(Box<SessionInfo>),
}

impl Delta {
    /// The partition the delta changes.
    pub fn set(&self) -> SetId {
        use Delta::*;
        match self {
            NewGeneration { set }
            | IdsReserved { set, .. }
            | LeaseGranted { set, .. }
            | LeaseChanged { set, .. }
            | LeaseBreaking { set, .. }
            | LeaseAcked { set, .. }
            | LeaseGone { set, .. }
            | DeletePendingSet { set, .. }
            | FileMoved { set, .. } => *set,
            SessionUp(info) | SessionReauthenticated(info) => info.id.set(),
            SessionExpiry { session, .. }
            | SessionDown { session }
            | TreeUp { session, .. }
            | TreeDown { session, .. } => session.set(),
            OpenUp(n) => n.info.persistent.set(),
            OpenDown { open }
            | OpenDisconnected { open, .. }
            | OpenReconnected { open, .. }
            | OplockSet { open, .. }
            | OplockBreaking { open, .. }
            | LockAdded { open, .. }
            | LockRemoved { open, .. }
            | LockSequenceSet { open, .. }
            | ChannelSequenceSet { open, .. }
            | DeleteOnCloseSet { open, .. }
            | ReplayIneligible { open }
            | AppendedAt { open, .. }
            | ClosedAfterWriting { open, .. } => open.set(),
        }
    }
}
