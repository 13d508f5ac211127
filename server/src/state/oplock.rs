//! Oplocks: what each open holds, when it is broken, and how the holder is
//! told ([MS-SMB2] 3.3.1.10 Open.OplockLevel and Open.OplockState, 3.3.4.6,
//! 3.3.5.9 and 3.3.5.22.1; the rules follow [MS-FSA] 2.1.4.12 and
//! 2.1.5.17).
//!
//! Levels: none, level II (read caching, shared), exclusive (read and
//! write caching) and batch (exclusive plus handle caching). An exclusive
//! or batch oplock is broken when another open of the file comes along,
//! and that open waits until the holder acknowledges or
//! [`BREAK_TIMEOUT`] passes. Level II oplocks are broken to none, without
//! waiting, when anybody changes the file. Leases ([`super::lease`]) are
//! broken by the same rules, and the two interact: an oplock open breaks
//! leases, and a lease open breaks oplocks.
//!
//! The state itself is the state model's alone ([`crate::model::Caching`]):
//! the per-file table ([`super::files`]) decides breaks from it, under its
//! own lock and the model's, and changes it there at once. What the table
//! keeps of an oplock is runtime only: where its notices go
//! ([`BreakSink`]), and a new open's grant until the model has the open.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use protocol::msg::oplock_break::{LeaseBreakNotification, OplockBreak};
use protocol::msg::FileId;
use tokio::sync::mpsc;
use tracing::debug;

use super::session::SessionCrypto;
use crate::model::{Delta, OplockLevel, PersistentFileId, Timestamp};

pub use protocol::msg::create::oplock_level as level;

/// How long an open waits for a holder to acknowledge a break before
/// the oplock is taken away ([MS-SMB2] 3.3.2.1 Oplock Break
/// Acknowledgment Timer: "implementation-specific"; Windows and Samba
/// use 35 seconds).
pub const BREAK_TIMEOUT: Duration = Duration::from_secs(35);

/// The access bits of a "stat open".
const STAT_ACCESS: u32 = protocol::fscc::access::FILE_READ_ATTRIBUTES
    | protocol::fscc::access::FILE_WRITE_ATTRIBUTES
    | protocol::fscc::access::SYNCHRONIZE;

/// Is an open with this access a stat open: some attribute or
/// synchronize access and nothing else? A stat open neither breaks
/// oplocks (unless it overwrites the file) nor keeps another open from
/// getting an exclusive one, as Windows and Samba behave.
pub fn is_stat_open(access: u32) -> bool {
    access & STAT_ACCESS != 0 && access & !STAT_ACCESS == 0
}

/// Is an open with this access a stat open as far as leases go: as
/// [`is_stat_open`], READ_CONTROL allowed too. Such an open breaks no
/// lease (smbtorture smb2.lease.statopen4, as Windows and Samba), though it
/// still breaks an oplock.
pub fn is_lease_stat_open(access: u32) -> bool {
    let bits = STAT_ACCESS | protocol::fscc::access::READ_CONTROL;
    access & bits != 0 && access & !bits == 0
}

/// Is the level one that caches writes or handles (exclusive or batch)?
pub fn is_exclusive(l: u8) -> bool {
    l == level::EXCLUSIVE || l == level::BATCH
}

/// An open's oplock: the level held and a break in progress
/// (Open.OplockLevel, Open.OplockState Breaking). Not kept anywhere: read
/// from the state model ([`crate::model::Caching`]), or from a new open's
/// grant until its `OpenUp` reaches the model
/// ([`super::files::OpenRef::pending_oplock`]), changed here as a working
/// value whose changes go to a [`CachingLog`] and from there to the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OplockState {
    /// The level held now.
    pub level: u8,
    /// A break is in progress to this level (Open.OplockState Breaking).
    pub breaking_to: Option<u8>,
}

impl OplockState {
    /// The oplock of an open the model has, as its record says.
    pub fn of_model(c: crate::model::Caching) -> OplockState {
        match c {
            crate::model::Caching::Oplock { level, breaking } => {
                OplockState { level: level as u8, breaking_to: breaking.map(|b| b.to as u8) }
            }
            _ => OplockState::default(),
        }
    }

    /// Starts a break of open `pid`'s oplock to `to`: sends the
    /// notification to `sink`, and for an exclusive or batch oplock waits
    /// for the acknowledgement (returns true). Breaks from level II
    /// complete at once ([MS-SMB2] 2.2.24.1: no acknowledgement). The
    /// change goes to `log`.
    pub fn start_break(&mut self, to: u8, pid: u64, sink: Option<&BreakSink>, log: &mut CachingLog) -> bool {
        if self.level == level::NONE || self.breaking_to.is_some() {
            return self.breaking_to.is_some();
        }
        if let Some(s) = sink {
            s.send(to);
        }
        let open = PersistentFileId(pid);
        if is_exclusive(self.level) {
            self.breaking_to = Some(to);
            let to = OplockLevel::from_u8(to).unwrap_or(OplockLevel::None);
            log.push(Delta::OplockBreaking { open, to, deadline: CachingLog::deadline() });
            true
        } else {
            self.level = level::NONE;
            log.push(Delta::OplockSet { open, level: OplockLevel::None });
            false
        }
    }

    /// The notification of the break in progress, if there is one, again
    /// ([MS-SMB2] 2.2.23.1, 3.3.4.6), for a holder that took its handle
    /// back after a restart. True when one was sent.
    pub fn resend(&self, sink: Option<&BreakSink>) -> bool {
        let (Some(to), Some(s)) = (self.breaking_to, sink) else {
            return false;
        };
        s.send(to);
        true
    }

    /// The holder of open `pid`'s oplock did not answer in time: it keeps
    /// no oplock ([MS-SMB2] 3.3.6.2).
    pub fn time_out(&mut self, pid: u64, log: &mut CachingLog) {
        if self.breaking_to.take().is_some() {
            self.level = level::NONE;
            log.push(Delta::OplockSet { open: PersistentFileId(pid), level: OplockLevel::None });
        }
    }
}

/// Is the holder behind `sink` gone (a disconnected durable open: its
/// notifications cannot arrive)?
pub fn holder_gone(sink: Option<&BreakSink>) -> bool {
    sink.is_some_and(|s| s.tx.upgrade().is_none_or(|tx| tx.is_closed()))
}

/// The oplock and lease changes one call of the per-file table makes, as
/// state-model deltas in the order it makes them, on their way to the
/// model ([`super::files::CachingModel::change`]), which applies them at
/// once: the table keeps no log, and no copy of what they change. Only the
/// grant at CREATE is not a change of its own: it rides in the open's own
/// delta (`NewOpen::caching`).
#[derive(Debug)]
pub struct CachingLog {
    set: ::ids::SetId,
    deltas: Vec<Delta>,
}

impl Default for CachingLog {
    fn default() -> CachingLog {
        CachingLog::new(::ids::SetId(0))
    }
}

impl CachingLog {
    /// A log for the leases of share set `set`.
    pub fn new(set: ::ids::SetId) -> CachingLog {
        CachingLog { set, deltas: Vec::new() }
    }

    /// The set lease deltas name.
    pub fn set(&self) -> ::ids::SetId {
        self.set
    }

    pub fn push(&mut self, d: Delta) {
        self.deltas.push(d);
    }

    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }

    /// The deltas logged so far, in order (the log keeps them).
    pub fn deltas(&self) -> &[Delta] {
        &self.deltas
    }

    /// Takes what was logged, in order, leaving the log empty.
    pub fn take(&mut self) -> Vec<Delta> {
        std::mem::take(&mut self.deltas)
    }

    /// When a break starting now times out, as the model keeps it
    /// (Open.OplockTimeout, Lease.LeaseBreakTimeout).
    pub fn deadline() -> Timestamp {
        super::deltas::now().plus_ms(BREAK_TIMEOUT.as_millis() as u64)
    }
}

/// A break notice on its way to a holder's connection: what the pipeline
/// needs to encode it ([MS-SMB2] 3.3.4.6, 3.3.4.7). The file table makes
/// them while its lock is held; the holder's connection task sends them
/// through the pipeline's one encoder, with consistency points 3 and 4,
/// once that lock is long released (`pipeline::send_notice`).
pub struct Notice {
    /// The header's SessionId.
    pub session_id: u64,
    /// An Oplock Break Notification (2.2.23.1) or Lease Break
    /// Notification (2.2.23.2).
    pub body: BytesMut,
    /// The keys and session to encrypt with, when the session or share
    /// encrypts ([MS-SMB2] 3.3.4.1.4).
    pub encrypt: Option<(Arc<SessionCrypto>, u64)>,
}

/// The way to a holder's client: its connection's notice queue, and the
/// keys its session encrypts with. The queue is held weakly, so that a
/// kept (durable) open does not keep its dead connection's queue alive.
#[derive(Clone)]
pub struct BreakSink {
    pub tx: mpsc::WeakUnboundedSender<Notice>,
    pub session_id: u64,
    pub file_id: FileId,
    /// Set when the session or share encrypts: notifications are
    /// encrypted too ([MS-SMB2] 3.3.4.1.4).
    pub encrypt: Option<Arc<SessionCrypto>>,
    /// The client's connections and its ClientGuid: an unencrypted lease
    /// break goes on the client's oldest connection ([`super::clients`]).
    pub client: Option<(Arc<super::clients::ClientConnections<Notice>>, [u8; 16])>,
}

impl fmt::Debug for BreakSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakSink").field("session_id", &self.session_id).field("file_id", &self.file_id).finish()
    }
}

impl BreakSink {
    /// A queue that is already gone, for a holder whose connection is.
    pub fn unreachable() -> mpsc::WeakUnboundedSender<Notice> {
        mpsc::unbounded_channel().0.downgrade()
    }

    /// Queues an Oplock Break Notification ([MS-SMB2] 2.2.23.1, 3.3.4.6):
    /// MessageId all ones, no credits, not signed; encrypted when the
    /// session is.
    pub fn send(&self, to: u8) {
        let mut body = BytesMut::with_capacity(24);
        OplockBreak { oplock_level: to, file_id: self.file_id }.encode(&mut body);
        debug!(file = ?self.file_id, to, "oplock break");
        self.queue(body, self.session_id);
    }

    /// Queues a Lease Break Notification ([MS-SMB2] 2.2.23.2, 3.3.4.7).
    /// A lease belongs to no session, so SessionId is 0, unless the
    /// notification must be encrypted with the session's keys.
    pub fn send_lease(&self, n: &LeaseBreakNotification) {
        let mut body = BytesMut::with_capacity(44);
        n.encode(&mut body);
        debug!(key = ?n.lease_key, from = n.current_lease_state, to = n.new_lease_state, "lease break");
        if self.encrypt.is_none() {
            // Not tied to a session's keys: the client's oldest connection
            // gets it (smbtorture smb2.lease.v2_complex1, as smbd does).
            if let Some(tx) = self.client.as_ref().and_then(|(conns, guid)| conns.oldest(guid)) {
                let _ = tx.send(Notice { session_id: 0, body, encrypt: None });
                return;
            }
            self.queue(body, 0);
        } else {
            self.queue(body, self.session_id);
        }
    }

    /// Hands the notice to the holder's connection. The queue is not
    /// bounded, and needs not be: each open has at most one break in
    /// flight (an exclusive one waits for its acknowledgement, a level II
    /// or R one leaves nothing to break), so a connection holds at most
    /// about one notice per open it has.
    fn queue(&self, body: BytesMut, session_id: u64) {
        let Some(tx) = self.tx.upgrade() else {
            return;
        };
        let encrypt = self.encrypt.clone().map(|c| (c, self.session_id));
        let _ = tx.send(Notice { session_id, body, encrypt });
    }
}

/// Waits until no exclusive or batch oplock break and no lease break
/// needing an acknowledgement is in progress on the file: every holder
/// acknowledged or closed. After [`BREAK_TIMEOUT`] the
/// holders that did not answer lose their oplocks.
pub async fn wait_for_breaks(server: &super::Server, key: crate::model::FileUid) {
    let deadline = tokio::time::Instant::now() + BREAK_TIMEOUT;
    loop {
        let changed = server.oplock_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if !server.files().caching(|t, m| t.oplock_breaking(m.model(), &key)) {
            return;
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            debug!(?key, "oplock break timed out");
            server.files().caching(|t, m| t.oplock_time_out(m, &key));
            return;
        }
    }
}

/// The level an open gets, given the level it asked for, how many other
/// opens of the file count (those that are not stat opens, or hold an
/// oplock) and whether one of them holds an exclusive or batch oplock
/// ([MS-FSA] 2.1.5.17): exclusive and batch only for the sole open; level
/// II when nobody else caches writes.
pub fn grant(requested: u8, others: usize, other_exclusive: bool) -> u8 {
    match requested {
        level::EXCLUSIVE | level::BATCH if others == 0 => requested,
        level::II | level::EXCLUSIVE | level::BATCH if !other_exclusive => level::II,
        _ => level::NONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants() {
        assert_eq!(grant(level::BATCH, 0, false), level::BATCH);
        assert_eq!(grant(level::EXCLUSIVE, 0, false), level::EXCLUSIVE);
        assert_eq!(grant(level::BATCH, 1, false), level::II);
        assert_eq!(grant(level::BATCH, 1, true), level::NONE);
        assert_eq!(grant(level::II, 0, false), level::II);
        assert_eq!(grant(level::II, 2, true), level::NONE);
        assert_eq!(grant(level::NONE, 0, false), level::NONE);
        assert_eq!(grant(level::LEASE, 0, false), level::NONE);
        assert_eq!(grant(0x42, 0, false), level::NONE);
    }

    #[test]
    fn stat_opens() {
        use protocol::fscc::access::*;
        assert!(is_stat_open(FILE_READ_ATTRIBUTES | SYNCHRONIZE));
        assert!(is_stat_open(FILE_WRITE_ATTRIBUTES));
        assert!(!is_stat_open(0));
        assert!(!is_stat_open(FILE_READ_ATTRIBUTES | FILE_READ_DATA));
        assert!(!is_stat_open(DELETE));
    }

    #[test]
    fn breaks_from_level_two_need_no_ack() {
        let mut log = CachingLog::default();
        let mut s = OplockState { level: level::II, ..Default::default() };
        assert!(!s.start_break(level::NONE, 1, None, &mut log));
        assert_eq!(s.level, level::NONE);
        let mut b = OplockState { level: level::BATCH, ..Default::default() };
        assert!(b.start_break(level::II, 2, None, &mut log));
        assert_eq!(b.breaking_to, Some(level::II));
        assert_eq!(b.level, level::BATCH);
        b.time_out(2, &mut log);
        assert_eq!((b.level, b.breaking_to), (level::NONE, None));
        // Each change is logged for the model, in order.
        let open = |n| PersistentFileId(n);
        assert!(matches!(
            log.deltas(),
            [
                Delta::OplockSet { open: a, level: OplockLevel::None },
                Delta::OplockBreaking { open: b, to: OplockLevel::II, .. },
                Delta::OplockSet { open: c, level: OplockLevel::None },
            ] if *a == open(1) && *b == open(2) && *c == open(2)
        ));
    }
}
