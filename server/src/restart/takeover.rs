//! The takeover of a dead partner's share set (issue 14): a restart of the
//! partner's state from the mirror of its journal, in this process.
//!
//! [`watch`] looks at the partner every 100 ms and asks
//! [`crate::pair::sets::decide`] (the rules of DESIGN.md: both detection channels
//! silent, a current mirror, contact since start). [`take`] then claims the set at
//! the next epoch, scans the mirror ring (`nvram::Journal::scan_partner`), rebuilds
//! the partner's state model with the restart's own code ([`super::rebuild_log`]),
//! builds a second [`Server`] for the set from that model ([`Server::restored`]),
//! gives its retained handles their files back on the shared storage and keeps the
//! log's saved answers for replay ([`super::start_from`]), and binds the set's
//! address. The partner's clients reconnect to the same address, reclaim their
//! durable handles, and their resent requests are answered from the mirrored log.
//!
//! The taken set journals into a fresh region in memory: nothing mirrors it (the
//! survivor runs degraded for it), and it does not survive the survivor's restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::takeover::ownership;
use ::takeover::{ClusterId, Epoch, NodeId, SetId};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::Config;
use crate::pair::config::Sets;
use crate::pair::sets::{claim_next, decide, Decision, SetStatus, View, BEAT, LIVED_ON_BEATS};
use crate::pair::Pair;
use crate::state::Server;

/// How long a takeover tries to bind the set's address before it says that
/// it cannot yet.
const SAY_AFTER: Duration = Duration::from_secs(2);

/// What a takeover needs besides the pair.
pub struct Taker {
    /// The node's whole configuration (every share, both sets).
    pub cfg: Config,
    pub sets: Sets,
    pub pair: Arc<Pair>,
    /// The epoch at which this node serves its own set.
    pub own_epoch: Epoch,
}

impl Taker {
    fn cluster(&self) -> ClusterId {
        ClusterId(self.pair.config().cluster)
    }

    fn me(&self) -> NodeId {
        NodeId(self.pair.config().node)
    }

    fn partner_set(&self) -> SetId {
        SetId(self.sets.partner.home)
    }

    /// The configuration of the server for the partner's set: its shares, its
    /// address, no admin socket, its own state directory (its id generation).
    fn set_config(&self) -> Config {
        let mut cfg = self.cfg.clone();
        let set = &self.sets.partner;
        cfg.shares.retain(|s| set.shares.iter().any(|n| n.eq_ignore_ascii_case(&s.name)));
        cfg.listen = vec![set.address];
        cfg.admin_socket = None;
        cfg.admin_socket_default = false;
        cfg.state_dir =
            Some(self.cfg.state_dir().unwrap_or_else(|| PathBuf::from("duet-data")).join(format!("set-{}", set.home)));
        cfg.pair = None;
        cfg
    }
}

/// Every 100 ms, for as long as the node runs: fences this node (it exits at once,
/// `step_down_now`) when a newer claim than its own is on its own set, and takes
/// the partner's set over once [`decide`] says so, handing the set's server and its
/// bound listener to `serve`.
pub async fn watch(t: Taker, serve: impl Fn(Arc<Server>, TcpListener) + Send + Sync + 'static) {
    let storage = t.sets.storage.clone();
    let partner = NodeId(t.sets.partner.home);
    let serve = Arc::new(serve);
    let mut last_beat: Option<u64> = None;
    let mut beat_moved = Instant::now();
    let mut reported: Option<Decision> = None;
    let mut ended_at_beat: Option<(Instant, Option<u64>)> = None;
    let mut taken = false;
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // First of all after a freeze: is our own set still ours?
        if let Some(why) = own_set_taken(&t).await {
            t.pair.addresses().release(t.sets.own.address);
            step_down_now(&why);
        }
        if taken {
            continue;
        }
        let dir = storage.clone();
        let beat = tokio::task::spawn_blocking(move || ownership::fs::read_heartbeat(&dir, partner))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        if beat.is_some() && beat != last_beat {
            last_beat = beat;
            beat_moved = Instant::now();
        }
        // The partner's heartbeat counter when its link to us was seen to end.
        let ended = t.pair.partner_link_ended();
        if ended != ended_at_beat.map(|(e, _)| e) {
            ended_at_beat = ended.map(|e| (e, last_beat));
        }
        let view = View {
            links_up: t.pair.partner_link_up(),
            storage_silent: beat_moved.elapsed(),
            ever_joined: t.pair.ever_joined(),
            mirror_current: t.pair.partner_mirror_current(),
            lived_on: match (ended_at_beat, last_beat) {
                (Some((_, at_end)), Some(now)) => now > at_end.unwrap_or(0) + LIVED_ON_BEATS,
                _ => false,
            },
        };
        let d = decide(&view);
        if reported != Some(d) {
            match d {
                Decision::Wait => {}
                Decision::InterconnectOnly => {
                    warn!("pair: the partner's links are down but its storage heartbeat goes on: not taking over")
                }
                Decision::Refuse(why) => {
                    warn!(set = t.sets.partner.home, "pair: the partner is dead; its set is NOT taken over: {why}");
                    t.pair.set_status(SetStatus::new(&t.sets.partner, format!("refused: {why}"), Epoch(0)));
                }
                Decision::Take => {}
            }
            reported = Some(d);
        }
        if d != Decision::Take {
            continue;
        }
        info!(
            set = t.sets.partner.home,
            ?view,
            "pair: the partner is dead (links down, storage heartbeat still): taking its set over"
        );
        t.pair.set_status(SetStatus::new(&t.sets.partner, "taking over", Epoch(0)));
        taken = true;
        match take(&t, last_beat).await {
            Ok((server, epoch)) => {
                let (pair, set, serve) = (t.pair.clone(), t.sets.partner.clone(), serve.clone());
                let storage = t.sets.storage.clone();
                tokio::spawn(async move {
                    let listener = bind(&pair, set.address).await;
                    pair.set_status(SetStatus::new(&set, "serving", epoch));
                    eprintln!("duet: took over set {} (epoch {}) on {}", set.home, epoch.0, set.address);
                    info!(set = set.home, epoch = epoch.0, address = %set.address, "pair: serving the partner's set");
                    serve(server, listener);
                    tickle_old_owner(&pair, &storage, &set).await;
                });
            }
            Err(why) => {
                warn!(set = t.sets.partner.home, "pair: the takeover failed: {why}");
                t.pair.set_status(SetStatus::new(&t.sets.partner, format!("takeover failed: {why}"), Epoch(0)));
            }
        }
    }
}

/// Ends the process at once: its partner serves its set now (it froze, and was
/// taken over), so every request it carried out from here on would be one after
/// the takeover. No drain, no checkpoint: its journal is of a set it no longer
/// holds, and at its next start it waits ([`crate::pair::sets::own_set_at_start`]).
fn step_down_now(why: &str) -> ! {
    eprintln!("duet: {why}");
    tracing::error!("pair: {why}");
    std::process::exit(STEPPED_DOWN);
}

/// The exit status of a node that stepped down.
pub const STEPPED_DOWN: i32 = 3;

/// Why this node must step down, when a claim newer than its own is on its own
/// set (its partner took it over, as after this node froze); `None` while it
/// is ours, or when the claims cannot be read.
async fn own_set_taken(t: &Taker) -> Option<String> {
    let (dir, cluster, me) = (t.sets.storage.clone(), t.cluster(), t.me());
    let set = SetId(t.sets.own.home);
    let newest = tokio::task::spawn_blocking(move || ownership::fs::read(&dir, cluster).map(|o| o.newest(set)))
        .await
        .ok()?
        .ok()??;
    if newest.epoch > t.own_epoch && newest.owner != Some(me) {
        let owner = newest.owner.map_or("an unreadable claim".to_string(), |o| format!("node {}", o.0));
        return Some(format!(
            "our set {} was claimed by {owner} at epoch {} (ours: {}): stepping down",
            set.0, newest.epoch.0, t.own_epoch.0
        ));
    }
    None
}

/// Takes the partner's set: claim, rebuild from the mirror, restore. Returns the
/// set's server, ready to serve, and the epoch claimed.
pub async fn take(t: &Taker, seen_beat: Option<u64>) -> Result<(Arc<Server>, Epoch), String> {
    let t0 = Instant::now();
    let (storage, cluster, set, me) = (t.sets.storage.clone(), t.cluster(), t.partner_set(), t.me());
    crate::failpoint::pause("claim");
    let epoch = tokio::task::spawn_blocking(move || claim_next(&storage, cluster, set, me))
        .await
        .map_err(|e| e.to_string())??;
    // The partner's lease may still hold: a storage beat of its that began
    // before the claim was written (it thawed just then) found the set still
    // its own and renewed the lease from when it began. Such a beat bumped the
    // partner's heartbeat before it read the claims, so before the claim was
    // written: if the heartbeat is where it was when the partner was found
    // dead (`seen_beat`), no beat renewed the lease since, and the last one
    // that did ran out long ago (a lease is shorter than the silence that
    // counts as death). Else nothing is changed on the set's disk before one
    // lease length from here (the mirror is scanned and the model rebuilt
    // meanwhile); by then every beat of the partner's sees the claim.
    let claimed = tokio::time::Instant::now();
    let (storage, partner) = (t.sets.storage.clone(), NodeId(set.0));
    let beat_now = tokio::task::spawn_blocking(move || ownership::fs::read_heartbeat(&storage, partner))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    let moved = beat_now != seen_beat;
    let partner_lease_gone = if moved { claimed + crate::pair::sets::LEASE } else { claimed };
    info!(set = set.0, epoch = epoch.0, "pair: claimed the partner's set");
    let log = t.pair.region().scan_partner().map_err(|e| format!("cannot scan the mirror ring: {e}"))?;
    let rebuilt = super::rebuild_log(&log).map_err(|e| format!("the mirrored log: {e}"))?;
    let (model, writes, renames, creates, appends) = match rebuilt {
        Some(r) => (Some(r.model), r.writes, r.renames, r.creates, r.appends),
        None => Default::default(),
    };
    let cfg = t.set_config();
    let policy = cfg.journal.policy;
    let region = ::nvram::Journal::create(
        ::nvram::MemStorage::new(cfg.journal.size as usize),
        ::nvram::Options::new(cluster, NodeId(set.0), ::nvram::Durability::None),
    )
    .map_err(|e| format!("cannot make the set's journal: {e}"))?;
    let region = Arc::new(region);
    let journal = Arc::new(crate::journal::NvramJournal::new(region.clone()).keeping_write_data(false).ops_after(&log));
    let mut server = Server::restored(cfg, model).map_err(|e| e.to_string())?;
    // The set's own GUID, as its home node answered with it.
    let (storage, fresh) = (t.sets.storage.clone(), rand::random());
    server.guid = tokio::task::spawn_blocking(move || crate::pair::sets::set_guid(&storage, set, fresh))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the set's server GUID: {e}"))?;
    server.journal = journal.clone();
    server.retirer.enable(false);
    let server = Arc::new(server);
    let waited = partner_lease_gone.saturating_duration_since(tokio::time::Instant::now());
    tokio::time::sleep_until(partner_lease_gone).await;
    info!(
        set = set.0,
        heartbeat_moved = moved,
        waited_ms = waited.as_millis() as u64,
        "pair: the partner's lease has run out"
    );
    // The partner's page cache may be gone with it (another machine): the
    // answered WRITEs whose data its log holds are written again, unless it ran
    // on this kernel (then its page cache outlived it, as after a killed process).
    let (storage, partner) = (t.sets.storage.clone(), NodeId(set.0));
    let same =
        tokio::task::spawn_blocking(move || crate::pair::sets::same_kernel(&storage, partner)).await.unwrap_or(false);
    if same && !writes.is_empty() {
        info!(writes = writes.len(), "the partner ran on this kernel: its page cache holds every answered WRITE");
    }
    let writes = if policy.survives_power_loss() && !same { writes } else { Vec::new() };
    if !writes.is_empty() || !creates.is_empty() {
        let model = server.model();
        super::redo::redo(&server, &model, &writes);
        super::redo::undo_creates(&server, &model, &creates);
    }
    super::start_from(&server, &region, &journal, Some(&log), &renames, &appends).await?;
    tokio::spawn(super::retire::run(server.clone(), false));
    info!(
        set = set.0,
        epoch = epoch.0,
        records = log.records.len(),
        took_ms = t0.elapsed().as_millis() as u64,
        "pair: the partner's set restored from the mirror"
    );
    Ok((server, epoch))
}

/// Takes the set's address on this node's interface ([`crate::pair::address`]:
/// added and announced, when addresses move) and binds it, trying again until
/// it is free: a killed node's listening socket takes a moment to go, and on
/// one host (addresses that do not move) a frozen one's stays until it thaws
/// (and steps down, [`watch`]) or dies.
async fn bind(pair: &Pair, addr: std::net::SocketAddr) -> TcpListener {
    if let Err(e) = pair.addresses().take(addr) {
        warn!(%addr, "pair: cannot take the partner's set's address: {e}");
    }
    let t0 = Instant::now();
    let mut said = false;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                if !said && t0.elapsed() > SAY_AFTER {
                    warn!(%addr, "pair: cannot bind the partner's set's address yet ({e}): a frozen partner keeps it; trying on");
                    said = true;
                }
                tokio::time::sleep(BEAT).await;
            }
        }
    }
}

/// After the set's address was taken and bound: a tickle ACK to each client
/// connection the old owner listed ([`crate::pair::conns`]), so that a frozen
/// node's clients are reset and reconnect here now; again a second later (an
/// answer to the first that still went to the old owner). Failpoint
/// `no-tickle:1` leaves it out (a test measures what it saves).
async fn tickle_old_owner(pair: &Pair, storage: &std::path::Path, set: &crate::pair::config::SetConfig) {
    if !pair.addresses().moves() || crate::failpoint::pause_ms("no-tickle").is_some() {
        return;
    }
    let (dir, id) = (storage.to_path_buf(), SetId(set.home));
    let listed = tokio::task::spawn_blocking(move || crate::pair::conns::read(&dir, id)).await;
    let clients: Vec<_> = match listed {
        Ok(Ok(l)) => l.into_iter().filter(|(_, server)| *server == set.address).map(|(c, _)| c).collect(),
        Ok(Err(e)) => {
            warn!(set = set.home, "pair: cannot read the old owner's connections (no tickle): {e}");
            return;
        }
        Err(_) => return,
    };
    for round in 0..2 {
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        pair.addresses().tickle(set.address, &clients);
    }
}
