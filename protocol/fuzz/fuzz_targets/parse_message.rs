//! Feeds arbitrary bytes to every SMB2 message parser, the NetBIOS framer,
//! SPNEGO/NTLM and the transform header. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    protocol::fuzzing::parse_everything(data);
});
