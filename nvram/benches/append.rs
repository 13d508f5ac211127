//! Append throughput with criterion: records/s and bytes/s for 128 B, 4 KiB and 64 KiB
//! records, policies `process` (`none`; also `process nowait`, with `append_nowait`) and
//! `group` (group commit), and `process release` (`Options::release_free`, as `duet serve`
//! opens it), 1 and 8 appenders, beside a plain
//! `memcpy` of the same bytes into a mapped region.
//!
//! `cargo bench -p nvram --bench append -- --warm-up-time 1 --measurement-time 3`

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

mod common;
use common::{journal_releasing, Appender, POLICIES, SIZES};
use nvram::Durability;

const REGION: u64 = 512 << 20;

fn run_threads(threads: usize, iters: u64, f: impl Fn(usize, u64) + Sync) -> Duration {
    let per = iters.div_ceil(threads as u64);
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (f, barrier) = (&f, &barrier);
            s.spawn(move || {
                barrier.wait();
                f(t, per);
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(std::env::var_os("NVRAM_BENCH_DIR").unwrap_or("/tmp".into())).unwrap();
    for size in SIZES {
        let payload = vec![0xa5u8; size];
        let mut g = c.benchmark_group(format!("append/{size}B"));
        g.throughput(Throughput::Bytes(size as u64));
        for threads in [1usize, 8] {
            // The physical limit: memcpy into a mapped region, wrapping.
            let mut map = memmap2::MmapMut::map_anon(REGION as usize).unwrap();
            map.fill(0);
            let map = std::sync::Mutex::new(map);
            let base = map.lock().unwrap().as_mut_ptr() as usize;
            g.bench_function(BenchmarkId::new("memcpy", threads), |b| {
                b.iter_custom(|iters| {
                    run_threads(threads, iters, |t, n| {
                        let slice = REGION as usize / threads;
                        let mut off = 0;
                        for _ in 0..n {
                            if off + size > slice {
                                off = 0;
                            }
                            let dst = base + t * slice + off;
                            // SAFETY: each thread copies into its own slice of the live
                            // anonymous mapping; the benchmark's only unsafe code.
                            unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), dst as *mut u8, size) };
                            off += size;
                        }
                    })
                })
            });
            drop(map);
            // And `process` as `duet serve` opens it (Options::release_free).
            let rows = POLICIES.map(|(n, d, w)| (n, d, w, false));
            let served = ("process release", Durability::None, false, true);
            for (name, d, nowait, release) in rows.into_iter().chain([served]) {
                let j = journal_releasing(dir.path(), REGION, d, release);
                let appenders: Vec<_> = (0..threads)
                    .map(|t| std::sync::Mutex::new(Appender::new(j.clone(), t as u64).nowait(nowait)))
                    .collect();
                g.bench_function(BenchmarkId::new(name, threads), |b| {
                    b.iter_custom(|iters| {
                        run_threads(threads, iters, |t, n| {
                            let mut a = appenders[t].lock().unwrap();
                            for _ in 0..n {
                                a.append(&payload);
                            }
                            a.finish();
                        })
                    })
                });
                drop(appenders);
                drop(Arc::try_unwrap(j).ok());
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
