//! Latency harness: per-append times measured with `Instant` around each call, then
//! p50/p99, records/s and GB/s; the same for a plain `memcpy` into a mapped region; and
//! the time to recover a full 1 GiB region.
//!
//! Rows: `process` (`Durability::None`, `append`: returns once the record is durable,
//! i.e. published in order), `process nowait` (`append_nowait`, the server's path: the
//! record is copied and marked ready, and published in order by whoever publishes; each
//! appender commits its last ticket before the clock stops), `group`
//! (`Durability::GroupCommit`, `append`: synced).
//!
//! `cargo bench -p nvram --bench latency` (set `NVRAM_BENCH_DIR` to put the region files
//! elsewhere than /tmp, `NVRAM_BENCH_SKIP_RECOVERY=1` to skip the 1 GiB recovery,
//! `NVRAM_BENCH_SIZES=128,4096` and `NVRAM_BENCH_THREADS=1,2,8` to choose the rows,
//! `NVRAM_BENCH_POLICIES=process,process nowait` to run only the named policies, and
//! `NVRAM_BENCH_ROUNDS=3` to repeat each row set, memcpy included, that many times).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use nvram::{ClusterId, Durability, Entry, Journal, LocalMirror, NodeId, OpId, Options};

mod common;
use common::{journal, Appender, POLICIES, SIZES};

const REGION: u64 = 512 << 20;

struct Stats {
    p50: Duration,
    p99: Duration,
    rate: f64,
    gbps: f64,
}

fn measure(
    threads: usize,
    per_thread: usize,
    size: usize,
    op: impl Fn(usize, &mut dyn FnMut(&mut dyn FnMut())) + Sync,
) -> Stats {
    let barrier = Barrier::new(threads + 1);
    let (times, wall) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (op, barrier) = (&op, &barrier);
                s.spawn(move || {
                    let mut times = Vec::with_capacity(per_thread);
                    barrier.wait();
                    op(t, &mut |one: &mut dyn FnMut()| {
                        for _ in 0..per_thread {
                            let start = Instant::now();
                            one();
                            times.push(start.elapsed());
                        }
                    });
                    barrier.wait();
                    times
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        let wall = start.elapsed();
        let times: Vec<Duration> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        (times, wall)
    });
    let mut times = times;
    times.sort_unstable();
    let n = times.len();
    let rate = n as f64 / wall.as_secs_f64();
    Stats { p50: times[n / 2], p99: times[n * 99 / 100], rate, gbps: rate * size as f64 / 1e9 }
}

fn main() {
    let dir = tempfile::tempdir_in(std::env::var_os("NVRAM_BENCH_DIR").unwrap_or("/tmp".into())).unwrap();
    println!("| size | appenders | policy | p50 | p99 | records/s | GB/s | vs memcpy |");
    println!("|---|---|---|---|---|---|---|---|");
    let sizes: Vec<usize> = match std::env::var("NVRAM_BENCH_SIZES") {
        Ok(v) => v.split(',').filter(|x| !x.is_empty()).map(|x| x.parse().unwrap()).collect(),
        Err(_) => SIZES.to_vec(),
    };
    for size in sizes {
        let payload = vec![0x5au8; size];
        // Enough appends to wrap the ring a few times at 64 KiB, bounded for 128 B.
        let total = (2usize << 30) / size.max(4096) * 4;
        let total = total.min(400_000);
        let thread_counts: Vec<usize> = match std::env::var("NVRAM_BENCH_THREADS") {
            Ok(v) => v.split(',').filter(|x| !x.is_empty()).map(|x| x.parse().unwrap()).collect(),
            Err(_) => vec![1, 8],
        };
        let rounds: usize = std::env::var("NVRAM_BENCH_ROUNDS").map_or(1, |v| v.parse().unwrap());
        for threads in (0..rounds).flat_map(|_| thread_counts.iter().copied()) {
            let per = total / threads;
            let mut map = memmap2::MmapMut::map_anon(REGION as usize).unwrap();
            map.fill(0);
            let base = map.as_mut_ptr() as usize;
            let memcpy = measure(threads, per, size, |t, run| {
                let slice = REGION as usize / threads;
                let mut off = 0;
                run(&mut || {
                    if off + size > slice {
                        off = 0;
                    }
                    // SAFETY: each thread copies into its own slice of the live anonymous
                    // mapping; the benchmark's only unsafe code.
                    unsafe {
                        std::ptr::copy_nonoverlapping(payload.as_ptr(), (base + t * slice + off) as *mut u8, size)
                    };
                    off += size;
                })
            });
            drop(map);
            row(size, threads, "memcpy", &memcpy, &memcpy);
            for (name, d, nowait) in POLICIES.into_iter().filter(|(n, _, _)| chosen(n)) {
                let j = journal(dir.path(), REGION, d);
                // Warm: one lap through the ring so every page is mapped.
                {
                    let mut a = Appender::new(j.clone(), 99);
                    let warm = vec![0u8; 65536.min(j.max_payload() as usize)];
                    for _ in 0..(j.capacity() as usize / warm.len() + 8) {
                        a.append(&warm);
                    }
                    a.next = u64::MAX; // retire the rest
                    while a.lag < (99 << 40) + (j.capacity() / warm.len() as u64 + 8) {
                        j.retire(OpId(a.lag)).unwrap();
                        a.lag += 1;
                    }
                }
                let per_op = if d == Durability::GroupCommit { per.min(20_000) } else { per };
                let s = measure(threads, per_op, size, |t, run| {
                    let mut a = Appender::new(j.clone(), t as u64).nowait(nowait);
                    run(&mut || a.append(&payload));
                    a.finish(); // in the wall time, not in any sample
                });
                row(size, threads, name, &s, &memcpy);
            }
        }
    }
    if std::env::var_os("NVRAM_BENCH_SKIP_RECOVERY").is_none() {
        recovery(dir.path());
    }
}

/// Whether `NVRAM_BENCH_POLICIES` (comma-separated names; all when unset) names `policy`.
fn chosen(policy: &str) -> bool {
    match std::env::var("NVRAM_BENCH_POLICIES") {
        Ok(v) => v.split(',').any(|n| n.trim() == policy),
        Err(_) => true,
    }
}

fn row(size: usize, threads: usize, name: &str, s: &Stats, memcpy: &Stats) {
    println!(
        "| {} | {} | {} | {:.2} µs | {:.2} µs | {:.0} | {:.2} | {:.0}% |",
        if size >= 1024 { format!("{} KiB", size / 1024) } else { format!("{size} B") },
        threads,
        name,
        s.p50.as_nanos() as f64 / 1000.0,
        s.p99.as_nanos() as f64 / 1000.0,
        s.rate,
        s.gbps,
        100.0 * s.gbps / memcpy.gbps
    );
}

/// Fills both rings of a 1 GiB region (the own ring by appends, the partner's mirror
/// through a `LocalMirror` from a second journal) and times `Journal::open`.
fn recovery(dir: &std::path::Path) {
    const GIB: u64 = 1 << 30;
    for size in [4096usize, 65536, 512] {
        let o = |n| Options::new(ClusterId(9), NodeId(n), Durability::None);
        let pa = dir.join(format!("rec-a-{size}"));
        let pb = dir.join(format!("rec-b-{size}"));
        let a = Arc::new(Journal::create_file(&pa, GIB, o(1)).unwrap());
        let b = Journal::create_file(&pb, GIB, o(2)).unwrap();
        b.attach_mirror(Arc::new(LocalMirror::new(a.clone()))).unwrap();
        let payload = vec![0x3cu8; size];
        let mut n = 0u64;
        for j in [&*a, &b] {
            let mut op = 0;
            while j.append(Entry::PreAck { op: OpId(op), request: &payload }).is_ok() {
                op += 1;
            }
            n += op;
        }
        drop(b);
        drop(a);
        // Let writeback of the fill finish first: it would slow the page faults.
        std::fs::File::open(&pa).unwrap().sync_all().unwrap();
        let mut times = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            let (_, rec) = Journal::open_file(&pa, o(1)).unwrap();
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            let count = rec.own.records.len() + rec.partner.records.len();
            assert_eq!(count as u64, n);
        }
        println!(
            "recovery of a full 1 GiB region, {size} B records: {n} records in {:.0} / {:.0} / {:.0} ms (three opens)",
            times[0], times[1], times[2]
        );
        let _ = std::fs::remove_file(&pa);
        let _ = std::fs::remove_file(&pb);
    }
}
