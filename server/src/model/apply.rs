//! [`Partition::apply`], the one function that changes a partition, and
//! [`Partition::check_invariants`], what it keeps true.
//!
//! Each delta is checked in full before anything changes, so a refused delta leaves the
//! partition as it was.

use std::collections::{BTreeMap, BTreeSet};

use super::file::{ByteLock, FileRecord};
use super::ids::{FileUid, IdParts, PersistentFileId, SessionId, TreeId, VolatileFileId};
use super::lease::{LeaseId, LeaseRecord, LeaseVersion, LEASE_STATE_BITS};
use super::open::{Caching, LockSequences, NewOpen, OpenRecord, OplockLevel};
use super::session::SessionRecord;
use super::{ApplyError, Delta, Partition};

/// Is `a` a subset of `b`?
fn within(a: u32, b: u32) -> bool {
    a & !b == 0
}

impl Partition {
    /// Applies one delta of this partition (the caller routed it by [`Delta::set`]).
    pub(super) fn apply(&mut self, d: &Delta) -> Result<(), ApplyError> {
        use Delta::*;
        match d {
            NewGeneration { set } => {
                if !self.ids.bump_generation() {
                    return Err(ApplyError::Exhausted(*set));
                }
            }
            IdsReserved { through, .. } => {
                if *through > super::ids::MAX_COUNTER {
                    return Err(ApplyError::Invalid("id counter past its maximum"));
                }
                self.ids.advance(*through);
            }
            SessionUp(info) => {
                let id = info.id;
                if !self.ids.is_current(id.0) {
                    return Err(ApplyError::NotCurrent(id.0));
                }
                if self.sessions.contains_key(&id) {
                    return Err(ApplyError::DuplicateSession(id));
                }
                self.ids.advance(IdParts::of(id.0).counter);
                self.sessions.insert(id, SessionRecord::new((**info).clone()));
            }
            SessionReauthenticated(info) => {
                let s = self.session_mut(info.id)?;
                if s.info.client_guid != info.client_guid || s.info.created_at != info.created_at {
                    return Err(ApplyError::Invalid("re-authentication changes the ClientGuid or creation time"));
                }
                s.info = (**info).clone();
            }
            SessionExpiry { session, expires_at } => {
                self.session_mut(*session)?.info.expires_at = *expires_at;
            }
            SessionDown { session } => {
                let s = self.session_ref(*session)?;
                if !s.trees.is_empty() {
                    return Err(ApplyError::InUse("session has tree connects"));
                }
                if self.attached_to(*session).next().is_some() {
                    return Err(ApplyError::InUse("session has opens"));
                }
                self.sessions.remove(session);
            }
            TreeUp { session, tree } => {
                let s = self.session_mut(*session)?;
                if tree.id.0 == 0 || tree.id.0 == u32::MAX {
                    return Err(ApplyError::Invalid("tree id 0 or all ones"));
                }
                if s.trees.contains_key(&tree.id) {
                    return Err(ApplyError::DuplicateTree(*session, tree.id));
                }
                s.last_tree = s.last_tree.max(tree.id.0);
                s.trees.insert(tree.id, tree.clone());
            }
            TreeDown { session, tree } => {
                self.tree_share(*session, *tree)?;
                if self.attached_to(*session).any(|(t, _)| t == *tree) {
                    return Err(ApplyError::InUse("tree has opens"));
                }
                self.session_mut(*session)?.trees.remove(tree);
            }
            OpenUp(n) => self.open_up(n)?,
            OpenDown { open } => {
                let o = self.opens.remove(open).ok_or(ApplyError::UnknownOpen(*open))?;
                let file = o.info.file;
                if let Some((s, _)) = o.attached {
                    self.attached.remove(&(s, o.volatile));
                }
                if let Some(guid) = o.info.create_guid {
                    self.by_create_guid.remove(&(o.info.client_guid, guid, *open));
                }
                if let Some(f) = self.files.get_mut(&file) {
                    f.opens.remove(open);
                    let before = f.locks.len();
                    f.locks.retain(|l| l.owner != *open);
                    self.lock_count -= before - f.locks.len();
                    if f.opens.is_empty() && !self.lingers(file) {
                        let gone = self.files.remove(&file);
                        if gone.is_some_and(|f| f.path.contains(':')) {
                            // A named stream's last open: its file may
                            // have waited for it.
                            self.sweep_lingering();
                        }
                    }
                }
            }
            OpenDisconnected { open, at } => {
                let o = self.open_ref(*open)?;
                if o.attached.is_none() {
                    return Err(ApplyError::NotConnected(*open));
                }
                if o.info.durability.timeout_ms().is_none() {
                    return Err(ApplyError::NotDurable(*open));
                }
                let o = self.open_mut(*open)?;
                let was = o.attached.take().map(|(s, _)| (s, o.volatile));
                o.disconnected_at = Some(*at);
                if let Some(key) = was {
                    self.attached.remove(&key);
                }
            }
            OpenReconnected { open, session, tree, volatile } => {
                let o = self.open_ref(*open)?;
                if o.attached.is_some() {
                    return Err(ApplyError::NotDisconnected(*open));
                }
                let share = self.tree_share(*session, *tree)?;
                if !share.eq_ignore_ascii_case(&o.info.share) {
                    return Err(ApplyError::Invalid("reconnect on a tree of another share"));
                }
                self.check_volatile_free(*session, *volatile)?;
                let o = self.open_mut(*open)?;
                o.attached = Some((*session, *tree));
                o.volatile = *volatile;
                o.disconnected_at = None;
                self.attached.insert((*session, *volatile), (*tree, *open));
            }
            OplockSet { open, level } => {
                let o = self.open_mut(*open)?;
                if matches!(o.caching, Caching::Lease(_)) {
                    return Err(ApplyError::Invalid("oplock on a leased open"));
                }
                o.caching = match level {
                    OplockLevel::None => Caching::None,
                    level => Caching::Oplock { level: *level, breaking: None },
                };
            }
            OplockBreaking { open, to, deadline } => {
                let o = self.open_mut(*open)?;
                let Caching::Oplock { level, breaking } = &mut o.caching else {
                    return Err(ApplyError::Invalid("oplock break of an open without an oplock"));
                };
                if !level.acknowledged() || !matches!(to, OplockLevel::None | OplockLevel::II) {
                    return Err(ApplyError::Invalid("oplock break that needs no acknowledgement"));
                }
                // The same break again moves its deadline (a restart's, see
                // `restart::restart_deltas`); another one must wait for it.
                if breaking.is_some_and(|b| b.to != *to) {
                    return Err(ApplyError::Invalid("oplock break already in progress"));
                }
                *breaking = Some(super::open::OplockBreak { to: *to, deadline: *deadline });
            }
            LeaseGranted { lease, file, parent, version, state, epoch, .. } => {
                if self.leases.contains_key(lease) {
                    return Err(ApplyError::DuplicateLease(*lease));
                }
                if !within(*state, LEASE_STATE_BITS) {
                    return Err(ApplyError::Invalid("lease state with unknown bits"));
                }
                if parent.is_some() && *version != LeaseVersion::V2 {
                    return Err(ApplyError::Invalid("parent lease key on a version 1 lease"));
                }
                self.leases.insert(
                    *lease,
                    LeaseRecord {
                        id: *lease,
                        file: *file,
                        parent: *parent,
                        version: *version,
                        state: *state,
                        epoch: *epoch,
                        breaking: None,
                    },
                );
            }
            LeaseChanged { lease, state, epoch, .. } => {
                let l = self.lease_mut(*lease)?;
                if l.breaking.is_some() {
                    return Err(ApplyError::Invalid("lease change during a break"));
                }
                if !within(*state, LEASE_STATE_BITS) {
                    return Err(ApplyError::Invalid("lease state with unknown bits"));
                }
                l.state = *state;
                l.epoch = *epoch;
            }
            LeaseBreaking { lease, to, required, epoch, deadline, .. } => {
                let l = self.lease_mut(*lease)?;
                if !within(*to, l.state) || *to == l.state || !within(*required, *to) {
                    return Err(ApplyError::Invalid("lease break that does not lower the state"));
                }
                l.epoch = *epoch;
                l.breaking = Some(super::lease::LeaseBreak { to: *to, required: *required, deadline: *deadline });
            }
            LeaseAcked { lease, state, .. } => {
                let l = self.lease_mut(*lease)?;
                let b = l.breaking.ok_or(ApplyError::NotBreaking)?;
                if !within(*state, b.to) {
                    return Err(ApplyError::Invalid("lease acknowledged above the break"));
                }
                l.state = *state;
                l.breaking = None;
            }
            LeaseGone { lease, .. } => {
                self.lease_ref(*lease)?;
                if self.lease_opens(*lease).next().is_some() {
                    return Err(ApplyError::InUse("lease has opens"));
                }
                self.leases.remove(lease);
            }
            LockAdded { open, offset, length, exclusive } => {
                let file = self.open_ref(*open)?.info.file;
                if !ByteLock::valid_range(*offset, *length) {
                    return Err(ApplyError::Invalid("lock range past the last offset"));
                }
                let f = self.files.get_mut(&file).ok_or(ApplyError::UnknownFile(file))?;
                f.locks.push(ByteLock { owner: *open, offset: *offset, length: *length, exclusive: *exclusive });
                self.lock_count += 1;
            }
            LockRemoved { open, offset, length, exclusive } => {
                let file = self.open_ref(*open)?.info.file;
                let f = self.files.get_mut(&file).ok_or(ApplyError::UnknownFile(file))?;
                let want = ByteLock { owner: *open, offset: *offset, length: *length, exclusive: *exclusive };
                let i = f.locks.iter().position(|l| *l == want).ok_or(ApplyError::NoSuchLock(*open))?;
                f.locks.remove(i);
                self.lock_count -= 1;
            }
            LockSequenceSet { open, index, number } => {
                let slot =
                    LockSequences::slot(*index).ok_or(ApplyError::Invalid("lock sequence index not in 1..=64"))?;
                self.open_mut(*open)?.lock_sequences.0[slot] = *number;
            }
            ChannelSequenceSet { open, sequence } => self.open_mut(*open)?.channel_sequence = *sequence,
            DeleteOnCloseSet { open, on } => self.open_mut(*open)?.delete_on_close = *on,
            ReplayIneligible { open } => self.open_mut(*open)?.info.replay_eligible = false,
            AppendedAt { .. } | ClosedAfterWriting { .. } => {}
            DeletePendingSet { file, on, .. } => {
                self.files.get_mut(file).ok_or(ApplyError::UnknownFile(*file))?.delete_pending = *on;
                self.sweep_lingering();
            }
            FileMoved { file, path, .. } => {
                let f = self.files.get_mut(file).ok_or(ApplyError::UnknownFile(*file))?;
                f.path = path.clone();
                for id in &f.opens {
                    if let Some(o) = self.opens.get_mut(id) {
                        o.path = path.clone();
                    }
                }
                self.sweep_lingering();
            }
        }
        Ok(())
    }

    fn open_up(&mut self, n: &NewOpen) -> Result<(), ApplyError> {
        let id = n.info.persistent;
        if !self.ids.is_current(id.0) {
            return Err(ApplyError::NotCurrent(id.0));
        }
        if self.opens.contains_key(&id) {
            return Err(ApplyError::DuplicateOpen(id));
        }
        let share = self.tree_share(n.session, n.tree)?;
        if !share.eq_ignore_ascii_case(&n.info.share) {
            return Err(ApplyError::Invalid("open on a tree of another share"));
        }
        self.check_volatile_free(n.session, n.volatile)?;
        if n.info.create_action > 3 {
            return Err(ApplyError::Invalid("CreateAction above 3"));
        }
        match n.caching {
            Caching::None => {}
            Caching::Oplock { level, breaking } => {
                if level == OplockLevel::None || breaking.is_some() {
                    return Err(ApplyError::Invalid("new open's oplock is none or breaking"));
                }
            }
            Caching::Lease(key) => {
                let lid = LeaseId { client: n.info.client_guid, key };
                if self.lease_ref(lid)?.file != n.info.file {
                    return Err(ApplyError::Invalid("lease of another file"));
                }
            }
        }
        if let Some(f) = self.files.get(&n.info.file) {
            if !f.share.eq_ignore_ascii_case(&n.info.share) {
                return Err(ApplyError::Invalid("file of another share"));
            }
        }
        // Checked: from here on nothing fails.
        self.ids.advance(IdParts::of(id.0).counter);
        let f = self.files.entry(n.info.file).or_insert_with(|| FileRecord {
            uid: n.info.file,
            share: n.info.share.clone(),
            path: n.path.clone(),
            delete_pending: false,
            locks: Vec::new(),
            opens: BTreeSet::new(),
        });
        f.opens.insert(id);
        self.opens.insert(id, OpenRecord::new(n.clone()));
        self.attached.insert((n.session, n.volatile), (n.tree, id));
        if let Some(guid) = n.info.create_guid {
            self.by_create_guid.insert((n.info.client_guid, guid, id));
        }
        Ok(())
    }

    /// Does the file record `uid`, which has no opens left, stay: a
    /// delete is pending on it and a named stream of it has opens (the
    /// file is deleted when the last of them closes, and refuses new opens
    /// meanwhile; see [`FileRecord`])?
    fn lingers(&self, uid: FileUid) -> bool {
        self.files.get(&uid).is_some_and(|f| f.delete_pending && self.streams_open(&f.share, &f.path))
    }

    /// Has a named stream of the file at `path` in `share` opens? A
    /// stream's record is at `path:name` (a file with open streams is not
    /// renamed, so the two stay together; a renamed directory moves both).
    fn streams_open(&self, share: &str, path: &str) -> bool {
        self.files.values().any(|s| {
            !s.opens.is_empty()
                && s.share.eq_ignore_ascii_case(share)
                && s.path.len() > path.len()
                && s.path.is_char_boundary(path.len())
                && s.path[..path.len()].eq_ignore_ascii_case(path)
                && s.path[path.len()..].starts_with(':')
        })
    }

    /// Drops the records of files with no opens that no longer linger.
    fn sweep_lingering(&mut self) {
        let gone: Vec<FileUid> =
            self.files.values().filter(|f| f.opens.is_empty() && !self.lingers(f.uid)).map(|f| f.uid).collect();
        for uid in gone {
            self.files.remove(&uid);
        }
    }

    fn session_ref(&self, id: SessionId) -> Result<&SessionRecord, ApplyError> {
        self.sessions.get(&id).ok_or(ApplyError::UnknownSession(id))
    }

    fn session_mut(&mut self, id: SessionId) -> Result<&mut SessionRecord, ApplyError> {
        self.sessions.get_mut(&id).ok_or(ApplyError::UnknownSession(id))
    }

    /// The share of a tree connect that must exist.
    fn tree_share(&self, session: SessionId, tree: TreeId) -> Result<String, ApplyError> {
        let s = self.session_ref(session)?;
        Ok(s.trees.get(&tree).ok_or(ApplyError::UnknownTree(session, tree))?.share.clone())
    }

    fn check_volatile_free(&self, session: SessionId, volatile: VolatileFileId) -> Result<(), ApplyError> {
        if self.attached.contains_key(&(session, volatile)) {
            return Err(ApplyError::DuplicateVolatile(session, volatile));
        }
        Ok(())
    }

    /// The tree and the open of every open attached to `session`.
    pub(super) fn attached_to(&self, session: SessionId) -> impl Iterator<Item = (TreeId, PersistentFileId)> + '_ {
        self.attached.range((session, VolatileFileId(0))..=(session, VolatileFileId(u64::MAX))).map(|(_, v)| *v)
    }

    /// Rebuilds the indexes [`Partition::attached`] and
    /// [`Partition::by_create_guid`] from the opens, and the lock count (after a
    /// checkpoint is decoded); a volatile id two opens of a session share is
    /// left for [`Partition::check_invariants`] to report.
    pub(super) fn index_attached(&mut self) {
        self.attached = self
            .opens
            .values()
            .filter_map(|o| o.attached.map(|(s, t)| ((s, o.volatile), (t, o.info.persistent))))
            .collect();
        self.by_create_guid = self
            .opens
            .values()
            .filter_map(|o| o.info.create_guid.map(|g| (o.info.client_guid, g, o.info.persistent)))
            .collect();
        self.lock_count = self.files.values().map(|f| f.locks.len()).sum();
    }

    fn open_ref(&self, id: PersistentFileId) -> Result<&OpenRecord, ApplyError> {
        self.opens.get(&id).ok_or(ApplyError::UnknownOpen(id))
    }

    fn open_mut(&mut self, id: PersistentFileId) -> Result<&mut OpenRecord, ApplyError> {
        self.opens.get_mut(&id).ok_or(ApplyError::UnknownOpen(id))
    }

    fn lease_ref(&self, id: LeaseId) -> Result<&LeaseRecord, ApplyError> {
        self.leases.get(&id).ok_or(ApplyError::UnknownLease(id))
    }

    fn lease_mut(&mut self, id: LeaseId) -> Result<&mut LeaseRecord, ApplyError> {
        self.leases.get_mut(&id).ok_or(ApplyError::UnknownLease(id))
    }

    /// Checks what [`Partition::apply`] keeps true; the first violation found, as text.
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        let set = self.ids.set();
        for (id, s) in &self.sessions {
            if *id != s.info.id {
                return Err(format!("session {id:?} filed under another id"));
            }
            if !self.ids.has_issued(id.0) {
                return Err(format!("session {id:?} is not an id of {set} so far"));
            }
            for (tid, t) in &s.trees {
                if *tid != t.id || tid.0 == 0 || tid.0 == u32::MAX || tid.0 > s.last_tree {
                    return Err(format!("tree {tid:?} of {id:?}: bad id"));
                }
            }
        }
        let mut volatiles = BTreeSet::new();
        let attached = self.opens.values().filter(|o| o.attached.is_some()).count();
        if attached != self.attached.len() {
            return Err(format!("{attached} opens attached, {} in the index", self.attached.len()));
        }
        let made_under_guid = self.opens.values().filter(|o| o.info.create_guid.is_some()).count();
        if made_under_guid != self.by_create_guid.len() {
            return Err(format!(
                "{made_under_guid} opens with a CreateGuid, {} in the index",
                self.by_create_guid.len()
            ));
        }
        for (id, o) in &self.opens {
            if let Some(g) = o.info.create_guid {
                if !self.by_create_guid.contains(&(o.info.client_guid, g, *id)) {
                    return Err(format!("open {id:?}: not in the index of CreateGuids"));
                }
            }
            if *id != o.info.persistent {
                return Err(format!("open {id:?} filed under another id"));
            }
            if !self.ids.has_issued(id.0) {
                return Err(format!("open {id:?} is not an id of {set} so far"));
            }
            match (o.attached, o.disconnected_at) {
                (Some((s, t)), None) => {
                    let share = self.tree_share(s, t).map_err(|e| format!("open {id:?}: {e}"))?;
                    if !share.eq_ignore_ascii_case(&o.info.share) {
                        return Err(format!("open {id:?} on a tree of another share"));
                    }
                    if !volatiles.insert((s, o.volatile)) {
                        return Err(format!("open {id:?}: volatile id {:?} used twice in {s:?}", o.volatile));
                    }
                    if self.attached.get(&(s, o.volatile)) != Some(&(t, *id)) {
                        return Err(format!("open {id:?}: not in the index of attached opens"));
                    }
                }
                (None, Some(_)) if o.info.durability.timeout_ms().is_some() => {}
                _ => return Err(format!("open {id:?}: connected and disconnected state disagree")),
            }
            let f = self.files.get(&o.info.file).ok_or_else(|| format!("open {id:?}: no file record"))?;
            if !f.opens.contains(id) || !f.share.eq_ignore_ascii_case(&o.info.share) {
                return Err(format!("open {id:?}: its file does not list it"));
            }
            match o.caching {
                Caching::None => {}
                Caching::Oplock { level, breaking } => {
                    if level == OplockLevel::None {
                        return Err(format!("open {id:?}: oplock of level none"));
                    }
                    if breaking
                        .is_some_and(|b| !level.acknowledged() || !matches!(b.to, OplockLevel::None | OplockLevel::II))
                    {
                        return Err(format!("open {id:?}: bad oplock break"));
                    }
                }
                Caching::Lease(key) => {
                    let l = self.leases.get(&LeaseId { client: o.info.client_guid, key });
                    if l.is_none_or(|l| l.file != o.info.file) {
                        return Err(format!("open {id:?}: its lease is missing or of another file"));
                    }
                }
            }
        }
        // Which opens name each file, from one pass over the opens (a pass
        // per file made a checkpoint of 10,000 opens take a quarter second).
        let mut listed: BTreeMap<FileUid, BTreeSet<PersistentFileId>> = BTreeMap::new();
        for o in self.opens.values() {
            listed.entry(o.info.file).or_default().insert(o.info.persistent);
        }
        for (uid, f) in &self.files {
            if *uid != f.uid || (f.opens.is_empty() && !self.lingers(*uid)) {
                return Err(format!("file {uid:?}: bad key, or no opens and no open streams it waits for"));
            }
            if listed.get(uid).unwrap_or(&BTreeSet::new()) != &f.opens {
                return Err(format!("file {uid:?}: its open list disagrees with the opens"));
            }
            for l in &f.locks {
                if !f.opens.contains(&l.owner) || !ByteLock::valid_range(l.offset, l.length) {
                    return Err(format!("file {uid:?}: lock {l:?} of no open of the file, or a bad range"));
                }
            }
        }
        let locks: usize = self.files.values().map(|f| f.locks.len()).sum();
        if locks != self.lock_count {
            return Err(format!("{locks} byte-range locks, {} counted", self.lock_count));
        }
        for (id, l) in &self.leases {
            if *id != l.id || !within(l.state, LEASE_STATE_BITS) {
                return Err(format!("lease {id:?}: bad key or state"));
            }
            if l.parent.is_some() && l.version != LeaseVersion::V2 {
                return Err(format!("lease {id:?}: parent key on a version 1 lease"));
            }
            if let Some(b) = l.breaking {
                if !within(b.to, l.state) || b.to == l.state || !within(b.required, b.to) {
                    return Err(format!("lease {id:?}: bad break {b:?}"));
                }
            }
        }
        Ok(())
    }
}
