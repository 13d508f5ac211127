//! The restart-stall benchmark in CI size: `scripts/bench-stall.sh --kills 5
//! --clients 2` against the duet under test (DUET_BIN), with the
//! `bench_client` example built beside this test (cargo builds a package's
//! examples with its tests). Two clients hold persistent handles on a
//! continuously available share and write in a loop while the server is
//! killed with SIGKILL five times and started again at once; each reconnects
//! (new session with PreviousSessionId, DH2C) and resends its unanswered
//! WRITE with the replay flag. It checks that the script succeeds (no client
//! saw an error, every acknowledged block reads back, every kill was
//! measured) and that it printed the numbers; it asserts nothing about how
//! long a stall took (that is the benchmark's, see the README).

mod common;

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/bench_client`, beside this test's own
/// `target/<profile>/deps/stall-HASH`.
fn bench_client() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>");
    profile_dir.join("examples").join("bench_client")
}

#[test]
fn five_kills_two_clients() {
    if common::Kind::from_env() != common::Kind::Duet {
        eprintln!("the stall benchmark runs against duet only");
        return;
    }
    let client = bench_client();
    assert!(
        client.exists(),
        "{} is missing: build it with `cargo build -p server --example bench_client` (cargo test and nextest \
         build a package's examples with its tests)",
        client.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(common::repo_root().join("scripts/bench-stall.sh"))
        .args(["--kills", "5", "--clients", "2", "--gap", "0.1:0.3", "--seed", "13"])
        .arg("--out")
        .arg(dir.path())
        .env("DUET_BIN", common::duet_bin())
        .env("BENCH_CLIENT", &client)
        .output()
        .expect("run scripts/bench-stall.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(dir.path().join("duet.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
    let ctx = || {
        format!(
            "bench-stall.sh ({}):\n{stdout}\n--- its stderr ---\n{stderr}\n--- duet.log, last lines ---\n{}",
            out.status,
            tail.join("\n")
        )
    };
    assert!(out.status.success(), "{}", ctx());
    assert!(
        stdout.lines().any(|l| l.starts_with("kills 5, clients 2, samples 10, ") && l.ends_with(", errors 0")),
        "{}",
        ctx()
    );
    for what in ["stall (SIGKILL", "beyond the client's reconnect delay", "server exec to listening"] {
        let line = stdout.lines().find(|l| l.starts_with(what)).unwrap_or_else(|| panic!("no {what} line: {}", ctx()));
        assert!(
            line.contains("p50 ") && line.contains("p99 ") && line.contains("max ") && !line.contains("NaN"),
            "{}",
            ctx()
        );
    }
    // One line per kill and client.
    let samples = std::fs::read_to_string(dir.path().join("samples.tsv")).expect("samples.tsv");
    assert_eq!(samples.lines().count(), 1 + 10, "{samples}");
}
