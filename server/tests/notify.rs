//! Change notify through a real client: smbtorture's smb2.notify tests
//! against a real `duet`. Each test in the first list passes on Samba's
//! smbd too (`DUET_TEST_SERVER=smbd`).

mod common;

use common::{Kind, Mode, Server};

#[test]
fn change_notify() {
    let server = Server::start(Mode::Plain);
    server.assert_torture_passes(&[
        "smb2.notify.valid-req",
        "smb2.notify.tcon",
        "smb2.notify.tdis",
        "smb2.notify.tdis1",
        "smb2.notify.close",
        "smb2.notify.logoff",
        "smb2.notify.session-reconnect",
        "smb2.notify.invalid-reauth",
        "smb2.notify.basedir",
        "smb2.notify.double",
        "smb2.notify.file",
        "smb2.notify.tcp",
        "smb2.notify.overflow",
        // A watched directory that becomes delete-pending ends the
        // waiting requests with STATUS_DELETE_PENDING.
        "smb2.notify.rmdir1",
        "smb2.notify.rmdir2",
        "smb2.notify.rmdir3",
        "smb2.notify.rmdir4",
        "smb2.notify.handle-permissions",
    ]);
}

/// Two requests waiting on one handle are answered in the order they
/// came, and a rename is an attribute change of the new name. smbd
/// answers this one differently (it fails the test), so it runs against
/// Duet only.
#[test]
fn requests_on_one_handle_complete_in_order() {
    let server = Server::start(Mode::Plain);
    if server.kind == Kind::Smbd {
        return;
    }
    server.assert_torture_passes(&["smb2.notify.mask-change"]);
}

// ---------------------------------------------------------------------
// Changes made on the server's disk (inotify), through the raw client.

#[path = "hostile/client.rs"]
mod client;

mod disk {
    use std::time::{Duration, Instant};

    use bytes::BytesMut;
    use protocol::header::{Command, Header};
    use protocol::msg::change_notify::{
        change_notify_flags, completion_filter as cf, notify_action as act, parse_notify_list, ChangeNotifyRequest,
        ChangeNotifyResponse,
    };
    use protocol::msg::create::create_disposition;
    use protocol::msg::negotiate::dialect;
    use protocol::msg::FileId;
    use protocol::NtStatus;

    use super::client::{self, Client};
    use super::common;

    fn logged_on(addr: std::net::SocketAddr) -> Client {
        let mut c = Client::logged_on(addr, dialect::SMB3_0_2, common::USER, common::PASSWORD);
        c.tree_connect("data").unwrap();
        c
    }

    /// CHANGE_NOTIFY on `dir` until a change of `until` comes; returns
    /// every change that came, in order.
    fn changes_until(c: &mut Client, dir: FileId, filter: u32, tree: bool, until: &str) -> Vec<(u32, String)> {
        let t = Instant::now();
        let mut got = Vec::new();
        while !got.iter().any(|(_, n): &(u32, String)| n == until) {
            assert!(t.elapsed() < Duration::from_secs(30), "no change of {until} within 30 s; got {got:?}");
            let mut b = BytesMut::new();
            let flags = if tree { change_notify_flags::WATCH_TREE } else { 0 };
            ChangeNotifyRequest { flags, output_buffer_length: 4096, file_id: dir, completion_filter: filter }.encode(&mut b);
            c.send(Command::ChangeNotify, &b);
            let a = loop {
                let a = c.recv().expect("a CHANGE_NOTIFY answer");
                if a.status() != NtStatus::PENDING {
                    break a;
                }
            };
            assert_eq!(a.status(), NtStatus::SUCCESS, "CHANGE_NOTIFY answered {:?}; before it: {got:?}", a.status());
            let r = ChangeNotifyResponse::parse(&a.msg).expect("a CHANGE_NOTIFY response");
            for e in parse_notify_list(r.output_buffer).expect("a FILE_NOTIFY_INFORMATION list") {
                got.push((e.action, e.file_name));
            }
        }
        got
    }

    fn names(v: &[(u32, &str)]) -> Vec<(u32, String)> {
        v.iter().map(|(a, n)| (*a, n.to_string())).collect()
    }

    const ALL: u32 = cf::FILE_NAME | cf::DIR_NAME | cf::ATTRIBUTES | cf::SIZE | cf::LAST_WRITE;

    /// A file created, written, renamed and deleted on the server's disk
    /// (not through SMB) reaches a client waiting on CHANGE_NOTIFY: added,
    /// modified, old and new name, removed. Before inotify, nothing came.
    #[test]
    fn changes_on_disk_reach_a_watch() {
        let (addr, dir) = common::start_in_process(&[(common::USER, common::PASSWORD)], None);
        let mut c = logged_on(addr);
        let root = c.open_root().unwrap();
        // The first request makes the watch; the change that ends it is
        // the first to look for.
        let share = dir.path().to_path_buf();
        let first = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            std::fs::write(share.join("a.txt"), b"hello").unwrap();
        });
        let got = changes_until(&mut c, root, ALL, false, "a.txt");
        first.join().unwrap();
        let mut all = got;
        // The write may come in the same answer or the next.
        if !all.contains(&(act::MODIFIED, "a.txt".into())) {
            all.extend(changes_until(&mut c, root, ALL, false, "a.txt"));
        }
        std::fs::rename(dir.path().join("a.txt"), dir.path().join("b.txt")).unwrap();
        all.extend(changes_until(&mut c, root, ALL, false, "b.txt"));
        std::fs::remove_file(dir.path().join("b.txt")).unwrap();
        std::fs::write(dir.path().join("z-end"), b"").unwrap();
        all.extend(changes_until(&mut c, root, cf::FILE_NAME, false, "z-end"));
        assert_eq!(
            all,
            names(&[
                (act::ADDED, "a.txt"),
                (act::MODIFIED, "a.txt"),
                (act::RENAMED_OLD_NAME, "a.txt"),
                (act::RENAMED_NEW_NAME, "b.txt"),
                (act::REMOVED, "b.txt"),
                (act::ADDED, "z-end"),
            ])
        );
    }

    /// A change made through Duet is reported once: by Duet's own path,
    /// not a second time by inotify. A change made on disk afterwards
    /// comes after it, so everything before it is all there was.
    #[test]
    fn a_change_through_duet_is_reported_once() {
        let (addr, dir) = common::start_in_process(&[(common::USER, common::PASSWORD)], None);
        let mut c = logged_on(addr);
        let root = c.open_root().unwrap();
        // Arm the watch (and inotify) with a first change on disk.
        let share = dir.path().to_path_buf();
        let first = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            std::fs::write(share.join("a-start"), b"").unwrap();
        });
        changes_until(&mut c, root, ALL, false, "a-start");
        first.join().unwrap();
        let mut other = logged_on(addr);
        let f = other.create("c.txt").unwrap();
        assert_eq!(other.write(f, 0, b"through duet"), NtStatus::SUCCESS);
        assert_eq!(other.close(f), NtStatus::SUCCESS);
        let f = other.create_with("c.txt", client::ACCESS_RW, create_disposition::OPEN, 0x1000).unwrap();
        assert_eq!(other.close(f), NtStatus::SUCCESS);
        let d = other.create_with("d", client::ACCESS_RW, create_disposition::CREATE, 0x1).unwrap();
        assert_eq!(other.close(d), NtStatus::SUCCESS);
        std::fs::write(dir.path().join("z-end"), b"").unwrap();
        let got = changes_until(&mut c, root, ALL, false, "z-end");
        assert_eq!(
            got,
            names(&[
                (act::ADDED, "c.txt"),
                (act::MODIFIED, "c.txt"),
                (act::REMOVED, "c.txt"),
                (act::ADDED, "d"),
                (act::ADDED, "z-end"),
            ])
        );
    }

    /// SET_INFO FileRenameInformation ([MS-FSCC] 2.4.42.2, the SMB2 layout).
    fn rename(c: &mut Client, f: FileId, to: &str) -> NtStatus {
        use bytes::BufMut;
        use protocol::fscc::file_info_class;
        use protocol::msg::query_info::info_type;
        use protocol::msg::set_info::SetInfoRequest;
        let name: Vec<u8> = to.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut info = BytesMut::new();
        info.put_u8(0);
        info.put_bytes(0, 7);
        info.put_u64_le(0);
        info.put_u32_le(name.len() as u32);
        info.extend_from_slice(&name);
        let mut b = BytesMut::new();
        SetInfoRequest {
            info_type: info_type::FILE,
            file_info_class: file_info_class::FILE_RENAME_INFORMATION,
            buffer: &info,
            additional_information: 0,
            file_id: f,
        }
        .encode(&mut b);
        c.call(Command::SetInfo, &b).status()
    }

    /// smb2.notify-inotify.inotify-rename as Samba 4.23 has it (4.17's
    /// opens the watched directory with DELETE access, which makes the
    /// rename into it fail on Windows, on smbd since 4.23 and on Duet with
    /// STATUS_SHARING_VIOLATION): a directory renamed through Duet under a
    /// WATCH_TREE watch is one old-name, new-name pair, not a second one
    /// from inotify.
    #[test]
    fn a_rename_through_duet_is_one_pair() {
        let (addr, dir) = common::start_in_process(&[(common::USER, common::PASSWORD)], None);
        let mut c = logged_on(addr);
        // SEC_RIGHTS_DIR_ALL without DELETE, sharing everything.
        let h1 = c.create_with("inr", 0x001E_01FF, create_disposition::OPEN_IF, 0x1).unwrap();
        let mut other = logged_on(addr);
        let h2 = other.create_with("inr\\subdir-name", 0x001F_01FF, create_disposition::OPEN_IF, 0x1).unwrap();
        // Arm the watch with a change on disk first.
        let share = dir.path().to_path_buf();
        let first = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            std::fs::write(share.join("inr/a-start"), b"").unwrap();
        });
        let mut all = changes_until(&mut c, h1, cf::FILE_NAME | cf::DIR_NAME, true, "a-start");
        first.join().unwrap();
        assert_eq!(rename(&mut other, h2, "inr\\subdir-name-r"), NtStatus::SUCCESS);
        assert_eq!(other.close(h2), NtStatus::SUCCESS);
        std::fs::write(dir.path().join("inr/z-end"), b"").unwrap();
        all.extend(changes_until(&mut c, h1, cf::FILE_NAME | cf::DIR_NAME, true, "z-end"));
        assert_eq!(
            all,
            names(&[
                (act::ADDED, "a-start"),
                (act::RENAMED_OLD_NAME, "subdir-name"),
                (act::RENAMED_NEW_NAME, "subdir-name-r"),
                (act::ADDED, "z-end"),
            ])
        );
    }

    /// WATCH_TREE: a directory made on disk below the watched one is
    /// watched too, so a file made in it is reported with its path.
    #[test]
    fn a_tree_watch_follows_new_directories_on_disk() {
        let (addr, dir) = common::start_in_process(&[(common::USER, common::PASSWORD)], None);
        let mut c = logged_on(addr);
        let root = c.open_root().unwrap();
        std::fs::create_dir_all(dir.path().join("old/deeper")).unwrap();
        let share = dir.path().to_path_buf();
        let first = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            std::fs::create_dir(share.join("sub")).unwrap();
        });
        let mut all = changes_until(&mut c, root, ALL, true, "sub");
        first.join().unwrap();
        std::fs::write(dir.path().join("sub/f"), b"").unwrap();
        all.extend(changes_until(&mut c, root, cf::FILE_NAME, true, "sub\\f"));
        // A directory that was there before the watch is watched too.
        std::fs::write(dir.path().join("old/deeper/g"), b"").unwrap();
        all.extend(changes_until(&mut c, root, cf::FILE_NAME, true, "old\\deeper\\g"));
        assert_eq!(all, names(&[(act::ADDED, "sub"), (act::ADDED, "sub\\f"), (act::ADDED, "old\\deeper\\g")]));
    }

    /// The inotify watches this process holds (a test runs in a process of
    /// its own under nextest), from `/proc/self/fdinfo`.
    fn inotify_watches() -> usize {
        let mut n = 0;
        for e in std::fs::read_dir("/proc/self/fdinfo").unwrap().flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                n += text.lines().filter(|l| l.starts_with("inotify wd:")).count();
            }
        }
        n
    }

    /// Arms a watch on `dir` (WATCH_TREE or not): one CHANGE_NOTIFY, then
    /// CANCEL, so that the request is answered (STATUS_CANCELLED) and the
    /// watch stays.
    fn arm(c: &mut Client, dir: FileId, tree: bool) {
        let mut b = BytesMut::new();
        let flags = if tree { change_notify_flags::WATCH_TREE } else { 0 };
        ChangeNotifyRequest { flags, output_buffer_length: 4096, file_id: dir, completion_filter: cf::FILE_NAME }
            .encode(&mut b);
        let mid = c.send(Command::ChangeNotify, &b);
        let interim = c.recv().expect("an interim answer");
        assert_eq!(interim.status(), NtStatus::PENDING);
        // A CANCEL naming the request's MessageId ([MS-SMB2] 3.3.5.16).
        let mut cancel = BytesMut::new();
        Header { command: Command::Cancel as u16, message_id: mid, session_id: c.session_id, tree_id: c.tree_id, ..Default::default() }
            .encode(&mut cancel);
        cancel.extend_from_slice(&[4, 0, 0, 0]);
        c.send_raw(&client::frame(&cancel));
        let a = c.recv().expect("the cancelled request's answer");
        assert_eq!(a.status(), NtStatus::CANCELLED);
    }

    /// The inotify watches are bounded: a WATCH_TREE watch watches its
    /// directory and those below it up to the client's cap
    /// (`limits.max_dir_watches_per_client`), every client together up to
    /// the server's (`limits.max_dir_watches`); a directory two watches
    /// cover is watched once, and its watch goes with the last SMB watch
    /// that needs it.
    #[test]
    fn inotify_watches_are_capped_and_go_with_the_last_watch() {
        let (addr, dir) = common::start_in_process_with(&[(common::USER, common::PASSWORD)], None, |c| {
            c.limits.max_dir_watches_per_client = 4;
            c.limits.max_dir_watches = 5;
        });
        for d in ["a", "a/x", "a/y", "b", "b/x", "b/y", "c"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let before = inotify_watches();
        let mut c = logged_on(addr);
        // The root and the first three below it (a, b, c): the client's cap.
        let root = c.open_root().unwrap();
        arm(&mut c, root, true);
        assert_eq!(inotify_watches() - before, 4);
        // A second watch of the same client: its cap is reached, so this
        // one holds no inotify watch (changes on disk in a reach it only
        // while the tree watch's watch of a lasts).
        let a = c.create_with("a", client::ACCESS_LIST, create_disposition::OPEN, 0x1).unwrap();
        arm(&mut c, a, false);
        assert_eq!(inotify_watches() - before, 4);
        // Another client (another ClientGuid) watches the tree at b: b is
        // watched already, b/x is new, b/y would pass the server's cap.
        let mut other = logged_on(addr);
        let b = other.create_with("b", client::ACCESS_LIST, create_disposition::OPEN, 0x1).unwrap();
        arm(&mut other, b, true);
        assert_eq!(inotify_watches() - before, 5);
        // The first client's watches end with its handles; b stays, the
        // other client's watch holds it.
        assert_eq!(c.close(root), NtStatus::SUCCESS);
        assert_eq!(inotify_watches() - before, 2, "b and b/x");
        assert_eq!(c.close(a), NtStatus::SUCCESS);
        assert_eq!(inotify_watches() - before, 2);
        assert_eq!(other.close(b), NtStatus::SUCCESS);
        assert_eq!(inotify_watches(), before);
    }

    /// A symlink in the share to a directory outside it is never watched:
    /// a change out there is not reported, even to a WATCH_TREE watch.
    #[test]
    fn a_symlink_out_of_the_share_is_never_watched() {
        let (addr, dir) = common::start_in_process(&[(common::USER, common::PASSWORD)], None);
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let mut c = logged_on(addr);
        let root = c.open_root().unwrap();
        let share = dir.path().to_path_buf();
        let first = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            std::fs::write(share.join("a-start"), b"").unwrap();
        });
        let mut all = changes_until(&mut c, root, ALL, true, "a-start");
        first.join().unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::fs::create_dir(outside.path().join("secret-dir")).unwrap();
        std::fs::write(dir.path().join("z-end"), b"").unwrap();
        all.extend(changes_until(&mut c, root, ALL, true, "z-end"));
        assert_eq!(all, names(&[(act::ADDED, "a-start"), (act::ADDED, "z-end")]));
    }
}
