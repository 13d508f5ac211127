//! An open file or directory of a share.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::dir::{Dir, Type};
use nix::fcntl::{FallocateFlags, OFlag};
use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;

use super::error::io_err;
use super::path::check_component;
use super::stat::{self, attr, Stat, XATTR_ATTRIB, XATTR_BTIME};
use super::sys::{self, XattrTarget};
use super::FsError;

/// Times to set, as FILETIME; `None` leaves a time unchanged. The server
/// turns the wire's 0 into `None` and handles -1/-2 ("stop/resume updating")
/// itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetTimes {
    /// Creation time: stored in the `user.duet.btime` xattr (dropped silently
    /// when the file system has no user xattrs).
    pub creation: Option<u64>,
    /// Last access time.
    pub last_access: Option<u64>,
    /// Last write time.
    pub last_write: Option<u64>,
    /// Change time: Linux cannot set it, so it is ignored.
    pub change: Option<u64>,
}

/// One directory entry of [`Handle::list_dir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The on-disk name (valid UTF-8; other names are not listed).
    pub name: String,
    /// Its metadata.
    pub stat: Stat,
    /// For a symbolic link, its stored target: the caller, who knows where
    /// the directory is, leaves out the links that are not confined
    /// ([`super::link::Link::of`]).
    pub link: Option<Vec<u8>>,
}

/// An open regular file or directory, or a symbolic link opened as itself
/// (FILE_OPEN_REPARSE_POINT, [`super::link`]). Never a special file.
#[derive(Debug)]
pub struct Handle {
    fd: OwnedFd,
    is_dir: bool,
    xattrs: bool,
    /// For a handle on a symbolic link: `O_PATH` descriptors of the link,
    /// the newest on top. A file that FSCTL_SET_REPARSE_POINT made a link
    /// is a new inode, which the handle then follows (`relink`), and so is
    /// the empty file FSCTL_DELETE_REPARSE_POINT puts in a link's place
    /// (`unlinked`); `fd` keeps what it was opened on, for data I/O.
    link: sys::FdStack,
    /// The top of `link` is a symlink's.
    linked: std::sync::atomic::AtomicBool,
    /// For a handle on a named stream ([`super::stream`]): the xattr that
    /// holds it. Reads, writes and the size are then the stream's; the
    /// rest (times, attributes) is the file's. Behind a lock: a rename of
    /// the stream changes it under the open.
    stream: Option<std::sync::Mutex<CString>>,
    /// The share's sidecar area for streams too large for an xattr
    /// ([`super::spill`]); `None` on a handle made outside a share.
    spill: Option<std::sync::Arc<super::spill::Area>>,
    /// For a handle on a named stream kept in a sidecar file: that file,
    /// once found.
    sidecar: std::sync::Mutex<Option<std::sync::Arc<std::fs::File>>>,
    /// Its inode's registration with the directory watches while it lives
    /// ([`super::watch`]): what Duet does through it is Duet's own change.
    tracked: Option<super::watch::Tracked>,
    /// The share's fence, asked before every change through the handle
    /// ([`super::fence`]).
    fence: super::fence::FenceRef,
}

impl Handle {
    pub(crate) fn new(fd: OwnedFd, is_dir: bool, xattrs: bool) -> Handle {
        Handle {
            fd,
            is_dir,
            xattrs,
            stream: None,
            spill: None,
            sidecar: std::sync::Mutex::new(None),
            link: sys::FdStack::default(),
            linked: false.into(),
            tracked: None,
            fence: None,
        }
    }

    /// Gives the handle its share's sidecar area ([`super::spill`]).
    pub(super) fn set_spill(&mut self, area: std::sync::Arc<super::spill::Area>) {
        self.spill = Some(area);
    }

    /// The share's sidecar area, if the handle has one.
    pub(super) fn spill(&self) -> Option<&super::spill::Area> {
        self.spill.as_deref()
    }

    /// The sidecar file this stream handle found its stream in.
    pub(super) fn cached_sidecar(&self) -> Option<std::sync::Arc<std::fs::File>> {
        self.sidecar.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Remembers (or forgets) the sidecar file of this stream handle.
    pub(super) fn cache_sidecar(&self, f: Option<std::sync::Arc<std::fs::File>>) {
        *self.sidecar.lock().unwrap_or_else(|e| e.into_inner()) = f;
    }

    /// Fences the handle as its share is ([`super::fence`]).
    pub(super) fn set_fence(&mut self, fence: super::fence::FenceRef) {
        self.fence = fence;
    }

    /// [`FsError::Fenced`] when the handle's fence does not hold now: asked
    /// first by every call that changes something on disk.
    #[inline]
    pub(super) fn may_change(&self) -> Result<(), FsError> {
        super::fence::check(&self.fence)
    }

    /// A handle on the symlink whose `O_PATH | O_NOFOLLOW` descriptor is `fd`.
    pub(crate) fn new_link(fd: OwnedFd) -> Result<Handle, FsError> {
        let h = Handle::new(fd.try_clone().map_err(io_err)?, false, false);
        h.relink(fd)?;
        Ok(h)
    }

    /// Makes this a handle on the symlink `fd` (an `O_PATH` descriptor):
    /// what FSCTL_SET_REPARSE_POINT made of its file. At most
    /// [`sys::FdStack::MAX`] times per handle ([`FsError::Limitation`]).
    pub(crate) fn relink(&self, fd: OwnedFd) -> Result<(), FsError> {
        self.link.push(fd, true).map_err(|()| FsError::Limitation)?;
        self.linked.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Makes this handle, on a symlink, one on the empty file or directory
    /// `fd` (opened for reading) that replaced it: its metadata from then
    /// on, not its data (reads and writes go to the descriptor the handle
    /// was opened with, and fail).
    pub(crate) fn unlinked(&self, fd: OwnedFd) -> Result<(), FsError> {
        self.link.push(fd, false).map_err(|()| FsError::Limitation)?;
        self.linked.store(false, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// True for a handle on a symbolic link.
    pub fn is_link(&self) -> bool {
        self.linked.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The stored target of the symbolic link this handle is on.
    pub fn link_target(&self) -> Result<Vec<u8>, FsError> {
        if !self.is_link() {
            return Err(FsError::NotFound);
        }
        sys::readlinkat(self.cur(), c"").map_err(io_err)
    }

    /// The descriptor metadata is read from: the link's when on a link.
    fn cur(&self) -> BorrowedFd<'_> {
        self.link.top().map_or(self.fd.as_fd(), |(fd, _)| fd)
    }

    /// Registers the handle's inode with the directory watches.
    pub(super) fn set_tracked(&mut self, t: super::watch::Tracked) {
        self.tracked = Some(t);
    }

    /// Makes this a handle on the stream kept in `xattr` (a stream is a
    /// file, also when the file it belongs to is a directory).
    pub(super) fn set_stream(&mut self, xattr: Option<CString>) {
        if xattr.is_some() {
            self.is_dir = false;
        }
        self.stream = xattr.map(std::sync::Mutex::new);
        self.sidecar = std::sync::Mutex::new(None);
    }

    /// The xattr of the stream this handle is on, if it is on one.
    pub fn stream(&self) -> Option<CString> {
        self.stream.as_ref().map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Points this stream handle at the stream's new xattr (a rename).
    pub(super) fn restream(&self, xattr: CString) {
        if let Some(m) = &self.stream {
            *m.lock().unwrap_or_else(|e| e.into_inner()) = xattr;
        }
    }

    /// True for a handle on a named stream.
    pub fn is_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// A second handle on the same open file description (`dup`): same
    /// file, same access mode.
    pub fn try_clone(&self) -> Result<Handle, FsError> {
        if self.is_link() {
            let mut h = Handle::new_link(self.cur().try_clone_to_owned().map_err(io_err)?)?;
            h.set_fence(self.fence.clone());
            return Ok(h);
        }
        Ok(Handle {
            fd: self.fd.try_clone().map_err(io_err)?,
            is_dir: self.is_dir,
            xattrs: self.xattrs,
            stream: self.stream().map(std::sync::Mutex::new),
            spill: self.spill.clone(),
            sidecar: std::sync::Mutex::new(self.cached_sidecar()),
            link: sys::FdStack::default(),
            linked: false.into(),
            tracked: self.tracked.as_ref().map(super::watch::Tracked::again),
            fence: self.fence.clone(),
        })
    }

    /// The descriptor, for `sendfile` (a file region of a READ answer).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// True when the share's file system has user xattrs.
    pub(super) fn xattrs(&self) -> bool {
        self.xattrs && !self.is_link()
    }

    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }

    /// Metadata of the open object (it may have been renamed since).
    pub fn stat(&self) -> Result<Stat, FsError> {
        let st = sys::statx(self.cur(), c"", libc::AT_EMPTY_PATH).map_err(io_err)?;
        let mut stat = self.stat_from(&st);
        if let Some(x) = &self.stream() {
            // The file's times and attributes, the stream's size; an
            // AfpInfo is always its 60 bytes, also before its first write
            // makes it (it reads as an empty one, `super::afpinfo`).
            let afp = super::stream::stream_name(x.to_bytes()).is_some_and(super::afpinfo::is);
            stat.size = if afp { super::afpinfo::SIZE as u64 } else { self.stream_size(x)? };
            stat.blocks_bytes = stat.size;
            stat.is_dir = false;
            stat.attributes &= !attr::DIRECTORY;
            if stat.attributes == 0 {
                stat.attributes = attr::NORMAL;
            }
        }
        Ok(stat)
    }

    /// Metadata of the file itself, also through a stream's handle.
    pub fn base_stat(&self) -> Result<Stat, FsError> {
        let st = sys::statx(self.cur(), c"", libc::AT_EMPTY_PATH).map_err(io_err)?;
        Ok(self.stat_from(&st))
    }

    /// Metadata from a `statx` of this handle just made, with what the
    /// xattrs add.
    pub(super) fn stat_from(&self, st: &libc::statx) -> Stat {
        if self.is_link() {
            let mut stat = stat::from_statx(st, None);
            if self.link_target().is_ok_and(|t| t.ends_with(b"/")) {
                stat.attributes |= attr::DIRECTORY;
            }
            return stat;
        }
        let target = self.xattrs.then_some(XattrTarget::Fd(self.cur()));
        stat::from_statx(st, target)
    }

    /// `pread`: reads up to `buf.len()` bytes at `offset`; 0 at end of file.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, FsError> {
        self.check_file()?;
        if let Some(x) = &self.stream() {
            return self.stream_read(x, buf, offset);
        }
        loop {
            match nix::sys::uio::pread(self.fd.as_fd(), buf, offset_of(offset)?) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return Ok(r?),
            }
        }
    }

    /// Appends up to `len` bytes read at `offset` to `buf` (one `pread`,
    /// no zero-filling). Returns the number of bytes read.
    pub fn read_append(&self, buf: &mut bytes::BytesMut, len: usize, offset: u64) -> Result<usize, FsError> {
        self.check_file()?;
        if let Some(x) = &self.stream() {
            return self.stream_read_append(x, buf, len, offset);
        }
        Ok(super::sys::pread_append(self.fd.as_fd(), buf, len, offset_of(offset)?)?)
    }

    /// The file's size now (`fstat`: no extended attributes read).
    pub fn size(&self) -> Result<u64, FsError> {
        self.check_file()?;
        if let Some(x) = &self.stream() {
            return self.stream_size(x);
        }
        let st = nix::sys::stat::fstat(self.fd.as_raw_fd())?;
        Ok(st.st_size.max(0) as u64)
    }

    /// Brings the bytes `offset .. offset + len` into the page cache (no
    /// copy to user space; waits for the disk), so that sending them with
    /// `sendfile` later reads nothing from it. True when they were all
    /// there already.
    pub fn load(&self, offset: u64, len: usize) -> bool {
        self.check_file().is_ok() && self.stream.is_none() && sys::load(self.fd.as_fd(), offset, len)
    }

    /// `pwrite` of all of `buf` at `offset` (loops on short writes).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, FsError> {
        self.may_change()?;
        self.check_file()?;
        if let Some(x) = &self.stream() {
            return self.stream_write(x, buf, offset);
        }
        let mut done = 0;
        while done < buf.len() {
            match nix::sys::uio::pwrite(self.fd.as_fd(), &buf[done..], offset_of(offset + done as u64)?) {
                Ok(0) => return Err(FsError::NoSpace),
                Ok(n) => done += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }

    /// Moves `len` bytes of a WRITE's data from the socket `sock` into the
    /// file at `offset` with `splice` ([`super::splice`]), the fence asked
    /// before each write into the file. Not on a named stream (its data is
    /// in an xattr or a sidecar: the WRITE reads its data into memory).
    pub fn write_from_socket(
        &self,
        sock: BorrowedFd<'_>,
        offset: u64,
        len: usize,
        deadline: std::time::Instant,
    ) -> Result<super::splice::Moved, super::splice::Stopped> {
        let refused = |error| super::splice::Stopped { taken: 0, error };
        self.may_change().map_err(refused)?;
        self.check_file().map_err(refused)?;
        if self.stream.is_some() {
            return Err(refused(FsError::InvalidParameter));
        }
        offset_of(offset).map_err(refused)?;
        super::splice::socket_to_file(sock, self.fd.as_fd(), offset, len, deadline, &|| self.may_change())
    }

    /// Sets the end of file (`ftruncate`).
    pub fn set_len(&self, len: u64) -> Result<(), FsError> {
        self.may_change()?;
        self.check_file()?;
        if let Some(x) = &self.stream() {
            return self.stream_set_len(x, len);
        }
        Ok(nix::unistd::ftruncate(self.fd.as_fd(), offset_of(len)?)?)
    }

    /// Reserves `len` bytes without changing the size (`fallocate`
    /// KEEP_SIZE); a file system without fallocate is silently accepted.
    pub fn allocate(&self, len: u64) -> Result<(), FsError> {
        self.may_change()?;
        self.check_file()?;
        if len == 0 || self.stream.is_some() {
            return Ok(());
        }
        match nix::fcntl::fallocate(self.fd.as_raw_fd(), FallocateFlags::FALLOC_FL_KEEP_SIZE, 0, offset_of(len)?) {
            Ok(()) | Err(nix::errno::Errno::EOPNOTSUPP) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Marks the file sparse or not (FSCTL_SET_SPARSE, [MS-FSA]
    /// 2.1.5.9.32). The mark lives with the other attributes in the
    /// attribute xattr; Linux files hold holes either way. Without user
    /// xattrs there is nowhere to keep it: [`FsError::NotSupported`].
    pub fn set_sparse(&self, sparse: bool) -> Result<(), FsError> {
        self.may_change()?;
        self.check_file()?;
        if self.stream.is_some() {
            return Err(FsError::NotSupported);
        }
        let current = self.stat()?.attributes & attr::STORED & !attr::NORMAL;
        let new = if sparse { current | attr::SPARSE_FILE } else { current & !attr::SPARSE_FILE };
        if new == current {
            return Ok(());
        }
        if self.store_xattr(XATTR_ATTRIB, &new.to_le_bytes())? {
            Ok(())
        } else {
            Err(FsError::NotSupported)
        }
    }

    /// Zeroes `[offset, end)` without changing the size
    /// (FSCTL_SET_ZERO_DATA, [MS-FSA] 2.1.5.9.34): punches a hole in a
    /// sparse file, writes zeros into any other. The range is clipped to
    /// the end of file.
    pub fn zero_range(&self, offset: u64, end: u64) -> Result<(), FsError> {
        self.may_change()?;
        self.check_file()?;
        if self.stream.is_some() {
            return Err(FsError::NotSupported);
        }
        let st = self.stat()?;
        let end = end.min(st.size);
        if offset >= end {
            return Ok(());
        }
        let flags = if st.attributes & attr::SPARSE_FILE != 0 {
            FallocateFlags::FALLOC_FL_PUNCH_HOLE
        } else {
            FallocateFlags::FALLOC_FL_ZERO_RANGE
        };
        let len = offset_of(end - offset)?;
        match nix::fcntl::fallocate(
            self.fd.as_raw_fd(),
            flags | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            offset_of(offset)?,
            len,
        ) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EOPNOTSUPP) => {
                // No fallocate mode for it: write the zeros.
                let zeros = vec![0u8; (end - offset).min(1 << 20) as usize];
                let mut at = offset;
                while at < end {
                    let n = (end - at).min(zeros.len() as u64) as usize;
                    at += self.write_at(&zeros[..n], at)? as u64;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The allocated (data) ranges of the file within `[offset, offset +
    /// len)` and before the end of file, as (offset, length), from
    /// `SEEK_DATA`/`SEEK_HOLE`; at most `max` of them, and whether there
    /// were more ([MS-FSA] 2.1.5.9.21). A file not marked sparse counts as
    /// allocated throughout.
    pub fn allocated_ranges(&self, offset: u64, len: u64, max: usize) -> Result<(Vec<(u64, u64)>, bool), FsError> {
        use nix::unistd::{lseek, Whence};
        self.check_file()?;
        let st = self.stat()?;
        let end = offset.saturating_add(len).min(st.size);
        if st.attributes & attr::SPARSE_FILE == 0 {
            return Ok(match (offset < end, max) {
                (false, _) => (vec![], false),
                (true, 0) => (vec![], true),
                (true, _) => (vec![(offset, end - offset)], false),
            });
        }
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let data = match lseek(self.fd.as_raw_fd(), offset_of(pos)?, Whence::SeekData) {
                Ok(d) => d as u64,
                Err(nix::errno::Errno::ENXIO) => break,
                Err(e) => return Err(e.into()),
            };
            if data >= end {
                break;
            }
            let hole = (lseek(self.fd.as_raw_fd(), offset_of(data)?, Whence::SeekHole)? as u64).min(end);
            if out.len() == max {
                return Ok((out, true));
            }
            out.push((data, hole - data));
            pos = hole;
        }
        Ok((out, false))
    }

    /// Flushes file data to stable storage: `fdatasync` for a file's data,
    /// `fsync` for a directory and for a named stream (whose data is an
    /// xattr, metadata that `fdatasync` need not write).
    pub fn sync(&self) -> Result<(), FsError> {
        self.sync_with(self.full_sync(false))
    }

    /// A full sync, what macOS's `F_FULLFSYNC` asks for (a Time Machine
    /// share's FLUSH): `fsync`, the file's data and all its metadata
    /// (size, times, xattrs). On Linux `fsync` also flushes the device's
    /// write cache where the file system uses barriers, the part of
    /// `F_FULLFSYNC` that macOS's plain `fsync` leaves out.
    pub fn sync_full(&self) -> Result<(), FsError> {
        self.sync_with(self.full_sync(true))
    }

    /// Whether a sync of this handle is an `fsync` rather than an
    /// `fdatasync`.
    pub(crate) fn full_sync(&self, full: bool) -> bool {
        full || self.is_dir || self.stream.is_some()
    }

    fn sync_with(&self, full: bool) -> Result<(), FsError> {
        if self.is_link() {
            return Ok(());
        }
        if let Some(f) = self.stream().and_then(|x| self.stream_sidecar(&x).ok().flatten()) {
            f.sync_all().map_err(io_err)?;
        }
        if full {
            Ok(nix::unistd::fsync(self.fd.as_raw_fd())?)
        } else {
            Ok(nix::unistd::fdatasync(self.fd.as_raw_fd())?)
        }
    }

    /// Sets times (see [`SetTimes`]).
    pub fn set_times(&self, times: SetTimes) -> Result<(), FsError> {
        self.may_change()?;
        if self.is_link() {
            // Nothing to keep them in on a symlink: accepted, as Samba does.
            return Ok(());
        }
        if times.last_access.is_some() || times.last_write.is_some() {
            let conv =
                |t: Option<u64>| t.map_or(TimeSpec::UTIME_OMIT, |ft| TimeSpec::from(stat::filetime_to_timespec(ft)));
            nix::sys::stat::futimens(self.fd.as_raw_fd(), &conv(times.last_access), &conv(times.last_write))?;
        }
        if let Some(ft) = times.creation {
            self.store_xattr(XATTR_BTIME, &ft.to_le_bytes())?;
        }
        Ok(())
    }

    /// Stores DOS attributes (the server passes what the client asked for;
    /// 0 means "no change" on the wire and must not reach here). NORMAL and
    /// DIRECTORY are not stored; DIRECTORY on a file, or TEMPORARY on a
    /// directory, is [`FsError::InvalidParameter`] as on Windows. Without
    /// user xattrs only READONLY is kept, as the absence of the write bits.
    pub fn set_attributes(&self, attrs: u32) -> Result<(), FsError> {
        self.may_change()?;
        if self.is_link() {
            return Ok(());
        }
        if (!self.is_dir && attrs & attr::DIRECTORY != 0) || (self.is_dir && attrs & attr::TEMPORARY != 0) {
            return Err(FsError::InvalidParameter);
        }
        // SPARSE_FILE is not the client's to set here; it stays as it is.
        let sparse = if self.xattrs { self.stat()?.attributes & attr::SPARSE_FILE } else { 0 };
        let stored = (attrs & attr::SETTABLE) | sparse;
        if self.xattrs && self.store_xattr(XATTR_ATTRIB, &stored.to_le_bytes())? {
            return Ok(());
        }
        let st = self.stat()?;
        let mode = st.mode & 0o7777;
        let new = if stored & attr::READONLY != 0 { mode & !0o222 } else { mode | 0o200 };
        if new != mode {
            nix::sys::stat::fchmod(self.fd.as_raw_fd(), Mode::from_bits_truncate(new as libc::mode_t))?;
        }
        Ok(())
    }

    /// Sets the permission bits (`fchmod`): the low 0o7777 of `mode`; type
    /// bits are ignored. For SET_INFO of a security descriptor, which Duet
    /// maps onto the mode.
    pub fn set_mode(&self, mode: u32) -> Result<(), FsError> {
        self.may_change()?;
        if self.is_link() {
            return Ok(());
        }
        Ok(nix::sys::stat::fchmod(self.fd.as_raw_fd(), Mode::from_bits_truncate((mode & 0o7777) as libc::mode_t))?)
    }

    /// Writes a duet xattr; `Ok(false)` when the file system has none.
    fn store_xattr(&self, name: &std::ffi::CStr, value: &[u8]) -> Result<bool, FsError> {
        if !self.xattrs() {
            return Ok(false);
        }
        match sys::set_xattr(self.fd.as_fd(), name, value) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP)) => Ok(false),
            Err(e) => Err(io_err(e)),
        }
    }

    /// All entries of a directory except `.` and `..`, sorted by on-disk name
    /// (bytewise), so a listing can be resumed by index. Symlinks, special
    /// files, names that are not UTF-8 and names a client could not send
    /// back (with `\`, `:`, wildcards or control characters) are left out,
    /// as are entries that vanish while listing. Uses `statx` relative to
    /// the directory fd.
    pub fn list_dir(&self) -> Result<Vec<DirEntry>, FsError> {
        let mut all = self.list_all()?;
        all.retain(|e| e.link.is_none());
        Ok(all)
    }

    /// [`Handle::list_dir`] of this directory, found at `at` (its
    /// share-relative components), with the symbolic links in it that are
    /// confined to the share from there ([`super::link`]; `root` as
    /// [`super::Share::root_components`]), as reparse points; the others
    /// stay out.
    pub fn list_dir_in(&self, at: &[String], root: Option<&[String]>) -> Result<Vec<DirEntry>, FsError> {
        let mut all = self.list_all()?;
        all.retain(|e| e.link.as_ref().is_none_or(|t| super::link::Link::of_in(at, t, root).is_some()));
        Ok(all)
    }

    /// Every entry [`Handle::list_dir`] would list, symlinks included.
    fn list_all(&self) -> Result<Vec<DirEntry>, FsError> {
        if !self.is_dir {
            return Err(FsError::NotADirectory);
        }
        // A fresh open file description, so listings don't share a position.
        let mut dir = Dir::openat(
            Some(self.fd.as_raw_fd()),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let names: Vec<CString> = dir
            .iter()
            .filter_map(Result::ok)
            .filter(|e| {
                !matches!(e.file_type(), Some(Type::Fifo | Type::Socket | Type::CharacterDevice | Type::BlockDevice))
            })
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        // Entries are stat'ed relative to the handle's own fd: same directory.
        let dfd = self.fd.as_fd();
        let mut out = Vec::with_capacity(names.len());
        for cname in names {
            let Ok(name) = String::from_utf8(cname.as_bytes().to_vec()) else { continue };
            if check_component(&name).is_err() {
                continue;
            }
            match stat::stat_at_link(dfd, Some(&cname), self.xattrs) {
                Ok((stat, link)) => out.push(DirEntry { name, stat, link }),
                Err(FsError::NotFound | FsError::SymlinkRefused | FsError::AccessDenied) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(out)
    }

    /// Fresh metadata of the entry `name` (one on-disk component, as
    /// returned by [`Handle::list_dir`]) of this directory, symlinks not
    /// followed (a symlink is reported as a reparse point, as
    /// [`Handle::list_dir_in`] lists the confined ones):
    /// [`FsError::NotFound`] once it is gone. QUERY_DIRECTORY
    /// continues a cached listing with this, so entries deleted or changed
    /// since the first call are skipped or shown as they are now
    /// (smbtorture smb2.dir.fixed).
    pub fn stat_child(&self, name: &str) -> Result<Stat, FsError> {
        if !self.is_dir {
            return Err(FsError::NotADirectory);
        }
        check_component(name)?;
        let cname = CString::new(name).map_err(|_| FsError::NameInvalid)?;
        stat::stat_at(self.fd.as_fd(), Some(&cname), self.xattrs)
    }

    /// True when the directory has no entries at all, counting the ones
    /// [`Handle::list_dir`] hides (symlinks, special files, odd names): use
    /// this, not an empty listing, to predict whether `rmdir` will succeed
    /// (FileDispositionInformation). Stops at the first entry.
    pub fn dir_is_empty(&self) -> Result<bool, FsError> {
        if !self.is_dir {
            return Err(FsError::NotADirectory);
        }
        let mut dir = Dir::openat(
            Some(self.fd.as_raw_fd()),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        for entry in dir.iter() {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn check_file(&self) -> Result<(), FsError> {
        if self.is_link() {
            // A symlink holds no data Duet could read or write.
            return Err(FsError::AccessDenied);
        }
        if self.is_dir {
            Err(FsError::IsADirectory)
        } else {
            Ok(())
        }
    }
}

impl AsFd for Handle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn offset_of(v: u64) -> Result<libc::off_t, FsError> {
    libc::off_t::try_from(v).map_err(|_| FsError::InvalidParameter)
}
