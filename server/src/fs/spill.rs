//! Named streams too large for one xattr ([`super::stream`]), kept in
//! sidecar files of a hidden per-share directory, so that a stream can be
//! as large as a file (macOS's `AFP_Resource` fork, Windows' large
//! alternate data streams):
//!
//! ```text
//! // Layout: SHARE/.duet:streams/            (mode 0700)
//! //           UID/                          the file's stable id, 32 hex digits
//! //             s.NAME                      the stream NAME's bytes
//! //             t.NAME                      one being filled (never read)
//! ```
//!
//! - A stream starts in its xattr; the write or end of file that takes it
//!   past one xattr value ([`super::stream::MAX_SIZE`]), or past what the
//!   file system lets one file's xattrs hold (ext4 without `ea_inode`:
//!   about 4 KiB in all), moves it here: its bytes go to `t.NAME`, which is
//!   renamed to `s.NAME`, and then the xattr goes. Where both are found
//!   (a crash between the two steps) the sidecar file is the stream. A
//!   stream never moves back.
//! - The directory is keyed by the file's stable id ([`super::uid`]), kept
//!   through renames and shared by hard links: a rename needs nothing; the
//!   directory goes when the file's last name goes ([`super::Share::unlink`],
//!   a rename or link that replaces it, [`super::Share::rmdir`] of a
//!   directory with streams) or its streams are removed (an overwrite). A file deleted behind Duet's back leaves its directory
//!   behind; a copy that carries the id (`cp -a`) shares it until Duet
//!   gives one of them a new id (both open at once).
//! - A file with no stored id (no user xattrs, or an id Duet may not
//!   write) has no sidecar: its streams stay one xattr each.
//! - **Confinement.** `.duet:streams` holds a `:`, so no client path can
//!   name it (a `:` in a path is the stream separator, [`super::stream::split`],
//!   and never in a component, [`super::path`]) and no listing shows it
//!   (names a client could not send back are not listed, nor matched by
//!   their 8.3 name). It is reached only here, by `*at` calls on the
//!   share's root descriptor with symlinks refused.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

use super::error::io_err;
use super::sys;
use super::{FileUid, FsError};

/// The hidden directory's name at the share's root.
pub const DIR: &str = ".duet:streams";

/// One sidecar stream: its name as stored, its size and allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spilled {
    pub name: String,
    pub size: u64,
    pub allocation: u64,
}

/// A share's sidecar area.
#[derive(Debug)]
pub struct Area {
    /// The share root (`O_PATH`), a duplicate of the share's own.
    root: OwnedFd,
}

fn enoent(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT))
}

fn cname(s: &str) -> Result<CString, FsError> {
    CString::new(s).map_err(|_| FsError::NameInvalid)
}

/// The directory name of a file's streams.
fn uid_dir(uid: FileUid) -> String {
    format!("{:032x}", uid.0)
}

impl Area {
    /// The area of the share whose root is `root`.
    pub fn new(root: BorrowedFd<'_>) -> Result<Area, FsError> {
        Ok(Area { root: root.try_clone_to_owned().map_err(io_err)? })
    }

    /// Opens `path` (relative to the root, no symlink on the way) as a
    /// directory; `None` when it is not there.
    fn open_dir(&self, path: &str) -> Result<Option<OwnedFd>, FsError> {
        match sys::openat2_beneath(self.root.as_fd(), &cname(path)?, libc::O_PATH | libc::O_DIRECTORY, 0) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if enoent(&e) => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    /// True when the area exists (some stream was ever spilled here).
    pub fn exists(&self) -> bool {
        sys::statx(self.root.as_fd(), &cname(DIR).expect("no NUL"), libc::AT_SYMLINK_NOFOLLOW).is_ok()
    }

    /// The directory of `uid`'s streams, made (with the area) when `create`.
    fn file_dir(&self, uid: FileUid, create: bool) -> Result<Option<OwnedFd>, FsError> {
        let path = format!("{DIR}/{}", uid_dir(uid));
        if let Some(d) = self.open_dir(&path)? {
            return Ok(Some(d));
        }
        if !create {
            return Ok(None);
        }
        for dir in [DIR.to_owned(), path.clone()] {
            match nix::sys::stat::mkdirat(Some(self.root.as_raw_fd()), dir.as_str(), Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.open_dir(&path)
    }

    /// The sidecar file of `uid`'s stream `name` (exact spelling), opened
    /// for reading and writing; `None` when the stream is not here.
    pub fn open(&self, uid: FileUid, name: &str) -> Result<Option<File>, FsError> {
        let Some(dir) = self.file_dir(uid, false)? else { return Ok(None) };
        let path = cname(&format!("s.{name}"))?;
        match sys::openat2_beneath(dir.as_fd(), &path, libc::O_RDWR | libc::O_NOFOLLOW, 0) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(e) if enoent(&e) => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Makes `uid`'s stream `name` a sidecar file holding `data` (the
    /// stream's bytes so far) and returns it: filled under a temporary
    /// name, then renamed into place, so that it is never seen part-filled.
    pub fn spill(&self, uid: FileUid, name: &str, data: &[u8]) -> Result<File, FsError> {
        let dir = self.file_dir(uid, true)?.ok_or(FsError::NotFound)?;
        let tmp = cname(&format!("t.{name}"))?;
        let fd = sys::openat2_beneath(
            dir.as_fd(),
            &tmp,
            libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
            0o600,
        )
        .map_err(io_err)?;
        let file = File::from(fd);
        std::os::unix::fs::FileExt::write_all_at(&file, data, 0).map_err(io_err)?;
        let dst = cname(&format!("s.{name}"))?;
        nix::fcntl::renameat(Some(dir.as_raw_fd()), tmp.as_c_str(), Some(dir.as_raw_fd()), dst.as_c_str())?;
        Ok(file)
    }

    /// `uid`'s sidecar streams, every `s.NAME` found (the caller decides
    /// which names are streams).
    pub fn list(&self, uid: FileUid) -> Result<Vec<Spilled>, FsError> {
        let Some(dir) = self.file_dir(uid, false)? else { return Ok(Vec::new()) };
        let mut d = Dir::openat(
            Some(dir.as_raw_fd()),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut out = Vec::new();
        for entry in d.iter() {
            let entry = entry?;
            let Ok(file) = entry.file_name().to_str() else { continue };
            let Some(name) = file.strip_prefix("s.") else { continue };
            match sys::statx(dir.as_fd(), entry.file_name(), libc::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => out.push(Spilled {
                    name: name.to_owned(),
                    size: st.stx_size,
                    allocation: st.stx_blocks.saturating_mul(512),
                }),
                Err(e) if enoent(&e) => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(out)
    }

    /// Removes `uid`'s stream `name` (exact spelling): true when it was
    /// here. The file's directory goes with its last stream.
    pub fn remove(&self, uid: FileUid, name: &str) -> Result<bool, FsError> {
        let Some(dir) = self.file_dir(uid, false)? else { return Ok(false) };
        let path = cname(&format!("s.{name}"))?;
        let r = match nix::unistd::unlinkat(Some(dir.as_raw_fd()), path.as_c_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) => true,
            Err(nix::errno::Errno::ENOENT) => false,
            Err(e) => return Err(e.into()),
        };
        drop(dir);
        let path = format!("{DIR}/{}", uid_dir(uid));
        let _ = nix::unistd::unlinkat(Some(self.root.as_raw_fd()), path.as_str(), UnlinkatFlags::RemoveDir);
        Ok(r)
    }

    /// Renames `uid`'s stream `old` to `new` (exact spellings), replacing
    /// a sidecar `new`.
    pub fn rename(&self, uid: FileUid, old: &str, new: &str) -> Result<(), FsError> {
        let dir = self.file_dir(uid, false)?.ok_or(FsError::NotFound)?;
        let (from, to) = (cname(&format!("s.{old}"))?, cname(&format!("s.{new}"))?);
        nix::fcntl::renameat(Some(dir.as_raw_fd()), from.as_c_str(), Some(dir.as_raw_fd()), to.as_c_str())?;
        Ok(())
    }

    /// Removes all of `uid`'s sidecar streams and their directory.
    pub fn remove_all(&self, uid: FileUid) -> Result<(), FsError> {
        let Some(dir) = self.file_dir(uid, false)? else { return Ok(()) };
        let mut d = Dir::openat(
            Some(dir.as_raw_fd()),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let names: Vec<CString> = d
            .iter()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        for n in names {
            match nix::unistd::unlinkat(Some(dir.as_raw_fd()), n.as_c_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        drop(dir);
        let path = format!("{DIR}/{}", uid_dir(uid));
        match nix::unistd::unlinkat(Some(self.root.as_raw_fd()), path.as_str(), UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{short_name, Resolved, Share, SmbPath};
    use super::*;

    /// A share with user xattrs and its file `name` with a stable id.
    fn file(name: &str) -> Option<(tempfile::TempDir, Share, super::super::Handle)> {
        let (dir, share) = super::super::tests::share();
        if !share.supports_xattrs() {
            return None;
        }
        let rel = share.resolve(&SmbPath::parse(name).ok()?).ok()?;
        let h = share.create_file(&rel, 0o644).ok()?;
        let st = h.stat().ok()?;
        share.new_file_uid(&h, &st);
        Some((dir, share, h))
    }

    fn res(share: &Share, p: &str) -> Resolved {
        share.resolve(&SmbPath::parse(p).unwrap()).unwrap()
    }

    fn sidecars(dir: &tempfile::TempDir) -> Vec<String> {
        match std::fs::read_dir(dir.path().join(DIR)) {
            Ok(d) => d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// A stream grows past one xattr into a sidecar file: read, written,
    /// sized, listed, cut short, renamed and deleted there; the xattr is
    /// gone. Without the sidecar the write was FILE_SYSTEM_LIMITATION.
    #[test]
    fn a_stream_past_one_xattr_moves_to_a_sidecar() {
        let Some((dir, _share, h)) = file("f") else { return };
        let s = h.open_stream(h.create_stream("Big").unwrap()).unwrap();
        s.write_at(b"head", 0).unwrap();
        let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        assert_eq!(s.write_at(&big, 4).unwrap(), big.len());
        assert_eq!(s.size().unwrap(), 4 + big.len() as u64);
        let mut back = vec![0u8; 8];
        assert_eq!(s.read_at(&mut back, 0).unwrap(), 8);
        assert_eq!(&back, b"head\0\x01\x02\x03");
        let mut buf = bytes::BytesMut::new();
        assert_eq!(s.read_append(&mut buf, 200_000, 4).unwrap(), 200_000);
        assert_eq!(&buf[..], &big[..200_000]);
        assert_eq!(h.find_stream("big").unwrap(), Some(crate::fs::stream::xattr_name("Big").unwrap()));
        assert_eq!(h.streams().unwrap(), vec![crate::fs::stream::StreamInfo { name: "Big".into(), size: 1_000_004 }]);
        let x = crate::fs::stream::xattr_name("Big").unwrap();
        assert_eq!(sys::get_xattr(sys::XattrTarget::Fd(h.as_fd()), &x, &mut []).unwrap(), None);
        assert_eq!(sidecars(&dir).len(), 1);
        // A second handle on the stream opened before the move finds it.
        s.set_len(100_000).unwrap();
        assert_eq!(h.open_stream(x.clone()).unwrap().size().unwrap(), 100_000);
        s.sync().unwrap();
        s.rename_stream("Moved", false).unwrap();
        assert_eq!(h.streams().unwrap(), vec![crate::fs::stream::StreamInfo { name: "Moved".into(), size: 100_000 }]);
        assert_eq!(s.read_at(&mut back, 0).unwrap(), 8);
        s.remove_stream().unwrap();
        assert!(h.streams().unwrap().is_empty());
        assert!(sidecars(&dir).is_empty(), "{:?}", sidecars(&dir));
    }

    /// The sidecar goes when the file's last name goes (unlink, a rename
    /// over it, a directory's rmdir), not while a hard link keeps the file.
    #[test]
    fn the_sidecar_goes_with_the_file() {
        let Some((dir, share, h)) = file("f") else { return };
        let s = h.open_stream(h.create_stream("Big").unwrap()).unwrap();
        s.set_len(1 << 20).unwrap();
        drop((s, h));
        assert_eq!(sidecars(&dir).len(), 1);
        share.link(&res(&share, "f"), &SmbPath::parse("g").unwrap(), false).unwrap();
        share.unlink(&res(&share, "f")).unwrap();
        assert_eq!(sidecars(&dir).len(), 1);
        share.unlink(&res(&share, "g")).unwrap();
        assert!(sidecars(&dir).is_empty());

        let h = share.create_file(&res(&share, "a"), 0o644).unwrap();
        share.new_file_uid(&h, &h.stat().unwrap());
        h.open_stream(h.create_stream("Big").unwrap()).unwrap().set_len(1 << 20).unwrap();
        drop(h);
        share.create_file(&res(&share, "b"), 0o644).unwrap();
        share.rename(&res(&share, "b"), &SmbPath::parse("a").unwrap(), true).unwrap();
        assert!(sidecars(&dir).is_empty());

        // A directory's stream, and the directory removed.
        let d = share.create_dir(&res(&share, "d"), 0o755).unwrap();
        share.new_file_uid(&d, &d.stat().unwrap());
        d.open_stream(d.create_stream("Big").unwrap()).unwrap().set_len(1 << 20).unwrap();
        drop(d);
        assert_eq!(sidecars(&dir).len(), 1);
        share.rmdir(&res(&share, "d")).unwrap();
        assert!(sidecars(&dir).is_empty());
    }

    /// No client path reaches the sidecar area, by its name, a stream
    /// name, its 8.3 name or a listing of the root.
    #[test]
    fn no_client_path_reaches_the_sidecar() {
        let Some((_dir, share, h)) = file("f") else { return };
        h.open_stream(h.create_stream("Big").unwrap()).unwrap().set_len(1 << 20).unwrap();
        let root = share.open(&Resolved::root(), false).unwrap();
        let names: Vec<String> = root.list_dir().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["f".to_string()]);
        assert!(SmbPath::parse(DIR).is_err() || crate::fs::stream::split(DIR).unwrap().1.is_some());
        let short = short_name(DIR);
        if let Ok(p) = SmbPath::parse(&short) {
            assert!(!share.resolve(&p).unwrap().exists(), "{short} reaches the sidecar area");
        }
        assert!(!share.resolve(&SmbPath::parse(".duet").unwrap()).unwrap().exists());
    }
}
