//! The server driving `takeover::Node` (issue 14): the pair's decisions about
//! share sets (who serves which, when to take over, hand over, give back) are
//! the model-checked state machine's; this module feeds it and carries out its
//! [`Action`]s.
//!
//! # Inputs
//!
//! - The partner's state-machine messages (hello, heartbeats with its view of
//!   ownership, shutdown / takeover / giveback requests and answers, stay-down),
//!   carried by the interconnect's links ([`super::Pair::set_control`]); ours go
//!   out on our outgoing link ([`super::Pair::send_control`]). Mirror records do
//!   not pass through the state machine: the links carry them ([`super::mirror`]).
//! - Timers ([`Node::poll_timeout`]), and what the actions found.
//! - Operator commands (`duet takeover`, `duet giveback`, `duet move`), through
//!   [`Handle::command`].
//!
//! # Actions, and how each is carried out
//!
//! - `BumpHeartbeat`: the storage heartbeat is bumped by a thread of its own
//!   ([`super::sets::start_storage_heartbeat`], which also renews the lease that
//!   fences the data path): a starved runtime must not look like a dead node. The
//!   action is acknowledged at once; the round then reads ownership.
//! - `ReadOwnership`, `ReadPartnerHeartbeat`, `WriteOwnership`: the claim files
//!   and counters in the shared storage folder ([`takeover::ownership::fs`]).
//!   A non-elective claim of a set is first checked against the server's own
//!   rules ([`super::sets::decide`]: only from a mirror the partner said is
//!   current, never without contact since start, never when the partner lived on
//!   after its link ended); a refused claim is reported to the node as lost.
//! - `Restore`: our own set at start is restored by [`crate::run`] (the journal's
//!   restart) once the node has claimed it ([`Verdict::Serve`]); the partner's
//!   set from the mirror ring ([`crate::restart::takeover::take`]).
//! - `Bind`, `StopReading`, `Release`: [`super::serving`].
//! - `Drain`, `Save`, `FlushMirror`: [`crate::restart::handover`].
//!
//! A node that loses its own set without handing it over (a newer claim: it was
//! frozen and taken over) steps down at once: it exits with status 3.
//!
//! A node that stops (SIGTERM, `duet stop`) while it holds the partner's set
//! gives it back first ([`Handle::stop_taken`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use takeover::codec::{Frame, Header, Message};
use takeover::ownership::{self, Ownership, Record};
use takeover::{
    Action, BootInfo, ClaimOutcome, Command, Done, Epoch, Event, FaultKind, Flag, Node, NodeId, Phase, SetId,
    SharedConfig, Source, TakeoverReason,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::serving::Serving;
use super::sets::{decide, Decision, SetStatus, View, BEAT, DETECT, LIVED_ON_BEATS};
use crate::error::RunError;
use crate::restart::takeover::{step_down_now, Taker};
use crate::state::Server;

/// The state machine's own lease: how long after a non-elective claim it waits
/// before it binds (its fence). The data path's lease, the one that matters for
/// safety, is [`super::sets::LEASE`], and the restore waits the partner's out
/// when its heartbeat moved after it was found dead (`restart::takeover::take`).
const NODE_LEASE: Duration = Duration::from_millis(200);

/// What the node decided about its own set at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Restore and serve it: it is ours at `epoch`.
    Serve { epoch: Epoch },
    /// The partner holds it: wait for a giveback.
    Standby { epoch: Epoch, owner: Option<NodeId> },
}

/// What the driver is told from outside.
enum Input {
    /// A state-machine message from the partner.
    Message(Message),
    /// Our own set's server is restored ([`Handle::home_restored`]).
    HomeRestored(Arc<Server>),
    /// An operator command, and where to say what came of it.
    Command(Ask, oneshot::Sender<Result<String, String>>),
    /// The node stops (SIGTERM, `duet stop`): give the partner's set back, if
    /// we hold it ([`Handle::stop_taken`]).
    Stop(oneshot::Sender<Result<String, String>>),
    /// The node stops and could not give the partner's set back: drain it and
    /// save it into its journal as an elective reboot.
    SaveTaken(oneshot::Sender<String>),
}

/// What the operator asks (`duet takeover`, `giveback`, `move SET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Take the partner's set over.
    Takeover,
    /// Move the set that is away from home back home.
    Giveback,
    /// Move set N to the other node.
    Move(u16),
}

/// An action that finished.
enum Finished {
    Claim(Record, ClaimOutcome),
    Ownership(u64, Ownership),
    PartnerBeat(Option<u64>),
    Done(Done),
    Taken(SetId, Result<(Arc<Server>, Option<Away>), String>),
    Bound(SetId, TcpListener),
}

/// What a restored set carries to its bind: its journal in the storage folder
/// when it is the partner's ([`crate::restart::taken`]), and the client
/// connections its last owner listed (the tickle's targets).
type Away = (Option<Arc<::nvram::Journal>>, Vec<(std::net::SocketAddr, std::net::SocketAddr)>);

/// The running driver, for the rest of the server.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Input>,
    t: Arc<Taker>,
    /// Our own set's server while this node serves it.
    home: Arc<Mutex<Option<Arc<Server>>>>,
}

impl Handle {
    /// What the driver serves sets with.
    pub fn taker(&self) -> &Taker {
        &self.t
    }

    /// Our own set's server, while this node serves it.
    pub fn home_serving(&self) -> Option<Arc<Server>> {
        self.home.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Our own set's server is restored and ready to be bound.
    pub fn home_restored(&self, server: Arc<Server>) {
        let _ = self.tx.send(Input::HomeRestored(server));
    }

    /// At an elective stop (SIGTERM, `duet stop`; DESIGN.md, "Pair and
    /// takeover"): the partner's set, when this node holds it, goes back to
    /// its home node by a giveback (stop reading, drain, save into the set's
    /// journal in the storage folder, release; the partner claims it and
    /// restores it from there), so that its clients see a short stall instead
    /// of waiting out a detection timeout, and nothing in flight is carried
    /// out again from the log. A partner that is not reachable, or that does
    /// not take the set within [`STOP_GIVEBACK`], gets it as a stop leaves it:
    /// drained and saved into its journal with the flag "elective reboot",
    /// from which this node's next start, or the partner's takeover after
    /// our death, goes on with nothing to redo. What came of it, in words.
    pub async fn stop_taken(&self) -> String {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Input::Stop(tx)).is_err() {
            return "the pair's driver is not running".into();
        }
        let why = match tokio::time::timeout(STOP_GIVEBACK, rx).await {
            Ok(Ok(Ok(done))) => return done,
            Ok(Ok(Err(why))) => why,
            Ok(Err(_)) => "the pair's driver stopped".into(),
            Err(_) => format!("not given back within {} s", STOP_GIVEBACK.as_secs()),
        };
        warn!("stopping: the partner's set is not given back ({why}): saving it into its journal");
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Input::SaveTaken(tx)).is_err() {
            return "the pair's driver is not running".into();
        }
        rx.await.unwrap_or_else(|_| "the pair's driver stopped".into())
    }

    /// Carries out an operator command; what came of it, or why not.
    pub async fn command(&self, c: Ask) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Input::Command(c, tx)).map_err(|_| "the pair's driver is not running".to_string())?;
        rx.await.map_err(|_| "the pair's driver stopped".to_string())?
    }
}

/// Whether a message of the interconnect is the state machine's (the rest is
/// the links' own: joins, mirror records and their acknowledgements).
pub fn is_control(m: &Message) -> bool {
    matches!(
        m,
        Message::Hello(_)
            | Message::Heartbeat(_)
            | Message::TakeoverRequest { .. }
            | Message::TakeoverDenied { .. }
            | Message::ShutdownRequest { .. }
            | Message::ShutdownDone { .. }
            | Message::StayDown { .. }
            | Message::GivebackRequest { .. }
            | Message::GivebackDone { .. }
    )
}

/// Starts the node and its driver. `flag` is our journal's (how the last run
/// ended). The verdict on our own set comes once the node read ownership and,
/// when it is ours, won its claim.
pub fn start(t: Taker, flag: Flag) -> Result<(Handle, oneshot::Receiver<Verdict>), RunError> {
    let pc = t.pair.config();
    let (cluster, me) = (takeover::ClusterId(pc.cluster), NodeId(pc.node));
    let partner = NodeId(t.sets.partner.home);
    let mut config = takeover::Config::new(cluster, me, partner);
    config.generation = t.pair.region().generation() as u32;
    config.heartbeat_interval = BEAT;
    config.dead_after_beats = (DETECT.as_millis() / BEAT.as_millis()) as u32;
    config.lease = NODE_LEASE;
    // The driver asks for our set back itself ([`Driver::auto_giveback`]): only
    // when it returns after a restart, and once both mirrors are current.
    config.auto_giveback = false;
    let boot = BootInfo { shared: SharedConfig { cluster, nodes: [me, partner] }, recorded: None, flag };
    let node = Node::new(config, boot, Instant::now()).map_err(|e| RunError::Pair(e.to_string()))?;
    let (tx, rx) = mpsc::unbounded_channel::<Input>();
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
    t.pair.set_control(ctl_tx);
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(m) = ctl_rx.recv().await {
                if tx.send(Input::Message(m)).is_err() {
                    return;
                }
            }
        });
    }
    let (verdict_tx, verdict_rx) = oneshot::channel();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let t = Arc::new(t);
    let home = Arc::new(Mutex::new(None));
    let handle = Handle { tx, t: t.clone(), home: home.clone() };
    let d = Driver {
        home_now: home,
        node,
        home: SetId(t.sets.own.home),
        away: SetId(t.sets.partner.home),
        t,
        verdict: Some(verdict_tx),
        home_server: None,
        serving: Vec::new(),
        restored: Vec::new(),
        done_tx,
        in_seq: 0,
        last_beat: None,
        beat_moved: Instant::now(),
        ended_at_beat: None,
        refused: None,
        refused_home: None,
        failed: None,
        home_epoch: Epoch(0),
        pending: None,
        returning: false,
        handed_home: false,
        giveback_wait: None,
        asked_giveback: None,
        dead_beat: None,
        fault_asked: None,
        refused_command: None,
    };
    tokio::spawn(d.run(rx, done_rx));
    Ok((handle, verdict_rx))
}

struct Driver {
    /// [`Handle::home_serving`].
    home_now: Arc<Mutex<Option<Arc<Server>>>>,
    node: Node,
    t: Arc<Taker>,
    home: SetId,
    away: SetId,
    verdict: Option<oneshot::Sender<Verdict>>,
    /// Our own set's server, once restored.
    home_server: Option<Arc<Server>>,
    /// The sets bound and served here.
    serving: Vec<(SetId, Serving)>,
    /// Sets restored and waiting for their bind, with their journal and the
    /// last owner's connections when they are the partner's.
    restored: Vec<(SetId, Arc<Server>, Option<Away>)>,
    done_tx: mpsc::UnboundedSender<Finished>,
    /// The seq of the next frame handed to the node (the links check order).
    in_seq: u64,
    /// The partner's storage heartbeat: last reading, since when it stands.
    last_beat: Option<u64>,
    beat_moved: Instant,
    /// When the partner's link to us was seen to end, and its beat then.
    ended_at_beat: Option<(Instant, Option<u64>)>,
    /// Why the partner's set is not taken (reported once).
    refused: Option<&'static str>,
    /// Why our own set, held by a partner that died, is not taken back.
    refused_home: Option<&'static str>,
    /// Why a takeover failed.
    failed: Option<String>,
    /// The epoch at which we hold our own set.
    home_epoch: Epoch,
    /// An operator command waiting for its outcome: the command, what must be
    /// true when it is done, where to answer, since when.
    pending: Option<Pending>,
    /// Our set was held by the partner when this node started: it is returning,
    /// and auto-giveback applies (not after it handed its set over itself).
    returning: bool,
    /// We handed our own set over on purpose (a newer claim on it is expected).
    handed_home: bool,
    /// Why the last operator command was refused (`duet status`).
    refused_command: Option<String>,
    /// The partner's heartbeat when it was found dead (for the takeover's fence).
    dead_beat: Option<u64>,
    /// The partner reported a fault of its own and asked us to take its set
    /// (its fault hand-over): a non-elective claim then follows its request,
    /// not its death.
    fault_asked: Option<FaultKind>,
    /// Why the auto-giveback waits, when it does.
    giveback_wait: Option<String>,
    /// When the auto-giveback last asked.
    asked_giveback: Option<Instant>,
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>, mut done_rx: mpsc::UnboundedReceiver<Finished>) {
        loop {
            self.drain_outputs();
            let wake = self.node.poll_timeout().unwrap_or_else(|| Instant::now() + BEAT);
            tokio::select! {
                () = tokio::time::sleep_until(wake.into()) => self.node.handle_timeout(Instant::now()),
                i = rx.recv() => match i {
                    Some(i) => self.input(i),
                    None => return,
                },
                Some(f) = done_rx.recv() => self.finished(f),
            }
        }
    }

    fn input(&mut self, i: Input) {
        let now = Instant::now();
        match i {
            Input::Message(m) => {
                self.in_seq += 1;
                let pc = self.t.pair.config();
                let header = Header {
                    cluster: takeover::ClusterId(pc.cluster),
                    node: NodeId(self.away.0),
                    generation: 1,
                    seq: self.in_seq,
                };
                self.node.handle_frame(&Frame { header, message: m }.to_bytes(), now);
            }
            Input::HomeRestored(server) => {
                self.home_server = Some(server);
                self.node.handle_done(Done::Restored { set: self.home }, now);
            }
            Input::Command(c, reply) => self.command(c, reply, now),
            Input::Stop(reply) => self.stop(reply, now),
            Input::SaveTaken(reply) => self.save_taken(reply),
        }
    }

    /// [`Handle::stop_taken`]: a giveback of the partner's set when we serve
    /// it. Unlike the operator's, it does not wait for current mirrors: the
    /// set's state goes back through its journal in the storage folder, and
    /// this node is leaving anyway.
    fn stop(&mut self, reply: oneshot::Sender<Result<String, String>>, now: Instant) {
        if !matches!(self.node.phase(self.away), Some(Phase::Serving { .. })) {
            let _ = reply.send(Ok("stopping: this node serves no set of the partner's".into()));
            return;
        }
        if self.pending.is_some() {
            let _ = reply.send(Err("an operator command is in progress".into()));
            return;
        }
        info!(set = self.away.0, "stopping: giving the partner's set back first");
        self.pending = Some((Command::Giveback, Goal::Away(self.away), reply, now));
        self.node.handle_command(Command::Giveback, now);
    }

    /// [`Handle::stop_taken`] when the giveback did not happen: the partner's
    /// set, if we still serve it, stops reading, drains and is saved into its
    /// journal with the flag "elective reboot".
    fn save_taken(&mut self, reply: oneshot::Sender<String>) {
        let set = self.away;
        let Some(Phase::Serving { epoch }) = self.node.phase(set) else {
            let _ =
                reply.send(format!("stopping: set {} is not served here (phase {:?})", set.0, self.node.phase(set)));
            return;
        };
        let Some((_, s)) = self.serving.iter_mut().find(|(x, _)| *x == set) else {
            let _ = reply.send(format!("stopping: set {} is not bound here", set.0));
            return;
        };
        if let Some(lease) = &s.server.lease {
            lease.hold();
        }
        s.stop_reading();
        let (server, journal, t) = (s.server.clone(), s.journal.clone(), self.t.clone());
        tokio::spawn(async move {
            crate::restart::handover::drain(&server).await;
            crate::restart::handover::save(&t, &server, set, epoch, journal, Flag::ElectiveReboot).await;
            let _ = reply.send(format!("stopping: set {} saved into its journal as an elective reboot", set.0));
        });
    }

    fn command(&mut self, ask: Ask, reply: oneshot::Sender<Result<String, String>>, now: Instant) {
        if self.pending.is_some() {
            let _ = reply.send(Err("another command is in progress".into()));
            return;
        }
        match self.command_for(ask) {
            Ok(c) => {
                info!(?ask, command = ?c, "pair: operator command");
                self.refused_command = None;
                let goal = match c {
                    Command::Takeover => Goal::Serving(self.away),
                    Command::HandOver => Goal::Away(self.home),
                    Command::Giveback if self.node.phase(self.home) == Some(Phase::Standby) => Goal::Serving(self.home),
                    Command::Giveback => Goal::Away(self.away),
                };
                self.pending = Some((c, goal, reply, now));
                self.node.handle_command(c, now);
            }
            Err(why) => {
                warn!(?ask, "pair: operator command refused: {why}");
                self.refused_command = Some(why.clone());
                let _ = reply.send(Err(format!("refused: {why}")));
            }
        }
    }

    /// The state machine's command for what the operator asks, or why it is
    /// refused now.
    fn command_for(&self, ask: Ask) -> Result<Command, String> {
        let phase = |set| self.node.phase(set).unwrap_or(Phase::Idle);
        let c = match ask {
            Ask::Takeover => Command::Takeover,
            Ask::Giveback => Command::Giveback,
            Ask::Move(n) if n == self.home.0 => match phase(self.home) {
                Phase::Serving { .. } => Command::HandOver,
                Phase::Standby => Command::Giveback,
                p => return Err(format!("set {n} is {} here: it cannot move now", phase_name(p))),
            },
            Ask::Move(n) if n == self.away.0 => match phase(self.away) {
                Phase::Serving { .. } => Command::Giveback,
                Phase::Idle => Command::Takeover,
                p => return Err(format!("set {n} is {} here: it cannot move now", phase_name(p))),
            },
            Ask::Move(n) => return Err(format!("no set {n} in this pair")),
        };
        self.mirrors_for(c)?;
        Ok(c)
    }

    /// Why `c` must wait for the mirrors, if it must: a set moves only to a node
    /// whose mirror of the journal it is served from is current (the state
    /// travels that way, or, for a giveback, the pair must be able to fail over
    /// again at once after it).
    fn mirrors_for(&self, c: Command) -> Result<(), String> {
        let ours_behind = || {
            let st = self.t.pair.status();
            format!("the partner's mirror of our journal is behind ({} B, {})", st.mirror.lag_bytes, st.mirror.state)
        };
        let theirs_behind = "our mirror of the partner's journal is not current".to_string();
        match c {
            Command::Takeover if !self.t.pair.partner_mirror_current() => Err(theirs_behind),
            Command::HandOver if !self.t.pair.mirror_current() => Err(ours_behind()),
            Command::Giveback if !self.t.pair.mirror_current() => Err(ours_behind()),
            Command::Giveback if !self.t.pair.partner_mirror_current() => Err(theirs_behind),
            _ => Ok(()),
        }
    }

    /// Auto-giveback: our set is held by the partner, we are back, and both
    /// mirrors are current: ask for it (once a second at most).
    fn auto_giveback(&mut self, now: Instant) {
        if !self.t.sets.auto_giveback || !self.returning || self.pending.is_some() || !self.booted() {
            return;
        }
        if self.node.phase(self.home) != Some(Phase::Standby) {
            self.giveback_wait = None;
            return;
        }
        if self.asked_giveback.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return;
        }
        match self.mirrors_for(Command::Giveback) {
            Ok(()) => {
                self.giveback_wait = None;
                self.asked_giveback = Some(now);
                info!("pair: auto-giveback: asking the partner for our set");
                self.node.handle_command(Command::Giveback, now);
            }
            Err(why) => {
                if self.giveback_wait.as_deref() != Some(why.as_str()) {
                    info!("pair: auto-giveback waits: {why}");
                }
                self.giveback_wait = Some(why);
            }
        }
    }

    fn finished(&mut self, f: Finished) {
        let now = Instant::now();
        match f {
            Finished::Claim(r, outcome) => self.node.handle_claim(r, outcome, now),
            Finished::Ownership(token, o) => self.node.handle_ownership(token, &o, now),
            Finished::PartnerBeat(beat) => {
                if beat.is_some() && beat != self.last_beat {
                    self.last_beat = beat;
                    self.beat_moved = now;
                }
                let ended = self.t.pair.partner_link_ended();
                if ended != self.ended_at_beat.map(|(e, _)| e) {
                    self.ended_at_beat = ended.map(|e| (e, self.last_beat));
                }
                self.node.handle_partner_heartbeat(beat, now);
            }
            Finished::Done(d) => self.node.handle_done(d, now),
            Finished::Taken(set, Ok((server, away))) => {
                self.failed = None;
                self.restored.retain(|(s, _, _)| *s != set);
                self.restored.push((set, server, away));
                self.node.handle_done(Done::Restored { set }, now);
            }
            Finished::Taken(set, Err(why)) => {
                warn!(set = set.0, "pair: the takeover failed: {why}");
                self.failed = Some(why);
            }
            Finished::Bound(set, listener) => self.bound(set, listener, now),
        }
    }

    /// Carries out the node's actions, sends its frames, logs its events, and
    /// says in `duet status` where each set is.
    fn drain_outputs(&mut self) {
        loop {
            let mut any = false;
            while let Some(a) = self.node.poll_action() {
                any = true;
                self.act(a);
            }
            while let Some(f) = self.node.poll_transmit() {
                any = true;
                match Frame::parse(&f) {
                    Ok(frame) => {
                        let _ = self.t.pair.send_control(frame.message);
                    }
                    Err(e) => warn!("pair: the state machine made a frame that does not parse: {e}"),
                }
            }
            while let Some(e) = self.node.poll_event() {
                any = true;
                self.event(e);
            }
            if !any {
                break;
            }
        }
        self.boot_verdict();
        self.answer_command();
        self.auto_giveback(Instant::now());
        while let Some(a) = self.node.poll_action() {
            self.act(a);
        }
        while let Some(f) = self.node.poll_transmit() {
            if let Ok(frame) = Frame::parse(&f) {
                let _ = self.t.pair.send_control(frame.message);
            }
        }
        self.report();
    }

    fn act(&mut self, a: Action) {
        let now = Instant::now();
        let storage = self.t.sets.storage.clone();
        let cluster = takeover::ClusterId(self.t.pair.config().cluster);
        let done = self.done_tx.clone();
        match a {
            Action::BumpHeartbeat { counter } => self.node.handle_done(Done::HeartbeatBumped { counter }, now),
            Action::ReadOwnership { token } => {
                tokio::task::spawn_blocking(move || {
                    // Unreadable storage answers nothing: the round stalls, and the
                    // node reports its storage as stalled after the timeout.
                    crate::failpoint::storage_stall();
                    if let Ok(o) = ownership::fs::read(&storage, cluster) {
                        let _ = done.send(Finished::Ownership(token, o));
                    }
                });
            }
            Action::ReadPartnerHeartbeat => {
                let partner = NodeId(self.away.0);
                tokio::task::spawn_blocking(move || {
                    crate::failpoint::storage_stall();
                    if let Ok(beat) = ownership::fs::read_heartbeat(&storage, partner) {
                        let _ = done.send(Finished::PartnerBeat(beat));
                    }
                });
            }
            Action::WriteOwnership(record) => {
                if let Some(why) = self.veto(&record) {
                    let said = if record.set == self.home { &mut self.refused_home } else { &mut self.refused };
                    if *said != Some(why) {
                        warn!(set = record.set.0, "pair: the partner is dead; its set is NOT taken over: {why}");
                        *said = Some(why);
                    }
                    self.node.handle_claim(record, ClaimOutcome::Lost, now);
                    return;
                }
                if record.set == self.home {
                    self.refused_home = None;
                } else {
                    self.refused = None;
                }
                let non_elective = matches!(
                    self.node.phase(record.set),
                    Some(Phase::Claiming { acq, .. }) if acq.flag == Flag::NonElectiveTakeover
                );
                if non_elective {
                    // The partner's heartbeat as it stood when it was found dead.
                    self.dead_beat = self.last_beat;
                    match self.fault_asked.take() {
                        Some(fault) => info!(
                            set = record.set.0,
                            epoch = record.epoch.0,
                            ?fault,
                            "pair: the partner reported a fault and serves nothing: taking its set over at its request"
                        ),
                        None => info!(
                            set = record.set.0,
                            epoch = record.epoch.0,
                            "pair: the partner is dead (links down, storage heartbeat still): taking its set over"
                        ),
                    }
                }
                tokio::task::spawn_blocking(move || {
                    if non_elective {
                        // A test setting: hold the taker between finding the partner
                        // dead and writing its claim.
                        crate::failpoint::pause("claim");
                    }
                    crate::failpoint::storage_stall();
                    let claimed = ownership::fs::claim(&storage, &record);
                    match claimed {
                        Ok(outcome) => {
                            let _ = done.send(Finished::Claim(record, outcome));
                        }
                        Err(e) => {
                            warn!(set = record.set.0, epoch = record.epoch.0, "pair: cannot write the claim: {e}");
                            let _ = done.send(Finished::Claim(record, ClaimOutcome::Lost));
                        }
                    }
                });
            }
            Action::Restore { set, flag, source, upto } => self.restore(set, flag, source, upto),
            Action::Bind { set, epoch } => {
                if set == self.home {
                    self.home_epoch = epoch;
                }
                let addr = self.address(set);
                let pair = self.t.pair.clone();
                tokio::spawn(async move {
                    // Where addresses move (`duet lab`), the set's is added to our
                    // interface and announced first ([`super::address`]).
                    if let Err(e) = pair.addresses().take(addr) {
                        warn!(%addr, "pair: cannot take the set's address: {e}");
                    }
                    let l = super::serving::bind(addr).await;
                    let _ = done.send(Finished::Bound(set, l));
                });
            }
            Action::StopReading { set } => {
                if let Some((_, s)) = self.serving.iter_mut().find(|(s, _)| *s == set) {
                    if let Some(lease) = &s.server.lease {
                        lease.hold();
                    }
                    s.stop_reading();
                }
            }
            Action::Release { set } => self.release(set, now),
            Action::Drain { set } => match self.server_of(set) {
                Some(server) => {
                    tokio::spawn(async move {
                        crate::restart::handover::drain(&server).await;
                        let _ = done.send(Finished::Done(Done::Drained { set }));
                    });
                }
                None => self.node.handle_done(Done::Drained { set }, now),
            },
            Action::Save { set, flag } => {
                let serving =
                    self.serving.iter().find(|(s, _)| *s == set).map(|(_, s)| (s.server.clone(), s.journal.clone()));
                let epoch = match self.node.phase(set) {
                    Some(Phase::HandingOver { epoch, .. }) => epoch,
                    _ => Epoch(0),
                };
                let t = self.t.clone();
                tokio::spawn(async move {
                    let last_seq = match serving {
                        Some((server, journal)) => {
                            crate::restart::handover::save(&t, &server, set, epoch, journal, flag).await
                        }
                        None => 0,
                    };
                    let _ = done.send(Finished::Done(Done::Saved { set, last_seq }));
                });
            }
            Action::FlushMirror => {
                let pair = self.t.pair.clone();
                tokio::spawn(async move {
                    crate::restart::handover::flush_mirror(&pair).await;
                    let _ = done.send(Finished::Done(Done::MirrorFlushed));
                });
            }
            // Mirror records do not pass through the state machine.
            Action::DeliverMirror { .. } | Action::MirrorAcked { .. } => {}
        }
    }

    /// Why the server does not let the node claim `record` (the rules of
    /// [`decide`] on top of the node's failure detection), if it does not.
    fn veto(&self, record: &Record) -> Option<&'static str> {
        let Some(Phase::Claiming { acq, .. }) = self.node.phase(record.set) else { return None };
        if acq.flag != Flag::NonElectiveTakeover {
            return None;
        }
        if record.set == self.home {
            // Our set, held by the partner, which died (a double failure): what it
            // did with the set is in the journal it kept of it in the storage
            // folder, under its claim (one epoch before ours). Without it, the
            // set's state since the takeover is lost: not taken back.
            let held = ::takeover::Epoch(record.epoch.0.saturating_sub(1));
            if crate::restart::taken::exists(&self.t.sets.storage, record.set, held) {
                return None;
            }
            return Some("the partner held our set and died, and left no journal of it in the storage folder: its state since is lost");
        }
        let view = View {
            links_up: false,
            storage_silent: DETECT,
            ever_joined: self.t.pair.ever_joined(),
            mirror_current: self.t.pair.partner_mirror_current(),
            lived_on: match (self.ended_at_beat, self.last_beat) {
                (Some((_, at_end)), Some(now)) => now > at_end.unwrap_or(0) + LIVED_ON_BEATS,
                _ => false,
            },
        };
        match decide(&view) {
            Decision::Take => None,
            Decision::Refuse(why) => Some(why),
            Decision::Wait | Decision::InterconnectOnly => Some("the partner is not dead"),
        }
    }

    fn restore(&mut self, set: SetId, flag: Flag, source: Source, upto: Option<u64>) {
        let now = Instant::now();
        let epoch = match self.node.phase(set) {
            Some(Phase::Restoring { epoch, .. }) => epoch,
            _ => Epoch(0),
        };
        info!(set = set.0, epoch = epoch.0, ?flag, ?source, ?upto, "pair: restoring a set");
        if set == self.home {
            if let Some(v) = self.verdict.take() {
                // The start restores our journal and says when ([`Handle::home_restored`]).
                let _ = v.send(Verdict::Serve { epoch });
                return;
            }
            if source == Source::Own && self.home_server.is_some() {
                // Ours again after a hand-over the partner did not take up: the
                // server is as we released it.
                if let Some(lease) = self.t.pair.lease() {
                    lease.regain(epoch);
                }
                self.node.handle_done(Done::Restored { set }, now);
                return;
            }
            // Given back, or left by a partner that died holding it: from the
            // journal the partner kept of it in the storage folder. After a
            // death, the partner's lease on it is waited out when its
            // heartbeat moved since it was found dead.
            let fence = (flag == Flag::NonElectiveTakeover).then_some(self.dead_beat);
            let (t, done) = (self.t.clone(), self.done_tx.clone());
            tokio::spawn(async move {
                let r =
                    crate::restart::handover::restore_home(&t, epoch, fence).await.map(|(s, c)| (s, Some((None, c))));
                let _ = done.send(Finished::Taken(set, r));
            });
            return;
        }
        // The partner's set, from the mirror of its journal. After a death the
        // partner's lease is waited out when its heartbeat moved since it was
        // found dead; after a hand-over it let the set go itself.
        // A set we held when we stopped (claimed again at our start) goes on from
        // the journal we kept of it.
        let fence = (flag == Flag::NonElectiveTakeover).then_some(self.dead_beat);
        let ours = source == Source::Own;
        let (t, done) = (self.t.clone(), self.done_tx.clone());
        tokio::spawn(async move {
            let r = crate::restart::takeover::take(&t, epoch, fence, ours)
                .await
                .map(|tk| (tk.server, Some((Some(tk.journal), tk.old_conns))));
            let _ = done.send(Finished::Taken(set, r));
        });
    }

    fn bound(&mut self, set: SetId, listener: TcpListener, now: Instant) {
        let Some(Phase::Binding { epoch }) = self.node.phase(set) else {
            // No longer ours to bind: let it go at once.
            drop(listener);
            return;
        };
        let (server, away) = match self.restored.iter().position(|(s, _, _)| *s == set) {
            Some(i) => {
                let (_, s, away) = self.restored.remove(i);
                (s, away)
            }
            None if set == self.home => match &self.home_server {
                Some(s) => (s.clone(), None),
                None => return,
            },
            None => return,
        };
        let addr = self.address(set);
        let (journal, old_conns) = away.unwrap_or_default();
        let mut serving = Serving::start(server.clone(), addr, listener);
        serving.journal = journal;
        serving.own_task(tokio::spawn(crate::state::durable::scavenger(server.clone())));
        if set == self.home {
            self.handed_home = false;
            self.returning = false;
            self.home_server = Some(server.clone());
            *self.home_now.lock().unwrap_or_else(|e| e.into_inner()) = Some(server.clone());
            if let Some(c) = self.t.pair.conns() {
                c.resume();
            }
            let flush = server.cfg.journal.policy.survives_power_loss();
            serving.own_task(tokio::spawn(crate::restart::retire::run(server, flush)));
            eprintln!("duet: listening on {addr}");
            if !old_conns.is_empty() {
                // Taken back from the partner: its clients of the set may still
                // hold connections to it (frozen, its kernel answers for it).
                let (pair, own) = (self.t.pair.clone(), self.t.sets.own.clone());
                tokio::spawn(async move { crate::restart::takeover::tickle_old_owner(&pair, &own, old_conns).await });
            }
        } else {
            let flush = server.cfg.journal.policy.survives_power_loss();
            serving.own_task(tokio::spawn(crate::restart::retire::run(server, flush)));
            eprintln!("duet: took over set {} (epoch {}) on {}", set.0, epoch.0, addr);
            // The partner's clients may still hold connections to it (frozen, its
            // kernel answers for it): reset them, so that they come here now.
            let (pair, partner) = (self.t.pair.clone(), self.t.sets.partner.clone());
            tokio::spawn(async move { crate::restart::takeover::tickle_old_owner(&pair, &partner, old_conns).await });
        }
        info!(set = set.0, epoch = epoch.0, address = %addr, "pair: serving the set");
        self.serving.retain(|(s, _)| *s != set);
        self.serving.push((set, serving));
        self.node.handle_done(Done::Bound { set }, now);
    }

    fn release(&mut self, set: SetId, now: Instant) {
        let handing = matches!(self.node.phase(set), Some(Phase::HandingOver { .. }));
        if set == self.home && !handing {
            // A newer claim on our set that we did not make way for: we were frozen
            // and taken over. Every request carried out from here on would come
            // after the takeover: exit at once.
            let newer = self.node.status().sets.iter().find(|s| s.set == set).map(|s| (s.owner, s.epoch));
            let (owner, epoch) = newer.map_or(("another node".to_string(), 0), |(o, e)| (format!("node {}", o.0), e.0));
            self.t.pair.addresses().release(self.t.sets.own.address);
            step_down_now(&format!(
                "our set {} was claimed by {owner} at epoch {epoch} (ours: {}): stepping down",
                set.0, self.home_epoch.0
            ));
        }
        if set == self.home {
            self.handed_home = true;
            *self.home_now.lock().unwrap_or_else(|e| e.into_inner()) = None;
            if let Some(c) = self.t.pair.conns() {
                c.stop();
            }
        }
        if let Some(i) = self.serving.iter().position(|(s, _)| *s == set) {
            let (_, mut s) = self.serving.remove(i);
            if let Some(lease) = &s.server.lease {
                // Nothing of the set changes on disk here from now on, and the
                // requests held at the gate close their connections.
                lease.hand_over();
                if set != self.home {
                    self.t.pair.leases().remove(lease);
                }
            }
            if let Some(c) = &s.server.conns {
                // The set's next owner lists its connections now.
                c.stop();
            }
            s.release();
            if handing {
                // Refusing its clients' reconnects a moment, until the
                // taker's announcement reaches them ([`super::address`]).
                self.t.pair.addresses().release_after_grace(s.address);
            } else {
                self.t.pair.addresses().release(s.address);
            }
        }
        self.restored.retain(|(s, _, _)| *s != set);
        self.node.handle_done(Done::Released { set }, now);
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::TakeoverRequested { reason: TakeoverReason::Fault(fault), .. } => self.fault_asked = Some(fault),
            Event::Serving { .. } => self.fault_asked = None,
            _ => {}
        }
        match &e {
            Event::Serving { .. }
            | Event::SteppedDown { .. }
            | Event::HandingOver { .. }
            | Event::HandedOver { .. }
            | Event::HandoverAbandoned { .. }
            | Event::Acquiring { .. }
            | Event::PartnerDead
            | Event::PartnerAlive
            | Event::TakeoverRequested { .. } => info!(event = ?e, "pair"),
            Event::TakeoverDenied { .. }
            | Event::DeniedTakeover { .. }
            | Event::RequestTimedOut
            | Event::Fault(_)
            | Event::CommandRefused { .. }
            | Event::ChannelSilent(_)
            | Event::ClaimLost { .. } => warn!(event = ?e, "pair"),
            _ => debug!(event = ?e, "pair"),
        }
        if let Some((c, _, _, _)) = &self.pending {
            let c = *c;
            let outcome = match e {
                Event::CommandRefused { command, why } if command == c => Some(Err(why.to_string())),
                Event::TakeoverDenied { reason, .. } => Some(Err(format!("the partner refused: {reason:?}"))),
                Event::RequestTimedOut => Some(Err("the partner did not answer in time".to_string())),
                _ => None,
            };
            if let Some(o) = outcome {
                if let Some((_, _, reply, _)) = self.pending.take() {
                    let _ = reply.send(o);
                }
            }
        }
    }

    /// Answers the pending command once its set is where it was meant to go.
    fn answer_command(&mut self) {
        let Some((c, goal, _, since)) = &self.pending else { return };
        let (c, goal, since) = (*c, *goal, *since);
        let done = match goal {
            Goal::Serving(set) => matches!(self.node.phase(set), Some(Phase::Serving { .. })),
            // Released here, and the partner's newer claim seen.
            Goal::Away(set) => matches!(self.node.phase(set), Some(Phase::Idle | Phase::Standby)),
        };
        if done {
            if let Some((_, _, reply, _)) = self.pending.take() {
                let ms = since.elapsed().as_millis();
                let _ = reply.send(Ok(match goal {
                    Goal::Serving(set) => format!("set {} served here ({c:?} done in {ms} ms)", set.0),
                    Goal::Away(set) => format!("set {} handed to the partner ({c:?} done in {ms} ms)", set.0),
                }));
            }
        } else if since.elapsed() > COMMAND_LIMIT {
            if let Some((_, _, reply, _)) = self.pending.take() {
                let _ = reply.send(Err(format!("not done after {} s", COMMAND_LIMIT.as_secs())));
            }
        }
    }

    fn boot_verdict(&mut self) {
        if self.verdict.is_none() {
            return;
        }
        match self.node.phase(self.home) {
            Some(Phase::Standby) | Some(Phase::Idle) if self.booted() => {
                let k = self.node.status().sets.into_iter().find(|s| s.set == self.home);
                let v = Verdict::Standby { epoch: k.map_or(Epoch(0), |k| k.epoch), owner: k.map(|k| k.owner) };
                self.returning = true;
                if let Some(tx) = self.verdict.take() {
                    let _ = tx.send(v);
                }
            }
            _ => {}
        }
    }

    fn booted(&self) -> bool {
        // Before its first ownership read, the node holds every set Idle and knows
        // no claim; after it, our set is claimed (by us or the partner).
        self.node.status().sets.iter().any(|s| s.set == self.home)
    }

    fn server_of(&self, set: SetId) -> Option<Arc<Server>> {
        self.serving.iter().find(|(s, _)| *s == set).map(|(_, s)| s.server.clone())
    }

    fn address(&self, set: SetId) -> std::net::SocketAddr {
        if set == self.home {
            self.t.sets.own.address
        } else {
            self.t.sets.partner.address
        }
    }

    /// Says in `duet status` where each set is: the node's phase.
    fn report(&self) {
        let known = self.node.status().sets;
        for (set, cfg) in [(self.home, &self.t.sets.own), (self.away, &self.t.sets.partner)] {
            let k = known.iter().find(|s| s.set == set);
            let phase = self.node.phase(set).unwrap_or(Phase::Idle);
            let (state, epoch) = match phase {
                Phase::Idle if set == self.away => match (&self.failed, self.refused) {
                    (Some(why), _) => (format!("takeover failed: {why}"), Epoch(0)),
                    (None, Some(why)) => (format!("refused: {why}"), Epoch(0)),
                    _ => ("the partner's".to_string(), Epoch(0)),
                },
                Phase::Idle | Phase::Standby => match k {
                    Some(k) => match &self.giveback_wait {
                        Some(why) => (format!("waiting: held by node {} (giveback waits: {why})", k.owner.0), k.epoch),
                        None => (format!("waiting: held by node {}", k.owner.0), k.epoch),
                    },
                    _ => ("waiting".to_string(), Epoch(0)),
                },
                Phase::Claiming { epoch, .. } => ("claiming".into(), epoch),
                Phase::Restoring { epoch, .. } => match &self.failed {
                    Some(why) if set == self.away => (format!("takeover failed: {why}"), Epoch(0)),
                    _ => ("restoring".into(), epoch),
                },
                Phase::Fencing { epoch, .. } => ("fencing".into(), epoch),
                Phase::Rechecking { epoch, .. } => ("rechecking".into(), epoch),
                Phase::Binding { epoch } => ("binding".into(), epoch),
                Phase::Serving { epoch } => ("serving".into(), epoch),
                Phase::HandingOver { epoch, giveback, .. } => {
                    ((if giveback { "giving back" } else { "handing over" }).into(), epoch)
                }
                Phase::Released { epoch, .. } => ("released".into(), epoch),
            };
            let mut st = SetStatus::new(cfg, state, epoch);
            st.phase = format!("{phase:?}");
            if let Some(why) = &self.refused_command {
                st.note = format!("the last command was refused: {why}");
            }
            // Our own set, held by a partner that died (a double failure): the
            // state says who held it, the note why it is not taken back.
            if let (Some(why), true) = (self.refused_home, set == self.home) {
                if matches!(phase, Phase::Idle | Phase::Standby) {
                    st.note = format!("not taken back: {why}");
                }
            }
            self.t.pair.set_status(st);
        }
    }
}

/// An operator command under way: the command, what must be true when it is
/// done, where to answer, since when.
type Pending = (Command, Goal, oneshot::Sender<Result<String, String>>, Instant);

/// What must be true for an operator command to be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Goal {
    /// The set serves here.
    Serving(SetId),
    /// The set was released here and the partner claimed it.
    Away(SetId),
}

/// A phase in words.
fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Idle => "the partner's",
        Phase::Standby => "away (held by the partner)",
        Phase::Claiming { .. } => "being claimed",
        Phase::Restoring { .. } => "being restored",
        Phase::Fencing { .. } => "fencing",
        Phase::Rechecking { .. } => "being rechecked",
        Phase::Binding { .. } => "being bound",
        Phase::Serving { .. } => "served",
        Phase::HandingOver { .. } => "being handed over",
        Phase::Released { .. } => "released",
    }
}

/// How long an operator command may take before it is reported as not done.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// How long a stop waits for its giveback of the partner's set (the partner
/// claims a released set at once; one that does not within the detection
/// timeout gets it taken back by the state machine).
const STOP_GIVEBACK: Duration = Duration::from_secs(10);
