//! Scenario tests: the simulated pair (`takeover::sim::Pair`) through every path of the
//! failover design, with virtual time.

use std::time::{Duration, Instant};

use takeover::codec::Message;
use takeover::sim::{config, Fate, Pair};
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
    steady_with([config(0), config(1)])
}

fn steady_with(configs: [Config; 2]) -> Pair {
    let mut p = Pair::with_configs(Instant::now(), configs);
    p.run_for(ms(350));
    assert_eq!(p.server_of(set(A)), Some(A));
    assert_eq!(p.server_of(set(B)), Some(B));
    p
}

#[track_caller]
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
    assert!(p.hosts[A].restores.contains(&(set(A), Flag::CleanShutdown, Source::Own)));
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
fn takeover_waits_for_the_detection_timeout_and_the_dead_nodes_lease() {
    let mut p = steady();
    let t0 = p.now;
    p.kill(B);
    while p.server_of(set(B)).is_none() {
        p.run_for(ms(10));
    }
    let took = p.now - t0;
    let c = config(0);
    assert!(took >= c.detection_timeout() + c.lease, "took over after {took:?}");
    assert!(took <= c.detection_timeout() + c.lease + c.heartbeat_interval * 2, "took over after {took:?}");
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

#[test]
fn elective_handover_from_the_giving_side_and_giveback_from_the_holder() {
    let mut p = steady();
    assert!(p.command(B, Command::HandOver));
    p.run_for(ms(300));
    assert_eq!(p.server_of(set(B)), Some(A));
    assert!(has(&p, B, |e| matches!(e, Event::HandedOver { .. })));
    assert!(p.command(A, Command::Giveback));
    p.run_for(ms(300));
    assert_eq!(p.server_of(set(B)), Some(B));
    assert_safe(&p);
}

#[test]
fn fault_takeover_when_the_partner_can_serve_the_set() {
    let mut p = steady();
    p.fault(B, FaultKind::DiskErrors);
    p.run_for(ms(300));
    assert_eq!(p.server_of(set(B)), Some(A));
    assert!(p.hosts[A].restores.contains(&(set(B), Flag::ElectiveTakeover, Source::Mirror)));
    assert_safe(&p);
}

#[test]
fn fault_takeover_refused_when_the_partner_lacks_a_path() {
    let mut ca = config(0);
    ca.partner_needs = SetNeeds { paths: vec!["/srv/b".into()], bytes: 10 };
    ca.resources = Resources { paths: vec!["/srv/a".into()], free_bytes: 100 };
    let mut p = steady_with([ca, config(1)]);
    p.fault(B, FaultKind::JournalFailure);
    p.run_for(ms(500));
    assert_eq!(p.server_of(set(B)), Some(B), "the faulty node keeps serving");
    assert!(has(&p, B, |e| *e == Event::TakeoverDenied { set: set(B), reason: DenyReason::MissingPath }));
    assert!(has(&p, A, |e| matches!(e, Event::DeniedTakeover { reason: DenyReason::MissingPath, .. })));
    assert_safe(&p);
}

#[test]
fn fault_takeover_refused_for_capacity_and_operator_takeover_too() {
    let mut ca = config(0);
    ca.partner_needs = SetNeeds { paths: vec![], bytes: 1000 };
    ca.resources = Resources { paths: vec![], free_bytes: 10 };
    let mut p = steady_with([ca, config(1)]);
    p.fault(B, FaultKind::ClientNetworkLost);
    p.run_for(ms(300));
    assert!(has(&p, B, |e| *e == Event::TakeoverDenied { set: set(B), reason: DenyReason::NoCapacity }));
    assert!(!p.command(A, Command::Takeover));
    p.run_for(ms(300));
    assert_eq!(p.server_of(set(B)), Some(B));
    assert_safe(&p);
}

#[test]
fn partition_alone_is_reported_never_acted_on() {
    let mut p = steady();
    p.partition(true);
    p.run_for(ms(3000));
    assert_eq!(p.server_of(set(A)), Some(A));
    assert_eq!(p.server_of(set(B)), Some(B));
    assert!(has(&p, A, |e| *e == Event::ChannelSilent(Channel::Interconnect)));
    assert!(!has(&p, A, |e| *e == Event::PartnerDead));
    p.partition(false);
    p.run_for(ms(300));
    assert!(has(&p, A, |e| *e == Event::ChannelRestored(Channel::Interconnect)));
    assert_safe(&p);
}

#[test]
fn storage_stall_alone_is_not_death_and_the_stalled_node_hands_over() {
    let mut p = steady();
    p.stall_storage(B, true);
    p.run_for(ms(250));
    assert!(!p.serving(B, set(B)), "no lease without storage");
    p.run_for(ms(1000));
    assert!(has(&p, A, |e| *e == Event::ChannelSilent(Channel::Storage)));
    assert!(!has(&p, A, |e| *e == Event::PartnerDead));
    assert!(has(&p, B, |e| *e == Event::Fault(FaultKind::StorageStalled)));
    assert_eq!(p.server_of(set(B)), Some(A), "the healthy node serves the stalled node's set");
    assert_eq!(p.server_of(set(A)), Some(A));
    p.stall_storage(B, false);
    p.run_for(ms(500));
    assert!(!p.serving(B, set(B)));
    assert_safe(&p);
}

#[test]
fn frozen_node_is_taken_over_and_steps_down_on_resume() {
    let mut p = steady();
    p.freeze(B);
    p.run_for(ms(900));
    assert_eq!(p.server_of(set(B)), Some(A));
    assert!(!p.node(B).unwrap().may_serve(set(B), p.now), "the frozen node's lease ran out");
    p.resume(B);
    p.run_for(ms(50));
    assert!(!p.serving(B, set(B)));
    assert!(has(&p, B, |e| matches!(e, Event::SteppedDown { newer: Epoch(2), .. })));
    assert_eq!(p.node(B).unwrap().phase(set(B)), Some(Phase::Standby));
    p.run_for(ms(2000));
    assert_eq!(p.server_of(set(B)), Some(A), "stays down until giveback");
    assert_safe(&p);
}

#[test]
fn short_freeze_is_survived_without_takeover() {
    let mut p = steady();
    p.freeze(B);
    p.run_for(ms(150));
    p.resume(B);
    p.run_for(ms(300));
    assert_eq!(p.server_of(set(B)), Some(B));
    assert_eq!(p.newest(set(B)), Some((Epoch(1), NodeId(2))));
    assert!(has(&p, B, |e| matches!(e, Event::Resumed { .. })));
    assert_safe(&p);
}

#[test]
fn restarted_node_waits_in_standby_and_hears_stay_down() {
    let mut p = steady();
    p.kill(B);
    p.run_for(ms(1000));
    p.restart(B);
    p.run_for(ms(1000));
    let b = p.node(B).unwrap();
    assert_eq!(b.phase(set(B)), Some(Phase::Standby));
    assert_eq!(p.server_of(set(B)), Some(A));
    assert_eq!(p.server_of(set(A)), Some(A));
    assert!(p.command(B, Command::Giveback));
    p.run_for(ms(500));
    assert_eq!(p.server_of(set(B)), Some(B));
    assert_eq!(p.newest(set(B)), Some((Epoch(3), NodeId(2))));
    assert_safe(&p);
}

#[test]
fn auto_giveback_brings_the_set_home() {
    let mut cb = config(1);
    cb.auto_giveback = true;
    let mut p = steady_with([config(0), cb]);
    p.kill(B);
    p.run_for(ms(1000));
    assert_eq!(p.server_of(set(B)), Some(A));
    p.restart(B);
    p.run_for(ms(1000));
    assert_eq!(p.server_of(set(B)), Some(B));
    assert!(p.hosts[B].restores.contains(&(set(B), Flag::ElectiveTakeover, Source::Mirror)));
    assert_safe(&p);
}

#[test]
fn double_failure_first_to_boot_serves_both_then_gives_back() {
    let mut p = steady();
    p.kill(A);
    p.kill(B);
    p.run_for(ms(500));
    p.restart(A);
    p.run_for(ms(1200));
    assert_eq!(p.server_of(set(A)), Some(A));
    assert_eq!(p.server_of(set(B)), Some(A));
    assert!(p.hosts[A].restores.contains(&(set(A), Flag::NonElectiveReboot, Source::Own)));
    assert!(p.hosts[A].restores.contains(&(set(B), Flag::NonElectiveTakeover, Source::Mirror)));
    p.restart(B);
    p.run_for(ms(500));
    assert_eq!(p.node(B).unwrap().phase(set(B)), Some(Phase::Standby));
    assert!(p.command(A, Command::Giveback));
    p.run_for(ms(500));
    assert_eq!(p.server_of(set(B)), Some(B));
    assert_safe(&p);
}

#[test]
fn crash_during_handover_is_taken_back() {
    // B releases its set, but A dies before claiming it: B takes it back.
    let mut p = steady();
    p.link.intercept = Some(|from, m| {
        if from == 1 && matches!(m, Message::ShutdownDone { .. }) {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    assert!(p.command(A, Command::Takeover));
    p.run_for(ms(20));
    p.kill(A);
    p.run_for(ms(1500));
    assert_eq!(p.server_of(set(B)), Some(B));
    assert_safe(&p);
}

#[test]
fn lost_shutdown_done_is_recovered_by_resending() {
    let mut p = steady();
    p.link.intercept = Some(|from, m| {
        use std::sync::atomic::{AtomicU32, Ordering};
        static DROPPED: AtomicU32 = AtomicU32::new(0);
        // Drop the first two.
        if from == 1 && matches!(m, Message::ShutdownDone { .. }) && DROPPED.fetch_add(1, Ordering::Relaxed) < 2 {
            return Fate::Drop;
        }
        Fate::Deliver
    });
    assert!(p.command(A, Command::Takeover));
    p.run_for(ms(600));
    assert_eq!(p.server_of(set(B)), Some(A));
    assert_safe(&p);
}

#[test]
fn lossy_jittery_duplicating_link_still_hands_over_and_back() {
    for seed in 1..=20u64 {
        let mut p = steady();
        p.seed(seed);
        p.link.loss_percent = 20;
        p.link.dup_percent = 20;
        p.link.jitter = ms(150);
        p.unserved_slack = ms(1000);
        assert!(p.command(A, Command::Takeover), "seed {seed}");
        p.run_for(ms(1500));
        assert_eq!(p.server_of(set(B)), Some(A), "seed {seed}");
        assert!(p.command(B, Command::Giveback), "seed {seed}");
        p.run_for(ms(1500));
        assert_eq!(p.server_of(set(B)), Some(B), "seed {seed}");
        assert_safe(&p);
    }
}

#[test]
fn late_stay_down_from_an_older_epoch_is_ignored() {
    let mut p = steady();
    assert!(p.command(A, Command::Takeover));
    p.run_for(ms(300));
    // Stay-down for epoch 2 held back, delivered after the giveback to epoch 3.
    p.link.intercept = Some(|from, m| if from == 0 && matches!(m, Message::StayDown { .. }) { Fate::Delay(Duration::from_millis(800)) } else { Fate::Deliver });
    p.run_for(ms(150));
    p.link.intercept = None;
    assert!(p.command(B, Command::Giveback));
    p.run_for(ms(1500));
    assert_eq!(p.server_of(set(B)), Some(B));
    assert_safe(&p);
}

#[test]
fn identity_mismatches_refuse_to_join() {
    let now = Instant::now();
    let shared = SharedConfig { cluster: sim::CLUSTER, nodes: sim::NODES };
    let boot = BootInfo { shared, recorded: None, flag: Flag::CleanShutdown };
    let mut c = config(0);
    c.cluster = ClusterId(99);
    assert!(matches!(Node::new(c, boot, now), Err(JoinError::ClusterMismatch { .. })));
    let mut c = config(0);
    c.me = NodeId(7);
    assert_eq!(Node::new(c, boot, now).unwrap_err(), JoinError::UnknownNode { node: NodeId(7) });
    let recorded = Some(Identity { cluster: sim::CLUSTER, node: NodeId(2) });
    let err = Node::new(config(0), BootInfo { recorded, ..boot }, now).unwrap_err();
    assert!(matches!(err, JoinError::IdentityChanged { .. }));
    assert!(err.to_string().contains("changed"));
    let mut c = config(0);
    c.lease = c.detection_timeout();
    assert!(matches!(Node::new(c, boot, now), Err(JoinError::BadConfig(_))));
}
