//! A real crash: a child process appends from several threads and is killed with
//! SIGKILL at a random moment, 200 times. Every record the child reported durable must
//! be recovered, in order, with its bytes.
//!
//! The child is this same test binary, re-executed with `NVRAM_CRASH_CHILD` set; it runs
//! `crash_child`, which does nothing in an ordinary run. Ten runs in a row share one
//! region file, so each child also recovers the previous one's crash and appends after
//! it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nvram::{ClusterId, Durability, Entry, Error, Journal, NodeId, OpId, Options};

const RUNS: u64 = 200;
const RUNS_PER_FILE: u64 = 10;
const REGION: u64 = 16 << 20;
const THREADS: u64 = 3;

fn policy(run: u64) -> Durability {
    [Durability::None, Durability::GroupCommit, Durability::PerRecord][(run % 3) as usize]
}

fn opts(d: Durability) -> Options {
    Options::new(ClusterId(0xc4a5), NodeId(1), d)
}

/// The payload of operation `op`: its length and bytes follow from its id.
fn payload(op: u64) -> Vec<u8> {
    let len = (op.wrapping_mul(2_654_435_761) % 2000) as usize;
    (0..len).map(|i| (op as usize).wrapping_add(i * 7) as u8).collect()
}

#[test]
fn crash_child() {
    let Ok(path) = std::env::var("NVRAM_CRASH_CHILD") else { return };
    let run: u64 = std::env::var("NVRAM_CRASH_RUN").unwrap().parse().unwrap();
    let path = Path::new(&path);
    let o = opts(policy(run));
    let j = if path.exists() {
        Journal::open_file(path, o).unwrap().0
    } else {
        Journal::create_file(path, REGION, o).unwrap()
    };
    let j = Arc::new(j);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let op = run << 40 | t << 32 | i;
                    match j.append(Entry::PreAck { op: OpId(op), request: &payload(op) }) {
                        Ok(tk) => {
                            // One write per line: lines from threads do not interleave.
                            let line = format!("DURABLE {} {}\n", tk.pos, op);
                            std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes()).unwrap();
                        }
                        Err(Error::Full { .. }) => std::thread::sleep(Duration::from_secs(60)),
                        Err(e) => panic!("append: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_durable_record() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut durable: HashMap<u64, u64> = HashMap::new(); // position -> op
    let mut total_reported = 0;
    for run in 0..RUNS {
        let path = dir.path().join(format!("region{}", run / RUNS_PER_FILE));
        if run % RUNS_PER_FILE == 0 {
            durable.clear();
        }
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("NVRAM_CRASH_CHILD", &path)
            .env("NVRAM_CRASH_RUN", run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                lines.push(line);
            }
            lines
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(3_000 + rng % 40_000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // `split` yields a last line without its newline too: only whole lines count.
        let lines = reader.join().unwrap();
        for line in &lines {
            let line = String::from_utf8_lossy(line);
            let Some(rest) = line.strip_prefix("DURABLE ") else { continue };
            let mut it = rest.split(' ');
            let (Some(pos), Some(op)) = (it.next(), it.next()) else { continue };
            let (Ok(pos), Ok(op)) = (pos.parse::<u64>(), op.parse::<u64>()) else { continue };
            durable.insert(pos, op);
            total_reported += 1;
        }

        if !path.exists() {
            continue; // killed before it created the file
        }
        let (_, rec) = match Journal::open_file(&path, opts(Durability::None)) {
            Ok(x) => x,
            // Killed while creating or formatting the file: start over.
            Err(Error::BadMagic | Error::BadHeader | Error::BadSize { .. }) if durable.is_empty() => {
                std::fs::remove_file(&path).unwrap();
                continue;
            }
            Err(e) => panic!("run {run}: open failed: {e}"),
        };
        let recs = &rec.own.records;
        assert!(recs.windows(2).all(|w| w[1].seq == w[0].seq + 1), "run {run}: not in order");
        let by_pos: HashMap<u64, &nvram::Record> = recs.iter().map(|r| (r.pos, r)).collect();
        for (pos, op) in &durable {
            let r = by_pos
                .get(pos)
                .unwrap_or_else(|| panic!("run {run}: durable record at {pos} (op {op}) lost; {:?}", rec.own.end));
            assert_eq!(r.op, OpId(*op), "run {run}: at {pos}");
            assert_eq!(r.payload[..], payload(*op)[..], "run {run}: at {pos}");
        }
        // Every recovered record is one the child appended.
        for r in recs {
            assert_eq!(r.payload[..], payload(r.op.0)[..]);
        }
    }
    assert!(total_reported > 1000, "children reported only {total_reported} records");
    eprintln!("{RUNS} kills, {total_reported} durable records checked in {:?}", started.elapsed());
}
