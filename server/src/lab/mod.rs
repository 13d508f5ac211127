//! `duet lab` (issue 14): a pair on one machine whose addresses move as on a
//! real network. As root it makes a network namespace per node and one for
//! clients, joined by a bridge ([`net`]), a shared storage folder, and starts
//! the two `duet serve` nodes, each in its namespace ([`nodes`]); node A
//! serves set A (share `seta`) on 127.0.0.11:445, node B set B (`setb`) on
//! 127.0.0.12:445. A node adds its set's address to its `eth0` and announces
//! it; the partner that takes a set over adds it, announces it and tickles
//! the old owner's clients ([`crate::pair::address`]).
//!
//! The lab's folder (`--dir`, default `duet-lab`) holds `lab.json` (the
//! namespaces' names and the nodes' processes), `storage/` (the shares and
//! the pair's storage folder), and `a/`, `b/` (each node's state directory
//! and `duet.log`).
//!
//! # Layout
//! - [`net`]: namespaces, bridge, links, 127/8 routing.
//! - [`nodes`]: the node processes: arguments, start, kill, freeze, thaw.
//! - [`probe`]: `duet lab status`: who holds, listens on and answers each
//!   set's address.
//! - [`operator`]: `duet lab takeover | giveback | move SET`: the pair's
//!   operator commands, run on the right node.

pub mod net;
pub mod nodes;
pub mod operator;
pub mod probe;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use nodes::NodeRecord;

/// The nodes' interconnect port (on their own addresses).
pub const INTERCONNECT_PORT: u16 = 7001;
/// The client namespace's address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 100);
/// The user the lab's nodes know, unless `--user` says otherwise.
pub const DEFAULT_USER: &str = "duet:duetpass";

/// `duet lab` commands.
#[derive(clap::Subcommand, Debug)]
pub enum LabCommand {
    /// Make the namespaces and the bridge, start both nodes, wait until they
    /// serve, and say how to connect.
    Up {
        /// Namespaces are called NAME-a, NAME-b, NAME-client, NAME-net.
        #[arg(long, default_value = "duet")]
        name: String,
        /// The user the nodes know, as NAME:PASSWORD.
        #[arg(long, default_value = DEFAULT_USER)]
        user: String,
        /// An extra `duet serve` argument for node A; repeatable.
        #[arg(long = "a-arg", allow_hyphen_values = true)]
        a_args: Vec<String>,
        /// An extra `duet serve` argument for node B; repeatable.
        #[arg(long = "b-arg", allow_hyphen_values = true)]
        b_args: Vec<String>,
    },
    /// Run a command in the client namespace (or a node's, with --in).
    Exec {
        /// client, A or B.
        #[arg(long = "in", default_value = "client")]
        r#in: String,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Kill a node's process (SIGKILL).
    Kill { node: String },
    /// Freeze a node's process (SIGSTOP): its kernel keeps its sockets.
    Freeze { node: String },
    /// Thaw a frozen node (SIGCONT).
    Thaw { node: String },
    /// Start a node's process again (after a kill).
    Start { node: String },
    /// Elective takeover of set SET (A or B) by its home node's partner:
    /// `duet takeover` in the partner's namespace; waits until it serves the
    /// set, then shows where the set's address is.
    Takeover { set: String },
    /// Give set SET (A or B), served by the partner, back to its home node:
    /// `duet giveback` on the partner; then shows where the address is.
    Giveback { set: String },
    /// Move set SET (A or B) to the other node, whichever way: `duet move`
    /// on the node that serves it.
    Move { set: String },
    /// Who runs, who holds and answers each set's address.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Stop both nodes and remove the namespaces (the folder stays).
    Stop,
}

/// The lab's fixed addresses and its folder.
pub struct Layout {
    pub dir: PathBuf,
    pub user: String,
}

impl Layout {
    /// Node `id`'s own address (1: A, 2: B): its interconnect.
    pub fn node_ip(id: u16) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, 20 + id as u8)
    }

    /// The client address of node `id`'s set.
    pub fn set_address(id: u16) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::new(127, 0, 0, 10 + id as u8).into(), 445)
    }
}

/// `lab.json`: what the later commands need to find the lab.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabFile {
    pub name: String,
    pub dir: PathBuf,
    pub user: String,
    pub nodes: Vec<NodeRecord>,
}

impl LabFile {
    fn path(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    fn load(dir: &Path) -> Result<LabFile, String> {
        let p = Self::path(dir);
        let text =
            std::fs::read_to_string(&p).map_err(|e| format!("no lab in {} ({e}): duet lab up", dir.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    }

    fn save(&self) -> Result<(), String> {
        let p = Self::path(&self.dir);
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// The namespace of "A", "B", "client" or "net" (the bridge's).
    pub fn namespace(&self, who: &str) -> String {
        format!("{}-{}", self.name, who.to_ascii_lowercase())
    }

    fn node(&self, who: &str) -> Result<usize, String> {
        let who = who.to_ascii_uppercase();
        self.nodes.iter().position(|n| n.node == who).ok_or_else(|| format!("no node {who:?}: A or B"))
    }

    fn node_dir(&self, who: &str) -> PathBuf {
        self.dir.join(who.to_ascii_lowercase())
    }
}

/// Runs a `duet lab` command on the lab in `dir`; the exit status.
pub fn run(dir: &Path, cmd: LabCommand) -> Result<i32, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("duet lab needs root: it makes network namespaces, a bridge and veth links \
                    (user namespaces are not supported yet)"
            .into());
    }
    if matches!(cmd, LabCommand::Up { .. }) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let dir = dir.canonicalize().map_err(|e| format!("no lab in {} ({e}): duet lab up", dir.display()))?;
    match cmd {
        LabCommand::Up { name, user, a_args, b_args } => {
            up(&dir, name, user, &a_args, &b_args)?;
            Ok(0)
        }
        LabCommand::Exec { r#in, command } => exec(&LabFile::load(&dir)?, &r#in, &command),
        LabCommand::Kill { node } => signal_node(&dir, &node, nodes::kill),
        LabCommand::Freeze { node } => signal_node(&dir, &node, nodes::freeze),
        LabCommand::Thaw { node } => signal_node(&dir, &node, nodes::thaw),
        LabCommand::Start { node } => {
            let mut lab = LabFile::load(&dir)?;
            let i = lab.node(&node)?;
            if nodes::state(&lab.nodes[i]) != nodes::State::Dead {
                return Err(format!("node {} is running", lab.nodes[i].node));
            }
            let (ns, nd) = (lab.namespace(&lab.nodes[i].node), lab.node_dir(&lab.nodes[i].node));
            nodes::start(&mut lab.nodes[i], &ns, &nd)?;
            lab.save()?;
            Ok(0)
        }
        LabCommand::Takeover { set } => operator::run(&LabFile::load(&dir)?, operator::Op::Takeover, &set),
        LabCommand::Giveback { set } => operator::run(&LabFile::load(&dir)?, operator::Op::Giveback, &set),
        LabCommand::Move { set } => operator::run(&LabFile::load(&dir)?, operator::Op::Move, &set),
        LabCommand::Status { json } => {
            let st = probe::status(&LabFile::load(&dir)?);
            let mut out = std::io::stdout().lock();
            let r = if json {
                serde_json::to_writer_pretty(&mut out, &st).map_err(std::io::Error::from)
            } else {
                probe::render(&st, &mut out)
            };
            r.map_err(|e| e.to_string())?;
            if json {
                println!();
            }
            Ok(0)
        }
        LabCommand::Stop => {
            stop(&LabFile::load(&dir)?)?;
            let _ = std::fs::remove_file(LabFile::path(&dir));
            Ok(0)
        }
    }
}

fn signal_node(dir: &Path, node: &str, f: fn(&NodeRecord) -> Result<(), String>) -> Result<i32, String> {
    let lab = LabFile::load(dir)?;
    f(&lab.nodes[lab.node(node)?])?;
    Ok(0)
}

/// `duet lab up`.
fn up(dir: &Path, name: String, user: String, a_args: &[String], b_args: &[String]) -> Result<(), String> {
    if let Ok(old) = LabFile::load(dir) {
        if net::exists(&old.namespace("net")) {
            return Err(format!("a lab runs in {} (namespaces {}-*): duet lab stop first", dir.display(), old.name));
        }
    }
    let layout = Layout { dir: dir.to_path_buf(), user: user.clone() };
    let mut lab = LabFile { name, dir: dir.to_path_buf(), user, nodes: Vec::new() };
    for who in ["net", "a", "b", "client"] {
        if net::exists(&lab.namespace(who)) {
            return Err(format!("namespace {} exists already: another lab? (--name)", lab.namespace(who)));
        }
    }
    for (who, id, extra) in [("A", 1u16, a_args), ("B", 2, b_args)] {
        lab.nodes.push(NodeRecord { node: who.into(), id, args: nodes::args(&layout, id, extra), pid: 0, start: 0 });
    }
    // Saved first: `duet lab stop` undoes whatever was made.
    lab.save()?;
    let r = build(&mut lab);
    if let Err(e) = r {
        let _ = stop(&lab);
        return Err(e);
    }
    let (ua, pa) = lab.user.split_once(':').unwrap_or((&lab.user, ""));
    println!("duet lab: up in {} (namespaces {}-a, -b, -client, -net)", dir.display(), lab.name);
    for (id, n) in [(1u16, "A"), (2, "B")] {
        println!(
            "  node {n} in {} on {}: set {n} on //{}/set{}",
            lab.namespace(n),
            Layout::node_ip(id),
            Layout::set_address(id).ip(),
            n.to_ascii_lowercase()
        );
    }
    println!("  clients in {} on {CLIENT_IP}; user {ua}, password {pa}", lab.namespace("client"));
    println!("  try: duet lab exec -- smbclient //127.0.0.11/seta -U {ua}%{pa} -c ls");
    println!(
        "  then: duet lab status | kill A | freeze A | thaw A | start A | takeover A | giveback A | move A | stop  (--dir {})",
        dir.display()
    );
    Ok(())
}

/// The network, the storage folder, both nodes; waits until each serves its set.
fn build(lab: &mut LabFile) -> Result<(), String> {
    let hosts = [
        (lab.namespace("a"), Layout::node_ip(1)),
        (lab.namespace("b"), Layout::node_ip(2)),
        (lab.namespace("client"), CLIENT_IP),
    ];
    let hosts: Vec<(&str, Ipv4Addr)> = hosts.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    net::build(&lab.namespace("net"), &hosts)?;
    for d in ["storage/seta", "storage/setb", "storage/.duet", "a", "b"] {
        std::fs::create_dir_all(lab.dir.join(d)).map_err(|e| format!("{d}: {e}"))?;
    }
    for i in 0..lab.nodes.len() {
        let who = lab.nodes[i].node.clone();
        let (ns, nd) = (lab.namespace(&who), lab.node_dir(&who));
        nodes::start(&mut lab.nodes[i], &ns, &nd)?;
        lab.save()?;
    }
    for n in &lab.nodes {
        wait_serving(lab, n)?;
    }
    Ok(())
}

/// Waits (60 s at most) until `node` says it serves its own set.
fn wait_serving(lab: &LabFile, node: &NodeRecord) -> Result<(), String> {
    let socket = lab.node_dir(&node.node).join("state/admin.sock");
    let t0 = Instant::now();
    loop {
        let mut out = Vec::new();
        if crate::admin::client::status(&socket, true, &mut out).is_ok() {
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
            let sets = v["pair"]["sets"].as_array().cloned().unwrap_or_default();
            if sets.iter().any(|s| s["set"] == node.id && s["state"] == "serving") {
                return Ok(());
            }
        }
        if nodes::state(node) == nodes::State::Dead {
            return Err(format!(
                "node {} exited; its log is {}",
                node.node,
                lab.node_dir(&node.node).join("duet.log").display()
            ));
        }
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(format!("node {} does not serve its set after 60 s", node.node));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `duet lab exec`: runs `command` in a namespace, with this terminal.
fn exec(lab: &LabFile, who: &str, command: &[String]) -> Result<i32, String> {
    let ns = match who.to_ascii_lowercase().as_str() {
        "client" => lab.namespace("client"),
        "a" | "b" => lab.namespace(who),
        _ => return Err(format!("--in {who:?}: client, A or B")),
    };
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]);
    net::spawn_in(&mut cmd, &ns, false).map_err(|e| format!("namespace {ns}: {e}"))?;
    let status = cmd.status().map_err(|e| format!("{}: {e}", command[0]))?;
    Ok(status.code().unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)))
}

/// Ends the nodes the lab started and removes its namespaces.
fn stop(lab: &LabFile) -> Result<(), String> {
    for n in &lab.nodes {
        nodes::end(n);
    }
    let mut failed = Vec::new();
    for who in ["a", "b", "client", "net"] {
        if let Err(e) = net::remove(&lab.namespace(who)) {
            failed.push(e);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}
