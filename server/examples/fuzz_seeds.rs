//! Writes the frame fuzzer's seeds (`server::fuzzing::seeds`) into a
//! directory, one file each, to start a corpus:
//! `cargo run -p server --example fuzz_seeds -- server/fuzz/corpus/frames`.

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "server/fuzz/corpus/frames".into());
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    for (name, input) in server::fuzzing::seeds() {
        std::fs::write(std::path::Path::new(&dir).join(name), input).expect("write a seed");
    }
}
