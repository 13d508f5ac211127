//! A node's configuration and what it reads at boot.

use std::time::Duration;

use crate::codec::DenyReason;
use crate::types::{ClusterId, Flag, NodeId};

/// How one node of the pair behaves. Build one with [`Config::new`] and adjust the fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// The pair's cluster id.
    pub cluster: ClusterId,
    /// This node.
    pub me: NodeId,
    /// The other node.
    pub partner: NodeId,
    /// This boot's generation (the journal header's, increased at every boot), so that the
    /// partner can tell our new frames from late ones of an earlier boot.
    pub generation: u32,
    /// Interconnect and storage heartbeat period (default 100 ms).
    pub heartbeat_interval: Duration,
    /// Beats of silence on both channels before the partner is dead (default 3).
    pub dead_after_beats: u32,
    /// How long a storage heartbeat keeps our right to serve (default 200 ms); must be
    /// shorter than the detection timeout.
    pub lease: Duration,
    /// How long a request to the partner (shutdown, takeover, giveback) is resent before it
    /// is given up (default 1 s). A released set is taken back sooner: after one detection
    /// timeout without the partner's claim.
    pub handover_timeout: Duration,
    /// Ask for our home set back as soon as we are healthy and the partner holds it.
    pub auto_giveback: bool,
    /// What this node has, to decide whether it can serve the partner's set.
    pub resources: Resources,
    /// What the partner's set needs.
    pub partner_needs: SetNeeds,
    /// A safety mechanism switched off, for the model checker's mutation tests only
    /// (`tests/model.rs` shows that the checker then finds two servers for one set). Never
    /// set outside tests.
    #[doc(hidden)]
    pub mutation: Mutation,
}

/// Safety mechanisms a mutation test may switch off ([`Config::mutation`]).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// Everything on (always, outside the mutation tests).
    #[default]
    None,
    /// No fence: [`crate::Node::may_serve`] ignores the lease, and a taker does not wait
    /// out the previous owner's lease before it binds.
    NoFence,
    /// No epoch check: a newer claim does not make a node step down, and the re-read of
    /// ownership before a bind does not stop it.
    NoEpochCheck,
}

impl Config {
    /// A configuration with the default timings and no storage requirements.
    pub fn new(cluster: ClusterId, me: NodeId, partner: NodeId) -> Config {
        Config {
            cluster,
            me,
            partner,
            generation: 1,
            heartbeat_interval: Duration::from_millis(100),
            dead_after_beats: 3,
            lease: Duration::from_millis(200),
            handover_timeout: Duration::from_secs(1),
            auto_giveback: false,
            resources: Resources::default(),
            partner_needs: SetNeeds::default(),
            mutation: Mutation::None,
        }
    }

    /// Silence on both channels for this long means the partner is dead.
    pub fn detection_timeout(&self) -> Duration {
        self.heartbeat_interval * self.dead_after_beats
    }
}

/// The storage paths and free capacity a node has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// Storage paths this node can reach.
    pub paths: Vec<String>,
    /// Free capacity, in bytes.
    pub free_bytes: u64,
}

/// The storage paths and capacity a share set needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SetNeeds {
    /// Paths that must be reachable.
    pub paths: Vec<String>,
    /// Capacity needed, in bytes.
    pub bytes: u64,
}

impl Resources {
    /// Whether these resources can serve a set with `needs`, and if not, why.
    pub fn check(&self, needs: &SetNeeds) -> Result<(), DenyReason> {
        if needs.paths.iter().any(|p| !self.paths.contains(p)) {
            return Err(DenyReason::MissingPath);
        }
        if needs.bytes > self.free_bytes {
            return Err(DenyReason::NoCapacity);
        }
        Ok(())
    }
}

/// The pair as the shared configuration describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SharedConfig {
    /// The cluster id.
    pub cluster: ClusterId,
    /// The two nodes.
    pub nodes: [NodeId; 2],
}

/// Who this node was at its last boot, as its journal header recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The cluster id recorded.
    pub cluster: ClusterId,
    /// The node id recorded.
    pub node: NodeId,
}

/// What the server reads before it builds a [`crate::Node`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BootInfo {
    /// The shared configuration.
    pub shared: SharedConfig,
    /// The identity in our journal, `None` on a first boot.
    pub recorded: Option<Identity>,
    /// The flag in our journal header: how we stopped last time.
    pub flag: Flag,
}

/// Why a node refuses to join the pair.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// Our cluster id is not the shared configuration's.
    #[error("cluster id {ours:?} does not match the shared configuration's {shared:?}")]
    ClusterMismatch { ours: ClusterId, shared: ClusterId },
    /// This node, or its partner, is not one of the shared configuration's nodes.
    #[error("node {node} is not in the shared configuration")]
    UnknownNode { node: NodeId },
    /// The journal says this node was someone else at its last boot.
    #[error("recorded identity {recorded:?} changed to {now:?} since the last boot")]
    IdentityChanged { recorded: Identity, now: Identity },
    /// The configuration is inconsistent.
    #[error("bad configuration: {0}")]
    BadConfig(&'static str),
}
