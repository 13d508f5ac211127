//! smbtorture, duet vs Samba's smbd: runs `scripts/torture.sh --fast` (the
//! CI subset: connect read rw create dir compound lock durable-open
//! durable-v2-open durable-v2-delay) and requires duet to
//! pass at least as many tests as smbd on every suite, or, where it does not,
//! every test it misses to be a known gap named in
//! scripts/torture-known-gaps.txt.
//!
//! `torture_streams_duet_at_least_smbd` does the same for `smb2.streams`
//! and the other tests that open streams (`smb2.fileid`,
//! `smb2.ioctl-on-stream`, `smb2.getinfo.normalized`,
//! `smb2.compound.compound-padding`), against an smbd
//! whose share keeps streams as Duet does (`vfs objects = streams_xattr`).
//!
//! `torture_acls_duet_at_least_smbd` does the same for `smb2.acls`,
//! `smb2.sdread` and the other tests that set descriptors
//! (`smb2.create.nulldacl`, `aclfile`, `acldir`,
//! `smb2.delete-on-close-perms`), against an smbd whose share stores
//! security descriptors as Duet does (`vfs objects = acl_xattr`).
//!
//! Runs in nextest's `heavy` test group (one at a time). DUET_BIN selects the
//! duet binary (scripts/test.sh points it at the release build);
//! DUET_TEST_SERVER=smbd puts a second smbd in duet's place.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn torture_fast_duet_at_least_smbd() {
    duet_at_least_smbd(&["--fast"]);
}

#[test]
fn torture_streams_duet_at_least_smbd() {
    duet_at_least_smbd(&[
        "--smbd-option",
        "vfs objects = streams_xattr",
        "smb2.streams",
        // The other tests that open streams and pass on both servers.
        "smb2.fileid",
        "smb2.ioctl-on-stream",
        "smb2.getinfo.normalized",
        "smb2.compound.compound-padding",
    ]);
}

#[test]
fn torture_acls_duet_at_least_smbd() {
    duet_at_least_smbd(&[
        "--smbd-option",
        "vfs objects = acl_xattr",
        "smb2.acls",
        "smb2.sdread",
        // The other tests that set descriptors and pass on both servers.
        "smb2.create.nulldacl",
        "smb2.create.aclfile",
        "smb2.create.acldir",
        "smb2.delete-on-close-perms",
    ]);
}

/// Runs `scripts/torture.sh ARGS` and checks its table (see the module doc).
fn duet_at_least_smbd(args: &[&str]) {
    let root = common::repo_root();
    let out_dir = tempfile::Builder::new().prefix("duet-torture-").tempdir().unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(root.join("scripts/torture.sh"))
        .args(args)
        .arg("--out")
        .arg(out_dir.path())
        .env("DUET_BIN", common::duet_bin())
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if std::env::var_os("REF_SMBD").is_none() {
        cmd.env("REF_SMBD", common::ref_smbd());
    }
    if std::env::var_os("TORTURE_SCORE").is_none() {
        cmd.env("TORTURE_SCORE", common::ref_smbd().with_file_name("torture-score"));
    }
    let mut child = cmd.spawn().expect("run scripts/torture.sh");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out_h = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_h = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());

    // 10 suites x 2 servers x at most 120 s each would be 40 min; in
    // practice about 1.5 min per server. Stop politely (SIGTERM lets the script stop its
    // servers) after 25 min.
    let deadline = Instant::now() + Duration::from_secs(25 * 60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            std::thread::sleep(Duration::from_secs(10));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = out_h.join().unwrap();
    let stderr = err_h.join().unwrap();
    // The table and the per-suite progress, for the test log.
    println!("{stdout}");
    eprintln!("{stderr}");
    let status = status.unwrap_or_else(|| panic!("scripts/torture.sh {args:?} ran past 25 minutes"));
    assert!(stdout.contains("| **all** |"), "torture.sh printed no table (status {status})");
    if status.success() {
        return;
    }
    // Short somewhere: every test that passes on smbd and not on duet must
    // be a known gap, listed with its reason in scripts/torture-known-gaps.txt.
    let gaps = std::fs::read_to_string(root.join("scripts/torture-known-gaps.txt")).unwrap();
    let known: Vec<&str> =
        gaps.lines().filter(|l| !l.trim_start().starts_with('#')).filter_map(|l| l.split_whitespace().next()).collect();
    let mut shortfalls = 0;
    for line in stdout.lines() {
        let Some((suite, tests)) = line.split_once(": pass on smbd, not on duet: ") else {
            continue;
        };
        for t in tests.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            shortfalls += 1;
            let name = format!("{suite}.{t}");
            assert!(
                known.contains(&name.as_str()),
                "{name} passes on smbd but not on duet, and is not a known gap:\n{stdout}"
            );
        }
    }
    assert!(shortfalls > 0, "torture.sh failed (exit {status}) without naming a shortfall:\n{stdout}\n{stderr}");
}
