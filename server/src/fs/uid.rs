//! A file's stable identity ([`FileUid`]): 128 bits kept with the file in an
//! extended attribute, so that it survives a rename and a move of the share
//! to the partner's mount, where `(dev, ino)` change.
//!
//! ```text
//! // Format: user.duet.uid = { uid: u128 LE }   (16 bytes; bit 127 clear)
//! ```
//!
//! [`Share::file_uid`] reads it from the open handle (`fgetxattr`: one
//! system call), and gives a file that has none a fresh random id, written
//! with `XATTR_CREATE`: of two openers racing on such a file one write wins,
//! the other gets `EEXIST` and reads the winner's id back, so both agree.
//! [`Share::new_file_uid`] does the same for a file the server has just
//! created: it writes first (one system call) and reads only on `EEXIST`.
//! The server's file table keeps the id of every open file by `(dev, ino)`,
//! so only the first open of a file pays either call.
//!
//! # What keeps an id and what gets a new one
//! - The id belongs to the inode. A rename keeps it, and so does a move of
//!   the share to another mount of the same file system; an SMB overwrite or
//!   supersede (same inode) keeps it too. All hard links of an inode share
//!   the one id, so they stay one file for share modes, locks and leases.
//! - A new file gets a new id, however it is made: a client's copy (through
//!   SMB, FSCTL_SRV_COPYCHUNK included) is a file the server creates, and a
//!   local copy by a plain `cp` starts with no xattrs.
//! - A local copy that carries xattrs (`cp -a`, `cp --preserve=xattr`,
//!   `rsync -X`, a backup restored beside the original) carries the
//!   original's id too. That does no harm while at most one of the two is
//!   open. When both are, the server's file table finds one id on two
//!   inodes, and the one opened second gets a new id ([`Share::remint_uid`]):
//!   derived from the old id and its own `(dev, ino)`, so openers racing on
//!   the same inode write the same new id without a lock. The id of a file
//!   that has opens is never changed.
//! - A stored value that Duet did not write (not 16 bytes, zero, or bit 127
//!   set) is replaced the same way.
//!
//! # Without user xattrs
//! When the file system has no user xattrs (`ENOTSUP`), or the server may
//! not write one on this file (a read-only file or mount, another owner's
//! file: `EACCES`, `EPERM`, `EROFS`; no space), the id is derived from
//! `(dev, ino)` with bit 127 set ([`derived`]): unique among the files open
//! on this node, but not [`movable`]: the partner cannot find the file by
//! it. An inode number reused after a delete gives the same derived id;
//! nothing holds it then (a file's table entry lives only while the file is
//! open, and the open pins the inode). The first fallback of a share is
//! logged at warn, once; it is never an error to the client.
//!
//! Clients never see `user.duet.uid`, nor `user.duet.btime` and
//! `user.duet.attrib`: EAs are the `user.` xattrs (see [`super::ea`]), and
//! every name under `user.duet.` is left out of EA listings and refused
//! (STATUS_ACCESS_DENIED) when a client tries to set it as an EA.

use std::ffi::CStr;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use tracing::warn;

pub use crate::model::FileUid;

use super::sys::{self, XattrTarget};
use super::{Handle, Share, Stat};

pub(crate) const XATTR_UID: &CStr = c"user.duet.uid";

/// Bit 127: set in ids derived from `(dev, ino)`, clear in stored ones.
const DERIVED: u128 = 1 << 127;

/// Can the file be found by this id on another mount (the partner's, or
/// this node's after a remount)? False for an id derived from `(dev, ino)`.
pub fn movable(uid: FileUid) -> bool {
    uid.0 & DERIVED == 0
}

/// The id of a file that cannot keep one: `(dev, ino)` with bit 127 set.
/// Unique per inode on this node; never equal to a stored id.
pub fn derived(st: &Stat) -> FileUid {
    FileUid(DERIVED | (u128::from(st.dev & (u64::MAX >> 1)) << 64) | u128::from(st.ino))
}

/// A fresh random id (bit 127 clear, never 0).
fn random() -> FileUid {
    FileUid((rand::random::<u128>() & !DERIVED).max(1))
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The id that replaces `old` on the inode `st`: a mix of both, the same for
/// every opener of that inode (bit 127 clear, never 0).
fn reminted(old: u128, st: &Stat) -> FileUid {
    // splitmix64's finaliser, over the words of the old id and the inode.
    let (mut hi, mut lo) = (0x243F_6A88_85A3_08D3u64, 0x1319_8A2E_0370_7344u64);
    for w in [old as u64, (old >> 64) as u64, st.dev, st.ino] {
        hi = mix(hi ^ w);
        lo = mix(lo.wrapping_add(w) ^ hi);
    }
    FileUid(((u128::from(hi) << 64 | u128::from(lo)) & !DERIVED).max(1))
}

/// The id of a file made by a CREATE with CreateGuid `guid` (DH2Q, [MS-SMB2]
/// 2.2.13.2.11): a hash of the guid (CreateGuids are unique, so are these),
/// not derived, not zero. After a crash between the file's creation and
/// the CREATE's point-3 record, the restore recognises that file by it and
/// undoes the creation, so that the client's resent CREATE succeeds
/// instead of colliding ([`crate::restart`]).
pub fn for_create(guid: &[u8; 16]) -> FileUid {
    let mut hi = 0x9e37_79b9_7f4a_7c15u64;
    let mut lo = 0xc2b2_ae3d_27d4_eb4fu64;
    for chunk in guid.chunks(8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        hi = mix(hi ^ w);
        lo = mix(lo.wrapping_add(w) ^ hi);
    }
    FileUid(((u128::from(hi) << 64 | u128::from(lo)) & !DERIVED).max(1))
}

/// A stored value as an id: exactly 16 bytes, not zero, bit 127 clear.
fn parse(value: &[u8]) -> Option<FileUid> {
    let v = u128::from_le_bytes(value.try_into().ok()?);
    (v != 0 && v & DERIVED == 0).then_some(FileUid(v))
}

/// What was found in `user.duet.uid`.
enum Stored {
    Id(FileUid),
    Absent,
    /// A value Duet did not write; its first bytes seed the replacement.
    Foreign(u128),
}

impl Share {
    /// The id of the open file or directory `h` (whose metadata is `st`),
    /// given one the first time (see the module doc). Never fails: without
    /// a stored id it is [`derived`].
    pub fn file_uid(&self, h: &Handle, st: &Stat) -> FileUid {
        if h.is_link() {
            // A symlink has no xattrs of its own (`fs::link`).
            return derived(st);
        }
        if !h.xattrs() {
            return self.fallback(st, "the file system has no user xattrs");
        }
        match read(h) {
            Ok(Stored::Id(uid)) => uid,
            Ok(Stored::Absent) => self.create(h, st),
            Ok(Stored::Foreign(seed)) => self.replace(h, st, seed),
            Err(e) => self.fallback_io(st, "read", &e),
        }
    }

    /// [`Share::file_uid`] for a file this server has just created (it has
    /// no id yet): one write, and a read only if somebody raced us to it.
    pub fn new_file_uid(&self, h: &Handle, st: &Stat) -> FileUid {
        if h.is_link() {
            // A symlink has no xattrs of its own (`fs::link`).
            return derived(st);
        }
        if !h.xattrs() {
            return self.fallback(st, "the file system has no user xattrs");
        }
        self.create(h, st)
    }

    /// [`Share::new_file_uid`] with the id given: that of a file made by a
    /// CREATE with a CreateGuid ([`for_create`]), so that a restart can
    /// tell the file that CREATE made ([`Share::stored_uid`]).
    pub fn new_file_uid_as(&self, h: &Handle, st: &Stat, uid: FileUid) -> FileUid {
        if h.is_link() {
            // A symlink has no xattrs of its own (`fs::link`).
            return derived(st);
        }
        if !h.xattrs() {
            return self.fallback(st, "the file system has no user xattrs");
        }
        match write(h, uid, libc::XATTR_CREATE) {
            Ok(()) => uid,
            Err(_) => self.file_uid(h, st),
        }
    }

    /// The id stored with `h`, if there is one; none is made.
    pub fn stored_uid(&self, h: &Handle) -> Option<FileUid> {
        match read(h) {
            Ok(Stored::Id(uid)) if h.xattrs() => Some(uid),
            _ => None,
        }
    }

    /// A new id for `h`, whose stored id `dup` is already another open
    /// inode's (a copy that carried the xattr): stored in place of `dup`.
    /// Openers racing on the same inode compute the same id.
    pub fn remint_uid(&self, h: &Handle, st: &Stat, dup: FileUid) -> FileUid {
        if !movable(dup) || !h.xattrs() {
            return derived(st);
        }
        self.replace(h, st, dup.0)
    }

    /// Writes a fresh id with `XATTR_CREATE`; on `EEXIST`, the one that won.
    fn create(&self, h: &Handle, st: &Stat) -> FileUid {
        let uid = random();
        match write(h, uid, libc::XATTR_CREATE) {
            Ok(()) => uid,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => match read(h) {
                Ok(Stored::Id(uid)) => uid,
                // Removed again in between: give up on storing one.
                Ok(Stored::Absent) => derived(st),
                Ok(Stored::Foreign(seed)) => self.replace(h, st, seed),
                Err(e) => self.fallback_io(st, "read", &e),
            },
            Err(e) => self.fallback_io(st, "store", &e),
        }
    }

    /// Overwrites a duplicate or foreign value with the id derived from it.
    fn replace(&self, h: &Handle, st: &Stat, seed: u128) -> FileUid {
        let uid = reminted(seed, st);
        match write(h, uid, 0) {
            Ok(()) => uid,
            Err(e) => self.fallback_io(st, "replace", &e),
        }
    }

    fn fallback_io(&self, st: &Stat, what: &str, e: &io::Error) -> FileUid {
        if self.uid_fallback_logged.load(Ordering::Relaxed) {
            return derived(st);
        }
        self.fallback(st, &format!("cannot {what} user.duet.uid on inode {} ({e})", st.ino))
    }

    /// The derived id; the share's first one is logged.
    fn fallback(&self, st: &Stat, why: &str) -> FileUid {
        if !self.uid_fallback_logged.swap(true, Ordering::Relaxed) {
            warn!(
                share = self.name(),
                "file ids: {why}; such files get ids derived from (dev, ino), which do not survive a move to the partner (logged once per share)"
            );
        }
        derived(st)
    }
}

/// The id stored with the file `leaf` of `dir`, if it has one Duet wrote.
pub(crate) fn stored_at(dir: std::os::fd::BorrowedFd<'_>, leaf: &CStr) -> Option<FileUid> {
    let mut buf = [0u8; 16];
    match sys::get_xattr(XattrTarget::At(dir, leaf), XATTR_UID, &mut buf) {
        Ok(Some(n)) => parse(&buf[..n]),
        _ => None,
    }
}

/// The id stored with the open file `h`, if it has one Duet wrote.
pub(crate) fn stored(h: &Handle) -> Option<FileUid> {
    match read(h) {
        Ok(Stored::Id(uid)) => Some(uid),
        _ => None,
    }
}

fn read(h: &Handle) -> io::Result<Stored> {
    #[cfg(test)]
    if test_hook::forced() {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    let mut buf = [0u8; 16];
    match sys::get_xattr(XattrTarget::Fd(h.as_fd()), XATTR_UID, &mut buf) {
        Ok(None) => Ok(Stored::Absent),
        Ok(Some(n)) => Ok(parse(&buf[..n]).map_or(Stored::Foreign(u128::from_le_bytes(buf)), Stored::Id)),
        // Longer than 16 bytes.
        Err(e) if e.raw_os_error() == Some(libc::ERANGE) => Ok(Stored::Foreign(u128::MAX)),
        Err(e) => Err(e),
    }
}

/// Makes the file `leaf` of `dir` already carrying `uid`: an unnamed file
/// (`O_TMPFILE`) given the id, then linked under `leaf`
/// (`linkat` through `/proc/self/fd`, which needs no capability). `None`
/// when the file system cannot make unnamed files or store the id: the
/// caller makes the file the ordinary way. `EEXIST` when `leaf` exists.
pub(crate) fn create_named(
    dir: std::os::fd::BorrowedFd<'_>,
    leaf: &CStr,
    mode: u32,
    uid: FileUid,
) -> Option<io::Result<std::os::fd::OwnedFd>> {
    use std::os::fd::AsRawFd;
    let fd = match sys::openat2_beneath(dir, c".", libc::O_TMPFILE | libc::O_RDWR, mode) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => return None,
        Err(e) => return Some(Err(e)),
    };
    if sys::set_xattr_flags(fd.as_fd(), XATTR_UID, &uid.0.to_le_bytes(), libc::XATTR_CREATE).is_err() {
        return None;
    }
    let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    // SAFETY: both paths are NUL-terminated and outlive the call; `dir` is
    // borrowed and so open. `leaf` is one name (no separator), so the link
    // is made in `dir`, beneath the share root.
    let r = unsafe {
        libc::linkat(libc::AT_FDCWD, proc_path.as_ptr(), dir.as_raw_fd(), leaf.as_ptr(), libc::AT_SYMLINK_FOLLOW)
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            // No /proc: made the ordinary way.
            Some(libc::ENOENT) if !std::path::Path::new("/proc/self/fd").exists() => None,
            _ => Some(Err(e)),
        };
    }
    Some(Ok(fd))
}

fn write(h: &Handle, uid: FileUid, flags: i32) -> io::Result<()> {
    // Fenced: not stored; the id falls back as on a failed store.
    h.may_change().map_err(|e| io::Error::other(e.to_string()))?;
    #[cfg(test)]
    if test_hook::forced() {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    sys::set_xattr_flags(h.as_fd(), XATTR_UID, &uid.0.to_le_bytes(), flags)
}

/// Makes this thread's xattr calls fail with `EOPNOTSUPP`, as on a file
/// system without user xattrs.
#[cfg(test)]
pub(crate) mod test_hook {
    use std::cell::Cell;

    thread_local!(static FORCED: Cell<bool> = const { Cell::new(false) });

    pub(crate) fn forced() -> bool {
        FORCED.with(Cell::get)
    }

    pub(crate) fn force_enotsup(on: bool) {
        FORCED.with(|f| f.set(on));
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::fs::tests::share;
    use crate::fs::{Resolved, SmbPath};

    fn res(s: &Share, p: &str) -> Resolved {
        s.resolve(&SmbPath::parse(p).unwrap()).unwrap()
    }

    fn open(s: &Share, p: &str) -> (Handle, Stat) {
        let h = s.open(&res(s, p), false).unwrap();
        let st = h.stat().unwrap();
        (h, st)
    }

    /// The stored value, read with the plain path API (as an operator would).
    fn on_disk(path: &Path) -> Option<Vec<u8>> {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        let mut buf = [0u8; 64];
        // SAFETY: test code; `c` is NUL-terminated and `buf` writable.
        let n = unsafe { libc::lgetxattr(c.as_ptr(), XATTR_UID.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        (n >= 0).then(|| buf[..n as usize].to_vec())
    }

    fn set_on_disk(path: &Path, value: &[u8]) {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: test code; both pointers are valid for the call.
        let r = unsafe { libc::lsetxattr(c.as_ptr(), XATTR_UID.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
    }

    /// A file made under a CreateGuid has its id from the moment its name
    /// exists (a restart that finds the name tells it by the id, even when
    /// the server died right after making it); an existing name is refused
    /// as O_EXCL refuses it, and leaves nothing behind.
    #[test]
    fn a_file_made_with_an_id_has_it_as_soon_as_its_name_exists() {
        let (tmp, s) = share();
        if !s.supports_xattrs() {
            eprintln!("skipped: {} has no user xattrs", tmp.path().display());
            return;
        }
        let uid = for_create(&[9; 16]);
        let h = s.create_file_as(&res(&s, "made"), 0o644, Some(uid)).unwrap();
        assert_eq!(on_disk(&tmp.path().join("made")), Some(uid.0.to_le_bytes().to_vec()));
        assert_eq!(s.stored_uid(&h), Some(uid));
        h.write_at(b"data", 0).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("made")).unwrap(), b"data");
        std::fs::write(tmp.path().join("there"), b"x").unwrap();
        let exists = SmbPath::parse("there").unwrap();
        let fresh = Resolved { components: exists.components().to_vec(), exists: false, is_dir: false, is_link: false };
        assert!(matches!(s.create_file_as(&fresh, 0o644, Some(uid)), Err(crate::fs::FsError::Exists)));
        assert_eq!(std::fs::read(tmp.path().join("there")).unwrap(), b"x");
        let mut names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["made", "there"]);
    }

    #[test]
    fn created_once_kept_by_rename_and_links_and_stored_as_documented() {
        let (tmp, s) = share();
        if !s.supports_xattrs() {
            eprintln!("skipped: {} has no user xattrs", tmp.path().display());
            return;
        }
        std::fs::write(tmp.path().join("a"), b"x").unwrap();
        assert_eq!(on_disk(&tmp.path().join("a")), None);
        let (h, st) = open(&s, "a");
        let uid = s.file_uid(&h, &st);
        assert!(movable(uid) && uid.0 != 0);
        assert_eq!(on_disk(&tmp.path().join("a")).unwrap(), uid.0.to_le_bytes());
        // Read back, not made again; the same through another handle.
        assert_eq!(s.file_uid(&h, &st), uid);
        let (h2, st2) = open(&s, "A");
        assert_eq!(s.file_uid(&h2, &st2), uid);
        // A rename and a hard link keep it (it is the inode's).
        s.rename(&res(&s, "a"), &SmbPath::parse("b").unwrap(), false).unwrap();
        std::fs::hard_link(tmp.path().join("b"), tmp.path().join("c")).unwrap();
        for name in ["b", "c"] {
            let (h, st) = open(&s, name);
            assert_eq!(s.file_uid(&h, &st), uid, "{name}");
        }
        // A copy without xattrs is a new file with a new id; so is a
        // file the server creates.
        std::fs::copy(tmp.path().join("b"), tmp.path().join("d")).unwrap();
        let (h, st) = open(&s, "d");
        let copy = s.file_uid(&h, &st);
        assert_ne!(copy, uid);
        let h = s.create_file(&res(&s, "e"), 0o644).unwrap();
        let new = s.new_file_uid(&h, &h.stat().unwrap());
        assert!(new != uid && new != copy && movable(new));
        assert_eq!(s.file_uid(&h, &h.stat().unwrap()), new);
        // Directories, the root included, get ids too.
        let d = s.create_dir(&res(&s, "dir"), 0o755).unwrap();
        let dir = s.new_file_uid(&d, &d.stat().unwrap());
        let root = s.open(&Resolved::root(), false).unwrap();
        let root_uid = s.file_uid(&root, &root.stat().unwrap());
        assert!(movable(dir) && movable(root_uid) && dir != root_uid && dir != new);
        assert_eq!(on_disk(&tmp.path().join("dir")).unwrap(), dir.0.to_le_bytes());
    }

    #[test]
    fn racing_first_openers_agree() {
        let (tmp, s) = share();
        if !s.supports_xattrs() {
            eprintln!("skipped: {} has no user xattrs", tmp.path().display());
            return;
        }
        let s = Arc::new(s);
        for round in 0..20 {
            let name = format!("f{round}");
            std::fs::write(tmp.path().join(&name), b"").unwrap();
            let go = Arc::new(Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|i| {
                    let (s, go, name) = (s.clone(), go.clone(), name.clone());
                    std::thread::spawn(move || {
                        let (h, st) = open(&s, &name);
                        go.wait();
                        // Half take the path of a file just created.
                        if i % 2 == 0 {
                            s.file_uid(&h, &st)
                        } else {
                            s.new_file_uid(&h, &st)
                        }
                    })
                })
                .collect();
            let ids: Vec<FileUid> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            assert!(ids.iter().all(|u| *u == ids[0] && movable(*u)), "round {round}: {ids:x?}");
            assert_eq!(on_disk(&tmp.path().join(&name)).unwrap(), ids[0].0.to_le_bytes());
        }
    }

    #[test]
    fn a_copy_that_carried_the_xattr_is_reminted_the_same_by_every_opener() {
        let (tmp, s) = share();
        if !s.supports_xattrs() {
            eprintln!("skipped: {} has no user xattrs", tmp.path().display());
            return;
        }
        std::fs::write(tmp.path().join("orig"), b"x").unwrap();
        let (h, st) = open(&s, "orig");
        let uid = s.file_uid(&h, &st);
        // `cp --preserve=xattr`.
        std::fs::copy(tmp.path().join("orig"), tmp.path().join("copy")).unwrap();
        set_on_disk(&tmp.path().join("copy"), &uid.0.to_le_bytes());
        let (c1, cst) = open(&s, "copy");
        assert_eq!(s.file_uid(&c1, &cst), uid, "the copy carries the id");
        let new = s.remint_uid(&c1, &cst, uid);
        assert!(new != uid && movable(new));
        assert_eq!(on_disk(&tmp.path().join("copy")).unwrap(), new.0.to_le_bytes());
        // A racing opener that read the old value reaches the same id.
        let (c2, cst2) = open(&s, "copy");
        assert_eq!(s.remint_uid(&c2, &cst2, uid), new);
        assert_eq!(s.file_uid(&c2, &cst2), new);
        // The original is untouched.
        assert_eq!(s.file_uid(&h, &st), uid);
    }

    #[test]
    fn foreign_values_are_replaced() {
        let (tmp, s) = share();
        if !s.supports_xattrs() {
            eprintln!("skipped: {} has no user xattrs", tmp.path().display());
            return;
        }
        for (i, bad) in [&b"short"[..], &[0u8; 16], &[0xFFu8; 16], &[7u8; 40]].into_iter().enumerate() {
            let name = format!("f{i}");
            std::fs::write(tmp.path().join(&name), b"").unwrap();
            set_on_disk(&tmp.path().join(&name), bad);
            let (h, st) = open(&s, &name);
            let uid = s.file_uid(&h, &st);
            assert!(movable(uid) && uid.0 != 0, "{bad:?}");
            assert_eq!(on_disk(&tmp.path().join(&name)).unwrap(), uid.0.to_le_bytes());
            assert_eq!(s.file_uid(&h, &st), uid);
        }
    }

    #[test]
    fn without_xattrs_the_id_is_derived_and_not_movable() {
        let (tmp, s) = share();
        std::fs::write(tmp.path().join("a"), b"").unwrap();
        std::fs::write(tmp.path().join("b"), b"").unwrap();
        let (ha, sta) = open(&s, "a");
        let (hb, stb) = open(&s, "b");
        test_hook::force_enotsup(true);
        let a = s.file_uid(&ha, &sta);
        let a_new = s.new_file_uid(&ha, &sta);
        let b = s.file_uid(&hb, &stb);
        let b_dup = s.remint_uid(&hb, &stb, a);
        test_hook::force_enotsup(false);
        assert!(!movable(a) && !movable(b));
        assert_eq!(a, derived(&sta));
        assert_eq!(a_new, a, "no error, the same id every time");
        assert_ne!(a, b);
        assert_eq!(b_dup, b);
        assert!(s.uid_fallback_logged.load(Ordering::Relaxed));
        // Nothing was stored.
        assert_eq!(on_disk(&tmp.path().join("a")), None);
        // The root too.
        test_hook::force_enotsup(true);
        let root = s.open(&Resolved::root(), false).unwrap();
        let r = s.file_uid(&root, &root.stat().unwrap());
        test_hook::force_enotsup(false);
        assert!(!movable(r) && r != a && r != b);
    }

    /// Sets or clears FS_IMMUTABLE_FL (`chattr +i`): even root may not
    /// write the xattrs of an immutable file. False when not allowed here.
    fn set_immutable(path: &Path, on: bool) -> bool {
        const FS_IMMUTABLE_FL: libc::c_long = 0x10;
        let Ok(f) = std::fs::File::open(path) else {
            return false;
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let mut flags: libc::c_long = 0;
        // SAFETY: test code; `flags` is a valid c_long for both calls.
        unsafe {
            if libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
                return false;
            }
            flags = if on { flags | FS_IMMUTABLE_FL } else { flags & !FS_IMMUTABLE_FL };
            libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags) == 0
        }
    }

    #[test]
    fn a_file_the_server_may_not_write_gets_a_derived_id() {
        let (tmp, s) = share();
        let p = tmp.path().join("ro");
        std::fs::write(&p, b"").unwrap();
        if !s.supports_xattrs() {
            eprintln!("skipped: {} has no user xattrs", tmp.path().display());
            return;
        }
        // A read-only file stops a user; an immutable one stops root too.
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
        let root = nix::unistd::geteuid().is_root();
        if root && !set_immutable(&p, true) {
            eprintln!("skipped: running as root and cannot make a file immutable here");
            return;
        }
        let (h, st) = open(&s, "ro");
        let uid = s.file_uid(&h, &st);
        let stored = on_disk(&p);
        if root {
            // Before any assertion, so the directory can be removed.
            set_immutable(&p, false);
        }
        assert_eq!(uid, derived(&st));
        assert_eq!(stored, None);
        assert!(s.uid_fallback_logged.load(Ordering::Relaxed));
    }

    #[test]
    fn derived_and_reminted_ids_never_meet_stored_ones() {
        let st = |dev, ino| Stat {
            dev,
            ino,
            size: 0,
            blocks_bytes: 0,
            nlink: 1,
            mode: 0,
            is_dir: false,
            uid: 0,
            gid: 0,
            atime: 0,
            mtime: 0,
            ctime: 0,
            btime: 0,
            attributes: 0,
        };
        assert!(!movable(derived(&st(u64::MAX, u64::MAX))));
        assert!(!movable(derived(&st(0, 0))));
        assert_ne!(derived(&st(1, 2)), derived(&st(2, 1)));
        let mut seen = std::collections::HashSet::new();
        for dev in 0..4 {
            for ino in 0..256 {
                let r = reminted(0x1234, &st(dev, ino));
                assert!(movable(r) && r.0 != 0);
                assert!(seen.insert(r), "collision at {dev}/{ino}");
            }
        }
        assert_eq!(reminted(5, &st(1, 1)), reminted(5, &st(1, 1)));
        assert_ne!(reminted(5, &st(1, 1)), reminted(6, &st(1, 1)));
        assert_eq!(parse(&[0; 16]), None);
        assert_eq!(parse(&1u128.to_le_bytes()), Some(FileUid(1)));
        assert_eq!(parse(&DERIVED.to_le_bytes()), None);
        assert_eq!(parse(&[1; 15]), None);
    }
}
