//! Sequences of frames against an in-process server over an in-memory
//! pipe: NEGOTIATE, logons, signed and encrypted requests, compounds,
//! message ids off by any amount (`server::fuzzing`). Nothing may panic,
//! and the server must still answer a newcomer afterwards.
//!
//! Seed the corpus with `cargo run --example fuzz_seeds` output, or start
//! from `testdata/fuzz-frames`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    server::fuzzing::run(data);
});
