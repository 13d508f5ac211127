//! File metadata in SMB terms: FILETIME times, DOS attributes, file ids.
//!
//! Creation time and DOS attributes are not kept by Linux in a form SMB can
//! use, so they live in user extended attributes when the share's file system
//! supports them:
//!
//! ```text
//! // Format: user.duet.btime  = { filetime: u64 LE }   (8 bytes)
//! // Format: user.duet.attrib = { attributes: u32 LE } (4 bytes)
//! ```
//!
//! Without the xattr, the creation time is the kernel's birth time (`statx`
//! `STATX_BTIME`) or else `min(mtime, ctime)`, and the attributes are derived:
//! DIRECTORY for directories, ARCHIVE for files, READONLY when the owner write
//! bit is clear. When the xattr exists it is authoritative (DIRECTORY is still
//! added for directories, NORMAL reported when the result would be 0).

use std::ffi::CStr;
use std::os::fd::BorrowedFd;

use super::sys::{self, XattrTarget};
use super::FsError;

/// DOS file attributes ([MS-FSCC] 2.6).
pub mod attr {
    pub use protocol::fscc::file_attributes::{
        ARCHIVE, DIRECTORY, HIDDEN, NORMAL, NOT_CONTENT_INDEXED, OFFLINE, READONLY, REPARSE_POINT, SPARSE_FILE, SYSTEM,
        TEMPORARY,
    };
    /// The attributes a client may set and Duet stores.
    pub const SETTABLE: u32 = READONLY | HIDDEN | SYSTEM | ARCHIVE | TEMPORARY | OFFLINE | NOT_CONTENT_INDEXED;
    /// What Duet stores: the settable ones, and SPARSE_FILE, which only
    /// FSCTL_SET_SPARSE changes.
    pub const STORED: u32 = SETTABLE | SPARSE_FILE;
}

pub(crate) const XATTR_BTIME: &CStr = c"user.duet.btime";
pub(crate) const XATTR_ATTRIB: &CStr = c"user.duet.attrib";

/// Seconds between 1601-01-01 (FILETIME epoch) and 1970-01-01.
const EPOCH_DIFF_SECS: i64 = 11_644_473_600;
const TICKS_PER_SEC: i64 = 10_000_000;

/// Unix time to FILETIME (100 ns ticks since 1601). Times before 1601 give 0.
pub fn unix_to_filetime(secs: i64, nsecs: i64) -> u64 {
    let ticks = (secs as i128 + EPOCH_DIFF_SECS as i128) * TICKS_PER_SEC as i128 + (nsecs as i128) / 100;
    ticks.clamp(0, u64::MAX as i128) as u64
}

/// FILETIME to a `timespec` (for `utimensat`).
pub fn filetime_to_timespec(ft: u64) -> libc::timespec {
    let secs = (ft / TICKS_PER_SEC as u64) as i64 - EPOCH_DIFF_SECS;
    let nsecs = (ft % TICKS_PER_SEC as u64) as i64 * 100;
    libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: nsecs as _ }
}

/// What SMB needs to know about a file or directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Device number (for logs; not part of [`Stat::file_id`]).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// End of file, in bytes.
    pub size: u64,
    /// Allocation size, in bytes (`st_blocks * 512`).
    pub blocks_bytes: u64,
    /// Link count.
    pub nlink: u64,
    /// `st_mode`, type bits included.
    pub mode: u32,
    /// Directory or regular file (nothing else is ever reported).
    pub is_dir: bool,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access, FILETIME.
    pub atime: u64,
    /// Last write, FILETIME.
    pub mtime: u64,
    /// ChangeTime as SMB reports it, FILETIME: the last write time, as Samba
    /// does (`get_change_timespec`). Linux cannot set the inode ctime, and
    /// clients (and smbtorture smb2.timestamps) expect ChangeTime to follow a
    /// LastWriteTime they set.
    pub ctime: u64,
    /// Creation, FILETIME.
    pub btime: u64,
    /// DOS attributes as reported to clients (never 0).
    pub attributes: u32,
}

impl Stat {
    /// True for a symbolic link (reported as a reparse point, never followed).
    pub fn is_link(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }

    /// A 64-bit file id, stable for the life of the file and never 0. It is the
    /// inode number alone: the device number is left out so the id stays the
    /// same when the partner node serves the same shared storage under another
    /// device number.
    pub fn file_id(&self) -> u64 {
        if self.ino == 0 {
            u64::MAX
        } else {
            self.ino
        }
    }
}

/// Space on the share's file system, for FileFsSizeInformation and friends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsSize {
    /// Allocation unit, in bytes (`f_frsize`).
    pub block_size: u64,
    /// Total blocks.
    pub total_blocks: u64,
    /// Free blocks available to the server's user (`f_bavail`).
    pub avail_blocks: u64,
    /// Free blocks including the reserve (`f_bfree`).
    pub free_blocks: u64,
}

/// The kind of a directory entry, as resolution sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    /// FIFOs, sockets, devices: never served.
    Special,
}

pub(crate) fn kind_of(mode: u32) -> Kind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        _ => Kind::Special,
    }
}

fn ts(t: libc::statx_timestamp) -> u64 {
    unix_to_filetime(t.tv_sec, t.tv_nsec as i64)
}

/// Builds a [`Stat`] from `statx` and, if `xattr` is given, the stored creation
/// time and attributes.
pub(crate) fn from_statx(st: &libc::statx, xattr: Option<XattrTarget<'_>>) -> Stat {
    let mode = st.stx_mode as u32;
    let is_dir = kind_of(mode) == Kind::Dir;
    let mtime = ts(st.stx_mtime);
    let inode_ctime = ts(st.stx_ctime);
    let mut btime = if st.stx_mask & libc::STATX_BTIME != 0 { ts(st.stx_btime) } else { mtime.min(inode_ctime) };
    let mut stored = None;
    if let Some(target) = xattr {
        let mut buf = [0u8; 8];
        if let Ok(Some(8)) = sys::get_xattr(target, XATTR_BTIME, &mut buf) {
            btime = u64::from_le_bytes(buf);
        }
        let mut buf = [0u8; 4];
        if let Ok(Some(4)) = sys::get_xattr(target, XATTR_ATTRIB, &mut buf) {
            stored = Some(u32::from_le_bytes(buf));
        }
    }
    if kind_of(mode) == Kind::Symlink {
        // A symbolic link ([`super::link`]): a reparse point of no size.
        // The caller adds DIRECTORY for a directory's link.
        return Stat {
            dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            size: 0,
            blocks_bytes: 0,
            nlink: st.stx_nlink as u64,
            mode,
            is_dir: false,
            uid: st.stx_uid,
            gid: st.stx_gid,
            atime: ts(st.stx_atime),
            mtime,
            ctime: mtime,
            btime,
            attributes: attr::REPARSE_POINT | attr::ARCHIVE,
        };
    }
    Stat {
        dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        size: st.stx_size,
        blocks_bytes: st.stx_blocks.saturating_mul(512),
        nlink: st.stx_nlink as u64,
        mode,
        is_dir,
        uid: st.stx_uid,
        gid: st.stx_gid,
        atime: ts(st.stx_atime),
        mtime,
        ctime: mtime,
        btime,
        attributes: report_attributes(stored, is_dir, mode),
    }
}

/// The attributes a client sees, from the stored ones (if any).
pub(crate) fn report_attributes(stored: Option<u32>, is_dir: bool, mode: u32) -> u32 {
    let mut a = match stored {
        Some(s) => s & attr::STORED,
        None => {
            let mut a = if is_dir { 0 } else { attr::ARCHIVE };
            if mode & 0o200 == 0 {
                a |= attr::READONLY;
            }
            a
        }
    };
    if is_dir {
        a |= attr::DIRECTORY;
    }
    if a == 0 {
        a = attr::NORMAL;
    }
    a
}

/// Stats the entry `name` of `dir` (or `dir` itself for `None`), symlinks not
/// followed. Files, directories and symlinks (as reparse points: whether
/// one is confined is for the caller to check, see [`super::link`]) pass;
/// special files are [`FsError::AccessDenied`].
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: Option<&CStr>, xattrs: bool) -> Result<Stat, FsError> {
    stat_at_link(dir, name, xattrs).map(|(st, _)| st)
}

/// [`stat_at`], with the target of a symlink (which it reports as a
/// reparse point, not following it; DIRECTORY for a link stored with a
/// trailing `/`, see [`super::link`]).
pub(crate) fn stat_at_link(
    dir: BorrowedFd<'_>,
    name: Option<&CStr>,
    xattrs: bool,
) -> Result<(Stat, Option<Vec<u8>>), FsError> {
    let st = match name {
        Some(n) => sys::statx(dir, n, libc::AT_SYMLINK_NOFOLLOW),
        None => sys::statx(dir, c"", libc::AT_EMPTY_PATH),
    }
    .map_err(|e| FsError::from_errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
    match kind_of(st.stx_mode as u32) {
        Kind::File | Kind::Dir => {}
        Kind::Symlink => {
            let Some(n) = name else { return Err(FsError::SymlinkRefused) };
            let target = sys::readlinkat(dir, n).map_err(|e| FsError::from_errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
            let mut stat = from_statx(&st, None);
            if target.ends_with(b"/") {
                stat.attributes |= attr::DIRECTORY;
            }
            return Ok((stat, Some(target)));
        }
        Kind::Special => return Err(FsError::AccessDenied),
    }
    let target = match (xattrs, name) {
        (false, _) => None,
        (true, Some(n)) => Some(XattrTarget::At(dir, n)),
        (true, None) => Some(XattrTarget::At(dir, c".")),
    };
    Ok((from_statx(&st, target), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filetime_conversions() {
        assert_eq!(unix_to_filetime(0, 0), 116_444_736_000_000_000);
        assert_eq!(unix_to_filetime(1, 500), 116_444_736_010_000_005);
        assert_eq!(unix_to_filetime(-EPOCH_DIFF_SECS - 10, 0), 0);
        let ts = filetime_to_timespec(116_444_736_010_000_005);
        assert_eq!((ts.tv_sec, ts.tv_nsec), (1, 500));
        let ft = unix_to_filetime(1_700_000_000, 123_456_700);
        let ts = filetime_to_timespec(ft);
        assert_eq!((ts.tv_sec, ts.tv_nsec), (1_700_000_000, 123_456_700));
    }

    #[test]
    fn attributes() {
        assert_eq!(report_attributes(None, false, 0o100644), attr::ARCHIVE);
        assert_eq!(report_attributes(None, false, 0o100444), attr::ARCHIVE | attr::READONLY);
        assert_eq!(report_attributes(None, true, 0o40755), attr::DIRECTORY);
        assert_eq!(report_attributes(Some(0), false, 0o100644), attr::NORMAL);
        assert_eq!(report_attributes(Some(0), true, 0o40755), attr::DIRECTORY);
        assert_eq!(report_attributes(Some(attr::HIDDEN | attr::NORMAL), false, 0o100444), attr::HIDDEN);
    }

    #[test]
    fn file_id_never_zero() {
        let mut s = Stat {
            dev: 1, ino: 0, size: 0, blocks_bytes: 0, nlink: 1, mode: 0, is_dir: false, uid: 0, gid: 0,
            atime: 0, mtime: 0, ctime: 0, btime: 0, attributes: attr::NORMAL,
        };
        assert_ne!(s.file_id(), 0);
        s.ino = 42;
        assert_eq!(s.file_id(), 42);
    }
}
