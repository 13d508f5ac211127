//! The fixed corpus of bad messages: every file in testdata/bad-messages
//! (and every prefix and single-byte corruption of it) goes through every
//! parser, which must fail cleanly, never panic.

#[test]
fn corpus_never_panics_any_parser() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/bad-messages");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("testdata/bad-messages exists") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for cut in 0..=bytes.len() {
            protocol::fuzzing::parse_everything(&bytes[..cut]);
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xFF;
            protocol::fuzzing::parse_everything(&b);
        }
        n += 1;
    }
    assert!(n >= 5, "the corpus has {n} files");
}
