//! Small identifiers and enums shared by every module.

use std::fmt;

/// The id of a pair (a cluster), the same on both nodes and in the shared configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub u64);

/// The id of one node of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u16);

/// A share set, named by its home node: each node has exactly one home set, with its own
/// virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetId(pub u16);

impl SetId {
    /// The set whose home is `node`.
    pub fn home_of(node: NodeId) -> SetId {
        SetId(node.0)
    }

    /// The home node of this set.
    pub fn home(self) -> NodeId {
        NodeId(self.0)
    }
}

/// The generation of an ownership record: the owner of a set is whoever created the record
/// with the highest epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node{}", self.0)
    }
}

impl fmt::Display for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "set{}", self.0)
    }
}

/// Why state is saved or restored. The `nvram` crate has its own flag enum in the journal
/// header; the server maps between the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flag {
    /// The node stopped cleanly: nothing to restore.
    CleanShutdown,
    /// The node rebooted on purpose: restore from its own log.
    ElectiveReboot,
    /// The node died and came back: restore from its own log.
    NonElectiveReboot,
    /// The set was handed over in order (operator, fault hand-over or giveback).
    ElectiveTakeover,
    /// The set was taken over from a dead partner.
    NonElectiveTakeover,
}

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
