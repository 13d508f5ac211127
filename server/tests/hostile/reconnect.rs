//! A client that drops its connection and opens the same file at once on
//! a new one (as smbtorture does between two tests) must not meet the
//! share modes of its own old opens: the server tears the old connection
//! down on its own schedule, so a sharing violation is retried once after
//! the next close. smbtorture `smb2.dir.sorted` (whose previous test leaks
//! a directory handle) failed in 3 of 8 runs of `smb2.dir` on a loaded
//! machine before, and in none of 8 after. This test loses the race only
//! under load, so on a quiet machine it passes without the retry too: it
//! guards the behaviour, it does not reproduce the race.
//!
//! A CREATE that waits for an oplock break while its session ends is
//! cancelled with it, and leaves no open in the session that ended.

use protocol::msg::create::create_disposition;
use protocol::msg::negotiate::dialect;

use crate::client::{Client, ACCESS_RW};
use crate::common;

#[test]
fn a_dropped_connections_opens_do_not_refuse_the_next_one() {
    let (addr, _dir) = common::start_in_process(&[("duet", "duetpass")], None);
    for round in 0..50 {
        let mut old = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
        old.tree_connect("data").unwrap();
        let name = format!("held-{round}.txt");
        // Opened with no sharing at all: any second open conflicts.
        let body = {
            let mut b = Client::create_body(&name, ACCESS_RW, create_disposition::OPEN_IF, 0);
            b[32..36].copy_from_slice(&0u32.to_le_bytes()); // ShareAccess ([MS-SMB2] 2.2.13)
            b
        };
        let a = old.call(protocol::header::Command::Create, &body);
        assert_eq!(a.status(), protocol::NtStatus::SUCCESS);
        // Work left queued on the old connection keeps the server from
        // seeing its end for a while, as a loaded server would.
        for _ in 0..400 {
            old.send(protocol::header::Command::Echo, &[4, 0, 0, 0]);
        }
        drop(old);
        let mut new = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
        new.tree_connect("data").unwrap();
        let r = new.create_with(&name, ACCESS_RW, create_disposition::OPEN, 0);
        assert!(r.is_ok(), "round {round}: {r:?}");
    }
}

/// A CREATE that waits for a batch oplock's break while its session is
/// logged off ([MS-SMB2] 3.3.5.6; the same for a session torn down with
/// its last channel, 3.3.7.1, while a CreateGuid keeps the CREATE going,
/// 3.3.5.9.10): when the break ends, the CREATE is cancelled with its
/// session and leaves no open behind. Before, the open was made and put in
/// the table of the session that had ended, where nothing would ever close
/// it: its share modes refused every later open that shares nothing, and
/// the state model refused its `OpenUp` (no such session; smbtorture
/// `smb2.replay` made ~1500 such mismatches in check mode).
#[test]
fn a_pending_create_whose_session_ended_leaves_no_open() {
    use bytes::BytesMut;
    use protocol::header::Command;
    use protocol::msg::create::{share_access, CreateRequest, CreateResponse};
    use protocol::msg::create_context::{DurableHandleRequestV2, RequestContext};
    use protocol::NtStatus;

    let report = tempfile::tempdir().unwrap();
    let report = report.path().join("check");
    // Check mode (`server/src/state/record.rs`), for the in-process server
    // this test's process runs.
    std::env::set_var("DUET_CHECK_MODEL", &report);
    let (addr, _dir) = common::start_in_process(&[("duet", "duetpass")], None);
    let mut holder = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    holder.tree_connect("data").unwrap();
    let mut batch = Client::create_body("held.txt", ACCESS_RW, create_disposition::OPEN_IF, 0);
    batch[3] = 0x09; // RequestedOplockLevel: batch ([MS-SMB2] 2.2.13)
    let a = holder.call(Command::Create, &batch);
    assert_eq!(a.status(), NtStatus::SUCCESS);
    let held = CreateResponse::parse(&a.msg).unwrap();
    assert_eq!(held.oplock_level, 0x09, "the holder got its batch oplock");

    let mut waiter = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    waiter.tree_connect("data").unwrap();
    let mut body = BytesMut::new();
    CreateRequest {
        security_flags: 0,
        requested_oplock_level: 0,
        impersonation_level: 2,
        smb_create_flags: 0,
        desired_access: ACCESS_RW,
        file_attributes: 0,
        share_access: share_access::READ | share_access::WRITE | share_access::DELETE,
        create_disposition: create_disposition::OPEN,
        create_options: 0,
        name: "held.txt".into(),
        create_contexts: vec![RequestContext::DurableHandleRequestV2(DurableHandleRequestV2 {
            timeout: 0,
            flags: 0,
            create_guid: [0x5a; 16],
        })],
    }
    .encode(&mut body);
    waiter.send(Command::Create, &body);
    let interim = waiter.recv().expect("the CREATE's interim answer");
    assert_eq!(interim.status(), NtStatus::PENDING, "the CREATE waits for the break");
    let notice = holder.recv().expect("the break notice");
    assert_eq!(notice.hdr.command(), Some(Command::OplockBreak));
    // The waiter's session ends while its CREATE still waits.
    assert_eq!(waiter.call(Command::Logoff, &[4, 0, 0, 0]).status(), NtStatus::SUCCESS);
    // The break ends: the holder closes, and the CREATE goes on.
    assert_eq!(holder.close(held.file_id), NtStatus::SUCCESS);
    let answer = waiter.recv().expect("the CREATE's final answer");
    assert_eq!(answer.hdr.command(), Some(Command::Create));
    assert_eq!(answer.status(), NtStatus::USER_SESSION_DELETED, "cancelled with its session");
    // No open was left behind: an open that shares nothing is granted.
    let mut exclusive = Client::create_body("held.txt", ACCESS_RW, create_disposition::OPEN, 0);
    exclusive[32..36].copy_from_slice(&0u32.to_le_bytes()); // ShareAccess: none
    let a = holder.call(Command::Create, &exclusive);
    assert_eq!(a.status(), NtStatus::SUCCESS, "an open was left behind by the cancelled CREATE");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(text.contains("\nmismatches 0\n"), "the state model refused a change:\n{text}");
}
