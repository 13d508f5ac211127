//! How the live server's changes reach its state model ([`crate::model`]).
//!
//! Handlers push the [`Delta`]s of what they changed into their context
//! ([`crate::handler::Ctx::deltas`]); the pipeline hands them to the
//! journal at point 3 and applies them here ([`Server::apply`]), after the
//! handler returned and with no other lock held. Changes that no request
//! makes (a connection lost, a retained handle expiring) are applied here
//! by the code that makes them.
//!
//! The model is the record of the long-lived state that a restart or a
//! takeover restores; the runtime objects (`Session`, `Tree`, `Open`, the
//! file table) still serve the requests. [`Server::check_model`] holds the
//! two against each other.
//!
//! # Check mode
//!
//! With the environment variable `DUET_CHECK_MODEL` set to a file path,
//! the server checks itself as it runs (for tests; it costs a copy of the
//! model and a comparison per request):
//!
//! - every batch of deltas is taken as the journal got it at point 3 (the
//!   bytes of [`Delta::encode_batch`]), decoded and applied to a replica
//!   model that only ever sees those bytes; the replica must equal the live
//!   model after every batch, and every 64th batch a checkpoint of the live
//!   model is decoded and compared too;
//! - when no request is in flight, the model is compared with the runtime
//!   objects ([`Server::check_model`]): the same sessions, tree connects,
//!   opens (connected and retained) and byte-range locks;
//! - a delta that the model refuses is a mismatch too.
//!
//! The counts and the first mismatches are written to the file after every
//! check, as `key value` lines (`batches` replayed into the replica and
//! compared, `deltas`, `projections`, `mismatches`), then `mismatch: ...`
//! lines.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use ids::SetId;
use tracing::{error, warn};

use super::{lock, Server};
use crate::model::ids::IdParts;
use crate::model::{Delta, Model};

/// The environment variable that turns check mode on.
pub const CHECK_ENV: &str = "DUET_CHECK_MODEL";

/// How many mismatch texts the report keeps.
const KEEP_MISMATCHES: usize = 20;

/// The live model and, in check mode, its checker.
pub struct Recorder {
    model: Model,
    check: Option<Checker>,
}

/// Check mode's state (see the module doc).
struct Checker {
    report: PathBuf,
    replica: Model,
    batches: u64,
    deltas: u64,
    projections: u64,
    mismatches: u64,
    texts: Vec<String>,
}

impl Recorder {
    /// A model with one partition, `set`, whose ids are of `generation`
    /// (the live allocator's, [`super::id_alloc`]).
    pub fn new(set: SetId, generation: u32) -> Recorder {
        let mut model = Model::new();
        if let Err(e) = model.add_set(set, generation) {
            error!("state model: {e}");
        }
        let check = std::env::var_os(CHECK_ENV).map(|p| Checker {
            report: PathBuf::from(p),
            replica: model.clone(),
            batches: 0,
            deltas: 0,
            projections: 0,
            mismatches: 0,
            texts: Vec::new(),
        });
        Recorder { model, check }
    }

    /// The live model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Is check mode on?
    pub fn checking(&self) -> bool {
        self.check.is_some()
    }

    /// Applies one delta, first moving the partition to the next
    /// generation when the delta brings in the first id of it (the live
    /// allocator's counter carried over, [`super::id_alloc`]).
    fn apply_one(&mut self, d: &Delta) {
        if let Some(id) = new_id(d) {
            let parts = IdParts::of(id);
            let current = self.model.partition(parts.set).map(|p| p.ids().generation());
            if current.is_some_and(|g| parts.generation == g.wrapping_add(1)) {
                self.record(&Delta::NewGeneration { set: parts.set });
            }
        }
        self.record(d);
    }

    fn record(&mut self, d: &Delta) {
        if let Err(e) = self.model.apply(d) {
            warn!(?d, "state model refused a delta: {e}");
            if let Some(c) = &mut self.check {
                c.mismatch(format!("refused {d:?}: {e}"));
            }
            return;
        }
        if let Some(c) = &mut self.check {
            c.deltas += 1;
            if let Delta::NewGeneration { .. } = d {
                // Not journaled by a request: the recorder adds it.
                if let Err(e) = c.replica.apply(d) {
                    c.mismatch(format!("replica refused {d:?}: {e}"));
                }
            }
        }
    }

    /// Check mode: applies a batch as the journal has it to the replica.
    fn replay(&mut self, journaled: &[u8]) {
        let Some(c) = &mut self.check else {
            return;
        };
        match Delta::decode_batch(journaled) {
            Ok(batch) => {
                for d in &batch {
                    if let Err(e) = c.replica.apply(d) {
                        c.mismatch(format!("replica refused {d:?}: {e}"));
                    }
                }
            }
            Err(e) => c.mismatch(format!("a journaled batch does not decode: {e}")),
        }
    }

    /// Check mode: the replica (and every 64th batch a checkpoint) against
    /// the live model.
    fn check_replay(&mut self) {
        let Some(c) = &mut self.check else {
            return;
        };
        c.batches += 1;
        if c.replica != self.model {
            c.mismatch("the model rebuilt from the recorded deltas differs from the live model".into());
            c.replica = self.model.clone();
        }
        if c.batches.is_multiple_of(64) {
            match Model::restore(&self.model.checkpoint()) {
                Ok(m) if m == self.model => {}
                Ok(_) => c.mismatch("a checkpoint decodes to another model".into()),
                Err(e) => c.mismatch(format!("a checkpoint does not decode: {e}")),
            }
        }
        c.write();
    }
}

impl Checker {
    fn mismatch(&mut self, text: String) {
        error!("state model check: {text}");
        self.mismatches += 1;
        if self.texts.len() < KEEP_MISMATCHES {
            self.texts.push(text);
        }
    }

    fn write(&self) {
        let mut s = format!(
            "batches {}\ndeltas {}\nprojections {}\nmismatches {}\n",
            self.batches, self.deltas, self.projections, self.mismatches
        );
        for t in &self.texts {
            s.push_str("mismatch: ");
            s.push_str(&t.replace('\n', " "));
            s.push('\n');
        }
        let tmp = self.report.with_extension("tmp");
        if std::fs::write(&tmp, s).and_then(|()| std::fs::rename(&tmp, &self.report)).is_err() {
            warn!(path = %self.report.display(), "cannot write the model check report");
        }
    }
}

/// The id a delta brings into the model, if any.
fn new_id(d: &Delta) -> Option<u64> {
    match d {
        Delta::SessionUp(info) => Some(info.id.0),
        Delta::OpenUp(n) => Some(n.info.persistent.0),
        _ => None,
    }
}

/// Requests being carried out, server-wide: the runtime objects and the
/// model agree only when none is (check mode compares then).
pub struct InFlight(AtomicUsize);

impl InFlight {
    pub const fn new() -> InFlight {
        InFlight(AtomicUsize::new(0))
    }

    /// Counts a request in until the guard drops.
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self)
    }

    fn idle(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

impl Default for InFlight {
    fn default() -> InFlight {
        InFlight::new()
    }
}

pub struct InFlightGuard<'a>(&'a InFlight);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Server {
    /// Applies a request's (or a teardown's) deltas to the state model, in
    /// order. Takes the model's lock, the last in the lock order: call it
    /// with no other lock held.
    pub fn apply(&self, deltas: &[Delta]) {
        if deltas.is_empty() && !self.checking {
            return;
        }
        // Only check mode reads the bytes (its replica is built from them).
        let journaled = if self.checking { Delta::encode_batch(deltas) } else { Vec::new() };
        self.apply_journaled(deltas, &journaled);
    }

    /// [`Server::apply`] for deltas the journal was given as `journaled`
    /// ([`Delta::encode_batch`]) at point 3: in check mode the replica is
    /// built from those bytes, as recovery will build the model.
    pub fn apply_journaled(&self, deltas: &[Delta], journaled: &[u8]) {
        if deltas.is_empty() && !self.checking {
            return;
        }
        let mut r = lock(&self.recorder);
        for d in deltas {
            r.apply_one(d);
        }
        r.replay(journaled);
        r.check_replay();
        drop(r);
        if deltas.iter().any(|d| {
            matches!(d, Delta::OpenDisconnected { .. } | Delta::OplockBreaking { .. } | Delta::LeaseBreaking { .. })
        }) {
            self.deadlines.notify_one();
        }
    }

    /// The share set this node's state is recorded under.
    pub fn set(&self) -> SetId {
        self.set
    }

    /// Is check mode on ([`CHECK_ENV`])?
    pub fn checking(&self) -> bool {
        self.checking
    }

    /// The model's earliest deadline, and the deltas the deadlines passed
    /// by `now` call for ([`Model::poll_timeout`], [`Model::expired`]),
    /// read under the model's lock without copying it.
    pub fn deadlines_at(&self, now: crate::model::Timestamp) -> (Option<crate::model::Timestamp>, Vec<Delta>) {
        let r = lock(&self.recorder);
        (r.model().poll_timeout(), r.model().expired(now))
    }

    /// Reads the live model under its lock, without copying it. The model's
    /// lock is the last in the lock order: call with no other lock held.
    pub fn with_model<R>(&self, f: impl FnOnce(&Model) -> R) -> R {
        f(lock(&self.recorder).model())
    }

    /// A copy of the live model (for tests and `duet status`).
    pub fn model(&self) -> Model {
        lock(&self.recorder).model().clone()
    }

    /// Check mode: once no request is in flight, compares the model with
    /// the runtime objects and records a mismatch if they differ (twice,
    /// a moment apart, to let a change that is on its way land).
    pub async fn check_model_when_idle(&self) {
        if !self.checking || !self.in_flight.idle() {
            return;
        }
        if self.check_model().is_ok() {
            self.count_projection(None);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if !self.in_flight.idle() {
            return;
        }
        let r = self.check_model();
        self.count_projection(r.err());
    }

    fn count_projection(&self, err: Option<String>) {
        let mut r = lock(&self.recorder);
        if let Some(c) = &mut r.check {
            c.projections += 1;
            if let Some(e) = err {
                c.mismatch(e);
            }
            c.write();
        }
    }

    /// Compares the model with the runtime objects: the same sessions (that
    /// completed authentication), tree connects of disk shares, opens of
    /// files (connected: by session, tree and volatile id; retained for a
    /// reconnect: disconnected) and byte-range locks. Takes the session
    /// table's, each session's, the retained opens', the file table's and
    /// the model's locks, one at a time.
    pub fn check_model(&self) -> Result<(), String> {
        // Where an open is attached (session and tree; none when retained),
        // and its volatile id.
        type OpenView = (Option<(u64, u32)>, u64);
        let mut live_sessions: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        let mut live_opens: BTreeMap<u64, OpenView> = BTreeMap::new();
        let mut live_locks: BTreeMap<u64, Vec<(u64, u64, bool)>> = BTreeMap::new();
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        let mut keys = Vec::new();
        for s in sessions.iter().filter(|s| s.up.load(Ordering::Acquire)) {
            let inner = lock(&s.inner);
            let mut trees: Vec<u32> = inner.trees.values().filter(|t| t.share().is_some()).map(|t| t.id).collect();
            trees.sort_unstable();
            live_sessions.insert(s.id, trees);
            for o in inner.opens.values().filter(|o| o.key.is_some()) {
                live_opens.insert(o.persistent_id, (Some((s.id, o.tree.id)), o.volatile_id));
                keys.extend(o.key.map(|k| (k, o.persistent_id)));
            }
        }
        for (pid, d) in lock(&self.durable).iter() {
            live_opens.insert(*pid, (None, d.open.volatile_id));
            keys.extend(d.open.key.map(|k| (k, *pid)));
        }
        {
            let files = lock(&self.files);
            for (key, pid) in &keys {
                let mut l: Vec<_> = files
                    .locks(key)
                    .iter()
                    .filter(|l| l.persistent_id == *pid)
                    .map(|l| (l.offset, l.length, l.exclusive))
                    .collect();
                if !l.is_empty() {
                    l.sort_unstable();
                    live_locks.insert(*pid, l);
                }
            }
        }
        let model = self.model();
        let mut model_sessions: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        let mut model_opens: BTreeMap<u64, OpenView> = BTreeMap::new();
        let mut model_locks: BTreeMap<u64, Vec<(u64, u64, bool)>> = BTreeMap::new();
        for set in model.sets() {
            let Some(p) = model.partition(set) else { continue };
            for s in p.sessions() {
                let mut trees: Vec<u32> = s.trees().map(|t| t.id.0).collect();
                trees.sort_unstable();
                model_sessions.insert(s.id().0, trees);
            }
            for o in p.opens() {
                let attached = o.session().zip(o.tree()).map(|(s, t)| (s.0, t.0));
                model_opens.insert(o.id().0, (attached, o.volatile().0));
            }
            for f in p.files() {
                for l in f.locks() {
                    model_locks.entry(l.owner.0).or_default().push((l.offset, l.length, l.exclusive));
                }
            }
        }
        for l in model_locks.values_mut() {
            l.sort_unstable();
        }
        let mut diffs = Vec::new();
        diff("session", &live_sessions, &model_sessions, &mut diffs);
        diff("open", &live_opens, &model_opens, &mut diffs);
        diff("locks of open", &live_locks, &model_locks, &mut diffs);
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(format!("the model and the runtime objects differ: {}", diffs.join("; ")))
        }
    }
}

/// Describes how two maps differ (at most a few entries).
fn diff<V: PartialEq + std::fmt::Debug>(
    what: &str,
    live: &BTreeMap<u64, V>,
    model: &BTreeMap<u64, V>,
    out: &mut Vec<String>,
) {
    for (k, v) in live {
        match model.get(k) {
            None => out.push(format!("{what} {k:#x} live only: {v:?}")),
            Some(m) if m != v => out.push(format!("{what} {k:#x} live {v:?}, model {m:?}")),
            Some(_) => {}
        }
    }
    for (k, v) in model {
        if !live.contains_key(k) {
            out.push(format!("{what} {k:#x} in the model only: {v:?}"));
        }
    }
    out.truncate(8);
}
