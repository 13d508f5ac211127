//! Small identifiers and enums shared by every module. The identifiers and the flag are
//! defined once, in the `ids` crate, for this crate, `nvram/` and the server.

pub use ids::{ClusterId, Epoch, Flag, NodeId, SetId};

/// A fault a node detects in itself and reports with [`crate::Node::handle_fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The share storage returns I/O errors.
    DiskErrors = 0x01,
    /// The node has lost its client-facing network.
    ClientNetworkLost = 0x02,
    /// The journal (NVRAM or its mirror) failed.
    JournalFailure = 0x03,
    /// The node could not complete a shared-storage heartbeat within the detection timeout
    /// (raised by the node itself).
    StorageStalled = 0x04,
}

impl FaultKind {
    pub(crate) fn from_u8(b: u8) -> Option<FaultKind> {
        Some(match b {
            0x01 => FaultKind::DiskErrors,
            0x02 => FaultKind::ClientNetworkLost,
            0x03 => FaultKind::JournalFailure,
            0x04 => FaultKind::StorageStalled,
            _ => return None,
        })
    }
}

/// A node's health as it reports it in heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// No fault known.
    Healthy,
    /// A fault of this kind is reported.
    Faulty(FaultKind),
}
