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
//! The taken set journals into a fresh region in memory: nothing mirrors it (the
//! survivor runs degraded for it), and it does not survive the survivor's
//! restart. A giveback saves it into the shared storage folder, where the home
//! node restores it from ([`super::handover`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ::takeover::ownership;
use ::takeover::{ClusterId, Epoch, NodeId, SetId};
use tracing::info;

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

/// Restores the partner's set, claimed at `epoch`, from the mirror of its
/// journal. Returns the set's server, ready to be bound. `fence` is given after
/// a death (a non-elective takeover), with the partner's storage heartbeat as it
/// stood when it was found dead: its lease is waited out when the heartbeat has
/// moved since; after a hand-over the partner let the set go itself.
pub async fn take(
    t: &Taker,
    epoch: Epoch,
    fence: Option<Option<u64>>,
) -> Result<(Arc<Server>, ::nvram::MemStorage), String> {
    let t0 = Instant::now();
    let (cluster, set) = (t.cluster(), t.partner_set());
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
    let moved = match fence {
        None => false,
        Some(seen_beat) => {
            let (storage, partner) = (t.sets.storage.clone(), NodeId(set.0));
            let beat_now = tokio::task::spawn_blocking(move || ownership::fs::read_heartbeat(&storage, partner))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            beat_now != seen_beat
        }
    };
    let partner_lease_gone = if moved { claimed + crate::pair::sets::LEASE } else { claimed };
    info!(set = set.0, epoch = epoch.0, "pair: claimed the partner's set");
    let log = t.pair.region().scan_partner().map_err(|e| format!("cannot scan the mirror ring: {e}"))?;
    crate::failpoint::pause("restore-taken");
    let rebuilt = super::rebuild_log(&log).map_err(|e| format!("the mirrored log: {e}"))?;
    let (model, writes, renames, creates, appends) = match rebuilt {
        Some(r) => (Some(r.model), r.writes, r.renames, r.creates, r.appends),
        None => Default::default(),
    };
    let cfg = t.set_config();
    let policy = cfg.journal.policy;
    let storage_image = ::nvram::MemStorage::new(cfg.journal.size as usize);
    let region = ::nvram::Journal::create(
        storage_image.clone(),
        ::nvram::Options::new(cluster, NodeId(set.0), ::nvram::Durability::None),
    )
    .map_err(|e| format!("cannot make the set's journal: {e}"))?;
    let region = Arc::new(region);
    let journal = Arc::new(crate::journal::NvramJournal::new(region.clone()).keeping_write_data(false).ops_after(&log));
    let mut server = Server::restored(cfg, model).map_err(|e| e.to_string())?;
    // The set's own GUID, as its home node answered with it.
    let (storage, fresh) = (t.sets.storage.clone(), rand::random());
    server.guid = crate::pair::sets::set_guid_of(storage, set, fresh).await?;
    server.journal = journal.clone();
    server.retirer.enable(false);
    // Valid until the set is handed back: nobody else may serve it meanwhile.
    let lease = Arc::new(crate::pair::sets::Lease::unlimited());
    for share in &server.shares {
        share.fs.set_fence(lease.clone());
    }
    server.lease = Some(lease);
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
    info!(
        set = set.0,
        epoch = epoch.0,
        records = log.records.len(),
        took_ms = t0.elapsed().as_millis() as u64,
        "pair: the partner's set restored from the mirror"
    );
    Ok((server, storage_image))
}

/// After the set's address was taken and bound: a tickle ACK to each client
/// connection the old owner listed ([`crate::pair::conns`]), so that a frozen
/// node's clients are reset and reconnect here now; again a second later (an
/// answer to the first that still went to the old owner). Failpoint
/// `no-tickle:1` leaves it out (a test measures what it saves).
pub async fn tickle_old_owner(pair: &Pair, storage: &std::path::Path, set: &crate::pair::config::SetConfig) {
    if !pair.addresses().moves() || crate::failpoint::pause_ms("no-tickle").is_some() {
        return;
    }
    let (dir, id) = (storage.to_path_buf(), SetId(set.home));
    let listed = tokio::task::spawn_blocking(move || crate::pair::conns::read(&dir, id)).await;
    let clients: Vec<_> = match listed {
        Ok(Ok(l)) => l.into_iter().filter(|(_, server)| *server == set.address).map(|(c, _)| c).collect(),
        Ok(Err(e)) => {
            tracing::warn!(set = set.home, "pair: cannot read the old owner's connections (no tickle): {e}");
            return;
        }
        Err(_) => return,
    };
    for round in 0..2 {
        if round > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        pair.addresses().tickle(set.address, &clients);
    }
}
