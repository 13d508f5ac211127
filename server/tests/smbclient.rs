//! End-to-end tests: Samba's `smbclient` against a real server process on a
//! loopback port (duet, or smbd with `DUET_TEST_SERVER=smbd`; see
//! `common/mod.rs`). Every test checks real outcomes: file contents and
//! hashes, listings, files on the server's disk, NT_STATUS strings.
//!
//! Most tests run in three modes: plain, signing required and encryption
//! required (server and client both insist).

mod common;

use common::{ls_names, sha256, write_random_file, Mode, Server, Smbclient, SHARE};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// Generate one test per mode from a function taking a `Mode`.
macro_rules! per_mode {
    ($f:ident) => {
        mod $f {
            #[test]
            fn plain() {
                super::$f(super::Mode::Plain)
            }
            #[test]
            fn signing() {
                super::$f(super::Mode::Signing)
            }
            #[test]
            fn encrypt() {
                super::$f(super::Mode::Encrypt)
            }
        }
    };
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------
// Share listing

fn list_shares(mode: Mode) {
    let srv = Server::start(mode);
    let mut c = Smbclient::new(srv.port);
    c.arg("-L").arg("//127.0.0.1").user(common::USER, common::PASSWORD);
    c.args(mode.client_args());
    let out = c.run();
    assert!(out.success(), "smbclient -L failed: {out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let has = |name: &str, ty: &str| {
        lines.iter().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 2 && f[0] == name && f[1] == ty
        })
    };
    assert!(has(SHARE, "Disk"), "share `{SHARE}` (Disk) not listed: {out}");
    assert!(has("IPC$", "IPC"), "IPC$ not listed: {out}");
}
per_mode!(list_shares);

// ---------------------------------------------------------------------------
// Bulk data: 100 MiB up and down, checked by SHA-256 on all three copies.

const BIG: u64 = 100 << 20;

fn put_get_100mib(mode: Mode) {
    let srv = Server::start(mode);
    let local = srv.client_dir().join("orig.bin");
    write_random_file(&local, BIG, 0xD0E7_0000 + mode as u64);
    let want = sha256(&local);

    let out = srv
        .smbclient()
        .cmd("put orig.bin big.bin; get big.bin back.bin")
        .timeout(Duration::from_secs(600))
        .run();
    out.assert_ok();
    assert!(out.all().contains("putting file orig.bin"), "no put reported: {out}");

    let on_server = srv.share_dir().join("big.bin");
    assert_eq!(
        std::fs::metadata(&on_server).map(|m| m.len()).ok(),
        Some(BIG),
        "server-side file has the wrong size"
    );
    assert_eq!(sha256(&on_server), want, "server-side copy differs from the original");
    let back = srv.client_dir().join("back.bin");
    assert_eq!(std::fs::metadata(&back).unwrap().len(), BIG, "downloaded copy has the wrong size");
    assert_eq!(sha256(&back), want, "downloaded copy differs from the original");

    // A file written on the server side is read back intact too.
    let local2 = srv.share_dir().join("serverside.bin");
    write_random_file(&local2, 3 << 20 | 12345, 42); // not a multiple of any I/O size
    let out = srv.run("get serverside.bin ss.bin");
    out.assert_ok();
    assert_eq!(sha256(&srv.client_dir().join("ss.bin")), sha256(&local2));
}
per_mode!(put_get_100mib);

/// The server's `duet status --json` counters of READ answers sent from
/// their files (`sendfile`): (answers, bytes).
fn sendfile_counters(srv: &Server) -> (u64, u64) {
    let sock = srv.root().join("duet-data/admin.sock");
    let out = std::process::Command::new(common::duet_bin())
        .args(["status", "--json", "--socket", sock.to_str().unwrap()])
        .output()
        .expect("run duet status");
    assert!(out.status.success(), "duet status --json: {}", String::from_utf8_lossy(&out.stderr));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let s = &st["server"]["sendfile"];
    (s["answers"].as_u64().expect("sendfile.answers"), s["bytes"].as_u64().expect("sendfile.bytes"))
}

/// A large get, checked by SHA-256. On a plain session the READ answers'
/// data goes from the file to the socket with `sendfile` (the status
/// counters say so, which they cannot by accident: nothing else counts
/// there); signed or encrypted, the signature or the cipher covers the
/// data and it is copied as before, so the counters do not move. The
/// file's size is no multiple of any I/O size: smbclient asks for the last
/// 12345 bytes alone (4.17 does), a READ too small to be worth `sendfile`.
fn get_sent_from_the_file(mode: Mode) {
    const SIZE: u64 = (48 << 20) + 12345;
    let srv = Server::start(mode);
    let on_server = srv.share_dir().join("large.bin");
    write_random_file(&on_server, SIZE, 0x5E4D_F11E + mode as u64);
    let want = sha256(&on_server);
    let duet = srv.kind == common::Kind::Duet;
    let before = if duet { sendfile_counters(&srv) } else { (0, 0) };
    srv.smbclient().cmd("get large.bin back.bin").timeout(Duration::from_secs(300)).run().assert_ok();
    let back = srv.client_dir().join("back.bin");
    assert_eq!(std::fs::metadata(&back).unwrap().len(), SIZE, "downloaded copy has the wrong size");
    assert_eq!(sha256(&back), want, "downloaded copy differs from the original");
    if !duet {
        return;
    }
    let (answers, bytes) = sendfile_counters(&srv);
    let (answers, bytes) = (answers - before.0, bytes - before.1);
    match mode {
        Mode::Plain => {
            assert!(answers > 0, "no READ answer was sent from the file");
            assert!((SIZE - 64 * 1024..=SIZE).contains(&bytes), "{bytes} of {SIZE} bytes went out with sendfile");
        }
        Mode::Signing | Mode::Encrypt => {
            assert_eq!((answers, bytes), (0, 0), "a {mode:?} answer went out with sendfile");
        }
    }
}
per_mode!(get_sent_from_the_file);

/// `server.recvfile` of `duet status --json`: WRITEs whose data went from
/// the socket into the file, and their bytes (spliced, and read with the
/// WRITE's head).
fn recvfile_counters(srv: &Server) -> (u64, u64) {
    let sock = srv.root().join("duet-data/admin.sock");
    let out = std::process::Command::new(common::duet_bin())
        .args(["status", "--json", "--socket", sock.to_str().unwrap()])
        .output()
        .expect("run duet status");
    assert!(out.status.success(), "duet status --json: {}", String::from_utf8_lossy(&out.stderr));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let r = &st["server"]["recvfile"];
    let bytes = ["bytes", "copied_bytes", "buffered_bytes"].iter().map(|k| r[k].as_u64().expect("recvfile bytes")).sum();
    (r["writes"].as_u64().expect("recvfile.writes"), bytes)
}

/// A large put, checked by SHA-256. On a plain session the WRITEs' data
/// goes from the socket into the file with `splice` (the status counters
/// say so); signed or encrypted, the signature or the cipher covers the
/// data, which is read into memory as before, and the counters do not
/// move. The size is no multiple of any I/O size: the last WRITE is short.
fn put_moved_from_the_socket(mode: Mode) {
    const SIZE: u64 = (40 << 20) + 54321;
    let srv = Server::start(mode);
    let local = srv.client_dir().join("large.bin");
    write_random_file(&local, SIZE, 0x2EC7_F11E + mode as u64);
    let want = sha256(&local);
    let duet = srv.kind == common::Kind::Duet;
    let before = if duet { recvfile_counters(&srv) } else { (0, 0) };
    srv.smbclient().cmd("put large.bin up.bin").timeout(Duration::from_secs(300)).run().assert_ok();
    let on_server = srv.share_dir().join("up.bin");
    assert_eq!(std::fs::metadata(&on_server).unwrap().len(), SIZE, "uploaded copy has the wrong size");
    assert_eq!(sha256(&on_server), want, "uploaded copy differs from the original");
    if !duet {
        return;
    }
    let (writes, bytes) = recvfile_counters(&srv);
    let (writes, bytes) = (writes - before.0, bytes - before.1);
    match mode {
        Mode::Plain => {
            assert!(writes > 0, "no WRITE's data went from the socket into the file");
            assert!((SIZE - 64 * 1024..=SIZE).contains(&bytes), "{bytes} of {SIZE} bytes went into the file so");
        }
        Mode::Signing | Mode::Encrypt => {
            assert_eq!((writes, bytes), (0, 0), "a {mode:?} WRITE's data was left in the socket");
        }
    }
}
per_mode!(put_moved_from_the_socket);

// ---------------------------------------------------------------------------
// Namespace operations

fn dir_ops(mode: Mode) {
    let srv = Server::start(mode);
    let share = srv.share_dir();
    std::fs::write(srv.client_dir().join("hello.txt"), b"hello, duet\n").unwrap();

    // mkdir, nested mkdir, put into it.
    srv.run("mkdir d1; mkdir d1\\sub; put hello.txt d1\\sub\\a.txt").assert_ok();
    assert!(share.join("d1/sub").is_dir(), "mkdir did not create d1/sub");
    assert_eq!(read(&share.join("d1/sub/a.txt")), b"hello, duet\n");

    // Listing shows the file with its size.
    let out = srv.run("ls d1\\sub\\*");
    out.assert_ok();
    assert_eq!(ls_names(&out.stdout), vec!["a.txt".to_string()], "{out}");
    assert!(out.stdout.contains(" 12 "), "size 12 not shown: {out}");

    // Creating an existing directory fails.
    let out = srv.run("mkdir d1");
    assert!(out.all().contains("NT_STATUS_OBJECT_NAME_COLLISION"), "mkdir of existing dir: {out}");

    // rename a file, within and across directories.
    srv.run("rename d1\\sub\\a.txt d1\\sub\\b.txt").assert_ok();
    assert!(!share.join("d1/sub/a.txt").exists());
    assert_eq!(read(&share.join("d1/sub/b.txt")), b"hello, duet\n");
    srv.run("rename d1\\sub\\b.txt d1\\c.txt").assert_ok();
    assert_eq!(read(&share.join("d1/c.txt")), b"hello, duet\n");

    // rename onto an existing file fails without -f and leaves both intact.
    srv.run("put hello.txt d1\\other.txt").assert_ok();
    let out = srv.run("rename d1\\c.txt d1\\other.txt");
    assert!(out.all().contains("NT_STATUS_OBJECT_NAME_COLLISION"), "rename onto existing file: {out}");
    assert!(share.join("d1/c.txt").exists() && share.join("d1/other.txt").exists());

    // rename a directory.
    srv.run("rename d1\\sub d1\\sub2").assert_ok();
    assert!(share.join("d1/sub2").is_dir() && !share.join("d1/sub").exists());

    // rmdir of a non-empty directory fails.
    let out = srv.run("rmdir d1");
    assert!(out.all().contains("NT_STATUS_DIRECTORY_NOT_EMPTY"), "rmdir of non-empty dir: {out}");
    assert!(share.join("d1").is_dir());

    // delete files; deleting a missing file reports it.
    srv.run("del d1\\c.txt; del d1\\other.txt").assert_ok();
    assert!(!share.join("d1/c.txt").exists() && !share.join("d1/other.txt").exists());
    let out = srv.run("del d1\\nothere.txt");
    assert!(out.all().contains("NT_STATUS_NO_SUCH_FILE"), "del of missing file: {out}");

    // rmdir empty directories.
    srv.run("rmdir d1\\sub2; rmdir d1").assert_ok();
    assert!(!share.join("d1").exists(), "rmdir did not remove d1");
    let out = srv.run("ls");
    out.assert_ok();
    assert!(ls_names(&out.stdout).is_empty(), "share not empty after cleanup: {out}");

    // get of a missing file fails and creates no useful local file.
    let out = srv.run("get nothere.txt nothere.txt");
    assert!(out.all().contains("NT_STATUS_OBJECT_NAME_NOT_FOUND"), "get of missing file: {out}");
}
per_mode!(dir_ops);

// ---------------------------------------------------------------------------
// Case-insensitive names

fn case_insensitive(mode: Mode) {
    let srv = Server::start(mode);
    std::fs::write(srv.client_dir().join("FOO.txt"), b"upper case name\n").unwrap();
    srv.run("put FOO.txt FOO.txt").assert_ok();
    srv.run("get foo.TXT lower.txt").assert_ok();
    assert_eq!(read(&srv.client_dir().join("lower.txt")), b"upper case name\n");

    // The name keeps its case on disk; no second file appeared.
    let names: Vec<String> = std::fs::read_dir(srv.share_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["FOO.txt".to_string()]);

    // Listing by another case finds it under its real name.
    let out = srv.run("ls fOo.TxT");
    out.assert_ok();
    assert_eq!(ls_names(&out.stdout), vec!["FOO.txt".to_string()], "{out}");

    // Also for directories and paths through them; overwrite through another case.
    std::fs::write(srv.client_dir().join("v2.txt"), b"second version\n").unwrap();
    srv.run("mkdir MixedDir; put v2.txt mixeddir\\Inner.TXT; put v2.txt foo.txt").assert_ok();
    assert_eq!(read(&srv.share_dir().join("MixedDir/Inner.TXT")), b"second version\n");
    assert_eq!(read(&srv.share_dir().join("FOO.txt")), b"second version\n");
    assert!(!srv.share_dir().join("foo.txt").exists(), "put through another case made a second file");
    srv.run("get MIXEDDIR\\inner.txt inner.txt").assert_ok();
    assert_eq!(read(&srv.client_dir().join("inner.txt")), b"second version\n");
}
per_mode!(case_insensitive);

// ---------------------------------------------------------------------------
// Big directories and wildcards

const MANY: usize = 10_000;

fn listing_10k(mode: Mode) {
    let srv = Server::start(mode);
    let dir = srv.share_dir().join("many");
    std::fs::create_dir(&dir).unwrap();
    let mut want = BTreeSet::new();
    for i in 0..MANY {
        let name = format!("file{i:05}.dat");
        std::fs::write(dir.join(&name), i.to_string()).unwrap();
        want.insert(name);
    }
    let out = srv.smbclient().cmd("ls many\\*").timeout(Duration::from_secs(300)).run();
    out.assert_ok();
    let got: BTreeSet<String> = ls_names(&out.stdout).into_iter().collect();
    assert_eq!(got.len(), MANY, "ls listed {} of {MANY} entries", got.len());
    assert_eq!(got, want, "listing differs from the files on disk");

    // Wildcards over the big directory.
    let out = srv.run("ls many\\file0999*");
    out.assert_ok();
    let got: BTreeSet<String> = ls_names(&out.stdout).into_iter().collect();
    let expect: BTreeSet<String> = (9990..10000).map(|i| format!("file{i:05}.dat")).collect();
    assert_eq!(got, expect, "{out}");
    let out = srv.run("ls many\\file?????.dat");
    out.assert_ok();
    assert_eq!(ls_names(&out.stdout).len(), MANY, "`?` wildcard listed the wrong count");
}

mod listing_10k {
    #[test]
    fn plain() {
        super::listing_10k(super::Mode::Plain)
    }
    #[test]
    fn encrypt() {
        super::listing_10k(super::Mode::Encrypt)
    }
}

#[test]
fn wildcards_and_mask() {
    let srv = Server::start(Mode::Plain);
    let dir = srv.share_dir().join("w");
    std::fs::create_dir_all(dir.join("deep")).unwrap();
    for i in 0..40 {
        std::fs::write(dir.join(format!("f{i:02}.dat")), format!("content {i}\n")).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), b"notes\n").unwrap();
    std::fs::write(dir.join("deep/f05.dat"), b"deep five\n").unwrap();
    std::fs::write(dir.join("deep/g05.dat"), b"deep g\n").unwrap();

    let names = |cmd: &str| -> BTreeSet<String> {
        let out = srv.run(cmd);
        out.assert_ok();
        ls_names(&out.stdout).into_iter().collect()
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    assert_eq!(names("ls w\\f1*"), (10..20).map(|i| format!("f{i:02}.dat")).collect());
    assert_eq!(names("ls w\\f?5.dat"), set(&["f05.dat", "f15.dat", "f25.dat", "f35.dat"]));
    assert_eq!(names("ls w\\*.txt"), set(&["notes.txt"]));
    assert_eq!(names("ls w\\NOTES.*"), set(&["notes.txt"]));
    assert_eq!(names("ls w\\*").len(), 42); // 40 + notes.txt + deep

    // No match is an error, not an empty success.
    let out = srv.run("ls w\\*.none");
    assert!(out.all().contains("NT_STATUS_NO_SUCH_FILE"), "no-match listing: {out}");

    // mget with a wildcard fetches exactly the matching files, intact.
    let out = srv.run("prompt off; cd w; mget f3*");
    out.assert_ok();
    for i in 30..40 {
        let p = srv.client_dir().join(format!("f{i:02}.dat"));
        assert_eq!(read(&p), format!("content {i}\n").as_bytes());
    }
    assert!(!srv.client_dir().join("f29.dat").exists() && !srv.client_dir().join("notes.txt").exists());

    // recurse + mask: a recursive mget of w/ that only takes names matching f05*.
    let out = srv.run("prompt off; recurse on; mask f05*; mget w");
    out.assert_ok();
    assert_eq!(read(&srv.client_dir().join("w/f05.dat")), b"content 5\n");
    assert_eq!(read(&srv.client_dir().join("w/deep/f05.dat")), b"deep five\n");
    assert!(!srv.client_dir().join("w/f06.dat").exists(), "mask let f06.dat through");
    assert!(!srv.client_dir().join("w/deep/g05.dat").exists(), "mask let deep/g05.dat through");
}

// ---------------------------------------------------------------------------
// Authentication

/// Words that count as "the server logged a failed logon" (case-insensitive).
/// duet should log a line naming the user and one of these.
const AUTH_FAIL_MARKERS: &[&str] = &[
    "logon_failure",
    "logon failure",
    "logon failed",
    "login failed",
    "wrong_password",
    "wrong password",
    "bad password",
    "no_such_user",
    "no such user",
    "unknown user",
    "authentication fail",
    "auth fail",
];

fn logged_failure(tail: &str, user: &str) -> bool {
    tail.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.contains(user) && AUTH_FAIL_MARKERS.iter().any(|m| l.contains(m))
    })
}

fn wrong_password(mode: Mode) {
    let srv = Server::start(mode);
    std::fs::write(srv.share_dir().join("private.txt"), b"only for duet\n").unwrap();

    for (user, pass) in [("duet", "not-the-password"), ("mallory", "duetpass"), ("duet", "")] {
        let from = srv.log().len();
        let out = srv
            .smbclient()
            .user(user, pass)
            .cmd("get private.txt stolen.txt")
            .run();
        assert!(!out.success(), "logon as {user}%{pass} succeeded: {out}");
        assert!(
            out.all().contains("NT_STATUS_LOGON_FAILURE"),
            "logon as {user}%{pass} not refused with NT_STATUS_LOGON_FAILURE: {out}"
        );
        assert!(!srv.client_dir().join("stolen.txt").exists(), "file read without logon");
        let tail = srv.wait_log(from, Duration::from_secs(5), |t| logged_failure(t, user));
        assert!(
            logged_failure(&tail, user),
            "server did not log the failed logon of {user:?} (a line naming the user and one of \
             {AUTH_FAIL_MARKERS:?}); log since the attempt:\n{tail}"
        );
    }

    // The right password still works afterwards.
    srv.run("get private.txt ok.txt").assert_ok();
    assert_eq!(read(&srv.client_dir().join("ok.txt")), b"only for duet\n");
}
per_mode!(wrong_password);

/// A server that requires encryption refuses a client that cannot encrypt
/// (SMB 2.1 has no encryption). An SMB 3 client is always told to encrypt by
/// the session flags, so it cannot opt out.
#[test]
fn encryption_required_refuses_smb21_client() {
    let srv = Server::start(Mode::Encrypt);
    std::fs::write(srv.share_dir().join("x.txt"), b"secret data\n").unwrap();
    let mut c = Smbclient::new(srv.port);
    c.target(&srv.unc())
        .user(common::USER, common::PASSWORD)
        .cwd(&srv.client_dir())
        .protocol(Some("SMB2"))
        .cmd("get x.txt x.txt");
    let out = c.run();
    assert!(!out.success(), "SMB 2.1 client was served by an encrypt-required server: {out}");
    assert!(out.all().contains("NT_STATUS_"), "no NT_STATUS error reported: {out}");
    assert!(!srv.client_dir().join("x.txt").exists(), "file read without encryption");
}

/// A server that requires signing serves a client that only offers it, and
/// everything still works (the server turns signing on).
#[test]
fn signing_required_with_default_client() {
    let srv = Server::start(Mode::Signing);
    std::fs::write(srv.share_dir().join("x.txt"), b"signed data\n").unwrap();
    let mut c = Smbclient::new(srv.port);
    c.target(&srv.unc())
        .user(common::USER, common::PASSWORD)
        .cwd(&srv.client_dir())
        .cmd("get x.txt x.txt");
    c.run().assert_ok();
    assert_eq!(read(&srv.client_dir().join("x.txt")), b"signed data\n");
}

// ---------------------------------------------------------------------------
// Confinement: nothing outside the share can be reached.

const SENTINEL: &str = "DUET-SENTINEL-7f3c9a-outside-the-share";

/// Plant sentinel files outside the share: ROOT/secret, ROOT/outdir/inner.
fn plant_sentinels(srv: &Server) {
    std::fs::write(srv.root().join("secret"), SENTINEL).unwrap();
    std::fs::create_dir(srv.root().join("outdir")).unwrap();
    std::fs::write(srv.root().join("outdir/inner"), SENTINEL).unwrap();
    std::fs::write(srv.root().join("outdir/secret"), SENTINEL).unwrap();
}

/// No file in the client dir (recursively) holds the sentinel or /etc/passwd.
fn assert_nothing_leaked(srv: &Server, transcript: &str) {
    assert!(!transcript.contains(SENTINEL), "sentinel appeared in smbclient output:\n{transcript}");
    let mut stack = vec![srv.client_dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned();
            assert!(!text.contains(SENTINEL), "{} holds the sentinel from outside the share", p.display());
            assert!(!text.contains("root:x:0:0"), "{} holds /etc/passwd", p.display());
        }
    }
}

#[test]
fn dotdot_escape_refused() {
    let srv = Server::start(Mode::Plain);
    plant_sentinels(&srv);
    std::fs::write(srv.share_dir().join("inside.txt"), b"inside\n").unwrap();

    let cmds = [
        "get ../../etc/passwd o1",
        "get ../../../../../../../../etc/passwd o2",
        "get ../secret o3",
        "get \\..\\secret o4",
        "get ..\\outdir\\inner o5",
        "cd ..; get secret o6",
        "cd ..\\..; get secret o7",
        "cd \\..\\outdir; get inner o8",
        "get \\..\\..\\etc\\passwd o9",
        "get /../secret o10",
        "get .\\..\\secret o11",
        "get inside.txt\\..\\..\\secret o12",
    ];
    let mut transcript = String::new();
    for c in cmds {
        let out = srv.run(c);
        transcript.push_str(&out.all());
    }
    // Listing after `cd ..` stays inside the share (or fails): never shows the
    // sentinel's neighbours.
    let out = srv.run("cd ..; ls; cd ..\\..; ls; ls ..\\*; ls \\..\\outdir\\*");
    transcript.push_str(&out.all());
    let names = ls_names(&out.stdout);
    for n in ["secret", "outdir", "share", "client"] {
        assert!(!names.contains(&n.to_string()), "listing beyond the root shows {n:?}: {out}");
    }
    assert_nothing_leaked(&srv, &transcript);

    // Writing outside is refused as well.
    std::fs::write(srv.client_dir().join("evil.txt"), b"evil\n").unwrap();
    let out = srv.run("put evil.txt ..\\evil.txt; put evil.txt \\..\\outdir\\evil.txt; mkdir ..\\evildir");
    let _ = out;
    assert!(!srv.root().join("evil.txt").exists(), "put wrote outside the share");
    assert!(!srv.root().join("outdir/evil.txt").exists(), "put wrote outside the share");
    assert!(!srv.root().join("evildir").exists(), "mkdir created a directory outside the share");
    assert_eq!(std::fs::read_to_string(srv.root().join("secret")).unwrap(), SENTINEL);

    // The share itself still works.
    srv.run("get inside.txt inside.txt").assert_ok();
    assert_eq!(read(&srv.client_dir().join("inside.txt")), b"inside\n");
}

#[test]
fn symlink_escape_refused() {
    use std::os::unix::fs::symlink;
    let srv = Server::start(Mode::Plain);
    plant_sentinels(&srv);
    let share = srv.share_dir();
    symlink("../secret", share.join("rel_link")).unwrap();
    symlink(srv.root().join("secret"), share.join("abs_link")).unwrap();
    symlink(srv.root().join("outdir"), share.join("dir_link")).unwrap();
    symlink("../outdir", share.join("rel_dir_link")).unwrap();
    symlink("/etc/passwd", share.join("passwd_link")).unwrap();
    symlink("/etc", share.join("etc_link")).unwrap();
    std::fs::create_dir(share.join("sub")).unwrap();
    symlink("../../secret", share.join("sub/up_link")).unwrap();

    let cmds = [
        "get rel_link o1",
        "get abs_link o2",
        "get dir_link\\inner o3",
        "get rel_dir_link\\secret o4",
        "get passwd_link o5",
        "get etc_link\\passwd o6",
        "get sub\\up_link o7",
        "cd dir_link; get inner o8",
        "cd etc_link; get passwd o9",
        "prompt off; mget *link*",
        "prompt off; recurse on; mget dir_link",
    ];
    let mut transcript = String::new();
    for c in cmds {
        let out = srv.run(c);
        transcript.push_str(&out.all());
    }
    // Listing through a directory symlink must not show what is outside.
    let out = srv.run("ls dir_link\\*; ls rel_dir_link\\*; ls etc_link\\*");
    transcript.push_str(&out.all());
    let names = ls_names(&out.stdout);
    for n in ["inner", "passwd", "shadow", "hostname"] {
        assert!(!names.contains(&n.to_string()), "listing through a symlink shows {n:?}: {out}");
    }
    assert_nothing_leaked(&srv, &transcript);

    // Writing through a symlink must not modify the outside file.
    std::fs::write(srv.client_dir().join("evil.txt"), b"evil\n").unwrap();
    let _ = srv.run("put evil.txt rel_link; put evil.txt dir_link\\inner; put evil.txt dir_link\\new.txt");
    assert_eq!(std::fs::read_to_string(srv.root().join("secret")).unwrap(), SENTINEL);
    assert_eq!(std::fs::read_to_string(srv.root().join("outdir/inner")).unwrap(), SENTINEL);
    assert!(!srv.root().join("outdir/new.txt").exists(), "put created a file through a dir symlink");
}

/// `..` in raw SMB2 CREATE paths (smbclient cleans its paths before sending,
/// so this sends them unmodified with the Python smbprotocol library).
#[test]
fn raw_dotdot_paths_refused() {
    let srv = Server::start(Mode::Plain);
    plant_sentinels(&srv);
    let script = common::repo_root().join("testdata/raw_open.py");
    let argv: Vec<String> = [
        script.to_string_lossy().into_owned(),
        "127.0.0.1".into(),
        srv.port.to_string(),
        SHARE.into(),
        common::USER.into(),
        common::PASSWORD.into(),
        "..\\secret".into(),
        "..\\outdir\\inner".into(),
        "sub\\..\\..\\secret".into(),
        "..\\..\\..\\..\\..\\..\\..\\etc\\passwd".into(),
        ".\\..\\secret".into(),
        "..".into(),
        "inside.txt".into(), // control: must open and read
    ]
    .into();
    std::fs::create_dir(srv.share_dir().join("sub")).unwrap();
    std::fs::write(srv.share_dir().join("inside.txt"), b"inside-control\n").unwrap();
    let out = common::run_with_timeout("python3", &argv, None, Duration::from_secs(120));
    assert!(out.success(), "raw_open.py failed: {out}");
    // Each path prints `PATH -> STATUS [bytes]`; nothing may be read.
    assert!(!out.all().contains(SENTINEL), "sentinel read through a raw .. path: {out}");
    assert!(!out.all().contains("root:x:0:0"), "/etc/passwd read through a raw .. path: {out}");
    let results: Vec<&str> = out.stdout.lines().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(results.len(), 7, "{out}");
    for line in &results[..6] {
        assert!(!line.contains("-> OK"), "raw .. path opened: {line}\n{out}");
    }
    assert!(results[6].contains("-> OK") && results[6].contains("inside-control"), "control open failed: {out}");
}
