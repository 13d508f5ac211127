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
//! - [`create`], [`create_context`], [`aapl`], [`close`]: opens.
//! - [`read`], [`write`](mod@write), [`flush`], [`lock`]: file data.
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
pub mod aapl;
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

    /// Mutates valid requests at random and feeds every parser: none may
    /// panic, whatever the bytes.
    #[test]
    fn mutated_messages_never_panic() {
        use crate::header::Command;
        use test_util::with_header;

        let mut seeds: Vec<Vec<u8>> = Vec::new();
        let mut push = |cmd: Command, f: &dyn Fn(&mut BytesMut)| {
            let mut b = BytesMut::new();
            f(&mut b);
            seeds.push(with_header(cmd, &b));
        };
        push(Command::SessionSetup, &|b| {
            session_setup::SessionSetupRequest {
                flags: 0,
                security_mode: 1,
                capabilities: 0,
                channel: 0,
                previous_session_id: 0,
                security_buffer: b"token",
            }
            .encode(b)
        });
        push(Command::TreeConnect, &|b| {
            tree_connect::TreeConnectRequest {
                flags: tree_connect::tree_connect_flags::EXTENSION_PRESENT,
                path: "\\\\s\\x".into(),
            }
            .encode(b)
        });
        push(Command::Create, &|b| {
            use create_context::*;
            create::CreateRequest {
                security_flags: 0,
                requested_oplock_level: 0xFF,
                impersonation_level: 2,
                smb_create_flags: 0,
                desired_access: 1,
                file_attributes: 0,
                share_access: 7,
                create_disposition: 1,
                create_options: 0,
                name: "a\\b".into(),
                create_contexts: vec![
                    RequestContext::QueryMaximalAccess { timestamp: None },
                    RequestContext::Lease(Lease {
                        lease_key: [1; 16],
                        lease_state: 7,
                        lease_flags: 0,
                        lease_duration: 0,
                        v2: Some(LeaseV2::default()),
                    }),
                    RequestContext::DurableHandleRequestV2(DurableHandleRequestV2 {
                        timeout: 0,
                        flags: 0,
                        create_guid: [2; 16],
                    }),
                ],
            }
            .encode(b)
        });
        push(Command::Read, &|b| {
            read::ReadRequest {
                padding: 0x50,
                flags: 0,
                length: 1,
                offset: 0,
                file_id: FileId::ANY,
                minimum_count: 0,
                channel: 0,
                remaining_bytes: 0,
                read_channel_info: b"ri",
            }
            .encode(b)
        });
        push(Command::Write, &|b| {
            write::WriteRequest {
                offset: 0,
                file_id: FileId::ANY,
                channel: 0,
                remaining_bytes: 0,
                flags: 0,
                data: b"data",
                write_channel_info: b"wi",
            }
            .encode(b)
        });
        push(Command::Lock, &|b| {
            lock::LockRequest {
                lock_sequence: 0,
                file_id: FileId::ANY,
                locks: vec![lock::LockElement { offset: 0, length: 1, flags: 2 }; 2],
            }
            .encode(b)
        });
        push(Command::Ioctl, &|b| {
            ioctl::IoctlRequest {
                ctl_code: ioctl::fsctl::FSCTL_SRV_COPYCHUNK,
                file_id: FileId::ANY,
                input: &[0; 56],
                max_input_response: 0,
                output: b"",
                max_output_response: 12,
                flags: 1,
            }
            .encode(b)
        });
        push(Command::QueryDirectory, &|b| {
            query_directory::QueryDirectoryRequest {
                file_information_class: 0x25,
                flags: 0,
                file_index: 0,
                file_id: FileId::ANY,
                file_name: "*".into(),
                output_buffer_length: 100,
            }
            .encode(b)
        });
        push(Command::QueryInfo, &|b| {
            query_info::QueryInfoRequest {
                info_type: 1,
                file_info_class: 5,
                output_buffer_length: 100,
                input_buffer: b"in",
                additional_information: 0,
                flags: 0,
                file_id: FileId::ANY,
            }
            .encode(b)
        });
        push(Command::SetInfo, &|b| {
            set_info::SetInfoRequest {
                info_type: 1,
                file_info_class: 4,
                buffer: &[0; 40],
                additional_information: 0,
                file_id: FileId::ANY,
            }
            .encode(b)
        });

        type Probe = (&'static str, fn(&[u8]) -> bool);
        let parsers: Vec<Probe> = vec![
            ("session_setup", |m| session_setup::SessionSetupRequest::parse(m).is_ok()),
            ("logoff", |m| logoff::LogoffRequest::parse(m).is_ok()),
            ("tree_connect", |m| tree_connect::TreeConnectRequest::parse(m).is_ok()),
            ("tree_disconnect", |m| tree_disconnect::TreeDisconnectRequest::parse(m).is_ok()),
            ("create", |m| create::CreateRequest::parse(m).is_ok()),
            ("close", |m| close::CloseRequest::parse(m).is_ok()),
            ("flush", |m| flush::FlushRequest::parse(m).is_ok()),
            ("read", |m| read::ReadRequest::parse(m).is_ok()),
            ("write", |m| write::WriteRequest::parse(m).is_ok()),
            ("lock", |m| lock::LockRequest::parse(m).is_ok()),
            ("ioctl", |m| {
                ioctl::IoctlRequest::parse(m)
                    .map(|r| {
                        let _ = ioctl::SrvCopychunkCopy::parse(r.input);
                        let _ = ioctl::ValidateNegotiateInfoRequest::parse(r.input);
                        let _ = ioctl::NetworkInterfaceInfo::parse_list(r.input);
                    })
                    .is_ok()
            }),
            ("cancel", |m| cancel::CancelRequest::parse(m).is_ok()),
            ("echo", |m| echo::EchoRequest::parse(m).is_ok()),
            ("query_directory", |m| query_directory::QueryDirectoryRequest::parse(m).is_ok()),
            ("change_notify", |m| change_notify::ChangeNotifyRequest::parse(m).is_ok()),
            ("query_info", |m| query_info::QueryInfoRequest::parse(m).is_ok()),
            ("set_info", |m| set_info::SetInfoRequest::parse(m).is_ok()),
            ("oplock_break", |m| oplock_break::OplockBreakRequest::parse(m).is_ok()),
            ("create contexts", |m| create_context::parse_request_contexts(m.get(64..).unwrap_or(&[])).is_ok()),
            ("notify list", |m| change_notify::parse_notify_list(m.get(64..).unwrap_or(&[])).is_ok()),
        ];

        // xorshift: deterministic, no extra dependency.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut parsed = 0usize;
        for round in 0..20_000 {
            let mut m = seeds[round % seeds.len()].clone();
            for _ in 0..1 + rand() % 4 {
                let at = 64 + (rand() as usize) % (m.len() - 64);
                m[at] = match rand() % 4 {
                    0 => 0xFF,
                    1 => 0,
                    _ => rand() as u8,
                };
            }
            if rand() % 8 == 0 {
                let keep = 64 + (rand() as usize) % (m.len() - 63);
                m.truncate(keep);
            }
            for (_, p) in &parsers {
                parsed += p(&m) as usize;
            }
        }
        assert!(parsed > 0);
    }
}
