//! Test-only failpoints: with `DUET_FAILPOINT=NAME:N` in its environment the
//! process dies (`abort`, as a crash would end it) the N-th time the
//! pipeline passes NAME, so that `scripts/crash.sh --failpoints` can kill
//! it at each consistency point and not only at random moments:
//!
//! | name | where |
//! |---|---|
//! | `point1` | a frame's point-1 record was appended |
//! | `point2` | an element's point-2 record was appended, before it runs |
//! | `written` | a WRITE (or a server-side copy) wrote its data, before its point 3 |
//! | `torn` | a WRITE (or a server-side copy) wrote the first half of its data: dies in the middle of the write |
//! | `point3` | a frame's point-3 records are durable, before its answers are sent (a deferred element's, a large READ's or WRITE's, in its own task) |
//! | `sent` | an answer was handed to the socket, before point 4 |
//! | `point4` | the point-4 record was appended |
//! | `created` | an exclusive CREATE under a CreateGuid made its file, before its point 3 |
//! | `renamed` | a rename (SET_INFO FileRenameInformation) renamed its file, before its point 3 |
//!
//! Seven more do not kill but pause for MS milliseconds: `restore:MS`, the
//! start while it restores the journal (so that a test can signal the
//! server then); `mirror-receive:MS`, the pair's receiving thread before it
//! stores each run of the partner's records (a stuck disk: the partner's
//! acknowledgements stop, its heartbeats go on); and `read-in-file:MS`, a
//! large READ whose data is sent from its file, between taking the file's
//! size and answering (so that a test can shrink the file then); and
//! `create-made:MS`, an exclusive CREATE with a CreateGuid, after it made
//! its file (so that a test can kill the server while the CREATE is slow);
//! and `write-held:MS`, a WRITE (or a server-side copy) past its element's
//! lease check and before it writes its data (so that a test can freeze a
//! pair member there until its partner took the set over, and see the fence
//! on the data path refuse the write when it goes on); `claim:MS`, a
//! takeover between finding the partner dead and writing its claim (so that
//! a test can thaw the partner then); `mirror-send:MS`, a pair link's
//! writer before it sends each batch that carries records for the
//! partner's mirror (so that a test can kill the node while its records
//! have not reached the partner).
//!
//! One stalls: with `storage-stall:1`, every access of a pair node's storage
//! folder (its storage heartbeat, its reads of the claims and of the
//! partner's heartbeat, its claims) waits while a file named `storage-stall`
//! is in the node's current directory ([`storage_stall`]): a test makes one
//! node's shared storage stall, for as long as it likes, by making that file.
//!
//! One neither kills nor pauses: with `no-tickle:1` a takeover sends no
//! tickle ACKs to the old owner's clients ([`crate::pair::address`]), so that
//! a test (and `scripts/failover.sh --lab --no-tickle`) sees what they save.
//!
//! Several may be armed at once, separated by commas
//! (`DUET_FAILPOINT=mirror-send:300,created:1`).
//!
//! Without the variable a call costs one load of a `OnceLock`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable.
pub const ENV: &str = "DUET_FAILPOINT";

/// One armed failpoint: its name, its number (a pass or milliseconds) and
/// how many times it was passed.
struct Armed {
    name: String,
    n: u64,
    passed: AtomicU64,
}

static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();

/// The armed failpoints: `NAME:N`, or several separated by commas
/// (`mirror-send:300,created:1`).
fn armed() -> &'static [Armed] {
    ARMED.get_or_init(|| {
        let Ok(v) = std::env::var(ENV) else { return Vec::new() };
        v.split(',')
            .filter_map(|one| {
                let (name, n) = one.split_once(':')?;
                let n = n.parse().ok().filter(|n| *n > 0)?;
                tracing::warn!(failpoint = name, at = n, "{ENV} is set: the process will die there (a test setting)");
                Some(Armed { name: name.to_string(), n, passed: AtomicU64::new(0) })
            })
            .collect()
    })
}

/// The armed failpoint `name`, if it is.
fn find(name: &str) -> Option<&'static Armed> {
    armed().iter().find(|a| a.name == name)
}

/// The milliseconds failpoint `name` pauses for, when it is armed (for a
/// caller that waits its own way, in a task).
pub fn pause_ms(name: &str) -> Option<u64> {
    find(name).map(|a| a.n)
}

/// The server passes `name`: pauses here for the armed number of
/// milliseconds when `name` is the armed failpoint.
pub fn pause(name: &str) {
    if let Some(a) = find(name) {
        tracing::warn!(failpoint = name, ms = a.n, "failpoint: pausing (a test setting)");
        std::thread::sleep(std::time::Duration::from_millis(a.n));
        tracing::warn!(failpoint = name, "failpoint: going on");
    }
}

/// A pair node is about to touch its storage folder: with failpoint
/// `storage-stall` armed, waits while the file `storage-stall` is in the
/// current directory (a stalled share, for a test).
pub fn storage_stall() {
    if find("storage-stall").is_none() {
        return;
    }
    let flag = std::path::Path::new("storage-stall");
    if !flag.exists() {
        return;
    }
    tracing::warn!("failpoint: the storage folder stalls (a test setting)");
    while flag.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tracing::warn!("failpoint: the storage folder goes on");
}

/// The pipeline passes `name`: dies here if this is the armed failpoint's
/// N-th pass.
pub fn hit(name: &str) {
    hit_after(name, || ());
}

/// [`hit`], doing `last` first when this is the pass that dies (what the
/// process had done of its work when it died: part of a write).
pub fn hit_after(name: &str, last: impl FnOnce()) {
    if let Some(a) = find(name) {
        if a.passed.fetch_add(1, Ordering::Relaxed) + 1 == a.n {
            last();
            eprintln!("duet: failpoint {name} reached ({}): dying", a.n);
            std::process::abort();
        }
    }
}
