//! Publishing on behalf of finished neighbours: an appender that has copied its record
//! marks it ready and returns; whoever publishes seals and publishes every ready record
//! at the frontier, in order. A record still being copied holds back the ones after it,
//! which are published as soon as it is ready.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nvram::{
    ClusterId, Durability, Entry, Journal, LocalMirror, LogEnd, MemStorage, Mirror, MirrorAck, MirrorMeta, NodeId,
    OpId, Options, Shipment, Storage,
};

fn opts(node: u16, d: Durability) -> Options {
    Options::new(ClusterId(0x9b), NodeId(node), d)
}

/// How long a test waits for something that must happen (an append that must return, a
/// stalled copy that must be reached) before calling it a hang. Not a speed assertion.
const HANG: Duration = Duration::from_secs(60);

const STALL: &[u8] = b"STALL-HERE";

/// A [`MemStorage`] whose write of a chunk starting with [`STALL`] stops until the gate
/// opens: an appender stalled in the middle of its copy.
#[derive(Clone)]
struct Gated {
    inner: MemStorage,
    gate: Arc<(Mutex<(bool, bool)>, Condvar)>, // (reached, open)
}

impl Gated {
    fn new(len: usize) -> Self {
        Gated { inner: MemStorage::new(len), gate: Arc::new((Mutex::new((false, false)), Condvar::new())) }
    }

    fn wait_reached(&self) {
        let (m, cv) = &*self.gate;
        let g = cv.wait_timeout_while(m.lock().unwrap(), HANG, |s| !s.0).unwrap().0;
        assert!(g.0, "the stalled copy was never reached");
    }

    fn open(&self) {
        let (m, cv) = &*self.gate;
        m.lock().unwrap().1 = true;
        cv.notify_all();
    }
}

impl Storage for Gated {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read(&self, offset: u64, dst: &mut [u8]) {
        self.inner.read(offset, dst)
    }
    unsafe fn write(&self, offset: u64, src: &[u8]) {
        if src.starts_with(STALL) {
            let (m, cv) = &*self.gate;
            let mut g = m.lock().unwrap();
            g.0 = true;
            cv.notify_all();
            while !g.1 {
                g = cv.wait(g).unwrap();
            }
        }
        // SAFETY: forwarded with the caller's guarantee.
        unsafe { self.inner.write(offset, src) }
    }
    fn sync(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.inner.sync(offset, len)
    }
}

/// Records every shipment, in the order the journal made them.
#[derive(Default)]
struct Recorder(Mutex<Vec<(u64, u64)>>);

impl Mirror for Recorder {
    fn ship(&self, s: Shipment<'_>, ack: &MirrorAck) {
        self.0.lock().unwrap().push((s.pos, s.end()));
        ack.records(s.end());
    }
    fn ship_meta(&self, m: MirrorMeta, ack: &MirrorAck) {
        ack.head(m.head);
    }
}

#[test]
fn a_stalled_appender_holds_back_later_records_until_it_finishes() {
    for d in [Durability::None, Durability::PerRecord, Durability::GroupCommit] {
        let storage = Gated::new(1 << 20);
        let j = Arc::new(Journal::create(storage.clone(), opts(1, d)).unwrap());
        let shipped = Arc::new(Recorder::default());
        j.attach_mirror(shipped.clone()).unwrap();
        j.append(Entry::PreAck { op: OpId(1), request: b"before" }).unwrap();
        let frontier = j.tail();

        // Appender A stalls in the middle of its copy (its second part).
        let a = {
            let j = j.clone();
            std::thread::spawn(move || {
                let t = j.append_nowait(Entry::PostCompletion {
                    op: OpId(2),
                    element: 0,
                    status: 0,
                    response: b"first part, copied",
                    delta: STALL,
                });
                t.unwrap()
            })
        };
        storage.wait_reached();

        // Appender B is not held up by A: each of its appends returns.
        let (tx, rx) = mpsc::channel();
        let b = {
            let j = j.clone();
            std::thread::spawn(move || {
                for op in 3..6u64 {
                    let t = j.append_nowait(Entry::PreAck { op: OpId(op), request: &[op as u8; 300] }).unwrap();
                    tx.send(t).unwrap();
                }
            })
        };
        let tickets: Vec<_> = (0..3).map(|_| rx.recv_timeout(HANG).expect("B waited for A")).collect();
        b.join().unwrap();

        // ... but nothing after A is published, numbered, shipped or durable.
        assert_eq!(j.tail(), frontier, "{d:?}");
        assert!(tickets.iter().all(|t| !j.is_durable(t) && t.pos > frontier), "{d:?}");
        assert!(shipped.0.lock().unwrap().iter().all(|&(_, end)| end <= frontier), "{d:?}");
        // A kill now: recovery ends cleanly at A's record (B's, written and ready but
        // unpublished, are not read); then a new run appends where A's record was.
        let (_, rec) = Journal::open(MemStorage::from_image(storage.inner.current_image()), opts(1, d)).unwrap();
        assert_eq!(rec.own.records.iter().map(|r| r.op).collect::<Vec<_>>(), [OpId(1)], "{d:?}");
        assert_eq!(rec.own.end, LogEnd::Clean, "{d:?}");
        assert_eq!(rec.own.tail, frontier, "{d:?}");

        // A finishes: whoever publishes next publishes A's record and B's, in order.
        storage.open();
        let ta = a.join().unwrap();
        assert_eq!(ta.pos, frontier, "{d:?}");
        for t in &tickets {
            j.commit(t).unwrap();
        }
        assert!(j.is_durable(&ta), "{d:?}");
        let last = tickets.last().unwrap().end;
        assert_eq!(j.tail(), last, "{d:?}");
        // Shipped in log order, without a gap or an overlap.
        let shipped = shipped.0.lock().unwrap().clone();
        assert!(shipped.windows(2).all(|w| w[0].1 == w[1].0), "{d:?}: {shipped:?}");
        assert_eq!(shipped.last().unwrap().1, last, "{d:?}");

        let image = match d {
            Durability::None => storage.inner.current_image(),
            _ => storage.inner.durable_image(),
        };
        let (_, rec) = Journal::open(MemStorage::from_image(image), opts(1, d)).unwrap();
        let recs = &rec.own.records;
        assert_eq!(recs.iter().map(|r| r.op.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5], "{d:?}");
        assert!(recs.windows(2).all(|w| w[1].seq == w[0].seq + 1), "{d:?}");
        assert_eq!(recs[1].completion(), Some((&b"first part, copied"[..], STALL)), "{d:?}");
        assert_eq!(recs[4].payload[..], [5u8; 300], "{d:?}");
        assert_eq!(rec.own.end, LogEnd::Clean, "{d:?}");
    }
}

#[test]
fn many_appenders_publish_everything_in_order_while_the_ring_wraps() {
    const THREADS: u64 = 8;
    const PER: u64 = 3000;
    let a_storage = MemStorage::new(256 << 10);
    let b_storage = MemStorage::new(256 << 10);
    let a = Arc::new(Journal::create(a_storage.clone(), opts(1, Durability::None)).unwrap());
    let b = Arc::new(Journal::create(b_storage.clone(), opts(2, Durability::None)).unwrap());
    a.attach_mirror(Arc::new(LocalMirror::new(b.clone()))).unwrap();
    let payload = |op: u64| -> Vec<u8> { (0..(op % 97) as usize * 5).map(|i| (op as usize ^ i) as u8).collect() };
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut tickets = Vec::new();
                for i in 0..PER {
                    let op = t << 32 | i;
                    loop {
                        match a.append_nowait(Entry::PreAck { op: OpId(op), request: &payload(op) }) {
                            Ok(tk) => {
                                tickets.push(tk);
                                break;
                            }
                            // A thread left behind pins the head with its live operations:
                            // it retires them all before it tries again.
                            Err(nvram::Error::Full { .. }) => {
                                for k in 1..=i.min(4) {
                                    a.retire(OpId(op - k)).unwrap();
                                }
                                std::thread::yield_now()
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                    if i >= 4 {
                        a.retire(OpId(op - 4)).unwrap();
                    }
                    if i % 200 == 199 {
                        a.commit(tickets.last().unwrap()).unwrap();
                    }
                }
                for k in 1..=4 {
                    a.retire(OpId((t << 32 | PER) - k)).unwrap();
                }
                tickets
            })
        })
        .collect();
    let mut ends = Vec::new();
    for t in threads {
        let tickets = t.join().unwrap();
        assert!(tickets.windows(2).all(|w| w[0].end <= w[1].pos));
        ends.extend(tickets.iter().map(|t| t.end));
    }
    // Every thread retired all it appended, so the head may have passed all of
    // it: four more records per thread, left live, are what recovery must find.
    for t in 0..THREADS {
        for j in 0..4 {
            let op = t << 32 | (PER + j);
            ends.push(a.append_nowait(Entry::PreAck { op: OpId(op), request: &payload(op) }).unwrap().end);
        }
    }
    a.flush().unwrap();
    assert!(ends.iter().all(|&end| a.is_durable(&nvram::Ticket { pos: end, end })));
    assert!(a.tail() > 4 * a.capacity(), "the ring wrapped only {} bytes", a.tail());

    // Both the own ring and the partner's copy of it give back what was appended, with
    // dense sequence numbers and each thread's records in its order.
    let (_, own) = Journal::open(MemStorage::from_image(a_storage.current_image()), opts(1, Durability::None)).unwrap();
    let (_, mirrored) =
        Journal::open(MemStorage::from_image(b_storage.current_image()), opts(2, Durability::None)).unwrap();
    for log in [&own.own, &mirrored.partner] {
        assert_eq!(log.end, LogEnd::Clean);
        assert_eq!(log.tail, a.tail());
        assert!(log.records.len() as u64 >= 4 * THREADS, "{}", log.records.len());
        assert!(log.records.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        let mut last = [None::<u64>; THREADS as usize];
        for r in &log.records {
            let (t, i) = ((r.op.0 >> 32) as usize, r.op.0 & 0xffff_ffff);
            assert!(last[t].is_none_or(|l| l < i), "thread {t}: {i} after {last:?}");
            last[t] = Some(i);
            assert_eq!(r.payload[..], payload(r.op.0)[..]);
        }
    }
    // Numbers from 1, one per record: the mirror's pad took none.
    assert_eq!(own.own.records.last().unwrap().seq, THREADS * (PER + 4));
}
