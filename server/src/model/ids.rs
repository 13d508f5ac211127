//! The server's own ids, as newtypes, and the allocator of the ids that must be unique
//! across restarts of a node and across the two nodes of a pair.
//!
//! # Bit layout of session ids and file ids
//!
//! [`SessionId`], [`PersistentFileId`] and [`VolatileFileId`] values handed out by a
//! partition come from its [`IdAlloc`], and are laid out as
//!
//! ```text
//!  63        56 55                    32 31                                0
//! | set: 8     | generation: 24         | counter: 32                      |
//! ```
//!
//! - `set` is the share set ([`ids::SetId`], at most [`MAX_SET`]) whose partition
//!   allocated the id. The two nodes of a pair serve different sets, so their ids differ
//!   here; an id also says which partition it belongs to ([`SessionId::set`]).
//! - `generation` is the partition's generation: it starts at a value the node keeps
//!   outside the model (the journal header's generation) and is bumped by every restore
//!   of the partition ([`crate::model::Delta::NewGeneration`]), on this node after a
//!   restart or on the partner after a takeover. Ids handed out before a crash whose
//!   delta never reached the journal can therefore never be handed out again.
//! - `counter` counts from 1 within a generation, and is kept in the model, so a
//!   checkpoint carries it. It stops at [`MAX_COUNTER`]: then the partition needs a new
//!   generation.
//!
//! Zero is never an id (the counter starts at 1), nor is `u64::MAX` (the counter stops
//! one short of all ones), so neither the "no session" id 0 nor the compound's
//! related-open file id `0xFFFF_FFFF_FFFF_FFFF` is ever handed out.
//!
//! Tree ids are per session ([MS-SMB2] 3.3.1.9 TreeConnect.TreeConnectId is unique
//! within its session): each session record counts its own, from 1.

use std::fmt;

use ids::SetId;

/// Bits of the set in an allocated id.
pub const SET_BITS: u32 = 8;
/// Bits of the generation in an allocated id.
pub const GENERATION_BITS: u32 = 24;
/// Bits of the counter in an allocated id.
pub const COUNTER_BITS: u32 = 32;
/// The highest set that can allocate ids.
pub const MAX_SET: u16 = (1 << SET_BITS) - 1;
/// The highest generation.
pub const MAX_GENERATION: u32 = (1 << GENERATION_BITS) - 1;
/// The highest counter value (all ones is never handed out).
pub const MAX_COUNTER: u32 = u32::MAX - 1;

/// Session.SessionId ([MS-SMB2] 3.3.1.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// TreeConnect.TreeConnectId ([MS-SMB2] 3.3.1.9), unique within its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreeId(pub u32);

/// Open.DurableFileId ([MS-SMB2] 3.3.1.10): the persistent half of an SMB2_FILEID, the
/// key of an open in its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersistentFileId(pub u64);

/// Open.FileId ([MS-SMB2] 3.3.1.10): the volatile half of an SMB2_FILEID, unique among
/// the opens of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VolatileFileId(pub u64);

/// A connection (a channel of a session). Runtime only: connections are not saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The AsyncId of a request that went async ([MS-SMB2] 3.3.4.2). Runtime only: pending
/// requests live in the journal, not in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AsyncId(pub u64);

/// Connection.ClientGuid ([MS-SMB2] 3.3.1.7): the client that leases belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientGuid(pub [u8; 16]);

/// Lease.LeaseKey ([MS-SMB2] 3.3.1.12): chosen by the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey(pub [u8; 16]);

/// Open.CreateGuid ([MS-SMB2] 3.3.1.10): a durable v2 or persistent open's id chosen by
/// the client, the replay key of its CREATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CreateGuid(pub [u8; 16]);

/// Open.AppInstanceId ([MS-SMB2] 3.3.1.10, 2.2.13.2.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppInstanceId(pub [u8; 16]);

/// A file's identity that survives a move to the partner's mount: 128 bits chosen at
/// random when Duet first needs the file's identity, and kept with the file in an
/// extended attribute. `(dev, ino)` is a runtime cache of it, outside the model. The
/// model does not allocate these; it only keys files by them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileUid(pub u128);

/// A point in wall-clock time: milliseconds since the Unix epoch. Deadlines are kept
/// in this form so that they mean the same after a restart and on the partner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// `ms` milliseconds later (saturating).
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// The parts of an allocated id (see the module's bit layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdParts {
    pub set: SetId,
    pub generation: u32,
    pub counter: u32,
}

impl IdParts {
    /// Splits an id into its parts.
    pub fn of(id: u64) -> IdParts {
        IdParts {
            set: SetId((id >> (GENERATION_BITS + COUNTER_BITS)) as u16),
            generation: ((id >> COUNTER_BITS) as u32) & MAX_GENERATION,
            counter: id as u32,
        }
    }

    /// The id made of these parts; `None` when a part is out of range.
    pub fn compose(self) -> Option<u64> {
        if self.set.0 > MAX_SET || self.generation > MAX_GENERATION {
            return None;
        }
        Some(
            (u64::from(self.set.0) << (GENERATION_BITS + COUNTER_BITS))
                | (u64::from(self.generation) << COUNTER_BITS)
                | u64::from(self.counter),
        )
    }
}

impl SessionId {
    /// The set whose partition allocated the id (and holds the session).
    pub fn set(self) -> SetId {
        IdParts::of(self.0).set
    }
}

impl PersistentFileId {
    /// The set whose partition allocated the id (and holds the open).
    pub fn set(self) -> SetId {
        IdParts::of(self.0).set
    }
}

/// A partition's id allocator: its set, its generation and the last counter value
/// handed out. It changes only through deltas (`NewGeneration`, `IdsReserved`, and the
/// deltas that bring a new id in, which move the counter up to it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdAlloc {
    set: SetId,
    generation: u32,
    counter: u32,
}

impl IdAlloc {
    /// A fresh allocator; `None` when the set or generation is out of range.
    pub(crate) fn new(set: SetId, generation: u32) -> Option<IdAlloc> {
        IdAlloc::from_parts(set, generation, 0)
    }

    pub(crate) fn from_parts(set: SetId, generation: u32, counter: u32) -> Option<IdAlloc> {
        (set.0 <= MAX_SET && generation <= MAX_GENERATION && counter <= MAX_COUNTER).then_some(IdAlloc {
            set,
            generation,
            counter,
        })
    }

    pub fn set(&self) -> SetId {
        self.set
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The last counter value handed out (0: none yet in this generation).
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// The `n`-th id after the last one handed out (`n` from 1), without taking it:
    /// `None` when the generation has not that many left. The caller takes ids by
    /// applying a delta that carries them (or an `IdsReserved` for a block).
    pub fn peek(&self, n: u32) -> Option<u64> {
        let counter = self.counter.checked_add(n).filter(|c| *c <= MAX_COUNTER && n > 0)?;
        IdParts { set: self.set, generation: self.generation, counter }.compose()
    }

    /// Was `id` allocated by this partition in its current generation?
    pub(crate) fn is_current(&self, id: u64) -> bool {
        let p = IdParts::of(id);
        p.set == self.set && p.generation == self.generation && p.counter != 0 && p.counter <= MAX_COUNTER
    }

    /// Could `id` have been handed out by this partition so far (this generation up to
    /// the counter, or any earlier generation)?
    pub(crate) fn has_issued(&self, id: u64) -> bool {
        let p = IdParts::of(id);
        p.set == self.set
            && p.counter != 0
            && p.counter <= MAX_COUNTER
            && (p.generation < self.generation || (p.generation == self.generation && p.counter <= self.counter))
    }

    /// Moves the counter up to `counter` (never down).
    pub(crate) fn advance(&mut self, counter: u32) {
        self.counter = self.counter.max(counter);
    }

    /// The next generation, counting from 0 again; `false` when there is none.
    pub(crate) fn bump_generation(&mut self) -> bool {
        if self.generation >= MAX_GENERATION {
            return false;
        }
        self.generation += 1;
        self.counter = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn parts_round_trip() {
        let p = IdParts { set: SetId(0xAB), generation: 0x12_3456, counter: 0x89AB_CDEF };
        let id = p.compose().unwrap();
        assert_eq!(id, 0xAB12_3456_89AB_CDEF);
        assert_eq!(IdParts::of(id), p);
        assert_eq!(SessionId(id).set(), SetId(0xAB));
        assert_eq!(PersistentFileId(id).set(), SetId(0xAB));
        assert_eq!(IdParts { set: SetId(256), ..p }.compose(), None);
        assert_eq!(IdParts { generation: MAX_GENERATION + 1, ..p }.compose(), None);
        assert!(IdAlloc::new(SetId(256), 0).is_none());
        assert!(IdAlloc::new(SetId(1), MAX_GENERATION + 1).is_none());
    }

    #[test]
    fn ids_of_two_sets_and_two_generations_never_collide() {
        let mut seen = HashSet::new();
        for set in [SetId(0), SetId(1), SetId(MAX_SET)] {
            for generation in [0, 1, 7, MAX_GENERATION] {
                let mut a = IdAlloc::new(set, generation).unwrap();
                for _ in 0..1000 {
                    let id = a.peek(1).unwrap();
                    assert!(a.is_current(id) && !a.has_issued(id));
                    a.advance(IdParts::of(id).counter);
                    assert!(a.has_issued(id));
                    assert!(seen.insert(id), "{id:#x} handed out twice");
                    assert_ne!(id, 0);
                    assert_ne!(id, u64::MAX);
                }
            }
        }
        assert_eq!(seen.len(), 3 * 4 * 1000);
    }

    #[test]
    fn a_new_generation_starts_over_above_every_older_id() {
        let mut a = IdAlloc::new(SetId(2), 5).unwrap();
        let first = a.peek(1).unwrap();
        a.advance(IdParts::of(a.peek(3).unwrap()).counter);
        assert!(a.bump_generation());
        assert_eq!(a.counter(), 0);
        let next = a.peek(1).unwrap();
        assert!(next > first && a.has_issued(first) && !a.is_current(first));
        assert_eq!(IdParts::of(next), IdParts { set: SetId(2), generation: 6, counter: 1 });
        // Another set's ids are never ours.
        let b = IdAlloc::new(SetId(3), 6).unwrap();
        assert!(!a.has_issued(b.peek(1).unwrap()) && !a.is_current(b.peek(1).unwrap()));
    }

    #[test]
    fn the_counter_and_the_generations_run_out() {
        let mut a = IdAlloc::from_parts(SetId(MAX_SET), MAX_GENERATION, MAX_COUNTER - 1).unwrap();
        assert_eq!(a.peek(1), Some(u64::MAX - 1));
        assert_eq!(a.peek(2), None);
        assert_eq!(a.peek(0), None);
        a.advance(MAX_COUNTER);
        assert_eq!(a.peek(1), None);
        assert!(!a.bump_generation());
        assert!(IdAlloc::from_parts(SetId(1), 0, u32::MAX).is_none());
    }
}
