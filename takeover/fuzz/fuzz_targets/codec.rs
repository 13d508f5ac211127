#![no_main]
//! Any bytes into the interconnect codec: decode, re-encode, compare.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| takeover::fuzzing::check_codec(data));
