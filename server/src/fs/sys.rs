//! The raw system calls that `nix` does not wrap: `openat2(2)`, `statx(2)`,
//! extended attributes, bringing a file's pages into the page cache
//! (`cachestat(2)`, `MADV_POPULATE_READ`), and pipes with `splice(2)`. All of
//! `fs`'s `unsafe` lives in this file.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The resolve flags used for every open: stay beneath the directory fd, and
/// refuse every symlink and magic link on the way, including the last one.
const RESOLVE: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;

/// `openat2(dir, path, flags | O_CLOEXEC, mode)` with [`RESOLVE`]. `path` is
/// relative to `dir` and can never resolve outside it: a `..` that would climb
/// out fails with `EXDEV`, any symlink with `ELOOP`.
pub(crate) fn openat2_beneath(dir: BorrowedFd<'_>, path: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_CLOEXEC;
    // The kernel rejects a mode without O_CREAT/O_TMPFILE.
    let mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 { mode as u64 } else { 0 };
    // SAFETY: open_how is plain integers; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.mode = mode;
    how.resolve = RESOLVE;
    let mut tries = 0;
    loop {
        // SAFETY: `path` is NUL-terminated and outlives the call; `how` is a
        // valid open_how and its exact size is passed; the dir fd is borrowed
        // and so open for the duration of the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            // SAFETY: the kernel returned a new fd that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as i32) });
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // EAGAIN: a concurrent rename made the kernel unsure; retry a bit.
            Some(libc::EINTR) | Some(libc::EAGAIN) if tries < 8 => tries += 1,
            _ => return Err(e),
        }
    }
}

/// `readlinkat(dir, name)`: the target of the symlink `name` in `dir`, or
/// of the `O_PATH | O_NOFOLLOW` fd `dir` itself with `c""`. A target
/// longer than `PATH_MAX` is `ENAMETOOLONG`.
pub(crate) fn readlinkat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `name` is NUL-terminated; `buf` is writable for its length;
    // the fd is borrowed for the call.
    let r = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = r as usize;
    if n >= buf.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    buf.truncate(n);
    Ok(buf)
}

/// `symlinkat(target, dir, name)`: makes the symlink `name` in `dir`.
pub(crate) fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated; the fd is borrowed for the call.
    let r = unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A stack of descriptors that are only ever added to until it is
/// dropped, so a descriptor borrowed from it stays open as long as the
/// stack: a handle's view of the symlink it became, or of the empty file
/// that replaced its symlink (a symlink cannot be changed in place; each
/// change is a new inode). Each entry says whether it is a symlink's. At
/// most [`FdStack::MAX`] of them.
#[derive(Debug, Default)]
pub(crate) struct FdStack {
    fds: std::sync::Mutex<Vec<(OwnedFd, bool)>>,
}

impl FdStack {
    /// The most descriptors one stack holds.
    pub(crate) const MAX: usize = 16;

    /// Adds `fd` (a symlink's when `link`) on top; `Err` (and `fd`
    /// closed) when full.
    pub(crate) fn push(&self, fd: OwnedFd, link: bool) -> Result<(), ()> {
        let mut fds = self.fds.lock().unwrap_or_else(|e| e.into_inner());
        if fds.len() >= Self::MAX {
            return Err(());
        }
        fds.push((fd, link));
        Ok(())
    }

    /// The newest descriptor, and whether it is a symlink's.
    pub(crate) fn top(&self) -> Option<(BorrowedFd<'_>, bool)> {
        let fds = self.fds.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: descriptors are never removed from the stack before it is
        // dropped, and the borrow cannot outlive `self`; moving an OwnedFd
        // when the Vec grows does not close it.
        fds.last().map(|(fd, link)| (unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) }, *link))
    }
}

/// `statx(dir, path, flags)` asking for the basic fields and the birth time.
/// Pass `AT_SYMLINK_NOFOLLOW` (names) or `AT_EMPTY_PATH` with `c""` (the fd itself).
pub(crate) fn statx(dir: BorrowedFd<'_>, path: &CStr, flags: i32) -> io::Result<libc::statx> {
    let mut st = MaybeUninit::<libc::statx>::uninit();
    // SAFETY: `path` is NUL-terminated; `st` is writable and of the type the
    // kernel fills; the fd is borrowed for the call.
    let r = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            path.as_ptr(),
            flags | libc::AT_STATX_SYNC_AS_STAT,
            libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            st.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statx succeeded, so it initialised the struct.
    Ok(unsafe { st.assume_init() })
}

/// `inotify_init1(IN_NONBLOCK | IN_CLOEXEC)`: a new inotify instance
/// ([`super::watch`]).
pub(crate) fn inotify_init() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the flags are valid.
    let r = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `inotify_add_watch` on the directory `dir` itself, named through its
/// own fd (`/proc/self/fd/N`, a magic link to exactly that directory): so
/// the watch lands on the directory that was opened confined, whatever
/// happened to its path since. Returns the watch descriptor.
pub(crate) fn inotify_add_watch(ino: BorrowedFd<'_>, dir: BorrowedFd<'_>, mask: u32) -> io::Result<i32> {
    let path = CString::new(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `path` is NUL-terminated and outlives the call; both fds are
    // borrowed and so open for the duration of the call.
    let r = unsafe { libc::inotify_add_watch(ino.as_raw_fd(), path.as_ptr(), mask) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// `inotify_rm_watch`; an unknown descriptor (the kernel already dropped
/// it: its directory is gone) is not an error.
pub(crate) fn inotify_rm_watch(ino: BorrowedFd<'_>, wd: i32) {
    // SAFETY: no pointers; the fd is borrowed for the call.
    unsafe { libc::inotify_rm_watch(ino.as_raw_fd(), wd) };
}

/// Bytes waiting to be read on `fd` (`FIONREAD`): for an inotify fd, the
/// queued events.
pub(crate) fn bytes_queued(fd: BorrowedFd<'_>) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid
    // and writable; the fd is borrowed for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) };
    if r < 0 {
        0
    } else {
        n.max(0) as u64
    }
}

/// Waits up to `ms` milliseconds for `fd` to be readable (`poll`); false
/// on a time-out or an error (an interrupted wait included).
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, ms: i32) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid, writable pollfd and its count; the fd is borrowed
    // for the call.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    r > 0 && p.revents & libc::POLLIN != 0
}

/// Waits up to `ms` milliseconds for `fd` to be readable or in error
/// (`poll`): true when reading it now will not block (it may fail, or find
/// the end); false on a time-out or an interrupted wait.
pub(crate) fn wait_ready(fd: BorrowedFd<'_>, ms: i32) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid, writable pollfd and its count; the fd is borrowed
    // for the call.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    r > 0 && p.revents != 0
}

/// Where an extended attribute is read or written.
#[derive(Clone, Copy)]
pub(crate) enum XattrTarget<'a> {
    /// The open file itself (not O_PATH).
    Fd(BorrowedFd<'a>),
    /// The entry `name` (one component) in the directory `dir`, symlinks not
    /// followed: `getxattrat`/`listxattrat` with `AT_SYMLINK_NOFOLLOW`, or
    /// on kernels before 6.13 `/proc/self/fd/<dir>/<name>` (the magic link
    /// is our own confined dir fd, and `l*xattr` does not follow `name`).
    At(BorrowedFd<'a>, &'a CStr),
}

fn proc_path(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.to_bytes());
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `getxattrat(2)` and `listxattrat(2)` (Linux 6.13; the same numbers on
/// every architecture). They read an entry's xattrs relative to its
/// directory fd in one lookup, where the `/proc/self/fd/<dir>/<name>` path
/// of older kernels costs a walk through procfs (a directory listing
/// reads every entry's xattrs).
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;

/// Cleared once the kernel answers `ENOSYS` to the `*xattrat` calls: from
/// then on [`XattrTarget::At`] goes through `/proc`.
static XATTRAT: AtomicBool = AtomicBool::new(true);

/// `struct xattr_args` of `getxattrat(2)` (version 0, 16 bytes).
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// Runs an `*xattrat` call for `At(dir, entry)`; `None` when the kernel
/// has none (and remembers it).
fn xattrat(call: impl FnOnce() -> libc::c_long) -> Option<isize> {
    if !XATTRAT.load(Ordering::Relaxed) {
        return None;
    }
    let r = call();
    if r < 0 {
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOSYS) => {
                XATTRAT.store(false, Ordering::Relaxed);
                return None;
            }
            // A sandbox that refuses unknown calls, or a file that has no
            // user xattrs: `/proc` answers for this one.
            Some(libc::EPERM) => return None,
            _ => {}
        }
    }
    Some(r as isize)
}

/// Reads the attribute `name` into `buf`; `Ok(None)` when it is absent.
pub(crate) fn get_xattr(target: XattrTarget<'_>, name: &CStr, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let r = match target {
        // SAFETY: `name` is NUL-terminated; `buf` is writable for its length.
        XattrTarget::Fd(fd) => unsafe {
            libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        },
        XattrTarget::At(dir, entry) => {
            let args =
                XattrArgs { value: buf.as_mut_ptr() as u64, size: buf.len().min(u32::MAX as usize) as u32, flags: 0 };
            // SAFETY: `entry` and `name` are NUL-terminated; `args` points
            // at `buf`, writable for `args.size` bytes, and its exact size
            // is passed; the dir fd is borrowed for the call.
            let at = xattrat(|| unsafe {
                libc::syscall(
                    SYS_GETXATTRAT,
                    dir.as_raw_fd(),
                    entry.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                    name.as_ptr(),
                    &args as *const XattrArgs,
                    std::mem::size_of::<XattrArgs>(),
                )
            });
            match at {
                Some(r) => r,
                None => {
                    let path = proc_path(dir, entry)?;
                    // SAFETY: as above; `path` is NUL-terminated and lives past the call.
                    unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
                }
            }
        }
    };
    if r >= 0 {
        return Ok(Some(r as usize));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) => Ok(None),
        _ => Err(e),
    }
}

/// Writes the attribute `name` on an open file.
pub(crate) fn set_xattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    set_xattr_flags(fd, name, value, 0)
}

/// Writes the attribute `name` on an open file with `fsetxattr` flags:
/// `XATTR_CREATE` fails with `EEXIST` when it is there already.
pub(crate) fn set_xattr_flags(fd: BorrowedFd<'_>, name: &CStr, value: &[u8], flags: i32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated; `value` is readable for its length.
    let r = unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), flags) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The names of all extended attributes of `target`, each NUL-terminated,
/// as `listxattr(2)` returns them. Grows its buffer while the list grows
/// under it (`ERANGE`).
pub(crate) fn list_xattrs(target: XattrTarget<'_>) -> io::Result<Vec<u8>> {
    let mut path = None;
    let mut call = |buf: &mut [u8]| -> io::Result<isize> {
        Ok(match target {
            // SAFETY: `buf` is writable for its length (a zero length asks
            // for the size only and writes nothing).
            XattrTarget::Fd(fd) => unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) },
            XattrTarget::At(dir, entry) => {
                // SAFETY: as above; `entry` is NUL-terminated and the dir
                // fd is borrowed for the call.
                let at = xattrat(|| unsafe {
                    libc::syscall(
                        SYS_LISTXATTRAT,
                        dir.as_raw_fd(),
                        entry.as_ptr(),
                        libc::AT_SYMLINK_NOFOLLOW,
                        buf.as_mut_ptr(),
                        buf.len(),
                    )
                });
                match at {
                    Some(r) => r,
                    None => {
                        if path.is_none() {
                            path = Some(proc_path(dir, entry)?);
                        }
                        let p = path.as_ref().ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
                        // SAFETY: as above; `p` is NUL-terminated and lives past the call.
                        unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
                    }
                }
            }
        })
    };
    let mut buf = vec![0u8; 256];
    for _ in 0..8 {
        let r = call(&mut buf)?;
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
        let need = call(&mut [])?;
        if need < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.resize((need as usize).max(buf.len() * 2), 0);
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

/// Removes the attribute `name` from an open file; `Ok(false)` when it was
/// not there.
pub(crate) fn remove_xattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<bool> {
    // SAFETY: `name` is NUL-terminated.
    let r = unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) => Ok(false),
        _ => Err(e),
    }
}

/// `pread` into the spare capacity of `buf`, appending up to `len` bytes
/// without zero-filling them first (large READs are file data straight
/// into the response buffer). Returns the number of bytes read.
pub(crate) fn pread_append(
    fd: BorrowedFd<'_>,
    buf: &mut bytes::BytesMut,
    len: usize,
    offset: i64,
) -> io::Result<usize> {
    buf.reserve(len);
    let spare = &mut buf.spare_capacity_mut()[..len];
    loop {
        // SAFETY: `spare` is valid for writes of `len` bytes (reserved
        // above); pread writes at most that many and never reads them.
        let r = unsafe { libc::pread(fd.as_raw_fd(), spare.as_mut_ptr().cast(), len, offset) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = r as usize;
        // SAFETY: the kernel initialised the first `n` spare bytes.
        unsafe { buf.set_len(buf.len() + n) };
        return Ok(n);
    }
}

/// Brings the pages of `file` in `offset .. offset + len` into the page
/// cache, without copying them to user space: `cachestat(2)` says whether
/// they are all there already; if not (or on a kernel without it, before
/// 6.5), a read-only mapping of the range and `MADV_POPULATE_READ`, which
/// reads in the pages that are missing and waits. True when they were all
/// there.
pub(crate) fn load(file: BorrowedFd<'_>, offset: u64, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as u64,
        _ => return false,
    };
    let start = offset - offset % page;
    let Some(end) = offset.checked_add(len as u64) else {
        return false;
    };
    let pages = (end - start).div_ceil(page);
    if cached_pages(file, start, end - start) == Some(pages) {
        return true;
    }
    let (Ok(span), Ok(at)) = (usize::try_from(end - start), libc::off_t::try_from(start)) else {
        return false;
    };
    // SAFETY: a fresh read-only mapping of the file, which nothing else
    // knows of or touches; it is unmapped below. Mapping faults nothing in.
    let map =
        unsafe { libc::mmap(std::ptr::null_mut(), span, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), at) };
    if map == libc::MAP_FAILED {
        return false;
    }
    // Pages past the end of the file (it shrank) fail with EFAULT, not a
    // signal; whatever fails, sending reads the rest itself.
    // SAFETY: `map` is the mapping of `span` bytes made above; populating
    // it only reads the file's pages in.
    unsafe { libc::madvise(map, span, libc::MADV_POPULATE_READ) };
    // SAFETY: `map` and `span` are the mapping made above, used no more.
    unsafe { libc::munmap(map, span) };
    false
}

/// `cachestat(2)` (Linux 6.5): how many pages of `file` in `offset ..
/// offset + len` are in the page cache; `None` when the kernel cannot say.
fn cached_pages(file: BorrowedFd<'_>, offset: u64, len: u64) -> Option<u64> {
    /// `struct cachestat_range`.
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    /// `struct cachestat`.
    #[repr(C)]
    #[derive(Default)]
    struct CacheStat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    /// Its number in the kernel's generic table, the same on every
    /// architecture (the libc crate has it only for some).
    const SYS_CACHESTAT: libc::c_long = 451;
    if len == 0 {
        // 0 would mean "to the end of the file".
        return Some(0);
    }
    let range = Range { off: offset, len };
    let mut st = CacheStat::default();
    // SAFETY: cachestat reads `range` and writes `st`, both plain structs
    // of the kernel's layout that live across the call; flags must be 0.
    let r = unsafe { libc::syscall(SYS_CACHESTAT, file.as_raw_fd(), &raw const range, &raw mut st, 0) };
    (r == 0).then_some(st.nr_cache)
}

/// A pipe (`pipe2`, close-on-exec), read end first, grown to `size` bytes
/// where the system allows (`F_SETPIPE_SZ`); with its capacity.
pub(crate) fn pipe(size: usize) -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is two writable ints, what pipe2 fills in.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both are fresh descriptors that nothing else owns.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own; an int argument.
    let got = unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
    let cap = if got > 0 {
        got as usize
    } else {
        // SAFETY: as above, no argument.
        let now = unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_GETPIPE_SZ) };
        if now > 0 {
            now as usize
        } else {
            64 * 1024
        }
    };
    Ok((rd, wr, cap))
}

/// `splice(from, NULL, to, off, len, flags)`: moves up to `len` bytes from
/// `from` to `to` (at `*off` when given, which it advances) through the
/// pipe one of them is, without a copy through user space. Retries on
/// `EINTR`; the bytes moved, 0 at the end of `from`.
pub(crate) fn splice(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    off: Option<&mut i64>,
    len: usize,
    nonblock: bool,
) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | if nonblock { libc::SPLICE_F_NONBLOCK } else { 0 };
    let off = off.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    loop {
        // SAFETY: both descriptors are borrowed for the call; `off` is null
        // or points at a live i64 (loff_t) the kernel reads and advances.
        let r = unsafe { libc::splice(from.as_raw_fd(), std::ptr::null_mut(), to.as_raw_fd(), off, len, flags) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `read(2)` into `buf`, retried on `EINTR` (a pipe's or a non-blocking
/// socket's bytes: `WouldBlock` when there are none yet).
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is writable for its length; the fd is borrowed.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use std::os::fd::AsFd;

    /// An entry's xattrs read through its directory answer the same with
    /// the `*xattrat` calls and through `/proc`, symlinks not followed.
    #[test]
    fn xattrs_of_an_entry_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"").unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        let f = std::fs::File::open(dir.path().join("f")).unwrap();
        if set_xattr(f.as_fd(), c"user.t", b"value").is_err() {
            return; // no user xattrs here
        }
        let d = std::fs::File::open(dir.path()).unwrap();
        let at = XattrTarget::At(d.as_fd(), c"f");
        let link = XattrTarget::At(d.as_fd(), c"l");
        for xattrat in [true, false] {
            XATTRAT.store(xattrat, Ordering::Relaxed);
            let mut buf = [0u8; 16];
            assert_eq!(get_xattr(at, c"user.t", &mut buf).unwrap(), Some(5));
            assert_eq!(&buf[..5], b"value");
            assert_eq!(get_xattr(at, c"user.none", &mut buf).unwrap(), None);
            let mut small = [0u8; 2];
            assert_eq!(get_xattr(at, c"user.t", &mut small).unwrap_err().raw_os_error(), Some(libc::ERANGE));
            assert!(list_xattrs(at).unwrap().split(|&b| b == 0).any(|n| n == b"user.t"));
            // The symlink's own xattrs (none), not its target's.
            assert!(!list_xattrs(link).unwrap().split(|&b| b == 0).any(|n| n == b"user.t"));
        }
        XATTRAT.store(true, Ordering::Relaxed);
    }

    /// Pages dropped from the cache are read back in by `load` (it says
    /// they were not all there, then they are); a range past the end of the
    /// file is refused quietly.
    #[test]
    fn load_brings_pages_into_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(&vec![1u8; 1 << 20]).expect("write");
        f.sync_all().expect("sync");
        let f = std::fs::File::open(&path).expect("open");
        let Some(all) = cached_pages(f.as_fd(), 0, 1 << 20) else {
            return; // a kernel before 6.5: nothing to check it with
        };
        assert!(all > 0);
        // SAFETY: advice only; the file is open.
        assert_eq!(unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) }, 0);
        if cached_pages(f.as_fd(), 0, 1 << 20) != Some(0) {
            return; // the file system kept them (nothing to show)
        }
        assert!(!load(f.as_fd(), 4096 + 10, 500_000), "the pages were dropped");
        assert!(load(f.as_fd(), 4096 + 10, 500_000), "and are back");
        assert!(!load(f.as_fd(), 2 << 20, 4096), "past the end");
    }
}
