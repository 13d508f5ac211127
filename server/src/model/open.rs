//! Opens ([MS-SMB2] 3.3.1.10 Per Open): what a client's handle to a file is, what it
//! caches (oplock or lease), and what a reconnect, a replay or a restore needs of it.
//!
//! Only opens of files and directories are in the model. Pipe opens on IPC$ (their RPC
//! state) and everything runtime of a file open (its descriptor, the directory
//! enumeration cursor, the file position, the delayed write-time state) stay outside.

use super::ids::{
    AppInstanceId, ClientGuid, CreateGuid, FileUid, LeaseKey, PersistentFileId, SessionId, Timestamp, TreeId,
    VolatileFileId,
};
use super::session::Owner;

/// Whether and how an open outlives its connection ([MS-SMB2] 3.3.1.10 Open.IsDurable,
/// Open.IsPersistent, Open.DurableOpenTimeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Closed when its connection goes.
    None,
    /// A version 1 durable handle (DHnQ): kept `timeout_ms` after a disconnect.
    V1 { timeout_ms: u32 },
    /// A version 2 durable handle (DH2Q) with the timeout the server granted.
    V2 { timeout_ms: u32 },
    /// A persistent handle (DH2Q with SMB2_DHANDLE_FLAG_PERSISTENT).
    Persistent { timeout_ms: u32 },
}

impl Durability {
    /// How long the open is kept after a disconnect; `None` when it is not durable.
    pub fn timeout_ms(self) -> Option<u32> {
        match self {
            Durability::None => None,
            Durability::V1 { timeout_ms } | Durability::V2 { timeout_ms } | Durability::Persistent { timeout_ms } => {
                Some(timeout_ms)
            }
        }
    }
}

/// An oplock level ([MS-SMB2] 2.2.13 RequestedOplockLevel, wire values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OplockLevel {
    None = 0x00,
    II = 0x01,
    Exclusive = 0x08,
    Batch = 0x09,
}

impl OplockLevel {
    /// The level with this wire value (not SMB2_OPLOCK_LEVEL_LEASE).
    pub fn from_u8(v: u8) -> Option<OplockLevel> {
        [OplockLevel::None, OplockLevel::II, OplockLevel::Exclusive, OplockLevel::Batch]
            .into_iter()
            .find(|l| *l as u8 == v)
    }

    /// Does a break from this level wait for an acknowledgement (exclusive, batch)?
    pub fn acknowledged(self) -> bool {
        matches!(self, OplockLevel::Exclusive | OplockLevel::Batch)
    }
}

/// An oplock break in progress (Open.OplockState Breaking, [MS-SMB2] 3.3.1.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OplockBreak {
    /// The level the notification asked for: none or level II.
    pub to: OplockLevel,
    /// When the holder loses the oplock if it has not acknowledged (Open.OplockTimeout).
    pub deadline: Timestamp,
}

/// What an open caches: an oplock, or a lease shared with other opens of the same
/// file, key and client ([MS-SMB2] 3.3.1.10 Open.OplockLevel, Open.Lease).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caching {
    None,
    /// An oplock of level II, exclusive or batch (never [`OplockLevel::None`]).
    Oplock {
        level: OplockLevel,
        breaking: Option<OplockBreak>,
    },
    /// The lease of (the open's ClientGuid, this key).
    Lease(LeaseKey),
}

/// Open.LockSequenceArray ([MS-SMB2] 3.3.1.10): the LockSequenceNumber last recorded at
/// each LockSequenceIndex 1..=64, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockSequences(pub(super) [Option<u8>; 64]);

impl Default for LockSequences {
    fn default() -> LockSequences {
        LockSequences([None; 64])
    }
}

impl LockSequences {
    /// The number recorded at `index` (1..=64; other indexes have none).
    pub fn get(&self, index: u8) -> Option<u8> {
        Self::slot(index).and_then(|i| self.0[i])
    }

    pub(super) fn slot(index: u8) -> Option<usize> {
        (1..=64).contains(&index).then(|| usize::from(index) - 1)
    }
}

/// What an open is, fixed when it is made ([`crate::model::Delta::OpenUp`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenInfo {
    /// Open.DurableFileId: the open's key.
    pub persistent: PersistentFileId,
    /// The file the open is of.
    pub file: FileUid,
    /// The share (its configured name) the open was made on.
    pub share: String,
    /// Open.CreateGuid (durable v2 and persistent opens).
    pub create_guid: Option<CreateGuid>,
    /// Open.ClientGuid: the client's, which the open's lease belongs to.
    pub client_guid: ClientGuid,
    /// Open.AppInstanceId.
    pub app_instance_id: Option<AppInstanceId>,
    /// Open.ApplicationInstanceVersionHigh and Low.
    pub app_instance_version: Option<(u64, u64)>,
    /// Open.DurableOwner: the user that made the open and alone may reclaim it.
    pub owner: Owner,
    pub durability: Durability,
    /// Open.IsReplayEligible: a replayed CREATE may find this open by its CreateGuid.
    pub replay_eligible: bool,
    /// Open.GrantedAccess.
    pub granted_access: u32,
    /// The ShareAccess the open was made with.
    pub share_access: u32,
    /// Open.CreateOptions.
    pub create_options: u32,
    pub is_dir: bool,
    /// The CreateAction the CREATE answered ([MS-SMB2] 2.2.14: superseded 0, opened 1,
    /// created 2, overwritten 3), for the answer to a replay of it (3.3.5.9.10).
    pub create_action: u32,
}

/// What a new open starts with ([`crate::model::Delta::OpenUp`]): its [`OpenInfo`] and
/// the initial values of what later deltas change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOpen {
    pub info: OpenInfo,
    /// Share-relative path, as the client named the file (no leading backslash).
    pub path: String,
    pub session: SessionId,
    pub tree: TreeId,
    pub volatile: VolatileFileId,
    pub caching: Caching,
    /// Open.ChannelSequence: the request's ChannelSequence.
    pub channel_sequence: u16,
    /// FILE_DELETE_ON_CLOSE was asked for.
    pub delete_on_close: bool,
}

/// An open in the model. Changed only by [`crate::model::Model::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRecord {
    pub(super) info: OpenInfo,
    pub(super) path: String,
    /// The session and tree while connected; `None` while disconnected (a durable open
    /// that waits for its client: Open.Session and Open.TreeConnect are NULL).
    pub(super) attached: Option<(SessionId, TreeId)>,
    pub(super) volatile: VolatileFileId,
    /// When the connection went (Open.DurableOpenScavengerTimeout is this plus the
    /// timeout).
    pub(super) disconnected_at: Option<Timestamp>,
    pub(super) caching: Caching,
    pub(super) lock_sequences: LockSequences,
    pub(super) channel_sequence: u16,
    pub(super) delete_on_close: bool,
}

impl OpenRecord {
    pub(super) fn new(n: NewOpen) -> OpenRecord {
        OpenRecord {
            info: n.info,
            path: n.path,
            attached: Some((n.session, n.tree)),
            volatile: n.volatile,
            disconnected_at: None,
            caching: n.caching,
            lock_sequences: LockSequences::default(),
            channel_sequence: n.channel_sequence,
            delete_on_close: n.delete_on_close,
        }
    }

    pub fn info(&self) -> &OpenInfo {
        &self.info
    }

    pub fn id(&self) -> PersistentFileId {
        self.info.persistent
    }

    /// The share-relative path the open names the file by (follows renames).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The open's session, while connected.
    pub fn session(&self) -> Option<SessionId> {
        self.attached.map(|(s, _)| s)
    }

    /// The open's tree connect, while connected.
    pub fn tree(&self) -> Option<TreeId> {
        self.attached.map(|(_, t)| t)
    }

    pub fn volatile(&self) -> VolatileFileId {
        self.volatile
    }

    pub fn disconnected_at(&self) -> Option<Timestamp> {
        self.disconnected_at
    }

    /// When a disconnected open is closed, if nobody reclaims it first.
    pub fn expires_at(&self) -> Option<Timestamp> {
        let timeout = self.info.durability.timeout_ms()?;
        Some(self.disconnected_at?.plus_ms(u64::from(timeout)))
    }

    pub fn caching(&self) -> Caching {
        self.caching
    }

    /// The oplock level held (none for a leased open).
    pub fn oplock_level(&self) -> OplockLevel {
        match self.caching {
            Caching::Oplock { level, .. } => level,
            _ => OplockLevel::None,
        }
    }

    /// The open's lease key, when it has a lease.
    pub fn lease_key(&self) -> Option<LeaseKey> {
        match self.caching {
            Caching::Lease(k) => Some(k),
            _ => None,
        }
    }

    pub fn lock_sequences(&self) -> &LockSequences {
        &self.lock_sequences
    }

    pub fn channel_sequence(&self) -> u16 {
        self.channel_sequence
    }

    pub fn delete_on_close(&self) -> bool {
        self.delete_on_close
    }
}
