//! Property tests: random appends, retirements and checkpoints, then a crash that
//! truncates (zeroes) or garbles the own ring at a random byte. Recovery must return
//! exactly the records fully written before the first damaged one, and never a record
//! that was not appended.

use proptest::prelude::*;

use nvram::format::{HEADER_AREA, MIN_REGION, RECORD_HEADER};
use nvram::{ClusterId, Durability, Entry, Error, Journal, Kind, MemStorage, NodeId, OpId, Options, Record};

#[derive(Clone, Debug)]
enum Op {
    Append { kind: u8, op: u64, len: usize },
    Retire { op: u64 },
    Checkpoint { len: usize },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..=5, 1u64..12, 0usize..3000).prop_map(|(kind, op, len)| Op::Append { kind, op, len }),
        3 => (1u64..12).prop_map(|op| Op::Retire { op }),
        1 => (0usize..2000).prop_map(|len| Op::Checkpoint { len }),
    ]
}

#[derive(Clone, Debug)]
enum Crash {
    None,
    Truncate(u64),
    Garble(u64, u8),
}

fn crash_strategy() -> impl Strategy<Value = Crash> {
    prop_oneof![
        1 => Just(Crash::None),
        3 => (any::<u64>()).prop_map(Crash::Truncate),
        3 => (any::<u64>(), 1u8..=255).prop_map(|(at, x)| Crash::Garble(at, x)),
    ]
}

/// An item of the ring as the model knows it: a record or a pad, with the bytes a scan
/// checks (`pos .. pos + covered`).
#[derive(Clone, Debug)]
struct Item {
    pos: u64,
    covered: u64,
    record: Option<Record>,
}

fn bytes_for(seq_hint: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((seq_hint as usize * 7 + i * 13) % 251) as u8 + 1).collect()
}

fn opts() -> Options {
    Options::new(ClusterId(1), NodeId(1), Durability::None)
}

/// `policy`: 0 is `None` and the crash keeps every store (a killed process, or DAX);
/// 1 and 2 are `PerRecord` and `GroupCommit`, and the crash keeps only synced bytes (a
/// power loss). Either way every append returned durable, so the outcome is the same.
fn run(ops: &[Op], crash: &Crash, more: usize, policy: u8) -> Result<(), TestCaseError> {
    let storage = MemStorage::new(MIN_REGION as usize);
    let d = [Durability::None, Durability::PerRecord, Durability::GroupCommit][policy as usize];
    let j = Journal::create(storage.clone(), Options { durability: d, ..opts() }).unwrap();
    let cap = j.capacity();
    let mut items: Vec<Item> = Vec::new();
    let mut prev_end = 0u64;
    let append =
        |j: &Journal, items: &mut Vec<Item>, prev_end: &mut u64, e: Entry<'_>, payload: Vec<u8>| match j.append(e) {
            Ok(t) => {
                if t.pos > *prev_end && t.pos - *prev_end >= RECORD_HEADER as u64 {
                    items.push(Item { pos: *prev_end, covered: RECORD_HEADER as u64, record: None });
                }
                let (kind, op, element) = match e {
                    Entry::PreAck { op, .. } => (Kind::PreAck, op, 0),
                    Entry::PreCommand { op, element } | Entry::Decided { op, element, .. } => {
                        (Kind::PreCommand, op, element)
                    }
                    Entry::PostCompletion { op, element, .. } => (Kind::PostCompletion, op, element),
                    Entry::PostReplyAck { op } => (Kind::PostReplyAck, op, 0),
                    Entry::Checkpoint { .. } => (Kind::Checkpoint, OpId(0), 0),
                };
                // Sequence numbers are dense from 1 (one thread: in append order).
                let seq = items.iter().filter(|i| i.record.is_some()).count() as u64 + 1;
                items.push(Item {
                    pos: t.pos,
                    covered: (RECORD_HEADER + payload.len()) as u64,
                    record: Some(Record { seq, kind, op, element, pos: t.pos, generation: 0, payload: payload.into() }),
                });
                *prev_end = t.end;
            }
            Err(Error::Full { .. }) => {}
            Err(e) => panic!("append failed: {e}"),
        };
    for (i, o) in ops.iter().enumerate() {
        match *o {
            Op::Append { kind, op, len } => {
                let p = bytes_for(i as u64, len);
                let op = OpId(op);
                let (e, payload) = match kind {
                    1 => (Entry::PreAck { op, request: &p }, p.clone()),
                    2 => (Entry::PreCommand { op, element: len as u16 }, vec![]),
                    3 => {
                        let mut whole = (p.len() as u32 / 2).to_le_bytes().to_vec();
                        whole.extend_from_slice(&0u32.to_le_bytes()); // the status
                        whole.extend_from_slice(&p);
                        let (r, d) = p.split_at(p.len() / 2);
                        (Entry::PostCompletion { op, element: 3, status: 0, response: r, delta: d }, whole)
                    }
                    // Point 2 with what the element decided.
                    5 => (Entry::Decided { op, element: 2, decision: &p }, p.clone()),
                    _ => (Entry::PostReplyAck { op }, vec![]),
                };
                append(&j, &mut items, &mut prev_end, e, payload);
            }
            Op::Retire { op } => j.retire(OpId(op)).unwrap(),
            Op::Checkpoint { len } => {
                let p = bytes_for(i as u64, len);
                append(&j, &mut items, &mut prev_end, Entry::Checkpoint { state: &p }, p.clone());
            }
        }
    }
    drop(j);

    let before = if policy == 0 { storage.current_image() } else { storage.durable_image() };
    let mut image = before.clone();
    let base = HEADER_AREA;
    match *crash {
        Crash::None => {}
        Crash::Truncate(at) => {
            let at = at % cap;
            image[(base + at) as usize..(base + cap) as usize].fill(0);
        }
        Crash::Garble(at, x) => image[(base + at % cap) as usize] ^= x,
    }
    let s1 = MemStorage::from_image(image.clone());
    let (j, rec) = Journal::open(s1.clone(), opts()).unwrap();
    let head = rec.own.head;

    // The items from the head on, up to the first one whose checked bytes changed.
    let changed = |it: &Item| {
        (it.pos..it.pos + it.covered).any(|p| {
            let o = (base + p % cap) as usize;
            before[o] != image[o]
        })
    };
    let mut expected: Vec<Record> = Vec::new();
    for it in items.iter().filter(|it| it.pos >= head) {
        if changed(it) {
            break;
        }
        if let Some(r) = &it.record {
            expected.push(r.clone());
        }
    }
    let exp_cp = expected.iter().rev().find(|r| r.kind == Kind::Checkpoint).cloned();
    let exp_records: Vec<Record> = expected.into_iter().filter(|r| r.kind != Kind::Checkpoint).collect();
    let strip = |r: &Record| Record { generation: 0, ..r.clone() };
    let got: Vec<Record> = rec.own.records.iter().map(strip).collect();
    prop_assert_eq!(&got, &exp_records);
    prop_assert_eq!(rec.own.checkpoint.as_ref().map(strip), exp_cp);

    // Appending after recovery and reopening returns the survivors and the new records.
    let mut new = Vec::new();
    for k in 0..more {
        let p = bytes_for(1000 + k as u64, 100 + k * 50);
        match j.append(Entry::PreAck { op: OpId(100 + k as u64), request: &p }) {
            Ok(_) => new.push(p),
            Err(Error::Full { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    drop(j);
    let (_, rec2) = Journal::open(MemStorage::from_image(s1.current_image()), opts()).unwrap();
    if new.is_empty() {
        prop_assert_eq!(rec2.own.end, rec.own.end); // nothing changed
    } else {
        prop_assert_eq!(rec2.own.end, nvram::LogEnd::Clean); // the new records end it
    }
    let got2: Vec<Record> = rec2.own.records.iter().map(strip).collect();
    prop_assert_eq!(&got2[..exp_records.len()], &exp_records[..]);
    let fresh: Vec<&[u8]> = got2[exp_records.len()..].iter().map(|r| &r.payload[..]).collect();
    let new: Vec<&[u8]> = new.iter().map(|p| &p[..]).collect();
    prop_assert_eq!(fresh, new);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn recovery_returns_exactly_the_intact_prefix(
        ops in prop::collection::vec(op_strategy(), 0..250),
        crash in crash_strategy(),
        more in 0usize..20,
        policy in 0u8..3,
    ) {
        run(&ops, &crash, more, policy)?;
    }
}
