//! The one I/O exception of the crate: ownership claims and storage heartbeats as files in
//! a plain shared directory, with `std::fs` only. The state machine never calls this; the
//! server does, when it carries out [`crate::Action::WriteOwnership`],
//! [`crate::Action::ReadOwnership`], [`crate::Action::BumpHeartbeat`] and
//! [`crate::Action::ReadPartnerHeartbeat`].
//!
//! A claim is written whole to a temporary file of the claimant's own
//! (`OpenOptions::create_new`, then `sync_all`), then published under the claim's name with
//! `hard_link`, which fails if the name exists: an atomic exclusive create that never shows
//! a half-written claim. Of two nodes racing for one epoch exactly one link succeeds.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use super::{Ownership, Record};
use crate::types::{ClusterId, NodeId};

/// What became of a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// We created the claim: we own the set at its epoch.
    Won,
    /// A claim at that epoch already existed.
    Lost,
}

/// Claims `record` in `dir` by exclusive create.
pub fn claim(dir: &Path, record: &Record) -> io::Result<ClaimOutcome> {
    let tmp = dir.join(format!(".tmp-{}-{}", record.owner.0, record.file_name()));
    let _ = fs::remove_file(&tmp);
    {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(&record.encode())?;
        f.sync_all()?;
    }
    let res = fs::hard_link(&tmp, dir.join(record.file_name()));
    let _ = fs::remove_file(&tmp);
    match res {
        Ok(()) => {
            sync_dir(dir);
            Ok(ClaimOutcome::Won)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(ClaimOutcome::Lost),
        Err(e) => Err(e),
    }
}

/// Reads every claim in `dir` and chooses the newest per set.
pub fn read(dir: &Path, cluster: ClusterId) -> io::Result<Ownership> {
    let mut entries = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else { continue };
        if super::parse_file_name(&name).is_none() {
            continue;
        }
        let mut body = Vec::new();
        let ok = fs::File::open(e.path()).and_then(|mut f| f.read_to_end(&mut body)).is_ok();
        entries.push((name, ok.then_some(body)));
    }
    Ok(Ownership::from_listing(cluster, entries.iter().map(|(n, b)| (n.as_str(), b.as_deref()))))
}

fn heartbeat_name(node: NodeId) -> String {
    format!("heartbeat-{:05}", node.0)
}

/// Writes our storage heartbeat counter (write a temporary file, then rename over).
pub fn bump_heartbeat(dir: &Path, node: NodeId, counter: u64) -> io::Result<()> {
    let name = heartbeat_name(node);
    let tmp = dir.join(format!(".tmp-{name}"));
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(&counter.to_be_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))
}

/// Reads a node's storage heartbeat counter; `None` if it never wrote one.
pub fn read_heartbeat(dir: &Path, node: NodeId) -> io::Result<Option<u64>> {
    match fs::read(dir.join(heartbeat_name(node))) {
        Ok(b) if b.len() == 8 => {
            let mut a = [0; 8];
            a.copy_from_slice(&b);
            Ok(Some(u64::from_be_bytes(a)))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Epoch, SetId};
    use crate::ownership::Newest;

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("duet-takeover-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn exclusive_claim_has_one_winner_even_when_racing() {
        let dir = tempdir("race");
        let c = ClusterId(1);
        let threads: Vec<_> = (1..=2u16)
            .map(|n| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let r = Record { cluster: c, set: SetId(1), owner: NodeId(n), epoch: Epoch(2) };
                    claim(&dir, &r).unwrap()
                })
            })
            .collect();
        let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(outcomes.iter().filter(|o| **o == ClaimOutcome::Won).count(), 1);
        let winner = if outcomes[0] == ClaimOutcome::Won { 1 } else { 2 };
        let o = read(&dir, c).unwrap();
        assert_eq!(o.newest(SetId(1)), Some(Newest { epoch: Epoch(2), owner: Some(NodeId(winner)) }));
        let r3 = Record { cluster: c, set: SetId(1), owner: NodeId(3 - winner), epoch: Epoch(3) };
        assert_eq!(claim(&dir, &r3).unwrap(), ClaimOutcome::Won);
        assert_eq!(read(&dir, c).unwrap().newest(SetId(1)).unwrap().owner, Some(NodeId(3 - winner)));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn heartbeat_counter_round_trips() {
        let dir = tempdir("hb");
        assert_eq!(read_heartbeat(&dir, NodeId(1)).unwrap(), None);
        bump_heartbeat(&dir, NodeId(1), 41).unwrap();
        bump_heartbeat(&dir, NodeId(1), 42).unwrap();
        assert_eq!(read_heartbeat(&dir, NodeId(1)).unwrap(), Some(42));
        fs::remove_dir_all(&dir).unwrap();
    }
}
