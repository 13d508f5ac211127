//! How the live server's changes reach its state model ([`crate::model`]).
//!
//! Handlers push the [`Delta`]s of what they changed into their context
//! ([`crate::handler::Ctx::deltas`]); the pipeline hands them to the
//! journal at point 3 and applies them here ([`Server::apply`]), after the
//! handler returned and with no other lock held. Changes that no request
//! makes (a connection lost, a retained handle expiring) are applied here
//! by the code that makes them.
//!
//! # Oplocks and leases
//!
//! An oplock or lease is shared state: a break started by one request
//! (another client's CREATE, a WRITE) changes opens and leases of other
//! requests, its acknowledgement comes in on another connection, and a
//! time-out comes from no request at all. Oplock levels and leases (state,
//! epoch, version, parent key, a break in progress with its target and
//! deadline) are the model's alone: the per-file table decides every grant
//! and break from the model's records, and applies each change there as
//! it makes it, under its own lock and the model's
//! ([`FilesGuard::caching`], [`ModelHold`]), so the next decision, in the
//! same call or on another connection, reads it; they are journaled as
//! state changes before the model's lock is let go. The table keeps only
//! runtime things: which opens use which lease, where notices go
//! ([`super::oplock::BreakSink`]), and a new open's grant until its
//! `OpenUp` reaches the model ([`super::files::OpenRef::pending_oplock`];
//! the grant rides in that delta, `NewOpen::caching`, so that the open
//! never exists in the model without it).
//!
//! The opens themselves still come and go with their requests' deltas
//! (`OpenUp`, `OpenDown`), which the pipeline applies a little after the
//! table changed. Where the two paths meet, the recorder holds a change
//! back until what it needs has been applied (`Waiting`): a change of an
//! open whose `OpenUp` is on its way (another request broke the new open's
//! oplock before its CREATE was answered), and any later change of that
//! open; the CREATE's own batch does not wait for them. A lease ends
//! (`LeaseGone`) once no open uses it in the table or in the model: when
//! its last open leaves the table, at once if the model never had that
//! open, else after the open's `OpenDown` is applied
//! ([`FileTable::end_leases`], from [`Server::apply`] and
//! [`Server::point3`]). An open that joins the lease meanwhile keeps it.
//! (The recorder still holds back a `LeaseGone` while an open of the lease
//! is in the model, and later changes of that lease, though the table no
//! longer makes one then.)

//! # Opens' fields
//!
//! An open's long-lived fields are the model's alone: the runtime `Open`
//! has no copy of them ([`super::open::OpenState`]). A new open brings
//! them in its `OpenUp` (durability, CreateGuid, AppInstanceId and version,
//! replay eligibility, CreateAction, ChannelSequence, delete-on-close),
//! which reaches the model at its CREATE's point 3, before the client can
//! name the open (and before the next element of a compound runs). From
//! then on they are read by the open's persistent id
//! ([`Server::read_open`]), and changed where the change is made, not at
//! point 3 ([`Server::change_open`]: `ChannelSequenceSet`,
//! `ReplayIneligible`, `DeleteOnCloseSet`): under one hold of the model's
//! lock the change is decided from the record, applied, and journaled as
//! a state change, as the file table's oplock and lease changes are. So a
//! later element of the same compound, and a request on another
//! connection, see it as soon as it is made (a delete-on-close set by a
//! SET_INFO and read by the CLOSE after it; a ChannelSequence raised by
//! one request and checked by the next), and the log holds it before the
//! point-3 record of the request that made it, in the order the model
//! applied it; that request's answer waits for its point-3 record to be
//! durable when the change is one a restart restores (`Ctx::kept`). A
//! READ or WRITE on SMB 3.x takes the model's lock once, to check its
//! ChannelSequence (and its byte-range locks, see below); on SMB 2.x not
//! at all while the model holds no byte-range lock.
//!
//! # Byte-range locks
//!
//! Byte-range locks and the opens' LockSequenceArrays are the model's
//! alone too ([`super::byte_locks`]): a LOCK decides from the model's
//! locks of the file and changes them under the same hold of its lock
//! ([`Server::change_model`]), a READ or WRITE checks them there, and an
//! open's locks go with its `OpenDown`. The recorder keeps
//! `Server::byte_locks`, the model's count of locks, as it applies
//! changes (so that a READ or WRITE on a node without locks takes no lock
//! to check), and wakes blocked LOCKs (`Server::lock_released`) when a
//! lock goes or an open leaves the model.
//!
//! # Sessions and tree connects
//!
//! A session's long-lived fields (who the user is, guest or anonymous, the
//! ClientGuid, the keys' bytes, dialect, cipher and signing policies, its
//! creation and expiry: what a reconnect and PreviousSessionId need,
//! [MS-SMB2] 3.3.5.5.3, 3.3.5.9.7) and its tree connects (share,
//! encryption, read-only, maximal access) are the model's alone. A
//! SESSION_SETUP that completes pushes `SessionUp` (the first time) or
//! `SessionReauthenticated`, a TREE_CONNECT of a disk share `TreeUp`,
//! with no runtime copy of their own; after each batch is applied
//! ([`Server::apply`], [`Server::apply_journaled`], [`Server::point3`]),
//! the handles of the sessions and tree connects it changed are made anew
//! from the records the model has then (`Server::refresh_handles`): the
//! session's immutable copy of its record
//! ([`super::session::SessionInner::info`]), a tree connect's
//! [`super::Tree`]. So every request finds them under the session's own
//! lock, as the model last applied them, without the model's lock: the
//! pipeline checks a session's state (no record yet, expired by its
//! record's expiry) and finds its tree there, and the next element of a
//! compound, whose point 3 follows the one before, sees them. What is
//! runtime only stays on the handle: an authentication exchange in
//! progress, the prepared keys (`SessionCrypto`), the channels and the
//! connection, the handles of the opens, IPC$'s tree connects (pipes are
//! not saved), and whether the handle was torn down (a LOGOFF, a lost last
//! channel, which also drop their tree handles at once, before the
//! model's `TreeDown` and `SessionDown` land at point 3).
//!
//! # Files' fields
//!
//! Where a file and its opens are (the path, which renames move) and
//! whether a delete is pending on the file are the model's alone too
//! ([`super::file_fields`]): read from its file and open records, and
//! changed at once ([`Server::change_model`]: `FileMoved`,
//! `DeletePendingSet`), as an open's fields are. So are the access and
//! share access that share-mode checks read (Open.GrantedAccess and the
//! ShareAccess in `OpenUp`): the table reads them from the model, under
//! its own lock, except for a new open whose `OpenUp` has not reached the
//! model yet, whose CREATE's values the table holds until then
//! ([`super::files::OpenRef::pending`]). The per-file table keeps which
//! opens a file has (its last close is the table's to tell) and runtime
//! things.
//!
//! The model is the record of the long-lived state that a restart or a
//! takeover restores, and the one copy of the fields above, of the opens'
//! fields, byte-range locks and lock sequences, oplock levels and leases,
//! and of the sessions and tree connects. [`Server::check_model`] holds
//! the runtime objects (the table's opens and their lease links, a new
//! open's grant kept past its `OpenUp`) and the handles' copies of the
//! records against the model.
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
//!   opens (connected and retained), the count of byte-range locks, and
//!   each open's caching as the table's decisions see it (through its lease
//!   link, or a new open's grant) against the model's;
//! - a delta that the model refuses is a mismatch too.
//!
//! The counts and the first mismatches are written to the file after every
//! check, as `key value` lines (`batches` replayed into the replica and
//! compared, `deltas`, `projections`, `mismatches`), then `mismatch: ...`
//! lines.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::MutexGuard;

use ids::SetId;
use tracing::{error, info, warn};

use super::files::{CachingView, FileTable};
use super::oplock::OplockState;
use super::{lock, Server};
use crate::journal::{self, OpId, ReplayKey, Ticket};
use crate::model::ids::IdParts;
use crate::model::{Caching, Delta, Model, OpenRecord, PersistentFileId};

/// The environment variable that turns check mode on.
pub const CHECK_ENV: &str = "DUET_CHECK_MODEL";

/// How many mismatch texts the report keeps.
const KEEP_MISMATCHES: usize = 20;

/// How many changes may wait ([`Waiting`]); past this the oldest is
/// dropped (a defect: what it waited for never came).
const MAX_WAITING: usize = 1024;

/// The live model and, in check mode, its checker.
pub struct Recorder {
    model: Model,
    check: Option<Checker>,
    /// Changes that wait for others to be applied first, in the order
    /// they came ([`Waiting`]).
    waiting: Vec<Waiting>,
    /// Batches applied that no journal record carries yet (changes no
    /// request made, and requests' batches that waited), encoded, in the
    /// order they were applied: the server journals them before it lets go
    /// of the model's lock.
    unjournaled: Vec<Vec<u8>>,
    /// How many deltas the model refused (a defect; check mode reports
    /// each).
    refused: u64,
}

/// A change the recorder holds back, so that the model sees the changes
/// of an open or a lease in the order the file table made them (see the
/// module doc): an oplock change of an open whose `OpenUp` is on its way;
/// a lease's end (`LeaseGone`) while the `OpenDown` of its last open is on
/// its way; anything of a lease or open that has a change waiting already;
/// and a request's batch whose new open uses such a lease (check mode:
/// with its journaled bytes, which the replica then gets).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Waiting {
    Logged(Delta),
    Batch(Vec<Delta>, Vec<u8>),
}

/// What a waiting change holds back: later changes of the same open or
/// lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Open(PersistentFileId),
    Lease(crate::model::LeaseId),
}

impl Waiting {
    fn keys(&self) -> Vec<Key> {
        match self {
            Waiting::Logged(d) => Waiting::keys_of(d),
            Waiting::Batch(deltas, _) => deltas.iter().flat_map(Waiting::keys_of).collect(),
        }
    }

    /// The open or lease whose order a delta takes part in: an oplock
    /// change's open, a lease change's lease, a new open and its lease.
    fn keys_of(d: &Delta) -> Vec<Key> {
        match d {
            Delta::OplockSet { open, .. } | Delta::OplockBreaking { open, .. } => vec![Key::Open(*open)],
            Delta::LeaseGranted { lease, .. }
            | Delta::LeaseChanged { lease, .. }
            | Delta::LeaseBreaking { lease, .. }
            | Delta::LeaseAcked { lease, .. }
            | Delta::LeaseGone { lease, .. } => vec![Key::Lease(*lease)],
            Delta::OpenUp(n) => match n.caching {
                Caching::Lease(key) => vec![
                    Key::Open(n.info.persistent),
                    Key::Lease(crate::model::LeaseId { client: n.info.client_guid, key }),
                ],
                _ => vec![Key::Open(n.info.persistent)],
            },
            _ => Vec::new(),
        }
    }
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
        Recorder { model, check, waiting: Vec::new(), unjournaled: Vec::new(), refused: 0 }
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

    /// Applies a request's batch as [`Server::point3`] does, then what it
    /// released (tests of what changes the model).
    #[cfg(test)]
    pub(crate) fn apply_request(&mut self, deltas: &[Delta]) {
        self.apply_batch(deltas, &[]);
        self.release_waiting();
    }

    /// How many deltas the model refused, and how many changes wait (tests).
    #[cfg(test)]
    pub(crate) fn stuck(&self) -> (u64, usize) {
        (self.refused, self.waiting.len())
    }

    /// The recorder of a model restored from the journal ([`crate::restart`]).
    pub fn with_model(model: Model) -> Recorder {
        let mut r = Recorder::new(SetId(0), 0);
        if let Some(c) = &mut r.check {
            c.replica = model.clone();
        }
        r.model = model;
        r
    }

    fn record(&mut self, d: &Delta) {
        if let Err(e) = self.model.apply(d) {
            warn!(?d, "state model refused a delta: {e}");
            self.refused += 1;
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

    /// Applies oplock and lease changes logged by the file table, each now
    /// or, when it must wait (see [`Waiting`]), once what it waits for has
    /// been applied.
    fn apply_caching(&mut self, deltas: &[Delta]) {
        if !deltas.iter().any(|d| self.must_wait(d)) {
            self.apply_now(deltas);
            return;
        }
        let mut now = Vec::new();
        for d in deltas {
            if self.must_wait(d) {
                self.wait(Waiting::Logged(d.clone()));
            } else {
                now.push(d.clone());
            }
        }
        self.apply_now(&now);
    }

    /// Does a logged change wait: for an earlier waiting change of the same
    /// open or lease, or for what it needs?
    fn must_wait(&self, d: &Delta) -> bool {
        !self.ready(d) || (!self.waiting.is_empty() && self.blocked(&Waiting::keys_of(d)))
    }

    /// Does a request's batch wait: does a new open in it use a lease that
    /// has changes waiting? Not for the new open's own oplock changes
    /// waiting: those wait for this batch.
    fn batch_waits(&self, deltas: &[Delta]) -> bool {
        let lease_keys = |d: &Delta| -> Vec<Key> {
            Waiting::keys_of(d).into_iter().filter(|k| matches!(k, Key::Lease(_))).collect()
        };
        !self.waiting.is_empty() && deltas.iter().any(|d| matches!(d, Delta::OpenUp(_)) && self.blocked(&lease_keys(d)))
    }

    /// Has an open or lease of `keys` a change waiting?
    fn blocked(&self, keys: &[Key]) -> bool {
        !keys.is_empty() && self.waiting.iter().any(|w| w.keys().iter().any(|k| keys.contains(k)))
    }

    /// Can a logged change apply now, as far as the model goes: an open's
    /// oplock once the open is in; a lease's end once no open uses it.
    fn ready(&self, d: &Delta) -> bool {
        match d {
            Delta::OplockSet { open, .. } | Delta::OplockBreaking { open, .. } => self.model.open(*open).is_some(),
            Delta::LeaseGone { set, lease } => {
                self.model.partition(*set).is_none_or(|p| p.lease_opens(*lease).next().is_none())
            }
            _ => true,
        }
    }

    fn wait(&mut self, w: Waiting) {
        if self.waiting.len() >= MAX_WAITING {
            let dropped = self.waiting.remove(0);
            warn!(?dropped, "state model: a change waited too long");
            if let Some(c) = &mut self.check {
                c.mismatch(format!("dropped {dropped:?}: what it waited for never came"));
            }
        }
        self.waiting.push(w);
    }

    /// Applies deltas that no request journals (check mode: the replica
    /// gets them as their own batch).
    fn apply_now(&mut self, deltas: &[Delta]) {
        for d in deltas {
            self.apply_one(d);
        }
        if !deltas.is_empty() {
            let bytes = Delta::encode_batch(deltas);
            self.replay(&bytes);
            self.unjournaled.push(bytes);
        }
    }

    /// Applies a request's batch: its deltas, then (check mode) its bytes
    /// to the replica.
    fn apply_batch(&mut self, deltas: &[Delta], journaled: &[u8]) {
        for d in deltas {
            self.apply_one(d);
        }
        self.replay(journaled);
    }

    /// Applies, in order, the waiting changes that can go now: those whose
    /// needs are met and that no earlier waiting change of the same open
    /// or lease holds back, until none can. True when one of them starts a
    /// break (a new deadline).
    fn release_waiting(&mut self) -> bool {
        let mut deadline = false;
        loop {
            let mut held: Vec<Key> = Vec::new();
            let mut next = None;
            for (i, w) in self.waiting.iter().enumerate() {
                let keys = w.keys();
                let free = !keys.iter().any(|k| held.contains(k));
                let ready = match w {
                    Waiting::Logged(d) => self.ready(d),
                    Waiting::Batch(..) => true,
                };
                if free && ready {
                    next = Some(i);
                    break;
                }
                held.extend(keys);
            }
            let Some(i) = next else {
                return deadline;
            };
            match self.waiting.remove(i) {
                Waiting::Logged(d) => {
                    deadline |= matches!(d, Delta::OplockBreaking { .. } | Delta::LeaseBreaking { .. });
                    self.apply_now(std::slice::from_ref(&d));
                }
                Waiting::Batch(deltas, journaled) => {
                    self.apply_batch(&deltas, &journaled);
                    if !deltas.is_empty() {
                        self.unjournaled.push(journaled);
                    }
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

/// Whether `d` (not yet applied to `m`) changes what a restart restores
/// ([`crate::restart`]): durable opens, their locks, caching and sequences,
/// and files and leases. Sessions, tree connects and opens that are not
/// durable end with a restart anyway, so a change of theirs need not be
/// durable before it is answered.
pub fn restorable(m: &Model, d: &Delta) -> bool {
    use Delta::*;
    let durable =
        |id: &crate::model::PersistentFileId| m.open(*id).is_some_and(|o| o.info().durability.timeout_ms().is_some());
    match d {
        NewGeneration { .. }
        | IdsReserved { .. }
        | SessionUp(_)
        | SessionReauthenticated(_)
        | SessionExpiry { .. }
        | SessionDown { .. }
        | TreeUp { .. }
        | TreeDown { .. } => false,
        OpenUp(n) => n.info.durability.timeout_ms().is_some(),
        OpenDown { open }
        | OpenDisconnected { open, .. }
        | OpenReconnected { open, .. }
        | OplockSet { open, .. }
        | OplockBreaking { open, .. }
        | LockAdded { open, .. }
        | LockRemoved { open, .. }
        | LockSequenceSet { open, .. }
        | ChannelSequenceSet { open, .. }
        | DeleteOnCloseSet { open, .. } => durable(open),
        // The WRITE it goes with waits for its record anyway.
        AppendedAt { .. } | ClosedAfterWriting { .. } => false,
        _ => true,
    }
}

/// Applies `d` to `model` as the live recorder does: first moving the
/// partition to the next generation when `d` brings in the first id of it.
/// Recovery rebuilds the model with it ([`crate::restart::rebuild`]).
pub fn apply_with_carry(model: &mut Model, d: &Delta) -> Result<(), crate::model::ApplyError> {
    if let Some(id) = new_id(d) {
        let parts = IdParts::of(id);
        let current = model.partition(parts.set).map(|p| p.ids().generation());
        if current.is_some_and(|g| parts.generation == g.wrapping_add(1)) {
            model.apply(&Delta::NewGeneration { set: parts.set })?;
        }
    }
    model.apply(d)
}

/// The leases of the opens that `deltas` (not yet applied to `m`) take out
/// of the model.
fn leases_closing(m: &Model, deltas: &[Delta]) -> Vec<crate::model::LeaseId> {
    let lease_of =
        |o: &OpenRecord| o.lease_key().map(|key| crate::model::LeaseId { client: o.info().client_guid, key });
    deltas
        .iter()
        .filter_map(|d| match d {
            Delta::OpenDown { open } => m.open(*open).and_then(lease_of),
            _ => None,
        })
        .collect()
}

/// The id a delta brings into the model, if any.
fn new_id(d: &Delta) -> Option<u64> {
    match d {
        Delta::SessionUp(info) => Some(info.id.0),
        Delta::OpenUp(n) => Some(n.info.persistent.0),
        _ => None,
    }
}

/// What applying a batch came to, for what is woken and ended after it.
struct Applied {
    /// A released change brought a deadline.
    deadline: bool,
    /// A byte-range lock went, or an open closed ([`Server::lock_released`]).
    released: bool,
    /// The leases of the opens that left the model: those no open uses
    /// any more end ([`FileTable::end_leases`]).
    leases: Vec<crate::model::LeaseId>,
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

    pub fn idle(&self) -> bool {
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
    ///
    /// A journal that keeps records gets them as a state change of their
    /// own ([`crate::journal::Journal::state_change`]), appended under the
    /// model's lock when they are applied: recovery applies them in log
    /// order with the requests'.
    pub fn apply(&self, deltas: &[Delta]) {
        if deltas.is_empty() && !self.checking {
            return;
        }
        let journaled = self.delta_bytes(deltas);
        let mut r = lock(&self.recorder);
        let applied = self.apply_locked(&mut r, deltas, &journaled, false);
        drop(r);
        self.after_apply(deltas, applied);
        self.refresh_handles(deltas);
    }

    /// [`Server::apply`] for deltas the journal was given as `journaled`
    /// ([`Delta::encode_batch`]) at point 3: in check mode the replica is
    /// built from those bytes, as recovery builds the model.
    pub fn apply_journaled(&self, deltas: &[Delta], journaled: &[u8]) {
        if deltas.is_empty() && !self.checking {
            return;
        }
        let mut r = lock(&self.recorder);
        let applied = self.apply_locked(&mut r, deltas, journaled, true);
        drop(r);
        self.after_apply(deltas, applied);
        self.refresh_handles(deltas);
    }

    /// The bytes of a batch for the journal and check mode, none when
    /// neither reads them.
    fn delta_bytes(&self, deltas: &[Delta]) -> Vec<u8> {
        if deltas.is_empty() || !(self.journal.keeps_records() || self.checking) {
            Vec::new()
        } else {
            Delta::encode_batch(deltas)
        }
    }

    /// Applies a batch under the model's lock, or has it wait in the
    /// recorder (see the module doc), then what it released; journals, in
    /// the order they were applied, every batch whose record did not carry
    /// it (`in_record`: the point-3 record holds this one, and it applies
    /// now). What it came to: a released change brought a deadline, a
    /// lock went or an open closed ([`Applied`]).
    fn apply_locked(&self, r: &mut Recorder, deltas: &[Delta], journaled: &[u8], in_record: bool) -> Applied {
        let leases = leases_closing(r.model(), deltas);
        if r.batch_waits(deltas) {
            // Rare (a lease key used again while its old lease waits to
            // go); said, since a crash now loses the batch with its record.
            info!(deltas = deltas.len(), "a request's changes wait in the recorder for an earlier change");
            r.wait(Waiting::Batch(deltas.to_vec(), journaled.to_vec()));
        } else {
            r.apply_batch(deltas, journaled);
            if !in_record && !deltas.is_empty() {
                r.unjournaled.push(journaled.to_vec());
            }
        }
        let deadline = r.release_waiting();
        r.check_replay();
        self.journal_unjournaled(r);
        Applied { deadline, released: self.count_locks(r, deltas), leases }
    }

    /// Keeps [`Server::byte_locks`] at the model's count, under the model's
    /// lock after a change; true when a blocked LOCK may now be granted or
    /// must give up: a lock went, or an open closed.
    fn count_locks(&self, r: &Recorder, deltas: &[Delta]) -> bool {
        let now = r.model().lock_count();
        let was = self.byte_locks.swap(now, Ordering::AcqRel);
        now < was || deltas.iter().any(|d| matches!(d, Delta::OpenDown { .. }))
    }

    /// Appends, in order, the batches the recorder applied that no record
    /// carries yet, as state changes.
    fn journal_unjournaled(&self, r: &mut Recorder) {
        if !self.journal.keeps_records() {
            r.unjournaled.clear();
            return;
        }
        for b in r.unjournaled.drain(..) {
            if let Err(e) = self.journal.state_change(&b) {
                // Applied all the same: the live server goes on with what
                // it did; a restart would not see this change.
                warn!("journal, state change not recorded: {e}");
            }
        }
    }

    fn after_apply(&self, deltas: &[Delta], applied: Applied) {
        self.note_deadlines(deltas);
        if !applied.leases.is_empty() {
            // Called with no lock held ([`Server::apply`], [`Server::point3`]).
            self.files().caching(|t, m| t.end_leases(m, &applied.leases));
        }
        if applied.deadline {
            self.deadlines.notify_one();
        }
        if applied.released {
            self.lock_released.notify_waiters();
        }
    }

    /// Makes the runtime handles of the sessions and tree connects that
    /// `deltas` changed anew from the model's records (see "Sessions and
    /// tree connects" in the module doc): a session's copy of its record
    /// ([`super::session::SessionInner::info`]), a tree connect's
    /// [`super::Tree`] (made at its `TreeUp`, dropped at its `TreeDown`).
    /// A handle torn down already is left alone. Called with no lock held
    /// (by [`Server::apply`], [`Server::apply_journaled`] and
    /// [`Server::point3`]: the changes made at once, through the file
    /// table or [`Server::change_open`], are of opens and leases only);
    /// takes the session table's lock, then the session's, then the
    /// model's, and reads the record as it is then, so that the handle
    /// ends as the model is whatever order two requests' refreshes run in.
    pub fn refresh_handles(&self, deltas: &[Delta]) {
        for d in deltas {
            let (session, tree) = match d {
                Delta::SessionUp(i) | Delta::SessionReauthenticated(i) => (i.id, None),
                Delta::SessionExpiry { session, .. } | Delta::SessionDown { session } => (*session, None),
                Delta::TreeUp { session, tree } => (*session, Some(tree.id)),
                Delta::TreeDown { session, tree } => (*session, Some(*tree)),
                _ => continue,
            };
            let Some(s) = self.session(session.0) else {
                continue;
            };
            let mut inner = lock(&s.inner);
            if matches!(inner.auth, super::session::AuthState::Expired) {
                continue;
            }
            let r = lock(&self.recorder);
            let record = r.model().session(session);
            match tree {
                None => inner.set_info(record.map(|rec| std::sync::Arc::new(rec.info().clone()))),
                Some(t) => {
                    let handle = record
                        .and_then(|rec| rec.tree(t))
                        .and_then(|info| super::Tree::from_record(info, self.share(&info.share)));
                    drop(r);
                    match handle {
                        Some(h) => inner.trees.insert(t.0, std::sync::Arc::new(h)),
                        None => inner.trees.remove(&t.0),
                    };
                }
            }
        }
    }

    /// Point 3 of element `index` of `op`: its response and its deltas go to
    /// the journal, and the deltas are applied to the model, both under the
    /// model's lock when there are deltas, so that the log order of delta
    /// records is the order they were applied in, and a checkpoint
    /// ([`Server::checkpoint`]) falls between two of them, never across one.
    /// A batch that must wait in the recorder goes into the record without
    /// its deltas, and is journaled as a state change when it applies.
    /// A full journal is waited out ([`journal::with_backoff`]); what was
    /// done is applied to the model whatever the journal answered.
    ///
    /// Returns the record's ticket, and whether the deltas changed what a
    /// restart restores ([`restorable`]): only then must the answer wait
    /// for the record to be durable (besides a WRITE's, whose data it
    /// carries).
    pub async fn point3(
        &self,
        op: OpId,
        index: usize,
        key: Option<&ReplayKey>,
        status: u32,
        response: &[u8],
        deltas: &[Delta],
    ) -> Result<(Ticket, bool), journal::Error> {
        let bytes = self.delta_bytes(deltas);
        let r = journal::with_backoff(|| {
            if deltas.is_empty() {
                let t = self.journal.post_completion(op, index, key, status, response, &[])?;
                self.apply_journaled(deltas, &bytes);
                return Ok((t, false));
            }
            let mut r = lock(&self.recorder);
            let waits = r.batch_waits(deltas);
            let t = self.journal.post_completion(op, index, key, status, response, if waits { &[] } else { &bytes })?;
            let keeps = deltas.iter().any(|d| restorable(r.model(), d));
            let applied = self.apply_locked(&mut r, deltas, &bytes, !waits);
            drop(r);
            self.after_apply(deltas, applied);
            self.refresh_handles(deltas);
            Ok((t, keeps))
        })
        .await;
        if r.is_err() {
            self.apply_journaled(deltas, &bytes);
        }
        r
    }

    /// Appends a checkpoint of the model to the journal, under the model's
    /// lock (see [`Server::point3`]); returns its ticket, durable once
    /// [`crate::journal::Journal::durable`] says so.
    pub fn checkpoint(&self) -> Result<Ticket, journal::Error> {
        let r = lock(&self.recorder);
        let bytes = r.model().checkpoint();
        self.journal.checkpoint(&bytes)
    }

    /// Applies changes where they are made, not at point 3 (an open's
    /// long-lived fields, a file's, byte-range locks), each now or once what
    /// it waits for has been applied, and journals them as state changes,
    /// all under the model's lock `r`.
    fn apply_at_once(&self, mut r: MutexGuard<'_, Recorder>, deltas: &[Delta]) {
        r.apply_caching(deltas);
        let deadline = r.release_waiting();
        r.check_replay();
        self.journal_unjournaled(&mut r);
        let released = self.count_locks(&r, deltas);
        drop(r);
        self.after_apply(deltas, Applied { deadline, released, leases: Vec::new() });
    }

    /// Reads an open's record in the model, by its persistent id: where
    /// the open's long-lived fields are read (see "Opens' fields" in the
    /// module doc). `None` for an open the model does not have (a pipe, or
    /// a new open whose CREATE has not passed its point 3). Takes the
    /// model's lock, the last in the lock order.
    pub fn read_open<R>(&self, open: u64, read: impl FnOnce(Option<&OpenRecord>) -> R) -> R {
        read(lock(&self.recorder).model().open(PersistentFileId(open)))
    }

    /// Changes an open's long-lived fields at once (see "Opens' fields" in
    /// the module doc): under one hold of the model's lock, `decide` reads
    /// the open's record (`None`: the model does not have it) and returns
    /// its answer and the deltas of what it changes, which are applied and
    /// journaled as a state change before the lock is let go, so that the
    /// next request, on any connection, sees them.
    ///
    /// Returns `decide`'s answer, and whether a change was one a restart
    /// restores ([`restorable`]): then the element's answer must wait for
    /// its own point-3 record to be durable (`Ctx::kept`), which the log
    /// holds after this change's.
    pub fn change_open<R>(&self, open: u64, decide: impl FnOnce(Option<&OpenRecord>) -> (R, Vec<Delta>)) -> (R, bool) {
        self.change_model(|m| decide(m.open(PersistentFileId(open))))
    }

    /// [`Server::change_open`] for a decision that reads more of the model
    /// than one open (a LOCK reads the file's locks, [`super::byte_locks`];
    /// a rename or a delete disposition a file's record,
    /// [`super::file_fields`]): under one hold of its lock, `decide` reads
    /// it and returns its answer and the deltas of what it changes, which
    /// are applied and journaled as a state change before the lock is let
    /// go. Returns the answer, and whether a change is one a restart
    /// restores. May be called with `Server.files` held.
    pub fn change_model<R>(&self, decide: impl FnOnce(&Model) -> (R, Vec<Delta>)) -> (R, bool) {
        let r = lock(&self.recorder);
        let (answer, deltas) = decide(r.model());
        if deltas.is_empty() {
            return (answer, false);
        }
        let kept = deltas.iter().any(|d| restorable(r.model(), d));
        self.apply_at_once(r, &deltas);
        (answer, kept)
    }

    /// Wakes the scavenger when the deltas bring a new deadline.
    fn note_deadlines(&self, deltas: &[Delta]) {
        if deltas.iter().any(|d| {
            matches!(d, Delta::OpenDisconnected { .. } | Delta::OplockBreaking { .. } | Delta::LeaseBreaking { .. })
        }) {
            self.deadlines.notify_one();
        }
    }

    /// The per-file table, locked ([`super::lock`]): oplocks and leases
    /// are read and changed through its [`FilesGuard::caching`], which
    /// reads and changes them in the model (see the module doc).
    pub fn files(&self) -> FilesGuard<'_> {
        FilesGuard { server: self, table: lock(&self.files) }
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
    /// completed authentication), each holding a copy of its record as the
    /// model has it now, tree connects of disk shares whose handles copy
    /// their records, opens of
    /// files (connected: by session, tree and volatile id; retained for a
    /// reconnect: disconnected), the count of byte-range locks that READ
    /// and WRITE read ([`Server::io_conflict`]; the locks themselves are the
    /// model's alone), each open's oplock
    /// (level, break in progress) or lease (key, state, epoch, break in
    /// progress), and the same leases; each file's opens, each open's
    /// access and share access, and a file record that waits for its
    /// streams' last close ([`crate::model::FileRecord`]) has an entry whose
    /// only opens are its streams'; and nothing waits in the recorder.
    /// Takes the session table's, each session's, the retained opens', the
    /// file table's and the model's locks, one at a time.
    pub fn check_model(&self) -> Result<(), String> {
        // Where an open is attached (session and tree; none when retained),
        // and its volatile id.
        type OpenView = (Option<(u64, u32)>, u64);
        // A tree connect's id, share, encryption, read-only and maximal access.
        type TreeView = (u32, String, bool, bool, u32);
        let mut live_sessions: BTreeMap<u64, Vec<TreeView>> = BTreeMap::new();
        // The copy of its record each session's handle holds.
        let mut live_records: BTreeMap<u64, Option<crate::model::SessionInfo>> = BTreeMap::new();
        let mut live_opens: BTreeMap<u64, OpenView> = BTreeMap::new();
        let mut live_caching: BTreeMap<u64, CachingView> = BTreeMap::new();
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        let mut keys = Vec::new();
        for s in sessions.iter().filter(|s| s.up.load(Ordering::Acquire)) {
            let inner = lock(&s.inner);
            let mut trees: Vec<TreeView> = inner
                .trees
                .values()
                .filter_map(|t| {
                    t.share().map(|sh| (t.id, sh.cfg.name.clone(), t.encrypt, t.read_only, t.maximal_access))
                })
                .collect();
            trees.sort_unstable();
            live_sessions.insert(s.id, trees);
            live_records.insert(s.id, inner.info().cloned());
            for o in inner.opens.values().filter(|o| o.key.is_some()) {
                live_opens.insert(o.persistent_id, (Some((s.id, o.tree.id)), o.volatile_id));
                keys.extend(o.key.map(|k| (k, o.persistent_id)));
            }
        }
        for (pid, d) in lock(&self.durable).iter() {
            live_opens.insert(*pid, (None, d.open.volatile_id));
            keys.extend(d.open.key.map(|k| (k, *pid)));
        }
        let mut live_leases: Vec<([u8; 16], [u8; 16])> = Vec::new();
        // Each file's opens, and the access and share access of the new
        // opens whose copy the table still holds; and the files whose only
        // opens are their streams'.
        let mut live_files: BTreeMap<u128, Vec<u64>> = BTreeMap::new();
        let mut live_sharing: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
        let mut streams_only: Vec<u128> = Vec::new();
        let stale = {
            let files = lock(&self.files);
            let r = lock(&self.recorder);
            let m = r.model();
            live_leases.extend(files.lease_ids().iter().map(|id| (id.client_guid, id.key)));
            for (key, f) in files.entries() {
                if f.opens.is_empty() {
                    if f.stream_opens > 0 {
                        streams_only.push(key.0);
                    }
                    continue;
                }
                let mut pids: Vec<u64> = f.opens.iter().map(|o| o.persistent_id).collect();
                pids.sort_unstable();
                live_files.insert(key.0, pids);
                live_sharing.extend(
                    f.opens.iter().filter_map(|o| o.pending.map(|s| (o.persistent_id, (s.access, s.share_access)))),
                );
            }
            // What the table's decisions see, through its links (an open's
            // lease key) and the model.
            for (key, pid) in &keys {
                live_caching.insert(*pid, files.caching_view(m, key, *pid));
            }
            // A new open's grant kept past its `OpenUp` (read no more, but
            // it must not differ from the model's).
            let differs = |o: &&super::files::OpenRef| {
                o.pending_oplock.is_some_and(|p| {
                    m.open(PersistentFileId(o.persistent_id))
                        .is_some_and(|rec| OplockState::of_model(rec.caching()) != p)
                })
            };
            files.entries().flat_map(|(_, f)| f.opens.iter()).filter(differs).count()
        };
        let (model, waiting) = {
            let r = lock(&self.recorder);
            (r.model().clone(), r.waiting.len())
        };
        let counted = self.byte_locks.load(Ordering::Acquire);
        let mut model_sessions: BTreeMap<u64, Vec<TreeView>> = BTreeMap::new();
        let mut model_records: BTreeMap<u64, Option<crate::model::SessionInfo>> = BTreeMap::new();
        let mut model_opens: BTreeMap<u64, OpenView> = BTreeMap::new();
        let mut model_caching: BTreeMap<u64, CachingView> = BTreeMap::new();
        let mut model_leases: Vec<([u8; 16], [u8; 16])> = Vec::new();
        let mut model_files: BTreeMap<u128, Vec<u64>> = BTreeMap::new();
        let mut model_sharing: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
        let mut lingering: Vec<u128> = Vec::new();
        for set in model.sets() {
            let Some(p) = model.partition(set) else {
                continue;
            };
            model_leases.extend(p.leases().map(|l| (l.id().client.0, l.id().key.0)));
            for s in p.sessions() {
                let mut trees: Vec<TreeView> =
                    s.trees().map(|t| (t.id.0, t.share.clone(), t.encrypt, t.read_only, t.maximal_access)).collect();
                trees.sort_unstable();
                model_sessions.insert(s.id().0, trees);
                model_records.insert(s.id().0, Some(s.info().clone()));
            }
            for o in p.opens() {
                let attached = o.session().zip(o.tree()).map(|(s, t)| (s.0, t.0));
                model_opens.insert(o.id().0, (attached, o.volatile().0));
                model_caching.insert(o.id().0, CachingView::of_model(p, o));
                model_sharing.insert(o.id().0, (o.info().granted_access, o.info().share_access));
            }
            for f in p.files() {
                let pids: Vec<u64> = f.opens().map(|o| o.0).collect();
                if pids.is_empty() {
                    lingering.push(f.uid().0);
                } else {
                    model_files.insert(f.uid().0, pids);
                }
            }
        }
        let mut diffs = Vec::new();
        diff("session", &live_sessions, &model_sessions, &mut diffs);
        diff("record of session", &live_records, &model_records, &mut diffs);
        diff("open", &live_opens, &model_opens, &mut diffs);
        // Byte-range locks have no runtime copy to compare (the model's
        // own invariants hold every lock to an open of its file); what
        // stands for them is the count that spares READ and WRITE the
        // model's lock while there are none.
        if counted != model.lock_count() {
            diffs.push(format!("{counted} byte-range locks counted, {} in the model", model.lock_count()));
        }
        diff("caching of open", &live_caching, &model_caching, &mut diffs);
        // The model alone says where files are and whether a delete is
        // pending; the table must agree on which opens each file has (its
        // last close is the table's to tell), and keep the entry of a file
        // whose record waits for its streams' last close.
        diff("opens of file", &live_files, &model_files, &mut diffs);
        // A new open's own copy of its access and share access, kept until
        // the model has the open (and dropped at the next look after): the
        // same as the model's where both are.
        for (pid, s) in &live_sharing {
            if model_sharing.get(pid).is_some_and(|m| m != s) {
                diffs.push(format!(
                    "access and share access of open {pid:#x}: table {s:?}, model {:?}",
                    model_sharing[pid]
                ));
            }
        }
        for uid in lingering.iter().filter(|u| !streams_only.contains(u)) {
            diffs.push(format!("file {uid:#x} waits for its streams in the model, but none is open"));
        }
        live_leases.sort_unstable();
        model_leases.sort_unstable();
        if live_leases != model_leases {
            diffs.push(format!("the lease tables differ: live {live_leases:?}, model {model_leases:?}"));
        }
        if waiting != 0 {
            diffs.push(format!("{waiting} changes still wait in the recorder"));
        }
        if stale != 0 {
            diffs.push(format!("{stale} new opens' oplock grants differ from the model's"));
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(format!("the model and the runtime objects differ: {}", diffs.join("; ")))
        }
    }
}

/// Describes how two maps differ (at most a few entries).
fn diff<K: Ord + std::fmt::LowerHex, V: PartialEq + std::fmt::Debug>(
    what: &str,
    live: &BTreeMap<K, V>,
    model: &BTreeMap<K, V>,
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

/// The per-file table's lock, from [`Server::files`]. Oplocks and leases
/// are read and changed through [`FilesGuard::caching`], which takes the
/// model's lock under it.
pub struct FilesGuard<'a> {
    server: &'a Server,
    table: MutexGuard<'a, FileTable>,
}

impl FilesGuard<'_> {
    /// Runs `f` with the table and the state model under its lock
    /// ([`ModelHold`]): where oplock levels and leases are read, and
    /// changed at once (see the module doc). The model's lock is let go
    /// when `f` returns; the table's stays held.
    pub fn caching<R>(&mut self, f: impl FnOnce(&mut FileTable, &mut ModelHold<'_>) -> R) -> R {
        let mut hold = ModelHold { server: self.server, r: Some(lock(&self.server.recorder)), deltas: Vec::new() };
        f(&mut self.table, &mut hold)
    }
}

impl FilesGuard<'_> {
    /// [`FileTable::break_level2`], taking the model's lock only when an
    /// open of the file may hold a level II oplock or a lease: a WRITE or
    /// LOCK of a file nobody caches does not wait for it.
    pub fn break_level2(&mut self, key: &crate::model::FileUid, by: u64) {
        if self.table.may_cache(key) {
            self.caching(|t, m| t.break_level2(m, key, by));
        }
    }
}

impl Deref for FilesGuard<'_> {
    type Target = FileTable;

    fn deref(&self) -> &FileTable {
        &self.table
    }
}

impl DerefMut for FilesGuard<'_> {
    fn deref_mut(&mut self) -> &mut FileTable {
        &mut self.table
    }
}

/// The state model under its lock, as the per-file table reads and changes
/// oplocks and leases ([`FilesGuard::caching`]): each change is applied
/// when it is made (or waits in the recorder for its open's `OpenUp`), so
/// the next decision, in the same call or another, reads it; when the hold
/// ends, what the changes released is applied and everything is journaled
/// as state changes, in the order applied, before the model's lock is let
/// go.
pub struct ModelHold<'a> {
    server: &'a Server,
    r: Option<MutexGuard<'a, Recorder>>,
    deltas: Vec<Delta>,
}

impl ModelHold<'_> {
    /// The model as it is now, with every change made through the hold.
    pub fn model(&self) -> &Model {
        self.r.as_ref().expect("held until dropped").model()
    }
}

impl super::files::CachingModel for ModelHold<'_> {
    fn model(&self) -> &Model {
        ModelHold::model(self)
    }

    fn change(&mut self, d: Delta) {
        if let Some(r) = self.r.as_mut() {
            r.apply_caching(std::slice::from_ref(&d));
        }
        self.deltas.push(d);
    }
}

impl Drop for ModelHold<'_> {
    fn drop(&mut self) {
        let Some(mut r) = self.r.take() else {
            return;
        };
        if self.deltas.is_empty() {
            return;
        }
        let deadline = r.release_waiting();
        r.check_replay();
        self.server.journal_unjournaled(&mut r);
        let released = self.server.count_locks(&r, &self.deltas);
        drop(r);
        self.server.after_apply(&self.deltas, Applied { deadline, released, leases: Vec::new() });
    }
}

/// The recorder as the per-file table's model: what the server's
/// [`ModelHold`] does under the model's lock, and what the table's tests
/// use alone.
impl super::files::CachingModel for Recorder {
    fn model(&self) -> &Model {
        &self.model
    }

    fn change(&mut self, d: Delta) {
        self.apply_caching(std::slice::from_ref(&d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    /// A session's and its tree connects' handles are made from the
    /// model's records when their deltas are applied, and only then: the
    /// handle has no copy of its own before (the SESSION_SETUP's and the
    /// TREE_CONNECT's deltas carry the fields), follows a
    /// re-authentication, and loses the tree at its `TreeDown`.
    #[test]
    fn session_and_tree_handles_are_made_from_the_model() {
        use crate::state::deltas::{self, Identity};
        use crate::state::session::AuthState;
        use crate::state::Session;
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::Config::default();
        cfg.shares.push(crate::config::ShareConfig::new("data", dir.path()));
        let server = Server::new(cfg).unwrap();
        let id = server.next_id();
        let session = Arc::new(Session::new(id, 1, AuthState::Valid));
        lock(&server.sessions).insert(id, session.clone());
        let alice =
            Identity { owner: Owner { user: "alice".into(), domain: "D".into() }, guest: false, anonymous: false };
        let up = deltas::session_authenticated(&session, &lock(&session.inner), alice, [3; 16]).unwrap();
        assert!(matches!(up, Delta::SessionUp(_)));
        assert!(lock(&session.inner).info().is_none() && !session.is_valid(), "no copy before the model has it");
        server.apply(&[up]);
        assert!(session.is_valid());
        let model = server.model();
        assert_eq!(lock(&session.inner).info(), model.session(SessionId(id)).map(|r| r.info()));

        let tree =
            TreeInfo { id: TreeId(5), share: "data".into(), encrypt: true, read_only: true, maximal_access: 0x1234 };
        let up = deltas::tree_up(&session, tree).unwrap();
        assert!(session.tree(5).is_none());
        server.apply(&[up]);
        let t = session.tree(5).expect("the tree's handle, made as its TreeUp applied");
        assert!(t.encrypt && t.read_only && t.maximal_access == 0x1234 && t.share().is_some());

        let bob = Identity { owner: Owner { user: "bob".into(), domain: "D".into() }, guest: true, anonymous: false };
        let again = deltas::session_authenticated(&session, &lock(&session.inner), bob, [9; 16]).unwrap();
        assert!(matches!(again, Delta::SessionReauthenticated(_)));
        server.apply(&[again]);
        {
            let inner = lock(&session.inner);
            assert_eq!(inner.owner().user, "bob");
            assert!(inner.unauthenticated());
            assert_eq!(inner.client_guid(), Some([3; 16]), "a re-authentication keeps the ClientGuid");
        }
        server.check_model().unwrap();

        server.apply(&[deltas::tree_down(&session, &t).unwrap()]);
        assert!(session.tree(5).is_none(), "the handle goes with its record");
        server.check_model().unwrap();
    }

    /// A lease whose last open left the file table (its CLOSE) stays in
    /// the model while the open does, and the server ends it when the
    /// open's `OpenDown` is applied: the table and the model then agree.
    #[test]
    fn the_server_ends_a_lease_once_its_last_open_leaves_the_model() {
        use crate::state::deltas::{self, Identity};
        use crate::state::files::{Inode, OpenRef};
        use crate::state::session::AuthState;
        use crate::state::Session;
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let mut cfg = crate::config::Config::default();
        cfg.shares.push(crate::config::ShareConfig::new("data", dir.path()));
        let server = Server::new(cfg).unwrap();
        let id = server.next_id();
        let session = Arc::new(Session::new(id, 1, AuthState::Valid));
        lock(&server.sessions).insert(id, session.clone());
        let who = Identity { owner: Owner { user: "u".into(), domain: "D".into() }, guest: false, anonymous: false };
        let up = deltas::session_authenticated(&session, &lock(&session.inner), who, [1; 16]).unwrap();
        server.apply(&[up]);
        let tree =
            TreeInfo { id: TreeId(1), share: "data".into(), encrypt: false, read_only: false, maximal_access: 0 };
        server.apply(&[deltas::tree_up(&session, tree).unwrap()]);
        let pid = server.next_id();
        let file = FileUid(7);
        let lid = crate::state::lease::LeaseId { client_guid: [1; 16], key: [5; 16] };
        let sink = crate::state::oplock::BreakSink {
            tx: crate::state::oplock::BreakSink::unreachable(),
            session_id: id,
            file_id: Default::default(),
            encrypt: None,
            client: None,
        };
        {
            let mut files = server.files();
            files.add_open(file, Inode { dev: 1, ino: 7 }, OpenRef::new(pid, 1, 7));
            files.caching(|t, m| t.grant_lease(m, &file, pid, lid, 7, None, None, sink));
        }
        let mut up = open_of(SessionId(id), pid, 7, Caching::Lease(LeaseKey([5; 16])));
        if let Delta::OpenUp(n) = &mut up {
            n.info.share = "data".into();
        }
        server.apply(&[up]);
        assert!(server.model().open(PersistentFileId(pid)).is_some());
        let has = || server.model().partition(server.set()).unwrap().lease(lid.model()).is_some();
        assert!(has());
        server.files().caching(|t, m| t.remove_open(m, &file, pid));
        assert!(has(), "its open is still in the model");
        server.apply(&[Delta::OpenDown { open: PersistentFileId(pid) }]);
        assert!(!has(), "gone with the open's OpenDown");
        server.check_model().unwrap();
    }

    const SET: SetId = SetId(0);

    /// A recorder whose model has a session with a tree connect.
    fn recorder() -> (Recorder, SessionId) {
        let mut r = Recorder::new(SET, 3);
        let id = SessionId(r.model.partition(SET).unwrap().ids().peek(1).unwrap());
        r.apply_one(&Delta::SessionUp(Box::new(SessionInfo {
            id,
            owner: Owner { user: "u".into(), domain: "D".into() },
            guest: false,
            anonymous: false,
            client_guid: ClientGuid([1; 16]),
            dialect: 0x311,
            signing_algorithm: 0,
            cipher: 0,
            signing_required: false,
            encrypt_data: false,
            keys: SessionKeys::default(),
            created_at: Timestamp(1),
            expires_at: None,
        })));
        let tree = TreeInfo { id: TreeId(1), share: "s".into(), encrypt: false, read_only: false, maximal_access: 0 };
        r.apply_one(&Delta::TreeUp { session: id, tree });
        (r, id)
    }

    fn open_up(session: SessionId, pid: u64, caching: Caching) -> Delta {
        open_of(session, pid, 7, caching)
    }

    fn open_of(session: SessionId, pid: u64, file: u128, caching: Caching) -> Delta {
        Delta::OpenUp(Box::new(NewOpen {
            info: OpenInfo {
                persistent: PersistentFileId(pid),
                file: FileUid(file),
                share: "s".into(),
                create_guid: None,
                client_guid: ClientGuid([1; 16]),
                app_instance_id: None,
                app_instance_version: None,
                owner: Owner { user: "u".into(), domain: "D".into() },
                durability: Durability::None,
                replay_eligible: false,
                granted_access: 0,
                share_access: 7,
                create_options: 0,
                is_dir: false,
                create_action: 1,
            },
            path: "f".into(),
            session,
            tree: TreeId(1),
            volatile: VolatileFileId(pid),
            caching,
            channel_sequence: 0,
            delete_on_close: false,
        }))
    }

    /// Another request breaks a new open's batch oplock, and the holder
    /// acknowledges, before the CREATE's own delta has been applied: both
    /// changes wait for it, then apply in order.
    #[test]
    fn caching_changes_of_an_open_on_its_way_wait_for_it() {
        let (mut r, session) = recorder();
        let pid = r.model.partition(SET).unwrap().ids().peek(1).unwrap();
        let open = PersistentFileId(pid);
        let breaking = Delta::OplockBreaking { open, to: OplockLevel::II, deadline: Timestamp(99) };
        r.apply_caching(std::slice::from_ref(&breaking));
        assert_eq!(r.waiting, [Waiting::Logged(breaking)]);
        r.apply_caching(&[Delta::OplockSet { open, level: OplockLevel::II }]);
        assert_eq!(r.waiting.len(), 2);
        // The CREATE's own batch, which they wait for, does not wait for
        // them (it would wait for ever).
        let up = [open_up(session, pid, Caching::Oplock { level: OplockLevel::Batch, breaking: None })];
        assert!(!r.batch_waits(&up));
        r.apply_batch(&up, &[]);
        assert!(r.release_waiting());
        assert!(r.waiting.is_empty());
        let o = r.model.open(open).unwrap();
        assert_eq!(o.caching(), Caching::Oplock { level: OplockLevel::II, breaking: None });
        // An open the model has is changed at once.
        r.apply_caching(&[Delta::OplockSet { open, level: OplockLevel::None }]);
        assert!(r.waiting.is_empty());
        assert_eq!(r.model.open(open).unwrap().caching(), Caching::None);
        assert!(!r.release_waiting());
    }

    fn granted(file: u128) -> Delta {
        Delta::LeaseGranted {
            set: SET,
            lease: LeaseId { client: ClientGuid([1; 16]), key: LeaseKey([5; 16]) },
            file: FileUid(file),
            parent: None,
            version: LeaseVersion::V1,
            state: 7,
            epoch: 0,
        }
    }

    /// A lease's last open closes and, before that CLOSE's own delta is
    /// applied, the same client makes the lease anew (on another file) for
    /// a new open: the lease's end waits for the `OpenDown`, the new lease
    /// for the end, and the new open for the new lease.
    #[test]
    fn a_lease_ends_and_is_made_anew_in_the_order_the_table_did_it() {
        let (mut r, session) = recorder();
        let lease = LeaseId { client: ClientGuid([1; 16]), key: LeaseKey([5; 16]) };
        let gone = Delta::LeaseGone { set: SET, lease };
        r.apply_caching(&[granted(7)]);
        let b = r.model.partition(SET).unwrap().ids().peek(1).unwrap();
        r.apply_batch(&[open_of(session, b, 7, Caching::Lease(lease.key))], &[]);
        // B closes: the table drops the lease, then makes it anew for A.
        r.apply_caching(std::slice::from_ref(&gone));
        r.apply_caching(&[granted(8)]);
        assert_eq!(r.waiting.len(), 2);
        let a = r.model.partition(SET).unwrap().ids().peek(2).unwrap();
        let a_up = [open_of(session, a, 8, Caching::Lease(lease.key))];
        // A's CREATE answers first: its open waits for its lease.
        assert!(r.batch_waits(&a_up));
        r.wait(Waiting::Batch(a_up.to_vec(), Vec::new()));
        assert!(!r.release_waiting());
        assert_eq!(r.model.partition(SET).unwrap().lease(lease).unwrap().file(), FileUid(7));
        // B's CLOSE lands: everything follows, in order.
        r.apply_batch(&[Delta::OpenDown { open: PersistentFileId(b) }], &[]);
        r.release_waiting();
        assert!(r.waiting.is_empty());
        let p = r.model.partition(SET).unwrap();
        assert_eq!(p.lease(lease).unwrap().file(), FileUid(8));
        assert_eq!(p.lease_opens(lease).map(|o| o.id().0).collect::<Vec<_>>(), [a]);
        r.model.check_invariants().unwrap();
    }

    /// An open joins a lease while the lease's other open closes, and
    /// the CLOSE's delta lands first: the lease stays (it is not the
    /// `OpenDown` that ends a lease, the table's `LeaseGone` is).
    #[test]
    fn a_lease_joined_on_the_way_outlives_its_other_open() {
        let (mut r, session) = recorder();
        let lease = LeaseId { client: ClientGuid([1; 16]), key: LeaseKey([5; 16]) };
        r.apply_caching(&[granted(7)]);
        let b = r.model.partition(SET).unwrap().ids().peek(1).unwrap();
        r.apply_batch(&[open_of(session, b, 7, Caching::Lease(lease.key))], &[]);
        let a = r.model.partition(SET).unwrap().ids().peek(1).unwrap();
        r.apply_batch(&[Delta::OpenDown { open: PersistentFileId(b) }], &[]);
        let up = [open_of(session, a, 7, Caching::Lease(lease.key))];
        assert!(!r.batch_waits(&up));
        r.apply_batch(&up, &[]);
        assert!(r.waiting.is_empty());
        assert_eq!(r.model.partition(SET).unwrap().lease_opens(lease).count(), 1);
        r.model.check_invariants().unwrap();
    }
}
