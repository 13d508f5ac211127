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
//! - [`reparse`] — reparse data buffers, symbolic links and the
//!   symbolic link error response.
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
pub mod reparse;
pub mod security;
pub mod set_info;

pub use attributes::{access, file_attributes, file_info_class, fs_info_class};
pub use dir_info::{dir_entry_fixed_size, dir_entry_size, encode_dir_entry, DirListBuilder};
pub use ea::{
    ea_list_size, encode_full_ea_list, parse_full_ea_list, parse_get_ea_list, FullEa, GetEa,
};
pub use file_info::{
    encode_stream_information, StreamEntry,
    encode_file_info, encode_file_name_information, fixed_size, is_variable_size, truncate_output,
    FileInfoCtx,
};
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
    /// The reparse tag ([MS-FSCC] 2.1.2.1) when `attributes` has
    /// REPARSE_POINT, else 0. Directory entries send it in EaSize's place
    /// ([MS-FSCC] 2.4.8 and siblings).
    pub reparse_tag: u32,
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

    /// EaSize as a directory entry carries it: the reparse tag for a
    /// reparse point, else the EA size ([MS-FSCC] 2.4.8).
    pub fn ea_size_or_tag(&self) -> u32 {
        if self.attributes & file_attributes::REPARSE_POINT != 0 {
            self.reparse_tag
        } else {
            self.ea_size
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

/// Garbage in, error out: every parser in this module is fed random and
/// mutated buffers and must return (Ok or Err) without panicking.
#[cfg(test)]
mod robustness {
    use super::*;
    use bytes::BytesMut;

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn feed(buf: &[u8]) {
        for class in 0..=u8::MAX {
            let _ = parse_set_file_info(class, buf);
            let _ = parse_set_fs_info(class, buf);
        }
        let _ = SecurityDescriptor::parse(buf);
        let _ = security::Acl::parse(buf);
        let _ = security::Sid::parse(buf);
        let _ = parse_full_ea_list(buf);
        let _ = parse_get_ea_list(buf);
        let _ = FileObjectIdBuffer::parse(buf);
    }

    #[test]
    fn random_buffers_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..300 {
            let n = (rng.next() % 200) as usize;
            feed(&rng.bytes(n));
        }
    }

    #[test]
    fn mutated_valid_buffers_never_panic() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        let mut b = BytesMut::new();
        posix_security_descriptor(1000, 100, 0o755, true).encode(0xF, &mut b);
        seeds.push(b.to_vec());
        let mut b = BytesMut::new();
        encode_full_ea_list(
            &[
                FullEa {
                    flags: 0,
                    name: b"a",
                    value: b"xyz",
                },
                FullEa {
                    flags: 0,
                    name: b"bb",
                    value: b"",
                },
            ],
            &mut b,
        )
        .unwrap();
        seeds.push(b.to_vec());
        for seed in &seeds {
            for _ in 0..300 {
                let mut m = seed.clone();
                for _ in 0..1 + rng.next() % 4 {
                    let i = (rng.next() as usize) % m.len();
                    m[i] = rng.next() as u8;
                }
                feed(&m);
            }
        }
    }
}
