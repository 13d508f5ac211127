//! Leases ([MS-SMB2] 3.3.5.9.8, 3.3.5.9.11, 3.3.4.7, 3.3.5.22.2), driven by
//! smbtorture's own `smb2.lease` tests against a real `duet`: grants and
//! upgrades, v2 epochs, breaks and their acknowledgements (stepwise, with
//! wrong states refused), leases against oplocks, and durable opens that
//! hold a lease with handle caching.
//!
//! Each test named here passes on Samba's smbd too
//! (`DUET_TEST_SERVER=smbd` runs this file against it).

mod common;

use common::{Mode, Options, Server};

fn assert_all_pass(tests: &[&str]) {
    let server = Server::start(Mode::Plain);
    server.assert_torture_passes(tests);
}

#[test]
fn lease_grants_breaks_and_acknowledgements() {
    assert_all_pass(&[
        "smb2.lease.upgrade",
        "smb2.lease.upgrade2",
        "smb2.lease.upgrade3",
        "smb2.lease.break",
        "smb2.lease.nobreakself",
        "smb2.lease.statopen",
        "smb2.lease.statopen2",
        "smb2.lease.statopen4",
        "smb2.lease.oplock",
        "smb2.lease.multibreak",
        "smb2.lease.break_twice",
        "smb2.lease.breaking1",
        "smb2.lease.breaking2",
        "smb2.lease.breaking3",
        "smb2.lease.breaking4",
        "smb2.lease.rename_wait",
        "smb2.lease.breaking5",
        "smb2.lease.breaking6",
        "smb2.lease.lock1",
        "smb2.lease.complex1",
        "smb2.lease.duplicate_create",
        "smb2.lease.duplicate_open",
        "smb2.lease.v1_bug15148",
    ]);
}

/// A named stream is a file for leases: `request` grants RHW on a stream
/// under a key of its own (and refuses a key in use on another file).
/// Against smbd, its share keeps streams (`streams_xattr`; a plain smbd
/// refuses them and fails it). (`smb2.oplock.stream1`, a stream's batch
/// oplock broken by a second open of the stream, passes on Duet and fails
/// on smbd with `streams_xattr`: `model_check` runs it.)
#[test]
fn leases_on_streams() {
    let server = Server::start_with(Options {
        mode: Mode::Plain,
        smbd_options: vec!["vfs objects = streams_xattr".into()],
        ..Options::default()
    });
    server.assert_torture_passes(&["smb2.lease.request"]);
}

#[test]
fn version_two_leases_and_epochs() {
    assert_all_pass(&[
        "smb2.lease.v2_epoch1",
        "smb2.lease.v2_epoch2",
        "smb2.lease.v2_epoch3",
        "smb2.lease.v2_breaking3",
        "smb2.lease.v2_rename",
        "smb2.lease.v2_complex1",
        "smb2.lease.v2_complex2",
        "smb2.lease.v2_bug15148",
    ]);
}

#[test]
fn a_disconnected_holder_does_not_block_others() {
    assert_all_pass(&["smb2.lease.timeout-disconnect"]);
}

#[test]
fn an_unacknowledged_break_times_out_to_none() {
    // The holder never acknowledges: the second open waits out the
    // 35-second break timeout, and the lease is left with nothing.
    assert_all_pass(&["smb2.lease.timeout"]);
}

#[test]
fn durable_opens_with_a_handle_caching_lease() {
    assert_all_pass(&[
        "smb2.durable-open.open-lease",
        "smb2.durable-open.lease",
        "smb2.durable-open.open2-lease",
        "smb2.durable-open.stat-open",
        // Reconnect of a leased durable open: only with its lease key from
        // the same ClientGuid, and refused reconnects leave it in place.
        "smb2.durable-open.reopen1a-lease",
        "smb2.durable-open.lock-lease",
    ]);
}

/// Directory leases ([MS-SMB2] 3.3.5.9.8, SMB2_CAP_DIRECTORY_LEASING): RH
/// for a directory that asks for RWH, no break for a file created under it
/// with its key as ParentLeaseKey, a break to none for one created without
/// and for the close of a file written in it; the ParentLeaseKey echoed.
/// smbd 4.17 offers no directory leases (it skips both), so these run
/// against duet only.
#[test]
fn directory_leases() {
    if common::Kind::from_env() != common::Kind::Duet {
        eprintln!("smbd 4.17 has no directory leases");
        return;
    }
    assert_all_pass(&["smb2.lease.v2_request", "smb2.lease.v2_request_parent"]);
}

/// An open that will delete the file (FILE_DELETE_ON_CLOSE) takes handle
/// caching from the other leases and waits for their acknowledgement, so
/// that their holders close the handles they keep (smbtorture
/// `smb2.lease.unlink`, which smbd 4.17 fails: it sends no break).
#[test]
fn an_unlink_takes_handle_caching_from_other_leases() {
    if common::Kind::from_env() != common::Kind::Duet {
        eprintln!("smbd 4.17 fails smb2.lease.unlink");
        return;
    }
    assert_all_pass(&["smb2.lease.unlink"]);
}

/// A stat open (FILE_READ_ATTRIBUTES only) of the file does not keep a new
/// open from getting RWH (smbtorture `smb2.lease.statopen3`, which smbd
/// 4.17 fails: it grants RH).
#[test]
fn a_stat_open_leaves_a_new_lease_its_write_caching() {
    if common::Kind::from_env() != common::Kind::Duet {
        eprintln!("smbd 4.17 fails smb2.lease.statopen3");
        return;
    }
    assert_all_pass(&["smb2.lease.statopen3"]);
}
