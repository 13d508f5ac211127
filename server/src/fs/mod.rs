//! The share-confined file system: a local directory served with SMB
//! semantics (Linux only).
//!
//! It knows paths, files and metadata; it does not know the SMB wire format,
//! open tables, share modes, delete-on-close or oplocks (the server's job).
//!
//! # Confinement
//! No client path reaches outside the share root:
//! - Client paths are parsed into checked components ([`SmbPath`]): `..` is
//!   resolved lexically and may not climb above the root, and no component
//!   is empty, `.`, `..`, or holds a separator, NUL or `:`.
//! - Every open goes through `openat2(2)` relative to the root's `O_PATH` fd
//!   with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, so
//!   even a directory swapped for a symlink between [`Share::resolve`] and
//!   [`Share::open`] is refused by the kernel.
//! - Everything else (stat, mkdir, unlink, rename, xattrs) is an `*at` call on
//!   a single component, relative to a parent directory fd that was itself
//!   opened that way, with symlinks never followed.
//! - No absolute path is ever built from client input.
//!
//! Symlinks inside the share are never followed: they are left out of
//! listings, and a path that names one (at any component) fails with
//! [`FsError::SymlinkRefused`] (STATUS_ACCESS_DENIED). FIFOs, sockets and
//! devices are likewise hidden and refused ([`FsError::AccessDenied`]).
//! Hard links to files outside the share cannot be detected and are out of
//! scope: whoever can plant them already has access to both places.
//!
//! # Names
//! Lookups are case-insensitive by default: an exact match first, then a scan
//! of the parent directory comparing simple upper-case folds (ties go to the
//! bytewise smallest name), then generated 8.3 short names. New names keep
//! the client's spelling.
//!
//! # Layout
//! - [`path`]: parsing wire paths into [`SmbPath`].
//! - [`Share`] (here): resolution and namespace operations.
//! - [`handle`]: [`Handle`], I/O and metadata on an open object.
//! - [`stat`]: [`Stat`], FILETIME conversion, DOS attributes.
//! - [`wildcard`]: [MS-FSA] 2.1.4.4 expression matching.
//! - [`shortname`]: 8.3 names.
//! - [`error`]: [`FsError`] and its NTSTATUS mapping.
//! - `sys`: the raw system calls (`openat2`, `statx`, xattrs); all `unsafe`.

pub mod error;
pub mod handle;
pub mod path;
pub mod shortname;
pub mod stat;
mod sys;
pub mod wildcard;

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{OFlag, RenameFlags};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

pub use error::FsError;
pub use handle::{DirEntry, Handle, SetTimes};
pub use path::SmbPath;
pub use shortname::short_name;
pub use stat::{attr, filetime_to_timespec, unix_to_filetime, FsSize, Stat};
pub use wildcard::wildcard_match;

use handle::io_err;
use stat::{kind_of, Kind};

/// A directory served as an SMB share. Cheap to share between threads
/// (`Send + Sync`); every method is a few blocking system calls, so async
/// callers should use `spawn_blocking`.
#[derive(Debug)]
pub struct Share {
    /// `O_PATH | O_DIRECTORY` fd of the root: the anchor of every lookup.
    root_fd: OwnedFd,
    name: String,
    root: PathBuf,
    volume_serial: u32,
    case_insensitive: bool,
    xattrs: bool,
}

/// A client path mapped to on-disk names by [`Share::resolve`]. Its parent
/// directory existed at resolution time; the leaf may or may not exist.
/// Nothing is held open: operations re-walk the path under `openat2`, so a
/// `Resolved` going stale can make them fail but never escape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// On-disk names from the root; for a missing leaf, the client's spelling.
    components: Vec<String>,
    exists: bool,
    is_dir: bool,
}

impl Resolved {
    /// The share root.
    pub fn root() -> Resolved {
        Resolved { components: Vec::new(), exists: true, is_dir: true }
    }

    /// The leaf existed (as a file or directory) at resolution time.
    pub fn exists(&self) -> bool {
        self.exists
    }

    /// The leaf existed and was a directory.
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }

    /// True for the share root.
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// On-disk components from the root.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The leaf's on-disk name (`""` for the root).
    pub fn name(&self) -> &str {
        self.components.last().map_or("", String::as_str)
    }

    /// The share-relative path with `\` separators, as clients spell it
    /// (no leading separator; empty for the root).
    pub fn smb_path(&self) -> String {
        self.components.join("\\")
    }

    /// The `/`-joined relative path for `openat2` (`.` for the root).
    fn rel(&self) -> Result<CString, FsError> {
        to_cstring(&if self.components.is_empty() { ".".to_owned() } else { self.components.join("/") })
    }

    /// The parent's relative path and the leaf; `None` for the root.
    fn split(&self) -> Result<Option<(CString, CString)>, FsError> {
        let Some((leaf, parent)) = self.components.split_last() else { return Ok(None) };
        let parent = if parent.is_empty() { ".".to_owned() } else { parent.join("/") };
        Ok(Some((to_cstring(&parent)?, to_cstring(leaf)?)))
    }
}

fn to_cstring(s: &str) -> Result<CString, FsError> {
    CString::new(s).map_err(|_| FsError::NameInvalid)
}

impl Share {
    /// Opens the directory `root` as the share `name`. `root` comes from the
    /// configuration, not a client, and is followed if it is a symlink.
    /// Lookups are case-insensitive; see [`Share::set_case_sensitive`].
    pub fn new(name: &str, root: &Path) -> Result<Share, FsError> {
        let root_fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| match e {
                nix::errno::Errno::ENOENT => FsError::PathNotFound,
                e => e.into(),
            })?;
        // SAFETY-free: nix returns a RawFd we now own exclusively.
        let root_fd = owned(root_fd);
        let xattrs = probe_xattrs(root_fd.as_fd());
        Ok(Share {
            root_fd,
            name: name.to_owned(),
            root: root.to_owned(),
            volume_serial: fnv1a32(name.as_bytes()),
            case_insensitive: true,
            xattrs,
        })
    }

    /// Makes lookups exact-match only (for case-sensitive shares).
    pub fn set_case_sensitive(&mut self, case_sensitive: bool) {
        self.case_insensitive = !case_sensitive;
    }

    /// The share name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root directory (for logs only: never used to reach files).
    pub fn root_path(&self) -> &Path {
        &self.root
    }

    /// The volume serial number: a hash of the share name, so both nodes of
    /// a pair report the same one.
    pub fn volume_serial(&self) -> u32 {
        self.volume_serial
    }

    /// True when lookups ignore case.
    pub fn case_insensitive(&self) -> bool {
        self.case_insensitive
    }

    /// True when the file system stores user xattrs (creation times and DOS
    /// attributes persist).
    pub fn supports_xattrs(&self) -> bool {
        self.xattrs
    }

    /// Parses a wire path; see [`SmbPath::parse`] and the [`path`] module.
    pub fn parse_path(smb_path: &str) -> Result<SmbPath, FsError> {
        SmbPath::parse(smb_path)
    }

    /// Maps `path` to on-disk names (case-insensitively unless configured
    /// otherwise). A missing, non-directory or special intermediate component
    /// is [`FsError::PathNotFound`]; a symlink anywhere is
    /// [`FsError::SymlinkRefused`]; a special-file leaf is
    /// [`FsError::AccessDenied`]; an existing file named with a trailing
    /// separator is [`FsError::NameInvalid`]. A missing leaf is not an error:
    /// check [`Resolved::exists`].
    pub fn resolve(&self, path: &SmbPath) -> Result<Resolved, FsError> {
        let comps = path.components();
        let Some((leaf, parents)) = comps.split_last() else { return Ok(Resolved::root()) };
        let mut components = Vec::with_capacity(comps.len());
        let mut dir: Option<OwnedFd> = None;
        for comp in parents {
            let cur = dir.as_ref().map_or(self.root_fd.as_fd(), |d| d.as_fd());
            let (name, kind) = match self.lookup(cur, comp) {
                Ok(Some(found)) => found,
                Ok(None) | Err(FsError::NotFound) => return Err(FsError::PathNotFound),
                Err(e) => return Err(e),
            };
            match kind {
                Kind::Dir => {}
                Kind::Symlink => return Err(FsError::SymlinkRefused),
                Kind::File | Kind::Special => return Err(FsError::PathNotFound),
            }
            let next = sys::openat2_beneath(cur, &to_cstring(&name)?, libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::ENOTDIR) => FsError::PathNotFound,
                    _ => io_err(e),
                })?;
            dir = Some(next);
            components.push(name);
        }
        let cur = dir.as_ref().map_or(self.root_fd.as_fd(), |d| d.as_fd());
        let found = match self.lookup(cur, leaf) {
            Err(FsError::NotFound) => None,
            r => r?,
        };
        let (exists, is_dir) = match found {
            None => {
                components.push(leaf.clone());
                (false, false)
            }
            Some((name, kind)) => {
                components.push(name);
                match kind {
                    Kind::Dir => (true, true),
                    Kind::File if path.trailing_separator() => return Err(FsError::NameInvalid),
                    Kind::File => (true, false),
                    Kind::Symlink => return Err(FsError::SymlinkRefused),
                    Kind::Special => return Err(FsError::AccessDenied),
                }
            }
        };
        Ok(Resolved { components, exists, is_dir })
    }

    /// Finds `comp` in `dir`: exact name, then case-insensitive, then short name.
    fn lookup(&self, dir: BorrowedFd<'_>, comp: &str) -> Result<Option<(String, Kind)>, FsError> {
        let c = to_cstring(comp)?;
        match sys::statx(dir, &c, libc::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => return Ok(Some((comp.to_owned(), kind_of(st.stx_mode as u32)))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(io_err(e)),
        }
        if !self.case_insensitive {
            return Ok(None);
        }
        let want: Vec<char> = comp.chars().map(wildcard::fold).collect();
        let mangled = shortname::looks_mangled(comp);
        let mut dir_iter = Dir::openat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&dir)),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut best: Option<String> = None;
        let mut by_short: Option<String> = None;
        for entry in dir_iter.iter() {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else { continue };
            if name == "." || name == ".." {
                continue;
            }
            if name.chars().map(wildcard::fold).eq(want.iter().copied()) {
                if best.as_deref().map_or(true, |b| name.as_bytes() < b.as_bytes()) {
                    best = Some(name.to_owned());
                }
            } else if mangled && by_short.is_none() && short_name(name).eq_ignore_ascii_case(comp) {
                by_short = Some(name.to_owned());
            }
        }
        let Some(name) = best.or(by_short) else { return Ok(None) };
        match sys::statx(dir, &to_cstring(&name)?, libc::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some((name, kind_of(st.stx_mode as u32)))),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Opens `rel`'s parent directory as `O_PATH`, confined.
    fn parent_fd(&self, parent: &CString) -> Result<OwnedFd, FsError> {
        sys::openat2_beneath(self.root_fd.as_fd(), parent, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => FsError::PathNotFound,
                _ => io_err(e),
            }
        })
    }

    /// Current metadata of `rel` (which must exist).
    pub fn stat(&self, rel: &Resolved) -> Result<Stat, FsError> {
        match rel.split()? {
            None => stat::stat_at(self.root_fd.as_fd(), None, self.xattrs),
            Some((parent, leaf)) => {
                let dir = self.parent_fd(&parent)?;
                stat::stat_at(dir.as_fd(), Some(&leaf), self.xattrs)
            }
        }
    }

    /// Opens the existing file or directory `rel`, never following a symlink
    /// at any component. Files open `O_RDWR` when `write`, else `O_RDONLY`;
    /// directories always `O_RDONLY | O_DIRECTORY`. Anything but a regular
    /// file or directory is refused without blocking (FIFOs are opened
    /// `O_NONBLOCK` and closed again).
    pub fn open(&self, rel: &Resolved, write: bool) -> Result<Handle, FsError> {
        let path = rel.rel()?;
        let flags = if write { libc::O_RDWR } else { libc::O_RDONLY } | libc::O_NONBLOCK | libc::O_NOCTTY;
        let fd = match sys::openat2_beneath(self.root_fd.as_fd(), &path, flags, 0) {
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                sys::openat2_beneath(self.root_fd.as_fd(), &path, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            }
            r => r,
        }
        .map_err(|e| self.open_error(rel, e))?;
        self.finish_open(fd)
    }

    /// Checks the type of a freshly opened fd and clears `O_NONBLOCK`.
    fn finish_open(&self, fd: OwnedFd) -> Result<Handle, FsError> {
        let st = sys::statx(fd.as_fd(), c"", libc::AT_EMPTY_PATH).map_err(io_err)?;
        let is_dir = match kind_of(st.stx_mode as u32) {
            Kind::Dir => true,
            Kind::File => false,
            Kind::Symlink => return Err(FsError::SymlinkRefused),
            Kind::Special => return Err(FsError::AccessDenied),
        };
        let fl = nix::fcntl::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), nix::fcntl::FcntlArg::F_GETFL)?;
        let fl = OFlag::from_bits_truncate(fl) & !OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), nix::fcntl::FcntlArg::F_SETFL(fl))?;
        Ok(Handle::new(fd, is_dir, self.xattrs))
    }

    /// ENOENT on the leaf is NotFound, on a parent PathNotFound.
    fn open_error(&self, rel: &Resolved, e: std::io::Error) -> FsError {
        match e.raw_os_error() {
            Some(libc::ENOENT) => match rel.split() {
                Ok(Some((parent, _))) if self.parent_fd(&parent).is_err() => FsError::PathNotFound,
                _ => FsError::NotFound,
            },
            Some(libc::ENOTDIR) => FsError::PathNotFound,
            _ => io_err(e),
        }
    }

    /// Creates the file `rel` (`O_CREAT | O_EXCL | O_RDWR`, so an existing
    /// name, symlink included, is [`FsError::Exists`]) with permission bits
    /// `mode` (subject to the umask). The on-disk name is the client's
    /// spelling. The new file reports ARCHIVE until attributes are set.
    pub fn create_file(&self, rel: &Resolved, mode: u32) -> Result<Handle, FsError> {
        let (parent, leaf) = rel.split()?.ok_or(FsError::Exists)?;
        if rel.exists {
            return Err(FsError::Exists);
        }
        let dir = self.parent_fd(&parent)?;
        let fd = sys::openat2_beneath(dir.as_fd(), &leaf, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, mode & 0o7777)
            .map_err(io_err)?;
        let h = self.finish_open(fd)?;
        self.stamp_btime(&h);
        Ok(h)
    }

    /// Creates the directory `rel` (`mkdirat`) and opens it.
    pub fn create_dir(&self, rel: &Resolved, mode: u32) -> Result<Handle, FsError> {
        let (parent, leaf) = rel.split()?.ok_or(FsError::Exists)?;
        if rel.exists {
            return Err(FsError::Exists);
        }
        let dir = self.parent_fd(&parent)?;
        nix::sys::stat::mkdirat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&dir)),
            leaf.as_c_str(),
            Mode::from_bits_truncate((mode & 0o7777) as libc::mode_t),
        )?;
        let fd = sys::openat2_beneath(dir.as_fd(), &leaf, libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(io_err)?;
        let h = self.finish_open(fd)?;
        self.stamp_btime(&h);
        Ok(h)
    }

    /// Without a kernel birth time, records the creation time in the xattr so
    /// it does not drift with later writes.
    fn stamp_btime(&self, h: &Handle) {
        if !self.xattrs {
            return;
        }
        if let Ok(st) = sys::statx(h.as_fd(), c"", libc::AT_EMPTY_PATH) {
            if st.stx_mask & libc::STATX_BTIME == 0 {
                let now = unix_to_filetime(st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec as i64);
                let _ = h.set_times(SetTimes { creation: Some(now), ..SetTimes::default() });
            }
        }
    }

    /// Removes the file `rel` ([`FsError::IsADirectory`] for a directory).
    pub fn unlink(&self, rel: &Resolved) -> Result<(), FsError> {
        let (parent, leaf) = rel.split()?.ok_or(FsError::AccessDenied)?;
        let dir = self.parent_fd(&parent)?;
        let st = stat::stat_at(dir.as_fd(), Some(&leaf), false)?;
        if st.is_dir {
            return Err(FsError::IsADirectory);
        }
        Ok(nix::unistd::unlinkat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&dir)),
            leaf.as_c_str(),
            UnlinkatFlags::NoRemoveDir,
        )?)
    }

    /// Removes the directory `rel`: [`FsError::NotEmpty`] when it has
    /// entries, [`FsError::NotADirectory`] for a file. The root cannot go.
    pub fn rmdir(&self, rel: &Resolved) -> Result<(), FsError> {
        let (parent, leaf) = rel.split()?.ok_or(FsError::AccessDenied)?;
        let dir = self.parent_fd(&parent)?;
        nix::unistd::unlinkat(Some(std::os::fd::AsRawFd::as_raw_fd(&dir)), leaf.as_c_str(), UnlinkatFlags::RemoveDir)
            .map_err(|e| match e {
                nix::errno::Errno::EEXIST | nix::errno::Errno::ENOTEMPTY => FsError::NotEmpty,
                e => e.into(),
            })
    }

    /// Renames `from` to `to` within the share (`renameat2`). The target is
    /// resolved case-insensitively:
    /// - it is `from` itself (a case-only rename): renamed to the new spelling;
    /// - another existing object: [`FsError::Exists`] unless `replace`; a
    ///   directory is never replaced ([`FsError::AccessDenied`], as Windows);
    ///   when replacing, the result takes the client's spelling;
    /// - absent: `RENAME_NOREPLACE`, so a racing creator is not clobbered.
    ///
    /// Returns the new location. The root cannot be renamed, nor be a target.
    pub fn rename(&self, from: &Resolved, to: &SmbPath, replace: bool) -> Result<Resolved, FsError> {
        let (src_parent, src_leaf) = from.split()?.ok_or(FsError::AccessDenied)?;
        let target = self.resolve(to)?;
        let (dst_parent, dst_leaf) = target.split()?.ok_or(FsError::AccessDenied)?;
        let spelling = to.leaf().ok_or(FsError::AccessDenied)?;
        let spelling_c = to_cstring(spelling)?;
        let src = self.parent_fd(&src_parent)?;
        let dst = self.parent_fd(&dst_parent)?;
        let src_st = stat::stat_at(src.as_fd(), Some(&src_leaf), false)?;
        let mut result = target.clone();
        *result.components.last_mut().expect("non-root") = spelling.to_owned();
        result.exists = true;
        result.is_dir = src_st.is_dir;
        if target.exists {
            let dst_st = stat::stat_at(dst.as_fd(), Some(&dst_leaf), false)?;
            if (dst_st.dev, dst_st.ino) == (src_st.dev, src_st.ino) {
                if src_parent == dst_parent && src_leaf == spelling_c {
                    return Ok(result);
                }
                rename_at(&src, &src_leaf, &dst, &spelling_c, true)?;
                return Ok(result);
            }
            if !replace {
                return Err(FsError::Exists);
            }
            if dst_st.is_dir {
                return Err(FsError::AccessDenied);
            }
            rename_at(&src, &src_leaf, &dst, &dst_leaf, false)?;
            if dst_leaf != spelling_c && rename_at(&dst, &dst_leaf, &dst, &spelling_c, true).is_err() {
                *result.components.last_mut().expect("non-root") = target.name().to_owned();
            }
            return Ok(result);
        }
        rename_at(&src, &src_leaf, &dst, &spelling_c, true)?;
        Ok(result)
    }

    /// Space on the share's file system.
    pub fn statvfs(&self) -> Result<FsSize, FsError> {
        let v = nix::sys::statvfs::fstatvfs(self.root_fd.as_fd())?;
        let block_size = if v.fragment_size() > 0 { v.fragment_size() } else { v.block_size() };
        Ok(FsSize {
            block_size: block_size as u64,
            total_blocks: v.blocks() as u64,
            avail_blocks: v.blocks_available() as u64,
            free_blocks: v.blocks_free() as u64,
        })
    }
}

/// `renameat2` of single components between two confined directory fds;
/// falls back to a checked plain rename where `RENAME_NOREPLACE` is not
/// supported.
fn rename_at(src: &OwnedFd, from: &CString, dst: &OwnedFd, to: &CString, noreplace: bool) -> Result<(), FsError> {
    use std::os::fd::AsRawFd;
    let flags = if noreplace { RenameFlags::RENAME_NOREPLACE } else { RenameFlags::empty() };
    let r = nix::fcntl::renameat2(Some(src.as_raw_fd()), from.as_c_str(), Some(dst.as_raw_fd()), to.as_c_str(), flags);
    match r {
        Err(nix::errno::Errno::EINVAL) if noreplace => {
            if sys::statx(dst.as_fd(), to, libc::AT_SYMLINK_NOFOLLOW).is_ok() {
                return Err(FsError::Exists);
            }
            Ok(nix::fcntl::renameat(Some(src.as_raw_fd()), from.as_c_str(), Some(dst.as_raw_fd()), to.as_c_str())?)
        }
        Err(nix::errno::Errno::EEXIST | nix::errno::Errno::ENOTEMPTY) => Err(FsError::Exists),
        r => Ok(r?),
    }
}

/// Whether the file system under `root` has user xattrs: reading a missing
/// one answers ENODATA where supported, EOPNOTSUPP where not.
fn probe_xattrs(root: BorrowedFd<'_>) -> bool {
    let Ok(dir) = sys::openat2_beneath(root, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0) else { return false };
    let mut buf = [0u8; 4];
    sys::get_xattr(sys::XattrTarget::Fd(dir.as_fd()), stat::XATTR_ATTRIB, &mut buf).is_ok()
}

fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    sys::own_fd(fd)
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}
