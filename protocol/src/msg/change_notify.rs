//! CHANGE_NOTIFY request and response ([MS-SMB2] 2.2.35, 2.2.36), and the
//! FILE_NOTIFY_INFORMATION list the response carries ([MS-FSCC] 2.4.42).

use bytes::{BufMut, BytesMut};

use super::{encode_output_header, fixed, parse_output_buffer, FileId};
use crate::codec::{put_utf16le, utf16le, Reader};
use crate::error::{ParseError, ParseResult};

/// Flags of CHANGE_NOTIFY ([MS-SMB2] 2.2.35).
pub mod change_notify_flags {
    pub const WATCH_TREE: u16 = 0x0001;
}

/// CompletionFilter bits ([MS-SMB2] 2.2.35).
pub mod completion_filter {
    pub const FILE_NAME: u32 = 0x0000_0001;
    pub const DIR_NAME: u32 = 0x0000_0002;
    pub const ATTRIBUTES: u32 = 0x0000_0004;
    pub const SIZE: u32 = 0x0000_0008;
    pub const LAST_WRITE: u32 = 0x0000_0010;
    pub const LAST_ACCESS: u32 = 0x0000_0020;
    pub const CREATION: u32 = 0x0000_0040;
    pub const EA: u32 = 0x0000_0080;
    pub const SECURITY: u32 = 0x0000_0100;
    pub const STREAM_NAME: u32 = 0x0000_0200;
    pub const STREAM_SIZE: u32 = 0x0000_0400;
    pub const STREAM_WRITE: u32 = 0x0000_0800;
}

/// Action values of FILE_NOTIFY_INFORMATION ([MS-FSCC] 2.4.42).
pub mod notify_action {
    pub const ADDED: u32 = 0x0000_0001;
    pub const REMOVED: u32 = 0x0000_0002;
    pub const MODIFIED: u32 = 0x0000_0003;
    pub const RENAMED_OLD_NAME: u32 = 0x0000_0004;
    pub const RENAMED_NEW_NAME: u32 = 0x0000_0005;
    pub const ADDED_STREAM: u32 = 0x0000_0006;
    pub const REMOVED_STREAM: u32 = 0x0000_0007;
    pub const MODIFIED_STREAM: u32 = 0x0000_0008;
    pub const REMOVED_BY_DELETE: u32 = 0x0000_0009;
    pub const ID_NOT_TUNNELLED: u32 = 0x0000_000A;
    pub const TUNNELLED_ID_COLLISION: u32 = 0x0000_000B;
}

/// SMB2 CHANGE_NOTIFY request ([MS-SMB2] 2.2.35).
///
/// Format: `{ structure_size=32: u16 | flags: u16 | output_buffer_length: u32 |
/// file_id: FileId | completion_filter: u32 | _reserved: u32 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeNotifyRequest {
    /// [`change_notify_flags`].
    pub flags: u16,
    pub output_buffer_length: u32,
    pub file_id: FileId,
    /// [`completion_filter`].
    pub completion_filter: u32,
}

impl ChangeNotifyRequest {
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 32)?;
        let flags = r.u16("flags")?;
        let output_buffer_length = r.u32("output buffer length")?;
        let file_id = FileId::read(&mut r)?;
        let completion_filter = r.u32("completion filter")?;
        r.u32("reserved")?;
        Ok(ChangeNotifyRequest { flags, output_buffer_length, file_id, completion_filter })
    }

    pub fn watch_tree(&self) -> bool {
        self.flags & change_notify_flags::WATCH_TREE != 0
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(32);
        out.put_u16_le(self.flags);
        out.put_u32_le(self.output_buffer_length);
        self.file_id.encode(out);
        out.put_u32_le(self.completion_filter);
        out.put_u32_le(0);
    }
}

/// SMB2 CHANGE_NOTIFY response ([MS-SMB2] 2.2.36).
///
/// Format: `{ structure_size=9: u16 | output_buffer_offset: u16 |
/// output_buffer_length: u32 | buffer }`, the buffer (a
/// FILE_NOTIFY_INFORMATION list, see [`encode_notify_list`]) at 0x48.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeNotifyResponse<'a> {
    pub output_buffer: &'a [u8],
}

impl<'a> ChangeNotifyResponse<'a> {
    pub fn encode(&self, out: &mut BytesMut) {
        Self::encode_header(self.output_buffer.len() as u32, out);
        out.put_slice(self.output_buffer);
    }

    /// Writes the 8 fixed bytes; the caller appends `len` bytes (with
    /// `len == 0` the padding byte is written here).
    pub fn encode_header(len: u32, out: &mut BytesMut) {
        encode_output_header(len, out)
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        Ok(ChangeNotifyResponse { output_buffer: parse_output_buffer(msg)? })
    }
}

/// One FILE_NOTIFY_INFORMATION entry ([MS-FSCC] 2.4.42).
///
/// Format: `{ next_entry_offset: u32 | action: u32 | file_name_length: u32 |
/// file_name: UTF-16LE | pad to 4 }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNotifyInformation {
    /// [`notify_action`].
    pub action: u32,
    /// Relative to the watched directory.
    pub file_name: String,
}

/// Encodes a FILE_NOTIFY_INFORMATION list, each entry 4-byte aligned,
/// chained by `next_entry_offset` (0 for the last). Returns `false`, and
/// writes nothing, if the list would exceed `max_len` bytes: the server
/// then answers STATUS_NOTIFY_ENUM_DIR.
pub fn encode_notify_list(entries: &[FileNotifyInformation], max_len: usize, out: &mut BytesMut) -> bool {
    let mut b = BytesMut::new();
    let mut prev: Option<usize> = None;
    for e in entries {
        while !b.len().is_multiple_of(4) {
            b.put_u8(0);
        }
        if let Some(p) = prev {
            let next = (b.len() - p) as u32;
            b[p..p + 4].copy_from_slice(&next.to_le_bytes());
        }
        prev = Some(b.len());
        b.put_u32_le(0);
        b.put_u32_le(e.action);
        let len_at = b.len();
        b.put_u32_le(0);
        let n = put_utf16le(&e.file_name, &mut b);
        b[len_at..len_at + 4].copy_from_slice(&(n as u32).to_le_bytes());
    }
    if b.len() > max_len {
        return false;
    }
    out.put_slice(&b);
    true
}

/// Parses a FILE_NOTIFY_INFORMATION list (client side; tests).
pub fn parse_notify_list(buf: &[u8]) -> ParseResult<Vec<FileNotifyInformation>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < buf.len() {
        let mut r = Reader::new(&buf[at..]);
        let next = r.u32("notify next")? as usize;
        let action = r.u32("notify action")?;
        let len = r.u32("notify name length")? as usize;
        let file_name = utf16le(r.take(len, "notify name")?, "notify name")?;
        out.push(FileNotifyInformation { action, file_name });
        if next == 0 {
            break;
        }
        if !next.is_multiple_of(4) || next < 12 + len {
            return Err(ParseError::Invalid("notify next"));
        }
        at += next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn request_roundtrip_and_truncation() {
        let req = ChangeNotifyRequest {
            flags: change_notify_flags::WATCH_TREE,
            output_buffer_length: 4096,
            file_id: FileId { persistent: 3, volatile: 4 },
            completion_filter: completion_filter::FILE_NAME | completion_filter::DIR_NAME,
        };
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let msg = with_header(Command::ChangeNotify, &b);
        let back = ChangeNotifyRequest::parse(&msg).unwrap();
        assert_eq!(back, req);
        assert!(back.watch_tree());
        prefixes_fail(&msg, msg.len(), ChangeNotifyRequest::parse);
    }

    #[test]
    fn notify_list_and_response() {
        let entries = vec![
            FileNotifyInformation { action: notify_action::RENAMED_OLD_NAME, file_name: "a.txt".into() },
            FileNotifyInformation { action: notify_action::RENAMED_NEW_NAME, file_name: "dir\\bb.txt".into() },
            FileNotifyInformation { action: notify_action::ADDED, file_name: "c".into() },
        ];
        let mut list = BytesMut::new();
        assert!(encode_notify_list(&entries, 4096, &mut list));
        // 12 + 10 = 22 -> next 24
        assert_eq!(u32::from_le_bytes(list[0..4].try_into().unwrap()), 24);
        assert_eq!(parse_notify_list(&list).unwrap(), entries);
        let mut none = BytesMut::new();
        assert!(!encode_notify_list(&entries, 10, &mut none));
        assert!(none.is_empty());
        let resp = ChangeNotifyResponse { output_buffer: &list };
        let mut b = BytesMut::new();
        resp.encode(&mut b);
        assert_eq!(ChangeNotifyResponse::parse(&with_header(Command::ChangeNotify, &b)).unwrap(), resp);
    }
}
