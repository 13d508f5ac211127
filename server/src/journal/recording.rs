//! [`RecordingJournal`]: every record kept in memory, for tests.

use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

use super::{Error, Journal, OpId, ReplayIndex, ReplayKey, Saved, Ticket, WriteData};

/// One call of a [`Journal`] method, as a [`RecordingJournal`] keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Point 1.
    PreAck {
        /// The new operation.
        op: OpId,
        /// The connection it came on.
        conn: u64,
        /// The request bytes.
        frame: Vec<u8>,
    },
    /// Point 2.
    PreCommand {
        /// The operation.
        op: OpId,
        /// The element about to run.
        index: usize,
    },
    /// Point 3.
    PostCompletion {
        /// The operation.
        op: OpId,
        /// The element that finished.
        index: usize,
        /// Its replay key, if the pipeline gave one.
        key: Option<ReplayKey>,
        /// Its response status.
        status: u32,
        /// Its response body.
        response: Vec<u8>,
        /// Its state delta (the model's encoding).
        delta: Vec<u8>,
    },
    /// Point 4.
    PostReplyAck {
        /// The operation.
        op: OpId,
    },
    /// [`Journal::unsolicited`]: a break notice's operation begins.
    Unsolicited {
        /// The new operation.
        op: OpId,
        /// The connection the notice goes to.
        conn: u64,
    },
    /// [`Journal::retire`].
    Retire {
        /// The operation.
        op: OpId,
    },
    /// [`Journal::checkpoint`].
    Checkpoint {
        /// The state bytes.
        state: Vec<u8>,
    },
}

/// A journal that keeps every record in memory, in the order appended, deltas included:
/// for tests that check the points the pipeline writes, or rebuild the state model from
/// the deltas and compare it with the live one. Every append is durable at once; it
/// keeps saved responses by replay key like the real journal, and
/// [`RecordingJournal::refuse_next`] makes appends fail with [`Error::Full`], to test
/// back-pressure. Memory grows with every request: tests only.
#[derive(Debug, Default)]
pub struct RecordingJournal {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: Vec<Record>,
    next_op: u64,
    refuse: u64,
    refused: u64,
    replies: ReplayIndex,
    /// Where a lone large WRITE's data is kept ([`RecordingJournal::keeping_write_data`]).
    large_writes: Option<WriteData>,
}

impl RecordingJournal {
    /// An empty journal.
    pub fn new() -> RecordingJournal {
        RecordingJournal::default()
    }

    /// Every record so far, in order.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.clone()
    }

    /// Takes the records so far, leaving none.
    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut self.lock().records)
    }

    /// The point-3 deltas so far, in order, with their operation and element.
    pub fn deltas(&self) -> Vec<(OpId, usize, Vec<u8>)> {
        self.lock()
            .records
            .iter()
            .filter_map(|r| match r {
                Record::PostCompletion { op, index, delta, .. } => Some((*op, *index, delta.clone())),
                _ => None,
            })
            .collect()
    }

    /// A lone WRITE of [`super::WRITE_IN_FILE_FROM`] bytes or more keeps
    /// its data as `w` says ([`Journal::write_data`]), as the NVRAM journal's
    /// policies do; the default keeps every WRITE's data in its record.
    pub fn keeping_write_data(self, w: WriteData) -> RecordingJournal {
        self.lock().large_writes = Some(w);
        self
    }

    /// The next `n` appends (of any point) fail with [`Error::Full`] and record nothing.
    pub fn refuse_next(&self, n: u64) {
        self.lock().refuse = n;
    }

    /// How many appends were refused so far.
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `record` unless told to refuse it.
    fn append(&self, make: impl FnOnce(&mut Inner) -> Record) -> Result<(), Error> {
        let mut g = self.lock();
        if g.refuse > 0 {
            g.refuse -= 1;
            g.refused += 1;
            return Err(Error::Full { needed: 0, free: 0 });
        }
        let r = make(&mut g);
        g.records.push(r);
        Ok(())
    }
}

impl Journal for RecordingJournal {
    fn pre_ack(&self, conn: u64, frame: &[u8]) -> Result<(OpId, Ticket), Error> {
        let mut op = OpId(0);
        self.append(|g| {
            g.next_op += 1;
            op = OpId(g.next_op);
            Record::PreAck { op, conn, frame: frame.to_vec() }
        })?;
        Ok((op, Ticket::DURABLE))
    }

    fn pre_command(&self, op: OpId, index: usize) -> Result<Ticket, Error> {
        self.append(|_| Record::PreCommand { op, index })?;
        Ok(Ticket::DURABLE)
    }

    fn post_completion(
        &self,
        op: OpId,
        index: usize,
        key: Option<&ReplayKey>,
        status: u32,
        response: &[u8],
        delta: &[u8],
    ) -> Result<Ticket, Error> {
        self.append(|g| {
            if let Some(k) = key {
                g.replies.insert(
                    *k,
                    Saved { op, status, response: Bytes::copy_from_slice(response), ticket: Ticket::DURABLE },
                );
            }
            Record::PostCompletion {
                op,
                index,
                key: key.copied(),
                status,
                response: response.to_vec(),
                delta: delta.to_vec(),
            }
        })?;
        Ok(Ticket::DURABLE)
    }

    fn post_reply_ack(&self, op: OpId) -> Result<Ticket, Error> {
        self.append(|_| Record::PostReplyAck { op })?;
        Ok(Ticket::DURABLE)
    }

    fn unsolicited(&self, conn: u64) -> OpId {
        // Never refused: a notice's op id is not an append (its point 3 is).
        let mut g = self.lock();
        g.next_op += 1;
        let op = OpId(g.next_op);
        g.records.push(Record::Unsolicited { op, conn });
        op
    }

    fn keeps_replies(&self) -> bool {
        true
    }

    fn write_data(&self, len: usize) -> WriteData {
        match self.lock().large_writes {
            Some(w) if len >= super::WRITE_IN_FILE_FROM => w,
            _ => WriteData::InRecord,
        }
    }

    fn replayed(&self, key: &ReplayKey) -> Option<Saved> {
        self.lock().replies.get(key)
    }

    fn forget(&self, key: &ReplayKey) {
        self.lock().replies.forget(key);
    }

    fn retire(&self, op: OpId) -> Result<(), Error> {
        let mut g = self.lock();
        g.replies.retire(op);
        g.records.push(Record::Retire { op });
        Ok(())
    }

    fn checkpoint(&self, state: &[u8]) -> Result<Ticket, Error> {
        self.append(|_| Record::Checkpoint { state: state.to_vec() })?;
        Ok(Ticket::DURABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::CreateGuid;

    #[test]
    fn records_every_call_in_order_with_its_delta() {
        let j = RecordingJournal::new();
        let key = ReplayKey::Create(CreateGuid([3; 16]));
        let (a, _) = j.pre_ack(7, b"frame a").unwrap();
        j.pre_command(a, 0).unwrap();
        j.post_completion(a, 0, Some(&key), 0, b"resp a0", b"delta a0").unwrap();
        j.pre_command(a, 1).unwrap();
        j.post_completion(a, 1, None, 0, b"resp a1", b"").unwrap();
        j.post_reply_ack(a).unwrap();
        let (b, _) = j.pre_ack(8, b"frame b").unwrap();
        assert_ne!(a, b);
        j.checkpoint(b"state").unwrap();
        j.retire(a).unwrap();
        assert_eq!(
            j.records(),
            [
                Record::PreAck { op: a, conn: 7, frame: b"frame a".to_vec() },
                Record::PreCommand { op: a, index: 0 },
                Record::PostCompletion {
                    op: a,
                    index: 0,
                    key: Some(key),
                    status: 0,
                    response: b"resp a0".to_vec(),
                    delta: b"delta a0".to_vec()
                },
                Record::PreCommand { op: a, index: 1 },
                Record::PostCompletion {
                    op: a,
                    index: 1,
                    key: None,
                    status: 0,
                    response: b"resp a1".to_vec(),
                    delta: vec![]
                },
                Record::PostReplyAck { op: a },
                Record::PreAck { op: b, conn: 8, frame: b"frame b".to_vec() },
                Record::Checkpoint { state: b"state".to_vec() },
                Record::Retire { op: a },
            ]
        );
        assert_eq!(j.deltas(), [(a, 0, b"delta a0".to_vec()), (a, 1, vec![])]);
        assert_eq!(j.take().len(), 9);
        assert!(j.records().is_empty());
    }

    #[test]
    fn keeps_saved_responses_until_retired() {
        let j = RecordingJournal::new();
        let key = ReplayKey::Create(CreateGuid([4; 16]));
        let (a, _) = j.pre_ack(1, b"a").unwrap();
        j.post_completion(a, 0, Some(&key), 0, b"first", b"").unwrap();
        // The same key again (a second, unflagged request) takes it over.
        let (b, _) = j.pre_ack(1, b"b").unwrap();
        j.post_completion(b, 0, Some(&key), 0, b"second", b"").unwrap();
        assert_eq!(&j.replayed(&key).unwrap().response[..], b"second");
        // Retiring the first leaves the second's.
        j.retire(a).unwrap();
        assert_eq!(j.replayed(&key).map(|s| s.op), Some(b));
        j.retire(b).unwrap();
        assert_eq!(j.replayed(&key), None);
    }

    #[test]
    fn refused_appends_record_nothing() {
        let j = RecordingJournal::new();
        j.refuse_next(2);
        assert!(matches!(j.pre_ack(1, b"a"), Err(Error::Full { .. })));
        assert!(matches!(j.pre_command(OpId(1), 0), Err(Error::Full { .. })));
        let (op, _) = j.pre_ack(1, b"a").unwrap();
        assert_eq!(op, OpId(1));
        assert_eq!(j.refused(), 2);
        assert_eq!(j.records().len(), 1);
    }
}
