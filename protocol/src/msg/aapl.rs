//! The AAPL create context: Apple's SMB2 extension, which macOS clients send
//! on their first CREATE of a connection to learn what the server offers.
//!
//! Apple has published no specification; the layout is the one macOS and
//! Samba's `vfs_fruit` agree on (Samba's `libcli/smb/smb2_create_ctx.h`
//! names the constants). All integers are little-endian.
//!
//! Request, `kAAPL_SERVER_QUERY` (exactly 24 bytes):
//! `{ command: u32 | _reserved: u32 | request_bitmap: u64 | client_caps: u64 }`
//!
//! Reply: `{ command: u32 | _reserved: u32 | reply_bitmap: u64 |
//! [server_caps: u64] | [volume_caps: u64] |
//! [_pad: u32 | model_length: u32 | model: UTF-16LE] }`, each bracketed part
//! present when its bit is in `reply_bitmap` ([`query`]), in that order.

use bytes::{BufMut, BytesMut};

use crate::codec::{put_utf16le, utf16le, Reader};
use crate::error::{ParseError, ParseResult};

/// Command codes (`command`).
pub mod command {
    /// Server query: capabilities, volume capabilities, model.
    pub const SERVER_QUERY: u32 = 0x1;
    /// Resolve a file id to a path; Duet does not offer it.
    pub const RESOLVE_ID: u32 = 0x2;
}

/// What a server query asks for and its reply carries (`request_bitmap`,
/// `reply_bitmap`).
pub mod query {
    pub const SERVER_CAPS: u64 = 0x1;
    pub const VOLUME_CAPS: u64 = 0x2;
    pub const MODEL_INFO: u64 = 0x4;
    /// The bits a reply can answer.
    pub const ALL: u64 = SERVER_CAPS | VOLUME_CAPS | MODEL_INFO;
}

/// Client and server capabilities (`client_caps`, `server_caps`).
pub mod caps {
    /// Directory listings carry the resource fork size, Finder info, the
    /// UNIX mode and the maximal access in place of EA size and short name.
    pub const SUPPORTS_READ_DIR_ATTR: u64 = 0x1;
    /// FSCTL_SRV_COPYCHUNK copies a file's streams and metadata too.
    pub const SUPPORTS_OSX_COPYFILE: u64 = 0x2;
    /// The server is a UNIX system (POSIX semantics for names and modes).
    pub const UNIX_BASED: u64 = 0x4;
    /// Security descriptors carry MS-NFS style ACEs with uid, gid and mode.
    pub const SUPPORTS_NFS_ACE: u64 = 0x8;
}

/// Volume capabilities (`volume_caps`).
pub mod volume_caps {
    /// The resolve-id command works.
    pub const SUPPORT_RESOLVE_ID: u64 = 0x1;
    /// Names are case-sensitive.
    pub const CASE_SENSITIVE: u64 = 0x2;
    /// FLUSH is a full sync (macOS `F_FULLFSYNC`): what Time Machine needs.
    pub const FULL_SYNC: u64 = 0x4;
}

/// Length of a server query request.
pub const QUERY_LEN: usize = 24;

/// An AAPL server query (the only request command there is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerQuery {
    /// [`query`] bits.
    pub request_bitmap: u64,
    /// [`caps`] bits the client supports.
    pub client_caps: u64,
}

impl ServerQuery {
    /// Parses a request context's data. Any length but 24 and any command
    /// but [`command::SERVER_QUERY`] is invalid, as `vfs_fruit` has it
    /// (the server answers STATUS_INVALID_PARAMETER).
    pub fn parse(data: &[u8]) -> ParseResult<ServerQuery> {
        if data.len() != QUERY_LEN {
            return Err(ParseError::Invalid("AAPL length"));
        }
        let mut r = Reader::new(data);
        if r.u32("AAPL command")? != command::SERVER_QUERY {
            return Err(ParseError::Invalid("AAPL command"));
        }
        r.u32("AAPL")?;
        let request_bitmap = r.u64("AAPL request bitmap")?;
        let client_caps = r.u64("AAPL client caps")?;
        Ok(ServerQuery { request_bitmap, client_caps })
    }

    /// Client side (tests, the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(command::SERVER_QUERY);
        out.put_u32_le(0);
        out.put_u64_le(self.request_bitmap);
        out.put_u64_le(self.client_caps);
    }
}

/// The reply to a [`ServerQuery`]. A part is on the wire when its bit is
/// in `reply_bitmap`; the value of a part whose bit is clear is ignored
/// when encoding and zero when parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerQueryReply {
    /// [`query`] bits: the ones asked for that the server answers.
    pub reply_bitmap: u64,
    /// [`caps`] bits.
    pub server_caps: u64,
    /// [`volume_caps`] bits.
    pub volume_caps: u64,
    pub model: String,
}

impl ServerQueryReply {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(command::SERVER_QUERY);
        out.put_u32_le(0);
        out.put_u64_le(self.reply_bitmap & query::ALL);
        if self.reply_bitmap & query::SERVER_CAPS != 0 {
            out.put_u64_le(self.server_caps);
        }
        if self.reply_bitmap & query::VOLUME_CAPS != 0 {
            out.put_u64_le(self.volume_caps);
        }
        if self.reply_bitmap & query::MODEL_INFO != 0 {
            out.put_u32_le(0);
            let at = out.len();
            out.put_u32_le(0);
            let n = put_utf16le(&self.model, out) as u32;
            out[at..at + 4].copy_from_slice(&n.to_le_bytes());
        }
    }

    /// Client side (tests). Leftover bytes are an error.
    pub fn parse(data: &[u8]) -> ParseResult<ServerQueryReply> {
        let mut r = Reader::new(data);
        if r.u32("AAPL command")? != command::SERVER_QUERY {
            return Err(ParseError::Invalid("AAPL command"));
        }
        r.u32("AAPL")?;
        let reply_bitmap = r.u64("AAPL reply bitmap")?;
        let mut reply = ServerQueryReply { reply_bitmap, ..Default::default() };
        if reply_bitmap & query::SERVER_CAPS != 0 {
            reply.server_caps = r.u64("AAPL server caps")?;
        }
        if reply_bitmap & query::VOLUME_CAPS != 0 {
            reply.volume_caps = r.u64("AAPL volume caps")?;
        }
        if reply_bitmap & query::MODEL_INFO != 0 {
            r.u32("AAPL model")?;
            let n = r.u32("AAPL model length")? as usize;
            reply.model = utf16le(r.take(n, "AAPL model")?, "AAPL model")?;
        }
        if r.remaining() != 0 {
            return Err(ParseError::Invalid("AAPL trailing bytes"));
        }
        Ok(reply)
    }
}

/// What a directory entry carries for a client that negotiated
/// [`caps::SUPPORTS_READ_DIR_ATTR`], in FileIdBothDirectoryInformation
/// ([MS-FSCC] 2.4.17) only, as macOS and Samba's `vfs_fruit` agree:
///
/// - `EaSize` is the maximal access the caller would get on the entry;
/// - `ShortNameLength` is 24 and `ShortName` is `{ rfork_size: u64 |
///   finder_info: [u8; 16] }` (the resource fork's size, little-endian,
///   then the compressed Finder info, [`DirAttr::finder_info`]);
/// - `Reserved2` is the entry's UNIX mode (`st_mode`, cut to 16 bits),
///   zero unless NFS ACEs are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirAttr {
    pub max_access: u32,
    pub rfork_size: u64,
    /// `{ type: [u8; 4] | creator: [u8; 4] | finder_flags: [u8; 2] |
    /// extended_flags: [u8; 2] | date_added: u32 big-endian }`: type and
    /// creator (files only) and the flags from the `AFP_AfpInfo` Finder
    /// info, the date in seconds since 2000-01-01 UTC.
    pub finder_info: [u8; 16],
    pub unix_mode: u16,
}

impl DirAttr {
    /// The 24 bytes that take the short name's place.
    pub fn short_name_field(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.rfork_size.to_le_bytes());
        b[8..].copy_from_slice(&self.finder_info);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What smbtorture's vfs.fruit "SMB2/CREATE context AAPL" sends.
    fn torture_query() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&(query::SERVER_CAPS | query::VOLUME_CAPS | query::MODEL_INFO).to_le_bytes());
        b.extend_from_slice(&(caps::SUPPORTS_READ_DIR_ATTR | caps::UNIX_BASED | caps::SUPPORTS_NFS_ACE).to_le_bytes());
        b
    }

    #[test]
    fn parses_the_query_macos_sends() {
        let q = ServerQuery::parse(&torture_query()).unwrap();
        assert_eq!(q.request_bitmap, 7);
        assert_eq!(q.client_caps, 0xD);
        let mut b = BytesMut::new();
        q.encode(&mut b);
        assert_eq!(&b[..], &torture_query()[..]);
    }

    #[test]
    fn hostile_queries_are_invalid() {
        let good = torture_query();
        // Every other length, shorter and longer.
        for n in 0..64 {
            if n == QUERY_LEN {
                continue;
            }
            let mut d = good.clone();
            d.resize(n, 0xFF);
            assert!(ServerQuery::parse(&d).is_err(), "length {n}");
        }
        // Resolve-id and unknown commands.
        for cmd in [0u32, command::RESOLVE_ID, 3, u32::MAX] {
            let mut d = good.clone();
            d[0..4].copy_from_slice(&cmd.to_le_bytes());
            assert!(ServerQuery::parse(&d).is_err(), "command {cmd}");
        }
        // Unknown bitmap bits are the client's business: still a query.
        let mut d = good;
        d[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(ServerQuery::parse(&d).unwrap().request_bitmap, u64::MAX);
    }

    #[test]
    fn reply_layout_and_roundtrip() {
        let reply = ServerQueryReply {
            reply_bitmap: query::ALL,
            server_caps: caps::UNIX_BASED,
            volume_caps: volume_caps::FULL_SYNC,
            model: "MacSamba".into(),
        };
        let mut b = BytesMut::new();
        reply.encode(&mut b);
        // 16 + 8 + 8 + 8 + 2 * 8: the size smbtorture expects of "MacSamba".
        assert_eq!(b.len(), 40 + 16);
        assert_eq!(&b[16..24], &caps::UNIX_BASED.to_le_bytes());
        assert_eq!(&b[24..32], &volume_caps::FULL_SYNC.to_le_bytes());
        assert_eq!(&b[36..40], &16u32.to_le_bytes());
        assert_eq!(ServerQueryReply::parse(&b).unwrap(), reply);

        // Only the parts asked for, in order; unknown bits are not echoed.
        let only_volume = ServerQueryReply { reply_bitmap: query::VOLUME_CAPS | 0x80, ..reply.clone() };
        let mut b = BytesMut::new();
        only_volume.encode(&mut b);
        assert_eq!(b.len(), 24);
        assert_eq!(&b[8..16], &query::VOLUME_CAPS.to_le_bytes());
        let back = ServerQueryReply::parse(&b).unwrap();
        assert_eq!((back.volume_caps, back.server_caps, back.model.as_str()), (volume_caps::FULL_SYNC, 0, ""));
    }

    #[test]
    fn hostile_replies_fail() {
        let reply = ServerQueryReply { reply_bitmap: query::ALL, model: "Duet".into(), ..Default::default() };
        let mut b = BytesMut::new();
        reply.encode(&mut b);
        for cut in 0..b.len() {
            assert!(ServerQueryReply::parse(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = b.to_vec();
        long.push(0);
        assert!(ServerQueryReply::parse(&long).is_err());
        // A model length past the end, or odd.
        let mut m = b.to_vec();
        m[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ServerQueryReply::parse(&m).is_err());
        let mut m = b.to_vec();
        m[36..40].copy_from_slice(&7u32.to_le_bytes());
        assert!(ServerQueryReply::parse(&m).is_err());
    }
}
