//! Numbers shared by the information classes: file attributes
//! ([MS-FSCC] 2.6), information class numbers ([MS-FSCC] 2.4, 2.5) and the
//! file access mask bits ([MS-SMB2] 2.2.13.1.1, [MS-DTYP] 2.4.3).

/// File attribute bits ([MS-FSCC] 2.6, "File Attributes").
pub mod file_attributes {
    pub const READONLY: u32 = 0x0000_0001;
    pub const HIDDEN: u32 = 0x0000_0002;
    pub const SYSTEM: u32 = 0x0000_0004;
    pub const DIRECTORY: u32 = 0x0000_0010;
    pub const ARCHIVE: u32 = 0x0000_0020;
    pub const NORMAL: u32 = 0x0000_0080;
    pub const TEMPORARY: u32 = 0x0000_0100;
    pub const SPARSE_FILE: u32 = 0x0000_0200;
    pub const REPARSE_POINT: u32 = 0x0000_0400;
    pub const COMPRESSED: u32 = 0x0000_0800;
    pub const OFFLINE: u32 = 0x0000_1000;
    pub const NOT_CONTENT_INDEXED: u32 = 0x0000_2000;
    pub const ENCRYPTED: u32 = 0x0000_4000;
    pub const INTEGRITY_STREAM: u32 = 0x0000_8000;
    pub const NO_SCRUB_DATA: u32 = 0x0002_0000;
    pub const RECALL_ON_OPEN: u32 = 0x0004_0000;
    pub const PINNED: u32 = 0x0008_0000;
    pub const UNPINNED: u32 = 0x0010_0000;
    pub const RECALL_ON_DATA_ACCESS: u32 = 0x0040_0000;

    /// Every bit a client may set through FileBasicInformation.
    pub const SETTABLE: u32 =
        READONLY | HIDDEN | SYSTEM | ARCHIVE | NORMAL | TEMPORARY | OFFLINE | NOT_CONTENT_INDEXED;
}

/// File information class numbers ([MS-FSCC] 2.4), in the specification's
/// numeric order. Used by QUERY_DIRECTORY, QUERY_INFO and SET_INFO with
/// InfoType SMB2_0_INFO_FILE.
pub mod file_info_class {
    pub const FILE_DIRECTORY_INFORMATION: u8 = 1;
    pub const FILE_FULL_DIRECTORY_INFORMATION: u8 = 2;
    pub const FILE_BOTH_DIRECTORY_INFORMATION: u8 = 3;
    pub const FILE_BASIC_INFORMATION: u8 = 4;
    pub const FILE_STANDARD_INFORMATION: u8 = 5;
    pub const FILE_INTERNAL_INFORMATION: u8 = 6;
    pub const FILE_EA_INFORMATION: u8 = 7;
    pub const FILE_ACCESS_INFORMATION: u8 = 8;
    pub const FILE_NAME_INFORMATION: u8 = 9;
    pub const FILE_RENAME_INFORMATION: u8 = 10;
    pub const FILE_LINK_INFORMATION: u8 = 11;
    pub const FILE_NAMES_INFORMATION: u8 = 12;
    pub const FILE_DISPOSITION_INFORMATION: u8 = 13;
    pub const FILE_POSITION_INFORMATION: u8 = 14;
    pub const FILE_FULL_EA_INFORMATION: u8 = 15;
    pub const FILE_MODE_INFORMATION: u8 = 16;
    pub const FILE_ALIGNMENT_INFORMATION: u8 = 17;
    pub const FILE_ALL_INFORMATION: u8 = 18;
    pub const FILE_ALLOCATION_INFORMATION: u8 = 19;
    pub const FILE_END_OF_FILE_INFORMATION: u8 = 20;
    pub const FILE_ALTERNATE_NAME_INFORMATION: u8 = 21;
    pub const FILE_STREAM_INFORMATION: u8 = 22;
    pub const FILE_PIPE_INFORMATION: u8 = 23;
    pub const FILE_PIPE_LOCAL_INFORMATION: u8 = 24;
    pub const FILE_PIPE_REMOTE_INFORMATION: u8 = 25;
    pub const FILE_COMPRESSION_INFORMATION: u8 = 28;
    pub const FILE_NETWORK_OPEN_INFORMATION: u8 = 34;
    pub const FILE_ATTRIBUTE_TAG_INFORMATION: u8 = 35;
    pub const FILE_ID_BOTH_DIRECTORY_INFORMATION: u8 = 37;
    pub const FILE_ID_FULL_DIRECTORY_INFORMATION: u8 = 38;
    pub const FILE_VALID_DATA_LENGTH_INFORMATION: u8 = 39;
    pub const FILE_SHORT_NAME_INFORMATION: u8 = 40;
    pub const FILE_NORMALIZED_NAME_INFORMATION: u8 = 48;
    pub const FILE_ID_INFORMATION: u8 = 59;
    pub const FILE_ID_EXTD_DIRECTORY_INFORMATION: u8 = 60;
    pub const FILE_DISPOSITION_INFORMATION_EX: u8 = 64;
    pub const FILE_RENAME_INFORMATION_EX: u8 = 65;
    pub const FILE_ID_64_EXTD_DIRECTORY_INFORMATION: u8 = 78;
    pub const FILE_ID_ALL_EXTD_DIRECTORY_INFORMATION: u8 = 80;
}

/// File system information class numbers ([MS-FSCC] 2.5). Used by
/// QUERY_INFO and SET_INFO with InfoType SMB2_0_INFO_FILESYSTEM.
pub mod fs_info_class {
    pub const FILE_FS_VOLUME_INFORMATION: u8 = 1;
    pub const FILE_FS_LABEL_INFORMATION: u8 = 2;
    pub const FILE_FS_SIZE_INFORMATION: u8 = 3;
    pub const FILE_FS_DEVICE_INFORMATION: u8 = 4;
    pub const FILE_FS_ATTRIBUTE_INFORMATION: u8 = 5;
    pub const FILE_FS_CONTROL_INFORMATION: u8 = 6;
    pub const FILE_FS_FULL_SIZE_INFORMATION: u8 = 7;
    pub const FILE_FS_OBJECT_ID_INFORMATION: u8 = 8;
    pub const FILE_FS_DRIVER_PATH_INFORMATION: u8 = 9;
    pub const FILE_FS_VOLUME_FLAGS_INFORMATION: u8 = 10;
    pub const FILE_FS_SECTOR_SIZE_INFORMATION: u8 = 11;
}

/// File and directory access mask bits ([MS-SMB2] 2.2.13.1.1 and
/// 2.2.13.1.2, [MS-DTYP] 2.4.3 ACCESS_MASK).
pub mod access {
    pub const FILE_READ_DATA: u32 = 0x0000_0001;
    /// FILE_LIST_DIRECTORY on a directory.
    pub const FILE_WRITE_DATA: u32 = 0x0000_0002;
    /// FILE_ADD_FILE on a directory.
    pub const FILE_APPEND_DATA: u32 = 0x0000_0004;
    /// FILE_ADD_SUBDIRECTORY on a directory.
    pub const FILE_READ_EA: u32 = 0x0000_0008;
    pub const FILE_WRITE_EA: u32 = 0x0000_0010;
    /// FILE_TRAVERSE on a directory.
    pub const FILE_EXECUTE: u32 = 0x0000_0020;
    pub const FILE_DELETE_CHILD: u32 = 0x0000_0040;
    pub const FILE_READ_ATTRIBUTES: u32 = 0x0000_0080;
    pub const FILE_WRITE_ATTRIBUTES: u32 = 0x0000_0100;
    pub const DELETE: u32 = 0x0001_0000;
    pub const READ_CONTROL: u32 = 0x0002_0000;
    pub const WRITE_DAC: u32 = 0x0004_0000;
    pub const WRITE_OWNER: u32 = 0x0008_0000;
    pub const SYNCHRONIZE: u32 = 0x0010_0000;
    pub const ACCESS_SYSTEM_SECURITY: u32 = 0x0100_0000;
    pub const MAXIMUM_ALLOWED: u32 = 0x0200_0000;
    pub const GENERIC_ALL: u32 = 0x1000_0000;
    pub const GENERIC_EXECUTE: u32 = 0x2000_0000;
    pub const GENERIC_WRITE: u32 = 0x4000_0000;
    pub const GENERIC_READ: u32 = 0x8000_0000;

    /// What GENERIC_READ maps to on a file.
    pub const FILE_GENERIC_READ: u32 =
        READ_CONTROL | FILE_READ_DATA | FILE_READ_ATTRIBUTES | FILE_READ_EA | SYNCHRONIZE;
    /// What GENERIC_WRITE maps to on a file.
    pub const FILE_GENERIC_WRITE: u32 = READ_CONTROL
        | FILE_WRITE_DATA
        | FILE_WRITE_ATTRIBUTES
        | FILE_WRITE_EA
        | FILE_APPEND_DATA
        | SYNCHRONIZE;
    /// What GENERIC_EXECUTE maps to on a file.
    pub const FILE_GENERIC_EXECUTE: u32 =
        READ_CONTROL | FILE_READ_ATTRIBUTES | FILE_EXECUTE | SYNCHRONIZE;
    /// What GENERIC_ALL maps to on a file.
    pub const FILE_ALL_ACCESS: u32 = 0x001F_01FF;

    // Directory names of the same bits ([MS-SMB2] 2.2.13.1.2).
    pub const FILE_LIST_DIRECTORY: u32 = FILE_READ_DATA;
    pub const FILE_ADD_FILE: u32 = FILE_WRITE_DATA;
    pub const FILE_ADD_SUBDIRECTORY: u32 = FILE_APPEND_DATA;
    pub const FILE_TRAVERSE: u32 = FILE_EXECUTE;
}

#[cfg(test)]
mod tests {
    use super::access::*;

    #[test]
    fn generic_mappings_have_the_usual_values() {
        assert_eq!(FILE_GENERIC_READ, 0x0012_0089);
        assert_eq!(FILE_GENERIC_WRITE, 0x0012_0116);
        assert_eq!(FILE_GENERIC_EXECUTE, 0x0012_00A0);
    }
}
