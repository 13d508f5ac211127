//! The `duet` binary as a user meets it: `duet user add`, a TOML
//! configuration file, guest shares, and the embedded default. Real
//! processes, real smbclient.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn duet() -> String {
    std::env::var("DUET_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_duet").to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "duet did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn serve(dir: &Path, args: &[&str], port: u16) -> Running {
    let child = Command::new(duet())
        .arg("serve")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("duet.log")).unwrap())
        .spawn()
        .unwrap();
    let r = Running(child);
    wait_port(port);
    r
}

fn smbclient(port: u16, share: &str, auth: &[&str], cmd: &str) -> (bool, String) {
    let out = Command::new("smbclient")
        .arg(format!("//127.0.0.1/{share}"))
        .args(["-p", &port.to_string(), "-m", "SMB3"])
        .args(auth)
        .args(["-c", cmd])
        .output()
        .expect("smbclient is installed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && !text.contains("NT_STATUS_"), text)
}

#[test]
fn users_file_and_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("data")).unwrap();
    std::fs::write(d.join("data/hello.txt"), "from the config share\n").unwrap();
    let st = Command::new(duet())
        .args(["user", "add", "alice", "--users", "users", "--password", "s3cret"])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(st.success());
    let users = std::fs::read_to_string(d.join("users")).unwrap();
    assert!(users.starts_with("alice:"), "{users}");
    assert!(!users.contains("s3cret"), "the password itself is never stored");
    let port = free_port();
    std::fs::write(
        d.join("duet.toml"),
        format!(
            "listen = [\"127.0.0.1:{port}\"]\nusers_file = \"users\"\n[[share]]\nname = \"team\"\npath = \"data\"\n"
        ),
    )
    .unwrap();
    let _srv = serve(d, &["--config", "duet.toml"], port);
    let got = d.join("got.txt");
    let (ok, out) = smbclient(port, "team", &["-U", "alice%s3cret"], &format!("get hello.txt {}", got.display()));
    assert!(ok, "{out}");
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "from the config share\n");
    let (ok, out) = smbclient(port, "team", &["-U", "alice%wrong"], "ls");
    assert!(!ok && out.contains("NT_STATUS_LOGON_FAILURE"), "{out}");
    let log = std::fs::read_to_string(d.join("duet.log")).unwrap();
    assert!(log.contains("logon failure"), "the failed attempt is logged: {log}");
}

#[test]
fn guests_only_where_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for s in ["pub", "priv"] {
        std::fs::create_dir(d.join(s)).unwrap();
        std::fs::write(d.join(s).join("f.txt"), s).unwrap();
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _srv = serve(
        d,
        &[
            "--listen",
            &listen,
            "--share",
            "pub=pub",
            "--share",
            "priv=priv",
            "--user",
            "bob:pw",
            "--guest-share",
            "pub",
        ],
        port,
    );
    // Anonymous and unknown users reach the guest share...
    let (ok, out) = smbclient(port, "pub", &["-N"], "ls");
    assert!(ok && out.contains("f.txt"), "{out}");
    let (ok, out) = smbclient(port, "pub", &["-U", "stranger%whatever"], "ls");
    assert!(ok && out.contains("f.txt"), "{out}");
    // ...and nothing else.
    let (ok, out) = smbclient(port, "priv", &["-N"], "ls");
    assert!(!ok && out.contains("NT_STATUS_ACCESS_DENIED"), "{out}");
    // A known user with a wrong password is never a guest.
    let (ok, out) = smbclient(port, "pub", &["-U", "bob%nope"], "ls");
    assert!(!ok && out.contains("NT_STATUS_LOGON_FAILURE"), "{out}");
    let (ok, out) = smbclient(port, "priv", &["-U", "bob%pw"], "ls");
    assert!(ok && out.contains("f.txt"), "{out}");
}

#[test]
fn embedded_default_prints_a_working_password() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _srv = serve(d, &["--listen", &listen], port);
    let log = std::fs::read_to_string(d.join("duet.log")).unwrap();
    let line = log.lines().find(|l| l.contains("password")).unwrap_or_else(|| panic!("no password printed: {log}"));
    let password = line.rsplit(' ').next().unwrap().trim();
    assert_eq!(password, std::fs::read_to_string(d.join("duet-data/password")).unwrap().trim());
    std::fs::write(d.join("duet-data/share/x.txt"), "x").unwrap();
    let (ok, out) = smbclient(port, "duet", &["-U", &format!("duet%{password}")], "ls");
    assert!(ok && out.contains("x.txt"), "{out}");
}

/// Runs `duet serve` expecting it to refuse to start: its exit status and
/// what it printed.
fn serve_fails(dir: &Path, args: &[&str]) -> String {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let share = format!("s={}", dir.join("share").display());
    let mut child = Command::new(duet())
        .args(["serve", "--listen", &listen, "--share", &share, "--user", "u:p"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn duet");
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(!status.success(), "duet started: {err}");
            return err;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("duet {args:?} did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A journal file that is not one, one too small, one of another node, one
/// `--journal-policy pmem` cannot map (no DAX), or one a running server holds:
/// a clear error at start, and the file left as it was.
#[test]
fn a_bad_journal_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("share")).unwrap();
    let bad = dir.path().join("garbage");
    let garbage: Vec<u8> = (0..(1u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&bad, &garbage).unwrap();
    let err = serve_fails(dir.path(), &["--journal", bad.to_str().unwrap()]);
    assert!(err.contains("garbage") && err.contains("not a journal"), "{err}");
    assert_eq!(std::fs::read(&bad).unwrap(), garbage, "the file was changed");

    let small = dir.path().join("small");
    let err = serve_fails(dir.path(), &["--journal", small.to_str().unwrap(), "--journal-size", "4K"]);
    assert!(err.contains("small") && err.contains("4096 bytes"), "{err}");
    assert!(!small.exists(), "a journal that could not be made is not left behind");

    // The pmem policy on a file system without DAX: MAP_SYNC is refused, for a new
    // journal (not left behind) and for an existing one (left as it was). (This
    // machine's file systems have no DAX; on one that has, this part shows nothing.)
    let pmem = dir.path().join("pmem");
    let err = serve_fails(dir.path(), &["--journal", pmem.to_str().unwrap(), "--journal-policy", "pmem"]);
    assert!(err.contains("pmem") && err.contains("not on a DAX file system: MAP_SYNC refused"), "{err}");
    assert!(!pmem.exists(), "a journal that could not be made is not left behind");
    let opts = nvram::Options::new(nvram::ClusterId(1), nvram::NodeId(1), nvram::Durability::GroupCommit);
    drop(nvram::Journal::create_file(&pmem, 1 << 20, opts).unwrap());
    let before = std::fs::read(&pmem).unwrap();
    let err = serve_fails(dir.path(), &["--journal", pmem.to_str().unwrap(), "--journal-policy", "pmem"]);
    assert!(err.contains("not on a DAX file system: MAP_SYNC refused"), "{err}");
    assert_eq!(std::fs::read(&pmem).unwrap(), before, "the file was changed");

    // A journal of another node of the pair (nvram's own format, node 2).
    let other = dir.path().join("other");
    let opts = nvram::Options::new(nvram::ClusterId(1), nvram::NodeId(2), nvram::Durability::None);
    drop(nvram::Journal::create_file(&other, 1 << 20, opts).unwrap());
    let before = std::fs::read(&other).unwrap();
    let err = serve_fails(dir.path(), &["--journal", other.to_str().unwrap()]);
    assert!(err.contains("belongs to node 2, not 1"), "{err}");
    assert_eq!(std::fs::read(&other).unwrap(), before, "the file was changed");

    // One a running server holds.
    let held = dir.path().join("held");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let share = format!("s={}", dir.path().join("share").display());
    let _running = serve(
        dir.path(),
        &["--listen", &listen, "--share", &share, "--user", "u:p", "--journal", held.to_str().unwrap()],
        port,
    );
    let err = serve_fails(dir.path(), &["--journal", held.to_str().unwrap()]);
    assert!(err.contains("in use by another server"), "{err}");
    assert_eq!(std::fs::metadata(&held).unwrap().permissions().mode() & 0o777, 0o600, "a new journal is 0600");
}

/// SIGTERM while the journal is being restored (the start paused by a
/// test failpoint) is kept and honoured once the server serves: it stops as
/// an elective reboot (exit 0, state saved), where the signal's default
/// action used to kill it mid-restore.
#[test]
fn sigterm_during_the_restore_is_an_elective_reboot() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("share")).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let share = format!("s={}", dir.path().join("share").display());
    let log = dir.path().join("duet.log");
    let mut child = Command::new(duet())
        .args(["serve", "--listen", &listen, "--share", &share, "--user", "u:p", "--journal", "nvram"])
        .current_dir(dir.path())
        .env("DUET_FAILPOINT", "restore:3000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("failpoint: pausing") {
        assert!(t0.elapsed() < Duration::from_secs(30), "{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on our own child, not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status:?}\n{text}");
    assert!(text.contains("elective reboot: state saved"), "{text}");
}
