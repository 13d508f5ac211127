//! Journal mirroring over the interconnect: the sending side ([`LinkMirror`], this
//! node's `nvram::Mirror`) and the receiving side ([`receiver`], the thread that writes
//! the partner's records into this node's mirror ring).
//!
//! The sending side never blocks: the journal's publisher calls `ship` in log order,
//! which copies the bytes into the link's [`Outbox`]. Records wait there at most
//! [`super::outbox::HOLD`] (or until a batch gathers), to go out many to a [`Message::Mirror`];
//! a commit that waits for them sends them at once (`flush`). The partner stores them (`nvram::Journal::receive`, synced as its policy
//! says) and answers [`Message::MirrorAck`] with the contiguous end it holds; the link
//! hands that to the journal's `MirrorAck`, and an append waiting for durability
//! returns. When the link ends, the server detaches the mirror
//! (`nvram::Journal::detach_mirror`): the waiters return on local durability alone.
//!
//! The receiving side is one thread for the node, so that the partner's ring is
//! written strictly in the order it was sent, even when a new link replaces an old one:
//! items of any link but the newest are dropped. It checks that records follow the
//! head the partner sent and each other without a gap, and stores the runs queued
//! behind each other with one sync and one acknowledgement (up to 8 MiB).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use bytes::Bytes;
use nvram::{Journal, Mirror, MirrorAck, MirrorMeta, Run, Shipment};
use takeover::codec::Message;
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use super::link::Counters;
use super::outbox::{Out, Outbox};

/// How far the mirror of our journal got (the sending side), for `duet status`.
#[derive(Debug, Default)]
pub struct SendProgress {
    /// The end of what was queued for the partner.
    pub shipped: AtomicU64,
    /// The end the partner acknowledged.
    pub acked: AtomicU64,
}

/// This node's `nvram::Mirror` over one link.
pub struct LinkMirror {
    outbox: Arc<Outbox>,
    progress: Arc<SendProgress>,
    /// The journal's acknowledgement handle of this attachment (given with every
    /// shipment).
    ack: Mutex<Option<MirrorAck>>,
}

impl LinkMirror {
    /// The mirror of a journal whose ring holds `capacity` bytes, over the link whose
    /// writer reads `out`.
    pub fn new(out: UnboundedSender<Out>, progress: Arc<SendProgress>, capacity: u64) -> LinkMirror {
        progress.shipped.store(0, Ordering::Release);
        progress.acked.store(0, Ordering::Release);
        let outbox = Arc::new(Outbox::new(out, capacity));
        LinkMirror { outbox, progress, ack: Mutex::new(None) }
    }

    fn keep(&self, ack: &MirrorAck) {
        let mut a = self.ack.lock().unwrap_or_else(|e| e.into_inner());
        if a.is_none() {
            *a = Some(ack.clone());
        }
    }

    fn handle(&self) -> Option<MirrorAck> {
        self.ack.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The partner holds every byte below `end`. Refused (false) when that is more
    /// than was shipped: a partner cannot hold what it was never sent.
    pub fn acked(&self, end: u64) -> bool {
        if end > self.progress.shipped.load(Ordering::Acquire) {
            return false;
        }
        if let Some(a) = self.handle() {
            a.records(end);
        }
        self.progress.acked.fetch_max(end, Ordering::AcqRel);
        true
    }

    /// The partner stored our head `head`.
    pub fn head_acked(&self, head: u64) {
        if let Some(a) = self.handle() {
            a.head(head);
        }
    }
}

impl Mirror for LinkMirror {
    fn ship(&self, shipment: Shipment<'_>, ack: &MirrorAck) {
        self.keep(ack);
        // Counted as shipped before it is queued: on loopback the partner's
        // acknowledgement can come back before the line after the send runs, and an
        // acknowledgement beyond what was shipped ends the link.
        self.progress.shipped.fetch_max(shipment.end(), Ordering::AcqRel);
        self.outbox.put(shipment.pos, shipment.parts);
    }

    fn ship_run(&self, run: Run<'_>, ack: &MirrorAck) {
        self.keep(ack);
        self.progress.shipped.fetch_max(run.end(), Ordering::AcqRel);
        self.outbox.put_with(run.pos, run.len as usize, |bytes| run.read_append(bytes));
    }

    fn ship_meta(&self, meta: MirrorMeta, ack: &MirrorAck) {
        self.keep(ack);
        // Behind the records shipped before it: the partner takes its first head as
        // where the records start.
        let m = Message::MirrorMeta { head: meta.head, generation: meta.generation, capacity: meta.capacity };
        self.outbox.send(Some(m));
    }

    fn flush(&self) {
        self.outbox.send(None);
    }
}

/// Most bytes of the partner's records stored with one sync.
const BATCH: u64 = 8 << 20;

/// What the receiving thread is given.
pub enum Item {
    /// Link `link` is now the partner's: drop what older links still send.
    NewLink {
        link: u64,
    },
    Meta {
        link: u64,
        meta: MirrorMeta,
        reply: UnboundedSender<Out>,
    },
    Records {
        link: u64,
        pos: u64,
        records: Bytes,
        reply: UnboundedSender<Out>,
    },
    /// The partner says our mirror of its journal is current up to `end`
    /// ([`Message::MirrorCurrent`]).
    Current {
        link: u64,
        end: u64,
    },
}

/// How far the partner's mirror in our journal got (the receiving side).
#[derive(Debug, Default)]
pub struct ReceiveProgress {
    /// The end of the partner's records we hold (logical position in its ring).
    pub end: AtomicU64,
    /// The partner's head as we hold it.
    pub head: AtomicU64,
    /// Bytes received since start.
    pub bytes: AtomicU64,
    /// The link on which the partner said our mirror is current (its resync on that
    /// link is done, and we hold what it said); 0: none. The mirror is current only
    /// while that is the partner's newest link ([`super::Pair::partner_mirror_current`]):
    /// a newer link resyncs, whatever this thread has handled yet. It stays as it
    /// was when a link ends, for the takeover to judge.
    pub current: AtomicU64,
}

/// Starts the receiving thread; it ends when every sender of `Item`s is gone.
pub fn receiver(
    region: Arc<Journal>,
    progress: Arc<ReceiveProgress>,
    counters: Arc<Counters>,
) -> std::io::Result<mpsc::Sender<Item>> {
    let (tx, rx) = mpsc::channel::<Item>();
    std::thread::Builder::new().name("duet-mirror-rx".into()).spawn(move || {
        let mut current = 0u64;
        // Where the next records must start: set by the link's first head.
        let mut expected: Option<u64> = None;
        let mut queue: VecDeque<Item> = VecDeque::new();
        let batch_max = BATCH.min(region.capacity() / 2);
        loop {
            if queue.is_empty() {
                match rx.recv() {
                    Ok(item) => queue.push_back(item),
                    Err(_) => return,
                }
            }
            while let Ok(item) = rx.try_recv() {
                queue.push_back(item);
            }
            let Some(item) = queue.pop_front() else { continue };
            match item {
                Item::NewLink { link } => {
                    current = link;
                    expected = None;
                }
                Item::Current { link, end } if link == current => {
                    // Every run before this message was stored (items come in order).
                    if expected.is_some_and(|e| e >= end) {
                        progress.current.store(link, Ordering::Release);
                    } else {
                        counters.stale.fetch_add(1, Ordering::Relaxed);
                        warn!(end, ?expected, "the partner says our mirror is current beyond what we hold");
                    }
                }
                Item::Meta { link, meta, reply } if link == current => match region.receive_meta(meta) {
                    Ok(()) => {
                        expected.get_or_insert(meta.head);
                        progress.head.store(meta.head, Ordering::Release);
                        let _ = reply.send(Out::Msg(Message::MirrorMetaAck { head: meta.head }));
                    }
                    Err(e) => {
                        warn!("the partner's journal head cannot be stored: {e}; closing its link");
                        let _ = reply.send(Out::Close);
                        current = 0;
                    }
                },
                Item::Records { link, pos, records, reply } if link == current => {
                    if expected != Some(pos) || records.len() as u64 > region.capacity() {
                        counters.stale.fetch_add(1, Ordering::Relaxed);
                        warn!(pos, ?expected, "mirror records out of place (a gap or an overlap); closing the link");
                        let _ = reply.send(Out::Close);
                        current = 0;
                        continue;
                    }
                    // The runs of the same link queued right behind, when they follow on:
                    // stored with one sync and acknowledged once (a group commit of the
                    // mirror). One that does not follow on is left for the check above.
                    let mut end = pos + records.len() as u64;
                    let mut batch = vec![records];
                    while let Some(Item::Records { link: l, pos: p, records: r, .. }) = queue.front() {
                        if *l != link || *p != end || end - pos + r.len() as u64 > batch_max {
                            break;
                        }
                        end += r.len() as u64;
                        if let Some(Item::Records { records, .. }) = queue.pop_front() {
                            batch.push(records);
                        }
                    }
                    crate::failpoint::pause("mirror-receive");
                    let parts: Vec<&[u8]> = batch.iter().map(|b| &b[..]).collect();
                    match region.receive(pos, &parts) {
                        Ok(()) => {
                            expected = Some(end);
                            progress.end.store(end, Ordering::Release);
                            progress.bytes.fetch_add(end - pos, Ordering::Relaxed);
                            let _ = reply.send(Out::Msg(Message::MirrorAck { end }));
                        }
                        Err(e) => {
                            warn!("the partner's records cannot be stored: {e}; closing its link");
                            let _ = reply.send(Out::Close);
                            current = 0;
                        }
                    }
                }
                // An older link's, or one already closed.
                Item::Meta { .. } | Item::Records { .. } | Item::Current { .. } => {}
            }
        }
    })?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nvram::{ClusterId, Durability, Entry, MemStorage, NodeId, OpId, Options};
    use tokio::sync::mpsc::unbounded_channel;

    use super::*;

    fn journal(node: u16) -> (Arc<Journal>, MemStorage) {
        let storage = MemStorage::new(1 << 20);
        let opts = Options::new(ClusterId(7), NodeId(node), Durability::None);
        (Arc::new(Journal::create(storage.clone(), opts).unwrap()), storage)
    }

    /// What the link would carry: each message of A's mirror handed to B's receiving
    /// thread, and each answer of B handed back to A's mirror, in order, until `done`.
    fn pump(
        mirror: &LinkMirror,
        from_a: &mut tokio::sync::mpsc::UnboundedReceiver<Out>,
        rx: &mpsc::Sender<Item>,
        link: u64,
    ) -> Vec<Message> {
        let (reply, mut answers) = unbounded_channel();
        let mut seen = Vec::new();
        loop {
            let m = match from_a.try_recv() {
                Ok(Out::Msg(m)) => m,
                // What the writer does once the hold is over.
                Ok(Out::Later(outbox)) => {
                    outbox.send(None);
                    continue;
                }
                _ => break,
            };
            match m {
                Message::MirrorMeta { head, generation, capacity } => {
                    let meta = MirrorMeta { head, generation, capacity };
                    rx.send(Item::Meta { link, meta, reply: reply.clone() }).unwrap();
                }
                Message::Mirror { pos, records } => {
                    rx.send(Item::Records { link, pos, records, reply: reply.clone() }).unwrap();
                }
                other => panic!("{other:?}"),
            }
        }
        drop(reply);
        // The thread answers every item; the channel closes once it dropped the replies.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match answers.try_recv() {
                Ok(Out::Msg(Message::MirrorAck { end })) => {
                    assert!(mirror.acked(end));
                    seen.push(Message::MirrorAck { end });
                }
                Ok(Out::Msg(Message::MirrorMetaAck { head })) => {
                    mirror.head_acked(head);
                    seen.push(Message::MirrorMetaAck { head });
                }
                Ok(other) => panic!("{other:?}"),
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return seen,
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                    assert!(std::time::Instant::now() < deadline, "no answer");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    #[test]
    fn records_reach_the_partners_ring_and_their_acks_make_them_durable() {
        let (a, _) = journal(1);
        let (b, b_storage) = journal(2);
        let counters = Arc::new(Counters::default());
        let rx = receiver(b.clone(), Arc::default(), counters.clone()).unwrap();
        rx.send(Item::NewLink { link: 1 }).unwrap();
        let (out, mut from_a) = unbounded_channel();
        let progress = Arc::new(SendProgress::default());
        let mirror = Arc::new(LinkMirror::new(out, progress.clone(), a.capacity()));
        a.append(Entry::PreAck { op: OpId(1), request: b"before the partner came" }).unwrap();
        a.attach_mirror(mirror.clone()).unwrap();
        pump(&mirror, &mut from_a, &rx, 1);
        let t = a.append_nowait(Entry::PreAck { op: OpId(2), request: b"while mirrored" }).unwrap();
        assert!(!a.is_durable(&t), "durable before the partner acknowledged it");
        let answers = pump(&mirror, &mut from_a, &rx, 1);
        assert!(answers.iter().any(|m| matches!(m, Message::MirrorAck { end } if *end >= t.end)), "{answers:?}");
        assert!(a.is_durable(&t));
        assert_eq!(progress.acked.load(Ordering::Relaxed), a.tail());
        // B's mirror ring holds A's records, the one from before the attach included.
        let (_, rec) = Journal::open(
            MemStorage::from_image(b_storage.current_image()),
            Options::new(ClusterId(7), NodeId(2), Durability::None),
        )
        .unwrap();
        let got: Vec<&[u8]> = rec.partner.records.iter().map(|r| &r.payload[..]).collect();
        assert_eq!(got, [&b"before the partner came"[..], b"while mirrored"]);
        // The live journal scans its mirror ring to the same records (a takeover's source).
        assert_eq!(b.scan_partner().unwrap().records, rec.partner.records);
        assert_eq!(counters.stale.load(Ordering::Relaxed), 0);
        // An acknowledgement of more than was sent is refused.
        assert!(!mirror.acked(a.tail() + 8));
    }

    /// What a link's writer was given so far, in order (`Later` as a word).
    fn queued(from_a: &mut tokio::sync::mpsc::UnboundedReceiver<Out>) -> Vec<String> {
        let mut got = Vec::new();
        while let Ok(o) = from_a.try_recv() {
            got.push(match o {
                Out::Msg(Message::Mirror { pos, records }) => format!("Mirror {pos}+{}", records.len()),
                Out::Msg(Message::MirrorMeta { head, .. }) => format!("Meta {head}"),
                Out::Msg(m) => format!("{m:?}"),
                Out::Later(_) => "Later".to_string(),
                Out::Close => "Close".to_string(),
            });
        }
        got
    }

    /// Records no one waits for stay in the outbox, one `Later` asking the writer to send
    /// them; more records that follow on join them; a commit that waits sends them all
    /// as one frame; a run that would make the batch too large sends it first and goes
    /// at once.
    #[test]
    fn records_wait_in_the_outbox_and_leave_as_one_frame() {
        let (a, _) = journal(1);
        let (out, mut from_a) = unbounded_channel();
        let mirror = Arc::new(LinkMirror::new(out, Arc::default(), a.capacity()));
        a.attach_mirror(mirror.clone()).unwrap();
        let start = a.head();
        // The head, then the attach's pad, held.
        assert_eq!(queued(&mut from_a), [format!("Meta {start}"), "Later".to_string()]);
        a.append_nowait(Entry::PreAck { op: OpId(1), request: b"one" }).unwrap();
        a.append_nowait(Entry::PreAck { op: OpId(2), request: b"two" }).unwrap();
        assert_eq!(queued(&mut from_a), Vec::<String>::new(), "sent before the hold was over");
        // A waiting commit: the partner never answers here, so it waits on its own thread.
        let t = a.append_nowait(Entry::PreAck { op: OpId(3), request: b"three" }).unwrap();
        let waiter = {
            let a = a.clone();
            std::thread::spawn(move || a.commit(&t))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let got = loop {
            let got = queued(&mut from_a);
            if !got.is_empty() {
                break got;
            }
            assert!(std::time::Instant::now() < deadline, "the waiting commit sent nothing");
            std::thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(got, [format!("Mirror {start}+{}", t.end - start)]);
        assert!(mirror.acked(t.end));
        waiter.join().unwrap().unwrap();
        // A small record held, then one larger than a batch may grow: both go at once,
        // the held one first.
        let small = a.append_nowait(Entry::PreAck { op: OpId(4), request: b"small" }).unwrap();
        assert_eq!(queued(&mut from_a), ["Later"]);
        let big = vec![7u8; mirror.outbox.limit() + 1];
        let large = a.append_nowait(Entry::PreAck { op: OpId(5), request: &big }).unwrap();
        assert_eq!(
            queued(&mut from_a),
            [
                format!("Mirror {}+{}", small.pos, small.end - small.pos),
                format!("Mirror {}+{}", large.pos, large.end - large.pos)
            ]
        );
    }

    #[test]
    fn the_partner_saying_current_is_believed_only_for_what_we_hold() {
        let (b, _) = journal(2);
        let counters = Arc::new(Counters::default());
        let progress = Arc::new(ReceiveProgress::default());
        let rx = receiver(b.clone(), progress.clone(), counters.clone()).unwrap();
        let (reply, mut answers) = unbounded_channel();
        let meta = MirrorMeta { head: 0, generation: 1, capacity: b.capacity() };
        // Items are handled in order: once the answer to a head comes back, everything
        // sent before it was handled.
        let barrier = |link: u64, answers: &mut tokio::sync::mpsc::UnboundedReceiver<Out>| {
            rx.send(Item::Meta { link, meta, reply: reply.clone() }).unwrap();
            loop {
                match answers.blocking_recv() {
                    Some(Out::Msg(Message::MirrorMetaAck { .. })) => return,
                    Some(_) => {}
                    None => panic!("the receiving thread is gone"),
                }
            }
        };
        rx.send(Item::NewLink { link: 1 }).unwrap();
        barrier(1, &mut answers);
        let records = Bytes::from_static(&[0u8; 64]);
        rx.send(Item::Records { link: 1, pos: 0, records, reply: reply.clone() }).unwrap();
        rx.send(Item::Current { link: 1, end: 128 }).unwrap();
        barrier(1, &mut answers);
        assert_eq!(progress.current.load(Ordering::Acquire), 0, "current beyond what it holds");
        assert_eq!(counters.stale.load(Ordering::Relaxed), 1);
        rx.send(Item::Current { link: 1, end: 64 }).unwrap();
        barrier(1, &mut answers);
        assert_eq!(progress.current.load(Ordering::Acquire), 1);
        // A new link resyncs: not current until the partner says so on it (the
        // pair compares the link with its newest).
        rx.send(Item::NewLink { link: 2 }).unwrap();
        barrier(2, &mut answers);
        rx.send(Item::Current { link: 1, end: 64 }).unwrap();
        barrier(2, &mut answers);
        assert_eq!(progress.current.load(Ordering::Acquire), 1, "an older link's word is not taken");
        rx.send(Item::Current { link: 2, end: 0 }).unwrap();
        barrier(2, &mut answers);
        assert_eq!(progress.current.load(Ordering::Acquire), 2);
    }

    #[test]
    fn a_gap_or_an_older_link_is_refused() {
        let (b, _) = journal(2);
        let counters = Arc::new(Counters::default());
        let rx = receiver(b.clone(), Arc::default(), counters.clone()).unwrap();
        rx.send(Item::NewLink { link: 2 }).unwrap();
        let (reply, mut answers) = unbounded_channel();
        let meta = MirrorMeta { head: 0, generation: 1, capacity: b.capacity() };
        // An older link's items are dropped unanswered.
        rx.send(Item::Meta { link: 1, meta, reply: reply.clone() }).unwrap();
        // Records before any head: out of place.
        let records = Bytes::from_static(&[0u8; 64]);
        rx.send(Item::Records { link: 2, pos: 0, records: records.clone(), reply: reply.clone() }).unwrap();
        rx.send(Item::NewLink { link: 3 }).unwrap();
        rx.send(Item::Meta { link: 3, meta, reply: reply.clone() }).unwrap();
        // A gap after the head.
        rx.send(Item::Records { link: 3, pos: 64, records, reply: reply.clone() }).unwrap();
        drop(reply);
        let mut got = Vec::new();
        while let Some(o) = answers.blocking_recv() {
            got.push(format!("{o:?}"));
        }
        assert_eq!(got, ["Close", "Msg(MirrorMetaAck { head: 0 })", "Close"]);
        assert_eq!(counters.stale.load(Ordering::Relaxed), 2);
    }
}
