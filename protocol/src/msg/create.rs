//! CREATE request and response ([MS-SMB2] 2.2.13, 2.2.14), and the bit
//! sets they carry. The create contexts are in [`super::create_context`].

use bytes::{BufMut, BytesMut};

use super::create_context::{encode_request_contexts, encode_response_contexts, parse_list, parse_request_contexts};
use super::create_context::{RequestContext, ResponseContext};
use super::{fixed, FileId};
use crate::codec::{put_utf16le, slice_at, utf16_len, utf16le};
use crate::error::ParseResult;
use crate::header::HEADER_LEN;

/// RequestedOplockLevel / OplockLevel ([MS-SMB2] 2.2.13, 2.2.14, 2.2.23).
pub mod oplock_level {
    pub const NONE: u8 = 0x00;
    pub const II: u8 = 0x01;
    pub const EXCLUSIVE: u8 = 0x08;
    pub const BATCH: u8 = 0x09;
    pub const LEASE: u8 = 0xFF;
}

/// ImpersonationLevel ([MS-SMB2] 2.2.13).
pub mod impersonation_level {
    pub const ANONYMOUS: u32 = 0x0;
    pub const IDENTIFICATION: u32 = 0x1;
    pub const IMPERSONATION: u32 = 0x2;
    pub const DELEGATE: u32 = 0x3;
}

/// Access mask bits ([MS-SMB2] 2.2.13.1.1 files, 2.2.13.1.2 directories).
pub use crate::fscc::access as access_mask;

/// File attributes ([MS-FSCC] 2.6).
pub use crate::fscc::file_attributes;

/// ShareAccess bits ([MS-SMB2] 2.2.13).
pub mod share_access {
    pub const READ: u32 = 0x0000_0001;
    pub const WRITE: u32 = 0x0000_0002;
    pub const DELETE: u32 = 0x0000_0004;
}

/// CreateDisposition values ([MS-SMB2] 2.2.13).
pub mod create_disposition {
    pub const SUPERSEDE: u32 = 0x0000_0000;
    pub const OPEN: u32 = 0x0000_0001;
    pub const CREATE: u32 = 0x0000_0002;
    pub const OPEN_IF: u32 = 0x0000_0003;
    pub const OVERWRITE: u32 = 0x0000_0004;
    pub const OVERWRITE_IF: u32 = 0x0000_0005;
}

/// CreateOptions bits ([MS-SMB2] 2.2.13).
pub mod create_options {
    pub const DIRECTORY_FILE: u32 = 0x0000_0001;
    pub const WRITE_THROUGH: u32 = 0x0000_0002;
    pub const SEQUENTIAL_ONLY: u32 = 0x0000_0004;
    pub const NO_INTERMEDIATE_BUFFERING: u32 = 0x0000_0008;
    pub const SYNCHRONOUS_IO_ALERT: u32 = 0x0000_0010;
    pub const SYNCHRONOUS_IO_NONALERT: u32 = 0x0000_0020;
    pub const NON_DIRECTORY_FILE: u32 = 0x0000_0040;
    pub const COMPLETE_IF_OPLOCKED: u32 = 0x0000_0100;
    pub const NO_EA_KNOWLEDGE: u32 = 0x0000_0200;
    pub const OPEN_REMOTE_INSTANCE: u32 = 0x0000_0400;
    pub const RANDOM_ACCESS: u32 = 0x0000_0800;
    pub const DELETE_ON_CLOSE: u32 = 0x0000_1000;
    pub const OPEN_BY_FILE_ID: u32 = 0x0000_2000;
    pub const OPEN_FOR_BACKUP_INTENT: u32 = 0x0000_4000;
    pub const NO_COMPRESSION: u32 = 0x0000_8000;
    pub const OPEN_REQUIRING_OPLOCK: u32 = 0x0001_0000;
    pub const DISALLOW_EXCLUSIVE: u32 = 0x0002_0000;
    pub const RESERVE_OPFILTER: u32 = 0x0010_0000;
    pub const OPEN_REPARSE_POINT: u32 = 0x0020_0000;
    pub const OPEN_NO_RECALL: u32 = 0x0040_0000;
    pub const OPEN_FOR_FREE_SPACE_QUERY: u32 = 0x0080_0000;
}

/// CreateAction values of a CREATE response ([MS-SMB2] 2.2.14).
pub mod create_action {
    pub const SUPERSEDED: u32 = 0x0000_0000;
    pub const OPENED: u32 = 0x0000_0001;
    pub const CREATED: u32 = 0x0000_0002;
    pub const OVERWRITTEN: u32 = 0x0000_0003;
}

/// Flags of a CREATE response ([MS-SMB2] 2.2.14).
pub mod create_response_flags {
    pub const REPARSEPOINT: u8 = 0x01;
}

/// Offset of the request's Buffer: header + 56 fixed bytes (0x78).
const REQUEST_BUFFER_OFFSET: usize = HEADER_LEN + 56;
/// Offset of the response's Buffer: header + 88 fixed bytes (0x98).
const RESPONSE_BUFFER_OFFSET: usize = HEADER_LEN + 88;

/// SMB2 CREATE request ([MS-SMB2] 2.2.13).
///
/// Format: `{ structure_size=57: u16 | security_flags: u8 |
/// requested_oplock_level: u8 | impersonation_level: u32 |
/// smb_create_flags: u64 | _reserved: u64 | desired_access: u32 |
/// file_attributes: u32 | share_access: u32 | create_disposition: u32 |
/// create_options: u32 | name_offset: u16 | name_length: u16 |
/// create_contexts_offset: u32 | create_contexts_length: u32 | buffer }`
///
/// The name is relative to the share root, without a leading backslash;
/// an empty name is the root. The contexts are decoded by name; a known
/// context with a malformed body fails the parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest<'a> {
    pub security_flags: u8,
    /// [`oplock_level`].
    pub requested_oplock_level: u8,
    /// [`impersonation_level`].
    pub impersonation_level: u32,
    pub smb_create_flags: u64,
    /// [`access_mask`].
    pub desired_access: u32,
    /// [`file_attributes`].
    pub file_attributes: u32,
    /// [`share_access`].
    pub share_access: u32,
    /// [`create_disposition`].
    pub create_disposition: u32,
    /// [`create_options`].
    pub create_options: u32,
    pub name: String,
    pub create_contexts: Vec<RequestContext<'a>>,
}

impl<'a> CreateRequest<'a> {
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 57)?;
        let security_flags = r.u8("security flags")?;
        let requested_oplock_level = r.u8("oplock level")?;
        let impersonation_level = r.u32("impersonation level")?;
        let smb_create_flags = r.u64("create flags")?;
        r.u64("reserved")?;
        let desired_access = r.u32("desired access")?;
        let file_attributes = r.u32("file attributes")?;
        let share_access = r.u32("share access")?;
        let create_disposition = r.u32("create disposition")?;
        let create_options = r.u32("create options")?;
        let name_offset = r.u16("name offset")? as usize;
        let name_length = r.u16("name length")? as usize;
        let ctx_offset = r.u32("create contexts offset")? as usize;
        let ctx_length = r.u32("create contexts length")? as usize;
        let name = utf16le(slice_at(msg, name_offset, name_length, "create name")?, "create name")?;
        let ctx_buf = slice_at(msg, ctx_offset, ctx_length, "create contexts")?;
        let create_contexts = parse_request_contexts(ctx_buf)?;
        Ok(CreateRequest {
            security_flags,
            requested_oplock_level,
            impersonation_level,
            smb_create_flags,
            desired_access,
            file_attributes,
            share_access,
            create_disposition,
            create_options,
            name,
            create_contexts,
        })
    }

    /// The first context of a kind, e.g.
    /// `req.context(|c| matches!(c, RequestContext::Lease(_)))`.
    pub fn context(&self, pred: impl Fn(&RequestContext<'a>) -> bool) -> Option<&RequestContext<'a>> {
        self.create_contexts.iter().find(|c| pred(c))
    }

    /// The CreateGuid of an exclusive create (FILE_CREATE, [MS-SMB2] 2.2.13)
    /// that asks for a durable handle version 2 (2.2.13.2.11): the one kind of
    /// CREATE whose resend, after its first sending made the file, would
    /// collide, and which a server can recognise by that guid.
    pub fn exclusive_create_guid(&self) -> Option<[u8; 16]> {
        if self.create_disposition != create_disposition::CREATE {
            return None;
        }
        self.create_contexts.iter().find_map(|c| match c {
            RequestContext::DurableHandleRequestV2(d) => Some(d.create_guid),
            _ => None,
        })
    }

    /// Encodes the body (client side; tests and the fuzzer).
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        let name_len = utf16_len(&self.name);
        let mut ctx = BytesMut::new();
        encode_request_contexts(&self.create_contexts, &mut ctx);
        let ctx_offset = (REQUEST_BUFFER_OFFSET + name_len + 7) & !7;
        out.put_u16_le(57);
        out.put_u8(self.security_flags);
        out.put_u8(self.requested_oplock_level);
        out.put_u32_le(self.impersonation_level);
        out.put_u64_le(self.smb_create_flags);
        out.put_u64_le(0);
        out.put_u32_le(self.desired_access);
        out.put_u32_le(self.file_attributes);
        out.put_u32_le(self.share_access);
        out.put_u32_le(self.create_disposition);
        out.put_u32_le(self.create_options);
        out.put_u16_le(REQUEST_BUFFER_OFFSET as u16);
        out.put_u16_le(name_len as u16);
        out.put_u32_le(if ctx.is_empty() { 0 } else { ctx_offset as u32 });
        out.put_u32_le(ctx.len() as u32);
        put_utf16le(&self.name, out);
        if ctx.is_empty() {
            if name_len == 0 {
                out.put_u8(0);
            }
        } else {
            while HEADER_LEN + out.len() - start < ctx_offset {
                out.put_u8(0);
            }
            out.put_slice(&ctx);
        }
    }
}

/// SMB2 CREATE response ([MS-SMB2] 2.2.14).
///
/// Format: `{ structure_size=89: u16 | oplock_level: u8 | flags: u8 |
/// create_action: u32 | creation_time: u64 | last_access_time: u64 |
/// last_write_time: u64 | change_time: u64 | allocation_size: u64 |
/// end_of_file: u64 | file_attributes: u32 | _reserved2: u32 |
/// file_id: FileId | create_contexts_offset: u32 |
/// create_contexts_length: u32 | buffer }`
///
/// Contexts start at 0x98; with none, one zero byte stands in for the
/// buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateResponse<'a> {
    /// [`oplock_level`].
    pub oplock_level: u8,
    /// [`create_response_flags`].
    pub flags: u8,
    /// [`create_action`].
    pub create_action: u32,
    /// FILETIMEs.
    pub creation_time: u64,
    pub last_access_time: u64,
    pub last_write_time: u64,
    pub change_time: u64,
    pub allocation_size: u64,
    pub end_of_file: u64,
    /// [`file_attributes`].
    pub file_attributes: u32,
    pub file_id: FileId,
    pub create_contexts: Vec<ResponseContext<'a>>,
}

impl<'a> CreateResponse<'a> {
    pub fn encode(&self, out: &mut BytesMut) {
        let mut ctx = BytesMut::new();
        encode_response_contexts(&self.create_contexts, &mut ctx);
        out.put_u16_le(89);
        out.put_u8(self.oplock_level);
        out.put_u8(self.flags);
        out.put_u32_le(self.create_action);
        out.put_u64_le(self.creation_time);
        out.put_u64_le(self.last_access_time);
        out.put_u64_le(self.last_write_time);
        out.put_u64_le(self.change_time);
        out.put_u64_le(self.allocation_size);
        out.put_u64_le(self.end_of_file);
        out.put_u32_le(self.file_attributes);
        out.put_u32_le(0);
        self.file_id.encode(out);
        out.put_u32_le(if ctx.is_empty() { 0 } else { RESPONSE_BUFFER_OFFSET as u32 });
        out.put_u32_le(ctx.len() as u32);
        if ctx.is_empty() {
            out.put_u8(0);
        } else {
            out.put_slice(&ctx);
        }
    }

    /// Parses a response body (client side; tests).
    pub fn parse(msg: &'a [u8]) -> ParseResult<Self> {
        let mut r = fixed(msg, 89)?;
        let oplock_level = r.u8("oplock level")?;
        let flags = r.u8("flags")?;
        let create_action = r.u32("create action")?;
        let creation_time = r.u64("creation time")?;
        let last_access_time = r.u64("last access time")?;
        let last_write_time = r.u64("last write time")?;
        let change_time = r.u64("change time")?;
        let allocation_size = r.u64("allocation size")?;
        let end_of_file = r.u64("end of file")?;
        let file_attributes = r.u32("file attributes")?;
        r.u32("reserved")?;
        let file_id = FileId::read(&mut r)?;
        let ctx_offset = r.u32("create contexts offset")? as usize;
        let ctx_length = r.u32("create contexts length")? as usize;
        let create_contexts = parse_list(slice_at(msg, ctx_offset, ctx_length, "create contexts")?)?
            .into_iter()
            .map(ResponseContext::decode)
            .collect::<ParseResult<Vec<_>>>()?;
        Ok(CreateResponse {
            oplock_level,
            flags,
            create_action,
            creation_time,
            last_access_time,
            last_write_time,
            change_time,
            allocation_size,
            end_of_file,
            file_attributes,
            file_id,
            create_contexts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ParseError;
    use crate::header::Command;
    use crate::msg::create_context::{DurableHandleRequestV2, Lease};
    use crate::msg::test_util::{prefixes_fail, with_header};

    #[test]
    fn an_exclusive_create_guid_needs_file_create_and_a_dh2q() {
        let dh2q = RequestContext::DurableHandleRequestV2(DurableHandleRequestV2 {
            timeout: 0,
            flags: 0,
            create_guid: [3; 16],
        });
        let mut req = request("a.txt", vec![dh2q]);
        req.create_disposition = create_disposition::CREATE;
        assert_eq!(req.exclusive_create_guid(), Some([3; 16]));
        req.create_disposition = create_disposition::OPEN_IF;
        assert_eq!(req.exclusive_create_guid(), None);
        let mut plain = request("a.txt", vec![]);
        plain.create_disposition = create_disposition::CREATE;
        assert_eq!(plain.exclusive_create_guid(), None);
    }

    fn request(name: &str, create_contexts: Vec<RequestContext<'static>>) -> CreateRequest<'static> {
        CreateRequest {
            security_flags: 0,
            requested_oplock_level: oplock_level::LEASE,
            impersonation_level: impersonation_level::IMPERSONATION,
            smb_create_flags: 0,
            desired_access: access_mask::GENERIC_READ | access_mask::SYNCHRONIZE,
            file_attributes: file_attributes::NORMAL,
            share_access: share_access::READ | share_access::WRITE,
            create_disposition: create_disposition::OPEN_IF,
            create_options: create_options::NON_DIRECTORY_FILE,
            name: name.into(),
            create_contexts,
        }
    }

    #[test]
    fn request_roundtrip_with_contexts_and_truncation() {
        let req = request(
            "dir\\file.txt",
            vec![
                RequestContext::QueryMaximalAccess { timestamp: None },
                RequestContext::Lease(Lease {
                    lease_key: [5; 16],
                    lease_state: 7,
                    lease_flags: 0,
                    lease_duration: 0,
                    v2: None,
                }),
                RequestContext::DurableHandleRequestV2(DurableHandleRequestV2 {
                    timeout: 0,
                    flags: 0,
                    create_guid: [1; 16],
                }),
                RequestContext::QueryOnDiskId,
            ],
        );
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let msg = with_header(Command::Create, &b);
        assert_eq!(CreateRequest::parse(&msg).unwrap(), req);
        assert_eq!(u32::from_le_bytes(msg[64 + 48..64 + 52].try_into().unwrap()) % 8, 0);
        assert!(req.context(|c| matches!(c, RequestContext::Lease(_))).is_some());
        prefixes_fail(&msg, msg.len(), CreateRequest::parse);
    }

    #[test]
    fn request_without_contexts_and_root_name() {
        for name in ["", "a.txt"] {
            let req = request(name, vec![]);
            let mut b = BytesMut::new();
            req.encode(&mut b);
            let msg = with_header(Command::Create, &b);
            assert_eq!(CreateRequest::parse(&msg).unwrap(), req);
            prefixes_fail(&msg, 64 + 56 + utf16_len(name), CreateRequest::parse);
        }
    }

    #[test]
    fn request_bad_name_and_contexts() {
        let req = request("ab", vec![RequestContext::AllocationSize(1)]);
        let mut b = BytesMut::new();
        req.encode(&mut b);
        let msg = with_header(Command::Create, &b);
        let mut bad = msg.clone();
        bad[REQUEST_BUFFER_OFFSET..REQUEST_BUFFER_OFFSET + 2].copy_from_slice(&[0x00, 0xDC]);
        assert_eq!(CreateRequest::parse(&bad), Err(ParseError::Invalid("create name")));
        let mut bad = msg.clone();
        bad[64 + 52..64 + 56].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(CreateRequest::parse(&bad).is_err());
        let mut bad = msg.clone();
        bad[64] = 56;
        assert!(CreateRequest::parse(&bad).is_err());
    }

    #[test]
    fn response_roundtrip() {
        for ctxs in [
            vec![],
            vec![
                ResponseContext::MaximalAccess { query_status: 0, maximal_access: access_mask::FILE_ALL_ACCESS },
                ResponseContext::OnDiskId { disk_file_id: 1, volume_id: 2 },
                ResponseContext::DurableHandleV2 { timeout: 120_000, flags: 0 },
            ],
        ] {
            let resp = CreateResponse {
                oplock_level: oplock_level::NONE,
                flags: 0,
                create_action: create_action::CREATED,
                creation_time: 1,
                last_access_time: 2,
                last_write_time: 3,
                change_time: 4,
                allocation_size: 4096,
                end_of_file: 10,
                file_attributes: file_attributes::ARCHIVE,
                file_id: FileId { persistent: 11, volatile: 12 },
                create_contexts: ctxs,
            };
            let mut b = BytesMut::new();
            resp.encode(&mut b);
            assert!(b.len() >= 89);
            assert_eq!(CreateResponse::parse(&with_header(Command::Create, &b)).unwrap(), resp);
        }
    }
}
