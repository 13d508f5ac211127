//! The pair, first step (issue 14): two real `duet` processes on loopback join
//! over the interconnect and mirror each other's journal.
//!
//! - `records_written_on_a_are_in_bs_mirror_ring`: a client writes on A; B's
//!   journal holds A's records in its partner ring (its status and a dump of
//!   its journal file).
//! - `a_killed_partner_leaves_the_node_serving_degraded_then_resyncs`: B is
//!   killed with SIGKILL; A goes on answering writes, degraded; B restarts and
//!   A's mirror at B catches up with what A wrote meanwhile.
//! - `a_frozen_partner_is_detached_after_its_silence_then_resynced`: B is
//!   stopped with SIGSTOP (its kernel keeps its connections open); A notices
//!   the silence, answers writes degraded, and resyncs B once it resumes.
//! - `a_partner_that_stops_acknowledging_is_given_up`: B's receiving thread
//!   stalls (a failpoint) while its heartbeats go on; A gives it up after
//!   2 s without an acknowledgement and answers degraded.
//! - `the_node_with_the_older_incarnation_refuses_to_serve`: a node started
//!   with an older configuration incarnation than its partner's exits
//!   non-zero and says why; one started with a newer one makes the running
//!   node step down.
//! - `a_pair_configured_in_duet_toml_joins_one_configured_by_flags`: the
//!   `[pair]` table of a configuration file, against the `--pair-*` flags.
//! - `garbage_on_the_interconnect_is_refused_and_counted`: corrupt,
//!   oversized and foreign frames, and a join with the node's own id, from
//!   a raw TCP client: each refused and counted, and the pair carries on.
//! - `a_join_without_the_interconnect_key_is_refused`: a stranger that knows
//!   the cluster, the partner's node id, the incarnation and the ring size,
//!   but not the interconnect key, is refused after its proof, and B's link
//!   to A is not replaced.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pair::{self, num, pair_status, partner_ring_dump, status_until, Pair};

/// Writes a file of `len` bytes through smbclient `put` on `server`.
fn put(server: &common::Server, name: &str, len: u64) {
    let local = server.client_dir().join(name);
    common::write_random_file(&local, len, len);
    server.run(&format!("put {name}")).assert_ok();
}

#[test]
fn records_written_on_a_are_in_bs_mirror_ring() {
    let p = Pair::start();
    // Small enough that its WRITE's data goes in the journal record (larger ones are
    // synced in the file instead).
    put(&p.a, "mirrored.bin", 16 << 10);
    let a = pair_status(&p.a);
    let tail = num(&a["mirror"]["tail"]);
    // A's records up to the put are acknowledged by B, and B holds them.
    let a = status_until(&p.a, "the put acknowledged by B", |s| {
        num(&s["mirror"]["acked"]) >= tail && s["degraded"] == false
    });
    assert!(num(&a["heartbeats_seen"]) > 0, "{a:#}");
    let b = status_until(&p.b, "B holding what A acknowledged", |s| num(&s["partner_mirror"]["end"]) >= tail);
    assert!(num(&b["partner_mirror"]["bytes_received"]) >= 16 << 10, "the WRITE's data: {b:#}");
    // B's journal file: the partner ring holds A's requests.
    let dump = partner_ring_dump(&p.b);
    let requests = dump.lines().filter(|l| l.contains(" PreAck ")).count();
    let completions = dump.lines().filter(|l| l.contains(" PostCompletion ")).count();
    assert!(requests >= 5 && completions >= 5, "few of A's records in B's partner ring:\n{dump}");
    assert!(dump.contains("end: clean"), "{dump}");
}

#[test]
fn a_killed_partner_leaves_the_node_serving_degraded_then_resyncs() {
    let mut p = Pair::start();
    put(&p.a, "before.bin", 64 << 10);
    p.b.kill9();
    // A answers writes without B (smbclient gives up after 120 s, which would fail
    // the put), and says it is degraded.
    put(&p.a, "while-b-is-down.bin", 512 << 10);
    let a = status_until(&p.a, "degraded", |s| s["degraded"] == true && s["partner_connected"] == false);
    assert_eq!(a["mirror"]["state"], "detached", "{a:#}");
    let tail = num(&a["mirror"]["tail"]);
    assert!(num(&a["mirror"]["lag_bytes"]) > 0, "{a:#}");
    let text = common::pair::status_text(&p.a);
    assert!(text.contains("DEGRADED"), "{text}");
    // B comes back: A's mirror at B catches up with what A wrote meanwhile.
    p.b.restart();
    let a = status_until(&p.a, "the mirror current again", |s| {
        s["mirror"]["state"] == "current" && s["degraded"] == false && num(&s["mirror"]["acked"]) >= tail
    });
    assert!(num(&a["mirror"]["resyncs"]) >= 2, "{a:#}");
    status_until(&p.b, "B holding what A wrote while it was down", |s| num(&s["partner_mirror"]["end"]) >= tail);
    put(&p.a, "after.bin", 64 << 10);
    assert!(p.a.log().contains("running degraded"), "A did not say it was degraded");
}

#[test]
fn a_frozen_partner_is_detached_after_its_silence_then_resynced() {
    let p = Pair::start();
    let pid = p.b.pid().expect("B runs") as libc::pid_t;
    // SAFETY: kill(2) on the harness's own child, which it has not reaped.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // B's kernel still holds its sockets: only B's silence tells A. A's answers wait
    // for that (1 s), not for B (smbclient gives up after 20 s of no answer).
    put(&p.a, "while-b-is-frozen.bin", 16 << 10);
    let a = status_until(&p.a, "degraded", |s| s["degraded"] == true);
    let tail = num(&a["mirror"]["tail"]);
    unsafe { libc::kill(pid, libc::SIGCONT) };
    status_until(&p.a, "the mirror current again", |s| {
        s["mirror"]["state"] == "current" && s["degraded"] == false && num(&s["mirror"]["acked"]) >= tail
    });
    assert!(p.a.log().contains("silent for 1000 ms"), "A did not notice the silence:\n{}", p.a.log());
    let b = status_until(&p.b, "B holding what A wrote", |s| num(&s["partner_mirror"]["end"]) >= tail);
    assert_eq!(b["partner_mirror"]["connected"], true, "{b:#}");
}

#[test]
fn a_partner_that_stops_acknowledging_is_given_up() {
    let (node_a, node_b) = pair::nodes(1, 1);
    let a = node_a.start();
    // B's receiving thread stalls 30 s on every run of records (a stuck disk); its
    // heartbeats go on.
    let _b = node_b.start_with_env(&[("DUET_FAILPOINT", "mirror-receive:30000")]);
    status_until(&a, "B joined", |s| s["partner_connected"] == true);
    // A's answers wait for B's acknowledgement at most ACK_TIMEOUT (2 s), not 30 s
    // (smbclient gives up after 20 s of no answer).
    put(&a, "b-is-stuck.bin", 16 << 10);
    let log = a.wait_log(0, Duration::from_secs(30), |l| l.contains("it stopped acknowledging"));
    assert!(log.contains("it stopped acknowledging"), "{log}");
    let st = pair_status(&a);
    assert_ne!(st["mirror"]["state"], "current", "{st:#}");
}

#[test]
fn a_pair_configured_in_duet_toml_joins_one_configured_by_flags() {
    let (node_a, node_b) = pair::nodes(4, 4);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("duet.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"state\"\n[journal]\npath = \"nvram\"\nsize = 16777216\n\
             [pair]\ncluster = {}\nnode = 1\npartner_node = 2\nlisten = \"127.0.0.1:{}\"\n\
             partner = \"127.0.0.1:{}\"\nincarnation = 4\nkey_file = \"{}\"\n",
            pair::CLUSTER,
            node_a.port,
            node_b.port,
            pair::key_file().display()
        ),
    )
    .unwrap();
    let _a = common::Server::start_with(common::Options {
        duet_args: vec!["--config".into(), config.display().to_string()],
        ..common::Options::default()
    });
    let b = node_b.start();
    status_until(&b, "joined with A", |s| s["partner_connected"] == true && s["mirror"]["state"] == "current");
    // A's status, found through its configuration file.
    let out = Command::new(common::duet_bin())
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()
        .expect("run duet status");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
    assert_eq!((st["pair"]["node"].as_u64(), st["pair"]["incarnation"].as_u64()), (Some(1), Some(4)), "{st:#}");
    assert!(dir.path().join("nvram").exists(), "the journal where the file says");
}

/// Starts a node as a bare process (the harness would take its early exit for a
/// failure) and waits for it to exit; its exit status and output.
fn run_to_exit(node: &pair::Node, limit: Duration) -> (Option<std::process::ExitStatus>, String) {
    let root = tempfile::tempdir().unwrap();
    let share = root.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let mut child = Command::new(common::duet_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{}", common::free_port())])
        .args(["--share", &format!("share={}", share.display()), "--user", "duet:duetpass"])
        .args(node.args())
        .current_dir(root.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn duet");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let _ = child.stderr.take().unwrap().read_to_string(&mut out);
    (status, out)
}

#[test]
fn the_node_with_the_older_incarnation_refuses_to_serve() {
    let (node_a, node_b) = pair::nodes(2, 1);
    let mut a = node_a.start();
    // B's configuration is older: it refuses to serve, says why, exits non-zero.
    let (status, out) = run_to_exit(&node_b, Duration::from_secs(30));
    let status = status.unwrap_or_else(|| panic!("the older node kept running:\n{out}"));
    assert!(!status.success(), "the older node exited with success:\n{out}");
    assert!(out.contains("incarnation 2 is newer than ours (1)") && out.contains("refuses to serve"), "{out}");
    assert!(!out.contains("duet: listening"), "the older node served:\n{out}");
    let st = pair_status(&a);
    assert!(num(&st["refused"]["joins"]) >= 1, "{st:#}");
    assert!(a.log().contains("refused a join") || a.log().contains("refused node 2"), "{}", a.log());
    // Equal is fine: covered by every other test. Newer: the running node steps down.
    let newer = pair::Node { incarnation: 3, ..node_b };
    let _b = newer.start();
    let exit = a.wait_exit(Duration::from_secs(30)).expect("A stepped down and exited");
    assert!(!exit.success(), "A exited with success");
    let log = a.log();
    assert!(log.contains("incarnation 3 is newer than ours (2)"), "{log}");
}

/// A frame as the codec encodes it.
fn frame(cluster: u64, node: u16, seq: u64, message: takeover::Message) -> Vec<u8> {
    use takeover::codec::{Frame, Header};
    let header = Header { cluster: takeover::ClusterId(cluster), node: takeover::NodeId(node), generation: 1, seq };
    Frame { header, message }.to_bytes()
}

/// Sends `bytes` on a new interconnect connection and reads what comes back until
/// the node closes it (or 5 s pass).
fn send_raw(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the interconnect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut back = Vec::new();
    let _ = s.read_to_end(&mut back);
    back
}

#[test]
fn garbage_on_the_interconnect_is_refused_and_counted() {
    use takeover::codec::{decode, RefuseReason, HEADER_LEN, MAX_PAYLOAD};
    use takeover::Message;
    let p = Pair::start();
    let port = p.node_a.port;
    let before = pair_status(&p.a)["refused"].clone();
    // The ring size does not matter: each of these is refused before it is looked at.
    let join = Message::Join { incarnation: 1, ring: 0, nonce: [0; 16] };
    // Not a frame at all.
    assert!(send_raw(port, b"GET / HTTP/1.0\r\n\r\n").is_empty());
    // A whole frame with one bit flipped.
    let mut bad = frame(pair::CLUSTER, 2, 0, join.clone());
    bad[HEADER_LEN + 3] ^= 0x10;
    assert!(send_raw(port, &bad).is_empty());
    // A header announcing more than the largest payload.
    let mut big = frame(pair::CLUSTER, 2, 0, join.clone());
    big[26..30].copy_from_slice(&(MAX_PAYLOAD + 1).to_be_bytes());
    assert!(send_raw(port, &big[..HEADER_LEN]).is_empty());
    // A join from another cluster: refused, and told so.
    let back = send_raw(port, &frame(99, 2, 0, join.clone()));
    let (f, _) = decode(&back).expect("a frame back").expect("a whole frame back");
    assert!(matches!(f.message, Message::Refuse { reason: RefuseReason::ForeignCluster, .. }), "{f:?}");
    // A join with A's own node id.
    let back = send_raw(port, &frame(pair::CLUSTER, 1, 0, join.clone()));
    let refused = std::iter::successors(decode(&back).ok().flatten(), |(_, n)| decode(&back[*n..]).ok().flatten())
        .any(|(f, _)| matches!(f.message, Message::Refuse { reason: RefuseReason::SameNode, .. }));
    assert!(refused, "no SameNode refusal in {back:?}");
    // A heartbeat as the first frame: not a join.
    let hb = Message::Heartbeat(takeover::codec::Status { health: takeover::Health::Healthy, sets: vec![] });
    assert!(send_raw(port, &frame(pair::CLUSTER, 2, 0, hb)).is_empty());
    let after = status_until(&p.a, "every refusal counted", |s| {
        let r = &s["refused"];
        num(&r["corrupt"]) >= num(&before["corrupt"]) + 2
            && num(&r["oversized"]) > num(&before["oversized"])
            && num(&r["foreign"]) > num(&before["foreign"])
            && num(&r["joins"]) >= num(&before["joins"]) + 2
    });
    // None of it stopped A, nor its pair with B.
    assert!(num(&after["refused"]["stale"]) == num(&before["stale"]), "{after:#}");
    status_until(&p.a, "still joined with B", |s| s["partner_connected"] == true);
    put(&p.a, "still-serving.bin", 64 << 10);
    let tail = num(&pair_status(&p.a)["mirror"]["tail"]);
    status_until(&p.a, "mirrored after the garbage", |s| {
        s["mirror"]["state"] == "current" && num(&s["mirror"]["acked"]) >= tail
    });
    let text = common::pair::status_text(&p.a);
    assert!(text.contains("refused on the interconnect:"), "{text}");
}

/// Every whole frame in `bytes`, in order.
fn frames(bytes: &[u8]) -> Vec<takeover::codec::Frame> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(Some((f, used))) = takeover::codec::decode(&bytes[at..]) {
        out.push(f);
        at += used;
    }
    out
}

#[test]
fn a_join_without_the_interconnect_key_is_refused() {
    use takeover::codec::RefuseReason;
    use takeover::Message;
    let p = Pair::start();
    let port = p.node_a.port;
    // A's ring size is no secret: A's own join, sent before it refuses one of the
    // wrong size, says it.
    let back = send_raw(port, &frame(pair::CLUSTER, 2, 0, Message::Join { incarnation: 1, ring: 1, nonce: [0; 16] }));
    let ring = frames(&back)
        .into_iter()
        .find_map(|f| match f.message {
            Message::Join { ring, .. } => Some(ring),
            _ => None,
        })
        .expect("A's join before its refusal");
    let joins = num(&pair_status(&p.a)["refused"]["joins"]);
    let resyncs = num(&pair_status(&p.b)["mirror"]["resyncs"]);

    // A join that passes every rule but the key: A answers with its own join and its
    // proof, and waits for ours.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the interconnect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&frame(pair::CLUSTER, 2, 0, Message::Join { incarnation: 1, ring, nonce: [1; 16] })).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !frames(&got).iter().any(|f| matches!(f.message, Message::Proof { .. })) {
        let n = s.read(&mut buf).expect("A's join and proof");
        assert!(n > 0, "A closed the link before its proof: {:?}", frames(&got));
        got.extend_from_slice(&buf[..n]);
    }
    // Until the stranger proves itself, A has not taken it for the partner.
    let status = pair_status(&p.a);
    assert_eq!(status["partner_mirror"]["connected"], true, "{status:#}");
    // A proof made without the key.
    s.write_all(&frame(pair::CLUSTER, 2, 1, Message::Proof { mac: [0x5A; 32] })).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    got.extend_from_slice(&rest);
    let refused =
        frames(&got).iter().any(|f| matches!(f.message, Message::Refuse { reason: RefuseReason::Unproven, .. }));
    assert!(refused, "no refusal for the proof in {:?}", frames(&got));
    status_until(&p.a, "the unproven join counted", |s| num(&s["refused"]["joins"]) > joins);

    // B's link to A was never replaced: B did not have to join (and resync) again, and
    // A's mirror of B carries on.
    std::thread::sleep(Duration::from_millis(1500));
    let b = pair_status(&p.b);
    assert_eq!(num(&b["mirror"]["resyncs"]), resyncs, "B's link was replaced: {b:#}");
    put(&p.b, "after-the-stranger.bin", 64 << 10);
    let tail = num(&pair_status(&p.b)["mirror"]["tail"]);
    status_until(&p.b, "B mirrored at A after the stranger", |s| {
        s["mirror"]["state"] == "current" && num(&s["mirror"]["acked"]) >= tail
    });
}
