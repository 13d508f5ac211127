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
//! Format of a 64-bit id: the model's ([`crate::model::ids`]), so that the
//! ids the live server hands out are the ones its state model records:
//!
//! ```text
//! | set: 8 bits (63..56) | generation: 24 bits (55..32) | counter: 32 bits (31..0) |
//! ```
//!
//! - `set`: the share set whose partition the id belongs to (0 today: one
//!   set per node; the pair gives each node's set its own number, so ids
//!   are unique across the two nodes as well).
//! - `generation`: taken at start: one more than the last one, which is kept
//!   in the file `generation` in the server's state directory (a decimal
//!   number and a newline, replaced atomically). With no state directory,
//!   or one that cannot be written, the generation is random (a repeat is
//!   then unlikely, 1 in 2^24 per pair of boots, not impossible). A new
//!   state directory starts at a random generation too, so a wiped one does
//!   not repeat the ids of the boot before.
//! - `counter`: 1, 2, 3, ... within the boot. When it passes
//!   [`crate::model::ids::MAX_COUNTER`], the carry moves the id on to the
//!   next generation, which is then written to the file, so the next boot
//!   starts after it (and the model follows with a `NewGeneration` delta,
//!   [`super::Server::apply`]).
//!
//! No id is 0 or all ones. Tree ids are not from here: they are 32 bits
//! and unique only within their session, which counts them
//! ([`super::Session::next_tree_id`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{info, warn};

use ids::SetId;

use crate::model::ids::{COUNTER_BITS, GENERATION_BITS};

/// Where the set bits start.
pub const SET_SHIFT: u32 = COUNTER_BITS + GENERATION_BITS;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;
const GENERATION_MASK: u64 = (1 << GENERATION_BITS) - 1;
/// Generation and counter: what the allocator counts.
const SEQUENCE_MASK: u64 = (1 << SET_SHIFT) - 1;
/// The file in the state directory that holds the last generation.
pub const GENERATION_FILE: &str = "generation";

/// The id allocator of one boot of a node.
pub struct IdAlloc {
    /// The set bits of every id.
    set: u64,
    /// `generation | counter` of the last id handed out.
    last: AtomicU64,
    /// Where the generation is kept, when it is.
    state_dir: Option<PathBuf>,
}

impl IdAlloc {
    /// Takes this boot's generation: from (and into) `state_dir` when one is
    /// given and writable, else at random.
    pub fn start(set: SetId, state_dir: Option<&Path>) -> IdAlloc {
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
        IdAlloc::with_generation(set, generation, if kept { state_dir.map(Path::to_path_buf) } else { None })
    }

    /// The allocator of a boot that restored a model whose ids are of
    /// `generation - 1` ([`crate::restart`]): the journal, not the state
    /// directory, says which generations were used. The generation is
    /// written to `state_dir` too, so a later boot without the journal
    /// still starts after it.
    pub fn restored(set: SetId, generation: u64, state_dir: Option<&Path>) -> IdAlloc {
        let kept = state_dir.and_then(|dir| {
            match std::fs::create_dir_all(dir).and_then(|()| write_generation(dir, generation)) {
                Ok(()) => Some(dir.to_path_buf()),
                Err(e) => {
                    warn!(dir = %dir.display(), "cannot keep the boot generation: {e}");
                    None
                }
            }
        });
        info!(generation, "id generation, after the restored state's");
        IdAlloc::with_generation(set, generation, kept)
    }

    /// An allocator at a given generation. Should its counter run out, the
    /// next generation is written to `state_dir`, when given.
    pub fn with_generation(set: SetId, generation: u64, state_dir: Option<PathBuf>) -> IdAlloc {
        IdAlloc {
            set: u64::from(set.0 & 0xFF) << SET_SHIFT,
            last: AtomicU64::new((generation & GENERATION_MASK) << COUNTER_BITS),
            state_dir,
        }
    }

    /// This boot's generation (the one the next id would carry).
    pub fn generation(&self) -> u64 {
        generation_of(self.last.load(Ordering::Relaxed) + 1)
    }

    /// The set whose ids these are.
    pub fn set(&self) -> SetId {
        SetId((self.set >> SET_SHIFT) as u16)
    }

    /// A fresh 64-bit id.
    pub fn next_id(&self) -> u64 {
        loop {
            let seq = self.last.fetch_add(1, Ordering::Relaxed).wrapping_add(1) & SEQUENCE_MASK;
            if seq & COUNTER_MASK == 0 {
                // The counter ran out and carried into the generation: keep
                // the new generation for the next boot, and skip the id whose
                // counter is 0.
                self.keep_generation(generation_of(seq));
                continue;
            }
            if seq & COUNTER_MASK == COUNTER_MASK {
                // All ones is never a counter (the model's MAX_COUNTER).
                continue;
            }
            return self.set | seq;
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
        let ids = IdAlloc::with_generation(SetId(0), 7, None);
        let a = ids.next_id();
        let b = ids.next_id();
        assert_eq!(a, 7 << COUNTER_BITS | 1);
        assert_eq!(b, a + 1);
        assert_eq!(generation_of(a), 7);
        assert_eq!(a >> SET_SHIFT, 0, "set 0");
        let other = IdAlloc::with_generation(SetId(3), 7, None).next_id();
        assert_eq!(other, 3 << SET_SHIFT | 7 << COUNTER_BITS | 1, "another set's ids differ in the set bits");
        // The model takes the live ids as its own.
        let parts = crate::model::ids::IdParts::of(other);
        assert_eq!((parts.set, parts.generation, parts.counter), (SetId(3), 7, 1));
    }

    #[test]
    fn each_start_takes_the_next_generation_from_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = IdAlloc::start(SetId(0), Some(dir.path()));
        let second = IdAlloc::start(SetId(0), Some(dir.path()));
        assert_eq!(second.generation(), (first.generation() + 1) & GENERATION_MASK);
        assert_ne!(first.next_id(), second.next_id());
        let kept: u64 = std::fs::read_to_string(dir.path().join(GENERATION_FILE)).unwrap().trim().parse().unwrap();
        assert_eq!(kept, second.generation());
    }

    #[test]
    fn the_generation_wraps_around() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(GENERATION_FILE), format!("{GENERATION_MASK}\n")).unwrap();
        assert_eq!(IdAlloc::start(SetId(0), Some(dir.path())).generation(), 0);
    }

    #[test]
    fn an_unwritable_state_dir_falls_back_to_a_random_generation() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be.
        let not_a_dir = dir.path().join("f");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let ids = IdAlloc::start(SetId(0), Some(&not_a_dir));
        assert!(ids.next_id() & COUNTER_MASK == 1);
    }

    #[test]
    fn a_spent_counter_moves_on_to_the_next_generation_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let ids = IdAlloc::with_generation(SetId(0), 5, Some(dir.path().to_path_buf()));
        ids.last.store(5 << COUNTER_BITS | (COUNTER_MASK - 2), Ordering::Relaxed);
        let last_of_5 = ids.next_id();
        assert_eq!(last_of_5 & COUNTER_MASK, COUNTER_MASK - 1, "the model's MAX_COUNTER is the last");
        assert_eq!(generation_of(last_of_5), 5);
        let first_of_6 = ids.next_id();
        assert_eq!(first_of_6, 6 << COUNTER_BITS | 1, "the id with counter 0 is skipped");
        let kept: u64 = std::fs::read_to_string(dir.path().join(GENERATION_FILE)).unwrap().trim().parse().unwrap();
        assert_eq!(kept, 6);
        assert_eq!(IdAlloc::start(SetId(0), Some(dir.path())).generation(), 7);
    }
}
