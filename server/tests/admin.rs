//! The operator's view: `duet status` and `duet close-handle` against a
//! real `duet serve` over its real admin socket, with sessions and opens
//! made by Python's smbprotocol (`testdata/admin_client.py`); who may use
//! the socket; and its bounds (a long request line, a silent client).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Kind, Server};

/// The admin socket of a harness server: it runs in its temp dir with no
/// state dir, so the default `duet-data/admin.sock` there.
fn socket(server: &Server) -> PathBuf {
    server.root().join("duet-data/admin.sock")
}

fn duet(args: &[&str]) -> Output {
    Command::new(common::duet_bin()).args(args).output().expect("run duet")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn status_json(sock: &Path) -> serde_json::Value {
    let out = duet(&["status", "--json", "--socket", sock.to_str().unwrap()]);
    assert!(out.status.success(), "duet status --json failed:\n{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&out)))
}

/// Polls `duet status --json` until `pred` holds.
fn status_until(sock: &Path, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let st = status_json(sock);
        if pred(&st) {
            return st;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{what} never showed:\n{st:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rows<'a>(st: &'a serde_json::Value, table: &str) -> &'a Vec<serde_json::Value> {
    st[table].as_array().unwrap_or_else(|| panic!("no {table} array:\n{st:#}"))
}

/// The Python client holding its session; killed if the test fails.
struct PyClient {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl PyClient {
    fn start(port: u16) -> (PyClient, String, String) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/admin_client.py");
        let mut child = Command::new("python3")
            .args([script, "127.0.0.1", &port.to_string(), common::SHARE, common::USER, common::PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let mut client = PyClient { child, stdin };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() != 3 || words[0] != "READY" {
            let _ = client.child.kill();
            panic!("admin_client.py did not get ready: {line:?}");
        }
        let (kept, held) = (words[1].to_string(), words[2].to_string());
        (client, kept, held)
    }

    /// Ends the process without a LOGOFF: the connection is lost.
    fn drop_connection(mut self) {
        writeln!(self.stdin.take().unwrap(), "drop").unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for PyClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn status_shows_sessions_opens_and_retained_handles_and_close_handle_closes_one() {
    if Kind::from_env() != Kind::Duet {
        return;
    }
    let server = Server::start(common::Mode::Plain);
    let sock = socket(&server);
    let sock_arg = sock.to_str().unwrap();
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600, "the socket is 0600");
    let dir_mode = std::fs::metadata(sock.parent().unwrap()).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o002, 0, "its directory is not world-writable");

    let idle = status_json(&sock);
    assert!(rows(&idle, "sessions").is_empty() && rows(&idle, "opens").is_empty(), "{idle:#}");
    // `duet serve` keeps a journal by default: group commit, in the state
    // directory (here the default, duet-data under the server's directory).
    let j = &idle["journal"];
    assert_eq!(j["policy"], "group", "{idle:#}");
    assert_eq!(j["survives"], "power loss", "{idle:#}");
    assert!(j["path"].as_str().unwrap().ends_with("nvram"), "{idle:#}");
    assert!(j["size_bytes"].as_u64().unwrap() > 0 && j["used_bytes"].as_u64().unwrap() > 0, "{idle:#}");

    let (client, kept, held) = PyClient::start(server.port);
    let st = status_json(&sock);
    let sessions = rows(&st, "sessions");
    assert_eq!(sessions.len(), 1, "{st:#}");
    let session = &sessions[0];
    assert_eq!(session["user"], common::USER, "{st:#}");
    assert_eq!(session["opens"], 2, "{st:#}");
    assert_eq!(session["trees"], serde_json::json!([common::SHARE]), "{st:#}");
    assert!(session["dialect"].as_str().unwrap().starts_with('3'), "{st:#}");
    let opens = rows(&st, "opens");
    for (id, path, durable) in [(&held, "held.txt", "no"), (&kept, "kept.txt", "v1")] {
        let o = opens.iter().find(|o| o["id"] == id.as_str()).unwrap_or_else(|| panic!("open {id} missing:\n{st:#}"));
        assert_eq!(o["path"], path, "{st:#}");
        assert_eq!(o["share"], common::SHARE, "{st:#}");
        assert_eq!(o["session"], session["id"], "{st:#}");
        assert_eq!(o["durable"], durable, "{st:#}");
    }
    assert!(rows(&st, "retained").is_empty(), "{st:#}");

    // The human form names the same things.
    let human = duet(&["status", "--socket", sock_arg]);
    let h = text(&human);
    assert!(human.status.success(), "{h}");
    for needle in [
        "Sessions: 1",
        "Open files: 2",
        "Retained handles: 0",
        "held.txt",
        "kept.txt",
        &kept,
        "policy group (survives power loss)",
    ] {
        assert!(h.contains(needle), "{needle:?} missing from:\n{h}");
    }

    // The connection is lost: the durable open is retained, the other is
    // closed.
    client.drop_connection();
    let st = status_until(&sock, "the retained handle", |st| !rows(st, "retained").is_empty());
    let r = &rows(&st, "retained")[0];
    assert_eq!(r["id"], kept.as_str(), "{st:#}");
    assert_eq!(r["path"], "kept.txt", "{st:#}");
    assert_eq!(r["user"], common::USER, "{st:#}");
    let left = r["time_left_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 60_000, "time left {left} ms:\n{st:#}");
    assert!(r["age_ms"].as_u64().unwrap() <= 60_000, "{st:#}");
    assert!(rows(&st, "opens").iter().all(|o| o["id"] != held.as_str()), "{st:#}");
    let h = text(&duet(&["status", "--socket", sock_arg]));
    assert!(h.contains("Retained handles: 1") && h.contains("TIME LEFT"), "{h}");

    // Not a retained handle: an error, and a non-zero exit.
    let wrong = duet(&["close-handle", "0x1", "--socket", sock_arg]);
    assert!(!wrong.status.success(), "{}", text(&wrong));
    assert!(text(&wrong).contains("no retained handle 0x0000000000000001"), "{}", text(&wrong));
    let garbage = duet(&["close-handle", "zz", "--socket", sock_arg]);
    assert!(!garbage.status.success(), "{}", text(&garbage));

    // Closed by the operator (its id in decimal, to show both forms work).
    let dec = u64::from_str_radix(kept.trim_start_matches("0x"), 16).unwrap().to_string();
    let closed = duet(&["close-handle", &dec, "--socket", sock_arg]);
    assert!(closed.status.success(), "{}", text(&closed));
    assert!(text(&closed).contains(&kept), "{}", text(&closed));
    let st = status_json(&sock);
    assert!(rows(&st, "retained").is_empty(), "{st:#}");
    assert!(server.log().contains("retained handle closed by the operator"), "{}", server.log());
    let again = duet(&["close-handle", &kept, "--socket", sock_arg]);
    assert!(!again.status.success() && text(&again).contains("no retained handle"), "{}", text(&again));
    // The file is free again: nothing holds it open.
    server.run("get kept.txt kept.txt").assert_ok();
}

/// Only root and the server's user: the socket's mode keeps others out,
/// and the peer-credential check refuses them even when the mode would
/// let them in (here loosened on purpose). Needs root, to be another user.
#[test]
fn another_user_cannot_use_the_socket() {
    if Kind::from_env() != Kind::Duet {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run a client as another user (the check is unit-tested in admin::socket)");
        return;
    }
    let server = Server::start(common::Mode::Plain);
    let sock = socket(&server);
    // A copy of the binary that user `nobody` can surely execute.
    let bin = server.root().join("duet-copy");
    std::fs::copy(common::duet_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = || {
        Command::new(&bin)
            .args(["status", "--socket", sock.to_str().unwrap()])
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run duet as nobody")
    };
    let out = as_nobody();
    assert!(!out.status.success(), "nobody got in:\n{}", text(&out));
    assert!(text(&out).contains("ermission denied"), "{}", text(&out));

    std::fs::set_permissions(sock.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody();
    assert!(!out.status.success(), "nobody got in past the peer check:\n{}", text(&out));
    assert!(!text(&out).contains("Sessions"), "{}", text(&out));
    let log = server.wait_log(0, Duration::from_secs(10), |l| l.contains("refused a connection"));
    assert!(log.contains("refused a connection") && log.contains("65534"), "{log}");
    // Root still gets in.
    status_json(&sock);
}

/// A request line over 4 KiB, a client that sends nothing, bad JSON: each
/// costs its own connection only, and the server goes on answering.
#[test]
fn bad_and_slow_clients_do_not_block_the_socket() {
    if Kind::from_env() != Kind::Duet {
        return;
    }
    let server = Server::start(common::Mode::Plain);
    let sock = socket(&server);
    // Silent clients, more of them than are served at once.
    let silent: Vec<UnixStream> = (0..12).map(|_| UnixStream::connect(&sock).unwrap()).collect();
    // Ask with a fresh connection until one is served (the silent ones
    // hold their slots until they time out).
    let t = Instant::now();
    loop {
        let out = duet(&["status", "--json", "--socket", sock.to_str().unwrap()]);
        if out.status.success() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never served past silent clients: {}", text(&out));
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(silent);

    let mut long = UnixStream::connect(&sock).unwrap();
    long.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let big = vec![b' '; 5000];
    let _ = long.write_all(&big);
    let mut answer = Vec::new();
    let _ = long.read_to_end(&mut answer);
    assert!(answer.is_empty(), "a long request line is dropped, not answered: {}", String::from_utf8_lossy(&answer));

    for (req, want) in [
        ("{\"op\":\"reboot\"}\n", "bad request"),
        ("not json\n", "bad request"),
        ("{\"op\":\"close-handle\",\"id\":7}\n", "no retained handle"),
    ] {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
        assert_eq!(v["result"], "error", "{answer}");
        assert!(v["message"].as_str().unwrap().contains(want), "{answer}");
    }
    status_json(&sock);
    // The server still serves SMB.
    server.run("ls").assert_ok();
}
