//! Security descriptors kept with the file, as Samba's `acl_xattr` keeps
//! them: the self-relative descriptor ([MS-DTYP] 2.4.6) a client set,
//! in the `user.duet.NTACL` xattr, so it moves with the file through
//! renames and hard links. Samba's own `security.NTACL` needs
//! CAP_SYS_ADMIN to write, which Duet does not assume; a `user.` name
//! under Duet's own prefix does not, and [`super::ea`] never shows or
//! accepts names under `user.duet.` as EAs. The bytes are Duet's own
//! encoding of a descriptor it parsed, at most [`MAX_LEN`] long; a value
//! that does not parse is treated as absent by the callers.

use std::ffi::{CStr, CString};
use std::os::fd::AsFd;

use super::handle::io_err;
use super::sys::{self, XattrTarget};
use super::{FsError, Handle, Resolved, Share};

/// The xattr that holds a file's stored descriptor.
pub const XATTR_SD: &CStr = c"user.duet.NTACL";

/// The longest descriptor Duet stores (two full 64 KiB ACLs do not fit;
/// ext4 keeps at most a block per xattr value anyway).
pub const MAX_LEN: usize = 64 * 1024;

/// Reads the stored descriptor of `target`; `None` when there is none or
/// the file system has no user xattrs.
fn read(target: XattrTarget<'_>) -> Result<Option<Vec<u8>>, FsError> {
    let mut buf = vec![0u8; 512];
    for size in [512, MAX_LEN] {
        buf.resize(size, 0);
        match sys::get_xattr(target, XATTR_SD, &mut buf) {
            Ok(Some(n)) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Ok(None) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(None),
            Err(e) => return Err(io_err(e)),
        }
    }
    // Longer than Duet ever stores: not ours.
    Ok(None)
}

impl Handle {
    /// The descriptor stored for this file (for a stream's handle, the
    /// file's).
    pub fn stored_sd(&self) -> Result<Option<Vec<u8>>, FsError> {
        if !self.xattrs() {
            return Ok(None);
        }
        read(XattrTarget::Fd(self.fd()))
    }

    /// Stores `sd` (an encoded self-relative descriptor) for this file.
    /// Without user xattrs: [`FsError::NotSupported`]; a value the file
    /// system cannot hold: [`FsError::NoSpace`].
    pub fn store_sd(&self, sd: &[u8]) -> Result<(), FsError> {
        if !self.xattrs() {
            return Err(FsError::NotSupported);
        }
        if sd.len() > MAX_LEN {
            return Err(FsError::NoSpace);
        }
        sys::set_xattr(self.fd(), XATTR_SD, sd).map_err(|e| match e.raw_os_error() {
            Some(libc::E2BIG | libc::ENOSPC | libc::ERANGE) => FsError::NoSpace,
            Some(libc::ENOTSUP) => FsError::NotSupported,
            _ => io_err(e),
        })
    }
}

impl Share {
    /// The descriptor stored for the existing file or directory `rel`,
    /// read without opening it (symlinks not followed).
    pub fn stored_sd(&self, rel: &Resolved) -> Result<Option<Vec<u8>>, FsError> {
        if !self.supports_xattrs() {
            return Ok(None);
        }
        match rel.split()? {
            None => read(XattrTarget::At(self.root_fd.as_fd(), c".")),
            Some((parent, leaf)) => {
                let dir = self.parent_fd(&parent)?;
                read(XattrTarget::At(dir.as_fd(), &leaf))
            }
        }
    }

    /// The descriptor stored for the directory that holds `rel` (`None`
    /// for the share root, which has no parent in the share).
    pub fn parent_sd(&self, rel: &Resolved) -> Result<Option<Vec<u8>>, FsError> {
        if !self.supports_xattrs() {
            return Ok(None);
        }
        match rel.split()? {
            None => Ok(None),
            Some((parent, _)) => {
                let dir = self.parent_fd(&parent)?;
                let dot: CString = c".".to_owned();
                read(XattrTarget::At(dir.as_fd(), &dot))
            }
        }
    }
}
