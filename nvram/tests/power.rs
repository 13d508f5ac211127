//! Power loss, simulated.
//!
//! First, deterministic cases on [`MemStorage`] (whose durable image is a power loss in
//! which no unsynced byte reached the medium), one for each hole the simulation found.
//! Then `Durability::None` shown to survive a kill but not a power loss. Then the
//! simulation: two nodes mirroring each other on a [`PageCacheStorage`] each, four
//! appenders running operations (points 1 to 4, retire, checkpoint) so both rings wrap
//! again and again, rounds ending in a kill or a power loss fired inside a random
//! storage operation, in which each dirty 4 KiB page independently reaches the medium
//! or is lost. After each, both journals are reopened and both rings of each are
//! checked against what the appenders were told:
//!
//! - every record acknowledged durable (the append or commit returned with the power
//!   still up) of an operation not retired is recovered, byte for byte, where it was
//!   appended; so is the last acknowledged checkpoint (or a later one);
//! - every recovered record is one that was appended, in order; a torn tail is cut:
//!   nothing at or after it is returned. Torn tails must occur in the run.
//!
//! `NVRAM_POWER_SEEDS=N` (default 10 per policy) and `NVRAM_POWER_SEED=first` choose
//! the scenarios; a longer run: `NVRAM_POWER_SEEDS=500 cargo test --release -p nvram
//! --test power`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nvram::{
    ClusterId, Durability, Entry, Error, Failure, Journal, Kind, LocalMirror, LogEnd, LogRecovery, MemStorage, NodeId,
    OpId, Options, PageCacheStorage, Power, Record, Ticket,
};

fn opts(node: u16, d: Durability) -> Options {
    Options::new(ClusterId(0x9013), NodeId(node), d)
}

fn power_loss(s: &MemStorage) -> MemStorage {
    MemStorage::from_image(s.durable_image())
}

/// A killed process leaves unsynced records in the page cache; the next run recovers
/// them as part of its log. They must be synced before the new run's records count as
/// durable, or a power loss cuts the log before those.
#[test]
fn records_recovered_after_a_kill_are_synced_before_new_ones_count() {
    for d in [Durability::GroupCommit, Durability::PerRecord] {
        let s = MemStorage::new(1 << 20);
        let j = Journal::create(s.clone(), opts(1, d)).unwrap();
        if d == Durability::GroupCommit {
            j.append_nowait(Entry::PreAck { op: OpId(1), request: &[7; 5000] }).unwrap();
        // never committed
        } else {
            // PerRecord syncs in the append: leave an unsynced record the way a
            // `None` run would, the policy of the killed process.
            drop(j);
            let j = Journal::open(s.clone(), opts(1, Durability::None)).unwrap().0;
            j.append(Entry::PreAck { op: OpId(1), request: &[7; 5000] }).unwrap();
        }
        // SIGKILL: the page cache (the storage) survives.
        let (j, rec) = Journal::open(s.clone(), opts(1, d)).unwrap();
        assert_eq!(rec.own.records.len(), 1, "{d:?}");
        let t = j.append(Entry::PreAck { op: OpId(2), request: b"acknowledged" }).unwrap();
        assert!(j.is_durable(&t));
        drop(j);
        let (_, rec) = Journal::open(power_loss(&s), opts(1, d)).unwrap();
        let ops: Vec<OpId> = rec.own.records.iter().map(|r| r.op).collect();
        assert_eq!(ops, [OpId(1), OpId(2)], "{d:?}: an acknowledged record was lost");
    }
}

/// The head may pass the last checkpoint only once the next one is durable.
#[test]
fn head_never_passes_the_last_durable_checkpoint() {
    let s = MemStorage::new(nvram::format::MIN_REGION as usize);
    let j = Journal::create(s.clone(), opts(1, Durability::GroupCommit)).unwrap();
    let mut op = 0u64;
    let mut run_ops = |j: &Journal, n: u64| {
        for _ in 0..n {
            op += 1;
            j.append(Entry::PreAck { op: OpId(op), request: &[1; 1000] }).unwrap();
            j.retire(OpId(op)).unwrap();
        }
    };
    run_ops(&j, 20);
    let cp1 = j.checkpoint(b"state one").unwrap();
    run_ops(&j, 43); // 63 retirements
    let last = OpId(op + 1);
    j.append(Entry::PreAck { op: last, request: &[1; 1000] }).unwrap();
    // A second checkpoint is appended but not yet durable when the 64th retirement
    // moves the head.
    j.append_nowait(Entry::Checkpoint { state: b"state two" }).unwrap();
    j.retire(last).unwrap();
    assert!(j.head() <= cp1.pos, "head {} passed the durable checkpoint at {}", j.head(), cp1.pos);
    drop(j);
    let (_, rec) = Journal::open(power_loss(&s), opts(1, Durability::GroupCommit)).unwrap();
    let cp = rec.own.checkpoint.expect("the acknowledged checkpoint is lost");
    assert_eq!(&cp.payload[..], b"state one");
}

/// Attaching a mirror writes a pad record; under `PerRecord` it must be synced like any
/// other, or a power loss ends the log at it.
#[test]
fn the_pad_of_attach_mirror_is_synced() {
    let s = MemStorage::new(1 << 20);
    let a = Journal::create(s.clone(), opts(1, Durability::PerRecord)).unwrap();
    a.append(Entry::PreAck { op: OpId(1), request: b"before" }).unwrap();
    let b = Arc::new(Journal::create(MemStorage::new(1 << 20), opts(2, Durability::PerRecord)).unwrap());
    a.attach_mirror(Arc::new(LocalMirror::new(b))).unwrap();
    a.append(Entry::PreAck { op: OpId(2), request: b"after" }).unwrap();
    drop(a);
    let (_, rec) = Journal::open(power_loss(&s), opts(1, Durability::PerRecord)).unwrap();
    let ops: Vec<OpId> = rec.own.records.iter().map(|r| r.op).collect();
    assert_eq!(ops, [OpId(1), OpId(2)]);
}

/// Attaching a mirror when fewer than a header's bytes are left before the ring end
/// puts its pad record at the start of the next lap (it wrote across the end).
#[test]
fn attach_mirror_near_the_ring_end() {
    let s = MemStorage::new(nvram::format::MIN_REGION as usize);
    let o = opts(1, Durability::PerRecord);
    let a = Journal::create(s.clone(), o).unwrap();
    let big = vec![5u8; a.max_payload() as usize];
    a.append(Entry::PreAck { op: OpId(1), request: &big }).unwrap();
    a.retire(OpId(1)).unwrap();
    // The head moves past op 1 with a checkpoint; op 2 then ends 16 bytes
    // before the ring end (the room kept for checkpoints lies beyond it).
    let ck = a.checkpoint(b"state").unwrap();
    let len = a.capacity() - 16 - ck.end - nvram::format::RECORD_HEADER as u64;
    let t = a.append(Entry::PreAck { op: OpId(2), request: &vec![5u8; len as usize] }).unwrap();
    assert_eq!(a.capacity() - t.end, 16);
    let sb = MemStorage::new(nvram::format::MIN_REGION as usize);
    let b = Arc::new(Journal::create(sb.clone(), opts(2, Durability::PerRecord)).unwrap());
    a.attach_mirror(Arc::new(LocalMirror::new(b.clone()))).unwrap();
    a.append(Entry::PreAck { op: OpId(3), request: b"after" }).unwrap();
    drop((a, b));
    let (_, ra) = Journal::open(power_loss(&s), o).unwrap();
    let ops: Vec<OpId> = ra.own.records.iter().map(|r| r.op).collect();
    assert_eq!(ops, [OpId(2), OpId(3)]);
    let (_, rb) = Journal::open(power_loss(&sb), opts(2, Durability::PerRecord)).unwrap();
    assert_eq!(rb.partner.records, ra.own.records);
}

// ---- a page cache that loses power -------------------------------------------------

/// `Durability::None` counts a record durable once it is stored: right for an NVDIMM or
/// DAX, and on a file it survives a killed process, but not a power loss.
#[test]
fn durability_none_survives_a_kill_but_not_a_power_loss() {
    let power = Power::new(1).writeback_percent(0);
    let s = PageCacheStorage::new(1 << 20, &power);
    let o = opts(1, Durability::None);
    let j = Journal::create(s.clone(), o).unwrap();
    let t = j.append(Entry::PreAck { op: OpId(1), request: b"acknowledged" }).unwrap();
    assert!(j.is_durable(&t));
    power.fail(Failure::Kill);
    drop(j);
    power.restore();
    let (j, rec) = Journal::open(s.clone(), o).unwrap();
    assert_eq!(rec.own.records.len(), 1, "a kill loses nothing");
    let t = j.append(Entry::PreAck { op: OpId(2), request: b"acknowledged too" }).unwrap();
    assert!(j.is_durable(&t));
    power.fail(Failure::PowerLoss);
    drop(j);
    power.restore();
    let (_, rec) = Journal::open(s.clone(), o).unwrap();
    assert!(rec.own.records.is_empty(), "Durability::None kept records through a power loss");
    assert!(power.stats().lost > 0);
}

const RING: u64 = 128 * 1024;
const REGION: usize = nvram::format::HEADER_AREA as usize + 2 * RING as usize;
const ROUNDS: u64 = 5;
const CHECKPOINT_ID: u64 = 1 << 63;
/// Largest payload of a record: records often span two pages.
const MAX_PAYLOAD: u64 = 5000;

/// SplitMix64, for the scenario's choices and the payload bytes.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = mix(self.0);
        self.0 % n
    }
}

/// The bytes of record `kind` of operation (or checkpoint) `id`: they follow from both.
fn bytes(id: u64, kind: Kind, max: u64) -> Vec<u8> {
    let seed = mix(id.wrapping_mul(31) ^ kind as u64);
    let len = (seed % max) as usize;
    (0..len).map(|i| ((seed >> ((i % 7) * 8)) as u8).wrapping_add(i as u8)).collect()
}

fn element(id: u64) -> u16 {
    (id % 5) as u16
}

fn state(id: u64) -> Vec<u8> {
    let mut s = id.to_le_bytes().to_vec();
    s.extend(bytes(id, Kind::Checkpoint, 2000));
    s
}

/// A record of the model: operation (or checkpoint) id and kind.
type Key = (u64, Kind);

/// What one node's appenders did, as far as they know.
#[derive(Default)]
struct Model {
    /// Where each appended record went (when the append returned a ticket).
    tickets: HashMap<Key, Ticket>,
    /// Records acknowledged durable before the failure: the append (or commit)
    /// returned, and the power was still up when it did.
    acked: HashSet<Key>,
    /// Operations retired (or about to be): their records may be gone.
    retired: HashSet<u64>,
    /// The latest acknowledged checkpoint: (position, id).
    checkpoint: Option<(u64, u64)>,
}

#[derive(Default, Debug)]
struct Stats {
    scenarios: u64,
    failures: u64,
    torn: u64,
    torn_mirror: u64,
    records: u64,
    acked_checked: u64,
    laps: u64,
    gave_up: u64,
}

fn key_of(r: &Record) -> Key {
    if r.kind == Kind::Checkpoint {
        let id = u64::from_le_bytes(r.payload[..8].try_into().expect("checkpoint of 8 bytes or more"));
        (id, r.kind)
    } else {
        (r.op.0, r.kind)
    }
}

/// Checks a recovered log against the model of the node that wrote it.
fn check(log: &LogRecovery, model: &Model, what: &str, stats: &mut Stats) {
    let mut seen = HashSet::new();
    for r in log.records.iter().chain(log.checkpoint.iter()) {
        let key = key_of(r);
        let (id, kind) = key;
        match kind {
            Kind::PreAck => assert_eq!(r.payload[..], bytes(id, kind, MAX_PAYLOAD)[..], "{what}: {key:?}"),
            Kind::PreCommand => assert!(r.payload.is_empty() && r.element == element(id), "{what}: {key:?}"),
            Kind::PostCompletion => {
                let b = bytes(id, kind, MAX_PAYLOAD);
                let (resp, delta) = b.split_at(b.len() / 3);
                assert_eq!(r.completion(), Some((resp, delta)), "{what}: {key:?}");
                assert_eq!(r.element, element(id), "{what}: {key:?}");
            }
            Kind::PostReplyAck => assert!(r.payload.is_empty(), "{what}: {key:?}"),
            Kind::Checkpoint => assert_eq!(r.payload[..], state(id)[..], "{what}: {key:?}"),
            Kind::Pad => panic!("{what}: a pad recovered as a record"),
        }
        if let Some(t) = model.tickets.get(&key) {
            assert_eq!(
                (r.pos, r.pos + nvram::format::align(40 + r.payload.len() as u64)),
                (t.pos, t.end),
                "{what}: {key:?} is not where it was appended"
            );
        }
        seen.insert(key);
    }
    stats.records += seen.len() as u64;
    assert!(log.records.windows(2).all(|w| w[0].seq < w[1].seq && w[0].pos < w[1].pos), "{what}: out of order");
    if let LogEnd::Torn { pos, .. } = log.end {
        // Cut at the torn record: nothing at or after it was taken.
        assert_eq!(log.tail, pos, "{what}");
        assert!(log.records.iter().chain(log.checkpoint.iter()).all(|r| r.pos < pos), "{what}");
    }
    for key in &model.acked {
        if key.1 != Kind::Checkpoint && !model.retired.contains(&key.0) {
            assert!(seen.contains(key), "{what}: acknowledged record {key:?} lost; log ends {:?}", log.end);
            stats.acked_checked += 1;
        }
    }
    if let Some((pos, id)) = model.checkpoint {
        let cp = log.checkpoint.as_ref().unwrap_or_else(|| panic!("{what}: checkpoint {id:#x} lost"));
        assert!(cp.pos >= pos, "{what}: checkpoint {id:#x} (at {pos}) lost, found one at {}", cp.pos);
    }
}

/// What became of an append.
#[derive(PartialEq)]
enum Put {
    Done,
    /// The ring stayed full: give the operation up, as a server fails a request.
    Full,
    /// The power is down: stop.
    Down,
}

/// Appends one record.
fn put(j: &Journal, model: &Mutex<Model>, power: &Power, key: Key, entry: Entry<'_>, nowait: bool) -> Put {
    let mut full = 0u32;
    loop {
        let r = if nowait {
            j.append_nowait(entry).and_then(|t| {
                model.lock().unwrap().tickets.insert(key, t);
                j.commit(&t).map(|()| t)
            })
        } else if let Entry::Checkpoint { state } = entry {
            j.checkpoint(state)
        } else {
            j.append(entry)
        };
        match r {
            Ok(t) => {
                let mut m = model.lock().unwrap();
                m.tickets.insert(key, t);
                if !power.is_down() {
                    m.acked.insert(key);
                    if key.1 == Kind::Checkpoint {
                        m.checkpoint = m.checkpoint.max(Some((t.pos, key.0)));
                    }
                }
                return Put::Done;
            }
            Err(_) if power.is_down() => return Put::Down,
            Err(Error::Full { .. }) => {
                // Back-pressure: other appenders retire and checkpoint meanwhile. An
                // operation of this appender may pin the head, though: then only giving
                // it up frees the ring.
                full += 1;
                if full > 200 {
                    return Put::Full;
                }
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            Err(e) => panic!("append failed with the power up: {e}"),
        }
    }
}

struct Appender {
    journal: Arc<Journal>,
    model: Arc<Mutex<Model>>,
    power: Power,
    stop: Arc<AtomicBool>,
    /// First operation id; the next ones follow.
    base: u64,
    /// Checkpoint after every this many operations (0: never).
    checkpoint_every: u64,
    /// Operations left live behind the current one.
    window: usize,
    seed: u64,
    /// Operations and checkpoints given up on a full ring.
    gave_up: Arc<AtomicU64>,
}

impl Appender {
    /// Retires operations from the front of `live` until `keep` are left; false when
    /// the power is down.
    fn retire(&self, live: &mut std::collections::VecDeque<u64>, keep: usize) -> bool {
        while live.len() > keep {
            let old = live.pop_front().unwrap();
            if self.power.is_down() {
                return false;
            }
            self.model.lock().unwrap().retired.insert(old);
            if self.journal.retire(OpId(old)).is_err() {
                assert!(self.power.is_down(), "retire failed with the power up");
                return false;
            }
        }
        true
    }

    fn run(self) {
        let (j, m, p) = (&*self.journal, &*self.model, &self.power);
        let mut rng = Rng(self.seed);
        let mut live = std::collections::VecDeque::new();
        for i in 0.. {
            if self.stop.load(Ordering::SeqCst) || p.is_down() {
                return;
            }
            let id = self.base + i;
            let op = OpId(id);
            let req = bytes(id, Kind::PreAck, MAX_PAYLOAD);
            let done = bytes(id, Kind::PostCompletion, MAX_PAYLOAD);
            let (resp, delta) = done.split_at(done.len() / 3);
            let el = element(id);
            let entries = [
                (Kind::PreAck, Entry::PreAck { op, request: &req }),
                (Kind::PreCommand, Entry::PreCommand { op, element: el }),
                (Kind::PostCompletion, Entry::PostCompletion { op, element: el, status: 0, response: resp, delta }),
                (Kind::PostReplyAck, Entry::PostReplyAck { op }),
            ];
            live.push_back(id);
            for (kind, e) in entries {
                match put(j, m, p, (id, kind), e, rng.below(2) == 0) {
                    Put::Done => {}
                    // Give up every live operation of this appender, this one too.
                    Put::Full => {
                        self.gave_up.fetch_add(1, Ordering::Relaxed);
                        if !self.retire(&mut live, 0) {
                            return;
                        }
                        break;
                    }
                    Put::Down => return,
                }
            }
            if !self.retire(&mut live, self.window) {
                return;
            }
            // Checkpoint every so many operations, and whenever the log grows long: the
            // head never passes the last checkpoint, and a ring full up to it stays full.
            let due = self.checkpoint_every > 0 && i % self.checkpoint_every == self.checkpoint_every - 1;
            if due || j.tail() - j.head() > RING / 3 {
                let cp = CHECKPOINT_ID | id;
                let s = state(cp);
                match put(j, m, p, (cp, Kind::Checkpoint), Entry::Checkpoint { state: &s }, rng.below(3) == 0) {
                    Put::Done => {}
                    Put::Full => {
                        self.gave_up.fetch_add(1, Ordering::Relaxed);
                    }
                    Put::Down => return,
                }
            }
        }
    }
}

struct Node {
    storage: PageCacheStorage,
    opts: Options,
    journal: Arc<Journal>,
    model: Arc<Mutex<Model>>,
    /// Operations recovered and kept live into the next round.
    carried: Vec<u64>,
}

impl Node {
    /// What a server does after recovery: retire what it finished, keep the rest live,
    /// checkpoint. Every recovered record is durable now (`open` synced it).
    fn restart(&mut self, rec: &LogRecovery, rng: &mut Rng, cp_id: u64) {
        let mut m = self.model.lock().unwrap();
        for r in rec.records.iter().chain(rec.checkpoint.iter()) {
            m.acked.insert(key_of(r));
        }
        if let Some(cp) = &rec.checkpoint {
            m.checkpoint = m.checkpoint.max(Some((cp.seq, key_of(cp).0)));
        }
        let ops: HashSet<u64> = rec.records.iter().map(|r| r.op.0).collect();
        self.carried.clear();
        for op in ops {
            if !m.retired.contains(&op) && rng.below(4) == 0 {
                self.carried.push(op);
            } else {
                m.retired.insert(op);
                self.journal.retire(OpId(op)).unwrap();
            }
        }
        let s = state(cp_id);
        let t = match self.journal.checkpoint(&s) {
            Ok(t) => t,
            Err(Error::Full { .. }) => {
                // The carried operations pin the head: give them up.
                for op in self.carried.drain(..) {
                    m.retired.insert(op);
                    self.journal.retire(OpId(op)).unwrap();
                }
                self.journal.checkpoint(&s).unwrap_or_else(|e| {
                    panic!(
                        "checkpoint after recovery: {e}; head {} tail {} checkpoint at {:?}",
                        rec.head,
                        rec.tail,
                        rec.checkpoint.as_ref().map(|c| c.pos)
                    )
                })
            }
            Err(e) => panic!("checkpoint after recovery: {e}"),
        };
        m.tickets.insert((cp_id, Kind::Checkpoint), t);
        m.acked.insert((cp_id, Kind::Checkpoint));
        m.checkpoint = m.checkpoint.max(Some((t.pos, cp_id)));
    }

    fn retire_carried(&mut self) {
        let mut m = self.model.lock().unwrap();
        for op in self.carried.drain(..) {
            m.retired.insert(op);
            self.journal.retire(OpId(op)).unwrap();
        }
    }
}

/// Each node mirrors into the other. Attaching takes a pad record: when the carried
/// operations leave no room for it, they are given up.
fn attach(nodes: &mut [Node]) {
    for (from, to) in [(0, 1), (1, 0)] {
        let mirror = Arc::new(LocalMirror::new(nodes[to].journal.clone()));
        if let Err(Error::Full { .. }) = nodes[from].journal.attach_mirror(mirror.clone()) {
            nodes[from].retire_carried();
            nodes[from].journal.attach_mirror(mirror).unwrap();
        }
    }
}

/// One scenario: two nodes mirroring each other, appenders on both, rounds that end in
/// a kill or a power loss at a random storage operation, recovery checked each time.
fn scenario(seed: u64, d: Durability, stats: &mut Stats) {
    let mut rng = Rng(mix(seed) ^ d as u64);
    let power = Power::new(rng.below(u64::MAX))
        .writeback_percent(20 + rng.below(60))
        .background_writeback([0, 4, 16, 64][rng.below(4) as usize]);
    let mut nodes: Vec<Node> = (1..=2u16)
        .map(|n| {
            let storage = PageCacheStorage::new(REGION, &power);
            let opts = Options::new(ClusterId(0x9013), NodeId(n), d);
            Node {
                journal: Arc::new(Journal::create(storage.clone(), opts).unwrap()),
                storage,
                opts,
                model: Arc::default(),
                carried: Vec::new(),
            }
        })
        .collect();
    attach(&mut nodes);
    let gave_up = Arc::new(AtomicU64::new(0));
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        // Node 1: three appenders, one of them checkpointing; node 2: one.
        let plan = [(0usize, 0u64, 2u64), (0, 1, 0), (0, 2, 0), (1, 0, 3)];
        let threads: Vec<_> = plan
            .iter()
            .map(|&(n, t, every)| {
                let a = Appender {
                    journal: nodes[n].journal.clone(),
                    model: nodes[n].model.clone(),
                    power: power.clone(),
                    stop: stop.clone(),
                    base: round << 40 | (n as u64) << 36 | t << 32,
                    checkpoint_every: every,
                    window: rng.below(2) as usize,
                    seed: rng.below(u64::MAX),
                    gave_up: gave_up.clone(),
                };
                std::thread::spawn(move || a.run())
            })
            .collect();
        let start = nodes[0].journal.tail();
        // Most rounds wrap the ring a few times; some end early, with the operations
        // carried over from the last recovery still live.
        let target = if rng.below(3) == 0 {
            start + rng.below(RING / 8)
        } else {
            start + (1 + rng.below(2)) * RING + rng.below(RING)
        };
        let both: Vec<Arc<Journal>> = nodes.iter().map(|n| n.journal.clone()).collect();
        let models: Vec<Arc<Mutex<Model>>> = nodes.iter().map(|n| n.model.clone()).collect();
        let wait = |cond: &mut dyn FnMut() -> bool, what: &str| {
            let since = std::time::Instant::now();
            while !cond() {
                assert!(!threads.iter().any(|t| t.is_finished()) || power.is_down(), "an appender died");
                if since.elapsed().as_secs() >= 60 {
                    let js: Vec<String> = both
                        .iter()
                        .zip(&models)
                        .map(|(j, m)| {
                            let m = m.lock().unwrap();
                            let at: Vec<_> = m
                                .tickets
                                .iter()
                                .filter(|(_, t)| t.pos == j.head())
                                .map(|(k, _)| (format!("{:#x}", k.0), k.1, m.retired.contains(&k.0)))
                                .collect();
                            format!("{j:?} at head: {at:?}")
                        })
                        .collect();
                    panic!("seed {seed} {d:?} round {round}: stuck waiting for {what}: {js:?}, {:?}", power.stats());
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        };
        let j0 = nodes[0].journal.clone();
        // The operations carried over pin the head: retire them after an eighth of a
        // lap, or as soon as an appender finds the ring full.
        let gave_up_before = gave_up.load(Ordering::Relaxed);
        let mut carrying = true;
        let mut tend = |nodes: &mut Vec<Node>| {
            let due = j0.tail() >= start + RING / 8 || gave_up.load(Ordering::Relaxed) > gave_up_before;
            if carrying && due && !power.is_down() {
                nodes.iter_mut().for_each(Node::retire_carried);
                carrying = false;
            }
        };
        wait(
            &mut || {
                tend(&mut nodes);
                j0.tail() >= target
            },
            "the target",
        );
        let failure = if round == ROUNDS - 1 || rng.below(3) != 0 { Failure::PowerLoss } else { Failure::Kill };
        // Mostly at a sync: what it was about to make durable is then torn.
        if rng.below(4) != 0 {
            power.fail_at_sync(1 + rng.below(8), failure);
        } else {
            power.fail_after(1 + rng.below(64), failure);
        }
        // The appenders go on until the failure fires: the ring may fill meanwhile.
        wait(
            &mut || {
                tend(&mut nodes);
                power.is_down()
            },
            "the failure",
        );
        for n in &nodes {
            n.journal.detach_mirror(); // releases appenders waiting for the dead partner
        }
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().expect("an appender panicked");
        }
        stats.laps += (j0.tail() - start) / RING;
        stats.failures += 1;
        drop((j0, both));
        power.restore();

        let mut recs = Vec::new();
        for n in &mut nodes {
            let (j, rec) = Journal::open(n.storage.clone(), n.opts)
                .unwrap_or_else(|e| panic!("seed {seed} {d:?} round {round}: open failed: {e}"));
            n.journal = Arc::new(j);
            recs.push(rec);
        }
        let what = |s: &str| format!("seed {seed} {d:?} round {round} ({failure:?}): {s}");
        for (n, own, mirror) in [(0, &recs[0].own, &recs[1].partner), (1, &recs[1].own, &recs[0].partner)] {
            let m = nodes[n].model.lock().unwrap();
            check(own, &m, &what(&format!("node {} own ring", n + 1)), stats);
            check(mirror, &m, &what(&format!("node {}'s mirror of node {}", 2 - n, n + 1)), stats);
            stats.torn += matches!(own.end, LogEnd::Torn { .. }) as u64;
            stats.torn_mirror += matches!(mirror.end, LogEnd::Torn { .. }) as u64;
        }
        for (n, rec) in nodes.iter_mut().zip(&recs) {
            let cp_id = CHECKPOINT_ID | 1 << 62 | round << 40 | (n.opts.node.0 as u64) << 36;
            n.restart(&rec.own, &mut rng, cp_id);
        }
        attach(&mut nodes);
    }
    stats.scenarios += 1;
    stats.gave_up += gave_up.load(Ordering::Relaxed);
}

fn seeds() -> u64 {
    std::env::var("NVRAM_POWER_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

fn power_loss_runs(d: Durability) {
    let mut stats = Stats::default();
    let first = std::env::var("NVRAM_POWER_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    for seed in first..first + seeds() {
        scenario(seed, d, &mut stats);
    }
    eprintln!("{d:?}: {stats:?}");
    assert!(
        stats.torn + stats.torn_mirror > 0,
        "no torn tail in {} scenarios: the test misses the case",
        stats.scenarios
    );
    assert!(stats.acked_checked > 0);
}

#[test]
fn power_loss_per_record_loses_no_acknowledged_record() {
    power_loss_runs(Durability::PerRecord);
}

#[test]
fn power_loss_group_commit_loses_no_acknowledged_record() {
    power_loss_runs(Durability::GroupCommit);
}
