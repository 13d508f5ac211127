//! Leases on files ([MS-SMB2] 3.3.1.4 the Lease Table, 3.3.5.9.8 and
//! 3.3.5.9.11 granting one in CREATE, 3.3.4.7 breaking one, 3.3.5.22.2
//! acknowledging a break; [MS-FSA] 2.1.4.12 says what breaks what).
//!
//! A lease belongs to a client (ClientGuid) and a LeaseKey, and is shared
//! by every open of one file made with that key. Its state is a set of
//! caching rights, [`lease_state`] R (read), H (handle) and W (write). It
//! is broken like an oplock: W when another open comes along, H too when
//! that open meets a sharing violation, everything when the file is
//! overwritten, and R when another lease key's open writes, locks or
//! resizes the file. A break from a state with W or H needs an
//! acknowledgement, and the opens that caused it wait for it (or for
//! [`super::oplock::BREAK_TIMEOUT`]); a break from R alone does not.
//!
//! The leases themselves live in the file table ([`super::files`]), under
//! the same lock as share modes and oplocks.

use protocol::msg::create_context::lease_state::{HANDLE_CACHING as H, READ_CACHING as R, WRITE_CACHING as W};
use protocol::msg::oplock_break::{lease_break_flags, LeaseBreakNotification};
use protocol::NtStatus;

use super::oplock::{BreakSink, CachingLog};
use crate::model::{self, ClientGuid, Delta, LeaseKey, Timestamp};

pub use protocol::msg::create_context::lease_state;

/// A lease's identity ([MS-SMB2] 3.3.1.4: the LeaseTable is found by
/// ClientGuid, and a lease in it by LeaseKey).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseId {
    pub client_guid: [u8; 16],
    pub key: [u8; 16],
}

impl LeaseId {
    /// The lease's key in the state model's lease table.
    pub fn model(&self) -> model::LeaseId {
        model::LeaseId { client: ClientGuid(self.client_guid), key: LeaseKey(self.key) }
    }
}

/// A break in progress (Lease.Breaking, [MS-SMB2] 3.3.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaking {
    /// Lease.BreakToLeaseState: what the notification asked for, and the
    /// most an acknowledgement may keep.
    pub requested: u32,
    /// What later opens need the lease to come down to: lower than
    /// `requested` when another break came along while this one was in
    /// progress. An acknowledgement that keeps more starts a new break.
    pub required: u32,
    /// When the lease loses everything if nobody acknowledged
    /// (Lease.LeaseBreakTimeout, as the model keeps it).
    pub deadline: Timestamp,
}

/// One lease's state ([MS-SMB2] 3.3.1.4 Lease), as a working value: made
/// from the model's record ([`Lease::of`]) for one decision.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Lease.LeaseState.
    pub state: u32,
    pub breaking: Option<Breaking>,
    /// Lease.Epoch (version 2 leases), sent in responses and breaks.
    pub epoch: u16,
    /// Lease.Version is 2.
    pub v2: bool,
}

/// The state a request may get at most ([MS-SMB2] 3.3.5.9.8, as Windows
/// grants): R, RH, RW or RWH; any request without R gets nothing.
pub fn grantable(requested: u32) -> u32 {
    let s = requested & (R | H | W);
    if s & R == 0 {
        0
    } else {
        s
    }
}

/// What a lease keeps when another lease key opens its file ([MS-FSA]
/// 2.1.4.12 and 2.1.5.1.2.1, as Windows and Samba behave): W goes, or on
/// a sharing violation H goes (the holder may close its handle and let
/// the open in); an overwrite that passes the share check takes
/// everything.
pub fn keep_for_open(state: u32, overwrite: bool, violation: bool) -> u32 {
    if violation {
        state & !H
    } else if overwrite {
        0
    } else {
        state & !W
    }
}

impl Lease {
    /// A new lease's state: version 2 when the request carried its epoch
    /// (`v2`), whose epoch is one past it.
    pub fn new(state: u32, v2: Option<u16>) -> Lease {
        Lease { state, breaking: None, epoch: v2.map_or(0, |e| e.wrapping_add(1)), v2: v2.is_some() }
    }

    /// The lease as the state model has it: its state, epoch, version and
    /// a break in progress, exactly.
    pub fn of(l: &model::LeaseRecord) -> Lease {
        Lease {
            state: l.state(),
            breaking: l.breaking().map(|b| Breaking { requested: b.to, required: b.required, deadline: b.deadline }),
            epoch: l.epoch(),
            v2: l.version() == model::LeaseVersion::V2,
        }
    }

    /// The notification of the break in progress, if there is one, again
    /// ([MS-SMB2] 2.2.23.2, 3.3.4.7): what it asked for, under its epoch,
    /// for a holder that took its handle back after a restart and must
    /// learn that it has to flush and acknowledge. True when one was sent.
    pub fn resend(&self, id: &LeaseId, sink: Option<&BreakSink>) -> bool {
        let (Some(b), Some(s)) = (&self.breaking, sink) else {
            return false;
        };
        s.send_lease(&LeaseBreakNotification {
            new_epoch: self.epoch,
            flags: lease_break_flags::ACK_REQUIRED,
            lease_key: id.key,
            current_lease_state: self.state,
            new_lease_state: b.requested,
        });
        true
    }

    /// Brings the lease down to at most `keep` ([MS-SMB2] 3.3.4.7).
    /// Returns true when a break is (now or already) in progress, which
    /// the caller waits for. A break from W or H is acknowledged; from R
    /// alone it completes at once. During a break, the lower target is
    /// remembered and applied when the acknowledgement comes. The changes
    /// go to `log`, the notification to `sink`.
    pub fn break_to(&mut self, id: &LeaseId, keep: u32, sink: Option<&BreakSink>, log: &mut CachingLog) -> bool {
        if let Some(b) = &mut self.breaking {
            let required = b.required & keep;
            if required != b.required {
                b.required = required;
                log.push(Delta::LeaseBreaking {
                    set: log.set(),
                    lease: id.model(),
                    to: b.requested,
                    required,
                    epoch: self.epoch,
                    deadline: b.deadline,
                });
            }
            return true;
        }
        self.start_break(id, keep, keep, true, sink, log)
    }

    /// Sends a break to `requested`, remembering that `required` is what
    /// must come of it. A version 2 lease's epoch moves with a new break
    /// (`new_break`), not with the next step of one that an acknowledgement
    /// continues (smbtorture smb2.lease.v2_breaking3: RH to R, then R to
    /// none, each under the epoch of the break from RWH).
    fn start_break(
        &mut self,
        id: &LeaseId,
        requested: u32,
        required: u32,
        new_break: bool,
        sink: Option<&BreakSink>,
        log: &mut CachingLog,
    ) -> bool {
        let to = self.state & requested;
        if to == self.state {
            return false;
        }
        let ack = self.state & (W | H) != 0;
        if self.v2 && new_break {
            self.epoch = self.epoch.wrapping_add(1);
        }
        let n = LeaseBreakNotification {
            new_epoch: self.epoch,
            flags: if ack { lease_break_flags::ACK_REQUIRED } else { 0 },
            lease_key: id.key,
            current_lease_state: self.state,
            new_lease_state: to,
        };
        if let Some(s) = sink {
            s.send_lease(&n);
        }
        let (set, lease, epoch) = (log.set(), id.model(), self.epoch);
        if ack {
            let (required, deadline) = (required & to, CachingLog::deadline());
            self.breaking = Some(Breaking { requested: to, required, deadline });
            log.push(Delta::LeaseBreaking { set, lease, to, required, epoch, deadline });
        } else {
            self.state = to;
            log.push(Delta::LeaseChanged { set, lease, state: to, epoch });
        }
        ack
    }

    /// A Lease Break Acknowledgment ([MS-SMB2] 3.3.5.22.2): no break in
    /// progress is STATUS_UNSUCCESSFUL, a state beyond what the break
    /// asked for STATUS_REQUEST_NOT_ACCEPTED (both as Windows answers).
    /// The acknowledged state is taken; if a later break needs less, a new
    /// break starts at once, in steps as Windows does: from a state with W
    /// or H to R first (then from R to none, which is not acknowledged).
    pub fn ack(
        &mut self,
        id: &LeaseId,
        acked: u32,
        sink: Option<&BreakSink>,
        log: &mut CachingLog,
    ) -> Result<u32, NtStatus> {
        let b = self.breaking.ok_or(NtStatus::UNSUCCESSFUL)?;
        if acked & !b.requested != 0 {
            return Err(NtStatus::REQUEST_NOT_ACCEPTED);
        }
        self.state = acked;
        self.breaking = None;
        log.push(Delta::LeaseAcked { set: log.set(), lease: id.model(), state: acked });
        if acked & !b.required != 0 {
            let step = if acked & (W | H) != 0 { b.required | R } else { b.required };
            self.start_break(id, step, b.required, false, sink, log);
        }
        Ok(acked)
    }

    /// Nobody acknowledged in time ([MS-SMB2] 3.3.6.5 Lease Break
    /// Acknowledgment Timer): the lease keeps nothing.
    pub fn time_out(&mut self, id: &LeaseId, log: &mut CachingLog) {
        if self.breaking.take().is_some() {
            self.state = 0;
            log.push(Delta::LeaseAcked { set: log.set(), lease: id.model(), state: 0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: LeaseId = LeaseId { client_guid: [1; 16], key: [2; 16] };

    /// What a break in progress asks for and needs.
    fn asks(l: &Lease) -> Option<(u32, u32)> {
        l.breaking.map(|b| (b.requested, b.required))
    }

    #[test]
    fn grants_need_read() {
        for (req, want) in
            [(0, 0), (R, R), (H, 0), (W, 0), (R | H, R | H), (R | W, R | W), (H | W, 0), (R | H | W, R | H | W)]
        {
            assert_eq!(grantable(req), want, "{req:#x}");
        }
        assert_eq!(grantable(0xF8 | R), R);
    }

    #[test]
    fn what_an_open_breaks() {
        assert_eq!(keep_for_open(R | W | H, false, false), R | H);
        assert_eq!(keep_for_open(R | W | H, false, true), R | W);
        assert_eq!(keep_for_open(R | W | H, true, false), 0);
        assert_eq!(keep_for_open(R | H, false, false), R | H);
        assert_eq!(keep_for_open(R | W, true, true), R | W);
    }

    #[test]
    fn breaks_acks_and_epochs() {
        let mut log = CachingLog::default();
        let mut l = Lease::new(R | W | H, Some(7));
        assert_eq!(l.epoch, 8);
        assert!(l.break_to(&ID, R | H, None, &mut log));
        assert_eq!(l.epoch, 9);
        assert_eq!(asks(&l), Some((R | H, R | H)));
        // A second break while the first is in progress only lowers the
        // target; no new epoch.
        assert!(l.break_to(&ID, R, None, &mut log));
        assert_eq!(l.epoch, 9);
        // Keeping more than asked is refused; the break goes on.
        assert_eq!(l.ack(&ID, R | W, None, &mut log), Err(NtStatus::REQUEST_NOT_ACCEPTED));
        assert_eq!(l.ack(&ID, W, None, &mut log), Err(NtStatus::REQUEST_NOT_ACCEPTED));
        // RH is what was asked, but R is what is needed: the break goes
        // on to R, under the same epoch (smbtorture smb2.lease.v2_breaking3).
        assert_eq!(l.ack(&ID, R | H, None, &mut log), Ok(R | H));
        assert_eq!(l.state, R | H);
        assert_eq!(asks(&l), Some((R, R)));
        assert_eq!(l.epoch, 9);
        assert_eq!(l.ack(&ID, R, None, &mut log), Ok(R));
        assert_eq!(l.ack(&ID, R, None, &mut log), Err(NtStatus::UNSUCCESSFUL));
        // An overwrite during a break: RH first, then R, then none
        // without an acknowledgement.
        let mut l = Lease::new(R | W | H, None);
        assert!(l.break_to(&ID, R | H, None, &mut log));
        assert!(l.break_to(&ID, 0, None, &mut log));
        assert_eq!(l.ack(&ID, R | H, None, &mut log), Ok(R | H));
        assert_eq!(asks(&l), Some((R, 0)));
        assert_eq!(l.ack(&ID, R, None, &mut log), Ok(R));
        assert_eq!((l.state, asks(&l)), (0, None));
        // From R alone the break needs no acknowledgement.
        assert!(!l.break_to(&ID, 0, None, &mut log));
        assert_eq!((l.state, asks(&l)), (0, None));
        // Nothing to break.
        assert!(!l.break_to(&ID, R | W | H, None, &mut log));
    }

    #[test]
    fn version_one_has_no_epoch_and_time_outs_drop_the_lease() {
        let mut log = CachingLog::default();
        let mut l = Lease::new(R | H, None);
        assert_eq!(l.epoch, 0);
        assert!(l.break_to(&ID, R, None, &mut log));
        assert_eq!(l.epoch, 0);
        l.time_out(&ID, &mut log);
        assert_eq!((l.state, asks(&l)), (0, None));
        // Acknowledging to less than asked is fine.
        let mut l = Lease::new(R | W | H, None);
        assert!(l.break_to(&ID, R | H, None, &mut log));
        assert_eq!(l.ack(&ID, 0, None, &mut log), Ok(0));
        assert_eq!(l.state, 0);
    }
}
