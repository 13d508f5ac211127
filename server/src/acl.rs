//! Access control with stored security descriptors: who a session is (its
//! [`Token`]), what a descriptor's DACL grants it ([MS-DTYP] 2.5.3.2), the
//! generic mapping of stored ACEs, what a descriptor set by a client
//! becomes when it is stored ([`merge`]), and the DACL a new file or
//! directory inherits from its parent ([MS-DTYP] 2.5.3.4). Plain
//! functions over `protocol::fscc` descriptors: no I/O, no locks.
//!
//! Identity. Every session acts on disk as the one POSIX user the server
//! runs as, so the POSIX owner and group SIDs (S-1-22-1-uid, S-1-22-2-gid,
//! those of the descriptors Duet derives from the mode) are in every
//! authenticated session's token; besides them a user has a SID of its
//! own, [`user_sid`], which ACEs can name to tell users apart.

use protocol::fscc::security::{ace_flags, ace_type, control, security_information as si};
use protocol::fscc::{access, Ace, Acl, SecurityDescriptor, Sid};

/// The domain part of users' SIDs: S-1-5-21-1146438996-1-1 (0x44554554
/// is "DUET").
const DUET_DOMAIN: [u32; 4] = [21, 0x4455_4554, 1, 1];

/// The SID of the Duet user `name`: S-1-5-21-1146438996-1-1-RID, where RID
/// is 1000 plus the 32-bit FNV-1a hash of the lower-cased name modulo
/// 1,000,000,000 (the same on every node and after a restart; two names
/// meet with a chance of one in a billion).
pub fn user_sid(name: &str) -> Sid {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.to_lowercase().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let mut subs = DUET_DOMAIN.to_vec();
    subs.push(1000 + h % 1_000_000_000);
    Sid { authority: 5, sub_authorities: subs }
}

fn sid(authority: u64, subs: &[u32]) -> Sid {
    Sid { authority, sub_authorities: subs.to_vec() }
}

/// S-1-3-4, OWNER RIGHTS: an ACE for it replaces the owner's implicit
/// READ_CONTROL and WRITE_DAC.
pub fn owner_rights() -> Sid {
    sid(3, &[4])
}
/// S-1-3-1, CREATOR GROUP.
pub fn creator_group() -> Sid {
    sid(3, &[1])
}

/// The SIDs a session holds ([MS-DTYP] 2.5.2 Token/Authorization Context).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    sids: Vec<Sid>,
}

impl Token {
    /// A session's token. An authenticated user: `user` (its SID: from the
    /// users file, else [`user_sid`]), the
    /// server's POSIX user and group (S-1-22-1-`uid`, S-1-22-2-`gid`),
    /// Everyone, NETWORK, Authenticated Users and BUILTIN\Users. A guest:
    /// Everyone, NETWORK and BUILTIN\Guests. An anonymous session:
    /// Everyone, NETWORK and ANONYMOUS LOGON. Nobody holds a privilege.
    pub fn for_session(user: Sid, guest: bool, anonymous: bool, uid: u32, gid: u32) -> Token {
        let mut sids = vec![Sid::everyone(), sid(5, &[2])];
        if anonymous {
            sids.push(sid(5, &[7]));
        } else if guest {
            sids.push(sid(5, &[32, 546]));
        } else {
            sids.extend([user, Sid::unix_user(uid), Sid::unix_group(gid), sid(5, &[11]), sid(5, &[32, 545])]);
        }
        Token { sids }
    }

    /// The token holds `s`.
    pub fn has(&self, s: &Sid) -> bool {
        self.sids.contains(s)
    }
}

/// Maps the GENERIC_* bits of `mask` to file rights (the file generic
/// mapping of [MS-FSA] 2.1.5.1.2.1; directories map the same way) and
/// clears them.
pub fn map_generic(mut mask: u32) -> u32 {
    if mask & access::GENERIC_READ != 0 {
        mask |= access::FILE_GENERIC_READ;
    }
    if mask & access::GENERIC_WRITE != 0 {
        mask |= access::FILE_GENERIC_WRITE;
    }
    if mask & access::GENERIC_EXECUTE != 0 {
        mask |= access::FILE_GENERIC_EXECUTE;
    }
    if mask & access::GENERIC_ALL != 0 {
        mask |= access::FILE_ALL_ACCESS;
    }
    mask & !(access::GENERIC_READ | access::GENERIC_WRITE | access::GENERIC_EXECUTE | access::GENERIC_ALL)
}

/// Everything a DACL can grant on a file.
const ALL_RIGHTS: u32 = access::FILE_ALL_ACCESS;

/// The access `token` has to an object with descriptor `sd`: what an open
/// with MAXIMUM_ALLOWED gets ([MS-DTYP] 2.5.3.2 AccessCheck, without
/// privileges). No DACL (or a NULL one) grants everything. The owner holds
/// READ_CONTROL and WRITE_DAC unless the DACL has an OWNER RIGHTS ACE. ACEs
/// are taken in order: an allow grants the bits no earlier deny refused,
/// a deny refuses the bits no earlier allow granted; INHERIT_ONLY ACEs and
/// types other than allow and deny count for nothing. A request for
/// specific rights succeeds exactly when they are all within this mask.
pub fn max_access(sd: &SecurityDescriptor, token: &Token) -> u32 {
    let dacl = match (&sd.dacl, sd.control & control::DACL_PRESENT != 0) {
        (Some(d), true) => d,
        _ => return ALL_RIGHTS,
    };
    let is_owner = sd.owner.as_ref().is_some_and(|o| token.has(o));
    let live = |a: &&Ace| a.flags() & ace_flags::INHERIT_ONLY == 0;
    let owner_rights = owner_rights();
    let has_owner_rights =
        dacl.aces.iter().filter(live).any(|a| matches!(a, Ace::Basic { sid, .. } if *sid == owner_rights));
    let (mut allowed, mut denied) = (0u32, 0u32);
    if is_owner && !has_owner_rights {
        allowed |= access::READ_CONTROL | access::WRITE_DAC;
    }
    for ace in dacl.aces.iter().filter(live) {
        let Ace::Basic { ace_type: t, mask, sid, .. } = ace else { continue };
        if !(token.has(sid) || (is_owner && *sid == owner_rights)) {
            continue;
        }
        let mask = map_generic(*mask);
        match *t {
            ace_type::ACCESS_ALLOWED => allowed |= mask & !denied,
            ace_type::ACCESS_DENIED => denied |= mask & !allowed,
            _ => {}
        }
    }
    allowed
}

/// Control bits that belong to the DACL and to the SACL.
const DACL_BITS: u16 = control::DACL_PRESENT
    | control::DACL_DEFAULTED
    | control::DACL_AUTO_INHERIT_REQ
    | control::DACL_AUTO_INHERITED
    | control::DACL_PROTECTED
    | control::DACL_TRUSTED;
const SACL_BITS: u16 = control::SACL_PRESENT
    | control::SACL_DEFAULTED
    | control::SACL_AUTO_INHERIT_REQ
    | control::SACL_AUTO_INHERITED
    | control::SACL_PROTECTED;

/// An ACL as it is stored: the generic bits of every ACE that applies to
/// the object itself are mapped ([`map_generic`]); INHERIT_ONLY ACEs keep
/// theirs, for the children that inherit them.
fn stored_acl(acl: &Acl) -> Acl {
    let aces = acl
        .aces
        .iter()
        .map(|a| match a {
            Ace::Basic { ace_type, flags, mask, sid } if flags & ace_flags::INHERIT_ONLY == 0 => {
                Ace::Basic { ace_type: *ace_type, flags: *flags, mask: map_generic(*mask), sid: sid.clone() }
            }
            other => other.clone(),
        })
        .collect();
    Acl { revision: acl.revision, aces }
}

/// The control bits a set ACL keeps ([MS-DTYP] 2.4.6, as Windows stores
/// them): PRESENT, DEFAULTED and PROTECTED as given; AUTO_INHERITED only
/// when the caller also set AUTO_INHERIT_REQ; AUTO_INHERIT_REQ itself never.
/// An ACL set without its PRESENT bit is a NULL ACL.
fn set_acl_control(given: u16, bits: u16, present: u16, req: u16, inherited: u16) -> u16 {
    let mut c = given & bits & !(req | inherited | control::DACL_TRUSTED);
    if given & (req | inherited) == req | inherited {
        c |= inherited;
    }
    c | present
}

/// Why a set was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// The new owner is not a SID of the caller's ([MS-DTYP] 2.5.3.4:
    /// without SeRestorePrivilege, STATUS_INVALID_OWNER).
    InvalidOwner,
}

/// The descriptor to store when a client sets the parts `additional` of
/// `given` on an object whose descriptor is `current` ([MS-FSA] 2.1.5.16):
/// the parts named come from `given`, the others stay; stored ACLs have
/// their generic bits mapped and their control bits as [`set_acl_control`]
/// says. An OWNER part without an owner SID leaves the owner alone (as
/// smbd does); a new owner must be in `token`.
pub fn merge(
    current: &SecurityDescriptor,
    given: &SecurityDescriptor,
    additional: u32,
    token: &Token,
) -> Result<SecurityDescriptor, SetError> {
    let mut sd = current.clone();
    sd.control |= control::SELF_RELATIVE;
    if additional & si::OWNER != 0 {
        if let Some(o) = &given.owner {
            if !token.has(o) && Some(o) != current.owner.as_ref() {
                return Err(SetError::InvalidOwner);
            }
            sd.owner = Some(o.clone());
            sd.control = (sd.control & !control::OWNER_DEFAULTED) | (given.control & control::OWNER_DEFAULTED);
        }
    }
    if additional & si::GROUP != 0 {
        if let Some(g) = &given.group {
            sd.group = Some(g.clone());
            sd.control = (sd.control & !control::GROUP_DEFAULTED) | (given.control & control::GROUP_DEFAULTED);
        }
    }
    if additional & si::DACL != 0 {
        let present = given.control & control::DACL_PRESENT != 0;
        sd.dacl = given.dacl.as_ref().filter(|_| present).map(stored_acl);
        let c = set_acl_control(
            given.control,
            DACL_BITS,
            control::DACL_PRESENT,
            control::DACL_AUTO_INHERIT_REQ,
            control::DACL_AUTO_INHERITED,
        );
        sd.control = (sd.control & !DACL_BITS) | c;
    }
    if additional & si::SACL != 0 {
        let present = given.control & control::SACL_PRESENT != 0;
        sd.sacl = given.sacl.as_ref().filter(|_| present).map(stored_acl);
        let c = set_acl_control(
            given.control,
            SACL_BITS,
            control::SACL_PRESENT,
            control::SACL_AUTO_INHERIT_REQ,
            control::SACL_AUTO_INHERITED,
        );
        sd.control = (sd.control & !SACL_BITS) | c;
    }
    Ok(sd)
}

/// ACE flags that steer inheritance.
const INHERIT_FLAGS: u8 = ace_flags::OBJECT_INHERIT
    | ace_flags::CONTAINER_INHERIT
    | ace_flags::NO_PROPAGATE_INHERIT
    | ace_flags::INHERIT_ONLY;

/// The DACL a new file (`is_dir` false) or directory inherits from its
/// parent's descriptor ([MS-DTYP] 2.5.3.4.2 ComputeInheritedACLFromParent),
/// or `None` when the parent has nothing inheritable (the new object then
/// keeps the descriptor Duet derives from its mode).
///
/// - A file takes each ACE with OBJECT_INHERIT, as an effective ACE: no
///   inheritance flags, CREATOR OWNER / CREATOR GROUP replaced by `owner`
///   / `group`, generic bits mapped.
/// - A directory takes each CONTAINER_INHERIT ACE: with
///   NO_PROPAGATE_INHERIT as an effective ACE only; else, when it names
///   CREATOR OWNER or CREATOR GROUP or has generic bits, as an effective
///   ACE followed by the ACE itself made INHERIT_ONLY (for its children),
///   otherwise as it is, INHERIT_ONLY cleared. An ACE with only
///   OBJECT_INHERIT (and no NO_PROPAGATE_INHERIT) passes on INHERIT_ONLY,
///   for the directory's files.
/// - When the parent's DACL is AUTO_INHERITED, the child's is too and its
///   ACEs are marked INHERITED.
pub fn inherit(parent: &SecurityDescriptor, is_dir: bool, owner: &Sid, group: &Sid) -> Option<Acl> {
    let dacl = parent.dacl.as_ref().filter(|_| parent.control & control::DACL_PRESENT != 0)?;
    let auto = parent.control & control::DACL_AUTO_INHERITED != 0;
    let mark = if auto { ace_flags::INHERITED } else { 0 };
    let (creator_owner, creator_group) = (Sid::creator_owner(), creator_group());
    let effective = |ace: &Ace| -> Ace {
        match ace {
            Ace::Basic { ace_type, flags, mask, sid } => {
                let sid = if *sid == creator_owner {
                    owner.clone()
                } else if *sid == creator_group {
                    group.clone()
                } else {
                    sid.clone()
                };
                Ace::Basic {
                    ace_type: *ace_type,
                    flags: (flags & !INHERIT_FLAGS & !ace_flags::INHERITED) | mark,
                    mask: map_generic(*mask),
                    sid,
                }
            }
            Ace::Raw { ace_type, flags, body } => Ace::Raw {
                ace_type: *ace_type,
                flags: (flags & !INHERIT_FLAGS & !ace_flags::INHERITED) | mark,
                body: body.clone(),
            },
        }
    };
    let with_flags = |ace: &Ace, f: u8| -> Ace {
        match ace {
            Ace::Basic { ace_type, mask, sid, .. } => {
                Ace::Basic { ace_type: *ace_type, flags: f | mark, mask: *mask, sid: sid.clone() }
            }
            Ace::Raw { ace_type, body, .. } => Ace::Raw { ace_type: *ace_type, flags: f | mark, body: body.clone() },
        }
    };
    let mut aces = Vec::new();
    for ace in &dacl.aces {
        let f = ace.flags();
        let (oi, ci, np) = (
            f & ace_flags::OBJECT_INHERIT != 0,
            f & ace_flags::CONTAINER_INHERIT != 0,
            f & ace_flags::NO_PROPAGATE_INHERIT != 0,
        );
        let keep = f & (ace_flags::OBJECT_INHERIT | ace_flags::CONTAINER_INHERIT) & !ace_flags::INHERITED;
        if !is_dir {
            if oi {
                aces.push(effective(ace));
            }
        } else if ci {
            if np {
                aces.push(effective(ace));
            } else {
                let special = match ace {
                    Ace::Basic { sid, mask, .. } => {
                        *sid == creator_owner || *sid == creator_group || map_generic(*mask) != *mask
                    }
                    Ace::Raw { .. } => false,
                };
                if special {
                    aces.push(effective(ace));
                    aces.push(with_flags(ace, keep | ace_flags::INHERIT_ONLY));
                } else {
                    aces.push(with_flags(ace, keep));
                }
            }
        } else if oi && !np {
            aces.push(with_flags(ace, keep | ace_flags::INHERIT_ONLY));
        }
    }
    if aces.is_empty() {
        return None;
    }
    Some(Acl { revision: dacl.revision, aces })
}

/// The descriptor of a new object whose parent's descriptor hands it
/// `inherited` ([`inherit`]): owner and group as given, the inherited DACL,
/// AUTO_INHERITED when the parent's DACL is.
pub fn inherited_descriptor(parent: &SecurityDescriptor, inherited: Acl, owner: Sid, group: Sid) -> SecurityDescriptor {
    let auto = parent.control & control::DACL_AUTO_INHERITED;
    SecurityDescriptor {
        control: control::SELF_RELATIVE | control::DACL_PRESENT | auto,
        owner: Some(owner),
        group: Some(group),
        dacl: Some(inherited),
        sacl: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Sid {
        Sid::unix_user(1000)
    }
    fn token() -> Token {
        Token::for_session(user_sid("alice"), false, false, 1000, 100)
    }
    fn sd(aces: Vec<Ace>) -> SecurityDescriptor {
        SecurityDescriptor {
            control: control::SELF_RELATIVE | control::DACL_PRESENT,
            owner: Some(owner()),
            group: Some(Sid::unix_group(100)),
            dacl: Some(Acl::new(aces)),
            sacl: None,
        }
    }

    #[test]
    fn user_sids_are_stable_and_distinct() {
        assert_eq!(user_sid("Alice"), user_sid("alice"));
        assert_ne!(user_sid("alice"), user_sid("bob"));
        let s = user_sid("alice").to_string();
        assert!(s.starts_with("S-1-5-21-1146438996-1-1-"), "{s}");
    }

    #[test]
    fn owner_gets_read_control_and_write_dac_unless_owner_rights() {
        let only_write = sd(vec![Ace::allowed(0, access::FILE_WRITE_DATA, owner())]);
        assert_eq!(
            max_access(&only_write, &token()),
            access::FILE_WRITE_DATA | access::READ_CONTROL | access::WRITE_DAC
        );
        let with_or = sd(vec![
            Ace::allowed(0, access::FILE_GENERIC_READ, owner()),
            Ace::allowed(0, access::FILE_WRITE_DATA, owner_rights()),
        ]);
        assert_eq!(max_access(&with_or, &token()), access::FILE_GENERIC_READ | access::FILE_WRITE_DATA);
        // Someone else (a guest) gets nothing from either.
        let guest = Token::for_session(user_sid("g"), true, false, 1000, 100);
        assert_eq!(max_access(&with_or, &guest), 0);
    }

    #[test]
    fn aces_count_in_order() {
        // A trailing deny takes nothing an earlier allow gave (DENY1).
        let trailing = sd(vec![
            Ace::allowed(0, access::FILE_GENERIC_READ | access::FILE_WRITE_DATA, owner()),
            Ace::denied(0, access::FILE_WRITE_DATA, owner()),
        ]);
        assert_ne!(max_access(&trailing, &token()) & access::FILE_WRITE_DATA, 0);
        // A leading one does.
        let leading = sd(vec![
            Ace::denied(0, access::FILE_WRITE_DATA, Sid::everyone()),
            Ace::allowed(0, access::FILE_ALL_ACCESS, owner()),
        ]);
        assert_eq!(max_access(&leading, &token()) & access::FILE_WRITE_DATA, 0);
        // Inherit-only ACEs and foreign SIDs count for nothing; generic bits are mapped.
        let other = sd(vec![
            Ace::allowed(ace_flags::INHERIT_ONLY | ace_flags::OBJECT_INHERIT, access::FILE_ALL_ACCESS, owner()),
            Ace::allowed(0, access::FILE_ALL_ACCESS, user_sid("bob")),
            Ace::allowed(0, access::GENERIC_READ, user_sid("alice")),
        ]);
        assert_eq!(max_access(&other, &token()), access::FILE_GENERIC_READ | access::WRITE_DAC);
        // No DACL, or a NULL one, grants everything.
        let mut null = sd(vec![]);
        null.dacl = None;
        assert_eq!(max_access(&null, &token()), ALL_RIGHTS);
        null.control &= !control::DACL_PRESENT;
        assert_eq!(max_access(&null, &token()), ALL_RIGHTS);
        // An empty DACL grants the owner its implicit rights only.
        assert_eq!(max_access(&sd(vec![]), &token()), access::READ_CONTROL | access::WRITE_DAC);
    }

    #[test]
    fn merge_takes_the_named_parts_and_keeps_the_rest() {
        let current = sd(vec![Ace::allowed(0, access::FILE_ALL_ACCESS, owner())]);
        let mut given = sd(vec![Ace::allowed(0, access::GENERIC_READ, Sid::everyone())]);
        given.owner = Some(Sid::local_system());
        given.control |= control::DACL_AUTO_INHERIT_REQ | control::DACL_PROTECTED;
        let m = merge(&current, &given, si::DACL, &token()).unwrap();
        assert_eq!(m.owner, current.owner);
        assert_eq!(m.dacl.unwrap().aces, vec![Ace::allowed(0, access::FILE_GENERIC_READ, Sid::everyone())]);
        assert_eq!(m.control, control::SELF_RELATIVE | control::DACL_PRESENT | control::DACL_PROTECTED);
        // AUTO_INHERITED stays only beside AUTO_INHERIT_REQ.
        given.control |= control::DACL_AUTO_INHERITED;
        let m = merge(&current, &given, si::DACL, &token()).unwrap();
        assert_eq!(m.control & control::DACL_AUTO_INHERITED, control::DACL_AUTO_INHERITED);
        assert_eq!(m.control & control::DACL_AUTO_INHERIT_REQ, 0);
        // An owner not in the token is refused; one in it is taken.
        assert_eq!(merge(&current, &given, si::OWNER, &token()), Err(SetError::InvalidOwner));
        given.owner = Some(Sid::everyone());
        assert_eq!(merge(&current, &given, si::OWNER, &token()).unwrap().owner, Some(Sid::everyone()));
        // A DACL set without DACL_PRESENT is a NULL DACL.
        given.control &= !control::DACL_PRESENT;
        let m = merge(&current, &given, si::DACL, &token()).unwrap();
        assert_eq!((m.dacl, m.control & control::DACL_PRESENT), (None, control::DACL_PRESENT));
    }

    #[test]
    fn inheritance_follows_the_flags() {
        use ace_flags::*;
        let co = Sid::creator_owner();
        let parent = |flags: u8| sd(vec![Ace::allowed(flags, access::FILE_WRITE_DATA, co.clone())]);
        let (o, g) = (owner(), Sid::unix_group(100));
        // Nothing inheritable: nothing inherited.
        assert_eq!(inherit(&parent(0), false, &o, &g), None);
        assert_eq!(inherit(&parent(NO_PROPAGATE_INHERIT), true, &o, &g), None);
        // A file takes OI ACEs, effective, CREATOR OWNER replaced.
        let f = inherit(&parent(OBJECT_INHERIT | INHERIT_ONLY), false, &o, &g).unwrap();
        assert_eq!(f.aces, vec![Ace::allowed(0, access::FILE_WRITE_DATA, o.clone())]);
        // A directory: OI alone passes on inherit-only.
        let d = inherit(&parent(OBJECT_INHERIT), true, &o, &g).unwrap();
        assert_eq!(d.aces, vec![Ace::allowed(OBJECT_INHERIT | INHERIT_ONLY, access::FILE_WRITE_DATA, co.clone())]);
        // CI with CREATOR OWNER: split into effective and inherit-only.
        let d = inherit(&parent(CONTAINER_INHERIT | OBJECT_INHERIT), true, &o, &g).unwrap();
        assert_eq!(
            d.aces,
            vec![
                Ace::allowed(0, access::FILE_WRITE_DATA, o.clone()),
                Ace::allowed(CONTAINER_INHERIT | OBJECT_INHERIT | INHERIT_ONLY, access::FILE_WRITE_DATA, co.clone()),
            ]
        );
        // CI with NP: effective only.
        let d = inherit(&parent(CONTAINER_INHERIT | NO_PROPAGATE_INHERIT), true, &o, &g).unwrap();
        assert_eq!(d.aces, vec![Ace::allowed(0, access::FILE_WRITE_DATA, o.clone())]);
        // CI on a plain SID: as it is.
        let plain = sd(vec![Ace::allowed(CONTAINER_INHERIT | INHERIT_ONLY, 1, Sid::everyone())]);
        assert_eq!(
            inherit(&plain, true, &o, &g).unwrap().aces,
            vec![Ace::allowed(CONTAINER_INHERIT, 1, Sid::everyone())]
        );
        // AUTO_INHERITED parents mark the ACEs.
        let mut auto = parent(OBJECT_INHERIT);
        auto.control |= control::DACL_AUTO_INHERITED;
        assert_eq!(
            inherit(&auto, false, &o, &g).unwrap().aces,
            vec![Ace::allowed(INHERITED, access::FILE_WRITE_DATA, o.clone())]
        );
    }
}
