//! Runs every seed of `fuzz/corpus-seed/` through the same checks as the fuzz targets.

use std::fs;
use std::path::PathBuf;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus-seed").join(target);
    let mut v: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no seeds in {}", dir.display());
    v
}

#[test]
fn codec_seeds() {
    for (path, data) in seeds("codec") {
        eprintln!("{}", path.display());
        takeover::fuzzing::check_codec(&data);
    }
}

#[test]
fn node_seeds() {
    for (path, data) in seeds("node") {
        eprintln!("{}", path.display());
        takeover::fuzzing::check_node(&data);
    }
}

/// Writes the seed corpus (run once by hand: `cargo test -p takeover --test fuzz_corpus --
/// --ignored write_seeds`).
#[test]
#[ignore]
fn write_seeds() {
    use takeover::codec::*;
    use takeover::*;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus-seed");
    let header = Header { cluster: ClusterId(0xD0E7), node: NodeId(2), generation: 1, seq: 7 };
    let status = Status {
        health: Health::Faulty(FaultKind::DiskErrors),
        sets: vec![SetStatus { set: SetId(2), owner: NodeId(2), epoch: Epoch(3), serving: true }],
    };
    let msgs = vec![
        Message::Hello(status.clone()),
        Message::Heartbeat(status),
        Message::TakeoverRequest { set: SetId(2), reason: TakeoverReason::Fault(FaultKind::JournalFailure) },
        Message::TakeoverDenied { set: SetId(2), reason: DenyReason::NoCapacity },
        Message::ShutdownRequest { set: SetId(2), epoch: Epoch(3) },
        Message::ShutdownDone { set: SetId(2), epoch: Epoch(3), last_seq: 99 },
        Message::StayDown { set: SetId(1), epoch: Epoch(4) },
        Message::GivebackRequest { set: SetId(1) },
        Message::GivebackDone { set: SetId(1), epoch: Epoch(4), last_seq: 5 },
        Message::Mirror { pos: 4096, records: bytes::Bytes::from_static(b"record") },
        Message::MirrorAck { end: 12 },
        Message::Join { incarnation: 3, ring: 8 << 20, nonce: [7; 16] },
        Message::Proof { mac: [3; 32] },
        Message::Refuse { reason: RefuseReason::OlderIncarnation, incarnation: 4 },
        Message::MirrorMeta { head: 4096, generation: 2, capacity: 8 << 20 },
        Message::MirrorMetaAck { head: 4096 },
    ];
    for (k, m) in msgs.into_iter().enumerate() {
        let b = Frame { header, message: m }.to_bytes();
        fs::write(dir.join(format!("codec/frame-{k:02}")), &b).unwrap();
    }
    fs::write(dir.join("codec/garbage"), b"DUET not a frame").unwrap();
    fs::write(dir.join("codec/empty"), b"").unwrap();
    // Node sequences: a byte string is a list of (node, operation, arguments) choices.
    let seq = |name: &str, bytes: Vec<u8>| fs::write(dir.join(format!("node/{name}")), bytes).unwrap();
    let beats = |n: usize| (0..n).flat_map(|_| [0u8, 8, 0, 0, 0, 0]).collect::<Vec<u8>>();
    seq("beats", beats(20));
    let mut kill = beats(4);
    kill.extend([1, 13]);
    kill.extend(beats(12));
    kill.extend([1, 13]);
    kill.extend(beats(12));
    seq("kill-restart", kill);
    let mut freeze = beats(4);
    freeze.extend([1, 14]);
    freeze.extend(beats(10));
    freeze.extend([1, 14]);
    freeze.extend(beats(6));
    seq("freeze-resume", freeze);
    let mut cmd = beats(4);
    cmd.extend([0, 18, 0]);
    cmd.extend(beats(8));
    cmd.extend([1, 18, 2]);
    cmd.extend(beats(8));
    seq("takeover-giveback", cmd);
    let mut mixed = beats(4);
    mixed.extend([0, 15, 1, 16, 0, 12, 200, 0, 1, 16, 0, 15, 0, 17, 0]);
    mixed.extend(beats(10));
    mixed.extend([1, 19, 1, 4, 9, 200, 7, 0, 6, 0, 0, 7, 0]);
    mixed.extend(beats(6));
    seq("mixed", mixed);
}
