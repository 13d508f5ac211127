//! The raw system calls that `nix` does not wrap: `openat2(2)`, `statx(2)`,
//! extended attributes, and bringing a file's pages into the page cache
//! (`mincore(2)`, `MADV_POPULATE_READ`). All of `fs`'s `unsafe` lives in this file.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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

/// Where an extended attribute is read or written.
#[derive(Clone, Copy)]
pub(crate) enum XattrTarget<'a> {
    /// The open file itself (not O_PATH).
    Fd(BorrowedFd<'a>),
    /// The entry `name` (one component) in the directory `dir`, symlinks not
    /// followed. Goes through `/proc/self/fd/<dir>/<name>`: the magic link is
    /// our own confined dir fd, and `l*xattr` does not follow `name`.
    At(BorrowedFd<'a>, &'a CStr),
}

fn proc_path(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.to_bytes());
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Reads the attribute `name` into `buf`; `Ok(None)` when it is absent.
pub(crate) fn get_xattr(target: XattrTarget<'_>, name: &CStr, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let r = match target {
        // SAFETY: `name` is NUL-terminated; `buf` is writable for its length.
        XattrTarget::Fd(fd) => unsafe {
            libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        },
        XattrTarget::At(dir, entry) => {
            let path = proc_path(dir, entry)?;
            // SAFETY: as above; `path` is NUL-terminated and lives past the call.
            unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
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

/// `pread` into the spare capacity of `buf`, appending up to `len` bytes
/// without zero-filling them first (large READs are file data straight
/// into the response buffer). Returns the number of bytes read.
pub(crate) fn pread_append(fd: BorrowedFd<'_>, buf: &mut bytes::BytesMut, len: usize, offset: i64) -> io::Result<usize> {
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
/// cache, without copying them to user space: a read-only mapping of the
/// range, `mincore` to see whether they are all there already, and if not
/// `MADV_POPULATE_READ`, which reads them in and waits. True when they were
/// all there; false when they were not, or when it cannot tell.
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
    let (Ok(span), Ok(at)) = (usize::try_from(end - start), libc::off_t::try_from(start)) else {
        return false;
    };
    // SAFETY: a fresh read-only mapping of the file, which nothing else
    // knows of or touches; it is unmapped below. Mapping faults nothing in.
    let map = unsafe { libc::mmap(std::ptr::null_mut(), span, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), at) };
    if map == libc::MAP_FAILED {
        return false;
    }
    let mut vec = vec![0u8; span.div_ceil(page as usize)];
    // SAFETY: `map` is the page-aligned mapping of `span` bytes made above;
    // `vec` has one byte per page of it.
    let all = unsafe { libc::mincore(map, span, vec.as_mut_ptr()) } == 0 && vec.iter().all(|b| b & 1 != 0);
    if !all {
        // Pages past the end of the file (it shrank) fail with EFAULT, not
        // a signal; whatever fails, sending reads the rest itself.
        // SAFETY: as above; populating only reads the file's pages in.
        unsafe { libc::madvise(map, span, libc::MADV_POPULATE_READ) };
    }
    // SAFETY: `map` and `span` are the mapping made above, used no more.
    unsafe { libc::munmap(map, span) };
    all
}
