//! Security identifiers, access control lists and self-relative security
//! descriptors ([MS-DTYP] 2.4.2, 2.4.4, 2.4.5, 2.4.6), as carried by
//! QUERY_INFO / SET_INFO with InfoType SMB2_0_INFO_SECURITY and by the
//! SD_BUFFER create context; plus the mapping between POSIX owner, group
//! and mode bits and a descriptor.
//!
//! Parsing is bounded: every offset and size is checked against the
//! buffer, ACE walks are limited by the ACL's size, and the parts of a
//! descriptor may not overlap its header or each other.

use std::fmt;
use std::str::FromStr;

use bytes::{BufMut, BytesMut};

use super::attributes::access;
use crate::codec::Reader;
use crate::error::{ParseError, ParseResult};

/// AdditionalInformation bits of a security query or set
/// ([MS-SMB2] 2.2.37, [MS-DTYP] 2.4.7 SECURITY_INFORMATION).
pub mod security_information {
    pub const OWNER: u32 = 0x0000_0001;
    pub const GROUP: u32 = 0x0000_0002;
    pub const DACL: u32 = 0x0000_0004;
    pub const SACL: u32 = 0x0000_0008;
    pub const LABEL: u32 = 0x0000_0010;
    pub const ATTRIBUTE: u32 = 0x0000_0020;
    pub const SCOPE: u32 = 0x0000_0040;
    pub const BACKUP: u32 = 0x0001_0000;
}

/// SECURITY_DESCRIPTOR Control bits ([MS-DTYP] 2.4.6).
pub mod control {
    pub const OWNER_DEFAULTED: u16 = 0x0001;
    pub const GROUP_DEFAULTED: u16 = 0x0002;
    pub const DACL_PRESENT: u16 = 0x0004;
    pub const DACL_DEFAULTED: u16 = 0x0008;
    pub const SACL_PRESENT: u16 = 0x0010;
    pub const SACL_DEFAULTED: u16 = 0x0020;
    pub const DACL_TRUSTED: u16 = 0x0040;
    pub const SERVER_SECURITY: u16 = 0x0080;
    pub const DACL_AUTO_INHERIT_REQ: u16 = 0x0100;
    pub const SACL_AUTO_INHERIT_REQ: u16 = 0x0200;
    pub const DACL_AUTO_INHERITED: u16 = 0x0400;
    pub const SACL_AUTO_INHERITED: u16 = 0x0800;
    pub const DACL_PROTECTED: u16 = 0x1000;
    pub const SACL_PROTECTED: u16 = 0x2000;
    pub const RM_CONTROL_VALID: u16 = 0x4000;
    pub const SELF_RELATIVE: u16 = 0x8000;
}

/// ACE types ([MS-DTYP] 2.4.4.1) that have the basic
/// `{ header | mask | sid }` layout and are parsed into [`Ace::Basic`].
pub mod ace_type {
    pub const ACCESS_ALLOWED: u8 = 0x00;
    pub const ACCESS_DENIED: u8 = 0x01;
    pub const SYSTEM_AUDIT: u8 = 0x02;
    pub const SYSTEM_ALARM: u8 = 0x03;
}

/// ACE flags ([MS-DTYP] 2.4.4.1).
pub mod ace_flags {
    pub const OBJECT_INHERIT: u8 = 0x01;
    pub const CONTAINER_INHERIT: u8 = 0x02;
    pub const NO_PROPAGATE_INHERIT: u8 = 0x04;
    pub const INHERIT_ONLY: u8 = 0x08;
    pub const INHERITED: u8 = 0x10;
    pub const SUCCESSFUL_ACCESS: u8 = 0x40;
    pub const FAILED_ACCESS: u8 = 0x80;
}

/// ACL_REVISION and ACL_REVISION_DS ([MS-DTYP] 2.4.5).
pub const ACL_REVISION: u8 = 0x02;
pub const ACL_REVISION_DS: u8 = 0x04;

const SID_MAX_SUB_AUTHORITIES: usize = 15;
const SD_HEADER_LEN: usize = 20;
const ACL_HEADER_LEN: usize = 8;
const ACE_HEADER_LEN: usize = 4;

/// A security identifier ([MS-DTYP] 2.4.2.2).
///
/// Format: `{ revision: u8 = 1 | sub_authority_count: u8 |
/// identifier_authority: [u8; 6] big-endian | sub_authority[count]: u32 }`
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    /// The 48-bit IdentifierAuthority.
    pub authority: u64,
    /// At most 15 sub-authorities.
    pub sub_authorities: Vec<u32>,
}

impl Sid {
    /// S-1-1-0, Everyone.
    pub fn everyone() -> Sid {
        Sid {
            authority: 1,
            sub_authorities: vec![0],
        }
    }
    /// S-1-3-0, Creator Owner.
    pub fn creator_owner() -> Sid {
        Sid {
            authority: 3,
            sub_authorities: vec![0],
        }
    }
    /// S-1-5-18, Local System.
    pub fn local_system() -> Sid {
        Sid {
            authority: 5,
            sub_authorities: vec![18],
        }
    }
    /// S-1-5-32-544, BUILTIN\Administrators.
    pub fn builtin_administrators() -> Sid {
        Sid {
            authority: 5,
            sub_authorities: vec![32, 544],
        }
    }
    /// S-1-22-1-uid: a Unix user, as Samba and Windows NFS map them.
    pub fn unix_user(uid: u32) -> Sid {
        Sid {
            authority: 22,
            sub_authorities: vec![1, uid],
        }
    }
    /// S-1-22-2-gid: a Unix group.
    pub fn unix_group(gid: u32) -> Sid {
        Sid {
            authority: 22,
            sub_authorities: vec![2, gid],
        }
    }
    /// The uid of an S-1-22-1-uid SID.
    pub fn as_unix_user(&self) -> Option<u32> {
        match (self.authority, self.sub_authorities.as_slice()) {
            (22, [1, uid]) => Some(*uid),
            _ => None,
        }
    }
    /// The gid of an S-1-22-2-gid SID.
    pub fn as_unix_group(&self) -> Option<u32> {
        match (self.authority, self.sub_authorities.as_slice()) {
            (22, [2, gid]) => Some(*gid),
            _ => None,
        }
    }

    /// Encoded length: 8 + 4 per sub-authority (at most 15 are encoded).
    pub fn len(&self) -> usize {
        8 + 4 * self.sub_authorities.len().min(SID_MAX_SUB_AUTHORITIES)
    }

    /// Never true: a SID has at least its 8-byte header.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn parse(input: &[u8]) -> ParseResult<(&[u8], Sid)> {
        let mut r = Reader::new(input);
        if r.u8("SID")? != 1 {
            return Err(ParseError::Invalid("SID revision"));
        }
        let count = r.u8("SID")? as usize;
        if count > SID_MAX_SUB_AUTHORITIES {
            return Err(ParseError::Invalid("SID sub-authority count"));
        }
        let authority = r
            .take(6, "SID")?
            .iter()
            .fold(0u64, |a, &b| (a << 8) | b as u64);
        let mut sub_authorities = Vec::with_capacity(count);
        for _ in 0..count {
            sub_authorities.push(r.u32("SID")?);
        }
        Ok((
            r.rest(),
            Sid {
                authority,
                sub_authorities,
            },
        ))
    }

    /// Appends the SID. A SID with more than 15 sub-authorities is not
    /// representable; only the first 15 are written.
    pub fn encode(&self, out: &mut BytesMut) {
        let subs = &self.sub_authorities[..self.sub_authorities.len().min(SID_MAX_SUB_AUTHORITIES)];
        out.put_u8(1);
        out.put_u8(subs.len() as u8);
        out.put_slice(&self.authority.to_be_bytes()[2..]);
        for s in subs {
            out.put_u32_le(*s);
        }
    }
}

/// The string form of [MS-DTYP] 2.4.2.1: `S-1-5-21-…`; authorities of
/// 2^32 and above are printed in hex.
impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.authority >= 1 << 32 {
            write!(f, "S-1-0x{:012X}", self.authority)?;
        } else {
            write!(f, "S-1-{}", self.authority)?;
        }
        for s in &self.sub_authorities {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

impl FromStr for Sid {
    type Err = ParseError;

    /// Parses `S-1-<authority>-<sub>…`, authority decimal or `0x` hex.
    fn from_str(s: &str) -> Result<Sid, ParseError> {
        const WHAT: &str = "SID string";
        let rest = s
            .strip_prefix("S-1-")
            .or_else(|| s.strip_prefix("s-1-"))
            .ok_or(ParseError::Invalid(WHAT))?;
        let mut parts = rest.split('-');
        let auth = parts.next().ok_or(ParseError::Invalid(WHAT))?;
        let authority = match auth.strip_prefix("0x").or_else(|| auth.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => auth.parse::<u64>(),
        }
        .map_err(|_| ParseError::Invalid(WHAT))?;
        if authority >= 1 << 48 {
            return Err(ParseError::Invalid(WHAT));
        }
        let sub_authorities = parts
            .map(|p| p.parse::<u32>().map_err(|_| ParseError::Invalid(WHAT)))
            .collect::<Result<Vec<_>, _>>()?;
        if sub_authorities.len() > SID_MAX_SUB_AUTHORITIES {
            return Err(ParseError::Invalid(WHAT));
        }
        Ok(Sid {
            authority,
            sub_authorities,
        })
    }
}

/// One access control entry ([MS-DTYP] 2.4.4).
///
/// Format: `{ ace_type: u8 | ace_flags: u8 | ace_size: u16 | body }`; for
/// the basic types the body is `{ mask: u32 | sid }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ace {
    /// ACCESS_ALLOWED, ACCESS_DENIED, SYSTEM_AUDIT, SYSTEM_ALARM
    /// ([MS-DTYP] 2.4.4.2, 2.4.4.4, 2.4.4.10, 2.4.4.11). Bytes after the SID
    /// inside AceSize are dropped; encoding writes the canonical size.
    Basic {
        ace_type: u8,
        flags: u8,
        mask: u32,
        sid: Sid,
    },
    /// Every other type (object, callback, label, …), kept as sent.
    Raw {
        ace_type: u8,
        flags: u8,
        body: Vec<u8>,
    },
}

impl Ace {
    /// An ACCESS_ALLOWED ACE.
    pub fn allowed(flags: u8, mask: u32, sid: Sid) -> Ace {
        Ace::Basic {
            ace_type: ace_type::ACCESS_ALLOWED,
            flags,
            mask,
            sid,
        }
    }
    /// An ACCESS_DENIED ACE.
    pub fn denied(flags: u8, mask: u32, sid: Sid) -> Ace {
        Ace::Basic {
            ace_type: ace_type::ACCESS_DENIED,
            flags,
            mask,
            sid,
        }
    }

    pub fn ace_type(&self) -> u8 {
        match self {
            Ace::Basic { ace_type, .. } | Ace::Raw { ace_type, .. } => *ace_type,
        }
    }

    pub fn flags(&self) -> u8 {
        match self {
            Ace::Basic { flags, .. } | Ace::Raw { flags, .. } => *flags,
        }
    }

    /// Encoded length, a multiple of 4.
    pub fn len(&self) -> usize {
        let body = match self {
            Ace::Basic { sid, .. } => 4 + sid.len(),
            Ace::Raw { body, .. } => body.len(),
        };
        (ACE_HEADER_LEN + body).next_multiple_of(4)
    }

    /// Never true: an ACE has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn parse(input: &[u8]) -> ParseResult<(&[u8], Ace)> {
        let mut r = Reader::new(input);
        let ace_type = r.u8("ACE")?;
        let flags = r.u8("ACE")?;
        let size = r.u16("ACE")? as usize;
        if size < ACE_HEADER_LEN || !size.is_multiple_of(4) {
            return Err(ParseError::Invalid("ACE size"));
        }
        let body = r.take(size - ACE_HEADER_LEN, "ACE")?;
        let ace = match ace_type {
            ace_type::ACCESS_ALLOWED
            | ace_type::ACCESS_DENIED
            | ace_type::SYSTEM_AUDIT
            | ace_type::SYSTEM_ALARM => {
                let mut b = Reader::new(body);
                let mask = b.u32("ACE mask")?;
                let (_, sid) = Sid::parse(b.rest())?;
                Ace::Basic {
                    ace_type,
                    flags,
                    mask,
                    sid,
                }
            }
            _ => Ace::Raw {
                ace_type,
                flags,
                body: body.to_vec(),
            },
        };
        Ok((r.rest(), ace))
    }

    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u8(self.ace_type());
        out.put_u8(self.flags());
        out.put_u16_le(self.len() as u16);
        match self {
            Ace::Basic { mask, sid, .. } => {
                out.put_u32_le(*mask);
                sid.encode(out);
            }
            Ace::Raw { body, .. } => out.put_slice(body),
        }
        out.put_bytes(0, self.len() - (out.len() - start));
    }
}

/// An access control list ([MS-DTYP] 2.4.5).
///
/// Format: `{ acl_revision: u8 | _sbz1: u8 | acl_size: u16 | ace_count: u16 |
/// _sbz2: u16 | aces }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// [`ACL_REVISION`] or [`ACL_REVISION_DS`].
    pub revision: u8,
    pub aces: Vec<Ace>,
}

impl Acl {
    pub fn new(aces: Vec<Ace>) -> Acl {
        Acl {
            revision: ACL_REVISION,
            aces,
        }
    }

    /// Encoded length (the AclSize written).
    pub fn len(&self) -> usize {
        ACL_HEADER_LEN + self.encodable().iter().map(Ace::len).sum::<usize>()
    }

    /// The leading ACEs that fit the 16-bit AclSize. Parsed ACLs always fit
    /// whole; only an oversized ACL built locally loses its tail.
    fn encodable(&self) -> &[Ace] {
        let mut size = ACL_HEADER_LEN;
        for (i, a) in self.aces.iter().enumerate() {
            size += a.len();
            if size > usize::from(u16::MAX) {
                return &self.aces[..i];
            }
        }
        &self.aces
    }

    /// True if the ACL has no ACE (which, as a DACL, denies everyone).
    pub fn is_empty(&self) -> bool {
        self.aces.is_empty()
    }

    /// Parses an ACL; the rest starts after AclSize bytes.
    pub fn parse(input: &[u8]) -> ParseResult<(&[u8], Acl)> {
        let mut r = Reader::new(input);
        let revision = r.u8("ACL")?;
        if revision != ACL_REVISION && revision != ACL_REVISION_DS {
            return Err(ParseError::Invalid("ACL revision"));
        }
        r.skip(1, "ACL")?;
        let size = r.u16("ACL")? as usize;
        let count = r.u16("ACL")? as usize;
        r.skip(2, "ACL")?;
        if size < ACL_HEADER_LEN {
            return Err(ParseError::Invalid("ACL size"));
        }
        let body = input
            .get(ACL_HEADER_LEN..size)
            .ok_or(ParseError::Truncated("ACL"))?;
        // Each ACE takes at least 4 bytes of `body`, so `count` cannot make
        // this loop outrun the buffer.
        let mut aces = Vec::with_capacity(count.min(body.len() / ACE_HEADER_LEN));
        let mut rest = body;
        for _ in 0..count {
            let (r2, ace) = Ace::parse(rest)?;
            aces.push(ace);
            rest = r2;
        }
        Ok((&input[size..], Acl { revision, aces }))
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.revision);
        out.put_u8(0);
        let aces = self.encodable();
        out.put_u16_le(self.len() as u16);
        out.put_u16_le(aces.len() as u16);
        out.put_u16_le(0);
        for a in aces {
            a.encode(out);
        }
    }
}

/// A security descriptor ([MS-DTYP] 2.4.6), always self-relative on the
/// wire.
///
/// Format: `{ revision: u8 = 1 | _sbz1: u8 | control: u16 | offset_owner: u32 |
/// offset_group: u32 | offset_sacl: u32 | offset_dacl: u32 | parts }`; an
/// offset of 0 means the part is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityDescriptor {
    /// [`control`] bits. SELF_RELATIVE is always set on encode. A
    /// DACL_PRESENT bit with `dacl: None` is a NULL DACL (everyone allowed).
    pub control: u16,
    pub owner: Option<Sid>,
    pub group: Option<Sid>,
    pub dacl: Option<Acl>,
    pub sacl: Option<Acl>,
}

impl SecurityDescriptor {
    /// Parses a self-relative descriptor that starts at `buf[0]`; bytes
    /// after its parts are ignored. A DACL or SACL offset is only followed
    /// when the matching PRESENT bit is set.
    pub fn parse(buf: &[u8]) -> ParseResult<SecurityDescriptor> {
        let mut r = Reader::new(buf);
        if r.u8("security descriptor")? != 1 {
            return Err(ParseError::Invalid("security descriptor revision"));
        }
        r.skip(1, "security descriptor")?;
        let control = r.u16("security descriptor")?;
        let offsets = [
            r.u32("security descriptor")? as usize,
            r.u32("security descriptor")? as usize,
            r.u32("security descriptor")? as usize,
            r.u32("security descriptor")? as usize,
        ];
        if control & control::SELF_RELATIVE == 0 {
            return Err(ParseError::Invalid("security descriptor not self-relative"));
        }
        let [o_owner, o_group, o_sacl, o_dacl] = offsets;
        let mut regions: Vec<(usize, usize)> = Vec::with_capacity(4);

        let region = |off: usize, what: &'static str| -> ParseResult<Option<&[u8]>> {
            if off == 0 {
                return Ok(None);
            }
            if off < SD_HEADER_LEN {
                return Err(ParseError::OutOfBounds(what));
            }
            buf.get(off..)
                .map(Some)
                .ok_or(ParseError::OutOfBounds(what))
        };
        let mut note = |off: usize, part_len: usize| regions.push((off, off + part_len));

        let owner = match region(o_owner, "owner SID")? {
            Some(b) => {
                let (_, s) = Sid::parse(b)?;
                note(o_owner, s.len());
                Some(s)
            }
            None => None,
        };
        let group = match region(o_group, "group SID")? {
            Some(b) => {
                let (_, s) = Sid::parse(b)?;
                note(o_group, s.len());
                Some(s)
            }
            None => None,
        };
        let mut acl_at =
            |off: usize, present: bool, what: &'static str| -> ParseResult<Option<Acl>> {
                if !present {
                    return Ok(None);
                }
                match region(off, what)? {
                    Some(b) => {
                        let (rest, a) = Acl::parse(b)?;
                        note(off, b.len() - rest.len());
                        Ok(Some(a))
                    }
                    None => Ok(None),
                }
            };
        let sacl = acl_at(o_sacl, control & control::SACL_PRESENT != 0, "SACL")?;
        let dacl = acl_at(o_dacl, control & control::DACL_PRESENT != 0, "DACL")?;

        // Parts may share bytes only by being identical (same start and
        // end); any other overlap is a malformed (or hostile) descriptor.
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                if a != b && a.0 < b.1 && b.0 < a.1 {
                    return Err(ParseError::Invalid("security descriptor parts overlap"));
                }
            }
        }
        Ok(SecurityDescriptor {
            control,
            owner,
            group,
            dacl,
            sacl,
        })
    }

    /// What [`encode`](Self::encode) would write for `additional_information`.
    pub fn encoded_len(&self, additional_information: u32) -> usize {
        use security_information as si;
        let mut n = SD_HEADER_LEN;
        if additional_information & si::SACL != 0 {
            n += self.sacl.as_ref().map_or(0, Acl::len);
        }
        if additional_information & si::DACL != 0 {
            n += self.dacl.as_ref().map_or(0, Acl::len);
        }
        if additional_information & si::OWNER != 0 {
            n += self.owner.as_ref().map_or(0, Sid::len);
        }
        if additional_information & si::GROUP != 0 {
            n += self.group.as_ref().map_or(0, Sid::len);
        }
        n
    }

    /// Appends the self-relative form holding only the parts named in
    /// `additional_information` ([`security_information`] OWNER, GROUP,
    /// DACL, SACL); the control bits of parts left out are cleared. Parts
    /// are laid out SACL, DACL, owner, group, as Windows does.
    pub fn encode(&self, additional_information: u32, out: &mut BytesMut) {
        use security_information as si;
        let want = |bit: u32| additional_information & bit != 0;
        let mut ctl = self.control | control::SELF_RELATIVE;
        if !want(si::OWNER) {
            ctl &= !control::OWNER_DEFAULTED;
        }
        if !want(si::GROUP) {
            ctl &= !control::GROUP_DEFAULTED;
        }
        if !want(si::DACL) {
            ctl &= !(control::DACL_PRESENT
                | control::DACL_DEFAULTED
                | control::DACL_AUTO_INHERITED
                | control::DACL_PROTECTED
                | control::DACL_AUTO_INHERIT_REQ);
        }
        if !want(si::SACL) {
            ctl &= !(control::SACL_PRESENT
                | control::SACL_DEFAULTED
                | control::SACL_AUTO_INHERITED
                | control::SACL_PROTECTED
                | control::SACL_AUTO_INHERIT_REQ);
        }
        let sacl = self
            .sacl
            .as_ref()
            .filter(|_| want(si::SACL) && ctl & control::SACL_PRESENT != 0);
        let dacl = self
            .dacl
            .as_ref()
            .filter(|_| want(si::DACL) && ctl & control::DACL_PRESENT != 0);
        let owner = self.owner.as_ref().filter(|_| want(si::OWNER));
        let group = self.group.as_ref().filter(|_| want(si::GROUP));

        let mut at = SD_HEADER_LEN;
        let mut place = |len: Option<usize>| match len {
            Some(l) => {
                let o = at;
                at += l;
                o as u32
            }
            None => 0,
        };
        let o_sacl = place(sacl.map(Acl::len));
        let o_dacl = place(dacl.map(Acl::len));
        let o_owner = place(owner.map(Sid::len));
        let o_group = place(group.map(Sid::len));

        out.put_u8(1);
        out.put_u8(0);
        out.put_u16_le(ctl);
        out.put_u32_le(o_owner);
        out.put_u32_le(o_group);
        out.put_u32_le(o_sacl);
        out.put_u32_le(o_dacl);
        if let Some(a) = sacl {
            a.encode(out);
        }
        if let Some(a) = dacl {
            a.encode(out);
        }
        if let Some(s) = owner {
            s.encode(out);
        }
        if let Some(s) = group {
            s.encode(out);
        }
    }
}

/// Access every ACE of a POSIX-derived DACL carries: read the descriptor
/// and the attributes, wait on the handle.
const POSIX_BASE: u32 = access::READ_CONTROL | access::FILE_READ_ATTRIBUTES | access::SYNCHRONIZE;
/// What the owner may always do: change permissions, owner, times and
/// attributes, and delete.
const POSIX_OWNER_EXTRA: u32 =
    access::WRITE_DAC | access::WRITE_OWNER | access::DELETE | access::FILE_WRITE_ATTRIBUTES;

/// The access mask for one rwx triple.
fn rwx_mask(bits: u32, is_dir: bool) -> u32 {
    let mut m = POSIX_BASE;
    if bits & 4 != 0 {
        m |= access::FILE_GENERIC_READ;
    }
    if bits & 2 != 0 {
        m |= access::FILE_GENERIC_WRITE;
        if is_dir {
            m |= access::FILE_DELETE_CHILD;
        }
    }
    if bits & 1 != 0 {
        m |= access::FILE_GENERIC_EXECUTE;
    }
    m
}

/// The rwx triple an access mask grants: r from FILE_READ_DATA, w from
/// FILE_WRITE_DATA, x from FILE_EXECUTE.
fn mask_rwx(mask: u32) -> u32 {
    let mut bits = 0;
    if mask & (access::FILE_READ_DATA | access::GENERIC_READ | access::GENERIC_ALL) != 0 {
        bits |= 4;
    }
    if mask & (access::FILE_WRITE_DATA | access::GENERIC_WRITE | access::GENERIC_ALL) != 0 {
        bits |= 2;
    }
    if mask & (access::FILE_EXECUTE | access::GENERIC_EXECUTE | access::GENERIC_ALL) != 0 {
        bits |= 1;
    }
    bits
}

/// The descriptor Duet reports for a file it has no stored descriptor
/// for: owner S-1-22-1-uid, group S-1-22-2-gid, and a protected DACL of
/// exactly three allow-ACEs (owner, group, Everyone) from the mode's rwx
/// triples, always in that order. r maps to FILE_GENERIC_READ, w to
/// FILE_GENERIC_WRITE (plus FILE_DELETE_CHILD on directories), x to
/// FILE_GENERIC_EXECUTE; every ACE also grants READ_CONTROL,
/// FILE_READ_ATTRIBUTES and SYNCHRONIZE, and the owner's WRITE_DAC,
/// WRITE_OWNER, DELETE and FILE_WRITE_ATTRIBUTES. Setuid, setgid and
/// sticky bits are not represented.
pub fn posix_security_descriptor(
    uid: u32,
    gid: u32,
    mode: u32,
    is_dir: bool,
) -> SecurityDescriptor {
    let owner = Sid::unix_user(uid);
    let group = Sid::unix_group(gid);
    let dacl = Acl::new(vec![
        Ace::allowed(
            0,
            rwx_mask((mode >> 6) & 7, is_dir) | POSIX_OWNER_EXTRA,
            owner.clone(),
        ),
        Ace::allowed(0, rwx_mask((mode >> 3) & 7, is_dir), group.clone()),
        Ace::allowed(0, rwx_mask(mode & 7, is_dir), Sid::everyone()),
    ]);
    SecurityDescriptor {
        control: control::SELF_RELATIVE | control::DACL_PRESENT | control::DACL_PROTECTED,
        owner: Some(owner),
        group: Some(group),
        dacl: Some(dacl),
        sacl: None,
    }
}

/// POSIX ownership and permissions a client's descriptor asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosixPerms {
    pub uid: u32,
    pub gid: u32,
    /// The 0o777 permission bits, or `None` if the descriptor carries no
    /// DACL (leave the mode alone). A NULL DACL gives 0o777.
    pub mode: Option<u32>,
}

/// Maps a descriptor back to POSIX, the inverse of
/// [`posix_security_descriptor`]: owner and group come from S-1-22-1-uid /
/// S-1-22-2-gid SIDs (any other SID, or none, keeps `uid` / `gid`, the
/// file's current ones); each rwx triple is the union of the allow-ACEs
/// (without INHERIT_ONLY) naming the owner, the group or Everyone.
/// Deny ACEs and other trustees are ignored: the mapping is an
/// approximation, but it is exact on descriptors this module produced.
pub fn posix_from_security_descriptor(sd: &SecurityDescriptor, uid: u32, gid: u32) -> PosixPerms {
    let owner = sd.owner.as_ref().and_then(Sid::as_unix_user).unwrap_or(uid);
    let group = sd
        .group
        .as_ref()
        .and_then(Sid::as_unix_group)
        .unwrap_or(gid);
    let mode = if sd.control & control::DACL_PRESENT == 0 {
        None
    } else if let Some(dacl) = &sd.dacl {
        let (owner_sid, group_sid, everyone) = (
            Sid::unix_user(owner),
            Sid::unix_group(group),
            Sid::everyone(),
        );
        let mut m = 0;
        for ace in &dacl.aces {
            if let Ace::Basic {
                ace_type: ace_type::ACCESS_ALLOWED,
                flags,
                mask,
                sid,
            } = ace
            {
                if flags & ace_flags::INHERIT_ONLY != 0 {
                    continue;
                }
                if *sid == owner_sid {
                    m |= mask_rwx(*mask) << 6;
                } else if *sid == group_sid {
                    m |= mask_rwx(*mask) << 3;
                } else if *sid == everyone {
                    m |= mask_rwx(*mask);
                }
            }
        }
        Some(m)
    } else {
        Some(0o777)
    };
    PosixPerms {
        uid: owner,
        gid: group,
        mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use security_information as si;

    const ALL: u32 = si::OWNER | si::GROUP | si::DACL | si::SACL;

    /// [MS-DTYP] 2.5.1.4: the binary form of
    /// "O:BAG:BAD:P(A;CIOI;GRGX;;;BU)(A;CIOI;GA;;;BA)(A;CIOI;GA;;;SY)(A;CIOI;GA;;;CO)S:P(AU;FA;GR;;;WD)".
    const SPEC_SD: [u8; 0xB0] = [
        0x01, 0x00, 0x14, 0xb0, 0x90, 0x00, 0x00, 0x00, 0xa0, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00,
        0x00, //
        0x30, 0x00, 0x00, 0x00, 0x02, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x80, 0x14,
        0x00, //
        0x00, 0x00, 0x00, 0x80, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, //
        0x02, 0x00, 0x60, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x03, 0x18, 0x00, 0x00, 0x00, 0x00,
        0xa0, //
        0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00, 0x21, 0x02, 0x00,
        0x00, //
        0x00, 0x03, 0x18, 0x00, 0x00, 0x00, 0x00, 0x10, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x05, //
        0x20, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00, 0x00, 0x00, 0x03, 0x14, 0x00, 0x00, 0x00, 0x00,
        0x10, //
        0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x12, 0x00, 0x00, 0x00, 0x00, 0x03, 0x14,
        0x00, //
        0x00, 0x00, 0x00, 0x10, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
        0x00, //
        0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00,
        0x00, //
        0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00,
        0x00, //
    ];

    #[test]
    fn spec_example_parses_and_reencodes_byte_for_byte() {
        let sd = SecurityDescriptor::parse(&SPEC_SD).unwrap();
        assert_eq!(sd.control, 0xb014);
        assert_eq!(sd.owner, Some(Sid::builtin_administrators()));
        assert_eq!(sd.group, Some(Sid::builtin_administrators()));
        let sacl = sd.sacl.as_ref().unwrap();
        assert_eq!(
            sacl.aces,
            vec![Ace::Basic {
                ace_type: ace_type::SYSTEM_AUDIT,
                flags: ace_flags::FAILED_ACCESS,
                mask: access::GENERIC_READ,
                sid: Sid::everyone()
            }]
        );
        let dacl = sd.dacl.as_ref().unwrap();
        assert_eq!(dacl.aces.len(), 4);
        assert_eq!(
            dacl.aces[0],
            Ace::allowed(
                ace_flags::OBJECT_INHERIT | ace_flags::CONTAINER_INHERIT,
                access::GENERIC_READ | access::GENERIC_EXECUTE,
                "S-1-5-32-545".parse().unwrap()
            )
        );
        assert_eq!(
            dacl.aces[2],
            Ace::allowed(3, access::GENERIC_ALL, Sid::local_system())
        );
        assert_eq!(
            dacl.aces[3],
            Ace::allowed(3, access::GENERIC_ALL, Sid::creator_owner())
        );
        let mut out = BytesMut::new();
        sd.encode(ALL, &mut out);
        assert_eq!(&out[..], &SPEC_SD[..]);
        assert_eq!(sd.encoded_len(ALL), SPEC_SD.len());
    }

    #[test]
    fn every_truncation_of_the_spec_example_fails() {
        for n in 0..SPEC_SD.len() {
            assert!(SecurityDescriptor::parse(&SPEC_SD[..n]).is_err(), "len {n}");
        }
    }

    #[test]
    fn encode_includes_only_requested_parts() {
        let sd = SecurityDescriptor::parse(&SPEC_SD).unwrap();
        let mut out = BytesMut::new();
        sd.encode(si::OWNER, &mut out);
        assert_eq!(out.len(), 20 + 16);
        assert_eq!(out.len(), sd.encoded_len(si::OWNER));
        let back = SecurityDescriptor::parse(&out).unwrap();
        assert_eq!(back.owner, sd.owner);
        assert_eq!(
            (back.group.as_ref(), back.dacl.as_ref(), back.sacl.as_ref()),
            (None, None, None)
        );
        assert_eq!(back.control, control::SELF_RELATIVE);

        let mut out = BytesMut::new();
        sd.encode(si::DACL | si::GROUP, &mut out);
        let back = SecurityDescriptor::parse(&out).unwrap();
        assert_eq!(back.dacl, sd.dacl);
        assert_eq!(back.group, sd.group);
        assert!(back.owner.is_none() && back.sacl.is_none());
        assert_eq!(
            back.control,
            control::SELF_RELATIVE | control::DACL_PRESENT | control::DACL_PROTECTED
        );
    }

    #[test]
    fn hostile_offsets_are_rejected() {
        let mut b = SPEC_SD;
        b[4] = 0x10; // owner inside the header
        assert!(SecurityDescriptor::parse(&b).is_err());
        let mut b = SPEC_SD;
        b[4] = 0xb0; // owner at the very end
        assert!(SecurityDescriptor::parse(&b).is_err());
        let mut b = SPEC_SD;
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(SecurityDescriptor::parse(&b).is_err());
        let mut b = SPEC_SD;
        b[4] = 0x40; // owner inside the DACL
        assert!(SecurityDescriptor::parse(&b).is_err());
        let mut b = SPEC_SD;
        b[0x32] = 0xff; // DACL size past the end
        assert!(SecurityDescriptor::parse(&b).is_err());
        let mut b = SPEC_SD;
        b[0x34] = 0x40; // 64 ACEs in a 0x60-byte DACL
        assert!(SecurityDescriptor::parse(&b).is_err());
        let mut b = SPEC_SD;
        b[0x3a] = 0x02; // ACE size not a multiple of 4
        assert!(SecurityDescriptor::parse(&b).is_err());
        let mut b = SPEC_SD;
        b[0x91] = 16; // 16 sub-authorities
        assert!(SecurityDescriptor::parse(&b).is_err());
        let mut b = SPEC_SD;
        b[3] = 0x30; // not self-relative
        assert!(SecurityDescriptor::parse(&b).is_err());
        // Owner and group sharing one SID is allowed.
        let mut b = SPEC_SD;
        b[8] = 0x90;
        assert!(SecurityDescriptor::parse(&b).is_ok());
    }

    #[test]
    fn null_dacl_round_trips() {
        let sd = SecurityDescriptor {
            control: control::SELF_RELATIVE | control::DACL_PRESENT,
            owner: Some(Sid::unix_user(5)),
            group: None,
            dacl: None,
            sacl: None,
        };
        let mut out = BytesMut::new();
        sd.encode(ALL, &mut out);
        assert_eq!(SecurityDescriptor::parse(&out).unwrap(), sd);
        assert_eq!(posix_from_security_descriptor(&sd, 1, 1).mode, Some(0o777));
    }

    #[test]
    fn raw_aces_are_kept() {
        let acl = Acl::new(vec![
            Ace::Raw {
                ace_type: 0x05,
                flags: 0,
                body: vec![1, 2, 3, 4, 5, 6, 7, 8],
            },
            Ace::denied(0, 1, Sid::everyone()),
        ]);
        let mut out = BytesMut::new();
        acl.encode(&mut out);
        assert_eq!(out.len(), acl.len());
        let (rest, back) = Acl::parse(&out).unwrap();
        assert!(rest.is_empty());
        assert_eq!(back, acl);
    }

    #[test]
    fn oversized_acl_keeps_a_consistent_prefix() {
        let acl = Acl::new(vec![Ace::allowed(0, 1, Sid::everyone()); 4000]);
        let mut out = BytesMut::new();
        acl.encode(&mut out);
        assert_eq!(out.len(), acl.len());
        assert!(out.len() <= usize::from(u16::MAX));
        let (_, back) = Acl::parse(&out).unwrap();
        assert_eq!(back.aces.len(), (usize::from(u16::MAX) - 8) / 20);
    }

    #[test]
    fn sid_strings() {
        let s: Sid = "S-1-5-21-782712087-4182988437-2163400469-1001"
            .parse()
            .unwrap();
        assert_eq!(
            s.to_string(),
            "S-1-5-21-782712087-4182988437-2163400469-1001"
        );
        let mut out = BytesMut::new();
        s.encode(&mut out);
        assert_eq!(&out[..8], &[1, 5, 0, 0, 0, 0, 0, 5]);
        assert_eq!(Sid::parse(&out).unwrap().1, s);
        for n in 0..out.len() {
            assert!(Sid::parse(&out[..n]).is_err());
        }
        let big = Sid {
            authority: 0x1_0000_0000,
            sub_authorities: vec![7],
        };
        assert_eq!(big.to_string(), "S-1-0x000100000000-7");
        assert_eq!(big.to_string().parse::<Sid>().unwrap(), big);
        assert_eq!(Sid::unix_user(1000).to_string(), "S-1-22-1-1000");
        assert_eq!(Sid::unix_group(100).as_unix_group(), Some(100));
        assert!("S-1-x".parse::<Sid>().is_err());
        assert!("X-1-5".parse::<Sid>().is_err());
        assert!("S-1-281474976710656-1".parse::<Sid>().is_err());
    }

    #[test]
    fn posix_mapping_round_trips_for_every_mode() {
        for is_dir in [false, true] {
            for mode in 0..0o1000 {
                let sd = posix_security_descriptor(1000, 100, mode, is_dir);
                let mut out = BytesMut::new();
                sd.encode(ALL, &mut out);
                let back = SecurityDescriptor::parse(&out).unwrap();
                assert_eq!(back, sd);
                assert_eq!(
                    posix_from_security_descriptor(&back, 0, 0),
                    PosixPerms {
                        uid: 1000,
                        gid: 100,
                        mode: Some(mode)
                    }
                );
            }
        }
    }

    #[test]
    fn posix_mapping_masks() {
        let sd = posix_security_descriptor(1, 2, 0o750, true);
        let aces = &sd.dacl.as_ref().unwrap().aces;
        let masks: Vec<u32> = aces
            .iter()
            .map(|a| {
                if let Ace::Basic { mask, .. } = a {
                    *mask
                } else {
                    0
                }
            })
            .collect();
        assert_eq!(
            masks[0],
            access::FILE_GENERIC_READ
                | access::FILE_GENERIC_WRITE
                | access::FILE_DELETE_CHILD
                | access::FILE_GENERIC_EXECUTE
                | access::WRITE_DAC
                | access::WRITE_OWNER
                | access::DELETE
        );
        assert_eq!(
            masks[1],
            access::FILE_GENERIC_READ | access::FILE_GENERIC_EXECUTE
        );
        assert_eq!(masks[2], POSIX_BASE);
        // Without a DACL the mode is left alone; foreign SIDs keep the ids.
        let sd = SecurityDescriptor {
            control: control::SELF_RELATIVE,
            owner: Some(Sid::local_system()),
            group: None,
            dacl: None,
            sacl: None,
        };
        assert_eq!(
            posix_from_security_descriptor(&sd, 7, 8),
            PosixPerms {
                uid: 7,
                gid: 8,
                mode: None
            }
        );
    }
}
