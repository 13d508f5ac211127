//! The per-file table: every open of a file, whichever session made it,
//! for share modes ([MS-FSA] 2.1.5.1.2) and delete-on-close, and the
//! oplocks and leases that cache it
//! ([MS-SMB2] 3.3.1.4 the Lease Table, here keyed by (ClientGuid,
//! LeaseKey) server-wide).
//!
//! Files are keyed by their stable id ([`FileUid`], kept with the file:
//! see [`crate::fs::uid`]), which survives a rename and a move to the
//! partner's mount. Each entry also records the file's [`Inode`] on this
//! node, and the table maps inodes back to ids: a cache for the places
//! that have only a stat (a name they looked up, a directory listing),
//! valid because an entry lives only while the file has opens, which pin
//! the inode. Two hard links of an inode are one entry (one inode, one
//! xattr).
//!
//! Byte-range locks and lock sequences are not here: the state model
//! holds them alone ([`super::byte_locks`]). Neither are oplock levels and
//! leases: the table decides their breaks and grants from the model's
//! records and changes them there at once ([`CachingModel`]), keeping only
//! which opens use which lease and where their notices go
//! ([`oplock::BreakSink`]), and a new open's grant until its `OpenUp`
//! reaches the model ([`OpenRef::pending_oplock`]).

use std::collections::HashMap;

use super::lease::{self, lease_state, Lease, LeaseId};
use super::oplock::{self, level, BreakSink, CachingLog, OplockState};
use crate::model::{Delta, LeaseRecord, LeaseVersion, Model, OplockLevel, PersistentFileId};

pub use crate::model::FileUid;

/// A file's (device, inode) on this node: only ever a cache key for its
/// [`FileUid`] (both change on the partner's mount).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Inode {
    pub dev: u64,
    pub ino: u64,
}

impl Inode {
    pub fn of(st: &crate::fs::Stat) -> Inode {
        Inode { dev: st.dev, ino: st.ino }
    }
}

/// Access mask bits ([MS-SMB2] 2.2.13.1.1), from the codec crate.
pub use protocol::fscc::access;

/// ShareAccess bits.
pub mod share {
    pub const READ: u32 = 0x1;
    pub const WRITE: u32 = 0x2;
    pub const DELETE: u32 = 0x4;
}

/// An open's access and share access: what share-mode checks read
/// ([MS-FSA] 2.1.5.1.2.2). Open.GrantedAccess and the ShareAccess are the
/// state model's ([`crate::model::OpenInfo`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sharing {
    pub access: u32,
    pub share_access: u32,
}

/// Where share-mode checks read the access and share access of an open:
/// the state model ([`crate::model::Model`]), by persistent id.
pub trait SharingOf {
    fn sharing(&self, persistent_id: u64) -> Option<Sharing>;
}

impl SharingOf for crate::model::Model {
    fn sharing(&self, persistent_id: u64) -> Option<Sharing> {
        let o = self.open(PersistentFileId(persistent_id))?;
        Some(Sharing { access: o.info().granted_access, share_access: o.info().share_access })
    }
}

/// No model: only the table's own copies of new opens count (tests of
/// the table alone).
pub struct NoModel;

impl SharingOf for NoModel {
    fn sharing(&self, _: u64) -> Option<Sharing> {
        None
    }
}

/// One open as the file table sees it.
#[derive(Debug, Clone)]
pub struct OpenRef {
    pub persistent_id: u64,
    /// A new open's access and share access, as its CREATE decided them,
    /// until its `OpenUp` reaches the model (its CREATE's point 3): a
    /// concurrent CREATE's share check must see the open from the moment
    /// it was added. Dropped at the first check that finds the open in the
    /// model; from then on only the model has them ([`OpenRef::sharing`]).
    pub pending: Option<Sharing>,
    /// The open has no data or delete access (a stat open,
    /// [`oplock::is_stat_open`]): what the oplock and lease grants ask of
    /// the other opens.
    pub stat_open: bool,
    /// Where the open's oplock break notices go (set while it holds an
    /// oplock; runtime only).
    pub sink: Option<BreakSink>,
    /// A new open's oplock as its CREATE granted it, and as breaks changed
    /// it since, until its `OpenUp` reaches the model (its CREATE's point
    /// 3; the changes meanwhile wait in the recorder for it). Dropped once
    /// the model has the open; from then on only the model has the level
    /// ([`OpenRef::oplock`]).
    pub pending_oplock: Option<OplockState>,
    /// The lease the open was made with (Open.Lease), shared with every
    /// other open of the file with the same key: the link, whose state is
    /// the model's.
    pub lease: Option<LeaseId>,
}

impl OpenRef {
    /// A new open, with its CREATE's access and share access until the
    /// model has it.
    pub fn new(persistent_id: u64, access: u32, share_access: u32) -> OpenRef {
        OpenRef {
            persistent_id,
            pending: Some(Sharing { access, share_access }),
            stat_open: oplock::is_stat_open(access),
            sink: None,
            pending_oplock: None,
            lease: None,
        }
    }

    /// An open the model has already (a restart's restore): its access
    /// and share access are read from there.
    pub fn restored(persistent_id: u64, access: u32) -> OpenRef {
        OpenRef {
            persistent_id,
            pending: None,
            stat_open: oplock::is_stat_open(access),
            sink: None,
            pending_oplock: None,
            lease: None,
        }
    }

    /// The open's access and share access: the model's once it has the
    /// open (the table's copy is dropped then), else the CREATE's. An open
    /// with neither (none the model has, and no copy) shares everything.
    pub fn sharing(&mut self, model: &impl SharingOf) -> Sharing {
        match model.sharing(self.persistent_id) {
            Some(s) => {
                self.pending = None;
                self.pending_oplock = None;
                s
            }
            None => self.pending.unwrap_or(Sharing { access: 0, share_access: 7 }),
        }
    }

    /// The open's oplock: the model's once it has the open, else what its
    /// CREATE granted (and breaks changed since), else none.
    pub fn oplock(&self, m: &Model) -> OplockState {
        match m.open(PersistentFileId(self.persistent_id)) {
            Some(o) => OplockState::of_model(o.caching()),
            None => self.pending_oplock.unwrap_or_default(),
        }
    }

    /// Hands the changes in `log` of the open's oplock, now `st`, to the
    /// model. Only while the model does not have the open yet is `st`
    /// kept (the changes wait in the recorder for its `OpenUp`).
    fn put_oplock(&mut self, m: &mut impl CachingModel, st: OplockState, log: &mut CachingLog) {
        self.pending_oplock = m.model().open(PersistentFileId(self.persistent_id)).is_none().then_some(st);
        for d in log.take() {
            m.change(d);
        }
    }
}

/// Where the per-file table reads and changes oplocks and leases: the
/// state model, whose records are their one copy. The server's is the
/// model under its lock, taken under the table's ([`super::record`]);
/// a change is applied (and journaled) at once, or, for an open whose
/// `OpenUp` has not reached the model, as soon as it has.
pub trait CachingModel {
    /// The model, with every change made through [`CachingModel::change`]
    /// so far (but those that wait for an open).
    fn model(&self) -> &Model;

    /// Applies an oplock or lease change.
    fn change(&mut self, d: Delta);
}

/// A lease's record in the model's partition `set`.
fn lease_in(m: &Model, set: ::ids::SetId, id: LeaseId) -> Option<&LeaseRecord> {
    m.partition(set)?.lease(id.model())
}

#[derive(Debug, Default)]
pub struct FileEntry {
    /// The inode the file's opens are of (`None` for a named stream's
    /// entry, and for a file whose only opens are its streams' until the
    /// first of them is added).
    pub inode: Option<Inode>,
    pub opens: Vec<OpenRef>,
    /// Delayed write-time state (see `cmd::write_time`).
    pub write_time: super::write_time::WriteTime,
    /// For a named stream's entry: the file it belongs to. A stream's
    /// opens are checked against each other only (its own share modes),
    /// not against the file's.
    pub base: Option<FileUid>,
    /// For a named stream's entry: its name now, in upper case (a rename
    /// changes it; the entry keeps its key).
    pub stream_name: Option<String>,
    /// For a file's entry: how many opens its named streams have. The
    /// entry stays while there are any, so that the file's last close is
    /// told apart from its streams' (a delete left pending by the file's
    /// last close waits for the last of them, as the model's file record
    /// does, [`crate::model::FileRecord`]).
    pub stream_opens: usize,
}

impl FileEntry {
    /// One open of the file, by persistent id.
    fn open(&self, persistent_id: u64) -> Option<&OpenRef> {
        self.opens.iter().find(|o| o.persistent_id == persistent_id)
    }

    fn open_mut(&mut self, persistent_id: u64) -> Option<&mut OpenRef> {
        self.opens.iter_mut().find(|o| o.persistent_id == persistent_id)
    }
}

/// What a new open's oplock breaks came to.
#[derive(Debug, Default)]
pub struct Breaks {
    /// An exclusive or batch break is in progress: the open must wait.
    pub wait: bool,
    /// Holders whose connection is gone (disconnected durable opens):
    /// they are closed rather than waited for ([MS-SMB2] 3.3.4.6).
    pub orphans: Vec<u64>,
}

#[derive(Debug)]
pub struct FileTable {
    files: HashMap<FileUid, FileEntry>,
    /// The inode of every entry, to its id (see the module doc).
    inodes: HashMap<Inode, FileUid>,
    /// The share set whose partition holds the leases.
    set: ::ids::SetId,
    /// Where each lease's notices go: the connection of the latest open
    /// that used it ([MS-SMB2] 3.3.4.7 lets the server pick any connection
    /// of the client). The lease itself is the model's; this goes with
    /// its last open in the table.
    lease_sinks: HashMap<LeaseId, BreakSink>,
    /// The entries of named streams with opens, by (file, upper-case
    /// name): a stream renamed while open keeps its key under its new
    /// name.
    streams: HashMap<(FileUid, String), FileUid>,
    /// The directories that have (or had) leases, with the share each is
    /// in: where a change to a directory's entries looks for the leases it
    /// breaks ([`FileTable::break_dir_leases`]). An entry whose leases are
    /// gone is dropped when it is next looked at.
    dir_leases: HashMap<FileUid, String>,
}

/// An open's caching: as the per-file table's decisions see it
/// ([`FileTable::caching_view`]), and as the model has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachingView {
    None,
    /// The level, and the level a break in progress goes to.
    Oplock {
        level: u8,
        breaking_to: Option<u8>,
    },
    /// The lease key, its state and epoch, and a break in progress (to,
    /// required).
    Lease {
        key: [u8; 16],
        state: u32,
        epoch: u16,
        breaking: Option<(u32, u32)>,
    },
}

impl CachingView {
    /// An open's caching as the state model has it.
    pub fn of_model(p: &crate::model::Partition, o: &crate::model::OpenRecord) -> CachingView {
        use crate::model::Caching;
        match o.caching() {
            Caching::None => CachingView::None,
            Caching::Oplock { level, breaking } => {
                CachingView::Oplock { level: level as u8, breaking_to: breaking.map(|b| b.to as u8) }
            }
            Caching::Lease(key) => match p.lease(crate::model::LeaseId { client: o.info().client_guid, key }) {
                Some(l) => CachingView::Lease {
                    key: key.0,
                    state: l.state(),
                    epoch: l.epoch(),
                    breaking: l.breaking().map(|b| (b.to, b.required)),
                },
                None => CachingView::None,
            },
        }
    }
}

/// What a lease request in a CREATE came to ([MS-SMB2] 2.2.14.2.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    pub state: u32,
    pub epoch: u16,
    pub breaking: bool,
    /// The lease is version 2: the response carries the v2 context
    /// whatever the request's version ([MS-SMB2] 3.3.5.9.11).
    pub v2: bool,
}

/// The distinct leases held by the opens of a file.
fn leases_of(f: &FileEntry) -> Vec<LeaseId> {
    let mut ids: Vec<LeaseId> = Vec::new();
    for id in f.opens.iter().filter_map(|o| o.lease) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Access that takes part in share-mode checks: an open with none of
/// these (a "stat open", e.g. READ_ATTRIBUTES only) neither conflicts nor
/// is conflicted with ([MS-FSA] 2.1.5.1.2.2).
pub const SHARE_CHECKED_ACCESS: u32 =
    access::FILE_READ_DATA | access::FILE_EXECUTE | access::FILE_WRITE_DATA | access::FILE_APPEND_DATA | access::DELETE;

/// Does the new open conflict with an existing one? ([MS-FSA] 2.1.5.1.2.2:
/// only when both the new and the existing open hold data or delete
/// access, and either one's access is not shared by the other.)
pub fn share_conflict(existing: Sharing, access: u32, share_access: u32) -> bool {
    use access::*;
    if access & SHARE_CHECKED_ACCESS == 0 || existing.access & SHARE_CHECKED_ACCESS == 0 {
        return false;
    }
    let data_read = FILE_READ_DATA | FILE_EXECUTE;
    let data_write = FILE_WRITE_DATA | FILE_APPEND_DATA;
    let check = |held_access: u32, other_share: u32| {
        (held_access & data_read != 0 && other_share & share::READ == 0)
            || (held_access & data_write != 0 && other_share & share::WRITE == 0)
            || (held_access & DELETE != 0 && other_share & share::DELETE == 0)
    };
    check(access, existing.share_access) || check(existing.access, share_access)
}

impl Default for FileTable {
    /// An empty table for share set 0 (tests).
    fn default() -> FileTable {
        FileTable::new(::ids::SetId(0))
    }
}

impl FileTable {
    /// An empty table whose lease changes are logged for share set `set`.
    pub fn new(set: ::ids::SetId) -> FileTable {
        FileTable {
            files: HashMap::new(),
            inodes: HashMap::new(),
            set,
            lease_sinks: HashMap::new(),
            streams: HashMap::new(),
            dir_leases: HashMap::new(),
        }
    }

    /// Every entry (for check mode).
    pub fn entries(&self) -> impl Iterator<Item = (&FileUid, &FileEntry)> {
        self.files.iter()
    }

    pub fn get(&self, key: &FileUid) -> Option<&FileEntry> {
        self.files.get(key)
    }

    pub fn get_mut(&mut self, key: &FileUid) -> Option<&mut FileEntry> {
        self.files.get_mut(key)
    }

    /// Checks share modes against every open of the file, each open's
    /// access and share access read from `model` ([`OpenRef::sharing`]).
    ///
    /// An open of a file with DELETE access also opens its named streams
    /// for delete (as smbd's `open_streams_for_delete`): a stream open
    /// that does not share delete refuses it (smbtorture
    /// smb2.streams.delete).
    pub fn check_share(&mut self, key: &FileUid, access: u32, share_access: u32, model: &impl SharingOf) -> bool {
        let Some(f) = self.files.get_mut(key) else { return true };
        if f.opens.iter_mut().any(|o| share_conflict(o.sharing(model), access, share_access)) {
            return false;
        }
        if f.stream_opens > 0 && access & access::DELETE != 0 {
            let all = share::READ | share::WRITE | share::DELETE;
            return !self.files.values_mut().any(|s| {
                s.base == Some(*key)
                    && s.opens.iter_mut().any(|o| share_conflict(o.sharing(model), access::DELETE, all))
            });
        }
        true
    }

    /// The key of the named stream `name` (upper case) of the file `base`:
    /// the one its opens use, else `hashed` (its name's,
    /// [`crate::fs::stream::stream_uid`]) or, when a stream renamed away
    /// from this name holds that, the next free one.
    pub fn stream_key(&self, base: FileUid, name: &str, hashed: FileUid) -> FileUid {
        if let Some(k) = self.streams.get(&(base, name.to_owned())) {
            return *k;
        }
        let mut k = hashed;
        while self.files.contains_key(&k) {
            k = FileUid(k.0.wrapping_add(1));
        }
        k
    }

    /// Records that the open stream `key` of the file `base` is now named
    /// `name` (upper case).
    pub fn rename_stream(&mut self, key: &FileUid, base: FileUid, name: &str) {
        let Some(e) = self.files.get_mut(key) else { return };
        if let Some(old) = e.stream_name.replace(name.to_owned()) {
            self.streams.remove(&(base, old));
        }
        self.streams.insert((base, name.to_owned()), *key);
    }

    /// Adds an open of the named stream `key` (named `name`, upper case;
    /// see [`FileTable::stream_key`]) of the file `base` (whose inode is
    /// `base_inode`): the stream's entry holds the open, the file's entry
    /// counts it.
    pub fn add_stream_open(&mut self, key: FileUid, name: &str, base: FileUid, base_inode: Inode, open: OpenRef) {
        let b = self.files.entry(base).or_default();
        if b.inode.is_none() {
            b.inode = Some(base_inode);
            self.inodes.insert(base_inode, base);
        }
        b.stream_opens += 1;
        let e = self.files.entry(key).or_default();
        e.base = Some(base);
        e.opens.push(open);
        if e.stream_name.is_none() {
            e.stream_name = Some(name.to_owned());
            self.streams.insert((base, name.to_owned()), key);
        }
    }

    /// Removes an open of a named stream. Returns whether it was the
    /// stream's last open, and whether it was the last open of the file
    /// and its streams: the caller deletes the stream, or the file, when a
    /// delete is pending on it (the model's, [`crate::model::FileRecord`]).
    /// A lease that loses its last open goes as a file's does
    /// ([`FileTable::remove_open`]).
    pub fn remove_stream_open(&mut self, m: &mut impl CachingModel, key: &FileUid, persistent_id: u64) -> (bool, bool) {
        let Some(f) = self.files.get_mut(key) else { return (false, false) };
        let before = f.opens.len();
        let lease = f.open(persistent_id).and_then(|o| o.lease);
        f.opens.retain(|o| o.persistent_id != persistent_id);
        if f.opens.len() == before {
            return (false, false);
        }
        if let Some(id) = lease {
            self.lease_left(m, key, id);
        }
        let Some(f) = self.files.get_mut(key) else { return (false, false) };
        let base = f.base;
        let mut stream_last = false;
        if f.opens.is_empty() {
            stream_last = true;
            if let (Some(b), Some(n)) = (base, f.stream_name.take()) {
                self.streams.remove(&(b, n));
            }
            self.files.remove(key);
        }
        let Some(b) = base else { return (stream_last, false) };
        let Some(bf) = self.files.get_mut(&b) else { return (stream_last, false) };
        bf.stream_opens = bf.stream_opens.saturating_sub(1);
        if bf.stream_opens > 0 || !bf.opens.is_empty() {
            return (stream_last, false);
        }
        if let Some(inode) = bf.inode {
            if self.inodes.get(&inode) == Some(&b) {
                self.inodes.remove(&inode);
            }
        }
        self.files.remove(&b);
        (stream_last, true)
    }

    /// How many opens the named streams of the file `key` have.
    pub fn stream_opens(&self, key: &FileUid) -> usize {
        self.files.get(key).map_or(0, |f| f.stream_opens)
    }

    /// The id of the file with opens whose inode this is, if any (a file
    /// without opens has no entry, and nothing to check against).
    pub fn uid_of(&self, inode: Inode) -> Option<FileUid> {
        self.inodes.get(&inode).copied()
    }

    /// The inode of the file `key`'s opens, if it has any.
    pub fn inode_of(&self, key: &FileUid) -> Option<Inode> {
        self.files.get(key).and_then(|f| f.inode)
    }

    /// Adds an open of the file `key`, whose inode on this node is
    /// `inode`. The caller has checked that `key` is not another inode's
    /// (see `cmd::create`'s reservation).
    pub fn add_open(&mut self, key: FileUid, inode: Inode, open: OpenRef) {
        let e = self.files.entry(key).or_default();
        e.opens.push(open);
        e.inode = Some(inode);
        self.inodes.insert(inode, key);
    }

    /// Removes an open. True when it was the file's last (and no stream of
    /// the file is open): the caller then deletes the file if a delete is
    /// pending on it (the model's). A lease that loses its last open goes
    /// too, once no open in the model uses it either ([`FileTable::end_leases`]).
    pub fn remove_open(&mut self, m: &mut impl CachingModel, key: &FileUid, persistent_id: u64) -> bool {
        let Some(f) = self.files.get_mut(key) else { return false };
        let lease = f.open(persistent_id).and_then(|o| o.lease);
        f.opens.retain(|o| o.persistent_id != persistent_id);
        if let Some(id) = lease {
            self.lease_left(m, key, id);
        }
        let Some(f) = self.files.get_mut(key) else { return false };
        if f.opens.is_empty() && f.stream_opens > 0 {
            // Its streams' opens keep the entry (and the model's record a
            // pending delete).
            return false;
        }
        if f.opens.is_empty() {
            if let Some(inode) = f.inode {
                if self.inodes.get(&inode) == Some(key) {
                    self.inodes.remove(&inode);
                }
            }
            self.files.remove(key);
            return true;
        }
        false
    }

    /// An open of lease `id` on the file `key` left the table. When it was
    /// the lease's last there, its notices have nowhere to go, and the
    /// lease ends (`LeaseGone`) as soon as no open in the model uses it
    /// either: at once when the model never had the open, else when the
    /// open's `OpenDown` has been applied ([`FileTable::end_leases`]).
    fn lease_left(&mut self, m: &mut impl CachingModel, key: &FileUid, id: LeaseId) {
        if self.files.get(key).is_some_and(|f| f.opens.iter().any(|o| o.lease == Some(id))) {
            return;
        }
        self.lease_sinks.remove(&id);
        self.end_lease(m, id);
    }

    /// Ends lease `id` in the model when no open uses it, in the table or
    /// in the model.
    fn end_lease(&mut self, m: &mut impl CachingModel, id: LeaseId) {
        let Some(l) = lease_in(m.model(), self.set, id) else {
            return;
        };
        let used = self.files.get(&l.file()).is_some_and(|f| f.opens.iter().any(|o| o.lease == Some(id)));
        let p = m.model().partition(self.set);
        if used || p.is_some_and(|p| p.lease_opens(id.model()).next().is_some()) {
            return;
        }
        m.change(Delta::LeaseGone { set: self.set, lease: id.model() });
    }

    /// The opens of `leases` left the model (their `OpenDown`s were
    /// applied): those leases that no open uses now end
    /// (their last opens in the table are gone already).
    pub fn end_leases(&mut self, m: &mut impl CachingModel, leases: &[crate::model::LeaseId]) {
        for l in leases {
            self.end_lease(m, LeaseId { client_guid: l.client.0, key: l.key.0 });
        }
    }

    /// Starts the oplock breaks a new (non-stat) open of the file causes
    /// ([MS-FSA] 2.1.4.12, as Windows and Samba order them): a batch
    /// holder is always broken, before the share-mode check, since it may
    /// close its handle in answer; an exclusive holder only when the
    /// share modes let the new open in. Both go to level II, or to none
    /// when the open overwrites the file (and passes the share check);
    /// level II holders go to none then too. Leases of other keys than
    /// the opener's are broken as [`lease::keep_for_open`] says; opens
    /// with the same lease key never break each other.
    pub fn break_for_open(
        &mut self,
        m: &mut impl CachingModel,
        key: &FileUid,
        overwrite: bool,
        violation: bool,
        opener: Option<LeaseId>,
    ) -> Breaks {
        self.break_for_open_of(m, key, overwrite, violation, false, opener, true)
    }

    /// [`FileTable::break_for_open`], breaking leases only with `leases`
    /// (an open that is a stat open for leases breaks oplocks alone,
    /// [`oplock::is_lease_stat_open`]). An open that will delete the file
    /// (`deleting`: FILE_DELETE_ON_CLOSE) takes handle caching (H) from the
    /// other leases too, and waits for it, so that their holders may close
    /// the handles they keep open ([MS-FSA] 2.1.5.1.2.1, as Windows breaks;
    /// smbtorture smb2.lease.unlink).
    #[allow(clippy::too_many_arguments)]
    pub fn break_for_open_of(
        &mut self,
        m: &mut impl CachingModel,
        key: &FileUid,
        overwrite: bool,
        violation: bool,
        deleting: bool,
        opener: Option<LeaseId>,
        leases: bool,
    ) -> Breaks {
        let mut out = Breaks::default();
        let Some(f) = self.files.get_mut(key) else {
            return out;
        };
        let truncating = overwrite && !violation;
        let mut log = CachingLog::new(self.set);
        for o in &mut f.opens {
            let mut st = o.oplock(m.model());
            let to = match st.level {
                _ if st.breaking_to.is_some() => None,
                level::BATCH => Some(if truncating { level::NONE } else { level::II }),
                level::EXCLUSIVE if !violation => Some(if truncating { level::NONE } else { level::II }),
                level::II if truncating => Some(level::NONE),
                _ => continue,
            };
            let waits = match to {
                Some(to) => {
                    let waits = st.start_break(to, o.persistent_id, o.sink.as_ref(), &mut log);
                    o.put_oplock(m, st, &mut log);
                    waits
                }
                None => true,
            };
            if waits {
                out.wait = true;
                if oplock::holder_gone(o.sink.as_ref()) {
                    out.orphans.push(o.persistent_id);
                }
            }
        }
        let keep_bits = |state| {
            let keep = lease::keep_for_open(state, overwrite, violation);
            if deleting {
                keep & !lease_state::HANDLE_CACHING
            } else {
                keep
            }
        };
        for id in leases_of(f) {
            if !leases || Some(id) == opener {
                continue;
            }
            let Some(mut l) = lease_in(m.model(), self.set, id).map(Lease::of) else {
                continue;
            };
            // The opener waits for the acknowledgement only when the holder
            // caches writes (they must reach the file first) or must give
            // up its handle to let the open in; a holder of R or RH that an
            // overwrite breaks is sent the break and the open goes ahead
            // (smbtorture smb2.lease.breaking4, as Windows and Samba).
            let blocks = l.state & lease_state::WRITE_CACHING != 0
                || ((violation || deleting) && l.state & lease_state::HANDLE_CACHING != 0);
            let sink = self.lease_sinks.get(&id);
            let waits = l.break_to(&id, keep_bits(l.state), sink, &mut log);
            for d in log.take() {
                m.change(d);
            }
            if waits && blocks {
                out.wait = true;
                if oplock::holder_gone(sink) {
                    out.orphans.extend(f.opens.iter().filter(|o| o.lease == Some(id)).map(|o| o.persistent_id));
                }
            }
        }
        out
    }

    /// Breaks the handle caching (H) of the file's leases other than
    /// `except` (a rename's own lease): what a rename does to them. The
    /// caller waits for the acknowledgements when `wait` says so.
    pub fn break_handle_caching(
        &mut self,
        m: &mut impl CachingModel,
        key: &FileUid,
        except: Option<LeaseId>,
    ) -> Breaks {
        let mut out = Breaks::default();
        let Some(f) = self.files.get(key) else {
            return out;
        };
        let mut log = CachingLog::new(self.set);
        for id in leases_of(f) {
            if Some(id) == except {
                continue;
            }
            let Some(mut l) = lease_in(m.model(), self.set, id).map(Lease::of) else {
                continue;
            };
            if l.state & lease_state::HANDLE_CACHING == 0 {
                continue;
            }
            let sink = self.lease_sinks.get(&id);
            let waits = l.break_to(&id, l.state & !lease_state::HANDLE_CACHING, sink, &mut log);
            for d in log.take() {
                m.change(d);
            }
            if waits {
                out.wait = true;
                if oplock::holder_gone(sink) {
                    out.orphans.extend(f.opens.iter().filter(|o| o.lease == Some(id)).map(|o| o.persistent_id));
                }
            }
        }
        out
    }

    /// May an open of the file hold an oplock or a lease? False only when
    /// none can (an open holds an oplock only while it has somewhere to
    /// send its breaks, and a lease only with its link): what spares a
    /// WRITE the model's lock.
    pub fn may_cache(&self, key: &FileUid) -> bool {
        self.files.get(key).is_some_and(|f| {
            f.opens.iter().any(|o| {
                o.sink.is_some() || o.lease.is_some() || o.pending_oplock.is_some_and(|p| p.level != level::NONE)
            })
        })
    }

    /// Breaks every level II oplock on the file to none: somebody is
    /// changing it (a write, a lock, a size change; [MS-FSA] 2.1.4.12).
    /// The writer's own level II is broken too, as Windows does. Leases
    /// with R caching of other keys than the writer's (open `by`) are
    /// broken to none; nobody waits for those that need an
    /// acknowledgement (RH).
    pub fn break_level2(&mut self, m: &mut impl CachingModel, key: &FileUid, by: u64) {
        let Some(f) = self.files.get_mut(key) else {
            return;
        };
        let mut log = CachingLog::new(self.set);
        for o in &mut f.opens {
            let mut st = o.oplock(m.model());
            if st.level == level::II {
                st.start_break(level::NONE, o.persistent_id, o.sink.as_ref(), &mut log);
                o.put_oplock(m, st, &mut log);
            }
        }
        let writer = f.open(by).and_then(|o| o.lease);
        for id in leases_of(f) {
            if Some(id) == writer {
                continue;
            }
            if let Some(mut l) = lease_in(m.model(), self.set, id).map(Lease::of) {
                if l.state & lease_state::READ_CACHING != 0 {
                    l.break_to(&id, 0, self.lease_sinks.get(&id), &mut log);
                    for d in log.take() {
                        m.change(d);
                    }
                }
            }
        }
    }

    /// Is a break of an exclusive or batch oplock, or of a lease, on the
    /// file in progress?
    pub fn oplock_breaking(&self, m: &Model, key: &FileUid) -> bool {
        self.files.get(key).is_some_and(|f| {
            f.opens.iter().any(|o| {
                o.oplock(m).breaking_to.is_some()
                    || o.lease.and_then(|id| lease_in(m, self.set, id)).is_some_and(|l| l.breaking().is_some())
            })
        })
    }

    /// The wait for acknowledgements is over: holders that did not answer
    /// lose their oplocks.
    pub fn oplock_time_out(&mut self, m: &mut impl CachingModel, key: &FileUid) {
        let Some(f) = self.files.get_mut(key) else {
            return;
        };
        let mut log = CachingLog::new(self.set);
        for o in &mut f.opens {
            let mut st = o.oplock(m.model());
            if st.breaking_to.is_some() {
                st.time_out(o.persistent_id, &mut log);
                o.put_oplock(m, st, &mut log);
            }
        }
        for id in leases_of(f) {
            if let Some(mut l) = lease_in(m.model(), self.set, id).map(Lease::of) {
                l.time_out(&id, &mut log);
                for d in log.take() {
                    m.change(d);
                }
            }
        }
    }

    /// The break of one open's oplock is past its deadline (the model's,
    /// [`crate::model::Model::expired`]): the holder keeps no oplock.
    /// False when no such break is in progress.
    pub fn oplock_time_out_open(&mut self, m: &mut impl CachingModel, persistent_id: u64) -> bool {
        let Some(o) = self.files.values_mut().find_map(|f| f.open_mut(persistent_id)) else {
            return false;
        };
        let mut st = o.oplock(m.model());
        if st.breaking_to.is_none() {
            return false;
        }
        let mut log = CachingLog::new(self.set);
        st.time_out(persistent_id, &mut log);
        o.put_oplock(m, st, &mut log);
        true
    }

    /// A lease break is past its deadline: the lease keeps nothing. False
    /// when no such break is in progress.
    pub fn lease_time_out(&mut self, m: &mut impl CachingModel, id: &LeaseId) -> bool {
        let Some(mut l) = lease_in(m.model(), self.set, *id).map(Lease::of) else {
            return false;
        };
        if l.breaking.is_none() {
            return false;
        }
        let mut log = CachingLog::new(self.set);
        l.time_out(id, &mut log);
        for d in log.take() {
            m.change(d);
        }
        true
    }

    /// An open's caching as the table's decisions see it: its oplock, or
    /// its lease, read through its link ([`OpenRef::oplock`], the model's
    /// lease record).
    pub fn caching_view(&self, m: &Model, key: &FileUid, persistent_id: u64) -> CachingView {
        let Some(o) = self.files.get(key).and_then(|f| f.open(persistent_id)) else {
            return CachingView::None;
        };
        if let Some(id) = o.lease {
            return match lease_in(m, self.set, id) {
                Some(l) => CachingView::Lease {
                    key: id.key,
                    state: l.state(),
                    epoch: l.epoch(),
                    breaking: l.breaking().map(|b| (b.to, b.required)),
                },
                None => CachingView::None,
            };
        }
        match o.oplock(m) {
            OplockState { level: level::NONE, .. } => CachingView::None,
            st => CachingView::Oplock { level: st.level, breaking_to: st.breaking_to },
        }
    }

    /// Grants the open (already added) the oplock it may have; returns
    /// the level. The grant is the open's until its `OpenUp`, which
    /// carries it, reaches the model ([`OpenRef::pending_oplock`]).
    pub fn grant_oplock(&mut self, m: &Model, key: &FileUid, persistent_id: u64, requested: u8, sink: BreakSink) -> u8 {
        let Some(f) = self.files.get_mut(key) else {
            return level::NONE;
        };
        let set = self.set;
        let lease_of = |o: &OpenRef| o.lease.and_then(|id| lease_in(m, set, id)).map_or(0, LeaseRecord::state);
        let others = f.opens.iter().filter(|o| o.persistent_id != persistent_id).map(|o| (o, o.oplock(m).level));
        let (n, excl, handle) = others
            .filter(|(o, held)| *held != level::NONE || o.lease.is_some() || !o.stat_open)
            .fold((0, false, false), |(n, x, h), (o, held)| {
                let l = lease_of(o);
                (
                    n + 1,
                    x || oplock::is_exclusive(held) || l & lease_state::WRITE_CACHING != 0,
                    h || l & lease_state::HANDLE_CACHING != 0,
                )
            });
        // An oplock is not granted beside a lease that caches handles
        // (as Windows and Samba do).
        let granted = if handle { level::NONE } else { oplock::grant(requested, n, excl) };
        if let Some(o) = f.open_mut(persistent_id) {
            o.pending_oplock = Some(OplockState { level: granted, breaking_to: None });
            o.sink = (granted != level::NONE).then_some(sink);
        }
        granted
    }

    /// The open's current oplock level.
    pub fn oplock_level(&self, m: &Model, key: &FileUid, persistent_id: u64) -> u8 {
        self.files.get(key).and_then(|f| f.open(persistent_id)).map_or(level::NONE, |o| o.oplock(m).level)
    }

    /// The open's connection is gone (a durable open kept for reconnect):
    /// its holder can no longer be reached, so a conflicting open purges
    /// it at once instead of sending it a break ([MS-SMB2] 3.3.4.6).
    pub fn disconnect_oplock(&mut self, key: &FileUid, persistent_id: u64) {
        if let Some(o) = self.files.get_mut(key).and_then(|f| f.open_mut(persistent_id)) {
            if let Some(s) = o.sink.as_mut() {
                s.tx = BreakSink::unreachable();
            }
        }
    }

    /// Is a break of the open's oplock in progress?
    pub fn oplock_breaking_open(&self, m: &Model, key: &FileUid, persistent_id: u64) -> bool {
        self.files.get(key).and_then(|f| f.open(persistent_id)).is_some_and(|o| o.oplock(m).breaking_to.is_some())
    }

    /// Points the open's break notifications at a new connection
    /// (durable reconnect).
    pub fn set_oplock_sink(&mut self, m: &Model, key: &FileUid, persistent_id: u64, sink: BreakSink) {
        if let Some(o) = self.files.get_mut(key).and_then(|f| f.open_mut(persistent_id)) {
            if o.oplock(m).level != level::NONE {
                o.sink = Some(sink.clone());
            }
            if let Some(id) = o.lease {
                self.lease_sinks.insert(id, sink);
            }
        }
    }

    /// Links an open (already added) to its oplock as the state model has
    /// it after a restart or a takeover (a break in progress included):
    /// notices go to `sink` (the holder's connection, once it reclaims the
    /// handle, [`FileTable::set_oplock_sink`]). The level is the model's:
    /// nothing is copied, nothing changed.
    pub fn restore_oplock(&mut self, key: &FileUid, persistent_id: u64, sink: BreakSink) {
        if let Some(o) = self.files.get_mut(key).and_then(|f| f.open_mut(persistent_id)) {
            o.sink = Some(sink);
        }
    }

    /// Links an open (already added) to its lease `id` as the state model
    /// has it (its record, state and break in progress included, is the
    /// one copy); notices go to `sink` unless another open restored before
    /// set where. Nothing is changed.
    pub fn restore_lease(&mut self, key: &FileUid, persistent_id: u64, id: LeaseId, sink: BreakSink) {
        if let Some(o) = self.files.get_mut(key).and_then(|f| f.open_mut(persistent_id)) {
            o.lease = Some(id);
            self.lease_sinks.entry(id).or_insert(sink);
        }
    }

    /// Sends again the notice of a break of the open's oplock or lease that
    /// is in progress (one a restart brought back), to where the open's
    /// notices go now ([`FileTable::set_oplock_sink`]). True when one was
    /// sent.
    pub fn resend_break(&self, m: &Model, key: &FileUid, persistent_id: u64) -> bool {
        let Some(o) = self.files.get(key).and_then(|f| f.open(persistent_id)) else {
            return false;
        };
        match o.lease.and_then(|id| lease_in(m, self.set, id).map(|l| (id, Lease::of(l)))) {
            Some((id, l)) => l.resend(&id, self.lease_sinks.get(&id)),
            None => o.oplock(m).resend(o.sink.as_ref()),
        }
    }

    /// Every lease an open in the table uses (for check mode).
    pub fn lease_ids(&self) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> = self.files.values().flat_map(leases_of).collect();
        ids.sort_unstable_by_key(|id| (id.client_guid, id.key));
        ids.dedup();
        ids
    }

    /// The file a lease's opens are of, if the lease exists (in the model).
    pub fn lease_file(&self, m: &Model, id: &LeaseId) -> Option<FileUid> {
        lease_in(m, self.set, *id).map(LeaseRecord::file)
    }

    /// Grants the open (already added) a lease ([MS-SMB2] 3.3.5.9.8,
    /// 3.3.5.9.11; the rules are Windows' and Samba's): the open joins
    /// the lease of its key if there is one, which is upgraded when the
    /// request asks for strictly more, gets all of it and no break is in
    /// progress; otherwise a new lease is made. W only when no other open
    /// (but stat opens and opens of the same lease) exists, H only when
    /// no other open holds an oplock. `v2_epoch` is the request's epoch
    /// for a version 2 lease, `parent` its ParentLeaseKey when it has one.
    /// The caller has checked that the key is not in use on another file.
    #[allow(clippy::too_many_arguments)]
    pub fn grant_lease(
        &mut self,
        m: &mut impl CachingModel,
        key: &FileUid,
        persistent_id: u64,
        id: LeaseId,
        requested: u32,
        v2_epoch: Option<u16>,
        parent: Option<[u8; 16]>,
        sink: BreakSink,
    ) -> LeaseGrant {
        let Some(f) = self.files.get_mut(key) else {
            return LeaseGrant { state: 0, epoch: 0, breaking: false, v2: false };
        };
        let mut granted = lease::grantable(requested);
        let others = f.opens.iter().filter(|o| o.persistent_id != persistent_id && o.lease != Some(id));
        for o in others {
            let held = o.oplock(m.model()).level;
            if held != level::NONE || o.lease.is_some() || !o.stat_open {
                granted &= !lease_state::WRITE_CACHING;
            }
            if held != level::NONE {
                granted &= !lease_state::HANDLE_CACHING;
            }
        }
        if let Some(o) = f.open_mut(persistent_id) {
            o.lease = Some(id);
        }
        let set = self.set;
        let mut log = CachingLog::new(set);
        let mut l = match lease_in(m.model(), set, id) {
            Some(l) => Lease::of(l),
            None => {
                let l = Lease::new(granted, v2_epoch);
                log.push(Delta::LeaseGranted {
                    set,
                    lease: id.model(),
                    file: *key,
                    parent: parent.filter(|_| l.v2).map(crate::model::LeaseKey),
                    version: if l.v2 { LeaseVersion::V2 } else { LeaseVersion::V1 },
                    state: l.state,
                    epoch: l.epoch,
                });
                l
            }
        };
        let existing = l.state;
        let upgrade =
            l.breaking.is_none() && existing & requested == existing && granted != existing && granted == requested;
        if upgrade {
            l.state = granted;
            if l.v2 {
                l.epoch = l.epoch.wrapping_add(1);
            }
            log.push(Delta::LeaseChanged { set, lease: id.model(), state: l.state, epoch: l.epoch });
        }
        for d in log.take() {
            m.change(d);
        }
        self.lease_sinks.insert(id, sink);
        LeaseGrant { state: l.state, epoch: l.epoch, breaking: l.breaking.is_some(), v2: l.v2 }
    }

    /// Grants a lease on a directory ([MS-SMB2] 3.3.5.9.8 and 3.3.5.9.11,
    /// SMB 3.x with SMB2_CAP_DIRECTORY_LEASING): as [`FileTable::grant_lease`],
    /// but never W (a directory caches no writes: RHW asked is RH granted,
    /// RW is R). Its leases break when the directory's entries change
    /// ([`FileTable::break_dir_leases`]).
    #[allow(clippy::too_many_arguments)]
    pub fn grant_dir_lease(
        &mut self,
        m: &mut impl CachingModel,
        share: &str,
        key: &FileUid,
        persistent_id: u64,
        id: LeaseId,
        requested: u32,
        v2_epoch: Option<u16>,
        parent: Option<[u8; 16]>,
        sink: BreakSink,
    ) -> LeaseGrant {
        let requested = requested & !lease_state::WRITE_CACHING;
        let g = self.grant_lease(m, key, persistent_id, id, requested, v2_epoch, parent, sink);
        self.dir_leases.entry(*key).or_insert_with(|| share.to_string());
        g
    }

    /// Whether any directory has a lease (a cheap test before
    /// [`FileTable::break_dir_leases`]).
    pub fn has_dir_leases(&self) -> bool {
        !self.dir_leases.is_empty()
    }

    /// The lease an open changes its directory's entries under: its own
    /// lease's ParentLeaseKey, as the client's lease on the directory
    /// ([MS-SMB2] 2.2.13.2.10, 3.3.1.4 Lease.ParentLeaseKey).
    pub fn parent_lease_of(&self, m: &Model, key: &FileUid, persistent_id: u64) -> Option<LeaseId> {
        let id = self.files.get(key)?.open(persistent_id)?.lease?;
        let l = lease_in(m, self.set, id)?;
        let parent = l.parent().filter(|_| l.version() == LeaseVersion::V2)?;
        Some(LeaseId { client_guid: id.client_guid, key: parent.0 })
    }

    /// The entries of directory `dir` (share-relative components) of
    /// `share` changed: a name was made, removed or renamed there, or a
    /// file's size, times or attributes, which its listing shows ([MS-FSA]
    /// 2.1.4.13, breaking the oplocks of a file's parent directory; as
    /// Windows, the change is not held up). Every lease on the directory
    /// but `actor` (the lease of the directory the change was made under,
    /// by its ParentLeaseKey) is broken to none; nobody waits for the
    /// acknowledgement.
    ///
    /// `is_dir` says whether a leased directory is `dir`, from the model
    /// (its path is the model's, [`crate::state::file_fields`]).
    pub fn break_dir_leases(
        &mut self,
        m: &mut impl CachingModel,
        share: &str,
        is_dir: impl Fn(&Model, &FileUid) -> bool,
        actor: Option<LeaseId>,
    ) {
        let keys: Vec<FileUid> = self.dir_leases.iter().filter(|(_, s)| s.as_str() == share).map(|(k, _)| *k).collect();
        let mut log = CachingLog::new(self.set);
        for key in keys {
            let ids = self.files.get(&key).map(leases_of).unwrap_or_default();
            if ids.is_empty() {
                self.dir_leases.remove(&key);
                continue;
            }
            if !is_dir(m.model(), &key) {
                continue;
            }
            for id in ids {
                if Some(id) == actor {
                    continue;
                }
                if let Some(mut l) = lease_in(m.model(), self.set, id).map(Lease::of) {
                    l.break_to(&id, 0, self.lease_sinks.get(&id), &mut log);
                    for d in log.take() {
                        m.change(d);
                    }
                }
            }
        }
    }

    /// The open's lease and its state.
    pub fn open_lease(&self, m: &Model, key: &FileUid, persistent_id: u64) -> Option<(LeaseId, u32)> {
        let id = self.files.get(key)?.open(persistent_id)?.lease?;
        lease_in(m, self.set, id).map(|l| (id, l.state()))
    }

    /// The open's lease as a response reports it (a replayed CREATE,
    /// [MS-SMB2] 3.3.5.9.10): its id, state, epoch and version.
    pub fn open_lease_grant(&self, m: &Model, key: &FileUid, persistent_id: u64) -> Option<(LeaseId, LeaseGrant)> {
        let id = self.files.get(key)?.open(persistent_id)?.lease?;
        let l = lease_in(m, self.set, id)?;
        let v2 = l.version() == LeaseVersion::V2;
        Some((id, LeaseGrant { state: l.state(), epoch: l.epoch(), breaking: l.breaking().is_some(), v2 }))
    }

    /// Is a break of the open's lease in progress?
    pub fn lease_breaking_open(&self, m: &Model, key: &FileUid, persistent_id: u64) -> bool {
        self.open_lease_grant(m, key, persistent_id).is_some_and(|(_, g)| g.breaking)
    }

    /// A Lease Break Acknowledgment ([MS-SMB2] 3.3.5.22.2): the new
    /// state; STATUS_OBJECT_NAME_NOT_FOUND for an unknown lease, else as
    /// [`Lease::ack`].
    pub fn ack_lease(
        &mut self,
        m: &mut impl CachingModel,
        id: &LeaseId,
        acked: u32,
    ) -> Result<u32, protocol::NtStatus> {
        let mut l =
            lease_in(m.model(), self.set, *id).map(Lease::of).ok_or(protocol::NtStatus::OBJECT_NAME_NOT_FOUND)?;
        let mut log = CachingLog::new(self.set);
        let r = l.ack(id, acked, self.lease_sinks.get(id), &mut log);
        for d in log.take() {
            m.change(d);
        }
        r
    }

    /// An Oplock Break Acknowledgment ([MS-SMB2] 3.3.5.22.1): the new
    /// level, or the error for an open that is not being broken
    /// (STATUS_INVALID_OPLOCK_PROTOCOL, as Windows answers) or a level
    /// that is not none or level II.
    pub fn ack_oplock(
        &mut self,
        m: &mut impl CachingModel,
        key: &FileUid,
        persistent_id: u64,
        acked: u8,
    ) -> Result<u8, protocol::NtStatus> {
        let o =
            self.files.get_mut(key).and_then(|f| f.open_mut(persistent_id)).ok_or(protocol::NtStatus::FILE_CLOSED)?;
        let mut st = o.oplock(m.model());
        let Some(to) = st.breaking_to else {
            return Err(protocol::NtStatus::INVALID_OPLOCK_PROTOCOL);
        };
        if acked != level::NONE && acked != level::II {
            return Err(protocol::NtStatus::INVALID_PARAMETER);
        }
        let new = if to == level::NONE || acked == level::NONE { level::NONE } else { level::II };
        st = OplockState { level: new, breaking_to: None };
        if new == level::NONE {
            o.sink = None;
        }
        let level = OplockLevel::from_u8(new).unwrap_or(OplockLevel::None);
        let mut log = CachingLog::new(self.set);
        log.push(Delta::OplockSet { open: PersistentFileId(persistent_id), level });
        o.put_oplock(m, st, &mut log);
        Ok(new)
    }

    /// The persistent ids of the file's opens.
    pub fn open_ids(&self, key: &FileUid) -> Vec<u64> {
        self.files.get(key).map(|f| f.opens.iter().map(|o| o.persistent_id).collect()).unwrap_or_default()
    }

    pub fn open_count(&self, key: &FileUid) -> usize {
        self.files.get(key).map_or(0, |f| f.opens.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file id for the tests, and its inode: different files, different inodes.
    fn key(a: u64, b: u64) -> FileUid {
        FileUid(u128::from(a) << 64 | u128::from(b))
    }

    fn ino(k: FileUid) -> Inode {
        Inode { dev: (k.0 >> 64) as u64, ino: k.0 as u64 }
    }

    /// The state model the table's oplocks and leases are in, as the
    /// server's recorder keeps it (changes of opens it does not have wait).
    fn recorder() -> super::super::record::Recorder {
        super::super::record::Recorder::new(::ids::SetId(0), 1)
    }

    fn r(access: u32, share: u32) -> Sharing {
        Sharing { access, share_access: share }
    }

    /// A named stream's opens: checked against each other only; one that
    /// does not share delete refuses an open of the file for delete; the
    /// file's entry outlives its own opens while its streams are open, and
    /// the stream's last close says whether it was the file's last too (a
    /// delete pending on the file, the model's, is carried out then:
    /// smbtorture smb2.streams.delete).
    #[test]
    fn stream_opens_and_their_file() {
        use access::{DELETE, FILE_READ_DATA, FILE_WRITE_DATA};
        let mut t = FileTable::default();
        let mut m = recorder();
        let (f, s) = (key(1, 1), key(1, 2));
        // A stream open that shares nothing.
        t.add_stream_open(s, "S", f, ino(f), OpenRef::new(1, FILE_WRITE_DATA, 0));
        assert_eq!(t.uid_of(ino(f)), Some(f));
        assert_eq!(t.stream_opens(&f), 1);
        assert!(!t.check_share(&s, FILE_WRITE_DATA, 7, &NoModel), "the same stream conflicts");
        assert!(t.check_share(&f, FILE_READ_DATA | FILE_WRITE_DATA, 0, &NoModel), "the file's opens do not");
        assert!(!t.check_share(&f, DELETE, 7, &NoModel), "but an open of the file for delete does");
        assert_eq!(t.remove_stream_open(&mut m, &s, 1), (true, true));
        assert!(t.get(&f).is_none() && t.uid_of(ino(f)).is_none());
        // The file's own open closes before its stream's: the stream's is
        // the last.
        t.add_stream_open(s, "S", f, ino(f), OpenRef::new(2, FILE_READ_DATA, 7));
        assert!(t.check_share(&f, DELETE, 7, &NoModel));
        t.add_open(f, ino(f), OpenRef::new(3, DELETE, 7));
        assert!(!t.remove_open(&mut m, &f, 3), "the stream's open keeps the file");
        assert_eq!(t.uid_of(ino(f)), Some(f));
        assert_eq!(t.remove_stream_open(&mut m, &s, 2), (true, true));
        assert!(t.get(&f).is_none() && t.get(&s).is_none());
        // Two opens of a stream: the second close is the stream's last.
        t.add_stream_open(s, "S", f, ino(f), OpenRef::new(4, DELETE, 7));
        t.add_stream_open(s, "S", f, ino(f), OpenRef::new(5, FILE_READ_DATA, 7));
        assert_eq!(t.remove_stream_open(&mut m, &s, 4), (false, false));
        assert_eq!(t.remove_stream_open(&mut m, &s, 5), (true, true));
        assert_eq!(t.remove_stream_open(&mut m, &s, 5), (false, false), "twice is nothing");
        assert!(t.get(&f).is_none());
    }

    #[test]
    fn share_modes_follow_fsa() {
        use access::*;
        // A reader that shares read admits another reader, not a writer.
        assert!(!share_conflict(r(FILE_READ_DATA, share::READ), FILE_READ_DATA, share::READ | share::WRITE));
        assert!(share_conflict(r(FILE_READ_DATA, share::READ), FILE_WRITE_DATA, share::READ | share::WRITE));
        // An attribute-only open conflicts with nothing.
        assert!(!share_conflict(r(FILE_READ_ATTRIBUTES, 0), FILE_WRITE_DATA | DELETE, 0));
        // Delete needs share-delete.
        assert!(share_conflict(r(FILE_READ_DATA, share::READ | share::WRITE), DELETE, 7));
    }

    #[test]
    fn stat_opens_take_no_part_in_sharing() {
        use access::*;
        // A READ_ATTRIBUTES open that shares nothing admits a reader
        // (bug 14375), and a reader admits it.
        assert!(!share_conflict(r(FILE_READ_ATTRIBUTES, 0), FILE_READ_DATA, 7));
        assert!(!share_conflict(r(FILE_READ_DATA, 7), FILE_READ_ATTRIBUTES, 0));
        // A security-descriptor open conflicts with nothing either.
        assert!(!share_conflict(r(READ_CONTROL | WRITE_DAC | WRITE_OWNER, 0), DELETE | FILE_READ_DATA, 0));
        // Through the table, in both orders.
        let mut t = FileTable::default();
        let k = key(1, 3);
        t.add_open(k, ino(k), OpenRef::new(1, FILE_READ_ATTRIBUTES, 0));
        assert!(t.check_share(&k, FILE_READ_DATA, 7, &NoModel));
        t.add_open(k, ino(k), OpenRef::new(2, FILE_READ_DATA, 7));
        assert!(t.check_share(&k, FILE_READ_ATTRIBUTES, 0, &NoModel));
        assert!(t.check_share(&k, FILE_WRITE_DATA, 7, &NoModel));
        assert!(t.check_share(&k, FILE_READ_DATA, share::READ, &NoModel));
        assert!(!t.check_share(&k, FILE_READ_DATA, 0, &NoModel));
    }

    #[test]
    fn files_are_keyed_by_uid_and_found_by_inode_while_open() {
        use access::*;
        let mut t = FileTable::default();
        let mut m = recorder();
        let (k, i) = (FileUid(0xABC), Inode { dev: 8, ino: 42 });
        assert_eq!(t.uid_of(i), None);
        // Two opens of one file (two hard links, say): one entry, whose
        // share modes both see.
        t.add_open(k, i, OpenRef::new(1, FILE_READ_DATA, share::READ));
        assert_eq!((t.uid_of(i), t.inode_of(&k)), (Some(k), Some(i)));
        assert!(!t.check_share(&k, FILE_WRITE_DATA, 7, &NoModel));
        t.add_open(k, i, OpenRef::new(2, FILE_READ_DATA, 7));
        assert_eq!(t.open_ids(&k), [1, 2]);
        // Another inode is another file, with its own id.
        let (k2, i2) = (FileUid(0xDEF), Inode { dev: 8, ino: 43 });
        t.add_open(k2, i2, OpenRef::new(3, FILE_WRITE_DATA, 0));
        assert_eq!(t.uid_of(i2), Some(k2));
        assert!(t.check_share(&k, FILE_READ_DATA, 7, &NoModel));
        // The inode is forgotten with the last open, not before.
        assert!(!t.remove_open(&mut m, &k, 1));
        assert_eq!(t.uid_of(i), Some(k));
        assert!(t.remove_open(&mut m, &k, 2), "the last open");
        assert_eq!((t.uid_of(i), t.inode_of(&k)), (None, None));
        assert_eq!(t.uid_of(i2), Some(k2));
        assert!(t.remove_open(&mut m, &k2, 3));
        assert!(t.inodes.is_empty() && t.files.is_empty());
    }

    /// An open with an oplock whose break notifications go nowhere (the
    /// table logic does not need a client).
    fn holder(t: &mut FileTable, m: &impl CachingModel, k: FileUid, pid: u64, share_access: u32, requested: u8) -> u8 {
        t.add_open(k, ino(k), OpenRef::new(pid, access::FILE_READ_DATA | access::FILE_WRITE_DATA, share_access));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = oplock::BreakSink {
            tx: tx.downgrade(),
            session_id: 1,
            file_id: protocol::msg::FileId { persistent: pid, volatile: pid },
            encrypt: None,
            client: None,
        };
        // Keep the channel open for the test's length, as a live
        // connection would.
        std::mem::forget((tx, rx));
        t.grant_oplock(m.model(), &k, pid, requested, sink)
    }

    #[test]
    fn batch_breaks_even_on_a_sharing_violation_exclusive_does_not() {
        let k = key(3, 4);
        let mut t = FileTable::default();
        let mut m = recorder();
        assert_eq!(holder(&mut t, &m, k, 1, 0, level::BATCH), level::BATCH);
        let b = t.break_for_open(&mut m, &k, false, true, None);
        assert!(b.wait && b.orphans.is_empty());
        assert!(t.oplock_breaking(m.model(), &k));
        // Acknowledged to level II: the break is over.
        assert_eq!(t.ack_oplock(&mut m, &k, 1, level::II), Ok(level::II));
        assert!(!t.oplock_breaking(m.model(), &k));
        // A second acknowledgement has nothing to acknowledge.
        assert_eq!(t.ack_oplock(&mut m, &k, 1, level::NONE), Err(protocol::NtStatus::INVALID_OPLOCK_PROTOCOL));

        let k = key(3, 5);
        assert_eq!(holder(&mut t, &m, k, 2, 0, level::EXCLUSIVE), level::EXCLUSIVE);
        let b = t.break_for_open(&mut m, &k, false, true, None);
        assert!(!b.wait && !t.oplock_breaking(m.model(), &k));
        let b = t.break_for_open(&mut m, &k, false, false, None);
        assert!(b.wait);
    }

    #[test]
    fn overwrite_breaks_to_none_and_level_two_needs_no_ack() {
        let k = key(5, 6);
        let mut t = FileTable::default();
        let mut m = recorder();
        assert_eq!(holder(&mut t, &m, k, 1, 7, level::BATCH), level::BATCH);
        assert!(t.break_for_open(&mut m, &k, true, false, None).wait);
        // The holder may only go to none; a level II acknowledgement is
        // taken as none.
        assert_eq!(t.ack_oplock(&mut m, &k, 1, level::II), Ok(level::NONE));
        // Two level II holders; an overwrite breaks both at once.
        assert_eq!(holder(&mut t, &m, k, 2, 7, level::II), level::II);
        assert_eq!(holder(&mut t, &m, k, 3, 7, level::BATCH), level::II);
        assert!(!t.break_for_open(&mut m, &k, true, false, None).wait);
        assert_eq!(t.oplock_level(m.model(), &k, 2), level::NONE);
        assert_eq!(t.oplock_level(m.model(), &k, 3), level::NONE);
    }

    #[test]
    fn writes_break_level_two_and_time_outs_take_the_oplock() {
        let k = key(7, 8);
        let mut t = FileTable::default();
        let mut m = recorder();
        assert_eq!(holder(&mut t, &m, k, 1, 7, level::II), level::II);
        t.break_level2(&mut m, &k, 0);
        assert_eq!(t.oplock_level(m.model(), &k, 1), level::NONE);
        let k = key(7, 9);
        assert_eq!(holder(&mut t, &m, k, 2, 7, level::EXCLUSIVE), level::EXCLUSIVE);
        assert!(t.break_for_open(&mut m, &k, false, false, None).wait);
        t.oplock_time_out(&mut m, &k);
        assert!(!t.oplock_breaking(m.model(), &k));
        assert_eq!(t.oplock_level(m.model(), &k, 2), level::NONE);
    }

    #[test]
    fn stat_opens_do_not_count_against_exclusive_grants() {
        let k = key(9, 10);
        let mut t = FileTable::default();
        let mut m = recorder();
        t.add_open(k, ino(k), OpenRef::new(1, access::FILE_READ_ATTRIBUTES, 7));
        assert!(!t.may_cache(&k), "a WRITE need not look for oplocks in the model");
        assert_eq!(holder(&mut t, &m, k, 2, 7, level::BATCH), level::BATCH);
        assert!(t.may_cache(&k));
        // A gone holder is reported for purging.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<oplock::Notice>();
        let weak = tx.downgrade();
        drop((tx, rx));
        t.files.get_mut(&k).unwrap().opens[1].sink.as_mut().unwrap().tx = weak;
        let b = t.break_for_open(&mut m, &k, false, false, None);
        assert_eq!(b.orphans, vec![2]);
        // A kept durable open is unreachable from the moment it is kept,
        // whatever its old connection still holds.
        let k = key(9, 11);
        assert_eq!(holder(&mut t, &m, k, 5, 7, level::BATCH), level::BATCH);
        assert!(t.break_for_open(&mut m, &k, false, false, None).orphans.is_empty());
        t.oplock_time_out(&mut m, &k);
        let k = key(9, 12);
        assert_eq!(holder(&mut t, &m, k, 6, 7, level::BATCH), level::BATCH);
        t.disconnect_oplock(&k, 6);
        assert_eq!(t.break_for_open(&mut m, &k, false, false, None).orphans, vec![6]);
    }

    /// A state model kept in step with a table the way the server keeps
    /// it: each open enters with its grant (`OpenUp`), and the table's log
    /// is applied after each operation.
    struct Shadow {
        r: super::super::record::Recorder,
        session: crate::model::SessionId,
    }

    const SET: ::ids::SetId = ::ids::SetId(0);
    const CLIENT: [u8; 16] = [0xC1; 16];

    /// The table reads and changes oplocks and leases in the shadow's
    /// model, as in the server's.
    impl CachingModel for Shadow {
        fn model(&self) -> &Model {
            self.r.model()
        }

        fn change(&mut self, d: Delta) {
            self.r.change(d);
        }
    }

    impl Shadow {
        fn new() -> Shadow {
            use crate::model::*;
            let mut r = super::super::record::Recorder::new(SET, 5);
            let id = SessionId(r.model().partition(SET).unwrap().ids().peek(1).unwrap());
            r.apply_request(&[Delta::SessionUp(Box::new(SessionInfo {
                id,
                owner: Owner { user: "u".into(), domain: "D".into() },
                guest: false,
                anonymous: false,
                client_guid: ClientGuid(CLIENT),
                dialect: 0x311,
                signing_algorithm: 0,
                cipher: 0,
                signing_required: false,
                encrypt_data: false,
                keys: SessionKeys::default(),
                created_at: Timestamp(1),
                expires_at: None,
            }))]);
            let tree =
                TreeInfo { id: TreeId(1), share: "s".into(), encrypt: false, read_only: false, maximal_access: 0 };
            r.apply_request(&[Delta::TreeUp { session: id, tree }]);
            Shadow { r, session: id }
        }

        /// The next persistent id.
        fn next_id(&self) -> u64 {
            self.model().partition(SET).unwrap().ids().peek(1).unwrap()
        }

        /// Adds an open of `k` to the table, grants it what `grant` gets
        /// it, then records it in the model (after the changes the grant
        /// made, as a CREATE's point 3 comes after them).
        fn open(
            &mut self,
            t: &mut FileTable,
            k: FileUid,
            grant: impl FnOnce(&mut FileTable, &mut Shadow, u64) -> super::super::deltas::Grant,
        ) -> u64 {
            let pid = self.next_id();
            t.add_open(k, ino(k), OpenRef::new(pid, access::FILE_READ_DATA | access::FILE_WRITE_DATA, 7));
            let g = grant(t, self, pid);
            self.up(pid, k, g);
            self.compare(t);
            pid
        }

        /// The `OpenUp` of open `pid` of `k` with grant `g` reaches the model
        /// (its CREATE's point 3).
        fn up(&mut self, pid: u64, k: FileUid, g: super::super::deltas::Grant) {
            use crate::model::*;
            let up = Delta::OpenUp(Box::new(NewOpen {
                info: OpenInfo {
                    persistent: PersistentFileId(pid),
                    file: k,
                    share: "s".into(),
                    create_guid: None,
                    client_guid: ClientGuid(CLIENT),
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
                session: self.session,
                tree: TreeId(1),
                volatile: VolatileFileId(pid),
                caching: Caching::None,
                channel_sequence: 0,
                delete_on_close: false,
            }));
            self.r.apply_request(&[super::super::deltas::with_grant(up, g)]);
        }

        /// Open `pid` closes: it leaves the table, then (its CLOSE's point
        /// 3) the model, and a lease no open uses any more ends.
        fn close(&mut self, t: &mut FileTable, k: FileUid, pid: u64) {
            use crate::model::*;
            let lease = self
                .model()
                .open(PersistentFileId(pid))
                .and_then(|o| o.lease_key().map(|key| LeaseId { client: o.info().client_guid, key }));
            t.remove_open(self, &k, pid);
            self.r.apply_request(&[Delta::OpenDown { open: PersistentFileId(pid) }]);
            t.end_leases(self, &lease.into_iter().collect::<Vec<_>>());
        }

        /// Every change applied (none refused, none waiting), the model
        /// sound, and the caching of every open of the table as its
        /// decisions see it the model's.
        fn compare(&mut self, t: &mut FileTable) {
            assert_eq!(self.r.stuck(), (0, 0), "changes refused, and waiting");
            self.model().check_invariants().unwrap();
            let p = self.model().partition(SET).unwrap();
            // (An open on its way out, in the model and no longer in the
            // table, is not compared.)
            for o in p.opens().filter(|o| t.open_ids(&o.info().file).contains(&o.id().0)) {
                let live = t.caching_view(self.model(), &o.info().file, o.id().0);
                assert_eq!(live, CachingView::of_model(p, o), "open {:#x}", o.id().0);
            }
        }
    }

    fn sink(pid: u64) -> oplock::BreakSink {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = oplock::BreakSink {
            tx: tx.downgrade(),
            session_id: 1,
            file_id: protocol::msg::FileId { persistent: pid, volatile: pid },
            encrypt: None,
            client: None,
        };
        std::mem::forget((tx, rx));
        sink
    }

    fn oplock(requested: u8) -> impl FnOnce(&mut FileTable, &mut Shadow, u64) -> super::super::deltas::Grant {
        move |t, m, pid| {
            let k = t.files.iter().find(|(_, f)| f.open(pid).is_some()).map(|(k, _)| *k).unwrap();
            super::super::deltas::Grant::Oplock(t.grant_oplock(m.model(), &k, pid, requested, sink(pid)))
        }
    }

    fn lease(
        key: u8,
        state: u32,
        v2: Option<u16>,
    ) -> impl FnOnce(&mut FileTable, &mut Shadow, u64) -> super::super::deltas::Grant {
        move |t, m, pid| {
            let k = t.files.iter().find(|(_, f)| f.open(pid).is_some()).map(|(k, _)| *k).unwrap();
            let id = LeaseId { client_guid: CLIENT, key: [key; 16] };
            t.grant_lease(m, &k, pid, id, state, v2, v2.map(|_| [9; 16]), sink(pid));
            super::super::deltas::Grant::Lease(id.key)
        }
    }

    /// A new open's access and share access are the table's only until
    /// the model has the open: from then on the model answers the share
    /// check ([MS-FSA] 2.1.5.1.2.2), and the table's copy is gone.
    #[test]
    fn share_modes_are_read_from_the_model_once_it_has_the_open() {
        let mut t = FileTable::default();
        let mut m = Shadow::new();
        let k = key(14, 1);
        // In the table: read and write access, sharing all; in the model
        // (the shadow's `OpenUp`): no data access at all.
        m.open(&mut t, k, |_, _, _| super::super::deltas::Grant::Oplock(level::NONE));
        assert!(!t.check_share(&k, access::FILE_WRITE_DATA, 0, &NoModel), "the table's copy: a conflict");
        assert!(t.check_share(&k, access::FILE_WRITE_DATA, 0, m.model()), "the model's: a stat open");
        assert!(t.get(&k).unwrap().opens.iter().all(|o| o.pending.is_none()), "the copy is dropped");
        assert!(t.check_share(&k, access::FILE_WRITE_DATA, 0, &NoModel), "and not read again");
    }

    #[test]
    fn oplocks_are_decided_and_changed_in_the_model() {
        let mut t = FileTable::default();
        let mut m = Shadow::new();
        let k = key(11, 1);
        let a = m.open(&mut t, k, oplock(level::BATCH));
        assert_eq!(t.oplock_level(m.model(), &k, a), level::BATCH);
        // A second open breaks the batch oplock to level II; it is
        // acknowledged.
        assert!(t.break_for_open(&mut m, &k, false, false, None).wait);
        m.compare(&mut t);
        assert_eq!(t.ack_oplock(&mut m, &k, a, level::II), Ok(level::II));
        m.compare(&mut t);
        let b = m.open(&mut t, k, oplock(level::II));
        assert_eq!(t.oplock_level(m.model(), &k, b), level::II);
        // A write breaks both level II oplocks to none, without waiting.
        t.break_level2(&mut m, &k, b);
        m.compare(&mut t);
        assert_eq!((t.oplock_level(m.model(), &k, a), t.oplock_level(m.model(), &k, b)), (level::NONE, level::NONE));
        // An exclusive oplock on another file whose break is not
        // acknowledged: by the waiter's time-out, and by the model's
        // deadline (the scavenger's way).
        let k2 = key(11, 2);
        let c = m.open(&mut t, k2, oplock(level::EXCLUSIVE));
        assert!(t.break_for_open(&mut m, &k2, false, false, None).wait);
        m.compare(&mut t);
        t.oplock_time_out(&mut m, &k2);
        m.compare(&mut t);
        assert_eq!(t.oplock_level(m.model(), &k2, c), level::NONE);
        let k3 = key(11, 3);
        let d = m.open(&mut t, k3, oplock(level::BATCH));
        assert!(t.break_for_open(&mut m, &k3, true, false, None).wait);
        m.compare(&mut t);
        assert!(t.oplock_time_out_open(&mut m, d));
        assert!(!t.oplock_time_out_open(&mut m, d));
        m.compare(&mut t);
        // Closing drops what the open held.
        m.close(&mut t, k, a);
        assert_eq!(t.open_count(&k), 1);
        m.compare(&mut t);
    }

    /// A restart's restore ([`crate::restart`]) puts every open's oplock and
    /// lease back into a table of its own as the model has them, a break in
    /// progress included (its target and epoch too); once the handles are
    /// reclaimed, the breaks' notices go again, as they were, and their
    /// acknowledgements are taken, the model in step throughout.
    #[test]
    fn a_restore_keeps_breaks_in_progress_and_sends_their_notices_again() {
        use crate::model::Caching;
        use lease_state::{HANDLE_CACHING as H, READ_CACHING as R, WRITE_CACHING as W};
        use protocol::msg::oplock_break::{lease_break_flags, LeaseBreakNotification, OplockBreak};
        let mut t = FileTable::default();
        let mut m = Shadow::new();
        let (kl, ko) = (key(13, 1), key(13, 2));
        let a = m.open(&mut t, kl, lease(1, R | W | H, Some(4)));
        let b = m.open(&mut t, ko, oplock(level::BATCH));
        let other = Some(LeaseId { client_guid: CLIENT, key: [2; 16] });
        assert!(t.break_for_open(&mut m, &kl, false, false, other).wait);
        assert!(t.break_for_open(&mut m, &ko, false, false, None).wait);
        m.compare(&mut t);
        let epoch = t.open_lease_grant(m.model(), &kl, a).unwrap().1.epoch;
        // The restore, from the model alone.
        let mut r = FileTable::default();
        let p = m.model().partition(SET).unwrap();
        for o in p.opens() {
            let (k, pid) = (o.info().file, o.id().0);
            let open = OpenRef::restored(pid, access::FILE_READ_DATA | access::FILE_WRITE_DATA);
            r.add_open(k, ino(k), open);
            match o.caching() {
                Caching::Lease(lk) => r.restore_lease(&k, pid, LeaseId { client_guid: CLIENT, key: lk.0 }, sink(pid)),
                Caching::Oplock { .. } => r.restore_oplock(&k, pid, sink(pid)),
                Caching::None => {}
            }
        }
        m.compare(&mut r);
        assert_eq!(
            r.open_lease_grant(m.model(), &kl, a).map(|(_, g)| (g.state, g.epoch, g.breaking)),
            Some((R | W | H, epoch, true))
        );
        assert!(r.oplock_breaking(m.model(), &ko));
        // The handles are reclaimed on a connection: the notices go again.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let to = |pid| oplock::BreakSink {
            tx: tx.downgrade(),
            session_id: 1,
            file_id: protocol::msg::FileId { persistent: pid, volatile: pid },
            encrypt: None,
            client: None,
        };
        // A notice's body behind an (empty) SMB2 header, as the parsers take it.
        let mut next = || [&[0u8; protocol::header::HEADER_LEN][..], &rx.try_recv().unwrap().body].concat();
        r.set_oplock_sink(m.model(), &kl, a, to(a));
        r.set_oplock_sink(m.model(), &ko, b, to(b));
        assert!(r.resend_break(m.model(), &kl, a));
        let n = LeaseBreakNotification::parse(&next()).unwrap();
        assert_eq!((n.new_epoch, n.flags, n.lease_key), (epoch, lease_break_flags::ACK_REQUIRED, [1; 16]));
        assert_eq!((n.current_lease_state, n.new_lease_state), (R | W | H, R | H));
        assert!(r.resend_break(m.model(), &ko, b));
        let n = OplockBreak::parse(&next()).unwrap();
        assert_eq!((n.oplock_level, n.file_id.persistent), (level::II, b));
        // Their acknowledgements end the breaks, in the model too.
        assert_eq!(r.ack_lease(&mut m, &LeaseId { client_guid: CLIENT, key: [1; 16] }, R | H), Ok(R | H));
        assert_eq!(r.ack_oplock(&mut m, &ko, b, level::II), Ok(level::II));
        m.compare(&mut r);
        assert!(!r.resend_break(m.model(), &kl, a) && !r.resend_break(m.model(), &ko, b));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn leases_are_decided_and_changed_in_the_model() {
        use lease_state::{HANDLE_CACHING as H, READ_CACHING as R, WRITE_CACHING as W};
        let mut t = FileTable::default();
        let mut m = Shadow::new();
        let k = key(12, 1);
        // A version 2 lease with a parent, RWH.
        let a = m.open(&mut t, k, lease(1, R | W | H, Some(4)));
        assert_eq!(t.open_lease(m.model(), &k, a).map(|(_, s)| s), Some(R | W | H));
        // Another key's open breaks W (acknowledged), then an overwrite
        // while that break is in progress needs everything gone.
        let other = Some(LeaseId { client_guid: CLIENT, key: [2; 16] });
        assert!(t.break_for_open(&mut m, &k, false, false, other).wait);
        m.compare(&mut t);
        assert!(t.break_for_open(&mut m, &k, true, false, other).wait);
        m.compare(&mut t);
        // RH acknowledged: the break goes on to R, then (no
        // acknowledgement needed from R) to none.
        let id = LeaseId { client_guid: CLIENT, key: [1; 16] };
        assert_eq!(t.ack_lease(&mut m, &id, R | H), Ok(R | H));
        m.compare(&mut t);
        assert_eq!(t.ack_lease(&mut m, &id, R), Ok(R));
        m.compare(&mut t);
        assert_eq!(t.open_lease(m.model(), &k, a).map(|(_, s)| s), Some(0));
        // A second open with the same key joins the lease; one asking for
        // more upgrades it.
        let k2 = key(12, 2);
        let b = m.open(&mut t, k2, lease(3, R, None));
        let c = m.open(&mut t, k2, lease(3, R | H, None));
        assert_eq!(t.open_lease(m.model(), &k2, b).map(|(_, s)| s), Some(R | H));
        assert_eq!(t.open_lease(m.model(), &k2, c).map(|(_, s)| s), Some(R | H));
        // A write by another key's open breaks R leases to none; nobody
        // acknowledges in time.
        let d = m.open(&mut t, k2, lease(4, R, None));
        t.break_level2(&mut m, &k2, d);
        m.compare(&mut t);
        assert!(t.lease_time_out(&mut m, &LeaseId { client_guid: CLIENT, key: [3; 16] }));
        m.compare(&mut t);
        assert_eq!(t.open_lease(m.model(), &k2, b).map(|(_, s)| s), Some(0));
        // The lease goes with its last open.
        for pid in [b, c] {
            m.close(&mut t, k2, pid);
        }
        m.compare(&mut t);
        let lid =
            crate::model::LeaseId { client: crate::model::ClientGuid(CLIENT), key: crate::model::LeaseKey([3; 16]) };
        assert!(m.model().partition(SET).unwrap().lease(lid).is_none());
        assert_eq!(t.lease_file(m.model(), &LeaseId { client_guid: CLIENT, key: [3; 16] }), None);
    }

    /// The table keeps no copy of an oplock level or a lease's state: what
    /// the model has is what its decisions see. Changed in the model alone
    /// (as a restart's replay, a partner's takeover or the scavenger may),
    /// a level and a lease state are what the next grant, break and
    /// acknowledgement go by.
    #[test]
    fn breaks_see_oplocks_and_leases_as_the_model_has_them() {
        use crate::model::{self, OplockLevel};
        use lease_state::{HANDLE_CACHING as H, READ_CACHING as R, WRITE_CACHING as W};
        let mut t = FileTable::default();
        let mut m = Shadow::new();
        let (kl, ko) = (key(15, 1), key(15, 2));
        let a = m.open(&mut t, kl, lease(1, R | W | H, Some(2)));
        let b = m.open(&mut t, ko, oplock(level::BATCH));
        let id = LeaseId { client_guid: CLIENT, key: [1; 16] };
        // The model alone takes W and H from the lease, and the batch
        // oplock: the table sees it at once.
        m.change(Delta::LeaseChanged { set: SET, lease: id.model(), state: R, epoch: 3 });
        m.change(Delta::OplockSet { open: model::PersistentFileId(b), level: OplockLevel::None });
        assert_eq!(t.open_lease_grant(m.model(), &kl, a).map(|(_, g)| (g.state, g.epoch)), Some((R, 3)));
        assert_eq!(t.oplock_level(m.model(), &ko, b), level::NONE);
        // So another key's open has nothing to wait for (an RWH lease
        // would be broken, and waited for), and nothing to break...
        let other = Some(LeaseId { client_guid: CLIENT, key: [2; 16] });
        assert!(!t.break_for_open(&mut m, &kl, false, false, other).wait);
        assert!(!t.break_for_open(&mut m, &ko, false, false, None).wait);
        assert!(!t.oplock_breaking(m.model(), &kl) && !t.oplock_breaking(m.model(), &ko));
        // ...an acknowledgement has no break to end...
        assert_eq!(t.ack_oplock(&mut m, &ko, b, level::II), Err(protocol::NtStatus::INVALID_OPLOCK_PROTOCOL));
        assert_eq!(t.ack_lease(&mut m, &id, R), Err(protocol::NtStatus::UNSUCCESSFUL));
        // ...and a second open of the file may cache writes beside it no
        // more than beside any reader.
        let c = m.open(&mut t, ko, oplock(level::BATCH));
        assert_eq!(t.oplock_level(m.model(), &ko, c), level::II);
        // A break the model starts is the one the table's acknowledgement
        // ends, under the model's epoch.
        let deadline = CachingLog::deadline();
        let breaking = Delta::LeaseBreaking { set: SET, lease: id.model(), to: 0, required: 0, epoch: 4, deadline };
        m.change(Delta::LeaseChanged { set: SET, lease: id.model(), state: R | H, epoch: 3 });
        m.change(breaking);
        assert!(t.oplock_breaking(m.model(), &kl));
        assert_eq!(t.ack_lease(&mut m, &id, 0), Ok(0));
        assert_eq!(
            t.open_lease_grant(m.model(), &kl, a).map(|(_, g)| (g.state, g.epoch, g.breaking)),
            Some((0, 4, false))
        );
        m.compare(&mut t);
    }

    /// A new open's oplock is the table's only until its `OpenUp` reaches
    /// the model: a break meanwhile changes that copy (its delta waits for
    /// the open), the table's decisions read it, and once the model has the
    /// open the copy is dropped and the model's break is the one acknowledged.
    #[test]
    fn a_new_opens_oplock_is_the_tables_until_the_model_has_the_open() {
        let mut t = FileTable::default();
        let mut m = Shadow::new();
        let k = key(16, 1);
        let pid = m.next_id();
        t.add_open(k, ino(k), OpenRef::new(pid, access::FILE_READ_DATA, 7));
        let g = oplock(level::BATCH)(&mut t, &mut m, pid);
        assert!(t.break_for_open(&mut m, &k, false, false, None).wait);
        assert_eq!(m.r.stuck(), (0, 1), "the break waits for the open");
        assert!(t.oplock_breaking(m.model(), &k), "the table's copy has it");
        assert!(t.break_for_open(&mut m, &k, false, false, None).wait, "a second open waits for the same break");
        m.up(pid, k, g);
        m.compare(&mut t);
        assert!(t.get(&k).unwrap().opens[0].pending_oplock.is_some());
        assert!(t.check_share(&k, access::FILE_READ_DATA, 7, m.model()));
        assert!(t.get(&k).unwrap().opens[0].pending_oplock.is_none(), "dropped once the model has the open");
        assert!(t.oplock_breaking(m.model(), &k), "the model's break");
        assert_eq!(t.ack_oplock(&mut m, &k, pid, level::II), Ok(level::II));
        m.compare(&mut t);
        assert_eq!(t.oplock_level(m.model(), &k, pid), level::II);
    }

    /// A lease ends once no open uses it, in the table or the model: when
    /// its last open leaves the table before the model (a CLOSE's
    /// `OpenDown` comes at its point 3), the lease stays in the model till
    /// then, and an open that joins it meanwhile keeps it.
    #[test]
    fn a_lease_ends_when_neither_the_table_nor_the_model_has_an_open_of_it() {
        use lease_state::{HANDLE_CACHING as H, READ_CACHING as R};
        let mut t = FileTable::default();
        let mut m = Shadow::new();
        let k = key(17, 1);
        let lid =
            crate::model::LeaseId { client: crate::model::ClientGuid(CLIENT), key: crate::model::LeaseKey([5; 16]) };
        let has = |m: &Shadow| m.model().partition(SET).unwrap().lease(lid).is_some();
        let a = m.open(&mut t, k, lease(5, R | H, None));
        assert!(t.remove_open(&mut m, &k, a));
        assert!(has(&m), "the model still has the open");
        // A new open with the key joins the lease meanwhile.
        let b = m.open(&mut t, k, lease(5, R | H, None));
        m.r.apply_request(&[Delta::OpenDown { open: PersistentFileId(a) }]);
        t.end_leases(&mut m, &[lid]);
        assert!(has(&m), "its new open keeps it");
        m.compare(&mut t);
        m.close(&mut t, k, b);
        assert!(!has(&m));
        // An open the model never had: its lease ends with it at once.
        let pid = m.next_id();
        t.add_open(k, ino(k), OpenRef::new(pid, access::FILE_READ_DATA, 7));
        lease(5, R, None)(&mut t, &mut m, pid);
        assert!(has(&m));
        t.remove_open(&mut m, &k, pid);
        assert!(!has(&m));
        m.compare(&mut t);
    }
}
