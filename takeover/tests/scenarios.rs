//! Scenario tests: the simulated pair (`takeover::sim::Pair`) through every path of the
//! failover design, with virtual time.

use std::time::{Duration, Instant};

use takeover::codec::Message;
use takeover::sim::{config, Fate, Pair, Violation};
use takeover::*;

const A: usize = 0;
const B: usize = 1;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn set(i: usize) -> SetId {
    Pair::set(i)
}

/// A pair that has booted and serves one set on each node.
fn steady() -> Pair {
    let mut p = Pair::new(Instant::now());
    p.run_for(ms(350));
    assert_eq!(p.server_of(set(A)), Some(A));
    assert_eq!(p.server_of(set(B)), Some(B));
    p
}

fn assert_safe(p: &Pair) {
    assert!(p.violations.is_empty(), "violations: {:?}", p.violations);
}

fn has(p: &Pair, i: usize, f: impl Fn(&Event) -> bool) -> bool {
    p.events(i).iter().any(f)
}

#[test]
fn boot_claims_home_sets_at_epoch_one() {
    let p = steady();
    assert_eq!(p.newest(set(A)), Some((Epoch(1), NodeId(1))));
    assert_eq!(p.newest(set(B)), Some((Epoch(1), NodeId(2))));
    assert!(has(&p, A, |e| *e == Event::Booted));
    assert_safe(&p);
}

#[test]
fn crash_is_taken_over_non_electively_with_epoch_plus_one() {
    let mut p = steady();
    p.kill(B);
    p.run_for(ms(1000));
    assert_eq!(p.server_of(set(B)), Some(A));
    assert_eq!(p.newest(set(B)), Some((Epoch(2), NodeId(1))));
    assert!(p.hosts[A].restores.contains(&(set(B), Flag::NonElectiveTakeover, Source::Mirror)));
    assert!(has(&p, A, |e| *e == Event::PartnerDead));
    assert_safe(&p);
}

#[test]
fn elective_takeover_then_giveback() {
    let mut p = steady();
    assert!(p.command(A, Command::Takeover));
    p.run_for(ms(300));
    assert_eq!(p.server_of(set(B)), Some(A));
    assert_eq!(p.newest(set(B)), Some((Epoch(2), NodeId(1))));
    assert!(p.hosts[A].restores.contains(&(set(B), Flag::ElectiveTakeover, Source::Mirror)));
    assert_eq!(p.hosts[B].journal_flag, Flag::ElectiveTakeover);
    assert_eq!(p.node(B).unwrap().phase(set(B)), Some(Phase::Standby));
    // B stays in standby: nobody asked for giveback.
    p.run_for(ms(2000));
    assert_eq!(p.server_of(set(B)), Some(A));
    assert!(p.command(B, Command::Giveback));
    p.run_for(ms(300));
    assert_eq!(p.server_of(set(B)), Some(B));
    assert_eq!(p.newest(set(B)), Some((Epoch(3), NodeId(2))));
    assert_safe(&p);
}
