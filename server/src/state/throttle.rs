//! Failed logons slowed down per client address.
//!
//! Password guessing was bounded only by the network: over a thousand wrong
//! passwords a second on one connection. The table here counts failed
//! logons per client address; once an address has had
//! `login_failures_before_delay` of them (each within
//! `login_failure_window_s` of the one before), every further logon from it
//! is answered only after a wait: 100 ms, doubling with each further
//! failure, up to `login_failure_delay_max_ms` ([`crate::config::Limits`]).
//! A quiet address starts afresh.
//!
//! A successful logon from such an address waits just as long (without
//! adding to the count): were only failures slow, a guesser could give up
//! on any answer that does not come at once and try the next password on
//! another connection. Nobody is ever locked out: the right password still
//! gets in, at worst after the longest wait. The wait happens in the
//! connection's own task (a timer, not a blocked thread), so one connection
//! makes one guess at a time; how many connections an address may hold is
//! bounded elsewhere, and each closes after
//! `login_failures_per_connection` failures.
//!
//! IPv6 addresses count by /64 (one host usually holds a whole /64), an
//! IPv4-mapped address as its IPv4 address. The table holds at most
//! [`MAX_ADDRESSES`]; when full, stale entries go first, then the one
//! quiet the longest. Sans-IO: the caller passes the time.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::config::Limits;

/// Addresses the table remembers at most.
pub const MAX_ADDRESSES: usize = 4096;
/// The first wait, doubled with each further failure.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);

/// Failed logons by client address.
#[derive(Debug)]
pub struct LoginThrottle {
    before_delay: u32,
    max_delay: Duration,
    window: Duration,
    by_addr: HashMap<IpAddr, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures in a row, each within the window of the one before.
    failures: u32,
    /// When the last one was.
    last: Instant,
}

impl LoginThrottle {
    pub fn new(limits: &Limits) -> LoginThrottle {
        LoginThrottle {
            before_delay: limits.login_failures_before_delay,
            max_delay: Duration::from_millis(limits.login_failure_delay_max_ms),
            window: Duration::from_secs(limits.login_failure_window_s),
            by_addr: HashMap::new(),
        }
    }

    /// Records a failed logon from `addr` at `now`; returns how long its
    /// answer waits.
    pub fn failed(&mut self, addr: IpAddr, now: Instant) -> Duration {
        let key = key(addr);
        let failures = match self.current(key, now) {
            Some(n) => n.saturating_add(1),
            None => {
                self.make_room(now);
                1
            }
        };
        self.by_addr.insert(key, Entry { failures, last: now });
        self.delay(failures)
    }

    /// How long the answer to a successful logon from `addr` waits: as long
    /// as a failure's would now, without adding to the count.
    pub fn succeeded(&mut self, addr: IpAddr, now: Instant) -> Duration {
        match self.current(key(addr), now) {
            Some(n) => self.delay(n.saturating_add(1)),
            None => Duration::ZERO,
        }
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// The failure count of `key` if it is still within the window.
    fn current(&mut self, key: IpAddr, now: Instant) -> Option<u32> {
        let e = *self.by_addr.get(&key)?;
        if now.saturating_duration_since(e.last) >= self.window {
            self.by_addr.remove(&key);
            return None;
        }
        Some(e.failures)
    }

    /// The wait after the `failures`-th failure in a row.
    fn delay(&self, failures: u32) -> Duration {
        if failures <= self.before_delay {
            return Duration::ZERO;
        }
        let doublings = (failures - self.before_delay - 1).min(20);
        (FIRST_DELAY * (1u32 << doublings)).min(self.max_delay)
    }

    /// Keeps the table under [`MAX_ADDRESSES`] before a new address goes in.
    fn make_room(&mut self, now: Instant) {
        if self.by_addr.len() < MAX_ADDRESSES {
            return;
        }
        let window = self.window;
        self.by_addr.retain(|_, e| now.saturating_duration_since(e.last) < window);
        while self.by_addr.len() >= MAX_ADDRESSES {
            let Some(oldest) = self.by_addr.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| *k) else {
                return;
            };
            self.by_addr.remove(&oldest);
        }
    }
}

/// The address failures count under: IPv6 by /64, IPv4-mapped as IPv4.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { login_failures_before_delay: 3, login_failure_delay_max_ms: 1000, login_failure_window_s: 60, ..Limits::default() }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn waits_start_after_the_allowance_double_and_stop_at_the_cap() {
        let mut t = LoginThrottle::new(&limits());
        let now = Instant::now();
        let waits: Vec<u64> = (0..8).map(|_| t.failed(A, now).as_millis() as u64).collect();
        assert_eq!(waits, [0, 0, 0, 100, 200, 400, 800, 1000]);
        // Another address is not affected.
        assert_eq!(t.failed(B, now), Duration::ZERO);
    }

    #[test]
    fn success_waits_as_long_without_counting() {
        let mut t = LoginThrottle::new(&limits());
        let now = Instant::now();
        assert_eq!(t.succeeded(A, now), Duration::ZERO);
        for _ in 0..5 {
            t.failed(A, now);
        }
        let w = t.succeeded(A, now);
        assert_eq!(w, Duration::from_millis(400), "as long as a failure would wait now");
        assert_eq!(t.succeeded(A, now), w, "successes do not add up");
        assert_eq!(t.failed(A, now), w);
    }

    #[test]
    fn a_quiet_address_starts_afresh() {
        let mut t = LoginThrottle::new(&limits());
        let now = Instant::now();
        for _ in 0..6 {
            t.failed(A, now);
        }
        let later = now + Duration::from_secs(61);
        assert_eq!(t.succeeded(A, later), Duration::ZERO);
        assert_eq!(t.failed(A, later), Duration::ZERO);
    }

    #[test]
    fn ipv6_counts_by_prefix_and_mapped_ipv4_as_ipv4() {
        let mut t = LoginThrottle::new(&limits());
        let now = Instant::now();
        for i in 0..4u16 {
            t.failed(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, i, i, i, i)), now);
        }
        assert_eq!(t.len(), 1);
        assert_eq!(t.failed(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 9, 9, 9, 9)), now), Duration::from_millis(200));
        assert_eq!(t.failed(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 9, 9, 9, 9)), now), Duration::ZERO);
        t.failed(IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x7f00, 1)), now);
        assert_eq!(t.len(), 3);
        assert_eq!(t.succeeded(A, now), Duration::ZERO, "one failure of 127.0.0.1 counted, under the allowance");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = LoginThrottle::new(&limits());
        let now = Instant::now();
        for _ in 0..5 {
            t.failed(A, now);
        }
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.failed(addr, now + Duration::from_millis(u64::from(i) + 1));
        }
        assert!(t.len() <= MAX_ADDRESSES);
        // The address quiet the longest went first.
        assert_eq!(t.succeeded(A, now + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn no_delay_when_the_cap_is_zero() {
        let mut t = LoginThrottle::new(&Limits { login_failure_delay_max_ms: 0, ..limits() });
        let now = Instant::now();
        assert!((0..10).all(|_| t.failed(A, now).is_zero()));
    }
}
