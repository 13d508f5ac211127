//! The frame-sequence fuzzer's corpus, run in CI: the seeds
//! (`server::fuzzing::seeds`), every file in `testdata/fuzz-frames` (inputs
//! the fuzzer found interesting; add crashes there once fixed), and a few
//! hundred deterministic mutations of the seeds. No input may make the
//! server panic (in any task) or stop answering.

use std::sync::Mutex;

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn run_checked(name: &str, input: &[u8]) -> server::fuzzing::Answers {
    install_hook();
    let r = std::panic::catch_unwind(|| server::fuzzing::run(input));
    let _ = std::panic::take_hook();
    let panics = std::mem::take(&mut *PANICS.lock().unwrap());
    assert!(panics.is_empty(), "input {name} ({input:02x?}): {panics:?}");
    r.unwrap_or_else(|_| panic!("input {name} ({input:02x?}) panicked"))
}

fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        PANICS.lock().unwrap().push(info.to_string());
    }));
}

/// xorshift64*: a fixed sequence, so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn seeds_and_corpus_files() {
    let seeds = server::fuzzing::seeds();
    assert!(seeds.len() >= 5);
    for (name, input) in &seeds {
        let answers = run_checked(name, input);
        // Every seed that logs on gets a session (SESSION_SETUP SUCCESS)
        // and reads the file it opened, so the fuzzer starts from inside
        // the handlers, not at the door.
        if name.starts_with("read") {
            assert!(answers.contains(&(1, 0)), "{name}: logged on: {answers:x?}");
            assert!(answers.contains(&(5, 0)), "{name}: opened a file: {answers:x?}");
            let reads_ok = answers.iter().filter(|a| **a == (8, 0)).count();
            assert_eq!(reads_ok, 3, "{name}: plain, signed and encrypted READs succeed: {answers:x?}");
        }
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/fuzz-frames");
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("testdata/fuzz-frames exists") {
        let path = entry.unwrap().path();
        if path.is_file() && path.extension().is_none_or(|e| e != "md") {
            run_checked(&path.display().to_string(), &std::fs::read(&path).unwrap());
            files += 1;
        }
    }
    assert!(files > 0, "the corpus directory holds inputs");
}

#[test]
fn mutations_of_the_seeds() {
    let seeds = server::fuzzing::seeds();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..400 {
        let (name, seed) = &seeds[rng.next() as usize % seeds.len()];
        let mut input = seed.clone();
        for _ in 0..1 + rng.next() % 8 {
            let at = rng.next() as usize % (input.len() + 1);
            match rng.next() % 4 {
                0 if at < input.len() => input[at] ^= 1 << (rng.next() % 8),
                1 if at < input.len() => input[at] = rng.next() as u8,
                2 => input.insert(at, rng.next() as u8),
                _ if at < input.len() => {
                    input.remove(at);
                }
                _ => {}
            }
        }
        run_checked(&format!("{name} mutation {round}"), &input);
    }
}
