//! Adding and removing an IPv4 address on an interface over rtnetlink
//! (`RTM_NEWADDR`, `RTM_DELADDR`, rtnetlink(7)), and finding an interface's
//! index and hardware address: what `ip addr add` and `ip link` do, without
//! running them.
//!
//! Encoding is plain code ([`addr_request`]); [`change`] and [`Interface::find`]
//! do the I/O.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `RTM_NEWADDR`.
pub const RTM_NEWADDR: u16 = 20;
/// `RTM_DELADDR`.
pub const RTM_DELADDR: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x001;
const NLM_F_ACK: u16 = 0x004;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// `RT_SCOPE_HOST`: what `ip` gives a 127/8 address.
const RT_SCOPE_HOST: u8 = 254;
const RT_SCOPE_UNIVERSE: u8 = 0;

/// A network interface of this namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

impl Interface {
    /// The interface called `name`: its index and hardware address.
    pub fn find(name: &str) -> io::Result<Interface> {
        let c = std::ffi::CString::new(name).map_err(|_| io::Error::other("an interface name with a NUL"))?;
        if name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::other(format!("interface name {name:?} is too long")));
        }
        // SAFETY: `c` is a NUL-terminated string that lives across the call.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if index == 0 {
            return Err(io::Error::other(format!("no interface {name:?} here: {}", io::Error::last_os_error())));
        }
        let fd = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
        // SAFETY: ifreq is plain data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: SIOCGIFHWADDR reads the name from `req` and writes the
        // hardware address into it; `req` lives across the call.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut req) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: SIOCGIFHWADDR filled in the union's `ifru_hwaddr` member.
        let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (d, s) in mac.iter_mut().zip(hw.sa_data.iter()) {
            *d = *s as u8;
        }
        Ok(Interface { name: name.to_string(), index, mac })
    }
}

/// An `RTM_NEWADDR` or `RTM_DELADDR` request for `ip/32` on interface `index`.
///
/// Format: `{ nlmsghdr: len u32 | type u16 | flags u16 | seq u32 | pid u32 = 0 }
/// { ifaddrmsg: family u8 = AF_INET | prefixlen u8 = 32 | flags u8 = 0 | scope u8 |
/// index u32 } { rtattr IFA_LOCAL: len u16 = 8 | type u16 | ip [4] } { rtattr
/// IFA_ADDRESS: the same }`, in host byte order except the addresses.
pub fn addr_request(kind: u16, index: u32, ip: Ipv4Addr, seq: u32) -> Vec<u8> {
    let flags = match kind {
        RTM_NEWADDR => NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        _ => NLM_F_REQUEST | NLM_F_ACK,
    };
    let scope = if ip.is_loopback() { RT_SCOPE_HOST } else { RT_SCOPE_UNIVERSE };
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(&40u32.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[libc::AF_INET as u8, 32, 0, scope]);
    m.extend_from_slice(&index.to_ne_bytes());
    for attr in [IFA_LOCAL, IFA_ADDRESS] {
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&attr.to_ne_bytes());
        m.extend_from_slice(&ip.octets());
    }
    m
}

/// The errno of the kernel's answer to request `seq` (0: done), from one
/// netlink datagram; `None` when it holds no answer to `seq`.
fn answer(buf: &[u8], seq: u32) -> Option<i32> {
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().ok()?);
        let s = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().ok()?);
        if len < 16 || at + len > buf.len() {
            return None;
        }
        if kind == NLMSG_ERROR && s == seq && len >= 20 {
            let e = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().ok()?);
            return Some(-e);
        }
        at += (len + 3) & !3;
    }
    None
}

/// Sends `kind` (add or delete) for `ip/32` on interface `index` and waits for
/// the kernel's answer; `Ok(false)` when there was nothing to do (the address
/// was there already, or was not there).
pub fn change(kind: u16, index: u32, ip: Ipv4Addr) -> io::Result<bool> {
    let fd = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    let seq = std::process::id() ^ (kind as u32) << 24;
    let req = addr_request(kind, index, ip, seq);
    // SAFETY: sockaddr_nl is plain data; all zeroes is a valid value (pid 0:
    // the kernel).
    let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `req` is valid for its length and `to` is a live sockaddr_nl.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const to).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        match answer(&buf[..n as usize], seq) {
            None => continue,
            Some(0) => return Ok(true),
            Some(e) if kind == RTM_NEWADDR && e == libc::EEXIST => return Ok(false),
            Some(e) if kind == RTM_DELADDR && e == libc::EADDRNOTAVAIL => return Ok(false),
            Some(e) => return Err(io::Error::from_raw_os_error(e)),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_add_request_is_exclusive_and_names_the_address_twice() {
        let m = addr_request(RTM_NEWADDR, 7, Ipv4Addr::new(127, 0, 0, 11), 5);
        assert_eq!(m.len(), 40);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWADDR);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 0x605);
        assert_eq!(&m[16..20], &[libc::AF_INET as u8, 32, 0, RT_SCOPE_HOST]);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(&m[28..32], &[127, 0, 0, 11]);
        assert_eq!(&m[36..40], &[127, 0, 0, 11]);
        let d = addr_request(RTM_DELADDR, 7, Ipv4Addr::new(10, 1, 2, 3), 5);
        assert_eq!(u16::from_ne_bytes(d[6..8].try_into().unwrap()), 0x005);
        assert_eq!(d[19], RT_SCOPE_UNIVERSE);
    }

    #[test]
    fn the_answer_to_our_request_is_found_among_others() {
        let mut buf = Vec::new();
        // Another request's answer, then ours (errno EEXIST, negated).
        for (seq, err) in [(4u32, 0i32), (5, -libc::EEXIST)] {
            buf.extend_from_slice(&36u32.to_ne_bytes());
            buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&err.to_ne_bytes());
            buf.extend_from_slice(&[0; 16]);
        }
        assert_eq!(answer(&buf, 5), Some(libc::EEXIST));
        assert_eq!(answer(&buf, 4), Some(0));
        assert_eq!(answer(&buf, 6), None);
        assert_eq!(answer(&buf[..10], 5), None);
    }
}
