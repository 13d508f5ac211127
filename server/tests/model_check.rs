//! The state model against real client sessions (issue 12): duet runs in
//! check mode (`DUET_CHECK_MODEL`, see `server/src/state/record.rs`), where
//! every delta the handlers return is encoded as the journal stores it,
//! decoded and applied to a replica that must equal the live model after
//! every request, checkpoints are decoded and compared, and, whenever no
//! request is in flight, the model is compared with the runtime objects
//! (sessions, tree connects, opens connected and retained, byte-range
//! locks). smbclient and smbtorture suites drive it; the report must show
//! that checks ran and found nothing.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Kind, Mode, Options, Server};

/// Reads check mode's report: `key value` lines and `mismatch: ...` lines.
fn report(path: &std::path::Path) -> (HashMap<String, u64>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = HashMap::new();
    let mut mismatches = Vec::new();
    for line in text.lines() {
        if let Some(m) = line.strip_prefix("mismatch: ") {
            mismatches.push(m.to_string());
        } else if let Some((k, v)) = line.split_once(' ') {
            if let Ok(n) = v.parse() {
                counts.insert(k.to_string(), n);
            }
        }
    }
    (counts, mismatches)
}

fn start_checked(mode: Mode, report: &std::path::Path) -> Option<Server> {
    if Kind::from_env() != Kind::Duet {
        eprintln!("skipped: check mode is duet's");
        return None;
    }
    let opts = Options {
        mode,
        duet_env: vec![("DUET_CHECK_MODEL".into(), report.display().to_string())],
        ..Options::default()
    };
    Some(Server::start_with(opts))
}

/// Waits for the report to show at least `projections` comparisons with
/// the runtime objects (they run when the server is idle).
fn settled(path: &std::path::Path, projections: u64) -> (HashMap<String, u64>, Vec<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = report(path);
        if r.0.get("projections").copied().unwrap_or(0) >= projections || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_model_follows_smbclient_and_smbtorture_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report");
    let Some(server) = start_checked(Mode::Plain, &path) else { return };
    std::fs::write(server.client_dir().join("f.bin"), vec![7u8; 200_000]).unwrap();
    server
        .run("put f.bin a.bin; mkdir d; rename a.bin d\\b.bin; get d\\b.bin back.bin; ls d\\*; del d\\b.bin; rmdir d")
        .assert_ok();
    // Locks and lock sequences, retained (durable) handles and their
    // reconnects, renames of open files, delete-on-close, session
    // reconnects and logoffs: each brings its own deltas.
    let tests = [
        "smb2.lock.valid-request",
        "smb2.lock.rw-exclusive",
        "smb2.lock.cancel",
        "smb2.lock.unlock",
        "smb2.lock.multiple-unlock",
        "smb2.lock.stacking",
        "smb2.lock.replay_smb3_specification_durable",
        "smb2.durable-open.reopen1",
        "smb2.durable-open.reopen2",
        "smb2.durable-open.reopen4",
        "smb2.durable-open.lock-oplock",
        "smb2.durable-open.open-oplock",
        "smb2.rename.simple",
        "smb2.rename.rename_dir_openfile",
        "smb2.delete-on-close-perms.CREATE",
        "smb2.delete-on-close-perms.BUG14427",
        "smb2.delete-on-close-perms.FIND_and_set_DOC",
        "smb2.sharemode.sharemode-access",
        "smb2.rename.share_delete_and_delete_access",
        "smb2.session.reconnect1",
        "smb2.session.reauth1",
        "smb2.oplock.batch1",
        "smb2.oplock.exclusive1",
    ];
    let (failed, text) = server.torture(&tests);
    let (counts, mismatches) = settled(&path, 10);
    assert!(
        mismatches.is_empty(),
        "the state model disagrees ({} mismatches):\n{}\n--- smbtorture (not passed: {failed:?}) ---\n{text}",
        counts.get("mismatches").copied().unwrap_or(0),
        mismatches.join("\n")
    );
    assert_eq!(counts.get("mismatches"), Some(&0), "report: {counts:?}");
    // The checks ran: deltas of every kind the workload makes were
    // replayed, and the model was compared with the runtime objects.
    assert!(counts.get("deltas").copied().unwrap_or(0) >= 100, "too few deltas recorded: {counts:?}");
    assert!(counts.get("batches").copied().unwrap_or(0) >= 100, "too few batches replayed: {counts:?}");
    assert!(counts.get("projections").copied().unwrap_or(0) >= 10, "too few comparisons: {counts:?}");
    assert!(failed.len() < tests.len(), "no smbtorture test passed:\n{text}");
}

#[test]
fn the_model_follows_an_encrypted_session_and_a_lost_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report");
    let Some(server) = start_checked(Mode::Encrypt, &path) else { return };
    std::fs::write(server.client_dir().join("g.bin"), vec![1u8; 50_000]).unwrap();
    server.run("put g.bin g.bin; mkdir e; rename g.bin e\\h.bin; del e\\h.bin; rmdir e").assert_ok();
    // A durable open whose connection is cut is kept (disconnected in the
    // model), then reclaimed.
    let out = std::process::Command::new("smbtorture")
        .arg(format!("//127.0.0.1/{}", common::SHARE))
        .args(["-p", &server.port.to_string(), "-U", &format!("{}%{}", common::USER, common::PASSWORD)])
        .args(Mode::Encrypt.client_args())
        .args(["smb2.durable-open.reopen2", "smb2.durable-open.reopen3"])
        .output()
        .expect("run smbtorture");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("success: reopen2") && text.contains("success: reopen3"), "smbtorture over encryption:\n{text}");
    let (counts, mismatches) = settled(&path, 5);
    assert!(mismatches.is_empty(), "the state model disagrees:\n{}\n{text}", mismatches.join("\n"));
    assert!(counts.get("deltas").copied().unwrap_or(0) >= 10, "{counts:?}");
    assert!(counts.get("projections").copied().unwrap_or(0) >= 5, "{counts:?}");
}

/// Runs smbtorture tests against a server in check mode and asserts that
/// the model never disagreed with what the journal got, its checkpoints or
/// the runtime objects, and that the checks ran.
fn assert_checked(tests: &[&str], min_projections: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report");
    let Some(server) = start_checked(Mode::Plain, &path) else { return };
    let (failed, text) = server.torture(tests);
    let (counts, mismatches) = settled(&path, min_projections);
    assert!(
        mismatches.is_empty(),
        "the state model disagrees ({} mismatches):\n{}\n--- smbtorture (not passed: {failed:?}) ---\n{text}",
        counts.get("mismatches").copied().unwrap_or(0),
        mismatches.join("\n")
    );
    assert_eq!(counts.get("mismatches"), Some(&0), "report: {counts:?}");
    assert!(counts.get("projections").copied().unwrap_or(0) >= min_projections, "too few comparisons: {counts:?}");
    // The tests must have done what they test, or the check saw nothing.
    assert!(failed.is_empty(), "not passed: {failed:?}\n{text}");
}

/// Opens of named streams (`file:stream`): each an open of its own in
/// the model (the stream's id), with delete-on-close and a delete pending
/// on a stream and on its file while the stream is open, and a stream
/// renamed under its open.
#[test]
fn the_model_follows_stream_opens() {
    assert_checked(
        &[
            "smb2.streams.io",
            "smb2.streams.sharemodes",
            "smb2.streams.delete",
            "smb2.streams.create-disposition",
            "smb2.streams.names",
            "smb2.streams.zero-byte",
            "smb2.streams.basefile-rename-with-open-stream",
            "smb2.streams.rename",
        ],
        5,
    );
}

/// Oplocks and leases on named streams: a stream's lease (a key of its
/// own) and a batch oplock broken by a second open of the stream.
#[test]
fn the_model_follows_caching_on_streams() {
    assert_checked(&["smb2.lease.request", "smb2.oplock.stream1"], 2);
}

/// Oplock grants, breaks (to level II and to none, acknowledged and not),
/// acknowledgements, and breaks by writes and locks: each open's level and
/// break in progress must match the file table's whenever the server is
/// idle, and every break recorded must replay from the journal's bytes.
#[test]
fn the_model_follows_oplock_breaks() {
    assert_checked(
        &[
            "smb2.oplock.exclusive1",
            "smb2.oplock.exclusive2",
            "smb2.oplock.exclusive5",
            "smb2.oplock.batch1",
            "smb2.oplock.batch2",
            "smb2.oplock.batch10",
            "smb2.oplock.brl1",
            "smb2.oplock.levelii500",
            "smb2.oplock.levelii502",
            "smb2.oplock.statopen1",
            "smb2.oplock.doc",
        ],
        10,
    );
}

/// Lease grants (version 1 and 2, with epochs), upgrades, breaks that need
/// an acknowledgement and breaks that do not, breaks that go on in steps
/// after an acknowledgement, and a second break while one is in progress.
/// (smbtorture's `break`, `oplock` and `lock1` pass too but spend 10 to 30
/// s each waiting for breaks that must not come.)
#[test]
fn the_model_follows_lease_breaks() {
    assert_checked(
        &[
            "smb2.lease.upgrade",
            "smb2.lease.upgrade2",
            "smb2.lease.nobreakself",
            "smb2.lease.multibreak",
            "smb2.lease.breaking1",
            "smb2.lease.breaking2",
            "smb2.lease.breaking3",
            "smb2.lease.breaking5",
            "smb2.lease.v2_epoch1",
            "smb2.lease.v2_epoch2",
            "smb2.lease.complex1",
            "smb2.lease.v2_request",
        ],
        11,
    );
}

/// Oplock and lease breaks nobody acknowledges time out by the model's
/// deadlines: the scavenger takes the oplock or the lease's state away in
/// the file table and the model at once (smbtorture waits out the 35 s of
/// each).
#[test]
fn the_model_follows_break_time_outs() {
    assert_checked(&["smb2.oplock.batch22a", "smb2.lease.timeout"], 2);
}

/// Durable v2 and persistent handles, CreateGuid replays, AppInstanceId
/// takeovers and ChannelSequence changes (issue 13) on a continuously
/// available share: the model records the v2 fields, replay eligibility and
/// Open.ChannelSequence through their deltas and agrees with the runtime
/// objects.
#[test]
fn the_model_follows_durable_v2_persistent_handles_and_replays() {
    if Kind::from_env() != Kind::Duet {
        eprintln!("skipped: check mode and --ca are duet's");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report");
    let server = Server::start_with(Options {
        mode: Mode::Plain,
        duet_args: vec!["--ca".into(), common::SHARE.into()],
        duet_env: vec![("DUET_CHECK_MODEL".into(), path.display().to_string())],
        ..Options::default()
    });
    let tests = [
        "smb2.durable-v2-open.reopen1a",
        "smb2.durable-v2-open.reopen2",
        "smb2.durable-v2-open.reopen2-lease-v2",
        "smb2.durable-v2-open.app-instance",
        "smb2.durable-v2-open.persistent-open-lease",
        "smb2.replay.replay-dhv2-oplock1",
        "smb2.replay.replay-dhv2-lease1",
        "smb2.replay.channel-sequence",
        "smb2.replay.replay6",
    ];
    server.assert_torture_passes(&tests);
    let (counts, mismatches) = settled(&path, 5);
    assert!(mismatches.is_empty(), "the state model disagrees:\n{}", mismatches.join("\n"));
    assert_eq!(counts.get("mismatches"), Some(&0), "report: {counts:?}");
    assert!(counts.get("deltas").copied().unwrap_or(0) >= 50, "too few deltas recorded: {counts:?}");
}
