//! The journal's resident memory is what its load has used of its rings, not the size
//! of its file: a fresh journal maps no page, appending maps the pages it writes, and
//! a reopened journal keeps only its live part mapped after the recovery scan. With
//! `Options::release_free` (the server's setting) it follows the live records: the
//! ring behind the head is dropped from memory as the head moves on.
//! Measured on the mapping itself (`/proc/self/smaps`, its `Rss`), so that other
//! tests' threads do not count.

use nvram::{ClusterId, Durability, Entry, Journal, NodeId, OpId, Options};

/// Appends `n` records of 4000 bytes, each operation retired at once and a checkpoint
/// every 64, so that the head follows the tail; the most resident bytes of `path`
/// seen after each checkpoint.
fn churn(j: &Journal, path: &std::path::Path, n: u64) -> u64 {
    let record = vec![7u8; 4000];
    let mut most = 0;
    for i in 0..n {
        let op = OpId(i + 1);
        j.append(Entry::PreAck { op, request: &record }).unwrap();
        j.retire(op).unwrap();
        if i % 64 == 63 {
            j.checkpoint(b"state").unwrap();
            j.compact().unwrap();
            most = most.max(rss_of(path));
        }
    }
    most
}

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
    // 2 MB of records.
    churn(&j, &path, 512);
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

#[test]
fn with_release_free_resident_memory_follows_the_live_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nvram");
    let j = Journal::create_file(&path, 32 * MIB, opts().releasing_free(true)).unwrap();
    let cap = j.capacity();
    // Three laps of the ring.
    let most = churn(&j, &path, 3 * cap / 4096);
    assert!(j.tail() > 2 * cap, "the ring did not wrap: tail {} of {cap}", j.tail());
    // The live part (64 records) and the MiB not yet dropped, with room to spare.
    assert!(most <= 4 * MIB, "{most} bytes resident at most over three laps of a {cap}-byte ring");
    // Without it, the whole ring is resident after a lap.
    let path2 = dir.path().join("nvram2");
    let j2 = Journal::create_file(&path2, 32 * MIB, opts()).unwrap();
    let whole = churn(&j2, &path2, 2 * cap / 4096);
    assert!(whole >= cap - MIB, "{whole} bytes resident after two laps without release_free");
}
