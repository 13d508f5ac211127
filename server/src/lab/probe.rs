//! `duet lab status`: what each node's process is doing, which namespaces
//! hold each set's address and listen on it, and which node the client
//! namespace's neighbour table sends the address to, so that "never two
//! servers answering one address" can be checked from outside.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use super::nodes::{self, State};
use super::{net, LabFile, Layout};

/// The lab as `duet lab status --json` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabStatus {
    pub name: String,
    pub dir: String,
    pub nodes: Vec<NodeStatus>,
    pub sets: Vec<SetStatus>,
}

/// One node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    /// "A" or "B".
    pub node: String,
    pub namespace: String,
    pub pid: i32,
    pub state: State,
    /// The addresses on its `eth0` (its own, and the set addresses it holds).
    pub addresses: Vec<String>,
    /// The set addresses its process listens on.
    pub listening: Vec<String>,
    pub mac: Option<String>,
}

/// One set's address.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetStatus {
    /// "A" (127.0.0.11) or "B" (127.0.0.12): the set's home node.
    pub set: String,
    pub address: String,
    /// The nodes whose namespace holds the address.
    pub held_by: Vec<String>,
    /// The nodes whose process listens on it.
    pub listening: Vec<String>,
    /// The nodes that would answer a client there: address held, listening,
    /// running. Never more than one.
    pub answering: Vec<String>,
    /// The node the client namespace's neighbour entry for it points at.
    pub client_sees: Option<String>,
}

/// The TCP sockets listening in process `pid`'s namespace on one of `addrs`.
fn listening(pid: i32, addrs: &[SocketAddrV4]) -> Vec<SocketAddrV4> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")) else { return Vec::new() };
    let mut found = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st ...; st 0A is LISTEN.
        if f.get(3) != Some(&"0A") {
            continue;
        }
        let Some((ip, port)) = f.get(1).and_then(|a| a.split_once(':')) else { continue };
        let (Ok(ip), Ok(port)) = (u32::from_str_radix(ip, 16), u16::from_str_radix(port, 16)) else { continue };
        // The kernel prints the address's network-order bytes as one
        // native-order number.
        let a = SocketAddrV4::new(Ipv4Addr::from(ip.to_ne_bytes()), port);
        if addrs.contains(&a) {
            found.push(a);
        }
    }
    found
}

/// The lab's status now.
pub fn status(lab: &LabFile) -> LabStatus {
    let sets = [Layout::set_address(1), Layout::set_address(2)];
    let v4: Vec<SocketAddrV4> = sets
        .iter()
        .filter_map(|a| match a {
            std::net::SocketAddr::V4(v) => Some(*v),
            _ => None,
        })
        .collect();
    let mut out_nodes = Vec::new();
    for n in &lab.nodes {
        let ns = lab.namespace(&n.node);
        let state = nodes::state(n);
        let listen = if state == State::Dead { Vec::new() } else { listening(n.pid, &v4) };
        out_nodes.push(NodeStatus {
            node: n.node.clone(),
            namespace: ns.clone(),
            pid: n.pid,
            state,
            addresses: net::addresses(&ns).iter().map(ToString::to_string).collect(),
            listening: listen.iter().map(ToString::to_string).collect(),
            mac: net::mac(&ns),
        });
    }
    let client = lab.namespace("client");
    let out_sets = v4
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let ip = a.ip().to_string();
            let held_by: Vec<String> =
                out_nodes.iter().filter(|n| n.addresses.contains(&ip)).map(|n| n.node.clone()).collect();
            let listening: Vec<String> =
                out_nodes.iter().filter(|n| n.listening.contains(&a.to_string())).map(|n| n.node.clone()).collect();
            let answering = out_nodes
                .iter()
                .filter(|n| held_by.contains(&n.node) && listening.contains(&n.node) && n.state == State::Running)
                .map(|n| n.node.clone())
                .collect();
            let seen = net::neighbour(&client, *a.ip());
            let client_sees =
                seen.and_then(|m| out_nodes.iter().find(|n| n.mac.as_deref() == Some(&m)).map(|n| n.node.clone()));
            SetStatus {
                set: if i == 0 { "A" } else { "B" }.into(),
                address: a.to_string(),
                held_by,
                listening,
                answering,
                client_sees,
            }
        })
        .collect();
    LabStatus { name: lab.name.clone(), dir: lab.dir.display().to_string(), nodes: out_nodes, sets: out_sets }
}

/// `duet lab status` as text.
pub fn render(st: &LabStatus, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    writeln!(out, "lab {} in {}", st.name, st.dir)?;
    for n in &st.nodes {
        writeln!(
            out,
            "  node {} ({}): pid {}, {:?}; addresses {}; listening on {}",
            n.node,
            n.namespace,
            n.pid,
            n.state,
            n.addresses.join(" "),
            if n.listening.is_empty() { "no set address".to_string() } else { n.listening.join(" ") }
        )?;
    }
    for s in &st.sets {
        writeln!(
            out,
            "  set {} on {}: held by [{}], listening [{}], answering [{}], the client sends to {}",
            s.set,
            s.address,
            s.held_by.join(" "),
            s.listening.join(" "),
            s.answering.join(" "),
            s.client_sees.as_deref().unwrap_or("nobody yet")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_read_from_proc_net_tcp() {
        // This process's own namespace: a listener on 127.0.0.1.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(a) = l.local_addr().unwrap() else { panic!() };
        let other = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 1);
        assert_eq!(listening(std::process::id() as i32, &[a, other]), vec![a]);
    }
}
