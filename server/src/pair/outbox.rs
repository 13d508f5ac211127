//! What leaves on a link: the messages its writer is given ([`Out`]), and the mirror
//! records held back for a moment to go out many to a frame ([`Outbox`]). The writer is
//! [`super::link::writer`]; what fills the outbox is [`super::mirror::LinkMirror`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use takeover::codec::Message;
use tokio::sync::mpsc::UnboundedSender;

/// What a link's writer is given.
#[derive(Debug)]
pub enum Out {
    Msg(Message),
    /// Records wait in this outbox: send them within [`HOLD`].
    Later(Arc<Outbox>),
    /// Close the link.
    Close,
}

/// How long shipped records may wait to be sent with the records after them, when no
/// append waits for them ([`nvram::Mirror::flush`] sends them at once). Records no
/// answer waits for (a plain open's, an echo's) travel many to a frame: one wake-up of
/// the link's writer, one frame, one store and sync on the partner and one
/// acknowledgement per batch instead of per record.
pub const HOLD: Duration = Duration::from_millis(2);
/// Most bytes held back: a batch this large is sent at once.
const HOLD_BYTES: usize = 256 << 10;

/// Records shipped and not yet queued for the link's writer: a contiguous run of our
/// log from `pos`.
#[derive(Default)]
struct Held {
    pos: u64,
    bytes: Vec<u8>,
}

/// The records of one link held back for a moment, and the link's writer queue they go
/// to. Everything leaves through [`Outbox::send`], under the lock, so that the queue
/// gets the records and the messages after them in the order they were shipped.
pub struct Outbox {
    out: UnboundedSender<Out>,
    held: Mutex<Held>,
    /// Most bytes held (at most [`HOLD_BYTES`], and a quarter of the ring: the partner
    /// refuses a run longer than its ring).
    limit: usize,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.lock();
        f.debug_struct("Outbox").field("pos", &h.pos).field("held", &h.bytes.len()).finish()
    }
}

impl Outbox {
    /// The outbox of a link whose writer reads `out`, for a journal whose ring holds
    /// `capacity` bytes.
    pub(super) fn new(out: UnboundedSender<Out>, capacity: u64) -> Outbox {
        let limit = HOLD_BYTES.min((capacity / 4) as usize).max(1);
        Outbox { out, held: Mutex::default(), limit }
    }

    /// Most bytes held before a batch is sent at once.
    #[cfg(test)]
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the records `parts` at `pos` of our log. The first records into an empty
    /// outbox ask the writer to send them within [`HOLD`] ([`Out::Later`]); a full one
    /// is queued at once.
    pub(super) fn put(self: &Arc<Self>, pos: u64, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.put_with(pos, len, |bytes| {
            for p in parts {
                bytes.extend_from_slice(p);
            }
        });
    }

    /// [`Outbox::put`] of `len` bytes that `fill` appends to the held bytes (read
    /// straight from the journal's ring: one copy).
    pub(super) fn put_with(self: &Arc<Self>, pos: u64, len: usize, fill: impl FnOnce(&mut Vec<u8>)) {
        let mut h = self.lock();
        if !h.bytes.is_empty() && (h.pos + h.bytes.len() as u64 != pos || h.bytes.len() + len > self.limit) {
            self.queue(&mut h);
        }
        let first = h.bytes.is_empty();
        if first {
            h.pos = pos;
            h.bytes.reserve(len.max(4096));
        }
        fill(&mut h.bytes);
        if h.bytes.len() >= self.limit {
            self.queue(&mut h);
        } else if first {
            let _ = self.out.send(Out::Later(self.clone()));
        }
    }

    /// Queues what is held for the writer, then `then` (if any) behind it.
    pub fn send(&self, then: Option<Message>) {
        let mut h = self.lock();
        self.queue(&mut h);
        if let Some(m) = then {
            // A closed queue: the link is gone, and the mirror is about to be detached.
            let _ = self.out.send(Out::Msg(m));
        }
    }

    fn queue(&self, h: &mut Held) {
        if h.bytes.is_empty() {
            return;
        }
        let records = Bytes::from(std::mem::take(&mut h.bytes));
        let _ = self.out.send(Out::Msg(Message::Mirror { pos: h.pos, records }));
    }
}
