//! Handing a share set over to the partner, and getting it back (issue 14): the
//! server's part of the state machine's hand-over ([`crate::pair::driver`]).
//!
//! A hand-over is `StopReading` (the set's lease holds new requests at the
//! pipeline's gate, [`crate::pair::sets::Lease::hold`]: a delay for the client,
//! not an error), [`drain`] (the requests in flight finish), [`save`], then
//! [`flush_mirror`] and the release (the address is let go and the connections
//! closed, [`crate::pair::serving`]). The partner then claims the set one epoch
//! up and restores it, and the clients reconnect to the address it binds,
//! reclaim their durable handles and resend what was not answered.
//!
//! Where the saved state goes depends on whose set it is:
//!
//! - **our own set** (an elective takeover by the partner, `duet takeover` there
//!   or `duet move` here): a checkpoint of the set's state model, with the saved
//!   answers it carries, into our own journal, whose records the partner's mirror
//!   ring holds once [`flush_mirror`] is done; the partner restores it from there
//!   as after a death ([`super::takeover::take`]), without the wait for a lease.
//! - **the partner's set, held here** (a giveback): its journal is a file of its
//!   own in the shared storage folder ([`super::taken`]); the checkpoint goes
//!   into it and is made durable there, and nothing is copied. The home node
//!   restores the set from that file ([`restore_home`]): the state model, the
//!   saved answers (a request resent after the move is answered from them), the
//!   retained handles. It does the same when the holder died before it could
//!   give the set back (a double failure), from what the holder's journal
//!   holds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::takeover::{Epoch, Flag, SetId};
use tracing::{info, warn};

use super::takeover::Taker;
use crate::pair::Pair;
use crate::state::Server;

/// How long a hand-over waits for the requests in flight.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a hand-over waits for the partner to acknowledge our whole log.
const FLUSH: Duration = Duration::from_secs(5);

/// Waits for the requests in flight on `server` (up to [`DRAIN`]); new ones wait
/// at the gate meanwhile.
pub async fn drain(server: &Server) {
    let t0 = Instant::now();
    while !server.in_flight.idle() && t0.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if !server.in_flight.idle() {
        warn!(
            "hand-over: requests still in flight after {} s; their connections close at the release",
            DRAIN.as_secs()
        );
    }
}

/// Saves the state of `set` (served by `server`) where the node that takes it
/// next restores it from, with `flag`; returns where our journal ends. `journal`
/// is the set's own journal in the storage folder when it is the partner's set
/// held here, and `epoch` our claim on it.
pub async fn save(
    t: &Taker,
    server: &Arc<Server>,
    set: SetId,
    epoch: Epoch,
    journal: Option<Arc<::nvram::Journal>>,
    flag: Flag,
) -> u64 {
    let t0 = Instant::now();
    // The file data of every answered WRITE reaches the disk the partner reads.
    let s = server.clone();
    let _ = tokio::task::spawn_blocking(move || super::retire::flush_shares(&s)).await;
    let saved = async {
        let ticket = server.checkpoint()?;
        server.journal.durable(ticket).await?;
        server.journal.compact()
    }
    .await;
    if let Err(e) = saved {
        warn!(set = set.0, "hand-over: the set's state could not be checkpointed: {e}");
    }
    let region = t.pair.region();
    match journal {
        None => {
            if let Err(e) = region.set_flag(flag) {
                warn!("hand-over: the journal's flag: {e}");
            }
            info!(set = set.0, took_ms = t0.elapsed().as_millis() as u64, "hand-over: state saved into our journal");
        }
        Some(journal) => {
            // The checkpoint is durable in the set's journal already: its flag
            // says how this holding ended.
            match journal.set_flag(flag) {
                Ok(()) => info!(
                    set = set.0,
                    path = %super::taken::path(&t.sets.storage, set, epoch).display(),
                    used = journal.tail() - journal.head(),
                    took_ms = t0.elapsed().as_millis() as u64,
                    "hand-over: state saved into the set's journal in the storage folder"
                ),
                Err(e) => warn!(set = set.0, "hand-over: the set's journal's flag: {e}"),
            }
        }
    }
    region.tail()
}

/// Waits until the partner acknowledged our whole log (up to [`FLUSH`]).
pub async fn flush_mirror(pair: &Pair) {
    let t0 = Instant::now();
    while !pair.mirror_holds_all() && t0.elapsed() < FLUSH {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if !pair.mirror_holds_all() {
        warn!("hand-over: the partner's mirror of our journal is not current after {} s", FLUSH.as_secs());
    }
}

/// Restores our own set, claimed by us at `epoch`, from the journal the
/// partner kept of it in the storage folder while it held it (under the claim
/// before ours, [`super::taken`]): given back ([`save`]), or left by a partner
/// that died holding it. Returns the set's server, ready to be bound,
/// journaling into our own journal, and the client connections the partner
/// listed for the set ([`crate::pair::conns`]: the tickle's targets, when it
/// is frozen). `fence` is given after the partner's death (a non-elective
/// claim), with its storage heartbeat as it stood when it was found dead: its
/// lease on the set, which its own storage heartbeat renewed while it held
/// the set, is waited out before anything changes on the set's disk when the
/// heartbeat moved since ([`super::takeover::last_owner_lease_gone`]).
pub async fn restore_home(
    t: &Taker,
    epoch: Epoch,
    fence: Option<Option<u64>>,
) -> Result<(Arc<Server>, Vec<(SocketAddr, SocketAddr)>), String> {
    let t0 = Instant::now();
    let set = SetId(t.sets.own.home);
    let partner = ::takeover::NodeId(t.sets.partner.home);
    let (holder_lease_gone, moved) = super::takeover::last_owner_lease_gone(t, partner, fence).await;
    let (storage, cluster, held) = (t.sets.storage.clone(), t.cluster(), Epoch(epoch.0.saturating_sub(1)));
    let (flag, log, same, conns) = tokio::task::spawn_blocking(move || {
        let conns = crate::pair::conns::read(&storage, set).unwrap_or_default();
        super::taken::read(&storage, cluster, set, held)
            .map(|(f, l)| (f, l, super::taken::same_boot(&storage, set), conns))
    })
    .await
    .map_err(|e| e.to_string())??;
    let rebuilt = super::rebuild_log(&log).map_err(|e| format!("the set's journal: {e}"))?;
    let Some(rebuilt) = rebuilt else {
        return Err("the set's journal holds no checkpoint: nothing to restore the set from".into());
    };
    let (model, renames, appends) = (Some(rebuilt.model), rebuilt.renames, rebuilt.appends);
    // A holder that died (no hand-over: its flag is still the one a running
    // holder keeps) may have left answered WRITEs in a page cache that is gone
    // (another machine, a power loss): written again from its log, as a
    // takeover does. After a hand-over the holder flushed the shares first.
    let died = flag == Flag::NonElectiveReboot;
    let writes = if died && !same { rebuilt.writes } else { Vec::new() };
    let creates = if died { rebuilt.creates } else { Vec::new() };
    let cfg = t.home_config(false);
    let policy = cfg.journal.policy;
    let mut server = Server::restored(cfg, model).map_err(|e| e.to_string())?;
    let (storage, fresh) = (t.sets.storage.clone(), rand::random());
    server.guid = crate::pair::sets::set_guid_of(storage, set, fresh).await?;
    let lease = t.pair.lease().cloned().ok_or("no lease on our set")?;
    lease.regain(epoch);
    if !lease.wait_valid().await {
        return Err("no lease on our set (storage stalled, or claimed again)".into());
    }
    for share in &server.shares {
        share.fs.set_fence(lease.clone());
    }
    server.lease = Some(lease);
    server.pair = Some(t.pair.clone());
    let waited = holder_lease_gone.saturating_duration_since(tokio::time::Instant::now());
    tokio::time::sleep_until(holder_lease_gone).await;
    if fence.is_some() {
        info!(
            set = set.0,
            heartbeat_moved = moved,
            waited_ms = waited.as_millis() as u64,
            "pair: the holder's lease on our set has run out"
        );
    }
    let region = t.pair.region().clone();
    let journal = Arc::new(
        crate::journal::NvramJournal::new(region.clone())
            .keeping_write_data(policy.survives_power_loss())
            .ops_after(&log),
    );
    server.journal = journal.clone();
    server.retirer.enable(policy.survives_power_loss());
    let server = Arc::new(server);
    let writes = if policy.survives_power_loss() { writes } else { Vec::new() };
    if !writes.is_empty() || !creates.is_empty() {
        let model = server.model();
        super::redo::redo(&server, &model, &writes);
        super::redo::undo_creates(&server, &model, &creates);
    }
    super::start_from(&server, &region, &journal, Some(&log), &renames, &appends).await?;
    region.set_flag(Flag::NonElectiveReboot).map_err(|e| e.to_string())?;
    // Its state is in our journal now: the partner's journal of it goes.
    let storage = t.sets.storage.clone();
    let _ = tokio::task::spawn_blocking(move || super::taken::remove(&storage, set)).await;
    info!(
        set = set.0,
        epoch = epoch.0,
        records = log.records.len(),
        ?flag,
        took_ms = t0.elapsed().as_millis() as u64,
        "pair: our set restored from the partner's journal of it in the storage folder"
    );
    Ok((server, conns))
}
