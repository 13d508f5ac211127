//! Behaviour of the journal through its public API: flags, identity, wrap-around, a
//! full ring, concurrency, torn tails and mirroring.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nvram::{
    ClusterId, Durability, Entry, Error, Flag, Journal, Kind, LocalMirror, LogEnd, MemStorage, Mirror, MirrorAck,
    MirrorMeta, NodeId, OpId, Options, Shipment, Storage,
};

const REGION: usize = 1 << 20;

fn opts(node: u16) -> Options {
    Options::new(ClusterId(0xc1), NodeId(node), Durability::None)
}

fn reopen(s: &MemStorage, o: Options) -> (Journal, nvram::Recovery) {
    Journal::open(MemStorage::from_image(s.current_image()), o).unwrap()
}

#[test]
fn every_flag_value_is_written_and_read_back() {
    let s = MemStorage::new(REGION);
    let j = Journal::create(s.clone(), opts(1)).unwrap();
    assert_eq!(j.flag(), Flag::CleanShutdown);
    drop(j);
    for flag in Flag::ALL {
        let (j, _) = Journal::open(s.clone(), opts(1)).unwrap();
        j.set_flag(flag).unwrap();
        assert_eq!(j.flag(), flag);
        drop(j);
        // A power loss right after set_flag: the header was synced.
        let (j, rec) = Journal::open(MemStorage::from_image(s.durable_image()), opts(1)).unwrap();
        assert_eq!(rec.flag, flag);
        assert_eq!(j.flag(), flag);
    }
}

#[test]
fn generation_grows_on_every_open() {
    let s = MemStorage::new(REGION);
    let j = Journal::create(s.clone(), opts(1)).unwrap();
    let g0 = j.generation();
    drop(j);
    let (j, rec) = Journal::open(s.clone(), opts(1)).unwrap();
    assert_eq!(rec.generation, g0 + 1);
    assert_eq!(j.generation(), g0 + 1);
}

#[test]
fn foreign_cluster_or_node_is_refused_and_not_touched() {
    let s = MemStorage::new(REGION);
    let j = Journal::create(s.clone(), opts(1)).unwrap();
    j.append(Entry::PreAck { op: OpId(1), request: b"x" }).unwrap();
    drop(j);
    let before = s.current_image();
    let other_cluster = Options::new(ClusterId(0xc2), NodeId(1), Durability::None);
    match Journal::open(s.clone(), other_cluster) {
        Err(Error::ForeignCluster { expected: 0xc2, found: 0xc1 }) => {}
        other => panic!("expected ForeignCluster, got {other:?}"),
    }
    match Journal::open(s.clone(), opts(2)) {
        Err(e @ Error::ForeignNode { expected: 2, found: 1 }) => {
            assert_eq!(e.to_string(), "journal belongs to node 1, not 2")
        }
        other => panic!("expected ForeignNode, got {other:?}"),
    }
    assert!(s.current_image() == before, "a refused open must not write");
    assert!(Journal::open(s, opts(1)).is_ok());
}

#[test]
fn not_a_journal_is_refused() {
    assert!(matches!(Journal::open(MemStorage::new(REGION), opts(1)), Err(Error::BadMagic)));
    assert!(matches!(Journal::create(MemStorage::new(4096), opts(1)), Err(Error::BadSize { .. })));
}

fn payload(op: u64, n: usize) -> Vec<u8> {
    (0..n).map(|i| (op as usize * 31 + i) as u8 | 1).collect()
}

#[test]
fn ring_wraps_many_laps_under_steady_load() {
    let s = MemStorage::new(nvram::format::MIN_REGION as usize);
    let j = Journal::create(s.clone(), opts(1)).unwrap();
    let cap = j.capacity();
    let mut written = 0u64;
    let mut op = 0u64;
    while written < 20 * cap {
        op += 1;
        let o = OpId(op);
        let req = payload(op, 700 + (op % 300) as usize);
        j.append(Entry::PreAck { op: o, request: &req }).unwrap();
        j.append(Entry::PreCommand { op: o, element: 0 }).unwrap();
        j.append(Entry::PostCompletion { op: o, element: 0, status: 0, response: b"ok", delta: b"d" }).unwrap();
        j.append(Entry::PostReplyAck { op: o }).unwrap();
        j.retire(o).unwrap();
        written += req.len() as u64 + 4 * 48;
        if op % 10 == 9 {
            let t = j.checkpoint(&op.to_le_bytes()).unwrap();
            assert!(j.head() <= t.pos, "the head never passes the last checkpoint");
        }
    }
    // Leave one operation in flight and crash.
    let live = OpId(op + 1);
    j.append(Entry::PreAck { op: live, request: b"in flight" }).unwrap();
    assert!(j.tail() > 10 * cap);
    drop(j);
    let (j, rec) = reopen(&s, opts(1));
    assert_eq!(rec.own.end, LogEnd::Clean);
    let cp = rec.own.checkpoint.expect("a checkpoint");
    assert_eq!(cp.payload[..], (op - (op + 1) % 10).to_le_bytes());
    assert_eq!(rec.own.points.pre_ack, vec![live]);
    // Every operation before the checkpoint was retired: the head sits at it.
    assert_eq!(rec.own.head, cp.pos);
    assert!(rec.own.records.iter().all(|r| r.seq > cp.seq));
    let last = rec.own.records.last().unwrap();
    assert_eq!((last.op, &last.payload[..]), (live, &b"in flight"[..]));
    // Sequence numbers are dense.
    let mut seqs: Vec<u64> = rec.own.records.iter().map(|r| r.seq).chain([cp.seq]).collect();
    seqs.sort();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    // And the reopened journal keeps going.
    j.append(Entry::PostReplyAck { op: live }).unwrap();
}

#[test]
fn full_ring_refuses_and_never_overwrites() {
    let s = MemStorage::new(nvram::format::MIN_REGION as usize);
    let j = Journal::create(s.clone(), opts(1)).unwrap();
    let mut appended = Vec::new();
    let err = loop {
        let op = OpId(appended.len() as u64 + 1);
        match j.append(Entry::PreAck { op, request: &payload(op.0, 1000) }) {
            Ok(t) => appended.push((op, t)),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Full { needed: 1040, .. }), "{err}");
    // Point-1 records fill the ring up to the quarter kept for the records that
    // finish operations (an eighth) and for checkpoints (an eighth).
    let filled = appended.len() as u64 * 1040;
    assert!(filled <= j.capacity() * 3 / 4 && filled + 2 * 1040 > j.capacity() * 3 / 4, "{filled} of {}", j.capacity());
    // Still full on retry; a checkpoint does not fit either.
    assert!(matches!(j.append(Entry::PreAck { op: OpId(9999), request: &[1; 1000] }), Err(Error::Full { .. })));
    // Nothing was overwritten.
    let (_, rec) = reopen(&s, opts(1));
    assert_eq!(rec.own.records.len(), appended.len());
    for (r, (op, t)) in rec.own.records.iter().zip(&appended) {
        assert_eq!((r.op, r.pos), (*op, t.pos));
        assert_eq!(r.payload[..], payload(op.0, 1000)[..]);
    }
    // The records that finish an operation still fit.
    j.append(Entry::PostReplyAck { op: appended[0].0 }).unwrap();
    // Retiring makes room again.
    for (op, _) in &appended[..appended.len() / 2] {
        j.retire(*op).unwrap();
    }
    j.append(Entry::PreAck { op: OpId(10_000), request: &[1; 1000] }).unwrap();
    let (_, rec) = reopen(&s, opts(1));
    assert_eq!(rec.own.records.first().unwrap().op, appended[appended.len() / 2].0);
    assert_eq!(rec.own.records.last().unwrap().op, OpId(10_000));
}

#[test]
fn oversized_record_is_refused() {
    let j = Journal::create(MemStorage::new(REGION), opts(1)).unwrap();
    let big = vec![0u8; j.max_payload() as usize + 1];
    assert!(matches!(j.append(Entry::Checkpoint { state: &big }), Err(Error::TooLarge { .. })));
    let ok = vec![7u8; j.max_payload() as usize];
    j.append(Entry::Checkpoint { state: &ok }).unwrap();
}

#[test]
fn points_reflect_each_operations_latest_record() {
    let s = MemStorage::new(REGION);
    let j = Journal::create(s.clone(), opts(1)).unwrap();
    for op in 1..=4u64 {
        j.append(Entry::PreAck { op: OpId(op), request: b"r" }).unwrap();
    }
    for op in 2..=4 {
        j.append(Entry::PreCommand { op: OpId(op), element: 1 }).unwrap();
    }
    for op in 3..=4 {
        j.append(Entry::PostCompletion { op: OpId(op), element: 1, status: 0, response: b"resp", delta: b"delta" })
            .unwrap();
    }
    j.append(Entry::PostReplyAck { op: OpId(4) }).unwrap();
    drop(j);
    let (_, rec) = reopen(&s, opts(1));
    let p = &rec.own.points;
    assert_eq!(p.pre_ack, vec![OpId(1)]);
    assert_eq!(p.pre_command, vec![OpId(2)]);
    assert_eq!(p.post_completion, vec![OpId(3)]);
    assert_eq!(p.post_reply_ack, vec![OpId(4)]);
    let done = rec.own.records.iter().find(|r| r.kind == Kind::PostCompletion).unwrap();
    assert_eq!(done.completion(), Some((&b"resp"[..], &b"delta"[..])));
    assert_eq!(done.element, 1);
}

#[test]
fn torn_tail_is_reported_and_dropped() {
    let s = MemStorage::new(REGION);
    let j = Journal::create(s.clone(), opts(1)).unwrap();
    let mut tickets = Vec::new();
    for op in 1..=5u64 {
        tickets.push(j.append(Entry::PreAck { op: OpId(op), request: &payload(op, 100) }).unwrap());
    }
    drop(j);
    let mut image = s.current_image();
    let base = nvram::format::HEADER_AREA as usize;
    let last = tickets[4];
    image[base + last.pos as usize + 60] ^= 0x40; // inside the payload
    let s = MemStorage::from_image(image);
    let (j, rec) = Journal::open(s.clone(), opts(1)).unwrap();
    assert_eq!(rec.own.records.len(), 4);
    assert_eq!(rec.own.end, LogEnd::Torn { pos: last.pos, reason: nvram::TornReason::BadChecksum });
    // The next record takes the torn one's place and sequence number.
    let t = j.append(Entry::PreAck { op: OpId(6), request: b"new" }).unwrap();
    assert_eq!(t.pos, last.pos);
    drop(j);
    let (_, again) = reopen(&s, opts(1));
    assert_eq!(again.own.records.len(), 5);
    assert_eq!((again.own.records[4].pos, again.own.records[4].seq), (last.pos, rec.own.records[3].seq + 1));
}

#[test]
fn concurrent_appenders_get_dense_ordered_records() {
    let s = MemStorage::new(8 << 20);
    let j = Arc::new(Journal::create(s.clone(), opts(1)).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut ends = Vec::new();
                for i in 0..300u64 {
                    let op = OpId(t << 32 | i);
                    let tk = j.append(Entry::PreAck { op, request: &payload(op.0, (i % 50) as usize * 7) }).unwrap();
                    assert!(j.is_durable(&tk));
                    ends.push(tk.end);
                }
                ends
            })
        })
        .collect();
    for t in threads {
        let ends = t.join().unwrap();
        assert!(ends.windows(2).all(|w| w[0] < w[1]));
    }
    let (_, rec) = reopen(&s, opts(1));
    assert_eq!(rec.own.records.len(), 2400);
    let mut next = [0u64; 8];
    for (i, r) in rec.own.records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        let (t, n) = ((r.op.0 >> 32) as usize, r.op.0 & 0xffff_ffff);
        assert_eq!(n, next[t], "per-thread order");
        next[t] += 1;
        assert_eq!(r.payload[..], payload(r.op.0, (n % 50) as usize * 7)[..]);
    }
}

#[test]
fn group_commit_and_per_record_on_a_mapped_file() {
    let dir = tempfile::tempdir().unwrap();
    for (i, d) in [Durability::GroupCommit, Durability::PerRecord].into_iter().enumerate() {
        let path = dir.path().join(format!("nvram{i}"));
        let o = Options::new(ClusterId(3), NodeId(1), d);
        let j = Arc::new(Journal::create_file(&path, 4 << 20, o).unwrap());
        let hs: Vec<_> = (0..4u64)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        let tk = j.append(Entry::PreAck { op: OpId(t * 1000 + i), request: &[t as u8; 300] }).unwrap();
                        assert!(j.is_durable(&tk));
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        drop(j);
        let (_, rec) = Journal::open_file(&path, o).unwrap();
        assert_eq!(rec.own.records.len(), 400);
    }
}

#[test]
fn local_mirror_copies_every_record_to_the_partner() {
    let (sa, sb) = (MemStorage::new(REGION), MemStorage::new(REGION));
    let a = Journal::create(sa.clone(), opts(1)).unwrap();
    // Records written before the mirror is attached are resynced.
    a.append(Entry::PreAck { op: OpId(1), request: b"before" }).unwrap();
    let b = Arc::new(Journal::create(sb.clone(), opts(2)).unwrap());
    a.attach_mirror(Arc::new(LocalMirror::new(b.clone()))).unwrap();
    for op in 2..200u64 {
        a.append(Entry::PreAck { op: OpId(op), request: &payload(op, 500) }).unwrap();
        a.append(Entry::PostReplyAck { op: OpId(op) }).unwrap();
        a.retire(OpId(op)).unwrap();
    }
    a.checkpoint(b"state").unwrap();
    drop(b);
    let (_, ra) = reopen(&sa, opts(1));
    let (_, rb) = reopen(&sb, opts(2));
    assert_eq!(rb.partner.records, ra.own.records);
    assert_eq!(rb.partner.checkpoint, ra.own.checkpoint);
    assert_eq!(rb.partner.head, ra.own.head);
    assert!(ra.partner.records.is_empty());
}

/// A mirror that holds its acknowledgements until told.
#[derive(Default)]
struct Held {
    shipped: Mutex<Vec<(u64, Vec<u8>)>>,
    ack: Mutex<Option<MirrorAck>>,
    end: AtomicU64,
}

impl Mirror for Held {
    fn ship(&self, s: Shipment<'_>, ack: &MirrorAck) {
        self.shipped.lock().unwrap().push((s.pos, s.parts.concat()));
        self.end.store(s.end(), Ordering::SeqCst);
        *self.ack.lock().unwrap() = Some(ack.clone());
    }
    fn ship_meta(&self, m: MirrorMeta, ack: &MirrorAck) {
        ack.head(m.head);
    }
}

#[test]
fn append_is_durable_only_once_the_mirror_acknowledges() {
    let j = Arc::new(Journal::create(MemStorage::new(REGION), opts(1)).unwrap());
    let m = Arc::new(Held::default());
    j.attach_mirror(m.clone()).unwrap();
    let t = j.append_nowait(Entry::PreAck { op: OpId(1), request: b"req" }).unwrap();
    assert!(!j.is_durable(&t));
    let waiter = {
        let j = j.clone();
        std::thread::spawn(move || j.commit(&t))
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(!waiter.is_finished());
    let ack = m.ack.lock().unwrap().clone().unwrap();
    ack.records(m.end.load(Ordering::SeqCst));
    waiter.join().unwrap().unwrap();
    assert!(j.is_durable(&t));
    // The record shipped is byte-for-byte what sits in the ring.
    let (pos, bytes) = m.shipped.lock().unwrap().last().unwrap().clone();
    assert_eq!(pos, t.pos);
    assert_eq!(&bytes[40..], b"req\0\0\0\0\0"); // padded to 8

    // With the partner gone, detaching releases waiters.
    let t2 = j.append_nowait(Entry::PreAck { op: OpId(2), request: b"req" }).unwrap();
    assert!(!j.is_durable(&t2));
    j.detach_mirror();
    ack.records(u64::MAX); // a stale acknowledgement is ignored
    j.commit(&t2).unwrap();
    assert!(j.is_durable(&t2));
}

/// A mirror that holds what it is shipped until it is flushed, then acknowledges it
/// all at once (as the server's interconnect mirror batches records).
#[derive(Default)]
struct Batching {
    held: Mutex<Option<(u64, MirrorAck)>>,
    flushes: AtomicU64,
}

impl Mirror for Batching {
    fn ship(&self, s: Shipment<'_>, ack: &MirrorAck) {
        *self.held.lock().unwrap() = Some((s.end(), ack.clone()));
    }
    fn ship_meta(&self, m: MirrorMeta, ack: &MirrorAck) {
        ack.head(m.head);
    }
    fn flush(&self) {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        if let Some((end, ack)) = self.held.lock().unwrap().take() {
            ack.records(end);
        }
    }
}

/// A commit tells a mirror that holds shipments back that someone waits (and does not
/// when the record is acknowledged already): without that, the append would wait for
/// ever on a mirror that sends only when told.
#[test]
fn commit_flushes_a_mirror_that_holds_shipments_back() {
    let j = Arc::new(Journal::create(MemStorage::new(REGION), opts(1)).unwrap());
    let m = Arc::new(Batching::default());
    j.attach_mirror(m.clone()).unwrap();
    let t = j.append_nowait(Entry::PreAck { op: OpId(1), request: b"req" }).unwrap();
    assert!(!j.is_durable(&t));
    let waiter = {
        let j = j.clone();
        std::thread::spawn(move || j.commit(&t))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !waiter.is_finished() {
        assert!(std::time::Instant::now() < deadline, "the commit never flushed the mirror");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    waiter.join().unwrap().unwrap();
    assert!(j.is_durable(&t));
    let flushes = m.flushes.load(Ordering::SeqCst);
    assert!(flushes >= 1);
    j.commit(&t).unwrap();
    assert_eq!(m.flushes.load(Ordering::SeqCst), flushes, "flushed for a record already acknowledged");
}

#[test]
fn storage_trait_is_usable_directly() {
    let s = MemStorage::new(64);
    assert_eq!(s.len(), 64);
    let mut b = [1u8; 4];
    s.read(0, &mut b);
    assert_eq!(b, [0; 4]);
}

/// A file that is not a journal of ours, or is damaged beyond its records, is refused at
/// start with an error that says why, and left byte for byte as it was.
#[test]
fn bad_journal_files_are_refused_and_left_as_they_were() {
    use nvram::format::{Header, HEADER_LEN, MIN_REGION, SLOT_SIZE};

    let dir = tempfile::tempdir().unwrap();
    let o = Options::new(ClusterId(0xc1), NodeId(1), Durability::GroupCommit);
    // A good journal to damage.
    let good_path = dir.path().join("good");
    let j = Journal::create_file(&good_path, REGION as u64, o).unwrap();
    j.append(Entry::PreAck { op: OpId(1), request: b"x" }).unwrap();
    drop(j);
    let good = std::fs::read(&good_path).unwrap();
    let header = Header::decode(&good[..HEADER_LEN]).unwrap();
    let with_header = |h: Header, tweak: &dyn Fn(&mut [u8])| {
        let mut b = good.clone();
        for slot in [0, SLOT_SIZE as usize] {
            b[slot..slot + HEADER_LEN].copy_from_slice(&h.encode());
            tweak(&mut b[slot..slot + HEADER_LEN]);
        }
        b
    };
    let reseal = |s: &mut [u8]| {
        let crc = crc32fast::hash(&s[..112]);
        s[112..116].copy_from_slice(&crc.to_le_bytes());
    };

    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let random: Vec<u8> = (0..REGION)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as u8
        })
        .collect();
    // (what, the file's bytes, the error expected, what its message says)
    type Case<'a> = (&'a str, Vec<u8>, &'a dyn Fn(&Error) -> bool, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("random bytes", random, &|e| matches!(e, Error::BadMagic), "bad magic"),
        ("zeroes", vec![0; REGION], &|e| matches!(e, Error::BadMagic), "bad magic"),
        (
            "another magic",
            with_header(header, &|s| {
                s[..8].copy_from_slice(b"SQLite f");
                reseal(s)
            }),
            &|e| matches!(e, Error::BadMagic),
            "bad magic",
        ),
        (
            "both header slots corrupt",
            with_header(header, &|s| s[40] ^= 0x10),
            &|e| matches!(e, Error::BadHeader),
            "corrupt",
        ),
        (
            "another format version",
            with_header(header, &|s| {
                s[8..12].copy_from_slice(&1u32.to_le_bytes());
                reseal(s)
            }),
            &|e| matches!(e, Error::UnsupportedVersion(1)),
            "version 0x1",
        ),
        (
            "an unknown flag",
            with_header(header, &|s| {
                s[36..40].copy_from_slice(&99u32.to_le_bytes());
                reseal(s)
            }),
            &|e| matches!(e, Error::UnknownFlag(99)),
            "flag",
        ),
        (
            "another cluster",
            with_header(Header { cluster: ClusterId(0xc2), ..header }, &|_| {}),
            &|e| matches!(e, Error::ForeignCluster { expected: 0xc1, found: 0xc2 }),
            "cluster 0xc2",
        ),
        (
            "another node",
            with_header(Header { node: NodeId(2), ..header }, &|_| {}),
            &|e| matches!(e, Error::ForeignNode { expected: 1, found: 2 }),
            "node 2",
        ),
        ("empty", Vec::new(), &|e| matches!(e, Error::BadSize { actual: 0, .. }), "0 bytes"),
        ("too small", good[..4096].to_vec(), &|e| matches!(e, Error::BadSize { actual: 4096, .. }), "4096 bytes"),
        (
            "truncated",
            good[..MIN_REGION as usize].to_vec(),
            &|e| matches!(e, Error::BadSize { expected, .. } if *expected == REGION as u64),
            "expected 1048576",
        ),
        (
            "extended",
            [&good[..], &[0u8; 8192][..]].concat(),
            &|e| matches!(e, Error::BadSize { expected, .. } if *expected == REGION as u64),
            "expected 1048576",
        ),
        (
            "a head past any position",
            with_header(
                Header { own: nvram::format::LogMeta { head: u64::MAX - 100, ..header.own }, ..header },
                &|_| {},
            ),
            &|e| matches!(e, Error::BadHeader),
            "corrupt",
        ),
        (
            "a partner head past any position",
            with_header(
                Header { partner: nvram::format::LogMeta { head: u64::MAX / 2, ..header.partner }, ..header },
                &|_| {},
            ),
            &|e| matches!(e, Error::BadHeader),
            "corrupt",
        ),
    ];
    for (what, bytes, want, says) in cases {
        let path = dir.path().join("bad");
        std::fs::write(&path, &bytes).unwrap();
        match Journal::open_file(&path, o) {
            Err(e) => {
                assert!(want(&e), "{what}: wrong error {e:?}");
                assert!(e.to_string().contains(says), "{what}: {e} does not say {says:?}");
            }
            Ok(_) => panic!("{what}: opened"),
        }
        assert!(std::fs::read(&path).unwrap() == bytes, "{what}: the file was changed");
    }
    // A missing file is not created.
    let missing = dir.path().join("missing");
    assert!(matches!(Journal::open_file(&missing, o), Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound));
    assert!(!missing.exists());
    // And the good one still opens; a partner cannot store a head that would make it
    // unreadable.
    let (j, rec) = Journal::open_file(&good_path, o).unwrap();
    assert_eq!(rec.own.records.len(), 1);
    let meta = MirrorMeta { head: u64::MAX - 100, generation: 1, capacity: j.capacity() };
    assert!(matches!(j.receive_meta(meta), Err(Error::BadHeader)));
    drop(j);
    Journal::open_file(&good_path, o).unwrap();
}

/// Whether `dir` is on a DAX file system (then `MAP_SYNC` is granted and the refusal
/// cannot be shown there).
fn on_dax(dir: &std::path::Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let dir = dir.canonicalize().unwrap();
    let mount = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 3 && dir.starts_with(f[1])).then(|| (f[1].len(), f[3].contains("dax")))
        })
        .max();
    mount.is_some_and(|(_, dax)| dax)
}

#[test]
fn pmem_is_refused_on_a_file_system_without_dax_and_the_file_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    if on_dax(dir.path()) {
        eprintln!("{} is on DAX: the refusal cannot be shown here", dir.path().display());
        return;
    }
    let o = Options::new(ClusterId(0xc1), NodeId(1), Durability::Pmem);
    // Creating: refused, and no file is left behind.
    let path = dir.path().join("new");
    let e = Journal::create_file(&path, 1 << 20, o).unwrap_err();
    assert!(e.to_string().contains("not on a DAX file system: MAP_SYNC refused"), "{e}");
    assert!(matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::Unsupported), "{e:?}");
    assert!(!path.exists());
    // Opening a journal made with another policy: refused, the file byte for byte as it was.
    let path = dir.path().join("old");
    let j = Journal::create_file(&path, 1 << 20, Options { durability: Durability::PerRecord, ..o }).unwrap();
    j.append(Entry::PreAck { op: OpId(1), request: b"kept" }).unwrap();
    drop(j);
    let before = std::fs::read(&path).unwrap();
    let e = Journal::open_file(&path, o).unwrap_err();
    assert!(e.to_string().contains("not on a DAX file system: MAP_SYNC refused"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let (_, rec) = Journal::open_file(&path, Options { durability: Durability::PerRecord, ..o }).unwrap();
    assert_eq!(&rec.own.records[0].payload[..], b"kept");
}

#[test]
fn pmem_makes_a_record_durable_before_publishing_it() {
    // On any storage, `Pmem` syncs (on a DAX mapping: flushes and fences) every record
    // before it counts as durable: the durable image holds it.
    let s = MemStorage::new(REGION);
    let j = Journal::create(s.clone(), Options::new(ClusterId(0xc1), NodeId(1), Durability::Pmem)).unwrap();
    let t = j.append_nowait(Entry::PreAck { op: OpId(1), request: b"one" }).unwrap();
    j.commit(&t).unwrap();
    assert!(j.is_durable(&t));
    let (_, rec) = Journal::open(MemStorage::from_image(s.durable_image()), opts(1)).unwrap();
    assert_eq!(rec.own.records.len(), 1);
    assert_eq!(&rec.own.records[0].payload[..], b"one");
}

/// Appends and retires `n` operations of 4 KiB each, then compacts: the head moves.
fn churn_and_compact(j: &Journal, n: u64) {
    let data = vec![7u8; 4096];
    for op in 1..=n {
        j.append(Entry::PreAck { op: OpId(op), request: &data }).unwrap();
        j.retire(OpId(op)).unwrap();
    }
    j.compact().unwrap();
}

#[test]
fn under_none_the_head_is_persisted_without_a_sync_and_under_group_commit_with_one() {
    for d in [Durability::None, Durability::GroupCommit] {
        let s = MemStorage::new(REGION);
        let o = Options::new(ClusterId(0xc1), NodeId(1), d);
        let j = Journal::create(s.clone(), o).unwrap();
        churn_and_compact(&j, 100);
        let head = j.head();
        assert!(head > 0, "{d:?}: the head moved");
        drop(j);
        // A killed process: the header in the page cache has the new head.
        let (_, rec) = Journal::open(MemStorage::from_image(s.current_image()), o).unwrap();
        assert_eq!(rec.own.head, head, "{d:?}");
        // A power loss: under `None` the header was not synced (nothing is), under
        // group commit it was.
        let (_, rec) = Journal::open(MemStorage::from_image(s.durable_image()), o).unwrap();
        match d {
            Durability::None => assert_eq!(rec.own.head, 0, "the head's header write was synced"),
            _ => assert_eq!(rec.own.head, head),
        }
    }
}
