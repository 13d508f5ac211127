//! The fence on the data path (issue 14; DESIGN.md, "Leases"): whether this
//! node may change a share's files at this instant.
//!
//! A pair member serves a share set (its own, or its partner's while it holds
//! it) only while it holds its lease on it (`crate::pair::sets::Lease`,
//! renewed by its storage heartbeat while the newest claim on the set is its
//! own). The request pipeline checks the lease
//! before each element runs, but an element can be held up after that check
//! (a freeze, a break wait, a slow disk) for longer than the lease lasts, and
//! the partner may have taken the set over meanwhile. So every call of this
//! module that changes something on disk asks the share's [`Fence`] first,
//! right before its first system call: file data (`pwrite`, `ftruncate`,
//! `fallocate`), names (create, mkdir, unlink, rmdir, rename, link, symbolic
//! links), metadata (times, attributes, mode, the stored security
//! descriptor, the file id) and xattrs (EAs, named streams). When the fence
//! does not hold, the call changes nothing and fails with
//! [`FsError::Fenced`]; the pipeline, which sees the fence's refusals, closes
//! the connection without an answer (`crate::pair::fence`).
//!
//! A share without a fence (a node that is not a pair member) pays one
//! branch per call. Reads, opens and syncs
//! are not fenced: they change nothing another node could be hurt by.
//!
//! The check and the system call after it are two steps: a node frozen
//! between them still makes the call when it resumes. The window is that of
//! a few instructions instead of a whole request; closing it needs the
//! storage to refuse a fenced node (SCSI persistent reservations, an epoch
//! the storage checks), which a local file system does not offer.

use std::sync::Arc;

use super::FsError;

/// Whether this node may change a share's files now.
pub trait Fence: Send + Sync + std::fmt::Debug {
    /// True while this node's lease on the share's set holds at this
    /// instant (and the set's epoch is still ours). A `false` is counted as
    /// a refusal by the implementation.
    fn holds(&self) -> bool;
}

/// A share's or a handle's fence: `None` for a share that is not fenced.
pub(crate) type FenceRef = Option<Arc<dyn Fence>>;

/// [`FsError::Fenced`] unless `fence` holds (or there is none).
#[inline]
pub(crate) fn check(fence: &FenceRef) -> Result<(), FsError> {
    match fence {
        None => Ok(()),
        Some(f) if f.holds() => Ok(()),
        Some(_) => Err(FsError::Fenced),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Resolved, SetTimes, Share};
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// A fence a test opens and closes, counting what it refused.
    #[derive(Debug, Default)]
    struct Gate {
        closed: AtomicBool,
        refused: AtomicU64,
    }

    impl Fence for Gate {
        fn holds(&self) -> bool {
            if self.closed.load(Ordering::Acquire) {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            true
        }
    }

    fn res(s: &Share, p: &str) -> Resolved {
        s.resolve(&Share::parse_path(p).unwrap()).unwrap()
    }

    fn fenced<T: std::fmt::Debug>(r: Result<T, FsError>, what: &str) {
        assert!(matches!(r, Err(FsError::Fenced)), "{what}: {r:?}");
    }

    /// Every mutating call of the file system, on a share whose fence does not
    /// hold, fails with `Fenced` and leaves the disk as it was; reads go on.
    #[test]
    fn a_closed_fence_stops_every_change_and_nothing_moves_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let share = Share::new("t", tmp.path()).unwrap();
        let gate = Arc::new(Gate::default());
        share.set_fence(gate.clone());
        // Made while the fence holds: a file with data, a stream, an EA, a directory.
        let f = share.create_file(&res(&share, "f.txt"), 0o644).unwrap();
        f.write_at(b"before", 0).unwrap();
        share.create_dir(&res(&share, "d"), 0o755).unwrap();
        let xattrs = share.supports_xattrs();
        let stream = if xattrs {
            let x = f.create_stream("s").unwrap();
            let s = f.open_stream(x).unwrap();
            s.write_at(b"stream", 0).unwrap();
            f.set_eas(&[(b"ea", b"value")]).unwrap();
            Some(s)
        } else {
            None
        };
        let listing = |p: &std::path::Path| {
            let mut v: Vec<String> =
                std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            v.sort();
            v
        };
        let before = (listing(tmp.path()), std::fs::metadata(tmp.path().join("f.txt")).unwrap().modified().unwrap());
        let eas_before = if xattrs { Some(f.eas().unwrap()) } else { None };

        gate.closed.store(true, Ordering::Release);
        fenced(f.write_at(b"after!", 0), "write");
        fenced(f.set_len(1), "set end of file");
        fenced(f.allocate(1 << 20), "allocate");
        fenced(f.zero_range(0, 6), "zero data");
        fenced(f.set_sparse(true), "set sparse");
        fenced(f.set_times(SetTimes { last_write: Some(1 << 56), ..SetTimes::default() }), "set times");
        fenced(f.set_attributes(super::super::attr::READONLY), "set attributes");
        fenced(f.set_mode(0o600), "set mode");
        fenced(f.store_sd(&[1, 0, 4, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), "store a descriptor");
        assert!(matches!(f.set_eas(&[(b"ea", b"other")]), Err(super::super::EaError::Fs(FsError::Fenced))));
        fenced(f.create_stream("t"), "create a stream");
        fenced(f.remove_streams(), "remove streams");
        if let Some(s) = &stream {
            fenced(s.write_at(b"other!", 0), "write a stream");
            fenced(s.set_len(0), "truncate a stream");
            fenced(s.rename_stream("u", false), "rename a stream");
            fenced(s.remove_stream(), "delete a stream");
        }
        fenced(share.create_file(&res(&share, "new.txt"), 0o644), "create");
        fenced(share.create_dir(&res(&share, "newdir"), 0o755), "mkdir");
        fenced(share.unlink(&res(&share, "f.txt")), "unlink");
        fenced(share.rmdir(&res(&share, "d")), "rmdir");
        fenced(share.rename(&res(&share, "f.txt"), &Share::parse_path("g.txt").unwrap(), false), "rename");
        fenced(share.link(&res(&share, "f.txt"), &Share::parse_path("h.txt").unwrap(), false), "hard link");
        fenced(share.make_symlink(&res(&share, "l"), "f.txt"), "make a symbolic link");
        // Reads go on.
        let mut buf = [0u8; 6];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), 6);
        assert_eq!(&buf, b"before");
        assert!(share.open(&res(&share, "f.txt"), true).is_ok());
        assert!(gate.refused.load(Ordering::Relaxed) >= 20, "every refusal is counted");

        assert_eq!(std::fs::read(tmp.path().join("f.txt")).unwrap(), b"before");
        let after = (listing(tmp.path()), std::fs::metadata(tmp.path().join("f.txt")).unwrap().modified().unwrap());
        assert_eq!(after, before, "names or times changed");
        assert_eq!(std::fs::metadata(tmp.path().join("f.txt")).unwrap().len(), 6);
        if let (Some(s), Some(eas)) = (&stream, eas_before) {
            let mut buf = [0u8; 6];
            assert_eq!(s.read_at(&mut buf, 0).unwrap(), 6);
            assert_eq!(&buf, b"stream");
            assert_eq!(f.eas().unwrap(), eas);
            assert_eq!(f.streams().unwrap().len(), 1);
        }

        // Open again: the same calls work.
        gate.closed.store(false, Ordering::Release);
        f.write_at(b"after!", 0).unwrap();
        share.unlink(&res(&share, "f.txt")).unwrap();
        share.rmdir(&res(&share, "d")).unwrap();
    }

    /// A share without a fence (not a pair member's) refuses nothing.
    #[test]
    fn no_fence_no_refusal() {
        let tmp = tempfile::tempdir().unwrap();
        let share = Share::new("t", tmp.path()).unwrap();
        let f = share.create_file(&res(&share, "f"), 0o644).unwrap();
        assert_eq!(f.write_at(b"x", 0).unwrap(), 1);
        share.unlink(&res(&share, "f")).unwrap();
    }
}
