#![no_main]
//! Random input sequences into a simulated pair of real nodes; safety checked every step.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| takeover::fuzzing::check_node(data));
