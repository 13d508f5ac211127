//! The error type of the share-confined file system and its NTSTATUS mapping.

use std::io;

use protocol::NtStatus;

/// Why a file-system operation failed.
///
/// Client mistakes (bad names, missing files) and refusals (symlinks, escape
/// attempts) have their own variants; anything else the kernel reports is kept
/// as [`FsError::Io`] and mapped from its errno by [`FsError::status`].
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The final component does not exist.
    #[error("no such file or directory")]
    NotFound,
    /// A directory on the way to the final component does not exist (or is a file).
    #[error("path not found")]
    PathNotFound,
    /// The name is already taken.
    #[error("name already exists")]
    Exists,
    /// A directory was required.
    #[error("not a directory")]
    NotADirectory,
    /// A non-directory was required.
    #[error("is a directory")]
    IsADirectory,
    /// `rmdir` of a directory that still has entries.
    #[error("directory not empty")]
    NotEmpty,
    /// Permission refused by the kernel or by the share's rules.
    #[error("access denied")]
    AccessDenied,
    /// A component is not a valid Windows name (wildcards, control characters,
    /// ':' streams, '.' components, too long, empty).
    #[error("invalid name")]
    NameInvalid,
    /// '..' would climb above the share root.
    #[error("path syntax bad")]
    PathSyntaxBad,
    /// A symlink (planted in the share or swapped in by a race) was met on
    /// the way, or resolution would have left the share root.
    #[error("symlink or escape refused")]
    SymlinkRefused,
    /// A CREATE's path met a confined symbolic link that it does not open
    /// itself (no FILE_OPEN_REPARSE_POINT, or not at the last component):
    /// STATUS_STOPPED_ON_SYMLINK, and the client resolves the link
    /// ([`super::link`], [MS-SMB2] 2.2.2.2.1).
    #[error("stopped on a symbolic link")]
    StoppedOnSymlink(Box<Stopped>),
    /// The file system or a quota is full.
    #[error("no space left")]
    NoSpace,
    /// A request that makes no sense for this object (e.g. the DIRECTORY
    /// attribute on a file, renaming a directory into itself).
    #[error("invalid parameter")]
    InvalidParameter,
    /// The file system cannot do it (e.g. no user xattrs to keep a
    /// sparse mark in).
    #[error("not supported")]
    NotSupported,
    /// Rename across file systems.
    #[error("not the same device")]
    NotSameDevice,
    /// Past a limit of the way Duet keeps it, not of the disk: a named
    /// stream larger than one xattr value ([`super::stream::MAX_SIZE`]).
    #[error("file system limitation")]
    Limitation,
    /// An end of file past a stream's fixed size (`AFP_AfpInfo`,
    /// [`super::afpinfo`]).
    #[error("allotted space exceeded")]
    AllottedSpaceExceeded,
    /// The share's fence did not hold ([`super::fence`]): this node's lease
    /// on the share's set ran out, or its partner took the set over. Nothing
    /// was changed. The pipeline closes the connection without an answer;
    /// the status is for a caller that answers anyway.
    #[error("fenced: no lease on the share's set")]
    Fenced,
    /// Any other local I/O failure.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Where a path stopped on a symbolic link, for the Symbolic Link Error
/// Response ([MS-SMB2] 2.2.2.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The link's target as clients see it (relative, `\`-separated).
    pub target: String,
    /// UnparsedPathLength: the bytes (UTF-16) of the path after the link's
    /// component, separator included.
    pub unparsed: usize,
}

impl FsError {
    /// The NTSTATUS a server returns for this error.
    pub fn status(&self) -> NtStatus {
        match self {
            FsError::NotFound => NtStatus::OBJECT_NAME_NOT_FOUND,
            FsError::NotSupported => NtStatus::NOT_SUPPORTED,
            FsError::PathNotFound => NtStatus::OBJECT_PATH_NOT_FOUND,
            FsError::Exists => NtStatus::OBJECT_NAME_COLLISION,
            FsError::NotADirectory => NtStatus::NOT_A_DIRECTORY,
            FsError::IsADirectory => NtStatus::FILE_IS_A_DIRECTORY,
            FsError::NotEmpty => NtStatus::DIRECTORY_NOT_EMPTY,
            FsError::AccessDenied | FsError::SymlinkRefused => NtStatus::ACCESS_DENIED,
            FsError::NameInvalid => NtStatus::OBJECT_NAME_INVALID,
            FsError::PathSyntaxBad => NtStatus::OBJECT_PATH_SYNTAX_BAD,
            FsError::StoppedOnSymlink(_) => NtStatus::STOPPED_ON_SYMLINK,
            FsError::NoSpace => NtStatus::DISK_FULL,
            FsError::InvalidParameter => NtStatus::INVALID_PARAMETER,
            FsError::NotSameDevice => NtStatus::NOT_SAME_DEVICE,
            FsError::Limitation => NtStatus::FILE_SYSTEM_LIMITATION,
            FsError::AllottedSpaceExceeded => NtStatus::ALLOTTED_SPACE_EXCEEDED,
            FsError::Fenced => NtStatus::FILE_NOT_AVAILABLE,
            FsError::Io(e) => errno_status(e.raw_os_error().unwrap_or(0)),
        }
    }

    /// Classifies an errno from an operation on an already resolved object.
    pub(crate) fn from_errno(errno: i32) -> FsError {
        match errno {
            libc::ENOENT => FsError::NotFound,
            libc::EEXIST => FsError::Exists,
            libc::ENOTDIR => FsError::NotADirectory,
            libc::EISDIR => FsError::IsADirectory,
            libc::ENOTEMPTY => FsError::NotEmpty,
            libc::EACCES | libc::EPERM => FsError::AccessDenied,
            libc::ENAMETOOLONG => FsError::NameInvalid,
            // ELOOP: RESOLVE_NO_SYMLINKS met a symlink. EXDEV from openat2:
            // RESOLVE_BENEATH caught an escape.
            libc::ELOOP => FsError::SymlinkRefused,
            libc::ENOSPC | libc::EDQUOT => FsError::NoSpace,
            libc::EXDEV => FsError::NotSameDevice,
            libc::EINVAL => FsError::InvalidParameter,
            e => FsError::Io(io::Error::from_raw_os_error(e)),
        }
    }
}

impl From<nix::errno::Errno> for FsError {
    fn from(e: nix::errno::Errno) -> FsError {
        FsError::from_errno(e as i32)
    }
}

/// Errno to NTSTATUS for errors that carry no better classification.
fn errno_status(errno: i32) -> NtStatus {
    match errno {
        libc::ENOENT => NtStatus::OBJECT_NAME_NOT_FOUND,
        libc::EEXIST => NtStatus::OBJECT_NAME_COLLISION,
        libc::ENOTDIR => NtStatus::NOT_A_DIRECTORY,
        libc::EISDIR => NtStatus::FILE_IS_A_DIRECTORY,
        libc::ENOTEMPTY => NtStatus::DIRECTORY_NOT_EMPTY,
        libc::EACCES | libc::EPERM | libc::ELOOP | libc::EBUSY => NtStatus::ACCESS_DENIED,
        libc::ENOSPC | libc::EDQUOT | libc::EFBIG => NtStatus::DISK_FULL,
        libc::ENAMETOOLONG => NtStatus::OBJECT_NAME_INVALID,
        libc::EXDEV => NtStatus::NOT_SAME_DEVICE,
        libc::EINVAL => NtStatus::INVALID_PARAMETER,
        libc::EROFS => NtStatus::MEDIA_WRITE_PROTECTED,
        libc::EMFILE | libc::ENFILE => NtStatus::TOO_MANY_OPENED_FILES,
        libc::ENOMEM => NtStatus::NO_MEMORY,
        libc::ETXTBSY => NtStatus::SHARING_VIOLATION,
        libc::EOPNOTSUPP | libc::ENOSYS => NtStatus::NOT_SUPPORTED,
        libc::EBADF => NtStatus::INVALID_HANDLE,
        _ => NtStatus::UNEXPECTED_IO_ERROR,
    }
}

/// An I/O error as the file system error its errno names (EIO when it
/// names none).
pub(crate) fn io_err(e: std::io::Error) -> FsError {
    FsError::from_errno(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(FsError::NotFound.status(), NtStatus::OBJECT_NAME_NOT_FOUND);
        assert_eq!(FsError::PathNotFound.status(), NtStatus::OBJECT_PATH_NOT_FOUND);
        assert_eq!(FsError::Exists.status(), NtStatus::OBJECT_NAME_COLLISION);
        assert_eq!(FsError::NotEmpty.status(), NtStatus::DIRECTORY_NOT_EMPTY);
        assert_eq!(FsError::SymlinkRefused.status(), NtStatus::ACCESS_DENIED);
        assert_eq!(FsError::from_errno(libc::EPERM).status(), NtStatus::ACCESS_DENIED);
        assert_eq!(FsError::from_errno(libc::ENOSPC).status(), NtStatus::DISK_FULL);
        assert_eq!(FsError::from_errno(libc::ENAMETOOLONG).status(), NtStatus::OBJECT_NAME_INVALID);
        assert_eq!(FsError::from_errno(libc::EXDEV).status(), NtStatus::NOT_SAME_DEVICE);
        assert_eq!(FsError::from_errno(libc::EROFS).status(), NtStatus::MEDIA_WRITE_PROTECTED);
        assert_eq!(FsError::from_errno(libc::EIO).status(), NtStatus::UNEXPECTED_IO_ERROR);
    }
}
