//! The operations between point 1 and their retirement from the journal:
//! the bookkeeping the pipeline updates ([`Retirer::started`],
//! [`Retirer::answered`]) and the retiring task reads
//! ([`crate::restart::retire`], which says when an operation is retired).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::journal::OpId;

use super::lock;

/// The operations between point 1 and their retirement.
#[derive(Default)]
pub struct Retirer {
    /// Not yet answered: when each was started, whether its records were
    /// released, and how many of its elements are being carried out now
    /// ([`Retirer::busy`]).
    pub(crate) started: Mutex<HashMap<OpId, Started>>,
    /// Answered (past point 4), waiting for their file data to be flushed.
    pub(crate) answered: Mutex<Vec<OpId>>,
    /// Found in the log at start, retired after [`RECOVERED_GRACE`].
    pub(crate) recovered: Mutex<Vec<OpId>>,
    /// On: the server keeps a journal (else every call does nothing).
    on: std::sync::atomic::AtomicBool,
    /// Retire at point 4: no file data to flush first.
    at_once: std::sync::atomic::AtomicBool,
}

/// An operation between point 1 and point 4.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    pub at: Instant,
    pub released: bool,
    /// Elements being carried out (between point 2 and their point 3):
    /// while any is, the operation's records are not released, since what
    /// it does may reach the disk without its point-3 record, and a restart
    /// must find its request in the log to tell (an exclusive CREATE that
    /// made its file, a rename that moved one).
    pub busy: u32,
    /// Of those, the ones whose request is carried in checkpoints
    /// ([`crate::journal::Journal::carry_request`]): when every busy element
    /// is, the records may be released once a checkpoint that carries the
    /// request is durable ([`crate::restart::retire`]).
    pub carried: u32,
    /// A break notice's operation ([`Retirer::notice`]): no answer to
    /// keep for a replay, so it is retired, not only released, once
    /// [`crate::restart::retire::RELEASE_AFTER`] has passed without its
    /// point 4.
    pub notice: bool,
}

impl Retirer {
    /// Turns the bookkeeping on (the server keeps a journal); `flush_data`:
    /// an operation's file data must be flushed before it is retired.
    pub fn enable(&self, flush_data: bool) {
        self.on.store(true, std::sync::atomic::Ordering::Relaxed);
        self.at_once.store(!flush_data, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether an operation is retired at point 4 itself.
    pub fn at_once(&self) -> bool {
        self.at_once.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn on(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `op` passed point 1.
    pub fn started(&self, op: OpId) {
        if self.on() {
            lock(&self.started)
                .insert(op, Started { at: Instant::now(), released: false, busy: 0, carried: 0, notice: false });
        }
    }

    /// `op`, a break notice's operation ([`crate::journal::Journal::unsolicited`]),
    /// is about to pass point 3. Like a request's, it is retired after its
    /// point 4 ([`Retirer::answered`]); one whose point 4 never comes (its
    /// connection went before the client acknowledged it) is retired by the
    /// retiring task after [`crate::restart::retire::RELEASE_AFTER`], so
    /// that it does not hold the journal's head.
    pub fn notice(&self, op: OpId) {
        if self.on() {
            lock(&self.started)
                .insert(op, Started { at: Instant::now(), released: false, busy: 0, carried: 0, notice: true });
        }
    }

    /// An element of `op` is being carried out (from its point 2): its
    /// records stay until [`Retirer::idle`].
    pub fn busy(&self, op: OpId) {
        if self.on() {
            if let Some(s) = lock(&self.started).get_mut(&op) {
                s.busy += 1;
            }
        }
    }

    /// The element [`Retirer::busy`] named passed its point 3 (or went
    /// async, waiting with nothing done).
    pub fn idle(&self, op: OpId) {
        if self.on() {
            if let Some(s) = lock(&self.started).get_mut(&op) {
                s.busy = s.busy.saturating_sub(1);
            }
        }
    }

    /// One of `op`'s busy elements has its request carried in checkpoints
    /// (`on`), or no longer (`!on`).
    pub(crate) fn carried(&self, op: OpId, on: bool) {
        if self.on() {
            if let Some(s) = lock(&self.started).get_mut(&op) {
                s.carried = if on { s.carried + 1 } else { s.carried.saturating_sub(1) };
            }
        }
    }

    /// `op` passed point 4: true when the caller retires it now
    /// ([`Retirer::at_once`]), else it is retired with the next batch.
    pub fn answered(&self, op: OpId) -> bool {
        if !self.on() {
            return false;
        }
        lock(&self.started).remove(&op);
        if self.at_once() {
            return true;
        }
        lock(&self.answered).push(op);
        false
    }

    /// `op` was found in the log at start.
    pub fn recovered(&self, op: OpId) {
        if self.on() {
            lock(&self.recovered).push(op);
        }
    }

    /// Operations waiting to be retired, for `duet status`.
    pub fn pending(&self) -> usize {
        lock(&self.started).len() + lock(&self.answered).len() + lock(&self.recovered).len()
    }
}

/// An operation kept busy ([`Retirer::busy`]) until this is dropped.
pub struct Busy {
    server: std::sync::Arc<super::Server>,
    op: OpId,
    carried: bool,
}

impl Busy {
    /// Marks `op` busy until the guard is dropped.
    pub fn hold(server: &std::sync::Arc<super::Server>, op: OpId) -> Busy {
        server.retirer.busy(op);
        Busy { server: server.clone(), op, carried: false }
    }

    /// Marks `op` busy until the guard is dropped, for a long wait: its
    /// request (`frame`) is carried in checkpoints meanwhile if the journal
    /// takes it ([`crate::journal::Journal::carry_request`]), so that its
    /// records need not hold the journal's head while it waits.
    pub fn hold_carrying(server: &std::sync::Arc<super::Server>, op: OpId, frame: bytes::Bytes) -> Busy {
        let mut held = Busy::hold(server, op);
        if server.retirer.on() && server.journal.carry_request(op, frame) {
            server.retirer.carried(op, true);
            held.carried = true;
        }
        held
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.carried {
            self.server.retirer.carried(self.op, false);
            self.server.journal.end_carry(self.op);
        }
        self.server.retirer.idle(self.op);
    }
}
