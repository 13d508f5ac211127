//! A smoke check of `scripts/bench.sh --kinds stall` (issue 14, the
//! client-visible stall per kind of move), which is also the CI run of
//! `scripts/failover.sh`: one kill, one freeze and one elective round (an
//! elective takeover and a giveback) on a loopback pair. It checks that the
//! script succeeds (failover.sh found nothing lost, duplicated or failed),
//! that the stall table has a row per kind with a number in each column and
//! one round each, and failover.sh's line with its counts; it asserts
//! nothing about the targets (those are the benchmark's, see the README's
//! "Takeover, giveback and the operator commands (third step)").

mod common;

use std::process::Command;

/// The row of a Markdown table line starting `| NAME`: its cells.
fn row<'a>(table: &'a str, name: &str) -> Option<Vec<&'a str>> {
    let line = table.lines().find(|l| l.starts_with(&format!("| {name}")))?;
    Some(line.trim_matches('|').split('|').map(str::trim).collect())
}

#[test]
fn stall_kind_runs_failover_rounds_and_tables_each_kind() {
    if common::Kind::from_env() != common::Kind::Duet {
        eprintln!("the stall benchmark runs against duet only");
        return;
    }
    let out = Command::new("bash")
        .arg(common::repo_root().join("scripts/bench.sh"))
        .args(["--kinds", "stall", "--stall-rounds", "1"])
        .env("DUET_BIN", common::duet_bin())
        .output()
        .expect("run scripts/bench.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = || format!("bench.sh --kinds stall ({}):\n{stdout}\n--- its stderr ---\n{stderr}", out.status);
    assert!(out.status.success(), "{}", ctx());
    assert!(stdout.contains("| kind | p50 ms | p99 ms | max ms | rounds | target (issue 14) | met |"), "{}", ctx());
    for name in ["elective takeover", "giveback", "kill", "freeze"] {
        let cells = row(&stdout, name).unwrap_or_else(|| panic!("no {name} row: {}", ctx()));
        for cell in &cells[1..4] {
            assert!(cell.parse::<u64>().is_ok_and(|v| v > 0), "{name}: {cell:?} is not a stall: {}", ctx());
        }
        assert_eq!(cells[4], "1", "{name}: rounds: {}", ctx());
    }
    assert!(
        stdout.contains("failover.sh: kills 1, freezes 1, elective 1, givebacks 1, requests 600, lost 0, duplicated 0, client errors 0"),
        "{}",
        ctx()
    );
    // No transfer ran: no duet-vs-smbd table.
    assert!(!stdout.contains("put MB/s"), "{}", ctx());
}
