//! File system information structures ([MS-FSCC] 2.4, 2.5) and security
//! descriptors ([MS-DTYP] 2.4).
//!
//! The server fills one [`FileStat`] per file from `stat()` and asks this
//! module for the bytes of whatever information class the client named.
//! Set-info buffers come back as typed values. Nothing here touches a file.
//!
//! # Layout
//! - [`attributes`] — file attribute bits, information class numbers, access
//!   mask bits.
//! - [`dir_info`] — QUERY_DIRECTORY entries and [`DirListBuilder`], which
//!   chains them.
//! - [`file_info`] — QUERY_INFO file classes and their dispatcher
//!   [`encode_file_info`].
//! - [`fs_info`] — QUERY_INFO file-system classes and [`encode_fs_info`].
//! - [`set_info`] — SET_INFO file and file-system buffers,
//!   [`parse_set_file_info`].
//! - [`security`] — SIDs, ACLs and self-relative security descriptors, and
//!   the POSIX owner/group/mode mapping.
//! - [`ea`] — extended attribute lists.
//! - [`object_id`] — FILE_OBJECTID_BUFFER.
//!
//! # Errors
//! Information-class operations return [`InfoError`]; [`InfoError::status`]
//! gives the NTSTATUS the server answers with. The security descriptor and
//! EA parsers return [`ParseError`].

use thiserror::Error;

use crate::error::ParseError;
use crate::status::NtStatus;

pub mod attributes;
pub mod dir_info;
pub mod ea;
pub mod file_info;
pub mod fs_info;
pub mod object_id;
pub mod security;
pub mod set_info;

pub use attributes::{access, file_attributes, file_info_class, fs_info_class};
pub use dir_info::{dir_entry_fixed_size, dir_entry_size, encode_dir_entry, DirListBuilder};
pub use ea::{
    ea_list_size, encode_full_ea_list, parse_full_ea_list, parse_get_ea_list, FullEa, GetEa,
};
pub use file_info::{encode_file_info, fixed_size, is_variable_size, truncate_output, FileInfoCtx};
pub use fs_info::{encode_fs_info, fs_fixed_size, truncate_fs_output, FsControl, FsStat};
pub use object_id::FileObjectIdBuffer;
pub use security::{
    posix_from_security_descriptor, posix_security_descriptor, security_information, Ace, Acl,
    PosixPerms, SecurityDescriptor, Sid,
};
pub use set_info::{parse_set_file_info, parse_set_fs_info, SetFileInfo, SetFsInfo, SetTime};

/// Why an information class request cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum InfoError {
    /// The class number is not defined for this request
    /// (STATUS_INVALID_INFO_CLASS).
    #[error("invalid information class")]
    InvalidInfoClass,
    /// The class is defined but Duet does not implement it
    /// (STATUS_NOT_SUPPORTED).
    #[error("information class not supported")]
    NotSupported,
    /// The buffer is shorter than the class's fixed part
    /// (STATUS_INFO_LENGTH_MISMATCH).
    #[error("buffer length does not match the information class")]
    LengthMismatch,
    /// A field holds a value the class does not allow
    /// (STATUS_INVALID_PARAMETER).
    #[error("invalid parameter in information buffer")]
    InvalidParameter,
    /// FileAlternateNameInformation on a file without an 8.3 name
    /// (STATUS_OBJECT_NAME_NOT_FOUND, as NTFS with short names disabled).
    #[error("no short name")]
    NoShortName,
}

impl InfoError {
    /// The NTSTATUS the server returns for this error.
    pub fn status(self) -> NtStatus {
        match self {
            InfoError::InvalidInfoClass => NtStatus::INVALID_INFO_CLASS,
            InfoError::NotSupported => NtStatus::NOT_SUPPORTED,
            InfoError::LengthMismatch => NtStatus::INFO_LENGTH_MISMATCH,
            InfoError::InvalidParameter => NtStatus::INVALID_PARAMETER,
            InfoError::NoShortName => NtStatus::OBJECT_NAME_NOT_FOUND,
        }
    }
}

impl From<ParseError> for InfoError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::Truncated(_) => InfoError::LengthMismatch,
            ParseError::Invalid(_) | ParseError::OutOfBounds(_) => InfoError::InvalidParameter,
        }
    }
}

/// What the server knows about one file, filled once from `stat()` and
/// used by every query encoder. Times are FILETIME (100 ns since 1601).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStat {
    pub creation_time: u64,
    pub last_access_time: u64,
    pub last_write_time: u64,
    pub change_time: u64,
    pub allocation_size: u64,
    pub end_of_file: u64,
    /// [`file_attributes`] bits. DIRECTORY and NORMAL are fixed up on the
    /// wire by [`FileStat::wire_attributes`].
    pub attributes: u32,
    /// The 64-bit file id (IndexNumber, [MS-FSCC] 2.1.9).
    pub file_id: u64,
    pub number_of_links: u32,
    pub delete_pending: bool,
    pub is_directory: bool,
    pub ea_size: u32,
}

impl FileStat {
    /// The attributes as they go on the wire ([MS-FSA] 2.1.5.6.3): DIRECTORY
    /// set for directories, NORMAL alone when nothing else is set, and
    /// NORMAL dropped when anything else is.
    pub fn wire_attributes(&self) -> u32 {
        let mut a = self.attributes;
        if self.is_directory {
            a |= file_attributes::DIRECTORY;
        }
        if a & !file_attributes::NORMAL == 0 {
            file_attributes::NORMAL
        } else {
            a & !file_attributes::NORMAL
        }
    }

    /// The 128-bit file id ([MS-FSCC] 2.1.10): the 64-bit id, zero-extended.
    pub fn file_id_128(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.file_id.to_le_bytes());
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_attributes_fix_directory_and_normal() {
        let mut s = FileStat::default();
        assert_eq!(s.wire_attributes(), file_attributes::NORMAL);
        s.attributes = file_attributes::NORMAL | file_attributes::HIDDEN;
        assert_eq!(s.wire_attributes(), file_attributes::HIDDEN);
        s.attributes = 0;
        s.is_directory = true;
        assert_eq!(s.wire_attributes(), file_attributes::DIRECTORY);
    }

    #[test]
    fn errors_map_to_statuses() {
        assert_eq!(
            InfoError::LengthMismatch.status(),
            NtStatus::INFO_LENGTH_MISMATCH
        );
        assert_eq!(
            InfoError::from(ParseError::Truncated("x")),
            InfoError::LengthMismatch
        );
        assert_eq!(
            InfoError::from(ParseError::Invalid("x")),
            InfoError::InvalidParameter
        );
    }
}
