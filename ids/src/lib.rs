//! The identifiers that more than one Duet crate stores or sends: the one definition of
//! each, shared by `nvram/` (the journal header and records), `takeover/` (its
//! interconnect frames and ownership records) and `server/`.
//!
//! Every id is a newtype over a fixed-width integer; the width is part of the formats
//! that store it, so changing one means bumping those formats' versions:
//!
//! | type | width | stored in |
//! |---|---|---|
//! | [`ClusterId`] | `u64` | journal header, interconnect frame header, ownership records |
//! | [`NodeId`] | `u16` | journal header, interconnect frame header, ownership records |
//! | [`SetId`] | `u16` | interconnect messages, ownership records |
//! | [`Epoch`] | `u64` | interconnect messages, ownership records |
//! | [`OpId`] | `u64` | journal record header |
//! | [`Flag`] | `u32` | journal header |
//!
//! This crate does no encoding itself: each format writes the integer inside (`.0`) in
//! its own byte order. It has no dependencies.
//!
//! The server's own ids (`SessionId`, `TreeId`, `PersistentFileId`, `VolatileFileId`,
//! ...) are not here yet: they come with the server's state model (issue 12).

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;

/// The id of a pair (a cluster), the same on both nodes, in the shared configuration and
/// in both journals. A journal region or a frame of another cluster is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub u64);

/// The id of one node of the pair. A journal region of another node is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u16);

/// A share set (the shares that move together with one virtual address), named by its
/// home node: each node has exactly one home set.
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

/// Identifies one SMB operation (a request frame: one request or a compound chain) across
/// its journal records. `OpId(0)` is no operation (checkpoints and pads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// Why a node last stopped, or what it is doing: kept in the journal header, and read
/// first when a node starts, before anything else. It decides whether the node restores
/// state, and from which log. The takeover state machine also names with it why a set's
/// state is saved or restored.
///
/// The values are stored as a `u32` (`flag as u32`, [`Flag::from_u32`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Flag {
    /// The node shut down cleanly. A starting node has nothing to restore: it starts
    /// with empty state.
    CleanShutdown = 0x1,
    /// The node was rebooted on purpose, after draining its requests and saving its
    /// state. A starting node restores its state from its own log.
    ElectiveReboot = 0x2,
    /// The node crashed or lost power. A starting node restores its state from its own
    /// log, and completes the operations in flight exactly once, each by the consistency
    /// point it had reached.
    NonElectiveReboot = 0x3,
    /// The node's set was handed to the partner in order (operator, fault hand-over or
    /// giveback): the node drained, saved its state and flushed its mirror. The partner
    /// restores the set from its mirror; a starting node restores nothing of that set
    /// itself and waits in standby until it is given back (the ownership records say who
    /// holds it).
    ElectiveTakeover = 0x4,
    /// The partner took the node's set after a failure. The partner restores the set from
    /// its mirror, as after a non-elective reboot; a starting node restores nothing of
    /// that set itself and waits in standby until it is given back.
    NonElectiveTakeover = 0x5,
}

impl Flag {
    /// Every flag, in numeric order.
    pub const ALL: [Flag; 5] = [
        Flag::CleanShutdown,
        Flag::ElectiveReboot,
        Flag::NonElectiveReboot,
        Flag::ElectiveTakeover,
        Flag::NonElectiveTakeover,
    ];

    /// The flag with this stored value.
    pub fn from_u32(v: u32) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| *f as u32 == v)
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
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

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_round_trip_and_unknown_values_are_refused() {
        for (i, flag) in Flag::ALL.into_iter().enumerate() {
            assert_eq!(flag as u32, i as u32 + 1);
            assert_eq!(Flag::from_u32(flag as u32), Some(flag));
        }
        assert_eq!(Flag::from_u32(0), None);
        assert_eq!(Flag::from_u32(6), None);
        assert_eq!(Flag::from_u32(u32::MAX), None);
    }

    #[test]
    fn a_set_is_named_by_its_home_node() {
        assert_eq!(SetId::home_of(NodeId(2)), SetId(2));
        assert_eq!(SetId(2).home(), NodeId(2));
    }

    #[test]
    fn display() {
        assert_eq!(ClusterId(0xd0e7).to_string(), "0xd0e7");
        assert_eq!(NodeId(1).to_string(), "node1");
        assert_eq!(SetId(2).to_string(), "set2");
        assert_eq!(Epoch(3).next().to_string(), "e4");
        assert_eq!(OpId(9).to_string(), "op9");
    }
}
