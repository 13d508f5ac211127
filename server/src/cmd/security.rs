//! Security descriptors for files. Duet stores no ACLs: the descriptor a
//! client reads is built from the POSIX owner, group and mode bits
//! ([`encode_for_stat`]), and a DACL a client writes is mapped back onto the
//! mode bits ([`set`]).

use bytes::BytesMut;
use protocol::fscc::security::control;
use protocol::fscc::{
    posix_from_security_descriptor, posix_security_descriptor, security_information as si, Ace, SecurityDescriptor,
    Sid,
};
use protocol::NtStatus;

use crate::state::files::access;
use crate::state::Open;

/// The parts of a descriptor Duet can answer or apply.
const SUPPORTED: u32 = si::OWNER | si::GROUP | si::DACL | si::SACL;

/// Checks the access a security query needs ([MS-SMB2] 3.3.5.20.3,
/// [MS-FSA] 2.1.5.12 FileSecurityInformation): READ_CONTROL for owner,
/// group, DACL (and any query that is not for the SACL alone),
/// ACCESS_SYSTEM_SECURITY for the SACL.
pub fn check_query_access(open_access: u32, additional: u32) -> Result<(), NtStatus> {
    if additional != si::SACL && open_access & access::READ_CONTROL == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    if additional & si::SACL != 0 && open_access & access::ACCESS_SYSTEM_SECURITY == 0 {
        return Err(NtStatus::ACCESS_DENIED);
    }
    Ok(())
}

/// Appends a self-relative security descriptor ([MS-DTYP] 2.4.6) for a file
/// with the parts `additional` asks for: owner S-1-22-1-uid, group
/// S-1-22-2-gid and a protected DACL of owner, group and Everyone from the
/// mode's rwx triples (see [`posix_security_descriptor`]). The SACL is
/// always empty.
pub fn encode_for_stat(st: &crate::fs::Stat, additional: u32, out: &mut BytesMut) {
    posix_security_descriptor(st.uid, st.gid, st.mode, st.is_dir).encode(additional & SUPPORTED, out);
}

/// SET_INFO with SMB2_0_INFO_SECURITY ([MS-SMB2] 3.3.5.21.3, [MS-FSA]
/// 2.1.5.16). Access: WRITE_OWNER for owner or group, WRITE_DAC for the
/// DACL, ACCESS_SYSTEM_SECURITY for the SACL. The DACL becomes the mode's
/// rwx triples ([`posix_from_security_descriptor`]); a DACL that names
/// none of owner, group or Everyone leaves the mode alone, so a Windows
/// client writing its own domain SIDs cannot lock the owner out. Owner,
/// group and SACL are accepted and not stored: Duet serves files as one
/// POSIX user and keeps no audit ACLs.
pub fn set(open: &Open, additional: u32, buf: &[u8]) -> Result<(), NtStatus> {
    check_set_access(open.access, additional)?;
    let sd = SecurityDescriptor::parse(buf).map_err(|_| NtStatus::INVALID_SECURITY_DESCR)?;
    if additional & si::DACL == 0 {
        return Ok(());
    }
    let h = open.handle().ok_or(NtStatus::NOT_SUPPORTED)?;
    let st = h.stat().map_err(|e| e.status())?;
    if let Some(mode) = mode_for_dacl(&sd, st.uid, st.gid, st.mode) {
        h.set_mode(mode).map_err(|e| e.status())?;
    }
    Ok(())
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
/// change, or a DACL that grants nothing to owner, group or Everyone.
fn mode_for_dacl(sd: &SecurityDescriptor, uid: u32, gid: u32, mode: u32) -> Option<u32> {
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
    let new = (mode & 0o7000) | (rwx & 0o777);
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
            assert_eq!(mode_for_dacl(&sd, 1000, 100, mode), None, "{mode:o}");
            // Applied to a file with another mode, it gives this one back.
            assert_eq!(mode_for_dacl(&sd, 1000, 100, 0o4000 | 0o111), Some(0o4000 | (mode & 0o777)), "{mode:o}");
        }
    }

    #[test]
    fn foreign_or_missing_dacls_leave_the_mode_alone() {
        let domain_user: Sid = "S-1-5-21-1-2-3-1001".parse().unwrap();
        let mut sd = posix_security_descriptor(1000, 100, 0o644, false);
        sd.dacl = Some(protocol::fscc::Acl::new(vec![Ace::allowed(0, 0x001F_01FF, domain_user)]));
        assert_eq!(mode_for_dacl(&sd, 1000, 100, 0o644), None);
        sd.control &= !control::DACL_PRESENT;
        assert_eq!(mode_for_dacl(&sd, 1000, 100, 0o644), None);
        // A NULL DACL grants everything.
        sd.control |= control::DACL_PRESENT;
        sd.dacl = None;
        assert_eq!(mode_for_dacl(&sd, 1000, 100, 0o644), Some(0o777));
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
