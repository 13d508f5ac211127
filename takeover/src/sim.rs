//! A simulated pair: two [`Node`]s, their servers, shared storage and the interconnect, all
//! in virtual time. The scenario tests, the model checker ([`crate::model`]) and the fuzz
//! targets drive it; it is public so that they share one harness.
//!
//! The simulated server carries out every [`Action`] at once and reports back, except the
//! storage actions of a node whose storage is stalled, which wait until it resumes. The
//! interconnect can drop, delay, duplicate and reorder frames, and be partitioned. A node can
//! be frozen (it gets no input and no time, but its monotonic clock, and so its lease, runs
//! on), resumed, killed and restarted.
//!
//! After every step [`Pair::check`] tests the safety properties: never two nodes that may
//! serve one set, never two awake nodes with one set's address bound, never a bind below
//! the newest claim, and never a set left with no server for longer than
//! [`Pair::unserved_bound`] while a healthy node can reach shared storage.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::codec::{Frame, Message};
use crate::config::{BootInfo, Config, Identity, SharedConfig};
use crate::node::{Action, Command, Done, Event, Node, Source};
use crate::ownership::fs::ClaimOutcome;
use crate::ownership::{Ownership, Record};
use crate::types::{ClusterId, Epoch, FaultKind, Flag, Health, NodeId, SetId};

/// What the link does with one frame ([`Link::intercept`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fate {
    /// Deliver it after the link's latency.
    Deliver,
    /// Lose it.
    Drop,
    /// Deliver it twice.
    Duplicate,
    /// Deliver it this much later than usual.
    Delay(Duration),
}

/// The interconnect's behaviour in scenario runs.
#[derive(Clone, Debug)]
pub struct Link {
    /// One-way latency.
    pub latency: Duration,
    /// Extra random delay, up to this much (reorders frames).
    pub jitter: Duration,
    /// Percent of frames lost at random.
    pub loss_percent: u32,
    /// Percent of frames duplicated at random.
    pub dup_percent: u32,
    /// No frame crosses.
    pub partitioned: bool,
    /// Decides the fate of chosen frames: `(sender index, message)`.
    pub intercept: Option<fn(usize, &Message) -> Fate>,
}

impl Link {
    fn key(&self) -> (Duration, Duration, u32, u32, bool, bool) {
        (self.latency, self.jitter, self.loss_percent, self.dup_percent, self.partitioned, self.intercept.is_some())
    }
}

// The intercept function is left out of comparisons: only whether there is one counts.
impl PartialEq for Link {
    fn eq(&self, other: &Link) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Link {}

impl std::hash::Hash for Link {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.key().hash(h)
    }
}

impl Default for Link {
    fn default() -> Link {
        Link {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss_percent: 0,
            dup_percent: 0,
            partitioned: false,
            intercept: None,
        }
    }
}

/// A frame on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InFlight {
    /// The receiving node's index.
    pub to: usize,
    /// Earliest delivery time (scenario runs); the model ignores it.
    pub at: Instant,
    /// May survive one time step undelivered (the model's "late" frames).
    pub late: bool,
    /// The frame's bytes.
    pub bytes: Vec<u8>,
}

/// Simulated shared storage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Storage {
    /// Claims by `(set, epoch)`: the creator.
    pub claims: BTreeMap<(SetId, Epoch), NodeId>,
    /// Storage heartbeat counters, by node index.
    pub heartbeats: [Option<u64>; 2],
}

impl Storage {
    /// The newest claim on `set`: `(epoch, owner)`.
    pub fn newest(&self, set: SetId) -> Option<(Epoch, NodeId)> {
        self.claims.range((set, Epoch(0))..=(set, Epoch(u64::MAX))).next_back().map(|((_, e), n)| (*e, *n))
    }

    fn ownership(&self, cluster: ClusterId) -> Ownership {
        let recs: Vec<Record> =
            self.claims.iter().map(|((set, epoch), owner)| Record { cluster, set: *set, owner: *owner, epoch: *epoch }).collect();
        Ownership::from_records(&recs)
    }
}

/// One node and its simulated server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Host {
    /// The state machine; `None` while killed.
    pub node: Option<Node>,
    /// The configuration it (re)starts with.
    pub config: Config,
    /// Frozen: no input, no time.
    pub frozen: bool,
    /// Storage actions hang until unstalled.
    pub storage_stalled: bool,
    /// Storage actions waiting for the stall to end.
    pub stalled: VecDeque<Action>,
    /// The flag its journal header holds.
    pub journal_flag: Flag,
    /// Addresses bound, with the epoch.
    pub bound: BTreeMap<SetId, Epoch>,
    /// The last journal sequence number.
    pub journal_seq: u64,
    /// Every restore carried out (scenario runs only).
    pub restores: Vec<(SetId, Flag, Source)>,
    /// Every event (scenario runs only).
    pub events: Vec<Event>,
    /// Faults injected on this node since the last restart.
    pub fault: Option<FaultKind>,
    /// How fast this node's monotonic clock runs against true (virtual) time, in parts per
    /// million: +50,000 is 5 % fast. The node sees only its own clock; the safety checks
    /// use true time.
    pub drift_ppm: i32,
}

/// A safety violation found by [`Pair::check`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Violation {
    /// Two nodes may serve one set.
    TwoServers { set: SetId },
    /// A bind at an epoch that is not the newest claimed, or not the binder's.
    StaleBind { set: SetId, epoch: Epoch, newest: Option<(Epoch, NodeId)> },
    /// A set had no server for too long while a healthy node could reach storage.
    Unserved { set: SetId, for_ms: u64 },
    /// Two awake nodes have the set's address bound at once.
    TwoBound { set: SetId },
}

/// Two nodes, their servers, shared storage and the link, in virtual time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pair {
    /// The start of virtual time.
    pub base: Instant,
    /// Virtual now.
    pub now: Instant,
    /// The two hosts: index 0 is node 1, index 1 is node 2.
    pub hosts: [Host; 2],
    /// Shared storage.
    pub storage: Storage,
    /// Frames on the wire, in sending order.
    pub flight: Vec<InFlight>,
    /// Scenario link behaviour.
    pub link: Link,
    /// Keep events and restores in the hosts (scenario runs); the model turns it off.
    pub record: bool,
    /// Violations found so far.
    pub violations: Vec<Violation>,
    /// Since when each set has had no server while a healthy node could reach storage.
    pub unserved_since: [Option<Instant>; 2],
    /// Extra time allowed for a set to be unserved (lost frames cost a beat each).
    pub unserved_slack: Duration,
    /// When the last fault (kill, restart, freeze, resume, partition, heal, stall, un-stall,
    /// fault report) was injected: the unserved bound counts from it.
    pub last_fault: Instant,
    /// Storage writes of killed nodes still on their way: a claim or heartbeat bump that
    /// hung in a stalled mount when its process died may still land (with the node index
    /// that issued it), at any later moment ([`Pair::land_orphan`]) or never.
    pub orphans: Vec<(usize, Action)>,
    rng: u64,
}

/// Frames kept for a frozen node (older ones are lost).
pub const FROZEN_BUFFER: usize = 2;

/// The cluster id the simulation uses.
pub const CLUSTER: ClusterId = ClusterId(0xD0E7);
/// The simulated nodes.
pub const NODES: [NodeId; 2] = [NodeId(1), NodeId(2)];

/// The default configuration of simulated node `i`.
pub fn config(i: usize) -> Config {
    Config::new(CLUSTER, NODES[i], NODES[1 - i])
}

impl Pair {
    /// A pair with default configurations, both nodes booting at `now` on empty storage.
    pub fn new(now: Instant) -> Pair {
        Pair::with_configs(now, [config(0), config(1)])
    }

    /// A pair with these configurations, both booting at `now`.
    pub fn with_configs(now: Instant, configs: [Config; 2]) -> Pair {
        let host = |config: Config| Host {
            node: None,
            config,
            frozen: false,
            storage_stalled: false,
            stalled: VecDeque::new(),
            journal_flag: Flag::CleanShutdown,
            bound: BTreeMap::new(),
            journal_seq: 0,
            restores: Vec::new(),
            events: Vec::new(),
            fault: None,
            drift_ppm: 0,
        };
        let [c0, c1] = configs;
        let mut p = Pair {
            base: now,
            now,
            hosts: [host(c0), host(c1)],
            storage: Storage::default(),
            flight: Vec::new(),
            link: Link::default(),
            record: true,
            violations: Vec::new(),
            unserved_since: [None; 2],
            unserved_slack: Duration::ZERO,
            last_fault: now,
            orphans: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
        };
        p.start(0);
        p.start(1);
        p
    }

    /// Only node `i` boots; the other stays down until [`Pair::restart`].
    pub fn with_one_down(now: Instant, down: usize) -> Pair {
        let mut p = Pair::new(now);
        p.hosts[down].node = None;
        p.flight.clear();
        p
    }

    /// The node at index `i`, if running.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.hosts[i].node.as_ref()
    }

    /// Seeds the link's random choices.
    pub fn seed(&mut self, seed: u64) {
        self.rng = seed | 1;
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Node `i`'s clock reading at true time `t` (both measured from [`Pair::base`]).
    pub fn local_at(&self, i: usize, t: Instant) -> Instant {
        let ppm = self.hosts[i].drift_ppm;
        if ppm == 0 {
            return t;
        }
        let true_ns = (t - self.base).as_nanos();
        let rate = (1_000_000i128 + ppm as i128) as u128;
        self.base + Duration::from_nanos((true_ns * rate / 1_000_000) as u64)
    }

    /// Node `i`'s clock now.
    pub fn local(&self, i: usize) -> Instant {
        self.local_at(i, self.now)
    }

    /// The earliest true time at which node `i`'s clock reads at least `local`.
    fn true_at(&self, i: usize, local: Instant) -> Instant {
        let ppm = self.hosts[i].drift_ppm;
        if ppm == 0 || local <= self.base {
            return local;
        }
        let local_ns = (local - self.base).as_nanos();
        let rate = (1_000_000i128 + ppm as i128) as u128;
        let mut t = self.base + Duration::from_nanos((local_ns * 1_000_000).div_ceil(rate) as u64);
        while self.local_at(i, t) < local {
            t += Duration::from_nanos(1);
        }
        t
    }

    /// Sets node `i`'s clock drift ([`Host::drift_ppm`]).
    pub fn set_drift(&mut self, i: usize, ppm: i32) {
        assert!(ppm > -1_000_000, "a clock runs forwards");
        self.hosts[i].drift_ppm = ppm;
    }

    /// The home set of node `i`.
    pub fn set(i: usize) -> SetId {
        SetId::home_of(NODES[i])
    }

    fn start(&mut self, i: usize) {
        let h = &mut self.hosts[i];
        let boot = BootInfo {
            shared: SharedConfig { cluster: CLUSTER, nodes: NODES },
            recorded: (h.config.generation > 1).then_some(Identity { cluster: CLUSTER, node: NODES[i] }),
            flag: h.journal_flag,
        };
        let now = self.local(i);
        let h = &mut self.hosts[i];
        let node = Node::new(h.config.clone(), boot, now).expect("simulated identities match");
        h.node = Some(node);
        self.pump(i);
    }

    // ---- faults ----

    /// Kills node `i`: its process, addresses and pending storage writes are gone.
    pub fn kill(&mut self, i: usize) {
        self.last_fault = self.now;
        let h = &mut self.hosts[i];
        h.node = None;
        h.frozen = false;
        h.bound.clear();
        // The process is gone, but what it wrote to a hung mount may still land.
        let writes: Vec<Action> = h
            .stalled
            .drain(..)
            .filter(|a| matches!(a, Action::WriteOwnership(_) | Action::BumpHeartbeat { .. }))
            .collect();
        h.journal_flag = Flag::NonElectiveReboot;
        h.fault = None;
        self.orphans.extend(writes.into_iter().map(|a| (i, a)));
        self.flight.retain(|f| f.to != i);
        self.check();
    }

    /// A killed node's storage write ([`Pair::orphans`]) lands now: a claim is made if its
    /// `(set, epoch)` is still free, a heartbeat counter is written. Nobody hears back.
    pub fn land_orphan(&mut self, j: usize) {
        self.last_fault = self.now;
        let (i, a) = self.orphans.remove(j);
        match a {
            Action::WriteOwnership(r) => {
                self.storage.claims.entry((r.set, r.epoch)).or_insert(r.owner);
            }
            Action::BumpHeartbeat { counter } => self.storage.heartbeats[i] = Some(counter),
            _ => {}
        }
        self.check();
    }

    /// Restarts node `i` (a new boot generation).
    pub fn restart(&mut self, i: usize) {
        self.last_fault = self.now;
        assert!(self.hosts[i].node.is_none(), "restart a killed node");
        self.hosts[i].config.generation += 1;
        self.start(i);
        self.check();
    }

    /// Freezes node `i` (SIGSTOP).
    pub fn freeze(&mut self, i: usize) {
        self.last_fault = self.now;
        self.hosts[i].frozen = true;
        self.check();
    }

    /// Resumes a frozen node: it sees the time that passed, then the frames that waited.
    pub fn resume(&mut self, i: usize) {
        self.last_fault = self.now;
        self.hosts[i].frozen = false;
        let now = self.local(i);
        if let Some(n) = self.hosts[i].node.as_mut() {
            n.handle_timeout(now);
        }
        self.pump(i);
        self.check();
    }

    /// Stalls (or un-stalls) node `i`'s shared storage.
    pub fn stall_storage(&mut self, i: usize, stalled: bool) {
        self.last_fault = self.now;
        self.hosts[i].storage_stalled = stalled;
        if !stalled {
            let ops: Vec<Action> = self.hosts[i].stalled.drain(..).collect();
            for a in ops {
                self.carry_out(i, a);
            }
            self.pump(i);
        }
        self.check();
    }

    /// Partitions (or heals) the interconnect; frames on the wire are lost.
    pub fn partition(&mut self, on: bool) {
        self.last_fault = self.now;
        self.link.partitioned = on;
        if on {
            self.flight.clear();
        }
        self.check();
    }

    /// An operator command on node `i`. Returns whether it was accepted.
    pub fn command(&mut self, i: usize, c: Command) -> bool {
        let now = self.local(i);
        let Some(n) = self.hosts[i].node.as_mut() else { return false };
        if self.hosts[i].frozen {
            return false;
        }
        n.handle_command(c, now);
        let refused = self.pump_events(i).iter().any(|e| matches!(e, Event::CommandRefused { .. }));
        self.pump(i);
        self.check();
        !refused
    }

    /// A fault report on node `i`.
    pub fn fault(&mut self, i: usize, kind: FaultKind) {
        self.last_fault = self.now;
        let now = self.local(i);
        if self.hosts[i].frozen {
            return;
        }
        if let Some(n) = self.hosts[i].node.as_mut() {
            n.handle_fault(kind, now);
            self.hosts[i].fault = Some(kind);
        }
        self.pump(i);
        self.check();
    }

    // ---- driving ----

    /// Whether node `i` runs and is not frozen.
    pub fn awake(&self, i: usize) -> bool {
        self.hosts[i].node.is_some() && !self.hosts[i].frozen
    }

    /// The earliest timer of an awake node.
    pub fn next_timer(&self) -> Option<Instant> {
        (0..2)
            .filter(|&i| self.awake(i))
            .filter_map(|i| Some(self.true_at(i, self.hosts[i].node.as_ref()?.poll_timeout()?)))
            .min()
    }

    /// Moves virtual time to `t` and fires the timers that are due.
    pub fn advance_to(&mut self, t: Instant) {
        if t > self.now {
            self.now = t;
        }
        for i in 0..2 {
            if !self.awake(i) {
                continue;
            }
            let now = self.local(i);
            let n = self.hosts[i].node.as_mut().unwrap();
            if n.poll_timeout().is_some_and(|d| d <= now) {
                n.handle_timeout(now);
                self.pump(i);
            }
        }
        self.check();
    }

    /// Delivers the frame at `index` in [`Pair::flight`] (if its receiver is awake).
    pub fn deliver(&mut self, index: usize) {
        let f = self.flight.remove(index);
        if !self.awake(f.to) {
            return;
        }
        let now = self.local(f.to);
        self.hosts[f.to].node.as_mut().unwrap().handle_frame(&f.bytes, now);
        self.pump(f.to);
        self.check();
    }

    /// Runs in scenario mode until virtual time `t`: frames arrive after their latency,
    /// timers fire.
    pub fn run_until(&mut self, t: Instant) {
        loop {
            let next_frame = self
                .flight
                .iter()
                .filter(|f| self.awake(f.to))
                .map(|f| f.at)
                .min();
            let next = match (next_frame, self.next_timer()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > t {
                break;
            }
            if next > self.now {
                self.now = next;
            }
            if let Some(idx) = self.flight.iter().position(|f| f.at <= self.now && self.awake(f.to)) {
                self.deliver(idx);
                continue;
            }
            self.advance_to(self.now);
        }
        if t > self.now {
            self.now = t;
            self.check();
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Whether node `i` may serve `set` now.
    pub fn serving(&self, i: usize, set: SetId) -> bool {
        let now = self.local(i);
        self.hosts[i].node.as_ref().is_some_and(|n| n.may_serve(set, now))
    }

    /// Which node index may serve `set` now, if exactly one.
    pub fn server_of(&self, set: SetId) -> Option<usize> {
        let v: Vec<usize> = (0..2).filter(|&i| self.serving(i, set)).collect();
        (v.len() == 1).then(|| v[0])
    }

    // ---- the simulated server ----

    fn pump_events(&mut self, i: usize) -> Vec<Event> {
        let mut out = Vec::new();
        if let Some(n) = self.hosts[i].node.as_mut() {
            while let Some(e) = n.poll_event() {
                out.push(e);
            }
        }
        if self.record {
            self.hosts[i].events.extend(out.iter().cloned());
        }
        out
    }

    /// Carries out node `i`'s actions and sends its frames, until it is quiet.
    fn pump(&mut self, i: usize) {
        loop {
            let Some(n) = self.hosts[i].node.as_mut() else { return };
            let Some(a) = n.poll_action() else { break };
            self.carry_out(i, a);
        }
        self.pump_events(i);
        let n = self.hosts[i].node.as_mut().unwrap();
        let mut frames = Vec::new();
        while let Some(f) = n.poll_transmit() {
            frames.push(f);
        }
        for bytes in frames {
            self.transmit(i, bytes);
        }
    }

    fn transmit(&mut self, from: usize, bytes: Vec<u8>) {
        if self.link.partitioned || self.hosts[1 - from].node.is_none() {
            return;
        }
        let mut fate = Fate::Deliver;
        if let Some(f) = self.link.intercept {
            if let Ok(frame) = Frame::parse(&bytes) {
                fate = f(from, &frame.message);
            }
        }
        if fate == Fate::Deliver && self.link.loss_percent > 0 && self.rand(100) < self.link.loss_percent as u64 {
            fate = Fate::Drop;
        }
        if fate == Fate::Deliver && self.link.dup_percent > 0 && self.rand(100) < self.link.dup_percent as u64 {
            fate = Fate::Duplicate;
        }
        let jitter = if self.link.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_micros(self.rand(self.link.jitter.as_micros() as u64 + 1))
        };
        let at = self.now + self.link.latency + jitter;
        let f = InFlight { to: 1 - from, at, late: false, bytes };
        if self.hosts[1 - from].frozen {
            // A frozen process's socket buffer: keep the newest few frames only.
            let waiting: Vec<usize> = (0..self.flight.len()).filter(|&j| self.flight[j].to == 1 - from).collect();
            if waiting.len() >= FROZEN_BUFFER {
                self.flight.remove(waiting[0]);
            }
        }
        match fate {
            Fate::Deliver => self.flight.push(f),
            Fate::Drop => {}
            Fate::Duplicate => {
                self.flight.push(f.clone());
                self.flight.push(InFlight { at: f.at + Duration::from_micros(500), ..f });
            }
            Fate::Delay(d) => self.flight.push(InFlight { at: f.at + d, ..f }),
        }
    }

    fn rand(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n.max(1)
    }

    fn is_storage(a: &Action) -> bool {
        matches!(
            a,
            Action::WriteOwnership(_) | Action::ReadOwnership { .. } | Action::BumpHeartbeat { .. } | Action::ReadPartnerHeartbeat
        )
    }

    fn carry_out(&mut self, i: usize, a: Action) {
        if Pair::is_storage(&a) && self.hosts[i].storage_stalled {
            // A stalled mount: the write hangs. Keep only what matters (reads and heartbeat
            // bumps repeat every beat; claims do not).
            let q = &mut self.hosts[i].stalled;
            if !q.contains(&a) {
                q.push_back(a);
            }
            return;
        }
        let now = self.local(i);
        let me = NODES[i];
        let host = &mut self.hosts[i];
        let Some(node) = host.node.as_mut() else { return };
        match a {
            Action::StopReading { .. } | Action::DeliverMirror(_) | Action::MirrorAcked { .. } => {}
            Action::Drain { set } => node.handle_done(Done::Drained { set }, now),
            Action::Save { set, flag } => {
                host.journal_flag = flag;
                host.journal_seq += 1;
                node.handle_done(Done::Saved { set, last_seq: host.journal_seq }, now)
            }
            Action::FlushMirror => node.handle_done(Done::MirrorFlushed, now),
            Action::Release { set } => {
                host.bound.remove(&set);
                node.handle_done(Done::Released { set }, now)
            }
            Action::Restore { set, flag, source, .. } => {
                if self.record {
                    host.restores.push((set, flag, source));
                }
                node.handle_done(Done::Restored { set }, now)
            }
            Action::Bind { set, epoch } => {
                let newest = self.storage.newest(set);
                if newest != Some((epoch, me)) {
                    self.violations.push(Violation::StaleBind { set, epoch, newest });
                }
                host.bound.insert(set, epoch);
                node.handle_done(Done::Bound { set }, now)
            }
            Action::WriteOwnership(r) => {
                let outcome = match self.storage.claims.entry((r.set, r.epoch)) {
                    std::collections::btree_map::Entry::Occupied(_) => ClaimOutcome::Lost,
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(r.owner);
                        ClaimOutcome::Won
                    }
                };
                node.handle_claim(r, outcome, now)
            }
            Action::ReadOwnership { token } => {
                let o = self.storage.ownership(CLUSTER);
                node.handle_ownership(token, &o, now)
            }
            Action::BumpHeartbeat { counter } => {
                self.storage.heartbeats[i] = Some(counter);
                node.handle_done(Done::HeartbeatBumped { counter }, now)
            }
            Action::ReadPartnerHeartbeat => node.handle_partner_heartbeat(self.storage.heartbeats[1 - i], now),
        }
    }

    // ---- safety ----

    /// How long a set may have no server while a healthy node can reach storage, counted from
    /// the later of the moment it lost its server and the last injected fault: detection
    /// timeout, plus the dead owner's lease (the fence), plus a beat of timer granularity for
    /// each of detection and lease, plus [`Pair::unserved_slack`]. (Restores are instant in
    /// the simulation.)
    pub fn unserved_bound(&self) -> Duration {
        let c = &self.hosts[0].config;
        let bound = c.detection_timeout() + c.lease + c.heartbeat_interval * 2;
        // A slow clock stretches the timers in true time.
        let slowest = self.hosts.iter().map(|h| h.drift_ppm).min().unwrap_or(0).min(0);
        let bound = bound.mul_f64(1_000_000.0 / (1_000_000.0 + slowest as f64));
        bound + self.unserved_slack
    }

    /// Whether node `i` is healthy and can reach shared storage.
    pub fn capable(&self, i: usize) -> bool {
        let h = &self.hosts[i];
        self.awake(i)
            && !h.storage_stalled
            && h.node.as_ref().is_some_and(|n| n.health() == Health::Healthy)
    }

    /// Tests the safety properties at the current instant; violations go to
    /// [`Pair::violations`].
    pub fn check(&mut self) {
        let capable = self.capable(0) || self.capable(1);
        for (k, set) in [Pair::set(0), Pair::set(1)].into_iter().enumerate() {
            let servers = (0..2).filter(|&i| self.serving(i, set)).count();
            if servers > 1 {
                self.violations.push(Violation::TwoServers { set });
            }
            if (0..2).filter(|&i| self.awake(i) && self.hosts[i].bound.contains_key(&set)).count() > 1 {
                self.violations.push(Violation::TwoBound { set });
            }
            if servers == 0 && capable {
                let since = (*self.unserved_since[k].get_or_insert(self.now)).max(self.last_fault);
                let d = self.now - since;
                if d > self.unserved_bound() {
                    self.violations.push(Violation::Unserved { set, for_ms: d.as_millis() as u64 });
                    self.unserved_since[k] = Some(self.now);
                }
            } else {
                self.unserved_since[k] = None;
            }
        }
    }

    /// Events of node `i` so far (scenario runs).
    pub fn events(&self, i: usize) -> &[Event] {
        &self.hosts[i].events
    }

    /// The newest claim on `set`.
    pub fn newest(&self, set: SetId) -> Option<(Epoch, NodeId)> {
        self.storage.newest(set)
    }
}
