//! Security descriptors for files ([MS-SMB2] 3.3.5.20.3, 3.3.5.21.3).
//! A descriptor a client sets is merged into the file's and stored whole
//! in an xattr ([`crate::fs::sd`]); a file without one reports the
//! descriptor Duet derives from its POSIX owner, group and mode
//! ([`posix_security_descriptor`]). A stored DACL is what CREATE checks
//! ([`crate::acl`]); the mode's group and other bits follow a set DACL
//! where it names the POSIX owner, group or Everyone ([`mode_for_dacl`]).

use bytes::BytesMut;
use protocol::fscc::security::control;
use protocol::fscc::{
    posix_from_security_descriptor, posix_security_descriptor, security_information as si, Ace, SecurityDescriptor, Sid,
};
use protocol::NtStatus;

use crate::acl::{self, Token};
use crate::fs::{Handle, Stat};
use crate::state::files::access;
use crate::state::{lock, Open, Session};

/// The parts of a descriptor Duet can answer or apply.
const SUPPORTED: u32 = si::OWNER | si::GROUP | si::DACL | si::SACL;

/// The SIDs `session` holds ([`Token::for_session`]): the user's SID from
/// the users file (else [`acl::user_sid`]), with the POSIX user and group
/// the server runs as.
pub fn token(users: &crate::users::Users, session: &Session) -> Token {
    let inner = lock(&session.inner);
    let (name, guest, anonymous) =
        inner.info().map_or(("", false, false), |i| (&i.owner.user[..], i.guest, i.anonymous));
    let user = users.sid(name).cloned().unwrap_or_else(|| acl::user_sid(name));
    Token::for_session(user, guest, anonymous, nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw())
}

/// A stored descriptor's bytes as a descriptor; bytes that do not parse
/// (written by someone else) count as none.
pub fn parse_stored(bytes: Option<Vec<u8>>) -> Option<SecurityDescriptor> {
    bytes.and_then(|b| SecurityDescriptor::parse(&b).ok())
}

/// The file's descriptor: the stored one, else the one derived from `st`.
pub fn descriptor(h: &Handle, st: &Stat) -> Result<SecurityDescriptor, NtStatus> {
    let stored = h.stored_sd().map_err(|e| e.status())?;
    Ok(parse_stored(stored).unwrap_or_else(|| posix_security_descriptor(st.uid, st.gid, st.mode, st.is_dir)))
}

/// Checks the access a security query needs ([MS-SMB2] 3.3.5.20.3,
/// [MS-FSA] 2.1.5.12 FileSecurityInformation): READ_CONTROL for owner,
/// group or DACL, ACCESS_SYSTEM_SECURITY for the SACL. A query for none
/// of them needs nothing and answers an empty descriptor (smbtorture
/// smb2.sdread, as Windows).
pub fn check_query_access(open_access: u32, additional: u32) -> Result<(), NtStatus> {
    if additional & (si::OWNER | si::GROUP | si::DACL) != 0 && open_access & access::READ_CONTROL == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    if additional & si::SACL != 0 && open_access & access::ACCESS_SYSTEM_SECURITY == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    Ok(())
}

/// Appends the self-relative form ([MS-DTYP] 2.4.6) of the file's
/// descriptor ([`descriptor`]) with the parts `additional` asks for; with
/// `nfs` (AAPL's NFS_ACE told), its DACL ends with the file's uid, gid and
/// mode as MS-NFS ACEs ([`super::nfs_ace`]).
pub fn encode(h: &Handle, st: &Stat, additional: u32, nfs: bool, out: &mut BytesMut) -> Result<(), NtStatus> {
    let mut sd = descriptor(h, st)?;
    if nfs {
        super::nfs_ace::add(&mut sd, st.uid, st.gid, st.mode);
    }
    sd.encode(additional & SUPPORTED, out);
    Ok(())
}

/// Appends a self-relative security descriptor for a file without a
/// stored one, from its POSIX owner, group and mode (see
/// [`posix_security_descriptor`]). The SACL is always empty.
#[cfg(test)]
fn encode_for_stat(st: &Stat, additional: u32, out: &mut BytesMut) {
    posix_security_descriptor(st.uid, st.gid, st.mode, st.is_dir).encode(additional & SUPPORTED, out);
}

/// SET_INFO with SMB2_0_INFO_SECURITY ([MS-SMB2] 3.3.5.21.3, [MS-FSA]
/// 2.1.5.16). Access: WRITE_OWNER for owner or group, WRITE_DAC for the
/// DACL, ACCESS_SYSTEM_SECURITY for the SACL (which no open holds: it
/// needs SeSecurityPrivilege). The descriptor must parse strictly
/// (STATUS_INVALID_SECURITY_DESCR otherwise, [`SecurityDescriptor::parse`]);
/// the parts named are merged into the file's descriptor ([`acl::merge`]:
/// generic bits mapped, AUTO_INHERIT_REQ dropped; a new owner must be one
/// of the caller's SIDs, else STATUS_INVALID_OWNER) and the result is
/// stored. A set DACL also sets the mode's group and other bits where it
/// names the POSIX owner, group or Everyone ([`mode_for_dacl`]). With
/// `nfs` (AAPL's NFS_ACE told), the DACL's MS-NFS ACEs are taken out
/// first, and a mode ACE among them sets the mode ([`super::nfs_ace`]).
pub fn set(open: &Open, token: &Token, additional: u32, nfs: bool, buf: &[u8]) -> Result<(), NtStatus> {
    check_set_access(open.access, additional)?;
    if buf.len() > crate::fs::sd::MAX_LEN {
        return Err(NtStatus::INVALID_SECURITY_DESCR);
    }
    let mut given = SecurityDescriptor::parse(buf).map_err(|_| NtStatus::INVALID_SECURITY_DESCR)?;
    if additional & SUPPORTED == 0 {
        return Ok(());
    }
    let h = open.handle().ok_or(NtStatus::NOT_SUPPORTED)?;
    let st = h.base_stat().map_err(|e| e.status())?;
    let mut additional = additional;
    let mut nfs_mode = None;
    if let (true, true, Some(dacl)) = (nfs, additional & si::DACL != 0, given.dacl.as_mut()) {
        let (mode, rest) = super::nfs_ace::take(dacl);
        nfs_mode = mode;
        if !rest {
            additional &= !si::DACL;
        }
    }
    if let Some(mode) = nfs_mode {
        // The mode asked for, but the server's own POSIX user keeps
        // reading and writing the file, as with a DACL.
        let keep = if st.is_dir { 0o700 } else { 0o600 };
        h.set_mode((st.mode & 0o7000) | mode | keep).map_err(|e| e.status())?;
    }
    if additional & SUPPORTED == 0 {
        return Ok(());
    }
    let current = descriptor(h, &st)?;
    let merged = acl::merge(&current, &given, additional, token).map_err(|e| match e {
        acl::SetError::InvalidOwner => NtStatus::INVALID_OWNER,
    })?;
    let mut bytes = BytesMut::new();
    merged.encode(SUPPORTED, &mut bytes);
    h.store_sd(&bytes).map_err(|e| match e {
        crate::fs::FsError::NoSpace => NtStatus::INSUFFICIENT_RESOURCES,
        e => e.status(),
    })?;
    if additional & si::DACL != 0 && nfs_mode.is_none() {
        if let Some(mode) = mode_for_dacl(&merged, st.uid, st.gid, st.mode, st.is_dir) {
            h.set_mode(mode).map_err(|e| e.status())?;
        }
    }
    Ok(())
}

/// The most an open of the existing `rel` may get under its stored
/// descriptor, or `None` when it has none (Duet then checks nothing, as
/// before descriptors were stored). Besides what the DACL grants
/// ([`acl::max_access`]), as smbd: FILE_READ_ATTRIBUTES always, and
/// DELETE when the parent directory grants FILE_DELETE_CHILD (or has no
/// stored descriptor).
///
/// `stored` is the file's stored descriptor as read ([`crate::fs::Share::stat_sd`]);
/// the session's token is made only when there is one.
pub fn max_access_on_open(
    share: &crate::fs::Share,
    rel: &crate::fs::Resolved,
    stored: Option<Vec<u8>>,
    users: &crate::users::Users,
    session: &Session,
) -> Result<Option<u32>, NtStatus> {
    let Some(sd) = parse_stored(stored) else { return Ok(None) };
    let token = token(users, session);
    let mut max = acl::max_access(&sd, &token) | access::FILE_READ_ATTRIBUTES;
    if max & access::DELETE == 0 {
        let parent = parse_stored(share.parent_sd(rel).map_err(|e| e.status())?);
        if parent.is_none_or(|p| acl::max_access(&p, &token) & access::FILE_DELETE_CHILD != 0) {
            max |= access::DELETE;
        }
    }
    Ok(Some(max))
}

/// FILE_ADD_FILE and FILE_ADD_SUBDIRECTORY of a directory's access mask
/// ([MS-SMB2] 2.2.13.1.2: the bits of FILE_WRITE_DATA and FILE_APPEND_DATA).
const FILE_ADD_FILE: u32 = 0x0000_0002;
const FILE_ADD_SUBDIRECTORY: u32 = 0x0000_0004;

/// Whether the caller may make the new name `rel` in its directory: the
/// directory's stored descriptor must grant FILE_ADD_FILE, or
/// FILE_ADD_SUBDIRECTORY for a directory ([MS-FSA] 2.1.5.1.2, the access
/// check on the parent of a file to be created; Windows and smbd do the
/// same). A directory without a stored descriptor is not checked, as
/// [`max_access_on_open`] does not check a file without one.
pub fn check_may_add(
    share: &crate::fs::Share,
    rel: &crate::fs::Resolved,
    is_dir: bool,
    users: &crate::users::Users,
    session: &Session,
) -> Result<(), NtStatus> {
    let Some(parent) = parse_stored(share.parent_sd(rel).map_err(|e| e.status())?) else { return Ok(()) };
    let need = if is_dir { FILE_ADD_SUBDIRECTORY } else { FILE_ADD_FILE };
    if acl::max_access(&parent, &token(users, session)) & need == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    Ok(())
}

/// Stores the descriptor of a file or directory a CREATE just made
/// ([MS-SMB2] 3.3.5.9: the SD_BUFFER context, [MS-DTYP] 2.5.3.4
/// inheritance), when it gets one: the DACL it inherits from its parent's
/// stored descriptor ([`acl::inherit`]; owner and group are its POSIX
/// ones), with the parts the SecD descriptor `given` has (an owner, a
/// group, a DACL with DACL_PRESENT) laid over it, or over the descriptor
/// derived from its mode when nothing is inherited. A SecD without
/// DACL_PRESENT leaves the DACL to inheritance (smbtorture
/// smb2.create.nulldacl). Nothing inherited and nothing given: nothing is
/// stored. A SecD's SACL is not kept (it would need SeSecurityPrivilege).
pub fn store_for_new(
    share: &crate::fs::Share,
    rel: &crate::fs::Resolved,
    h: &Handle,
    given: Option<&SecurityDescriptor>,
    users: &crate::users::Users,
    session: &Session,
) -> Result<(), NtStatus> {
    if !share.supports_xattrs() {
        return Ok(());
    }
    let token = &token(users, session);
    let st = h.base_stat().map_err(|e| e.status())?;
    let (owner, group) = (Sid::unix_user(st.uid), Sid::unix_group(st.gid));
    let parent = parse_stored(share.parent_sd(rel).map_err(|e| e.status())?);
    let inherited = parent.as_ref().and_then(|p| {
        acl::inherit(p, st.is_dir, &owner, &group)
            .map(|a| acl::inherited_descriptor(p, a, owner.clone(), group.clone()))
    });
    // Only the parts the SecD descriptor has: one without DACL_PRESENT
    // leaves the DACL to inheritance (smbtorture smb2.create.nulldacl).
    let parts = given.map_or(0, |g| {
        let mut p = 0;
        if g.owner.is_some() {
            p |= si::OWNER;
        }
        if g.group.is_some() {
            p |= si::GROUP;
        }
        if g.control & control::DACL_PRESENT != 0 {
            p |= si::DACL;
        }
        p
    });
    let sd = match (inherited, given.filter(|_| parts != 0)) {
        (None, None) => return Ok(()),
        (Some(sd), None) => sd,
        (base, Some(g)) => {
            let base = base.unwrap_or_else(|| posix_security_descriptor(st.uid, st.gid, st.mode, st.is_dir));
            acl::merge(&base, g, parts, token).map_err(|e| match e {
                acl::SetError::InvalidOwner => NtStatus::INVALID_OWNER,
            })?
        }
    };
    let mut bytes = BytesMut::new();
    sd.encode(SUPPORTED, &mut bytes);
    h.store_sd(&bytes).map_err(|e| match e {
        crate::fs::FsError::NoSpace => NtStatus::INSUFFICIENT_RESOURCES,
        e => e.status(),
    })
}

/// The access a security set needs ([MS-SMB2] 3.3.5.21.3).
fn check_set_access(open_access: u32, additional: u32) -> Result<(), NtStatus> {
    if additional & (si::OWNER | si::GROUP) != 0 && open_access & access::WRITE_OWNER == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    if additional & si::DACL != 0 && open_access & access::WRITE_DAC == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    if additional & si::SACL != 0 && open_access & access::ACCESS_SYSTEM_SECURITY == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    Ok(())
}

/// The new permission bits (0o7777, setuid/setgid/sticky kept from `mode`)
/// for the DACL of `sd`, or `None` to leave the mode as it is: no DACL, no
/// change, or a DACL that grants nothing to owner, group or Everyone. The
/// owner's read and write bits (and search, on a directory) always stay.
fn mode_for_dacl(sd: &SecurityDescriptor, uid: u32, gid: u32, mode: u32, is_dir: bool) -> Option<u32> {
    if sd.control & control::DACL_PRESENT != 0 {
        if let Some(dacl) = &sd.dacl {
            let (owner, group) = (Sid::unix_user(uid), Sid::unix_group(gid));
            let mappable = dacl.aces.iter().any(|ace| match ace {
                Ace::Basic { sid, .. } => *sid == owner || *sid == group || *sid == Sid::everyone(),
                Ace::Raw { .. } => false,
            });
            if !mappable {
                return None;
            }
        }
    }
    // The DACL is mapped against the file's owner and group, not whatever
    // owner the descriptor names, which Duet does not apply.
    let dacl_only = SecurityDescriptor { owner: None, group: None, ..sd.clone() };
    let rwx = posix_from_security_descriptor(&dacl_only, uid, gid).mode?;
    // The server's own POSIX user keeps reading and writing the file (and
    // searching the directory): what a client may do is the stored DACL's
    // to say, not the mode's.
    let keep = if is_dir { 0o700 } else { 0o600 };
    let new = (mode & 0o7000) | (rwx & 0o777) | keep;
    (new != mode & 0o7777).then_some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mode: u32, is_dir: bool) -> crate::fs::Stat {
        crate::fs::Stat {
            dev: 1,
            ino: 2,
            size: 0,
            blocks_bytes: 0,
            nlink: 1,
            mode,
            is_dir,
            uid: 1000,
            gid: 100,
            atime: 0,
            mtime: 0,
            ctime: 0,
            btime: 0,
            attributes: 0x20,
        }
    }

    #[test]
    fn descriptor_has_requested_parts_only() {
        let st = stat(0o100644, false);
        let mut all = BytesMut::new();
        encode_for_stat(&st, si::OWNER | si::GROUP | si::DACL, &mut all);
        let sd = SecurityDescriptor::parse(&all).unwrap();
        assert_eq!(sd.owner, Some(Sid::unix_user(1000)));
        assert_eq!(sd.group, Some(Sid::unix_group(100)));
        assert!(sd.dacl.is_some());
        let mut owner_only = BytesMut::new();
        encode_for_stat(&st, si::OWNER, &mut owner_only);
        let sd = SecurityDescriptor::parse(&owner_only).unwrap();
        assert_eq!(sd.owner, Some(Sid::unix_user(1000)));
        assert_eq!((sd.group, sd.dacl), (None, None));
        // Asking for the SACL adds nothing: there is none.
        let mut with_sacl = BytesMut::new();
        encode_for_stat(&st, si::OWNER | si::SACL, &mut with_sacl);
        assert_eq!(with_sacl, owner_only);
    }

    #[test]
    fn dacl_round_trips_to_the_mode() {
        for mode in [0o644, 0o600, 0o755, 0o750, 0o4711] {
            let sd = posix_security_descriptor(1000, 100, mode, false);
            // The descriptor of the file's own mode changes nothing.
            assert_eq!(mode_for_dacl(&sd, 1000, 100, mode, false), None, "{mode:o}");
            // Applied to a file with another mode, it gives this one back.
            assert_eq!(mode_for_dacl(&sd, 1000, 100, 0o4000 | 0o111, false), Some(0o4000 | (mode & 0o777)), "{mode:o}");
        }
    }

    #[test]
    fn foreign_or_missing_dacls_leave_the_mode_alone() {
        let domain_user: Sid = "S-1-5-21-1-2-3-1001".parse().unwrap();
        let mut sd = posix_security_descriptor(1000, 100, 0o644, false);
        sd.dacl = Some(protocol::fscc::Acl::new(vec![Ace::allowed(0, 0x001F_01FF, domain_user)]));
        assert_eq!(mode_for_dacl(&sd, 1000, 100, 0o644, false), None);
        sd.control &= !control::DACL_PRESENT;
        assert_eq!(mode_for_dacl(&sd, 1000, 100, 0o644, false), None);
        // A NULL DACL grants everything.
        sd.control |= control::DACL_PRESENT;
        sd.dacl = None;
        assert_eq!(mode_for_dacl(&sd, 1000, 100, 0o644, false), Some(0o777));
    }

    #[test]
    fn set_needs_the_matching_rights() {
        assert_eq!(check_set_access(access::WRITE_DAC, si::DACL), Ok(()));
        assert_eq!(check_set_access(access::WRITE_OWNER, si::DACL), Err(NtStatus::ACCESS_DENIED));
        assert_eq!(check_set_access(access::WRITE_DAC, si::OWNER), Err(NtStatus::ACCESS_DENIED));
        assert_eq!(check_set_access(access::WRITE_OWNER, si::OWNER | si::GROUP), Ok(()));
        assert_eq!(check_set_access(access::WRITE_DAC, si::SACL), Err(NtStatus::ACCESS_DENIED));
        assert_eq!(check_query_access(access::READ_CONTROL, si::OWNER | si::DACL), Ok(()));
        assert_eq!(check_query_access(access::READ_CONTROL, si::SACL), Err(NtStatus::ACCESS_DENIED));
        assert_eq!(check_query_access(access::FILE_READ_ATTRIBUTES, si::DACL), Err(NtStatus::ACCESS_DENIED));
    }
}
