//! TREE_CONNECT request and response ([MS-SMB2] 2.2.9, 2.2.9.1, 2.2.10).

use bytes::{BufMut, BytesMut};

use super::fixed;
use crate::codec::{put_utf16le, slice_at, utf16_len, utf16le};
use crate::error::{ParseError, ParseResult};
use crate::header::HEADER_LEN;

/// Flags of a TREE_CONNECT request (SMB 3.1.1; [MS-SMB2] 2.2.9).
pub mod tree_connect_flags {
    pub const CLUSTER_RECONNECT: u16 = 0x0001;
    pub const REDIRECT_TO_OWNER: u16 = 0x0002;
    pub const EXTENSION_PRESENT: u16 = 0x0004;
}

/// ShareType of a TREE_CONNECT response ([MS-SMB2] 2.2.10).
pub mod share_type {
    pub const DISK: u8 = 0x01;
    pub const PIPE: u8 = 0x02;
    pub const PRINT: u8 = 0x03;
}

/// ShareFlags of a TREE_CONNECT response ([MS-SMB2] 2.2.10).
pub mod share_flags {
    pub const MANUAL_CACHING: u32 = 0x0000_0000;
    pub const AUTO_CACHING: u32 = 0x0000_0010;
    pub const VDO_CACHING: u32 = 0x0000_0020;
    pub const NO_CACHING: u32 = 0x0000_0030;
    /// Mask of the caching policy above.
    pub const CACHING_MASK: u32 = 0x0000_0030;
    pub const DFS: u32 = 0x0000_0001;
    pub const DFS_ROOT: u32 = 0x0000_0002;
    pub const RESTRICT_EXCLUSIVE_OPENS: u32 = 0x0000_0100;
    pub const FORCE_SHARED_DELETE: u32 = 0x0000_0200;
    pub const ALLOW_NAMESPACE_CACHING: u32 = 0x0000_0400;
    pub const ACCESS_BASED_DIRECTORY_ENUM: u32 = 0x0000_0800;
    pub const FORCE_LEVELII_OPLOCK: u32 = 0x0000_1000;
    pub const ENABLE_HASH_V1: u32 = 0x0000_2000;
    pub const ENABLE_HASH_V2: u32 = 0x0000_4000;
    pub const ENCRYPT_DATA: u32 = 0x0000_8000;
    pub const IDENTITY_REMOTING: u32 = 0x0004_0000;
    pub const COMPRESS_DATA: u32 = 0x0010_0000;
    pub const ISOLATED_TRANSPORT: u32 = 0x0020_0000;
}

/// Capabilities of a TREE_CONNECT response ([MS-SMB2] 2.2.10).
pub mod share_capabilities {
    pub const DFS: u32 = 0x0000_0008;
    pub const CONTINUOUS_AVAILABILITY: u32 = 0x0000_0010;
    pub const SCALEOUT: u32 = 0x0000_0020;
    pub const CLUSTER: u32 = 0x0000_0040;
    pub const ASYMMETRIC: u32 = 0x0000_0080;
    pub const REDIRECT_TO_OWNER: u32 = 0x0000_0100;
}

/// Offset of the request's Buffer: header + 8 fixed bytes.
const BUFFER_OFFSET: usize = HEADER_LEN + 8;
/// Length of the fixed part of the request extension ([MS-SMB2] 2.2.9.1).
const EXTENSION_LEN: usize = 16;

/// SMB2 TREE_CONNECT request ([MS-SMB2] 2.2.9, 2.2.9.1).
///
/// Format: `{ structure_size=9: u16 | flags: u16 | path_offset: u16 |
/// path_length: u16 | buffer }`; when `flags` has EXTENSION_PRESENT
/// (3.1.1), the buffer is `{ tree_connect_context_offset: u32 |
/// tree_connect_context_count: u16 | _reserved: [u8;10] | path_name |
/// tree_connect_contexts }`.
///
/// With the extension, Windows counts PathOffset from the start of the
/// extension rather than from the header. The parser accepts both: an
/// offset that would land inside the header or the extension's fixed part
/// is taken as relative to the extension. The contexts (remoted identity)
/// are bounds-checked and otherwise ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeConnectRequest {
    /// [`tree_connect_flags`].
    pub flags: u16,
    /// `\\server\share`.
    pub path: String,
}

impl TreeConnectRequest {
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 9)?;
        let flags = r.u16("flags")?;
        let path_offset = r.u16("path offset")? as usize;
        let path_length = r.u16("path length")? as usize;
        let path_at = if flags & tree_connect_flags::EXTENSION_PRESENT != 0 {
            let ext = slice_at(msg, BUFFER_OFFSET, EXTENSION_LEN, "tree connect extension")?;
            let ctx_offset = u32::from_le_bytes([ext[0], ext[1], ext[2], ext[3]]) as usize;
            let ctx_count = u16::from_le_bytes([ext[4], ext[5]]) as usize;
            // "From the start of the TREE_CONNECT request": taken from the
            // header, as every other offset, or failing that from the body.
            check_contexts(msg, ctx_offset, ctx_count)
                .or_else(|_| check_contexts(msg, ctx_offset + HEADER_LEN, ctx_count))?;
            if path_offset < BUFFER_OFFSET + EXTENSION_LEN {
                BUFFER_OFFSET + path_offset
            } else {
                path_offset
            }
        } else {
            path_offset
        };
        if path_length == 0 {
            return Err(ParseError::Invalid("empty tree connect path"));
        }
        let path = utf16le(slice_at(msg, path_at, path_length, "tree connect path")?, "tree connect path")?;
        Ok(TreeConnectRequest { flags, path })
    }

    /// Encodes the body (client side; tests and the fuzzer). With
    /// EXTENSION_PRESENT in `flags`, writes an extension with no contexts
    /// and a PathOffset relative to it, as Windows does.
    pub fn encode(&self, out: &mut BytesMut) {
        let len = utf16_len(&self.path);
        out.put_u16_le(9);
        out.put_u16_le(self.flags);
        if self.flags & tree_connect_flags::EXTENSION_PRESENT != 0 {
            out.put_u16_le(EXTENSION_LEN as u16);
            out.put_u16_le(len as u16);
            out.put_u32_le(0);
            out.put_u16_le(0);
            out.put_bytes(0, 10);
        } else {
            out.put_u16_le(BUFFER_OFFSET as u16);
            out.put_u16_le(len as u16);
        }
        put_utf16le(&self.path, out);
    }
}

/// Bounds-checks the tree connect contexts of an extension ([MS-SMB2]
/// 2.2.9.2): `{ context_type: u16 | data_length: u16 | _reserved: u32 | data }`,
/// 8-byte aligned, starting at `offset` from the header.
fn check_contexts(msg: &[u8], offset: usize, count: usize) -> ParseResult<()> {
    let mut at = offset;
    for i in 0..count {
        if i > 0 {
            at = at.checked_add(7).ok_or(ParseError::OutOfBounds("tree connect context"))? & !7;
        }
        let head = slice_at(msg, at, 8, "tree connect context")?;
        let len = u16::from_le_bytes([head[2], head[3]]) as usize;
        slice_at(msg, at + 8, len, "tree connect context data")?;
        at += 8 + len;
    }
    Ok(())
}

/// SMB2 TREE_CONNECT response ([MS-SMB2] 2.2.10).
///
/// Format: `{ structure_size=16: u16 | share_type: u8 | _reserved: u8 |
/// share_flags: u32 | capabilities: u32 | maximal_access: u32 }`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeConnectResponse {
    /// [`share_type`].
    pub share_type: u8,
    /// [`share_flags`].
    pub share_flags: u32,
    /// [`share_capabilities`].
    pub capabilities: u32,
    /// An access mask ([`super::create::access_mask`]).
    pub maximal_access: u32,
}

impl TreeConnectResponse {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16_le(16);
        out.put_u8(self.share_type);
        out.put_u8(0);
        out.put_u32_le(self.share_flags);
        out.put_u32_le(self.capabilities);
        out.put_u32_le(self.maximal_access);
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &[u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 16)?;
        let share_type = r.u8("share type")?;
        r.u8("reserved")?;
        Ok(TreeConnectResponse {
            share_type,
            share_flags: r.u32("share flags")?,
            capabilities: r.u32("capabilities")?,
            maximal_access: r.u32("maximal access")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Command;
    use crate::msg::test_util::{prefixes_fail, with_header};

    fn roundtrip(req: &TreeConnectRequest) -> Vec<u8> {
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let msg = with_header(Command::TreeConnect, &b);
        assert_eq!(&TreeConnectRequest::parse(&msg).unwrap(), req);
        prefixes_fail(&msg, msg.len(), TreeConnectRequest::parse);
        msg
    }

    #[test]
    fn request_plain_and_extended() {
        roundtrip(&TreeConnectRequest { flags: 0, path: "\\\\127.0.0.11\\share".into() });
        let ext = TreeConnectRequest {
            flags: tree_connect_flags::EXTENSION_PRESENT | tree_connect_flags::REDIRECT_TO_OWNER,
            path: "\\\\srv\\IPC$".into(),
        };
        let mut msg = roundtrip(&ext);
        // The same request with an absolute PathOffset.
        msg[64 + 4..64 + 6].copy_from_slice(&((HEADER_LEN + 8 + 16) as u16).to_le_bytes());
        assert_eq!(TreeConnectRequest::parse(&msg).unwrap(), ext);
    }

    #[test]
    fn extension_contexts_are_bounds_checked() {
        let ext = TreeConnectRequest { flags: tree_connect_flags::EXTENSION_PRESENT, path: "\\\\s\\x".into() };
        let mut b = BytesMut::new();
        ext.encode(&mut b);
        let path_end = HEADER_LEN + b.len();
        let ctx_at = (path_end + 7) & !7;
        b.put_bytes(0, ctx_at - path_end);
        b.put_u16_le(1);
        b.put_u16_le(4);
        b.put_u32_le(0);
        b.put_u32_le(0xdead_beef);
        let mut msg = with_header(Command::TreeConnect, &b);
        msg[72..76].copy_from_slice(&(ctx_at as u32).to_le_bytes());
        msg[76..78].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(TreeConnectRequest::parse(&msg).unwrap(), ext);
        msg[76..78].copy_from_slice(&2u16.to_le_bytes());
        assert!(TreeConnectRequest::parse(&msg).is_err());
        msg[76..78].copy_from_slice(&1u16.to_le_bytes());
        msg[72..76].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(TreeConnectRequest::parse(&msg).is_err());
    }

    #[test]
    fn invalid_utf16_path() {
        let mut b = BytesMut::new();
        TreeConnectRequest { flags: 0, path: "ab".into() }.encode(&mut b);
        let mut msg = with_header(Command::TreeConnect, &b);
        msg[72..74].copy_from_slice(&[0x00, 0xD8]);
        assert_eq!(TreeConnectRequest::parse(&msg), Err(ParseError::Invalid("tree connect path")));
    }

    #[test]
    fn response_roundtrip() {
        let resp = TreeConnectResponse {
            share_type: share_type::DISK,
            share_flags: share_flags::NO_CACHING,
            capabilities: share_capabilities::CONTINUOUS_AVAILABILITY,
            maximal_access: 0x001F_01FF,
        };
        let mut b = BytesMut::new();
        resp.encode(&mut b);
        assert_eq!(b.len(), 16);
        assert_eq!(TreeConnectResponse::parse(&with_header(Command::TreeConnect, &b)).unwrap(), resp);
    }
}
