//! Shared set-up of the benchmarks.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use nvram::{ClusterId, Durability, Entry, Journal, NodeId, OpId, Options};

pub const SIZES: [usize; 3] = [128, 4096, 65536];

/// A journal in a fresh file of `len` bytes under `dir`.
pub fn journal(dir: &Path, len: u64, d: Durability) -> Arc<Journal> {
    let path = dir.join(format!("bench-{:?}-{}", d, len));
    let _ = std::fs::remove_file(&path);
    Arc::new(Journal::create_file(&path, len, Options::new(ClusterId(1), NodeId(1), d)).unwrap())
}

/// One steady-state append: point 1 of a fresh operation; operations are retired a
/// little later, as a server would after point 4.
pub struct Appender {
    pub journal: Arc<Journal>,
    pub next: u64,
    pub lag: u64,
}

impl Appender {
    pub fn new(journal: Arc<Journal>, thread: u64) -> Self {
        Appender { journal, next: thread << 40, lag: thread << 40 }
    }

    #[inline]
    pub fn append(&mut self, payload: &[u8]) {
        let op = OpId(self.next);
        loop {
            match self.journal.append(Entry::PreAck { op, request: payload }) {
                Ok(_) => {
                    self.next += 1;
                    if self.next & 63 == 0 {
                        self.retire();
                    }
                    return;
                }
                // Back-pressure: a stalled appender pins the head; let it catch up.
                Err(nvram::Error::Full { .. }) => {
                    self.retire();
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
