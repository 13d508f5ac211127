//! The fence on the data path (issue 14; DESIGN.md, "Leases"): a pair member's
//! lease on a share set it serves ([`Lease`]: its own set's, or the partner's
//! set's while it holds it) is the [`crate::fs::Fence`] of the set's shares, asked right before every change on disk ([`crate::fs::fence`]);
//! and what the request pipeline does when it refused one ([`Mark`]).
//!
//! The pipeline checks the lease before each element runs (after point 2); the
//! fence checks it again at each change the element makes, so that an element
//! held up past its lease (the node frozen after the first check, a wait for a
//! lease break, a stalled disk) changes nothing once the partner may have taken
//! the set over: the partner claims a set only after [`super::sets::DETECT`] of
//! silence of this node's storage heartbeat, by which time the lease
//! ([`super::sets::LEASE`]) has run out.
//!
//! # What a refused change does to its request
//!
//! The file-system call fails with [`crate::fs::FsError::Fenced`], having
//! changed nothing. A handler may map that to a status or, for a step it takes
//! as best effort, ignore it; so the pipeline does not look at the answer but at
//! the lease's count of refusals, noted when the element starts ([`Mark::take`])
//! and compared when it ends ([`Mark::crossed`]), before its point 3. When the
//! count moved, the connection is closed with no answer and no point-3 record:
//! to the client and to the partner this is a node that died before answering.
//! The client reconnects to the set's address (served by the partner once this
//! node stepped down) and resends; the partner, whose mirror holds the request
//! up to its point 2, carries it out once. No status does as well: every error
//! is final for an SMB client (a WRITE that failed, where the partner would have
//! carried it out), and none tells it to resend to another server.
//!
//! The count is the node's, not the element's: an element that ends while
//! another was refused is closed too. Refusals happen only while the lease does
//! not hold (the node is losing its set, or its storage stalled for longer than
//! a lease), and then closing is what the pipeline's own lease check does.

use std::sync::Arc;
use std::time::Instant;

use tracing::warn;

use super::sets::Lease;

impl crate::fs::Fence for Lease {
    fn holds(&self) -> bool {
        if self.valid_at(Instant::now()) {
            return true;
        }
        self.refuse();
        warn!(
            lost = self.is_lost(),
            "fence: a change on disk refused: no lease on our share set at this instant (taken over, or storage stalled)"
        );
        false
    }
}

/// The fence's refusals when an element started, on a fenced node.
#[derive(Debug)]
pub struct Mark(Option<(Arc<Lease>, u64)>);

impl Mark {
    /// Notes the refusals so far of a server's lease; nothing on a server
    /// without one (not a pair member).
    pub fn take(lease: Option<&Arc<Lease>>) -> Mark {
        Mark(lease.map(|l| (l.clone(), l.refusals())))
    }

    /// The fence refused a change since [`Mark::take`]: the element's
    /// connection closes without an answer.
    pub fn crossed(&self) -> bool {
        self.0.as_ref().is_some_and(|(l, at)| l.refusals() != *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Fence;

    #[test]
    fn the_lease_holds_only_while_valid_and_counts_what_it_refused() {
        let lease = Arc::new(Lease::default());
        let mark = Mark(Some((lease.clone(), lease.refusals())));
        assert!(!lease.holds(), "no beat renewed it yet");
        assert!(mark.crossed());
        lease.renew(Instant::now());
        let mark = Mark(Some((lease.clone(), lease.refusals())));
        assert!(lease.holds());
        assert!(!mark.crossed());
        lease.lose();
        assert!(!lease.holds(), "the set was taken");
        assert!(mark.crossed());
        assert_eq!(lease.refusals(), 2);
        assert!(!Mark(None).crossed(), "an unfenced node never crosses");
    }
}
