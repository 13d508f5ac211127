//! Issue 11, item 2: one QUERY_DIRECTORY pattern stalled the whole server.
//! The wildcard matcher backtracked, exponentially in the number of `*`s,
//! on a runtime worker thread. Now matching is linear and the listing runs
//! off the runtime's workers.

use std::time::{Duration, Instant};

use protocol::msg::negotiate::dialect;
use protocol::NtStatus;

use crate::client::Client;
use crate::common;

/// A pattern the backtracking matcher needed hours for against a long name
/// of `a`s (every `*` tries every split).
fn evil_pattern() -> String {
    format!("{}b", "*a".repeat(60))
}

#[test]
fn a_pathological_pattern_is_answered_and_stalls_no_one() {
    let (addr, dir) = common::start_in_process(&[("duet", "duetpass")], None);
    for i in 0..8 {
        std::fs::write(dir.path().join(format!("{}{i}", "a".repeat(200))), b"").unwrap();
    }
    let mut evil = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    evil.tree_connect("data").unwrap();
    let root = evil.open_root().unwrap();
    let mut bystander = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");

    // Several listings at once, more than the runtime has workers.
    let mut evil_conns = Vec::new();
    for _ in 0..3 {
        let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
        c.tree_connect("data").unwrap();
        let r = c.open_root().unwrap();
        evil_conns.push((c, r));
    }
    let threads: Vec<_> = evil_conns
        .into_iter()
        .map(|(mut c, r)| std::thread::spawn(move || c.query_directory(r, &evil_pattern()).0))
        .collect();

    // Meanwhile a new client negotiates and an old one echoes.
    let t = Instant::now();
    let mut newcomer = Client::connect(addr);
    newcomer.negotiate(dialect::SMB3_0_2);
    assert_eq!(bystander.echo(), NtStatus::SUCCESS);
    assert!(t.elapsed() < Duration::from_secs(10), "other clients waited {:?}", t.elapsed());

    for th in threads {
        assert_eq!(th.join().unwrap(), NtStatus::NO_SUCH_FILE);
    }
    let (status, _) = evil.query_directory(root, &evil_pattern());
    assert_eq!(status, NtStatus::NO_SUCH_FILE);
    // The same shape of pattern that does match is found.
    let (status, buf) = evil.query_directory(root, &format!("{}*", "*a".repeat(60)));
    assert_eq!(status, NtStatus::SUCCESS);
    assert!(!buf.is_empty());
}

#[test]
fn a_pattern_longer_than_a_name_can_be_is_refused() {
    let (addr, _dir) = common::start_in_process(&[("duet", "duetpass")], None);
    let mut c = Client::logged_on(addr, dialect::SMB3_0_2, "duet", "duetpass");
    c.tree_connect("data").unwrap();
    let root = c.open_root().unwrap();
    let (status, _) = c.query_directory(root, &"*".repeat(256));
    assert_eq!(status, NtStatus::OBJECT_NAME_INVALID);
    let (status, _) = c.query_directory(root, &"*".repeat(255));
    assert_eq!(status, NtStatus::SUCCESS);
}
