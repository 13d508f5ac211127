//! What a directory listing tells a macOS client about each entry once it
//! negotiated AAPL's READ_DIR_ATTR ([`protocol::msg::aapl::DirAttr`]): the
//! resource fork's size and the Finder info of `AFP_AfpInfo`, read from the
//! entry's xattrs (or its sidecar, [`super::spill`]) relative to the
//! directory, with no open of the entry, as `vfs_fruit`'s `readdir_attr`
//! gives them.

use std::ffi::CString;

use super::afpinfo;
use super::stream::xattr_name;
use super::sys::{self, XattrTarget};
use super::Handle;

/// Seconds from 1970-01-01 to 2000-01-01, where Apple's dates start.
const APPLE_EPOCH: i64 = 946_684_800;
/// The date of an entry without Finder info: "never" in Apple's dates.
const NO_DATE: u32 = 0x8000_0000;

/// An entry's Apple metadata, as a listing reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacMeta {
    /// The `AFP_Resource` stream's size (0 when there is none).
    pub rfork_size: u64,
    /// `AFP_AfpInfo`'s 60 bytes, when the entry has them.
    pub afp_info: Option<[u8; afpinfo::SIZE]>,
    /// The entry's stored security descriptor ([`super::sd`]), when it has one.
    pub sd: Option<Vec<u8>>,
}

impl MacMeta {
    /// The 16 bytes of compressed Finder info: type and creator (files
    /// only), the Finder flags and extended flags, and the date added
    /// (the creation time, `btime` as FILETIME, in seconds since 2000,
    /// big-endian); all zero but a "never" date without Finder info.
    pub fn finder_info(&self, is_dir: bool, btime: u64) -> [u8; 16] {
        let mut out = [0u8; 16];
        let Some(ai) = &self.afp_info else {
            out[12..].copy_from_slice(&NO_DATE.to_be_bytes());
            return out;
        };
        // The Finder info sits at 16..48 of AfpInfo.
        let fi = &ai[16..48];
        if !is_dir {
            out[..8].copy_from_slice(&fi[..8]);
        }
        out[8..10].copy_from_slice(&fi[8..10]);
        out[10..12].copy_from_slice(&fi[24..26]);
        // FILETIME: 100 ns ticks since 1601, 11644473600 s before 1970.
        let secs = (btime / 10_000_000) as i64 - 11_644_473_600;
        out[12..].copy_from_slice(&((secs - APPLE_EPOCH) as u32).to_be_bytes());
        out
    }
}

impl Handle {
    /// [`MacMeta`] of the entry `name` of this directory (one on-disk
    /// component, as [`Handle::list_dir`] lists it; not `..`). What cannot
    /// be read counts as absent: a listing shows the entry regardless.
    pub fn child_mac_meta(&self, name: &str) -> MacMeta {
        let mut meta = MacMeta { rfork_size: 0, afp_info: None, sd: None };
        if !self.xattrs() || !self.is_dir() || name == ".." {
            return meta;
        }
        let Ok(leaf) = CString::new(name) else { return meta };
        let at = XattrTarget::At(self.fd(), &leaf);
        meta.sd = super::sd::read(XattrTarget::At(self.fd(), &leaf)).ok().flatten();
        if let Ok(x) = xattr_name(afpinfo::NAME) {
            // The stream's value ends with a NUL ([`super::stream`]).
            let mut buf = [0u8; afpinfo::SIZE + 1];
            if let Ok(Some(n)) = sys::get_xattr(at, &x, &mut buf) {
                if n > afpinfo::SIZE {
                    let mut ai = [0u8; afpinfo::SIZE];
                    ai.copy_from_slice(&buf[..afpinfo::SIZE]);
                    meta.afp_info = Some(ai);
                }
            }
        }
        let Ok(x) = xattr_name(afpinfo::RESOURCE) else { return meta };
        let at = XattrTarget::At(self.fd(), &leaf);
        match sys::get_xattr(at, &x, &mut []) {
            Ok(Some(n)) => meta.rfork_size = (n as u64).saturating_sub(1),
            _ => {
                // A fork past one xattr lives in a sidecar file.
                let sidecar = self.spill().zip(super::uid::stored_at(self.fd(), &leaf));
                if let Some((area, uid)) = sidecar {
                    if let Ok(Some(f)) = area.open(uid, afpinfo::RESOURCE) {
                        meta.rfork_size = f.metadata().map_or(0, |m| m.len());
                    }
                }
            }
        }
        meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tests::share;
    use crate::fs::Share;

    fn afp(finder: &[u8]) -> [u8; afpinfo::SIZE] {
        let mut ai = afpinfo::EMPTY;
        ai[16..16 + finder.len()].copy_from_slice(finder);
        ai
    }

    #[test]
    fn finder_info_is_compressed_as_macos_reads_it() {
        let mut fi = [0u8; 32];
        fi[..8].copy_from_slice(b"SMB,OLE!");
        fi[8..10].copy_from_slice(&[0x12, 0x34]);
        fi[24..26].copy_from_slice(&[0x56, 0x78]);
        let m = MacMeta { rfork_size: 0, afp_info: Some(afp(&fi)), sd: None };
        // 2000-01-01 plus 10 s, as FILETIME.
        let btime = super::super::stat::unix_to_filetime(APPLE_EPOCH + 10, 0);
        let out = m.finder_info(false, btime);
        assert_eq!(&out[..8], b"SMB,OLE!");
        assert_eq!(&out[8..12], &[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(&out[12..], &10u32.to_be_bytes());
        // A directory has no type or creator.
        assert_eq!(&m.finder_info(true, btime)[..8], &[0; 8]);
        let none = MacMeta { rfork_size: 0, afp_info: None, sd: None };
        assert_eq!(none.finder_info(false, btime), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0]);
    }

    fn open_root(s: &Share) -> Handle {
        s.open(&crate::fs::Resolved::root(), false).unwrap()
    }

    #[test]
    fn reads_fork_size_and_afpinfo_of_an_entry() {
        let (_d, s) = share();
        if !s.supports_xattrs() {
            return;
        }
        let root = open_root(&s);
        let f = s.create_file(&s.resolve(&Share::parse_path("f").unwrap()).unwrap(), 0o644).unwrap();
        let x = f.create_stream(afpinfo::RESOURCE).unwrap();
        f.open_stream(x).unwrap().write_at(b"foo", 0).unwrap();
        let x = f.create_stream(afpinfo::NAME).unwrap();
        f.open_stream(x).unwrap().write_at(&afp(b"SMB,OLE!"), 0).unwrap();
        let m = root.child_mac_meta("f");
        assert_eq!(m.rfork_size, 3);
        assert_eq!(&m.afp_info.unwrap()[16..24], b"SMB,OLE!");
        assert_eq!(m.sd, None);
        // An entry with none, and one that is not there.
        s.create_file(&s.resolve(&Share::parse_path("g").unwrap()).unwrap(), 0o644).unwrap();
        assert_eq!(root.child_mac_meta("g"), MacMeta { rfork_size: 0, afp_info: None, sd: None });
        assert_eq!(root.child_mac_meta("nope"), MacMeta { rfork_size: 0, afp_info: None, sd: None });
        assert_eq!(root.child_mac_meta(".."), MacMeta { rfork_size: 0, afp_info: None, sd: None });
    }
}
