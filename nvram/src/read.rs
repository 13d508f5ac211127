//! Reading a region file's own log with plain reads: no mapping, no write, no new
//! run. For a reader that is not the region's writer: a node that takes a share set
//! back from the journal its partner kept of it (the file stays as it was, and its
//! writer may still have it mapped).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ids::{ClusterId, Flag, NodeId};

use crate::error::{Error, Result};
use crate::format::{Header, HEADER_LEN, SLOT_SIZE};
use crate::recover::{self, LogRecovery};

/// A region file as the scan's byte source.
pub(crate) struct FileSource<'a>(pub(crate) &'a File);

impl recover::Source for FileSource<'_> {
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
}

/// Reads the flag and the own log of the region file at `path`, which must belong to
/// `node` of `cluster`, with the scan [`crate::Journal::open`] runs; only the live part
/// of the ring (head to tail) is read.
///
/// ```
/// use nvram::{ClusterId, Durability, Entry, Flag, Journal, NodeId, OpId, Options};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("nvram");
/// let j = Journal::create_file(&path, 1 << 20, Options::new(ClusterId(5), NodeId(1), Durability::PerRecord))?;
/// j.append(Entry::PreAck { op: OpId(9), request: b"hello" })?;
/// j.set_flag(Flag::NonElectiveReboot)?;
/// let (flag, log) = nvram::read_own(&path, ClusterId(5), NodeId(1))?;
/// assert_eq!((flag, log.records.len()), (Flag::NonElectiveReboot, 1));
/// assert!(nvram::read_own(&path, ClusterId(5), NodeId(2)).is_err(), "another node's region");
/// # Ok::<(), nvram::Error>(())
/// ```
pub fn read_own(path: &Path, cluster: ClusterId, node: NodeId) -> Result<(Flag, LogRecovery)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let (mut a, mut b) = ([0u8; HEADER_LEN], [0u8; HEADER_LEN]);
    file.read_exact_at(&mut a, 0)?;
    file.read_exact_at(&mut b, SLOT_SIZE)?;
    let h = Header::pick(&a, &b)?;
    if let Some(e) = Error::foreign((cluster, node), (h.cluster, h.node)) {
        return Err(e);
    }
    if h.region_len != len || h.own_base() + h.ring_cap > len {
        return Err(Error::BadSize { expected: h.region_len, actual: len });
    }
    let log = recover::scan(&FileSource(&file), h.own_base(), h.ring_cap, h.own)?;
    Ok((h.flag, log))
}
