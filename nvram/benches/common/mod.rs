//! Shared set-up of the benchmarks.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use nvram::{ClusterId, Durability, Entry, Journal, NodeId, OpId, Options, Ticket};

pub const SIZES: [usize; 3] = [128, 4096, 65536];

/// A journal in a fresh file of `len` bytes under `dir`.
pub fn journal(dir: &Path, len: u64, d: Durability) -> Arc<Journal> {
    journal_releasing(dir, len, d, false)
}

/// [`journal`] with `Options::release_free` set as `release` says (what `duet serve`
/// sets: the ring behind the head dropped from memory, faulted in again each lap).
pub fn journal_releasing(dir: &Path, len: u64, d: Durability, release: bool) -> Arc<Journal> {
    let path = dir.join(format!("bench-{:?}-{}-{release}", d, len));
    let _ = std::fs::remove_file(&path);
    let opts = Options::new(ClusterId(1), NodeId(1), d).releasing_free(release);
    Arc::new(Journal::create_file(&path, len, opts).unwrap())
}

/// One steady-state append: point 1 of a fresh operation; operations are retired a
/// little later, as a server would after point 4.
///
/// The policies as the server names them (`--journal-policy`): `process` is
/// `Durability::None`, `group` is `Durability::GroupCommit`.
pub const POLICIES: [(&str, Durability, bool); 3] = [
    ("process", Durability::None, false),
    ("process nowait", Durability::None, true),
    ("group", Durability::GroupCommit, false),
];
pub struct Appender {
    pub journal: Arc<Journal>,
    pub next: u64,
    pub lag: u64,
    /// Append with `append_nowait` (the server's path: the record is durable, in
    /// order, later; [`Appender::finish`] waits for the last one) instead of `append`.
    pub nowait: bool,
    pub last: Option<Ticket>,
}

impl Appender {
    pub fn new(journal: Arc<Journal>, thread: u64) -> Self {
        Appender { journal, next: thread << 40, lag: thread << 40, nowait: false, last: None }
    }

    pub fn nowait(mut self, nowait: bool) -> Self {
        self.nowait = nowait;
        self
    }

    /// Waits until every record this appender appended is durable, and retires all
    /// its operations: a finished appender's live operations would pin the head, and
    /// an appender still running would then find the ring full for ever.
    pub fn finish(&mut self) {
        if let Some(t) = self.last.take() {
            self.journal.commit(&t).unwrap();
        }
        self.retire_all();
    }

    /// Retires every operation appended so far.
    pub fn retire_all(&mut self) {
        while self.lag < self.next {
            self.journal.retire(OpId(self.lag)).unwrap();
            self.lag += 1;
        }
    }

    #[inline]
    pub fn append(&mut self, payload: &[u8]) {
        let op = OpId(self.next);
        loop {
            let entry = Entry::PreAck { op, request: payload };
            let r = if self.nowait { self.journal.append_nowait(entry) } else { self.journal.append(entry) };
            match r {
                Ok(t) => {
                    self.last = Some(t);
                    self.next += 1;
                    if self.next & 63 == 0 {
                        self.retire();
                    }
                    return;
                }
                // Back-pressure: an appender left behind pins the head with its live
                // operations (appenders do not wait for each other: one may fill the
                // ring while another is descheduled). It finishes them all, as a
                // server finishes the operations it started (their last records have
                // room kept for them), and tries again.
                Err(nvram::Error::Full { .. }) => {
                    self.retire_all();
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Retires all but the last few operations (every 64 appends, timed with them).
    pub fn retire(&mut self) {
        while self.lag + 8 < self.next {
            self.journal.retire(OpId(self.lag)).unwrap();
            self.lag += 1;
        }
    }
}
