//! Retiring finished operations and checkpointing, so the journal's ring
//! wraps and never fills under steady load (DESIGN.md, "The journal").
//!
//! An operation may be retired (its records overwritten, its saved answer
//! forgotten) once it is past point 4 and the file data it wrote is on
//! stable storage. [`Retirer::answered`](crate::state::retiring::Retirer::answered) is told of each operation at point
//! 4; one task ([`run`]) takes them in batches: under a policy that
//! survives power loss it first flushes the shares' file systems
//! (`syncfs`), then retires the batch, and when the ring is a quarter full
//! it appends a checkpoint of the model, waits until it is durable and lets
//! the head move up to it.
//!
//! Under a policy that survives a killed process only, there is no file
//! data to flush first: an operation is retired at point 4 itself.
//!
//! An operation that never reaches point 4 (its connection died before the
//! answer was acknowledged, or it waits long: a CHANGE_NOTIFY, a blocking
//! LOCK) would hold the head back for ever and jam the ring. Every
//! operation is noted at point 1 ([`Retirer::started`](crate::state::retiring::Retirer::started)); one still not
//! answered after [`RELEASE_AFTER`] is released (its records may go, once
//! the file data is flushed; [`crate::journal::Journal::release`]) and
//! after [`UNANSWERED_GRACE`] retired: its saved answer (if it got one) is
//! kept that long for a client that replays it after reconnecting (a break
//! notice's operation, which has no answer to keep, is retired after
//! [`RELEASE_AFTER`] already: [`Retirer::notice`](crate::state::retiring::Retirer::notice)). A long
//! wait that ends later records its point 3 and 4 again, under the same
//! operation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::journal::OpId;
use crate::state::retiring::Retirer;
use crate::state::{lock, Server};

/// How often the task looks for work while operations finish.
const TICK: Duration = Duration::from_millis(100);
/// How long an operation that was not answered keeps its records.
pub const RELEASE_AFTER: Duration = Duration::from_secs(1);
/// How long an operation that was not answered keeps its saved answer.
pub const UNANSWERED_GRACE: Duration = crate::journal::KEPT_UNANSWERED;
/// How long the operations found in the log at start keep their saved
/// answers, for clients that replay them after reconnecting (their records
/// are retired at start; the answers are carried in checkpoints meanwhile).
pub const RECOVERED_GRACE: Duration = crate::journal::KEPT_AFTER_RESTART;

/// Flushes the file data of every share to stable storage (`syncfs` of
/// each share's file system). Blocks.
pub(crate) fn flush_shares(server: &Server) {
    for s in &server.shares {
        match std::fs::File::open(&s.cfg.path) {
            Ok(f) => {
                use std::os::unix::io::AsRawFd;
                // SAFETY: syncfs on a descriptor we own.
                if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
                    warn!(share = %s.cfg.name, "syncfs: {}", std::io::Error::last_os_error());
                }
            }
            Err(e) => warn!(share = %s.cfg.name, "cannot open the share to flush it: {e}"),
        }
    }
}

/// Test only: with this environment variable set, nothing is retired, so
/// every record stays in the log (`server/tests/restart.rs` drops the
/// page cache's data by hand, as a power loss would, and checks that the
/// restart writes the answered WRITEs again).
pub const KEEP_RECORDS_ENV: &str = "DUET_TEST_KEEP_RECORDS";

/// The operations not answered at `now`: those past [`UNANSWERED_GRACE`],
/// and break notices past [`RELEASE_AFTER`] (no answer to keep for a
/// replay), leave `retirer` for `batch` (to retire); the others past
/// [`RELEASE_AFTER`] go to `release`, once.
/// Sorts the operations in flight: those to retire now into `batch`, those
/// to release now into `release`, and those to release once a checkpoint
/// that carries their requests is durable into `carried`.
fn sweep(retirer: &Retirer, now: Instant, batch: &mut Vec<OpId>, release: &mut Vec<OpId>, carried: &mut Vec<OpId>) {
    lock(&retirer.started).retain(|op, s| {
        let age = now.saturating_duration_since(s.at);
        if age >= UNANSWERED_GRACE || (s.notice && age >= RELEASE_AFTER) {
            batch.push(*op);
            return false;
        }
        // Not while an element of it is being carried out: a CREATE
        // slowed past a second (a loaded machine) would lose the
        // request a restart needs to undo what it did.
        if age >= RELEASE_AFTER && !s.released && s.busy == 0 {
            s.released = true;
            release.push(*op);
        } else if age >= RELEASE_AFTER && !s.released && s.busy == s.carried {
            // Every element under way has its request carried in checkpoints
            // (a rename waiting for lease breaks): released after the next.
            s.released = true;
            carried.push(*op);
        }
        true
    });
}

/// A flush of the shares slower than this is logged: it holds back the
/// retirement of every operation answered meanwhile (`syncfs` writes back the
/// whole file system, other programs' dirty data included).
const SLOW_FLUSH: Duration = Duration::from_secs(1);
/// How often a ring half full or more says what holds its head.
const TELL_EVERY: Duration = Duration::from_secs(5);

/// Logs what holds the head of a ring half full: the oldest live operation,
/// how long ago it started and whether an element of it is being carried out.
fn tell_holder(server: &Server, u: crate::journal::Usage) {
    let percent = u.used * 100 / u.capacity.max(1);
    match server.journal.oldest_live() {
        Some((op, pos)) => {
            let state = lock(&server.retirer.started).get(&op).copied();
            let answered = lock(&server.retirer.answered).contains(&op);
            match state {
                Some(s) => warn!(
                    percent,
                    op = op.0,
                    pos,
                    age_ms = s.at.elapsed().as_millis() as u64,
                    busy = s.busy,
                    released = s.released,
                    "journal half full: the oldest live operation holds its head"
                ),
                None => warn!(
                    percent,
                    op = op.0,
                    pos,
                    answered,
                    "journal half full: the oldest live operation holds its head (not in flight)"
                ),
            }
        }
        None => warn!(percent, "journal half full, no live operation: waiting for a checkpoint"),
    }
}

/// The retiring task (see the module doc). Runs for as long as the server.
pub async fn run(server: Arc<Server>, flush_data: bool) {
    if std::env::var_os(KEEP_RECORDS_ENV).is_some() {
        warn!("{KEEP_RECORDS_ENV} is set: no operation is retired (a test setting)");
        return;
    }
    let started_at = Instant::now();
    let mut last_sweep = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut retired_since_checkpoint = false;
    let mut pressed = false;
    let mut last_told = Instant::now() - TELL_EVERY;
    // Operations to release once a checkpoint carrying their requests is
    // durable (see `sweep`).
    let mut carried = Vec::new();
    loop {
        // A ring half full is taken care of at once: appenders wait meanwhile.
        tokio::time::sleep(if pressed { TICK / 50 } else { TICK }).await;
        let mut batch = std::mem::take(&mut *lock(&server.retirer.answered));
        let mut release = Vec::new();
        if last_sweep.elapsed() >= Duration::from_millis(250) {
            last_sweep = Instant::now();
            sweep(&server.retirer, Instant::now(), &mut batch, &mut release, &mut carried);
            if started_at.elapsed() >= RECOVERED_GRACE {
                batch.append(&mut lock(&server.retirer.recovered));
            }
        }
        if !batch.is_empty() || !release.is_empty() {
            if flush_data {
                let s = server.clone();
                let began = Instant::now();
                if tokio::task::spawn_blocking(move || flush_shares(&s)).await.is_err() {
                    warn!("flushing the shares failed; retiring later");
                    lock(&server.retirer.answered).extend(batch);
                    continue;
                }
                if began.elapsed() >= SLOW_FLUSH {
                    warn!(
                        ms = began.elapsed().as_millis() as u64,
                        ops = batch.len(),
                        "flushing the shares before retiring was slow"
                    );
                }
            }
            for op in &batch {
                if let Err(e) = server.journal.retire(*op) {
                    warn!("journal, retire: {e}");
                }
            }
            for op in &release {
                if let Err(e) = server.journal.release(*op) {
                    warn!("journal, release: {e}");
                }
            }
            debug!(retired = batch.len(), "operations retired");
            retired_since_checkpoint = true;
        }
        let Some(u) = server.journal.usage() else {
            continue;
        };
        pressed = u.used >= u.capacity / 2;
        if pressed && last_told.elapsed() >= TELL_EVERY {
            last_told = Instant::now();
            tell_holder(&server, u);
        }
        // A quarter full: fold what was retired into a checkpoint so the head
        // can move past it; when nothing was retired since the last one (a
        // live operation holds the head), at most once a second.
        // Retired at point 4 (a policy with no data to flush): always some.
        let retired = retired_since_checkpoint || server.retirer.at_once();
        let due = u.used >= u.capacity / 4 && (retired || last_checkpoint.elapsed() >= Duration::from_secs(1));
        if due {
            last_checkpoint = Instant::now();
            retired_since_checkpoint = false;
            // Requests carried now are in this checkpoint: once it is durable,
            // their operations' records may go.
            let covered = std::mem::take(&mut carried);
            let r = async {
                let t = server.checkpoint()?;
                server.journal.durable(t).await?;
                for op in &covered {
                    server.journal.release(*op)?;
                }
                server.journal.compact()
            }
            .await;
            if let Err(e) = r {
                warn!("journal, checkpoint: {e}");
                carried.extend(covered);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A break notice whose point 4 never comes (its connection went before
    /// the client acknowledged it) is retired after [`RELEASE_AFTER`], not
    /// kept for [`UNANSWERED_GRACE`] like a request's answer: it holds
    /// neither the journal's head nor the retirer's count.
    #[test]
    fn a_notice_never_acknowledged_is_retired_after_a_second() {
        let r = Retirer::default();
        r.enable(true);
        let (notice, request) = (OpId(7), OpId(8));
        r.notice(notice);
        r.started(request);
        assert_eq!(r.pending(), 2);
        let (mut batch, mut release, mut carried) = (Vec::new(), Vec::new(), Vec::new());
        sweep(&r, Instant::now(), &mut batch, &mut release, &mut carried);
        assert!(batch.is_empty() && release.is_empty(), "{batch:?} {release:?}");
        sweep(&r, Instant::now() + RELEASE_AFTER, &mut batch, &mut release, &mut carried);
        assert_eq!((batch, release), (vec![notice], vec![request]));
        assert!(carried.is_empty());
        assert_eq!(r.pending(), 1, "the request waits for its grace; the notice is gone");
        // A notice that was acknowledged leaves at point 4, as an answer does.
        r.notice(OpId(9));
        assert!(!r.answered(OpId(9)));
        assert_eq!(std::mem::take(&mut *lock(&r.answered)), vec![OpId(9)]);
        assert_eq!(r.pending(), 1);
    }

    /// An operation with an element under way keeps its records past
    /// [`RELEASE_AFTER`], unless every such element's request is carried in
    /// checkpoints: then it is set aside, to be released after the next
    /// checkpoint (which carries it), never at once.
    #[test]
    fn a_busy_operation_is_released_only_when_its_request_is_carried() {
        let r = Retirer::default();
        r.enable(true);
        let (kept, carried_op) = (OpId(1), OpId(2));
        for op in [kept, carried_op] {
            r.started(op);
            r.busy(op);
        }
        r.busy(carried_op);
        r.carried(carried_op, true);
        let (mut batch, mut release, mut carried) = (Vec::new(), Vec::new(), Vec::new());
        let later = Instant::now() + RELEASE_AFTER;
        sweep(&r, later, &mut batch, &mut release, &mut carried);
        assert!(batch.is_empty() && release.is_empty() && carried.is_empty(), "one of its two elements is not carried");
        r.carried(carried_op, true);
        sweep(&r, later, &mut batch, &mut release, &mut carried);
        assert_eq!((&batch, &release, &carried), (&vec![], &vec![], &vec![carried_op]));
        // Set aside once: the next sweep does not add it again.
        sweep(&r, later, &mut batch, &mut release, &mut carried);
        assert_eq!(carried, vec![carried_op]);
        // The other one goes once its element is done.
        r.idle(kept);
        sweep(&r, later, &mut batch, &mut release, &mut carried);
        assert_eq!(release, vec![kept]);
    }
}
