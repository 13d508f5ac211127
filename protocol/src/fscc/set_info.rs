//! SET_INFO buffers ([MS-FSCC] 2.4 for files, 2.5 for file systems),
//! parsed into typed requests. The server applies them.
//!
//! A buffer shorter than the class's fixed part (or than the name or list
//! it announces) is [`InfoError::LengthMismatch`]
//! (STATUS_INFO_LENGTH_MISMATCH); a field out of range is
//! [`InfoError::InvalidParameter`]. Bytes after the structure are ignored:
//! clients send `sizeof()` of C structs, which includes tail padding.

use super::attributes::{file_info_class as class, fs_info_class};
use super::ea::{parse_full_ea_list, FullEa};
use super::file_info::mode;
use super::fs_info::FsControl;
use super::InfoError;
use crate::codec::{utf16le, Reader};

/// A FILETIME field of FileBasicInformation as a set request
/// ([MS-FSCC] 2.4.7, [MS-FSA] 2.1.5.14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    /// 0: leave the time alone.
    Unchanged,
    /// A new FILETIME value.
    Set(u64),
    /// -1: stop updating this time automatically for this handle.
    StopUpdating,
    /// -2: resume updating it automatically.
    ResumeUpdating,
}

impl SetTime {
    fn from_wire(v: u64) -> Result<Self, InfoError> {
        Ok(match v as i64 {
            0 => SetTime::Unchanged,
            -1 => SetTime::StopUpdating,
            -2 => SetTime::ResumeUpdating,
            t if t < 0 => return Err(InfoError::InvalidParameter),
            t => SetTime::Set(t as u64),
        })
    }
}

/// FileDispositionInformationEx flags ([MS-FSCC] 2.4, FileDispositionInformationEx).
pub mod disposition_flags {
    pub const DO_NOT_DELETE: u32 = 0x0000_0000;
    pub const DELETE: u32 = 0x0000_0001;
    pub const POSIX_SEMANTICS: u32 = 0x0000_0002;
    pub const FORCE_IMAGE_SECTION_CHECK: u32 = 0x0000_0004;
    pub const ON_CLOSE: u32 = 0x0000_0008;
    pub const IGNORE_READONLY_ATTRIBUTE: u32 = 0x0000_0010;
    pub const VALID: u32 =
        DELETE | POSIX_SEMANTICS | FORCE_IMAGE_SECTION_CHECK | ON_CLOSE | IGNORE_READONLY_ATTRIBUTE;
}

/// FileRenameInformationEx flags ([MS-FSCC] 2.4, FileRenameInformationEx).
pub mod rename_flags {
    pub const REPLACE_IF_EXISTS: u32 = 0x0000_0001;
    pub const POSIX_SEMANTICS: u32 = 0x0000_0002;
    pub const SUPPRESS_PIN_STATE_INHERITANCE: u32 = 0x0000_0004;
    pub const SUPPRESS_STORAGE_RESERVE_INHERITANCE: u32 = 0x0000_0008;
    pub const NO_INCREASE_AVAILABLE_SPACE: u32 = 0x0000_0010;
    pub const NO_DECREASE_AVAILABLE_SPACE: u32 = 0x0000_0020;
    pub const IGNORE_READONLY_ATTRIBUTE: u32 = 0x0000_0040;
    pub const FORCE_RESIZE_TARGET_SR: u32 = 0x0000_0080;
    pub const FORCE_RESIZE_SOURCE_SR: u32 = 0x0000_0100;
    pub const VALID: u32 = 0x0000_01FF;
}

/// A parsed SET_INFO file information buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetFileInfo<'a> {
    /// FileBasicInformation (4), [MS-FSCC] 2.4.7. `attributes` is `None`
    /// when the client sent 0 (leave alone).
    Basic {
        creation_time: SetTime,
        last_access_time: SetTime,
        last_write_time: SetTime,
        change_time: SetTime,
        attributes: Option<u32>,
    },
    /// FileRenameInformation (10, SMB2 TYPE_2 layout) and
    /// FileRenameInformationEx (65). For class 10 `flags` is
    /// [`rename_flags::REPLACE_IF_EXISTS`] or 0. `name` is as sent: a path
    /// relative to the share root, possibly with a leading backslash, or a
    /// stream name starting with ':'.
    Rename {
        replace_if_exists: bool,
        flags: u32,
        name: String,
    },
    /// FileLinkInformation (11, SMB2 TYPE_2 layout).
    Link {
        replace_if_exists: bool,
        name: String,
    },
    /// FileDispositionInformation (13).
    Disposition { delete_pending: bool },
    /// FileDispositionInformationEx (64): [`disposition_flags`].
    DispositionEx { flags: u32 },
    /// FilePositionInformation (14).
    Position { current_byte_offset: u64 },
    /// FileFullEaInformation (15), [MS-FSCC] 2.4.15.
    FullEa(Vec<FullEa<'a>>),
    /// FileModeInformation (16): [`mode`] bits.
    Mode { mode: u32 },
    /// FileAllocationInformation (19).
    Allocation { allocation_size: u64 },
    /// FileEndOfFileInformation (20).
    EndOfFile { end_of_file: u64 },
    /// FileValidDataLengthInformation (39).
    ValidDataLength { valid_data_length: u64 },
    /// FileShortNameInformation (40).
    ShortName { name: String },
}

/// Parses the SET_INFO buffer of file information `class`.
///
/// InvalidInfoClass for numbers that are not settable classes,
/// NotSupported for settable classes Duet does not implement (pipe,
/// object id, quota, case sensitivity, LinkEx).
pub fn parse_set_file_info(class: u8, buf: &[u8]) -> Result<SetFileInfo<'_>, InfoError> {
    let mut r = Reader::new(buf);
    let info = match class {
        class::FILE_BASIC_INFORMATION => {
            // Format: { creation_time | last_access_time | last_write_time |
            //           change_time: i64 | file_attributes: u32 | _reserved: u32 }
            fixed(buf, 40)?;
            let creation_time = SetTime::from_wire(r.u64("basic")?)?;
            let last_access_time = SetTime::from_wire(r.u64("basic")?)?;
            let last_write_time = SetTime::from_wire(r.u64("basic")?)?;
            let change_time = SetTime::from_wire(r.u64("basic")?)?;
            let attributes = match r.u32("basic")? {
                0 => None,
                a => Some(a),
            };
            SetFileInfo::Basic {
                creation_time,
                last_access_time,
                last_write_time,
                change_time,
                attributes,
            }
        }
        class::FILE_RENAME_INFORMATION
        | class::FILE_RENAME_INFORMATION_EX
        | class::FILE_LINK_INFORMATION => {
            // Format (FILE_RENAME_INFORMATION_TYPE_2 / FILE_LINK_INFORMATION_TYPE_2):
            //   { replace_if_exists: u8 | _reserved: [u8; 7] | root_directory: u64 |
            //     file_name_length: u32 | file_name }
            // Ex: { flags: u32 | _reserved: u32 | root_directory: u64 | ... }
            fixed(buf, 20)?;
            let flags = if class == class::FILE_RENAME_INFORMATION_EX {
                let f = r.u32("rename")?;
                r.skip(4, "rename")?;
                if f & !rename_flags::VALID != 0 {
                    return Err(InfoError::InvalidParameter);
                }
                f
            } else {
                let replace = r.u8("rename")? != 0;
                r.skip(7, "rename")?;
                if replace {
                    rename_flags::REPLACE_IF_EXISTS
                } else {
                    0
                }
            };
            // [MS-FSCC]: RootDirectory MUST be 0 for network operations.
            if r.u64("rename")? != 0 {
                return Err(InfoError::InvalidParameter);
            }
            let name = name_field(&mut r)?;
            let replace_if_exists = flags & rename_flags::REPLACE_IF_EXISTS != 0;
            if class == class::FILE_LINK_INFORMATION {
                SetFileInfo::Link {
                    replace_if_exists,
                    name,
                }
            } else {
                SetFileInfo::Rename {
                    replace_if_exists,
                    flags,
                    name,
                }
            }
        }
        class::FILE_DISPOSITION_INFORMATION => {
            // Format: { delete_pending: u8 }
            SetFileInfo::Disposition {
                delete_pending: r.u8("disposition")? != 0,
            }
        }
        class::FILE_DISPOSITION_INFORMATION_EX => {
            // Format: { flags: u32 }
            let flags = r.u32("disposition ex")?;
            if flags & !disposition_flags::VALID != 0 {
                return Err(InfoError::InvalidParameter);
            }
            SetFileInfo::DispositionEx { flags }
        }
        class::FILE_POSITION_INFORMATION => SetFileInfo::Position {
            current_byte_offset: non_negative(r.u64("position")?)?,
        },
        class::FILE_FULL_EA_INFORMATION => {
            // An EA list that is cut short is as bad as one that is garbled.
            let list = parse_full_ea_list(buf).map_err(|_| {
                if buf.len() < 9 {
                    InfoError::LengthMismatch
                } else {
                    InfoError::InvalidParameter
                }
            })?;
            SetFileInfo::FullEa(list)
        }
        class::FILE_MODE_INFORMATION => {
            let m = r.u32("mode")?;
            if m & !mode::VALID != 0 {
                return Err(InfoError::InvalidParameter);
            }
            SetFileInfo::Mode { mode: m }
        }
        class::FILE_ALLOCATION_INFORMATION => SetFileInfo::Allocation {
            allocation_size: non_negative(r.u64("allocation")?)?,
        },
        class::FILE_END_OF_FILE_INFORMATION => SetFileInfo::EndOfFile {
            end_of_file: non_negative(r.u64("end of file")?)?,
        },
        class::FILE_VALID_DATA_LENGTH_INFORMATION => SetFileInfo::ValidDataLength {
            valid_data_length: non_negative(r.u64("valid data length")?)?,
        },
        class::FILE_SHORT_NAME_INFORMATION => {
            // Format: FILE_NAME_INFORMATION { file_name_length: u32 | file_name }
            SetFileInfo::ShortName {
                name: name_field(&mut r)?,
            }
        }
        class::FILE_PIPE_INFORMATION
        | FILE_OBJECT_ID_INFORMATION
        | FILE_QUOTA_INFORMATION
        | FILE_CASE_SENSITIVE_INFORMATION
        | FILE_LINK_INFORMATION_EX => return Err(InfoError::NotSupported),
        _ => return Err(InfoError::InvalidInfoClass),
    };
    Ok(info)
}

// Settable classes Duet refuses with STATUS_NOT_SUPPORTED.
const FILE_OBJECT_ID_INFORMATION: u8 = 29;
const FILE_QUOTA_INFORMATION: u8 = 32;
const FILE_CASE_SENSITIVE_INFORMATION: u8 = 71;
const FILE_LINK_INFORMATION_EX: u8 = 72;

fn fixed(buf: &[u8], len: usize) -> Result<(), InfoError> {
    if buf.len() < len {
        Err(InfoError::LengthMismatch)
    } else {
        Ok(())
    }
}

/// LARGE_INTEGER sizes and offsets must not be negative.
fn non_negative(v: u64) -> Result<u64, InfoError> {
    if (v as i64) < 0 {
        Err(InfoError::InvalidParameter)
    } else {
        Ok(v)
    }
}

/// `file_name_length: u32 | file_name`: an even, non-zero length inside
/// the buffer, valid UTF-16.
fn name_field(r: &mut Reader<'_>) -> Result<String, InfoError> {
    let len = r.u32("file name length")? as usize;
    if len == 0 || !len.is_multiple_of(2) {
        return Err(InfoError::InvalidParameter);
    }
    let bytes = r.take(len, "file name")?;
    Ok(utf16le(bytes, "file name")?)
}

/// A parsed SET_INFO file-system information buffer ([MS-FSCC] 2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetFsInfo {
    /// FileFsLabelInformation (2), [MS-FSCC] 2.5.5:
    /// `{ volume_label_length: u32 | volume_label }`.
    Label(String),
    /// FileFsControlInformation (6), [MS-FSCC] 2.5.2.
    Control(FsControl),
    /// FileFsObjectIdInformation (8), [MS-FSCC] 2.5.6:
    /// `{ object_id: [u8; 16] | extended_info: [u8; 48] }`.
    ObjectId {
        object_id: [u8; 16],
        extended_info: [u8; 48],
    },
}

/// Parses the SET_INFO buffer of file-system information `class`.
/// InvalidInfoClass for classes that cannot be set.
pub fn parse_set_fs_info(class: u8, buf: &[u8]) -> Result<SetFsInfo, InfoError> {
    let mut r = Reader::new(buf);
    Ok(match class {
        fs_info_class::FILE_FS_LABEL_INFORMATION => {
            let len = r.u32("label length")? as usize;
            if !len.is_multiple_of(2) {
                return Err(InfoError::InvalidParameter);
            }
            SetFsInfo::Label(utf16le(r.take(len, "label")?, "label")?)
        }
        fs_info_class::FILE_FS_CONTROL_INFORMATION => {
            fixed(buf, FsControl::LEN)?;
            SetFsInfo::Control(FsControl {
                free_space_start_filtering: r.u64("fs control")?,
                free_space_threshold: r.u64("fs control")?,
                free_space_stop_filtering: r.u64("fs control")?,
                default_quota_threshold: r.u64("fs control")?,
                default_quota_limit: r.u64("fs control")?,
                file_system_control_flags: r.u32("fs control")?,
            })
        }
        fs_info_class::FILE_FS_OBJECT_ID_INFORMATION => {
            fixed(buf, 64)?;
            let object_id = r.guid("fs object id")?;
            let mut extended_info = [0u8; 48];
            extended_info.copy_from_slice(r.take(48, "fs object id")?);
            SetFsInfo::ObjectId {
                object_id,
                extended_info,
            }
        }
        _ => return Err(InfoError::InvalidInfoClass),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fscc::ea::encode_full_ea_list;
    use bytes::{BufMut, BytesMut};

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    /// Every strict prefix of a valid buffer must fail cleanly, never panic.
    fn all_prefixes_fail(class: u8, buf: &[u8]) {
        for n in 0..buf.len() {
            let e = parse_set_file_info(class, &buf[..n]);
            assert!(e.is_err(), "class {class} len {n} parsed: {e:?}");
        }
    }

    fn basic(times: [i64; 4], attrs: u32) -> Vec<u8> {
        let mut b = BytesMut::new();
        for t in times {
            b.put_i64_le(t);
        }
        b.put_u32_le(attrs);
        b.put_u32_le(0);
        b.to_vec()
    }

    #[test]
    fn basic_special_times() {
        let b = basic([0, -1, -2, 0x01D0_0000_0000_0000], 0);
        assert_eq!(
            parse_set_file_info(4, &b).unwrap(),
            SetFileInfo::Basic {
                creation_time: SetTime::Unchanged,
                last_access_time: SetTime::StopUpdating,
                last_write_time: SetTime::ResumeUpdating,
                change_time: SetTime::Set(0x01D0_0000_0000_0000),
                attributes: None,
            }
        );
        let b = basic([0, 0, 0, 0], 0x20);
        assert!(matches!(
            parse_set_file_info(4, &b).unwrap(),
            SetFileInfo::Basic {
                attributes: Some(0x20),
                ..
            }
        ));
        assert_eq!(
            parse_set_file_info(4, &basic([-3, 0, 0, 0], 0)),
            Err(InfoError::InvalidParameter)
        );
        all_prefixes_fail(4, &b);
        assert_eq!(
            parse_set_file_info(4, &b[..39]),
            Err(InfoError::LengthMismatch)
        );
    }

    fn rename(first: [u8; 8], root: u64, name: &str) -> Vec<u8> {
        let mut b = first.to_vec();
        b.extend_from_slice(&root.to_le_bytes());
        let n = utf16(name);
        b.extend_from_slice(&(n.len() as u32).to_le_bytes());
        b.extend_from_slice(&n);
        b
    }

    #[test]
    fn rename_and_link() {
        let b = rename([1, 0, 0, 0, 0, 0, 0, 0], 0, "dir\\new.txt");
        assert_eq!(
            parse_set_file_info(10, &b).unwrap(),
            SetFileInfo::Rename {
                replace_if_exists: true,
                flags: 1,
                name: "dir\\new.txt".into()
            }
        );
        assert_eq!(
            parse_set_file_info(11, &b).unwrap(),
            SetFileInfo::Link {
                replace_if_exists: true,
                name: "dir\\new.txt".into()
            }
        );
        all_prefixes_fail(10, &b);
        all_prefixes_fail(11, &b);
        // Trailing padding is ignored.
        let mut padded = b.clone();
        padded.extend_from_slice(&[0, 0]);
        assert!(parse_set_file_info(10, &padded).is_ok());
        // Non-zero RootDirectory, empty and odd names are invalid.
        assert_eq!(
            parse_set_file_info(10, &rename([0; 8], 5, "a")),
            Err(InfoError::InvalidParameter)
        );
        assert_eq!(
            parse_set_file_info(10, &rename([0; 8], 0, "")),
            Err(InfoError::InvalidParameter)
        );
        let mut odd = rename([0; 8], 0, "ab");
        odd[16] = 3;
        assert_eq!(
            parse_set_file_info(10, &odd),
            Err(InfoError::InvalidParameter)
        );
        // A name longer than the buffer is a length mismatch.
        let mut long = rename([0; 8], 0, "ab");
        long[16] = 40;
        assert_eq!(
            parse_set_file_info(10, &long),
            Err(InfoError::LengthMismatch)
        );
        // Unpaired surrogate.
        let mut bad = rename([0; 8], 0, "a");
        bad[20] = 0x00;
        bad[21] = 0xD8;
        assert_eq!(
            parse_set_file_info(10, &bad),
            Err(InfoError::InvalidParameter)
        );
    }

    #[test]
    fn rename_ex_flags() {
        let b = rename([3, 0, 0, 0, 0, 0, 0, 0], 0, "x");
        assert_eq!(
            parse_set_file_info(65, &b).unwrap(),
            SetFileInfo::Rename {
                replace_if_exists: true,
                flags: 3,
                name: "x".into()
            }
        );
        all_prefixes_fail(65, &b);
        let b = rename([0, 0x10, 0, 0, 0, 0, 0, 0], 0, "x");
        assert_eq!(
            parse_set_file_info(65, &b),
            Err(InfoError::InvalidParameter)
        );
    }

    #[test]
    fn small_fixed_classes() {
        assert_eq!(
            parse_set_file_info(13, &[1]).unwrap(),
            SetFileInfo::Disposition {
                delete_pending: true
            }
        );
        assert_eq!(
            parse_set_file_info(13, &[0]).unwrap(),
            SetFileInfo::Disposition {
                delete_pending: false
            }
        );
        all_prefixes_fail(13, &[1]);
        let f = (disposition_flags::DELETE | disposition_flags::POSIX_SEMANTICS).to_le_bytes();
        assert_eq!(
            parse_set_file_info(64, &f).unwrap(),
            SetFileInfo::DispositionEx { flags: 3 }
        );
        all_prefixes_fail(64, &f);
        assert_eq!(
            parse_set_file_info(64, &0x100u32.to_le_bytes()),
            Err(InfoError::InvalidParameter)
        );

        let v = 4096u64.to_le_bytes();
        assert_eq!(
            parse_set_file_info(14, &v).unwrap(),
            SetFileInfo::Position {
                current_byte_offset: 4096
            }
        );
        assert_eq!(
            parse_set_file_info(19, &v).unwrap(),
            SetFileInfo::Allocation {
                allocation_size: 4096
            }
        );
        assert_eq!(
            parse_set_file_info(20, &v).unwrap(),
            SetFileInfo::EndOfFile { end_of_file: 4096 }
        );
        assert_eq!(
            parse_set_file_info(39, &v).unwrap(),
            SetFileInfo::ValidDataLength {
                valid_data_length: 4096
            }
        );
        for c in [14, 19, 20, 39] {
            all_prefixes_fail(c, &v);
            assert_eq!(
                parse_set_file_info(c, &u64::MAX.to_le_bytes()),
                Err(InfoError::InvalidParameter)
            );
        }
        let m = mode::FILE_WRITE_THROUGH.to_le_bytes();
        assert_eq!(
            parse_set_file_info(16, &m).unwrap(),
            SetFileInfo::Mode { mode: 2 }
        );
        all_prefixes_fail(16, &m);
        assert_eq!(
            parse_set_file_info(16, &1u32.to_le_bytes()),
            Err(InfoError::InvalidParameter)
        );
    }

    #[test]
    fn short_name() {
        let mut b = 8u32.to_le_bytes().to_vec();
        b.extend_from_slice(&utf16("A~1X"));
        assert_eq!(
            parse_set_file_info(40, &b).unwrap(),
            SetFileInfo::ShortName {
                name: "A~1X".into()
            }
        );
        all_prefixes_fail(40, &b);
    }

    #[test]
    fn full_ea() {
        let eas = [FullEa {
            flags: 0,
            name: b"user.x",
            value: b"val",
        }];
        let mut b = BytesMut::new();
        encode_full_ea_list(&eas, &mut b).unwrap();
        assert_eq!(
            parse_set_file_info(15, &b).unwrap(),
            SetFileInfo::FullEa(eas.to_vec())
        );
        all_prefixes_fail(15, &b);
    }

    #[test]
    fn class_errors() {
        assert_eq!(
            parse_set_file_info(5, &[0; 64]),
            Err(InfoError::InvalidInfoClass)
        );
        assert_eq!(
            parse_set_file_info(250, &[0; 64]),
            Err(InfoError::InvalidInfoClass)
        );
        assert_eq!(
            parse_set_file_info(32, &[0; 64]),
            Err(InfoError::NotSupported)
        );
    }

    #[test]
    fn fs_set_classes() {
        let mut b = BytesMut::new();
        let c = FsControl {
            file_system_control_flags: 1,
            ..FsControl::default()
        };
        c.encode(&mut b);
        assert_eq!(parse_set_fs_info(6, &b).unwrap(), SetFsInfo::Control(c));
        for n in 0..b.len() {
            assert_eq!(
                parse_set_fs_info(6, &b[..n]),
                Err(InfoError::LengthMismatch)
            );
        }
        let oid = [7u8; 64];
        assert!(matches!(
            parse_set_fs_info(8, &oid).unwrap(),
            SetFsInfo::ObjectId { object_id, .. } if object_id == [7; 16]
        ));
        assert_eq!(
            parse_set_fs_info(8, &oid[..63]),
            Err(InfoError::LengthMismatch)
        );
        let mut l = 4u32.to_le_bytes().to_vec();
        l.extend_from_slice(&utf16("ab"));
        assert_eq!(
            parse_set_fs_info(2, &l).unwrap(),
            SetFsInfo::Label("ab".into())
        );
        for n in 0..l.len() {
            assert!(parse_set_fs_info(2, &l[..n]).is_err());
        }
        assert_eq!(parse_set_fs_info(1, &l), Err(InfoError::InvalidInfoClass));
    }
}
