//! Confinement of `server::fs`: nothing a client can name reaches outside the
//! share root. Uses only the public API.
//!
//! Out of scope: hard links to outside files (whoever plants them already has
//! access to both places; they cannot be told apart from ordinary files).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use protocol::NtStatus;
use server::fs::{FsError, Resolved, Share, SmbPath};

struct Setup {
    _tmp: tempfile::TempDir,
    share: Share,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
}

/// tmp/share (the root) and tmp/outside (a sibling with a secret), with
/// symlinks planted in the share to /etc, to the sibling, to the sibling's
/// file, and a directory chain.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("share");
    let outside = tmp.path().join("outside");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret.txt"), b"secret").unwrap();
    fs::create_dir(root.join("dir")).unwrap();
    fs::write(root.join("dir").join("inner.txt"), b"inner").unwrap();
    symlink("/etc", root.join("etc")).unwrap();
    symlink(&outside, root.join("sibling")).unwrap();
    symlink("../outside", root.join("dir").join("up")).unwrap();
    symlink(outside.join("secret.txt"), root.join("secret.txt")).unwrap();
    symlink("inner.txt", root.join("dir").join("inside_link")).unwrap();
    let share = Share::new("test", &root).unwrap();
    Setup { _tmp: tmp, share, root, outside }
}

/// `p` must fail to parse or to resolve: without a `Resolved` no other
/// operation can be attempted (the swap tests below cover stale ones).
fn refused(s: &Setup, p: &str) {
    let path = match SmbPath::parse(p) {
        Err(_) => return,
        Ok(path) => path,
    };
    let rel = match s.share.resolve(&path) {
        Err(_) => return,
        Ok(rel) => rel,
    };
    panic!("{p:?} resolved to {rel:?}");
}

fn outside_untouched(s: &Setup) {
    let names: Vec<_> = fs::read_dir(&s.outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["secret.txt"]);
    assert_eq!(fs::read(s.outside.join("secret.txt")).unwrap(), b"secret");
}

fn err_of<T: std::fmt::Debug>(r: Result<T, FsError>) -> FsError {
    r.expect_err("must be refused")
}

#[test]
fn dot_dot_and_absolute_paths() {
    let s = setup();
    for p in [
        "..",
        "\\..\\..\\etc\\passwd",
        "..\\outside\\secret.txt",
        "dir\\..\\..\\outside\\secret.txt",
        "dir\\..\\..",
        "/../etc/passwd",
        "C:\\Windows",
        "C:\\Windows\\System32",
        "\\\\server\\share\\x",
    ] {
        refused(&s, p);
    }
    // Syntax errors come back with the Windows statuses.
    assert_eq!(err_of(SmbPath::parse("\\..\\..\\etc\\passwd")).status(), NtStatus::OBJECT_PATH_SYNTAX_BAD);
    assert_eq!(err_of(SmbPath::parse("C:\\Windows")).status(), NtStatus::OBJECT_NAME_INVALID);
    // An "absolute" path is relative to the share root: this is <root>/etc/passwd,
    // and <root>/etc is a symlink to /etc, so it is refused.
    let p = SmbPath::parse("/etc/passwd").unwrap();
    assert_eq!(err_of(s.share.resolve(&p)).status(), NtStatus::ACCESS_DENIED);
    // Leading separators are stripped: \dir\inner.txt is inside.
    let rel = s.share.resolve(&SmbPath::parse("\\dir\\inner.txt").unwrap()).unwrap();
    let mut buf = [0u8; 16];
    let n = s.share.open(&rel, false).unwrap().read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"inner");
    outside_untouched(&s);
}

#[test]
fn special_names() {
    for p in ["a\0b", "dir\\inner.txt\0", "inner.txt:stream", "dir\\inner.txt::$DATA", "a:b\\c", "*", "dir\\?", "dir\\.\\inner.txt", "."] {
        let e = err_of(SmbPath::parse(p));
        assert_eq!(e.status(), NtStatus::OBJECT_NAME_INVALID, "{p:?}");
    }
}

#[test]
fn planted_symlinks_are_refused() {
    let s = setup();
    for p in [
        "etc",
        "etc\\passwd",
        "ETC\\passwd",
        "sibling",
        "sibling\\secret.txt",
        "SIBLING\\SECRET.TXT",
        "secret.txt",
        "Secret.Txt",
        "dir\\up",
        "dir\\up\\secret.txt",
        "dir\\inside_link",
    ] {
        let path = SmbPath::parse(p).unwrap();
        let e = err_of(s.share.resolve(&path));
        assert_eq!(e.status(), NtStatus::ACCESS_DENIED, "{p:?}: {e:?}");
    }
    // Listings leave symlinks out.
    let dir = s.share.resolve(&SmbPath::parse("dir").unwrap()).unwrap();
    let handle = s.share.open(&dir, false).unwrap();
    let names: Vec<String> = handle.list_dir().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["inner.txt"], "symlinks are hidden from listings");
    // Listed where the directory is known, confined links show (as
    // reparse points), escaping ones (dir/up -> ../outside) do not.
    let names: Vec<String> = handle.list_dir_in(dir.components(), s.share.root_components()).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["inner.txt", "inside_link", "up"], "the links that stay in the share are listed");
    let root = s.share.open(&Resolved::root(), false).unwrap();
    let names: Vec<String> = root.list_dir_in(&[], s.share.root_components()).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["dir"], "links to /etc, to the sibling and to its file are not");
    let root = s.share.open(&Resolved::root(), false).unwrap();
    let names: Vec<String> = root.list_dir().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["dir"]);
    // Renaming onto or through a symlink is refused too.
    let inner = s.share.resolve(&SmbPath::parse("dir\\inner.txt").unwrap()).unwrap();
    for target in ["sibling\\stolen.txt", "etc\\stolen", "secret.txt", "dir\\up\\x"] {
        let e = err_of(s.share.rename(&inner, &SmbPath::parse(target).unwrap(), true));
        assert_eq!(e.status(), NtStatus::ACCESS_DENIED, "{target:?}: {e:?}");
    }
    assert!(s.root.join("dir").join("inner.txt").exists());
    outside_untouched(&s);
    // The planted links themselves are still there and untouched.
    assert!(fs::symlink_metadata(s.root.join("etc")).unwrap().file_type().is_symlink());
}

#[test]
fn creating_over_a_symlink_fails() {
    let s = setup();
    // A client that cannot see "secret.txt" (hidden) still cannot create
    // through it: resolve refuses, and create with O_EXCL would not follow.
    let e = err_of(s.share.resolve(&SmbPath::parse("secret.txt").unwrap()));
    assert_eq!(e.status(), NtStatus::ACCESS_DENIED);
    outside_untouched(&s);
}

/// Swap `share/<name>` for a symlink to `target`.
fn swap_for_symlink(root: &Path, name: &str, target: &Path) {
    fs::rename(root.join(name), root.join(format!("{name}.old"))).unwrap();
    symlink(target, root.join(name)).unwrap();
}

#[test]
fn directory_swapped_for_symlink_after_resolve() {
    let s = setup();
    // The outside gets a look-alike of the inner file, to be sure the kernel
    // did not just fail on a missing name.
    fs::write(s.outside.join("inner.txt"), b"OUTSIDE").unwrap();
    fs::create_dir(s.outside.join("sub")).unwrap();
    let file = s.share.resolve(&SmbPath::parse("dir\\inner.txt").unwrap()).unwrap();
    let dir = s.share.resolve(&SmbPath::parse("dir").unwrap()).unwrap();
    let new_file = s.share.resolve(&SmbPath::parse("dir\\new.txt").unwrap()).unwrap();
    let new_dir = s.share.resolve(&SmbPath::parse("dir\\sub2").unwrap()).unwrap();
    let sub = s.share.resolve(&SmbPath::parse("dir\\sub").unwrap()).unwrap();
    assert!(file.exists() && dir.exists() && !new_file.exists() && !sub.exists());

    swap_for_symlink(&s.root, "dir", &s.outside);

    for write in [false, true] {
        let e = err_of(s.share.open(&file, write));
        assert_eq!(e.status(), NtStatus::ACCESS_DENIED, "{e:?}");
    }
    assert_eq!(err_of(s.share.open(&dir, false)).status(), NtStatus::ACCESS_DENIED);
    assert_eq!(err_of(s.share.stat(&file)).status(), NtStatus::ACCESS_DENIED);
    assert_eq!(err_of(s.share.stat(&dir)).status(), NtStatus::ACCESS_DENIED);
    assert!(s.share.create_file(&new_file, 0o644).is_err());
    assert!(s.share.create_dir(&new_dir, 0o755).is_err());
    assert!(s.share.unlink(&file).is_err());
    assert!(s.share.rmdir(&sub).is_err());
    // Renaming the resolved file somewhere inside, or something onto it.
    assert!(s.share.rename(&file, &SmbPath::parse("stolen.txt").unwrap(), false).is_err());
    let ok_file = s.share.resolve(&SmbPath::parse("dir.old\\inner.txt").unwrap()).unwrap();
    assert!(s.share.rename(&ok_file, &SmbPath::parse("dir\\inner.txt").unwrap(), true).is_err());
    // The link itself as a leaf: unlink and rmdir refuse to act through it.
    assert!(s.share.rmdir(&dir).is_err());
    assert!(s.share.unlink(&dir).is_err());

    assert_eq!(fs::read(s.outside.join("inner.txt")).unwrap(), b"OUTSIDE");
    assert!(s.outside.join("sub").is_dir());
    let mut names: Vec<_> = fs::read_dir(&s.outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["inner.txt", "secret.txt", "sub"]);
    assert!(!s.root.join("stolen.txt").exists());
}

#[test]
fn file_swapped_for_symlink_after_resolve() {
    let s = setup();
    let file = s.share.resolve(&SmbPath::parse("dir\\inner.txt").unwrap()).unwrap();
    fs::remove_file(s.root.join("dir").join("inner.txt")).unwrap();
    symlink(s.outside.join("secret.txt"), s.root.join("dir").join("inner.txt")).unwrap();
    for write in [false, true] {
        assert_eq!(err_of(s.share.open(&file, write)).status(), NtStatus::ACCESS_DENIED);
    }
    assert_eq!(err_of(s.share.stat(&file)).status(), NtStatus::ACCESS_DENIED);
    outside_untouched(&s);
}

#[test]
fn share_root_that_is_a_symlink_is_followed_once() {
    // The configured root may itself be a symlink (operator's choice); paths
    // inside it are still confined to its target.
    let s = setup();
    let link = s.root.parent().unwrap().join("share-link");
    symlink(&s.root, &link).unwrap();
    let share = Share::new("linked", &link).unwrap();
    let rel = share.resolve(&SmbPath::parse("dir\\inner.txt").unwrap()).unwrap();
    assert!(rel.exists());
    refused(&Setup { _tmp: tempfile::tempdir().unwrap(), share, root: s.root.clone(), outside: s.outside.clone() }, "..\\outside\\secret.txt");
    outside_untouched(&s);
}

/// A CREATE's resolution (`resolve_open`): every escaping link stays
/// STATUS_ACCESS_DENIED, opened as itself (FILE_OPEN_REPARSE_POINT) or not;
/// the confined one stops the path for the client to follow
/// (STATUS_STOPPED_ON_SYMLINK with its target and the rest of the path's
/// length), or is opened as the link itself.
#[test]
fn links_met_by_a_create() {
    let s = setup();
    for open_link in [false, true] {
        for p in ["etc", "etc\\passwd", "ETC\\passwd", "sibling", "sibling\\secret.txt", "secret.txt", "Secret.Txt"] {
            let e = err_of(s.share.resolve_open(&SmbPath::parse(p).unwrap(), open_link));
            assert_eq!(e.status(), NtStatus::ACCESS_DENIED, "{p:?} {open_link}: {e:?}");
        }
    }
    let stop = |p: &str| match s.share.resolve_open(&SmbPath::parse(p).unwrap(), false) {
        Err(FsError::StoppedOnSymlink(stop)) => *stop,
        other => panic!("{p:?}: {other:?}"),
    };
    assert_eq!(stop("dir\\inside_link"), server::fs::Stopped { target: "inner.txt".into(), unparsed: 0 });
    // An absolute link under the share's root stands for the relative one
    // (as smbd shows it); absolute links elsewhere stay refused (above).
    let canon = fs::canonicalize(&s.root).unwrap();
    symlink(canon.join("dir/inner.txt"), s.root.join("dir/abs_in")).unwrap();
    assert_eq!(stop("dir\\abs_in"), server::fs::Stopped { target: "..\\dir\\inner.txt".into(), unparsed: 0 });
    fs::remove_file(s.root.join("dir/abs_in")).unwrap();
    // dir/up -> ../outside lands on `outside` in the share (absent): the
    // client is sent there, not to the sibling directory.
    assert_eq!(stop("dir\\up\\secret.txt"), server::fs::Stopped { target: "..\\outside".into(), unparsed: 22 });
    assert_eq!(stop("DIR\\Inside_Link\\x\\yz"), server::fs::Stopped { target: "inner.txt".into(), unparsed: 10 });
    let link = s.share.resolve_open(&SmbPath::parse("dir\\inside_link").unwrap(), true).unwrap();
    assert!(link.is_link() && link.exists());
    let (h, st) = s.share.open_stat(&link, false).unwrap();
    assert!(h.is_link());
    assert_ne!(st.attributes & server::fs::attr::REPARSE_POINT, 0);
    assert_eq!(h.link_target().unwrap(), b"inner.txt");
    // Nothing reads or writes through the link's handle.
    let mut buf = [0u8; 8];
    assert_eq!(err_of(h.read_at(&mut buf, 0)).status(), NtStatus::ACCESS_DENIED);
    assert_eq!(err_of(h.write_at(b"x", 0)).status(), NtStatus::ACCESS_DENIED);
    outside_untouched(&s);
}

/// `make_symlink` turns only an empty file or directory into a link (Duet
/// keeps nothing behind one), in one rename: a file with data and a
/// directory with entries are left as they were.
#[test]
fn links_are_made_from_empty_files_only() {
    let s = setup();
    let res = |p: &str| s.share.resolve(&SmbPath::parse(p).unwrap()).unwrap();
    let e = err_of(s.share.make_symlink(&res("dir\\inner.txt"), "../x"));
    assert_eq!(e.status(), NtStatus::ACCESS_DENIED);
    assert_eq!(fs::read(s.root.join("dir/inner.txt")).unwrap(), b"inner");
    let e = err_of(s.share.make_symlink(&res("dir"), "x/"));
    assert_eq!(e.status(), NtStatus::DIRECTORY_NOT_EMPTY);
    assert!(fs::symlink_metadata(s.root.join("dir")).unwrap().is_dir());
    fs::write(s.root.join("empty"), b"").unwrap();
    fs::create_dir(s.root.join("emptydir")).unwrap();
    s.share.make_symlink(&res("empty"), "dir/inner.txt").unwrap();
    s.share.make_symlink(&res("emptydir"), "dir/").unwrap();
    assert_eq!(fs::read_link(s.root.join("empty")).unwrap(), Path::new("dir/inner.txt"));
    assert_eq!(fs::read_link(s.root.join("emptydir")).unwrap(), Path::new("dir/"));
    let names: Vec<String> = fs::read_dir(&s.root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!names.iter().any(|n| n.starts_with(".duet-link")), "{names:?}");
    outside_untouched(&s);
}
