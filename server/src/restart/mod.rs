//! Sessions that survive a restart: the NVRAM journal opened at start, the
//! state model rebuilt from it, the retained handles given back their files,
//! and the elective reboot on SIGTERM (DESIGN.md, "The journal"; issue 13).
//!
//! # At start ([`open`], [`rebuild`], [`restore`])
//!
//! 1. The journal file is opened, or created (mode 0600: it holds session
//!    keys) with the configured size, and locked (`flock`) so that no second
//!    server uses it. A file that is not a journal, or one of another cluster
//!    or node, is refused with a clear error and left as it was.
//! 2. The flag in its header says how the last run ended. A fresh journal
//!    (flag "clean shutdown") has nothing to restore. After an elective
//!    reboot (SIGTERM) or a non-elective one (SIGKILL, a crash, a power
//!    loss) the model is rebuilt: the last checkpoint, then the delta of
//!    every point-3 and state-change record after it, in log order, by the
//!    same [`crate::model::Model::apply`] the live server uses.
//! 3. The rebuilt model becomes the live one, at the next id generation (so
//!    no id of the last run is handed out again). What a restart ends is
//!    recorded as deltas: sessions and tree connects end (clients
//!    authenticate again, naming their old session as PreviousSessionId),
//!    opens that are not durable close, and durable opens become retained
//!    handles, disconnected now, reclaimable with DHnC or DH2C until their
//!    timeout. Each retained handle gets its file back: reopened by its share
//!    and path, and accepted only when the file's id ([`crate::fs::uid`]) is
//!    the one the model names (a file replaced meanwhile drops the handle),
//!    with its share modes, byte-range locks, delete-on-close, and oplock or
//!    lease as the model has it, a break in progress included (its notice
//!    goes again when the holder reclaims the handle).
//! 4. The operations found in the log are retired (their saved answers kept
//!    for replay for a while, [`retire`]), a checkpoint of the live model is
//!    made durable, and the flag is set to "non-elective reboot": should the
//!    process die from now on, the next start restores.
//!
//! # Takeover ([`takeover`])
//!
//! The same restore, from the partner's log in the mirror ring, when a pair
//! member takes over its dead partner's share set; the set then journals into
//! a journal of its own in the shared storage folder ([`taken`]), from which
//! the holder's restart and the set's home node restore it.
//!
//! # Elective reboot ([`elective_reboot`])
//!
//! SIGTERM: no new connection is accepted, the requests in flight are given
//! a moment to finish, a checkpoint is made durable and the flag set to
//! "elective reboot".

pub mod appends;
pub mod handover;
pub mod redo;
mod reopen;
pub mod retire;
pub mod takeover;
pub mod taken;

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::nvram::{ClusterId, Durability, Flag, NodeId, Options, Recovery};
use tracing::{info, warn};

use crate::config::{Config, JournalPolicy};
use crate::error::RunError;
use crate::model::{Delta, Model};
use crate::state::{record, Server};

/// The cluster and node a single node's journal belongs to (the pair gives
/// each node its own).
pub const CLUSTER: ClusterId = ClusterId(1);
/// See [`CLUSTER`].
pub const NODE: NodeId = NodeId(1);

/// An opened journal.
pub struct Opened {
    pub region: Arc<::nvram::Journal>,
    /// The server's journal over the region.
    pub journal: Arc<crate::journal::NvramJournal>,
    /// What was in it, `None` for a journal created now.
    pub recovery: Option<Recovery>,
    pub path: PathBuf,
    pub policy: JournalPolicy,
    /// Held open for the `flock` that keeps a second server out.
    _lock: File,
}

pub(crate) fn durability(p: JournalPolicy) -> Durability {
    match p {
        JournalPolicy::Group => Durability::GroupCommit,
        JournalPolicy::Msync => Durability::PerRecord,
        JournalPolicy::Process => Durability::None,
        JournalPolicy::Pmem => Durability::Pmem,
    }
}

/// The cluster and node the journal belongs to: the pair's ([`crate::pair`]),
/// else [`CLUSTER`] and [`NODE`].
pub fn identity(cfg: &Config) -> (ClusterId, NodeId) {
    match &cfg.pair {
        Some(p) => (ClusterId(p.cluster), NodeId(p.node)),
        None => (CLUSTER, NODE),
    }
}

fn journal_error(path: &Path, e: impl std::fmt::Display) -> RunError {
    RunError::Journal(path.to_path_buf(), e.to_string())
}

/// Opens (or creates) the journal that `cfg` names; `None` when it names
/// none. Blocks: call it before serving.
pub fn open(cfg: &Config) -> Result<Option<Opened>, RunError> {
    let Some(path) = cfg.journal_path() else {
        return Ok(None);
    };
    let policy = cfg.journal.policy;
    let (cluster, node) = identity(cfg);
    // The server's records come at MB/s: a page fault per 4 KiB when the tail comes
    // round costs nothing measurable, and its resident memory then follows its live
    // records instead of the whole ring (issue 16's peak PSS).
    let opts = Options::new(cluster, node, durability(policy)).releasing_free(true);
    let exists = path.exists();
    if !exists {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| journal_error(&path, e))?;
        }
        // Created empty with mode 0600 first, so the mapping never exists
        // with wider permissions; nvram sizes and formats it.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| journal_error(&path, e))?;
    }
    let lock_file = std::fs::OpenOptions::new().read(true).open(&path).map_err(|e| journal_error(&path, e))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(lock_file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(journal_error(&path, format!("in use by another server ({e})")));
    }
    let empty = std::fs::metadata(&path).map_err(|e| journal_error(&path, e))?.len() == 0;
    let (region, recovery) = if empty {
        let j = match ::nvram::Journal::create_file(&path, cfg.journal.size, opts) {
            Ok(j) => j,
            Err(e) => {
                // Made by this start and never a journal: not left behind.
                if !exists {
                    let _ = std::fs::remove_file(&path);
                }
                return Err(journal_error(&path, e));
            }
        };
        info!(path = %path.display(), size = cfg.journal.size, policy = policy.name(), "journal created");
        (j, None)
    } else {
        let (j, r) = ::nvram::Journal::open_file(&path, opts).map_err(|e| journal_error(&path, e))?;
        info!(path = %path.display(), flag = ?r.flag, policy = policy.name(), "journal opened");
        (j, Some(r))
    };
    let region = Arc::new(region);
    let journal =
        Arc::new(crate::journal::NvramJournal::new(region.clone()).keeping_write_data(policy.survives_power_loss()));
    Ok(Some(Opened { region, journal, recovery, path, policy, _lock: lock_file }))
}

/// The server's GUID ([MS-SMB2] 3.3.1.5 ServerGuid), kept in a file beside
/// the journal (`nvram.guid` for `nvram`), made on the first start: a
/// client that reconnects after a restart meets the same server, as it
/// would a Windows server (multichannel binds and persistent handles are
/// per server). A file that cannot be read or made, or holds no GUID, is
/// a clear error at start.
pub fn server_guid(journal: &Path) -> Result<[u8; 16], RunError> {
    let path = journal.with_extension("guid");
    match std::fs::read_to_string(&path) {
        Ok(text) => crate::state::parse_guid(text.trim()).ok_or_else(|| {
            RunError::Journal(path.clone(), "holds no server GUID (32 hex digits); remove it to make a new one".into())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let guid: [u8; 16] = rand::random();
            std::fs::write(&path, format!("{}\n", crate::state::guid_text(&guid)))
                .map_err(|e| journal_error(&path, e))?;
            info!(path = %path.display(), guid = %crate::state::guid_text(&guid), "server GUID made");
            Ok(guid)
        }
        Err(e) => Err(journal_error(&path, e)),
    }
}


/// Whether this start follows the last run on the same boot of the kernel
/// (its boot id, `/proc/sys/kernel/random/boot_id`, is the one the last
/// run recorded in a file beside the journal, `nvram.boot`), and records
/// this boot's. On the same boot the page cache survived whatever ended
/// the last run (a killed process), so the file data of every answered
/// WRITE is there and nothing needs writing again ([`redo`]); after a
/// power loss or a kernel crash the boot id differs. Without a boot id,
/// or without the file, the answer is no: redo, to be safe.
pub fn same_boot(journal: &Path) -> bool {
    let path = journal.with_extension("boot");
    let now = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let last = std::fs::read_to_string(&path).ok().map(|s| s.trim().to_string());
    let same = now.is_some() && now == last;
    if let Some(now) = &now {
        if let Err(e) = std::fs::write(&path, format!("{now}\n")) {
            warn!(path = %path.display(), "cannot record the boot id: {e} (every restart will redo)");
        }
    }
    same
}

/// The model as the last run left it, rebuilt from the journal's last
/// checkpoint and the deltas after it; `None` when there is nothing to
/// restore (a fresh journal, or one that was shut down cleanly).
pub fn rebuild(recovery: &Recovery) -> Result<Option<Model>, String> {
    Ok(rebuild_with_redo(recovery)?.map(|r| r.model))
}

/// What the log says beyond the model.
pub struct Rebuilt {
    pub model: Model,
    /// The answered WRITEs to carry out again ([`redo`]).
    pub writes: Vec<redo::Redo>,
    /// The renames under way when the node died, by open
    /// ([`redo::Collector::renames_in_flight`]).
    pub renames: std::collections::HashMap<u64, String>,
    /// The exclusive CREATEs under way when the node died
    /// ([`redo::Collector::creates_in_flight`]).
    pub creates: Vec<(String, String, [u8; 16])>,
    /// The appends under way when the node died ([`appends::in_flight`]).
    pub appends: Vec<appends::InFlight>,
}

/// [`rebuild`], and what else the log holds for the restore ([`Rebuilt`]).
pub fn rebuild_with_redo(recovery: &Recovery) -> Result<Option<Rebuilt>, String> {
    match recovery.flag {
        Flag::ElectiveReboot | Flag::NonElectiveReboot => {}
        Flag::CleanShutdown => return Ok(None),
        // The partner restores those; a node alone has nothing of its own.
        Flag::ElectiveTakeover | Flag::NonElectiveTakeover => return Ok(None),
    }
    rebuild_log(&recovery.own)
}

/// [`rebuild_with_redo`] from one log, whatever the flag: a node's own log
/// after a restart, or the partner's log from the mirror ring at a takeover
/// ([`crate::restart::takeover`]).
pub fn rebuild_log(log: &::nvram::LogRecovery) -> Result<Option<Rebuilt>, String> {
    let Some(ck) = &log.checkpoint else {
        // Every run checkpoints before it serves: no checkpoint means the
        // journal never served.
        return Ok(None);
    };
    // The model's checkpoint, without the saved answers it may carry.
    let parts = crate::journal::carry::parts(&ck.payload);
    let mut model = Model::restore(parts.state).map_err(|e| format!("the checkpoint does not decode: {e}"))?;
    let set = ids::SetId(0);
    let mut writes = redo::Collector::default();
    // The requests it carries are of operations under way when it was taken
    // (a rename waiting for lease breaks): as if their point-1 records were in
    // the log, which may have let them go.
    if let Some(bytes) = parts.requests {
        let requests = crate::journal::carry::decode_requests(bytes)
            .map_err(|e| format!("the requests the checkpoint carried do not decode: {e}"))?;
        for (op, frame) in requests {
            writes.note_frame(op.0, frame);
        }
    }
    let mut applied = 0usize;
    for r in &log.records {
        if r.kind == ::nvram::Kind::PreAck {
            writes.note_frame(r.op.0, &r.payload);
            continue;
        }
        let Some((body, delta)) = r.completion() else {
            continue;
        };
        let batch = if delta.is_empty() {
            Vec::new()
        } else {
            Delta::decode_batch(delta).map_err(|e| format!("record {} does not decode: {e}", r.seq))?
        };
        writes.note_answer(&model, set, r.op.0, r.element, r.status().unwrap_or(u32::MAX), body, &batch);
        if batch.is_empty() {
            continue;
        }
        writes.note_deltas(&batch);
        // Records before the checkpoint are of operations that were live when
        // it was taken: what they changed is in it.
        if r.seq < ck.seq {
            continue;
        }
        for d in &batch {
            if let Err(e) = record::apply_with_carry(&mut model, d) {
                // A delta the live model took must be taken again; one that is
                // not is a defect, reported, and the rest still restored.
                warn!(seq = r.seq, ?d, "restore: the model refused a journaled delta: {e}");
            }
            applied += 1;
        }
    }
    info!(checkpoint = ck.seq, deltas = applied, "state model rebuilt from the journal");
    let renames = writes.renames_in_flight();
    let creates = writes.creates_in_flight(&model, set);
    let appends = appends::in_flight(log, &model);
    Ok(Some(Rebuilt { model, writes: writes.into_redo(), renames, creates, appends }))
}

/// What a restart ends, as deltas of `model` (see the module doc, step 3):
/// durable opens disconnected at `now` (those already disconnected keep
/// their time), every other open closed, every tree and session ended.
pub fn restart_deltas(model: &Model, set: ids::SetId, now: crate::model::Timestamp) -> Vec<Delta> {
    let Some(p) = model.partition(set) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let kept = |o: &crate::model::OpenRecord| o.info().durability.timeout_ms().is_some();
    for o in p.opens() {
        if !kept(o) {
            out.push(Delta::OpenDown { open: o.id() });
        } else if o.disconnected_at().is_none() {
            out.push(Delta::OpenDisconnected { open: o.id(), at: now });
        }
    }
    // A break in progress: its holder could not acknowledge it while the node
    // was down, and has the whole break time-out again from now (as a retained
    // handle's time-out counts from the restart): the time the node was down
    // does not count against it.
    let deadline = now.plus_ms(crate::state::oplock::BREAK_TIMEOUT.as_millis() as u64);
    for o in p.opens().filter(|o| kept(o)) {
        if let crate::model::Caching::Oplock { breaking: Some(b), .. } = o.caching() {
            out.push(Delta::OplockBreaking { open: o.id(), to: b.to, deadline });
        }
    }
    // A lease ends with its last open (the model wants it said).
    for l in p.leases() {
        if !p.lease_opens(l.id()).any(kept) {
            out.push(Delta::LeaseGone { set, lease: l.id() });
        } else if let Some(b) = l.breaking() {
            let (to, required, epoch) = (b.to, b.required, l.epoch());
            out.push(Delta::LeaseBreaking { set, lease: l.id(), to, required, epoch, deadline });
        }
    }
    for s in p.sessions() {
        for t in s.trees() {
            out.push(Delta::TreeDown { session: s.id(), tree: t.id });
        }
        out.push(Delta::SessionDown { session: s.id() });
    }
    out
}

/// Gives every retained handle of the live model its file back (step 3);
/// one whose file cannot be reopened as it was is closed in the model.
/// Returns how many were restored.
pub fn restore(server: &Arc<Server>, renames: &std::collections::HashMap<u64, String>) -> usize {
    let model = server.model();
    let Some(p) = model.partition(server.set()) else {
        return 0;
    };
    let opens: Vec<_> = p.opens().collect();
    let t0 = Instant::now();
    let found = locate_all(server, &opens, renames);
    tracing::debug!(opens = opens.len(), took_ms = t0.elapsed().as_millis() as u64, "retained handles' files found");
    let mut restored = 0;
    let mut dropped = Vec::new();
    for (o, found) in opens.into_iter().zip(found) {
        match found.and_then(|f| reopen::reopen(server, &model, o, f)) {
            Ok(()) => restored += 1,
            Err(why) => {
                warn!(id = format_args!("{:#x}", o.id().0), path = o.path(), "retained handle not restored: {why}");
                dropped.push(Delta::OpenDown { open: o.id() });
            }
        }
    }
    server.apply(&dropped);
    restored
}

/// How many threads open the retained handles' files again: the opens,
/// stats and xattr reads are system calls that wait on the disk when its
/// cache is cold, so more threads than cores still help.
const LOCATE_THREADS: usize = 8;

/// [`reopen::locate`] for every open, in order, on up to
/// [`LOCATE_THREADS`] threads.
fn locate_all(
    server: &Server,
    opens: &[&crate::model::OpenRecord],
    renames: &std::collections::HashMap<u64, String>,
) -> Vec<Result<reopen::Located, String>> {
    let locate = |o: &&crate::model::OpenRecord| reopen::locate(server, o, renames.get(&o.id().0).map(String::as_str));
    if opens.len() < 64 {
        return opens.iter().map(locate).collect();
    }
    let chunk = opens.len().div_ceil(LOCATE_THREADS);
    std::thread::scope(|s| {
        let workers: Vec<_> =
            opens.chunks(chunk).map(|part| s.spawn(move || part.iter().map(locate).collect::<Vec<_>>())).collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// Starts the journal's part of a run: restores what the last run left,
/// retires the operations found in the log, checkpoints, and marks the
/// journal as in use (flag "non-elective reboot"). `server` was built from
/// the rebuilt model ([`Server::restored`]).
pub async fn start(
    server: &Arc<Server>,
    opened: &Opened,
    renames: &std::collections::HashMap<u64, String>,
    appends: &[appends::InFlight],
) -> Result<(), RunError> {
    let log = opened.recovery.as_ref().map(|r| &r.own);
    start_from(server, &opened.region, &opened.journal, log, renames, appends)
        .await
        .map_err(|e| journal_error(&opened.path, e))?;
    opened.region.set_flag(Flag::NonElectiveReboot).map_err(|e| journal_error(&opened.path, e))?;
    Ok(())
}

/// [`start`]'s work but the flag: `server` (built from the model `log`
/// rebuilt to) ends what a restart ends and gets its retained handles'
/// files back, the saved answers of `log` are kept for replay and its
/// operations retired, and a checkpoint is made durable in `journal`
/// (over `region`). `log` is the node's own after a restart, or the
/// partner's from the mirror ring at a takeover.
pub async fn start_from(
    server: &Arc<Server>,
    region: &::nvram::Journal,
    journal: &crate::journal::NvramJournal,
    log: Option<&::nvram::LogRecovery>,
    renames: &std::collections::HashMap<u64, String>,
    appends: &[appends::InFlight],
) -> Result<(), String> {
    let t0 = Instant::now();
    crate::failpoint::pause("restore");
    // What the restart ends, and whether there is anything to restore at all
    // (retained handles from before this start count too).
    let (deltas, any) = server.with_model(|m| {
        let any =
            m.partition(server.set()).is_some_and(|p| p.opens().next().is_some() || p.sessions().next().is_some());
        (restart_deltas(m, server.set(), crate::state::deltas::now()), any)
    });
    if any {
        server.apply(&deltas);
        let applied = t0.elapsed();
        let n = restore(server, renames);
        info!(
            retained = n,
            took_ms = t0.elapsed().as_millis() as u64,
            restart_deltas_ms = applied.as_millis() as u64,
            "restored from the journal"
        );
    }
    if let Some(log) = log {
        // The answers the log holds (and those its last checkpoint carried)
        // stay in memory for the clients that replay them
        // ([`retire::RECOVERED_GRACE`]), and are carried in every checkpoint
        // meanwhile, the one below first, so that another crash does not
        // lose them; their records go now: the checkpoint below holds what
        // they changed, and a ring held by them would fill.
        let (replies, carried) = journal.recover_replies(log);
        let mut ops: Vec<_> = log.records.iter().map(|rec| rec.op).collect();
        ops.sort_unstable();
        ops.dedup();
        for op in &ops {
            if let Err(e) = region.retire(*op) {
                warn!("journal, retiring a recovered operation: {e}");
            }
            server.retirer.recovered(*op);
        }
        for op in carried.iter().filter(|op| ops.binary_search(op).is_err()) {
            server.retirer.recovered(*op);
        }
        info!(operations = ops.len(), saved_answers = replies, "operations found in the journal");
        // After the log's answers: an unanswered element's key was forgotten.
        appends::settle(server, journal, appends);
    }
    let t = server.checkpoint().map_err(|e| e.to_string())?;
    server.journal.durable(t).await.map_err(|e| e.to_string())?;
    server.journal.compact().map_err(|e| e.to_string())?;
    Ok(())
}

/// How long an elective reboot waits for the requests in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// SIGTERM: waits for the requests in flight (up to [`DRAIN`]), checkpoints
/// and sets the flag "elective reboot". New connections are no longer
/// accepted by then (the caller stopped its listeners).
pub async fn elective_reboot(server: &Arc<Server>, opened: &Opened) {
    let t0 = Instant::now();
    while !server.in_flight.idle() && t0.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = async {
        let t = server.checkpoint()?;
        server.journal.durable(t).await?;
        server.journal.compact()
    }
    .await;
    match r
        .map_err(|e| e.to_string())
        .and_then(|()| opened.region.set_flag(Flag::ElectiveReboot).map_err(|e| e.to_string()))
    {
        Ok(()) => info!(took_ms = t0.elapsed().as_millis() as u64, "elective reboot: state saved"),
        Err(e) => warn!("elective reboot: the state could not be saved ({e}); the next start restores from the log"),
    }
}

#[cfg(test)]
mod tests {
    use ::nvram::MemStorage;
    use ids::SetId;

    use super::*;
    use crate::journal::{Journal as _, NvramJournal};
    use crate::model::tests::{open_on, session_with_tree};
    use crate::model::{Caching, Durability as Kept, PersistentFileId, Timestamp};

    const SET: SetId = SetId(0);

    fn opts() -> Options {
        Options::new(CLUSTER, NODE, Durability::None)
    }

    fn pid(d: &Delta) -> PersistentFileId {
        match d {
            Delta::OpenUp(n) => n.info.persistent,
            _ => unreachable!(),
        }
    }

    /// A journal that saw: a checkpoint (a session with a tree), then a request's
    /// delta (a durable open), a state change (a lock), a break notice (points 3 and 4
    /// of an operation with no request), another request's (an open that is not
    /// durable), as the server appends them. Returns the live model, the
    /// durable open, the other open and the storage.
    fn journal_of_a_run(flag: Flag) -> (Model, PersistentFileId, PersistentFileId, MemStorage) {
        let storage = MemStorage::new(1 << 20);
        let region = Arc::new(::nvram::Journal::create(storage.clone(), opts()).unwrap());
        let j = NvramJournal::new(region.clone());
        let mut live = Model::new();
        live.add_set(SET, 5).unwrap();
        let (s, t) = session_with_tree(&mut live, SET);
        j.checkpoint(&live.checkpoint()).unwrap();
        let durable = open_on(&live, s, t, 9, Kept::V1 { timeout_ms: 60_000 }, Caching::None);
        record::apply_with_carry(&mut live, &durable).unwrap();
        let (op, _) = j.pre_ack(1, b"create").unwrap();
        j.post_completion(op, 0, None, 0, b"answer", &Delta::encode_batch(std::slice::from_ref(&durable))).unwrap();
        let lock = Delta::LockAdded { open: pid(&durable), offset: 0, length: 10, exclusive: true };
        live.apply(&lock).unwrap();
        j.state_change(&Delta::encode_batch(std::slice::from_ref(&lock))).unwrap();
        let notice = j.unsolicited(1);
        j.post_completion(notice, 0, None, 0, &NOTICE, &[]).unwrap();
        j.post_reply_ack(notice).unwrap();
        let plain = open_on(&live, s, t, 10, Kept::None, Caching::None);
        record::apply_with_carry(&mut live, &plain).unwrap();
        let (op, _) = j.pre_ack(1, b"create").unwrap();
        j.post_completion(op, 0, None, 0, b"answer", &Delta::encode_batch(std::slice::from_ref(&plain))).unwrap();
        region.set_flag(flag).unwrap();
        (live, pid(&durable), pid(&plain), storage)
    }

    /// An Oplock Break Notification's body ([MS-SMB2] 2.2.23.1): StructureSize
    /// 24, level II, the durable open's file id (no matter which).
    const NOTICE: [u8; 24] = [24, 0, 1, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0];

    /// The break notice [`journal_of_a_run`] journaled is in the log, and the
    /// restore ignores it: the model is the live one, nothing is redone, no
    /// answer is saved from it.
    #[test]
    fn a_journaled_break_notice_is_in_the_log_and_the_restore_ignores_it() {
        let (live, _, _, storage) = journal_of_a_run(Flag::NonElectiveReboot);
        let rec = reopen(&storage);
        let notices: Vec<_> = rec
            .own
            .records
            .iter()
            .filter(|r| r.kind == ::nvram::Kind::PostCompletion && r.completion() == Some((&NOTICE[..], &[][..])))
            .map(|r| r.op)
            .collect();
        assert_eq!(notices.len(), 1, "{:?}", rec.own.records);
        assert_ne!(notices[0], ids::OpId(0), "a notice gets an operation of its own");
        assert!(rec.own.records.iter().any(|r| r.kind == ::nvram::Kind::PostReplyAck && r.op == notices[0]));
        assert!(!rec.own.records.iter().any(|r| r.kind == ::nvram::Kind::PreAck && r.op == notices[0]));
        let rebuilt = rebuild_log(&rec.own).unwrap().expect("a model to restore");
        assert_eq!(rebuilt.model, live);
        assert!(rebuilt.writes.is_empty() && rebuilt.renames.is_empty() && rebuilt.creates.is_empty());
        assert!(rebuilt.appends.is_empty());
        let region = ::nvram::Journal::open(MemStorage::from_image(storage.current_image()), opts()).unwrap().0;
        assert_eq!(NvramJournal::new(Arc::new(region)).recover_replies(&rec.own), (0, vec![]));
    }

    /// A rename that waits for lease breaks has its request carried in
    /// checkpoints ([`crate::journal::carry`]), so that its records may go
    /// while it waits: once they are gone from the log, a restart still finds
    /// the rename under way in the checkpoint, and follows it. Without the
    /// carried request, it would not.
    #[test]
    fn a_rename_whose_records_went_is_found_in_the_checkpoint_that_carried_it() {
        use protocol::msg::FileId;
        for carry in [true, false] {
            let storage = MemStorage::new(1 << 20);
            let region = Arc::new(::nvram::Journal::create(storage.clone(), opts()).unwrap());
            let j = NvramJournal::new(region.clone());
            let mut live = Model::new();
            live.add_set(SET, 5).unwrap();
            j.checkpoint(&live.checkpoint()).unwrap();
            let frame = redo::tests::rename_frame(FileId { persistent: 5, volatile: 5 }, "dir\\new.txt");
            let (op, _) = j.pre_ack(1, &frame).unwrap();
            j.pre_command(op, 0).unwrap();
            assert!(j.carry_request(op, bytes::Bytes::from(frame.clone())), "the journal takes a small request");
            if !carry {
                j.end_carry(op);
            }
            // The retiring task: a checkpoint (carrying the request), durable,
            // then the operation released and the head moved past its records.
            j.checkpoint(&live.checkpoint()).unwrap();
            j.release(op).unwrap();
            j.compact().unwrap();
            region.set_flag(Flag::NonElectiveReboot).unwrap();
            let rec = reopen(&storage);
            assert!(!rec.own.records.iter().any(|r| r.op == op), "the head passed the rename's records");
            let rebuilt = rebuild_log(&rec.own).unwrap().expect("a model to restore");
            let want = if carry { Some("dir\\new.txt") } else { None };
            assert_eq!(rebuilt.renames.get(&5).map(String::as_str), want, "carried: {carry}");
        }
    }

    fn reopen(storage: &MemStorage) -> Recovery {
        ::nvram::Journal::open(MemStorage::from_image(storage.current_image()), opts()).unwrap().1
    }

    #[test]
    fn the_model_is_rebuilt_from_the_checkpoint_and_every_delta_after_it() {
        for flag in [Flag::NonElectiveReboot, Flag::ElectiveReboot] {
            let (live, durable, plain, storage) = journal_of_a_run(flag);
            let model = rebuild(&reopen(&storage)).unwrap().expect("a model to restore");
            assert_eq!(model, live, "{flag:?}");

            // What the restart ends: the session and its tree, the open that is not
            // durable; the durable one waits, disconnected now, with its lock.
            let mut model = model;
            for d in restart_deltas(&model, SET, Timestamp(1_000)) {
                model.apply(&d).unwrap();
            }
            let p = model.partition(SET).unwrap();
            assert_eq!(p.sessions().count(), 0);
            assert!(p.open(plain).is_none());
            let o = p.open(durable).expect("the durable open is retained");
            assert_eq!(o.disconnected_at(), Some(Timestamp(1_000)));
            assert_eq!(o.expires_at(), Some(Timestamp(61_000)));
            assert_eq!(p.file(o.info().file).unwrap().locks().len(), 1);
            model.check_invariants().unwrap();
        }
    }

    /// A break in progress when the node died (an oplock break and a lease
    /// break, due 35 s after they began): the node comes back long after
    /// both deadlines. The restart gives each the whole break time-out again
    /// from the restart, so the time the node was down does not count: its
    /// holder can reconnect and acknowledge. Before, both timed out at start.
    #[test]
    fn a_break_in_progress_gets_its_time_out_again_from_the_restart() {
        use crate::model::{LeaseId, LeaseKey, LeaseVersion, OplockLevel};
        let mut m = Model::new();
        m.add_set(SET, 5).unwrap();
        let (s, t) = session_with_tree(&mut m, SET);
        let kept = Kept::V1 { timeout_ms: 60_000 };
        let batch = Caching::Oplock { level: OplockLevel::Batch, breaking: None };
        let d = open_on(&m, s, t, 1, kept, batch);
        let oplocked = pid(&d);
        m.apply(&d).unwrap();
        m.apply(&Delta::OplockBreaking { open: oplocked, to: OplockLevel::II, deadline: Timestamp(36_000) }).unwrap();
        let key = LeaseKey([4; 16]);
        let client = m.open(oplocked).unwrap().info().client_guid;
        let lease = LeaseId { client, key };
        let (file, version) = (crate::model::FileUid(2), LeaseVersion::V2);
        m.apply(&Delta::LeaseGranted { set: SET, lease, file, parent: None, version, state: 7, epoch: 1 }).unwrap();
        m.apply(&open_on(&m, s, t, 2, kept, Caching::Lease(key))).unwrap();
        let breaking = Delta::LeaseBreaking { set: SET, lease, to: 3, required: 1, epoch: 2, deadline: Timestamp(36_000) };
        m.apply(&breaking).unwrap();
        // Back at 500 s: both deadlines long passed.
        let now = Timestamp(500_000);
        for d in restart_deltas(&m, SET, now) {
            m.apply(&d).unwrap();
        }
        let again = Timestamp(500_000 + crate::state::oplock::BREAK_TIMEOUT.as_millis() as u64);
        assert_eq!(m.expired(now), vec![], "a break timed out at the restart");
        assert_eq!(m.poll_timeout(), Some(again));
        let Caching::Oplock { breaking: Some(b), .. } = m.open(oplocked).unwrap().caching() else { panic!() };
        assert_eq!((b.to, b.deadline), (OplockLevel::II, again));
        let l = m.partition(SET).unwrap().lease(lease).unwrap();
        assert_eq!((l.state(), l.epoch()), (7, 2));
        let b = l.breaking().unwrap();
        assert_eq!((b.to, b.required, b.deadline), (3, 1, again));
        m.check_invariants().unwrap();
    }

    #[test]
    fn a_clean_journal_or_one_without_a_checkpoint_restores_nothing() {
        let (_, _, _, storage) = journal_of_a_run(Flag::CleanShutdown);
        assert_eq!(rebuild(&reopen(&storage)).unwrap(), None);
        let storage = MemStorage::new(1 << 20);
        let region = ::nvram::Journal::create(storage.clone(), opts()).unwrap();
        region.set_flag(Flag::NonElectiveReboot).unwrap();
        drop(region);
        assert_eq!(rebuild(&reopen(&storage)).unwrap(), None);
    }

    #[test]
    fn a_delta_that_does_not_decode_is_a_clear_error() {
        let storage = MemStorage::new(1 << 20);
        let region = Arc::new(::nvram::Journal::create(storage.clone(), opts()).unwrap());
        let j = NvramJournal::new(region.clone());
        let mut m = Model::new();
        m.add_set(SET, 5).unwrap();
        j.checkpoint(&m.checkpoint()).unwrap();
        j.state_change(b"\xff\xff not a delta").unwrap();
        region.set_flag(Flag::NonElectiveReboot).unwrap();
        let e = rebuild(&reopen(&storage)).unwrap_err();
        assert!(e.contains("does not decode"), "{e}");
    }
}
