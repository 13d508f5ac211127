//! Security descriptors for files: built from the POSIX owner, group and
//! mode bits (Duet does not store ACLs yet).

use bytes::{BufMut, BytesMut};

/// Appends a self-relative security descriptor ([MS-DTYP] 2.4.6) for a file
/// with the parts `additional` asks for (OWNER 1, GROUP 2, DACL 4).
/// Owner S-1-22-1-uid, group S-1-22-2-gid (Samba's Unix SIDs), and a DACL
/// that grants the owner full control and everyone the mode's read bits.
pub fn encode_for_stat(st: &crate::fs::Stat, additional: u32, out: &mut BytesMut) {
    let owner = unix_sid(1, st.uid);
    let group = unix_sid(2, st.gid);
    let everyone = vec![1u8, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    let mut dacl = BytesMut::new();
    let mut aces = Vec::new();
    aces.push((0x001F_01FFu32, owner.clone()));
    let mut other = 0x0012_0080u32; // read attributes, read control, synchronize
    if st.mode & 0o004 != 0 {
        other |= 0x0012_0089 | 0x20;
    }
    if st.mode & 0o002 != 0 {
        other |= 0x0012_0116;
    }
    aces.push((other, everyone));
    let acl_len = 8 + aces.iter().map(|(_, s)| 8 + s.len()).sum::<usize>();
    dacl.put_u8(2);
    dacl.put_u8(0);
    dacl.put_u16_le(acl_len as u16);
    dacl.put_u16_le(aces.len() as u16);
    dacl.put_u16_le(0);
    for (mask, sid) in &aces {
        dacl.put_u8(0); // ACCESS_ALLOWED_ACE_TYPE
        dacl.put_u8(0);
        dacl.put_u16_le((8 + sid.len()) as u16);
        dacl.put_u32_le(*mask);
        dacl.put_slice(sid);
    }
    let want_owner = additional & 1 != 0;
    let want_group = additional & 2 != 0;
    let want_dacl = additional & 4 != 0;
    let mut control: u16 = 0x8000; // SE_SELF_RELATIVE
    if want_dacl {
        control |= 0x0004; // SE_DACL_PRESENT
    }
    let mut at = 20usize;
    let mut off = |present: bool, len: usize| {
        if present {
            let o = at;
            at += len;
            o as u32
        } else {
            0
        }
    };
    let o_owner = off(want_owner, owner.len());
    let o_group = off(want_group, group.len());
    let o_dacl = off(want_dacl, dacl.len());
    out.put_u8(1);
    out.put_u8(0);
    out.put_u16_le(control);
    out.put_u32_le(o_owner);
    out.put_u32_le(o_group);
    out.put_u32_le(0);
    out.put_u32_le(o_dacl);
    if want_owner {
        out.put_slice(&owner);
    }
    if want_group {
        out.put_slice(&group);
    }
    if want_dacl {
        out.put_slice(&dacl);
    }
}

/// S-1-22-{kind}-{id}.
fn unix_sid(kind: u32, id: u32) -> Vec<u8> {
    let mut s = vec![1u8, 2, 0, 0, 0, 0, 0, 22];
    s.extend_from_slice(&kind.to_le_bytes());
    s.extend_from_slice(&id.to_le_bytes());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_has_requested_parts_only() {
        let st = crate::fs::Stat {
            dev: 1,
            ino: 2,
            size: 0,
            blocks_bytes: 0,
            nlink: 1,
            mode: 0o100644,
            is_dir: false,
            uid: 1000,
            gid: 100,
            atime: 0,
            mtime: 0,
            ctime: 0,
            btime: 0,
            attributes: 0x20,
        };
        let mut all = BytesMut::new();
        encode_for_stat(&st, 7, &mut all);
        assert_eq!(all[0], 1);
        assert_eq!(u32::from_le_bytes(all[4..8].try_into().unwrap()), 20);
        assert_eq!(&all[20..28], &[1, 2, 0, 0, 0, 0, 0, 22]);
        assert_eq!(u32::from_le_bytes(all[32..36].try_into().unwrap()), 1000);
        let mut owner_only = BytesMut::new();
        encode_for_stat(&st, 1, &mut owner_only);
        assert_eq!(owner_only.len(), 20 + 16);
        assert_eq!(u32::from_le_bytes(owner_only[16..20].try_into().unwrap()), 0);
    }
}
