//! Leases ([MS-SMB2] 3.3.1.4 the Lease Table, 3.3.1.12 Per Lease), kept per partition
//! and keyed by (ClientGuid, LeaseKey).
//!
//! A lease is shared by every open of one file with the same key and client. It is
//! removed with `LeaseGone` once no open uses it (after its last open's `OpenDown`), not
//! by that `OpenDown` itself: the server decides when a lease goes (while the open that
//! closed was the lease's last in the model, another may have joined it on its way
//! there), as [MS-SMB2] 3.3.4.x keeps a lease in the lease table by its own rules.

use super::ids::{ClientGuid, FileUid, LeaseKey, Timestamp};

/// SMB2_LEASE_READ_CACHING, HANDLE_CACHING and WRITE_CACHING: the bits a lease state may
/// hold ([MS-SMB2] 2.2.13.2.8).
pub const LEASE_STATE_BITS: u32 = 0x7;

/// A lease's key in its partition's lease table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId {
    pub client: ClientGuid,
    pub key: LeaseKey,
}

/// Lease.Version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseVersion {
    V1 = 1,
    V2 = 2,
}

/// A lease break in progress (Lease.Breaking, [MS-SMB2] 3.3.1.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseBreak {
    /// Lease.BreakToLeaseState: what the notification asked for, and the most an
    /// acknowledgement may keep.
    pub to: u32,
    /// What the opens waiting for the break need: lower than `to` when another break
    /// came along meanwhile (an acknowledgement that keeps more starts a new break).
    pub required: u32,
    /// Lease.LeaseBreakTimeout: when the lease loses everything if nobody acknowledged.
    pub deadline: Timestamp,
}

/// A lease in the model. Changed only by [`crate::model::Model::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub(super) id: LeaseId,
    /// The file its opens are of (Lease.Filename, by identity).
    pub(super) file: FileUid,
    /// Lease.ParentLeaseKey (version 2 only).
    pub(super) parent: Option<LeaseKey>,
    pub(super) version: LeaseVersion,
    /// Lease.LeaseState.
    pub(super) state: u32,
    /// Lease.Epoch (version 2), as last sent.
    pub(super) epoch: u16,
    pub(super) breaking: Option<LeaseBreak>,
}

impl LeaseRecord {
    pub fn id(&self) -> LeaseId {
        self.id
    }

    pub fn file(&self) -> FileUid {
        self.file
    }

    pub fn parent(&self) -> Option<LeaseKey> {
        self.parent
    }

    pub fn version(&self) -> LeaseVersion {
        self.version
    }

    pub fn state(&self) -> u32 {
        self.state
    }

    pub fn epoch(&self) -> u16 {
        self.epoch
    }

    pub fn breaking(&self) -> Option<LeaseBreak> {
        self.breaking
    }
}
