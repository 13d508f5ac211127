//! The per-file table: every open of a file, whichever session made it,
//! for share modes ([MS-FSA] 2.1.5.1.2), delete-on-close and byte-range
//! locks ([MS-FSA] 2.1.5.7).

use std::collections::HashMap;

/// A file's identity on disk: (device, inode).
pub type FileKey = (u64, u64);

/// Access mask bits that matter for share modes ([MS-SMB2] 2.2.13.1.1).
pub mod access {
    pub const FILE_READ_DATA: u32 = 0x0000_0001;
    pub const FILE_WRITE_DATA: u32 = 0x0000_0002;
    pub const FILE_APPEND_DATA: u32 = 0x0000_0004;
    pub const FILE_READ_EA: u32 = 0x0000_0008;
    pub const FILE_WRITE_EA: u32 = 0x0000_0010;
    pub const FILE_EXECUTE: u32 = 0x0000_0020;
    pub const FILE_DELETE_CHILD: u32 = 0x0000_0040;
    pub const FILE_READ_ATTRIBUTES: u32 = 0x0000_0080;
    pub const FILE_WRITE_ATTRIBUTES: u32 = 0x0000_0100;
    pub const DELETE: u32 = 0x0001_0000;
    pub const READ_CONTROL: u32 = 0x0002_0000;
    pub const WRITE_DAC: u32 = 0x0004_0000;
    pub const WRITE_OWNER: u32 = 0x0008_0000;
    pub const SYNCHRONIZE: u32 = 0x0010_0000;
    pub const ACCESS_SYSTEM_SECURITY: u32 = 0x0100_0000;
    pub const MAXIMUM_ALLOWED: u32 = 0x0200_0000;
    pub const GENERIC_ALL: u32 = 0x1000_0000;
    pub const GENERIC_EXECUTE: u32 = 0x2000_0000;
    pub const GENERIC_WRITE: u32 = 0x4000_0000;
    pub const GENERIC_READ: u32 = 0x8000_0000;
}

/// ShareAccess bits.
pub mod share {
    pub const READ: u32 = 0x1;
    pub const WRITE: u32 = 0x2;
    pub const DELETE: u32 = 0x4;
}

/// One open as the file table sees it.
#[derive(Debug, Clone)]
pub struct OpenRef {
    pub persistent_id: u64,
    pub access: u32,
    pub share_access: u32,
}

/// One granted byte-range lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteLock {
    pub persistent_id: u64,
    pub offset: u64,
    pub length: u64,
    pub exclusive: bool,
}

impl ByteLock {
    /// Do two ranges overlap? Zero-length ranges overlap nothing
    /// except when inside another range ([MS-FSA] 2.1.5.7 note).
    fn overlaps(&self, offset: u64, length: u64) -> bool {
        let a_end = self.offset.saturating_add(self.length);
        let b_end = offset.saturating_add(length);
        if self.length == 0 || length == 0 {
            let (p, s, e) = if self.length == 0 { (self.offset, offset, b_end) } else { (offset, self.offset, a_end) };
            return self.length != length && p > s && p < e;
        }
        self.offset < b_end && offset < a_end
    }
}

#[derive(Debug, Default)]
pub struct FileEntry {
    pub opens: Vec<OpenRef>,
    /// Where the file is now (renames move it), for delete-on-close.
    pub path: Option<crate::fs::Resolved>,
    pub delete_pending: bool,
    pub locks: Vec<ByteLock>,
    /// Bumped on every lock release, so blocked lock requests retry.
    pub lock_generation: u64,
}

#[derive(Debug, Default)]
pub struct FileTable {
    files: HashMap<FileKey, FileEntry>,
}

/// Does the new open conflict with an existing one? ([MS-FSA] 2.1.5.1.2.)
pub fn share_conflict(existing: &OpenRef, access: u32, share_access: u32) -> bool {
    use access::*;
    let data_read = FILE_READ_DATA | FILE_EXECUTE;
    let data_write = FILE_WRITE_DATA | FILE_APPEND_DATA;
    let check = |held_access: u32, other_share: u32| {
        (held_access & data_read != 0 && other_share & share::READ == 0)
            || (held_access & data_write != 0 && other_share & share::WRITE == 0)
            || (held_access & DELETE != 0 && other_share & share::DELETE == 0)
    };
    check(access, existing.share_access) || check(existing.access, share_access)
}

impl FileTable {
    pub fn get(&self, key: &FileKey) -> Option<&FileEntry> {
        self.files.get(key)
    }

    pub fn get_mut(&mut self, key: &FileKey) -> Option<&mut FileEntry> {
        self.files.get_mut(key)
    }

    pub fn is_delete_pending(&self, key: &FileKey) -> bool {
        self.files.get(key).is_some_and(|f| f.delete_pending)
    }

    /// Checks share modes against every open of the file.
    pub fn check_share(&self, key: &FileKey, access: u32, share_access: u32) -> bool {
        match self.files.get(key) {
            Some(f) => !f.opens.iter().any(|o| share_conflict(o, access, share_access)),
            None => true,
        }
    }

    pub fn add_open(&mut self, key: FileKey, open: OpenRef, path: crate::fs::Resolved) {
        let e = self.files.entry(key).or_default();
        e.opens.push(open);
        e.path = Some(path);
    }

    /// Records a file's new location after a rename.
    pub fn set_path(&mut self, key: &FileKey, path: crate::fs::Resolved) {
        if let Some(f) = self.files.get_mut(key) {
            f.path = Some(path);
        }
    }

    pub fn path(&self, key: &FileKey) -> Option<crate::fs::Resolved> {
        self.files.get(key).and_then(|f| f.path.clone())
    }

    /// Removes an open. Returns the file's path when it was the last open
    /// and a delete is pending: the caller then deletes the file.
    pub fn remove_open(&mut self, key: &FileKey, persistent_id: u64) -> Option<crate::fs::Resolved> {
        let Some(f) = self.files.get_mut(key) else {
            return None;
        };
        f.opens.retain(|o| o.persistent_id != persistent_id);
        let before = f.locks.len();
        f.locks.retain(|l| l.persistent_id != persistent_id);
        if f.locks.len() != before {
            f.lock_generation += 1;
        }
        if f.opens.is_empty() {
            let pending = f.delete_pending;
            let path = f.path.take();
            self.files.remove(key);
            return if pending { path } else { None };
        }
        None
    }

    pub fn open_count(&self, key: &FileKey) -> usize {
        self.files.get(key).map_or(0, |f| f.opens.len())
    }

    /// Moves a file's entry when its identity changes (never for rename on
    /// Linux, kept for completeness of the API).
    pub fn set_delete_pending(&mut self, key: &FileKey, pending: bool) {
        if let Some(f) = self.files.get_mut(key) {
            f.delete_pending = pending;
        }
    }

    /// Tries to take a lock. Err(true) when it conflicts with a lock held by
    /// another open (or an exclusive one of the same open).
    pub fn try_lock(&mut self, key: &FileKey, lock: ByteLock) -> Result<(), ()> {
        let f = self.files.entry(*key).or_default();
        let conflict = f.locks.iter().any(|l| {
            l.overlaps(lock.offset, lock.length)
                && (l.exclusive || lock.exclusive)
                && !(l.persistent_id == lock.persistent_id && !l.exclusive && !lock.exclusive)
        });
        let same_range_zero = lock.length == 0 && f.locks.iter().any(|l| l.length == 0 && l.offset == lock.offset && l.exclusive && lock.exclusive && l.persistent_id != lock.persistent_id);
        if conflict || same_range_zero {
            return Err(());
        }
        f.locks.push(lock);
        Ok(())
    }

    /// Releases one lock exactly matching the range; Err when none matches.
    pub fn unlock(&mut self, key: &FileKey, persistent_id: u64, offset: u64, length: u64) -> Result<(), ()> {
        let f = self.files.get_mut(key).ok_or(())?;
        let i = f
            .locks
            .iter()
            .position(|l| l.persistent_id == persistent_id && l.offset == offset && l.length == length)
            .ok_or(())?;
        f.locks.remove(i);
        f.lock_generation += 1;
        Ok(())
    }

    /// Would an I/O of `len` bytes at `offset` by this open conflict with a
    /// lock of another open? Writes conflict with any lock, reads only with
    /// exclusive ones.
    pub fn io_conflict(&self, key: &FileKey, persistent_id: u64, offset: u64, len: u64, write: bool) -> bool {
        if len == 0 {
            return false;
        }
        self.files.get(key).is_some_and(|f| {
            f.locks.iter().any(|l| {
                l.length != 0
                    && l.overlaps(offset, len)
                    && (l.persistent_id != persistent_id || (write && !l.exclusive))
                    && (write || l.exclusive)
                    && !(l.persistent_id == persistent_id && l.exclusive)
            })
        })
    }

    pub fn lock_generation(&self, key: &FileKey) -> u64 {
        self.files.get(key).map_or(0, |f| f.lock_generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(access: u32, share: u32) -> OpenRef {
        OpenRef { persistent_id: 1, access, share_access: share }
    }

    #[test]
    fn share_modes_follow_fsa() {
        use access::*;
        // A reader that shares read admits another reader, not a writer.
        assert!(!share_conflict(&r(FILE_READ_DATA, share::READ), FILE_READ_DATA, share::READ | share::WRITE));
        assert!(share_conflict(&r(FILE_READ_DATA, share::READ), FILE_WRITE_DATA, share::READ | share::WRITE));
        // An attribute-only open conflicts with nothing.
        assert!(!share_conflict(&r(FILE_READ_ATTRIBUTES, 0), FILE_WRITE_DATA | DELETE, 0));
        // Delete needs share-delete.
        assert!(share_conflict(&r(FILE_READ_DATA, share::READ | share::WRITE), DELETE, 7));
    }

    #[test]
    fn locks_conflict_and_release() {
        let mut t = FileTable::default();
        let k = (1, 2);
        let l = |id, off, len, ex| ByteLock { persistent_id: id, offset: off, length: len, exclusive: ex };
        assert!(t.try_lock(&k, l(1, 0, 10, true)).is_ok());
        assert!(t.try_lock(&k, l(2, 5, 10, false)).is_err());
        assert!(t.try_lock(&k, l(2, 10, 10, true)).is_ok());
        assert!(t.io_conflict(&k, 2, 0, 1, false));
        assert!(!t.io_conflict(&k, 1, 0, 1, true));
        assert!(t.unlock(&k, 2, 0, 10).is_err());
        assert!(t.unlock(&k, 1, 0, 10).is_ok());
        assert!(t.try_lock(&k, l(2, 5, 5, true)).is_ok());
    }
}

impl FileTable {
    /// Does any open file's path satisfy `pred`?
    pub fn any_path(&self, pred: impl Fn(&crate::fs::Resolved) -> bool) -> bool {
        self.files.values().any(|f| f.path.as_ref().is_some_and(&pred))
    }
}
