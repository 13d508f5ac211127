//! Per-byte cost of signing and encryption, 1 MiB messages (criterion).
//!
//! One row per algorithm: the three signing algorithms ([MS-SMB2] 3.1.4.1)
//! and the four ciphers of the transform ([MS-SMB2] 3.1.4.3), sealing and
//! opening (copying, and in place as the server does; opening in place
//! includes a `memcpy` to restore the sealed bytes), plus a `memcpy` of
//! the same bytes for scale.
//!
//! The `keys/` groups compare, at 1 KiB, 64 KiB and 1 MiB, each free
//! function (which prepares the key for the one call, as the server did
//! per message) with a key prepared once ([`SigningKey`], [`CipherKey`],
//! as the server now keeps per session): `.../free` against
//! `.../prepared`. Opening in place includes the `memcpy` of the sealed
//! bytes in both.
//!
//! `cargo bench -p protocol --bench crypto -- --warm-up-time 1 --measurement-time 3`
//! (`-- keys/` for the comparison alone)

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use protocol::crypto::{cipher, signing, transform, CipherKey, SigningAlgorithm, SigningKey};

const LEN: usize = 1 << 20;

fn message() -> Vec<u8> {
    message_of(LEN)
}

fn message_of(len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    m[..4].copy_from_slice(&[0xFE, b'S', b'M', b'B']);
    m
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("1MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    let msg = message();
    let key = [0x5au8; 16];
    let mut dst = vec![0u8; LEN];
    g.bench_function("memcpy", |b| b.iter(|| dst.copy_from_slice(black_box(&msg))));
    for (name, alg) in [
        ("sign/hmac-sha256", SigningAlgorithm::HmacSha256),
        ("sign/aes-128-cmac", SigningAlgorithm::AesCmac),
        ("sign/aes-128-gmac", SigningAlgorithm::AesGmac),
    ] {
        g.bench_function(name, |b| b.iter(|| signing::signature(alg, &key, black_box(&msg))));
    }
    // Verifying a received message: its signature field is set (for GMAC
    // that is the in-place path with the correction, not a copy).
    let mut signed = msg.clone();
    signing::sign(SigningAlgorithm::AesGmac, &key, &mut signed);
    g.bench_function("verify/aes-128-gmac", |b| {
        b.iter(|| assert!(signing::verify(SigningAlgorithm::AesGmac, &key, black_box(&signed))))
    });
    for (name, id, klen) in [
        ("aes-128-ccm", cipher::AES_128_CCM, 16),
        ("aes-128-gcm", cipher::AES_128_GCM, 16),
        ("aes-256-ccm", cipher::AES_256_CCM, 32),
        ("aes-256-gcm", cipher::AES_256_GCM, 32),
    ] {
        let key = vec![0x33u8; klen];
        let nonce = [7u8; 12];
        g.bench_function(format!("seal/{name}"), |b| {
            b.iter(|| transform::encrypt(id, &key, 1, &nonce, black_box(&msg)).expect("seal"))
        });
        let sealed = transform::encrypt(id, &key, 1, &nonce, &msg).expect("seal");
        g.bench_function(format!("open/{name}"), |b| {
            b.iter(|| transform::decrypt(id, &key, black_box(&sealed)).expect("open"))
        });
        // In place, as the server does: no allocation, no copy. The same
        // buffer is sealed again and again (the bytes change; the cost does not).
        let mut frame = vec![0u8; transform::TRANSFORM_HEADER_LEN + LEN];
        g.bench_function(format!("seal-in-place/{name}"), |b| {
            b.iter(|| transform::encrypt_in_place(id, &key, 1, &nonce, black_box(&mut frame)).expect("seal"))
        });
        g.bench_function(format!("open-in-place/{name}"), |b| {
            b.iter(|| {
                frame.copy_from_slice(&sealed);
                transform::decrypt_in_place(id, &key, black_box(&mut frame)).expect("open")
            })
        });
    }
    g.finish();
}

const SIGNING: [(&str, SigningAlgorithm); 3] = [
    ("hmac-sha256", SigningAlgorithm::HmacSha256),
    ("aes-128-cmac", SigningAlgorithm::AesCmac),
    ("aes-128-gmac", SigningAlgorithm::AesGmac),
];

const CIPHERS: [(&str, u16, usize); 4] = [
    ("aes-128-ccm", cipher::AES_128_CCM, 16),
    ("aes-128-gcm", cipher::AES_128_GCM, 16),
    ("aes-256-ccm", cipher::AES_256_CCM, 32),
    ("aes-256-gcm", cipher::AES_256_GCM, 32),
];

/// Free function (key prepared per call) against a prepared key, per size.
fn keys(c: &mut Criterion) {
    for (size, len) in [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("1MiB", LEN)] {
        let mut g = c.benchmark_group(format!("keys/{size}"));
        g.throughput(Throughput::Bytes(len as u64));
        let msg = message_of(len);
        let key = [0x5au8; 16];
        for (name, alg) in SIGNING {
            let prepared = SigningKey::new(alg, &key).expect("key");
            // Signing an outgoing message in place, as the server does.
            let mut out = msg.clone();
            g.bench_function(format!("sign/{name}/free"), |b| {
                b.iter(|| signing::sign(alg, &key, black_box(&mut out)))
            });
            g.bench_function(format!("sign/{name}/prepared"), |b| b.iter(|| prepared.sign(black_box(&mut out))));
            // Verifying a received one (its signature field is set).
            let mut signed = msg.clone();
            prepared.sign(&mut signed);
            g.bench_function(format!("verify/{name}/free"), |b| {
                b.iter(|| assert!(signing::verify(alg, &key, black_box(&signed))))
            });
            g.bench_function(format!("verify/{name}/prepared"), |b| {
                b.iter(|| assert!(prepared.verify(black_box(&signed))))
            });
        }
        for (name, id, klen) in CIPHERS {
            let key = vec![0x33u8; klen];
            let prepared = CipherKey::new(id, &key).expect("key");
            let nonce = [7u8; 12];
            let mut frame = vec![0u8; transform::TRANSFORM_HEADER_LEN + len];
            g.bench_function(format!("encrypt/{name}/free"), |b| {
                b.iter(|| transform::encrypt_in_place(id, &key, 1, &nonce, black_box(&mut frame)).expect("seal"))
            });
            g.bench_function(format!("encrypt/{name}/prepared"), |b| {
                b.iter(|| prepared.encrypt_in_place(1, &nonce, black_box(&mut frame)).expect("seal"))
            });
            let sealed = prepared.encrypt(1, &nonce, &msg).expect("seal");
            g.bench_function(format!("decrypt/{name}/free"), |b| {
                b.iter(|| {
                    frame.copy_from_slice(&sealed);
                    transform::decrypt_in_place(id, &key, black_box(&mut frame)).expect("open")
                })
            });
            g.bench_function(format!("decrypt/{name}/prepared"), |b| {
                b.iter(|| {
                    frame.copy_from_slice(&sealed);
                    prepared.decrypt_in_place(black_box(&mut frame)).expect("open")
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench, keys);
criterion_main!(benches);
