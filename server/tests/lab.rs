//! `duet lab` (issue 14): a pair whose addresses move as on a real network.
//! Each test makes its own lab (namespaces named after the test process and a
//! counter, removed by `duet lab stop` when the test ends, passed or failed):
//! node A in one network namespace serving set A on 127.0.0.11:445, node B in
//! another on 127.0.0.12:445, a client namespace, one bridge. The client is
//! `testdata/failover_client.py` (a durable v2 open, append-only, reconnect to
//! the same address, reclaim, resend with the replay flag), run in the client
//! namespace with `duet lab exec`. Needs root (the tests say so and pass
//! without checking anything when not root).
//!
//! - `a_lab_comes_up_with_both_nodes_serving_and_goes_away`: smbclient in the
//!   client namespace writes through both set addresses; each address is held
//!   and answered by its home node only; `duet lab stop` removes every
//!   namespace.
//! - `a_killed_node_s_address_moves_to_its_partner_and_the_client_goes_on`:
//!   A is killed while the client writes; B adds 127.0.0.11 to its interface
//!   and announces it; the client's neighbour entry follows, it reconnects to
//!   B and finishes; A started again waits and does not take the address back.
//! - `a_frozen_node_s_client_is_reset_by_the_tickle_and_goes_on`: A is frozen
//!   (SIGSTOP) and stays frozen; B takes the set over and tickles the client's
//!   connection, which is reset (the client sees ECONNRESET, not a time-out)
//!   and reconnects to B; the client finishes while A is still frozen. Thawed,
//!   A steps down and removes the address; a probe connects and B answers.
//!   At no time do two nodes answer one address.
//! - `without_the_tickle_a_frozen_node_s_client_waits_for_the_thaw`: the same
//!   with the tickle left out (failpoint `no-tickle`): the client makes no
//!   progress for as long as A stays frozen, and goes on only after the thaw.
//! - `a_node_stopped_with_sigterm_lets_its_address_go`: an elective stop
//!   removes the set's address from the node's interface.
//! - `an_interconnect_cut_alone_is_reported_and_nobody_takes_over`: each
//!   node's packets to the other's node address go nowhere (a blackhole
//!   route in its namespace) while a client of each set writes; both nodes
//!   report the partner's links down and run degraded, nobody takes over
//!   (sets and epochs unchanged, each address answered by its home), both
//!   clients go on without a reconnect; the link back, the mirrors resync.
//! - `a_storage_stall_is_reported_and_the_partner_does_not_take_over_on_it`:
//!   A's storage folder stalls (failpoint `storage-stall`); A's lease runs
//!   out and the fence refuses its changes; B reports A's silent storage and
//!   does not take A for dead; A reports its fault and asks B to take its set
//!   (the state machine's fault hand-over), B does, A steps down; both
//!   clients finish with every block once.
//! - `a_second_takeover_tickles_the_clients_of_the_set_s_holder`: B holds set
//!   A and a client writes through it; B is frozen, A started: A takes its
//!   set back and tickles the connections B listed for set A; the client is
//!   reset and finishes on A while B is still frozen.
//! - `after_a_double_failure_the_node_with_the_newest_state_serves_both_sets_and_gives_one_back`:
//!   A killed, B takes set A, B killed; B boots first and serves both sets
//!   (set A from the journal it kept of it in the storage folder), A boots,
//!   waits, and gets its set back.
//! - `after_a_double_failure_the_home_node_booting_first_takes_its_set_back_from_the_holder_s_journal`:
//!   the same, A booting first: it takes its own set back from the journal B
//!   kept of it in the storage folder (not set B: no contact with B); B boots
//!   and serves its own set.
//! - `an_elective_takeover_and_a_giveback_in_the_lab_move_the_address_and_the_client_goes_on`:
//!   `duet lab takeover A` (`duet takeover` on B) while the client writes:
//!   127.0.0.11 leaves A's namespace for B's, B answers it, A waits without
//!   stepping down; `duet lab giveback A` (`duet giveback` on B) brings it
//!   home; the client keeps its durable handle across both, with no error
//!   and no time-out (the giving node ends its connections before it lets
//!   the address go), every block once. A giveback of a set at home, and a second takeover,
//!   are refused with the reason.
//! - `duet_lab_move_sends_a_set_away_and_back`: `duet lab move B` twice
//!   (`duet move 2` on whichever node serves set B): its address goes to A's
//!   namespace and comes back.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static LABS: AtomicUsize = AtomicUsize::new(0);

fn root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("duet lab needs root: this test checks nothing here");
    }
    root
}

/// One lab, stopped (namespaces removed) when dropped.
struct Lab {
    dir: tempfile::TempDir,
    up: bool,
}

impl Lab {
    /// `duet lab up` with `env` for both nodes.
    fn up(env: &[(&str, &str)]) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("dl{}x{}", std::process::id(), LABS.fetch_add(1, Ordering::Relaxed));
        let mut lab = Lab { dir, up: true };
        let out = Command::new(common::duet_bin())
            .args(["lab", "--dir"])
            .arg(lab.path())
            .args(["up", "--name", &name, "--a-arg=--journal-policy=group", "--b-arg=--journal-policy=process"])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        if !out.status.success() {
            let logs = lab.logs();
            lab.up = false;
            let _ = lab.duet(&["stop"]);
            panic!(
                "duet lab up failed: {}{}\n{logs}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        lab
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `duet lab --dir DIR ARGS`: its output, or why it failed.
    fn duet(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(common::duet_bin()).args(["lab", "--dir"]).arg(self.path()).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("duet lab {}: {text}{}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.duet(args).unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }

    /// Set `set` ("A" or "B") in a status.
    fn set(st: &serde_json::Value, set: &str) -> serde_json::Value {
        st["sets"].as_array().unwrap().iter().find(|s| s["set"] == set).unwrap().clone()
    }

    fn node(st: &serde_json::Value, node: &str) -> serde_json::Value {
        st["nodes"].as_array().unwrap().iter().find(|s| s["node"] == node).unwrap().clone()
    }

    /// Polls the status until `pred` holds (60 s at most); every status seen
    /// must have at most one node answering each address.
    fn until(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let st = self.status();
            never_two(&st);
            if pred(&st) {
                return st;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "never {what}:\n{st:#}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self, node: &str) -> String {
        std::fs::read_to_string(self.path().join(node).join("duet.log")).unwrap_or_default()
    }

    /// `duet status --json` of node `node` ("a" or "b") over its admin socket:
    /// the pair part.
    fn pair(&self, node: &str) -> serde_json::Value {
        self.try_pair(node).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Lab::pair`], or why it could not be had (the node is not up).
    fn try_pair(&self, node: &str) -> Result<serde_json::Value, String> {
        let socket = self.path().join(node).join("state/admin.sock");
        let out = Command::new(common::duet_bin()).args(["status", "--json", "--socket"]).arg(socket).output().unwrap();
        if !out.status.success() {
            return Err(format!("duet status of {node}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Ok(v["pair"].clone())
    }

    /// Polls node `node`'s pair status until `pred` holds (60 s at most).
    fn pair_until(&self, node: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let p = self.try_pair(node);
            if let Ok(p) = &p {
                if pred(p) {
                    return p.clone();
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "node {node}: never {what}:\n{p:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        format!("---- A ----\n{}\n---- B ----\n{}", self.log("a"), self.log("b"))
    }

    /// Starts the failover client on set A's address in the client namespace.
    fn client(&self, blocks: usize) -> LabClient {
        self.client_on("A", blocks, "0.005")
    }

    /// The failover client on set `set`'s address ("A" or "B"), `pause`
    /// seconds between its writes.
    fn client_on(&self, set: &str, blocks: usize, pause: &str) -> LabClient {
        let (host, share) = if set == "A" { ("127.0.0.11", "seta") } else { ("127.0.0.12", "setb") };
        let out = self.path().join(format!("client-{share}.out"));
        let err = self.path().join(format!("client-{share}.err"));
        let script = common::repo_root().join("testdata/failover_client.py");
        let child = Command::new(common::duet_bin())
            .args(["lab", "--dir"])
            .arg(self.path())
            .args(["exec", "--", "python3"])
            .arg(script)
            .args(["--host", host, "--port", "445", "--share", share, "--append", "--size", "3000"])
            .args(["--pause", pause, "--blocks", &blocks.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        LabClient { child, out, err }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.up {
            if let Err(e) = self.duet(&["stop"]) {
                eprintln!("{e}");
            }
        }
    }
}

/// Never two nodes answering one address.
fn never_two(st: &serde_json::Value) {
    for s in st["sets"].as_array().unwrap() {
        assert!(s["answering"].as_array().unwrap().len() <= 1, "two nodes answer one address: {st:#}");
    }
}

/// The failover client, running in the client namespace.
struct LabClient {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl LabClient {
    fn lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn written(&self) -> usize {
        self.lines().iter().filter(|v| v.get("wrote").is_some()).count()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until `n` blocks were answered.
    fn until_written(&self, n: usize) {
        let t0 = Instant::now();
        while self.written() < n {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the client wrote {} blocks: {}",
                self.written(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client's last line once it exited (within `limit`), or `None`.
    fn done(&mut self, limit: Duration) -> Option<serde_json::Value> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.lines().pop();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for LabClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each block of the append-only file exactly once, in order.
fn check_file(lab: &Lab, blocks: usize) {
    check_share(lab, "seta", blocks);
}

/// The same for the client's file in share `share`.
fn check_share(lab: &Lab, share: &str, blocks: usize) {
    let data = std::fs::read(lab.path().join("storage").join(share).join("failover.dat")).unwrap();
    assert_eq!(data.len(), blocks * 3000, "the file holds {} bytes", data.len());
    for (i, chunk) in data.chunks(3000).enumerate() {
        let head = format!("block {i:06}");
        assert!(chunk.starts_with(head.as_bytes()), "block {i} is not in its place");
    }
}

#[test]
fn a_lab_comes_up_with_both_nodes_serving_and_goes_away() {
    if !root() {
        return;
    }
    let lab = Lab::up(&[]);
    let st = lab.status();
    never_two(&st);
    for (set, ip) in [("A", "127.0.0.11"), ("B", "127.0.0.12")] {
        let s = Lab::set(&st, set);
        assert_eq!(s["held_by"], serde_json::json!([set]), "{st:#}");
        assert_eq!(s["answering"], serde_json::json!([set]), "{st:#}");
        let share = format!("//{ip}/set{}", set.to_ascii_lowercase());
        let put = format!("put {} hello.txt; ls", lab.path().join("lab.json").display());
        let out = lab.ok(&["exec", "--", "smbclient", &share, "-U", "duet%duetpass", "-c", &put]);
        assert!(out.contains("hello.txt"), "{out}");
        // The client reached the address through the node's own interface.
        assert_eq!(Lab::set(&lab.status(), set)["client_sees"], set);
    }
    let names: Vec<String> =
        ["a", "b", "client", "net"].iter().map(|w| format!("{}-{w}", st["name"].as_str().unwrap())).collect();
    drop(lab);
    for n in names {
        assert!(!Path::new("/run/netns").join(&n).exists(), "namespace {n} is still there");
    }
}

#[test]
fn a_killed_node_s_address_moves_to_its_partner_and_the_client_goes_on() {
    if !root() {
        return;
    }
    let lab = Lab::up(&[]);
    let blocks = 160;
    let mut client = lab.client(blocks);
    client.until_written(blocks / 4);
    lab.ok(&["kill", "A"]);
    let st = lab.until("B holds and answers set A's address", |st| {
        let s = Lab::set(st, "A");
        s["answering"] == serde_json::json!(["B"])
    });
    let b = Lab::node(&st, "B");
    assert!(b["addresses"].as_array().unwrap().contains(&"127.0.0.11".into()), "{st:#}");
    let done =
        client.done(Duration::from_secs(60)).unwrap_or_else(|| panic!("the client never ended: {}", client.stderr()));
    assert_eq!(done["done"], true, "{done}\n{}\n{}", client.stderr(), lab.logs());
    check_file(&lab, blocks);
    assert_eq!(Lab::set(&lab.status(), "A")["client_sees"], "B");
    assert!(lab.log("b").contains("the set's address is ours: added and announced ip=127.0.0.11"), "{}", lab.logs());
    // A again: it waits, and does not hold its old address.
    lab.ok(&["start", "A"]);
    let t0 = Instant::now();
    while !lab.log("a").contains("waiting (not serving it)") {
        assert!(t0.elapsed() < Duration::from_secs(30), "A never waited:\n{}", lab.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = lab.status();
    never_two(&st);
    assert!(!Lab::node(&st, "A")["addresses"].as_array().unwrap().contains(&"127.0.0.11".into()), "{st:#}");
    assert_eq!(Lab::set(&st, "A")["answering"], serde_json::json!(["B"]), "{st:#}");
}

/// Freezes A while the client writes, waits until B serves set A, and keeps A
/// frozen for `hold` after that (or until the client ends, when sooner).
/// Returns the client's last line (if it ended while A was frozen) and the
/// client.
fn freeze_round(lab: &Lab, blocks: usize, hold: Duration) -> (Option<serde_json::Value>, LabClient) {
    let mut client = lab.client(blocks);
    client.until_written(blocks / 4);
    lab.ok(&["freeze", "A"]);
    lab.until("B answers set A's address", |st| Lab::set(st, "A")["answering"] == serde_json::json!(["B"]));
    let done = client.done(hold);
    assert_eq!(Lab::node(&lab.status(), "A")["state"], "frozen");
    (done, client)
}

#[test]
fn a_frozen_node_s_client_is_reset_by_the_tickle_and_goes_on() {
    if !root() {
        return;
    }
    let lab = Lab::up(&[]);
    let blocks = 160;
    let (done, mut client) = freeze_round(&lab, blocks, Duration::from_secs(30));
    let done = done
        .unwrap_or_else(|| panic!("the client did not end while A was frozen: {}\n{}", client.stderr(), lab.logs()));
    assert_eq!(done["done"], true, "{done}\n{}", client.stderr());
    assert_eq!(done["reconnects"], 1, "{done}");
    let stall = done["stall_ms"].as_u64().unwrap();
    // Detection takes 2 s; the client's own time-out is 30 s.
    assert!(stall < 6000, "the client stalled {stall} ms");
    let err = client.stderr();
    assert!(err.contains("ECONNRESET"), "the connection was not reset: {err}");
    assert!(!err.contains("no answer within"), "the client timed out: {err}");
    assert!(lab.log("b").contains("tickle ACKs sent to the old owner's clients"), "{}", lab.logs());
    check_file(&lab, blocks);
    // Thawed, A steps down and lets the address go.
    lab.ok(&["thaw", "A"]);
    let st = lab.until("A gone and set A held by B alone", |st| {
        Lab::node(st, "A")["state"] == "dead" && Lab::set(st, "A")["held_by"] == serde_json::json!(["B"])
    });
    assert_eq!(Lab::set(&st, "A")["answering"], serde_json::json!(["B"]), "{st:#}");
    assert!(lab.log("a").contains("stepping down"), "{}", lab.logs());
    // A probe: a new connection to the address is answered, by B.
    let out = lab.ok(&["exec", "--", "smbclient", "//127.0.0.11/seta", "-U", "duet%duetpass", "-c", "ls"]);
    assert!(out.contains("failover.dat"), "{out}");
    let _ = client.done(Duration::from_secs(1));
}

/// A second takeover tickles too: A is killed, B takes set A, and a client
/// writes to set A through B (B lists that connection for set A); B is frozen
/// and A started: A takes its set back from B's journal of it, adds the
/// address and tickles the connections B listed, so the client is reset and
/// reconnects to A (reclaiming its handle) while B is still frozen.
#[test]
fn a_second_takeover_tickles_the_clients_of_the_set_s_holder() {
    if !root() {
        return;
    }
    let lab = Lab::up(&[]);
    let blocks = 160;
    // B takes a set over only from a partner whose link reached it since B
    // started, with a current mirror of it: A's first try to join may come
    // before B listens, and A's next one a while later.
    lab.pair_until("b", "a current mirror of A", |p| p["partner_mirror"]["current"] == true);
    lab.ok(&["kill", "A"]);
    lab.until("B answers set A's address", |st| Lab::set(st, "A")["answering"] == serde_json::json!(["B"]));
    let mut client = lab.client(blocks);
    client.until_written(blocks / 4);
    lab.ok(&["freeze", "B"]);
    lab.ok(&["start", "A"]);
    lab.until("A answers set A's address", |st| Lab::set(st, "A")["answering"] == serde_json::json!(["A"]));
    let done = client
        .done(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the client did not end while B was frozen: {}\n{}", client.stderr(), lab.logs()));
    assert_eq!(done["done"], true, "{done}\n{}", client.stderr());
    assert_eq!(done["reconnects"], 1, "{done}");
    let err = client.stderr();
    assert!(err.contains("ECONNRESET"), "the connection was not reset: {err}\n{}", lab.logs());
    assert!(!err.contains("no answer within"), "the client timed out: {err}");
    assert!(lab.log("a").contains("tickle ACKs sent to the old owner's clients"), "{}", lab.logs());
    assert_eq!(Lab::node(&lab.status(), "B")["state"], "frozen");
    check_file(&lab, blocks);
    lab.ok(&["thaw", "B"]);
}

#[test]
fn without_the_tickle_a_frozen_node_s_client_waits_for_the_thaw() {
    if !root() {
        return;
    }
    let lab = Lab::up(&[("DUET_FAILPOINT", "no-tickle:1")]);
    let blocks = 160;
    let hold = Duration::from_secs(6);
    let (done, mut client) = freeze_round(&lab, blocks, hold);
    assert!(done.is_none(), "the client ended while A was frozen, without a tickle: {done:?}");
    let written = client.written();
    assert!(written < blocks, "the client went on while A was frozen");
    lab.ok(&["thaw", "A"]);
    let done =
        client.done(Duration::from_secs(60)).unwrap_or_else(|| panic!("the client never ended: {}", client.stderr()));
    assert_eq!(done["done"], true, "{done}\n{}", client.stderr());
    let stall = done["stall_ms"].as_u64().unwrap();
    assert!(stall >= hold.as_millis() as u64, "the client stalled only {stall} ms");
    assert!(!lab.log("b").contains("tickle ACKs sent"), "{}", lab.logs());
    check_file(&lab, blocks);
}

#[test]
fn a_node_stopped_with_sigterm_lets_its_address_go() {
    if !root() {
        return;
    }
    let lab = Lab::up(&[]);
    let st = lab.status();
    let a = Lab::node(&st, "A");
    assert!(a["addresses"].as_array().unwrap().contains(&"127.0.0.11".into()), "{st:#}");
    let pid = a["pid"].as_i64().unwrap() as libc::pid_t;
    // SAFETY: kill(2) on the node the lab started for this test (its status names it).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let st = lab.until("A stopped", |st| Lab::node(st, "A")["state"] == "dead");
    assert!(!Lab::node(&st, "A")["addresses"].as_array().unwrap().contains(&"127.0.0.11".into()), "{st:#}");
    assert!(lab.log("a").contains("the set's address released ip=127.0.0.11"), "{}", lab.logs());
}

/// Each set's (state, epoch) in a node's pair status.
fn sets_of(p: &serde_json::Value) -> Vec<(u64, String, u64)> {
    p["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["set"].as_u64().unwrap(), s["state"].as_str().unwrap().to_string(), s["epoch"].as_u64().unwrap()))
        .collect()
}

/// `duet lab exec --in NODE -- ip route ACTION blackhole ADDR/32`: packets from
/// that node's namespace to ADDR go nowhere.
fn blackhole(lab: &Lab, node: &str, action: &str, addr: &str) {
    lab.ok(&["exec", "--in", node, "--", "ip", "route", action, "blackhole", &format!("{addr}/32")]);
}

#[test]
fn an_interconnect_cut_alone_is_reported_and_nobody_takes_over() {
    if !root() {
        return;
    }
    let lab = Lab::up(&[]);
    let (before_a, before_b) = (sets_of(&lab.pair("a")), sets_of(&lab.pair("b")));
    let resyncs = |node: &str| lab.pair(node)["mirror"]["resyncs"].as_u64().unwrap();
    let (resyncs_a, resyncs_b) = (resyncs("a"), resyncs("b"));
    let blocks = 400;
    let mut client_a = lab.client_on("A", blocks, "0.02");
    let mut client_b = lab.client_on("B", blocks, "0.02");
    client_a.until_written(20);
    client_b.until_written(20);
    // The cut: each node's packets to the other's node address (the
    // interconnect, 127.0.0.21 and .22) go nowhere; the set addresses, the
    // clients and the storage folder are untouched.
    blackhole(&lab, "A", "add", "127.0.0.22");
    blackhole(&lab, "B", "add", "127.0.0.21");
    for node in ["a", "b"] {
        lab.pair_until(node, "the partner's links down and degraded", |p| {
            p["partner_connected"] == false && p["degraded"] == true
        });
    }
    let cut = Instant::now();
    let (written_a, written_b) = (client_a.written(), client_b.written());
    // Well past the detection time (2 s of silence on both channels).
    while cut.elapsed() < Duration::from_secs(5) {
        let st = lab.status();
        never_two(&st);
        assert_eq!(Lab::set(&st, "A")["answering"], serde_json::json!(["A"]), "{st:#}");
        assert_eq!(Lab::set(&st, "B")["answering"], serde_json::json!(["B"]), "{st:#}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let (pa, pb) = (lab.pair("a"), lab.pair("b"));
    assert_eq!(pa["partner_connected"], false, "the cut healed by itself: {pa:#}");
    assert_eq!(sets_of(&pa), before_a, "A's sets moved: {pa:#}\n{}", lab.logs());
    assert_eq!(sets_of(&pb), before_b, "B's sets moved: {pb:#}\n{}", lab.logs());
    // Both clients went on through the cut.
    assert!(client_a.written() > written_a + 20, "set A's client stood still: {}", client_a.stderr());
    assert!(client_b.written() > written_b + 20, "set B's client stood still: {}", client_b.stderr());
    for node in ["a", "b"] {
        let log = lab.log(node);
        assert!(!log.contains("taking its set over"), "{}", lab.logs());
        assert!(log.contains("ChannelSilent(Interconnect)"), "node {node} did not report the cut:\n{}", lab.logs());
    }
    // The link back: the mirrors resync and are current again.
    blackhole(&lab, "A", "del", "127.0.0.22");
    blackhole(&lab, "B", "del", "127.0.0.21");
    for (node, before) in [("a", resyncs_a), ("b", resyncs_b)] {
        lab.pair_until(node, "a current mirror at the partner again, resynced", |p| {
            p["partner_connected"] == true
                && p["mirror"]["state"] == "current"
                && p["degraded"] == false
                && p["mirror"]["resyncs"].as_u64().unwrap() > before
        });
    }
    for (client, share) in [(&mut client_a, "seta"), (&mut client_b, "setb")] {
        let done = client
            .done(Duration::from_secs(120))
            .unwrap_or_else(|| panic!("the client of {share} never ended: {}", client.stderr()));
        assert_eq!(done["done"], true, "{done}\n{}\n{}", client.stderr(), lab.logs());
        assert_eq!(done["reconnects"], 0, "the client of {share} lost its connection: {done}");
        assert_eq!(done["errors"], serde_json::json!([]), "{done}");
        check_share(&lab, share, blocks);
    }
    assert_eq!(sets_of(&lab.pair("a")), before_a);
    assert_eq!(sets_of(&lab.pair("b")), before_b);
}

#[test]
fn a_storage_stall_is_reported_and_the_partner_does_not_take_over_on_it() {
    if !root() {
        return;
    }
    let lab = Lab::up(&[("DUET_FAILPOINT", "storage-stall:1")]);
    let blocks = 400;
    let mut client_a = lab.client_on("A", blocks, "0.02");
    let mut client_b = lab.client_on("B", blocks, "0.02");
    client_a.until_written(20);
    client_b.until_written(20);
    // A's storage folder stalls (failpoint `storage-stall`: every access waits
    // while the file is there); the interconnect goes on.
    let flag = lab.path().join("a/storage-stall");
    std::fs::write(&flag, "").unwrap();
    let stall = Instant::now();
    while stall.elapsed() < Duration::from_secs(6) {
        never_two(&lab.status());
        std::thread::sleep(Duration::from_millis(250));
    }
    std::fs::remove_file(&flag).unwrap();
    for (client, share) in [(&mut client_a, "seta"), (&mut client_b, "setb")] {
        let done = client
            .done(Duration::from_secs(120))
            .unwrap_or_else(|| panic!("the client of {share} never ended: {}", client.stderr()));
        assert_eq!(done["done"], true, "{done}\n{}\n{}", client.stderr(), lab.logs());
        assert_eq!(done["errors"], serde_json::json!([]), "{done}");
        check_share(&lab, share, blocks);
    }
    let (log_a, log_b) = (lab.log("a"), lab.log("b"));
    assert!(log_a.contains("the storage folder stalls"), "{}", lab.logs());
    // A's lease ran out with its storage heartbeat: the fence refused its changes.
    assert!(log_a.contains("fence: a change on disk refused"), "A's lease never ran out:\n{}", lab.logs());
    // B reported A's silent storage channel and never took A for dead on it: it
    // took the set only at A's request (A's fault hand-over), after A
    // reported its stalled storage.
    assert!(log_b.contains("ChannelSilent(Storage)"), "B did not report A's silent storage:\n{}", lab.logs());
    assert!(!log_b.contains("the partner is dead"), "B acted on one silent channel:\n{}", lab.logs());
    assert!(log_a.contains("Fault(StorageStalled)"), "{}", lab.logs());
    let asked = log_b.find("TakeoverRequested { set: SetId(1), reason: Fault(StorageStalled) }");
    let took = log_b.find("taking its set over at its request");
    assert!(asked.is_some() && took.is_some() && asked < took, "B took set 1 but not at A's request:\n{}", lab.logs());
    // Set 1 is B's now, one epoch up; A stepped down.
    let st = lab.until("A gone", |st| Lab::node(st, "A")["state"] == "dead");
    assert_eq!(Lab::set(&st, "A")["answering"], serde_json::json!(["B"]), "{st:#}");
    assert!(lab.log("a").contains("stepping down"), "{}", lab.logs());
    assert!(sets_of(&lab.pair("b")).contains(&(1, "serving".to_string(), 2)), "{}", lab.logs());
}

/// A killed while the client writes; B takes set A over and the client
/// finishes through B; then B is killed too: both down.
fn double_failure(lab: &Lab, blocks: usize) {
    let mut client = lab.client(blocks);
    client.until_written(blocks / 4);
    lab.ok(&["kill", "A"]);
    lab.until("B answers set A's address", |st| Lab::set(st, "A")["answering"] == serde_json::json!(["B"]));
    let done =
        client.done(Duration::from_secs(60)).unwrap_or_else(|| panic!("the client never ended: {}", client.stderr()));
    assert_eq!(done["done"], true, "{done}\n{}", client.stderr());
    check_file(lab, blocks);
    lab.ok(&["kill", "B"]);
    lab.until("both dead", |st| Lab::node(st, "A")["state"] == "dead" && Lab::node(st, "B")["state"] == "dead");
}

/// Set `set`'s (state, epoch) in node `node`'s status, when it has one.
fn set_state(lab: &Lab, node: &str, set: u64) -> Option<(String, u64)> {
    let p = lab.try_pair(node).ok()?;
    sets_of(&p).into_iter().find(|(s, _, _)| *s == set).map(|(_, st, e)| (st, e))
}

/// A boots, asks for its set back once both mirrors are current, and serves
/// it at `epoch`; B keeps set B alone; a new client of set A is answered by A
/// and sees the file whole.
fn given_back(lab: &Lab, blocks: usize, epoch: u64) {
    lab.pair_until("a", "set A served again", |p| sets_of(p).contains(&(1, "serving".to_string(), epoch)));
    lab.pair_until("b", "set A given back", |p| {
        sets_of(p).iter().any(|(s, st, _)| *s == 1 && st == "the partner's")
            && sets_of(p).iter().any(|(s, st, _)| *s == 2 && st == "serving")
    });
    let st = lab.until("A answers set A's address", |st| Lab::set(st, "A")["answering"] == serde_json::json!(["A"]));
    assert_eq!(Lab::set(&st, "B")["answering"], serde_json::json!(["B"]), "{st:#}");
    let out = lab.ok(&["exec", "--", "smbclient", "//127.0.0.11/seta", "-U", "duet%duetpass", "-c", "ls"]);
    assert!(out.contains("failover.dat"), "{out}");
    check_file(lab, blocks);
}

#[test]
fn after_a_double_failure_the_node_with_the_newest_state_serves_both_sets_and_gives_one_back() {
    if !root() {
        return;
    }
    let lab = Lab::up(&[]);
    let blocks = 160;
    double_failure(&lab, blocks);
    // B, which held both sets when it died, boots first and serves both: set A
    // from the journal it kept of it in the storage folder.
    lab.ok(&["start", "B"]);
    lab.pair_until("b", "both sets served", |p| {
        let s = sets_of(p);
        s.iter().filter(|(_, st, _)| st == "serving").count() == 2
    });
    let epoch = set_state(&lab, "b", 1).unwrap().1;
    assert_eq!(epoch, 3, "B did not claim set A one epoch up");
    let st = lab.until("B answers both addresses", |st| {
        Lab::set(st, "A")["answering"] == serde_json::json!(["B"])
            && Lab::set(st, "B")["answering"] == serde_json::json!(["B"])
    });
    assert_eq!(Lab::set(&st, "A")["client_sees"], "B", "{st:#}");
    let out = lab.ok(&["exec", "--", "smbclient", "//127.0.0.11/seta", "-U", "duet%duetpass", "-c", "ls"]);
    assert!(out.contains("failover.dat"), "{out}");
    // A comes back: it waits, then gets its set back (auto-giveback).
    lab.ok(&["start", "A"]);
    given_back(&lab, blocks, 4);
    assert!(lab.log("a").contains("set 1 is held by node 2 at epoch 3: waiting"), "{}", lab.logs());
}

#[test]
fn after_a_double_failure_the_home_node_booting_first_takes_its_set_back_from_the_holder_s_journal() {
    if !root() {
        return;
    }
    let lab = Lab::up(&[]);
    let blocks = 160;
    double_failure(&lab, blocks);
    // A boots first: set A's newest claim is B's, and B is dead. What B did with
    // the set is in the journal B kept of it in the storage folder: A takes its
    // set back from there, one epoch up.
    lab.ok(&["start", "A"]);
    lab.pair_until("a", "set A served again", |p| sets_of(p).contains(&(1, "serving".to_string(), 3)));
    assert!(lab.log("a").contains("our set restored from the partner's journal of it"), "{}", lab.logs());
    // It does not take set B, whose node it never heard since it started.
    let (state_b, _) = set_state(&lab, "a", 2).unwrap();
    assert!(state_b.starts_with("refused: no contact with the partner"), "A: set B {state_b}");
    let st = lab.until("A answers set A's address", |st| Lab::set(st, "A")["answering"] == serde_json::json!(["A"]));
    assert_eq!(Lab::set(&st, "B")["answering"], serde_json::json!([]), "{st:#}");
    let out = lab.ok(&["exec", "--", "smbclient", "//127.0.0.11/seta", "-U", "duet%duetpass", "-c", "ls"]);
    assert!(out.contains("failover.dat"), "{out}");
    check_file(&lab, blocks);
    // B comes back: it serves its own set, and set A stays A's.
    lab.ok(&["start", "B"]);
    lab.pair_until("b", "set B served", |p| sets_of(p).contains(&(2, "serving".to_string(), 2)));
    let st = lab.until("each node answers its own address", |st| {
        Lab::set(st, "A")["answering"] == serde_json::json!(["A"])
            && Lab::set(st, "B")["answering"] == serde_json::json!(["B"])
    });
    assert_eq!(Lab::set(&st, "A")["client_sees"], "A", "{st:#}");
}

/// Where set `set`'s address is: the nodes whose namespace holds it, and the
/// nodes that answer it.
fn address_of(st: &serde_json::Value, set: &str) -> (serde_json::Value, serde_json::Value) {
    let s = Lab::set(st, set);
    (s["held_by"].clone(), s["answering"].clone())
}

#[test]
fn an_elective_takeover_and_a_giveback_in_the_lab_move_the_address_and_the_client_goes_on() {
    if !root() {
        return;
    }
    let lab = Lab::up(&[]);
    // At home there is nothing to give back: refused, and said why.
    let e = lab.duet(&["giveback", "A"]).unwrap_err();
    assert!(e.contains("set A is not away from home"), "{e}");
    let blocks = 200;
    let mut client = lab.client_on("A", blocks, "0.02");
    client.until_written(blocks / 4);
    lab.pair_until("b", "a current mirror of A", |p| p["partner_mirror"]["current"] == true);
    let out = lab.ok(&["takeover", "A"]);
    assert!(out.contains("`duet takeover` on node B"), "{out}");
    assert!(out.contains("set 1 served here"), "{out}");
    assert!(out.contains("set A on 127.0.0.11:445: held by [B]"), "{out}");
    // The address moved: B's namespace holds it, A's does not, B answers.
    let st = lab.status();
    never_two(&st);
    assert_eq!(address_of(&st, "A"), (serde_json::json!(["B"]), serde_json::json!(["B"])), "{st:#}");
    assert!(!Lab::node(&st, "A")["addresses"].as_array().unwrap().contains(&"127.0.0.11".into()), "{st:#}");
    assert!(Lab::node(&st, "B")["addresses"].as_array().unwrap().contains(&"127.0.0.11".into()), "{st:#}");
    // A handed its set over on purpose: it runs on, waiting, and never stepped down.
    assert_eq!(Lab::node(&st, "A")["state"], "running", "{st:#}");
    assert_eq!(set_state(&lab, "b", 1), Some(("serving".into(), 2)));
    assert!(set_state(&lab, "a", 1).unwrap().0.starts_with("waiting"), "{}", lab.logs());
    assert!(!lab.log("a").contains("stepping down"), "{}", lab.logs());
    // A second takeover has nothing to take.
    let e = lab.duet(&["takeover", "A"]).unwrap_err();
    assert!(e.contains("node B serves set A already"), "{e}");
    client.until_written(blocks / 2);
    assert!(client.written() < blocks, "the client finished before the giveback: the test shows nothing");
    lab.pair_until("a", "both mirrors current", |p| {
        p["partner_mirror"]["current"] == true && p["mirror"]["state"] == "current"
    });
    let out = lab.ok(&["giveback", "A"]);
    assert!(out.contains("`duet giveback` on node B"), "{out}");
    assert!(out.contains("set A on 127.0.0.11:445: held by [A]"), "{out}");
    let st = lab.status();
    never_two(&st);
    assert_eq!(address_of(&st, "A"), (serde_json::json!(["A"]), serde_json::json!(["A"])), "{st:#}");
    assert_eq!(set_state(&lab, "a", 1), Some(("serving".into(), 3)));
    let done =
        client.done(Duration::from_secs(60)).unwrap_or_else(|| panic!("the client never ended: {}", client.stderr()));
    let context = format!("{done}\n{}\n{}", client.stderr(), lab.logs());
    assert_eq!(done["done"], true, "{context}");
    assert_eq!(done["errors"], serde_json::json!([]), "{context}");
    assert!(done["reconnects"].as_u64().unwrap_or(0) >= 2, "the client did not follow both moves: {context}");
    assert_eq!(done["reclaimed"], true, "the durable handle was not kept: {context}");
    assert_eq!(done["server_guids"].as_array().map(Vec::len), Some(1), "{context}");
    // The giving node's connections end while it still has the address: the
    // client hears it at once, not after its own 30 s time-out (it did when
    // the end came after the address had gone).
    assert!(!client.stderr().contains("no answer within"), "the client timed out: {context}");
    let stall = done["stall_ms"].as_u64().unwrap();
    assert!(stall < 10_000, "the client stalled {stall} ms: {context}");
    eprintln!("longest stall across the two moves: {stall} ms");
    check_file(&lab, blocks);
    // The client's neighbour entry followed the address home.
    assert_eq!(Lab::set(&lab.status(), "A")["client_sees"], "A");
}

#[test]
fn duet_lab_move_sends_a_set_away_and_back() {
    if !root() {
        return;
    }
    let lab = Lab::up(&[]);
    lab.pair_until("a", "a current mirror of B", |p| p["partner_mirror"]["current"] == true);
    lab.pair_until("b", "a current mirror of A", |p| p["partner_mirror"]["current"] == true);
    // Set B moves to A: `duet move 2` on B, which serves it (a hand-over).
    let out = lab.ok(&["move", "B"]);
    assert!(out.contains("`duet move 2` on node B"), "{out}");
    assert!(out.contains("set B on 127.0.0.12:445: held by [A]"), "{out}");
    let st = lab.status();
    assert_eq!(address_of(&st, "B"), (serde_json::json!(["A"]), serde_json::json!(["A"])), "{st:#}");
    assert_eq!(address_of(&st, "A"), (serde_json::json!(["A"]), serde_json::json!(["A"])), "{st:#}");
    lab.pair_until("b", "both mirrors current", |p| {
        p["partner_mirror"]["current"] == true && p["mirror"]["state"] == "current"
    });
    // And back: `duet move 2` on A, which serves it now (a giveback).
    let out = lab.ok(&["move", "B"]);
    assert!(out.contains("`duet move 2` on node A"), "{out}");
    assert!(out.contains("set B on 127.0.0.12:445: held by [B]"), "{out}");
    let st = lab.status();
    assert_eq!(address_of(&st, "B"), (serde_json::json!(["B"]), serde_json::json!(["B"])), "{st:#}");
    let share = "//127.0.0.12/setb";
    let out = lab.ok(&["exec", "--", "smbclient", share, "-U", "duet%duetpass", "-c", "ls"]);
    assert!(out.contains("blocks of size"), "{out}");
}
