//! The takeover of the partner's share set (issue 14): a restart of the
//! partner's state from the mirror of its journal, in this process.
//!
//! The decision is the state machine's ([`crate::pair::driver`]): after the
//! partner's death (both detection channels silent, and the server's own rules,
//! [`crate::pair::sets::decide`]) or its hand-over (elective takeover), the node
//! claims the set at the next epoch and asks for its restore: [`take`] scans the
//! mirror ring (`nvram::Journal::scan_partner`), rebuilds the partner's state
//! model with the restart's own code ([`super::rebuild_log`]), builds a second
//! [`Server`] for the set from that model ([`Server::restored`]), gives its
//! retained handles their files back on the shared storage and keeps the log's
//! saved answers for replay ([`super::start_from`]). The driver then binds the
//! set's address. The partner's clients reconnect to the same address, reclaim
//! their durable handles, and their resent requests are answered from the
//! mirrored log.
//!
//! The taken set journals into a journal of its own in the shared storage
//! folder ([`super::taken`]), under the configured policy: the survivor restores
//! the set from it when it restarts while it holds the set, and the home node
//! when it takes the set back (a giveback, or after the survivor died:
//! [`super::handover::restore_home`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ::takeover::ownership;
use ::takeover::{ClusterId, Epoch, NodeId, SetId};
use tracing::{info, warn};

use crate::config::Config;
use crate::pair::config::Sets;
use crate::pair::Pair;
use crate::state::Server;

/// What a takeover needs besides the pair.
pub struct Taker {
    /// The node's whole configuration (every share, both sets).
    pub cfg: Config,
    pub sets: Sets,
    pub pair: Arc<Pair>,
}

impl Taker {
    pub fn cluster(&self) -> ClusterId {
        ClusterId(self.pair.config().cluster)
    }

    fn partner_set(&self) -> SetId {
        SetId(self.sets.partner.home)
    }

    /// The configuration of the server for the partner's set: its shares, its
    /// address, no admin socket, its own state directory (its id generation).
    pub fn set_config(&self) -> Config {
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

    /// The configuration of the server for our own set: its shares, no address
    /// of its own to listen on (the driver binds the set's), the admin socket
    /// (unless `admin` is false: another server of the process holds it).
    pub fn home_config(&self, admin: bool) -> Config {
        let mut cfg = self.cfg.clone();
        let set = &self.sets.own;
        cfg.shares.retain(|s| set.shares.iter().any(|n| n.eq_ignore_ascii_case(&s.name)));
        cfg.listen = Vec::new();
        if !admin {
            cfg.admin_socket = None;
            cfg.admin_socket_default = false;
        }
        cfg
    }
}

/// Ends the process at once: its partner serves its set now (it froze, and was
/// taken over), so every request it carried out from here on would be one after
/// the takeover. No drain, no checkpoint: its journal is of a set it no longer
/// holds, and at its next start it waits in standby for a giveback.
pub fn step_down_now(why: &str) -> ! {
    eprintln!("duet: {why}");
    tracing::error!("pair: {why}");
    std::process::exit(STEPPED_DOWN);
}

/// The exit status of a node that stepped down.
pub const STEPPED_DOWN: i32 = 3;

/// The partner's set, restored here and ready to be bound.
pub struct Taken {
    pub server: Arc<Server>,
    /// The set's journal ([`super::taken`]), in the storage folder.
    pub journal: Arc<::nvram::Journal>,
    /// The client connections the set's last owner listed ([`crate::pair::conns`]),
    /// read before this node lists its own there: the tickle's targets.
    pub old_conns: Vec<(std::net::SocketAddr, std::net::SocketAddr)>,
}

/// Restores the partner's set, claimed at `epoch`. Returns the set's server,
/// ready to be bound. `fence` is given after a death (a non-elective takeover),
/// with the partner's storage heartbeat as it stood when it was found dead: its
/// lease is waited out when the heartbeat has moved since; after a hand-over
/// the partner let the set go itself. With `ours` (this node held the set when
/// it stopped, and claimed it again at its start) the set is restored from the
/// journal this node kept of it in the storage folder ([`super::taken`]), and
/// goes on in it; otherwise, and when there is no such journal, from the
/// mirror of the partner's journal, into a new one.
pub async fn take(t: &Taker, epoch: Epoch, fence: Option<Option<u64>>, ours: bool) -> Result<Taken, String> {
    let t0 = Instant::now();
    let (cluster, set) = (t.cluster(), t.partner_set());
    let (partner_lease_gone, moved) = last_owner_lease_gone(t, NodeId(set.0), fence).await;
    info!(set = set.0, epoch = epoch.0, "pair: claimed the partner's set");
    let cfg = t.set_config();
    let policy = cfg.journal.policy;
    // The last owner's clients, before our own connections replace the list.
    let (dir, c) = (t.sets.storage.clone(), cfg.clone());
    let old_conns = blocking(move || Ok(crate::pair::conns::read(&dir, set).unwrap_or_default())).await?;
    // Where the set's state comes from, and the journal it goes on in.
    let reopened = match ours {
        true => {
            let dir = t.sets.storage.clone();
            blocking(move || super::taken::reopen(&dir, cluster, set, epoch, &c))
                .await
                .map_err(|e| warn!(set = set.0, "pair: {e}; restoring the set from the mirror instead"))
                .ok()
                .flatten()
        }
        false => None,
    };
    if ours && reopened.is_none() {
        warn!(set = set.0, "pair: no journal of the set we held: restoring it from the mirror (what it did since the takeover is lost)");
    }
    let kept = reopened.is_some();
    let (log, region, from) = match reopened {
        Some((region, recovery)) => (recovery.own, region, "the set's journal in the storage folder"),
        None => {
            let log = t.pair.region().scan_partner().map_err(|e| format!("cannot scan the mirror ring: {e}"))?;
            let (dir, c) = (t.sets.storage.clone(), cfg.clone());
            let region = blocking(move || super::taken::create(&dir, cluster, set, epoch, &c)).await?;
            (log, region, "the mirror")
        }
    };
    crate::failpoint::pause("restore-taken");
    let rebuilt = super::rebuild_log(&log).map_err(|e| format!("the set's log ({from}): {e}"))?;
    let (model, writes, renames, creates, appends) = match rebuilt {
        Some(r) => (Some(r.model), r.writes, r.renames, r.creates, r.appends),
        None => Default::default(),
    };
    let journal = Arc::new(
        crate::journal::NvramJournal::new(region.clone())
            .keeping_write_data(policy.survives_power_loss())
            .ops_after(&log),
    );
    let mut server = Server::restored(cfg, model).map_err(|e| e.to_string())?;
    // The set's own GUID, as its home node answered with it.
    let (storage, fresh) = (t.sets.storage.clone(), rand::random());
    server.guid = crate::pair::sets::set_guid_of(storage, set, fresh).await?;
    server.journal = journal.clone();
    server.retirer.enable(policy.survives_power_loss());
    // Our connections to the set, for the tickle of a later takeover of it.
    server.conns = Some(crate::pair::conns::Conns::new(&t.sets.storage, set));
    // Renewed by our storage heartbeat while our claim on the set is the
    // newest, as the lease on our own set is ([`crate::pair::sets::Leases`]).
    let lease = Arc::new(crate::pair::sets::Lease::default());
    lease.regain(epoch);
    t.pair.leases().add(set, lease.clone());
    for share in &server.shares {
        share.fs.set_fence(lease.clone());
    }
    server.lease = Some(lease.clone());
    let server = Arc::new(server);
    let waited = partner_lease_gone.saturating_duration_since(tokio::time::Instant::now());
    tokio::time::sleep_until(partner_lease_gone).await;
    info!(
        set = set.0,
        heartbeat_moved = moved,
        waited_ms = waited.as_millis() as u64,
        "pair: the partner's lease has run out"
    );
    // Our own lease on the set, before the first change on its disk (the redo).
    if !lease.wait_valid().await {
        t.pair.leases().remove(&lease);
        return Err("no lease on the set (storage stalled, or claimed again)".into());
    }
    // The writer's page cache may be gone with it (another machine, a power
    // loss): the answered WRITEs whose data its log holds are written again,
    // unless it ran on this boot of this kernel (its page cache outlived it, as
    // after a killed process). The writer is the partner for its mirrored
    // journal, this node for the set's journal it kept.
    let (storage, partner) = (t.sets.storage.clone(), NodeId(set.0));
    let same = tokio::task::spawn_blocking(move || match kept {
        true => super::taken::same_boot(&storage, set),
        false => crate::pair::sets::same_kernel(&storage, partner),
    })
    .await
    .unwrap_or(false);
    if same && !writes.is_empty() {
        info!(
            writes = writes.len(),
            "the set's last writer ran on this kernel: its page cache holds every answered WRITE"
        );
    }
    let writes = if policy.survives_power_loss() && !same { writes } else { Vec::new() };
    if !writes.is_empty() || !creates.is_empty() {
        let model = server.model();
        super::redo::redo(&server, &model, &writes);
        super::redo::undo_creates(&server, &model, &creates);
    }
    super::start_from(&server, &region, &journal, Some(&log), &renames, &appends).await?;
    region.set_flag(::takeover::Flag::NonElectiveReboot).map_err(|e| format!("the set's journal: {e}"))?;
    info!(
        set = set.0,
        epoch = epoch.0,
        records = log.records.len(),
        took_ms = t0.elapsed().as_millis() as u64,
        "pair: the partner's set restored from {from}"
    );
    Ok(Taken { server, journal: region, old_conns })
}

/// When the lease of a set's last owner (`owner`), which this node just
/// claimed the set from, has run out, and whether that needs a wait (the
/// owner's heartbeat moved). `fence` is given after the owner's death (a
/// non-elective claim), with the owner's storage heartbeat as it stood when it
/// was found dead; without it the owner let the set go itself.
///
/// The owner's lease may still hold: a storage beat of its that began before
/// the claim was written (it thawed just then) found the set still its own
/// and renewed the lease from when it began. Such a beat bumped the owner's
/// heartbeat before it read the claims, so before the claim was written: if
/// the heartbeat is where it was when the owner was found dead, no beat
/// renewed the lease since, and the last one that did ran out long ago (a
/// lease is shorter than the silence that counts as death). Else nothing is
/// changed on the set's disk before one lease length from here; by then every
/// beat of the owner's sees the claim. This holds for either set the owner
/// served: its own, and ours while it held it ([`crate::pair::sets::Leases`]).
pub(super) async fn last_owner_lease_gone(
    t: &Taker,
    owner: NodeId,
    fence: Option<Option<u64>>,
) -> (tokio::time::Instant, bool) {
    let claimed = tokio::time::Instant::now();
    let moved = match fence {
        None => false,
        Some(seen_beat) => {
            let storage = t.sets.storage.clone();
            let beat_now = tokio::task::spawn_blocking(move || ownership::fs::read_heartbeat(&storage, owner))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            beat_now != seen_beat
        }
    };
    (if moved { claimed + crate::pair::sets::LEASE } else { claimed }, moved)
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string())?
}

/// After the set's address was taken and bound: a tickle ACK to each client
/// connection the old owner listed ([`crate::pair::conns`]), so that a frozen
/// node's clients are reset and reconnect here now; again a second later (an
/// answer to the first that still went to the old owner). Failpoint
/// `no-tickle:1` leaves it out (a test measures what it saves).
pub async fn tickle_old_owner(
    pair: &Pair,
    set: &crate::pair::config::SetConfig,
    listed: Vec<(std::net::SocketAddr, std::net::SocketAddr)>,
) {
    if !pair.addresses().moves() || crate::failpoint::pause_ms("no-tickle").is_some() {
        return;
    }
    let clients: Vec<_> = listed.into_iter().filter(|(_, server)| *server == set.address).map(|(c, _)| c).collect();
    for round in 0..2 {
        if round > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        pair.addresses().tickle(set.address, &clients);
    }
}
