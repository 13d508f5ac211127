//! The journal's resident memory is what its load has used of its rings, not the size
//! of its file: a fresh journal maps no page, appending maps the pages it writes, and
//! a reopened journal keeps only its live part mapped after the recovery scan.
//! Measured on the mapping itself (`/proc/self/smaps`, its `Rss`), so that other
//! tests' threads do not count.

use nvram::{ClusterId, Durability, Entry, Journal, NodeId, OpId, Options};

const MIB: u64 = 1 << 20;

fn opts() -> Options {
    Options::new(ClusterId(0xc1), NodeId(1), Durability::None)
}

/// Resident bytes of this process's mappings of `path`.
fn rss_of(path: &std::path::Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = path.to_str().unwrap();
    let mut in_it = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        // A mapping's first line starts with its address range.
        if first.contains('-') && !first.ends_with(':') {
            in_it = line.ends_with(name);
        } else if in_it && first == "Rss:" {
            kib += line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    kib * 1024
}

#[test]
fn resident_memory_is_what_the_rings_have_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nvram");
    let j = Journal::create_file(&path, 32 * MIB, opts()).unwrap();
    assert!(rss_of(&path) <= MIB, "a fresh journal has {} bytes resident", rss_of(&path));
    // 2 MB of records, retired as they go, a checkpoint every 64.
    let record = vec![7u8; 4000];
    for i in 0..512u64 {
        let op = OpId(i + 1);
        j.append(Entry::PreAck { op, request: &record }).unwrap();
        j.retire(op).unwrap();
        if i % 64 == 63 {
            j.checkpoint(b"state").unwrap();
            j.compact().unwrap();
        }
    }
    let used = rss_of(&path);
    assert!((MIB..=4 * MIB).contains(&used), "{used} bytes resident after 2 MB of records");
    // Live records are kept: a last one survives a reopen, which maps the whole file
    // for its scan and then keeps only the live part.
    j.append(Entry::PreAck { op: OpId(1 << 40), request: b"last" }).unwrap();
    drop(j);
    let (j, rec) = Journal::open_file(&path, opts()).unwrap();
    assert!(rec.own.records.iter().any(|r| r.op == OpId(1 << 40) && &r.payload[..] == b"last"));
    assert!(rss_of(&path) <= MIB, "{} bytes resident after the recovery scan", rss_of(&path));
    drop(j);
}
