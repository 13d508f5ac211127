//! The two frames a node sends when it takes a set's address (issue 14), built
//! here byte by byte and sent on raw sockets:
//!
//! - a **gratuitous ARP** ([RFC 826] request whose sender and target protocol
//!   addresses are both the set's address, [RFC 5227] 3 "ARP Announcement"):
//!   every host on the link that has the address in its neighbour table
//!   points it at this node's hardware address;
//! - a **tickle ACK** ([RFC 793] 3.4, [RFC 5961] 4): a bare TCP ACK from the
//!   set's address and port to a client of the old owner, with sequence and
//!   acknowledgement numbers 0, out of the connection's window. The client's
//!   kernel answers it with an ACK that carries its real numbers; that answer
//!   reaches this node (the address is here now), whose kernel has no such
//!   connection and resets it ([RFC 793] 3.4, "Reset Generation"). The client
//!   sees the reset at once and reconnects, instead of waiting for a frozen
//!   node that its kernel still believed in. CTDB does the same.
//!
//! Encoding is plain code ([`arp_announcement`], [`tcp_ack`]); [`send_arp`]
//! and [`send_tcp`] are the only I/O.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `ETH_P_ARP`.
const ETH_P_ARP: u16 = 0x0806;
/// `ETH_P_IP`.
const ETH_P_IP: u16 = 0x0800;
/// ARP operation: request ([RFC 826]).
const ARP_REQUEST: u16 = 0x0001;
/// TCP flag ACK ([RFC 793] 3.1).
const TCP_ACK: u8 = 0x10;

/// An ARP announcement of `ip` at `mac` ([RFC 5227] 3): a request whose sender
/// and target protocol addresses are both `ip`, target hardware address zero.
///
/// Format: `{ htype u16 = 1 | ptype u16 = 0x0800 | hlen u8 = 6 | plen u8 = 4 |
/// oper u16 = 1 | sha [6] | spa [4] | tha [6] = 0 | tpa [4] }`, big-endian.
pub fn arp_announcement(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut f = [0u8; 28];
    f[0..2].copy_from_slice(&1u16.to_be_bytes());
    f[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes());
    f[4] = 6;
    f[5] = 4;
    f[6..8].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    f[8..14].copy_from_slice(&mac);
    f[14..18].copy_from_slice(&ip.octets());
    f[24..28].copy_from_slice(&ip.octets());
    f
}

/// A bare TCP ACK from `src` to `dst` with sequence number `seq` and
/// acknowledgement number `ack`, its checksum over the IPv4 pseudo-header
/// ([RFC 793] 3.1).
///
/// Format: `{ sport u16 | dport u16 | seq u32 | ack u32 | offset u8 = 5 << 4 |
/// flags u8 = ACK | window u16 | checksum u16 | urgent u16 = 0 }`, big-endian.
pub fn tcp_ack(src: SocketAddrV4, dst: SocketAddrV4, seq: u32, ack: u32) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&src.port().to_be_bytes());
    h[2..4].copy_from_slice(&dst.port().to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[8..12].copy_from_slice(&ack.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = TCP_ACK;
    h[14..16].copy_from_slice(&1234u16.to_be_bytes());
    let sum = checksum(*src.ip(), *dst.ip(), &h);
    h[16..18].copy_from_slice(&sum.to_be_bytes());
    h
}

/// The TCP checksum of `segment` (its checksum field zero) between `src` and
/// `dst`: the ones' complement of the ones' complement sum of the
/// pseudo-header `{ src | dst | 0 | 6 | length }` and the segment.
fn checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for pair in b.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u32::from(*b));
            sum += hi | lo;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, 6]);
    add(&(segment.len() as u16).to_be_bytes());
    add(segment);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Opens a socket, as an owned descriptor.
fn socket(domain: libc::c_int, kind: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes plain integers; a non-negative result is a new
    // descriptor that nothing else owns.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `payload` to `addr` (a `sockaddr_*` of `len` bytes) on `fd`.
fn send_to<A>(fd: &OwnedFd, payload: &[u8], addr: &A) -> io::Result<()> {
    let len = std::mem::size_of::<A>() as libc::socklen_t;
    // SAFETY: `payload` is valid for its length, `addr` points to a live
    // sockaddr of `len` bytes, and `fd` is an open socket.
    let n = unsafe {
        libc::sendto(fd.as_raw_fd(), payload.as_ptr().cast(), payload.len(), 0, (addr as *const A).cast(), len)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Broadcasts `frame` (an ARP payload) on the interface `index`: the kernel
/// adds the Ethernet header (this interface's address, to everyone).
pub fn send_arp(index: u32, frame: &[u8]) -> io::Result<()> {
    let fd = socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(ETH_P_ARP.to_be()))?;
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    send_to(&fd, frame, &to)
}

/// Sends `segment` (a TCP header) from `src`'s address to `dst`: the kernel
/// adds the IPv4 header and routes it. `src` must be an address of this host.
pub fn send_tcp(src: SocketAddrV4, dst: SocketAddrV4, segment: &[u8]) -> io::Result<()> {
    let fd = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP)?;
    let sin = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let from = sin(src);
    // SAFETY: `from` is a live sockaddr_in of the length given; `fd` is open.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const from).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    send_to(&fd, segment, &sin(dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_names_the_address_twice_and_no_target_hardware() {
        let f = arp_announcement([2, 0, 0, 0, 0, 9], Ipv4Addr::new(127, 0, 0, 11));
        assert_eq!(&f[0..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&f[8..14], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(&f[14..18], &[127, 0, 0, 11]);
        assert_eq!(&f[18..24], &[0; 6]);
        assert_eq!(&f[24..28], &[127, 0, 0, 11]);
    }

    /// The checksum of a segment that carries its own checksum sums to zero
    /// (all ones before the complement), as a receiver checks it.
    #[test]
    fn a_tickle_carries_a_checksum_a_receiver_accepts() {
        let src = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 11), 445);
        let dst = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 100), 40530);
        let h = tcp_ack(src, dst, 0, 0);
        assert_eq!(&h[0..4], &[0x01, 0xbd, 0x9e, 0x52]);
        assert_eq!(h[12], 0x50);
        assert_eq!(h[13], TCP_ACK);
        assert_eq!(checksum(*src.ip(), *dst.ip(), &h), 0);
        let mut other = h;
        other[5] ^= 1;
        assert_ne!(checksum(*src.ip(), *dst.ip(), &other), 0);
    }

    /// A worked example: the sum of a known header, computed by hand.
    #[test]
    fn the_checksum_folds_its_carries() {
        // Pseudo-header 10.0.0.1 -> 10.0.0.2, then a 4-byte segment 0xffff 0x0001:
        // 0x0a00+0x0001+0x0a00+0x0002+0x0006+0x0004+0xffff+0x0001 = 0x1_140d,
        // folded 0x140e, complemented 0xebf1.
        let s = checksum(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), &[0xff, 0xff, 0x00, 0x01]);
        assert_eq!(s, 0xebf1);
    }
}
