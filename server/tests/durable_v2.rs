//! Durable handles version 2 and persistent handles through an independent
//! client, Python's smbprotocol (testdata/smbprotocol_durable_v2.py):
//! DH2Q granted with the default timeout, DH2C after a dropped TCP
//! connection, a wrong CreateGuid refused with STATUS_OBJECT_NAME_NOT_FOUND,
//! an AppInstanceId takeover by another client (and AppInstanceVersion), and
//! on a share given with
//! `--ca` a persistent handle without any caching that outlives its
//! connection and comes back only with the persistent flag. The server runs
//! in check mode (DUET_CHECK_MODEL): the state model must agree with the
//! runtime objects and with its own journaled deltas throughout.

use std::net::TcpListener;
use std::path::Path;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn duet(dir: &Path, extra: &[&str]) -> (Running, u16) {
    let share = dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bin = std::env::var("DUET_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_duet").to_string());
    let child = Command::new(bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--share", &format!("data={}", share.display()), "--user", "duet:duetpass"])
        .args(["--state-dir", &dir.join("state").display().to_string(), "--log-level", "warn"])
        .args(extra)
        .env("DUET_CHECK_MODEL", dir.join("check"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "duet did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Running(child), port)
}

fn run_script(mode: &str, port: u16) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/smbprotocol_durable_v2.py");
    let out = Command::new("python3")
        .args([script, mode, &port.to_string(), "data", "duet", "duetpass"])
        .output()
        .expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "smbprotocol {mode} run failed:\n{text}");
    text
}

/// The check-mode report: its counters, once it has compared something.
fn check_report(dir: &Path) -> String {
    let path = dir.join("check");
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().any(|l| l.starts_with("projections ") && l != "projections 0") {
            return text;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no model check report:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_steps(out: &str, steps: &[&str]) {
    for s in steps {
        assert!(out.lines().any(|l| l == format!("ok {s}")), "step {s:?} missing:\n{out}");
    }
}

#[test]
fn durable_v2_reconnect_wrong_create_guid_and_app_instance_takeover() {
    let dir = tempfile::tempdir().unwrap();
    let (_srv, port) = duet(dir.path(), &[]);
    let out = run_script("durable", port);
    assert_steps(
        &out,
        &["dh2q granted", "wrong create guid refused", "dh2c reconnected", "app instance takeover", "app instance version"],
    );
    let report = check_report(dir.path());
    assert!(report.lines().any(|l| l == "mismatches 0"), "{report}");
}

#[test]
fn persistent_handle_on_a_continuously_available_share() {
    let dir = tempfile::tempdir().unwrap();
    let (_srv, port) = duet(dir.path(), &["--ca", "data"]);
    let out = run_script("persistent", port);
    assert_steps(&out, &["persistent granted", "persistent reconnected", "persistent found by its CreateGuid"]);
    let report = check_report(dir.path());
    assert!(report.lines().any(|l| l == "mismatches 0"), "{report}");
}

/// The durable kind of every open and retained handle that `duet status
/// --json` shows, by path.
fn durable_kinds(sock: &Path, table: &str) -> Vec<(String, String)> {
    let bin = std::env::var("DUET_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_duet").to_string());
    let out = Command::new(bin).args(["status", "--json", "--socket", sock.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "duet status: {}", String::from_utf8_lossy(&out.stderr));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut kinds: Vec<(String, String)> = st[table]
        .as_array()
        .unwrap_or_else(|| panic!("no {table}:\n{st:#}"))
        .iter()
        .map(|r| (r["path"].as_str().unwrap_or("").to_string(), r["durable"].as_str().unwrap_or("").to_string()))
        .collect();
    kinds.sort();
    kinds
}

/// `duet status` names version 2 and persistent handles as such, connected
/// and retained after their client's connection is gone.
#[test]
fn status_shows_v2_and_persistent_handles() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("admin.sock");
    let (_srv, port) = duet(dir.path(), &["--ca", "data", "--admin-socket", sock.to_str().unwrap()]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/smbprotocol_durable_v2.py");
    let mut py = Running(
        Command::new("python3")
            .args([script, "hold", &port.to_string(), "data", "duet", "duetpass"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(py.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ok held");
    let want = vec![
        ("held-persistent.txt".to_string(), "persistent".to_string()),
        ("held-v2.txt".to_string(), "v2".to_string()),
    ];
    assert_eq!(durable_kinds(&sock, "opens"), want);
    drop(py);
    let t = Instant::now();
    loop {
        let retained = durable_kinds(&sock, "retained");
        if retained == want {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "retained handles: {retained:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
