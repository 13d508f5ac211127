//! Duet's session-state journal: a fixed-size memory-mapped region that stores records
//! and gives them back after a crash.
//!
//! A region holds a header and two rings: the node's **own** log, which it appends to,
//! and the **partner's mirror**, a byte-for-byte copy of the partner's own log received
//! over the interconnect. The request pipeline appends a record at each of the four
//! consistency points of every request ([`Entry`]), folds long-lived state into
//! checkpoints, and retires operations once they are done; the ring then wraps and never
//! fills under steady load. After a crash, [`Journal::open`] scans both rings, stops at
//! the first torn or corrupt record and returns a [`Recovery`]: the flag, the last
//! checkpoint, every later record and the operations at each consistency point.
//!
//! What it does **not** do: it knows nothing of SMB (payloads are opaque bytes), opens no
//! socket and runs no async runtime. The interconnect that ships records to the partner
//! is a [`Mirror`] the server implements; [`LocalMirror`] is an in-process one for tests.
//!
//! ```
//! use nvram::{ClusterId, Durability, Entry, Flag, Journal, NodeId, OpId, Options};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("nvram");
//! let opts = Options::new(ClusterId(0xd0e7), NodeId(1), Durability::GroupCommit);
//!
//! let journal = Journal::create_file(&path, 1 << 20, opts)?;
//! journal.set_flag(Flag::NonElectiveReboot)?; // what a crash from here would mean
//! let op = OpId(1);
//! journal.append(Entry::PreAck { op, request: b"request bytes" })?;
//! journal.append(Entry::PreCommand { op, element: 0 })?;
//! drop(journal); // the process dies
//!
//! let (journal, recovery) = Journal::open_file(&path, opts)?;
//! assert_eq!(recovery.flag, Flag::NonElectiveReboot);
//! assert_eq!(recovery.own.points.pre_command, vec![op]); // redo it
//! # let _ = journal;
//! # Ok::<(), nvram::Error>(())
//! ```
//!
//! # Layout
//!
//! - [`journal`]: [`Journal`]: create and open, append, durability policies, retire,
//!   checkpoint, the flag, and the receiving side of a mirror.
//! - [`mirror`]: the [`Mirror`] trait, [`MirrorAck`] and [`LocalMirror`].
//! - [`recover`]: the scan and its result types ([`Recovery`], [`Record`], [`Points`]).
//! - [`dump`](fn@dump): a readable dump of a region file.
//! - [`read_own`]: a region file's own log, read without opening it as a journal.
//! - [`format`](mod@format): the on-disk layout: header slots, record header, kind values
//!   (the flag, cluster, node and operation ids are defined in the `ids` crate and
//!   re-exported here).
//! - `region`: the [`Storage`] trait, [`MmapStorage`], [`MemStorage`], and the lock-free
//!   ring allocator; the crate's only `unsafe` code.
//! - [`power`]: [`PageCacheStorage`] and [`Power`], a simulated page cache and power
//!   supply for tests: a killed process, or a power loss in which random dirty pages
//!   reach the medium and the rest are lost.
//! - [`error`]: the crate's [`Error`] type.
//!
//! The byte layout is also drawn in `nvram/README.md`.

#![warn(missing_docs)]

mod dump;
pub mod error;
pub mod format;
pub mod journal;
pub mod mirror;
pub mod power;
mod read;
pub mod recover;
mod region;

pub use dump::dump;
pub use error::{Error, Result};
pub use format::Kind;
pub use ids::{ClusterId, Flag, NodeId, OpId};
pub use journal::{Durability, Entry, Journal, Options, Ticket};
pub use mirror::{LocalMirror, Mirror, MirrorAck, MirrorMeta, Run, Shipment};
pub use power::{Failure, PageCacheStorage, Power, PowerStats};
pub use read::read_own;
pub use recover::{LogEnd, LogRecovery, Points, Record, Recovery, TornReason};
pub use region::{DaxStorage, MemStorage, MmapStorage, Storage};
