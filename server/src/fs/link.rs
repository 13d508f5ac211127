//! Symbolic links that cannot leave the share.
//!
//! A symbolic link a client makes (FSCTL_SET_REPARSE_POINT with
//! IO_REPARSE_TAG_SYMLINK, [MS-FSCC] 2.1.2.4) is stored as a real POSIX
//! symlink, as smbd shows POSIX symlinks: a Linux user of the share's
//! directory, or an NFS or SMB client on it, sees the same link. A link to
//! a directory is stored with a trailing `/` (`dir -> sub/`), which POSIX
//! resolves the same way and which tells the two kinds apart (Windows keeps
//! that on the link; Linux has no place for it on a symlink).
//!
//! The server never follows a link: a CREATE whose path meets one answers
//! STATUS_STOPPED_ON_SYMLINK with the link's target ([MS-SMB2] 2.2.2.2.1),
//! and the client resolves it and opens the result itself, each hop checked
//! again. Only **confined** links take part: a target that is relative and,
//! resolved lexically from the link's own directory, stays inside the share
//! root ([`confined`]). A client's link with any other target (absolute,
//! `\??\` or UNC, climbing above the root with `..`, a component a client
//! cannot name) is refused when it is made (STATUS_ACCESS_DENIED); a link
//! found on disk with such a target is treated as before reparse points:
//! left out of listings and refused (STATUS_ACCESS_DENIED) wherever a path
//! meets it. Whether a link escapes depends on where it is, so a link
//! renamed to another directory is checked again ([`super::Share::rename`]).

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};

use super::path::check_component;
use super::{sys, FsError, Resolved, Share};

/// The longest target stored (bytes, Linux's PATH_MAX without the NUL).
const MAX_TARGET: usize = libc::PATH_MAX as usize - 1;

/// Where the target `target` (a POSIX symlink's, `/`-separated) of a link
/// in the directory `dir` (share-relative components) lands, lexically:
/// its share-relative components, or `None` when it is absolute, empty,
/// climbs above the share root, or has a component a client could not
/// name (see [`check_component`]). `.` and empty components are skipped.
pub fn confined(dir: &[String], target: &str) -> Option<Vec<String>> {
    if target.is_empty() || target.starts_with('/') {
        return None;
    }
    let mut at = dir.to_vec();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                at.pop()?;
            }
            name => {
                check_component(name).ok()?;
                at.push(name.to_owned());
            }
        }
    }
    Some(at)
}

/// The absolute `target` of a link in `dir` (share-relative components)
/// as a relative target, when it lies under the share's root `root` (the
/// root's canonical path components): `..` up to the share root, then the
/// rest. `.` and `..` in `target` are resolved lexically first (`..` at
/// `/` stays there); a trailing `/` is kept. `None` when it lies
/// elsewhere.
pub fn relative_of(dir: &[String], target: &str, root: &[String]) -> Option<String> {
    let mut abs: Vec<&str> = Vec::new();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                abs.pop();
            }
            p => abs.push(p),
        }
    }
    if abs.len() < root.len() || abs.iter().zip(root).any(|(a, r)| *a != r.as_str()) {
        return None;
    }
    let mut parts: Vec<&str> = vec![".."; dir.len()];
    parts.extend(&abs[root.len()..]);
    let mut rel = if parts.is_empty() { ".".to_owned() } else { parts.join("/") };
    if target.ends_with('/') {
        rel.push('/');
    }
    Some(rel)
}

/// A confined link read from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The target as clients see it: `\`-separated, relative, without the
    /// directory marker.
    pub wire_target: String,
    /// A link to a directory (stored with a trailing `/`).
    pub is_dir: bool,
}

impl Link {
    /// `target` (as stored) of a link in `dir`, if it is confined.
    pub fn of(dir: &[String], target: &[u8]) -> Option<Link> {
        Link::of_in(dir, target, None)
    }

    /// [`Link::of`], where an absolute target under the share's root
    /// (`root`: the components of the root's canonical path, see
    /// [`Share::root_components`]) counts too, as the relative target it
    /// stands for ([`relative_of`]): a link a Linux user made with
    /// `ln -s /srv/share/docs/x` works for clients, as smbd presents it.
    pub fn of_in(dir: &[String], target: &[u8], root: Option<&[String]>) -> Option<Link> {
        let target = std::str::from_utf8(target).ok()?;
        let relative;
        let target = match root {
            Some(root) if target.starts_with('/') => {
                relative = relative_of(dir, target, root)?;
                relative.as_str()
            }
            _ => target,
        };
        confined(dir, target)?;
        let is_dir = target.ends_with('/');
        let trimmed = target.trim_end_matches('/');
        Some(Link { wire_target: trimmed.replace('/', "\\"), is_dir })
    }
}

/// The POSIX target to store for a client's symbolic link in the directory
/// `dir`: `substitute_name` with `\` turned into `/`, and a trailing `/`
/// when the link is a directory's. Refused with [`FsError::AccessDenied`]
/// unless `relative` and [`confined`]; a target with a NUL or longer than
/// PATH_MAX is [`FsError::NameInvalid`].
pub fn target_from_client(
    dir: &[String],
    substitute_name: &str,
    relative: bool,
    is_dir: bool,
) -> Result<String, FsError> {
    if !relative || substitute_name.starts_with(['\\', '/']) {
        return Err(FsError::AccessDenied);
    }
    if substitute_name.contains('\0') {
        return Err(FsError::NameInvalid);
    }
    let mut target = substitute_name.replace('\\', "/").trim_end_matches('/').to_owned();
    confined(dir, &target).ok_or(FsError::AccessDenied)?;
    if is_dir {
        target.push('/');
    }
    if target.len() > MAX_TARGET {
        return Err(FsError::NameInvalid);
    }
    Ok(target)
}

/// The components of `rel`'s directory.
fn dir_of(rel: &Resolved) -> &[String] {
    rel.components.split_last().map_or(&[][..], |(_, dir)| dir)
}

/// The target of the symlink `name` in `dir` (`c""`: the `O_PATH` fd
/// `dir` itself), checked against the share from `at` (the link's
/// directory): [`FsError::SymlinkRefused`] unless confined.
pub(crate) fn read_at(
    dir: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    at: &[String],
    root: Option<&[String]>,
) -> Result<Link, FsError> {
    let target = sys::readlinkat(dir, name).map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => FsError::NotFound,
        _ => super::error::io_err(e),
    })?;
    Link::of_in(at, &target, root).ok_or(FsError::SymlinkRefused)
}

impl Share {
    /// The link `rel` (which [`Share::resolve_open`] found to be a link),
    /// read again: [`FsError::SymlinkRefused`] when it is not confined (any
    /// more), [`FsError::NotFound`] when it is not a symlink now.
    pub fn read_link(&self, rel: &Resolved) -> Result<Link, FsError> {
        let (parent, leaf) = rel.split()?.ok_or(FsError::NotFound)?;
        let dir = self.parent_fd(&parent)?;
        read_at(dir.as_fd(), &leaf, dir_of(rel), self.root_components())
    }

    /// Turns the empty file or directory `rel` into a symlink to `target`
    /// (from [`target_from_client`]), in one rename: the symlink is made
    /// under a temporary name and renamed over the file (a directory is
    /// exchanged with it, `RENAME_EXCHANGE`, and then removed; one that is
    /// not empty stays as it was, [`FsError::NotEmpty`]). A file with data
    /// is refused ([`FsError::AccessDenied`]): Duet keeps no data behind a
    /// link. An existing symlink is replaced the same way. Returns an
    /// `O_PATH` descriptor of the new link.
    pub fn make_symlink(&self, rel: &Resolved, target: &str) -> Result<std::os::fd::OwnedFd, FsError> {
        use std::os::fd::AsRawFd;
        self.may_change()?;
        let (parent, leaf) = rel.split()?.ok_or(FsError::AccessDenied)?;
        let dir = self.parent_fd(&parent)?;
        let st = sys::statx(dir.as_fd(), &leaf, libc::AT_SYMLINK_NOFOLLOW).map_err(super::error::io_err)?;
        let kind = super::stat::kind_of(st.stx_mode as u32);
        match kind {
            super::stat::Kind::File if st.stx_size != 0 => return Err(FsError::AccessDenied),
            super::stat::Kind::Special => return Err(FsError::AccessDenied),
            _ => {}
        }
        let c_target = CString::new(target).map_err(|_| FsError::NameInvalid)?;
        let tmp =
            CString::new(format!(".duet-link-{:016x}", rand::random::<u64>())).map_err(|_| FsError::NameInvalid)?;
        sys::symlinkat(&c_target, dir.as_fd(), &tmp).map_err(super::error::io_err)?;
        let raw = dir.as_raw_fd();
        let unlink_tmp = |flags| {
            let _ = nix::unistd::unlinkat(Some(raw), tmp.as_c_str(), flags);
        };
        if kind == super::stat::Kind::Dir {
            if let Err(e) = nix::fcntl::renameat2(
                Some(raw),
                tmp.as_c_str(),
                Some(raw),
                leaf.as_c_str(),
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            ) {
                unlink_tmp(nix::unistd::UnlinkatFlags::NoRemoveDir);
                return Err(e.into());
            }
            // `tmp` is the directory now.
            if let Err(e) = nix::unistd::unlinkat(Some(raw), tmp.as_c_str(), nix::unistd::UnlinkatFlags::RemoveDir) {
                // Not empty (something was made in it meanwhile): put it back.
                let _ = nix::fcntl::renameat2(
                    Some(raw),
                    tmp.as_c_str(),
                    Some(raw),
                    leaf.as_c_str(),
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                );
                unlink_tmp(nix::unistd::UnlinkatFlags::NoRemoveDir);
                return Err(match e {
                    nix::errno::Errno::ENOTEMPTY | nix::errno::Errno::EEXIST => FsError::NotEmpty,
                    e => e.into(),
                });
            }
        } else if let Err(e) = nix::fcntl::renameat(Some(raw), tmp.as_c_str(), Some(raw), leaf.as_c_str()) {
            unlink_tmp(nix::unistd::UnlinkatFlags::NoRemoveDir);
            return Err(e.into());
        }
        self.names.forget(dir.as_fd());
        sys::openat2_beneath(dir.as_fd(), &leaf, libc::O_PATH | libc::O_NOFOLLOW, 0).map_err(super::error::io_err)
    }
}

impl Share {
    /// Puts an empty file (a directory when `is_dir`) in the place of the
    /// symlink `rel`: what deleting a symbolic link's reparse point leaves
    /// ([MS-FSA] 2.1.5.10.x FSCTL_DELETE_REPARSE_POINT). Made under a
    /// temporary name and renamed (a directory: exchanged) over the link.
    /// Returns a descriptor of it, opened for reading.
    pub fn unmake_symlink(&self, rel: &Resolved, is_dir: bool) -> Result<std::os::fd::OwnedFd, FsError> {
        use std::os::fd::AsRawFd;
        self.may_change()?;
        let (parent, leaf) = rel.split()?.ok_or(FsError::AccessDenied)?;
        let dir = self.parent_fd(&parent)?;
        let st = sys::statx(dir.as_fd(), &leaf, libc::AT_SYMLINK_NOFOLLOW).map_err(super::error::io_err)?;
        if super::stat::kind_of(st.stx_mode as u32) != super::stat::Kind::Symlink {
            return Err(FsError::NotFound);
        }
        let tmp =
            CString::new(format!(".duet-link-{:016x}", rand::random::<u64>())).map_err(|_| FsError::NameInvalid)?;
        let raw = dir.as_raw_fd();
        if is_dir {
            nix::sys::stat::mkdirat(Some(raw), tmp.as_c_str(), nix::sys::stat::Mode::from_bits_truncate(0o755))?;
            if let Err(e) = nix::fcntl::renameat2(
                Some(raw),
                tmp.as_c_str(),
                Some(raw),
                leaf.as_c_str(),
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            ) {
                let _ = nix::unistd::unlinkat(Some(raw), tmp.as_c_str(), nix::unistd::UnlinkatFlags::RemoveDir);
                return Err(e.into());
            }
            // `tmp` is the symlink now.
            let _ = nix::unistd::unlinkat(Some(raw), tmp.as_c_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        } else {
            drop(
                sys::openat2_beneath(dir.as_fd(), &tmp, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o644)
                    .map_err(super::error::io_err)?,
            );
            if let Err(e) = nix::fcntl::renameat(Some(raw), tmp.as_c_str(), Some(raw), leaf.as_c_str()) {
                let _ = nix::unistd::unlinkat(Some(raw), tmp.as_c_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
                return Err(e.into());
            }
        }
        self.names.forget(dir.as_fd());
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | if is_dir { libc::O_DIRECTORY } else { 0 };
        sys::openat2_beneath(dir.as_fd(), &leaf, flags, 0).map_err(super::error::io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn confinement() {
        assert_eq!(confined(&d(&["a"]), "b"), Some(d(&["a", "b"])));
        assert_eq!(confined(&d(&["a"]), "../b"), Some(d(&["b"])));
        assert_eq!(confined(&d(&["a", "b"]), "./../../c/"), Some(d(&["c"])));
        assert_eq!(confined(&d(&["a"]), ".."), Some(d(&[])));
        assert_eq!(confined(&d(&[]), "x//y"), Some(d(&["x", "y"])));
        for bad in ["", "/etc/passwd", "..", "../x", "a/../../x", "a:b", "x\\y", "a*", "..."] {
            assert_eq!(confined(&d(&[]), bad), None, "{bad:?}");
        }
        assert_eq!(confined(&d(&["a"]), "../../x"), None);
    }

    #[test]
    fn links_read_from_disk() {
        assert_eq!(Link::of(&d(&[]), b"sub/x"), Some(Link { wire_target: "sub\\x".into(), is_dir: false }));
        assert_eq!(Link::of(&d(&[]), b"sub/"), Some(Link { wire_target: "sub".into(), is_dir: true }));
        assert_eq!(Link::of(&d(&[]), b"/etc"), None);
        assert_eq!(Link::of(&d(&["a"]), b"../../etc"), None);
        assert_eq!(Link::of(&d(&[]), b"\xff"), None);
        // Absolute targets under the share's root, as smbd shows them.
        let root = d(&["srv", "share"]);
        let of = |dir: &[&str], t: &[u8]| Link::of_in(&d(dir), t, Some(&root));
        assert_eq!(of(&[], b"/srv/share/dst"), Some(Link { wire_target: "dst".into(), is_dir: false }));
        assert_eq!(of(&["a", "b"], b"/srv/share/c/"), Some(Link { wire_target: "..\\..\\c".into(), is_dir: true }));
        assert_eq!(of(&["a"], b"/srv/./share//a/../x"), Some(Link { wire_target: "..\\x".into(), is_dir: false }));
        for escape in [&b"/srv/share/../etc"[..], b"/srv/sharex/a", b"/srv", b"/etc/passwd", b"/srv/share/a/../../x"] {
            assert_eq!(of(&[], escape), None, "{:?}", String::from_utf8_lossy(escape));
        }
        assert_eq!(Link::of(&d(&[]), b"/srv/share/dst"), None, "without the root, absolute is refused");
    }

    #[test]
    fn client_targets() {
        assert_eq!(target_from_client(&d(&["a"]), "..\\b\\c", true, false).unwrap(), "../b/c");
        assert_eq!(target_from_client(&d(&[]), "sub\\", true, true).unwrap(), "sub/");
        for (t, rel) in [
            ("\\??\\C:\\x", false),
            ("\\??\\UNC\\h\\s\\x", false),
            ("x", false),
            ("\\x", true),
            ("..\\x", true),
            ("a\\..\\..\\x", true),
            ("/x", true),
            ("", true),
        ] {
            assert!(matches!(target_from_client(&d(&[]), t, rel, false), Err(FsError::AccessDenied)), "{t:?}");
        }
        assert!(matches!(target_from_client(&d(&[]), "a\0b", true, false), Err(FsError::NameInvalid)));
        let long = vec!["abcdefgh"; 600].join("\\");
        assert!(matches!(target_from_client(&d(&[]), &long, true, false), Err(FsError::NameInvalid)));
    }
}
