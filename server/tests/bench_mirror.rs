//! A smoke check of `scripts/bench.sh --mirror` (issue 14, the mirror's
//! cost): a 4 MiB put, one second of each smbtorture bench and 300 durable
//! 4 KiB WRITEs on node A of a pair whose partner is up, against the same
//! binary alone. It checks that the script succeeds, that the put,
//! path-contention and WRITE rows hold numbers in every column, and that
//! A's mirror at B was current at the end (the run measured the mirror on);
//! it asserts nothing about the ratios (those are the benchmark's, see the
//! README's "Pair (first step)").

mod common;

use std::process::Command;

/// The row of a Markdown table line starting `| NAME |`: its cells.
fn row<'a>(table: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let line = table.lines().find(|l| l.starts_with(&format!("| {name} |")))?;
    Some(line.trim_matches('|').split('|').map(str::trim).collect())
}

#[test]
fn mirror_mode_runs_and_reports_on_and_off() {
    if common::Kind::from_env() != common::Kind::Duet {
        eprintln!("the mirror benchmark runs against duet only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(common::repo_root().join("scripts/bench.sh"))
        .args(["--mirror", "--size", "4", "--rounds", "1", "--modes", "plain", "--kinds", "put", "--time", "1"])
        .arg("--out")
        .arg(dir.path())
        .env("DUET_BIN", common::duet_bin())
        .output()
        .expect("run scripts/bench.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = || format!("bench.sh --mirror ({}):\n{stdout}\n--- its stderr ---\n{stderr}", out.status);
    assert!(out.status.success(), "{}", ctx());
    assert!(stdout.contains("| metric | mirror on | mirror off | on/off |"), "{}", ctx());
    for name in [
        "put MB/s, plain",
        "path-contention ops/s (open+close)",
        "4 KiB durable WRITE, one at a time, ms (lower is better)",
    ] {
        let cells = row(&stdout, name).unwrap_or_else(|| panic!("no {name} row: {}", ctx()));
        for cell in &cells[1..4] {
            assert!(cell.parse::<f64>().is_ok_and(|v| v > 0.0), "{name}: {cell:?} is not a number: {}", ctx());
        }
    }
    assert!(stdout.contains("Node A's mirror at the end: current, resyncs 1 "), "{}", ctx());
    // --kinds put: no get row.
    assert!(row(&stdout, "get MB/s, plain").is_none(), "{}", ctx());
}
