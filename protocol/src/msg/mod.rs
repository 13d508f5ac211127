//! SMB2 message bodies, one module per command ([MS-SMB2] 2.2).
//!
//! Every request type has `parse(msg)`, where `msg` is the whole message
//! starting at the SMB2 header (offsets in the body count from there), and
//! every response type has `encode(&self, out)`, which appends the body to
//! `out` assuming the body begins at [`crate::header::HEADER_LEN`] of its
//! message. Payloads borrow from the message. Requests also have a
//! client-side `encode` and responses a `parse`, for tests and the fuzzer.
//!
//! # Layout
//! - [`negotiate`]: NEGOTIATE and its contexts.
//! - [`session_setup`], [`logoff`]: sessions.
//! - [`tree_connect`], [`tree_disconnect`]: trees.
//! - [`create`], [`create_context`], [`close`]: opens.
//! - [`read`], [`write`], [`flush`], [`lock`]: file data.
//! - [`query_directory`], [`query_info`], [`set_info`], [`change_notify`]: metadata.
//! - [`ioctl`]: IOCTL/FSCTL and the FSCTL structures the server answers.
//! - [`echo`], [`cancel`]: housekeeping.
//! - [`oplock_break`]: oplock and lease breaks.

use bytes::{BufMut, BytesMut};

use crate::codec::{body, Reader};
use crate::error::{ParseError, ParseResult};

pub mod negotiate;
pub mod session_setup;
pub mod logoff;
pub mod tree_connect;
pub mod tree_disconnect;
pub mod create_context;
pub mod create;
pub mod close;
pub mod flush;
pub mod read;
pub mod write;
pub mod lock;
pub mod ioctl;
pub mod cancel;
pub mod echo;
pub mod query_directory;
pub mod change_notify;
pub mod query_info;
pub mod set_info;
pub mod oplock_break;

/// SMB2_FILEID ([MS-SMB2] 2.2.14.1).
///
/// Format: `{ persistent: u64 | volatile: u64 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileId {
    pub persistent: u64,
    pub volatile: u64,
}

impl FileId {
    /// All ones: in a related compound request, "the file id of the
    /// previous operation" ([MS-SMB2] 3.3.5.2.7.2).
    pub const ANY: FileId = FileId { persistent: u64::MAX, volatile: u64::MAX };

    /// Length on the wire.
    pub const LEN: usize = 16;

    /// Parses a file id at the start of `input`, nom style.
    pub fn parse(input: &[u8]) -> ParseResult<(&[u8], FileId)> {
        let mut r = Reader::new(input);
        let id = FileId::read(&mut r)?;
        Ok((r.rest(), id))
    }

    /// Reads a file id from a [`Reader`].
    pub fn read(r: &mut Reader<'_>) -> ParseResult<FileId> {
        Ok(FileId { persistent: r.u64("file id")?, volatile: r.u64("file id")? })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u64_le(self.persistent);
        out.put_u64_le(self.volatile);
    }

    /// Is this the related-compound placeholder?
    pub fn is_any(&self) -> bool {
        *self == FileId::ANY
    }
}

/// A reader over the fixed part of a body, positioned after the
/// StructureSize, which must equal `structure_size`.
pub(crate) fn fixed(msg: &[u8], structure_size: u16) -> ParseResult<Reader<'_>> {
    let mut r = Reader::new(body(msg)?);
    if r.u16("structure size")? != structure_size {
        return Err(ParseError::Invalid("structure size"));
    }
    Ok(r)
}

/// The StructureSize of a body, for messages whose layout it selects.
pub(crate) fn peek_structure_size(msg: &[u8]) -> ParseResult<u16> {
    Reader::new(body(msg)?).u16("structure size")
}

/// Encodes and parses a 4-byte `{ structure_size=4 | _reserved }` body,
/// shared by LOGOFF, TREE_DISCONNECT, ECHO, CANCEL, FLUSH and LOCK responses.
pub(crate) fn encode_empty4(out: &mut BytesMut) {
    out.put_u16_le(4);
    out.put_u16_le(0);
}

pub(crate) fn parse_empty4(msg: &[u8]) -> ParseResult<()> {
    let mut r = fixed(msg, 4)?;
    r.u16("reserved")?;
    Ok(())
}

/// The `{ structure_size=9: u16 | output_buffer_offset: u16 |
/// output_buffer_length: u32 | buffer }` body shared by the QUERY_DIRECTORY,
/// CHANGE_NOTIFY and QUERY_INFO responses. The buffer starts at 0x48; an
/// empty one is sent as one zero byte.
pub(crate) fn encode_output_header(len: u32, out: &mut BytesMut) {
    out.put_u16_le(9);
    out.put_u16_le(OUTPUT_BUFFER_OFFSET as u16);
    out.put_u32_le(len);
    if len == 0 {
        out.put_u8(0);
    }
}

/// Offset of the output buffer in those responses: header + 8 (0x48).
pub(crate) const OUTPUT_BUFFER_OFFSET: usize = crate::header::HEADER_LEN + 8;

pub(crate) fn parse_output_buffer(msg: &[u8]) -> ParseResult<&[u8]> {
    let mut r = fixed(msg, 9)?;
    let off = r.u16("output buffer offset")? as usize;
    let len = r.u32("output buffer length")? as usize;
    crate::codec::slice_at(msg, off, len, "output buffer")
}

#[cfg(test)]
pub(crate) mod test_util {
    use bytes::BytesMut;

    use crate::error::ParseResult;
    use crate::header::{Command, Header};

    /// Prefixes a body with a header for `command`.
    pub fn with_header(command: Command, body: &[u8]) -> Vec<u8> {
        let mut m = BytesMut::new();
        Header { command: command as u16, ..Default::default() }.encode(&mut m);
        m.extend_from_slice(body);
        m.to_vec()
    }

    /// Asserts that every prefix of `msg` shorter than `upto` fails to
    /// parse (and does not panic).
    pub fn prefixes_fail<'m, T: std::fmt::Debug>(msg: &'m [u8], upto: usize, parse: impl Fn(&'m [u8]) -> ParseResult<T>) {
        for cut in 0..upto.min(msg.len()) {
            let r = parse(&msg[..cut]);
            assert!(r.is_err(), "prefix of {cut} bytes parsed: {r:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_id_roundtrip() {
        let id = FileId { persistent: 0x1122_3344_5566_7788, volatile: 9 };
        let mut b = BytesMut::new();
        id.encode(&mut b);
        b.put_u8(0xAA);
        let (rest, back) = FileId::parse(&b).unwrap();
        assert_eq!(back, id);
        assert_eq!(rest, &[0xAA]);
        assert!(FileId::parse(&b[..15]).is_err());
        assert!(FileId::ANY.is_any());
    }
}
