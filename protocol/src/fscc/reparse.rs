//! Reparse points: the REPARSE_DATA_BUFFER of FSCTL_SET_REPARSE_POINT and
//! FSCTL_GET_REPARSE_POINT ([MS-FSCC] 2.1.2.2), the symbolic link reparse
//! data in it ([MS-FSCC] 2.1.2.4), and the Symbolic Link Error Response a
//! CREATE that meets a symbolic link answers with ([MS-SMB2] 2.2.2.2.1).
//!
//! The parsers check every length and offset against the buffer and
//! answer the NTSTATUS [MS-FSA] 2.1.5.10.37 gives for the bad ones, so a
//! hostile buffer is refused, never read out of bounds.

use bytes::{BufMut, BytesMut};

use crate::codec::{put_utf16le, utf16_len, utf16le};
use crate::status::NtStatus;

/// IO_REPARSE_TAG_SYMLINK ([MS-FSCC] 2.1.2.1).
pub const IO_REPARSE_TAG_SYMLINK: u32 = 0xA000_000C;
/// IO_REPARSE_TAG_MOUNT_POINT ([MS-FSCC] 2.1.2.1): junctions.
pub const IO_REPARSE_TAG_MOUNT_POINT: u32 = 0xA000_0003;
/// SYMLINK_FLAG_RELATIVE ([MS-FSCC] 2.1.2.4): the substitute name is
/// relative to the directory that holds the link.
pub const SYMLINK_FLAG_RELATIVE: u32 = 0x0000_0001;
/// The largest REPARSE_DATA_BUFFER, header included
/// (MAXIMUM_REPARSE_DATA_BUFFER_SIZE; [MS-FSA] 2.1.5.10.37).
pub const MAX_REPARSE_BUFFER: usize = 16 * 1024;
/// SymLinkErrorTag of the Symbolic Link Error Response: "SYML".
const SYMLINK_ERROR_TAG: u32 = 0x4C4D_5953;

/// A REPARSE_DATA_BUFFER ([MS-FSCC] 2.1.2.2), its data borrowed.
///
/// Format: `{ reparse_tag: u32 | reparse_data_length: u16 | _reserved: u16 |
/// data: [u8; reparse_data_length] }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReparseBuffer<'a> {
    pub tag: u32,
    pub data: &'a [u8],
}

impl<'a> ReparseBuffer<'a> {
    /// Parses the input of FSCTL_SET_REPARSE_POINT with the checks of
    /// [MS-FSA] 2.1.5.10.37: an empty buffer is STATUS_INVALID_BUFFER_SIZE
    /// (as Windows and smbd answer), one under 8 or over 16 KiB bytes, or
    /// whose ReparseDataLength is not exactly what follows the header,
    /// STATUS_IO_REPARSE_DATA_INVALID. A tag of 0 or 1 (reserved,
    /// [MS-FSCC] 2.1.2.1) is STATUS_IO_REPARSE_TAG_INVALID.
    ///
    /// A buffer 24 bytes longer than its data (a non-Microsoft tag's
    /// REPARSE_GUID_DATA_BUFFER, [MS-FSCC] 2.1.2.3) is taken with its GUID
    /// as part of the data.
    pub fn parse(buf: &'a [u8]) -> Result<ReparseBuffer<'a>, NtStatus> {
        if buf.is_empty() {
            return Err(NtStatus::INVALID_BUFFER_SIZE);
        }
        if buf.len() < 8 || buf.len() > MAX_REPARSE_BUFFER {
            return Err(NtStatus::IO_REPARSE_DATA_INVALID);
        }
        let tag = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let len = usize::from(u16::from_le_bytes([buf[4], buf[5]]));
        let guid = tag & 0x8000_0000 == 0 && buf.len() == len + 24;
        if buf.len() != len + 8 && !guid {
            return Err(NtStatus::IO_REPARSE_DATA_INVALID);
        }
        if tag <= 1 {
            return Err(NtStatus::REPARSE_TAG_INVALID);
        }
        Ok(ReparseBuffer { tag, data: &buf[8..] })
    }
}

/// Symbolic link reparse data ([MS-FSCC] 2.1.2.4).
///
/// Format (after the 8-byte REPARSE_DATA_BUFFER header):
/// `{ substitute_name_offset: u16 | substitute_name_length: u16 |
/// print_name_offset: u16 | print_name_length: u16 | flags: u32 |
/// path_buffer }`, offsets counted from the start of `path_buffer`, names
/// in UTF-16LE without a terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymlinkReparse {
    /// The path the link stands for, as the client resolves it.
    pub substitute_name: String,
    /// The path shown to users.
    pub print_name: String,
    /// [`SYMLINK_FLAG_RELATIVE`] or 0 (absolute).
    pub flags: u32,
}

impl SymlinkReparse {
    /// Parses the data of an IO_REPARSE_TAG_SYMLINK buffer: anything short,
    /// a name outside the path buffer, of odd length or not valid UTF-16
    /// is STATUS_IO_REPARSE_DATA_INVALID.
    pub fn parse(data: &[u8]) -> Result<SymlinkReparse, NtStatus> {
        let bad = NtStatus::IO_REPARSE_DATA_INVALID;
        if data.len() < 12 {
            return Err(bad);
        }
        let u16_at = |i: usize| usize::from(u16::from_le_bytes([data[i], data[i + 1]]));
        let flags = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
        let path = &data[12..];
        let name = |off: usize, len: usize| -> Result<String, NtStatus> {
            let b = path.get(off..off.checked_add(len).ok_or(bad)?).ok_or(bad)?;
            utf16le(b, "symlink name").map_err(|_| bad)
        };
        Ok(SymlinkReparse {
            substitute_name: name(u16_at(0), u16_at(2))?,
            print_name: name(u16_at(4), u16_at(6))?,
            flags,
        })
    }

    /// The length of the path buffer: both names, substitute name first.
    fn path_len(&self) -> usize {
        utf16_len(&self.substitute_name) + utf16_len(&self.print_name)
    }

    /// Appends the whole REPARSE_DATA_BUFFER (tag IO_REPARSE_TAG_SYMLINK),
    /// as FSCTL_GET_REPARSE_POINT returns it. `None` when the names do not
    /// fit the 16-bit lengths (nothing is written then).
    pub fn encode(&self, out: &mut BytesMut) -> Option<usize> {
        let (sub, print) = (utf16_len(&self.substitute_name), utf16_len(&self.print_name));
        let data_len = u16::try_from(12 + sub + print).ok()?;
        let start = out.len();
        out.put_u32_le(IO_REPARSE_TAG_SYMLINK);
        out.put_u16_le(data_len);
        out.put_u16_le(0);
        out.put_u16_le(0);
        out.put_u16_le(sub as u16);
        out.put_u16_le(sub as u16);
        out.put_u16_le(print as u16);
        out.put_u32_le(self.flags);
        put_utf16le(&self.substitute_name, out);
        put_utf16le(&self.print_name, out);
        Some(out.len() - start)
    }

    /// Appends the Symbolic Link Error Response ([MS-SMB2] 2.2.2.2.1) for
    /// this link: `unparsed_path_length` is the byte length, in UTF-16, of
    /// what follows the link's component in the path the client opened.
    /// `None` when the names do not fit the 16-bit lengths.
    ///
    /// Format: `{ sym_link_length: u32 | sym_link_error_tag: u32 |
    /// reparse_tag: u32 | reparse_data_length: u16 |
    /// unparsed_path_length: u16 | substitute_name_offset: u16 |
    /// substitute_name_length: u16 | print_name_offset: u16 |
    /// print_name_length: u16 | flags: u32 | path_buffer }`
    pub fn encode_error(&self, unparsed_path_length: u16, out: &mut BytesMut) -> Option<usize> {
        let (sub, print) = (utf16_len(&self.substitute_name), utf16_len(&self.print_name));
        let data_len = u16::try_from(12 + self.path_len()).ok()?;
        let start = out.len();
        out.put_u32_le(24 + self.path_len() as u32);
        out.put_u32_le(SYMLINK_ERROR_TAG);
        out.put_u32_le(IO_REPARSE_TAG_SYMLINK);
        out.put_u16_le(data_len);
        out.put_u16_le(unparsed_path_length);
        out.put_u16_le(0);
        out.put_u16_le(sub as u16);
        out.put_u16_le(sub as u16);
        out.put_u16_le(print as u16);
        out.put_u32_le(self.flags);
        put_utf16le(&self.substitute_name, out);
        put_utf16le(&self.print_name, out);
        Some(out.len() - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(sub: &str, print: &str, flags: u32) -> SymlinkReparse {
        SymlinkReparse { substitute_name: sub.into(), print_name: print.into(), flags }
    }

    #[test]
    fn windows_buffer() {
        // A relative link to "bar" as Windows sends it (print name first in
        // the path buffer), from Samba's python/samba/tests/smb2symlink.py.
        let buf = b"\x0c\x00\x00\xa0\x18\x00\x00\x00\x06\x00\x06\x00\x00\x00\x06\x00\
                    \x01\x00\x00\x00\x62\x00\x61\x00\x72\x00\x62\x00\x61\x00\x72\x00";
        let b = ReparseBuffer::parse(buf).unwrap();
        assert_eq!(b.tag, IO_REPARSE_TAG_SYMLINK);
        assert_eq!(SymlinkReparse::parse(b.data).unwrap(), link("bar", "bar", SYMLINK_FLAG_RELATIVE));
    }

    #[test]
    fn round_trip() {
        let l = link("..\\dir\\f ü.txt", "..\\dir\\f ü.txt", SYMLINK_FLAG_RELATIVE);
        let mut out = BytesMut::new();
        let n = l.encode(&mut out).unwrap();
        assert_eq!(n, out.len());
        let b = ReparseBuffer::parse(&out).unwrap();
        assert_eq!(SymlinkReparse::parse(b.data).unwrap(), l);
    }

    #[test]
    fn error_response_layout() {
        let mut out = BytesMut::new();
        link("a", "a", 1).encode_error(8, &mut out).unwrap();
        assert_eq!(out.len(), 28 + 4);
        assert_eq!(u32::from_le_bytes(out[0..4].try_into().unwrap()), 28);
        assert_eq!(&out[4..8], b"SYML");
        assert_eq!(u32::from_le_bytes(out[8..12].try_into().unwrap()), IO_REPARSE_TAG_SYMLINK);
        assert_eq!(u16::from_le_bytes([out[12], out[13]]), 16);
        assert_eq!(u16::from_le_bytes([out[14], out[15]]), 8);
        assert_eq!(&out[28..], b"a\0a\0");
    }

    #[test]
    fn bad_buffers() {
        assert_eq!(ReparseBuffer::parse(b""), Err(NtStatus::INVALID_BUFFER_SIZE));
        for n in 1..8 {
            assert_eq!(ReparseBuffer::parse(&vec![b'0'; n]), Err(NtStatus::IO_REPARSE_DATA_INVALID));
        }
        let mut ok = BytesMut::new();
        link("x", "x", 1).encode(&mut ok).unwrap();
        // One byte more or less than the header says.
        let mut long = ok.to_vec();
        long.push(0);
        assert_eq!(ReparseBuffer::parse(&long), Err(NtStatus::IO_REPARSE_DATA_INVALID));
        assert_eq!(ReparseBuffer::parse(&ok[..ok.len() - 1]), Err(NtStatus::IO_REPARSE_DATA_INVALID));
        // Over 16 KiB, even when consistent.
        let mut huge = vec![0u8; MAX_REPARSE_BUFFER + 8];
        huge[..4].copy_from_slice(&IO_REPARSE_TAG_SYMLINK.to_le_bytes());
        huge[4..6].copy_from_slice(&((MAX_REPARSE_BUFFER) as u16).to_le_bytes());
        assert_eq!(ReparseBuffer::parse(&huge), Err(NtStatus::IO_REPARSE_DATA_INVALID));
        // Reserved tags.
        assert_eq!(ReparseBuffer::parse(&[0, 0, 0, 0, 0, 0, 0, 0]), Err(NtStatus::REPARSE_TAG_INVALID));
        assert_eq!(ReparseBuffer::parse(&[1, 0, 0, 0, 0, 0, 0, 0]), Err(NtStatus::REPARSE_TAG_INVALID));
        // Symlink data: short, names out of bounds (offsets up to 0xFFFF),
        // odd lengths, unpaired surrogates.
        let bad = Err(NtStatus::IO_REPARSE_DATA_INVALID);
        assert_eq!(SymlinkReparse::parse(&[0; 11]), bad);
        let mut d = vec![0u8; 12];
        d[0..2].copy_from_slice(&0xFFFFu16.to_le_bytes());
        d[2..4].copy_from_slice(&0xFFFFu16.to_le_bytes());
        assert_eq!(SymlinkReparse::parse(&d), bad);
        let mut d = vec![0u8; 14];
        d[2..4].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(SymlinkReparse::parse(&d), bad);
        let mut d = vec![0u8; 14];
        d[2..4].copy_from_slice(&2u16.to_le_bytes());
        d[12..14].copy_from_slice(&0xD800u16.to_le_bytes());
        assert_eq!(SymlinkReparse::parse(&d), bad);
        // Empty names parse (the server refuses them as link targets).
        assert_eq!(SymlinkReparse::parse(&[0; 12]), Ok(link("", "", 0)));
    }

    #[test]
    fn names_too_long_to_encode() {
        let l = link(&"x".repeat(40_000), "x", 1);
        let mut out = BytesMut::new();
        assert_eq!(l.encode(&mut out), None);
        assert_eq!(l.encode_error(0, &mut out), None);
        assert!(out.is_empty());
    }
}
