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

    /// Does the lock overlap the range? As in [MS-FSA] 2.1.4.10, with inclusive last
    /// bytes: a zero-length range at `p` overlaps a range only when `p` lies past its
    /// first byte and not past its last, and two zero-length ranges never overlap.
    /// Ranges whose last byte would pass `u64::MAX` are refused before they get here
    /// ([`ByteLock::valid_range`]).
    fn overlaps(&self, offset: u64, length: u64) -> bool {
        let last = |off: u64, len: u64| off.saturating_add(len - 1);
        match (self.length, length) {
            (0, 0) => false,
            (0, _) => offset < self.offset && self.offset <= last(offset, length),
            (_, 0) => self.offset < offset && offset <= last(self.offset, self.length),
            _ => self.offset <= last(offset, length) && offset <= last(self.offset, self.length),
        }
    }

    /// Does an access to the range by `by` conflict with this lock ([MS-FSA] 2.1.4.10)?
    /// `exclusive` is the intent: an exclusive lock request or a write; `lock_intent`
    /// tells a lock request from I/O. The owner of an exclusive lock may read and write
    /// under it and stack shared locks on it, but not a second exclusive one; a shared
    /// lock admits reads and shared locks from anyone, and nothing exclusive, its
    /// owner's writes included.
    pub fn conflicts(
        &self,
        by: PersistentFileId,
        offset: u64,
        length: u64,
        exclusive: bool,
        lock_intent: bool,
    ) -> bool {
        if !self.overlaps(offset, length) {
            return false;
        }
        if self.exclusive {
            self.owner != by || (lock_intent && exclusive)
        } else {
            exclusive
        }
    }
}

/// Would `held` (a file's locks, oldest first) let every lock of `wanted` be granted
/// ([MS-FSA] 2.1.5.8 for each element of one SMB2 LOCK request, [MS-SMB2] 3.3.5.14.2:
/// all or none)? Each is checked against `held` and the ones before it in `wanted`.
/// `Err(i)`: `wanted[i]` conflicts.
pub fn grantable(held: &[ByteLock], wanted: &[ByteLock]) -> Result<(), usize> {
    for (i, l) in wanted.iter().enumerate() {
        let before = held.iter().chain(&wanted[..i]);
        if before.clone().any(|h| h.conflicts(l.owner, l.offset, l.length, l.exclusive, true)) {
            return Err(i);
        }
    }
    Ok(())
}

/// Which of `held` an unlock of exactly this range by `owner` releases: an exclusive
/// lock before a shared one, else the oldest ([MS-FSA] 2.1.5.9); `None` when none
/// matches.
pub fn unlocked(held: &[ByteLock], owner: PersistentFileId, offset: u64, length: u64) -> Option<usize> {
    let mut found = None;
    for (i, l) in held.iter().enumerate() {
        if l.owner == owner && l.offset == offset && l.length == length {
            if l.exclusive {
                return Some(i);
            }
            found = found.or(Some(i));
        }
    }
    found
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

    /// Would an I/O of `len` bytes at `offset` by the open `by` conflict with one of the
    /// file's byte-range locks ([MS-FSA] 2.1.4.10 with no lock intent)? A write
    /// conflicts with any other open's lock and with the open's own shared locks; a read
    /// only with other opens' exclusive locks. An empty I/O conflicts with nothing.
    pub fn io_conflict(&self, by: PersistentFileId, offset: u64, len: u64, write: bool) -> bool {
        len != 0 && self.locks.iter().any(|l| l.conflicts(by, offset, len, write, false))
    }

    /// The persistent ids of the file's opens.
    pub fn opens(&self) -> impl Iterator<Item = PersistentFileId> + '_ {
        self.opens.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file's locks, taken and released as a LOCK does.
    #[derive(Default)]
    struct Held(Vec<ByteLock>);

    impl Held {
        fn take(&mut self, l: ByteLock) -> bool {
            self.take_all(&[l]).is_ok()
        }

        fn take_all(&mut self, wanted: &[ByteLock]) -> Result<(), usize> {
            grantable(&self.0, wanted)?;
            self.0.extend_from_slice(wanted);
            Ok(())
        }

        fn unlock(&mut self, id: u64, offset: u64, length: u64) -> bool {
            unlocked(&self.0, PersistentFileId(id), offset, length).map(|i| self.0.remove(i)).is_some()
        }

        fn io_conflict(&self, id: u64, offset: u64, len: u64, write: bool) -> bool {
            let f = FileRecord {
                uid: FileUid(1),
                share: "s".into(),
                path: "f".into(),
                delete_pending: false,
                locks: self.0.clone(),
                opens: BTreeSet::new(),
            };
            f.io_conflict(PersistentFileId(id), offset, len, write)
        }
    }

    fn bl(id: u64, offset: u64, length: u64, exclusive: bool) -> ByteLock {
        ByteLock { owner: PersistentFileId(id), offset, length, exclusive }
    }

    #[test]
    fn locks_conflict_and_release() {
        let mut t = Held::default();
        assert!(t.take(bl(1, 0, 10, true)));
        assert!(!t.take(bl(2, 5, 10, false)));
        assert!(t.take(bl(2, 10, 10, true)));
        assert!(t.io_conflict(2, 0, 1, false));
        assert!(!t.io_conflict(1, 0, 1, true));
        assert!(!t.unlock(2, 0, 10));
        assert!(t.unlock(1, 0, 10));
        assert!(t.take(bl(2, 5, 5, true)));
    }

    #[test]
    fn stacking_on_the_same_open() {
        let mut t = Held::default();
        // Shared on shared, and shared on the open's own exclusive, stack.
        assert!(t.take(bl(1, 0, 10, true)));
        assert!(t.take(bl(1, 0, 10, false)));
        assert!(t.take(bl(1, 0, 10, false)));
        // Another open gets neither; nor does a second exclusive.
        assert!(!t.take(bl(2, 0, 10, false)));
        assert!(!t.take(bl(1, 0, 10, true)));
        // Exclusive on the open's own shared fails.
        assert!(t.take(bl(1, 20, 10, false)));
        assert!(!t.take(bl(1, 25, 1, true)));
        // Unlocks take the exclusive first, then the shared ones.
        assert!(t.unlock(1, 0, 10));
        assert!(t.take(bl(2, 0, 10, false)));
        assert!(t.unlock(1, 0, 10));
        assert!(t.unlock(1, 0, 10));
        assert!(!t.unlock(1, 0, 10));
        // The range must match exactly.
        assert!(!t.unlock(1, 20, 5));
        assert!(t.unlock(1, 20, 10));
    }

    #[test]
    fn zero_length_locks() {
        // A zero-length lock at 10 against another open's locks.
        for (off, len, conflict) in
            [(10, 0, false), (9, 1, false), (10, 1, false), (11, 1, false), (9, 2, true), (10, 2, false), (9, 3, true)]
        {
            let mut t = Held::default();
            assert!(t.take(bl(1, 10, 0, true)));
            assert_eq!(!t.take(bl(2, off, len, true)), conflict, "{off}/{len}");
            let mut t = Held::default();
            assert!(t.take(bl(1, off, len, true)));
            assert_eq!(!t.take(bl(2, 10, 0, true)), conflict, "{off}/{len} first");
        }
        // At the top of the range.
        let mut t = Held::default();
        assert!(t.take(bl(1, u64::MAX, 0, true)));
        assert!(t.take(bl(2, u64::MAX, 0, true)));
        assert!(t.take(bl(1, u64::MAX, 1, true)));
        assert!(!t.take(bl(2, u64::MAX, 1, true)));
        assert!(!t.take(bl(2, u64::MAX - 1, 2, false)));
    }

    #[test]
    fn all_or_nothing() {
        let mut t = Held::default();
        assert!(t.take(bl(1, 10, 10, true)));
        // The second conflicts: the first is not kept.
        assert_eq!(t.take_all(&[bl(1, 0, 10, true), bl(1, 10, 10, true)]), Err(1));
        assert!(!t.unlock(1, 0, 10));
        // Elements of one request conflict with each other too.
        assert_eq!(t.take_all(&[bl(1, 30, 10, true), bl(1, 35, 1, true)]), Err(1));
        assert!(!t.unlock(1, 30, 10));
    }

    #[test]
    fn io_against_locks() {
        let mut t = Held::default();
        assert!(t.take(bl(1, 0, 100, false)));
        assert!(t.take(bl(1, 100, 100, true)));
        // Shared: anyone reads, nobody writes, the owner included.
        assert!(!t.io_conflict(1, 0, 10, false));
        assert!(!t.io_conflict(2, 0, 10, false));
        assert!(t.io_conflict(1, 0, 10, true));
        assert!(t.io_conflict(2, 0, 10, true));
        // Exclusive: the owner reads and writes, others do neither.
        assert!(!t.io_conflict(1, 150, 10, false));
        assert!(!t.io_conflict(1, 150, 10, true));
        assert!(t.io_conflict(2, 150, 10, false));
        assert!(t.io_conflict(2, 150, 10, true));
        // Empty I/O and I/O past the locks conflict with nothing.
        assert!(!t.io_conflict(2, 150, 0, true));
        assert!(!t.io_conflict(2, 200, 10, true));
    }
}
