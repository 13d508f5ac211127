//! Files with opens: where each is now, whether a delete is pending, and its byte-range
//! locks ([MS-FSA] 2.1.1.5 Per Open of a file, 2.1.1.7 ByteRangeLock).
//!
//! A file record exists while the file has opens in the partition: the first
//! [`crate::model::Delta::OpenUp`] of a file makes it and the last `OpenDown` removes it,
//! unless a delete is pending on the file and a named stream of it still has opens (a
//! stream's record is at `file:name`): then it stays, with no opens, until the last of
//! them closes, when the file is deleted ([MS-FSA] 2.1.5.4: the file goes with its last
//! stream's handle), and refuses new opens meanwhile (STATUS_DELETE_PENDING).
//! Share modes are not stored: they follow from the opens' access and share access.

use std::collections::BTreeSet;

use super::ids::{FileUid, PersistentFileId};

/// One granted byte-range lock. Its owner is an open of the file: SMB2 has no lock key or
/// process id ([MS-SMB2] 3.3.5.14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteLock {
    pub owner: PersistentFileId,
    pub offset: u64,
    /// 0 is a valid, empty range.
    pub length: u64,
    pub exclusive: bool,
}

impl ByteLock {
    /// Is the range valid: a non-empty range may not run past the last 64-bit offset
    /// ([MS-FSA] 2.1.5.8)?
    pub fn valid_range(offset: u64, length: u64) -> bool {
        length == 0 || offset.checked_add(length - 1).is_some()
    }
}

/// A file in the model. Changed only by [`crate::model::Model::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    pub(super) uid: FileUid,
    /// The share (its configured name) the file is in.
    pub(super) share: String,
    /// Where the file is now, share-relative (renames move it).
    pub(super) path: String,
    pub(super) delete_pending: bool,
    /// Granted locks, oldest first.
    pub(super) locks: Vec<ByteLock>,
    /// The file's opens (derived from the opens' `file`; not stored in checkpoints).
    pub(super) opens: BTreeSet<PersistentFileId>,
}

impl FileRecord {
    pub fn uid(&self) -> FileUid {
        self.uid
    }

    pub fn share(&self) -> &str {
        &self.share
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn delete_pending(&self) -> bool {
        self.delete_pending
    }

    /// Granted locks, oldest first.
    pub fn locks(&self) -> &[ByteLock] {
        &self.locks
    }

    /// The persistent ids of the file's opens.
    pub fn opens(&self) -> impl Iterator<Item = PersistentFileId> + '_ {
        self.opens.iter().copied()
    }
}
