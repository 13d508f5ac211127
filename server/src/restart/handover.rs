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
//! - **the partner's set, held here** (a giveback): its journal is a region in
//!   memory, which no mirror holds; the checkpoint goes into it, and the region's
//!   image into the shared storage folder (`handoff-<set>-<epoch>`, written to a
//!   temporary name, synced, renamed). The home node restores the set from that
//!   file ([`restore_home`]): the state model, the saved answers (a request
//!   resent after the move is answered from them), the retained handles.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::takeover::{Epoch, Flag, NodeId, SetId};
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
/// next restores it from, with `flag`; returns where our journal ends. `image`
/// is the set's journal in memory when it is the partner's set held here, and
/// `epoch` our claim on it.
pub async fn save(
    t: &Taker,
    server: &Arc<Server>,
    set: SetId,
    epoch: Epoch,
    image: Option<::nvram::MemStorage>,
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
    match image {
        None => {
            if let Err(e) = region.set_flag(flag) {
                warn!("hand-over: the journal's flag: {e}");
            }
            info!(set = set.0, took_ms = t0.elapsed().as_millis() as u64, "hand-over: state saved into our journal");
        }
        Some(image) => {
            let path = handoff_path(&t.sets.storage, set, epoch);
            let bytes = image.current_image();
            let p = path.clone();
            match tokio::task::spawn_blocking(move || write_synced(&p, &bytes)).await {
                Ok(Ok(())) => info!(
                    set = set.0,
                    path = %path.display(),
                    took_ms = t0.elapsed().as_millis() as u64,
                    "hand-over: the set's journal saved into the storage folder"
                ),
                Ok(Err(e)) => warn!(path = %path.display(), "hand-over: cannot save the set's journal: {e}"),
                Err(e) => warn!("hand-over: {e}"),
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

/// Where the journal of `set`, held at `epoch` and given back, is saved.
pub fn handoff_path(storage: &Path, set: SetId, epoch: Epoch) -> PathBuf {
    storage.join(format!("handoff-{:05}-{:020}", set.0, epoch.0))
}

/// Writes `bytes` to `path` whole or not at all: a temporary file, synced, renamed.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Restores our own set, given back by the partner and claimed by us at `epoch`,
/// from the journal it saved into the storage folder ([`save`]); returns the
/// set's server, ready to be bound, journaling into our own journal.
pub async fn restore_home(t: &Taker, epoch: Epoch) -> Result<Arc<Server>, String> {
    let t0 = Instant::now();
    let set = SetId(t.sets.own.home);
    let path = handoff_path(&t.sets.storage, set, Epoch(epoch.0.saturating_sub(1)));
    let p = path.clone();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(&p))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the set's saved journal {}: {e}", path.display()))?;
    let opts = ::nvram::Options::new(t.cluster(), NodeId(set.0), ::nvram::Durability::None);
    let (_, recovery) = ::nvram::Journal::open(::nvram::MemStorage::from_image(bytes), opts)
        .map_err(|e| format!("the set's saved journal {}: {e}", path.display()))?;
    let log = recovery.own;
    let rebuilt = super::rebuild_log(&log).map_err(|e| format!("the set's saved journal: {e}"))?;
    let (model, renames, appends) = match rebuilt {
        Some(r) => (Some(r.model), r.renames, r.appends),
        None => Default::default(),
    };
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
    let region = t.pair.region().clone();
    let journal = Arc::new(
        crate::journal::NvramJournal::new(region.clone())
            .keeping_write_data(policy.survives_power_loss())
            .ops_after(&log),
    );
    server.journal = journal.clone();
    server.retirer.enable(policy.survives_power_loss());
    let server = Arc::new(server);
    super::start_from(&server, &region, &journal, Some(&log), &renames, &appends).await?;
    region.set_flag(Flag::NonElectiveReboot).map_err(|e| e.to_string())?;
    let p = path.clone();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(p)).await;
    info!(
        set = set.0,
        epoch = epoch.0,
        records = log.records.len(),
        took_ms = t0.elapsed().as_millis() as u64,
        "pair: our set restored from what the partner saved"
    );
    Ok(server)
}

#[cfg(test)]
mod tests {
    use ::nvram::{ClusterId, Durability, MemStorage, Options};

    use super::*;
    use crate::journal::{Journal as _, NvramJournal};
    use crate::model::tests::session_with_tree;
    use crate::model::Model;

    /// The journal of a set held away from home, saved into the storage folder
    /// as a giveback does, opens again there and rebuilds the same model: what
    /// the home node restores.
    #[test]
    fn a_set_s_journal_saved_for_a_giveback_rebuilds_its_model() {
        let (cluster, set) = (ClusterId(7), SetId(1));
        let opts = || Options::new(cluster, NodeId(set.0), Durability::None);
        let storage = MemStorage::new(1 << 20);
        let region = Arc::new(::nvram::Journal::create(storage.clone(), opts()).unwrap());
        let j = NvramJournal::new(region);
        let mut live = Model::new();
        live.add_set(ids::SetId(0), 5).unwrap();
        session_with_tree(&mut live, ids::SetId(0));
        j.checkpoint(&live.checkpoint()).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let path = handoff_path(dir.path(), set, Epoch(2));
        assert!(path.ends_with("handoff-00001-00000000000000000002"), "{}", path.display());
        write_synced(&path, &storage.current_image()).unwrap();
        assert!(!path.with_extension("tmp").exists(), "the temporary file was renamed");

        let bytes = std::fs::read(&path).unwrap();
        let (_, recovery) = ::nvram::Journal::open(MemStorage::from_image(bytes), opts()).unwrap();
        let rebuilt = crate::restart::rebuild_log(&recovery.own).unwrap().expect("a model to restore");
        assert_eq!(rebuilt.model, live);
    }
}
