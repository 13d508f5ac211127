//! The join: what a node checks when a link to its partner comes up.
//!
//! Each side sends [`Message::Join`] first (`{ incarnation | ring | nonce }`, its cluster
//! and node in the frame header) and judges the other's with [`judge`], the same rule on
//! both sides:
//!
//! 1. another cluster: refused ([`RefuseReason::ForeignCluster`]);
//! 2. our own node id, or not the configured partner: refused;
//! 3. a newer configuration incarnation than ours: **we step down** (refuse to serve,
//!    say why, exit non-zero); an older one: refused ([`RefuseReason::OlderIncarnation`],
//!    which tells the other side to step down); equal: fine;
//! 4. journals whose rings differ in size: refused (one cannot mirror the other).
//!
//! A refusal for rules 1, 2 and 4 goes out at once. Before anything else comes of a
//! join (the link carries records, this node steps down, or it tells the other to), each
//! side proves with [`Message::Proof`] that it holds the pair's interconnect key,
//! answering the nonce of the other's join ([`super::key`]), and checks the other's
//! proof: a stranger who can reach the interconnect port and knows the cluster and node
//! ids gets a refusal ([`RefuseReason::Unproven`]), and neither replaces the partner's
//! link nor makes this node step down. A refusal that comes before the other side's
//! proof is believed only as far as closing the link.

use takeover::codec::{Header, Message, RefuseReason};
use takeover::{ClusterId, NodeId};

/// What this node is, as it presents itself in a join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster: ClusterId,
    pub node: NodeId,
    /// The only node accepted as partner, when configured.
    pub partner: Option<NodeId>,
    pub incarnation: u64,
    /// The capacity of each ring of this node's journal.
    pub ring: u64,
}

impl Identity {
    /// Our join message, with this link's `nonce`.
    pub fn join(&self, nonce: [u8; 16]) -> Message {
        Message::Join { incarnation: self.incarnation, ring: self.ring, nonce }
    }
}

/// The outcome of judging a partner's join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A partner: the link may carry heartbeats and mirror records.
    Accept,
    /// Not a partner of ours: refuse it (and say why) and close the link.
    Refuse(RefuseReason),
    /// The partner's configuration is newer than ours: this node must not serve.
    StepDown { ours: u64, theirs: u64 },
}

/// Judges a join (`incarnation`, `ring`) sent by `from`.
pub fn judge(me: &Identity, from: &Header, incarnation: u64, ring: u64) -> Verdict {
    if from.cluster != me.cluster {
        return Verdict::Refuse(RefuseReason::ForeignCluster);
    }
    if from.node == me.node {
        return Verdict::Refuse(RefuseReason::SameNode);
    }
    if me.partner.is_some_and(|p| p != from.node) {
        return Verdict::Refuse(RefuseReason::UnexpectedNode);
    }
    if incarnation > me.incarnation {
        return Verdict::StepDown { ours: me.incarnation, theirs: incarnation };
    }
    if incarnation < me.incarnation {
        return Verdict::Refuse(RefuseReason::OlderIncarnation);
    }
    if ring != me.ring {
        return Verdict::Refuse(RefuseReason::RingSize);
    }
    Verdict::Accept
}

/// Why a join was refused, in words for the log and `duet status`.
pub fn reason_text(reason: RefuseReason) -> &'static str {
    match reason {
        RefuseReason::OlderIncarnation => "its configuration incarnation is older",
        RefuseReason::ForeignCluster => "it belongs to another cluster",
        RefuseReason::SameNode => "it has this node's own node id",
        RefuseReason::UnexpectedNode => "it is not the configured partner node",
        RefuseReason::RingSize => "its journal's rings differ in size from ours",
        RefuseReason::Unproven => "it did not prove that it holds the pair's interconnect key",
    }
}

/// Whether `verdict` waits for the proofs: all but a refusal that changes nothing,
/// which goes out at once. A refusal that tells the other side to step down waits, since
/// the other side believes it only from a proven partner.
pub fn proof_first(verdict: Verdict) -> bool {
    !matches!(verdict, Verdict::Refuse(r) if r != RefuseReason::OlderIncarnation)
}

/// What a node says when it steps down.
pub fn step_down_text(ours: u64, theirs: u64) -> String {
    format!(
        "the partner's configuration incarnation {theirs} is newer than ours ({ours}): \
         this node refuses to serve (update its configuration and raise its incarnation)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Identity {
        Identity { cluster: ClusterId(7), node: NodeId(1), partner: None, incarnation: 5, ring: 1 << 20 }
    }

    fn from(cluster: u64, node: u16) -> Header {
        Header { cluster: ClusterId(cluster), node: NodeId(node), generation: 1, seq: 0 }
    }

    #[test]
    fn the_rules_in_order() {
        let ring = 1 << 20;
        assert_eq!(judge(&me(), &from(7, 2), 5, ring), Verdict::Accept);
        assert_eq!(judge(&me(), &from(8, 2), 5, ring), Verdict::Refuse(RefuseReason::ForeignCluster));
        assert_eq!(judge(&me(), &from(7, 1), 5, ring), Verdict::Refuse(RefuseReason::SameNode));
        assert_eq!(judge(&me(), &from(7, 2), 6, ring), Verdict::StepDown { ours: 5, theirs: 6 });
        assert_eq!(judge(&me(), &from(7, 2), 4, ring), Verdict::Refuse(RefuseReason::OlderIncarnation));
        assert_eq!(judge(&me(), &from(7, 2), 5, ring * 2), Verdict::Refuse(RefuseReason::RingSize));
        // A newer incarnation wins over a ring of another size: the newer config decides.
        assert_eq!(judge(&me(), &from(7, 2), 9, 3), Verdict::StepDown { ours: 5, theirs: 9 });
        let picky = Identity { partner: Some(NodeId(2)), ..me() };
        assert_eq!(judge(&picky, &from(7, 2), 5, ring), Verdict::Accept);
        assert_eq!(judge(&picky, &from(7, 3), 5, ring), Verdict::Refuse(RefuseReason::UnexpectedNode));
    }

    #[test]
    fn both_sides_agree_on_who_steps_down() {
        let a = Identity { incarnation: 2, ..me() };
        let b = Identity { node: NodeId(2), incarnation: 1, ..me() };
        let ha = from(7, 1);
        let hb = from(7, 2);
        assert_eq!(judge(&a, &hb, b.incarnation, b.ring), Verdict::Refuse(RefuseReason::OlderIncarnation));
        assert_eq!(judge(&b, &ha, a.incarnation, a.ring), Verdict::StepDown { ours: 1, theirs: 2 });
    }
}
