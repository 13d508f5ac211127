//! Byte-range locks and lock sequences ([MS-FSA] 2.1.1.7 ByteRangeLock,
//! [MS-SMB2] 3.3.1.10 Open.LockSequenceArray), which only the state model
//! holds: a LOCK decides from the model's locks of the file and changes
//! them there at once, under one hold of the model's lock
//! ([`Server::change_model`]), journaled as a state change, as an open's
//! fields are ([`super::fields`]); READ, WRITE and the other I/O check the
//! model's locks ([`Server::io_conflict`]); a close, a retained handle's
//! expiry or a failed restore drops them with the open (`OpenDown`); a
//! restart or a takeover restores them with the model, with nothing to
//! copy into the runtime objects.
//!
//! The hot path: the recorder keeps [`Server::byte_locks`], the model's
//! count of locks, as it applies changes; while it is zero (no lock on any
//! file of the node) a READ or WRITE takes no lock at all to check.
//! Otherwise it reads the file's locks under the hold of the model's lock
//! that checks its ChannelSequence on SMB 3.x, and under one of its own on
//! SMB 2.x (`Ctx::open_for_io`): at most one hold of the model's lock per
//! READ or WRITE, as before (where SMB 2.x took the per-file table's lock
//! instead). An append-only WRITE, whose offset is known only later,
//! checks with [`Server::io_conflict`]. A blocked LOCK waits on [`Server::lock_released`],
//! which the recorder wakes when a lock goes from the model or an open
//! leaves it.

use std::sync::atomic::Ordering;

use super::Server;
use crate::model::file::{grantable, unlocked};
use crate::model::{ByteLock, Delta, FileUid, OpenRecord, PersistentFileId};

/// Where a LOCK's LockSequence is recorded ([MS-SMB2] 2.2.26: a 4-bit
/// LockSequenceNumber and a 28-bit LockSequenceIndex).
#[derive(Clone, Copy, Debug)]
pub struct Sequence {
    pub index: u32,
    pub number: u8,
}

impl Sequence {
    /// The LockSequenceIndex, when it is one the array has (1..=64; others
    /// are never recorded nor replays).
    fn slot(self) -> Option<u8> {
        u8::try_from(self.index).ok().filter(|i| (1..=64).contains(i))
    }
}

/// Why a LOCK was not granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// This element conflicts with a lock held, or with an element before it.
    Conflict(usize),
    /// The model does not have the open (it closed).
    NoOpen,
}

/// The change that records `s` for `o`, when it is a change.
fn record(o: &OpenRecord, s: Sequence) -> Option<Delta> {
    let index = s.slot()?;
    (o.lock_sequences().get(index) != Some(s.number)).then_some(Delta::LockSequenceSet {
        open: o.id(),
        index,
        number: Some(s.number),
    })
}

impl Server {
    /// Does the model hold a byte-range lock at all (on any file of the
    /// node)? While not, no I/O needs to look at one.
    pub fn has_byte_locks(&self) -> bool {
        self.byte_locks.load(Ordering::Acquire) != 0
    }

    /// Would an I/O of `len` bytes at `offset` by the open `open` of the file
    /// `file` conflict with a byte-range lock ([`crate::model::FileRecord::io_conflict`])?
    /// Takes the model's lock only when the model holds a lock at all.
    pub fn io_conflict(&self, file: FileUid, open: u64, offset: u64, len: u64, write: bool) -> bool {
        if len == 0 || !self.has_byte_locks() {
            return false;
        }
        let pid = PersistentFileId(open);
        self.with_model(|m| m.file(pid.set(), file).is_some_and(|f| f.io_conflict(pid, offset, len, write)))
    }

    /// [MS-SMB2] 3.3.5.14.2: takes the locks `wanted` (owned by `open`, of
    /// its file) all or none, checked against the model's locks of the
    /// file; with `commit` false only checks. A grant records `seq` in the
    /// open's LockSequenceArray with the locks. Returns whether the change
    /// is one a restart restores too (see [`Server::change_open`]).
    pub fn take_locks(
        &self,
        open: u64,
        wanted: &[ByteLock],
        commit: bool,
        seq: Option<Sequence>,
    ) -> (Result<(), Refused>, bool) {
        self.change_model(|m| {
            let pid = PersistentFileId(open);
            let Some(o) = m.open(pid) else {
                return (Err(Refused::NoOpen), Vec::new());
            };
            let held = m.file(pid.set(), o.info().file).map_or(&[][..], |f| f.locks());
            if let Err(i) = grantable(held, wanted) {
                return (Err(Refused::Conflict(i)), Vec::new());
            }
            if !commit {
                return (Ok(()), Vec::new());
            }
            let mut out: Vec<Delta> = wanted
                .iter()
                .map(|l| Delta::LockAdded { open: pid, offset: l.offset, length: l.length, exclusive: l.exclusive })
                .collect();
            out.extend(seq.and_then(|s| record(o, s)));
            (Ok(()), out)
        })
    }

    /// [MS-SMB2] 3.3.5.14.1: releases the open's lock of each range
    /// (`(offset, length)`), in order, an exclusive one before a shared one
    /// ([MS-FSA] 2.1.5.9); `Err(i)`: the open holds no lock of range `i`,
    /// and the ranges before it stay released. When all were released,
    /// `seq` is recorded with them. Returns, besides, whether the change is
    /// one a restart restores.
    pub fn unlock(&self, open: u64, ranges: &[(u64, u64)], seq: Option<Sequence>) -> (Result<(), usize>, bool) {
        self.change_model(|m| {
            let pid = PersistentFileId(open);
            let Some(o) = m.open(pid) else {
                return (if ranges.is_empty() { Ok(()) } else { Err(0) }, Vec::new());
            };
            let mut held = m.file(pid.set(), o.info().file).map_or_else(Vec::new, |f| f.locks().to_vec());
            let mut out = Vec::new();
            for (i, &(offset, length)) in ranges.iter().enumerate() {
                let Some(at) = unlocked(&held, pid, offset, length) else {
                    return (Err(i), out);
                };
                let l = held.remove(at);
                out.push(Delta::LockRemoved { open: pid, offset, length, exclusive: l.exclusive });
            }
            out.extend(seq.and_then(|s| record(o, s)));
            (Ok(()), out)
        })
    }

    /// Lock replay detection ([MS-SMB2] 3.3.5.14): is this LOCK one the open
    /// carried out already (its LockSequenceArray holds the request's
    /// number at its index)? If not, the entry is invalidated, at once,
    /// until the request succeeds. Returns, besides, whether the change is
    /// one a restart restores.
    pub fn lock_replayed(&self, open: u64, seq: Sequence) -> (bool, bool) {
        self.change_open(open, |o| {
            let (Some(o), Some(index)) = (o, seq.slot()) else {
                return (false, Vec::new());
            };
            match o.lock_sequences().get(index) {
                Some(n) if n == seq.number => (true, Vec::new()),
                None => (false, Vec::new()),
                Some(_) => (false, vec![Delta::LockSequenceSet { open: o.id(), index, number: None }]),
            }
        })
    }

    /// Records `seq` in the open's LockSequenceArray, at once (a LOCK that
    /// succeeded); whether a restart restores the change.
    pub fn record_lock_sequence(&self, open: u64, seq: Sequence) -> bool {
        self.change_open(open, |o| ((), o.and_then(|o| record(o, seq)).into_iter().collect())).1
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ::ids::{Flag, SetId};
    use ::nvram::{MemStorage, Options};

    use super::*;
    use crate::journal::NvramJournal;
    use crate::model::tests::{open_on, session_with_tree};
    use crate::model::{Caching, Durability, Model};
    use crate::state::lock;

    const SET: SetId = SetId(0);
    const FILE: FileUid = FileUid(9);

    fn opts() -> Options {
        Options::new(crate::restart::CLUSTER, crate::restart::NODE, ::nvram::Durability::None)
    }

    /// A new open of `FILE` in `server`'s model; its persistent id.
    fn open(server: &Server, durability: Durability) -> u64 {
        let (s, t) = {
            let m = server.model();
            let s = m.partition(SET).unwrap().sessions().next().unwrap();
            let t = s.trees().next().unwrap().id;
            (s.id(), t)
        };
        let up = open_on(&server.model(), s, t, FILE.0, durability, Caching::None);
        let Delta::OpenUp(n) = &up else { unreachable!() };
        let pid = n.info.persistent.0;
        server.apply(&[up]);
        pid
    }

    fn range(owner: u64, offset: u64, length: u64, exclusive: bool) -> ByteLock {
        ByteLock { owner: PersistentFileId(owner), offset, length, exclusive }
    }

    /// Byte-range locks and lock sequences live in the model alone: a LOCK
    /// decides from the model's locks and changes them there at once, another
    /// open's I/O is refused by them, and the per-file table has no entry of the
    /// file at all. After a restart the model rebuilt from the log enforces the
    /// lock against a new open's WRITE and lock, and answers the LOCK's replay,
    /// with nothing copied anywhere.
    #[test]
    fn the_model_alone_holds_and_enforces_locks_across_a_restart() {
        let mut m = Model::new();
        m.add_set(SET, 5).unwrap();
        session_with_tree(&mut m, SET);
        let mut server = Server::restored(crate::config::Config::default(), Some(m)).unwrap();
        let storage = MemStorage::new(1 << 20);
        let region = Arc::new(::nvram::Journal::create(storage.clone(), opts()).unwrap());
        server.journal = Arc::new(NvramJournal::new(region.clone()));
        server.checkpoint().unwrap();
        let a = open(&server, Durability::V1 { timeout_ms: 60_000 });
        let b = open(&server, Durability::None);

        assert!(!server.io_conflict(FILE, b, 100, 10, true), "no locks yet");
        let seq = Sequence { index: 3, number: 7 };
        let (taken, kept) = server.take_locks(a, &[range(a, 100, 10, true)], true, Some(seq));
        assert_eq!(taken, Ok(()));
        assert!(kept, "a durable open's lock must be durable before the answer");
        assert_eq!(server.byte_locks.load(Ordering::Acquire), 1);
        assert!(server.io_conflict(FILE, b, 105, 1, false) && server.io_conflict(FILE, b, 100, 10, true));
        assert!(!server.io_conflict(FILE, a, 105, 1, true), "the owner writes under its exclusive lock");
        assert_eq!(server.take_locks(b, &[range(b, 109, 1, false)], true, None).0, Err(Refused::Conflict(0)));
        // A check takes nothing; an open that is not in the model takes nothing either.
        assert_eq!(server.take_locks(b, &[range(b, 0, 1, true)], false, None), (Ok(()), false));
        assert_eq!(server.take_locks(b + 100, &[range(b + 100, 0, 1, true)], true, None).0, Err(Refused::NoOpen));
        assert_eq!(server.model().lock_count(), 1);
        assert_eq!(server.lock_replayed(a, seq), (true, false));
        assert!(!server.lock_replayed(a, Sequence { index: 3, number: 8 }).0);
        assert!(server.record_lock_sequence(a, seq));
        assert!(lock(&server.files).get(&FILE).is_none(), "the per-file table keeps no locks");

        region.set_flag(Flag::NonElectiveReboot).unwrap();
        let rec = ::nvram::Journal::open(MemStorage::from_image(storage.current_image()), opts()).unwrap().1;
        let rebuilt = crate::restart::rebuild(&rec).unwrap().expect("a model to restore");
        assert_eq!(rebuilt, server.model());
        let restarted = Server::restored(crate::config::Config::default(), Some(rebuilt)).unwrap();
        let c = open(&restarted, Durability::None);
        assert!(restarted.io_conflict(FILE, c, 100, 10, true), "a restored lock refuses a new open's WRITE");
        assert_eq!(restarted.take_locks(c, &[range(c, 100, 1, false)], true, None).0, Err(Refused::Conflict(0)));
        assert_eq!(restarted.lock_replayed(a, seq), (true, false), "the LOCK's replay is known after a restart");
        // The owner releases it; the range is free.
        assert_eq!(restarted.unlock(a, &[(100, 10), (100, 10)], None).0, Err(1));
        assert!(!restarted.io_conflict(FILE, c, 100, 10, true));
        assert_eq!(restarted.byte_locks.load(Ordering::Acquire), 0);
        assert_eq!(restarted.take_locks(c, &[range(c, 100, 1, false)], true, None).0, Ok(()));
        // Its open's close takes the lock with it.
        restarted.apply(&[Delta::OpenDown { open: PersistentFileId(c) }]);
        assert_eq!((restarted.model().lock_count(), restarted.byte_locks.load(Ordering::Acquire)), (0, 0));
    }
}
