//! Ownership records: who owns which share set, at which epoch.
//!
//! A claim is a file on shared storage, one per `(set, epoch)`, created exclusively: of two
//! nodes racing for epoch N + 1 exactly one creates the file, and that one owns the set.
//! The highest epoch wins. This module holds the pure logic (record encoding, file names,
//! choosing the newest record from a directory listing); [`fs`] holds the only I/O of the
//! crate, the real file operations on a directory.
//!
//! ```text
//! // Format (big-endian): { magic [u8; 8] = "DUETOWN1" | cluster u64 | set u16 | owner u16
//! //   | epoch u64 | crc32 u32 }                                              (32 bytes)
//! // File name: "claim-<set as 5 digits>-<epoch as 20 digits>"
//! ```
//!
//! The name carries the set and epoch so that a listing alone orders the claims; the body
//! says who created it. A body that does not decode, or disagrees with its name, still
//! counts for the epoch (nobody binds below it) but names no owner.

pub mod fs;

use std::collections::BTreeMap;

use crate::types::{ClusterId, Epoch, NodeId, SetId};

/// The magic at the start of every record.
pub const RECORD_MAGIC: [u8; 8] = *b"DUETOWN1";
/// The encoded length of a record.
pub const RECORD_LEN: usize = 32;
const PREFIX: &str = "claim-";

/// One claim: `owner` owns `set` from `epoch` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    /// The pair the claim belongs to.
    pub cluster: ClusterId,
    /// The set claimed (named by its home node).
    pub set: SetId,
    /// The node that created the claim.
    pub owner: NodeId,
    /// The claim's epoch.
    pub epoch: Epoch,
}

/// A record that does not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Wrong length.
    #[error("record is {0} bytes, not 32")]
    BadLength(usize),
    /// Wrong magic.
    #[error("bad record magic")]
    BadMagic,
    /// Checksum mismatch (a torn or corrupt write).
    #[error("record crc32 mismatch")]
    BadChecksum,
}

impl Record {
    /// The record's bytes.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[..8].copy_from_slice(&RECORD_MAGIC);
        b[8..16].copy_from_slice(&self.cluster.0.to_be_bytes());
        b[16..18].copy_from_slice(&self.set.0.to_be_bytes());
        b[18..20].copy_from_slice(&self.owner.0.to_be_bytes());
        b[20..28].copy_from_slice(&self.epoch.0.to_be_bytes());
        let crc = crc32fast::hash(&b[..28]);
        b[28..].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Reads a record from exactly [`RECORD_LEN`] bytes.
    pub fn decode(b: &[u8]) -> Result<Record, RecordError> {
        if b.len() != RECORD_LEN {
            return Err(RecordError::BadLength(b.len()));
        }
        if b[..8] != RECORD_MAGIC {
            return Err(RecordError::BadMagic);
        }
        let crc = u32::from_be_bytes([b[28], b[29], b[30], b[31]]);
        if crc32fast::hash(&b[..28]) != crc {
            return Err(RecordError::BadChecksum);
        }
        let u64_at = |i: usize| {
            let mut a = [0; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        Ok(Record {
            cluster: ClusterId(u64_at(8)),
            set: SetId(u16::from_be_bytes([b[16], b[17]])),
            owner: NodeId(u16::from_be_bytes([b[18], b[19]])),
            epoch: Epoch(u64_at(20)),
        })
    }

    /// The file name of this claim.
    pub fn file_name(&self) -> String {
        file_name(self.set, self.epoch)
    }
}

/// The file name of the claim on `set` at `epoch`.
pub fn file_name(set: SetId, epoch: Epoch) -> String {
    format!("{PREFIX}{:05}-{:020}", set.0, epoch.0)
}

/// The set and epoch a claim file name stands for, or `None` for any other file.
pub fn parse_file_name(name: &str) -> Option<(SetId, Epoch)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (s, e) = rest.split_once('-')?;
    if s.len() != 5 || e.len() != 20 || !s.bytes().chain(e.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((SetId(s.parse().ok()?), Epoch(e.parse().ok()?)))
}

/// The newest claim on one set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Newest {
    /// The highest epoch claimed.
    pub epoch: Epoch,
    /// Who claimed it, if its record is readable and agrees with its name.
    pub owner: Option<NodeId>,
}

/// What a read of the ownership directory found: the newest claim of each set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ownership {
    sets: BTreeMap<SetId, Newest>,
}

impl Ownership {
    /// An empty view: no set has ever been claimed.
    pub fn new() -> Ownership {
        Ownership::default()
    }

    /// Chooses the winners from a directory listing of `(file name, contents)`. Files that
    /// are not claims, or claims of another cluster, are ignored. Contents are `None` when
    /// the caller could not read them.
    pub fn from_listing<'a, I>(cluster: ClusterId, entries: I) -> Ownership
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let mut o = Ownership::new();
        for (name, body) in entries {
            let Some((set, epoch)) = parse_file_name(name) else { continue };
            let owner = match body.map(Record::decode) {
                Some(Ok(r)) if r.set == set && r.epoch == epoch => {
                    if r.cluster != cluster {
                        continue;
                    }
                    Some(r.owner)
                }
                _ => None,
            };
            o.insert(set, Newest { epoch, owner });
        }
        o
    }

    /// Builds a view from whole records (the simulated storage uses this).
    pub fn from_records<'a, I: IntoIterator<Item = &'a Record>>(records: I) -> Ownership {
        let mut o = Ownership::new();
        for r in records {
            o.insert(r.set, Newest { epoch: r.epoch, owner: Some(r.owner) });
        }
        o
    }

    /// Adds one claim, keeping the newest per set. At equal epochs a readable record wins.
    pub fn insert(&mut self, set: SetId, n: Newest) {
        match self.sets.get(&set) {
            Some(old) if old.epoch > n.epoch || (old.epoch == n.epoch && old.owner.is_some()) => {}
            _ => {
                self.sets.insert(set, n);
            }
        }
    }

    /// The newest claim on `set`.
    pub fn newest(&self, set: SetId) -> Option<Newest> {
        self.sets.get(&set).copied()
    }

    /// Every set with a claim, with its newest claim.
    pub fn iter(&self) -> impl Iterator<Item = (SetId, Newest)> + '_ {
        self.sets.iter().map(|(s, n)| (*s, *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(set: u16, owner: u16, epoch: u64) -> Record {
        Record { cluster: ClusterId(5), set: SetId(set), owner: NodeId(owner), epoch: Epoch(epoch) }
    }

    #[test]
    fn record_round_trips_and_refuses_corruption() {
        let r = rec(1, 2, 77);
        let b = r.encode();
        assert_eq!(Record::decode(&b), Ok(r));
        for i in 0..RECORD_LEN {
            let mut c = b;
            c[i] ^= 1;
            assert!(Record::decode(&c).is_err());
        }
        assert_eq!(Record::decode(&b[..31]), Err(RecordError::BadLength(31)));
    }

    #[test]
    fn file_names_round_trip_and_sort_by_epoch() {
        let r = rec(3, 1, 12);
        assert_eq!(parse_file_name(&r.file_name()), Some((SetId(3), Epoch(12))));
        assert!(file_name(SetId(1), Epoch(9)) < file_name(SetId(1), Epoch(10)));
        for bad in ["claim-1-2", "claim-00001-0000000000000000000x", "other", "claim-00001-00000000000000000001.tmp"] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn highest_epoch_wins_per_set() {
        let rs = [rec(1, 1, 1), rec(1, 2, 2), rec(2, 2, 1), rec(1, 1, 3), rec(2, 1, 2)];
        let bodies: Vec<_> = rs.iter().map(|r| (r.file_name(), r.encode())).collect();
        let o = Ownership::from_listing(
            ClusterId(5),
            bodies.iter().map(|(n, b)| (n.as_str(), Some(&b[..]))).rev(),
        );
        assert_eq!(o.newest(SetId(1)), Some(Newest { epoch: Epoch(3), owner: Some(NodeId(1)) }));
        assert_eq!(o.newest(SetId(2)), Some(Newest { epoch: Epoch(2), owner: Some(NodeId(1)) }));
        assert_eq!(o.newest(SetId(9)), None);
    }

    #[test]
    fn unreadable_newest_counts_for_epoch_but_names_no_owner() {
        let good = rec(1, 1, 4);
        let gb = good.encode();
        let name5 = file_name(SetId(1), Epoch(5));
        let mismatched = rec(1, 2, 6).encode();
        let name7 = file_name(SetId(1), Epoch(7));
        let foreign = Record { cluster: ClusterId(6), ..rec(1, 2, 8) };
        let fb = foreign.encode();
        let fname = foreign.file_name();
        let name4 = good.file_name();
        let o = Ownership::from_listing(
            ClusterId(5),
            [
                (name4.as_str(), Some(&gb[..])),
                (name5.as_str(), Some(&b"torn"[..])),
                (fname.as_str(), Some(&fb[..])),
            ],
        );
        assert_eq!(o.newest(SetId(1)), Some(Newest { epoch: Epoch(5), owner: None }));
        let o = Ownership::from_listing(ClusterId(5), [(name7.as_str(), Some(&mismatched[..])), (name4.as_str(), None)]);
        assert_eq!(o.newest(SetId(1)), Some(Newest { epoch: Epoch(7), owner: None }));
    }
}
