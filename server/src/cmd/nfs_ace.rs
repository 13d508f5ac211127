//! MS-NFS style ACEs, what a macOS client reads and sets a file's POSIX
//! owner, group and mode through once it was told AAPL's NFS_ACE
//! ([`protocol::msg::aapl::caps`]), as Samba's `vfs_fruit` gives them:
//! a queried DACL ends with three ACCESS_DENIED ACEs of no rights, for
//! S-1-5-88-3-MODE (the whole `st_mode`), S-1-5-88-1-UID and
//! S-1-5-88-2-GID ([MS-DTYP] 2.4.2.4 names the S-1-5-88 authority NFS);
//! in a DACL set, an S-1-5-88-3 ACE is a chmod to its permission bits,
//! and every S-1-5-88 ACE is dropped before the DACL is stored (a DACL of
//! nothing else sets no DACL). Such ACEs are never stored.

use protocol::fscc::{Ace, Acl, SecurityDescriptor, Sid};

/// S-1-5-88: the NFS authority's sub-authority.
const NFS: u32 = 88;
/// S-1-5-88-1-uid, -2-gid, -3-mode.
const USER: u32 = 1;
const GROUP: u32 = 2;
const MODE: u32 = 3;

fn nfs_sid(kind: u32, value: u32) -> Sid {
    Sid { authority: 5, sub_authorities: vec![NFS, kind, value] }
}

/// Is `sid` in S-1-5-88 (any of the three, or another)?
fn is_nfs(sid: &Sid) -> bool {
    sid.authority == 5 && sid.sub_authorities.first() == Some(&NFS)
}

fn ace_is_nfs(ace: &Ace) -> bool {
    matches!(ace, Ace::Basic { sid, .. } if is_nfs(sid))
}

/// Adds the three ACEs to `sd`'s DACL, after dropping any it had. A
/// descriptor without a DACL (or with a NULL one) is left as it is.
pub fn add(sd: &mut SecurityDescriptor, uid: u32, gid: u32, mode: u32) {
    let Some(dacl) = sd.dacl.as_mut() else { return };
    dacl.aces.retain(|a| !ace_is_nfs(a));
    dacl.aces.push(Ace::denied(0, 0, nfs_sid(MODE, mode)));
    dacl.aces.push(Ace::denied(0, 0, nfs_sid(USER, uid)));
    dacl.aces.push(Ace::denied(0, 0, nfs_sid(GROUP, gid)));
}

/// What a DACL set carries: the permission bits (0o777) of its first
/// S-1-5-88-3 ACE, if any, and whether anything but S-1-5-88 ACEs is
/// left after they are taken out of `dacl`.
pub fn take(dacl: &mut Acl) -> (Option<u32>, bool) {
    let had = !dacl.aces.is_empty();
    let mode = dacl.aces.iter().find_map(|a| match a {
        Ace::Basic { sid, .. } if is_nfs(sid) && sid.sub_authorities.get(1) == Some(&MODE) => {
            sid.sub_authorities.get(2).map(|m| m & 0o777)
        }
        _ => None,
    });
    dacl.aces.retain(|a| !ace_is_nfs(a));
    (mode, !had || !dacl.aces.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::fscc::posix_security_descriptor;

    fn nfs_aces(sd: &SecurityDescriptor) -> Vec<Sid> {
        sd.dacl
            .as_ref()
            .unwrap()
            .aces
            .iter()
            .filter(|a| ace_is_nfs(a))
            .map(|a| match a {
                Ace::Basic { sid, mask: 0, .. } => sid.clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_query_gets_one_of_each_once() {
        let mut sd = posix_security_descriptor(1000, 100, 0o100644, false);
        let plain = sd.dacl.as_ref().unwrap().aces.len();
        add(&mut sd, 1000, 100, 0o100644);
        add(&mut sd, 1000, 100, 0o100644);
        assert_eq!(nfs_aces(&sd), vec![nfs_sid(MODE, 0o100644), nfs_sid(USER, 1000), nfs_sid(GROUP, 100)]);
        assert_eq!(sd.dacl.as_ref().unwrap().aces.len(), plain + 3);
    }

    #[test]
    fn a_set_takes_the_mode_and_drops_them_all() {
        let mut sd = posix_security_descriptor(1000, 100, 0o644, false);
        add(&mut sd, 1000, 100, 0o100755);
        let mut dacl = sd.dacl.clone().unwrap();
        dacl.aces.push(Ace::denied(0, 0, nfs_sid(USER, 27)));
        dacl.aces.push(Ace::denied(0, 0, nfs_sid(GROUP, 300)));
        let (mode, rest) = take(&mut dacl);
        assert_eq!((mode, rest), (Some(0o755), true));
        assert!(dacl.aces.iter().all(|a| !ace_is_nfs(a)));
        // Only NFS ACEs: nothing left to set.
        let mut only = Acl::new(vec![Ace::denied(0, 0, nfs_sid(MODE, 0o600))]);
        assert_eq!(take(&mut only), (Some(0o600), false));
        // An empty DACL is a DACL.
        assert_eq!(take(&mut Acl::new(vec![])), (None, true));
    }
}
