//! QUERY_INFO file-system information classes ([MS-FSCC] 2.5), encoded
//! from an [`FsStat`] the server fills from `statvfs()` and its config.

use bytes::{BufMut, BytesMut};

use super::attributes::fs_info_class as class;
use super::InfoError;
use crate::codec::{put_utf16le, utf16_len};

/// What the server knows about the volume behind a share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsStat {
    /// Allocation units on the volume.
    pub total_units: u64,
    /// Free allocation units on the volume.
    pub free_units: u64,
    /// Free allocation units available to the caller (quota, reserve).
    pub caller_free_units: u64,
    pub sectors_per_unit: u32,
    pub bytes_per_sector: u32,
    /// The volume serial number. FileFsVolumeInformation carries its low
    /// 32 bits; FileIdInformation all 64.
    pub volume_serial: u64,
    pub volume_label: String,
    /// FILETIME.
    pub creation_time: u64,
    /// FileSystemAttributes of FileFsAttributeInformation: [`fs_attributes::DUET`],
    /// with FILE_SUPPORTS_EXTENDED_ATTRIBUTES where the share keeps EAs.
    pub attributes: u32,
}

/// FileSystemAttributes bits ([MS-FSCC] 2.5.1).
pub mod fs_attributes {
    pub const FILE_CASE_SENSITIVE_SEARCH: u32 = 0x0000_0001;
    pub const FILE_CASE_PRESERVED_NAMES: u32 = 0x0000_0002;
    pub const FILE_UNICODE_ON_DISK: u32 = 0x0000_0004;
    pub const FILE_PERSISTENT_ACLS: u32 = 0x0000_0008;
    pub const FILE_FILE_COMPRESSION: u32 = 0x0000_0010;
    pub const FILE_VOLUME_QUOTAS: u32 = 0x0000_0020;
    pub const FILE_SUPPORTS_SPARSE_FILES: u32 = 0x0000_0040;
    pub const FILE_SUPPORTS_REPARSE_POINTS: u32 = 0x0000_0080;
    pub const FILE_SUPPORTS_REMOTE_STORAGE: u32 = 0x0000_0100;
    pub const FILE_VOLUME_IS_COMPRESSED: u32 = 0x0000_8000;
    pub const FILE_SUPPORTS_OBJECT_IDS: u32 = 0x0001_0000;
    pub const FILE_SUPPORTS_ENCRYPTION: u32 = 0x0002_0000;
    pub const FILE_NAMED_STREAMS: u32 = 0x0004_0000;
    pub const FILE_READ_ONLY_VOLUME: u32 = 0x0008_0000;
    pub const FILE_SEQUENTIAL_WRITE_ONCE: u32 = 0x0010_0000;
    pub const FILE_SUPPORTS_TRANSACTIONS: u32 = 0x0020_0000;
    pub const FILE_SUPPORTS_HARD_LINKS: u32 = 0x0040_0000;
    pub const FILE_SUPPORTS_EXTENDED_ATTRIBUTES: u32 = 0x0080_0000;
    pub const FILE_SUPPORTS_OPEN_BY_FILE_ID: u32 = 0x0100_0000;
    pub const FILE_SUPPORTS_USN_JOURNAL: u32 = 0x0200_0000;
    pub const FILE_SUPPORTS_INTEGRITY_STREAMS: u32 = 0x0400_0000;
    pub const FILE_SUPPORTS_BLOCK_REFCOUNTING: u32 = 0x0800_0000;
    pub const FILE_SUPPORTS_SPARSE_VDL: u32 = 0x1000_0000;

    /// What Duet claims: names keep their case and can be searched with
    /// it (FILE_CASE_SENSITIVE_SEARCH, as NTFS and smbd report; Duet's
    /// lookups ignore case unless the share is case-sensitive), names are
    /// Unicode, files carry (synthesised, persistent) security
    /// descriptors, and files can be sparse (FSCTL_SET_SPARSE,
    /// QUERY_ALLOCATED_RANGES, SET_ZERO_DATA) and symbolic links
    /// (reparse points of IO_REPARSE_TAG_SYMLINK only, kept as POSIX
    /// symlinks). Nothing about compression or quotas, which Duet does
    /// not implement. A
    /// share whose file system has user xattrs adds
    /// FILE_SUPPORTS_EXTENDED_ATTRIBUTES and FILE_NAMED_STREAMS (EAs and
    /// streams are kept there).
    pub const DUET: u32 = FILE_CASE_SENSITIVE_SEARCH
        | FILE_CASE_PRESERVED_NAMES
        | FILE_UNICODE_ON_DISK
        | FILE_PERSISTENT_ACLS
        | FILE_SUPPORTS_SPARSE_FILES
        | FILE_SUPPORTS_REPARSE_POINTS;
}

/// Device characteristics ([MS-FSCC] 2.5.10).
pub mod device_characteristics {
    pub const FILE_REMOVABLE_MEDIA: u32 = 0x0000_0001;
    pub const FILE_READ_ONLY_DEVICE: u32 = 0x0000_0002;
    pub const FILE_FLOPPY_DISKETTE: u32 = 0x0000_0004;
    pub const FILE_WRITE_ONCE_MEDIA: u32 = 0x0000_0008;
    pub const FILE_REMOTE_DEVICE: u32 = 0x0000_0010;
    pub const FILE_DEVICE_IS_MOUNTED: u32 = 0x0000_0020;
    pub const FILE_VIRTUAL_VOLUME: u32 = 0x0000_0040;
    pub const FILE_DEVICE_SECURE_OPEN: u32 = 0x0000_0100;
}

/// DeviceType of a disk ([MS-FSCC] 2.5.10).
pub const FILE_DEVICE_DISK: u32 = 0x0000_0007;

/// The file system name reported in FileFsAttributeInformation. Windows
/// clients gate features (ACL editor, EAs, large MTU copies) on "NTFS".
pub const FS_NAME: &str = "NTFS";

/// MaximumComponentNameLength reported in FileFsAttributeInformation.
pub const MAX_COMPONENT_NAME_LENGTH: u32 = 255;

/// FileFsSectorSizeInformation flags ([MS-FSCC] 2.5.7).
pub mod sector_size_flags {
    pub const SSINFO_FLAGS_ALIGNED_DEVICE: u32 = 0x0000_0001;
    pub const SSINFO_FLAGS_PARTITION_ALIGNED_ON_DEVICE: u32 = 0x0000_0002;
    pub const SSINFO_FLAGS_NO_SEEK_PENALTY: u32 = 0x0000_0004;
    pub const SSINFO_FLAGS_TRIM_ENABLED: u32 = 0x0000_0008;
}

/// Minimum output length for a file-system query class, or `None` if Duet
/// does not answer it. Volume 18 (+ label), Size 24, Device 8, Attribute
/// 12 (+ name), Control 48, FullSize 32, ObjectId 64, SectorSize 28.
pub fn fs_fixed_size(class: u8) -> Option<usize> {
    Some(match class {
        class::FILE_FS_VOLUME_INFORMATION => 18,
        class::FILE_FS_SIZE_INFORMATION => 24,
        class::FILE_FS_DEVICE_INFORMATION => 8,
        class::FILE_FS_ATTRIBUTE_INFORMATION => 12,
        class::FILE_FS_CONTROL_INFORMATION => 48,
        class::FILE_FS_FULL_SIZE_INFORMATION => 32,
        class::FILE_FS_OBJECT_ID_INFORMATION => 64,
        class::FILE_FS_SECTOR_SIZE_INFORMATION => 28,
        _ => return None,
    })
}

/// Fits an encoded file-system class into OutputBufferLength, as
/// [`super::truncate_output`] does for file classes: LengthMismatch below
/// the fixed part, else cut and report whether anything was cut
/// (STATUS_BUFFER_OVERFLOW; only Volume and Attribute can be cut).
pub fn truncate_fs_output(
    class: u8,
    out: &mut BytesMut,
    max_len: usize,
) -> Result<bool, InfoError> {
    super::file_info::fit_output(fs_fixed_size(class), out, max_len)
}

/// Appends the QUERY_INFO answer for file-system information `class`.
/// InvalidInfoClass for numbers that are not query classes (including
/// FileFsLabelInformation, which is set-only); NotSupported for
/// FileFsDriverPathInformation and FileFsVolumeFlagsInformation.
pub fn encode_fs_info(class: u8, fs: &FsStat, out: &mut BytesMut) -> Result<(), InfoError> {
    match class {
        class::FILE_FS_VOLUME_INFORMATION => {
            // [MS-FSCC] 2.5.9. Format: { volume_creation_time: u64 |
            //   volume_serial_number: u32 | volume_label_length: u32 |
            //   supports_objects: u8 | _reserved: u8 | volume_label }
            let len = u32::try_from(utf16_len(&fs.volume_label))
                .map_err(|_| InfoError::InvalidParameter)?;
            out.put_u64_le(fs.creation_time);
            out.put_u32_le(fs.volume_serial as u32);
            out.put_u32_le(len);
            out.put_u8(0);
            out.put_u8(0);
            put_utf16le(&fs.volume_label, out);
        }
        class::FILE_FS_SIZE_INFORMATION => {
            // [MS-FSCC] 2.5.8. Format: { total_allocation_units: u64 |
            //   available_allocation_units: u64 |
            //   sectors_per_allocation_unit: u32 | bytes_per_sector: u32 }
            out.put_u64_le(fs.total_units);
            out.put_u64_le(fs.caller_free_units);
            out.put_u32_le(fs.sectors_per_unit);
            out.put_u32_le(fs.bytes_per_sector);
        }
        class::FILE_FS_DEVICE_INFORMATION => {
            // [MS-FSCC] 2.5.10. Format: { device_type: u32 | characteristics: u32 }
            out.put_u32_le(FILE_DEVICE_DISK);
            out.put_u32_le(device_characteristics::FILE_DEVICE_IS_MOUNTED);
        }
        class::FILE_FS_ATTRIBUTE_INFORMATION => {
            // [MS-FSCC] 2.5.1. Format: { file_system_attributes: u32 |
            //   maximum_component_name_length: u32 |
            //   file_system_name_length: u32 | file_system_name }
            out.put_u32_le(fs.attributes);
            out.put_u32_le(MAX_COMPONENT_NAME_LENGTH);
            out.put_u32_le(utf16_len(FS_NAME) as u32);
            put_utf16le(FS_NAME, out);
        }
        class::FILE_FS_CONTROL_INFORMATION => FsControl::default().encode(out),
        class::FILE_FS_FULL_SIZE_INFORMATION => {
            // [MS-FSCC] 2.5.4. Format: { total_allocation_units: u64 |
            //   caller_available_allocation_units: u64 |
            //   actual_available_allocation_units: u64 |
            //   sectors_per_allocation_unit: u32 | bytes_per_sector: u32 }
            out.put_u64_le(fs.total_units);
            out.put_u64_le(fs.caller_free_units);
            out.put_u64_le(fs.free_units);
            out.put_u32_le(fs.sectors_per_unit);
            out.put_u32_le(fs.bytes_per_sector);
        }
        class::FILE_FS_OBJECT_ID_INFORMATION => {
            // [MS-FSCC] 2.5.6. Format: { object_id: [u8; 16] | extended_info: [u8; 48] }
            out.put_slice(&volume_object_id(fs.volume_serial));
            out.put_bytes(0, 48);
        }
        class::FILE_FS_SECTOR_SIZE_INFORMATION => {
            // [MS-FSCC] 2.5.7. Format: { logical_bytes_per_sector: u32 |
            //   physical_bytes_per_sector_for_atomicity: u32 |
            //   physical_bytes_per_sector_for_performance: u32 |
            //   file_system_effective_physical_bytes_per_sector_for_atomicity: u32 |
            //   flags: u32 | byte_offset_for_sector_alignment: u32 |
            //   byte_offset_for_partition_alignment: u32 }
            let bps = fs.bytes_per_sector;
            out.put_u32_le(bps);
            out.put_u32_le(bps);
            out.put_u32_le(bps);
            out.put_u32_le(bps);
            out.put_u32_le(
                sector_size_flags::SSINFO_FLAGS_ALIGNED_DEVICE
                    | sector_size_flags::SSINFO_FLAGS_PARTITION_ALIGNED_ON_DEVICE,
            );
            out.put_u32_le(0);
            out.put_u32_le(0);
        }
        class::FILE_FS_DRIVER_PATH_INFORMATION | class::FILE_FS_VOLUME_FLAGS_INFORMATION => {
            return Err(InfoError::NotSupported)
        }
        _ => return Err(InfoError::InvalidInfoClass),
    }
    Ok(())
}

/// The volume's object id: its serial number, zero-extended to 16 bytes.
pub fn volume_object_id(volume_serial: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&volume_serial.to_le_bytes());
    id
}

/// FILE_FS_CONTROL_INFORMATION ([MS-FSCC] 2.5.2), 48 bytes: quota and
/// content-indexing settings. Duet answers with quotas disabled and
/// accepts (and ignores) sets.
///
/// Format: `{ free_space_start_filtering: u64 | free_space_threshold: u64 |
/// free_space_stop_filtering: u64 | default_quota_threshold: u64 |
/// default_quota_limit: u64 | file_system_control_flags: u32 | _padding: u32 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsControl {
    pub free_space_start_filtering: u64,
    pub free_space_threshold: u64,
    pub free_space_stop_filtering: u64,
    pub default_quota_threshold: u64,
    pub default_quota_limit: u64,
    pub file_system_control_flags: u32,
}

impl Default for FsControl {
    /// No filtering, no default quota (-1 = no limit), quotas off.
    fn default() -> Self {
        FsControl {
            free_space_start_filtering: 0,
            free_space_threshold: 0,
            free_space_stop_filtering: 0,
            default_quota_threshold: u64::MAX,
            default_quota_limit: u64::MAX,
            file_system_control_flags: 0,
        }
    }
}

impl FsControl {
    pub const LEN: usize = 48;

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u64_le(self.free_space_start_filtering);
        out.put_u64_le(self.free_space_threshold);
        out.put_u64_le(self.free_space_stop_filtering);
        out.put_u64_le(self.default_quota_threshold);
        out.put_u64_le(self.default_quota_limit);
        out.put_u32_le(self.file_system_control_flags);
        out.put_u32_le(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> FsStat {
        FsStat {
            total_units: 1000,
            free_units: 600,
            caller_free_units: 500,
            sectors_per_unit: 8,
            bytes_per_sector: 512,
            volume_serial: 0x1122_3344_5566_7788,
            volume_label: "data".into(),
            creation_time: 0xABCD,
            attributes: fs_attributes::DUET,
        }
    }
    fn enc(class: u8) -> BytesMut {
        let mut out = BytesMut::new();
        encode_fs_info(class, &fs(), &mut out).unwrap();
        out
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn sizes() {
        for (c, n) in [
            (1, 18 + 8),
            (3, 24),
            (4, 8),
            (5, 12 + 8),
            (6, 48),
            (7, 32),
            (8, 64),
            (11, 28),
        ] {
            assert_eq!(enc(c).len(), n, "class {c}");
            assert!(fs_fixed_size(c).unwrap() <= n);
        }
    }

    #[test]
    fn volume_layout() {
        let b = enc(class::FILE_FS_VOLUME_INFORMATION);
        assert_eq!(u64_at(&b, 0), 0xABCD);
        assert_eq!(u32_at(&b, 8), 0x5566_7788);
        assert_eq!(u32_at(&b, 12), 8);
        assert_eq!(b[16], 0);
        assert_eq!(&b[18..], b"d\0a\0t\0a\0");
    }

    #[test]
    fn size_layouts() {
        let b = enc(class::FILE_FS_SIZE_INFORMATION);
        assert_eq!(
            (u64_at(&b, 0), u64_at(&b, 8), u32_at(&b, 16), u32_at(&b, 20)),
            (1000, 500, 8, 512)
        );
        let b = enc(class::FILE_FS_FULL_SIZE_INFORMATION);
        assert_eq!(
            (u64_at(&b, 0), u64_at(&b, 8), u64_at(&b, 16)),
            (1000, 500, 600)
        );
        assert_eq!((u32_at(&b, 24), u32_at(&b, 28)), (8, 512));
    }

    #[test]
    fn device_attribute_sector_layouts() {
        let b = enc(class::FILE_FS_DEVICE_INFORMATION);
        assert_eq!(u32_at(&b, 0), FILE_DEVICE_DISK);
        let b = enc(class::FILE_FS_ATTRIBUTE_INFORMATION);
        assert_eq!(u32_at(&b, 0), fs_attributes::DUET);
        assert_eq!(u32_at(&b, 4), 255);
        assert_eq!(u32_at(&b, 8), 8);
        assert_eq!(&b[12..], b"N\0T\0F\0S\0");
        let b = enc(class::FILE_FS_SECTOR_SIZE_INFORMATION);
        assert_eq!(u32_at(&b, 0), 512);
        assert_eq!(u32_at(&b, 16), 3);
        let b = enc(class::FILE_FS_OBJECT_ID_INFORMATION);
        assert_eq!(u64_at(&b, 0), 0x1122_3344_5566_7788);
        let b = enc(class::FILE_FS_CONTROL_INFORMATION);
        assert_eq!(u64_at(&b, 32), u64::MAX);
    }

    #[test]
    fn bad_classes_and_truncation() {
        let mut out = BytesMut::new();
        assert_eq!(
            encode_fs_info(2, &fs(), &mut out),
            Err(InfoError::InvalidInfoClass)
        );
        assert_eq!(
            encode_fs_info(99, &fs(), &mut out),
            Err(InfoError::InvalidInfoClass)
        );
        assert_eq!(
            encode_fs_info(9, &fs(), &mut out),
            Err(InfoError::NotSupported)
        );
        let mut b = enc(class::FILE_FS_VOLUME_INFORMATION);
        assert_eq!(
            truncate_fs_output(1, &mut b, 17),
            Err(InfoError::LengthMismatch)
        );
        assert_eq!(truncate_fs_output(1, &mut b, 20), Ok(true));
        assert_eq!(u32_at(&b, 12), 8);
        assert_eq!(truncate_fs_output(1, &mut b, 100), Ok(false));
    }
}
