//! A share set's address on this node (issue 14): added to the node's
//! interface when the node starts serving the set, announced with a
//! gratuitous ARP, removed when it lets the set go; and after a takeover,
//! the old owner's clients pushed off with tickle ACKs.
//!
//! Only with an interface configured (`--pair-interface`, `interface` in
//! `[pair]`, as `duet lab` gives its nodes): the address is a real one that
//! moves between hosts (network namespaces in the lab). Without one, every
//! function here does nothing: both nodes share one network stack, and any
//! 127.x address can be bound there without being added.
//!
//! # Why the tickle
//!
//! A frozen node's kernel keeps its TCP connections and goes on
//! acknowledging them, so a client waiting for an answer waits for its own
//! timeout (30 s and more). When its partner has taken the set (added the
//! address, announced it, bound it), it sends each client of the old owner
//! an ACK out of the connection's window from the set's address and port
//! ([`super::frames::tcp_ack`]); the client's kernel answers with a proper
//! ACK, which now reaches the new owner, whose kernel resets it. The client
//! reconnects at once. The list of the old owner's connections comes from
//! the shared storage folder ([`super::conns`]).
//!
//! # Why a node that hands a set over keeps its address a moment
//!
//! A node that hands a set over (an elective takeover, a giveback) ends its
//! clients' connections at once, and they reconnect at once: to the address's
//! old hardware address, which their neighbour tables still hold until the
//! taker's announcement. Were the address gone, that SYN would meet a node
//! that drops it (a host unreachable is no error for a SYN), and the client's
//! kernel would send it again only after a second. So the handing node keeps
//! the address for [`HANDED_GRACE`] with nothing listening on it: its kernel
//! refuses the SYN with a reset, and the client tries again at once, by then
//! (the taker binds within tens of milliseconds) towards the taker.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use super::frames;
use super::netlink::{self, Interface};

/// How many times a tickle is sent to each connection, and an announcement
/// made (a frame lost on the way is not answered; more are harmless).
const REPEAT: usize = 2;

/// How long a node that handed a set over keeps the set's address, with
/// nothing listening on it (see the module doc).
pub const HANDED_GRACE: Duration = Duration::from_secs(1);

/// The set addresses this node holds on its interface.
#[derive(Debug, Default)]
pub struct Addresses {
    /// The interface the addresses go on; `None`: one network stack for both
    /// nodes, nothing to do.
    iface: Option<Interface>,
    /// The addresses this process added (removed again at [`Self::release_all`]).
    held: Mutex<Vec<Ipv4Addr>>,
    /// The addresses to remove after [`HANDED_GRACE`], each with the number
    /// of its removal: taken again meanwhile, it stays.
    later: Arc<Mutex<HashMap<Ipv4Addr, u64>>>,
}

impl Addresses {
    /// The addresses of a node whose set addresses go on interface `name`
    /// (`None`: nothing to do, outside the lab).
    pub fn new(name: Option<&str>) -> io::Result<Addresses> {
        let iface = name.map(Interface::find).transpose()?;
        Ok(Addresses { iface, held: Mutex::new(Vec::new()), later: Arc::default() })
    }

    /// Whether the addresses move (an interface is configured).
    pub fn moves(&self) -> bool {
        self.iface.is_some()
    }

    /// Adds `addr`'s address to the interface (when it is not there already)
    /// and announces it with a gratuitous ARP, so that every neighbour sends
    /// its packets for the address here. Before the set's listener is bound.
    pub fn take(&self, addr: SocketAddr) -> io::Result<()> {
        let (Some(iface), IpAddr::V4(ip)) = (&self.iface, addr.ip()) else { return Ok(()) };
        self.later.lock().unwrap_or_else(|e| e.into_inner()).remove(&ip);
        let added = netlink::change(netlink::RTM_NEWADDR, iface.index, ip)?;
        self.held.lock().unwrap_or_else(|e| e.into_inner()).push(ip);
        let frame = frames::arp_announcement(iface.mac, ip);
        for _ in 0..REPEAT {
            frames::send_arp(iface.index, &frame)?;
        }
        info!(%ip, iface = %iface.name, added, "pair: the set's address is ours: added and announced");
        Ok(())
    }

    /// Removes `addr`'s address from the interface, when it is there: this
    /// node no longer serves the set (a step-down, a stop, or at start for a
    /// set it does not hold).
    pub fn release(&self, addr: SocketAddr) {
        let (Some(iface), IpAddr::V4(ip)) = (&self.iface, addr.ip()) else { return };
        self.held.lock().unwrap_or_else(|e| e.into_inner()).retain(|h| *h != ip);
        self.later.lock().unwrap_or_else(|e| e.into_inner()).remove(&ip);
        match netlink::change(netlink::RTM_DELADDR, iface.index, ip) {
            Ok(true) => info!(%ip, iface = %iface.name, "pair: the set's address released"),
            Ok(false) => {}
            Err(e) => warn!(%ip, iface = %iface.name, "pair: cannot remove the set's address: {e}"),
        }
    }

    /// [`Self::release`] after [`HANDED_GRACE`] (a set handed over: see the
    /// module doc), unless the set's address is taken again meanwhile. The
    /// caller has closed the set's listener.
    pub fn release_after_grace(&self, addr: SocketAddr) {
        let (Some(iface), IpAddr::V4(ip)) = (&self.iface, addr.ip()) else { return };
        let number = {
            let mut later = self.later.lock().unwrap_or_else(|e| e.into_inner());
            let n = later.values().max().copied().unwrap_or(0) + 1;
            later.insert(ip, n);
            n
        };
        let (later, index, name) = (self.later.clone(), iface.index, iface.name.clone());
        std::thread::spawn(move || {
            std::thread::sleep(HANDED_GRACE);
            let mut pending = later.lock().unwrap_or_else(|e| e.into_inner());
            if pending.get(&ip) != Some(&number) {
                return;
            }
            pending.remove(&ip);
            match netlink::change(netlink::RTM_DELADDR, index, ip) {
                Ok(true) => info!(%ip, iface = %name, "pair: the handed set's address released"),
                Ok(false) => {}
                Err(e) => warn!(%ip, iface = %name, "pair: cannot remove the set's address: {e}"),
            }
        });
        self.held.lock().unwrap_or_else(|e| e.into_inner()).retain(|h| *h != ip);
    }

    /// Removes every address this process added (it stops), those it was to
    /// remove after a grace too.
    pub fn release_all(&self) {
        let mut held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()));
        held.extend(std::mem::take(&mut *self.later.lock().unwrap_or_else(|e| e.into_inner())).into_keys());
        for ip in held {
            self.release(SocketAddr::new(IpAddr::V4(ip), 0));
        }
    }

    /// Sends a tickle ACK from the set's address `local` to each of the old
    /// owner's `clients` (after [`Self::take`] and the bind): their kernels
    /// answer, this node's kernel resets them, and they reconnect here.
    /// Returns how many were sent.
    pub fn tickle(&self, local: SocketAddr, clients: &[SocketAddr]) -> usize {
        let (Some(_), SocketAddr::V4(from)) = (&self.iface, local) else { return 0 };
        let mut sent = 0;
        for c in clients {
            let SocketAddr::V4(to) = c else { continue };
            if let Err(e) = tickle_one(from, *to) {
                warn!(client = %c, "pair: cannot send a tickle ACK: {e}");
                continue;
            }
            sent += 1;
        }
        if sent > 0 {
            info!(%local, sent, "pair: tickle ACKs sent to the old owner's clients");
        }
        sent
    }
}

/// One tickle, [`REPEAT`] times.
fn tickle_one(from: SocketAddrV4, to: SocketAddrV4) -> io::Result<()> {
    let segment = frames::tcp_ack(from, to, 0, 0);
    for _ in 0..REPEAT {
        frames::send_tcp(from, to, &segment)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outside the lab nothing is added, announced, removed or tickled.
    #[test]
    fn without_an_interface_nothing_is_done() {
        let a = Addresses::new(None).unwrap();
        assert!(!a.moves());
        let addr: SocketAddr = "127.0.1.1:4450".parse().unwrap();
        a.take(addr).unwrap();
        assert!(a.held.lock().unwrap().is_empty());
        assert_eq!(a.tickle(addr, &["127.0.0.1:5000".parse().unwrap()]), 0);
        a.release(addr);
        a.release_all();
    }

    #[test]
    fn an_interface_that_is_not_there_is_an_error() {
        let e = Addresses::new(Some("no-such-if0")).unwrap_err();
        assert!(e.to_string().contains("no interface"), "{e}");
    }
}
