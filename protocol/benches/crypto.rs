//! Per-byte cost of signing and encryption, 1 MiB messages (criterion).
//!
//! One row per algorithm: the three signing algorithms ([MS-SMB2] 3.1.4.1)
//! and the four ciphers of the transform ([MS-SMB2] 3.1.4.3), sealing and
//! opening (copying, and in place as the server does; opening in place
//! includes a `memcpy` to restore the sealed bytes), plus a `memcpy` of
//! the same bytes for scale.
//!
//! `cargo bench -p protocol --bench crypto -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use protocol::crypto::{cipher, signing, transform, SigningAlgorithm};

const LEN: usize = 1 << 20;

fn message() -> Vec<u8> {
    let mut m: Vec<u8> = (0..LEN).map(|i| (i * 7 + 3) as u8).collect();
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

criterion_group!(benches, bench);
criterion_main!(benches);
