//! Where the consistency points of DESIGN.md attach: the [`Journal`] trait the pipeline
//! writes them through, and its implementations.
//!
//! # The contract
//!
//! The pipeline calls the four points, and nothing else in the server writes them:
//!
//! | point | method | when the pipeline calls it |
//! |---|---|---|
//! | 1 pre-ack | [`Journal::pre_ack`] | a whole frame (request or compound chain) has been read, before any byte of answer (interim, credits or response) leaves |
//! | 2 pre-command | [`Journal::pre_command`] | before element `index` runs |
//! | 3 post-completion | [`Journal::post_completion`] | element `index` has its final response, before it is sent; with the element's [`ReplayKey`] and state delta |
//! | 4 post-reply-ack | [`Journal::post_reply_ack`] | the answer has been handed to the connection's writer (the NVRAM-backed server will wait for the TCP acknowledgement there, issue 13) |
//!
//! Every append is **fallible** and **ticketed**:
//!
//! - It returns once the record is in the journal (in log order, after every record
//!   appended before it), with a [`Ticket`]. That is all "appended" means: the record is
//!   not yet *durable*. [`Journal::durable`] resolves once the record of a ticket, and so
//!   every record appended before it, is durable under the journal's policy (synced as
//!   the policy says and, with a partner attached, acknowledged by its mirror). Whether a
//!   caller must wait at all is [`Journal::must_wait`]: false when every append is durable
//!   at once ([`NoJournal`], [`RecordingJournal`], a DAX region without a mirror).
//! - [`Error::Full`] means the journal has no room for the record **now**: nothing was
//!   written, and the same append may succeed once operations are retired or a
//!   checkpoint lets the head move. The pipeline answers it with back-pressure
//!   ([`with_backoff`]: the connection waits and retries, reading nothing more), never by
//!   dropping the record and never by answering before the point-1 record exists.
//!   [`Error::TooLarge`] (the record can never fit) and [`Error::Io`] end the connection:
//!   the client resends after reconnecting.
//!
//! What is durable when: a WRITE (any change) may be answered only once its point-3
//! record is durable (issue 13 adds that wait; the pipeline keeps the ticket of the last
//! point-3 record of a frame for it). Records are durable in log order, so that ticket
//! also covers the frame's points 1 and 2.
//!
//! After point 4, once the file data the operation wrote is on stable storage, the
//! operation is [retired](Journal::retire): its records may be overwritten, and its saved
//! responses are forgotten. [`Journal::checkpoint`] folds long-lived state (the model's
//! checkpoint bytes) into one record so the head can pass retired operations.
//!
//! The replay lookup [`Journal::replayed`] finds the saved response of a request whose
//! point-3 record exists, by its [`ReplayKey`] (DESIGN.md, "Exactly once"). The pipeline
//! computes keys only when [`Journal::keeps_replies`] says the journal uses them (hashing
//! a large WRITE's body costs time).
//!
//! # Implementations
//!
//! - [`NoJournal`]: keeps nothing; every ticket is durable at once. The server's default
//!   until the journal is wired in (issue 13).
//! - [`NvramJournal`] (`nvram.rs`): the points as `nvram::Entry` records in the
//!   memory-mapped journal.
//! - [`RecordingJournal`] (`recording.rs`): keeps every record in memory, deltas included,
//!   for tests that rebuild the state model from the deltas.
//! - [`ReplayKey`] and [`ReplayIndex`] (`replay.rs`): the replay key of a request and the
//!   in-memory index of saved responses.
//! - [`carry`]: the saved responses whose records left the log, carried in every
//!   checkpoint until their deadline, so that a second crash does not lose them.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub mod carry;
mod decision;
mod nvram;
mod recording;
mod replay;

pub use self::nvram::{Logged, NvramJournal};
pub use decision::Decision;
pub use recording::{Record, RecordingJournal};
pub use replay::{
    body_hash, created_file_id, digested_write, frame_elements, recorded_digest, spliced_write, write_digest, ReplayIndex,
    ReplayKey, Saved, WRITE_FIXED,
};

/// Identifies one request (frame) in the journal; the same id `nvram/` stores.
pub use ids::OpId;

/// Why an append (or a wait for durability) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No room for the record now; nothing was written. Back off and retry.
    #[error("journal full: record needs {needed} bytes, {free} free")]
    Full {
        /// Bytes the record needs.
        needed: u64,
        /// Bytes free when it was refused.
        free: u64,
    },
    /// The record can never fit (a journal limits records to half its ring).
    #[error("journal record of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Payload length asked for.
        len: u64,
        /// Largest payload the journal takes.
        max: u64,
    },
    /// Writing, syncing or mirroring the journal failed.
    #[error("journal I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Proof of an append: pass it to [`Journal::durable`] or [`Journal::is_durable`].
///
/// Where a lone WRITE's data is kept safe until the file data is flushed
/// ([`Journal::write_data`]); a WRITE in a compound always keeps it in its
/// record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteData {
    /// In its point-1 record, so that a restart after a power loss can write
    /// it again (DESIGN.md, "No lost writes"): the journal survives what
    /// the page cache does not, and appending to it is one sequential write
    /// that group commit shares among many small WRITEs.
    InRecord,
    /// Written to the file and synced there (`fdatasync`) before the WRITE
    /// is answered; its point-1 record holds only the request's fixed part.
    /// For a large WRITE under a journal that survives a power loss: its
    /// bytes reach the disk once instead of twice (as a file system's log
    /// writes a large write in place and logs only where it went).
    InFile,
    /// Nowhere but the page cache: the journal survives a killed process
    /// only, and so does the page cache. The record holds the fixed part.
    NotKept,
}

/// How long the answers a restart (or a takeover) finds in the log are kept
/// for a replay: their records are retired at once, and the answers are
/// carried in checkpoints until then ([`carry`]).
pub const KEPT_AFTER_RESTART: Duration = Duration::from_secs(120);

/// How long the answer of an operation whose answer never left (its
/// connection went, or it waits long) is kept for a replay; its records may
/// be overwritten after a second ([`Journal::release`]), and the answer is
/// carried in checkpoints until then ([`carry`]).
pub const KEPT_UNANSWERED: Duration = Duration::from_secs(60);

/// Wall-clock milliseconds since the Unix epoch: the deadlines of carried
/// answers ([`carry`]), which must hold across a restart.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A lone WRITE at least this large has its data written to the file and
/// synced, not copied into the journal ([`WriteData::InFile`]).
pub const WRITE_IN_FILE_FROM: usize = 64 * 1024;

/// [`Ticket::DURABLE`] is a record that was durable when appended (or a journal that
/// keeps nothing); an NVRAM journal's ticket carries where its record went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ticket(Option<::nvram::Ticket>);

impl Ticket {
    /// Durable at once: waiting for it returns immediately.
    pub const DURABLE: Ticket = Ticket(None);

    /// The NVRAM journal's ticket, if the record went into one.
    pub fn nvram(&self) -> Option<::nvram::Ticket> {
        self.0
    }

    /// Of two tickets of one journal, the one appended later: durable only when both are.
    pub fn later(self, other: Ticket) -> Ticket {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Ticket(Some(if b.end > a.end { b } else { a })),
            (a, b) => Ticket(a.or(b)),
        }
    }
}

impl From<::nvram::Ticket> for Ticket {
    fn from(t: ::nvram::Ticket) -> Ticket {
        Ticket(Some(t))
    }
}

/// What [`Journal::durable`] returns: a boxed future, so that `dyn Journal` works.
pub type Durable<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// The consistency points, and what the server needs of a journal besides them (see the
/// [module doc](self) for the contract).
pub trait Journal: Send + Sync {
    /// Point 1: the request bytes as read off connection `conn` (after decryption).
    /// Returns the id of the new operation and the record's ticket.
    fn pre_ack(&self, conn: u64, frame: &[u8]) -> Result<(OpId, Ticket), Error>;

    /// Point 2: element `index` of `op` is about to run.
    fn pre_command(&self, op: OpId, index: usize) -> Result<Ticket, Error>;

    /// Point 2 again: element `index` of `op` decided `decision` before it
    /// changes anything (a WRITE on an append-only open, where its data
    /// goes: [`Decision`]). Recorded under the policy's durability like any
    /// record; the caller waits for its ticket before it writes where a
    /// power loss must find it. The default: kept nowhere.
    fn decided(&self, op: OpId, index: usize, decision: &Decision) -> Result<Ticket, Error> {
        let _ = (op, index, decision);
        Ok(Ticket::DURABLE)
    }

    /// Point 3: element `index` of `op` finished with `status` and `response` (the
    /// body that will be sent) and changed the state by `delta` (the model's encoded
    /// delta; empty when it changed nothing). A request with a `key` has its response
    /// saved for [`Journal::replayed`].
    fn post_completion(
        &self,
        op: OpId,
        index: usize,
        key: Option<&ReplayKey>,
        status: u32,
        response: &[u8],
        delta: &[u8],
    ) -> Result<Ticket, Error>;

    /// Point 4: the answer to `op` has left.
    fn post_reply_ack(&self, op: OpId) -> Result<Ticket, Error>;

    /// A frame the server sends on its own (an oplock or lease break
    /// notice) to connection `conn`: the op id under which the pipeline
    /// then records it at point 3 (`post_completion`, element 0, no replay
    /// key) and point 4, as it does a response. It has no point 1 or 2: no
    /// request came. The default, [`OpId`] 0, is a journal that keeps no
    /// notices: the pipeline then records neither point for them.
    fn unsolicited(&self, conn: u64) -> OpId {
        let _ = conn;
        OpId(0)
    }

    /// Resolves once the record of `ticket` (and every record appended before it) is
    /// durable. Never blocks the calling async worker. The default is a journal
    /// whose appends are durable when they return (none, or one in memory).
    fn durable(&self, ticket: Ticket) -> Durable<'_> {
        let _ = ticket;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Whether the record of `ticket` is durable, without waiting (the default:
    /// always).
    fn is_durable(&self, ticket: Ticket) -> bool {
        let _ = ticket;
        true
    }

    /// Whether a ticket may be not yet durable when its append returns, so that an
    /// answer that must be durable first has to wait for [`Journal::durable`]
    /// (the default: never).
    fn must_wait(&self) -> bool {
        false
    }

    /// Whether the journal keeps saved responses by [`ReplayKey`] (so the pipeline
    /// should compute keys at point 3).
    fn keeps_replies(&self) -> bool;

    /// Whether the journal keeps what point 3 gives it (the response and the
    /// delta bytes). One that keeps nothing is given no delta bytes, so the
    /// pipeline does not encode them for nothing.
    fn keeps_records(&self) -> bool {
        true
    }

    /// The saved response of the request with this key, if its point-3 record exists
    /// and its operation is not retired.
    fn replayed(&self, key: &ReplayKey) -> Option<Saved>;

    /// A request with `key` that is not a replay is about to run (its point-1
    /// record exists): a response saved under the same key is an older
    /// request's (its client moved on and uses the key again, as lock
    /// sequence numbers wrap after 16), and must not answer a replay of this
    /// one. A restart does the same from the log's order
    /// ([`NvramJournal::recover_replies`]). The default: nothing to forget.
    fn forget(&self, key: &ReplayKey) {
        let _ = key;
    }

    /// `op` is finished: past point 4 and its file data on stable storage. Its records
    /// may be overwritten and its saved responses are forgotten. Unknown ops are ignored.
    fn retire(&self, op: OpId) -> Result<(), Error>;

    /// `op` has waited long without an answer that left (its connection went,
    /// or it waits for an event): its records may be overwritten once its
    /// file data is on stable storage, but its saved responses are kept for a
    /// replay until [`Journal::retire`]. A record it appends later keeps it
    /// live again. The default: [`Journal::retire`].
    fn release(&self, op: OpId) -> Result<(), Error> {
        self.retire(op)
    }

    /// `op` waits long while one of its elements is being carried out (a rename
    /// waiting for lease breaks, which renames after its wait): its request
    /// (`frame`, the point-1 bytes) is written into every checkpoint until
    /// [`Journal::end_carry`], so that once a checkpoint that carries it is
    /// durable its records need not hold the ring's head ([`carry`]). Returns
    /// whether it is carried (the default: no; its records stay in the log).
    fn carry_request(&self, op: OpId, frame: bytes::Bytes) -> bool {
        let _ = (op, frame);
        false
    }

    /// `op`'s request is no longer carried ([`Journal::carry_request`]).
    fn end_carry(&self, op: OpId) {
        let _ = op;
    }

    /// Where a lone WRITE of `len` bytes of data is kept safe until its file
    /// data is flushed ([`WriteData`]). The default: in its point-1 record.
    fn write_data(&self, len: usize) -> WriteData {
        let _ = len;
        WriteData::InRecord
    }

    /// Appends a checkpoint of long-lived state (the model's checkpoint bytes)
    /// without waiting for it to be durable: the caller appends it under the model's
    /// lock, so that no state change falls between the state it folds and its place
    /// in the log. Wait with [`Journal::durable`], then [`Journal::compact`].
    fn checkpoint(&self, state: &[u8]) -> Result<Ticket, Error>;

    /// A change of state that no request made (a lost connection, an expired or
    /// purged retained handle, a restore): its deltas, recorded so that recovery
    /// applies them in log order with the requests' (the default: kept nowhere).
    fn state_change(&self, delta: &[u8]) -> Result<Ticket, Error> {
        let _ = delta;
        Ok(Ticket::DURABLE)
    }

    /// Lets the head move past retired operations up to the latest durable
    /// checkpoint, so the ring has room again (the default: nothing to do).
    fn compact(&self) -> Result<(), Error> {
        Ok(())
    }

    /// How full the journal is, for `duet status` and for the retirer's choice of
    /// when to checkpoint (the default: a journal without a ring).
    fn usage(&self) -> Option<Usage> {
        None
    }

    /// The live operation whose first record is the oldest in the ring, and that
    /// record's position: what keeps the head where it is (for the log of a ring
    /// filling up).
    fn oldest_live(&self) -> Option<(OpId, u64)> {
        None
    }
}

/// How much of a journal's ring is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes between the head and the tail: what recovery would read.
    pub used: u64,
    /// The ring's capacity.
    pub capacity: u64,
}

/// A journal that keeps nothing: every append succeeds and is durable at once.
pub struct NoJournal;

impl Journal for NoJournal {
    fn pre_ack(&self, _conn: u64, _frame: &[u8]) -> Result<(OpId, Ticket), Error> {
        Ok((OpId(0), Ticket::DURABLE))
    }
    fn pre_command(&self, _op: OpId, _index: usize) -> Result<Ticket, Error> {
        Ok(Ticket::DURABLE)
    }
    fn post_completion(
        &self,
        _: OpId,
        _: usize,
        _: Option<&ReplayKey>,
        _: u32,
        _: &[u8],
        _: &[u8],
    ) -> Result<Ticket, Error> {
        Ok(Ticket::DURABLE)
    }
    fn post_reply_ack(&self, _op: OpId) -> Result<Ticket, Error> {
        Ok(Ticket::DURABLE)
    }
    fn keeps_replies(&self) -> bool {
        false
    }
    fn keeps_records(&self) -> bool {
        false
    }
    fn replayed(&self, _key: &ReplayKey) -> Option<Saved> {
        None
    }
    fn retire(&self, _op: OpId) -> Result<(), Error> {
        Ok(())
    }
    fn checkpoint(&self, _state: &[u8]) -> Result<Ticket, Error> {
        Ok(Ticket::DURABLE)
    }
}

/// First wait after [`Error::Full`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(1);
/// Longest wait between two tries.
pub const BACKOFF_MAX: Duration = Duration::from_millis(10);

/// Runs `append` until it does not fail with [`Error::Full`], waiting between tries
/// from [`BACKOFF_MIN`], doubling up to [`BACKOFF_MAX`]. This is the back-pressure of a
/// full journal: the caller (a connection's task) reads and answers nothing meanwhile,
/// and the record is never dropped. Any other result is returned as it is.
pub async fn with_backoff<T>(mut append: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let mut wait = BACKOFF_MIN;
    let mut refused = 0u64;
    loop {
        match append() {
            Err(Error::Full { needed, free }) => {
                refused += 1;
                if refused == 1 {
                    tracing::debug!(needed, free, "journal full: backing off");
                } else if refused.is_power_of_two() && wait == BACKOFF_MAX {
                    tracing::warn!(refused, needed, free, "journal still full: connection held back");
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(BACKOFF_MAX);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn no_journal_is_durable_at_once() {
        let j = NoJournal;
        let (op, t) = j.pre_ack(1, b"frame").unwrap();
        assert_eq!(t, Ticket::DURABLE);
        assert!(j.is_durable(j.pre_command(op, 0).unwrap()));
        assert!(!j.must_wait());
        assert!(!j.keeps_replies());
        let key = ReplayKey::Create(crate::model::ids::CreateGuid([1; 16]));
        j.post_completion(op, 0, Some(&key), 0, b"resp", b"").unwrap();
        assert_eq!(j.replayed(&key), None);
        j.post_reply_ack(op).unwrap();
        j.retire(op).unwrap();
        j.checkpoint(b"state").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(j.durable(t)).unwrap();
    }

    #[test]
    fn later_picks_the_ticket_further_on() {
        let a = Ticket::from(::nvram::Ticket { pos: 0, end: 64 });
        let b = Ticket::from(::nvram::Ticket { pos: 64, end: 128 });
        assert_eq!(a.later(b), b);
        assert_eq!(b.later(a), b);
        assert_eq!(Ticket::DURABLE.later(a), a);
        assert_eq!(a.later(Ticket::DURABLE), a);
        assert_eq!(Ticket::DURABLE.later(Ticket::DURABLE), Ticket::DURABLE);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_retries_full_and_passes_other_results() {
        let tries = AtomicU32::new(0);
        let r = with_backoff(|| {
            if tries.fetch_add(1, Ordering::Relaxed) < 20 {
                Err(Error::Full { needed: 64, free: 0 })
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(tries.load(Ordering::Relaxed), 21);

        let tries = AtomicU32::new(0);
        let r: Result<(), Error> = with_backoff(|| {
            tries.fetch_add(1, Ordering::Relaxed);
            Err(Error::TooLarge { len: 9, max: 8 })
        })
        .await;
        assert!(matches!(r, Err(Error::TooLarge { .. })));
        assert_eq!(tries.load(Ordering::Relaxed), 1);
    }
}
