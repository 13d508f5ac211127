//! An open's long-lived fields ([MS-SMB2] 3.3.1.10), read from the state
//! model by the open's persistent id, and changed there at once
//! ([`Server::read_open`], [`Server::change_open`]; "Opens' fields" in
//! [`super::record`]). The runtime [`Open`] keeps no copy of them.
//!
//! An open the model does not have reads as one with none of them: a pipe
//! on IPC$, which the model does not record (its ChannelSequence is kept
//! at runtime, [`super::open::OpenState::pipe_channel_sequence`]), or a new
//! open whose CREATE has not passed its point 3 yet, which no client can
//! name before its answer.

use super::{lock, Open, Server};
use crate::model::{Delta, Durability, PersistentFileId};

impl Server {
    /// Open.IsDurable, Open.IsPersistent and Open.DurableOpenTimeout.
    pub fn durability_of(&self, open: &Open) -> Durability {
        if open.key.is_none() {
            return Durability::None;
        }
        self.read_open(open.persistent_id, |o| o.map_or(Durability::None, |o| o.info().durability))
    }

    /// Is delete-on-close set on the open?
    pub fn delete_on_close_of(&self, open: &Open) -> bool {
        open.key.is_some() && self.read_open(open.persistent_id, |o| o.is_some_and(|o| o.delete_on_close()))
    }

    /// Open.ChannelSequence; `None` for an open the model does not have
    /// yet.
    pub fn channel_sequence_of(&self, open: &Open) -> Option<u16> {
        if open.key.is_none() {
            return Some(lock(&open.st).pipe_channel_sequence);
        }
        self.read_open(open.persistent_id, |o| o.map(|o| o.channel_sequence()))
    }

    /// Sets or clears delete-on-close, at once (a pipe has none). True
    /// when the change is one a restart restores (see
    /// [`Server::change_open`]).
    pub fn set_delete_on_close(&self, open: &Open, on: bool) -> bool {
        if open.key.is_none() {
            return false;
        }
        let pid = open.persistent_id;
        let ((), kept) = self.change_open(pid, |o| {
            let change = o.is_some_and(|o| o.delete_on_close() != on);
            ((), if change { vec![Delta::DeleteOnCloseSet { open: PersistentFileId(pid), on }] } else { Vec::new() })
        });
        kept
    }

    /// Sets Open.ChannelSequence, at once; see [`Server::set_delete_on_close`].
    pub fn set_channel_sequence(&self, open: &Open, sequence: u16) -> bool {
        if open.key.is_none() {
            lock(&open.st).pipe_channel_sequence = sequence;
            return false;
        }
        let pid = open.persistent_id;
        let ((), kept) = self.change_open(pid, |o| {
            let change = o.is_some_and(|o| o.channel_sequence() != sequence);
            let d = Delta::ChannelSequenceSet { open: PersistentFileId(pid), sequence };
            ((), if change { vec![d] } else { Vec::new() })
        });
        kept
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
    use crate::model::{Caching, Model};

    const SET: SetId = SetId(0);

    fn opts() -> Options {
        Options::new(crate::restart::CLUSTER, crate::restart::NODE, ::nvram::Durability::None)
    }

    fn pid(d: &Delta) -> u64 {
        match d {
            Delta::OpenUp(n) => n.info.persistent.0,
            _ => unreachable!(),
        }
    }

    /// A change of an open's fields is in the model as soon as
    /// `change_open` returns (the next request reads it there), says
    /// whether the answer must wait for it (a durable open's: yes), and is
    /// journaled then: a restart rebuilds the same model from the log.
    #[test]
    fn an_open_s_fields_change_at_once_and_a_restart_rebuilds_them() {
        let mut m = Model::new();
        m.add_set(SET, 5).unwrap();
        let (s, t) = session_with_tree(&mut m, SET);
        let mut server = Server::restored(crate::config::Config::default(), Some(m)).unwrap();
        let storage = MemStorage::new(1 << 20);
        let region = Arc::new(::nvram::Journal::create(storage.clone(), opts()).unwrap());
        server.journal = Arc::new(NvramJournal::new(region.clone()));
        server.checkpoint().unwrap();
        let durable = open_on(&server.model(), s, t, 9, Durability::V1 { timeout_ms: 60_000 }, Caching::None);
        let d = pid(&durable);
        server.apply(&[durable]);
        let plain = open_on(&server.model(), s, t, 10, Durability::None, Caching::None);
        let p = pid(&plain);
        server.apply(&[plain]);

        let (seen, kept) = server.change_open(d, |o| {
            let o = o.expect("the open is in the model");
            assert!(!o.delete_on_close() && o.channel_sequence() == 0);
            let open = PersistentFileId(d);
            (true, vec![Delta::DeleteOnCloseSet { open, on: true }, Delta::ChannelSequenceSet { open, sequence: 3 }])
        });
        assert!(seen && kept, "a durable open's change must be durable before the answer");
        assert_eq!(server.read_open(d, |o| o.map(|o| (o.delete_on_close(), o.channel_sequence()))), Some((true, 3)));
        let ((), kept) =
            server.change_open(p, |_| ((), vec![Delta::ChannelSequenceSet { open: PersistentFileId(p), sequence: 9 }]));
        assert!(!kept, "an open a restart does not restore need not wait");
        // An open the model does not have: nothing to decide from, nothing changes.
        let before = server.model();
        let (absent, kept) = server.change_open(p + 100, |o| (o.is_none(), Vec::new()));
        assert!(absent && !kept);
        assert_eq!(server.model(), before);

        region.set_flag(Flag::NonElectiveReboot).unwrap();
        let rec = ::nvram::Journal::open(MemStorage::from_image(storage.current_image()), opts()).unwrap().1;
        let rebuilt = crate::restart::rebuild(&rec).unwrap().expect("a model to restore");
        assert_eq!(rebuilt, server.model());
    }
}
