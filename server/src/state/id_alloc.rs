//! Ids that do not repeat across restarts of a node: session ids
//! (Session.SessionId, [MS-SMB2] 3.3.1.8), persistent and volatile file ids
//! (Open.DurableFileId and Open.FileId, 3.3.1.10) and async ids (3.3.1.13).
//!
//! A client that reconnects after a restart names its old session in
//! PreviousSessionId (3.3.5.5.3), and its old opens in a durable reconnect
//! (3.3.5.9.7). Were ids to start again at 1, those would name another
//! client's live session or open of this boot. So each boot of a node takes
//! a new generation, and the generation is part of every id.
//!
//! Format of a 64-bit id:
//!
//! ```text
//! | node: 4 bits (63..60) | generation: 20 bits (59..40) | counter: 40 bits (39..0) |
//! ```
//!
//! - `node`: 0 today. The pair will give each node its own slot (not its
//!   `ids::NodeId`, which is wider: a small index into the pair), so that
//!   ids are unique across the two nodes as well (room for 16).
//! - `generation`: taken at start: one more than the last one, which is kept
//!   in the file `generation` in the server's state directory (a decimal
//!   number and a newline, replaced atomically). With no state directory,
//!   or one that cannot be written, the generation is random (a repeat is
//!   then unlikely, 1 in 2^20 per pair of boots, not impossible). A new
//!   state directory starts at a random generation too, so a wiped one does
//!   not repeat the ids of the boot before.
//! - `counter`: 1, 2, 3, ... within the boot. Should it ever pass 2^40 - 1,
//!   the carry moves the id on to the next generation, which is then
//!   written to the file, so the next boot starts after it.
//!
//! No id is 0 or all ones. Tree ids are 32 bits ([`IdAlloc::next_tree_id`]);
//! they need to be unique only within their session and do not outlive the
//! process, so they are the counter's low 32 bits, skipping 0 and
//! 0xFFFFFFFF (the related-compound placeholder).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{info, warn};

/// Bits of the counter.
pub const COUNTER_BITS: u32 = 40;
/// Bits of the generation.
pub const GENERATION_BITS: u32 = 20;
/// Where the node bits start.
pub const NODE_SHIFT: u32 = COUNTER_BITS + GENERATION_BITS;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
const GENERATION_MASK: u64 = (1 << GENERATION_BITS) - 1;
/// The file in the state directory that holds the last generation.
pub const GENERATION_FILE: &str = "generation";

/// The id allocator of one boot of a node.
pub struct IdAlloc {
    /// `node | generation | counter` of the last id handed out.
    last: AtomicU64,
    /// Where the generation is kept, when it is.
    state_dir: Option<PathBuf>,
}

impl IdAlloc {
    /// Takes this boot's generation: from (and into) `state_dir` when one is
    /// given and writable, else at random.
    pub fn start(state_dir: Option<&Path>) -> IdAlloc {
        let (generation, kept) = match state_dir {
            Some(dir) => match next_generation(dir) {
                Ok(g) => (g, true),
                Err(e) => {
                    warn!(dir = %dir.display(), "cannot keep the boot generation ({e}); ids use a random one");
                    (random_generation(), false)
                }
            },
            None => (random_generation(), false),
        };
        info!(generation, kept, "id generation");
        IdAlloc::with_generation(generation, if kept { state_dir.map(Path::to_path_buf) } else { None })
    }

    /// An allocator at a given generation. Should its counter run out, the
    /// next generation is written to `state_dir`, when given.
    pub fn with_generation(generation: u64, state_dir: Option<PathBuf>) -> IdAlloc {
        IdAlloc { last: AtomicU64::new((generation & GENERATION_MASK) << COUNTER_BITS), state_dir }
    }

    /// This boot's generation (the one the next id would carry).
    pub fn generation(&self) -> u64 {
        generation_of(self.last.load(Ordering::Relaxed) + 1)
    }

    /// A fresh 64-bit id.
    pub fn next_id(&self) -> u64 {
        loop {
            let id = self.last.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if id & COUNTER_MASK == 0 {
                // The counter ran out and carried into the generation: keep
                // the new generation for the next boot, and skip the id whose
                // counter is 0.
                self.keep_generation(generation_of(id));
                continue;
            }
            return id;
        }
    }

    /// A fresh 32-bit tree id (never 0 nor 0xFFFFFFFF).
    pub fn next_tree_id(&self) -> u32 {
        loop {
            let id = (self.next_id() & 0xFFFF_FFFF) as u32;
            if id != 0 && id != u32::MAX {
                return id;
            }
        }
    }

    fn keep_generation(&self, generation: u64) {
        if let Some(dir) = &self.state_dir {
            if let Err(e) = write_generation(dir, generation) {
                warn!(dir = %dir.display(), "cannot keep the id generation: {e}");
            }
        }
    }
}

/// The generation bits of an id.
pub fn generation_of(id: u64) -> u64 {
    (id >> COUNTER_BITS) & GENERATION_MASK
}

fn random_generation() -> u64 {
    rand::random::<u64>() & GENERATION_MASK
}

/// Reads the last generation from `dir`, writes the next one, returns it.
fn next_generation(dir: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(GENERATION_FILE);
    let next = match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(g) => (g + 1) & GENERATION_MASK,
            Err(_) => {
                warn!(file = %path.display(), "unreadable generation; starting from a random one");
                random_generation()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => random_generation(),
        Err(e) => return Err(e),
    };
    write_generation(dir, next)?;
    Ok(next)
}

/// Replaces the generation file atomically and durably (write, sync,
/// rename, sync the directory).
fn write_generation(dir: &Path, generation: u64) -> std::io::Result<()> {
    let path = dir.join(GENERATION_FILE);
    let tmp = dir.join(format!("{GENERATION_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{generation}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_generation_and_count_from_one() {
        let ids = IdAlloc::with_generation(7, None);
        let a = ids.next_id();
        let b = ids.next_id();
        assert_eq!(a, 7 << COUNTER_BITS | 1);
        assert_eq!(b, a + 1);
        assert_eq!(generation_of(a), 7);
        assert_eq!(a >> NODE_SHIFT, 0, "node bits are 0 for now");
    }

    #[test]
    fn each_start_takes_the_next_generation_from_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = IdAlloc::start(Some(dir.path()));
        let second = IdAlloc::start(Some(dir.path()));
        assert_eq!(second.generation(), (first.generation() + 1) & GENERATION_MASK);
        assert_ne!(first.next_id(), second.next_id());
        let kept: u64 = std::fs::read_to_string(dir.path().join(GENERATION_FILE)).unwrap().trim().parse().unwrap();
        assert_eq!(kept, second.generation());
    }

    #[test]
    fn the_generation_wraps_around() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(GENERATION_FILE), format!("{GENERATION_MASK}\n")).unwrap();
        assert_eq!(IdAlloc::start(Some(dir.path())).generation(), 0);
    }

    #[test]
    fn an_unwritable_state_dir_falls_back_to_a_random_generation() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be.
        let not_a_dir = dir.path().join("f");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let ids = IdAlloc::start(Some(&not_a_dir));
        assert!(ids.next_id() & COUNTER_MASK == 1);
    }

    #[test]
    fn a_spent_counter_moves_on_to_the_next_generation_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let ids = IdAlloc::with_generation(5, Some(dir.path().to_path_buf()));
        ids.last.store(5 << COUNTER_BITS | (COUNTER_MASK - 1), Ordering::Relaxed);
        let last_of_5 = ids.next_id();
        assert_eq!(generation_of(last_of_5), 5);
        let first_of_6 = ids.next_id();
        assert_eq!(first_of_6, 6 << COUNTER_BITS | 1, "the id with counter 0 is skipped");
        let kept: u64 = std::fs::read_to_string(dir.path().join(GENERATION_FILE)).unwrap().trim().parse().unwrap();
        assert_eq!(kept, 6);
        assert_eq!(IdAlloc::start(Some(dir.path())).generation(), 7);
    }

    #[test]
    fn tree_ids_skip_zero_and_all_ones() {
        let ids = IdAlloc::with_generation(0, None);
        ids.last.store(0xFFFF_FFFE, Ordering::Relaxed);
        assert_eq!(ids.next_tree_id(), 1, "0xFFFFFFFF and 0x1_00000000 are skipped");
    }
}
