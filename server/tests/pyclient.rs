//! A second, independent client: Python's smbprotocol
//! (testdata/smbprotocol_ciphers.py) against a real duet, over every
//! cipher (AES-128/256-CCM/GCM) with encryption required, and every signing
//! algorithm and dialect with signing required. It caught the server
//! offering 8 MiB writes to SMB 2.0.2 clients, which may only send 64 KiB.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running duet and its state folder (journal, boot id): each test's
/// own, so that tests running at once do not share one journal (the
/// second server would refuse to start: "in use by another server").
struct Running(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn duet(share: &std::path::Path, extra: &str) -> (Running, u16) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bin = std::env::var("DUET_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_duet").to_string());
    let state = tempfile::tempdir().unwrap();
    let child = Command::new(bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--share", &format!("data={}", share.display()), "--user", "duet:duetpass", extra])
        .args(["--state-dir", &state.path().display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "duet did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Running(child, state), port)
}

fn run_script(mode: &str, port: u16) -> String {
    smbprotocol("smbprotocol_ciphers.py", &[mode, &port.to_string(), "data", "duet", "duetpass"])
}

/// Runs `testdata/SCRIPT` with `args` under python3 and asserts that it
/// succeeded; returns its stdout and stderr.
fn smbprotocol(script: &str, args: &[&str]) -> String {
    let path = format!("{}/../testdata/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3").arg(&path).args(args).output().expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} {args:?} failed:\n{text}");
    text
}

/// Whether files under `dir` take `user.` xattrs (EAs and streams need
/// them); says so when they do not.
fn has_user_xattrs(dir: &std::path::Path) -> bool {
    let probe = dir.join("probe");
    std::fs::write(&probe, b"").unwrap();
    let c = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: both strings are NUL-terminated; the value is 1 byte.
    let ok = unsafe { libc::setxattr(c.as_ptr(), c"user.probe".as_ptr(), b"1".as_ptr().cast(), 1, 0) } == 0;
    std::fs::remove_file(&probe).unwrap();
    if !ok {
        eprintln!("no user xattrs under {}: skipped", dir.display());
    }
    ok
}

#[test]
fn every_cipher_with_encryption_required() {
    let dir = tempfile::tempdir().unwrap();
    let (_srv, port) = duet(dir.path(), "--encrypt");
    let out = run_script("encrypt", port);
    assert_eq!(out.lines().filter(|l| l.starts_with("ok encrypt")).count(), 6, "{out}");
}

#[test]
fn every_signing_algorithm_and_dialect_with_signing_required() {
    let dir = tempfile::tempdir().unwrap();
    let (_srv, port) = duet(dir.path(), "--signing=required");
    let out = run_script("sign", port);
    assert_eq!(out.lines().filter(|l| l.starts_with("ok sign")).count(), 7, "{out}");
}

/// The name FileAllInformation reports is the share-relative path with
/// one leading backslash, for a file just created (it came back with two).
#[test]
fn all_information_names_the_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_srv, port) = duet(dir.path(), "--log-level=info");
    let text = smbprotocol("smbprotocol_names.py", &[&port.to_string(), "data", "duet", "duetpass"]);
    assert!(text.lines().any(|l| l == "name \\sub\\Name.txt"), "{text}");
}

/// Hard links (FileLinkInformation) through smbprotocol's smbclient API
/// (testdata/smbprotocol_links.py): a second name for a file, one file
/// under both, an existing name and a directory refused, a name outside
/// the share refused, and the second name living on after the first is
/// removed. On disk: one inode under the kept name, nothing outside.
#[test]
fn hard_links() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let (_srv, port) = duet(&share, "--log-level=info");
    let text = smbprotocol("smbprotocol_links.py", &[&port.to_string(), "data", "duet", "duetpass"]);
    for step in [
        "ok linked",
        "ok one file under two names",
        "ok refused an existing name",
        "ok refused a directory",
        "ok refused a name outside the share",
        "ok the other name lives on",
    ] {
        assert!(text.lines().any(|l| l.starts_with(step)), "{step} missing:\n{text}");
    }
    assert!(!share.join("a.txt").exists());
    assert_eq!(std::fs::read_to_string(share.join("d/b.txt")).unwrap(), "one two");
    assert_eq!(std::fs::metadata(share.join("d/b.txt")).unwrap().nlink(), 1);
    assert!(!dir.path().join("escaped.txt").exists());
}

/// Directory leases through smbprotocol (testdata/smbprotocol_dirlease.py),
/// what smbtorture 4.17 does not test: RH for a directory; another client's
/// create, write and close, rename and delete in it break it to none; a
/// rename from one leased directory to another breaks both; the holder's
/// own changes under a file lease naming the directory's lease as parent
/// break nothing, and without that parent key they do. Besides, a delete
/// disposition set by another client takes a file lease's handle caching.
#[test]
fn directory_leases_break_when_entries_change() {
    let dir = tempfile::tempdir().unwrap();
    let (_srv, port) = duet(dir.path(), "--log-level=info");
    let text = smbprotocol("smbprotocol_dirlease.py", &[&port.to_string(), "data", "duet", "duetpass"]);
    for step in [
        "ok a directory asked for RWH gets RH",
        "ok another client's create breaks it",
        "ok another client's write and close break it",
        "ok another client's rename in it breaks it",
        "ok another client's delete breaks it",
        "ok a rename out of it breaks it",
        "ok and the directory it went to",
        "ok the holder's own create, write and delete under its parent key break nothing",
        "ok the holder's create without the parent key breaks it",
        "ok another client's open takes a file lease's W",
        "ok a delete disposition takes its H",
    ] {
        assert!(text.lines().any(|l| l == step), "{step} missing:\n{text}");
    }
}

/// A rename in a compound that waits for a lease break
/// (testdata/smbprotocol_compound_rename.py): CREATE + SET_INFO (rename) +
/// CLOSE, related, as smbclient and Windows send a rename, of a file whose
/// handle caching another client's lease holds. The SET_INFO goes async in
/// the middle of the compound and parks the chain, as a CREATE waiting for
/// a break does; it answered STATUS_INTERNAL_ERROR before (the file kept
/// its name). With an RWH lease the CREATE waits for its own break first.
#[test]
fn a_compound_rename_waits_for_lease_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let (_srv, port) = duet(dir.path(), "--log-level=info");
    let text = smbprotocol("smbprotocol_compound_rename.py", &[&port.to_string(), "data", "duet", "duetpass"]);
    for step in [
        "ok a compound rename waits for an RH lease's break and completes",
        "ok a compound rename waits for an RWH lease's two breaks and completes",
    ] {
        assert!(text.lines().any(|l| l == step), "{step} missing:\n{text}");
    }
    assert!(dir.path().join("moved.txt").exists() && !dir.path().join("held.txt").exists());
    assert!(dir.path().join("moved2.txt").exists() && !dir.path().join("held2.txt").exists());
}

/// Symbolic links (reparse points) through smbprotocol
/// (testdata/smbprotocol_symlinks.py): a client's link made with
/// FSCTL_SET_REPARSE_POINT and read back with FSCTL_GET_REPARSE_POINT,
/// listed with FILE_ATTRIBUTE_REPARSE_POINT and the tag, followed by the
/// client through STATUS_STOPPED_ON_SYMLINK (at the end of a path and in
/// the middle, the error response checked on SMB 3.1.1 and 2.1), targets
/// outside the share refused when made (relative with `..`, absolute,
/// UNC) and when met on disk (hidden from listings too; an absolute link
/// on disk into the share counts as the relative one), a link moved to
/// where it would escape refused, hostile reparse buffers answered with
/// the statuses [MS-FSA] gives, FSCTL_DELETE_REPARSE_POINT, and removing
/// links. On disk: the links are real POSIX symlinks, and nothing was made
/// outside the share.
#[test]
fn symbolic_links() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(share.join("sub")).unwrap();
    std::fs::write(share.join("target.txt"), "hello").unwrap();
    std::fs::write(share.join("sub/inner.txt"), "inner").unwrap();
    std::fs::write(dir.path().join("outside.txt"), "secret").unwrap();
    std::os::unix::fs::symlink("target.txt", share.join("disk_link")).unwrap();
    std::os::unix::fs::symlink(std::fs::canonicalize(&share).unwrap().join("target.txt"), share.join("abs_link"))
        .unwrap();
    std::os::unix::fs::symlink("/etc", share.join("evil")).unwrap();
    std::os::unix::fs::symlink("../../outside.txt", share.join("sub/evil2")).unwrap();
    let (_srv, port) = duet(&share, "--log-level=info");
    let text = smbprotocol("smbprotocol_symlinks.py", &[&port.to_string(), "data", "duet", "duetpass"]);
    for step in [
        "ok a client's link reads back",
        "ok lstat shows a symbolic link",
        "ok listing shows confined links as reparse points, not escaping ones",
        "ok listing of a subdirectory hides its escaping link",
        "ok opening a link reaches its target (the client follows)",
        "ok a directory link in the middle of a path is followed",
        "ok STOPPED_ON_SYMLINK carries the link's target and the unparsed length (3.1.1 and 2.1)",
        "ok refused a link climbing out of the share",
        "ok refused a link climbing out from a subdirectory",
        "ok refused an absolute link",
        "ok refused an absolute UNC link",
        "ok refused an on-disk link out of the share, opened",
        "ok refused an on-disk link out of the share, opened as itself",
        "ok refused a link moved to where it escapes",
        "ok refused a 64 KiB buffer",
        "ok refused names outside the buffer",
        "ok the server still answers after hostile buffers",
        "ok deleting the reparse point leaves an empty file",
        "ok removing links leaves their targets",
    ] {
        assert!(text.lines().any(|l| l.starts_with(step)), "{step} missing:\n{text}");
    }
    // A client's link is a POSIX symlink, relative, as Linux users see it.
    assert_eq!(std::fs::read_link(share.join("sub/up")).unwrap(), std::path::Path::new("../target.txt"));
    // A directory's link keeps that in a trailing `/`.
    assert_eq!(std::fs::read_link(share.join("dkeep")).unwrap(), std::path::Path::new("sub/"));
    for gone in ["lnk", "dlnk"] {
        assert!(std::fs::symlink_metadata(share.join(gone)).is_err(), "{gone} is still there");
    }
    assert_eq!(std::fs::read_to_string(share.join("target.txt")).unwrap(), "hello");
    assert_eq!(std::fs::read_to_string(share.join("sub/inner.txt")).unwrap(), "inner");
    assert!(std::fs::symlink_metadata(share.join("lnk2")).unwrap().file_type().is_file());
    for refused in ["bad1", "sub/bad2", "bad3", "bad4", "bad5"] {
        let m = std::fs::symlink_metadata(share.join(refused)).unwrap();
        assert!(m.file_type().is_file() && m.len() == 0, "{refused} became {m:?}");
    }
    assert_eq!(std::fs::read_to_string(dir.path().join("outside.txt")).unwrap(), "secret");
    let stray: Vec<_> = std::fs::read_dir(&share)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".duet-link"))
        .collect();
    assert!(stray.is_empty(), "temporary names left: {stray:?}");
}

/// Extended attributes through smbprotocol (testdata/smbprotocol_ea.py):
/// set, query all and by name, case-insensitive replace, delete by an
/// empty value, EAs on create, EaSize in FileEaInformation and a directory
/// listing, the enumeration flags, Duet's own `user.duet.` names refused
/// and never listed, bad names refused with STATUS_INVALID_EA_NAME, and the
/// EAs kept as `user.` xattrs on disk. Skipped where the temp directory's
/// file system has no user xattrs.
#[test]
fn extended_attributes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    if !has_user_xattrs(dir.path()) {
        return;
    }
    let (_srv, port) = duet(dir.path(), "--log-level=info");
    let share = dir.path().display().to_string();
    let text = smbprotocol("smbprotocol_ea.py", &[&port.to_string(), "data", "duet", "duetpass", &share]);
    assert_eq!(text.lines().filter(|l| l.starts_with("ok ")).count(), 12, "{text}");
}

/// Alternate data streams through smbprotocol's smbclient API
/// (testdata/smbprotocol_streams.py): `Zone.Identifier` and `AFP_AfpInfo`
/// written, read back (also under another case and as `::$DATA`), listed
/// (FileStreamInformation), kept apart from EAs, still there after the
/// file is renamed, one renamed, one cut short and one deleted with the file's own data
/// untouched, a 1 MiB stream written, read, listed and cut short (in a
/// sidecar file, `fs::spill`, which no client path reaches nor listing
/// shows), a resource fork that holds data kept through a delete and an
/// empty one deleted, and the file deleted with its streams, the sidecar too. On
/// disk: Samba's `user.DosStream.NAME:$DATA` xattrs. Skipped
/// where the temp directory's file system has no user xattrs.
#[test]
fn alternate_data_streams() {
    let dir = tempfile::tempdir().unwrap();
    if !has_user_xattrs(dir.path()) {
        return;
    }
    let (_srv, port) = duet(dir.path(), "--log-level=info");
    let share = dir.path().display().to_string();
    let text = smbprotocol("smbprotocol_streams.py", &[&port.to_string(), "data", "duet", "duetpass", &share]);
    for step in [
        "ok written",
        "ok read back",
        "ok listed",
        "ok EAs and streams apart",
        "ok streams_xattr layout",
        "ok renamed with its streams",
        "ok stream renamed",
        "ok end of file",
        "ok one stream deleted, the file untouched",
        "ok large stream",
        "ok sidecar unreachable",
        "ok resource fork kept while it holds data",
        "ok file and streams deleted",
    ] {
        assert!(text.lines().any(|l| l == step), "{step} missing:\n{text}");
    }
}

/// The AAPL create context macOS clients send on their first CREATE
/// (testdata/smbprotocol_aapl.py): a server query is answered with the
/// capabilities Duet has (UNIX_BASED, OSX_COPYFILE, NFS_ACE, and
/// READ_DIR_ATTR when asked), the volume's (FULL_SYNC on a Time Machine
/// share, nothing on a plain one) and the model string; a second query is
/// answered too; a malformed one is STATUS_INVALID_PARAMETER; a FLUSH on
/// the Time Machine share succeeds; listings of a connection that asked
/// for READ_DIR_ATTR carry the maximal access, resource fork size and
/// Finder info; security descriptors carry the uid, gid and mode as NFS
/// ACEs, and a mode ACE set is a chmod; a directory with a file open
/// below is renamed, the open following it. `--model` names the model.
#[test]
fn aapl_server_query() {
    let dir = tempfile::tempdir().unwrap();
    let (_srv, port) = duet(dir.path(), "--model=MacSamba");
    let text = smbprotocol("smbprotocol_aapl.py", &[&port.to_string(), "data", "duet", "duetpass", "0", "MacSamba"]);
    let (_tm, tm_port) = duet(dir.path(), "--time-machine=data");
    let tm = smbprotocol("smbprotocol_aapl.py", &[&tm_port.to_string(), "data", "duet", "duetpass", "1", "Duet"]);
    let steps = [
        "ok first query",
        "ok second query",
        "ok bad queries refused",
        "ok no query, no reply",
        "ok flush",
        "ok readdir_attr",
        "ok nfs aces",
        "ok posix rename",
    ];
    for step in steps {
        assert!(text.lines().any(|l| l == step), "{step} missing:\n{text}");
        assert!(tm.lines().any(|l| l == step), "time machine: {step} missing:\n{tm}");
    }
}

/// Security descriptors through smbprotocol (testdata/smbprotocol_acl.py),
/// with two users: a DACL set and read back, kept in `user.duet.NTACL`
/// (no EA), enforced for the second user (a denied open, MAXIMUM_ALLOWED,
/// a deny ACE), a partial set merged, hostile descriptors refused with
/// STATUS_INVALID_SECURITY_DESCR and nothing changed, the SACL and a
/// foreign owner refused, the SecD create context and inheritance from
/// the parent, and the descriptor kept through a rename. The second user
/// comes from a users file whose line gives it the SID the ACEs name.
/// Skipped where the temp directory's file system has no user xattrs.
#[test]
fn security_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    if !has_user_xattrs(dir.path()) {
        return;
    }
    let etc = tempfile::tempdir().unwrap();
    let users = etc.path().join("users");
    let bin = std::env::var("DUET_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_duet").to_string());
    let added = Command::new(&bin)
        .args(["user", "add", "bob", "--users", &users.display().to_string(), "--password", "bobpass"])
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let bob_sid = "S-1-5-21-7-8-9-1234";
    let line = std::fs::read_to_string(&users).unwrap();
    std::fs::write(&users, format!("{}:{bob_sid}\n", line.trim_end())).unwrap();
    let (_srv, port) = duet(dir.path(), &format!("--users={}", users.display()));
    let share = dir.path().display().to_string();
    let text = smbprotocol(
        "smbprotocol_acl.py",
        &[&port.to_string(), "data", "duet", "duetpass", "bob", "bobpass", &share, bob_sid],
    );
    for step in [
        "ok set and read back",
        "ok stored in user.duet.NTACL, no EA",
        "ok enforced for a second user",
        "ok deny ACE",
        "ok partial set merged",
        "ok hostile descriptors refused",
        "ok kept through a rename",
        "ok SecD on create",
        "ok inherited on create",
        "ok adding to a directory checked",
    ] {
        assert!(text.lines().any(|l| l == step), "{step} missing:\n{text}");
    }
}
