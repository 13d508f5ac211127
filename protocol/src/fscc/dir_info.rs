//! Directory entries for QUERY_DIRECTORY ([MS-FSCC] 2.4) and the builder
//! that chains them into one output buffer.
//!
//! Every entry class starts with `NextEntryOffset: u32 | FileIndex: u32`;
//! entries in one buffer are each aligned on 8 bytes, the padding is zero
//! and the last entry's NextEntryOffset is 0 ([MS-FSCC] 2.4.8 and its
//! siblings). FileIndex is always 0 ([MS-FSA] 2.1.5.6.3).

use bytes::{BufMut, Bytes, BytesMut};

use super::attributes::file_info_class as class;
use super::{FileStat, InfoError};
use crate::codec::{put_utf16le, utf16_len};
use crate::msg::aapl::DirAttr;

/// Size of the ShortName field of the Both variants, in bytes (12 UTF-16
/// code units).
const SHORT_NAME_FIELD: usize = 24;

/// Length of the fixed part of a directory entry class (everything before
/// FileName), or `None` if `class` is not a directory class.
///
/// Sizes per [MS-FSCC] 2.4 (sections named after the class):
/// - FileDirectoryInformation (1): 64
/// - FileFullDirectoryInformation (2): 68
/// - FileBothDirectoryInformation (3, [MS-FSCC] 2.4.8): 94
/// - FileNamesInformation (12): 12
/// - FileIdBothDirectoryInformation (37): 104
/// - FileIdFullDirectoryInformation (38): 80
/// - FileIdExtdDirectoryInformation (60, [MS-FSCC] 2.4.22): 88
/// - FileId64ExtdDirectoryInformation (78): 80
/// - FileIdAllExtdDirectoryInformation (80, [MS-FSCC] 2.4.20): 96
///
/// A QUERY_DIRECTORY whose OutputBufferLength is below this fails with
/// STATUS_INFO_LENGTH_MISMATCH ([MS-FSA] 2.1.5.6.3.x).
pub fn dir_entry_fixed_size(class: u8) -> Option<usize> {
    Some(match class {
        class::FILE_DIRECTORY_INFORMATION => 64,
        class::FILE_FULL_DIRECTORY_INFORMATION => 68,
        class::FILE_BOTH_DIRECTORY_INFORMATION => 94,
        class::FILE_NAMES_INFORMATION => 12,
        class::FILE_ID_BOTH_DIRECTORY_INFORMATION => 104,
        class::FILE_ID_FULL_DIRECTORY_INFORMATION => 80,
        class::FILE_ID_EXTD_DIRECTORY_INFORMATION => 88,
        class::FILE_ID_64_EXTD_DIRECTORY_INFORMATION => 80,
        class::FILE_ID_ALL_EXTD_DIRECTORY_INFORMATION => 96,
        _ => return None,
    })
}

/// Length of one encoded entry (without trailing alignment padding).
pub fn dir_entry_size(class: u8, name: &str, _short_name: &str) -> Result<usize, InfoError> {
    let fixed = dir_entry_fixed_size(class).ok_or(InfoError::InvalidInfoClass)?;
    Ok(fixed + utf16_len(name))
}

/// Appends one directory entry of `class` for `name` to `out` and returns
/// its length. `out` is first padded with zeros to a multiple of 8 bytes
/// (counted from the start of `out`), so successive calls on one buffer
/// produce correctly aligned entries. NextEntryOffset is written as 0;
/// [`DirListBuilder`] patches it.
///
/// `short_name` (the 8.3 name) is used by the Both variants only; one
/// longer than 12 UTF-16 code units is not a valid 8.3 name and is sent
/// as empty.
///
/// Format (FileIdAllExtdDirectoryInformation, the others are prefixes or
/// variations): `{ next_entry_offset: u32 | file_index: u32 |
/// creation_time: u64 | last_access_time: u64 | last_write_time: u64 |
/// change_time: u64 | end_of_file: u64 | allocation_size: u64 |
/// file_attributes: u32 | file_name_length: u32 | ea_size: u32 |
/// reparse_point_tag: u32 | file_id: u64 | file_id_128: [u8; 16] |
/// file_name }`
pub fn encode_dir_entry(
    class: u8,
    name: &str,
    short_name: &str,
    stat: &FileStat,
    out: &mut BytesMut,
) -> Result<usize, InfoError> {
    encode(class, name, Slot::ShortName(short_name), stat, out)
}

/// What an entry of a Both class carries in its short-name slot.
#[derive(Clone, Copy)]
enum Slot<'a> {
    /// The 8.3 name.
    ShortName(&'a str),
    /// Apple's fields ([`DirAttr`]), in FileIdBothDirectoryInformation;
    /// FileBothDirectoryInformation then has no short name.
    Aapl(&'a DirAttr),
}

fn encode(class: u8, name: &str, slot: Slot<'_>, stat: &FileStat, out: &mut BytesMut) -> Result<usize, InfoError> {
    let fixed = dir_entry_fixed_size(class).ok_or(InfoError::InvalidInfoClass)?;
    let name_len = u32::try_from(utf16_len(name)).map_err(|_| InfoError::InvalidParameter)?;
    while !out.len().is_multiple_of(8) {
        out.put_u8(0);
    }
    let start = out.len();
    out.reserve(fixed + name_len as usize);
    out.put_u32_le(0); // NextEntryOffset
    out.put_u32_le(0); // FileIndex
    if class == class::FILE_NAMES_INFORMATION {
        out.put_u32_le(name_len);
    } else {
        out.put_u64_le(stat.creation_time);
        out.put_u64_le(stat.last_access_time);
        out.put_u64_le(stat.last_write_time);
        out.put_u64_le(stat.change_time);
        out.put_u64_le(stat.end_of_file);
        out.put_u64_le(stat.allocation_size);
        out.put_u32_le(stat.wire_attributes());
        out.put_u32_le(name_len);
        let aapl = match slot {
            Slot::Aapl(a) if class == class::FILE_ID_BOTH_DIRECTORY_INFORMATION => Some(a),
            _ => None,
        };
        if class != class::FILE_DIRECTORY_INFORMATION {
            out.put_u32_le(aapl.map_or_else(|| stat.ea_size_or_tag(), |a| a.max_access));
        }
        match class {
            class::FILE_BOTH_DIRECTORY_INFORMATION | class::FILE_ID_BOTH_DIRECTORY_INFORMATION => {
                match (aapl, slot) {
                    (Some(a), _) => {
                        out.put_u8(SHORT_NAME_FIELD as u8);
                        out.put_u8(0);
                        out.put_slice(&a.short_name_field());
                    }
                    (None, Slot::ShortName(short_name)) => put_short_name(short_name, out),
                    (None, Slot::Aapl(_)) => put_short_name("", out),
                }
                if class == class::FILE_ID_BOTH_DIRECTORY_INFORMATION {
                    out.put_u16_le(aapl.map_or(0, |a| a.unix_mode)); // Reserved2
                    out.put_u64_le(stat.file_id);
                }
            }
            class::FILE_ID_FULL_DIRECTORY_INFORMATION => {
                out.put_u32_le(0); // Reserved
                out.put_u64_le(stat.file_id);
            }
            class::FILE_ID_EXTD_DIRECTORY_INFORMATION => {
                out.put_u32_le(stat.reparse_tag); // ReparsePointTag
                out.put_slice(&stat.file_id_128());
            }
            class::FILE_ID_64_EXTD_DIRECTORY_INFORMATION => {
                out.put_u32_le(stat.reparse_tag); // ReparsePointTag
                out.put_u64_le(stat.file_id);
            }
            class::FILE_ID_ALL_EXTD_DIRECTORY_INFORMATION => {
                out.put_u32_le(stat.reparse_tag); // ReparsePointTag
                out.put_u64_le(stat.file_id);
                out.put_slice(&stat.file_id_128());
            }
            _ => {}
        }
    }
    debug_assert_eq!(out.len() - start, fixed);
    put_utf16le(name, out);
    Ok(out.len() - start)
}

/// `ShortNameLength: u8 | Reserved: u8 | ShortName: [u8; 24]`.
fn put_short_name(short_name: &str, out: &mut BytesMut) {
    let len = utf16_len(short_name);
    if len > SHORT_NAME_FIELD {
        out.put_u8(0);
        out.put_u8(0);
        out.put_bytes(0, SHORT_NAME_FIELD);
        return;
    }
    out.put_u8(len as u8);
    out.put_u8(0);
    put_utf16le(short_name, out);
    out.put_bytes(0, SHORT_NAME_FIELD - len);
}

/// Chains directory entries into one QUERY_DIRECTORY output buffer of at
/// most `max_len` bytes (the request's OutputBufferLength).
///
/// Each pushed entry starts on an 8-byte boundary; the previous entry's
/// NextEntryOffset is patched to point at it; the last entry keeps 0 and
/// carries no trailing padding.
///
/// When the first entry does not fit, [`push`](Self::push) returns false
/// with the builder still empty: the server then answers
/// STATUS_INFO_LENGTH_MISMATCH if `max_len` is below
/// [`dir_entry_fixed_size`], else STATUS_BUFFER_OVERFLOW.
#[derive(Debug)]
pub struct DirListBuilder {
    class: u8,
    max_len: usize,
    buf: BytesMut,
    last: Option<usize>,
    count: usize,
}

impl DirListBuilder {
    /// A builder for entries of `class`; InvalidInfoClass if `class` is not
    /// a directory class.
    pub fn new(class: u8, max_len: usize) -> Result<Self, InfoError> {
        dir_entry_fixed_size(class).ok_or(InfoError::InvalidInfoClass)?;
        Ok(DirListBuilder { class, max_len, buf: BytesMut::new(), last: None, count: 0 })
    }

    /// Appends one entry. Returns false, leaving the buffer unchanged, when
    /// the entry would not fit in `max_len`.
    pub fn push(&mut self, name: &str, short_name: &str, stat: &FileStat) -> bool {
        self.push_slot(name, Slot::ShortName(short_name), stat)
    }

    /// [`push`](Self::push) for a client that negotiated AAPL's
    /// READ_DIR_ATTR: an entry of FileIdBothDirectoryInformation carries
    /// `attr` in place of its EA size, short name and Reserved2
    /// ([`DirAttr`]); the other classes are as without it, no short name.
    pub fn push_aapl(&mut self, name: &str, stat: &FileStat, attr: &DirAttr) -> bool {
        self.push_slot(name, Slot::Aapl(attr), stat)
    }

    fn push_slot(&mut self, name: &str, slot: Slot<'_>, stat: &FileStat) -> bool {
        let start = self.buf.len().next_multiple_of(8);
        let Ok(size) = dir_entry_size(self.class, name, "") else {
            return false;
        };
        match start.checked_add(size) {
            Some(end) if end <= self.max_len => {}
            _ => return false,
        }
        // encode_dir_entry checks everything before it writes anything.
        if encode(self.class, name, slot, stat, &mut self.buf).is_err() {
            return false;
        }
        if let Some(last) = self.last {
            let next = (start - last) as u32;
            self.buf[last..last + 4].copy_from_slice(&next.to_le_bytes());
        }
        self.last = Some(start);
        self.count += 1;
        true
    }

    /// Bytes used so far (no trailing padding).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if no entry was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of entries pushed.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The chained entries.
    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fscc::file_attributes;

    fn stat() -> FileStat {
        FileStat {
            creation_time: 0x1111,
            last_access_time: 0x2222,
            last_write_time: 0x3333,
            change_time: 0x4444,
            allocation_size: 4096,
            end_of_file: 1234,
            attributes: file_attributes::ARCHIVE,
            file_id: 0xAABB_CCDD_0011_2233,
            number_of_links: 1,
            delete_pending: false,
            is_directory: false,
            ea_size: 7,
            reparse_tag: 0,
        }
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    const ALL: [u8; 9] = [1, 2, 3, 12, 37, 38, 60, 78, 80];

    /// AAPL READ_DIR_ATTR: max access in EaSize, the resource fork size
    /// and Finder info in a 24-byte short name, the mode in Reserved2; in
    /// FileIdBothDirectoryInformation only.
    #[test]
    fn aapl_fields_take_the_short_name_slot() {
        let attr = DirAttr {
            max_access: 0x001F_01FF,
            rfork_size: 3,
            finder_info: *b"SMB,OLE!\x01\x02\x03\x04\x80\0\0\0",
            unix_mode: 0o100644,
        };
        let mut b = DirListBuilder::new(class::FILE_ID_BOTH_DIRECTORY_INFORMATION, 4096).unwrap();
        assert!(b.push_aapl("test_aapl", &stat(), &attr));
        let out = b.finish();
        assert_eq!(u32_at(&out, 64), 0x001F_01FF);
        assert_eq!((out[68], out[69]), (24, 0));
        assert_eq!(u64_at(&out, 70), 3);
        assert_eq!(&out[78..94], &attr.finder_info);
        assert_eq!(u16::from_le_bytes([out[94], out[95]]), 0o100644);
        assert_eq!(u64_at(&out, 96), 0xAABB_CCDD_0011_2233);
        assert_eq!(out.len(), 104 + 18);

        // Other classes are as without AAPL (no short name).
        let mut b = DirListBuilder::new(class::FILE_BOTH_DIRECTORY_INFORMATION, 4096).unwrap();
        assert!(b.push_aapl("x", &stat(), &attr));
        let out = b.finish();
        assert_eq!(u32_at(&out, 64), 7);
        assert_eq!(out[68], 0);
        assert!(out[70..94].iter().all(|&x| x == 0));
    }

    #[test]
    fn every_class_writes_its_fixed_size_plus_name() {
        for c in ALL {
            let mut out = BytesMut::new();
            let n = encode_dir_entry(c, "ab", "AB", &stat(), &mut out).unwrap();
            assert_eq!(n, dir_entry_fixed_size(c).unwrap() + 4, "class {c}");
            assert_eq!(out.len(), n);
            assert_eq!(&out[n - 4..], b"a\0b\0");
        }
        assert_eq!(encode_dir_entry(4, "a", "", &stat(), &mut BytesMut::new()), Err(InfoError::InvalidInfoClass));
    }

    #[test]
    fn common_fields_sit_at_spec_offsets() {
        let mut out = BytesMut::new();
        encode_dir_entry(class::FILE_ID_BOTH_DIRECTORY_INFORMATION, "file.txt", "FILE.TXT", &stat(), &mut out).unwrap();
        assert_eq!(u32_at(&out, 0), 0);
        assert_eq!(u32_at(&out, 4), 0);
        assert_eq!(u64_at(&out, 8), 0x1111);
        assert_eq!(u64_at(&out, 16), 0x2222);
        assert_eq!(u64_at(&out, 24), 0x3333);
        assert_eq!(u64_at(&out, 32), 0x4444);
        assert_eq!(u64_at(&out, 40), 1234);
        assert_eq!(u64_at(&out, 48), 4096);
        assert_eq!(u32_at(&out, 56), file_attributes::ARCHIVE);
        assert_eq!(u32_at(&out, 60), 16);
        assert_eq!(u32_at(&out, 64), 7);
        assert_eq!(out[68], 16); // ShortNameLength
        assert_eq!(&out[70..72], b"F\0");
        assert_eq!(u64_at(&out, 96), 0xAABB_CCDD_0011_2233);
        assert_eq!(&out[104..106], b"f\0");
    }

    #[test]
    fn extd_classes_place_ids() {
        let mut out = BytesMut::new();
        encode_dir_entry(class::FILE_ID_EXTD_DIRECTORY_INFORMATION, "x", "", &stat(), &mut out).unwrap();
        assert_eq!(u32_at(&out, 68), 0); // ReparsePointTag
        assert_eq!(u64_at(&out, 72), 0xAABB_CCDD_0011_2233);
        assert_eq!(u64_at(&out, 80), 0);

        let mut out = BytesMut::new();
        encode_dir_entry(class::FILE_ID_ALL_EXTD_DIRECTORY_INFORMATION, "x", "", &stat(), &mut out).unwrap();
        assert_eq!(u64_at(&out, 72), 0xAABB_CCDD_0011_2233);
        assert_eq!(u64_at(&out, 80), 0xAABB_CCDD_0011_2233);
        assert_eq!(u64_at(&out, 88), 0);

        let mut out = BytesMut::new();
        encode_dir_entry(class::FILE_ID_FULL_DIRECTORY_INFORMATION, "x", "", &stat(), &mut out).unwrap();
        assert_eq!(u64_at(&out, 72), 0xAABB_CCDD_0011_2233);

        let mut out = BytesMut::new();
        encode_dir_entry(class::FILE_NAMES_INFORMATION, "xy", "", &stat(), &mut out).unwrap();
        assert_eq!(u32_at(&out, 8), 4);
        assert_eq!(&out[12..], b"x\0y\0");
    }

    #[test]
    fn overlong_short_name_is_sent_empty() {
        let mut out = BytesMut::new();
        encode_dir_entry(class::FILE_BOTH_DIRECTORY_INFORMATION, "x", "ABCDEFGHIJKLM", &stat(), &mut out).unwrap();
        assert_eq!(out[68], 0);
        assert!(out[70..94].iter().all(|&b| b == 0));
    }

    #[test]
    fn builder_chains_aligns_and_ends_with_zero() {
        let mut b = DirListBuilder::new(class::FILE_DIRECTORY_INFORMATION, 4096).unwrap();
        let names = ["a", "bbb", "cc", "."];
        for n in names {
            assert!(b.push(n, "", &stat()));
        }
        assert_eq!(b.count(), 4);
        let buf = b.finish();
        let mut off = 0;
        for (i, n) in names.iter().enumerate() {
            assert_eq!(off % 8, 0);
            let name_len = u32_at(&buf, off + 60) as usize;
            assert_eq!(name_len, n.len() * 2);
            let next = u32_at(&buf, off) as usize;
            if i + 1 == names.len() {
                assert_eq!(next, 0);
                assert_eq!(buf.len(), off + 64 + name_len, "no trailing padding");
            } else {
                assert_eq!(next, (64 + name_len).next_multiple_of(8));
                assert!(buf[off + 64 + name_len..off + next].iter().all(|&z| z == 0));
            }
            off += next;
        }
    }

    #[test]
    fn builder_stops_when_full() {
        // First entry 64 + 2 = 66 bytes; second would start at 72 and end at 138.
        let mut b = DirListBuilder::new(class::FILE_DIRECTORY_INFORMATION, 137).unwrap();
        assert!(b.push("a", "", &stat()));
        assert!(!b.push("b", "", &stat()));
        assert_eq!(b.len(), 66);
        assert_eq!(b.count(), 1);
        let buf = b.finish();
        assert_eq!(u32_at(&buf, 0), 0);

        let mut b = DirListBuilder::new(class::FILE_DIRECTORY_INFORMATION, 138).unwrap();
        assert!(b.push("a", "", &stat()));
        assert!(b.push("b", "", &stat()));
        assert_eq!(b.len(), 138);

        let mut b = DirListBuilder::new(class::FILE_DIRECTORY_INFORMATION, 10).unwrap();
        assert!(!b.push("a", "", &stat()));
        assert!(b.is_empty());
        assert!(b.finish().is_empty());
    }

    #[test]
    fn builder_rejects_non_directory_class() {
        assert_eq!(DirListBuilder::new(4, 100).unwrap_err(), InfoError::InvalidInfoClass);
    }
}
