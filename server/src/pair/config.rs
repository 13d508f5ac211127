//! The `[pair]` table of `duet.toml` and the `--pair-*` flags of `duet serve`.
//!
//! ```toml
//! [pair]
//! cluster = 7                   # the pair's cluster id (both nodes: the same)
//! node = 1                      # this node's id (the partner's differs)
//! partner_node = 2              # optional: the only node id accepted as partner
//! listen = "127.0.0.1:7001"     # this node's interconnect address
//! partner = "127.0.0.1:7002"    # the partner's interconnect address
//! incarnation = 1               # the configuration's incarnation: raise it on both
//!                               # nodes with each change; the older refuses to serve
//! key_file = "/etc/duet/interconnect.key"  # the interconnect key (the same file on
//!                               # both nodes, mode 0600); without it, the storage
//!                               # folder's (made on first start): [`super::key`]
//! # The share sets (optional; all five or none): takeover needs them.
//! storage = "/srv/shared/.duet" # the shared storage folder's directory for ownership
//!                               # claims and storage heartbeats (the same on both nodes)
//! address = "127.0.1.1:4450"    # this node's set: its client address
//! shares = ["a"]                # and its shares (names of [[share]] tables)
//! partner_address = "127.0.1.2:4450"  # the partner's set: its client address
//! partner_shares = ["b"]        # and its shares (configured here too: the same paths)
//! auto_giveback = true          # ask for our set back once our mirror is current
//! interface = "eth0"            # optional: the interface set addresses are added to
//!                               # when taken ([`super::address`]; `duet lab` sets it)
//! ```
//!
//! Without `[pair]` the node runs alone, as before. With it, its journal carries the
//! pair's cluster and node ids (a journal made for other ids is refused at start).
//!
//! With the share sets, the node serves its own set's shares on its set's address
//! (instead of `listen`), and takes the partner's set over when the partner dies
//! ([`super::sets`], [`crate::restart::takeover`]). Each set is named by its home node's id.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// One node's view of its pair.
/// A pair setting that cannot work (the configuration turns it into
/// `ConfigError::Invalid`; this module does not import the configuration,
/// which holds a [`PairConfig`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PairConfigError(pub String);

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairConfig {
    /// The cluster id: a partner of another cluster is refused.
    pub cluster: u64,
    /// This node's id.
    pub node: u16,
    /// The partner's id, when only that one may join.
    #[serde(default)]
    pub partner_node: Option<u16>,
    /// Where this node accepts the partner's interconnect links.
    pub listen: SocketAddr,
    /// Where the partner accepts this node's.
    pub partner: SocketAddr,
    /// The configuration incarnation, compared at every join: the node with the
    /// older one refuses to serve and exits.
    #[serde(default)]
    pub incarnation: u64,
    /// The interconnect key's file ([`super::key`]); without it, the storage folder's.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The shared storage folder's directory for ownership claims and storage
    /// heartbeats.
    #[serde(default)]
    pub storage: Option<PathBuf>,
    /// This node's set's client address.
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// This node's set's shares.
    #[serde(default)]
    pub shares: Vec<String>,
    /// The partner's set's client address.
    #[serde(default)]
    pub partner_address: Option<SocketAddr>,
    /// The partner's set's shares.
    #[serde(default)]
    pub partner_shares: Vec<String>,
    /// Ask for our set back as soon as the partner holds it and our mirror of
    /// the partner's journal is current (on unless set false).
    #[serde(default = "yes")]
    pub auto_giveback: bool,
    /// The interface a set's address is added to when this node takes it
    /// ([`super::address`]); none: the addresses need no adding (one host).
    #[serde(default)]
    pub interface: Option<String>,
}

fn yes() -> bool {
    true
}

/// The two share sets of a pair, as one node sees them ([`PairConfig::sets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sets {
    pub storage: PathBuf,
    /// [`PairConfig::auto_giveback`].
    pub auto_giveback: bool,
    /// This node's set.
    pub own: SetConfig,
    /// The partner's set.
    pub partner: SetConfig,
}

/// One share set: its home node (which names it), its client address and its shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetConfig {
    pub home: u16,
    pub address: SocketAddr,
    pub shares: Vec<String>,
}

impl PairConfig {
    /// Checks what can be checked alone.
    pub fn validate(&self) -> Result<(), PairConfigError> {
        if self.cluster == 0 {
            return Err(PairConfigError("pair.cluster must not be 0".into()));
        }
        if self.node == 0 {
            return Err(PairConfigError("pair.node must not be 0".into()));
        }
        if self.partner_node == Some(self.node) {
            return Err(PairConfigError(format!("pair.partner_node is this node's own id ({})", self.node)));
        }
        if self.listen == self.partner {
            return Err(PairConfigError(format!("pair.listen and pair.partner are both {}", self.listen)));
        }
        if self.key_file.is_none() && self.storage.is_none() {
            return Err(PairConfigError(
                "a pair needs an interconnect key: pair.key_file (--pair-key), or pair.storage, \
                 where one is made"
                    .into(),
            ));
        }
        let given = [
            self.storage.is_some(),
            self.address.is_some(),
            !self.shares.is_empty(),
            self.partner_address.is_some(),
            !self.partner_shares.is_empty(),
        ];
        if given.iter().any(|g| *g) {
            if !given.iter().all(|g| *g) {
                return Err(PairConfigError(
                    "the share sets need all of pair.storage, pair.address, pair.shares, \
                     pair.partner_address and pair.partner_shares"
                        .into(),
                ));
            }
            if self.partner_node.is_none() {
                return Err(PairConfigError(
                    "the share sets need pair.partner_node (it names the partner's set)".into(),
                ));
            }
            if self.address == self.partner_address {
                return Err(PairConfigError("pair.address and pair.partner_address are the same".into()));
            }
            if let Some(s) = self.shares.iter().find(|s| self.partner_shares.iter().any(|p| p.eq_ignore_ascii_case(s)))
            {
                return Err(PairConfigError(format!("share {s:?} is in both sets")));
            }
        }
        Ok(())
    }

    /// The interconnect key's file, and whether it is made when missing (the storage
    /// folder's, [`super::key::path`]).
    pub fn key_path(&self) -> Option<(PathBuf, bool)> {
        super::key::path(self.key_file.as_deref(), self.storage.as_deref())
    }

    /// The share sets, when configured (see [`PairConfig::validate`]).
    pub fn sets(&self) -> Option<Sets> {
        Some(Sets {
            storage: self.storage.clone()?,
            auto_giveback: self.auto_giveback,
            own: SetConfig { home: self.node, address: self.address?, shares: self.shares.clone() },
            partner: SetConfig {
                home: self.partner_node?,
                address: self.partner_address?,
                shares: self.partner_shares.clone(),
            },
        })
    }
}

/// The `--pair-*` flags of `duet serve`, laid over the file's `[pair]`.
#[derive(Debug, Clone, Default)]
pub struct PairFlags {
    pub cluster: Option<u64>,
    pub node: Option<u16>,
    pub partner_node: Option<u16>,
    pub listen: Option<SocketAddr>,
    pub partner: Option<SocketAddr>,
    pub incarnation: Option<u64>,
    pub key_file: Option<PathBuf>,
    pub storage: Option<PathBuf>,
    pub address: Option<SocketAddr>,
    pub shares: Vec<String>,
    pub partner_address: Option<SocketAddr>,
    pub partner_shares: Vec<String>,
    pub auto_giveback: Option<bool>,
    pub interface: Option<String>,
}

impl PairFlags {
    /// Whether any flag was given.
    pub fn any(&self) -> bool {
        self.cluster.is_some()
            || self.node.is_some()
            || self.partner_node.is_some()
            || self.listen.is_some()
            || self.partner.is_some()
            || self.incarnation.is_some()
            || self.key_file.is_some()
            || self.storage.is_some()
            || self.address.is_some()
            || !self.shares.is_empty()
            || self.partner_address.is_some()
            || !self.partner_shares.is_empty()
            || self.auto_giveback.is_some()
            || self.interface.is_some()
    }

    /// The file's pair (if any) with the flags laid over it. Flags without a file's
    /// `[pair]` must name the cluster, the node, and both addresses.
    pub fn apply(self, file: Option<PairConfig>) -> Result<Option<PairConfig>, PairConfigError> {
        if !self.any() {
            return Ok(file);
        }
        let p = match file {
            Some(mut p) => {
                p.cluster = self.cluster.unwrap_or(p.cluster);
                p.node = self.node.unwrap_or(p.node);
                p.partner_node = self.partner_node.or(p.partner_node);
                p.listen = self.listen.unwrap_or(p.listen);
                p.partner = self.partner.unwrap_or(p.partner);
                p.incarnation = self.incarnation.unwrap_or(p.incarnation);
                p.key_file = self.key_file.or(p.key_file);
                p.storage = self.storage.or(p.storage);
                p.address = self.address.or(p.address);
                if !self.shares.is_empty() {
                    p.shares = self.shares;
                }
                p.partner_address = self.partner_address.or(p.partner_address);
                if !self.partner_shares.is_empty() {
                    p.partner_shares = self.partner_shares;
                }
                p.auto_giveback = self.auto_giveback.unwrap_or(p.auto_giveback);
                p.interface = self.interface.or(p.interface);
                p
            }
            None => {
                let missing =
                    |what: &str| PairConfigError(format!("a pair needs --pair-{what} (or [pair] in the file)"));
                PairConfig {
                    cluster: self.cluster.ok_or_else(|| missing("cluster"))?,
                    node: self.node.ok_or_else(|| missing("node"))?,
                    partner_node: self.partner_node,
                    listen: self.listen.ok_or_else(|| missing("listen"))?,
                    partner: self.partner.ok_or_else(|| missing("partner"))?,
                    incarnation: self.incarnation.unwrap_or(0),
                    key_file: self.key_file,
                    storage: self.storage,
                    address: self.address,
                    shares: self.shares,
                    partner_address: self.partner_address,
                    partner_shares: self.partner_shares,
                    auto_giveback: self.auto_giveback.unwrap_or(true),
                    interface: self.interface,
                }
            }
        };
        Ok(Some(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PairConfig {
        PairConfig {
            cluster: 7,
            node: 1,
            partner_node: Some(2),
            listen: "127.0.0.1:7001".parse().unwrap(),
            partner: "127.0.0.1:7002".parse().unwrap(),
            incarnation: 1,
            key_file: Some("/etc/duet/interconnect.key".into()),
            storage: Some("/srv/shared/.duet".into()),
            address: Some("127.0.1.1:4450".parse().unwrap()),
            shares: vec!["a".into()],
            partner_address: Some("127.0.1.2:4450".parse().unwrap()),
            partner_shares: vec!["b".into()],
            auto_giveback: true,
            interface: Some("eth0".into()),
        }
    }

    /// The example in the module doc parses to [`sample`].
    #[test]
    fn documented_example_parses() {
        let doc = include_str!("config.rs");
        let start = doc.find("//! [pair]").unwrap();
        let toml: String = doc[start..]
            .lines()
            .take_while(|l| l.starts_with("//!") && !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        #[derive(Deserialize)]
        struct Doc {
            pair: PairConfig,
        }
        let d: Doc = toml::from_str(&toml).unwrap();
        assert_eq!(d.pair, sample());
        d.pair.validate().unwrap();
    }

    #[test]
    fn bad_pairs_are_refused() {
        let mut p = sample();
        p.partner_node = Some(1);
        assert!(p.validate().is_err());
        let mut p = sample();
        p.cluster = 0;
        assert!(p.validate().is_err());
        let mut p = sample();
        p.partner = p.listen;
        assert!(p.validate().is_err());
        // The sets: all or none, disjoint, the partner named.
        let mut p = sample();
        p.partner_address = None;
        assert!(p.validate().is_err());
        let mut p = sample();
        p.partner_shares = vec!["A".into()];
        assert!(p.validate().is_err());
        let mut p = sample();
        p.partner_node = None;
        assert!(p.validate().is_err());
        // A key: configured, or the storage folder's; never none.
        let p = PairConfig { key_file: None, ..sample() };
        p.validate().unwrap();
        assert_eq!(p.key_path(), Some(("/srv/shared/.duet/interconnect.key".into(), true)));
        let p = PairConfig {
            key_file: None,
            storage: None,
            address: None,
            shares: vec![],
            partner_address: None,
            partner_shares: vec![],
            ..sample()
        };
        assert!(p.validate().unwrap_err().0.contains("interconnect key"));
        let p = PairConfig {
            storage: None,
            address: None,
            shares: vec![],
            partner_address: None,
            partner_shares: vec![],
            ..sample()
        };
        p.validate().unwrap();
        assert_eq!(p.sets(), None);
        assert_eq!(sample().sets().unwrap().partner.home, 2);
        assert!(toml::from_str::<PairConfig>(
            "cluster = 1\nnode = 1\nlisten = \"127.0.0.1:1\"\npartner = \"127.0.0.1:2\"\nport = 3\n"
        )
        .is_err());
    }

    #[test]
    fn flags_lie_over_the_file_or_stand_alone() {
        assert_eq!(PairFlags::default().apply(None).unwrap(), None);
        assert_eq!(PairFlags::default().apply(Some(sample())).unwrap(), Some(sample()));
        let flags = PairFlags { incarnation: Some(9), node: Some(3), ..PairFlags::default() };
        let p = flags.apply(Some(sample())).unwrap().unwrap();
        assert_eq!((p.incarnation, p.node, p.cluster), (9, 3, 7));
        let alone = PairFlags { cluster: Some(7), node: Some(1), ..PairFlags::default() };
        assert!(alone.clone().apply(None).is_err(), "addresses missing");
        let s = sample();
        let alone = PairFlags {
            listen: Some("127.0.0.1:7001".parse().unwrap()),
            partner: Some("127.0.0.1:7002".parse().unwrap()),
            partner_node: Some(2),
            incarnation: Some(1),
            key_file: s.key_file,
            storage: s.storage,
            address: s.address,
            shares: s.shares,
            partner_address: s.partner_address,
            partner_shares: s.partner_shares,
            interface: s.interface,
            ..alone
        };
        assert_eq!(alone.apply(None).unwrap(), Some(sample()));
    }
}
