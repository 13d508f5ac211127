//! The crash-and-restore harness in CI size: `scripts/crash.sh --kills 20
//! --clients 4 --failpoints` against the duet under test (DUET_BIN): half
//! the restarts are armed to die by themselves at a consistency point. Four clients
//! (`testdata/crash_client.py`) write, create, rename, delete, lock and
//! set-info through durable opens while the server is killed 20 times
//! (SIGKILL, every fifth SIGTERM) and restarted; every acknowledged
//! operation must be there once (no duplicate: an exclusive CREATE resent
//! after a kill that had made its file without its point-3 record finds
//! the file removed by the restore), and no client may see an error.
//!
//! It runs only when the duet under test has a journal (`duet serve
//! --help` lists `--journal`); without one every restart loses the
//! clients' opens, which the harness reports as client errors (try
//! `scripts/crash.sh --no-journal`).

mod common;

use std::process::Command;

fn has_journal() -> bool {
    let out = Command::new(common::duet_bin()).args(["serve", "--help"]).output().expect("run duet serve --help");
    String::from_utf8_lossy(&out.stdout).contains("--journal")
}

#[test]
fn twenty_kills_four_clients() {
    if common::Kind::from_env() != common::Kind::Duet {
        eprintln!("crash harness runs against duet only");
        return;
    }
    if !has_journal() {
        eprintln!("skipped: {} has no --journal", common::duet_bin().display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(common::repo_root().join("scripts/crash.sh"))
        .args(["--kills", "20", "--clients", "4", "--seed", "13", "--failpoints"])
        .arg("--out")
        .arg(dir.path())
        .env("DUET_BIN", common::duet_bin())
        .output()
        .expect("run scripts/crash.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or("");
    let ctx = || format!("crash.sh ({}): {last}\n--- its stderr ---\n{stderr}{}", out.status, evidence(dir.path()));
    assert!(last.starts_with("kills 20, ") && last.ends_with("lost 0, duplicated 0, client errors 0"), "{}", ctx());
}

/// What a failed run leaves to go on, since its folder goes with the test:
/// the server log's warnings and restore lines, and each client's log.
fn evidence(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let log = std::fs::read_to_string(dir.join("duet.log")).unwrap_or_default();
    out.push_str("\n--- duet.log: warnings, restores, failpoints ---\n");
    for l in log.lines().filter(|l| {
        l.contains(" WARN ")
            || l.contains(" ERROR ")
            || l.contains("restor")
            || l.contains("renamed")
            || l.contains("CREATE")
            || l.contains("wait in the recorder")
    }) {
        out.push_str(l);
        out.push('\n');
    }
    for n in 1..=4 {
        let text = std::fs::read_to_string(dir.join(format!("clients/log-{n}.txt"))).unwrap_or_default();
        out.push_str(&format!("--- clients/log-{n}.txt ---\n{text}"));
    }
    out
}
