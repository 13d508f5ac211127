//! The server's long-lived state as plain data: what a client would miss after a crash,
//! a restart or a takeover ([MS-SMB2] 3.3.1: sessions, tree connects, opens, leases,
//! oplocks, byte-range locks, lock and channel sequences, the id allocators), apart from
//! everything that cannot be saved (file descriptors, connections, channels, timers).
//!
//! Every change is a [`Delta`], and [`Model::apply`] is the one function that changes
//! the model: live requests and recovery both call it (as raft-engine's memtable applies
//! a `LogBatch` live and during recovery). Fields are private; what is read goes through
//! accessors. A delta that would make the model inconsistent (an unknown or duplicate
//! id, a lock of no open, ...) is refused with an [`ApplyError`] and changes nothing;
//! [`Model::check_invariants`] says what apply keeps true.
//!
//! The model is partitioned by share set ([`SetId`], the shares that move with one
//! address): a session belongs to the set of the address it came in on, and with it its
//! trees, opens, the files they open, their leases and the set's id allocator. One set can
//! be checkpointed, handed over and restored alone ([`Model::checkpoint_set`],
//! [`Model::restore_set`]).
//!
//! Timers are deadlines (wall-clock milliseconds, [`Timestamp`]), as in quinn-proto:
//! [`Model::poll_timeout`] is the earliest, and [`Model::expired`] the deltas that the
//! deadlines passed by `now` call for (retained-handle expiry, oplock and lease break
//! time-outs). The I/O layer sleeps until the deadline and applies them.
//!
//! This module does no I/O, takes no locks and reads no clock.
//!
//! # Layout
//! - [`ids`]: the server's id newtypes, the id bit layout and the allocator.
//! - [`session`]: sessions and their tree connects.
//! - [`open`]: opens: durability, oplock or lease, lock sequences.
//! - [`file`](mod@file): files with opens: path, delete-pending, byte-range locks.
//! - [`lease`]: the lease table.
//! - [`delta`]: [`Delta`], every change.
//! - `apply`: [`Model::apply`]'s checks and changes, and the invariants.
//! - [`codec`]: the byte encoding of deltas and records.
//! - [`checkpoint`]: versioned, checksummed checkpoints of the model or of one set.

pub mod checkpoint;
pub mod codec;
pub mod delta;
pub mod file;
pub mod ids;
pub mod lease;
pub mod open;
pub mod session;

mod apply;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet};

use ::ids::SetId;

pub use checkpoint::RestoreError;
pub use codec::DecodeError;
pub use delta::Delta;
pub use file::{ByteLock, FileRecord};
pub use ids::{
    AppInstanceId, AsyncId, ClientGuid, ConnId, CreateGuid, FileUid, IdAlloc, LeaseKey, PersistentFileId, SessionId,
    Timestamp, TreeId, VolatileFileId,
};
pub use lease::{LeaseBreak, LeaseId, LeaseRecord, LeaseVersion};
pub use open::{Caching, Durability, LockSequences, NewOpen, OpenInfo, OpenRecord, OplockBreak, OplockLevel};
pub use session::{Owner, SessionInfo, SessionKeys, SessionRecord, TreeInfo};

/// Why a delta was refused. The model is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("no partition for {0}")]
    UnknownSet(SetId),
    #[error("{0} cannot allocate ids (set above {max})", max = ids::MAX_SET)]
    SetOutOfRange(SetId),
    #[error("{0} is already in the model")]
    SetPresent(SetId),
    #[error("{0:?}: no such session")]
    UnknownSession(SessionId),
    #[error("{0:?} exists")]
    DuplicateSession(SessionId),
    #[error("{1:?} of {0:?}: no such tree connect")]
    UnknownTree(SessionId, TreeId),
    #[error("{1:?} of {0:?} exists")]
    DuplicateTree(SessionId, TreeId),
    #[error("{0:?}: no such open")]
    UnknownOpen(PersistentFileId),
    #[error("{0:?} exists")]
    DuplicateOpen(PersistentFileId),
    #[error("{1:?} is in use in {0:?}")]
    DuplicateVolatile(SessionId, VolatileFileId),
    #[error("{0:?}: no such file")]
    UnknownFile(FileUid),
    #[error("{0:?}: no such lease")]
    UnknownLease(LeaseId),
    #[error("{0:?} exists")]
    DuplicateLease(LeaseId),
    #[error("id {0:#x} is not of its partition's current generation")]
    NotCurrent(u64),
    #[error("{0}")]
    InUse(&'static str),
    #[error("{0:?} is not connected")]
    NotConnected(PersistentFileId),
    #[error("{0:?} is not disconnected")]
    NotDisconnected(PersistentFileId),
    #[error("{0:?} is not durable")]
    NotDurable(PersistentFileId),
    #[error("{0:?} holds no such lock")]
    NoSuchLock(PersistentFileId),
    #[error("no lease break in progress")]
    NotBreaking,
    #[error("{0} has no generation left")]
    Exhausted(SetId),
    #[error("invalid delta: {0}")]
    Invalid(&'static str),
}

/// The state of one share set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    ids: IdAlloc,
    sessions: BTreeMap<SessionId, SessionRecord>,
    opens: BTreeMap<PersistentFileId, OpenRecord>,
    files: BTreeMap<FileUid, FileRecord>,
    leases: BTreeMap<LeaseId, LeaseRecord>,
    /// The open each session's volatile id names, and its tree: an index
    /// of `opens` (derived, never encoded), so that a new open, a logoff or
    /// a tree disconnect does not look at every open of the set.
    attached: BTreeMap<(SessionId, VolatileFileId), (TreeId, PersistentFileId)>,
    /// The opens made under a CreateGuid, by client and CreateGuid: an
    /// index of `opens` (derived, never encoded) for the replay of a CREATE.
    by_create_guid: BTreeSet<(ClientGuid, CreateGuid, PersistentFileId)>,
    /// How many byte-range locks the partition's files hold (derived, never
    /// encoded): what tells a READ or WRITE that it has no locks to check
    /// ([`Model::lock_count`]).
    lock_count: usize,
}

impl Partition {
    fn new(ids: IdAlloc) -> Partition {
        Partition {
            ids,
            sessions: BTreeMap::new(),
            opens: BTreeMap::new(),
            files: BTreeMap::new(),
            leases: BTreeMap::new(),
            attached: BTreeMap::new(),
            by_create_guid: BTreeSet::new(),
            lock_count: 0,
        }
    }

    pub fn set(&self) -> SetId {
        self.ids.set()
    }

    /// The partition's id allocator (generation and counter).
    pub fn ids(&self) -> &IdAlloc {
        &self.ids
    }

    pub fn sessions(&self) -> impl Iterator<Item = &SessionRecord> {
        self.sessions.values()
    }

    pub fn session(&self, id: SessionId) -> Option<&SessionRecord> {
        self.sessions.get(&id)
    }

    pub fn opens(&self) -> impl Iterator<Item = &OpenRecord> {
        self.opens.values()
    }

    pub fn open(&self, id: PersistentFileId) -> Option<&OpenRecord> {
        self.opens.get(&id)
    }

    /// A connected open by its session and volatile id.
    pub fn open_by_volatile(&self, session: SessionId, volatile: VolatileFileId) -> Option<&OpenRecord> {
        self.attached.get(&(session, volatile)).and_then(|(_, id)| self.opens.get(id))
    }

    /// The opens a session has (connected ones only: a disconnected open has none).
    pub fn session_opens(&self, session: SessionId) -> impl Iterator<Item = &OpenRecord> {
        self.attached_to(session).filter_map(|(_, id)| self.opens.get(&id))
    }

    pub fn files(&self) -> impl Iterator<Item = &FileRecord> {
        self.files.values()
    }

    pub fn file(&self, uid: FileUid) -> Option<&FileRecord> {
        self.files.get(&uid)
    }

    /// How many byte-range locks the partition's files hold.
    pub fn lock_count(&self) -> usize {
        self.lock_count
    }

    pub fn leases(&self) -> impl Iterator<Item = &LeaseRecord> {
        self.leases.values()
    }

    pub fn lease(&self, id: LeaseId) -> Option<&LeaseRecord> {
        self.leases.get(&id)
    }

    /// The open a replayed CREATE with this CreateGuid from this client gets back
    /// ([MS-SMB2] 3.3.5.9.10): Open.IsReplayEligible, Open.CreateGuid and
    /// Open.ClientGuid match.
    pub fn replay_open(&self, client: ClientGuid, guid: CreateGuid) -> Option<&OpenRecord> {
        self.by_create_guid
            .range((client, guid, PersistentFileId(0))..=(client, guid, PersistentFileId(u64::MAX)))
            .filter_map(|(_, _, id)| self.opens.get(id))
            .find(|o| o.info.replay_eligible)
    }

    /// The persistent open with this CreateGuid from this client: where a DH2C whose
    /// persistent id names no open looks next ([MS-SMB2] 3.3.5.9.12), replay eligible
    /// or not.
    pub fn persistent_open(&self, client: ClientGuid, guid: CreateGuid) -> Option<&OpenRecord> {
        self.by_create_guid
            .range((client, guid, PersistentFileId(0))..=(client, guid, PersistentFileId(u64::MAX)))
            .filter_map(|(_, _, id)| self.opens.get(id))
            .find(|o| matches!(o.info.durability, Durability::Persistent { .. }))
    }

    /// The opens with this Open.AppInstanceId ([MS-SMB2] 3.3.5.9.13).
    pub fn app_instance_opens(&self, id: AppInstanceId) -> impl Iterator<Item = &OpenRecord> {
        self.opens.values().filter(move |o| o.info.app_instance_id == Some(id))
    }

    /// The opens that use a lease.
    pub fn lease_opens(&self, id: LeaseId) -> impl Iterator<Item = &OpenRecord> {
        self.opens.values().filter(move |o| o.info.client_guid == id.client && o.lease_key() == Some(id.key))
    }

    /// The earliest deadline in the partition.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let oplocks = self.opens.values().filter_map(|o| match o.caching {
            Caching::Oplock { breaking: Some(b), .. } => Some(b.deadline),
            _ => None,
        });
        let leases = self.leases.values().filter_map(|l| l.breaking.map(|b| b.deadline));
        let opens = self.opens.values().filter_map(OpenRecord::expires_at);
        oplocks.chain(leases).chain(opens).min()
    }

    /// The deltas that the deadlines passed by `now` call for, in an order that applies:
    /// oplock breaks not acknowledged lose the oplock ([MS-SMB2] 3.3.6.2), lease breaks
    /// not acknowledged lose the lease's state (3.3.6.5), and disconnected opens not
    /// reclaimed are closed (3.3.6.3 Durable Open Scavenger Timer), and the leases
    /// whose last opens these were go.
    pub fn expired(&self, now: Timestamp) -> Vec<Delta> {
        let set = self.set();
        let mut out = Vec::new();
        for o in self.opens.values() {
            if let Caching::Oplock { breaking: Some(b), .. } = o.caching {
                if b.deadline <= now {
                    out.push(Delta::OplockSet { open: o.id(), level: OplockLevel::None });
                }
            }
        }
        for l in self.leases.values() {
            if l.breaking.is_some_and(|b| b.deadline <= now) {
                out.push(Delta::LeaseAcked { set, lease: l.id, state: 0 });
            }
        }
        let mut closed = std::collections::BTreeSet::new();
        for o in self.opens.values() {
            if o.expires_at().is_some_and(|t| t <= now) {
                out.push(Delta::OpenDown { open: o.id() });
                closed.insert(o.id());
            }
        }
        for l in self.leases.values() {
            let mut opens = self.lease_opens(l.id).peekable();
            if opens.peek().is_some() && opens.all(|o| closed.contains(&o.id())) {
                out.push(Delta::LeaseGone { set, lease: l.id });
            }
        }
        out
    }
}

/// The server's long-lived state: one partition per share set the node holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    sets: BTreeMap<SetId, Partition>,
}

impl Model {
    /// A model with no sets.
    pub fn new() -> Model {
        Model::default()
    }

    /// Adds an empty partition for `set`, whose ids start at `generation` (which the
    /// node keeps outside the model, bumped on every start: the journal header's
    /// generation, so that ids never repeat even after a clean shutdown, which restores
    /// nothing). Only its low 24 bits are used ([`ids::MAX_GENERATION`]).
    pub fn add_set(&mut self, set: SetId, generation: u32) -> Result<(), ApplyError> {
        if self.sets.contains_key(&set) {
            return Err(ApplyError::SetPresent(set));
        }
        let ids = IdAlloc::new(set, generation & ids::MAX_GENERATION).ok_or(ApplyError::SetOutOfRange(set))?;
        self.sets.insert(set, Partition::new(ids));
        Ok(())
    }

    /// Takes a set's partition out (after handing it to the partner).
    pub fn remove_set(&mut self, set: SetId) -> Option<Partition> {
        self.sets.remove(&set)
    }

    /// The sets the model holds.
    pub fn sets(&self) -> impl Iterator<Item = SetId> + '_ {
        self.sets.keys().copied()
    }

    pub fn partition(&self, set: SetId) -> Option<&Partition> {
        self.sets.get(&set)
    }

    /// A session, found through its id's set bits.
    pub fn session(&self, id: SessionId) -> Option<&SessionRecord> {
        self.sets.get(&id.set())?.session(id)
    }

    /// An open, found through its id's set bits.
    pub fn open(&self, id: PersistentFileId) -> Option<&OpenRecord> {
        self.sets.get(&id.set())?.open(id)
    }

    /// A file of the partition `set`.
    pub fn file(&self, set: SetId, uid: FileUid) -> Option<&FileRecord> {
        self.sets.get(&set)?.file(uid)
    }

    /// How many byte-range locks the model holds, in every set: none, and no READ or
    /// WRITE needs to look at a file's locks.
    pub fn lock_count(&self) -> usize {
        self.sets.values().map(Partition::lock_count).sum()
    }

    /// Applies one change to the partition it names ([`Delta::set`]): all of it, or
    /// (on error) nothing.
    pub fn apply(&mut self, delta: &Delta) -> Result<(), ApplyError> {
        let set = delta.set();
        self.sets.get_mut(&set).ok_or(ApplyError::UnknownSet(set))?.apply(delta)
    }

    /// The earliest deadline of any partition: when [`Model::expired`] next has
    /// something to say.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.sets.values().filter_map(Partition::poll_timeout).min()
    }

    /// The deltas the deadlines passed by `now` call for (see
    /// [`Partition::expired`]); applying them in order succeeds.
    pub fn expired(&self, now: Timestamp) -> Vec<Delta> {
        self.sets.values().flat_map(|p| p.expired(now)).collect()
    }

    /// Checks what [`Model::apply`] keeps true (for tests, and for restored
    /// checkpoints, which check each partition as they decode it):
    ///
    /// - every record is filed under its own id, and every session and open id is one
    ///   its partition's allocator has handed out;
    /// - a connected open's session and tree exist, the tree is of the open's share,
    ///   and its volatile id is unique in its session; a disconnected open is durable
    ///   and has neither session nor tree;
    /// - a file record exists while it has opens, and lists exactly them (or, with
    ///   none, while a delete is pending on it and a stream of it has opens); a
    ///   lock's owner is an open of its file, and its range is valid;
    /// - a leased open's lease exists and is of the open's file; lease states and
    ///   breaks hold only R, H and W, a break lowers the state.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (set, p) in &self.sets {
            if *set != p.set() {
                return Err(format!("partition of {} filed under {set}", p.set()));
            }
            p.check_invariants().map_err(|e| format!("{set}: {e}"))?;
        }
        Ok(())
    }
}
