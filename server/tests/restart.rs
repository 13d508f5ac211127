//! Sessions survive a restart (issue 13): a client with a durable open,
//! answered writes and a byte-range lock loses its server to `kill -9`
//! (or SIGTERM), the server is started again on the same share, state
//! directory and journal, and the client takes its open back on a new
//! connection and session (DHnC / DH2C with the old file id), as Windows
//! does. The client is Python's smbprotocol (`testdata/restart_client.py`,
//! built on `testdata/resilient_smb.py`); it prints one JSON line per phase
//! and the test judges the last one.
//!
//! `without_a_journal_the_handle_is_lost` is the same run with
//! `--no-journal`: the reclaim must fail there, which shows the checks can
//! fail; `durable_v1_handle_survives_a_lost_connection` is the same client
//! against a server that stays up (only the TCP connection is lost).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::script::Script;
use common::{Kind, Options, Server};

/// Journal and state directory, relative to the server's root (its working
/// directory), so that a restart finds them again.
const JOURNAL_ARGS: [&str; 6] = ["--journal", "nvram", "--journal-size", "16M", "--state-dir", "state"];

/// How the server goes away between the two phases.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// The client's connection is dropped; the server stays up.
    Connection,
    /// SIGKILL, then a restart: a non-elective reboot.
    Kill9,
    /// SIGTERM, then a restart: an elective reboot.
    Term,
    /// `duet stop` (over the admin socket), then a restart: an elective
    /// reboot too.
    DuetStop,
    /// SIGKILL, then the file replaced by another of the same name (its
    /// stable id is another), then a restart: the handle cannot be taken
    /// back, since its file is gone.
    Replaced,
    /// SIGKILL, then the file's data lost as a power loss loses what the
    /// page cache had not written back (the file zeroed, its length kept)
    /// and another boot id recorded, then a restart.
    PowerLoss,
}

/// The client script, between its phases.
struct Client(Script);

impl Client {
    fn start(server: &Server, durable: &str, extra: &[&str]) -> Client {
        let port = server.port.to_string();
        let mut args = vec!["--port", &port, "--share", common::SHARE, "--user", common::USER];
        args.extend(["--password", common::PASSWORD, "--durable", durable]);
        args.extend(extra);
        Client(Script::start("restart_client.py", &args))
    }

    /// The next JSON line; panics (with the script's stderr) if none comes.
    fn next(&mut self, what: &str) -> serde_json::Value {
        match self.0.line(Duration::from_secs(120)) {
            Some(l) => serde_json::from_str(&l).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {l}")),
            None => panic!("{what}: no line from restart_client.py; its stderr:\n{}", self.0.kill()),
        }
    }

    fn go_on(&mut self) {
        self.0.send("go");
    }
}

/// Phase 1 against `server`, then the outage, then phase 2; returns the
/// ready line and the result line.
fn run(server: &mut Server, durable: &str, outage: Outage) -> (serde_json::Value, serde_json::Value) {
    run_with(server, durable, outage, &[])
}

/// [`run`], with `extra` arguments for the client script.
fn run_with(
    server: &mut Server,
    durable: &str,
    outage: Outage,
    extra: &[&str],
) -> (serde_json::Value, serde_json::Value) {
    let mut client = Client::start(server, durable, extra);
    let ready = client.next("phase 1");
    assert_eq!(ready["phase"], "ready", "{ready}");
    assert!(ready.get("error").is_none(), "phase 1 failed: {ready}\n--- server log ---\n{}", server.log());
    match outage {
        Outage::Connection => {}
        Outage::Kill9 => {
            server.kill9();
            server.restart();
        }
        Outage::Term => {
            let status = server.terminate(Duration::from_secs(30));
            assert!(status.is_some(), "duet did not exit within 30 s of SIGTERM\n{}", server.log());
            server.restart();
        }
        Outage::DuetStop => {
            let sock = server.root().join("state/admin.sock");
            // `duet stop` waits for the server's pid to go away, which needs
            // the server (our child) reaped: run it beside the wait.
            let stop = Command::new(common::duet_bin())
                .args(["stop", "--socket"])
                .arg(&sock)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run duet stop");
            let status = server.wait_exit(Duration::from_secs(30));
            assert!(
                status.is_some_and(|s| s.success()),
                "duet did not exit after `duet stop`: {status:?}\n{}",
                server.log()
            );
            let out = stop.wait_with_output().expect("duet stop ends");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("stopped duet"),
                "duet stop: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(server.log().contains("`duet stop`"), "{}", server.log());
            server.restart();
        }
        Outage::Replaced => {
            server.kill9();
            let f = server.share_dir().join("restart.dat");
            let data = std::fs::read(&f).unwrap();
            std::fs::remove_file(&f).unwrap();
            std::fs::write(&f, data).unwrap();
            server.restart();
        }
        Outage::PowerLoss => {
            server.kill9();
            for name in ["restart.dat", "append.dat"] {
                let f = server.share_dir().join(name);
                if let Ok(m) = std::fs::metadata(&f) {
                    std::fs::write(&f, vec![0u8; m.len() as usize]).unwrap();
                }
            }
            // As after a reboot: the boot id the last run recorded is not
            // this one (so the restart cannot trust the page cache).
            std::fs::write(server.root().join("nvram.boot"), "a boot before the power loss\n").unwrap();
            server.restart();
        }
    }
    client.go_on();
    let done = client.next("phase 2");
    assert_eq!(done["phase"], "done", "{done}");
    (ready, done)
}

/// Everything phase 2 checks, asserted.
fn assert_survived(server: &Server, ready: &serde_json::Value, done: &serde_json::Value) {
    let ctx = || format!("ready: {ready}\ndone: {done}\n--- server log ---\n{}", server.log());
    assert_eq!(done["reconnect"], "ok", "the durable open was not taken back\n{}", ctx());
    assert_eq!(done["same_file_id"], true, "another file id came back\n{}", ctx());
    assert_eq!(done["file_id_after"], ready["file_id"], "{}", ctx());
    assert_eq!(done["unlock_replay"], "ok", "a resent unlock was carried out again\n{}", ctx());
    assert_eq!(done["missing_writes"], serde_json::json!([]), "answered writes are missing\n{}", ctx());
    assert_eq!(done["other_can_lock_elsewhere"], true, "{}", ctx());
    assert_eq!(done["lock_held"], true, "the byte-range lock was lost\n{}", ctx());
    let refused = serde_json::json!(["write STATUS_FILE_LOCK_CONFLICT", "read STATUS_FILE_LOCK_CONFLICT"]);
    assert_eq!(done["other_io_in_lock"], refused, "the restored lock does not refuse I/O\n{}", ctx());
    assert_eq!(done["writes_after"], "ok", "the handle could not go on writing\n{}", ctx());
}

fn duet_with(args: &[&str]) -> Option<Server> {
    duet_with_env(args, &[])
}

/// [`duet_with`], with `env` in duet's environment.
fn duet_with_env(args: &[&str], env: &[(&str, &str)]) -> Option<Server> {
    if Kind::from_env() != Kind::Duet {
        eprintln!("restart tests run against duet only (smbd keeps no state across a restart)");
        return None;
    }
    Some(Server::start_with(Options {
        duet_args: args.iter().map(|s| s.to_string()).collect(),
        duet_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Options::default()
    }))
}

/// A duet with a journal that keeps every record (a test setting: none is
/// retired after a flush), so a restart finds every answered WRITE in it.
fn duet_keeping_records() -> Option<Server> {
    duet_with_env(&JOURNAL_ARGS, &[("DUET_TEST_KEEP_RECORDS", "1")])
}

/// The same client against a server that stays up: the open outlives a
/// lost TCP connection ([MS-SMB2] 3.3.5.9.7). This is what works without a
/// journal, and shows the client itself does what the tests below need.
#[test]
fn durable_v1_handle_survives_a_lost_connection() {
    let Some(mut server) = duet_with(&[]) else { return };
    let (ready, done) = run(&mut server, "v1", Outage::Connection);
    assert_survived(&server, &ready, &done);
}

#[test]
fn durable_v1_handle_survives_sigkill() {
    let Some(mut server) = duet_with(&JOURNAL_ARGS) else { return };
    let (ready, done) = run(&mut server, "v1", Outage::Kill9);
    assert_survived(&server, &ready, &done);
}

#[test]
fn durable_v1_handle_survives_sigterm() {
    let Some(mut server) = duet_with(&JOURNAL_ARGS) else { return };
    let (ready, done) = run(&mut server, "v1", Outage::Term);
    assert_survived(&server, &ready, &done);
}

/// The answered writes' data is lost from the file (as a power loss loses
/// the page cache): the restart writes them again from the journal, where
/// each answered WRITE's record holds its data. The server keeps every
/// record (a test setting), so none was retired after a flush meanwhile.
#[test]
fn answered_writes_lost_from_the_page_cache_are_written_again() {
    let Some(mut server) = duet_keeping_records() else { return };
    let (ready, done) = run(&mut server, "v1", Outage::PowerLoss);
    assert_survived(&server, &ready, &done);
    assert!(server.log().contains("answered WRITEs carried out again"), "{}", server.log());
}

/// An append-only open's WRITEs all name offset 0, and each went to the end
/// of the file: after a power loss the restart writes each again where it
/// went, not at the offset its request named (they overwrote each other at
/// 0 before the point-3 record said where the data went).
#[test]
fn appended_writes_lost_from_the_page_cache_are_written_again_where_they_went() {
    let Some(mut server) = duet_keeping_records() else { return };
    let (ready, done) = run_with(&mut server, "v1", Outage::PowerLoss, &["--appends", "5"]);
    assert_survived(&server, &ready, &done);
    assert_eq!(done["appended"], true, "append.dat: {done}\n--- server log ---\n{}", server.log());
}

/// After a killed process (the kernel ran on: the same boot id) the page
/// cache holds every answered WRITE, and the restart writes none again,
/// though the journal still has their records (kept by a test setting).
#[test]
fn after_a_killed_process_no_write_is_carried_out_again() {
    let Some(mut server) = duet_keeping_records() else { return };
    let (ready, done) = run(&mut server, "v1", Outage::Kill9);
    assert_survived(&server, &ready, &done);
    let log = server.log();
    assert!(log.contains("the kernel ran on since the last run"), "{log}");
    assert!(!log.contains("answered WRITEs carried out again"), "{log}");
}

/// `duet stop` is an elective reboot as SIGTERM is: the handle comes back.
#[test]
fn durable_v2_lease_handle_survives_duet_stop() {
    let Some(mut server) = duet_with(&JOURNAL_ARGS) else { return };
    let (ready, done) = run(&mut server, "v2", Outage::DuetStop);
    assert_survived(&server, &ready, &done);
    assert!(server.log().contains("elective reboot: state saved"), "{}", server.log());
}

/// A restart places retained handles without opening their files; the
/// file is opened, and checked to be the same one, when the client takes
/// the handle back. One replaced by another file of the same name while
/// the server was down is not taken back (OBJECT_NAME_NOT_FOUND, [MS-SMB2]
/// 3.3.5.9.12), and the server stays up.
#[test]
fn a_handle_whose_file_was_replaced_while_down_is_not_taken_back() {
    let Some(mut server) = duet_with(&JOURNAL_ARGS) else { return };
    let (ready, done) = run(&mut server, "v2", Outage::Replaced);
    assert_eq!(done["reconnect"], "STATUS_OBJECT_NAME_NOT_FOUND", "ready: {ready}\ndone: {done}\n{}", server.log());
    assert!(server.log().contains("could not be opened again"), "{}", server.log());
}

/// The server GUID (what every NEGOTIATE answer carries) is the same after
/// a restart: it is kept beside the journal.
#[test]
fn the_server_guid_survives_a_restart() {
    let Some(mut server) = duet_with(&JOURNAL_ARGS) else { return };
    let guid = |server: &Server| -> String {
        let sock = server.root().join("state/admin.sock");
        let out = Command::new(common::duet_bin()).args(["status", "--json", "--socket"]).arg(&sock).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        st["server"]["guid"].as_str().unwrap_or_default().to_string()
    };
    let before = guid(&server);
    assert_eq!(before.len(), 32, "{before:?}");
    let stored = std::fs::read_to_string(server.root().join("nvram.guid")).unwrap();
    assert_eq!(stored.trim(), before);
    server.kill9();
    server.restart();
    assert_eq!(guid(&server), before, "another GUID after the restart\n{}", server.log());
}

/// Without a journal a restart loses the open: the reclaim is refused
/// (OBJECT_NAME_NOT_FOUND, [MS-SMB2] 3.3.5.9.7). The checks above can fail.
#[test]
fn without_a_journal_the_handle_is_lost() {
    let Some(mut server) = duet_with(&["--no-journal", "--state-dir", "state"]) else { return };
    let (ready, done) = run(&mut server, "v1", Outage::Kill9);
    assert_eq!(done["reconnect"], "STATUS_OBJECT_NAME_NOT_FOUND", "ready: {ready}\ndone: {done}\n{}", server.log());
}

/// DH2Q with a lease (durable v2, [MS-SMB2] 3.3.5.9.10 and 3.3.5.9.12),
/// reclaimed with DH2C.
#[test]
fn durable_v2_lease_handle_survives_sigkill() {
    let Some(mut server) = duet_with(&JOURNAL_ARGS) else { return };
    let (ready, done) = run(&mut server, "v2", Outage::Kill9);
    assert_survived(&server, &ready, &done);
}

#[test]
fn durable_v2_lease_handle_survives_sigterm() {
    let Some(mut server) = duet_with(&JOURNAL_ARGS) else { return };
    let (ready, done) = run(&mut server, "v2", Outage::Term);
    assert_survived(&server, &ready, &done);
}

/// The writer of `testdata/failover_client.py`: an append-only durable v2
/// open that writes stamped blocks, each waited for, and on a lost
/// connection reconnects, reclaims the open with DH2C and resends the
/// unanswered WRITE with the replay flag, as Windows does. With
/// `--hold-after-loss` it waits for a line on stdin before it reconnects.
struct Appender(Script);

impl Appender {
    fn start(server: &Server, blocks: usize, size: usize) -> Appender {
        let (port, blocks, size) = (server.port.to_string(), blocks.to_string(), size.to_string());
        let mut args = vec!["--host", "127.0.0.1", "--port", &port, "--share", common::SHARE, "--user", common::USER];
        args.extend(["--password", common::PASSWORD, "--append", "--blocks", &blocks, "--size", &size]);
        args.push("--hold-after-loss");
        Appender(Script::start("failover_client.py", &args))
    }

    fn next(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.0.line(Duration::from_secs(120))?).ok()
    }

    /// Reads lines up to the one that says the connection was lost; the
    /// lines before it.
    fn until_lost(&mut self) -> Vec<serde_json::Value> {
        let mut seen = Vec::new();
        while let Some(v) = self.next() {
            if v.get("lost").is_some() {
                return seen;
            }
            seen.push(v);
        }
        panic!("the client never lost its connection: {seen:?}\n{}", self.0.kill());
    }

    /// Lets it reconnect; its lines to the last, and its stderr.
    fn finish(mut self) -> (Vec<serde_json::Value>, String) {
        self.0.send("go");
        let mut lines = Vec::new();
        while let Some(v) = self.next() {
            lines.push(v);
        }
        (lines, self.0.wait())
    }
}

/// What [`Appender`] writes as block `i` (`stamp` in resilient_smb.py).
fn block(i: usize, size: usize) -> Vec<u8> {
    format!("block {i:06}\n").into_bytes().into_iter().cycle().take(size).collect()
}

/// The file holds `blocks` blocks one after the other, each once.
fn assert_blocks(path: &std::path::Path, blocks: usize, size: usize, context: &str) {
    let got = std::fs::read(path).unwrap();
    let want: Vec<u8> = (0..blocks).flat_map(|i| block(i, size)).collect();
    if got != want {
        let at = (0..got.len().max(want.len()) / size + 1)
            .find(|&i| got.get(i * size..(i + 1) * size) != want.get(i * size..(i + 1) * size))
            .unwrap_or(0);
        let seen = got.get(at * size..).map(|b| String::from_utf8_lossy(&b[..b.len().min(14)]).to_string());
        panic!(
            "{} is {} bytes, want {} ({blocks} blocks of {size}); first wrong block {at}: {seen:?}\n{context}",
            path.display(),
            got.len(),
            want.len()
        );
    }
}

/// An append answered by the server (its point-3 record durable) dies with
/// the server before the answer leaves (failpoint `point3`), so the client
/// resends it after the restart; `crashes` - 1 more crashes (SIGKILL of a
/// restarted server that serves, before the client is back) come between.
/// The resend must be answered from the saved answer, not appended again:
/// each block is in the file once.
fn append_is_answered_once_after(policy: &str, size: usize, crashes: usize) {
    let mut args = JOURNAL_ARGS.to_vec();
    args.extend(["--journal-policy", policy]);
    // The 10th answer: NEGOTIATE, two SESSION_SETUPs, TREE_CONNECT and the
    // CREATE come first, so one of the 8 appends.
    let Some(mut server) = duet_with_env(&args, &[("DUET_FAILPOINT", "point3:10")]) else { return };
    let blocks = 8;
    let mut client = Appender::start(&server, blocks, size);
    let before = client.until_lost();
    assert!(
        server.wait_exit(Duration::from_secs(60)).is_some() && server.log().contains("failpoint point3 reached"),
        "duet did not die at its failpoint\n{}",
        server.log()
    );
    server.set_duet_env(&[]);
    for _ in 1..crashes {
        server.restart();
        server.kill9();
    }
    server.restart();
    let (lines, stderr) = client.finish();
    let ctx = format!(
        "before the crash: {before:?}\nafter: {lines:?}\n--- client ---\n{stderr}\n--- server log ---\n{}",
        server.log()
    );
    let last = lines.last().cloned().unwrap_or_default();
    assert_eq!(last["done"], true, "the client did not finish\n{ctx}");
    assert!(lines.iter().any(|l| l["replay"] == true), "no write was resent\n{ctx}");
    assert_blocks(&server.share_dir().join("failover.dat"), blocks, size, &ctx);
}

/// A lone WRITE of 64 KiB or more under `group` is synced in its file and
/// its point-1 record keeps its fixed part and a digest of its data, not
/// the data: the replay key rebuilt from that record after the restart
/// must be the resend's (it was not: the append was carried out twice).
#[test]
fn a_large_append_answered_before_a_kill_is_not_appended_again() {
    append_is_answered_once_after("group", 65536, 1);
}

/// Under `process` no WRITE's data is in its point-1 record: the same for
/// small WRITEs.
#[test]
fn an_append_answered_before_a_kill_under_process_is_not_appended_again() {
    append_is_answered_once_after("process", 3000, 1);
}

/// The restart retires the records it found (the saved answers kept for
/// replays), and the server is killed again before the client is back:
/// the answers must outlive the second crash (carried in the checkpoint),
/// else the resend after it is carried out again.
#[test]
fn a_saved_answer_survives_a_second_crash() {
    append_is_answered_once_after("group", 3000, 2);
}

/// The same with a large WRITE, under `process`, and three crashes.
#[test]
fn a_saved_answer_of_a_large_append_survives_two_more_crashes() {
    append_is_answered_once_after("process", 65536, 3);
}

/// An append that wrote its data dies with the server before its point-3
/// record (failpoint `written`: the third WRITE, one of the 8 appends), so
/// the client resends it after the restart. The restart finds the place the
/// append recorded before writing (`Decision::AppendAt`) holding its data,
/// and answers the resend as done: each block is in the file once. Before
/// such records the resend appended the block a second time.
fn append_killed_after_its_write_is_not_appended_again(policy: &str, size: usize) {
    append_killed_in_its_write(policy, size, "written", "found=Done");
}

/// An append killed in the middle of its write, half its data written
/// (failpoint `torn`): the restart cuts the file back to where the append
/// began, and the resend appends it whole. Before, the resend appended
/// after the half block.
#[test]
fn an_append_killed_in_the_middle_of_its_write_is_cut_back() {
    append_killed_in_its_write("process", 65536, "torn", "found=CutBack");
}

/// The third WRITE dies at `failpoint` (`written` or `torn`); the restart
/// says `found` of it, and each block is in the file once after the resend.
fn append_killed_in_its_write(policy: &str, size: usize, failpoint: &str, found: &str) {
    let mut args = JOURNAL_ARGS.to_vec();
    args.extend(["--journal-policy", policy]);
    let armed = format!("{failpoint}:3");
    let Some(mut server) = duet_with_env(&args, &[("DUET_FAILPOINT", &armed)]) else { return };
    let blocks = 8;
    let mut client = Appender::start(&server, blocks, size);
    let before = client.until_lost();
    assert!(
        server.wait_exit(Duration::from_secs(60)).is_some()
            && server.log().contains(&format!("failpoint {failpoint} reached")),
        "duet did not die at its failpoint\n{}",
        server.log()
    );
    server.set_duet_env(&[]);
    let from = server.restart();
    let (lines, stderr) = client.finish();
    let log = server.log();
    let ctx = format!("before the crash: {before:?}\nafter: {lines:?}\n--- client ---\n{stderr}\n--- server log ---\n{log}");
    let last = lines.last().cloned().unwrap_or_default();
    assert_eq!(last["done"], true, "the client did not finish\n{ctx}");
    assert!(lines.iter().any(|l| l["replay"] == true), "no write was resent\n{ctx}");
    assert!(log[from..].contains(found), "the restart did not say {found} of the append\n{ctx}");
    assert_blocks(&server.share_dir().join("failover.dat"), blocks, size, &ctx);
}

/// A small append under `group`: it waits for its place's record to be
/// durable (on a blocking thread) before it writes.
#[test]
fn a_small_append_killed_after_its_write_under_group_is_not_appended_again() {
    append_killed_after_its_write_is_not_appended_again("group", 3000);
}

/// A large append under `process`: its data is in no record, only its digest.
#[test]
fn a_large_append_killed_after_its_write_under_process_is_not_appended_again() {
    append_killed_after_its_write_is_not_appended_again("process", 65536);
}

/// An exclusive CREATE under a CreateGuid that is slower than a second (the
/// time after which the journal lets the records of an unanswered
/// operation go, `RELEASE_AFTER`), killed after making its file while a
/// second client fills the journal (so that it checkpoints and its head
/// moves on): its request must still be in the log, so that the restart
/// removes the file and the client's resend makes it anew. The records of
/// an operation being carried out were released before, and under CI's
/// load the resend met its own file (STATUS_OBJECT_NAME_COLLISION).
#[test]
fn a_slow_exclusive_create_killed_after_making_its_file_is_undone() {
    let args = ["--journal", "nvram", "--journal-size", "1M", "--state-dir", "state"];
    let Some(mut server) = duet_with_env(&args, &[("DUET_FAILPOINT", "create-made:3000")]) else { return };
    let port = server.port.to_string();
    let mut client = Client(Script::start(
        "slow_create_client.py",
        &["--port", &port, "--share", common::SHARE, "--user", common::USER, "--password", common::PASSWORD],
    ));
    let sent = client.next("sent");
    assert_eq!(sent["sent"], true, "{sent}");
    // The CREATE made its file and waits at the failpoint: past the second
    // after which its records were let go, and past a checkpoint.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(server.share_dir().join("slow.txt").exists(), "the CREATE did not make its file yet");
    server.kill9();
    let first = client.next("first");
    assert_eq!(first["first"], "lost", "{first}");
    let from = server.restart();
    client.go_on();
    let resend = client.next("resend");
    let log = server.log();
    assert_eq!(resend["resend"], "ok", "the resent CREATE was refused\n--- server log ---\n{}", &log[from..]);
    assert!(log[from..].contains("had made its file: removed"), "{}", &log[from..]);
}

/// A rename that must wait for a lease break (its holder does not
/// acknowledge) while another client writes four times the journal's size:
/// the rename's records would hold the journal's head for as long as it
/// waits (up to the 35 s break time-out), so the journal filled and held
/// every connection back until the break timed out. Its request is now
/// carried in checkpoints and its records let go; the writes are answered
/// while it waits. The holder then acknowledges, the rename renames, and the
/// server dies before its point 3 (failpoint `renamed`): the restart finds
/// the rename under way in the checkpoint (its records are long gone from
/// the log), so the durable handle is taken back under its new name and the
/// resent rename is answered.
#[test]
fn a_rename_waiting_for_a_break_neither_fills_the_journal_nor_is_lost() {
    let args = ["--journal", "nvram", "--journal-size", "1M", "--state-dir", "state"];
    let Some(mut server) = duet_with_env(&args, &[("DUET_FAILPOINT", "renamed:1")]) else { return };
    let port = server.port.to_string();
    let mut client = Client(Script::start(
        "rename_client.py",
        &[
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--share",
            common::SHARE,
            "--user",
            common::USER,
            "--password",
            common::PASSWORD,
            "--hold-and-fill",
            &(4 << 20).to_string(),
        ],
    ));
    assert_eq!(client.next("open")["open"], true);
    assert_eq!(client.next("waiting")["waiting"], true, "the rename did not wait for a break");
    let filled = client.next("filled");
    assert_eq!(filled["filled"], true, "the writes were held back while the rename waited\n{}", server.log());
    assert!(server.wait_exit(Duration::from_secs(60)).is_some(), "duet did not die at its failpoint\n{}", server.log());
    assert!(server.log().contains("failpoint renamed reached"), "{}", server.log());
    assert_eq!(client.next("first")["first"], "lost");
    server.set_duet_env(&[]);
    let from = server.restart();
    client.go_on();
    let reclaim = client.next("reclaim");
    let ctx = || format!("{reclaim}\n--- server log ---\n{}", &server.log()[from..]);
    assert_eq!(reclaim["reclaim"], "ok", "the renamed file's handle was lost\n{}", ctx());
    assert_eq!(client.next("resend")["resend"], "ok", "{}", ctx());
    assert!(server.share_dir().join("after.txt").exists() && !server.share_dir().join("before.txt").exists());
}

/// Break notices pass points 3 and 4 (issue 13): after smbtorture's oplock
/// and lease breaks against a duet that keeps every record, `duet journal
/// dump` shows each notice as the point-3 record of an operation with no
/// request (no point 1), its response the notice (an Oplock Break
/// Notification, StructureSize 24, and a Lease Break Notification, 44:
/// [MS-SMB2] 2.2.23.1, 2.2.23.2), with its point-4 record. A restart after
/// `kill -9` restores from that log and serves breaks again.
#[test]
fn break_notices_are_journaled_and_a_restart_after_them_restores() {
    let Some(mut server) = duet_keeping_records() else { return };
    let tests = ["smb2.oplock.batch1", "smb2.lease.break"];
    server.assert_torture_passes(&tests);
    server.kill9();
    let out = Command::new(common::duet_bin())
        .args(["journal", "dump"])
        .arg(server.root().join("nvram"))
        .output()
        .expect("run duet journal dump");
    let dump = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "duet journal dump: {dump}{}", String::from_utf8_lossy(&out.stderr));
    // (kind, op, response) of each record of our own log.
    let own = dump.split("partner mirror").next().unwrap_or_default();
    let records: Vec<(&str, &str, &str)> = own
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| w.starts_with("op="))?;
            let kind = *words.get(at.checked_sub(1)?)?;
            let response = words.iter().find_map(|w| w.strip_prefix("response=")).unwrap_or("");
            Some((kind, words[at], response))
        })
        .collect();
    let requested: std::collections::HashSet<&str> =
        records.iter().filter(|(k, _, _)| *k == "PreAck").map(|(_, op, _)| *op).collect();
    let notices: Vec<(&str, &str)> = records
        .iter()
        .filter(|(k, op, resp)| *k == "PostCompletion" && !requested.contains(op) && !resp.is_empty())
        .map(|(_, op, resp)| (*op, *resp))
        .collect();
    let ctx = || format!("--- dump ---\n{dump}\n--- server log ---\n{}", server.log());
    assert!(notices.iter().any(|(_, r)| r.starts_with("1800")), "no oplock break notice journaled\n{}", ctx());
    assert!(notices.iter().any(|(_, r)| r.starts_with("2c00")), "no lease break notice journaled\n{}", ctx());
    for (op, _) in &notices {
        assert!(
            records.iter().any(|(k, o, _)| *k == "PostReplyAck" && o == op),
            "the notice of {op} has no point 4\n{}",
            ctx()
        );
    }
    let from = server.restart();
    server.assert_torture_passes(&tests);
    let log = server.log()[from..].to_string();
    assert!(log.contains("state model rebuilt from the journal"), "{log}");
    assert!(!log.contains("refused a journaled delta"), "{log}");
}

/// A break in progress when the server is killed comes back with the
/// restart (`testdata/break_restart_client.py`): the holder takes its
/// durable handle back and gets the break notice again (same states, same
/// epoch), and its acknowledgement is taken; the other client's open,
/// resent after the restart, waits for that acknowledgement, as it did
/// before the kill ([MS-SMB2] 3.3.4.6, 3.3.4.7, 3.3.5.22). Returns the
/// ready and done lines.
fn break_survives_sigkill(kind: &str) -> Option<(serde_json::Value, serde_json::Value, Server)> {
    let mut server = duet_with(&JOURNAL_ARGS)?;
    let port = server.port.to_string();
    let mut args = vec!["--port", &port, "--share", common::SHARE, "--user", common::USER];
    args.extend(["--password", common::PASSWORD, "--kind", kind]);
    let mut client = Client(Script::start("break_restart_client.py", &args));
    let ready = client.next("phase 1");
    assert_eq!(ready["phase"], "ready", "{ready}");
    assert!(ready["first"].is_object(), "no break before the kill: {ready}\n{}", server.log());
    assert!(ready["b_before_kill"].is_null(), "the open did not wait for the break: {ready}");
    server.kill9();
    server.restart();
    client.go_on();
    let done = client.next("phase 2");
    assert_eq!(done["phase"], "done", "{done}");
    let ctx = format!("ready: {ready}\ndone: {done}\n--- server log ---\n{}", server.log());
    assert!(done.get("error").is_none(), "{ctx}");
    assert_eq!(done["same_file_id"], true, "{ctx}");
    assert_eq!(done["second"], ready["first"], "the break notice did not come again, as it was\n{ctx}");
    assert_eq!(done["b_waited"], true, "the resent open did not wait for the acknowledgement\n{ctx}");
    assert_eq!(done["b_interim"], true, "{ctx}");
    assert_eq!(done["b_after_ack"], "ok", "the resent open was not served after the acknowledgement\n{ctx}");
    // Two notices: the first, and the one that came again (none for the
    // resent open, which met the break in progress).
    assert_eq!(done["notices"].as_array().map(Vec::len), Some(2), "{ctx}");
    // The table and the model agree on the break (on main the resent open
    // started another: "state model refused a delta: ... already in progress").
    assert!(!server.log().contains("refused"), "{ctx}");
    assert!(!server.log().contains("is not in progress"), "{ctx}");
    Some((ready, done, server))
}

#[test]
fn a_lease_break_in_progress_survives_sigkill() {
    let Some((ready, done, _server)) = break_survives_sigkill("lease") else { return };
    // RWH to RH, under the break's epoch, acknowledgement required.
    assert_eq!(ready["first"]["current"], 7, "{ready}");
    assert_eq!(ready["first"]["new"], 3, "{ready}");
    assert_eq!(ready["first"]["flags"], 1, "{ready}");
    // The handle came back still breaking: RWH held, SMB2_LEASE_FLAG_BREAK_IN_PROGRESS.
    assert_eq!(done["reclaim_lease_state"], 7, "{done}");
    assert_eq!(done["reclaim_lease_flags"], 2, "{done}");
    assert_eq!(done["reclaim_lease_epoch"], ready["first"]["epoch"], "{done}");
    assert_eq!(done["ack"], 3, "{done}");
    // The break is over: another acknowledgement is STATUS_UNSUCCESSFUL.
    assert_eq!(done["second_ack"], "STATUS_UNSUCCESSFUL", "{done}");
}

#[test]
fn an_oplock_break_in_progress_survives_sigkill() {
    let Some((ready, done, _server)) = break_survives_sigkill("oplock") else { return };
    // Batch to level II.
    assert_eq!(ready["first"]["level"], 1, "{ready}");
    assert_eq!(done["reclaim_oplock"], 9, "the handle came back without its batch oplock\n{done}");
    assert_eq!(done["ack"], 1, "{done}");
    assert_eq!(done["second_ack"], "STATUS_INVALID_OPLOCK_PROTOCOL", "{done}");
}

/// A file's name and its delete-pending are the state model's alone (no
/// runtime copy answers them): a durable open renamed and set
/// delete-pending before a `kill -9` is taken back after the restart under
/// its new name (FileAllInformation's name, with DeletePending), a second open of that name is
/// refused with STATUS_DELETE_PENDING ([MS-FSA] 2.1.5.1.2), and the
/// reclaimed handle's close deletes the file where the rename put it
/// (`testdata/restart_names_client.py`).
#[test]
fn a_renamed_delete_pending_file_is_restored_from_the_model() {
    let Some(mut server) = duet_with(&JOURNAL_ARGS) else { return };
    let port = server.port.to_string();
    let args = ["--port", &port, "--share", common::SHARE, "--user", common::USER, "--password", common::PASSWORD];
    let mut client = Client(Script::start("restart_names_client.py", &args));
    let ready = client.next("phase 1");
    let ctx = |done: &serde_json::Value, server: &Server| format!("ready: {ready}\ndone: {done}\n{}", server.log());
    assert!(ready.get("error").is_none(), "{}", ctx(&serde_json::Value::Null, &server));
    assert_eq!(ready["name"], "\\renamed.dat", "{}", ctx(&serde_json::Value::Null, &server));
    server.kill9();
    server.restart();
    client.go_on();
    let done = client.next("phase 2");
    assert_eq!(done["reconnect"], "ok", "{}", ctx(&done, &server));
    assert_eq!(done["name"], "\\renamed.dat", "the name did not follow the rename\n{}", ctx(&done, &server));
    assert_eq!(done["delete_pending"], true, "{}", ctx(&done, &server));
    assert_eq!(done["other_open"], "STATUS_DELETE_PENDING", "{}", ctx(&done, &server));
    assert_eq!(done["after_close"], "STATUS_OBJECT_NAME_NOT_FOUND", "{}", ctx(&done, &server));
    assert!(!server.share_dir().join("renamed.dat").exists() && !server.share_dir().join("named.dat").exists());
}
