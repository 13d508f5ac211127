//! The first real takeover (issue 14): two `duet` processes as a pair on
//! loopback, each serving its own share set on its own address (A on
//! 127.0.1.1, B on 127.0.1.2, one port), over one storage folder. A Python
//! client (`testdata/failover_client.py`, built on `resilient_smb.py`) writes
//! through a durable v2 open on A's address; A dies; the client reconnects to
//! the same address, now served by B, reclaims its handle with DH2C and
//! finishes its writes.
//!
//! - `a_killed_node_s_set_is_taken_over_and_its_client_finishes`: A is
//!   SIGKILLed in the middle of the writes. Every block is in the file, in its
//!   place; B says it serves set 1 at epoch 2; A, started again, learns that B
//!   holds its set and waits (serves nothing).
//! - `a_frozen_node_s_set_is_taken_over_and_it_steps_down_on_thaw`: A is
//!   stopped with SIGSTOP (its kernel keeps its sockets, the set's address
//!   among them) and the client sends an append to it. B claims A's set after
//!   the silence; A, resumed, carries nothing out (its lease ran out while it
//!   was frozen and is not renewed), finds the newer claim on its set and
//!   exits; B binds the address, and the append is answered there after the
//!   client's reconnect, once.
//! - `no_takeover_from_a_mirror_the_partner_never_called_current`: B's
//!   receiving side is stuck (a failpoint), so A never says B's mirror is
//!   current, gives B up and runs degraded; A is killed; B refuses to take
//!   A's set over, says why, and nobody serves A's address.
//! - `a_request_answered_by_nobody_is_answered_from_the_mirror_once`: A dies
//!   (a failpoint) right after a WRITE's point-3 record is durable, which with
//!   a partner means in B's mirror, before the answer leaves. The open is
//!   append-only, so a WRITE carried out twice would show its block twice: the
//!   client's resend (replay flag) is answered by B from the mirrored log, and
//!   the file holds each block exactly once. Its variants with WRITEs of 64 KiB
//!   and under `process` meet point-1 records that keep a digest of the data,
//!   not the data.
//! - `a_write_held_past_its_lease_check_lands_nowhere_once_the_set_was_taken`:
//!   A's WRITE is held (a failpoint) after its element's lease check, before its
//!   data is written, and A is frozen there; B takes the set over and a client
//!   writes other data to the same file through B; A, resumed, goes on with the
//!   WRITE: the fence on the data path refuses it, the file keeps B's data, and
//!   A steps down.
//! - `an_exclusive_create_whose_node_died_after_making_its_file_is_undone_by_the_partner`:
//!   A's records reach B late (a failpoint holds them) and A dies right after
//!   an exclusive CREATE under a CreateGuid made its file; the CREATE waited
//!   for its records to be in B's mirror first, so B undoes it and the
//!   client's resend makes the file anew.
//! - `a_rename_whose_node_died_after_renaming_is_followed_by_the_partner`: the
//!   same for a rename: B finds the retained handle under its new name.
//! - `a_survivor_killed_after_taking_the_partner_s_set_keeps_its_handles_across_its_restart`:
//!   B took set 1 over and a client opened a durable handle on it through B;
//!   B is killed and started again: it goes on from the journal it kept of
//!   the set in the storage folder, and the client reclaims its handle.
//! - `after_a_double_failure_the_home_node_takes_its_set_back_from_the_holder_s_journal`:
//!   the same, but A starts instead of B: it takes its set back from B's
//!   journal of it (and refuses, saying why, while that journal is missing).
//! - `a_write_held_on_a_taken_set_lands_nowhere_once_its_home_node_took_it_back`:
//!   the fence on the data path for a taken set: B holds set 1 and is frozen
//!   with a WRITE to it held past its lease check; A takes its set back; B,
//!   thawed, finds its lease on set 1 run out and writes nothing.
//! - `a_holder_that_thaws_before_the_home_node_s_claim_has_its_lease_on_the_set_waited_out`:
//!   A waits out B's lease on set 1 after its claim when B's heartbeat moved.
//! - `sigterm_of_the_node_holding_its_partner_s_set_gives_the_set_back_first`:
//!   B, holding set 1, gets SIGTERM while a client appends to set 1: it gives
//!   the set back before it exits, and the client finishes on A.
//! - `sigterm_of_a_holder_whose_partner_is_down_saves_the_taken_set_as_an_elective_reboot`:
//!   the same with A down: B saves set 1 into its journal as an elective
//!   reboot, goes on from it when started again, and the client reclaims
//!   its handle there.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::script::Script;

const CLUSTER: u64 = 9;
const USER: &str = "duet";
const PASSWORD: &str = "duetpass";

/// One pair node's process.
struct Node {
    id: u16,
    root: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
    starts: usize,
}

/// The addresses and folders of a pair.
struct Layout {
    dir: tempfile::TempDir,
    port: u16,
    interconnect: [u16; 2],
    /// The folder of share `setb` in the storage folder.
    setb_folder: &'static str,
}

impl Layout {
    fn new() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        for d in ["storage/seta", "storage/setb", "storage/.duet", "a", "b"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Layout {
            dir,
            port: common::free_port(),
            interconnect: [common::free_port(), common::free_port()],
            setb_folder: "setb",
        }
    }

    /// Both sets' shares over one folder (`seta`'s): a client of B's own set
    /// reaches the files of A's.
    fn one_folder() -> Layout {
        Layout { setb_folder: "seta", ..Layout::new() }
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The client address of node `id`'s set.
    fn address(&self, id: u16) -> String {
        format!("127.0.1.{id}:{}", self.port)
    }

    fn node(&self, id: u16, policy: &str, env: &[(&str, &str)]) -> Node {
        let partner = 3 - id;
        let root = self.dir.path().join(if id == 1 { "a" } else { "b" });
        let storage = self.storage();
        let set = |n: u16| if n == 1 { "seta" } else { "setb" };
        let mut args: Vec<String> = vec!["serve".into()];
        for (s, folder) in [("seta", "seta"), ("setb", self.setb_folder)] {
            args.extend(["--share".into(), format!("{s}={}", storage.join(folder).display())]);
        }
        args.extend(
            [
                "--user",
                &format!("{USER}:{PASSWORD}"),
                "--journal",
                "nvram",
                "--journal-size",
                "16M",
                "--journal-policy",
                policy,
                "--state-dir",
                "state",
                "--pair-cluster",
                &CLUSTER.to_string(),
                "--pair-node",
                &id.to_string(),
                "--pair-partner-node",
                &partner.to_string(),
                "--pair-listen",
                &format!("127.0.0.1:{}", self.interconnect[id as usize - 1]),
                "--pair-partner",
                &format!("127.0.0.1:{}", self.interconnect[partner as usize - 1]),
                "--pair-incarnation",
                "1",
                "--pair-storage",
                &storage.join(".duet").display().to_string(),
                "--pair-address",
                &self.address(id),
                "--pair-shares",
                set(id),
                "--pair-partner-address",
                &self.address(partner),
                "--pair-partner-shares",
                set(partner),
            ]
            .map(String::from),
        );
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let log = root.join("duet.log");
        Node { id, root, args, env, child: None, log, starts: 0 }
    }
}

impl Node {
    fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(common::duet_bin())
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("duet runs");
        self.child = Some(child);
    }

    /// Sends `sig` to the process.
    fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().expect("running").id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(pid, sig) };
    }

    /// Waits until every thread of the process is stopped: a SIGSTOP takes effect
    /// once a thread dequeues it, which one blocked in the kernel (an fsync) does
    /// only when it returns.
    fn wait_stopped(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let t0 = Instant::now();
        let stopped = || {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
            tasks.filter_map(Result::ok).all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                // The state follows the ")" that ends the command name.
                stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
            })
        };
        while !stopped() {
            assert!(t0.elapsed() < Duration::from_secs(30), "node {} never stopped", self.id);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The exit status, once the process exited by itself within `limit`.
    fn exit_status(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(c) = &mut self.child {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    return Some(st);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself (a failpoint).
    fn wait_exit(&mut self, limit: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(c) = &mut self.child {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `duet status --json`, once the admin socket answers.
    fn full_status(&self) -> Option<serde_json::Value> {
        let out = Command::new(common::duet_bin())
            .args(["status", "--json", "--socket"])
            .arg(self.root.join("state/admin.sock"))
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `duet status --json`'s pair object, once the admin socket answers.
    fn pair_status(&self) -> Option<serde_json::Value> {
        self.full_status().map(|v| v["pair"].clone())
    }

    /// Waits (up to 60 s) until the pair status satisfies `pred`.
    fn status_until(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let t0 = Instant::now();
        let mut last = None;
        while t0.elapsed() < Duration::from_secs(60) {
            if let Some(s) = self.pair_status() {
                if pred(&s) {
                    return s;
                }
                last = Some(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("node {}: never {what}; last status {last:#?}\n---- log ----\n{}", self.id, self.log());
    }
}

impl Node {
    /// `duet ARGS --socket` this node's admin socket: whether it succeeded, and
    /// what it printed.
    fn admin(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(common::duet_bin())
            .args(args)
            .arg("--socket")
            .arg(self.root.join("state/admin.sock"))
            .output()
            .expect("duet runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The state of set `set` in a pair status.
fn set_state(status: &serde_json::Value, set: u64) -> (String, u64) {
    let sets = status["sets"].as_array().cloned().unwrap_or_default();
    let s = sets.iter().find(|s| s["set"] == set).cloned().unwrap_or_default();
    (s["state"].as_str().unwrap_or("").to_string(), s["epoch"].as_u64().unwrap_or(0))
}

/// Starts A then B and waits until each holds a current mirror of the other and
/// serves its own set.
fn start_pair(l: &Layout, policy_a: &str, policy_b: &str, env_a: &[(&str, &str)]) -> (Node, Node) {
    let mut a = l.node(1, policy_a, env_a);
    let mut b = l.node(2, policy_b, &[]);
    a.start();
    b.start();
    for (n, set) in [(&a, 1), (&b, 2)] {
        n.status_until("current with its partner and serving its set", |s| {
            s["partner_mirror"]["current"] == true && set_state(s, set).0 == "serving"
        });
    }
    (a, b)
}

/// The client script, running.
struct Client(Script);

impl Client {
    fn start(host_port: &str, share: &str, extra: &[&str]) -> Client {
        let (host, port) = host_port.split_once(':').unwrap();
        let mut args = vec!["--host", host, "--port", port, "--share", share, "--user", USER, "--password", PASSWORD];
        args.extend(extra);
        Client(Script::start("failover_client.py", &args))
    }

    /// Lets a client that waits (`--wait-at`) go on.
    fn go(&mut self) {
        self.0.send("go");
    }

    /// The next JSON line, within `limit`.
    fn next(&self, limit: Duration) -> Option<serde_json::Value> {
        serde_json::from_str(&self.0.line(limit)?).ok()
    }

    /// Reads lines until one satisfies `pred`.
    fn until(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(120) {
            match self.next(Duration::from_secs(120)) {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => break,
            }
        }
        panic!("the client never {what}");
    }

    /// Its last line, once it exited; and its stderr.
    fn finish(mut self) -> (serde_json::Value, String) {
        let mut last = serde_json::Value::Null;
        while let Some(v) = self.next(Duration::from_secs(180)) {
            last = v;
        }
        (last, self.0.wait())
    }
}

fn block(i: usize, size: usize) -> Vec<u8> {
    let line = format!("block {i:06}\n");
    line.as_bytes().iter().copied().cycle().take(size).collect()
}

/// The time of day, in seconds, of the first log line holding `what` (its
/// tracing timestamp, `YYYY-MM-DDTHH:MM:SS.ffffffZ`).
fn log_time(log: &str, what: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains(what))?;
    let t = line.split_whitespace().next()?.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = t.split(':');
    let (h, m, s) = (parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<f64>().ok()?);
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The file holds `blocks` blocks one after the other, each once.
fn assert_blocks(path: &Path, blocks: usize, size: usize, context: &str) {
    let got = std::fs::read(path).unwrap();
    let want: Vec<u8> = (0..blocks).flat_map(|i| block(i, size)).collect();
    if got != want {
        let first_bad = (0..got.len().max(want.len()) / size + 1)
            .find(|&i| got.get(i * size..(i + 1) * size) != want.get(i * size..(i + 1) * size));
        let at = first_bad.unwrap_or(0);
        let seen = got.get(at * size..).map(|b| String::from_utf8_lossy(&b[..b.len().min(14)]).to_string());
        panic!(
            "{} is {} bytes, want {} ({blocks} blocks of {size}); first wrong block {at}: {seen:?}\n{context}",
            path.display(),
            got.len(),
            want.len()
        );
    }
}

#[test]
fn a_killed_node_s_set_is_taken_over_and_its_client_finishes() {
    let l = Layout::new();
    // A journal that survives a killed process: its records reach the partner's
    // mirror without waiting for a disk, so the mirror stays current under load.
    let (mut a, b) = start_pair(&l, "process", "process", &[]);
    let (blocks, size) = (120, 16384);
    let client = Client::start(
        &l.address(1),
        "seta",
        &["--blocks", &blocks.to_string(), "--size", &size.to_string(), "--pause", "0.01"],
    );
    client.until("wrote 30 blocks", |v| v["wrote"].as_u64().is_some_and(|i| i >= 30));
    // B takes A's set only from a mirror A said is current (a link that dropped and
    // is resyncing is not): the kill comes when it is.
    b.status_until("holding a current mirror of A", |s| s["partner_mirror"]["current"] == true);
    let t_kill = Instant::now();
    a.kill9();
    let (done, stderr) = client.finish();
    let context = format!("client: {done}\n{stderr}\n---- B ----\n{}\n---- A ----\n{}", b.log(), a.log());
    assert_eq!(done["done"], true, "{context}");
    assert!(done["reconnects"].as_u64().unwrap_or(0) >= 1, "the client never lost its connection: {context}");
    assert_eq!(done["reclaimed"], true, "{context}");
    // The set kept its server GUID: the survivor answers with the one A did.
    assert_eq!(done["server_guids"].as_array().map(Vec::len), Some(1), "{context}");
    eprintln!(
        "the client finished {} ms after the kill; its longest stall {} ms",
        t_kill.elapsed().as_millis(),
        done["stall_ms"]
    );
    assert_blocks(&l.storage().join("seta/failover.dat"), blocks, size, &context);
    // A, killed, beat no more: B knew A's lease was out and did not wait.
    assert!(b.log().contains("heartbeat_moved=false"), "{context}");
    // B serves A's set at the next epoch, and said so.
    let st = b.status_until("serving set 1", |s| set_state(s, 1).0 == "serving");
    assert_eq!(set_state(&st, 1), ("serving".into(), 2), "{st:#}");
    assert!(b.log().contains("took over set 1 (epoch 2)"), "{}", b.log());
    // A comes back: it learns that B holds its set, and waits (no auto-giveback
    // here: `giveback_after_a_kill_and_restart_brings_the_set_home` has it).
    a.args.extend(["--pair-auto-giveback".to_string(), "false".to_string()]);
    a.start();
    let st = a.status_until("waiting for its set", |s| set_state(s, 1).0.starts_with("waiting"));
    assert_eq!(set_state(&st, 1), ("waiting: held by node 2".into(), 2), "{st:#}");
    assert!(a.log().contains("waiting (not serving it)"), "{}", a.log());
    assert_eq!(a.starts, 2);
    // The address is still B's: a client reaches set 1 there, and finds the file.
    let again = Client::start(&l.address(1), "seta", &["--name", "after.dat", "--blocks", "3", "--size", "4096"]);
    let (done, stderr) = again.finish();
    assert_eq!(done["done"], true, "{done}\n{stderr}\n{}", b.log());
    assert_eq!(done["reconnects"], 0, "{done}");
}

#[test]
fn a_frozen_node_s_set_is_taken_over_and_it_steps_down_on_thaw() {
    let l = Layout::new();
    let (mut a, b) = start_pair(&l, "process", "process", &[]);
    let (blocks, size) = (60, 3000);
    // Appends: a WRITE carried out twice shows as a block twice.
    let mut client = Client::start(
        &l.address(1),
        "seta",
        &["--append", "--blocks", &blocks.to_string(), "--size", &size.to_string(), "--wait-at", "30"],
    );
    client.until("wrote 30 blocks and waits", |v| v["waiting"] == 30);
    b.status_until("holding a current mirror of A", |s| s["partner_mirror"]["current"] == true);
    a.signal(libc::SIGSTOP);
    a.wait_stopped();
    // WRITE 30 goes to the frozen node: its kernel takes it, nothing reads it.
    client.go();
    // B claims A's set once both channels are silent; A's frozen socket still
    // holds the address, so B cannot bind it yet.
    let t0 = Instant::now();
    while !b.log().contains("claimed the partner's set") {
        assert!(t0.elapsed() < Duration::from_secs(60), "B never claimed A's set:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    a.signal(libc::SIGCONT);
    // A steps down: its lease ran out while it was frozen and is not renewed (the
    // newest claim on its set is B's), so it carries out nothing more; its first
    // look at the claims ends it.
    let st = a.exit_status(Duration::from_secs(30));
    assert_eq!(st.and_then(|s| s.code()), Some(3), "A did not step down:\n{}", a.log());
    assert!(a.log().contains("claimed by node 2 at epoch 2 (ours: 1): stepping down"), "{}", a.log());
    let first_after = client.until("answered WRITE 30", |v| v["wrote"] == 30);
    let (done, stderr) = client.finish();
    let context = format!("client: {done}\n{stderr}\n---- B ----\n{}\n---- A ----\n{}", b.log(), a.log());
    // WRITE 30 was answered after a reconnect, by B: A, thawed, did not carry it out.
    assert_eq!(
        first_after["replay"], true,
        "A answered a request after its set was taken over: {first_after}\n{context}"
    );
    assert_eq!(done["done"], true, "{context}");
    assert_eq!(done["reclaimed"], true, "{context}");
    assert_blocks(&l.storage().join("seta/failover.dat"), blocks, size, &context);
    let st = b.status_until("serving set 1", |s| set_state(s, 1).0 == "serving");
    assert_eq!(set_state(&st, 1), ("serving".into(), 2), "{st:#}");
}

/// A thaws in the instant B has found it dead and not yet claimed its set
/// (failpoint `claim` holds B there): A's next storage beat still finds the
/// set its own and renews A's lease, which may then hold up to a lease length
/// after B's claim. B sees A's heartbeat moved since it found A dead, and
/// changes nothing on the set's disk until that lease is out; A steps down at
/// its next beat. Without the wait, B went on at once.
#[test]
fn a_partner_that_thaws_before_the_claim_has_its_lease_waited_out() {
    let l = Layout::new();
    let mut a = l.node(1, "process", &[]);
    let mut b = l.node(2, "process", &[("DUET_FAILPOINT", "claim:1500")]);
    a.start();
    b.start();
    b.status_until("holding a current mirror of A", |s| s["partner_mirror"]["current"] == true);
    a.signal(libc::SIGSTOP);
    a.wait_stopped();
    let t0 = Instant::now();
    while !b.log().contains("taking its set over") {
        assert!(t0.elapsed() < Duration::from_secs(60), "B never found A dead:\n{}", b.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    a.signal(libc::SIGCONT);
    let st = a.exit_status(Duration::from_secs(30));
    let context = format!("---- B ----\n{}\n---- A ----\n{}", b.log(), a.log());
    assert_eq!(st.and_then(|s| s.code()), Some(3), "A did not step down:\n{context}");
    let t0 = Instant::now();
    while !b.log().contains("lease has run out") {
        assert!(t0.elapsed() < Duration::from_secs(30), "B never went on:\n{context}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = b.log();
    let context = format!("---- B ----\n{log}\n---- A ----\n{}", a.log());
    assert!(log.contains("heartbeat_moved=true"), "{context}");
    let (claimed, run_out) = (log_time(&log, "claimed the partner's set"), log_time(&log, "lease has run out"));
    let waited = run_out.zip(claimed).map(|(r, c)| r - c);
    assert!(waited.is_some_and(|w| w >= 0.99), "B did not wait out A's lease after its claim ({waited:?} s)\n{context}");
}

/// Waits (up to 60 s) until the node's log holds `what`.
fn log_until(n: &Node, what: &str) {
    let t0 = Instant::now();
    while !n.log().contains(what) {
        assert!(t0.elapsed() < Duration::from_secs(60), "node {} never logged {what:?}:\n{}", n.id, n.log());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The fence on the data path (DESIGN.md, "Leases"): a WRITE that passed its
/// element's lease check (point 2) and was then held up, past its lease, until
/// the partner had taken the set over and written the file, changes nothing
/// when it goes on. Before the fence, A wrote its block over B's.
#[test]
fn a_write_held_past_its_lease_check_lands_nowhere_once_the_set_was_taken() {
    // Set B's share is set A's folder: while A is frozen, its kernel keeps set
    // 1's address (B binds it only once A stepped down), so B's client writes the
    // file through B's own set.
    let l = Layout::one_folder();
    // A holds each WRITE for 2 s past its lease check, before writing its data.
    let hold = Duration::from_millis(2000);
    let (mut a, b) = start_pair(&l, "process", "process", &[("DUET_FAILPOINT", "write-held:2000")]);
    let size = 4096;
    // Its client says when its connection is lost and waits there: once A is gone
    // it would resend the WRITE, and B would rightly carry it out (a later write,
    // not the one this test looks at).
    let held = Client::start(
        &l.address(1),
        "seta",
        &["--blocks", "1", "--size", "4096", "--tag", "from-a", "--hold-after-loss"],
    );
    log_until(&a, "failpoint: pausing");
    let t_held = Instant::now();
    a.signal(libc::SIGSTOP);
    a.wait_stopped();
    assert!(!a.log().contains("failpoint: going on"), "A's WRITE went on before A froze (a loaded machine?)");
    log_until(&b, "claimed the partner's set");
    let other = Client::start(&l.address(2), "setb", &["--blocks", "1", "--size", "4096", "--tag", "from-b"]);
    let (done, stderr) = other.finish();
    assert_eq!(done["done"], true, "{done}\n{stderr}\n---- B ----\n{}", b.log());
    let path = l.storage().join("seta/failover.dat");
    let from_b = std::fs::read(&path).unwrap();
    assert_eq!(from_b.len(), size);
    assert!(from_b.starts_with(b"from-b 000000\n"), "{:?}", String::from_utf8_lossy(&from_b[..20]));
    // A's hold ends while it is frozen: resumed, the WRITE goes on at once.
    while t_held.elapsed() < hold + Duration::from_millis(200) {
        std::thread::sleep(Duration::from_millis(50));
    }
    a.signal(libc::SIGCONT);
    let st = a.exit_status(Duration::from_secs(30));
    let context = format!("---- A ----\n{}\n---- B ----\n{}", a.log(), b.log());
    assert_eq!(st.and_then(|s| s.code()), Some(3), "A did not step down:\n{context}");
    assert!(a.log().contains("claimed by node 2 at epoch 2 (ours: 1): stepping down"), "{context}");
    // The file holds B's block, not A's.
    let got = std::fs::read(&path).unwrap();
    assert!(
        got == from_b,
        "A's held WRITE landed after the takeover: {:?}\n{context}",
        String::from_utf8_lossy(&got[..got.len().min(20)])
    );
    // And it was the fence that stopped it, unless A's step-down won the race
    // to the WRITE's thread when A was resumed (both are ready to run then):
    // A then stepped down before the held WRITE went on, and the process
    // ended before it could write (seen once in 8 runs on a busy machine).
    let log = a.log();
    let stepped_down_first = match (log.find("stepping down"), log.find("failpoint: going on")) {
        (Some(down), Some(on)) => down < on,
        (Some(_), None) => true,
        _ => false,
    };
    assert!(log.contains("fence: a change on disk refused") || stepped_down_first, "{context}");
    // The WRITE got no answer (no error status either): its connection closed.
    let lost = held.next(Duration::from_secs(30));
    assert_eq!(lost, Some(serde_json::json!({"lost": 0})), "{context}");
}

#[test]
fn a_request_answered_by_nobody_is_answered_from_the_mirror_once() {
    // A dies at its 40th point 3 (negotiate, session setup, tree connect and create
    // come first): right after that WRITE's records are durable, in B's mirror,
    // before its answer leaves. A keeps each small WRITE's data in its record (policy
    // group), and the resend's replay key is found from the mirrored request.
    answered_by_nobody_is_answered_from_the_mirror_once("group", 60, 3000, "point3:40");
}

/// The same with WRITEs of 64 KiB, whose point-1 records keep the digest of
/// their data, not the data (synced in the file before the answer): the
/// replay key rebuilt from the mirrored record must be the resend's (it was
/// not, and B appended the block again).
#[test]
fn a_large_request_answered_by_nobody_is_answered_from_the_mirror_once() {
    answered_by_nobody_is_answered_from_the_mirror_once("group", 12, 65536, "point3:10");
}

/// The same under `process`, whose point-1 records keep no WRITE's data.
#[test]
fn a_request_answered_by_nobody_under_process_is_answered_from_the_mirror_once() {
    answered_by_nobody_is_answered_from_the_mirror_once("process", 60, 3000, "point3:40");
}

/// A dies after its 40th WRITE wrote its data, before the WRITE's point 3
/// (failpoint `written`): its records in B's mirror end with the place the
/// append recorded before writing, and no answer. B finds the data there and
/// answers the resend as done (before, B appended the block again).
#[test]
fn an_append_that_wrote_before_its_node_died_is_answered_once_by_the_partner() {
    answered_by_nobody_is_answered_from_the_mirror_once("group", 60, 3000, "written:40");
}

/// A, under `policy_a`, dies at `failpoint` while its client appends
/// `blocks` blocks of `size` bytes; B stores A's records without waiting for
/// a disk (policy process), so the mirror stays current under load. Both run
/// on one kernel: B writes no WRITE again.
fn answered_by_nobody_is_answered_from_the_mirror_once(policy_a: &str, blocks: usize, size: usize, failpoint: &str) {
    let l = Layout::new();
    let (mut a, b) = start_pair(&l, policy_a, "process", &[("DUET_FAILPOINT", failpoint)]);
    let client =
        Client::start(&l.address(1), "seta", &["--append", "--blocks", &blocks.to_string(), "--size", &size.to_string()]);
    assert!(a.wait_exit(Duration::from_secs(120)), "A never reached its failpoint:\n{}", a.log());
    let name = failpoint.split(':').next().unwrap_or_default();
    assert!(a.log().contains(&format!("failpoint {name} reached")), "{}", a.log());
    let (done, stderr) = client.finish();
    let context = format!("client: {done}\n{stderr}\n---- B ----\n{}\n---- A ----\n{}", b.log(), a.log());
    assert_eq!(done["done"], true, "{context}");
    assert_eq!(done["reconnects"], 1, "{context}");
    assert!(stderr.contains("resending write"), "{context}");
    assert!(b.log().contains("took over set 1 (epoch 2)"), "{context}");
    // The resent WRITE was carried out once, by A: its answer came from the log.
    assert_blocks(&l.storage().join("seta/failover.dat"), blocks, size, &context);
}

#[test]
fn no_takeover_from_a_mirror_the_partner_never_called_current() {
    let l = Layout::new();
    let mut a = l.node(1, "process", &[]);
    // B stores each run of A's records only after 30 s (a stuck disk): A's resync is
    // never acknowledged, A never says B's mirror is current, and gives B up.
    let mut b = l.node(2, "process", &[("DUET_FAILPOINT", "mirror-receive:30000")]);
    a.start();
    b.start();
    a.status_until("serving its set", |s| set_state(s, 1).0 == "serving");
    b.status_until("serving its set, joined by A", |s| {
        set_state(s, 2).0 == "serving" && s["partner_mirror"]["connected"] == true
    });
    let t0 = Instant::now();
    while !a.log().contains("it stopped acknowledging") {
        assert!(t0.elapsed() < Duration::from_secs(60), "A never gave B up:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(b.pair_status().unwrap()["partner_mirror"]["current"], false);
    a.kill9();
    let st = b.status_until("refusing to take set 1", |s| set_state(s, 1).0.starts_with("refused"));
    assert_eq!(set_state(&st, 1), ("refused: our mirror of the partner's journal is not current".into(), 0), "{st:#}");
    assert!(b.log().contains("its set is NOT taken over"), "{}", b.log());
    assert!(!b.log().contains("claimed the partner's set"), "{}", b.log());
    // Nobody serves A's address.
    assert!(std::net::TcpStream::connect(l.address(1)).is_err(), "something answers on A's address");
    b.kill9();
}

/// A's link to B holds each batch of records for B's mirror 300 ms
/// (failpoint `mirror-send`), and A dies right after an exclusive CREATE
/// under a CreateGuid made its file (failpoint `created`). The CREATE waits
/// until its records are in B's mirror before it makes the file, so B's
/// takeover finds the request unanswered, removes the file, and the client's
/// resend (replay flag) makes it anew. Before, A made the file while its
/// records were still held: B knew nothing of the request and the resend met
/// the file (STATUS_OBJECT_NAME_COLLISION).
#[test]
fn an_exclusive_create_whose_node_died_after_making_its_file_is_undone_by_the_partner() {
    let l = Layout::new();
    let (mut a, b) = start_pair(&l, "process", "process", &[("DUET_FAILPOINT", "mirror-send:300,created:1")]);
    let (host, port) = l.address(1).split_once(':').map(|(h, p)| (h.to_string(), p.to_string())).unwrap();
    let mut client = Script::start(
        "slow_create_client.py",
        &["--host", &host, "--port", &port, "--share", "seta", "--user", USER, "--password", PASSWORD, "--no-fill"],
    );
    let line = |c: &Script, what: &str| -> serde_json::Value {
        let l = c.line(Duration::from_secs(120)).unwrap_or_else(|| panic!("no {what} line from the client"));
        serde_json::from_str(&l).unwrap()
    };
    assert_eq!(line(&client, "sent")["sent"], true);
    assert!(a.wait_exit(Duration::from_secs(60)), "A never reached its failpoint:\n{}", a.log());
    assert!(a.log().contains("failpoint created reached"), "{}", a.log());
    assert!(l.storage().join("seta/slow.txt").exists(), "A died without making the file");
    assert_eq!(line(&client, "first")["first"], "lost");
    b.status_until("serving A's set", |s| set_state(s, 1).0 == "serving");
    client.send("go");
    let resend = line(&client, "resend");
    let context = format!("client: {resend}\n{}\n---- B ----\n{}\n---- A ----\n{}", client.wait(), b.log(), a.log());
    assert_eq!(resend["resend"], "ok", "the resent CREATE was refused\n{context}");
    assert!(b.log().contains("had made its file: removed"), "{context}");
}

/// A connection to a pair member's set that the server ends (here: bytes
/// that are no SMB frame) ends for the client too, at once, although each
/// such connection's socket has a second descriptor (kept so that a
/// hand-over can shut it down, `pair::serving::ConnTasks`) that keeps the
/// socket open after the connection closed its own: the connection's
/// writer shuts the socket down as it ends.
#[test]
fn a_connection_the_server_ends_on_a_set_address_ends_for_its_client() {
    use std::io::{Read, Write};
    let l = Layout::new();
    let (_a, _b) = start_pair(&l, "process", "process", &[]);
    let addr = l.address(1);
    let mut sock = None;
    let end = Instant::now() + Duration::from_secs(30);
    while sock.is_none() && Instant::now() < end {
        sock = std::net::TcpStream::connect(&addr).ok();
        if sock.is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut sock = sock.expect("A's set address never answered");
    // A NetBIOS session request (type 0x81), not a session message: the
    // server closes the connection.
    sock.write_all(&[0x81, 0, 0, 4, 1, 2, 3, 4]).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    let got = sock.read(&mut buf);
    let ended = matches!(got, Ok(0)) || got.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset);
    assert!(ended, "the connection did not end for the client: {got:?}");
}

/// The same for a rename (failpoint `renamed`, right after it): the rename
/// waits until its records are in B's mirror, so B's takeover follows it
/// (the retained handle is found under its new name) and the resend with the
/// replay flag is carried out once. Before, B knew nothing of the rename and
/// the handle was lost (its file was not where B's state had it).
#[test]
fn a_rename_whose_node_died_after_renaming_is_followed_by_the_partner() {
    let l = Layout::new();
    let (mut a, b) = start_pair(&l, "process", "process", &[("DUET_FAILPOINT", "mirror-send:300,renamed:1")]);
    let (host, port) = l.address(1).split_once(':').map(|(h, p)| (h.to_string(), p.to_string())).unwrap();
    let mut client = Script::start(
        "rename_client.py",
        &["--host", &host, "--port", &port, "--share", "seta", "--user", USER, "--password", PASSWORD],
    );
    let line = |c: &Script, what: &str| -> serde_json::Value {
        let l = c.line(Duration::from_secs(120)).unwrap_or_else(|| panic!("no {what} line from the client"));
        serde_json::from_str(&l).unwrap()
    };
    assert_eq!(line(&client, "open")["open"], true);
    assert!(a.wait_exit(Duration::from_secs(60)), "A never reached its failpoint:\n{}", a.log());
    assert!(a.log().contains("failpoint renamed reached"), "{}", a.log());
    assert_eq!(line(&client, "first")["first"], "lost");
    b.status_until("serving A's set", |s| set_state(s, 1).0 == "serving");
    client.send("go");
    let reclaim = line(&client, "reclaim");
    let resend = if reclaim["reclaim"] == "ok" { line(&client, "resend") } else { serde_json::Value::Null };
    let (stderr, b_log, a_log) = (client.wait(), b.log(), a.log());
    let context = format!("client: {reclaim} {resend}\n{stderr}\n---- B ----\n{b_log}\n---- A ----\n{a_log}");
    assert_eq!(reclaim["reclaim"], "ok", "the handle was lost\n{context}");
    assert_eq!(resend["resend"], "ok", "the resent rename was refused\n{context}");
    assert!(l.storage().join("seta/after.txt").exists(), "{context}");
    assert!(!l.storage().join("seta/before.txt").exists(), "{context}");
}

/// `duet takeover` on B moves A's set to B while a client writes through a
/// durable handle on A's address: A drains, saves its state into its journal
/// (which B's mirror holds), releases; B claims the set at the next epoch,
/// restores it from its mirror and binds. The client sees a delay: its
/// connection closes, it reconnects to the same address (B now), reclaims its
/// handle (DH2C) and resends what had no answer; the open is append-only, so a
/// request carried out twice would show its block twice, one lost would leave
/// a hole. A serves nothing and waits; `duet move 1` on B sends the set back
/// (a giveback from the holder), and the client, still writing, follows it.
#[test]
fn an_elective_takeover_and_a_giveback_move_a_set_and_its_writing_client() {
    let l = Layout::new();
    let (a, b) = start_pair(&l, "process", "process", &[]);
    let (blocks, size) = (160, 4096);
    let mut client = Client::start(
        &l.address(1),
        "seta",
        &["--append", "--blocks", &blocks.to_string(), "--size", &size.to_string(), "--pause", "0.01", "--wait-at", "40"],
    );
    client.until("wrote 20 blocks", |v| v["wrote"].as_u64().is_some_and(|i| i >= 20));
    // Refused while our mirror of A is not current is shown elsewhere; here both are.
    b.status_until("holding a current mirror of A", |s| s["partner_mirror"]["current"] == true);
    let (ok, out) = b.admin(&["takeover"]);
    let context = || format!("{out}\n---- B ----\n{}\n---- A ----\n{}", b.log(), a.log());
    assert!(ok, "duet takeover failed: {}", context());
    assert!(out.contains("set 1 served here"), "{}", context());
    let st = b.status_until("serving set 1", |s| set_state(s, 1).0 == "serving");
    assert_eq!(set_state(&st, 1), ("serving".into(), 2), "{st:#}");
    // A handed its set over on purpose: it runs on, in standby, and did not step down.
    let st = a.status_until("waiting for its set", |s| set_state(s, 1).0.starts_with("waiting"));
    assert_eq!(set_state(&st, 1).1, 2, "{st:#}");
    assert!(!a.log().contains("stepping down"), "{}", a.log());
    assert!(a.log().contains("hand-over: state saved into our journal"), "{}", a.log());
    client.until("waiting at block 40", |v| v["waiting"] == 40);
    client.go();
    client.until("wrote 80 blocks", |v| v["wrote"].as_u64().is_some_and(|i| i >= 80));
    // Back home: `duet move 1` on the holder gives it back.
    let (ok, out) = b.admin(&["move", "1"]);
    assert!(ok, "duet move 1 failed: {out}\n---- B ----\n{}\n---- A ----\n{}", b.log(), a.log());
    let st = a.status_until("serving its set again", |s| set_state(s, 1).0 == "serving");
    assert_eq!(set_state(&st, 1), ("serving".into(), 3), "{st:#}");
    assert!(b.log().contains("state saved into the set's journal in the storage folder"), "{}", b.log());
    let (done, stderr) = client.finish();
    let context = format!("client: {done}\n{stderr}\n---- B ----\n{}\n---- A ----\n{}", b.log(), a.log());
    assert_eq!(done["done"], true, "{context}");
    assert!(done["reconnects"].as_u64().unwrap_or(0) >= 2, "the client did not follow both moves: {context}");
    assert_eq!(done["reclaimed"], true, "{context}");
    assert_eq!(done["server_guids"].as_array().map(Vec::len), Some(1), "{context}");
    eprintln!("longest stall across the two moves: {} ms", done["stall_ms"]);
    assert_blocks(&l.storage().join("seta/failover.dat"), blocks, size, &context);
}

/// A is killed while a client writes through a durable handle; B takes the set
/// over; A, started again, waits in standby until its mirror of B's journal is
/// current, then asks for its set back (auto-giveback); B drains, saves the
/// set's journal (what happened while B held it, in B's memory) into the
/// storage folder and releases; A restores from it and serves. The client
/// follows both moves: every block once, the same file id all along.
#[test]
fn giveback_after_a_kill_and_restart_brings_the_set_home() {
    let l = Layout::new();
    let (mut a, b) = start_pair(&l, "process", "process", &[]);
    let (blocks, size) = (120, 4096);
    let mut client = Client::start(
        &l.address(1),
        "seta",
        &["--append", "--blocks", &blocks.to_string(), "--size", &size.to_string(), "--pause", "0.01", "--wait-at", "60"],
    );
    client.until("wrote 20 blocks", |v| v["wrote"].as_u64().is_some_and(|i| i >= 20));
    b.status_until("holding a current mirror of A", |s| s["partner_mirror"]["current"] == true);
    a.kill9();
    b.status_until("serving set 1", |s| set_state(s, 1).0 == "serving");
    // The client goes on through B, then waits while A comes back.
    client.until("waiting at block 60", |v| v["waiting"] == 60);
    a.start();
    let st = a.status_until("serving its set again", |s| set_state(s, 1).0 == "serving");
    assert_eq!(set_state(&st, 1), ("serving".into(), 3), "{st:#}");
    assert!(a.log().contains("waiting (not serving it)"), "{}", a.log());
    assert!(a.log().contains("our set restored from the partner's journal of it"), "{}", a.log());
    b.status_until("the partner's set given back", |s| set_state(s, 1).0 == "the partner's");
    client.go();
    client.until("writing through A", |v| v["wrote"].as_u64().is_some_and(|i| i >= 70));
    // A's `duet status` shows the server that serves its set now (made at the
    // giveback), not the empty one it waited in standby with.
    let st = a.full_status().expect("A's status");
    let open = st["opens"].as_array().into_iter().flatten().any(|o| o["path"] == "failover.dat");
    assert!(open, "the client's open is not in A's status: {st:#}");
    let (done, stderr) = client.finish();
    let context = format!("client: {done}\n{stderr}\n---- B ----\n{}\n---- A ----\n{}", b.log(), a.log());
    assert_eq!(done["done"], true, "{context}");
    assert!(done["reconnects"].as_u64().unwrap_or(0) >= 2, "the client did not follow both moves: {context}");
    assert_eq!(done["reclaimed"], true, "{context}");
    assert_blocks(&l.storage().join("seta/failover.dat"), blocks, size, &context);
}

/// A is killed, B takes set 1 over, and a client that never met A opens a
/// durable handle on set 1 through B and writes half its blocks: the handle is
/// in B's journal of the set only (not in A's, nor in B's mirror of A's).
/// Returns the client, waiting at half its blocks.
fn a_client_of_the_taken_set(l: &Layout, a: &mut Node, b: &Node, blocks: usize, size: usize) -> Client {
    b.status_until("holding a current mirror of A", |s| s["partner_mirror"]["current"] == true);
    a.kill9();
    b.status_until("serving set 1", |s| set_state(s, 1) == ("serving".into(), 2));
    let half = (blocks / 2).to_string();
    let client = Client::start(
        &l.address(1),
        "seta",
        &["--blocks", &blocks.to_string(), "--size", &size.to_string(), "--wait-at", &half, "--verify"],
    );
    client.until("waiting at half its blocks", |v| v["waiting"].as_u64() == Some(blocks as u64 / 2));
    client
}

/// The client goes on, finishes every block (its handle reclaimed after the
/// reconnect), reads them all back through its handle, and the file holds them.
fn the_client_finishes_on_its_handle(l: &Layout, mut client: Client, blocks: usize, size: usize, nodes: [&Node; 2]) {
    client.go();
    let (done, stderr) = client.finish();
    let context = format!("client: {done}\n{stderr}\n---- A ----\n{}\n---- B ----\n{}", nodes[0].log(), nodes[1].log());
    assert_eq!(done["done"], true, "{context}");
    assert!(done["reconnects"].as_u64().unwrap_or(0) >= 1, "the client never lost its connection: {context}");
    assert_eq!(done["reclaimed"], true, "{context}");
    assert_eq!(done["verified"], true, "{context}");
    assert_blocks(&l.storage().join("seta/failover.dat"), blocks, size, &context);
}

/// The survivor's restart keeps the partner's set: B, holding set 1 after A's
/// death, journals it into a file of its own in the storage folder; B is
/// SIGKILLed and started again (A stays down): it claims set 1 one epoch up,
/// goes on from that journal, and the client that opened its durable handle
/// through B reclaims it (DH2C), finishes and reads its data back. (Before, the
/// set journaled into memory: B restored set 1 from its mirror of A's journal,
/// which does not know the handle, and the reclaim failed.)
#[test]
fn a_survivor_killed_after_taking_the_partner_s_set_keeps_its_handles_across_its_restart() {
    let l = Layout::new();
    let (mut a, mut b) = start_pair(&l, "process", "group", &[]);
    let (blocks, size) = (60, 16384);
    let client = a_client_of_the_taken_set(&l, &mut a, &b, blocks, size);
    b.kill9();
    b.start();
    let st =
        b.status_until("serving both sets again", |s| set_state(s, 1).0 == "serving" && set_state(s, 2).0 == "serving");
    assert_eq!(set_state(&st, 1), ("serving".into(), 3), "{st:#}");
    the_client_finishes_on_its_handle(&l, client, blocks, size, [&a, &b]);
    assert!(b.log().contains("the partner's set restored from the set's journal in the storage folder"), "{}", b.log());
    assert_eq!(b.starts, 2);
}

/// A double failure in which the home node returns first: A dies, B takes set
/// 1 and a client opens a durable handle on it through B, B dies too; A,
/// started again alone, finds set 1 held by a dead B and takes it back from
/// the journal B kept of it in the storage folder (one epoch up), and the
/// client reclaims its handle on A and finishes. Without that journal (moved
/// away) A refuses and says why in `duet status`; B's own set it does not take
/// (no contact with B since it started).
#[test]
fn after_a_double_failure_the_home_node_takes_its_set_back_from_the_holder_s_journal() {
    let l = Layout::new();
    let (mut a, mut b) = start_pair(&l, "process", "process", &[]);
    let (blocks, size) = (60, 16384);
    let client = a_client_of_the_taken_set(&l, &mut a, &b, blocks, size);
    b.kill9();
    let storage = l.storage().join(".duet");
    let kept = storage.join(format!("journal-00001-{:020}", 2));
    assert!(kept.exists(), "B kept no journal of set 1 at {}", kept.display());
    let away = l.dir.path().join("journal-away");
    std::fs::rename(&kept, &away).unwrap();
    a.start();
    let st = a.status_until("refusing its set", |s| {
        s["sets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["set"] == 1 && x["note"].as_str().is_some_and(|n| n.contains("left no journal of it")))
    });
    assert_eq!(set_state(&st, 1).1, 2, "A claimed set 1 without B's journal of it: {st:#}");
    std::fs::rename(&away, &kept).unwrap();
    let st = a.status_until("serving its set", |s| set_state(s, 1).0 == "serving");
    assert_eq!(set_state(&st, 1), ("serving".into(), 3), "{st:#}");
    assert!(set_state(&st, 2).0.starts_with("refused: no contact with the partner"), "{st:#}");
    assert!(a.log().contains("our set restored from the partner's journal of it"), "{}", a.log());
    assert!(!kept.exists(), "A left B's journal of set 1 behind");
    the_client_finishes_on_its_handle(&l, client, blocks, size, [&a, &b]);
}

/// A giveback to a node whose mirror of its partner is behind is refused and
/// reported: A, started again after B took its set over, has a receiving side
/// that is stuck (a failpoint), so B never says A's mirror is current; A waits
/// (auto-giveback says why in `duet status`), `duet giveback` on A is refused
/// with the reason, and B keeps serving the set.
#[test]
fn a_giveback_is_refused_while_the_mirror_is_behind() {
    let l = Layout::new();
    let (mut a, b) = start_pair(&l, "process", "process", &[]);
    b.status_until("holding a current mirror of A", |s| s["partner_mirror"]["current"] == true);
    a.kill9();
    b.status_until("serving set 1", |s| set_state(s, 1).0 == "serving");
    a.env.push(("DUET_FAILPOINT".into(), "mirror-receive:30000".into()));
    a.start();
    let st = a.status_until("waiting, and saying why", |s| set_state(s, 1).0.contains("giveback waits"));
    assert!(set_state(&st, 1).0.contains("mirror"), "{st:#}");
    let (ok, out) = a.admin(&["giveback"]);
    assert!(!ok, "a giveback with a stale mirror went through: {out}");
    assert!(out.contains("refused") && out.contains("mirror"), "{out}");
    let st = a.pair_status().expect("status");
    let sets = st["sets"].as_array().cloned().unwrap_or_default();
    assert!(sets.iter().any(|s| s["note"].as_str().unwrap_or("").contains("refused")), "{st:#}");
    // B still serves it.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(set_state(&b.pair_status().expect("status"), 1).0, "serving");
}

/// B holds set 1 (A was killed) and A, started again, waits in standby.
/// Returns both, B serving set 1 at epoch 2 and A current with B.
fn b_holds_set_1_and_a_waits(l: &Layout, env_b: &[(&str, &str)]) -> (Node, Node) {
    let mut a = l.node(1, "process", &[]);
    let mut b = l.node(2, "process", env_b);
    a.start();
    b.start();
    b.status_until("holding a current mirror of A", |s| s["partner_mirror"]["current"] == true);
    a.kill9();
    b.status_until("serving set 1", |s| set_state(s, 1) == ("serving".into(), 2));
    a.args.extend(["--pair-auto-giveback".to_string(), "false".to_string()]);
    a.start();
    a.status_until("waiting for its set, with a current mirror of B", |s| {
        set_state(s, 1).0.starts_with("waiting") && s["partner_mirror"]["current"] == true
    });
    b.status_until("holding a current mirror of A again", |s| s["partner_mirror"]["current"] == true);
    (a, b)
}

/// The fence on the data path holds for a taken set too: B holds set 1, and
/// a WRITE to it is held (a failpoint) past its element's lease check, before
/// its data is written; B is frozen there. A, in standby, finds B dead and
/// takes its set back (from the journal B kept of it), and set 1's file is
/// written anew on A's side (here by the test: frozen B's kernel keeps the
/// address, so no client reaches A). B, resumed, goes on with the WRITE: its
/// lease on set 1 ran out while it was frozen (renewed only by storage beats
/// that find its claim on the set the newest, like the lease on its own set),
/// so the fence refuses it and the file keeps A's data. Before, a taken
/// set's lease never ran out, and B's block landed over A's.
#[test]
fn a_write_held_on_a_taken_set_lands_nowhere_once_its_home_node_took_it_back() {
    let hold = Duration::from_millis(3000);
    let l = Layout::new();
    let (a, mut b) = b_holds_set_1_and_a_waits(&l, &[("DUET_FAILPOINT", "write-held:3000")]);
    let held = Client::start(
        &l.address(1),
        "seta",
        &["--blocks", "1", "--size", "4096", "--tag", "from-b", "--hold-after-loss"],
    );
    log_until(&b, "failpoint: pausing");
    let t_held = Instant::now();
    b.signal(libc::SIGSTOP);
    b.wait_stopped();
    assert!(!b.log().contains("failpoint: going on"), "B's WRITE went on before B froze (a loaded machine?)");
    log_until(&a, "our set restored from the partner's journal of it");
    let path = l.storage().join("seta/failover.dat");
    let from_a = block(0, 4096).iter().map(|c| if *c == b'b' { b'a' } else { *c }).collect::<Vec<u8>>();
    std::fs::write(&path, &from_a).unwrap();
    // B's hold ends while it is frozen: resumed, the WRITE goes on at once.
    while t_held.elapsed() < hold + Duration::from_millis(200) {
        std::thread::sleep(Duration::from_millis(50));
    }
    b.signal(libc::SIGCONT);
    // The WRITE got no answer (no error status either): its connection closed.
    let lost = held.next(Duration::from_secs(30));
    let context = format!("---- B ----\n{}\n---- A ----\n{}", b.log(), a.log());
    let got = std::fs::read(&path).unwrap();
    assert!(
        got == from_a,
        "B's held WRITE landed on set 1 after A took it back: {:?}\n{context}",
        String::from_utf8_lossy(&got[..got.len().min(20)])
    );
    assert_eq!(lost, Some(serde_json::json!({"lost": 0})), "{context}");
    // It was the fence that stopped it, unless B's step-down (A took B's own
    // set too) won the race to the WRITE's thread when B was resumed.
    let log = b.log();
    let stepped_down_first = match (log.find("stepping down"), log.find("failpoint: going on")) {
        (Some(down), Some(on)) => down < on,
        (Some(_), None) => true,
        _ => false,
    };
    assert!(log.contains("fence: a change on disk refused") || stepped_down_first, "{context}");
    let _ = b.exit_status(Duration::from_secs(10));
}

/// An elective stop of the node that holds its partner's set gives the set
/// back first: B holds set 1 and a client appends to it through B; A waits in
/// standby (no auto-giveback); B gets SIGTERM. B stops reading set 1, drains
/// it, saves it into its journal in the storage folder and releases it; A
/// claims it (epoch 3) and restores it from there as a giveback (flag
/// "elective takeover": nothing to redo); then B saves its own set and exits
/// 0. The client sees a stall: no error, every block once. Before, B exited
/// holding the set, and A took it back only after a detection timeout, as
/// after a death (flag "non-elective reboot").
#[test]
fn sigterm_of_the_node_holding_its_partner_s_set_gives_the_set_back_first() {
    let l = Layout::new();
    let (a, mut b) = b_holds_set_1_and_a_waits(&l, &[]);
    let (blocks, size) = (80, 4096);
    let client = Client::start(
        &l.address(1),
        "seta",
        &["--append", "--blocks", &blocks.to_string(), "--size", &size.to_string(), "--pause", "0.02"],
    );
    client.until("wrote 20 blocks", |v| v["wrote"].as_u64().is_some_and(|i| i >= 20));
    b.signal(libc::SIGTERM);
    let st = b.exit_status(Duration::from_secs(60));
    let context = || format!("---- B ----\n{}\n---- A ----\n{}", b.log(), a.log());
    assert_eq!(st.and_then(|s| s.code()), Some(0), "B did not stop cleanly:\n{}", context());
    let log = b.log();
    assert!(log.contains("giving the partner's set back first"), "{}", context());
    assert!(log.contains("set 1 handed to the partner"), "{}", context());
    assert!(log.contains("state saved into the set's journal in the storage folder"), "{}", context());
    let st = a.status_until("serving its set again", |s| set_state(s, 1).0 == "serving");
    assert_eq!(set_state(&st, 1), ("serving".into(), 3), "{st:#}");
    let restored =
        a.log().lines().find(|l| l.contains("our set restored from the partner's journal")).map(String::from);
    assert!(
        restored.as_deref().is_some_and(|l| l.contains("flag=ElectiveTakeover")),
        "A did not get its set by a giveback: {restored:?}\n{}",
        context()
    );
    let (done, stderr) = client.finish();
    let context = format!("client: {done}\n{stderr}\n{}", context());
    assert_eq!(done["done"], true, "{context}");
    assert!(done["reconnects"].as_u64().unwrap_or(0) >= 1, "{context}");
    assert_eq!(done["reclaimed"], true, "{context}");
    eprintln!("longest stall across the holder's stop: {} ms", done["stall_ms"]);
    assert_blocks(&l.storage().join("seta/failover.dat"), blocks, size, &context);
}

/// The home node's takeback after the holder's death waits out the holder's
/// lease on the taken set as a takeover waits out the partner's lease on its
/// own: B holds set 1, A waits in standby; B freezes, and B thaws in the
/// instant A has found it dead and not yet claimed set 1 back (failpoint
/// `claim` holds A there). B's next storage beat still finds its claim on
/// set 1 the newest and renews its lease on it, which may then hold up to a
/// lease length after A's claim: A sees B's heartbeat moved since it found B
/// dead, and changes nothing on the set's disk until that lease is out.
#[test]
fn a_holder_that_thaws_before_the_home_node_s_claim_has_its_lease_on_the_set_waited_out() {
    let l = Layout::new();
    let (mut a, mut b) = b_holds_set_1_and_a_waits(&l, &[]);
    // A starts again with the failpoint armed: it holds its claims 1.5 s.
    a.kill9();
    a.env.push(("DUET_FAILPOINT".into(), "claim:1500".into()));
    a.start();
    a.status_until("waiting for its set, with a current mirror of B", |s| {
        set_state(s, 1).0.starts_with("waiting") && s["partner_mirror"]["current"] == true
    });
    b.status_until("holding a current mirror of A again", |s| s["partner_mirror"]["current"] == true);
    b.signal(libc::SIGSTOP);
    b.wait_stopped();
    log_until(&a, "taking its set over");
    b.signal(libc::SIGCONT);
    log_until(&a, "the holder's lease on our set has run out");
    let log = a.log();
    let context = format!("---- A ----\n{log}\n---- B ----\n{}", b.log());
    let line = log.lines().find(|l| l.contains("the holder's lease on our set has run out")).unwrap_or_default();
    assert!(line.contains("heartbeat_moved=true"), "{context}");
    let restoring = log.lines().find(|l| l.contains("restoring a set") && l.contains("set=1 ")).unwrap_or_default();
    let (claimed, run_out) = (log_time(restoring, "restoring a set"), log_time(line, "run out"));
    let waited = run_out.zip(claimed).map(|(r, c)| r - c);
    assert!(
        waited.is_some_and(|w| w >= 0.99),
        "A did not wait out B's lease on set 1 after its claim ({waited:?} s)\n{context}"
    );
    let st = a.status_until("serving its set again", |s| set_state(s, 1).0 == "serving");
    assert_eq!(set_state(&st, 1), ("serving".into(), 3), "{st:#}");
    let _ = b.exit_status(Duration::from_secs(10));
}

/// An elective stop of a holder whose partner is down: nobody can take the
/// set back, so B drains set 1 and saves it into its journal with the flag
/// "elective reboot" before it exits; started again, B goes on from that
/// checkpoint (nothing in flight to redo), and the client that opened its
/// durable handle through B reclaims it and finishes. Before, B exited
/// holding the set as a kill leaves it (flag "non-elective reboot").
#[test]
fn sigterm_of_a_holder_whose_partner_is_down_saves_the_taken_set_as_an_elective_reboot() {
    let l = Layout::new();
    let (mut a, mut b) = start_pair(&l, "process", "group", &[]);
    let (blocks, size) = (40, 16384);
    let client = a_client_of_the_taken_set(&l, &mut a, &b, blocks, size);
    b.signal(libc::SIGTERM);
    let st = b.exit_status(Duration::from_secs(60));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "B did not stop cleanly:\n{}", b.log());
    assert!(b.log().contains("set 1 saved into its journal as an elective reboot"), "{}", b.log());
    b.start();
    b.status_until("serving both sets again", |s| set_state(s, 1).0 == "serving" && set_state(s, 2).0 == "serving");
    let reopened = b.log().lines().find(|l| l.contains("the taken set's journal opened again")).map(String::from);
    assert!(
        reopened.as_deref().is_some_and(|l| l.contains("flag=ElectiveReboot")),
        "B did not go on from an elective reboot of set 1: {reopened:?}\n{}",
        b.log()
    );
    the_client_finishes_on_its_handle(&l, client, blocks, size, [&a, &b]);
}
