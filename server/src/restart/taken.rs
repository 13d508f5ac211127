//! The journal of the partner's share set while this node holds it (issue 14):
//! a journal file of its own in the pair's shared storage folder,
//! `journal-<set>-<epoch>`, synced under the configured policy.
//!
//! A node's own set journals into its own journal, which the partner's mirror
//! ring holds: either node can restore the set from it. A set held away from
//! home journals into this file instead, for the same reason: it is where
//! both nodes reach it. The holder restores the set from it when it restarts
//! while it still holds the set ([`reopen`]); the home node restores the set
//! from it when it takes it back, by a giveback or after the holder died
//! ([`read`], [`super::handover::restore_home`]), so a giveback copies no
//! journal image anywhere.
//!
//! The file is made for the set's home node (its cluster and node id in the
//! header), so that the home node reads it as its own log. Its name carries
//! the epoch of the claim it is kept under: the holder makes it when it takes
//! the set (after its claim), renames it to its new claim's epoch when it
//! restarts and claims the set again, and the home node reads the one of the
//! newest claim before its own (a file of an older epoch is of an earlier
//! holding, never read). Beside it, `journal-<set>.boot` says on which boot of
//! which kernel the holder last ran (redo of answered WRITEs, as
//! [`super::same_boot`] for a node's own journal).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::nvram::{LogRecovery, Recovery};
use ::takeover::{ClusterId, Epoch, NodeId, SetId};
use tracing::info;

use crate::config::Config;

/// The file that holds the journal of `set` while held away from home under
/// the claim at `epoch`.
pub fn path(storage: &Path, set: SetId, epoch: Epoch) -> PathBuf {
    storage.join(format!("{}{:020}", prefix(set), epoch.0))
}

fn prefix(set: SetId) -> String {
    format!("journal-{:05}-", set.0)
}

/// Where the boot id of the set journal's last writer is kept, less its
/// extension ([`super::same_boot`] adds `.boot`).
fn boot_base(storage: &Path, set: SetId) -> PathBuf {
    storage.join(format!("journal-{:05}", set.0))
}

/// The journal files of `set` in `storage`, with their epochs, oldest first.
pub fn list(storage: &Path, set: SetId) -> Vec<(Epoch, PathBuf)> {
    let prefix = prefix(set);
    let Ok(dir) = std::fs::read_dir(storage) else { return Vec::new() };
    let mut found: Vec<_> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let epoch = name.strip_prefix(&prefix)?.parse::<u64>().ok()?;
            Some((Epoch(epoch), e.path()))
        })
        .collect();
    found.sort();
    found
}

fn options(cluster: ClusterId, set: SetId, cfg: &Config) -> ::nvram::Options {
    // The storage folder is no DAX file system: `pmem` syncs as `group` there.
    let d = match super::durability(cfg.journal.policy) {
        ::nvram::Durability::Pmem => ::nvram::Durability::GroupCommit,
        d => d,
    };
    ::nvram::Options::new(cluster, NodeId(set.0), d).releasing_free(true)
}

/// Makes a new journal for `set`, taken at `epoch`, of the size `cfg` gives
/// (a sparse file: only what the ring uses is written), and removes the files
/// of earlier holdings.
pub fn create(
    storage: &Path,
    cluster: ClusterId,
    set: SetId,
    epoch: Epoch,
    cfg: &Config,
) -> Result<Arc<::nvram::Journal>, String> {
    for (_, old) in list(storage, set) {
        let _ = std::fs::remove_file(old);
    }
    let p = path(storage, set, epoch);
    let err = |e: &dyn std::fmt::Display| format!("the set's journal {}: {e}", p.display());
    make_private(&p).map_err(|e| err(&e))?;
    let j = ::nvram::Journal::create_file(&p, cfg.journal.size, options(cluster, set, cfg)).map_err(|e| err(&e))?;
    sync_dir(storage);
    let _ = super::same_boot(&boot_base(storage, set));
    info!(path = %p.display(), size = cfg.journal.size, policy = cfg.journal.policy.name(), "pair: the taken set's journal made");
    Ok(Arc::new(j))
}

/// The journal this node kept of `set` before its claim at `epoch` (it held
/// the set when it stopped), renamed to `epoch` and opened to go on; `None`
/// when there is none.
pub fn reopen(
    storage: &Path,
    cluster: ClusterId,
    set: SetId,
    epoch: Epoch,
    cfg: &Config,
) -> Result<Option<(Arc<::nvram::Journal>, Recovery)>, String> {
    let Some((old, from)) = list(storage, set).into_iter().rfind(|(e, _)| *e < epoch) else {
        return Ok(None);
    };
    let to = path(storage, set, epoch);
    let err = |e: &dyn std::fmt::Display| format!("the set's journal {}: {e}", from.display());
    std::fs::rename(&from, &to).map_err(|e| err(&e))?;
    sync_dir(storage);
    let (j, recovery) = ::nvram::Journal::open_file(&to, options(cluster, set, cfg)).map_err(|e| err(&e))?;
    info!(path = %to.display(), from_epoch = old.0, flag = ?recovery.flag, "pair: the taken set's journal opened again");
    Ok(Some((Arc::new(j), recovery)))
}

/// The journal of our own `set` that the partner kept while it held the set
/// under its claim at `epoch`: its flag and log, read without opening it (the
/// partner may still have it mapped). An error when there is none.
pub fn read(
    storage: &Path,
    cluster: ClusterId,
    set: SetId,
    epoch: Epoch,
) -> Result<(::nvram::Flag, LogRecovery), String> {
    let p = path(storage, set, epoch);
    ::nvram::read_own(&p, cluster, NodeId(set.0)).map_err(|e| format!("the set's journal {}: {e}", p.display()))
}

/// Whether the partner left a journal of `set` kept under its claim at `epoch`.
pub fn exists(storage: &Path, set: SetId, epoch: Epoch) -> bool {
    path(storage, set, epoch).exists()
}

/// Whether the set journal's last writer ran on this boot of this kernel (its
/// page cache then holds every answered WRITE); records this boot's.
pub fn same_boot(storage: &Path, set: SetId) -> bool {
    super::same_boot(&boot_base(storage, set))
}

/// Removes every journal file of `set` (its home took it back from them).
pub fn remove(storage: &Path, set: SetId) {
    for (_, p) in list(storage, set) {
        let _ = std::fs::remove_file(p);
    }
}

/// Creates `path` empty with mode 0600 (it holds session state), so that the
/// journal is never mapped with wider permissions.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map(drop)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use ::nvram::Flag;

    use super::*;
    use crate::journal::{Journal as _, NvramJournal};
    use crate::model::tests::session_with_tree;
    use crate::model::Model;

    fn cfg() -> Config {
        let mut c = Config::default();
        c.journal.size = 1 << 20;
        c
    }

    /// The holder's journal of a set lives on under its next claim (renamed),
    /// and the home node reads the same model from it without opening it.
    #[test]
    fn a_taken_set_s_journal_is_reopened_by_its_holder_and_read_by_its_home() {
        let dir = tempfile::tempdir().unwrap();
        let (cluster, set) = (ClusterId(7), SetId(1));
        assert!(list(dir.path(), set).is_empty());
        std::fs::write(path(dir.path(), set, Epoch(1)), b"an earlier holding").unwrap();
        let region = create(dir.path(), cluster, set, Epoch(2), &cfg()).unwrap();
        assert_eq!(list(dir.path(), set).len(), 1, "the earlier holding's file is gone");
        let j = NvramJournal::new(region.clone());
        let mut live = Model::new();
        live.add_set(ids::SetId(0), 5).unwrap();
        session_with_tree(&mut live, ids::SetId(0));
        j.checkpoint(&live.checkpoint()).unwrap();
        region.set_flag(Flag::NonElectiveReboot).unwrap();
        drop((j, region));

        // The holder restarts and claims the set at epoch 3.
        let (region, recovery) = reopen(dir.path(), cluster, set, Epoch(3), &cfg()).unwrap().expect("the journal");
        assert_eq!(list(dir.path(), set).iter().map(|(e, _)| e.0).collect::<Vec<_>>(), vec![3]);
        let rebuilt = crate::restart::rebuild_log(&recovery.own).unwrap().expect("a model");
        assert_eq!(rebuilt.model, live);
        assert!(reopen(dir.path(), cluster, set, Epoch(3), &cfg()).unwrap().is_none(), "none before epoch 3");

        // The home node, claiming at 4, reads the holder's (epoch 3) while it is mapped.
        assert!(exists(dir.path(), set, Epoch(3)) && !exists(dir.path(), set, Epoch(2)));
        let (flag, log) = read(dir.path(), cluster, set, Epoch(3)).unwrap();
        assert_eq!(flag, Flag::NonElectiveReboot);
        assert_eq!(crate::restart::rebuild_log(&log).unwrap().expect("a model").model, live);
        assert!(read(dir.path(), ClusterId(8), set, Epoch(3)).is_err(), "another cluster's");
        drop(region);
        remove(dir.path(), set);
        assert!(list(dir.path(), set).is_empty());
    }
}
