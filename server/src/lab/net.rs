//! The lab's network: a namespace per node and one for clients, each with an
//! `eth0` on one bridge (in a namespace of its own, so that nothing is added
//! to the host's network), and 127/8 made routable between them.
//!
//! Linux treats 127/8 as local on `lo` and drops it elsewhere as martian. In
//! each namespace the lab sets `route_localnet` (127/8 may leave and enter on
//! other interfaces, and ARP answers for it) and narrows the local route of
//! `lo` from 127.0.0.0/8 to 127.0.0.1, so that 127.0.0.11 is just another
//! address on the link, held by whichever node added it.
//!
//! Links and addresses are made with `ip` (iproute2); sysctls are written
//! from a thread that entered the namespace ([`in_netns`]).

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";
/// Each namespace's interface on the bridge.
pub const IFACE: &str = "eth0";
/// The bridge, in the wire namespace.
const BRIDGE: &str = "br0";

/// The path of namespace `name`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Whether namespace `name` exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Runs `ip ARGS`; its error output on failure.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Enters namespace `name` on this thread.
fn enter(name: &str) -> io::Result<()> {
    let f = File::open(path(name))?;
    // SAFETY: setns(2) on an open namespace file; it changes only this
    // thread's network namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a thread of its own inside namespace `name`.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let name = name.to_string();
    std::thread::spawn(move || {
        enter(&name)?;
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("a thread in the namespace panicked"))?
}

/// Makes `cmd` start inside namespace `name` (and, with `detach`, in a
/// session of its own, so that it outlives the terminal).
pub fn spawn_in(cmd: &mut Command, name: &str, detach: bool) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    let ns = File::open(path(name))?;
    // SAFETY: the closure runs in the child between fork and exec, and calls
    // only setns(2) and setsid(2), which are async-signal-safe; `ns` stays
    // open in the parent until the command is dropped, and is closed in the
    // child at exec (CLOEXEC).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            if detach && libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Makes the lab's namespaces: the wire (`wire`, with the bridge) and each of
/// `hosts` with its address, its `eth0` on the bridge, and 127/8 routable.
pub fn build(wire: &str, hosts: &[(&str, Ipv4Addr)]) -> Result<(), String> {
    ip(&["netns", "add", wire])?;
    ip(&["-n", wire, "link", "add", BRIDGE, "type", "bridge"])?;
    ip(&["-n", wire, "link", "set", BRIDGE, "up"])?;
    for (i, (ns, addr)) in hosts.iter().enumerate() {
        let port = format!("port{i}");
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "add", IFACE, "type", "veth", "peer", "name", &port, "netns", wire])?;
        ip(&["-n", wire, "link", "set", "dev", &port, "master", BRIDGE, "up"])?;
        in_netns(ns, || {
            for dev in ["all", "default", "lo", IFACE] {
                std::fs::write(format!("/proc/sys/net/ipv4/conf/{dev}/route_localnet"), "1")?;
            }
            Ok::<(), io::Error>(())
        })
        .and_then(|r| r)
        .map_err(|e| format!("route_localnet in {ns}: {e}"))?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "set", IFACE, "up"])?;
        ip(&["-n", ns, "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local"])?;
        ip(&["-n", ns, "route", "replace", "local", "127.0.0.1", "dev", "lo", "table", "local"])?;
        ip(&["-n", ns, "addr", "add", &format!("{addr}/8"), "dev", IFACE])?;
    }
    Ok(())
}

/// Deletes namespace `name` (with its links) when it exists.
pub fn remove(name: &str) -> Result<(), String> {
    if !exists(name) {
        return Ok(());
    }
    ip(&["netns", "del", name]).map(|_| ())
}

/// The IPv4 addresses on `eth0` in namespace `name`.
pub fn addresses(name: &str) -> Vec<Ipv4Addr> {
    let Ok(out) = ip(&["-n", name, "-o", "-4", "addr", "show", "dev", IFACE]) else { return Vec::new() };
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|x| *x == "inet")?;
            w.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

/// The hardware address of `eth0` in namespace `name`.
pub fn mac(name: &str) -> Option<String> {
    let out = ip(&["-n", name, "-o", "link", "show", "dev", IFACE]).ok()?;
    let mut w = out.split_whitespace();
    w.find(|x| *x == "link/ether")?;
    w.next().map(str::to_string)
}

/// The hardware address namespace `name`'s neighbour table holds for `addr`.
pub fn neighbour(name: &str, addr: Ipv4Addr) -> Option<String> {
    let out = ip(&["-n", name, "neigh", "show", &addr.to_string(), "dev", IFACE]).ok()?;
    let mut w = out.split_whitespace();
    w.find(|x| *x == "lladdr")?;
    w.next().map(str::to_string)
}
