//! The failover state machine of one node of the pair.
//!
//! A [`Node`] is driven by `handle_*` calls, each with the current monotonic time, and polled
//! for what to do: [`Node::poll_transmit`] (frames for the partner), [`Node::poll_action`]
//! (work for the server), [`Node::poll_event`] (for the log and `duet status`) and
//! [`Node::poll_timeout`] (when to call [`Node::handle_timeout`]). It does no I/O and reads
//! no clock. See the crate README for the transition table.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::{DenyReason, Frame, FrameError, Header, Message, SetStatus, Status, TakeoverReason};
use crate::config::{BootInfo, Config, Identity, JoinError, Mutation};
use crate::ownership::fs::ClaimOutcome;
use crate::ownership::{Newest, Ownership, Record};
use crate::types::{Epoch, FaultKind, Flag, Health, SetId};

/// Work for the server. Each is answered, when finished, with the matching
/// [`Node::handle_done`] (or [`Node::handle_claim`], [`Node::handle_ownership`],
/// [`Node::handle_partner_heartbeat`]) call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Stop reading new requests on the set's address (clients see a delay). No answer.
    StopReading { set: SetId },
    /// Finish the requests in progress on the set. Answer: [`Done::Drained`].
    Drain { set: SetId },
    /// Checkpoint the set's state with `flag`. Answer: [`Done::Saved`].
    Save { set: SetId, flag: Flag },
    /// Send every journal record to the partner's mirror. Answer: [`Done::MirrorFlushed`].
    FlushMirror,
    /// Release the set's address. Answer: [`Done::Released`].
    Release { set: SetId },
    /// Restore the set's state, from our own log or our mirror of the partner's, up to
    /// `upto` when known. Answer: [`Done::Restored`].
    Restore { set: SetId, flag: Flag, source: Source, upto: Option<u64> },
    /// Bind the set's address; we own it at `epoch`. Answer: [`Done::Bound`].
    Bind { set: SetId, epoch: Epoch },
    /// Create the ownership record exclusively. Answer: [`Node::handle_claim`].
    WriteOwnership(Record),
    /// Read every ownership record. Answer: [`Node::handle_ownership`] with this token.
    ReadOwnership { token: u64 },
    /// Write our storage heartbeat counter. Answer: [`Done::HeartbeatBumped`].
    BumpHeartbeat { counter: u64 },
    /// Read the partner's storage heartbeat counter. Answer: [`Node::handle_partner_heartbeat`].
    ReadPartnerHeartbeat,
    /// Mirror records arrived from the partner: store them at `pos` of our mirror ring.
    DeliverMirror { pos: u64, records: Bytes },
    /// The partner acknowledged our mirror records up to the position `end`.
    MirrorAcked { end: u64 },
}

/// Which log a restore reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// Our own log: we were the last to serve the set.
    Own,
    /// Our mirror of the partner's log: the partner was.
    Mirror,
}

/// The server's report that an action finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Done {
    /// [`Action::Drain`] finished.
    Drained { set: SetId },
    /// [`Action::Save`] finished; the journal ends at `last_seq`.
    Saved { set: SetId, last_seq: u64 },
    /// [`Action::FlushMirror`] finished.
    MirrorFlushed,
    /// [`Action::Release`] finished.
    Released { set: SetId },
    /// [`Action::Restore`] finished.
    Restored { set: SetId },
    /// [`Action::Bind`] finished.
    Bound { set: SetId },
    /// [`Action::BumpHeartbeat`] reached shared storage.
    HeartbeatBumped { counter: u64 },
}

/// An operator command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Take over the partner's home set (elective).
    Takeover,
    /// Ask the partner to take over our home set (elective, from the other side).
    HandOver,
    /// Move a home set back home, from whichever side this is run on.
    Giveback,
}

/// One of the two failure-detection channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Interconnect heartbeats.
    Interconnect,
    /// The partner's shared-storage heartbeat counter.
    Storage,
}

/// Something worth logging or showing in `duet status`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// The first ownership read is in: the node knows what it owns.
    Booted,
    /// One channel went silent; it is reported, not acted on.
    ChannelSilent(Channel),
    /// A silent channel is heard again.
    ChannelRestored(Channel),
    /// Both channels silent past the timeout: the partner is dead.
    PartnerDead,
    /// The partner was dead and is heard again.
    PartnerAlive,
    /// Our timer fired this late (we were frozen): failure detection starts over.
    Resumed { late: Duration },
    /// We started to acquire a set.
    Acquiring { set: SetId, epoch: Epoch, flag: Flag },
    /// Someone else created the claim first.
    ClaimLost { set: SetId, epoch: Epoch },
    /// We serve the set at the epoch.
    Serving { set: SetId, epoch: Epoch },
    /// We stopped at once: the set is owned at a newer epoch.
    SteppedDown { set: SetId, epoch: Epoch, newer: Epoch },
    /// We started to hand the set over.
    HandingOver { set: SetId, epoch: Epoch, giveback: bool },
    /// The set is released and the partner told.
    HandedOver { set: SetId, epoch: Epoch },
    /// The partner did not take a released set in time: we take it back.
    HandoverAbandoned { set: SetId, epoch: Epoch },
    /// The partner refused to take our set.
    TakeoverDenied { set: SetId, reason: DenyReason },
    /// The partner asked us to take its set.
    TakeoverRequested { set: SetId, reason: TakeoverReason },
    /// We refused to take the partner's set.
    DeniedTakeover { set: SetId, reason: DenyReason },
    /// A request to the partner went unanswered and was dropped.
    RequestTimedOut,
    /// A fault is reported (by the server, or the node itself for storage).
    Fault(FaultKind),
    /// Our lease ran out while we hold a set: we serve nothing until it is renewed.
    LeaseExpired,
    /// The lease is held again.
    LeaseRenewed,
    /// A frame did not decode.
    FrameRefused(FrameError),
    /// A frame came from another cluster or node.
    ForeignFrame(Header),
    /// An operator command cannot be carried out now.
    CommandRefused { command: Command, why: &'static str },
}

/// Frames seen and refused, for `duet status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// Frames accepted.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Frames that did not decode.
    pub corrupt: u64,
    /// Frames from another cluster or node.
    pub foreign: u64,
    /// Frames late or duplicated (older than the newest seen).
    pub stale: u64,
    /// Messages that did not apply (stale epoch, wrong set, unexpected).
    pub ignored: u64,
}

/// What we are doing with one share set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Someone else's to serve.
    Idle,
    /// Our home set, held by the partner: we wait for giveback.
    Standby,
    /// Our claim at `epoch` is being written.
    Claiming { epoch: Epoch, acq: Acquire },
    /// Our claim won; the state is being restored.
    Restoring { epoch: Epoch, fence: Option<Instant> },
    /// Restored; waiting out the dead partner's lease.
    Fencing { epoch: Epoch, until: Instant },
    /// Re-reading ownership before bind.
    Rechecking { epoch: Epoch, token: u64 },
    /// Binding the address.
    Binding { epoch: Epoch },
    /// Serving (while the lease holds, see [`Node::may_serve`]).
    Serving { epoch: Epoch },
    /// Giving the set to the partner.
    HandingOver { epoch: Epoch, step: Step, giveback: bool, last_seq: u64 },
    /// Released, waiting for the partner to take it.
    Released { epoch: Epoch, last_seq: u64, giveback: bool, since: Instant },
}

/// How a set is being acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Acquire {
    /// The flag to restore with.
    pub flag: Flag,
    /// The log to restore from.
    pub source: Source,
    /// Where the partner's mirror ends, when it told us.
    pub upto: Option<u64>,
    /// Whether the previous owner may still hold a lease (non-elective).
    pub fence: bool,
}

/// Steps of a hand-over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Waiting for [`Done::Drained`].
    Draining,
    /// Waiting for [`Done::Saved`].
    Saving,
    /// Waiting for [`Done::MirrorFlushed`].
    Flushing,
    /// Waiting for [`Done::Released`].
    Releasing,
}

impl Phase {
    /// The epoch of our claim, while we hold the set (from a won claim to its release).
    fn held(&self) -> Option<Epoch> {
        match *self {
            Phase::Restoring { epoch, .. }
            | Phase::Fencing { epoch, .. }
            | Phase::Rechecking { epoch, .. }
            | Phase::Binding { epoch }
            | Phase::Serving { epoch }
            | Phase::HandingOver { epoch, .. } => Some(epoch),
            _ => None,
        }
    }

    fn bound(&self) -> bool {
        matches!(self, Phase::Binding { .. } | Phase::Serving { .. } | Phase::HandingOver { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Slot {
    set: SetId,
    phase: Phase,
    known: Option<Newest>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Round {
    counter: u64,
    started: Instant,
    read: Option<u64>,
}

/// A request we sent and resend every beat until it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Pending {
    /// We asked the partner to shut down its set at this epoch.
    Shutdown { set: SetId, epoch: Epoch, since: Instant },
    /// We asked the partner to take over our home set.
    Takeover { reason: TakeoverReason, since: Instant },
    /// We asked for our home set back.
    Giveback { since: Instant },
}

/// One node of the pair. See the crate documentation for how a server drives it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    config: Config,
    boot_flag: Flag,
    booted: bool,
    /// `[our home set, the partner's home set]`.
    slots: [Slot; 2],
    health: Health,
    fault_retry: bool,
    pending: Option<Pending>,

    seq: u64,
    last_in: Option<(u32, u64)>,
    heard_partner: bool,
    last_heard: Instant,
    partner_counter: Option<u64>,
    counter_changed: Instant,
    partner_status: Option<Status>,
    silent: [bool; 2],
    partner_dead: bool,

    counter: u64,
    round: Option<Round>,
    stalled_reported: bool,
    lease_until: Option<Instant>,
    lease_expired_reported: bool,
    next_token: u64,
    next_beat: Instant,

    transmits: VecDeque<Vec<u8>>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl Node {
    /// Checks our identity against the shared configuration and the journal, then starts:
    /// the first actions read ownership and beat. Fails, saying why, when the node must not
    /// join the pair.
    pub fn new(config: Config, boot: BootInfo, now: Instant) -> Result<Node, JoinError> {
        if config.cluster != boot.shared.cluster {
            return Err(JoinError::ClusterMismatch { ours: config.cluster, shared: boot.shared.cluster });
        }
        for node in [config.me, config.partner] {
            if !boot.shared.nodes.contains(&node) {
                return Err(JoinError::UnknownNode { node });
            }
        }
        if config.me == config.partner {
            return Err(JoinError::BadConfig("a node cannot be its own partner"));
        }
        let now_id = Identity { cluster: config.cluster, node: config.me };
        if let Some(recorded) = boot.recorded {
            if recorded != now_id {
                return Err(JoinError::IdentityChanged { recorded, now: now_id });
            }
        }
        if config.heartbeat_interval.is_zero() || config.dead_after_beats == 0 {
            return Err(JoinError::BadConfig("heartbeat interval and dead_after_beats must be positive"));
        }
        if config.lease >= config.detection_timeout() {
            return Err(JoinError::BadConfig("the lease must be shorter than the detection timeout"));
        }
        let slot = |set| Slot { set, phase: Phase::Idle, known: None };
        let mut node = Node {
            slots: [slot(SetId::home_of(config.me)), slot(SetId::home_of(config.partner))],
            config,
            boot_flag: boot.flag,
            booted: false,
            health: Health::Healthy,
            fault_retry: false,
            pending: None,
            seq: 0,
            last_in: None,
            heard_partner: false,
            last_heard: now,
            partner_counter: None,
            counter_changed: now,
            partner_status: None,
            silent: [false; 2],
            partner_dead: false,
            counter: 0,
            round: None,
            stalled_reported: false,
            lease_until: None,
            lease_expired_reported: false,
            next_token: 0,
            next_beat: now,
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
        };
        node.beat(now);
        Ok(node)
    }

    // ---- outputs ----

    /// The next frame to send to the partner.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next action for the server.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the log.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_beat;
        for s in &self.slots {
            if let Phase::Fencing { until, .. } = s.phase {
                t = t.min(until);
            }
        }
        Some(t)
    }

    /// Whether we may execute a request on `set` now: we serve it (or are draining the
    /// requests already in progress before a hand-over) and hold the lease. The server asks
    /// before every mutating operation.
    pub fn may_serve(&self, set: SetId, now: Instant) -> bool {
        (self.lease_valid(now) || self.config.mutation == Mutation::NoFence)
            && self.slots.iter().any(|s| {
                s.set == set
                    && matches!(s.phase, Phase::Serving { .. } | Phase::HandingOver { step: Step::Draining, .. })
            })
    }

    /// Whether our lease holds at `now`.
    pub fn lease_valid(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|t| now < t)
    }

    /// What we are doing with `set`.
    pub fn phase(&self, set: SetId) -> Option<Phase> {
        self.slots.iter().find(|s| s.set == set).map(|s| s.phase)
    }

    /// Our view of the pair, for heartbeats and `duet status`.
    pub fn status(&self) -> Status {
        Status {
            health: self.health,
            sets: self
                .slots
                .iter()
                .filter_map(|s| {
                    let k = s.known?;
                    Some(SetStatus {
                        set: s.set,
                        owner: k.owner.unwrap_or(self.config.partner),
                        epoch: k.epoch,
                        serving: matches!(s.phase, Phase::Serving { .. }),
                    })
                })
                .collect(),
        }
    }

    /// Whether the partner is held dead.
    pub fn partner_dead(&self) -> bool {
        self.partner_dead
    }

    /// Our health.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Frame counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The sets, our home set first.
    pub fn sets(&self) -> [SetId; 2] {
        [self.slots[0].set, self.slots[1].set]
    }

    /// Forgets the frame counters (they do not affect behaviour), so that the model checker
    /// merges states that differ only in them.
    pub fn clear_counters(&mut self) {
        self.counters = Counters::default();
    }

    // ---- inputs ----

    /// Queues mirror records (bytes of our ring from `pos`) for the partner.
    pub fn send_mirror(&mut self, pos: u64, records: Bytes) {
        self.send(Message::Mirror { pos, records });
    }

    /// Queues the acknowledgement of the partner's mirror records up to position `end`.
    pub fn ack_mirror(&mut self, end: u64) {
        self.send(Message::MirrorAck { end });
    }

    /// Time passed: beat, resend, detect.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..2 {
            if let Phase::Fencing { epoch, until } = self.slots[i].phase {
                if now >= until {
                    self.recheck(i, epoch);
                }
            }
        }
        if now >= self.next_beat {
            self.beat(now);
        }
    }

    /// One whole frame from the interconnect.
    pub fn handle_frame(&mut self, bytes: &[u8], now: Instant) {
        let frame = match Frame::parse(bytes) {
            Ok(f) => f,
            Err(e) => {
                self.counters.corrupt += 1;
                self.events.push_back(Event::FrameRefused(e));
                return;
            }
        };
        let h = frame.header;
        if h.cluster != self.config.cluster || h.node != self.config.partner {
            self.counters.foreign += 1;
            self.events.push_back(Event::ForeignFrame(h));
            return;
        }
        match frame.message {
            Message::Mirror { pos, records } => {
                self.counters.frames_in += 1;
                self.actions.push_back(Action::DeliverMirror { pos, records });
                return;
            }
            Message::MirrorAck { end } => {
                self.counters.frames_in += 1;
                self.actions.push_back(Action::MirrorAcked { end });
                return;
            }
            _ => {}
        }
        if self.last_in.is_some_and(|last| (h.generation, h.seq) <= last) {
            self.counters.stale += 1;
            return;
        }
        self.last_in = Some((h.generation, h.seq));
        self.counters.frames_in += 1;
        self.heard(now);
        self.handle_message(frame.message, now);
    }

    /// A reading of the partner's storage heartbeat counter (`None`: never written).
    pub fn handle_partner_heartbeat(&mut self, counter: Option<u64>, now: Instant) {
        if counter != self.partner_counter {
            self.partner_counter = counter;
            self.counter_changed = now;
            if self.silent[1] {
                self.silent[1] = false;
                self.events.push_back(Event::ChannelRestored(Channel::Storage));
            }
            self.revive();
        }
        if self.booted {
            self.detect(now);
        }
    }

    /// The ownership records, read for the [`Action::ReadOwnership`] with `token`.
    pub fn handle_ownership(&mut self, token: u64, ownership: &Ownership, now: Instant) {
        for i in 0..2 {
            let set = self.slots[i].set;
            if let Some(n) = ownership.newest(set) {
                self.learn(i, n, true);
            }
        }
        if !self.booted {
            self.booted = true;
            self.events.push_back(Event::Booted);
            self.boot_decide(now);
        }
        for i in 0..2 {
            if let Phase::Rechecking { epoch, token: t } = self.slots[i].phase {
                if token >= t {
                    let ours = self.slots[i].known == Some(Newest { epoch, owner: Some(self.config.me) })
                        || self.config.mutation == Mutation::NoEpochCheck;
                    if ours {
                        self.slots[i].phase = Phase::Binding { epoch };
                        self.actions.push_back(Action::Bind { set: self.slots[i].set, epoch });
                    } else {
                        self.lose(i);
                    }
                }
            }
        }
        if let Some(r) = self.round {
            if r.read == Some(token) {
                self.round = None;
                self.stalled_reported = false;
                let until = r.started + self.config.lease;
                if self.lease_until < Some(until) {
                    if self.lease_expired_reported && now < until {
                        self.lease_expired_reported = false;
                        self.events.push_back(Event::LeaseRenewed);
                    }
                    self.lease_until = Some(until);
                }
                if self.health == Health::Faulty(FaultKind::StorageStalled) {
                    self.health = Health::Healthy;
                }
            }
        }
    }

    /// The answer to an [`Action::WriteOwnership`].
    pub fn handle_claim(&mut self, record: Record, outcome: ClaimOutcome, now: Instant) {
        let Some(i) = self.slot_of(record.set) else { return };
        let Phase::Claiming { epoch, acq } = self.slots[i].phase else { return };
        if epoch != record.epoch || record.owner != self.config.me {
            return;
        }
        match outcome {
            ClaimOutcome::Won => {
                self.learn(i, Newest { epoch, owner: Some(self.config.me) }, true);
                let fence = (acq.fence && self.config.mutation != Mutation::NoFence).then(|| now + self.config.lease);
                self.slots[i].phase = Phase::Restoring { epoch, fence };
                self.actions.push_back(Action::Restore {
                    set: record.set,
                    flag: acq.flag,
                    source: acq.source,
                    upto: acq.upto,
                });
            }
            ClaimOutcome::Lost => {
                self.events.push_back(Event::ClaimLost { set: record.set, epoch });
                self.slots[i].phase = self.rest_phase(i);
                let token = self.token();
                self.actions.push_back(Action::ReadOwnership { token });
            }
        }
    }

    /// The server finished an action.
    pub fn handle_done(&mut self, done: Done, now: Instant) {
        match done {
            Done::HeartbeatBumped { counter } => {
                if let Some(r) = self.round {
                    if r.counter == counter && r.read.is_none() {
                        let token = self.token();
                        self.round = Some(Round { read: Some(token), ..r });
                        self.actions.push_back(Action::ReadOwnership { token });
                    }
                }
            }
            Done::Restored { set } => {
                let Some(i) = self.slot_of(set) else { return };
                if let Phase::Restoring { epoch, fence } = self.slots[i].phase {
                    match fence {
                        Some(until) if now < until => self.slots[i].phase = Phase::Fencing { epoch, until },
                        _ => self.recheck(i, epoch),
                    }
                }
            }
            Done::Bound { set } => {
                let Some(i) = self.slot_of(set) else { return };
                if let Phase::Binding { epoch } = self.slots[i].phase {
                    self.slots[i].phase = Phase::Serving { epoch };
                    self.events.push_back(Event::Serving { set, epoch });
                    if i == 1 {
                        self.send(Message::StayDown { set, epoch });
                    }
                }
            }
            Done::Drained { set } => self.handover_step(set, Step::Draining, 0, now),
            Done::Saved { set, last_seq } => self.handover_step(set, Step::Saving, last_seq, now),
            Done::MirrorFlushed => {
                for i in 0..2 {
                    let set = self.slots[i].set;
                    self.handover_step(set, Step::Flushing, 0, now);
                }
            }
            Done::Released { set } => self.handover_step(set, Step::Releasing, 0, now),
        }
    }

    /// A fault the server detected in this node.
    pub fn handle_fault(&mut self, kind: FaultKind, now: Instant) {
        self.health = Health::Faulty(kind);
        self.events.push_back(Event::Fault(kind));
        self.fault_handover(kind, now);
    }

    /// The fault is cleared.
    pub fn handle_recovered(&mut self) {
        self.health = Health::Healthy;
    }

    /// An operator command.
    pub fn handle_command(&mut self, command: Command, now: Instant) {
        let refuse = |n: &mut Node, why| n.events.push_back(Event::CommandRefused { command, why });
        if !self.booted {
            return refuse(self, "still booting");
        }
        if self.pending.is_some() {
            return refuse(self, "another request is in progress");
        }
        let alive = self.heard_partner && !self.partner_dead;
        match command {
            Command::Takeover => {
                let s = self.slots[1];
                if s.phase != Phase::Idle {
                    return refuse(self, "the partner's set is not the partner's to give");
                }
                if !alive {
                    return refuse(self, "the partner is not reachable");
                }
                let Some(known) = s.known else { return refuse(self, "the partner's set was never claimed") };
                if let Err(reason) = self.config.resources.check(&self.config.partner_needs) {
                    self.events.push_back(Event::DeniedTakeover { set: s.set, reason });
                    return refuse(self, "this node cannot serve the partner's set");
                }
                self.ask_shutdown(s.set, known.epoch, now);
            }
            Command::HandOver => {
                if !matches!(self.slots[0].phase, Phase::Serving { .. }) {
                    return refuse(self, "we do not serve our home set");
                }
                if !alive {
                    return refuse(self, "the partner is not reachable");
                }
                let reason = TakeoverReason::Operator;
                self.pending = Some(Pending::Takeover { reason, since: now });
                self.send(Message::TakeoverRequest { set: self.slots[0].set, reason });
            }
            Command::Giveback => {
                if matches!(self.slots[1].phase, Phase::Serving { .. }) {
                    if !alive {
                        return refuse(self, "the partner is not reachable");
                    }
                    self.start_handover(1, true);
                } else if self.slots[0].phase == Phase::Standby {
                    self.pending = Some(Pending::Giveback { since: now });
                    self.send(Message::GivebackRequest { set: self.slots[0].set });
                } else {
                    refuse(self, "no set is away from home")
                }
            }
        }
    }

    // ---- internals ----

    fn handle_message(&mut self, msg: Message, now: Instant) {
        if !self.booted {
            // Until we know what we own we take nothing on.
            match msg {
                Message::TakeoverRequest { set, .. } => {
                    self.send(Message::TakeoverDenied { set, reason: DenyReason::Busy });
                    return;
                }
                Message::ShutdownDone { .. }
                | Message::GivebackDone { .. }
                | Message::GivebackRequest { .. }
                | Message::ShutdownRequest { .. } => {
                    self.counters.ignored += 1;
                    return;
                }
                _ => {}
            }
        }
        match msg {
            Message::Hello(st) => {
                self.partner_status_seen(st, now);
                let status = self.status();
                self.send(Message::Heartbeat(status));
            }
            Message::Heartbeat(st) => self.partner_status_seen(st, now),
            Message::TakeoverRequest { set, reason } => {
                let s = self.slots[1];
                if set == s.set && s.phase == Phase::Idle && self.pending.is_none() {
                    self.events.push_back(Event::TakeoverRequested { set, reason });
                }
                if set != s.set {
                    self.counters.ignored += 1;
                    return;
                }
                if s.phase != Phase::Idle || self.pending.is_some() {
                    // Already acting on it (a duplicate), or busy with something else.
                    if s.phase.held().is_none() && !matches!(self.pending, Some(Pending::Shutdown { .. })) {
                        self.send(Message::TakeoverDenied { set, reason: DenyReason::Busy });
                    }
                    self.counters.ignored += 1;
                    return;
                }
                let check = match self.health {
                    Health::Faulty(_) => Err(DenyReason::Faulty),
                    Health::Healthy => self.config.resources.check(&self.config.partner_needs),
                };
                // An operator's hand-over comes only from a node that serves the set
                // (`Command::HandOver` needs it): its last status may predate its
                // bind (the request can come within a beat of it), and taking the set
                // "as from a dead node" then would step a healthy node down.
                let partner_serves = reason == TakeoverReason::Operator
                    || self.partner_status.as_ref().is_some_and(|st| st.sets.iter().any(|e| e.set == set && e.serving));
                match check {
                    Ok(()) if partner_serves => {
                        let epoch = s.known.map_or(Epoch(0), |k| k.epoch);
                        self.ask_shutdown(set, epoch, now)
                    }
                    Ok(()) => {
                        // The partner asks but serves nothing (it cannot boot, or cannot
                        // finish acquiring): take the set as from a dead node, fenced.
                        let epoch = s.known.map_or(Epoch(0), |k| k.epoch);
                        let acq = Acquire {
                            flag: Flag::NonElectiveTakeover,
                            source: Source::Mirror,
                            upto: None,
                            fence: true,
                        };
                        self.claim(1, epoch.next(), acq);
                    }
                    Err(reason) => {
                        self.events.push_back(Event::DeniedTakeover { set, reason });
                        self.send(Message::TakeoverDenied { set, reason });
                    }
                }
            }
            Message::TakeoverDenied { set, reason } => {
                if matches!(self.pending, Some(Pending::Takeover { .. })) && set == self.slots[0].set {
                    self.pending = None;
                    self.events.push_back(Event::TakeoverDenied { set, reason });
                } else {
                    self.counters.ignored += 1;
                }
            }
            Message::ShutdownRequest { set, epoch } => {
                let Some(i) = self.slot_of(set) else { return };
                match self.slots[i].phase {
                    Phase::Serving { epoch: e } if e == epoch => {
                        if matches!(self.pending, Some(Pending::Takeover { .. })) {
                            self.pending = None;
                        }
                        self.start_handover(i, false);
                    }
                    Phase::Released { epoch: e, last_seq, giveback: false, .. } if e == epoch => {
                        self.send(Message::ShutdownDone { set, epoch, last_seq });
                    }
                    _ => self.counters.ignored += 1,
                }
            }
            Message::ShutdownDone { set, epoch, last_seq } => {
                let i = 1;
                if set != self.slots[i].set {
                    self.counters.ignored += 1;
                    return;
                }
                let expected =
                    matches!(self.pending, Some(Pending::Shutdown { set: s, epoch: e, .. }) if s == set && e == epoch);
                let fresh = self.slots[i].phase == Phase::Idle && self.slots[i].known.map(|k| k.epoch) <= Some(epoch);
                if expected {
                    self.pending = None;
                }
                if fresh {
                    let acq = Acquire {
                        flag: Flag::ElectiveTakeover,
                        source: Source::Mirror,
                        upto: Some(last_seq),
                        fence: false,
                    };
                    self.claim(i, epoch.next(), acq);
                } else {
                    self.counters.ignored += 1;
                }
            }
            Message::StayDown { set, epoch } => {
                let Some(i) = self.slot_of(set) else { return };
                self.learn(i, Newest { epoch, owner: Some(self.config.partner) }, false);
            }
            Message::GivebackRequest { set } => {
                if set != self.slots[1].set {
                    self.counters.ignored += 1;
                    return;
                }
                match self.slots[1].phase {
                    Phase::Serving { .. } => self.start_handover(1, true),
                    Phase::Released { epoch, last_seq, giveback: true, .. } => {
                        self.send(Message::GivebackDone { set, epoch, last_seq })
                    }
                    _ => self.counters.ignored += 1,
                }
            }
            Message::GivebackDone { set, epoch, last_seq } => {
                let i = 0;
                if set != self.slots[i].set {
                    self.counters.ignored += 1;
                    return;
                }
                if matches!(self.pending, Some(Pending::Giveback { .. })) {
                    self.pending = None;
                }
                let fresh =
                    self.slots[i].phase == Phase::Standby && self.slots[i].known.map(|k| k.epoch) <= Some(epoch);
                if fresh {
                    let acq = Acquire {
                        flag: Flag::ElectiveTakeover,
                        source: Source::Mirror,
                        upto: Some(last_seq),
                        fence: false,
                    };
                    self.claim(i, epoch.next(), acq);
                } else {
                    self.counters.ignored += 1;
                }
            }
            // The link's own business (the server's interconnect handles them).
            Message::Mirror { .. }
            | Message::MirrorAck { .. }
            | Message::Join { .. }
            | Message::Proof { .. }
            | Message::Refuse { .. }
            | Message::MirrorMeta { .. }
            | Message::MirrorMetaAck { .. }
            | Message::MirrorCurrent { .. } => {}
        }
    }

    fn partner_status_seen(&mut self, st: Status, _now: Instant) {
        for e in &st.sets {
            if let Some(i) = self.slot_of(e.set) {
                if e.owner == self.config.partner {
                    self.learn(i, Newest { epoch: e.epoch, owner: Some(e.owner) }, false);
                }
            }
        }
        self.partner_status = Some(st);
        self.maybe_auto_giveback();
        self.take_from_faulty_partner();
    }

    /// A set the partner owns but cannot serve, because it reports a fault (a hung mount:
    /// it may not even know it owns the set, after a restart), is taken as from a dead
    /// node, fenced, when we are healthy. Without this, a home node in standby would wait
    /// for a giveback that cannot come (the model checker's stall+crash family found it:
    /// the partner's claim landed, the partner restarted with its mount still hung).
    fn take_from_faulty_partner(&mut self) {
        let Some(st) = self.partner_status.clone() else { return };
        if !self.booted || self.health != Health::Healthy || self.pending.is_some() || self.partner_dead {
            return;
        }
        if st.health == Health::Healthy {
            return;
        }
        for i in 0..2 {
            let s = self.slots[i];
            let partner_serves = st.sets.iter().any(|e| e.set == s.set && e.serving);
            if !matches!(s.phase, Phase::Idle | Phase::Standby) || partner_serves {
                continue;
            }
            if let Some(k) = s.known.filter(|k| k.owner == Some(self.config.partner)) {
                let acq = Acquire { flag: Flag::NonElectiveTakeover, source: Source::Mirror, upto: None, fence: true };
                self.claim(i, k.epoch.next(), acq);
            }
        }
    }

    fn maybe_auto_giveback(&mut self) {
        if !self.config.auto_giveback || self.health != Health::Healthy || self.pending.is_some() {
            return;
        }
        if self.slots[0].phase == Phase::Standby && self.heard_partner && !self.partner_dead {
            self.pending = Some(Pending::Giveback { since: self.last_heard });
            self.send(Message::GivebackRequest { set: self.slots[0].set });
        }
    }

    /// We heard the partner on the interconnect.
    fn heard(&mut self, now: Instant) {
        if !self.heard_partner {
            self.fault_retry = true;
        }
        self.heard_partner = true;
        self.last_heard = now;
        if self.silent[0] {
            self.silent[0] = false;
            self.events.push_back(Event::ChannelRestored(Channel::Interconnect));
        }
        self.revive();
    }

    fn revive(&mut self) {
        if self.partner_dead {
            self.partner_dead = false;
            self.events.push_back(Event::PartnerAlive);
            // A fault we could not hand over while the partner was dead: try again.
            self.fault_retry = true;
        }
    }

    /// Takes in a claim on slot `i`; steps down at once if it supersedes ours. A claim read
    /// from storage (`authoritative`) also settles who owns an equal epoch; one heard from the
    /// partner counts only when its epoch is newer.
    fn learn(&mut self, i: usize, n: Newest, authoritative: bool) {
        let slot = &mut self.slots[i];
        let newer = match slot.known {
            None => true,
            Some(k) => {
                n.epoch > k.epoch || (authoritative && n.epoch == k.epoch && k.owner != n.owner && n.owner.is_some())
            }
        };
        if newer {
            slot.known = Some(n);
        }
        let mine = Some(self.config.me);
        let checked = self.config.mutation != Mutation::NoEpochCheck;
        let superseded = |e: Epoch| checked && (n.epoch > e || (authoritative && n.epoch == e && n.owner != mine));
        match slot.phase {
            Phase::Claiming { epoch, .. } if n.epoch > epoch => self.lose(i),
            p => {
                let epoch = p.held().or(match p {
                    Phase::Released { epoch, .. } => Some(epoch),
                    _ => None,
                });
                if let Some(e) = epoch {
                    if superseded(e) {
                        self.lose(i);
                    }
                }
            }
        }
    }

    /// Stops at once whatever we do with slot `i`: someone newer owns it.
    fn lose(&mut self, i: usize) {
        let set = self.slots[i].set;
        let phase = self.slots[i].phase;
        if phase.bound() {
            self.actions.push_back(Action::StopReading { set });
            self.actions.push_back(Action::Release { set });
        }
        if let Some(e) = phase.held() {
            let newer = self.slots[i].known.map_or(e, |k| k.epoch);
            self.events.push_back(Event::SteppedDown { set, epoch: e, newer });
        }
        self.slots[i].phase = self.rest_phase(i);
    }

    fn rest_phase(&self, i: usize) -> Phase {
        let partner_holds = self.slots[i].known.is_some_and(|k| k.owner != Some(self.config.me));
        if i == 0 && partner_holds {
            Phase::Standby
        } else {
            Phase::Idle
        }
    }

    fn boot_decide(&mut self, _now: Instant) {
        let me = Some(self.config.me);
        for i in 0..2 {
            let known = self.slots[i].known;
            match known {
                None if i == 0 => {
                    let acq = Acquire { flag: self.boot_flag, source: Source::Own, upto: None, fence: false };
                    self.claim(i, Epoch(1), acq);
                }
                Some(k) if k.owner == me => {
                    // We held it when we stopped: take it again one epoch up (the partner
                    // may race us for it; the exclusive create decides).
                    let acq = Acquire { flag: self.boot_flag, source: Source::Own, upto: None, fence: true };
                    self.claim(i, k.epoch.next(), acq);
                }
                _ => self.slots[i].phase = self.rest_phase(i),
            }
        }
        self.maybe_auto_giveback();
    }

    fn claim(&mut self, i: usize, epoch: Epoch, acq: Acquire) {
        let set = self.slots[i].set;
        if matches!(self.pending, Some(Pending::Shutdown { set: s, .. }) if s == set) {
            self.pending = None;
        }
        self.slots[i].phase = Phase::Claiming { epoch, acq };
        self.events.push_back(Event::Acquiring { set, epoch, flag: acq.flag });
        let record = Record { cluster: self.config.cluster, set, owner: self.config.me, epoch };
        self.actions.push_back(Action::WriteOwnership(record));
    }

    fn recheck(&mut self, i: usize, epoch: Epoch) {
        let token = self.token();
        self.slots[i].phase = Phase::Rechecking { epoch, token };
        self.actions.push_back(Action::ReadOwnership { token });
    }

    fn ask_shutdown(&mut self, set: SetId, epoch: Epoch, now: Instant) {
        self.pending = Some(Pending::Shutdown { set, epoch, since: now });
        self.send(Message::ShutdownRequest { set, epoch });
    }

    fn fault_handover(&mut self, kind: FaultKind, now: Instant) {
        if !self.heard_partner || self.partner_dead {
            return;
        }
        let partner_healthy = self.partner_status.as_ref().is_some_and(|s| s.health == Health::Healthy);
        if kind == FaultKind::StorageStalled && partner_healthy {
            // We cannot finish acquiring a set without storage: let the healthy partner
            // have it, as if we had handed it over.
            for i in 0..2 {
                let p = self.slots[i].phase;
                if let (Some(epoch), false) = (p.held(), matches!(p, Phase::Serving { .. } | Phase::HandingOver { .. }))
                {
                    let set = self.slots[i].set;
                    if p.bound() {
                        self.actions.push_back(Action::Release { set });
                    }
                    self.events.push_back(Event::HandedOver { set, epoch });
                    self.slots[i].phase = Phase::Released { epoch, last_seq: 0, giveback: i == 1, since: now };
                    self.send_done(i);
                }
            }
        }
        if self.pending.is_some() {
            return;
        }
        if !self.booted {
            // We cannot even read ownership: ask the partner to take our home set.
            let reason = TakeoverReason::Fault(kind);
            self.pending = Some(Pending::Takeover { reason, since: now });
            self.send(Message::TakeoverRequest { set: self.slots[0].set, reason });
            return;
        }
        if matches!(self.slots[1].phase, Phase::Serving { .. }) && partner_healthy {
            self.start_handover(1, true);
            return;
        }
        if matches!(self.slots[0].phase, Phase::Serving { .. }) {
            let reason = TakeoverReason::Fault(kind);
            self.pending = Some(Pending::Takeover { reason, since: now });
            self.send(Message::TakeoverRequest { set: self.slots[0].set, reason });
        }
    }

    fn start_handover(&mut self, i: usize, giveback: bool) {
        let Phase::Serving { epoch } = self.slots[i].phase else { return };
        let set = self.slots[i].set;
        self.slots[i].phase = Phase::HandingOver { epoch, step: Step::Draining, giveback, last_seq: 0 };
        self.events.push_back(Event::HandingOver { set, epoch, giveback });
        self.actions.push_back(Action::StopReading { set });
        self.actions.push_back(Action::Drain { set });
    }

    fn handover_step(&mut self, set: SetId, done: Step, seq: u64, now: Instant) {
        let Some(i) = self.slot_of(set) else { return };
        let Phase::HandingOver { epoch, step, giveback, last_seq } = self.slots[i].phase else { return };
        if step != done {
            return;
        }
        let (next, last_seq) = match step {
            Step::Draining => {
                self.actions.push_back(Action::Save { set, flag: Flag::ElectiveTakeover });
                (Step::Saving, last_seq)
            }
            Step::Saving => {
                self.actions.push_back(Action::FlushMirror);
                (Step::Flushing, seq)
            }
            Step::Flushing => {
                self.actions.push_back(Action::Release { set });
                (Step::Releasing, last_seq)
            }
            Step::Releasing => {
                self.slots[i].phase = Phase::Released { epoch, last_seq, giveback, since: now };
                self.events.push_back(Event::HandedOver { set, epoch });
                self.send_done(i);
                return;
            }
        };
        self.slots[i].phase = Phase::HandingOver { epoch, step: next, giveback, last_seq };
    }

    fn send_done(&mut self, i: usize) {
        if let Phase::Released { epoch, last_seq, giveback, .. } = self.slots[i].phase {
            let set = self.slots[i].set;
            if giveback {
                self.send(Message::GivebackDone { set, epoch, last_seq });
            } else {
                self.send(Message::ShutdownDone { set, epoch, last_seq });
            }
        }
    }

    fn beat(&mut self, now: Instant) {
        let late = now.saturating_duration_since(self.next_beat);
        if self.booted && late >= self.config.heartbeat_interval {
            // We were frozen (or starved): we did not listen, so the partner's silence over
            // that gap proves nothing. Give it a whole timeout from now.
            self.last_heard = self.last_heard.max(now);
            self.counter_changed = self.counter_changed.max(now);
            self.events.push_back(Event::Resumed { late });
        }
        self.next_beat = now + self.config.heartbeat_interval;
        let timeout = self.config.detection_timeout();

        // Storage heartbeat round: bump, then read ownership; the lease is renewed from the
        // time of the bump when the read shows we still own what we hold.
        match self.round {
            None => {
                self.counter += 1;
                self.round = Some(Round { counter: self.counter, started: now, read: None });
                self.actions.push_back(Action::BumpHeartbeat { counter: self.counter });
            }
            Some(r) if now.duration_since(r.started) >= timeout && !self.stalled_reported => {
                self.stalled_reported = true;
                if self.health == Health::Healthy {
                    self.health = Health::Faulty(FaultKind::StorageStalled);
                    self.events.push_back(Event::Fault(FaultKind::StorageStalled));
                    self.fault_handover(FaultKind::StorageStalled, now);
                }
            }
            Some(_) => {}
        }
        self.actions.push_back(Action::ReadPartnerHeartbeat);

        // Interconnect heartbeat.
        let status = self.status();
        if self.heard_partner {
            self.send(Message::Heartbeat(status));
        } else {
            self.send(Message::Hello(status));
        }

        if !self.booted {
            if self.round.is_some_and(|r| r.counter == self.counter && r.started == now) || self.next_token == 0 {
                let token = self.token();
                self.actions.push_back(Action::ReadOwnership { token });
            }
            self.resend(now);
            return;
        }

        // Lease.
        let holds = self.slots.iter().any(|s| s.phase.held().is_some());
        if holds && !self.lease_valid(now) && !self.lease_expired_reported {
            self.lease_expired_reported = true;
            self.events.push_back(Event::LeaseExpired);
        }

        self.resend(now);
        for i in 0..2 {
            match self.slots[i].phase {
                Phase::Released { epoch, since, .. } => {
                    // The partner gets a detection timeout (3 resends of the done message)
                    // to claim the set; a set must not stay released for longer.
                    if self.partner_dead || now.duration_since(since) >= self.config.detection_timeout() {
                        // The partner never took it (or died): take it back, one epoch up.
                        let set = self.slots[i].set;
                        self.events.push_back(Event::HandoverAbandoned { set, epoch });
                        let acq =
                            Acquire { flag: Flag::ElectiveTakeover, source: Source::Own, upto: None, fence: false };
                        self.claim(i, epoch.next(), acq);
                    } else {
                        self.send_done(i);
                    }
                }
                p if i == 1 => {
                    if let Some(epoch) = p.held() {
                        self.send(Message::StayDown { set: self.slots[1].set, epoch });
                    }
                }
                _ => {}
            }
        }
    }

    /// Failure detection, on each fresh reading of the partner's storage counter: the
    /// partner is dead when both channels have been silent past the timeout. Deciding on a
    /// fresh reading (not the previous beat's) means a partner that has just come back is
    /// seen; and a node that cannot read storage declares nobody dead (it could not claim).
    fn detect(&mut self, now: Instant) {
        let timeout = self.config.detection_timeout();
        let ic_silent = now.duration_since(self.last_heard) >= timeout;
        let st_silent = now.duration_since(self.counter_changed) >= timeout;
        for (k, (silent, ch)) in
            [(ic_silent, Channel::Interconnect), (st_silent, Channel::Storage)].into_iter().enumerate()
        {
            if silent && !self.silent[k] {
                self.silent[k] = true;
                self.events.push_back(Event::ChannelSilent(ch));
            }
        }
        if ic_silent && st_silent && !self.partner_dead {
            self.partner_dead = true;
            self.events.push_back(Event::PartnerDead);
        }
        if self.partner_dead {
            for i in 0..2 {
                let s = self.slots[i];
                if matches!(s.phase, Phase::Idle | Phase::Standby) {
                    if let Some(k) = s.known {
                        if k.owner != Some(self.config.me) {
                            let acq = Acquire {
                                flag: Flag::NonElectiveTakeover,
                                source: Source::Mirror,
                                upto: None,
                                fence: true,
                            };
                            self.claim(i, k.epoch.next(), acq);
                        }
                    }
                }
            }
        }
    }

    /// Resends the request still unanswered (or drops it when too old), and retries a fault
    /// hand-over that could not start.
    fn resend(&mut self, now: Instant) {
        match self.pending {
            Some(p) => {
                let since = match p {
                    Pending::Shutdown { since, .. } | Pending::Takeover { since, .. } | Pending::Giveback { since } => {
                        since
                    }
                };
                if now.duration_since(since) >= self.config.handover_timeout {
                    self.pending = None;
                    self.events.push_back(Event::RequestTimedOut);
                } else {
                    let msg = match p {
                        Pending::Shutdown { set, epoch, since } => {
                            // Ask at the newest epoch we know: the partner may have
                            // re-claimed its set since we first asked.
                            let epoch = self.slots[1].known.map_or(epoch, |k| k.epoch.max(epoch));
                            self.pending = Some(Pending::Shutdown { set, epoch, since });
                            Message::ShutdownRequest { set, epoch }
                        }
                        Pending::Takeover { reason, .. } => Message::TakeoverRequest { set: self.slots[0].set, reason },
                        Pending::Giveback { .. } => Message::GivebackRequest { set: self.slots[0].set },
                    };
                    self.send(msg);
                }
            }
            None => self.maybe_auto_giveback(),
        }
        if let (Health::Faulty(kind), true) = (self.health, self.fault_retry) {
            if self.pending.is_none() {
                self.fault_retry = false;
                self.fault_handover(kind, now);
            }
        }
    }

    fn send(&mut self, message: Message) {
        self.seq += 1;
        let header = Header {
            cluster: self.config.cluster,
            node: self.config.me,
            generation: self.config.generation,
            seq: self.seq,
        };
        self.counters.frames_out += 1;
        self.transmits.push_back(Frame { header, message }.to_bytes());
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn slot_of(&self, set: SetId) -> Option<usize> {
        self.slots.iter().position(|s| s.set == set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SetNeeds, SharedConfig};
    use crate::types::{ClusterId, NodeId};

    const C: ClusterId = ClusterId(3);
    const ME: NodeId = NodeId(1);
    const PARTNER: NodeId = NodeId(2);
    const MINE: SetId = SetId(1);
    const THEIRS: SetId = SetId(2);

    /// One node with a scripted server that completes every action at once.
    struct T {
        n: Node,
        now: Instant,
        claims: Vec<Record>,
        seq: u64,
        generation: u32,
        auto: bool,
        partner_counter: u64,
    }

    impl T {
        fn boot(claims: &[(SetId, u64, NodeId)]) -> T {
            let now = Instant::now();
            let boot = BootInfo {
                shared: SharedConfig { cluster: C, nodes: [ME, PARTNER] },
                recorded: None,
                flag: Flag::CleanShutdown,
            };
            let n = Node::new(Config::new(C, ME, PARTNER), boot, now).unwrap();
            let claims =
                claims.iter().map(|&(set, e, owner)| Record { cluster: C, set, owner, epoch: Epoch(e) }).collect();
            let mut t = T { n, now, claims, seq: 0, generation: 1, auto: true, partner_counter: 0 };
            t.settle();
            t
        }

        fn ownership(&self) -> Ownership {
            Ownership::from_records(&self.claims)
        }

        /// Carries out actions until quiet; returns the non-storage ones.
        fn settle(&mut self) -> Vec<Action> {
            let mut seen = Vec::new();
            while let Some(a) = self.n.poll_action() {
                let now = self.now;
                match a.clone() {
                    Action::WriteOwnership(r) => {
                        let lost = self.claims.iter().any(|c| c.set == r.set && c.epoch == r.epoch);
                        if !lost {
                            self.claims.push(r);
                        }
                        self.n.handle_claim(r, if lost { ClaimOutcome::Lost } else { ClaimOutcome::Won }, now);
                    }
                    Action::ReadOwnership { token } => {
                        let o = self.ownership();
                        self.n.handle_ownership(token, &o, now)
                    }
                    Action::BumpHeartbeat { counter } => self.n.handle_done(Done::HeartbeatBumped { counter }, now),
                    Action::ReadPartnerHeartbeat => {
                        self.partner_counter += 1;
                        self.n.handle_partner_heartbeat(Some(self.partner_counter), now)
                    }
                    other => {
                        seen.push(other.clone());
                        if self.auto {
                            let done = match other {
                                Action::Drain { set } => Some(Done::Drained { set }),
                                Action::Save { set, .. } => Some(Done::Saved { set, last_seq: 9 }),
                                Action::FlushMirror => Some(Done::MirrorFlushed),
                                Action::Release { set } => Some(Done::Released { set }),
                                Action::Restore { set, .. } => Some(Done::Restored { set }),
                                Action::Bind { set, .. } => Some(Done::Bound { set }),
                                _ => None,
                            };
                            if let Some(d) = done {
                                self.n.handle_done(d, now);
                            }
                        }
                    }
                }
            }
            seen
        }

        fn tick(&mut self, d: Duration) -> Vec<Action> {
            self.now += d;
            self.n.handle_timeout(self.now);
            self.settle()
        }

        fn frame(&mut self, m: Message) -> Vec<u8> {
            self.seq += 1;
            Frame {
                header: Header { cluster: C, node: PARTNER, generation: self.generation, seq: self.seq },
                message: m,
            }
            .to_bytes()
        }

        fn recv(&mut self, m: Message) -> Vec<Action> {
            let f = self.frame(m);
            self.recv_bytes(&f)
        }

        fn recv_bytes(&mut self, f: &[u8]) -> Vec<Action> {
            let now = self.now;
            self.n.handle_frame(f, now);
            self.settle()
        }

        fn sent(&mut self) -> Vec<Message> {
            let mut v = Vec::new();
            while let Some(b) = self.n.poll_transmit() {
                v.push(Frame::parse(&b).unwrap().message);
            }
            v
        }

        fn events(&mut self) -> Vec<Event> {
            let mut v = Vec::new();
            while let Some(e) = self.n.poll_event() {
                v.push(e);
            }
            v
        }

        fn heartbeat(&mut self, serving_theirs: bool) -> Vec<Action> {
            let sets = vec![SetStatus { set: THEIRS, owner: PARTNER, epoch: Epoch(1), serving: serving_theirs }];
            self.recv(Message::Heartbeat(Status { health: Health::Healthy, sets }))
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_boot_claims_restores_rechecks_binds_and_serves_with_a_lease() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        assert_eq!(t.claims.iter().filter(|r| r.set == MINE).count(), 1);
        assert_eq!(t.n.phase(MINE), Some(Phase::Serving { epoch: Epoch(1) }));
        assert_eq!(t.n.phase(THEIRS), Some(Phase::Idle));
        assert!(t.n.may_serve(MINE, t.now));
        assert!(!t.n.may_serve(THEIRS, t.now));
        assert!(matches!(t.sent()[0], Message::Hello(_)));
        let ev = t.events();
        assert!(ev.contains(&Event::Booted) && ev.contains(&Event::Serving { set: MINE, epoch: Epoch(1) }));
    }

    #[test]
    fn actions_come_in_order_and_wait_for_their_answers() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        t.auto = false;
        t.heartbeat(true);
        t.sent();
        let acts = t.recv(Message::ShutdownRequest { set: MINE, epoch: Epoch(1) });
        assert_eq!(acts, vec![Action::StopReading { set: MINE }, Action::Drain { set: MINE }]);
        assert!(t.n.may_serve(MINE, t.now), "requests in progress may finish while draining");
        let now = t.now;
        t.n.handle_done(Done::Drained { set: MINE }, now);
        assert!(!t.n.may_serve(MINE, t.now), "nothing runs once drained");
        assert_eq!(t.settle(), vec![Action::Save { set: MINE, flag: Flag::ElectiveTakeover }]);
        // A report for the wrong step is ignored.
        t.n.handle_done(Done::Released { set: MINE }, now);
        assert_eq!(t.settle(), vec![]);
        t.n.handle_done(Done::Saved { set: MINE, last_seq: 41 }, now);
        assert_eq!(t.settle(), vec![Action::FlushMirror]);
        t.n.handle_done(Done::MirrorFlushed, now);
        assert_eq!(t.settle(), vec![Action::Release { set: MINE }]);
        t.n.handle_done(Done::Released { set: MINE }, now);
        t.settle();
        assert!(t.sent().contains(&Message::ShutdownDone { set: MINE, epoch: Epoch(1), last_seq: 41 }));
    }

    #[test]
    fn lease_runs_out_without_storage_and_comes_back_with_it() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        t.now += ms(250);
        assert!(!t.n.may_serve(MINE, t.now), "frozen past the lease");
        t.n.handle_timeout(t.now);
        t.settle();
        assert!(t.n.may_serve(MINE, t.now), "the resumed node re-checked ownership");
        let ev = t.events();
        assert!(ev.contains(&Event::LeaseExpired) && ev.contains(&Event::LeaseRenewed), "{ev:?}");
    }

    #[test]
    fn resumed_node_that_lost_its_set_never_serves_again() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        t.now += ms(900);
        t.claims.push(Record { cluster: C, set: MINE, owner: PARTNER, epoch: Epoch(2) });
        t.n.handle_timeout(t.now);
        let acts = t.settle();
        assert!(acts.contains(&Action::StopReading { set: MINE }) && acts.contains(&Action::Release { set: MINE }));
        assert_eq!(t.n.phase(MINE), Some(Phase::Standby));
        assert!(!t.n.may_serve(MINE, t.now));
        assert!(t.events().iter().any(|e| matches!(e, Event::Resumed { .. })));
        for _ in 0..20 {
            let acts = t.tick(ms(100));
            assert!(!acts.iter().any(|a| matches!(a, Action::Bind { .. })), "never binds in standby");
        }
    }

    #[test]
    fn claim_lost_in_a_race_reads_ownership_and_waits() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        let now = t.now;
        // A takeover of a dead partner's set, raced by the partner's own reclaim.
        t.heartbeat(false);
        t.n.slots[1].phase = Phase::Claiming {
            epoch: Epoch(2),
            acq: Acquire { flag: Flag::NonElectiveTakeover, source: Source::Mirror, upto: None, fence: true },
        };
        t.claims.push(Record { cluster: C, set: THEIRS, owner: PARTNER, epoch: Epoch(2) });
        t.n.handle_claim(Record { cluster: C, set: THEIRS, owner: ME, epoch: Epoch(2) }, ClaimOutcome::Lost, now);
        t.settle();
        assert_eq!(t.n.phase(THEIRS), Some(Phase::Idle));
        assert!(t.events().contains(&Event::ClaimLost { set: THEIRS, epoch: Epoch(2) }));
    }

    #[test]
    fn recheck_before_bind_sees_a_newer_claim_and_does_not_bind() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        t.auto = false;
        let now = t.now;
        t.n.slots[1].phase = Phase::Restoring { epoch: Epoch(2), fence: None };
        t.n.handle_done(Done::Restored { set: THEIRS }, now);
        t.claims.push(Record { cluster: C, set: THEIRS, owner: PARTNER, epoch: Epoch(3) });
        let acts = t.settle();
        assert!(!acts.iter().any(|a| matches!(a, Action::Bind { .. })));
        assert_eq!(t.n.phase(THEIRS), Some(Phase::Idle));
    }

    #[test]
    fn non_elective_takeover_is_fenced_by_the_dead_nodes_lease() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        t.heartbeat(true);
        // Silence on both channels: stop the partner's counter.
        let mut counter_frozen = false;
        for _ in 0..3 {
            t.now += ms(100);
            t.n.handle_timeout(t.now);
            while let Some(a) = t.n.poll_action() {
                match a {
                    Action::ReadPartnerHeartbeat => {
                        let now = t.now;
                        t.n.handle_partner_heartbeat(Some(t.partner_counter), now);
                        counter_frozen = true;
                    }
                    Action::BumpHeartbeat { counter } => {
                        let now = t.now;
                        t.n.handle_done(Done::HeartbeatBumped { counter }, now)
                    }
                    Action::ReadOwnership { token } => {
                        let o = t.ownership();
                        let now = t.now;
                        t.n.handle_ownership(token, &o, now)
                    }
                    Action::WriteOwnership(r) => {
                        t.claims.push(r);
                        let now = t.now;
                        t.n.handle_claim(r, ClaimOutcome::Won, now)
                    }
                    Action::Restore { set, flag, source, .. } => {
                        assert_eq!((set, flag, source), (THEIRS, Flag::NonElectiveTakeover, Source::Mirror));
                        let now = t.now;
                        t.n.handle_done(Done::Restored { set }, now)
                    }
                    a => panic!("unexpected {a:?}"),
                }
            }
        }
        assert!(counter_frozen);
        assert!(t.n.partner_dead());
        assert!(matches!(t.n.phase(THEIRS), Some(Phase::Fencing { epoch: Epoch(2), .. })));
        assert_eq!(t.n.poll_timeout(), Some(t.now + ms(100)).min(t.n.poll_timeout()));
        t.tick(ms(100));
        t.tick(ms(100));
        assert_eq!(t.n.phase(THEIRS), Some(Phase::Serving { epoch: Epoch(2) }));
        assert!(t.sent().contains(&Message::StayDown { set: THEIRS, epoch: Epoch(2) }));
    }

    #[test]
    fn duplicate_and_out_of_order_frames_are_stale() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        let f1 = t.frame(Message::Heartbeat(Status { health: Health::Healthy, sets: vec![] }));
        let f2 = t.frame(Message::Heartbeat(Status { health: Health::Healthy, sets: vec![] }));
        t.recv_bytes(&f2);
        t.recv_bytes(&f1);
        t.recv_bytes(&f2);
        assert_eq!(t.n.counters().stale, 2);
        assert_eq!(t.n.counters().frames_in, 1);
        // A restarted partner (next generation) starts its sequence again.
        t.generation = 2;
        t.seq = 0;
        t.heartbeat(true);
        assert_eq!(t.n.counters().frames_in, 2);
    }

    #[test]
    fn corrupt_and_foreign_frames_are_refused_and_counted() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        let mut f = t.frame(Message::GivebackRequest { set: THEIRS });
        f[10] ^= 1;
        t.recv_bytes(&f);
        let foreign = Frame {
            header: Header { cluster: ClusterId(99), node: PARTNER, generation: 1, seq: 100 },
            message: Message::StayDown { set: MINE, epoch: Epoch(50) },
        };
        t.recv_bytes(&foreign.to_bytes());
        let impostor =
            Frame { header: Header { node: NodeId(9), cluster: C, generation: 1, seq: 100 }, ..foreign.clone() };
        t.recv_bytes(&impostor.to_bytes());
        let c = t.n.counters();
        assert_eq!((c.corrupt, c.foreign), (1, 2));
        assert_eq!(t.n.phase(MINE), Some(Phase::Serving { epoch: Epoch(1) }), "foreign stay-down ignored");
    }

    #[test]
    fn stay_down_newer_stops_at_once_older_is_ignored() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        let acts = t.recv(Message::StayDown { set: MINE, epoch: Epoch(1) });
        assert!(acts.is_empty(), "same epoch from the partner: stale");
        assert_eq!(t.n.phase(MINE), Some(Phase::Serving { epoch: Epoch(1) }));
        let acts = t.recv(Message::StayDown { set: MINE, epoch: Epoch(2) });
        assert_eq!(acts, vec![Action::StopReading { set: MINE }, Action::Release { set: MINE }]);
        assert_eq!(t.n.phase(MINE), Some(Phase::Standby));
        assert!(!t.n.may_serve(MINE, t.now));
    }

    #[test]
    fn shutdown_request_stale_epoch_ignored_duplicate_answered_once() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        t.heartbeat(true);
        assert!(t.recv(Message::ShutdownRequest { set: MINE, epoch: Epoch(0) }).is_empty());
        let acts = t.recv(Message::ShutdownRequest { set: MINE, epoch: Epoch(1) });
        assert_eq!(acts.iter().filter(|a| matches!(a, Action::Drain { .. })).count(), 1);
        t.sent();
        // The same request again (resent): no second drain, the done message again.
        let acts = t.recv(Message::ShutdownRequest { set: MINE, epoch: Epoch(1) });
        assert!(acts.is_empty());
        assert_eq!(t.sent(), vec![Message::ShutdownDone { set: MINE, epoch: Epoch(1), last_seq: 9 }]);
    }

    #[test]
    fn shutdown_done_claims_once_and_late_duplicates_are_ignored() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        t.heartbeat(true);
        t.n.handle_command(Command::Takeover, t.now);
        assert!(t.sent().contains(&Message::ShutdownRequest { set: THEIRS, epoch: Epoch(1) }));
        let acts = t.recv(Message::ShutdownDone { set: THEIRS, epoch: Epoch(1), last_seq: 7 });
        assert!(acts.contains(&Action::Restore {
            set: THEIRS,
            flag: Flag::ElectiveTakeover,
            source: Source::Mirror,
            upto: Some(7)
        }));
        assert_eq!(t.n.phase(THEIRS), Some(Phase::Serving { epoch: Epoch(2) }));
        let acts = t.recv(Message::ShutdownDone { set: THEIRS, epoch: Epoch(1), last_seq: 7 });
        assert!(acts.is_empty());
        assert_eq!(t.claims.len(), 3);
    }

    #[test]
    fn giveback_done_outside_standby_is_ignored() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        assert!(t.recv(Message::GivebackDone { set: MINE, epoch: Epoch(1), last_seq: 3 }).is_empty());
        assert!(t.recv(Message::GivebackRequest { set: MINE }).is_empty());
        assert_eq!(t.n.counters().ignored, 2);
    }

    #[test]
    fn booting_while_the_partner_owns_our_set_waits_in_standby() {
        let mut t = T::boot(&[(MINE, 4, PARTNER), (THEIRS, 1, PARTNER)]);
        assert_eq!(t.n.phase(MINE), Some(Phase::Standby));
        for _ in 0..3 {
            let acts = t.tick(ms(100));
            t.heartbeat(true);
            assert!(!acts.iter().any(|a| matches!(a, Action::Bind { .. })));
        }
        t.n.handle_command(Command::Giveback, t.now);
        assert_eq!(t.sent().last(), Some(&Message::GivebackRequest { set: MINE }));
        let acts = t.recv(Message::GivebackDone { set: MINE, epoch: Epoch(4), last_seq: 12 });
        assert!(acts.contains(&Action::Bind { set: MINE, epoch: Epoch(5) }));
    }

    /// The partner holds our home set (its claim landed) but restarted with its mount
    /// hung: it reports a fault, knows nothing, serves nothing. We take the set back,
    /// fenced, instead of waiting in standby for a giveback that cannot come (found by the
    /// model checker's stall+crash family with late writes).
    #[test]
    fn a_set_the_faulty_partner_owns_but_cannot_serve_is_taken_back_fenced() {
        let mut t = T::boot(&[(MINE, 4, PARTNER), (THEIRS, 1, PARTNER)]);
        assert_eq!(t.n.phase(MINE), Some(Phase::Standby));
        let stalled = Health::Faulty(FaultKind::StorageStalled);
        // Faulty but still serving our set: not ours to take.
        let sets = vec![SetStatus { set: MINE, owner: PARTNER, epoch: Epoch(4), serving: true }];
        t.recv(Message::Heartbeat(Status { health: stalled, sets }));
        assert_eq!(t.n.phase(MINE), Some(Phase::Standby));
        // Faulty and serving nothing.
        t.recv(Message::Heartbeat(Status { health: stalled, sets: vec![] }));
        assert!(t.claims.contains(&Record { cluster: C, set: MINE, owner: ME, epoch: Epoch(5) }));
        assert!(matches!(t.n.phase(MINE), Some(Phase::Fencing { epoch: Epoch(5), .. })), "{:?}", t.n.phase(MINE));
    }

    #[test]
    fn takeover_request_checks_resources_and_denies() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        t.n.config.partner_needs = SetNeeds { paths: vec!["/x".into()], bytes: 0 };
        t.heartbeat(true);
        t.sent();
        t.recv(Message::TakeoverRequest { set: THEIRS, reason: TakeoverReason::Fault(FaultKind::DiskErrors) });
        assert_eq!(t.sent(), vec![Message::TakeoverDenied { set: THEIRS, reason: DenyReason::MissingPath }]);
        t.n.config.partner_needs = SetNeeds::default();
        t.recv(Message::TakeoverRequest { set: THEIRS, reason: TakeoverReason::Operator });
        assert_eq!(t.sent(), vec![Message::ShutdownRequest { set: THEIRS, epoch: Epoch(1) }]);
        // A duplicate of the request does not ask twice.
        t.recv(Message::TakeoverRequest { set: THEIRS, reason: TakeoverReason::Operator });
        assert_eq!(t.sent(), vec![]);
    }

    /// The partner's last status (its Hello, sent while it was still restoring)
    /// shows it serving nothing, and its operator's hand-over request comes
    /// before its next heartbeat: still a hand-over (we ask it to shut the set
    /// down), not a fenced claim as from a dead node, which stepped the partner
    /// down (found by `duet lab move` right after the lab came up).
    #[test]
    fn an_operator_s_hand_over_before_the_partner_s_next_status_is_still_a_hand_over() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        t.heartbeat(false);
        t.sent();
        t.recv(Message::TakeoverRequest { set: THEIRS, reason: TakeoverReason::Operator });
        assert_eq!(t.sent(), vec![Message::ShutdownRequest { set: THEIRS, epoch: Epoch(1) }]);
        assert!(!t.claims.iter().any(|r| r.set == THEIRS && r.owner == ME), "claimed as from a dead node");
        assert_eq!(t.n.phase(THEIRS), Some(Phase::Idle));
    }

    #[test]
    fn commands_refused_when_they_cannot_apply() {
        let mut t = T::boot(&[(THEIRS, 1, PARTNER)]);
        t.n.handle_command(Command::Takeover, t.now);
        t.n.handle_command(Command::Giveback, t.now);
        let refused = t.events().into_iter().filter(|e| matches!(e, Event::CommandRefused { .. })).count();
        assert_eq!(refused, 2, "partner never heard; nothing away from home");
    }
}
