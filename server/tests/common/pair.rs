//! Two `duet` processes as a pair on loopback (issue 14): each a harness
//! [`Server`] with its own share, state directory and journal (relative to
//! its root, so a restart finds them), and interconnect ports of its own.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, Options, Server};

/// The pair's cluster id in these tests.
pub const CLUSTER: u64 = 7;

/// The interconnect key both nodes of every pair of this test process use: a file of
/// 32 bytes, mode 0600 (`duet` refuses one others may read).
pub fn key_file() -> PathBuf {
    static KEY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = std::env::temp_dir().join(format!("duet-test-interconnect-{}.key", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
        f.write_all(&rand::random::<[u8; 32]>()).unwrap();
        path
    })
    .clone()
}

/// One node's place in a pair.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub id: u16,
    /// Its interconnect port.
    pub port: u16,
    /// The partner's.
    pub partner: u16,
    pub incarnation: u64,
}

impl Node {
    /// `duet serve` arguments for this node: journal, state directory and pair.
    pub fn args(&self) -> Vec<String> {
        let mut v: Vec<String> = ["--journal", "nvram", "--journal-size", "16M", "--state-dir", "state"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend([
            "--pair-cluster".into(),
            CLUSTER.to_string(),
            "--pair-node".into(),
            self.id.to_string(),
            "--pair-listen".into(),
            format!("127.0.0.1:{}", self.port),
            "--pair-partner".into(),
            format!("127.0.0.1:{}", self.partner),
            "--pair-incarnation".into(),
            self.incarnation.to_string(),
            "--pair-key".into(),
            key_file().display().to_string(),
        ]);
        v
    }

    /// Starts this node as a harness server.
    pub fn start(&self) -> Server {
        self.start_with_env(&[])
    }

    /// Starts this node with extra environment variables (a failpoint).
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Server {
        let duet_env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Server::start_with(Options { duet_args: self.args(), duet_env, ..Options::default() })
    }
}

/// The two nodes' places: A is node 1, B node 2, each on a free port.
pub fn nodes(incarnation_a: u64, incarnation_b: u64) -> (Node, Node) {
    let (pa, pb) = (free_port(), free_port());
    (
        Node { id: 1, port: pa, partner: pb, incarnation: incarnation_a },
        Node { id: 2, port: pb, partner: pa, incarnation: incarnation_b },
    )
}

/// A running pair.
pub struct Pair {
    pub a: Server,
    pub b: Server,
    pub node_a: Node,
    pub node_b: Node,
}

impl Pair {
    /// Starts A, then B, both at incarnation 1, and waits until each one's mirror at
    /// the other is current.
    pub fn start() -> Pair {
        let (node_a, node_b) = nodes(1, 1);
        let a = node_a.start();
        let b = node_b.start();
        let pair = Pair { a, b, node_a, node_b };
        pair.until_current();
        pair
    }

    /// Waits until both nodes' mirrors are current.
    pub fn until_current(&self) {
        for s in [&self.a, &self.b] {
            status_until(s, "a current mirror at the partner", |p| {
                p["partner_connected"] == true && p["mirror"]["state"] == "current" && p["degraded"] == false
            });
        }
    }
}

/// The admin socket of a pair node (its state directory is `state`).
pub fn socket(server: &Server) -> PathBuf {
    server.root().join("state/admin.sock")
}

/// `duet status --json` of a node: the whole document.
pub fn status(server: &Server) -> serde_json::Value {
    let out = Command::new(super::duet_bin())
        .args(["status", "--json", "--socket"])
        .arg(socket(server))
        .output()
        .expect("run duet status");
    assert!(
        out.status.success(),
        "duet status failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status is JSON")
}

/// `duet status` of a node, as text.
pub fn status_text(server: &Server) -> String {
    let out = Command::new(super::duet_bin())
        .args(["status", "--socket"])
        .arg(socket(server))
        .output()
        .expect("run duet status");
    assert!(out.status.success(), "duet status failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `pair` part of a node's status.
pub fn pair_status(server: &Server) -> serde_json::Value {
    let st = status(server);
    assert!(st["pair"].is_object(), "no pair in the status: {st:#}");
    st["pair"].clone()
}

/// Polls a node's pair status until `pred` holds (60 s at most: the machine is shared).
pub fn status_until(server: &Server, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let p = pair_status(server);
        if pred(&p) {
            return p;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{what} never showed:\n{p:#}\n--- log ---\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `duet journal dump` of a node's journal: the part about the partner's mirror ring.
pub fn partner_ring_dump(server: &Server) -> String {
    let out = Command::new(super::duet_bin())
        .args(["journal", "dump"])
        .arg(server.root().join("nvram"))
        .output()
        .expect("run duet journal dump");
    assert!(out.status.success(), "dump failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let at = text.find("partner mirror:").expect("a partner mirror section");
    text[at..].to_string()
}

/// A field of a status as a number.
pub fn num(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}
