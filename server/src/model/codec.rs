//! The byte encoding of deltas and of the records a checkpoint holds.
//!
//! All integers are little-endian. Building blocks:
//!
//! ```text
//! bool     = u8, 0 or 1
//! bytes    = { len:u32 | data[len] }
//! str      = bytes, UTF-8
//! opt<T>   = { tag:u8 (0 none, 1 some) | T when some }
//! guid     = [u8;16]
//! ```
//!
//! Decoding never panics and never allocates more than the input holds: a length or a
//! count that runs past the end is [`DecodeError::Truncated`]. Every value has exactly
//! one encoding (unknown tags, flag bits and values are errors), so that decoding and
//! encoding again gives back the same bytes.

use ids::SetId;

use super::file::{ByteLock, FileRecord};
use super::ids::{
    AppInstanceId, ClientGuid, CreateGuid, FileUid, LeaseKey, PersistentFileId, SessionId, Timestamp, TreeId,
    VolatileFileId,
};
use super::lease::{LeaseBreak, LeaseId, LeaseRecord, LeaseVersion};
use super::open::{Caching, Durability, LockSequences, NewOpen, OpenInfo, OpenRecord, OplockBreak, OplockLevel};
use super::session::{Owner, SessionInfo, SessionKeys, SessionRecord, TreeInfo};
use super::Delta;

/// The version of the delta encoding (the first byte of every encoded delta).
pub const DELTA_VERSION: u8 = 1;

/// Why bytes are not a delta or a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated")]
    Truncated,
    #[error("{0} bytes left over")]
    Trailing(usize),
    #[error("not a state checkpoint (bad magic)")]
    BadMagic,
    #[error("unknown format version {0}")]
    Version(u32),
    #[error("checksum mismatch")]
    Checksum,
    #[error("bad {what}: {value:#x}")]
    BadValue { what: &'static str, value: u64 },
    #[error("a string is not UTF-8")]
    Utf8,
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    #[error("inconsistent state: {0}")]
    Inconsistent(String),
}

fn bad(what: &'static str, value: impl Into<u64>) -> DecodeError {
    DecodeError::BadValue { what, value: value.into() }
}

/// Appends encoded values to a buffer.
pub(super) struct Writer<'a>(pub(super) &'a mut Vec<u8>);

impl Writer<'_> {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub(super) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    pub(super) fn guid(&mut self, v: &[u8; 16]) {
        self.0.extend_from_slice(v);
    }

    /// A count of items that follow (as a `u32`).
    pub(super) fn count(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    pub(super) fn bytes(&mut self, v: &[u8]) {
        self.count(v.len());
        self.0.extend_from_slice(v);
    }

    pub(super) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub(super) fn opt<T>(&mut self, v: &Option<T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                f(self, x);
            }
        }
    }
}

/// Reads encoded values from a buffer.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(super) fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    pub(super) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(bad("bool", v)),
        }
    }

    pub(super) fn guid(&mut self) -> Result<[u8; 16], DecodeError> {
        self.array()
    }

    /// A count of items that follow. Each item takes at least one byte, so a count
    /// larger than what is left is refused before any item is read.
    pub(super) fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }

    pub(super) fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    pub(super) fn str(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?).map_err(|_| DecodeError::Utf8)
    }

    pub(super) fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            v => Err(bad("option tag", v)),
        }
    }

    /// Nothing may be left over.
    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

// Format: Owner { user:str | domain:str }
fn put_owner(w: &mut Writer<'_>, o: &Owner) {
    w.str(&o.user);
    w.str(&o.domain);
}

fn get_owner(r: &mut Reader<'_>) -> Result<Owner, DecodeError> {
    Ok(Owner { user: r.str()?, domain: r.str()? })
}

/// SessionInfo flag bits.
const S_GUEST: u8 = 0x01;
const S_ANONYMOUS: u8 = 0x02;
const S_SIGNING_REQUIRED: u8 = 0x04;
const S_ENCRYPT_DATA: u8 = 0x08;

// Format: SessionInfo { id:u64 | owner:Owner | flags:u8 (0x1 guest, 0x2 anonymous,
//   0x4 signing required, 0x8 encrypt data) | client_guid:guid | dialect:u16 |
//   signing_algorithm:u16 | cipher:u16 | session_key:bytes | signing_key:bytes |
//   encryption_key:bytes | decryption_key:bytes | application_key:bytes |
//   created_at:u64 | expires_at:opt<u64> }
pub(super) fn put_session_info(w: &mut Writer<'_>, s: &SessionInfo) {
    w.u64(s.id.0);
    put_owner(w, &s.owner);
    let flag = |on: bool, bit: u8| if on { bit } else { 0 };
    w.u8(flag(s.guest, S_GUEST)
        | flag(s.anonymous, S_ANONYMOUS)
        | flag(s.signing_required, S_SIGNING_REQUIRED)
        | flag(s.encrypt_data, S_ENCRYPT_DATA));
    w.guid(&s.client_guid.0);
    w.u16(s.dialect);
    w.u16(s.signing_algorithm);
    w.u16(s.cipher);
    for k in [&s.keys.session_key, &s.keys.signing, &s.keys.encryption, &s.keys.decryption, &s.keys.application] {
        w.bytes(k);
    }
    w.u64(s.created_at.0);
    w.opt(&s.expires_at, |w, t| w.u64(t.0));
}

pub(super) fn get_session_info(r: &mut Reader<'_>) -> Result<SessionInfo, DecodeError> {
    let id = SessionId(r.u64()?);
    let owner = get_owner(r)?;
    let flags = r.u8()?;
    if flags & !(S_GUEST | S_ANONYMOUS | S_SIGNING_REQUIRED | S_ENCRYPT_DATA) != 0 {
        return Err(bad("session flags", flags));
    }
    Ok(SessionInfo {
        id,
        owner,
        guest: flags & S_GUEST != 0,
        anonymous: flags & S_ANONYMOUS != 0,
        signing_required: flags & S_SIGNING_REQUIRED != 0,
        encrypt_data: flags & S_ENCRYPT_DATA != 0,
        client_guid: ClientGuid(r.guid()?),
        dialect: r.u16()?,
        signing_algorithm: r.u16()?,
        cipher: r.u16()?,
        keys: SessionKeys {
            session_key: r.bytes()?,
            signing: r.bytes()?,
            encryption: r.bytes()?,
            decryption: r.bytes()?,
            application: r.bytes()?,
        },
        created_at: Timestamp(r.u64()?),
        expires_at: r.opt(|r| r.u64().map(Timestamp))?,
    })
}

/// TreeInfo flag bits.
const T_ENCRYPT: u8 = 0x01;
const T_READ_ONLY: u8 = 0x02;

// Format: TreeInfo { id:u32 | share:str | flags:u8 (0x1 encrypt, 0x2 read-only) |
//   maximal_access:u32 }
pub(super) fn put_tree(w: &mut Writer<'_>, t: &TreeInfo) {
    w.u32(t.id.0);
    w.str(&t.share);
    w.u8(if t.encrypt { T_ENCRYPT } else { 0 } | if t.read_only { T_READ_ONLY } else { 0 });
    w.u32(t.maximal_access);
}

pub(super) fn get_tree(r: &mut Reader<'_>) -> Result<TreeInfo, DecodeError> {
    let id = TreeId(r.u32()?);
    let share = r.str()?;
    let flags = r.u8()?;
    if flags & !(T_ENCRYPT | T_READ_ONLY) != 0 {
        return Err(bad("tree flags", flags));
    }
    Ok(TreeInfo {
        id,
        share,
        encrypt: flags & T_ENCRYPT != 0,
        read_only: flags & T_READ_ONLY != 0,
        maximal_access: r.u32()?,
    })
}

// Format: SessionRecord { info:SessionInfo | last_tree:u32 | trees:u32 | TreeInfo* }
// (trees in ascending id order)
pub(super) fn put_session(w: &mut Writer<'_>, s: &SessionRecord) {
    put_session_info(w, &s.info);
    w.u32(s.last_tree);
    w.count(s.trees.len());
    for t in s.trees.values() {
        put_tree(w, t);
    }
}

pub(super) fn get_session(r: &mut Reader<'_>) -> Result<SessionRecord, DecodeError> {
    let mut s = SessionRecord::new(get_session_info(r)?);
    s.last_tree = r.u32()?;
    for _ in 0..r.count()? {
        let t = get_tree(r)?;
        if s.trees.insert(t.id, t).is_some() {
            return Err(DecodeError::Duplicate("tree"));
        }
    }
    Ok(s)
}

// Format: Durability { kind:u8 (0 none, 1 v1, 2 v2, 3 persistent) | timeout_ms:u32 }
// (timeout_ms is 0 for none)
fn put_durability(w: &mut Writer<'_>, d: Durability) {
    let (kind, t) = match d {
        Durability::None => (0, 0),
        Durability::V1 { timeout_ms } => (1, timeout_ms),
        Durability::V2 { timeout_ms } => (2, timeout_ms),
        Durability::Persistent { timeout_ms } => (3, timeout_ms),
    };
    w.u8(kind);
    w.u32(t);
}

fn get_durability(r: &mut Reader<'_>) -> Result<Durability, DecodeError> {
    let kind = r.u8()?;
    let timeout_ms = r.u32()?;
    Ok(match kind {
        0 if timeout_ms == 0 => Durability::None,
        1 => Durability::V1 { timeout_ms },
        2 => Durability::V2 { timeout_ms },
        3 => Durability::Persistent { timeout_ms },
        _ => return Err(bad("durability", kind)),
    })
}

fn get_oplock_level(r: &mut Reader<'_>) -> Result<OplockLevel, DecodeError> {
    let v = r.u8()?;
    OplockLevel::from_u8(v).ok_or(bad("oplock level", v))
}

// Format: Caching { kind:u8 (0 none, 1 oplock, 2 lease) | when oplock: level:u8 |
//   breaking:opt<{ to:u8 | deadline:u64 }> | when lease: key:guid }
// (oplock levels by their wire values: 0x01 II, 0x08 exclusive, 0x09 batch; 0x00 none)
fn put_caching(w: &mut Writer<'_>, c: &Caching) {
    match c {
        Caching::None => w.u8(0),
        Caching::Oplock { level, breaking } => {
            w.u8(1);
            w.u8(*level as u8);
            w.opt(breaking, |w, b| {
                w.u8(b.to as u8);
                w.u64(b.deadline.0);
            });
        }
        Caching::Lease(key) => {
            w.u8(2);
            w.guid(&key.0);
        }
    }
}

fn get_caching(r: &mut Reader<'_>) -> Result<Caching, DecodeError> {
    Ok(match r.u8()? {
        0 => Caching::None,
        1 => Caching::Oplock {
            level: get_oplock_level(r)?,
            breaking: r.opt(|r| Ok(OplockBreak { to: get_oplock_level(r)?, deadline: Timestamp(r.u64()?) }))?,
        },
        2 => Caching::Lease(LeaseKey(r.guid()?)),
        v => return Err(bad("caching kind", v)),
    })
}

/// OpenInfo flag bits.
const O_REPLAY_ELIGIBLE: u8 = 0x01;
const O_IS_DIR: u8 = 0x02;
/// OpenInfo flag bits 2..3: the CreateAction (0 to 3) XOR 1, so that 0 is FILE_OPENED,
/// what an open of the format before these bits restores as.
const O_ACTION_SHIFT: u8 = 2;
const O_ACTION: u8 = 0x0c;

// Format: OpenInfo { persistent:u64 | file:u128 | share:str | create_guid:opt<guid> |
//   client_guid:guid | app_instance_id:opt<guid> |
//   app_instance_version:opt<{ high:u64 | low:u64 }> | owner:Owner |
//   durability:Durability | flags:u8 (0x1 replay eligible, 0x2 directory,
//   0xc CreateAction XOR 1 << 2) |
//   granted_access:u32 | share_access:u32 | create_options:u32 }
fn put_open_info(w: &mut Writer<'_>, o: &OpenInfo) {
    w.u64(o.persistent.0);
    w.u128(o.file.0);
    w.str(&o.share);
    w.opt(&o.create_guid, |w, g| w.guid(&g.0));
    w.guid(&o.client_guid.0);
    w.opt(&o.app_instance_id, |w, g| w.guid(&g.0));
    w.opt(&o.app_instance_version, |w, (high, low)| {
        w.u64(*high);
        w.u64(*low);
    });
    put_owner(w, &o.owner);
    put_durability(w, o.durability);
    let action = ((o.create_action as u8 & 0x3) ^ 1) << O_ACTION_SHIFT;
    w.u8(if o.replay_eligible { O_REPLAY_ELIGIBLE } else { 0 } | if o.is_dir { O_IS_DIR } else { 0 } | action);
    w.u32(o.granted_access);
    w.u32(o.share_access);
    w.u32(o.create_options);
}

fn get_open_info(r: &mut Reader<'_>) -> Result<OpenInfo, DecodeError> {
    let persistent = PersistentFileId(r.u64()?);
    let file = FileUid(r.u128()?);
    let share = r.str()?;
    let create_guid = r.opt(|r| r.guid().map(CreateGuid))?;
    let client_guid = ClientGuid(r.guid()?);
    let app_instance_id = r.opt(|r| r.guid().map(AppInstanceId))?;
    let app_instance_version = r.opt(|r| Ok((r.u64()?, r.u64()?)))?;
    let owner = get_owner(r)?;
    let durability = get_durability(r)?;
    let flags = r.u8()?;
    if flags & !(O_REPLAY_ELIGIBLE | O_IS_DIR | O_ACTION) != 0 {
        return Err(bad("open flags", flags));
    }
    Ok(OpenInfo {
        persistent,
        file,
        share,
        create_guid,
        client_guid,
        app_instance_id,
        app_instance_version,
        owner,
        durability,
        replay_eligible: flags & O_REPLAY_ELIGIBLE != 0,
        is_dir: flags & O_IS_DIR != 0,
        create_action: u32::from(((flags & O_ACTION) >> O_ACTION_SHIFT) ^ 1),
        granted_access: r.u32()?,
        share_access: r.u32()?,
        create_options: r.u32()?,
    })
}

// Format: NewOpen { info:OpenInfo | path:str | session:u64 | tree:u32 | volatile:u64 |
//   caching:Caching | channel_sequence:u16 | delete_on_close:bool }
fn put_new_open(w: &mut Writer<'_>, n: &NewOpen) {
    put_open_info(w, &n.info);
    w.str(&n.path);
    w.u64(n.session.0);
    w.u32(n.tree.0);
    w.u64(n.volatile.0);
    put_caching(w, &n.caching);
    w.u16(n.channel_sequence);
    w.bool(n.delete_on_close);
}

fn get_new_open(r: &mut Reader<'_>) -> Result<NewOpen, DecodeError> {
    Ok(NewOpen {
        info: get_open_info(r)?,
        path: r.str()?,
        session: SessionId(r.u64()?),
        tree: TreeId(r.u32()?),
        volatile: VolatileFileId(r.u64()?),
        caching: get_caching(r)?,
        channel_sequence: r.u16()?,
        delete_on_close: r.bool()?,
    })
}

// Format: LockSequences { valid:u64 (bit i: index i+1 holds a number) |
//   numbers:[u8; popcount(valid)] (in index order) }
fn put_lock_sequences(w: &mut Writer<'_>, s: &LockSequences) {
    let mut valid = 0u64;
    for (i, n) in s.0.iter().enumerate() {
        if n.is_some() {
            valid |= 1 << i;
        }
    }
    w.u64(valid);
    for n in s.0.iter().flatten() {
        w.u8(*n);
    }
}

fn get_lock_sequences(r: &mut Reader<'_>) -> Result<LockSequences, DecodeError> {
    let valid = r.u64()?;
    let mut s = LockSequences::default();
    for (i, slot) in s.0.iter_mut().enumerate() {
        if valid & (1 << i) != 0 {
            *slot = Some(r.u8()?);
        }
    }
    Ok(s)
}

// Format: OpenRecord { info:OpenInfo | path:str | attached:opt<{ session:u64 | tree:u32 }> |
//   volatile:u64 | disconnected_at:opt<u64> | caching:Caching |
//   lock_sequences:LockSequences | channel_sequence:u16 | delete_on_close:bool }
pub(super) fn put_open(w: &mut Writer<'_>, o: &OpenRecord) {
    put_open_info(w, &o.info);
    w.str(&o.path);
    w.opt(&o.attached, |w, (s, t)| {
        w.u64(s.0);
        w.u32(t.0);
    });
    w.u64(o.volatile.0);
    w.opt(&o.disconnected_at, |w, t| w.u64(t.0));
    put_caching(w, &o.caching);
    put_lock_sequences(w, &o.lock_sequences);
    w.u16(o.channel_sequence);
    w.bool(o.delete_on_close);
}

pub(super) fn get_open(r: &mut Reader<'_>) -> Result<OpenRecord, DecodeError> {
    Ok(OpenRecord {
        info: get_open_info(r)?,
        path: r.str()?,
        attached: r.opt(|r| Ok((SessionId(r.u64()?), TreeId(r.u32()?))))?,
        volatile: VolatileFileId(r.u64()?),
        disconnected_at: r.opt(|r| r.u64().map(Timestamp))?,
        caching: get_caching(r)?,
        lock_sequences: get_lock_sequences(r)?,
        channel_sequence: r.u16()?,
        delete_on_close: r.bool()?,
    })
}

// Format: ByteLock { owner:u64 | offset:u64 | length:u64 | exclusive:bool }
// Format: FileRecord { uid:u128 | share:str | path:str | delete_pending:bool |
//   locks:u32 | ByteLock* }
// (a file's opens are not stored: they are the opens that name the file)
pub(super) fn put_file(w: &mut Writer<'_>, f: &FileRecord) {
    w.u128(f.uid.0);
    w.str(&f.share);
    w.str(&f.path);
    w.bool(f.delete_pending);
    w.count(f.locks.len());
    for l in &f.locks {
        w.u64(l.owner.0);
        w.u64(l.offset);
        w.u64(l.length);
        w.bool(l.exclusive);
    }
}

pub(super) fn get_file(r: &mut Reader<'_>) -> Result<FileRecord, DecodeError> {
    let uid = FileUid(r.u128()?);
    let share = r.str()?;
    let path = r.str()?;
    let delete_pending = r.bool()?;
    let mut locks = Vec::new();
    for _ in 0..r.count()? {
        locks.push(ByteLock {
            owner: PersistentFileId(r.u64()?),
            offset: r.u64()?,
            length: r.u64()?,
            exclusive: r.bool()?,
        });
    }
    Ok(FileRecord { uid, share, path, delete_pending, locks, opens: Default::default() })
}

// Format: LeaseId { client:guid | key:guid }
fn put_lease_id(w: &mut Writer<'_>, id: &LeaseId) {
    w.guid(&id.client.0);
    w.guid(&id.key.0);
}

fn get_lease_id(r: &mut Reader<'_>) -> Result<LeaseId, DecodeError> {
    Ok(LeaseId { client: ClientGuid(r.guid()?), key: LeaseKey(r.guid()?) })
}

fn get_lease_version(r: &mut Reader<'_>) -> Result<LeaseVersion, DecodeError> {
    match r.u8()? {
        1 => Ok(LeaseVersion::V1),
        2 => Ok(LeaseVersion::V2),
        v => Err(bad("lease version", v)),
    }
}

// Format: LeaseRecord { id:LeaseId | file:u128 | parent:opt<guid> | version:u8 (1, 2) |
//   state:u32 | epoch:u16 | breaking:opt<{ to:u32 | required:u32 | deadline:u64 }> }
pub(super) fn put_lease(w: &mut Writer<'_>, l: &LeaseRecord) {
    put_lease_id(w, &l.id);
    w.u128(l.file.0);
    w.opt(&l.parent, |w, k| w.guid(&k.0));
    w.u8(l.version as u8);
    w.u32(l.state);
    w.u16(l.epoch);
    w.opt(&l.breaking, |w, b| {
        w.u32(b.to);
        w.u32(b.required);
        w.u64(b.deadline.0);
    });
}

pub(super) fn get_lease(r: &mut Reader<'_>) -> Result<LeaseRecord, DecodeError> {
    Ok(LeaseRecord {
        id: get_lease_id(r)?,
        file: FileUid(r.u128()?),
        parent: r.opt(|r| r.guid().map(LeaseKey))?,
        version: get_lease_version(r)?,
        state: r.u32()?,
        epoch: r.u16()?,
        breaking: r.opt(|r| Ok(LeaseBreak { to: r.u32()?, required: r.u32()?, deadline: Timestamp(r.u64()?) }))?,
    })
}

// Format: Delta { version:u8 (1) | kind:u8 | fields }, the fields by kind:
//   0x01 NewGeneration      { set:u16 }
//   0x02 IdsReserved        { set:u16 | through:u32 }
//   0x03 SessionUp          { SessionInfo }
//   0x04 SessionExpiry      { session:u64 | expires_at:opt<u64> }
//   0x05 SessionDown        { session:u64 }
//   0x06 TreeUp             { session:u64 | TreeInfo }
//   0x07 TreeDown           { session:u64 | tree:u32 }
//   0x08 OpenUp             { NewOpen }
//   0x09 OpenDown           { open:u64 }
//   0x0a OpenDisconnected   { open:u64 | at:u64 }
//   0x0b OpenReconnected    { open:u64 | session:u64 | tree:u32 | volatile:u64 }
//   0x0c OplockSet          { open:u64 | level:u8 }
//   0x0d OplockBreaking     { open:u64 | to:u8 | deadline:u64 }
//   0x0e LeaseGranted       { set:u16 | lease:LeaseId | file:u128 | parent:opt<guid> |
//                             version:u8 | state:u32 | epoch:u16 }
//   0x0f LeaseChanged       { set:u16 | lease:LeaseId | state:u32 | epoch:u16 }
//   0x10 LeaseBreaking      { set:u16 | lease:LeaseId | to:u32 | required:u32 | epoch:u16 |
//                             deadline:u64 }
//   0x11 LeaseAcked         { set:u16 | lease:LeaseId | state:u32 }
//   0x12 LeaseGone          { set:u16 | lease:LeaseId }
//   0x13 LockAdded          { open:u64 | offset:u64 | length:u64 | exclusive:bool }
//   0x14 LockRemoved        { open:u64 | offset:u64 | length:u64 | exclusive:bool }
//   0x15 LockSequenceSet    { open:u64 | index:u8 | number:opt<u8> }
//   0x16 ChannelSequenceSet { open:u64 | sequence:u16 }
//   0x17 DeleteOnCloseSet   { open:u64 | on:bool }
//   0x18 DeletePendingSet   { set:u16 | file:u128 | on:bool }
//   0x19 FileMoved          { set:u16 | file:u128 | path:str }
//   0x1a ReplayIneligible   { open:u64 }
//   0x1b AppendedAt         { open:u64 | offset:u64 }
//   0x1c ClosedAfterWriting { open:u64 | share:str | path:str | file:u128 }
//   0x1d SessionReauthenticated { SessionInfo }
impl Delta {
    /// Appends the delta's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use Delta::*;
        let mut w = Writer(out);
        w.u8(DELTA_VERSION);
        match self {
            NewGeneration { set } => {
                w.u8(0x01);
                w.u16(set.0);
            }
            IdsReserved { set, through } => {
                w.u8(0x02);
                w.u16(set.0);
                w.u32(*through);
            }
            SessionUp(info) => {
                w.u8(0x03);
                put_session_info(&mut w, info);
            }
            SessionExpiry { session, expires_at } => {
                w.u8(0x04);
                w.u64(session.0);
                w.opt(expires_at, |w, t| w.u64(t.0));
            }
            SessionDown { session } => {
                w.u8(0x05);
                w.u64(session.0);
            }
            TreeUp { session, tree } => {
                w.u8(0x06);
                w.u64(session.0);
                put_tree(&mut w, tree);
            }
            TreeDown { session, tree } => {
                w.u8(0x07);
                w.u64(session.0);
                w.u32(tree.0);
            }
            OpenUp(n) => {
                w.u8(0x08);
                put_new_open(&mut w, n);
            }
            OpenDown { open } => {
                w.u8(0x09);
                w.u64(open.0);
            }
            OpenDisconnected { open, at } => {
                w.u8(0x0a);
                w.u64(open.0);
                w.u64(at.0);
            }
            OpenReconnected { open, session, tree, volatile } => {
                w.u8(0x0b);
                w.u64(open.0);
                w.u64(session.0);
                w.u32(tree.0);
                w.u64(volatile.0);
            }
            OplockSet { open, level } => {
                w.u8(0x0c);
                w.u64(open.0);
                w.u8(*level as u8);
            }
            OplockBreaking { open, to, deadline } => {
                w.u8(0x0d);
                w.u64(open.0);
                w.u8(*to as u8);
                w.u64(deadline.0);
            }
            LeaseGranted { set, lease, file, parent, version, state, epoch } => {
                w.u8(0x0e);
                w.u16(set.0);
                put_lease_id(&mut w, lease);
                w.u128(file.0);
                w.opt(parent, |w, k| w.guid(&k.0));
                w.u8(*version as u8);
                w.u32(*state);
                w.u16(*epoch);
            }
            LeaseChanged { set, lease, state, epoch } => {
                w.u8(0x0f);
                w.u16(set.0);
                put_lease_id(&mut w, lease);
                w.u32(*state);
                w.u16(*epoch);
            }
            LeaseBreaking { set, lease, to, required, epoch, deadline } => {
                w.u8(0x10);
                w.u16(set.0);
                put_lease_id(&mut w, lease);
                w.u32(*to);
                w.u32(*required);
                w.u16(*epoch);
                w.u64(deadline.0);
            }
            LeaseAcked { set, lease, state } => {
                w.u8(0x11);
                w.u16(set.0);
                put_lease_id(&mut w, lease);
                w.u32(*state);
            }
            LeaseGone { set, lease } => {
                w.u8(0x12);
                w.u16(set.0);
                put_lease_id(&mut w, lease);
            }
            LockAdded { open, offset, length, exclusive } | LockRemoved { open, offset, length, exclusive } => {
                w.u8(if matches!(self, LockAdded { .. }) { 0x13 } else { 0x14 });
                w.u64(open.0);
                w.u64(*offset);
                w.u64(*length);
                w.bool(*exclusive);
            }
            LockSequenceSet { open, index, number } => {
                w.u8(0x15);
                w.u64(open.0);
                w.u8(*index);
                w.opt(number, |w, n| w.u8(*n));
            }
            ChannelSequenceSet { open, sequence } => {
                w.u8(0x16);
                w.u64(open.0);
                w.u16(*sequence);
            }
            DeleteOnCloseSet { open, on } => {
                w.u8(0x17);
                w.u64(open.0);
                w.bool(*on);
            }
            DeletePendingSet { set, file, on } => {
                w.u8(0x18);
                w.u16(set.0);
                w.u128(file.0);
                w.bool(*on);
            }
            FileMoved { set, file, path } => {
                w.u8(0x19);
                w.u16(set.0);
                w.u128(file.0);
                w.str(path);
            }
            ReplayIneligible { open } => {
                w.u8(0x1a);
                w.u64(open.0);
            }
            AppendedAt { open, offset } => {
                w.u8(0x1b);
                w.u64(open.0);
                w.u64(*offset);
            }
            ClosedAfterWriting { open, share, path, file } => {
                w.u8(0x1c);
                w.u64(open.0);
                w.str(share);
                w.str(path);
                w.u128(file.0);
            }
            SessionReauthenticated(info) => {
                w.u8(0x1d);
                put_session_info(&mut w, info);
            }
        }
    }

    /// The encoding as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// A batch of deltas as point 3 journals them: their encodings one after
    /// another (each is self-delimiting). An empty batch is no bytes.
    pub fn encode_batch(deltas: &[Delta]) -> Vec<u8> {
        let mut v = Vec::new();
        for d in deltas {
            d.encode(&mut v);
        }
        v
    }

    /// Decodes a batch that fills `bytes` exactly ([`Delta::encode_batch`]).
    pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Delta>, DecodeError> {
        let mut r = Reader::new(bytes);
        let mut out = Vec::new();
        while !r.buf.is_empty() {
            out.push(Delta::read(&mut r)?);
        }
        Ok(out)
    }

    /// Decodes one delta that fills `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Delta, DecodeError> {
        let mut r = Reader::new(bytes);
        let d = Delta::read(&mut r)?;
        r.finish()?;
        Ok(d)
    }

    fn read(r: &mut Reader<'_>) -> Result<Delta, DecodeError> {
        use Delta::*;
        let version = r.u8()?;
        if version != DELTA_VERSION {
            return Err(DecodeError::Version(version.into()));
        }
        let set = |r: &mut Reader<'_>| r.u16().map(SetId);
        let open = |r: &mut Reader<'_>| r.u64().map(PersistentFileId);
        Ok(match r.u8()? {
            0x01 => NewGeneration { set: set(r)? },
            0x02 => IdsReserved { set: set(r)?, through: r.u32()? },
            0x03 => SessionUp(Box::new(get_session_info(r)?)),
            0x04 => SessionExpiry { session: SessionId(r.u64()?), expires_at: r.opt(|r| r.u64().map(Timestamp))? },
            0x05 => SessionDown { session: SessionId(r.u64()?) },
            0x06 => TreeUp { session: SessionId(r.u64()?), tree: get_tree(r)? },
            0x07 => TreeDown { session: SessionId(r.u64()?), tree: TreeId(r.u32()?) },
            0x08 => OpenUp(Box::new(get_new_open(r)?)),
            0x09 => OpenDown { open: open(r)? },
            0x0a => OpenDisconnected { open: open(r)?, at: Timestamp(r.u64()?) },
            0x0b => OpenReconnected {
                open: open(r)?,
                session: SessionId(r.u64()?),
                tree: TreeId(r.u32()?),
                volatile: VolatileFileId(r.u64()?),
            },
            0x0c => OplockSet { open: open(r)?, level: get_oplock_level(r)? },
            0x0d => OplockBreaking { open: open(r)?, to: get_oplock_level(r)?, deadline: Timestamp(r.u64()?) },
            0x0e => LeaseGranted {
                set: set(r)?,
                lease: get_lease_id(r)?,
                file: FileUid(r.u128()?),
                parent: r.opt(|r| r.guid().map(LeaseKey))?,
                version: get_lease_version(r)?,
                state: r.u32()?,
                epoch: r.u16()?,
            },
            0x0f => LeaseChanged { set: set(r)?, lease: get_lease_id(r)?, state: r.u32()?, epoch: r.u16()? },
            0x10 => LeaseBreaking {
                set: set(r)?,
                lease: get_lease_id(r)?,
                to: r.u32()?,
                required: r.u32()?,
                epoch: r.u16()?,
                deadline: Timestamp(r.u64()?),
            },
            0x11 => LeaseAcked { set: set(r)?, lease: get_lease_id(r)?, state: r.u32()? },
            0x12 => LeaseGone { set: set(r)?, lease: get_lease_id(r)? },
            0x13 => LockAdded { open: open(r)?, offset: r.u64()?, length: r.u64()?, exclusive: r.bool()? },
            0x14 => LockRemoved { open: open(r)?, offset: r.u64()?, length: r.u64()?, exclusive: r.bool()? },
            0x15 => LockSequenceSet { open: open(r)?, index: r.u8()?, number: r.opt(|r| r.u8())? },
            0x16 => ChannelSequenceSet { open: open(r)?, sequence: r.u16()? },
            0x17 => DeleteOnCloseSet { open: open(r)?, on: r.bool()? },
            0x18 => DeletePendingSet { set: set(r)?, file: FileUid(r.u128()?), on: r.bool()? },
            0x19 => FileMoved { set: set(r)?, file: FileUid(r.u128()?), path: r.str()? },
            0x1a => ReplayIneligible { open: open(r)? },
            0x1b => AppendedAt { open: open(r)?, offset: r.u64()? },
            0x1c => ClosedAfterWriting { open: open(r)?, share: r.str()?, path: r.str()?, file: FileUid(r.u128()?) },
            0x1d => SessionReauthenticated(Box::new(get_session_info(r)?)),
            kind => return Err(bad("delta kind", kind)),
        })
    }
}
