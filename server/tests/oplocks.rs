//! Oplocks and durable (version 1) handles, driven by smbtorture's own
//! tests against a real `duet`: break notifications and their
//! acknowledgements between two connections, the order of batch and
//! exclusive breaks against share modes, breaks from writes and
//! truncation, and durable handles that outlive their connection and are
//! reclaimed with DHnC (or purged when another client needs the file).
//!
//! Each test named here passes on Samba's smbd too
//! (`DUET_TEST_SERVER=smbd` runs this file against it).

mod common;

use common::{Mode, Server};

fn assert_all_pass(tests: &[&str]) {
    let server = Server::start(Mode::Plain);
    server.assert_torture_passes(tests);
}

#[test]
fn oplock_breaks_and_acknowledgements() {
    assert_all_pass(&[
        "smb2.oplock.exclusive1",
        "smb2.oplock.exclusive2",
        "smb2.oplock.exclusive3",
        "smb2.oplock.exclusive4",
        "smb2.oplock.exclusive5",
        "smb2.oplock.exclusive6",
        "smb2.oplock.exclusive9",
        "smb2.oplock.batch1",
        "smb2.oplock.batch2",
        "smb2.oplock.batch3",
        "smb2.oplock.batch4",
        "smb2.oplock.batch5",
        "smb2.oplock.batch6",
        "smb2.oplock.batch7",
        "smb2.oplock.batch8",
        "smb2.oplock.batch9",
        "smb2.oplock.batch9a",
        "smb2.oplock.batch10",
        "smb2.oplock.batch11",
        "smb2.oplock.batch12",
        "smb2.oplock.batch13",
        "smb2.oplock.batch14",
        "smb2.oplock.batch15",
        "smb2.oplock.batch16",
        "smb2.oplock.batch19",
        "smb2.oplock.batch20",
        "smb2.oplock.batch21",
        // The holder never answers: the second open waits out the
        // 35-second break timeout, then goes ahead.
        "smb2.oplock.batch22a",
        "smb2.oplock.batch23",
        "smb2.oplock.batch24",
        "smb2.oplock.batch25",
        "smb2.oplock.doc",
        "smb2.oplock.brl1",
        "smb2.oplock.brl2",
        "smb2.oplock.brl3",
        "smb2.oplock.levelii500",
        "smb2.oplock.levelii501",
        "smb2.oplock.levelii502",
        "smb2.oplock.statopen1",
    ]);
}

#[test]
fn durable_v1_handles_survive_their_connection() {
    assert_all_pass(&[
        "smb2.durable-open.open-oplock",
        "smb2.durable-open.reopen1",
        "smb2.durable-open.reopen2",
        "smb2.durable-open.reopen2a",
        "smb2.durable-open.reopen3",
        "smb2.durable-open.reopen4",
        "smb2.durable-open.delete_on_close1",
        "smb2.durable-open.delete_on_close2",
        "smb2.durable-open.file-position",
        "smb2.durable-open.oplock",
        "smb2.durable-open.lock-oplock",
        "smb2.durable-open.open2-oplock",
        "smb2.durable-open.alloc-size",
        "smb2.durable-open.read-only",
        "smb2.lock.replay_smb3_specification_durable",
    ]);
}

/// A compound CREATE + QUERY_INFO that breaks the batch oplock its own
/// connection holds (what Office does when it reopens a document): the
/// CREATE waits in the middle of the compound while the connection reads
/// on, so the client's acknowledgement ends the wait. Were the connection
/// not read meanwhile, the answer would only come after the 35-second
/// break timeout; the bound below tells the two apart.
#[test]
fn compound_create_breaking_its_own_oplock_does_not_stall() {
    let server = Server::start(Mode::Plain);
    let t0 = std::time::Instant::now();
    let (missing, text) = server.torture(&["smb2.compound.compound-break"]);
    let took = t0.elapsed();
    assert!(missing.is_empty(), "did not pass: {missing:?}\n{text}");
    assert!(took < std::time::Duration::from_secs(25), "took {took:?}: the break was not acknowledged in time\n{text}");
}
