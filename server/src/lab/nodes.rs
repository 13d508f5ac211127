//! The lab's two `duet serve` processes: their arguments, starting one inside
//! its namespace, and signalling it (only the process the lab started: its
//! pid and its start time, from `/proc`, must both match).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{net, Layout};

/// One node as the lab file records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRecord {
    /// "A" or "B".
    pub node: String,
    /// Its pair node id (1 or 2).
    pub id: u16,
    /// Its `duet serve` arguments.
    pub args: Vec<String>,
    /// The running process (0: none started).
    pub pid: i32,
    /// Its start time in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start: u64,
}

/// What a node's process is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Frozen,
    Dead,
}

/// `duet serve` arguments for node `id` (1: A, 2: B) of a lab laid out as `l`.
pub fn args(l: &Layout, id: u16, extra: &[String]) -> Vec<String> {
    let partner = 3 - id;
    let set = |n: u16| if n == 1 { "seta" } else { "setb" };
    let storage = l.dir.join("storage");
    let mut v: Vec<String> = vec!["serve".into()];
    for s in ["seta", "setb"] {
        v.extend(["--share".into(), format!("{s}={}", storage.join(s).display())]);
    }
    v.extend(
        [
            "--user",
            &l.user,
            "--journal",
            "nvram",
            "--journal-size",
            "16M",
            "--state-dir",
            "state",
            "--pair-cluster",
            "7",
            "--pair-node",
            &id.to_string(),
            "--pair-partner-node",
            &partner.to_string(),
            "--pair-incarnation",
            "1",
            "--pair-listen",
            &format!("{}:{}", Layout::node_ip(id), super::INTERCONNECT_PORT),
            "--pair-partner",
            &format!("{}:{}", Layout::node_ip(partner), super::INTERCONNECT_PORT),
            "--pair-storage",
            &storage.join(".duet").display().to_string(),
            "--pair-address",
            &Layout::set_address(id).to_string(),
            "--pair-shares",
            set(id),
            "--pair-partner-address",
            &Layout::set_address(partner).to_string(),
            "--pair-partner-shares",
            set(partner),
            "--pair-interface",
            net::IFACE,
        ]
        .map(String::from),
    );
    v.extend(extra.iter().cloned());
    v
}

/// Starts `node` in namespace `ns`, in `dir` (its state directory and log,
/// `duet.log`), detached; records its pid and start time.
pub fn start(node: &mut NodeRecord, ns: &str, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("duet.log"))
        .map_err(|e| format!("{}: {e}", dir.join("duet.log").display()))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the duet binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(&node.args).current_dir(dir).stdin(Stdio::null()).stdout(log).stderr(err);
    net::spawn_in(&mut cmd, ns, true).map_err(|e| format!("namespace {ns}: {e}"))?;
    let child = cmd.spawn().map_err(|e| format!("cannot start node {}: {e}", node.node))?;
    node.pid = child.id() as i32;
    node.start = start_time(node.pid).unwrap_or(0);
    // Not waited for: it outlives this command (the lab's later commands
    // signal it by pid).
    drop(child);
    Ok(())
}

/// The start time of process `pid` (`/proc/PID/stat` field 22), and its state
/// letter.
fn stat(pid: i32) -> Option<(u64, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which ends with the last ')'.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    // Field 3 is f[0]; field 22 is f[19].
    Some((f.get(19)?.parse().ok()?, state))
}

fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(t, _)| t)
}

/// Whether `node`'s process is the one the lab started and is not gone.
fn ours(node: &NodeRecord) -> bool {
    node.pid > 0 && stat(node.pid).is_some_and(|(t, s)| t == node.start && s != 'Z' && s != 'X')
}

/// What `node`'s process is doing. Frozen: every thread stopped.
pub fn state(node: &NodeRecord) -> State {
    if !ours(node) {
        return State::Dead;
    }
    if all_stopped(node.pid) {
        State::Frozen
    } else {
        State::Running
    }
}

/// Whether every thread of `pid` is stopped (a SIGSTOP takes effect on each
/// thread when it next leaves the kernel).
fn all_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.filter_map(Result::ok).all(|t| {
        let s = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['T', 't']))
    })
}

/// Sends `sig` to `node`'s process, when it is the lab's.
fn signal(node: &NodeRecord, sig: libc::c_int) -> Result<(), String> {
    if !ours(node) {
        return Err(format!("node {} is not running", node.node));
    }
    // SAFETY: kill(2) on the process the lab started (pid and start time match).
    if unsafe { libc::kill(node.pid, sig) } != 0 {
        return Err(format!("node {}: {}", node.node, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Kills `node` (SIGKILL) and waits until it is gone.
pub fn kill(node: &NodeRecord) -> Result<(), String> {
    signal(node, libc::SIGKILL)?;
    until(node, "gone", |n| !ours(n))
}

/// Freezes `node` (SIGSTOP) and waits until every thread is stopped.
pub fn freeze(node: &NodeRecord) -> Result<(), String> {
    signal(node, libc::SIGSTOP)?;
    until(node, "frozen", |n| all_stopped(n.pid))
}

/// Thaws `node` (SIGCONT).
pub fn thaw(node: &NodeRecord) -> Result<(), String> {
    signal(node, libc::SIGCONT)
}

/// Ends `node` for good (thawed first, so that the kill is not held), when it
/// is the lab's.
pub fn end(node: &NodeRecord) {
    if ours(node) {
        let _ = signal(node, libc::SIGCONT);
        let _ = kill(node);
    }
}

fn until(node: &NodeRecord, what: &str, done: impl Fn(&NodeRecord) -> bool) -> Result<(), String> {
    let t0 = Instant::now();
    while !done(node) {
        if t0.elapsed() > Duration::from_secs(30) {
            return Err(format!("node {} never became {what}", node.node));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
