//! The crate's error type.

use std::io;

use ids::{ClusterId, NodeId};

/// Everything that can go wrong with a journal.
///
/// Local I/O failures ([`Error::Io`]), a region that is not ours ([`Error::ForeignCluster`],
/// [`Error::ForeignNode`]), a region that is not a journal or is damaged beyond its
/// records, and a full ring ([`Error::Full`], which the server turns into back-pressure)
/// are kept apart. A torn or corrupt *record* is not an error: recovery reports it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading, writing, mapping or syncing the region failed.
    #[error("journal I/O: {0}")]
    Io(#[from] io::Error),
    /// Neither header slot starts with the journal magic.
    #[error("not a journal region (bad magic)")]
    BadMagic,
    /// The header was written by another format version.
    #[error("unsupported journal format version {0:#x}")]
    UnsupportedVersion(u32),
    /// No header slot has a valid checksum.
    #[error("journal header is corrupt")]
    BadHeader,
    /// The header holds a flag value this crate does not know.
    #[error("journal header holds unknown flag value {0:#x}")]
    UnknownFlag(u32),
    /// The region belongs to another cluster; it is never replayed.
    #[error("journal belongs to cluster {found:#x}, not {expected:#x}")]
    ForeignCluster {
        /// The cluster the caller is part of.
        expected: u64,
        /// The cluster in the region's header.
        found: u64,
    },
    /// The region belongs to another node; it is never replayed.
    #[error("journal belongs to node {found}, not {expected}")]
    ForeignNode {
        /// The node the caller is.
        expected: u16,
        /// The node in the region's header.
        found: u16,
    },
    /// The region's size differs from the one in its header, or is too small.
    #[error("journal region is {actual} bytes, expected {expected}")]
    BadSize {
        /// What the header (or the minimum) says.
        expected: u64,
        /// What the storage has.
        actual: u64,
    },
    /// The ring has no room for the record: back off and retry after retiring.
    #[error("journal full: record needs {needed} bytes, {free} free")]
    Full {
        /// Bytes the record needs in the ring.
        needed: u64,
        /// Bytes free right now.
        free: u64,
    },
    /// The record can never fit: records are limited to half a ring.
    #[error("record of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Payload length asked for.
        len: u64,
        /// Largest payload the ring accepts.
        max: u64,
    },
}

impl Error {
    pub(crate) fn foreign(expected: (ClusterId, NodeId), found: (ClusterId, NodeId)) -> Option<Error> {
        if expected.0 != found.0 {
            Some(Error::ForeignCluster { expected: expected.0 .0, found: found.0 .0 })
        } else if expected.1 != found.1 {
            Some(Error::ForeignNode { expected: expected.1 .0, found: found.1 .0 })
        } else {
            None
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
