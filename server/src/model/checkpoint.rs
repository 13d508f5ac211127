//! Checkpoints: the whole model, or one partition, as versioned and checksummed bytes
//! (the README's "State checkpoints" section has the layout).
//!
//! A checkpoint of one set is a checkpoint with one partition, so one decoder reads
//! both. Decoding checks the checksum first, then every value, then the partition's
//! invariants: bytes that decode always make a consistent model.

use std::collections::BTreeMap;

use ids::SetId;

use super::codec::{self, DecodeError, Reader, Writer};
use super::ids::IdAlloc;
use super::{Model, Partition};

/// The first bytes of every checkpoint.
pub const MAGIC: [u8; 8] = *b"DUETSTAT";
/// The checkpoint format's version.
pub const VERSION: u16 = 1;
/// magic, version, reserved, body length.
const HEADER_LEN: usize = 8 + 2 + 2 + 4;

/// Why a checkpoint could not be restored into a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the checkpoint holds {found:?}, not just {expected}")]
    WrongSet { expected: SetId, found: Vec<SetId> },
    #[error("{0} is already in the model")]
    SetPresent(SetId),
}

// Format: Partition { set:u16 | generation:u32 | counter:u32 | sessions:u32 | SessionRecord* |
//   files:u32 | FileRecord* | leases:u32 | LeaseRecord* | opens:u32 | OpenRecord* }
// (each table in ascending key order)
fn put_partition(w: &mut Writer<'_>, p: &Partition) {
    w.u16(p.ids.set().0);
    w.u32(p.ids.generation());
    w.u32(p.ids.counter());
    w.count(p.sessions.len());
    for s in p.sessions.values() {
        codec::put_session(w, s);
    }
    w.count(p.files.len());
    for f in p.files.values() {
        codec::put_file(w, f);
    }
    w.count(p.leases.len());
    for l in p.leases.values() {
        codec::put_lease(w, l);
    }
    w.count(p.opens.len());
    for o in p.opens.values() {
        codec::put_open(w, o);
    }
}

fn get_partition(r: &mut Reader<'_>) -> Result<Partition, DecodeError> {
    let set = SetId(r.u16()?);
    let generation = r.u32()?;
    let counter = r.u32()?;
    let ids = IdAlloc::from_parts(set, generation, counter).ok_or(DecodeError::BadValue {
        what: "partition allocator",
        value: (u64::from(set.0) << 32) | u64::from(generation),
    })?;
    let mut p = Partition::new(ids);
    for _ in 0..r.count()? {
        let s = codec::get_session(r)?;
        if p.sessions.insert(s.info.id, s).is_some() {
            return Err(DecodeError::Duplicate("session"));
        }
    }
    for _ in 0..r.count()? {
        let f = codec::get_file(r)?;
        if p.files.insert(f.uid, f).is_some() {
            return Err(DecodeError::Duplicate("file"));
        }
    }
    for _ in 0..r.count()? {
        let l = codec::get_lease(r)?;
        if p.leases.insert(l.id, l).is_some() {
            return Err(DecodeError::Duplicate("lease"));
        }
    }
    for _ in 0..r.count()? {
        let o = codec::get_open(r)?;
        let id = o.info.persistent;
        // The file's open list is derived; an open of no file is caught below.
        if let Some(f) = p.files.get_mut(&o.info.file) {
            f.opens.insert(id);
        }
        if p.opens.insert(id, o).is_some() {
            return Err(DecodeError::Duplicate("open"));
        }
    }
    p.index_attached();
    p.check_invariants().map_err(DecodeError::Inconsistent)?;
    Ok(p)
}

// Format: Checkpoint { magic:[u8;8] "DUETSTAT" | version:u16 (1) | _reserved:u16 |
//   body_len:u32 | body[body_len] | crc32:u32 }
// Format: body { partitions:u16 | Partition* } (ascending set order)
// (crc32 of every byte before it)
fn encode<'a>(parts: impl ExactSizeIterator<Item = &'a Partition>) -> Vec<u8> {
    let mut body = Vec::new();
    let mut w = Writer(&mut body);
    w.u16(u16::try_from(parts.len()).unwrap_or(u16::MAX));
    for p in parts {
        put_partition(&mut w, p);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 4);
    let mut w = Writer(&mut out);
    w.0.extend_from_slice(&MAGIC);
    w.u16(VERSION);
    w.u16(0);
    w.count(body.len());
    w.0.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Result<BTreeMap<SetId, Partition>, DecodeError> {
    let mut r = Reader::new(bytes);
    if r.take(8)? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = r.u16()?;
    if version != VERSION {
        return Err(DecodeError::Version(version.into()));
    }
    let reserved = r.u16()?;
    if reserved != 0 {
        return Err(DecodeError::BadValue { what: "reserved", value: reserved.into() });
    }
    let len = r.u32()? as usize;
    let body = r.take(len)?;
    let crc = r.u32()?;
    r.finish()?;
    if crc32fast::hash(&bytes[..HEADER_LEN + len]) != crc {
        return Err(DecodeError::Checksum);
    }
    let mut r = Reader::new(body);
    let mut sets = BTreeMap::new();
    for _ in 0..r.u16()? {
        let p = get_partition(&mut r)?;
        if sets.insert(p.set(), p).is_some() {
            return Err(DecodeError::Duplicate("partition"));
        }
    }
    r.finish()?;
    Ok(sets)
}

impl Model {
    /// A checkpoint of the whole model.
    pub fn checkpoint(&self) -> Vec<u8> {
        encode(self.sets.values())
    }

    /// A checkpoint of one partition; `None` when the model has no such set.
    pub fn checkpoint_set(&self, set: SetId) -> Option<Vec<u8>> {
        self.sets.get(&set).map(|p| encode(std::iter::once(p)))
    }

    /// The model a checkpoint (of the whole model or of some sets) holds. The caller
    /// then applies the journaled deltas that came after it, and a
    /// [`crate::model::Delta::NewGeneration`] for every set it restored.
    pub fn restore(bytes: &[u8]) -> Result<Model, DecodeError> {
        Ok(Model { sets: decode(bytes)? })
    }

    /// Adds the partition that a checkpoint of `set` holds (taking a set over from the
    /// partner, or restoring one's own). The model must not have the set yet.
    pub fn restore_set(&mut self, set: SetId, bytes: &[u8]) -> Result<(), RestoreError> {
        if self.sets.contains_key(&set) {
            return Err(RestoreError::SetPresent(set));
        }
        let mut sets = decode(bytes)?;
        match sets.remove(&set) {
            Some(p) if sets.is_empty() => {
                self.sets.insert(set, p);
                Ok(())
            }
            p => {
                let mut found: Vec<SetId> = sets.into_keys().collect();
                found.extend(p.map(|p| p.set()));
                found.sort();
                Err(RestoreError::WrongSet { expected: set, found })
            }
        }
    }
}
