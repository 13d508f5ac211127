//! Model checking: every interleaving of bounded runs of two real `Node`s
//! (`takeover::model`). Each test explores one family of faults with the operator's
//! takeover and giveback commands; the families run in parallel. The bounds and the state
//! counts are in the README. `model_large` (ignored) combines every fault kind; run it with
//! `cargo test --release -p takeover --test model -- --ignored`.

use std::time::Duration;

use takeover::config::Mutation;
use takeover::model::{explore, explore_with, replay_with, Bounds, Report};
use takeover::sim::config;
use takeover::Config;

/// No faults of any kind, horizon `ms`, and the given budgets.
fn bounds(ms: u64, f: impl FnOnce(&mut Bounds)) -> Bounds {
    let mut b = Bounds {
        horizon: Duration::from_millis(ms),
        losses: 0,
        dups: 0,
        delays: 0,
        crashes: 0,
        freezes: 0,
        partitions: 0,
        stalls: 0,
        faults: 0,
        commands: 0,
        ..Bounds::small()
    };
    f(&mut b);
    b
}

fn check(name: &str, b: &Bounds) -> Report {
    let r = check_allow_truncation(name, b);
    assert!(!r.truncated, "{name}: state limit reached");
    r
}

fn check_allow_truncation(name: &str, b: &Bounds) -> Report {
    check_configs(name, b, [config(0), config(1)])
}

fn check_configs(name: &str, b: &Bounds, configs: [Config; 2]) -> Report {
    let t = std::time::Instant::now();
    let r = explore_with(b, configs.clone());
    eprintln!(
        "{name}: {} states, {} transitions, depth {}, {} liveness checks, {} goals completed, truncated {}, {:?}",
        r.states, r.transitions, r.max_depth, r.liveness_checks, r.goals_completed, r.truncated, t.elapsed()
    );
    if let Some(f) = r.failures.first() {
        let p = replay_with(b, configs, &f.trace);
        let events: Vec<_> = (0..2).map(|i| p.events(i).to_vec()).collect();
        panic!("{name}: {}\ntrace {:?}\nevents {events:?}", f.what, f.trace);
    }
    r
}

/// Horizon: the smaller one in debug builds (the CI run), the larger with `--release`.
fn h(debug_ms: u64, release_ms: u64) -> u64 {
    if cfg!(debug_assertions) {
        debug_ms
    } else {
        release_ms
    }
}

#[test]
fn model_commands_without_faults() {
    check("commands", &bounds(1500, |b| b.commands = 2));
}

#[test]
fn model_lost_and_duplicated_frames() {
    check("loss+dup", &bounds(h(900, 1200), |b| {
        b.losses = 1;
        b.dups = 1;
        b.commands = 2;
    }));
}

#[test]
fn model_duplicated_frames() {
    check("dup", &bounds(h(1200, 1500), |b| {
        b.dups = 1;
        b.commands = 2;
    }));
}

#[test]
fn model_late_frames() {
    check("late", &bounds(h(900, 1200), |b| {
        b.delays = 1;
        b.commands = 2;
    }));
}

#[test]
fn model_crash_and_restart() {
    check("crash", &bounds(1200, |b| {
        b.crashes = 1;
        b.commands = h(1, 2) as u8;
    }));
}

#[test]
fn model_freeze_and_partition() {
    check("freeze+partition", &bounds(h(1200, 1500), |b| {
        b.freezes = 1;
        b.partitions = 1;
    }));
}

#[test]
fn model_storage_stall_and_fault() {
    check("stall+fault", &bounds(h(1000, 1200), |b| {
        b.stalls = 1;
        b.faults = 1;
    }));
}

#[test]
fn model_two_crashes() {
    check("two crashes", &bounds(h(1200, 1800), |b| {
        b.crashes = 2;
        b.commands = 1;
    }));
}

/// A node killed while its shared storage hangs: its claim or heartbeat bump may land
/// later, after the partner acted on its death, or never (the model tries each moment).
#[test]
fn model_write_landing_after_its_node_was_killed() {
    check("stall+crash, late writes", &bounds(h(1000, 1200), |b| {
        b.stalls = 1;
        b.crashes = 1;
        b.commands = 1;
    }));
}

/// Clocks that drift apart: one node's monotonic clock 5 % fast, the other's 5 % slow
/// (far beyond a real clock's 100 ppm, to show the margin), each way round, with a freeze
/// and a partition, and with a crash and the operator's commands.
#[test]
fn model_clock_drift() {
    for ppm in [50_000, -50_000] {
        check(&format!("drift {ppm} ppm, freeze+partition"), &bounds(h(1200, 1500), |b| {
            b.freezes = 1;
            b.partitions = 1;
            b.drift_ppm = ppm;
        }));
        check(&format!("drift {ppm} ppm, crash"), &bounds(h(1000, 1200), |b| {
            b.crashes = 1;
            b.commands = 1;
            b.drift_ppm = ppm;
        }));
    }
}

/// With `auto_giveback`, a node that comes back asks for its home set as soon as it is
/// healthy: crashes and restarts, a freeze, with the operator's commands.
#[test]
fn model_auto_giveback() {
    let configs = [0, 1].map(|i| Config { auto_giveback: true, ..config(i) });
    check_configs("auto giveback, crash", &bounds(h(1000, 1200), |b| {
        b.crashes = 1;
        b.commands = 1;
    }), configs.clone());
    check_configs("auto giveback, freeze", &bounds(h(1000, 1200), |b| b.freezes = 1), configs);
}

/// The checker earns its keep: with the fence or the epoch check switched off in both
/// nodes ([`Mutation`]), it finds two servers for one set.
#[test]
fn model_finds_split_brain_without_the_fence_or_the_epoch_check() {
    for (mutation, name) in [(Mutation::NoFence, "no fence"), (Mutation::NoEpochCheck, "no epoch check")] {
        let configs = [0, 1].map(|i| Config { mutation, ..config(i) });
        let b = bounds(1200, |b| {
            b.freezes = 1;
            b.partitions = 1;
        });
        let r = explore_with(&b, configs);
        eprintln!("{name}: {} states, {} failures", r.states, r.failures.len());
        let split = r.failures.iter().find(|f| f.what.contains("TwoServers"));
        assert!(split.is_some(), "{name}: no split brain found in {} states: {:?}", r.states, r.failures.first());
    }
}

/// Two fault families at once, each pair of them (each stops at 3 million states).
#[test]
#[ignore = "large bounds: cargo test --release -p takeover --test model -- --ignored"]
fn model_large_pairs() {
    type Family = (&'static str, fn(&mut Bounds));
    let families: [Family; 6] = [
        ("loss", |b| b.losses = 1),
        ("late", |b| b.delays = 1),
        ("crash", |b| b.crashes = 1),
        ("freeze", |b| b.freezes = 1),
        ("partition", |b| b.partitions = 1),
        ("stall+fault", |b| {
            b.stalls = 1;
            b.faults = 1
        }),
    ];
    for (i, (n1, f1)) in families.iter().enumerate() {
        for (n2, f2) in &families[i + 1..] {
            let b = bounds(1200, |b| {
                f1(b);
                f2(b);
                b.commands = 1;
                b.max_states = 3_000_000;
            });
            check_allow_truncation(&format!("{n1}+{n2}"), &b);
        }
    }
}

/// Every fault kind at once (may stop at the state limit; it reports how far it got).
#[test]
#[ignore = "large bounds: cargo test --release -p takeover --test model -- --ignored"]
fn model_large_everything() {
    let b = Bounds { horizon: Duration::from_millis(1200), max_states: 15_000_000, ..Bounds::small() };
    let r = explore(&b);
    eprintln!(
        "everything: {} states, {} transitions, depth {}, {} liveness checks, {} goals completed, truncated {}",
        r.states, r.transitions, r.max_depth, r.liveness_checks, r.goals_completed, r.truncated
    );
    assert!(r.failures.is_empty(), "{:?}", r.failures.first());
}
