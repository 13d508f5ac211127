//! The pair (issue 14): the pair's configuration, the interconnect to the partner,
//! journal mirroring, and the share sets ([`sets`]; the takeover of a dead partner's
//! set is [`crate::restart::takeover`]; who serves which set, takeover, giveback and the
//! operator's moves are [`driver`]'s; a set's address moves with it, [`address`]).
//!
//! Two links join the nodes, each a TCP connection in the `takeover` codec's frames:
//!
//! - **outgoing** ([`Pair::outgoing`]): this node dials the partner's interconnect
//!   address. It carries our journal's records to the partner's mirror ring (our
//!   [`mirror::LinkMirror`], attached to the journal while the link is joined) and
//!   brings back the partner's acknowledgements. While it is down, the node is
//!   **degraded**: its records are durable on its own journal alone. When it comes back,
//!   attaching the mirror resyncs the partner (every byte of our log from its head,
//!   then the new records); the partner's mirror is **current** once it acknowledged
//!   everything up to where our log stood when the resync began.
//! - **incoming** ([`Pair::incoming`]): the partner dials us; its records go into our
//!   journal's mirror ring ([`mirror::receiver`]) and we acknowledge them.
//!
//! Each link starts with a join ([`join`]): identity and configuration incarnation are
//! checked both ways, and each side proves that it holds the pair's interconnect key
//! ([`key`]) before the link carries anything or decides anything; a node that finds
//! the partner's configuration newer refuses to serve and exits ([`Pair::failed`]).
//! Both sides send a heartbeat every 100 ms; a link
//! silent for 1 s is dead ([`link::SILENT`]), so an append waits at most that long on a
//! frozen partner before the mirror is detached (a killed partner's links close at once),
//! and one whose link stays up but that acknowledges nothing for 2 s
//! ([`link::ACK_TIMEOUT`]) is given up the same way.
//!
//! # Layout
//! - [`config`]: the `[pair]` table and the `--pair-*` flags.
//! - [`join`]: the join's rules.
//! - [`key`]: the interconnect key and the proof made with it at a join.
//! - [`link`]: frames over TCP, heartbeats, refused-input counters.
//! - [`mirror`]: the journal's mirror over a link, and the receiving thread.
//! - [`outbox`]: what a link's writer sends, and the mirror records held back to go
//!   out many to a frame.
//! - [`sets`]: share sets: ownership claims, the storage heartbeat, and when a
//!   dead partner's set is taken over (the takeover is
//!   [`crate::restart::takeover`]).
//! - [`fence`]: the lease as the shares' fence on the data path, and what the
//!   pipeline does when it refused a change.
//! - [`address`]: a set's address on this node: added, announced, released,
//!   and the old owner's clients tickled after a takeover; [`netlink`] and
//!   [`frames`] are its system calls and its frames.
//! - [`conns`]: the client connections of each set served here, listed in the storage folder for
//!   the partner's tickle.

pub mod address;
pub mod config;
pub mod driver;
pub mod conns;
pub mod fence;
mod frames;
mod netlink;
pub mod sets;
pub mod join;
pub mod key;
pub mod link;
pub mod mirror;
pub mod outbox;
pub mod serving;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvram::Journal;
use serde::{Deserialize, Serialize};
use takeover::codec::{Message, RefuseReason};
use takeover::{ClusterId, NodeId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};
use tracing::{info, warn};

use crate::error::RunError;
use config::PairConfig;
use join::{judge, Identity, Verdict};
use key::Key;
use link::{Counters, FrameReader, Peer, Sender, ACK_TIMEOUT, JOIN_TIMEOUT};
use outbox::Out;
use mirror::{Item, LinkMirror, ReceiveProgress, SendProgress};

/// Most links waiting for their join at once; more are closed at accept.
const MAX_JOINING: usize = 8;
/// How long the first attempt to join may hold up the start.
const FIRST_JOIN: Duration = Duration::from_secs(3);

/// A running pair member's interconnect.
pub struct Pair {
    cfg: PairConfig,
    me: Identity,
    /// The interconnect key: each link's join is proven with it.
    key: Key,
    generation: u32,
    region: Arc<Journal>,
    counters: Arc<Counters>,
    sent: Arc<SendProgress>,
    received: Arc<ReceiveProgress>,
    beats_seen: AtomicU64,
    beats_sent: Arc<AtomicU64>,
    /// The outgoing link is joined.
    out_joined: AtomicBool,
    /// Our mirror is attached to the journal (the resync began).
    attached: AtomicBool,
    /// Where our log stood when the resync was done shipping: the partner is current
    /// once it acknowledged this far. `u64::MAX` while unknown.
    resync_target: AtomicU64,
    resyncs: AtomicU64,
    /// The incoming link that is the partner's now (0: none).
    in_link: AtomicU64,
    next_link: AtomicU64,
    /// Closes the current incoming link when a newer one joins.
    in_close: Mutex<Option<Arc<Notify>>>,
    rx: Mutex<std::sync::mpsc::Sender<Item>>,
    /// What the outgoing side last found, for `duet status`.
    out_state: Mutex<String>,
    /// Why this node must stop serving, once it must.
    fatal: Mutex<Option<String>>,
    fatal_notify: Notify,
    first_done: Notify,
    first_flag: AtomicBool,
    /// The share sets as the takeover last said (`duet status`).
    sets: Mutex<Vec<sets::SetStatus>>,
    /// This node's lease on its own set, with share sets configured.
    lease: std::sync::OnceLock<Arc<sets::Lease>>,
    /// The leases the storage heartbeat renews: our own set's, and the taken
    /// set's while we hold the partner's.
    leases: Arc<sets::Leases>,
    /// When the partner's newest link to us ended (its records stopped).
    in_ended: Mutex<Option<Instant>>,
    /// The state machine's messages from the partner go here ([`driver`]).
    control: Mutex<Option<mpsc::UnboundedSender<Message>>>,
    /// The joined outgoing link's queue, which carries our state machine's messages.
    out_link: Mutex<Option<mpsc::UnboundedSender<Out>>>,
    /// The state machine's driver, with share sets.
    driver: std::sync::OnceLock<driver::Handle>,
    /// The set addresses this node holds on its interface.
    addresses: address::Addresses,
    /// Our set's client connections, with share sets and an interface.
    conns: Option<Arc<conns::Conns>>,
}

impl Pair {
    /// Binds the interconnect, starts both links, and waits (up to 3 s) for the first
    /// attempt to join the partner: joined, unreachable, or refused. Fails when the
    /// partner's configuration is newer (this node must not serve).
    pub async fn start(cfg: PairConfig, region: Arc<Journal>) -> Result<Arc<Pair>, RunError> {
        let (key_path, make) = cfg.key_path().ok_or_else(|| {
            RunError::Pair("a pair needs an interconnect key: pair.key_file (--pair-key) or pair.storage".into())
        })?;
        let key = tokio::task::spawn_blocking(move || Key::load(&key_path, make))
            .await
            .map_err(|e| RunError::Pair(e.to_string()))?
            .map_err(RunError::Pair)?;
        let listener = TcpListener::bind(cfg.listen).await.map_err(|e| RunError::Bind(cfg.listen, e))?;
        let counters = Arc::new(Counters::default());
        let received = Arc::new(ReceiveProgress::default());
        let rx = mirror::receiver(region.clone(), received.clone(), counters.clone())
            .map_err(|e| RunError::Pair(format!("cannot start the mirror's receiving thread: {e}")))?;
        let me = Identity {
            cluster: ClusterId(cfg.cluster),
            node: NodeId(cfg.node),
            partner: cfg.partner_node.map(NodeId),
            incarnation: cfg.incarnation,
            ring: region.capacity(),
        };
        let addresses = address::Addresses::new(cfg.interface.as_deref())
            .map_err(|e| RunError::Pair(format!("the pair's interface: {e}")))?;
        // Listed only where addresses move: elsewhere nobody tickles them.
        let sets = cfg.interface.as_ref().and(cfg.sets());
        let conns = sets.map(|s| conns::Conns::new(&s.storage, takeover::SetId(s.own.home)));
        let pair = Arc::new(Pair {
            addresses,
            conns,
            me,
            key,
            generation: region.generation() as u32,
            region,
            counters,
            sent: Arc::new(SendProgress::default()),
            received,
            beats_seen: AtomicU64::new(0),
            beats_sent: Arc::new(AtomicU64::new(0)),
            out_joined: AtomicBool::new(false),
            attached: AtomicBool::new(false),
            resync_target: AtomicU64::new(u64::MAX),
            resyncs: AtomicU64::new(0),
            in_link: AtomicU64::new(0),
            next_link: AtomicU64::new(1),
            in_close: Mutex::new(None),
            rx: Mutex::new(rx),
            out_state: Mutex::new("starting".into()),
            fatal: Mutex::new(None),
            fatal_notify: Notify::new(),
            first_done: Notify::new(),
            first_flag: AtomicBool::new(false),
            sets: Mutex::new(Vec::new()),
            lease: std::sync::OnceLock::new(),
            leases: Arc::default(),
            in_ended: Mutex::new(None),
            control: Mutex::new(None),
            out_link: Mutex::new(None),
            driver: std::sync::OnceLock::new(),
            cfg,
        });
        eprintln!(
            "duet: pair node {} of cluster {:#x}, interconnect on {}",
            pair.cfg.node, pair.cfg.cluster, pair.cfg.listen
        );
        info!(
            node = pair.cfg.node,
            cluster = pair.cfg.cluster,
            listen = %pair.cfg.listen,
            partner = %pair.cfg.partner,
            incarnation = pair.cfg.incarnation,
            "pair: interconnect listening"
        );
        tokio::spawn(pair.clone().accept_loop(listener));
        tokio::spawn(pair.clone().outgoing());
        {
            let first = pair.first_done.notified();
            if !pair.first_flag.load(Ordering::Acquire) {
                let _ = tokio::time::timeout(FIRST_JOIN, first).await;
            }
        }
        if let Some(why) = pair.failure() {
            return Err(RunError::Pair(why));
        }
        Ok(pair)
    }

    /// A link's writer task, which opens with our join carrying `nonce`; aborted when
    /// the returned guard drops (the link is over).
    fn spawn_writer(
        &self,
        wr: tokio::net::tcp::OwnedWriteHalf,
        out_rx: mpsc::UnboundedReceiver<Out>,
        closed: &Arc<Notify>,
        nonce: [u8; 16],
    ) -> AbortOnDrop {
        let sent = self.beats_sent.clone();
        AbortOnDrop(tokio::spawn(link::writer(wr, out_rx, self.sender(), self.me.join(nonce), sent, closed.clone())))
    }

    /// Our proof to `to`, on a link whose joins carried `theirs` and `ours`.
    fn proof(&self, to: NodeId, theirs: &[u8; 16], ours: &[u8; 16]) -> Message {
        Message::Proof { mac: self.key.proof(self.me.cluster, self.me.node, to, theirs, ours) }
    }

    /// Waits (within [`JOIN_TIMEOUT`]) for the proof of `peer`, whose join carried
    /// `theirs`, over our join's `ours` ([`join`]). Heartbeats before it are passed
    /// over. The error says why the link must not go on.
    async fn proven(
        &self,
        reader: &mut FrameReader,
        peer: &mut Peer,
        theirs: [u8; 16],
        ours: [u8; 16],
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
        loop {
            let f = match tokio::time::timeout_at(deadline, reader.next()).await {
                Err(_) => return Err(format!("no proof within {} s", JOIN_TIMEOUT.as_secs())),
                Ok(Err(e)) => return Err(format!("no proof: {e}")),
                Ok(Ok(f)) => f,
            };
            peer.check(&f.header, &self.counters)?;
            return match f.message {
                Message::Heartbeat(_) => continue,
                Message::Proof { mac } => {
                    if self.key.verify(&mac, self.me.cluster, peer.node, self.me.node, &ours, &theirs) {
                        Ok(())
                    } else {
                        Err("its proof does not hold: it does not have this pair's interconnect key".into())
                    }
                }
                Message::Refuse { reason, .. } => Err(format!("it refused our join: {}", join::reason_text(reason))),
                _ => Err("it sent something else than its proof".into()),
            };
        }
    }

    fn sender(&self) -> Sender {
        Sender { cluster: self.me.cluster, node: self.me.node, generation: self.generation }
    }

    fn set_out_state(&self, s: impl Into<String>) {
        *self.out_state.lock().unwrap_or_else(|e| e.into_inner()) = s.into();
    }

    fn first_attempt_done(&self) {
        self.first_flag.store(true, Ordering::Release);
        self.first_done.notify_waiters();
    }

    /// Records that this node must not serve, and why.
    fn step_down(&self, why: String) {
        warn!("pair: {why}");
        let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(why);
        }
        drop(f);
        self.fatal_notify.notify_waiters();
        self.first_attempt_done();
    }

    /// Why this node must not serve, if it must not.
    pub fn failure(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves once this node must stop serving (the partner's configuration is newer),
    /// with the reason.
    pub async fn failed(&self) -> String {
        loop {
            let n = self.fatal_notify.notified();
            if let Some(why) = self.failure() {
                return why;
            }
            n.await;
        }
    }

    // ---- outgoing: our records to the partner ------------------------------------------

    /// Dials the partner for as long as the node runs, and keeps our mirror attached
    /// while the link is joined.
    async fn outgoing(self: Arc<Self>) {
        let mut backoff = link::BEAT;
        let mut last_problem = String::new();
        loop {
            let outcome = self.clone().dial().await;
            // After the outcome is recorded: `start` looks at it as soon as it wakes.
            match outcome {
                Dial::StepDown(why) => {
                    self.step_down(why);
                    return;
                }
                Dial::Lost(why) => {
                    warn!("pair: partner lost ({why}): running degraded (local durability only)");
                    self.set_out_state(format!("lost: {why}"));
                    last_problem = String::new();
                    backoff = link::BEAT;
                }
                Dial::Failed(why) => {
                    if why != last_problem {
                        warn!(partner = %self.cfg.partner, "pair: cannot join the partner ({why}): running degraded (local durability only)");
                        last_problem = why.clone();
                    }
                    self.set_out_state(why);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
            self.first_attempt_done();
            tokio::time::sleep(backoff).await;
        }
    }

    /// One link to the partner, from connect to its end.
    async fn dial(self: Arc<Self>) -> Dial {
        let sock = match tokio::time::timeout(JOIN_TIMEOUT, TcpStream::connect(self.cfg.partner)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Dial::Failed(format!("not reachable at {}: {e}", self.cfg.partner)),
            Err(_) => return Dial::Failed(format!("no answer from {}", self.cfg.partner)),
        };
        let _ = sock.set_nodelay(true);
        let (rd, wr) = sock.into_split();
        let mut reader = FrameReader::new(rd, self.counters.clone());
        let (out, out_rx) = mpsc::unbounded_channel();
        let closed = Arc::new(Notify::new());
        let ours = key::nonce();
        let _writer = self.spawn_writer(wr, out_rx, &closed, ours);
        let first = match tokio::time::timeout(JOIN_TIMEOUT, reader.next()).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return Dial::Failed(format!("join failed: {e}")),
            Err(_) => return Dial::Failed("the partner did not answer our join".into()),
        };
        if first.header.cluster != self.me.cluster {
            self.counters.foreign.fetch_add(1, Ordering::Relaxed);
            return Dial::Failed(format!(
                "{} is a node of cluster {:#x}, not ours",
                self.cfg.partner, first.header.cluster.0
            ));
        }
        let (incarnation, ring, theirs) = match first.message {
            Message::Join { incarnation, ring, nonce } => (incarnation, ring, nonce),
            // Before its proof, a refusal only ends the link.
            Message::Refuse { reason, .. } => {
                return Dial::Failed(format!("the partner refused our join: {}", join::reason_text(reason)))
            }
            _ => {
                self.counters.joins.fetch_add(1, Ordering::Relaxed);
                return Dial::Failed("the partner answered our join with something else than a join".into());
            }
        };
        let verdict = judge(&self.me, &first.header, incarnation, ring);
        let refuse = |r: RefuseReason| {
            self.counters.joins.fetch_add(1, Ordering::Relaxed);
            let _ = out.send(Out::Msg(Message::Refuse { reason: r, incarnation: self.me.incarnation }));
            let _ = out.send(Out::Close);
        };
        let mut peer = Peer::new(&first.header);
        if join::proof_first(verdict) {
            let _ = out.send(Out::Msg(self.proof(first.header.node, &theirs, &ours)));
            if let Err(why) = self.proven(&mut reader, &mut peer, theirs, ours).await {
                refuse(RefuseReason::Unproven);
                let _ = tokio::time::timeout(JOIN_TIMEOUT, closed.notified()).await;
                return Dial::Failed(format!("the partner at {} is not proven: {why}", self.cfg.partner));
            }
        }
        match verdict {
            Verdict::Accept => {}
            Verdict::Refuse(r) => {
                refuse(r);
                // Let the writer say it before the link goes.
                let _ = tokio::time::timeout(JOIN_TIMEOUT, closed.notified()).await;
                return Dial::Failed(format!(
                    "refused node {} (incarnation {incarnation}): {}",
                    first.header.node.0,
                    join::reason_text(r)
                ));
            }
            Verdict::StepDown { ours, theirs } => return Dial::StepDown(join::step_down_text(ours, theirs)),
        }
        self.out_joined.store(true, Ordering::Release);
        let t0 = Instant::now();
        let mirror = Arc::new(LinkMirror::new(out.clone(), self.sent.clone(), self.region.capacity()));
        self.resync_target.store(u64::MAX, Ordering::Release);
        self.resyncs.fetch_add(1, Ordering::Relaxed);
        let region = self.region.clone();
        let m: Arc<dyn nvram::Mirror> = mirror.clone();
        let mut attach = Some(tokio::task::spawn_blocking(move || region.attach_mirror(m)));
        self.attached.store(true, Ordering::Release);
        info!(partner = first.header.node.0, "pair: partner joined; resyncing its mirror of our journal");
        self.set_out_state("joined");
        *self.out_link.lock().unwrap_or_else(|e| e.into_inner()) = Some(out.clone());
        self.first_attempt_done();
        let mut current = false;
        // Since when the partner has acknowledged nothing while records wait for it.
        let mut waiting: Option<(Instant, u64)> = None;
        let why = loop {
            tokio::select! {
                r = async { attach.as_mut().expect("guarded").await }, if attach.is_some() => {
                    attach = None;
                    match r {
                        Ok(Ok(())) => self.resync_target.store(self.region.tail(), Ordering::Release),
                        Ok(Err(e)) => break format!("the mirror could not be attached: {e}"),
                        Err(e) => break format!("the mirror could not be attached: {e}"),
                    }
                }
                () = closed.notified() => break "the link's writer stopped".to_string(),
                f = reader.next_from(&mut peer) => {
                    let f = match f {
                        Ok(f) => f,
                        Err(why) => break why,
                    };
                    match f.message {
                        Message::Heartbeat(_) => {
                            self.beats_seen.fetch_add(1, Ordering::Relaxed);
                        }
                        Message::MirrorAck { end } if !mirror.acked(end) => {
                            self.counters.stale.fetch_add(1, Ordering::Relaxed);
                            break format!("acknowledged position {end}, beyond what was sent");
                        }
                        Message::MirrorMetaAck { head } => mirror.head_acked(head),
                        Message::Refuse { reason, incarnation } => match self.refused(reason, incarnation) {
                            Dial::Failed(why) => break why,
                            other => {
                                self.teardown(attach.take()).await;
                                return other;
                            }
                        },
                        _ => {}
                    }
                    let (shipped, acked) =
                        (self.sent.shipped.load(Ordering::Acquire), self.sent.acked.load(Ordering::Acquire));
                    waiting = match waiting {
                        _ if acked >= shipped => None,
                        Some((since, at)) if at == acked => {
                            if since.elapsed() > ACK_TIMEOUT {
                                break format!("it stopped acknowledging ({} bytes waiting)", shipped - acked);
                            }
                            Some((since, at))
                        }
                        _ => Some((Instant::now(), acked)),
                    };
                    if !current && self.mirror_current() {
                        current = true;
                        // The partner may take our sets over from its mirror from now on.
                        let end = self.sent.acked.load(Ordering::Acquire);
                        let _ = out.send(Out::Msg(Message::MirrorCurrent { end }));
                        info!(
                            took_ms = t0.elapsed().as_millis() as u64,
                            bytes = self.sent.acked.load(Ordering::Relaxed).saturating_sub(self.region.head()),
                            "pair: the partner's mirror of our journal is current; no longer degraded"
                        );
                    }
                }
            }
        };
        self.teardown(attach).await;
        Dial::Lost(why)
    }

    /// A refusal from the partner.
    fn refused(&self, reason: RefuseReason, incarnation: u64) -> Dial {
        if reason == RefuseReason::OlderIncarnation {
            return Dial::StepDown(join::step_down_text(self.me.incarnation, incarnation));
        }
        Dial::Failed(format!("the partner refused our join ({reason:?})"))
    }

    /// Ends an outgoing link: waits for an attach under way (so that it cannot attach
    /// after the detach), then detaches the mirror: appends no longer wait for it.
    async fn teardown(&self, attach: Option<tokio::task::JoinHandle<nvram::Result<()>>>) {
        *self.out_link.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(a) = attach {
            let _ = a.await;
        }
        self.region.detach_mirror();
        self.attached.store(false, Ordering::Release);
        self.out_joined.store(false, Ordering::Release);
        self.resync_target.store(u64::MAX, Ordering::Release);
    }

    /// Whether the partner holds everything our log held when its resync was shipped,
    /// and the link is up.
    pub fn mirror_current(&self) -> bool {
        let target = self.resync_target.load(Ordering::Acquire);
        self.attached.load(Ordering::Acquire) && target != u64::MAX && self.sent.acked.load(Ordering::Acquire) >= target
    }

    // ---- incoming: the partner's records to us -----------------------------------------

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let joining = Arc::new(Semaphore::new(MAX_JOINING));
        loop {
            let (sock, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!("pair: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = joining.clone().try_acquire_owned() else {
                self.counters.busy.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let _ = sock.set_nodelay(true);
            tokio::spawn(self.clone().incoming(sock, peer, permit));
        }
    }

    /// One link from the partner: its join, then its heartbeats and mirror records.
    async fn incoming(self: Arc<Self>, sock: TcpStream, from: SocketAddr, permit: tokio::sync::OwnedSemaphorePermit) {
        let (rd, wr) = sock.into_split();
        let mut reader = FrameReader::new(rd, self.counters.clone());
        let first = match tokio::time::timeout(JOIN_TIMEOUT, reader.next()).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                warn!(%from, "pair: interconnect connection refused: {e}");
                return;
            }
            Err(_) => {
                self.counters.joins.fetch_add(1, Ordering::Relaxed);
                warn!(%from, "pair: interconnect connection refused: no join within {} s", JOIN_TIMEOUT.as_secs());
                return;
            }
        };
        let (out, out_rx) = mpsc::unbounded_channel();
        let closed = Arc::new(Notify::new());
        if first.header.cluster != self.me.cluster {
            self.counters.foreign.fetch_add(1, Ordering::Relaxed);
            warn!(%from, cluster = format_args!("{:#x}", first.header.cluster.0), "pair: refused a node of another cluster");
            let refuse = Message::Refuse { reason: RefuseReason::ForeignCluster, incarnation: self.me.incarnation };
            let _ = out.send(Out::Close);
            link::writer(wr, out_rx, self.sender(), refuse, Arc::default(), closed).await;
            return;
        }
        let Message::Join { incarnation, ring, nonce: theirs } = first.message else {
            self.counters.joins.fetch_add(1, Ordering::Relaxed);
            warn!(%from, "pair: interconnect connection refused: its first frame is not a join");
            return;
        };
        let verdict = judge(&self.me, &first.header, incarnation, ring);
        let ours = key::nonce();
        let _writer = self.spawn_writer(wr, out_rx, &closed, ours);
        let node = first.header.node.0;
        let refuse = |r: RefuseReason| {
            self.counters.joins.fetch_add(1, Ordering::Relaxed);
            warn!(%from, node, incarnation, "pair: refused a join: {}", join::reason_text(r));
            let _ = out.send(Out::Msg(Message::Refuse { reason: r, incarnation: self.me.incarnation }));
            let _ = out.send(Out::Close);
        };
        let mut peer = Peer::new(&first.header);
        if join::proof_first(verdict) {
            let _ = out.send(Out::Msg(self.proof(first.header.node, &theirs, &ours)));
            if let Err(why) = self.proven(&mut reader, &mut peer, theirs, ours).await {
                warn!(%from, node, "pair: a join is not proven: {why}");
                refuse(RefuseReason::Unproven);
                let _ = tokio::time::timeout(JOIN_TIMEOUT, closed.notified()).await;
                return;
            }
        }
        match verdict {
            Verdict::Accept => {}
            Verdict::Refuse(r) => {
                refuse(r);
                closed.notified().await;
                return;
            }
            Verdict::StepDown { ours, theirs } => {
                let _ = out.send(Out::Close);
                closed.notified().await;
                self.step_down(join::step_down_text(ours, theirs));
                return;
            }
        }
        drop(permit);
        let link = self.next_link.fetch_add(1, Ordering::Relaxed);
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = rx.send(Item::NewLink { link });
        self.in_link.store(link, Ordering::Release);
        let kill = Arc::new(Notify::new());
        if let Some(old) = self.in_close.lock().unwrap_or_else(|e| e.into_inner()).replace(kill.clone()) {
            old.notify_one();
        }
        info!(%from, partner = first.header.node.0, incarnation, "pair: the partner's link joined; mirroring its journal");
        let why = loop {
            tokio::select! {
                () = kill.notified() => break "a newer link from the partner replaced it".to_string(),
                () = closed.notified() => break "closed".to_string(),
                f = reader.next_from(&mut peer) => {
                    let f = match f {
                        Ok(f) => f,
                        Err(why) => break why,
                    };
                    match f.message {
                        // The link's own heartbeats carry no sets; the state
                        // machine's carry what it knows (once it booted).
                        Message::Heartbeat(st) if st.sets.is_empty() => {
                            self.beats_seen.fetch_add(1, Ordering::Relaxed);
                        }
                        Message::MirrorMeta { head, generation, capacity } => {
                            let meta = nvram::MirrorMeta { head, generation, capacity };
                            let _ = rx.send(Item::Meta { link, meta, reply: out.clone() });
                        }
                        Message::Mirror { pos, records } => {
                            let _ = rx.send(Item::Records { link, pos, records, reply: out.clone() });
                        }
                        Message::MirrorCurrent { end } => {
                            let _ = rx.send(Item::Current { link, end });
                        }
                        m if driver::is_control(&m) => {
                            if let Some(tx) = self.control.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                                let _ = tx.send(m);
                            }
                        }
                        _ => {}
                    }
                }
            }
        };
        if self.in_link.compare_exchange(link, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            *self.in_ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        info!(%from, "pair: the partner's link ended ({why})");
    }

    // ---- what the takeover looks at --------------------------------------------------

    /// The journal whose mirror ring holds the partner's log.
    pub fn region(&self) -> &Arc<Journal> {
        &self.region
    }

    /// Either link to the partner is joined.
    pub fn partner_link_up(&self) -> bool {
        self.out_joined.load(Ordering::Acquire) || self.in_link.load(Ordering::Acquire) != 0
    }

    /// Our mirror of the partner's journal is current: the partner said so on its
    /// newest link, and that link's end (if it ended) did not change it.
    pub fn partner_mirror_current(&self) -> bool {
        let newest = self.next_link.load(Ordering::Acquire) - 1;
        newest != 0 && self.received.current.load(Ordering::Acquire) == newest
    }

    /// The partner's link to us joined at least once since start.
    pub fn ever_joined(&self) -> bool {
        self.next_link.load(Ordering::Acquire) > 1
    }

    /// When the partner's newest link to us ended, if it did and none replaced it.
    pub fn partner_link_ended(&self) -> Option<Instant> {
        if self.in_link.load(Ordering::Acquire) != 0 {
            return None;
        }
        *self.in_ended.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the partner's state-machine messages go from now on ([`driver`]).
    pub fn set_control(&self, tx: mpsc::UnboundedSender<Message>) {
        *self.control.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// Sends one of our state machine's messages to the partner on the outgoing
    /// link; false when it is not joined (the message is lost, as on a cut link:
    /// the state machine resends what must arrive).
    pub fn send_control(&self, m: Message) -> bool {
        self.out_link.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|o| o.send(Out::Msg(m)).is_ok())
    }

    /// Whether the partner acknowledged every record of our log (the mirror is
    /// attached and holds our whole log up to its tail).
    pub fn mirror_holds_all(&self) -> bool {
        self.mirror_current() && self.sent.acked.load(Ordering::Acquire) >= self.region.tail()
    }

    /// Gives the pair its state machine's driver (once, at start, with share sets).
    pub fn set_driver(&self, d: driver::Handle) {
        let _ = self.driver.set(d);
    }

    /// The state machine's driver, with share sets (operator commands go there).
    pub fn driver(&self) -> Option<&driver::Handle> {
        self.driver.get()
    }

    /// Gives the node its lease on its own set (once, at start, with share
    /// sets), which the storage heartbeat renews from now on.
    pub fn set_lease(&self, lease: Arc<sets::Lease>) {
        self.leases.add(takeover::SetId(self.cfg.node), lease.clone());
        let _ = self.lease.set(lease);
    }

    /// The leases the storage heartbeat renews ([`sets::Leases`]).
    pub fn leases(&self) -> &Arc<sets::Leases> {
        &self.leases
    }

    /// The node's lease on its own set, with share sets configured.
    pub fn lease(&self) -> Option<&Arc<sets::Lease>> {
        self.lease.get()
    }

    /// Records what is now true of one share set (replacing what was said of it).
    pub fn set_status(&self, s: sets::SetStatus) {
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        sets.retain(|o| o.set != s.set);
        sets.push(s);
        sets.sort_by_key(|s| s.set);
    }

    /// The set addresses this node holds ([`address`]).
    pub fn addresses(&self) -> &address::Addresses {
        &self.addresses
    }

    /// Our set's client connections ([`conns`]), with share sets and an
    /// interface configured (addresses that move).
    pub fn conns(&self) -> Option<&Arc<conns::Conns>> {
        self.conns.as_ref()
    }

    /// This node's pair configuration.
    pub fn config(&self) -> &PairConfig {
        &self.cfg
    }

    // ---- status ---------------------------------------------------------------------

    /// What `duet status` shows of the pair.
    pub fn status(&self) -> PairStatus {
        let c = &self.counters;
        let attached = self.attached.load(Ordering::Acquire);
        let acked = self.sent.acked.load(Ordering::Acquire).max(self.region.head());
        let tail = self.region.tail();
        let current = self.mirror_current();
        PairStatus {
            cluster: format!("{:#x}", self.cfg.cluster),
            node: self.cfg.node,
            incarnation: self.cfg.incarnation,
            listen: self.cfg.listen.to_string(),
            partner: self.cfg.partner.to_string(),
            partner_connected: self.out_joined.load(Ordering::Acquire) && self.in_link.load(Ordering::Acquire) != 0,
            degraded: !current,
            link: self.out_state.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            mirror: MirrorStatus {
                state: if current {
                    "current"
                } else if attached {
                    "resyncing"
                } else {
                    "detached"
                }
                .into(),
                tail,
                shipped: self.sent.shipped.load(Ordering::Acquire),
                acked,
                lag_bytes: tail.saturating_sub(acked),
                resyncs: self.resyncs.load(Ordering::Relaxed),
            },
            partner_mirror: PartnerMirrorStatus {
                connected: self.in_link.load(Ordering::Acquire) != 0,
                head: self.received.head.load(Ordering::Acquire),
                end: self.received.end.load(Ordering::Acquire),
                bytes_received: self.received.bytes.load(Ordering::Relaxed),
                current: self.partner_mirror_current(),
            },
            heartbeats_seen: self.beats_seen.load(Ordering::Relaxed),
            heartbeats_sent: self.beats_sent.load(Ordering::Relaxed),
            sets: self.sets.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            refused: RefusedStatus {
                corrupt: c.corrupt.load(Ordering::Relaxed),
                oversized: c.oversized.load(Ordering::Relaxed),
                foreign: c.foreign.load(Ordering::Relaxed),
                stale: c.stale.load(Ordering::Relaxed),
                joins: c.joins.load(Ordering::Relaxed),
                busy: c.busy.load(Ordering::Relaxed),
            },
        }
    }
}

/// How one outgoing link ended.
enum Dial {
    /// It never joined.
    Failed(String),
    /// It joined, then ended.
    Lost(String),
    /// The partner's configuration is newer: stop serving.
    StepDown(String),
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The pair in `duet status --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairStatus {
    /// `0x` and hex.
    pub cluster: String,
    pub node: u16,
    pub incarnation: u64,
    /// This node's interconnect address.
    pub listen: String,
    /// The partner's.
    pub partner: String,
    /// Both links are joined.
    pub partner_connected: bool,
    /// Our journal's records are not (all) in the partner's mirror: local durability only.
    pub degraded: bool,
    /// The outgoing link's state: "joined", or why it is not.
    pub link: String,
    /// Our journal in the partner's mirror.
    pub mirror: MirrorStatus,
    /// The partner's journal in our mirror ring.
    pub partner_mirror: PartnerMirrorStatus,
    pub heartbeats_seen: u64,
    pub heartbeats_sent: u64,
    /// Interconnect input refused, by kind.
    pub refused: RefusedStatus,
    /// The share sets, when configured: who serves which.
    #[serde(default)]
    pub sets: Vec<sets::SetStatus>,
}

/// Our journal as mirrored by the partner (logical ring positions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorStatus {
    /// "current", "resyncing" or "detached".
    pub state: String,
    /// The end of our published log.
    pub tail: u64,
    /// The end of what was sent on the current link.
    pub shipped: u64,
    /// The end the partner acknowledged (at least our head).
    pub acked: u64,
    /// `tail - acked`: bytes of our log the partner does not hold yet.
    pub lag_bytes: u64,
    /// Links that attached the mirror (each resyncs it) since start.
    pub resyncs: u64,
}

/// The partner's journal in our mirror ring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerMirrorStatus {
    /// The partner's link to us is joined.
    pub connected: bool,
    /// The partner's head, as it last sent it.
    pub head: u64,
    /// The end of the partner's records we hold.
    pub end: u64,
    pub bytes_received: u64,
    /// The partner said our mirror of its journal is current (takeover may use it).
    #[serde(default)]
    pub current: bool,
}

/// Interconnect input refused since start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedStatus {
    pub corrupt: u64,
    pub oversized: u64,
    pub foreign: u64,
    pub stale: u64,
    pub joins: u64,
    pub busy: u64,
}
