//! How much of a Time Machine share its backups use, counted as Samba's
//! `vfs_fruit` counts it for `fruit:time machine max size`: each
//! `NAME.sparsebundle` directory at the share's root holds
//! `Info.plist`, whose `band-size` key gives the size of one band, and a
//! `bands` directory with one file per band; the use is the sum over the
//! bundles of band size times band count. Whatever else the share holds
//! is not counted (the share is Time Machine's alone). A bundle whose
//! `Info.plist` or `bands` cannot be read (one being made) counts
//! nothing. Everything is opened beneath the share's root, symlinks
//! refused.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, IntoRawFd};

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::{sys, Share};

/// The longest `Info.plist` read (they are a few hundred bytes).
const MAX_PLIST: u64 = 64 * 1024;

impl Share {
    /// Bytes the share's sparse bundles use ([`self`]).
    pub fn time_machine_used(&self) -> u64 {
        let root = self.root_fd();
        let Ok(mut dir) = Dir::openat(
            Some(root.as_raw_fd()),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            return 0;
        };
        let names: Vec<String> = dir
            .iter()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
            .filter(|n| n.ends_with(".sparsebundle"))
            .collect();
        let mut used = 0u64;
        for name in names {
            let (Some(band), Some(n)) = (band_size(self, &name), band_count(self, &name)) else { continue };
            used = used.saturating_add(band.saturating_mul(n));
        }
        used
    }
}

fn open_beneath(share: &Share, path: &str, flags: i32) -> Option<std::os::fd::OwnedFd> {
    let c = CString::new(path).ok()?;
    sys::openat2_beneath(share.root_fd(), &c, flags | libc::O_NOFOLLOW, 0).ok()
}

fn band_size(share: &Share, bundle: &str) -> Option<u64> {
    let fd = open_beneath(share, &format!("{bundle}/Info.plist"), libc::O_RDONLY)?;
    let mut text = String::new();
    std::fs::File::from(fd).take(MAX_PLIST).read_to_string(&mut text).ok()?;
    parse_band_size(&text)
}

/// The `<integer>` after `<key>band-size</key>` in an `Info.plist`.
fn parse_band_size(plist: &str) -> Option<u64> {
    let after = &plist[plist.find("<key>band-size</key>")? + "<key>band-size</key>".len()..];
    let value = &after[after.find("<integer>")? + "<integer>".len()..];
    value[..value.find("</integer>")?].trim().parse().ok()
}

fn band_count(share: &Share, bundle: &str) -> Option<u64> {
    let fd = open_beneath(share, &format!("{bundle}/bands"), libc::O_RDONLY | libc::O_DIRECTORY)?;
    let mut dir = Dir::from_fd(fd.into_raw_fd()).ok()?;
    Some(
        dir.iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_bytes() != b"." && e.file_name().to_bytes() != b"..")
            .count() as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tests::share;

    #[test]
    fn band_size_from_the_plist() {
        let plist = "<dict>\n  <key>band-size</key>\n  <integer>8192</integer>\n</dict>\n";
        assert_eq!(parse_band_size(plist), Some(8192));
        assert_eq!(parse_band_size("<key>band-size</key><integer>x</integer>"), None);
        assert_eq!(parse_band_size("<key>size</key><integer>1</integer>"), None);
        assert_eq!(parse_band_size("<key>band-size</key><integer>12"), None);
    }

    #[test]
    fn counts_the_bands_of_each_bundle() {
        let (dir, s) = share();
        let root = dir.path();
        for (bundle, bands) in [("a.sparsebundle", 2), ("b.sparsebundle", 3)] {
            std::fs::create_dir_all(root.join(bundle).join("bands")).unwrap();
            std::fs::write(root.join(bundle).join("Info.plist"), "<key>band-size</key><integer>8192</integer>")
                .unwrap();
            for i in 0..bands {
                std::fs::write(root.join(bundle).join("bands").join(i.to_string()), b"x").unwrap();
            }
        }
        // Not a bundle, and a bundle being made: nothing.
        std::fs::create_dir_all(root.join("other/bands")).unwrap();
        std::fs::create_dir_all(root.join("c.sparsebundle")).unwrap();
        assert_eq!(s.time_machine_used(), 5 * 8192);
    }
}
