//! The raw system calls that `nix` does not wrap: `openat2(2)`, `statx(2)` and
//! extended attributes. All of `fs`'s `unsafe` lives in this file.

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
            let args = XattrArgs { value: buf.as_mut_ptr() as u64, size: buf.len().min(u32::MAX as usize) as u32, flags: 0 };
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

#[cfg(test)]
mod tests {
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
}
