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

use super::error::io_err;
use super::sys::{self, XattrTarget};
use super::{FsError, Handle, Resolved, Share};

/// The xattr that holds a file's stored descriptor.
pub const XATTR_SD: &CStr = c"user.duet.NTACL";

/// The longest descriptor Duet stores (two full 64 KiB ACLs do not fit;
/// ext4 keeps at most a block per xattr value anyway).
pub const MAX_LEN: usize = 64 * 1024;

/// Reads the stored descriptor of `target`; `None` when there is none or
/// the file system has no user xattrs.
pub(super) fn read(target: XattrTarget<'_>) -> Result<Option<Vec<u8>>, FsError> {
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
        self.may_change()?;
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

    /// [`Share::stat`] of the existing `rel` and its stored descriptor,
    /// through one descriptor of the parent directory (what a CREATE of an
    /// existing file reads before it opens it).
    pub fn stat_sd(&self, rel: &Resolved) -> Result<(super::Stat, Option<Vec<u8>>), FsError> {
        match rel.split()? {
            None => Ok((self.stat(rel)?, self.stored_sd(rel)?)),
            Some((parent, leaf)) => {
                let dir = self.parent_fd(&parent)?;
                let st = super::expect_kind(rel, super::stat::stat_at(dir.as_fd(), Some(&leaf), self.xattrs)?)?;
                // A symbolic link keeps no descriptor (Linux has no user
                // xattrs on links).
                let sd = if self.xattrs && !rel.is_link { read(XattrTarget::At(dir.as_fd(), &leaf))? } else { None };
                Ok((st, sd))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_descriptors_round_trip_and_are_found_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let share = Share::new("s", dir.path()).unwrap();
        if !share.supports_xattrs() {
            return;
        }
        let sub = share.resolve(&Share::parse_path("d").unwrap()).unwrap();
        let d = share.create_dir(&sub, 0o755).unwrap();
        let file = share.resolve(&Share::parse_path("d\\f").unwrap()).unwrap();
        let f = share.create_file(&file, 0o644).unwrap();
        assert_eq!(f.stored_sd().unwrap(), None);
        assert_eq!(share.stored_sd(&file).unwrap(), None);
        f.store_sd(b"file sd").unwrap();
        d.store_sd(b"dir sd").unwrap();
        let file = share.resolve(&Share::parse_path("d\\f").unwrap()).unwrap();
        assert_eq!(f.stored_sd().unwrap().as_deref(), Some(&b"file sd"[..]));
        assert_eq!(share.stored_sd(&file).unwrap().as_deref(), Some(&b"file sd"[..]));
        assert_eq!(share.stat_sd(&file).unwrap().1.as_deref(), Some(&b"file sd"[..]));
        assert_eq!(share.parent_sd(&file).unwrap().as_deref(), Some(&b"dir sd"[..]));
        assert_eq!(share.parent_sd(&sub).unwrap(), None);
        assert_eq!(share.parent_sd(&Resolved::root()).unwrap(), None);
        // A long one takes the second read; one past the bound is refused.
        let long = vec![7u8; 3000];
        f.store_sd(&long).unwrap();
        assert_eq!(f.stored_sd().unwrap(), Some(long));
        assert!(matches!(f.store_sd(&vec![0u8; MAX_LEN + 1]), Err(FsError::NoSpace)));
        // Never an EA.
        assert!(f.eas().unwrap().iter().all(|e| !e.name.eq_ignore_ascii_case(b"duet.NTACL")));
    }
}
