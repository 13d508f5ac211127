//! A client that drops its connection and opens the same file at once on
//! a new one (as smbtorture does between two tests) must not meet the
//! share modes of its own old opens: the server tears the old connection
//! down on its own schedule, so a sharing violation is retried once after
//! the next close. smbtorture `smb2.dir.sorted` (whose previous test leaks
//! a directory handle) failed in 3 of 8 runs of `smb2.dir` on a loaded
//! machine before, and in none of 8 after. This test loses the race only
//! under load, so on a quiet machine it passes without the retry too: it
//! guards the behaviour, it does not reproduce the race.

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
