//! QUERY_INFO file information classes ([MS-FSCC] 2.4), encoded from a
//! [`FileStat`] and a little per-open state ([`FileInfoCtx`]).
//!
//! Output sizing: the server checks the request's OutputBufferLength
//! against [`fixed_size`] (below it: STATUS_INFO_LENGTH_MISMATCH), encodes
//! the whole class, then calls [`truncate_output`]; if that cut anything
//! (only the variable-size classes can be cut) it answers
//! STATUS_BUFFER_OVERFLOW with the truncated bytes.

use bytes::{BufMut, BytesMut};

use super::attributes::file_info_class as class;
use super::{FileStat, InfoError};
use crate::codec::{put_utf16le, utf16_len};

/// Per-open state that some classes report besides the file's [`FileStat`].
#[derive(Debug, Clone, Copy)]
pub struct FileInfoCtx<'a> {
    pub stat: &'a FileStat,
    /// The path relative to the share root with a leading backslash
    /// (`\dir\file.txt`), as Windows returns for FileNameInformation.
    pub name: &'a str,
    /// The access mask granted at open (FileAccessInformation).
    pub access_mask: u32,
    /// CurrentByteOffset (FilePositionInformation).
    pub position: u64,
    /// The open's mode flags, [`mode`] (FileModeInformation).
    pub mode: u32,
    /// Volume serial number (FileIdInformation).
    pub volume_serial: u64,
}

/// FileModeInformation bits ([MS-FSCC] 2.4, FileModeInformation).
pub mod mode {
    pub const FILE_WRITE_THROUGH: u32 = 0x0000_0002;
    pub const FILE_SEQUENTIAL_ONLY: u32 = 0x0000_0004;
    pub const FILE_NO_INTERMEDIATE_BUFFERING: u32 = 0x0000_0008;
    pub const FILE_SYNCHRONOUS_IO_ALERT: u32 = 0x0000_0010;
    pub const FILE_SYNCHRONOUS_IO_NONALERT: u32 = 0x0000_0020;
    pub const FILE_DELETE_ON_CLOSE: u32 = 0x0000_1000;
    /// Every bit FileModeInformation may carry.
    pub const VALID: u32 = FILE_WRITE_THROUGH
        | FILE_SEQUENTIAL_ONLY
        | FILE_NO_INTERMEDIATE_BUFFERING
        | FILE_SYNCHRONOUS_IO_ALERT
        | FILE_SYNCHRONOUS_IO_NONALERT
        | FILE_DELETE_ON_CLOSE;
}

/// The single data stream of a regular file in FileStreamInformation.
pub const DEFAULT_STREAM_NAME: &str = "::$DATA";

/// The minimum output length for a query class (its fixed part, up to any
/// variable name), or `None` if Duet does not answer queries of `class`.
///
/// Fixed classes: Basic 40, Standard 24, Internal 8, Ea 4, Access 4,
/// Position 8, Mode 4, Alignment 4, Compression 16, NetworkOpen 56,
/// AttributeTag 8, Id 24. Variable: Name/NormalizedName/AlternateName 4,
/// All 100, Stream 24 (0 entries is legal for a directory).
pub fn fixed_size(class: u8) -> Option<usize> {
    Some(match class {
        class::FILE_BASIC_INFORMATION => 40,
        class::FILE_STANDARD_INFORMATION => 24,
        class::FILE_INTERNAL_INFORMATION => 8,
        class::FILE_EA_INFORMATION => 4,
        class::FILE_ACCESS_INFORMATION => 4,
        class::FILE_NAME_INFORMATION
        | class::FILE_NORMALIZED_NAME_INFORMATION
        | class::FILE_ALTERNATE_NAME_INFORMATION => 4,
        class::FILE_POSITION_INFORMATION => 8,
        class::FILE_MODE_INFORMATION => 4,
        class::FILE_ALIGNMENT_INFORMATION => 4,
        class::FILE_ALL_INFORMATION => 100,
        class::FILE_STREAM_INFORMATION => 24,
        class::FILE_COMPRESSION_INFORMATION => 16,
        class::FILE_NETWORK_OPEN_INFORMATION => 56,
        class::FILE_ATTRIBUTE_TAG_INFORMATION => 8,
        class::FILE_ID_INFORMATION => 24,
        _ => return None,
    })
}

/// True for the classes whose length depends on a name or a list; only
/// these may be truncated with STATUS_BUFFER_OVERFLOW.
pub fn is_variable_size(class: u8) -> bool {
    matches!(
        class,
        class::FILE_NAME_INFORMATION
            | class::FILE_NORMALIZED_NAME_INFORMATION
            | class::FILE_ALTERNATE_NAME_INFORMATION
            | class::FILE_ALL_INFORMATION
            | class::FILE_STREAM_INFORMATION
    )
}

/// Fits an encoded class into the client's OutputBufferLength.
/// LengthMismatch if `max_len` is below [`fixed_size`]; otherwise cuts
/// `out` to `max_len` and returns true if anything was cut (the server
/// then answers STATUS_BUFFER_OVERFLOW).
pub fn truncate_output(class: u8, out: &mut BytesMut, max_len: usize) -> Result<bool, InfoError> {
    fit_output(fixed_size(class), out, max_len)
}

/// The rule both query kinds share: InvalidInfoClass without a fixed size,
/// LengthMismatch below it, else cut `out` to `max_len` (true if cut).
pub(crate) fn fit_output(fixed: Option<usize>, out: &mut BytesMut, max_len: usize) -> Result<bool, InfoError> {
    let fixed = fixed.ok_or(InfoError::InvalidInfoClass)?;
    if max_len < fixed {
        return Err(InfoError::LengthMismatch);
    }
    if out.len() > max_len {
        out.truncate(max_len);
        return Ok(true);
    }
    Ok(false)
}

/// Appends the QUERY_INFO answer for file information `class` to `out`.
///
/// InvalidInfoClass for numbers that are not query classes (including
/// set-only classes such as FileRenameInformation); NotSupported for query
/// classes Duet does not serve (pipes; FileFullEaInformation is answered
/// from [`super::ea`]); NoShortName for FileAlternateNameInformation when
/// the last path component is not an 8.3 name.
pub fn encode_file_info(class: u8, ctx: &FileInfoCtx, out: &mut BytesMut) -> Result<(), InfoError> {
    let stat = ctx.stat;
    match class {
        class::FILE_BASIC_INFORMATION => put_basic(stat, out),
        class::FILE_STANDARD_INFORMATION => put_standard(stat, out),
        class::FILE_INTERNAL_INFORMATION => out.put_u64_le(stat.file_id),
        class::FILE_EA_INFORMATION => out.put_u32_le(stat.ea_size),
        class::FILE_ACCESS_INFORMATION => out.put_u32_le(ctx.access_mask),
        class::FILE_NAME_INFORMATION | class::FILE_NORMALIZED_NAME_INFORMATION => {
            put_name(ctx.name, out)?
        }
        class::FILE_POSITION_INFORMATION => out.put_u64_le(ctx.position),
        class::FILE_MODE_INFORMATION => out.put_u32_le(ctx.mode),
        class::FILE_ALIGNMENT_INFORMATION => out.put_u32_le(FILE_BYTE_ALIGNMENT),
        class::FILE_ALL_INFORMATION => {
            // Format: { basic (40) | standard (24) | internal (8) | ea (4) |
            //           access (4) | position (8) | mode (4) | alignment (4) |
            //           name_length: u32 | name }
            put_basic(stat, out);
            put_standard(stat, out);
            out.put_u64_le(stat.file_id);
            out.put_u32_le(stat.ea_size);
            out.put_u32_le(ctx.access_mask);
            out.put_u64_le(ctx.position);
            out.put_u32_le(ctx.mode);
            out.put_u32_le(FILE_BYTE_ALIGNMENT);
            put_name(ctx.name, out)?;
        }
        class::FILE_ALTERNATE_NAME_INFORMATION => {
            let last = ctx.name.rsplit('\\').next().unwrap_or("");
            if !is_8dot3(last) {
                return Err(InfoError::NoShortName);
            }
            put_name(&last.to_ascii_uppercase(), out)?;
        }
        class::FILE_STREAM_INFORMATION => put_streams(stat, out),
        class::FILE_COMPRESSION_INFORMATION => {
            // Format: { compressed_file_size: u64 | compression_format: u16 |
            //           compression_unit_shift: u8 | chunk_shift: u8 |
            //           cluster_shift: u8 | _reserved: [u8; 3] }
            out.put_u64_le(stat.end_of_file);
            out.put_u16_le(COMPRESSION_FORMAT_NONE);
            out.put_bytes(0, 6);
        }
        class::FILE_NETWORK_OPEN_INFORMATION => {
            // Format: { creation_time | last_access_time | last_write_time |
            //           change_time | allocation_size | end_of_file: u64 |
            //           file_attributes: u32 | _reserved: u32 }
            put_times(stat, out);
            out.put_u64_le(stat.allocation_size);
            out.put_u64_le(stat.end_of_file);
            out.put_u32_le(stat.wire_attributes());
            out.put_u32_le(0);
        }
        class::FILE_ATTRIBUTE_TAG_INFORMATION => {
            // Format: { file_attributes: u32 | reparse_tag: u32 }
            out.put_u32_le(stat.wire_attributes());
            out.put_u32_le(stat.reparse_tag);
        }
        class::FILE_ID_INFORMATION => {
            // Format: { volume_serial_number: u64 | file_id: [u8; 16] }
            out.put_u64_le(ctx.volume_serial);
            out.put_slice(&stat.file_id_128());
        }
        class::FILE_FULL_EA_INFORMATION
        | class::FILE_PIPE_INFORMATION
        | class::FILE_PIPE_LOCAL_INFORMATION
        | class::FILE_PIPE_REMOTE_INFORMATION => return Err(InfoError::NotSupported),
        _ => return Err(InfoError::InvalidInfoClass),
    }
    Ok(())
}

/// FileAlignmentInformation: FILE_BYTE_ALIGNMENT, no alignment required.
const FILE_BYTE_ALIGNMENT: u32 = 0;
/// FileCompressionInformation: COMPRESSION_FORMAT_NONE.
const COMPRESSION_FORMAT_NONE: u16 = 0;

fn put_times(stat: &FileStat, out: &mut BytesMut) {
    out.put_u64_le(stat.creation_time);
    out.put_u64_le(stat.last_access_time);
    out.put_u64_le(stat.last_write_time);
    out.put_u64_le(stat.change_time);
}

/// FileBasicInformation ([MS-FSCC] 2.4.7), 40 bytes.
/// Format: `{ creation_time | last_access_time | last_write_time |
/// change_time: u64 | file_attributes: u32 | _reserved: u32 }`
fn put_basic(stat: &FileStat, out: &mut BytesMut) {
    put_times(stat, out);
    out.put_u32_le(stat.wire_attributes());
    out.put_u32_le(0);
}

/// FileStandardInformation ([MS-FSCC] 2.4, FileStandardInformation), 24 bytes.
/// Format: `{ allocation_size: u64 | end_of_file: u64 | number_of_links: u32 |
/// delete_pending: u8 | directory: u8 | _reserved: u16 }`
fn put_standard(stat: &FileStat, out: &mut BytesMut) {
    out.put_u64_le(stat.allocation_size);
    out.put_u64_le(stat.end_of_file);
    out.put_u32_le(stat.number_of_links);
    out.put_u8(stat.delete_pending as u8);
    out.put_u8(stat.is_directory as u8);
    out.put_u16_le(0);
}

/// Appends FILE_NAME_INFORMATION for `name`. For servers that generate
/// their own 8.3 names: answer FileAlternateNameInformation with the same
/// mangled name QUERY_DIRECTORY reports, instead of
/// [`encode_file_info`]'s "8.3 names only" rule.
pub fn encode_file_name_information(name: &str, out: &mut BytesMut) -> Result<(), InfoError> {
    put_name(name, out)
}

/// FILE_NAME_INFORMATION ([MS-FSCC] 2.1.7), also the body of
/// FileAlternateNameInformation and FileNormalizedNameInformation.
/// Format: `{ file_name_length: u32 | file_name }`
fn put_name(name: &str, out: &mut BytesMut) -> Result<(), InfoError> {
    let len = u32::try_from(utf16_len(name)).map_err(|_| InfoError::InvalidParameter)?;
    out.put_u32_le(len);
    put_utf16le(name, out);
    Ok(())
}

/// FileStreamInformation ([MS-FSCC] 2.4, FileStreamInformation): one
/// `::$DATA` entry for a file, nothing for a directory.
/// Format: `{ next_entry_offset: u32 | stream_name_length: u32 |
/// stream_size: u64 | stream_allocation_size: u64 | stream_name }`
fn put_streams(stat: &FileStat, out: &mut BytesMut) {
    if stat.is_directory {
        return;
    }
    out.put_u32_le(0);
    out.put_u32_le(utf16_len(DEFAULT_STREAM_NAME) as u32);
    out.put_u64_le(stat.end_of_file);
    out.put_u64_le(stat.allocation_size);
    put_utf16le(DEFAULT_STREAM_NAME, out);
}

/// One entry of a FileStreamInformation list ([MS-FSCC] 2.4.43): the
/// name as the client spells it (`::$DATA`, `:NAME:$DATA`), its size and
/// allocation size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    pub name: String,
    pub size: u64,
    pub allocation_size: u64,
}

/// FileStreamInformation with named streams ([MS-FSCC] 2.4.43): the
/// entries chained, each at an 8-byte boundary, the last with
/// NextEntryOffset 0.
/// Format: `{ next_entry_offset: u32 | stream_name_length: u32 |
/// stream_size: u64 | stream_allocation_size: u64 | stream_name | pad }*`
pub fn encode_stream_information(entries: &[StreamEntry], out: &mut BytesMut) -> Result<(), InfoError> {
    let start = out.len();
    let mut last: Option<usize> = None;
    for e in entries {
        while !(out.len() - start).is_multiple_of(8) {
            out.put_u8(0);
        }
        let here = out.len();
        if let Some(prev) = last {
            let off = u32::try_from(here - prev).map_err(|_| InfoError::InvalidParameter)?;
            out[prev..prev + 4].copy_from_slice(&off.to_le_bytes());
        }
        let len = u32::try_from(utf16_len(&e.name)).map_err(|_| InfoError::InvalidParameter)?;
        out.put_u32_le(0);
        out.put_u32_le(len);
        out.put_u64_le(e.size);
        out.put_u64_le(e.allocation_size);
        put_utf16le(&e.name, out);
        last = Some(here);
    }
    Ok(())
}

/// True if `name` fits 8.3 (1-8 ASCII characters, optionally a dot and
/// 1-3 more, none of the characters 8.3 forbids), so its upper-case form is
/// its short name.
pub fn is_8dot3(name: &str) -> bool {
    if name == "." || name == ".." {
        return true;
    }
    let (base, ext) = match name.split_once('.') {
        Some((b, e)) => (b, Some(e)),
        None => (name, None),
    };
    let ok = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_graphic() && !"\"*+,/:;<=>?[\\]|.".contains(c))
    };
    (1..=8).contains(&base.len())
        && ok(base)
        && ext.is_none_or(|e| (1..=3).contains(&e.len()) && ok(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fscc::file_attributes;

    fn stat() -> FileStat {
        FileStat {
            creation_time: 0x0101,
            last_access_time: 0x0202,
            last_write_time: 0x0303,
            change_time: 0x0404,
            allocation_size: 8192,
            end_of_file: 5000,
            attributes: file_attributes::ARCHIVE,
            file_id: 0x1234_5678_9ABC_DEF0,
            number_of_links: 2,
            delete_pending: true,
            is_directory: false,
            ea_size: 12,
            reparse_tag: 0,
        }
    }

    fn ctx(stat: &FileStat) -> FileInfoCtx<'_> {
        FileInfoCtx {
            stat,
            name: "\\dir\\file.txt",
            access_mask: 0x0012_019F,
            position: 77,
            mode: mode::FILE_SYNCHRONOUS_IO_NONALERT,
            volume_serial: 0xDEAD_BEEF_0000_0001,
        }
    }

    fn enc(class: u8, stat: &FileStat) -> BytesMut {
        let mut out = BytesMut::new();
        encode_file_info(class, &ctx(stat), &mut out).unwrap();
        out
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn fixed_classes_have_spec_sizes() {
        let s = stat();
        for (c, n) in [
            (4, 40),
            (5, 24),
            (6, 8),
            (7, 4),
            (8, 4),
            (14, 8),
            (16, 4),
            (17, 4),
            (28, 16),
            (34, 56),
            (35, 8),
            (59, 24),
        ] {
            assert_eq!(enc(c, &s).len(), n, "class {c}");
            assert_eq!(fixed_size(c), Some(n));
            assert!(!is_variable_size(c));
        }
    }

    #[test]
    fn basic_layout() {
        let b = enc(class::FILE_BASIC_INFORMATION, &stat());
        assert_eq!(u64_at(&b, 0), 0x0101);
        assert_eq!(u64_at(&b, 8), 0x0202);
        assert_eq!(u64_at(&b, 16), 0x0303);
        assert_eq!(u64_at(&b, 24), 0x0404);
        assert_eq!(u32_at(&b, 32), file_attributes::ARCHIVE);
        assert_eq!(u32_at(&b, 36), 0);
    }

    #[test]
    fn standard_layout() {
        let b = enc(class::FILE_STANDARD_INFORMATION, &stat());
        assert_eq!(u64_at(&b, 0), 8192);
        assert_eq!(u64_at(&b, 8), 5000);
        assert_eq!(u32_at(&b, 16), 2);
        assert_eq!(b[20], 1);
        assert_eq!(b[21], 0);
    }

    #[test]
    fn network_open_layout() {
        let b = enc(class::FILE_NETWORK_OPEN_INFORMATION, &stat());
        assert_eq!(u64_at(&b, 24), 0x0404);
        assert_eq!(u64_at(&b, 32), 8192);
        assert_eq!(u64_at(&b, 40), 5000);
        assert_eq!(u32_at(&b, 48), file_attributes::ARCHIVE);
    }

    #[test]
    fn all_information_is_100_plus_name() {
        let s = stat();
        let b = enc(class::FILE_ALL_INFORMATION, &s);
        let name_len = utf16_len("\\dir\\file.txt");
        assert_eq!(b.len(), 100 + name_len);
        assert_eq!(&b[..40], &enc(4, &s)[..]);
        assert_eq!(&b[40..64], &enc(5, &s)[..]);
        assert_eq!(u64_at(&b, 64), 0x1234_5678_9ABC_DEF0);
        assert_eq!(u32_at(&b, 72), 12);
        assert_eq!(u32_at(&b, 76), 0x0012_019F);
        assert_eq!(u64_at(&b, 80), 77);
        assert_eq!(u32_at(&b, 88), mode::FILE_SYNCHRONOUS_IO_NONALERT);
        assert_eq!(u32_at(&b, 92), 0);
        assert_eq!(u32_at(&b, 96), name_len as u32);
        assert_eq!(&b[100..102], b"\\\0");
    }

    #[test]
    fn name_classes() {
        let s = stat();
        let b = enc(class::FILE_NAME_INFORMATION, &s);
        assert_eq!(u32_at(&b, 0), 26);
        assert_eq!(b.len(), 30);
        assert_eq!(enc(class::FILE_NORMALIZED_NAME_INFORMATION, &s), b);
        let b = enc(class::FILE_ALTERNATE_NAME_INFORMATION, &s);
        assert_eq!(u32_at(&b, 0), 16);
        assert_eq!(&b[4..6], b"F\0");
        let mut c = ctx(&s);
        c.name = "\\dir\\a long name.txt";
        assert_eq!(
            encode_file_info(
                class::FILE_ALTERNATE_NAME_INFORMATION,
                &c,
                &mut BytesMut::new()
            ),
            Err(InfoError::NoShortName)
        );
    }

    #[test]
    fn eight_dot_three() {
        assert!(is_8dot3("FILE.TXT"));
        assert!(is_8dot3("README"));
        assert!(is_8dot3("file.txt"));
        assert!(!is_8dot3("TOOLONGNAME.TXT"));
        assert!(!is_8dot3("A.B.C"));
        assert!(!is_8dot3("A.TEXT"));
        assert!(!is_8dot3(""));
        assert!(!is_8dot3("A B"));
    }

    #[test]
    fn named_streams_chain_at_eight_bytes() {
        let e = |n: &str, size| StreamEntry { name: n.into(), size, allocation_size: size };
        let mut out = BytesMut::new();
        encode_stream_information(&[e("::$DATA", 9), e(":ab:$DATA", 3)], &mut out).unwrap();
        // 24 + 14 = 38, padded to 40; then 24 + 18.
        assert_eq!(out.len(), 40 + 24 + 18);
        assert_eq!(&out[0..4], &40u32.to_le_bytes());
        assert_eq!(&out[4..8], &14u32.to_le_bytes());
        assert_eq!(&out[8..16], &9u64.to_le_bytes());
        assert_eq!(&out[40..44], &0u32.to_le_bytes());
        assert_eq!(&out[44..48], &18u32.to_le_bytes());
        let mut none = BytesMut::new();
        encode_stream_information(&[], &mut none).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn streams_one_for_files_none_for_directories() {
        let mut s = stat();
        let b = enc(class::FILE_STREAM_INFORMATION, &s);
        assert_eq!(b.len(), 24 + 14);
        assert_eq!(u32_at(&b, 0), 0);
        assert_eq!(u32_at(&b, 4), 14);
        assert_eq!(u64_at(&b, 8), 5000);
        assert_eq!(u64_at(&b, 16), 8192);
        assert_eq!(
            &b[24..],
            "::$DATA"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<_>>()
        );
        s.is_directory = true;
        assert!(enc(class::FILE_STREAM_INFORMATION, &s).is_empty());
    }

    #[test]
    fn id_information_and_attribute_tag() {
        let b = enc(class::FILE_ID_INFORMATION, &stat());
        assert_eq!(u64_at(&b, 0), 0xDEAD_BEEF_0000_0001);
        assert_eq!(u64_at(&b, 8), 0x1234_5678_9ABC_DEF0);
        assert_eq!(u64_at(&b, 16), 0);
        let mut s = stat();
        s.is_directory = true;
        s.attributes = 0;
        let b = enc(class::FILE_ATTRIBUTE_TAG_INFORMATION, &s);
        assert_eq!(u32_at(&b, 0), file_attributes::DIRECTORY);
    }

    #[test]
    fn bad_classes() {
        let s = stat();
        let mut out = BytesMut::new();
        assert_eq!(
            encode_file_info(10, &ctx(&s), &mut out),
            Err(InfoError::InvalidInfoClass)
        );
        assert_eq!(
            encode_file_info(200, &ctx(&s), &mut out),
            Err(InfoError::InvalidInfoClass)
        );
        assert_eq!(
            encode_file_info(23, &ctx(&s), &mut out),
            Err(InfoError::NotSupported)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn truncation_rules() {
        let s = stat();
        let mut b = enc(class::FILE_ALL_INFORMATION, &s);
        assert_eq!(
            truncate_output(class::FILE_ALL_INFORMATION, &mut b, 99),
            Err(InfoError::LengthMismatch)
        );
        assert_eq!(
            truncate_output(class::FILE_ALL_INFORMATION, &mut b, 104),
            Ok(true)
        );
        assert_eq!(b.len(), 104);
        assert_eq!(u32_at(&b, 96), 26, "name length keeps the full length");
        let mut b = enc(class::FILE_BASIC_INFORMATION, &s);
        assert_eq!(
            truncate_output(class::FILE_BASIC_INFORMATION, &mut b, 39),
            Err(InfoError::LengthMismatch)
        );
        assert_eq!(
            truncate_output(class::FILE_BASIC_INFORMATION, &mut b, 40),
            Ok(false)
        );
        assert_eq!(
            truncate_output(3, &mut b, 4096),
            Err(InfoError::InvalidInfoClass)
        );
    }
}
