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
//!   is empty, dot-only, or holds a separator, NUL, `:` or a wildcard.
//! - Every open goes through `openat2(2)` relative to the root's `O_PATH` fd
//!   with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, so
//!   even a directory swapped for a symlink between [`Share::resolve`] and
//!   [`Share::open`] is refused by the kernel.
//! - Everything else (stat, mkdir, unlink, rename, xattrs) is an `*at` call on
//!   a single component, relative to a parent directory fd that was itself
//!   opened that way, with symlinks never followed.
//! - No absolute path is ever built from client input.
//!
//! Symlinks inside the share are never followed. A path that names one (at
//! any component) fails with [`FsError::SymlinkRefused`]
//! (STATUS_ACCESS_DENIED), except in a CREATE's resolution
//! ([`Share::resolve_open`]): there a symlink whose target stays inside the
//! share ([`link`]) stops the path for the client to follow
//! ([`FsError::StoppedOnSymlink`]) or is opened as itself. Listings show
//! only those confined links ([`Handle::list_dir_in`]). FIFOs, sockets and
//! devices are likewise hidden and refused ([`FsError::AccessDenied`]).
//! Hard links to files outside the share cannot be detected and are out of
//! scope: whoever can plant them already has access to both places.
//!
//! # Names
//! Lookups are case-insensitive by default: an exact match first, then a scan
//! of the parent directory comparing simple upper-case folds (ties go to the
//! bytewise smallest name; large directories are indexed, see `names`), then
//! generated 8.3 short names. New names keep the client's spelling. Names a
//! client could not send back (not UTF-8, or holding `\`, `:`, wildcards or
//! control characters) are not listed.
//!
//! # Metadata
//! Creation time and DOS attributes live in user xattrs when the file system
//! has them (see [`stat`]); ChangeTime is reported as the write time, as
//! Samba does. READONLY is the stored attribute, or, without a stored one,
//! the absence of the owner write bit. A file's stable id lives in the
//! `user.duet.uid` xattr (see [`uid`]), with an id derived from (dev, ino)
//! where there is none. Extended attributes are the other `user.` xattrs
//! (see [`ea`]); Duet's own are never shown as EAs.
//!
//! # Layout
//! - [`path`]: parsing wire paths into [`SmbPath`].
//! - [`Share`] (here): resolution and namespace operations.
//! - [`handle`]: [`Handle`], I/O and metadata on an open object.
//! - [`stat`]: [`Stat`], FILETIME conversion, DOS attributes.
//! - [`wildcard`]: [MS-FSA] 2.1.4.4 expression matching.
//! - `names`: case-insensitive lookup and the large-directory index.
//! - [`shortname`]: 8.3 names.
//! - [`ea`]: extended attributes ([`Ea`]) as `user.` xattrs.
//! - [`stream`]: alternate data streams as `user.DosStream.` xattrs, read
//!   and written through a [`Handle`] on the stream.
//! - [`spill`]: streams too large for an xattr, in sidecar files of a
//!   hidden directory no client path reaches.
//! - [`afpinfo`]: the rules of macOS's `AFP_AfpInfo` stream.
//! - [`link`]: symbolic links, confined to the share, as POSIX symlinks.
//! - [`uid`]: a file's stable id ([`FileUid`], the `user.duet.uid` xattr).
//! - [`watch`]: directory watches with inotify for change notify, and the
//!   marks that keep Duet's own changes out of what they report.
//! - [`error`]: [`FsError`] and its NTSTATUS mapping.
//! - [`fence`]: [`Fence`], asked before every change on disk (a pair
//!   member's lease on its share set).
//! - `sys`: the raw system calls (`openat2`, `statx`, xattrs); all `unsafe`.

pub mod afpinfo;
pub mod ea;
pub mod error;
pub mod fence;
pub mod handle;
pub mod link;
pub mod macmeta;
mod names;
pub mod path;
pub mod sd;
pub mod shortname;
pub mod splice;
pub mod spill;
pub mod stat;
pub mod stream;
mod sys;
pub mod tmsize;
pub mod uid;
pub mod watch;
pub mod wildcard;

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use nix::fcntl::{OFlag, RenameFlags};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

pub use ea::{Ea, EaError};
pub use error::{FsError, Stopped};
pub use fence::Fence;
pub use handle::{DirEntry, Handle, SetTimes};
pub use link::Link;
pub use macmeta::MacMeta;
pub use path::SmbPath;
pub use shortname::{is_8dot3, short_name};
pub use stat::{attr, filetime_to_timespec, unix_to_filetime, FsSize, Stat};
pub use uid::FileUid;
pub use wildcard::wildcard_match;

use error::io_err;
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
    /// Indexes of large directories for case-insensitive lookups.
    names: names::NameCache,
    /// A file got an id derived from (dev, ino) and that was logged.
    uid_fallback_logged: AtomicBool,
    /// The components of the root's canonical path (when it is UTF-8):
    /// absolute symlink targets under it count as confined ([`link`]).
    root_abs: Option<Vec<String>>,
    /// The server's directory watches: namespace changes are marked as
    /// Duet's there, and handles register their inodes ([`watch`]).
    watcher: Option<std::sync::Arc<watch::Watcher>>,
    /// Where streams too large for an xattr live ([`spill`]).
    spill: std::sync::Arc<spill::Area>,
    /// Asked before every change on disk ([`fence`]); unset: not fenced.
    fence: std::sync::OnceLock<std::sync::Arc<dyn Fence>>,
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
    /// The leaf is a confined symbolic link, resolved for an open of the
    /// link itself ([`Share::resolve_open`]).
    is_link: bool,
}

impl Resolved {
    /// The share root.
    pub fn root() -> Resolved {
        Resolved { components: Vec::new(), exists: true, is_dir: true, is_link: false }
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

    /// The leaf is a symbolic link (opened as the link itself).
    pub fn is_link(&self) -> bool {
        self.is_link
    }

    /// On-disk components from the root.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The leaf's on-disk name (`""` for the root).
    pub fn name(&self) -> &str {
        self.components.last().map_or("", String::as_str)
    }

    /// This path after its ancestor directory `from` became `to`: `None`
    /// unless it lies below `from` (not `from` itself).
    pub fn moved(&self, from: &Resolved, to: &Resolved) -> Option<Resolved> {
        let rest = self.components.strip_prefix(from.components.as_slice()).filter(|r| !r.is_empty())?;
        let components = to.components.iter().chain(rest).cloned().collect();
        Some(Resolved { components, ..self.clone() })
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

    /// The same parent with the last component `leaf` (unchanged for the
    /// root).
    fn with_leaf(&self, leaf: &str) -> Resolved {
        let mut r = self.clone();
        if let Some(last) = r.components.last_mut() {
            *last = leaf.to_owned();
        }
        r
    }

    /// The parent's relative path and the leaf; `None` for the root.
    fn split(&self) -> Result<Option<(CString, CString)>, FsError> {
        let Some((leaf, parent)) = self.components.split_last() else { return Ok(None) };
        let parent = if parent.is_empty() { ".".to_owned() } else { parent.join("/") };
        Ok(Some((to_cstring(&parent)?, to_cstring(leaf)?)))
    }
}

/// `path` as spelled, as a [`Resolved`] of an existing file.
fn exact_of(path: &SmbPath) -> Resolved {
    Resolved { components: path.components().to_vec(), exists: true, is_dir: false, is_link: false }
}

fn to_cstring(s: &str) -> Result<CString, FsError> {
    CString::new(s).map_err(|_| FsError::NameInvalid)
}

impl Share {
    /// Opens the directory `root` as the share `name`. `root` comes from the
    /// configuration, not a client, and is followed if it is a symlink.
    /// Lookups are case-insensitive; see [`Share::set_case_sensitive`].
    pub fn new(name: &str, root: &Path) -> Result<Share, FsError> {
        use std::os::unix::fs::OpenOptionsExt;
        let root_fd: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(root)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => FsError::PathNotFound,
                _ => io_err(e),
            })?
            .into();
        let xattrs = probe_xattrs(root_fd.as_fd());
        let root_abs = std::fs::canonicalize(root)
            .ok()
            .and_then(|p| p.to_str().map(|p| p.split('/').filter(|c| !c.is_empty()).map(str::to_owned).collect()));
        Ok(Share {
            name: name.to_owned(),
            root: root.to_owned(),
            volume_serial: fnv1a32(name.as_bytes()),
            case_insensitive: true,
            xattrs,
            names: names::NameCache::default(),
            uid_fallback_logged: AtomicBool::new(false),
            root_abs,
            watcher: None,
            spill: std::sync::Arc::new(spill::Area::new(root_fd.as_fd())?),
            fence: std::sync::OnceLock::new(),
            root_fd,
        })
    }

    /// Tells the share about the server's directory watches ([`watch`]).
    pub fn set_watcher(&mut self, watcher: std::sync::Arc<watch::Watcher>) {
        self.watcher = Some(watcher);
    }

    /// Fences the share ([`fence`]): every change on disk through it, and
    /// through the handles it opens from now on, asks `fence` first. Set
    /// before the share opens its first handle; a second fence is ignored.
    pub fn set_fence(&self, fence: std::sync::Arc<dyn Fence>) {
        let _ = self.fence.set(fence);
    }

    /// The share's fence, for the handles it opens.
    fn fence(&self) -> fence::FenceRef {
        self.fence.get().cloned()
    }

    /// [`FsError::Fenced`] when the share's fence does not hold now.
    #[inline]
    fn may_change(&self) -> Result<(), FsError> {
        match self.fence.get() {
            None => Ok(()),
            Some(f) if f.holds() => Ok(()),
            Some(_) => Err(FsError::Fenced),
        }
    }

    /// The root's `O_PATH` fd.
    pub(crate) fn root_fd(&self) -> BorrowedFd<'_> {
        self.root_fd.as_fd()
    }

    /// Marks Duet's own change of the entry `rel` (its parent's entry) for
    /// the directory watches, until the mark drops ([`watch::Watcher::mark`]).
    fn mark(&self, rel: &Resolved) -> Option<watch::Mark<'_>> {
        let w = self.watcher.as_ref()?;
        let (name, parent) = rel.components.split_last()?;
        w.mark(&self.name, parent, name)
    }

    /// Makes lookups exact-match only (for case-sensitive shares).
    pub fn set_case_sensitive(&mut self, case_sensitive: bool) {
        self.case_insensitive = !case_sensitive;
    }

    /// The components of the share root's canonical path, against which
    /// absolute symlink targets are judged ([`link::Link::of_in`]); `None`
    /// when it is not known (then every absolute target is refused).
    pub fn root_components(&self) -> Option<&[String]> {
        self.root_abs.as_deref()
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
        self.resolve_as(path, None)
    }

    /// [`Share::resolve`] for a CREATE ([`link`]): a confined symbolic link
    /// on the way is [`FsError::StoppedOnSymlink`] (the client follows it),
    /// and so is one at the last component unless `open_link`
    /// (FILE_OPEN_REPARSE_POINT), which resolves to the link itself
    /// ([`Resolved::is_link`]). A link that is not confined stays
    /// [`FsError::SymlinkRefused`].
    pub fn resolve_open(&self, path: &SmbPath, open_link: bool) -> Result<Resolved, FsError> {
        self.resolve_as(path, Some(open_link))
    }

    /// What the path after component `i` adds, in UTF-16 bytes, separators
    /// included (UnparsedPathLength, [MS-SMB2] 2.2.2.2.1).
    fn unparsed(path: &SmbPath, i: usize) -> usize {
        let rest: usize = path.components()[i + 1..].iter().map(|c| 2 + c.encode_utf16().count() * 2).sum();
        rest + if path.trailing_separator() { 2 } else { 0 }
    }

    /// The symlink `name` met at component `i` of `path` in `dir` (whose
    /// share-relative components are `at`): where a CREATE stops
    /// (`open` is `Some`), else refused.
    fn met_link(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        at: &[String],
        path: &SmbPath,
        i: usize,
        open: Option<bool>,
    ) -> FsError {
        if open.is_none() {
            return FsError::SymlinkRefused;
        }
        match to_cstring(name).and_then(|c| link::read_at(dir, &c, at, self.root_components())) {
            Ok(l) => FsError::StoppedOnSymlink(Box::new(Stopped { target: l.wire_target, unparsed: Self::unparsed(path, i) })),
            Err(_) => FsError::SymlinkRefused,
        }
    }

    fn resolve_as(&self, path: &SmbPath, open: Option<bool>) -> Result<Resolved, FsError> {
        let comps = path.components();
        let Some((leaf, parents)) = comps.split_last() else { return Ok(Resolved::root()) };
        let mut components = Vec::with_capacity(comps.len());
        let mut dir: Option<OwnedFd> = None;
        for (i, comp) in parents.iter().enumerate() {
            let cur = dir.as_ref().map_or(self.root_fd.as_fd(), |d| d.as_fd());
            let (name, kind) = match self.lookup(cur, comp) {
                Ok(Some(found)) => found,
                Ok(None) | Err(FsError::NotFound) => return Err(FsError::PathNotFound),
                Err(e) => return Err(e),
            };
            match kind {
                Kind::Dir => {}
                Kind::Symlink => return Err(self.met_link(cur, &name, &components, path, i, open)),
                Kind::File | Kind::Special => return Err(FsError::PathNotFound),
            }
            let next = sys::openat2_beneath(cur, &to_cstring(&name)?, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(
                |e| match e.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::ENOTDIR) => FsError::PathNotFound,
                    _ => io_err(e),
                },
            )?;
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
            Some((name, kind)) => match kind {
                Kind::Dir => {
                    components.push(name);
                    (true, true)
                }
                Kind::File if path.trailing_separator() => return Err(FsError::NameInvalid),
                Kind::File => {
                    components.push(name);
                    (true, false)
                }
                Kind::Symlink if open == Some(true) => {
                    // The link itself, if it is confined.
                    link::read_at(cur, &to_cstring(&name)?, &components, self.root_components()).map_err(|_| FsError::SymlinkRefused)?;
                    components.push(name);
                    return Ok(Resolved { components, exists: true, is_dir: false, is_link: true });
                }
                Kind::Symlink => return Err(self.met_link(cur, &name, &components, path, comps.len() - 1, open)),
                Kind::Special => return Err(FsError::AccessDenied),
            },
        };
        Ok(Resolved { components, exists, is_dir, is_link: false })
    }

    /// Where the file at `path` is now and which inode it is, without
    /// opening it for I/O (an `O_PATH` descriptor and one `statx`): how a
    /// restart places the handles it kept before their clients come back
    /// for them. The path is tried as spelled first (it is the on-disk name
    /// the open had), then resolved as a client's would be. A symlink or a
    /// special file is refused as [`Share::open`] refuses it.
    pub fn probe(&self, path: &SmbPath) -> Result<(Resolved, u64, u64), FsError> {
        let exact = exact_of(path);
        let fd = match sys::openat2_beneath(self.root_fd.as_fd(), &exact.rel()?, libc::O_PATH | libc::O_NOFOLLOW, 0) {
            Ok(fd) => Ok((exact, fd)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)) => {
                let resolved = self.resolve(path)?;
                if !resolved.exists {
                    return Err(FsError::NotFound);
                }
                sys::openat2_beneath(self.root_fd.as_fd(), &resolved.rel()?, libc::O_PATH | libc::O_NOFOLLOW, 0)
                    .map(|fd| (resolved, fd))
                    .map_err(|e| self.open_error(&exact_of(path), e))
            }
            Err(e) => Err(io_err(e)),
        };
        let (mut resolved, fd) = fd?;
        let st = sys::statx(fd.as_fd(), c"", libc::AT_EMPTY_PATH).map_err(io_err)?;
        resolved.is_dir = match kind_of(st.stx_mode as u32) {
            Kind::Dir => true,
            Kind::File => false,
            Kind::Symlink => return Err(FsError::SymlinkRefused),
            Kind::Special => return Err(FsError::AccessDenied),
        };
        Ok((resolved, libc::makedev(st.stx_dev_major, st.stx_dev_minor), st.stx_ino))
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
        for _ in 0..2 {
            let Some(name) = self.names.find(dir, comp)? else { return Ok(None) };
            match sys::statx(dir, &to_cstring(&name)?, libc::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => return Ok(Some((name, kind_of(st.stx_mode as u32)))),
                // A stale index (or a racing unlink): rescan once.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.names.forget(dir),
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(None)
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

    /// Current metadata of `rel` (which must exist). A symlink where `rel`
    /// was not resolved to one (a swap since) is [`FsError::SymlinkRefused`].
    pub fn stat(&self, rel: &Resolved) -> Result<Stat, FsError> {
        match rel.split()? {
            None => stat::stat_at(self.root_fd.as_fd(), None, self.xattrs),
            Some((parent, leaf)) => {
                let dir = self.parent_fd(&parent)?;
                expect_kind(rel, stat::stat_at(dir.as_fd(), Some(&leaf), self.xattrs)?)
            }
        }
    }

    /// Opens the existing file or directory `rel`, never following a symlink
    /// at any component. Files open `O_RDWR` when `write`, else `O_RDONLY`;
    /// directories always `O_RDONLY | O_DIRECTORY`. Anything but a regular
    /// file or directory is refused without blocking (FIFOs are opened
    /// `O_NONBLOCK` and closed again).
    pub fn open(&self, rel: &Resolved, write: bool) -> Result<Handle, FsError> {
        self.open_stat(rel, write).map(|(h, _)| h)
    }

    /// [`Share::open`], with the opened object's metadata from the `statx`
    /// the open makes anyway (one system call fewer than
    /// [`Handle::stat`] after it).
    pub fn open_stat(&self, rel: &Resolved, write: bool) -> Result<(Handle, Stat), FsError> {
        let path = rel.rel()?;
        if rel.is_link {
            // The link itself (FILE_OPEN_REPARSE_POINT): an `O_PATH` fd of
            // the symlink, never followed.
            let fd = sys::openat2_beneath(self.root_fd.as_fd(), &path, libc::O_PATH | libc::O_NOFOLLOW, 0)
                .map_err(|e| self.open_error(rel, e))?;
            let mut h = Handle::new_link(fd)?;
            h.set_fence(self.fence());
            let st = h.stat()?;
            if !st.is_link() {
                // Replaced by a file or directory since it was resolved.
                return Err(FsError::NotFound);
            }
            return Ok((h, st));
        }
        let flags = if write { libc::O_RDWR } else { libc::O_RDONLY } | libc::O_NONBLOCK | libc::O_NOCTTY;
        let fd = match sys::openat2_beneath(self.root_fd.as_fd(), &path, flags, 0) {
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                sys::openat2_beneath(self.root_fd.as_fd(), &path, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            }
            r => r,
        }
        .map_err(|e| self.open_error(rel, e))?;
        let (h, st) = self.finish_open(fd, true)?;
        let st = h.stat_from(&st);
        Ok((h, st))
    }

    /// Checks the type of a freshly opened fd and, for a file opened
    /// `O_NONBLOCK` (`nonblock`), clears the flag (a directory's reads do
    /// not block either way). Returns the `statx` it checked.
    fn finish_open(&self, fd: OwnedFd, nonblock: bool) -> Result<(Handle, libc::statx), FsError> {
        let st = sys::statx(fd.as_fd(), c"", libc::AT_EMPTY_PATH).map_err(io_err)?;
        let is_dir = match kind_of(st.stx_mode as u32) {
            Kind::Dir => true,
            Kind::File => false,
            Kind::Symlink => return Err(FsError::SymlinkRefused),
            Kind::Special => return Err(FsError::AccessDenied),
        };
        if nonblock && !is_dir {
            // F_SETFL sets only the status flags (O_APPEND, O_NONBLOCK,
            // ...), of which Duet opens with none but O_NONBLOCK.
            nix::fcntl::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fd), nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()))?;
        }
        let mut h = Handle::new(fd, is_dir, self.xattrs);
        if self.xattrs {
            h.set_spill(self.spill.clone());
        }
        h.set_fence(self.fence());
        if let Some(w) = &self.watcher {
            h.set_tracked(w.track(watch::key_of(&st)));
        }
        Ok((h, st))
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
        self.create_file_as(rel, mode, None)
    }

    /// [`Share::create_file`], the file carrying the stable id `uid` from
    /// the moment its name exists: it is made unnamed (`O_TMPFILE`), given
    /// the id, then linked under its name (which fails as `O_EXCL` would
    /// when the name exists). A restart that finds the name can then tell
    /// whether this create made it, even when the server died right after
    /// ([`uid::for_create`]). Where the file system has no `O_TMPFILE` or
    /// no user xattrs, the file is made as [`Share::create_file`] makes it
    /// and the id is stored afterwards, by the caller.
    pub fn create_file_as(&self, rel: &Resolved, mode: u32, uid: Option<FileUid>) -> Result<Handle, FsError> {
        self.may_change()?;
        let _mark = self.mark(rel);
        let (parent, leaf) = rel.split()?.ok_or(FsError::Exists)?;
        if rel.exists {
            return Err(FsError::Exists);
        }
        let dir = self.parent_fd(&parent)?;
        let pre = names::stamp(dir.as_fd());
        let made = match uid.filter(|_| self.xattrs) {
            Some(uid) => uid::create_named(dir.as_fd(), &leaf, mode & 0o7777, uid),
            None => None,
        };
        let fd = match made {
            Some(r) => r,
            None => sys::openat2_beneath(dir.as_fd(), &leaf, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, mode & 0o7777),
        }
        .map_err(io_err)?;
        self.names.changed(dir.as_fd(), pre, Some(rel.name()), None);
        let (h, _) = self.finish_open(fd, false)?;
        self.stamp_btime(&h);
        Ok(h)
    }

    /// Creates the directory `rel` (`mkdirat`) and opens it.
    pub fn create_dir(&self, rel: &Resolved, mode: u32) -> Result<Handle, FsError> {
        self.may_change()?;
        let _mark = self.mark(rel);
        let (parent, leaf) = rel.split()?.ok_or(FsError::Exists)?;
        if rel.exists {
            return Err(FsError::Exists);
        }
        let dir = self.parent_fd(&parent)?;
        let pre = names::stamp(dir.as_fd());
        nix::sys::stat::mkdirat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&dir)),
            leaf.as_c_str(),
            Mode::from_bits_truncate((mode & 0o7777) as libc::mode_t),
        )?;
        self.names.changed(dir.as_fd(), pre, Some(rel.name()), None);
        let fd = sys::openat2_beneath(dir.as_fd(), &leaf, libc::O_RDONLY | libc::O_DIRECTORY, 0).map_err(io_err)?;
        let (h, _) = self.finish_open(fd, false)?;
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
        self.may_change()?;
        let _mark = self.mark(rel);
        let (parent, leaf) = rel.split()?.ok_or(FsError::AccessDenied)?;
        let dir = self.parent_fd(&parent)?;
        let st = expect_kind(rel, stat::stat_at(dir.as_fd(), Some(&leaf), false)?)?;
        if st.is_dir {
            return Err(FsError::IsADirectory);
        }
        let doomed = self.spilled_of(dir.as_fd(), &leaf, &st);
        let pre = names::stamp(dir.as_fd());
        nix::unistd::unlinkat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&dir)),
            leaf.as_c_str(),
            UnlinkatFlags::NoRemoveDir,
        )?;
        self.names.changed(dir.as_fd(), pre, None, Some(rel.name()));
        self.drop_spilled(doomed);
        Ok(())
    }

    /// The stable id of the file `leaf` of `dir` (metadata `st`) whose
    /// sidecar streams ([`spill`]) go when this, its last name, goes;
    /// `None` when it has other names or the share never spilled a stream.
    fn spilled_of(&self, dir: BorrowedFd<'_>, leaf: &CString, st: &Stat) -> Option<FileUid> {
        if !self.xattrs || st.nlink > 1 || st.is_dir || !self.spill.exists() {
            return None;
        }
        uid::stored_at(dir, leaf)
    }

    /// Removes the sidecar streams of a file whose last name went.
    fn drop_spilled(&self, uid: Option<FileUid>) {
        if let Some(uid) = uid {
            if let Err(e) = self.spill.remove_all(uid) {
                tracing::warn!(share = self.name(), "removing the sidecar streams of a deleted file: {e}");
            }
        }
    }

    /// Removes the directory `rel`: [`FsError::NotEmpty`] when it has
    /// entries, [`FsError::NotADirectory`] for a file. The root cannot go.
    pub fn rmdir(&self, rel: &Resolved) -> Result<(), FsError> {
        self.may_change()?;
        let _mark = self.mark(rel);
        let (parent, leaf) = rel.split()?.ok_or(FsError::AccessDenied)?;
        let dir = self.parent_fd(&parent)?;
        // A directory has one name: its sidecar streams go with it.
        let doomed = (self.xattrs && self.spill.exists()).then(|| uid::stored_at(dir.as_fd(), &leaf)).flatten();
        let pre = names::stamp(dir.as_fd());
        nix::unistd::unlinkat(Some(std::os::fd::AsRawFd::as_raw_fd(&dir)), leaf.as_c_str(), UnlinkatFlags::RemoveDir)
            .map_err(|e| match e {
            nix::errno::Errno::EEXIST | nix::errno::Errno::ENOTEMPTY => FsError::NotEmpty,
            e => e.into(),
        })?;
        self.names.changed(dir.as_fd(), pre, None, Some(rel.name()));
        self.drop_spilled(doomed);
        Ok(())
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
        self.may_change()?;
        let (src_parent, src_leaf) = from.split()?.ok_or(FsError::AccessDenied)?;
        let target = self.resolve(to)?;
        let (dst_parent, _) = target.split()?.ok_or(FsError::AccessDenied)?;
        let src = self.parent_fd(&src_parent)?;
        let dst = self.parent_fd(&dst_parent)?;
        let spelled = target.with_leaf(to.leaf().unwrap_or_default());
        let _marks = (self.mark(from), self.mark(&target), self.mark(&spelled));
        let r = self.rename_in(&src, &src_parent, &src_leaf, &dst, &dst_parent, &target, to, replace, from.is_link);
        self.names.forget(src.as_fd());
        self.names.forget(dst.as_fd());
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn rename_in(
        &self,
        src: &OwnedFd,
        src_parent: &CString,
        src_leaf: &CString,
        dst: &OwnedFd,
        dst_parent: &CString,
        target: &Resolved,
        to: &SmbPath,
        replace: bool,
        from_link: bool,
    ) -> Result<Resolved, FsError> {
        let dst_leaf = to_cstring(target.name())?;
        let spelling = to.leaf().ok_or(FsError::AccessDenied)?;
        let spelling_c = to_cstring(spelling)?;
        let src_st = stat::stat_at(src.as_fd(), Some(src_leaf), false)?;
        if src_st.is_link() {
            if !from_link {
                // Swapped in since the open resolved its path.
                return Err(FsError::SymlinkRefused);
            }
            // A symbolic link must stay confined where it goes.
            let dst_dir = target.components.split_last().map_or(&[][..], |(_, d)| d);
            link::read_at(src.as_fd(), src_leaf, dst_dir, self.root_components()).map_err(|_| FsError::AccessDenied)?;
        }
        let mut result = target.clone();
        *result.components.last_mut().expect("non-root") = spelling.to_owned();
        result.exists = true;
        result.is_dir = src_st.is_dir;
        result.is_link = src_st.is_link();
        if target.exists {
            let dst_st = stat::stat_at(dst.as_fd(), Some(&dst_leaf), false)?;
            if (dst_st.dev, dst_st.ino) == (src_st.dev, src_st.ino) {
                if src_parent == dst_parent && *src_leaf == spelling_c {
                    return Ok(result);
                }
                rename_at(src, src_leaf, dst, &spelling_c, true)?;
                return Ok(result);
            }
            if !replace {
                return Err(FsError::Exists);
            }
            if dst_st.is_dir {
                return Err(FsError::AccessDenied);
            }
            // A copy that carries the source's id shares its sidecar.
            let doomed = self
                .spilled_of(dst.as_fd(), &dst_leaf, &dst_st)
                .filter(|u| Some(*u) != uid::stored_at(src.as_fd(), src_leaf));
            rename_at(src, src_leaf, dst, &dst_leaf, false)?;
            self.drop_spilled(doomed);
            if dst_leaf != spelling_c && rename_at(dst, &dst_leaf, dst, &spelling_c, true).is_err() {
                *result.components.last_mut().expect("non-root") = target.name().to_owned();
            }
            return Ok(result);
        }
        rename_at(src, src_leaf, dst, &spelling_c, true)?;
        Ok(result)
    }

    /// Makes `to` a second name of the file `from` (a hard link, `linkat`),
    /// both confined to the share. An existing `to` is refused unless
    /// `replace` ([`FsError::Exists`]); a directory there is never replaced
    /// ([`FsError::AccessDenied`]); a name that is already this file's is
    /// left as it is. Returns where the new name resolves, with the
    /// client's spelling of its last component.
    pub fn link(&self, from: &Resolved, to: &SmbPath, replace: bool) -> Result<Resolved, FsError> {
        self.may_change()?;
        let (src_parent, src_leaf) = from.split()?.ok_or(FsError::AccessDenied)?;
        let target = self.resolve(to)?;
        let (dst_parent, _) = target.split()?.ok_or(FsError::AccessDenied)?;
        let src = self.parent_fd(&src_parent)?;
        let dst = self.parent_fd(&dst_parent)?;
        let spelling = to.leaf().ok_or(FsError::AccessDenied)?;
        let spelled = target.with_leaf(spelling);
        let _marks = (self.mark(&target), self.mark(&spelled));
        let src_st = stat::stat_at(src.as_fd(), Some(&src_leaf), false)?;
        if src_st.is_dir {
            return Err(FsError::IsADirectory);
        }
        if src_st.is_link() {
            // A second name elsewhere could point a relative target out
            // of the share: links get none.
            return Err(FsError::AccessDenied);
        }
        let mut result = target.clone();
        *result.components.last_mut().expect("non-root") = spelling.to_owned();
        result.exists = true;
        result.is_dir = false;
        let pre = names::stamp(dst.as_fd());
        if target.exists {
            let dst_leaf = to_cstring(target.name())?;
            let dst_st = stat::stat_at(dst.as_fd(), Some(&dst_leaf), false)?;
            if (dst_st.dev, dst_st.ino) == (src_st.dev, src_st.ino) {
                return Ok(target);
            }
            if !replace {
                return Err(FsError::Exists);
            }
            if dst_st.is_dir {
                return Err(FsError::AccessDenied);
            }
            // A copy that carries the source's id shares its sidecar.
            let doomed = self
                .spilled_of(dst.as_fd(), &dst_leaf, &dst_st)
                .filter(|u| Some(*u) != uid::stored_at(src.as_fd(), &src_leaf));
            nix::unistd::unlinkat(Some(std::os::fd::AsRawFd::as_raw_fd(&dst)), dst_leaf.as_c_str(), UnlinkatFlags::NoRemoveDir)?;
            self.drop_spilled(doomed);
        }
        let r = nix::unistd::linkat(
            Some(std::os::fd::AsRawFd::as_raw_fd(&src)),
            src_leaf.as_c_str(),
            Some(std::os::fd::AsRawFd::as_raw_fd(&dst)),
            to_cstring(spelling)?.as_c_str(),
            nix::fcntl::AtFlags::empty(),
        );
        self.names.changed(dst.as_fd(), pre, Some(spelling), None);
        match r {
            Err(nix::errno::Errno::EEXIST) => Err(FsError::Exists),
            r => {
                r?;
                Ok(result)
            }
        }
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

/// `st`, of `rel`'s leaf, unless it is a symlink where `rel` was not
/// resolved to one (swapped in since): [`FsError::SymlinkRefused`].
fn expect_kind(rel: &Resolved, st: Stat) -> Result<Stat, FsError> {
    if st.is_link() && !rel.is_link {
        return Err(FsError::SymlinkRefused);
    }
    Ok(st)
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

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::time::Instant;

    /// A share on a fresh temporary directory (the other `fs` tests use it too).
    pub(super) fn share() -> (tempfile::TempDir, Share) {
        let tmp = tempfile::tempdir().unwrap();
        let share = Share::new("t", tmp.path()).unwrap();
        (tmp, share)
    }

    fn res(s: &Share, p: &str) -> Result<Resolved, FsError> {
        s.resolve(&SmbPath::parse(p).unwrap())
    }

    /// A path below a renamed directory follows it; the directory itself
    /// and paths elsewhere do not.
    #[test]
    fn paths_below_a_renamed_directory_move() {
        let (tmp, s) = share();
        fs::create_dir_all(tmp.path().join("d/e")).unwrap();
        fs::create_dir_all(tmp.path().join("dd")).unwrap();
        fs::create_dir_all(tmp.path().join("n")).unwrap();
        let (from, to) = (res(&s, "d").unwrap(), res(&s, "n").unwrap());
        let moved = res(&s, "d\\e").unwrap().moved(&from, &to).unwrap();
        assert_eq!(moved.smb_path(), "n\\e");
        assert!(moved.is_dir());
        assert_eq!(from.moved(&from, &to), None);
        assert_eq!(res(&s, "dd").unwrap().moved(&from, &to), None);
        assert_eq!(Resolved::root().moved(&from, &to), None);
    }

    fn names(h: &Handle) -> Vec<String> {
        h.list_dir().unwrap().into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn case_insensitive_resolve() {
        let (tmp, s) = share();
        fs::create_dir_all(tmp.path().join("Docs/Sub")).unwrap();
        fs::write(tmp.path().join("Docs/Sub/ReadMe.TXT"), b"x").unwrap();
        let r = res(&s, "docs\\SUB\\readme.txt").unwrap();
        assert!(r.exists() && !r.is_dir());
        assert_eq!(r.components(), ["Docs", "Sub", "ReadMe.TXT"]);
        assert_eq!(r.smb_path(), "Docs\\Sub\\ReadMe.TXT");
        // Missing leaf keeps the client's spelling; missing parent is PathNotFound.
        let r = res(&s, "DOCS\\New File.txt").unwrap();
        assert!(!r.exists());
        assert_eq!(r.components(), ["Docs", "New File.txt"]);
        assert!(matches!(res(&s, "nope\\x"), Err(FsError::PathNotFound)));
        assert!(matches!(res(&s, "docs\\nope\\x"), Err(FsError::PathNotFound)));
        // A file used as a directory is PathNotFound too.
        assert!(matches!(res(&s, "docs\\sub\\readme.txt\\x"), Err(FsError::PathNotFound)));
        // A file named with a trailing separator is NameInvalid; a directory is fine.
        assert!(matches!(res(&s, "docs\\sub\\readme.txt\\"), Err(FsError::NameInvalid)));
        assert!(res(&s, "docs\\sub\\").unwrap().is_dir());
        assert!(res(&s, "").unwrap().is_root());
        // Exact match wins over a case-insensitive one.
        fs::write(tmp.path().join("Docs/sub"), b"file").unwrap();
        assert_eq!(res(&s, "docs\\sub").unwrap().components(), ["Docs", "sub"]);
        assert_eq!(res(&s, "docs\\Sub").unwrap().components(), ["Docs", "Sub"]);
        // Unicode folding.
        fs::write(tmp.path().join("Ünïcode.txt"), b"").unwrap();
        assert_eq!(res(&s, "üNÏCODE.TXT").unwrap().name(), "Ünïcode.txt");
        // Case-sensitive shares only match exactly.
        let mut cs = Share::new("cs", tmp.path()).unwrap();
        cs.set_case_sensitive(true);
        assert!(!res(&cs, "docs").unwrap().exists());
        assert!(res(&cs, "Docs").unwrap().exists());
    }

    #[test]
    fn short_names_resolve() {
        let (tmp, s) = share();
        fs::write(tmp.path().join("A long file name.text"), b"").unwrap();
        let short = short_name("A long file name.text");
        let r = res(&s, &short).unwrap();
        assert_eq!(r.name(), "A long file name.text");
        assert_eq!(res(&s, &short.to_lowercase()).unwrap().name(), "A long file name.text");
    }

    #[test]
    fn sparse_mark_ranges_and_holes() {
        let (_tmp, s) = share();
        let r = res(&s, "sparse.bin").unwrap();
        let h = s.create_file(&r, 0o644).unwrap();
        const MIB: u64 = 1 << 20;
        h.write_at(&[7u8; 4096], 4 * MIB).unwrap();
        // Not marked: the attribute says so, and keeps other attributes.
        h.set_attributes(attr::HIDDEN).unwrap();
        assert_eq!(h.stat().unwrap().attributes & attr::SPARSE_FILE, 0);
        if !s.supports_xattrs() {
            assert!(matches!(h.set_sparse(true), Err(FsError::NotSupported)));
            return;
        }
        h.set_sparse(true).unwrap();
        let a = h.stat().unwrap().attributes;
        assert_eq!(a & (attr::SPARSE_FILE | attr::HIDDEN), attr::SPARSE_FILE | attr::HIDDEN);
        // Setting basic attributes leaves the sparse mark alone.
        h.set_attributes(attr::ARCHIVE).unwrap();
        assert_ne!(h.stat().unwrap().attributes & attr::SPARSE_FILE, 0);
        // The data range is found, clipped to the question and to EOF.
        let (ranges, more) = h.allocated_ranges(0, 8 * MIB, 16).unwrap();
        assert!(!more);
        assert_eq!(ranges.len(), 1, "{ranges:?}");
        let (off, len) = ranges[0];
        assert!(off <= 4 * MIB && off + len == 4 * MIB + 4096, "{ranges:?}");
        assert_eq!(h.allocated_ranges(0, MIB, 16).unwrap().0, vec![]);
        assert_eq!(h.allocated_ranges(4 * MIB + 4096, MIB, 16).unwrap().0, vec![]);
        // No room: reported as more.
        assert_eq!(h.allocated_ranges(0, 8 * MIB, 0).unwrap(), (vec![], true));
        // A punched hole reads as zeros, and the size stays.
        h.zero_range(4 * MIB, 4 * MIB + 4096).unwrap();
        let mut buf = [1u8; 16];
        assert_eq!(h.read_at(&mut buf, 4 * MIB).unwrap(), 16);
        assert_eq!(buf, [0u8; 16]);
        assert_eq!(h.stat().unwrap().size, 4 * MIB + 4096);
        // Zeroing past EOF does not grow the file.
        h.zero_range(4 * MIB, 10 * MIB).unwrap();
        assert_eq!(h.stat().unwrap().size, 4 * MIB + 4096);
        h.set_sparse(false).unwrap();
        assert_eq!(h.stat().unwrap().attributes & attr::SPARSE_FILE, 0);
        // Not sparse: zeros are written (no hole), and the whole span
        // counts as allocated.
        h.write_at(&[9u8; 16], 0).unwrap();
        h.zero_range(0, 16).unwrap();
        assert_eq!(h.read_at(&mut buf, 0).unwrap(), 16);
        assert_eq!(buf, [0u8; 16]);
        assert_eq!(h.allocated_ranges(0, 8 * MIB, 16).unwrap(), (vec![(0, 4 * MIB + 4096)], false));
        assert_eq!(h.allocated_ranges(0, 8 * MIB, 0).unwrap(), (vec![], true));
    }

    #[test]
    fn create_read_write_unlink() {
        let (tmp, s) = share();
        let r = res(&s, "File.bin").unwrap();
        let h = s.create_file(&r, 0o644).unwrap();
        assert!(matches!(s.create_file(&r, 0o644), Err(FsError::Exists)));
        assert_eq!(h.write_at(b"hello world", 0).unwrap(), 11);
        assert_eq!(h.write_at(b"!", 20).unwrap(), 1);
        let mut buf = [0u8; 64];
        assert_eq!(h.read_at(&mut buf, 0).unwrap(), 21);
        assert_eq!(&buf[..11], b"hello world");
        assert_eq!(h.read_at(&mut buf, 100).unwrap(), 0);
        h.set_len(5).unwrap();
        h.allocate(1 << 20).unwrap();
        h.sync().unwrap();
        let st = h.stat().unwrap();
        assert_eq!(st.size, 5);
        assert!(st.blocks_bytes >= 1 << 20, "fallocate KEEP_SIZE: {st:?}");
        assert_eq!(st.attributes, attr::ARCHIVE);
        assert_ne!(st.file_id(), 0);
        drop(h);
        let r = res(&s, "file.BIN").unwrap();
        assert!(r.exists());
        assert_eq!(s.stat(&r).unwrap().size, 5);
        let ro = s.open(&r, false).unwrap();
        assert!(ro.write_at(b"x", 0).is_err());
        assert!(matches!(s.rmdir(&r), Err(FsError::NotADirectory)));
        s.unlink(&r).unwrap();
        assert!(!tmp.path().join("File.bin").exists());
        assert!(matches!(s.unlink(&r), Err(FsError::NotFound)));
        assert!(matches!(s.open(&r, false), Err(FsError::NotFound)));
        assert!(matches!(res(&s, "x\\y"), Err(FsError::PathNotFound)));
    }

    #[test]
    fn directories() {
        let (tmp, s) = share();
        let d = res(&s, "Dir").unwrap();
        let h = s.create_dir(&d, 0o755).unwrap();
        assert!(h.is_dir());
        assert_eq!(h.stat().unwrap().attributes, attr::DIRECTORY);
        assert!(matches!(h.read_at(&mut [0u8; 4], 0), Err(FsError::IsADirectory)));
        assert!(matches!(s.create_dir(&d, 0o755), Err(FsError::Exists)));
        let d = res(&s, "dir").unwrap();
        assert!(d.is_dir());
        assert!(matches!(s.create_dir(&d, 0o755), Err(FsError::Exists)));
        let f = res(&s, "dir\\f").unwrap();
        s.create_file(&f, 0o644).unwrap();
        assert!(matches!(s.rmdir(&d), Err(FsError::NotEmpty)));
        assert_eq!(FsError::NotEmpty.status(), protocol::NtStatus::DIRECTORY_NOT_EMPTY);
        assert!(matches!(s.unlink(&d), Err(FsError::IsADirectory)));
        assert_eq!(names(&s.open(&d, true).unwrap()), ["f"]);
        s.unlink(&res(&s, "DIR\\F").unwrap()).unwrap();
        s.rmdir(&d).unwrap();
        assert!(!tmp.path().join("Dir").exists());
        assert!(matches!(s.rmdir(&Resolved::root()), Err(FsError::AccessDenied)));
        assert!(matches!(s.unlink(&Resolved::root()), Err(FsError::AccessDenied)));
        assert!(s.open(&Resolved::root(), false).unwrap().is_dir());
        assert!(s.stat(&Resolved::root()).unwrap().is_dir);
    }

    #[test]
    fn rename_rules() {
        let (tmp, s) = share();
        s.create_file(&res(&s, "a.txt").unwrap(), 0o644).unwrap().write_at(b"A", 0).unwrap();
        s.create_file(&res(&s, "b.txt").unwrap(), 0o644).unwrap().write_at(b"B", 0).unwrap();
        s.create_dir(&res(&s, "d").unwrap(), 0o755).unwrap();
        let p = |x: &str| SmbPath::parse(x).unwrap();
        // No replace: collision, also case-insensitively.
        let a = res(&s, "a.txt").unwrap();
        assert!(matches!(s.rename(&a, &p("B.TXT"), false), Err(FsError::Exists)));
        // A directory target is never replaced.
        assert!(matches!(s.rename(&a, &p("D"), true), Err(FsError::AccessDenied)));
        // Case-only rename.
        let a2 = s.rename(&a, &p("A.TXT"), false).unwrap();
        assert_eq!(a2.name(), "A.TXT");
        assert!(tmp.path().join("A.TXT").exists() && !tmp.path().join("a.txt").exists());
        // Same name: no-op.
        assert_eq!(s.rename(&a2, &p("A.TXT"), false).unwrap().name(), "A.TXT");
        // Replace: the target takes the client's spelling.
        let moved = s.rename(&a2, &p("b.TXT"), true).unwrap();
        assert_eq!(moved.name(), "b.TXT");
        assert_eq!(fs::read(tmp.path().join("b.TXT")).unwrap(), b"A");
        assert!(!tmp.path().join("b.txt").exists() && !tmp.path().join("A.TXT").exists());
        // Into a subdirectory, and a directory rename.
        let moved = s.rename(&moved, &p("D\\c.txt"), false).unwrap();
        assert_eq!(moved.components(), ["d", "c.txt"]);
        let d = s.rename(&res(&s, "d").unwrap(), &p("E"), false).unwrap();
        assert!(d.is_dir());
        assert!(tmp.path().join("E/c.txt").exists());
        // Missing source, missing target parent, root.
        assert!(matches!(s.rename(&res(&s, "zz").unwrap(), &p("y"), false), Err(FsError::NotFound)));
        let c = res(&s, "e\\c.txt").unwrap();
        assert!(matches!(s.rename(&c, &p("nope\\c.txt"), false), Err(FsError::PathNotFound)));
        assert!(matches!(s.rename(&Resolved::root(), &p("x"), false), Err(FsError::AccessDenied)));
        assert!(matches!(s.rename(&c, &p(""), false), Err(FsError::AccessDenied)));
        // A directory into itself.
        let e = res(&s, "e").unwrap();
        assert!(matches!(s.rename(&e, &p("e\\inner"), false), Err(FsError::InvalidParameter)));
    }

    #[test]
    fn times_round_trip() {
        let (_tmp, s) = share();
        let h = s.create_file(&res(&s, "t").unwrap(), 0o644).unwrap();
        let (c, a, w) = (
            unix_to_filetime(1_000_000_000, 100),
            unix_to_filetime(1_100_000_000, 12_300),
            unix_to_filetime(1_200_000_000, 0),
        );
        h.set_times(SetTimes { creation: Some(c), last_access: Some(a), last_write: Some(w), change: None }).unwrap();
        let st = h.stat().unwrap();
        assert_eq!((st.atime, st.mtime, st.ctime), (a, w, w));
        if s.supports_xattrs() {
            assert_eq!(st.btime, c);
        }
        // None leaves times alone.
        let w2 = unix_to_filetime(1_300_000_000, 0);
        h.set_times(SetTimes { last_write: Some(w2), ..SetTimes::default() }).unwrap();
        let st2 = s.stat(&res(&s, "T").unwrap()).unwrap();
        assert_eq!((st2.atime, st2.mtime, st2.btime), (a, w2, st.btime));
        // Directories too.
        let d = s.create_dir(&res(&s, "d").unwrap(), 0o755).unwrap();
        d.set_times(SetTimes { last_write: Some(w), ..SetTimes::default() }).unwrap();
        assert_eq!(d.stat().unwrap().mtime, w);
    }

    #[test]
    fn attributes_round_trip() {
        let (_tmp, s) = share();
        let f = res(&s, "f").unwrap();
        let h = s.create_file(&f, 0o644).unwrap();
        h.set_attributes(attr::HIDDEN | attr::READONLY | attr::ARCHIVE).unwrap();
        let want = if s.supports_xattrs() {
            attr::HIDDEN | attr::READONLY | attr::ARCHIVE
        } else {
            attr::READONLY | attr::ARCHIVE
        };
        assert_eq!(h.stat().unwrap().attributes, want);
        assert_eq!(s.stat(&f).unwrap().attributes, want);
        h.set_attributes(0).unwrap();
        let want = if s.supports_xattrs() { attr::NORMAL } else { attr::ARCHIVE };
        assert_eq!(h.stat().unwrap().attributes, want);
        h.set_attributes(attr::NORMAL).unwrap();
        assert_eq!(h.stat().unwrap().attributes, want);
        assert!(matches!(h.set_attributes(attr::DIRECTORY), Err(FsError::InvalidParameter)));
        let d = s.create_dir(&res(&s, "d").unwrap(), 0o755).unwrap();
        d.set_attributes(attr::HIDDEN).unwrap();
        let want = if s.supports_xattrs() { attr::HIDDEN | attr::DIRECTORY } else { attr::DIRECTORY };
        assert_eq!(d.stat().unwrap().attributes, want);
        assert!(matches!(d.set_attributes(attr::TEMPORARY), Err(FsError::InvalidParameter)));
        // Listings see the stored attributes too.
        let root = s.open(&Resolved::root(), false).unwrap();
        let list = root.list_dir().unwrap();
        assert_eq!(list[0].name, "d");
        assert_eq!(list[0].stat.attributes, want);
    }

    #[test]
    fn special_files_are_hidden_and_refused() {
        let (tmp, s) = share();
        nix::unistd::mkfifo(&tmp.path().join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        std::os::unix::fs::symlink("/etc", tmp.path().join("link")).unwrap();
        fs::write(tmp.path().join("plain"), b"").unwrap();
        // Names a client could not send back are not listed either.
        fs::write(tmp.path().join("back\\slash"), b"").unwrap();
        fs::write(tmp.path().join("co:lon"), b"").unwrap();
        fs::write(tmp.path().join("star*"), b"").unwrap();
        assert!(matches!(res(&s, "fifo"), Err(FsError::AccessDenied)));
        assert!(matches!(res(&s, "FIFO"), Err(FsError::AccessDenied)));
        assert!(matches!(res(&s, "fifo\\x"), Err(FsError::PathNotFound)));
        assert!(matches!(res(&s, "link"), Err(FsError::SymlinkRefused)));
        // A stale Resolved to a name that became a FIFO does not block.
        let r = res(&s, "plain").unwrap();
        fs::remove_file(tmp.path().join("plain")).unwrap();
        nix::unistd::mkfifo(&tmp.path().join("plain"), Mode::from_bits_truncate(0o644)).unwrap();
        assert!(matches!(s.open(&r, false), Err(FsError::AccessDenied)));
        assert!(matches!(s.open(&r, true), Err(FsError::AccessDenied)));
        let root = s.open(&Resolved::root(), false).unwrap();
        assert!(names(&root).is_empty());
        assert!(!root.dir_is_empty().unwrap(), "hidden entries still count");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 6);
        let d = s.create_dir(&res(&s, "empty").unwrap(), 0o755).unwrap();
        assert!(d.dir_is_empty().unwrap());
        std::os::unix::fs::symlink("/", tmp.path().join("empty/l")).unwrap();
        assert!(!d.dir_is_empty().unwrap());
        assert!(d.list_dir().unwrap().is_empty());
        // stat_child: fresh, confined to one component; a symlink is
        // reported as itself (a reparse point of no size), never followed.
        let l = d.stat_child("l").unwrap();
        assert!(l.is_link() && !l.is_dir && l.size == 0, "{l:?}");
        assert_ne!(l.attributes & attr::REPARSE_POINT, 0);
        assert!(matches!(d.stat_child("missing"), Err(FsError::NotFound)));
        assert!(matches!(d.stat_child(".."), Err(FsError::NameInvalid)));
        assert!(matches!(d.stat_child("a/b"), Err(FsError::NameInvalid)));
        s.create_file(&res(&s, "empty\\f").unwrap(), 0o644).unwrap().write_at(b"abc", 0).unwrap();
        assert_eq!(d.stat_child("f").unwrap().size, 3);
        assert!(matches!(root.stat_child("fifo"), Err(FsError::AccessDenied)));
        assert!(matches!(
            s.open(&res(&s, "empty\\f").unwrap(), false).unwrap().stat_child("x"),
            Err(FsError::NotADirectory)
        ));
    }

    #[test]
    fn list_ten_thousand() {
        let (tmp, s) = share();
        for i in 0..10_000 {
            fs::write(tmp.path().join(format!("file{i:05}.dat")), b"").unwrap();
        }
        fs::create_dir(tmp.path().join("zdir")).unwrap();
        let h = s.open(&Resolved::root(), false).unwrap();
        let t = Instant::now();
        let list = h.list_dir().unwrap();
        let took = t.elapsed();
        eprintln!("listed 10,001 entries in {took:?}");
        assert_eq!(list.len(), 10_001);
        assert_eq!(list[0].name, "file00000.dat");
        assert_eq!(list[9_999].name, "file09999.dat");
        assert!(list[10_000].stat.is_dir);
        assert!(list.windows(2).all(|w| w[0].name < w[1].name));
        // Generous bound: an unoptimised build on a busy machine.
        assert!(took.as_secs() < 5, "listing took {took:?}");
        // A second listing on the same handle starts from the beginning.
        assert_eq!(h.list_dir().unwrap().len(), 10_001);
        // Case-insensitive lookup in a big directory.
        assert_eq!(res(&s, "FILE09999.DAT").unwrap().name(), "file09999.dat");
    }

    #[test]
    fn big_directory_index_follows_changes() {
        let (tmp, s) = share();
        let n = names::MIN_INDEXED + 10;
        for i in 0..n {
            fs::write(tmp.path().join(format!("f{i}")), b"").unwrap();
        }
        assert_eq!(res(&s, "F7").unwrap().name(), "f7");
        assert_eq!(s.names.indexed(), 1);
        // Our own creates, deletes and renames keep lookups right.
        for i in 0..50 {
            let r = res(&s, &format!("New{i}")).unwrap();
            assert!(!r.exists());
            s.create_file(&r, 0o644).unwrap();
            assert_eq!(res(&s, &format!("NEW{i}")).unwrap().name(), format!("New{i}"));
        }
        assert_eq!(s.names.indexed(), 1, "creates update the index in place");
        s.unlink(&res(&s, "NEW3").unwrap()).unwrap();
        assert!(!res(&s, "new3").unwrap().exists());
        s.create_dir(&res(&s, "SubDir").unwrap(), 0o755).unwrap();
        assert!(res(&s, "subdir").unwrap().is_dir());
        s.rmdir(&res(&s, "SUBDIR").unwrap()).unwrap();
        assert!(!res(&s, "subdir").unwrap().exists());
        let moved = s.rename(&res(&s, "new4").unwrap(), &SmbPath::parse("Renamed").unwrap(), false).unwrap();
        assert_eq!(moved.name(), "Renamed");
        assert_eq!(res(&s, "RENAMED").unwrap().name(), "Renamed");
        assert!(!res(&s, "NEW4").unwrap().exists());
        // Two names with the same fold: the bytewise smallest wins, and
        // removing it falls back to the other.
        fs::write(tmp.path().join("DUP"), b"").unwrap();
        fs::write(tmp.path().join("dup"), b"").unwrap();
        assert_eq!(res(&s, "Dup").unwrap().name(), "DUP");
        s.unlink(&res(&s, "DUP").unwrap()).unwrap();
        assert_eq!(res(&s, "Dup").unwrap().name(), "dup");
        // Changes by another process are seen once the directory's stamp moves.
        fs::write(tmp.path().join("Outside"), b"").unwrap();
        let past = nix::sys::time::TimeSpec::new(1_000_000, 0);
        nix::sys::stat::utimensat(None, tmp.path(), &past, &past, nix::sys::stat::UtimensatFlags::FollowSymlink)
            .unwrap();
        assert_eq!(res(&s, "OUTSIDE").unwrap().name(), "Outside");
        fs::remove_file(tmp.path().join("Outside")).unwrap();
        assert!(!res(&s, "OUTSIDE").unwrap().exists());
    }

    #[test]
    fn share_and_handle_are_thread_safe() {
        fn check<T: Send + Sync>() {}
        check::<Share>();
        check::<Handle>();
        check::<Resolved>();
        check::<FsError>();
    }

    #[test]
    fn statvfs_and_identity() {
        let (tmp, s) = share();
        let v = s.statvfs().unwrap();
        assert!(v.block_size > 0 && v.total_blocks >= v.free_blocks && v.free_blocks >= v.avail_blocks);
        assert_eq!(s.name(), "t");
        assert_eq!(s.root_path(), tmp.path());
        assert_eq!(s.volume_serial(), Share::new("t", tmp.path()).unwrap().volume_serial());
        assert!(matches!(Share::new("x", &tmp.path().join("missing")), Err(FsError::PathNotFound)));
        fs::write(tmp.path().join("file"), b"").unwrap();
        assert!(matches!(Share::new("x", &tmp.path().join("file")), Err(FsError::PathNotFound)));
    }
}
