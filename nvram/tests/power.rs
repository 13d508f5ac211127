//! Power loss, simulated.
//!
//! Deterministic cases first, on [`MemStorage`] (whose durable image is a power loss in
//! which no unsynced byte reached the medium).

use std::sync::Arc;

use nvram::{ClusterId, Durability, Entry, Journal, LocalMirror, MemStorage, NodeId, OpId, Options};

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
            j.append_nowait(Entry::PreAck { op: OpId(1), request: &[7; 5000] }).unwrap(); // never committed
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
