//! Share sets (issue 14): ownership claims on shared storage, the storage
//! heartbeat, and the rules that say when a dead partner's set is taken over.
//! The takeover itself is [`crate::restart::takeover`].
//!
//! # Share sets ([`super::config::Sets`])
//!
//! Each node has a set: its shares and the set's client address. A node serves its
//! own set on that address; the set is named by its home node's id (`SetId(node)`).
//! Both nodes see the same shares at the same paths (shared storage).
//!
//! # Ownership ([`takeover::ownership`])
//!
//! Who serves a set is a claim file in the shared storage folder (`pair.storage`),
//! one per `(set, epoch)`, made by exclusive create: of two nodes racing for one
//! epoch exactly one wins, and the highest epoch owns the set. At start a node
//! claims its own set at epoch 1 when nobody ever claimed it, serves it when the
//! newest claim is its own, and otherwise **waits** ([`own_set_at_start`]): its
//! partner holds its set, and it serves nothing until a giveback ([`super::driver`]).
//!
//! # When to take over ([`decide`])
//!
//! Failure detection uses two channels, as DESIGN.md says: the interconnect's
//! links (a killed partner's close at once; a frozen one's are silent for
//! [`super::link::SILENT`]) and a storage heartbeat (a counter in the storage
//! folder that each node bumps every 100 ms, [`start_storage_heartbeat`]). The
//! partner is dead only when its links are down **and** its storage heartbeat has
//! not moved for [`DETECT`]; one channel silent alone is reported, never acted on.
//! A dead partner's set is taken only from a mirror of its journal that the partner
//! said was current ([`takeover::Message::MirrorCurrent`]) on the last link it had
//! to us: never from a stale mirror, and never by a node that had no contact with
//! its partner since it started.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use takeover::ownership::{self, Record};
use takeover::{ClaimOutcome, ClusterId, Epoch, NodeId, SetId};
use tracing::warn;

use super::config::SetConfig;

/// How long the partner's storage heartbeat must stand still, with its links
/// down, before it counts as dead.
pub const DETECT: Duration = Duration::from_secs(2);
/// How often a node bumps its storage heartbeat and looks at its partner.
pub const BEAT: Duration = Duration::from_millis(100);

// ---- ownership ---------------------------------------------------------------------

/// Whether a node serves its own set at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnSet {
    /// The newest claim is ours (made now, or before).
    Serve { epoch: Epoch },
    /// The newest claim is another node's (or unreadable): wait.
    Held { epoch: Epoch, owner: Option<NodeId> },
}

/// Reads the claims on this node's set and claims it at epoch 1 when nobody
/// ever did. Blocks (file system).
pub fn own_set_at_start(storage: &Path, cluster: ClusterId, me: NodeId) -> io::Result<OwnSet> {
    std::fs::create_dir_all(storage)?;
    let set = SetId(me.0);
    for _ in 0..2 {
        let newest = ownership::fs::read(storage, cluster)?.newest(set);
        match newest {
            None => {
                let r = Record { cluster, set, owner: me, epoch: Epoch(1) };
                if ownership::fs::claim(storage, &r)? == ClaimOutcome::Won {
                    return Ok(OwnSet::Serve { epoch: Epoch(1) });
                }
                // Someone claimed it meanwhile: read again.
            }
            Some(n) if n.owner == Some(me) => return Ok(OwnSet::Serve { epoch: n.epoch }),
            Some(n) => return Ok(OwnSet::Held { epoch: n.epoch, owner: n.owner }),
        }
    }
    let newest = ownership::fs::read(storage, cluster)?.newest(set);
    Ok(OwnSet::Held { epoch: newest.map_or(Epoch(0), |n| n.epoch), owner: newest.and_then(|n| n.owner) })
}

/// Claims `set` for `me` at the epoch after its newest claim; the epoch won,
/// or why not. Blocks.
pub fn claim_next(storage: &Path, cluster: ClusterId, set: SetId, me: NodeId) -> Result<Epoch, String> {
    let newest = ownership::fs::read(storage, cluster).map_err(|e| format!("cannot read the claims: {e}"))?.newest(set);
    let epoch = Epoch(newest.map_or(0, |n| n.epoch.0) + 1);
    let r = Record { cluster, set, owner: me, epoch };
    match ownership::fs::claim(storage, &r) {
        Ok(ClaimOutcome::Won) => Ok(epoch),
        Ok(ClaimOutcome::Lost) => Err(format!("another node claimed set {} at epoch {} first", set.0, epoch.0)),
        Err(e) => Err(format!("cannot write the claim: {e}")),
    }
}

/// How long a lease lasts after the beat that renewed it began: shorter than
/// [`DETECT`], so that when the partner takes a set over (after [`DETECT`] of
/// silence of this node's heartbeat), this node's lease has already run out.
pub const LEASE: Duration = Duration::from_secs(1);
// The bound the model checker keeps (`takeover::Node::new` refuses a lease
// not shorter than the detection timeout), for both sets a node may serve.
const _: () = assert!(LEASE.as_millis() < DETECT.as_millis());

/// This node's lease on a set it serves (DESIGN.md, "Leases"): its own set,
/// or the partner's set while it holds it (a taken set). Renewed by each
/// storage heartbeat that reached the storage folder and found the newest
/// claim on the set still ours at the lease's epoch ([`Leases`]), measured
/// on the monotonic clock (which goes on while the process is frozen). The
/// request pipeline carries out no element without it
/// ([`Lease::wait_valid`]), and the file system makes no change on disk
/// without it ([`super::fence`]: checked right before each one), so a node
/// resumed from a freeze does not carry out a request, nor finish one it had
/// begun, after its partner took the set over (or took its own set back from
/// it).
#[derive(Debug)]
pub struct Lease {
    origin: Instant,
    /// When the beat that last renewed it began, in ns after `origin` (0: never).
    renewed: AtomicU64,
    /// The set was claimed by another node (or handed over): never valid again
    /// until [`Lease::regain`].
    lost: AtomicBool,
    /// Changes on disk the fence refused ([`super::fence`]).
    refused: AtomicU64,
    /// The epoch of our claim the storage heartbeat renews it for.
    epoch: AtomicU64,
    /// The set is being handed over: requests wait at the pipeline's gate
    /// ([`Lease::admits`]) instead of starting.
    held: AtomicBool,
}

impl Default for Lease {
    fn default() -> Lease {
        Lease {
            origin: Instant::now(),
            renewed: AtomicU64::new(0),
            lost: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            held: AtomicBool::new(false),
        }
    }
}

impl Lease {
    /// Renews the lease from `began`, when the beat that renews it began.
    pub fn renew(&self, began: Instant) {
        let ns = began.saturating_duration_since(self.origin).as_nanos() as u64 + 1;
        self.renewed.fetch_max(ns, Ordering::AcqRel);
    }

    /// The set is another node's now.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::Release);
    }

    /// The set is ours again, claimed at `epoch` (a giveback, or a hand-over
    /// taken back): the storage heartbeat renews the lease for that claim.
    pub fn regain(&self, epoch: Epoch) {
        self.epoch.store(epoch.0, Ordering::Release);
        self.held.store(false, Ordering::Release);
        self.lost.store(false, Ordering::Release);
    }

    /// The epoch of the claim the lease is for.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::Acquire))
    }

    /// A hand-over began: no new request starts (they wait at the gate).
    pub fn hold(&self) {
        self.held.store(true, Ordering::Release);
    }

    /// The set was handed over: nothing changes on disk for it here any more,
    /// and the requests waiting at the gate close their connections.
    pub fn hand_over(&self) {
        self.lose();
    }

    /// Whether a request may start now: the lease holds and no hand-over holds
    /// requests back.
    pub fn admits(&self, now: Instant) -> bool {
        !self.held.load(Ordering::Acquire) && self.valid_at(now)
    }

    /// Whether the set was lost.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// How many changes on disk the fence refused so far ([`super::fence`]).
    pub fn refusals(&self) -> u64 {
        self.refused.load(Ordering::Acquire)
    }

    /// Counts a change on disk the fence refused.
    pub(super) fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether the lease holds at `now`.
    pub fn valid_at(&self, now: Instant) -> bool {
        if self.is_lost() {
            return false;
        }
        let ns = self.renewed.load(Ordering::Acquire);
        if ns == 0 {
            return false;
        }
        let renewed = self.origin + Duration::from_nanos(ns - 1);
        now.saturating_duration_since(renewed) < LEASE
    }

    /// Waits until the lease admits requests (a request waits, as behind a slow
    /// disk, or a hand-over under way), up to [`LEASE_WAIT`]; false when it does
    /// not by then, or the set was lost (handed over, or taken).
    pub async fn wait_valid(&self) -> bool {
        let t0 = Instant::now();
        loop {
            if self.admits(Instant::now()) {
                return true;
            }
            if self.is_lost() || t0.elapsed() > LEASE_WAIT {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The longest a request waits for the lease before its connection is closed
/// (the client reconnects and resends).
pub const LEASE_WAIT: Duration = Duration::from_secs(10);

/// The leases the storage heartbeat renews, each on one set: this node's own
/// set's, and while it holds the partner's set (taken over, [`crate::restart::taken`]),
/// that one's. Both are renewed by the same beats, by the same rule (the newest
/// claim on the set is ours at the lease's epoch), and run out after the same
/// [`LEASE`]: a holder that froze while the home node took its set back (after
/// [`DETECT`] of silence of the holder's heartbeat) finds its lease on the
/// taken set as run out as the one on its own set, and changes nothing of it.
#[derive(Debug, Default)]
pub struct Leases(std::sync::Mutex<Vec<(SetId, Arc<Lease>)>>);

impl Leases {
    /// The storage heartbeat renews `lease` on `set` from now on (replacing
    /// the one it renewed on that set before).
    pub fn add(&self, set: SetId, lease: Arc<Lease>) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|(s, _)| *s != set);
        v.push((set, lease));
    }

    /// No more renewals of `lease` (the set was handed back, or taken).
    pub fn remove(&self, lease: &Arc<Lease>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).retain(|(_, l)| !Arc::ptr_eq(l, lease));
    }

    /// The leases, each with the epoch of the claim it is for now.
    fn now(&self) -> Vec<(SetId, Arc<Lease>, Epoch)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(s, l)| (*s, l.clone(), l.epoch())).collect()
    }

    /// One beat's outcome for every lease: `newest` is the newest claim on a
    /// set, as read after the beat that began at `began` reached storage. A
    /// lease whose claim is still the newest, and ours, is renewed from
    /// `began`; one whose set has a newer claim (and whose epoch did not
    /// change since the beat began: a giveback may have claimed it anew
    /// meanwhile) is lost. Returns the sets lost.
    fn beat(
        held: &[(SetId, Arc<Lease>, Epoch)],
        me: NodeId,
        began: Instant,
        newest: impl Fn(SetId) -> Option<takeover::ownership::Newest>,
    ) -> Vec<SetId> {
        let mut lost = Vec::new();
        for (set, lease, epoch) in held {
            let ours = newest(*set).is_some_and(|n| n.epoch == *epoch && n.owner == Some(me));
            if ours {
                lease.renew(began);
            } else if epoch.0 != 0 && lease.epoch() == *epoch && !lease.is_lost() {
                lease.lose();
                lost.push(*set);
            }
        }
        lost
    }
}

/// Bumps this node's storage heartbeat every [`BEAT`] on a thread of its own,
/// for as long as the process runs (a frozen process stops bumping), and
/// renews each of `leases` with each beat that reached storage while the
/// newest claim on its set is still ours at its epoch ([`Leases`]).
pub fn start_storage_heartbeat(
    storage: PathBuf,
    cluster: ClusterId,
    me: NodeId,
    leases: Arc<Leases>,
) -> io::Result<()> {
    std::thread::Builder::new().name("duet-storage-beat".into()).spawn(move || {
        let mut counter = 0u64;
        let mut failing = false;
        loop {
            counter += 1;
            let began = Instant::now();
            // The claims the leases are for (0: none, in standby).
            let held = leases.now();
            crate::failpoint::storage_stall();
            let beat = ownership::fs::bump_heartbeat(&storage, me, counter)
                .and_then(|()| ownership::fs::read(&storage, cluster));
            match beat {
                Ok(claims) => {
                    for set in Leases::beat(&held, me, began, |s| claims.newest(s)) {
                        warn!(set = set.0, "pair: a set we serve has a newer claim than ours: its lease is lost");
                    }
                    failing = false;
                }
                Err(e) if !failing => {
                    warn!(dir = %storage.display(), "pair: cannot bump the storage heartbeat: {e}");
                    failing = true;
                }
                Err(_) => {}
            }
            std::thread::sleep(BEAT);
        }
    })?;
    Ok(())
}

/// The kernel's boot id, when it has one.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn boot_file(storage: &Path, node: NodeId) -> PathBuf {
    storage.join(format!("boot-{:05}", node.0))
}

/// Records the kernel's boot id of this node in the storage folder, for
/// [`same_kernel`]. Blocks.
pub fn record_boot(storage: &Path, me: NodeId) -> io::Result<()> {
    match boot_id() {
        Some(id) => std::fs::write(boot_file(storage, me), format!("{id}\n")),
        None => Ok(()),
    }
}

/// Whether `partner` ran on this node's kernel (both on one machine, as in the
/// lab): its page cache then outlived it, and the WRITEs it answered are in the
/// files without being written again (as [`crate::restart::same_boot`] says of a
/// restart). Without a boot id on either side: no. Blocks.
pub fn same_kernel(storage: &Path, partner: NodeId) -> bool {
    let theirs = std::fs::read_to_string(boot_file(storage, partner)).ok().map(|s| s.trim().to_string());
    let ours = boot_id();
    ours.is_some() && ours == theirs
}

/// The set's server GUID ([MS-SMB2] 3.3.1.5 ServerGuid), kept in the shared
/// storage folder (`set-N.guid`): whichever node serves the set answers
/// NEGOTIATE with it, so that a client that reconnects to the set's address
/// after a takeover meets the same server (as a Windows cluster role keeps
/// its identity when it moves). The first node to serve the set writes
/// `first` there (the home node's own GUID); later readers take what is
/// written. Blocks.
pub fn set_guid(storage: &Path, set: SetId, first: [u8; 16]) -> io::Result<[u8; 16]> {
    use std::io::Write;
    let path = storage.join(format!("set-{}.guid", set.0));
    for _ in 0..2 {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return crate::guid::parse_guid(text.trim()).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("{} holds no GUID", path.display()))
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(format!("{}\n", crate::guid::guid_text(&first)).as_bytes())?;
                f.sync_all()?;
                return Ok(first);
            }
            // The partner wrote it meanwhile: read it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!("{} appears and vanishes", path.display())))
}

/// [`set_guid`] on a blocking thread, its failure said in words.
pub async fn set_guid_of(storage: PathBuf, set: SetId, first: [u8; 16]) -> Result<[u8; 16], String> {
    let shown = storage.display().to_string();
    tokio::task::spawn_blocking(move || set_guid(&storage, set, first))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the set's server GUID in {shown}: {e}"))
}

// ---- the decision ---------------------------------------------------------------

/// What the survivor sees of its partner at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// Either interconnect link to the partner is joined.
    pub links_up: bool,
    /// How long the partner's storage heartbeat has stood still (since we watch).
    pub storage_silent: Duration,
    /// The partner ever joined us since this node started.
    pub ever_joined: bool,
    /// The partner said our mirror of its journal is current, on its last link.
    pub mirror_current: bool,
    /// The partner's storage heartbeat went on for more than [`LIVED_ON_BEATS`]
    /// beats after its link to us ended: it was alive then, and may have answered
    /// requests (running degraded) that our mirror lacks.
    pub lived_on: bool,
}

/// How many beats a partner's heartbeat may go on after its link to us was seen
/// to end, and its death still count as the link's end: a killed node's link and
/// heartbeat stop together, but the watcher sees the counter only every 100 ms
/// (half a second of beats; a counter, not a time, so that a watcher running late
/// under load does not take a dead partner for a live one).
pub const LIVED_ON_BEATS: u64 = 5;

/// What to do about the partner's set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The partner is alive as far as both channels tell.
    Wait,
    /// Only the interconnect is silent: reported, never acted on.
    InterconnectOnly,
    /// The partner is dead but its set must not be taken: why.
    Refuse(&'static str),
    /// The partner is dead and our mirror of it is current: take its set.
    Take,
}

/// The rules of DESIGN.md ("Pair and takeover") for a non-elective takeover: a
/// partner is dead only when both channels are silent; a node with no contact
/// with its partner since it started never takes over on silence alone; no
/// takeover from a mirror known to be stale.
pub fn decide(v: &View) -> Decision {
    if v.links_up {
        return Decision::Wait;
    }
    if v.storage_silent < DETECT {
        return Decision::InterconnectOnly;
    }
    if !v.ever_joined {
        return Decision::Refuse("no contact with the partner since this node started: no takeover on silence alone");
    }
    if !v.mirror_current {
        return Decision::Refuse("our mirror of the partner's journal is not current");
    }
    if v.lived_on {
        return Decision::Refuse(
            "the partner lived on after its link to us ended: it may have answered what our mirror lacks",
        );
    }
    Decision::Take
}

// ---- the sets in `duet status` --------------------------------------------------

/// One share set as `duet status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetStatus {
    /// The set's id (its home node's).
    pub set: u16,
    pub address: String,
    pub shares: Vec<String>,
    /// "serving", "waiting" (the partner holds our set), "partner" (the partner
    /// serves it), "taking over", "refused: why".
    pub state: String,
    /// The epoch of our newest claim on it (0: none).
    pub epoch: u64,
    /// The state machine's phase for the set (`takeover::Phase`, as Rust prints it).
    #[serde(default)]
    pub phase: String,
    /// Why the last operator command or auto-giveback about the set was refused
    /// or waits (empty: none).
    #[serde(default)]
    pub note: String,
}

impl SetStatus {
    pub fn new(set: &SetConfig, state: impl Into<String>, epoch: Epoch) -> SetStatus {
        SetStatus {
            set: set.home,
            address: set.address.to_string(),
            shares: set.shares.clone(),
            state: state.into(),
            epoch: epoch.0,
            phase: String::new(),
            note: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        View { links_up: false, storage_silent: DETECT, ever_joined: true, mirror_current: true, lived_on: false }
    }

    #[test]
    fn a_dead_partner_with_a_current_mirror_is_taken_over() {
        assert_eq!(decide(&view()), Decision::Take);
    }

    #[test]
    fn one_silent_channel_is_never_acted_on() {
        assert_eq!(decide(&View { links_up: true, ..view() }), Decision::Wait);
        let beating = View { storage_silent: DETECT - Duration::from_millis(1), ..view() };
        assert_eq!(decide(&beating), Decision::InterconnectOnly);
    }

    #[test]
    fn no_takeover_from_a_stale_mirror_or_without_contact() {
        assert!(matches!(decide(&View { mirror_current: false, ..view() }), Decision::Refuse(_)));
        // It dropped its link to us (it stopped waiting for our acknowledgements)
        // and went on, degraded, before it died.
        assert!(matches!(decide(&View { lived_on: true, ..view() }), Decision::Refuse(w) if w.contains("lived on")));
        let never = View { ever_joined: false, mirror_current: false, ..view() };
        assert!(matches!(decide(&never), Decision::Refuse(w) if w.contains("no contact")));
    }

    #[test]
    fn the_first_start_claims_its_set_and_a_returning_node_waits_for_a_taken_one() {
        let dir = tempfile::tempdir().unwrap();
        let (c, a, b) = (ClusterId(7), NodeId(1), NodeId(2));
        assert_eq!(own_set_at_start(dir.path(), c, a).unwrap(), OwnSet::Serve { epoch: Epoch(1) });
        assert_eq!(own_set_at_start(dir.path(), c, a).unwrap(), OwnSet::Serve { epoch: Epoch(1) }, "a restart");
        assert_eq!(claim_next(dir.path(), c, SetId(1), b).unwrap(), Epoch(2));
        assert_eq!(own_set_at_start(dir.path(), c, a).unwrap(), OwnSet::Held { epoch: Epoch(2), owner: Some(b) });
        assert_eq!(own_set_at_start(dir.path(), c, b).unwrap(), OwnSet::Serve { epoch: Epoch(1) });
    }

    #[test]
    fn a_lease_lasts_a_second_from_the_beat_that_renewed_it_and_a_lost_one_never_comes_back() {
        let lease = Lease::default();
        let t = Instant::now();
        assert!(!lease.valid_at(t), "valid before any beat");
        lease.renew(t);
        assert!(lease.valid_at(t + LEASE / 2));
        assert!(!lease.valid_at(t + LEASE), "a frozen process's lease runs out");
        // A beat that began earlier does not shorten it.
        lease.renew(t - LEASE);
        assert!(lease.valid_at(t + LEASE / 2));
        lease.lose();
        lease.renew(t + LEASE);
        assert!(!lease.valid_at(t + LEASE));
    }

    #[test]
    fn a_hand_over_holds_requests_then_loses_the_lease_until_the_set_is_claimed_again() {
        let lease = Lease::default();
        let t = Instant::now();
        lease.regain(Epoch(1));
        lease.renew(t);
        assert!(lease.admits(t) && lease.valid_at(t));
        // StopReading: new requests wait at the gate; the ones in flight may
        // still change the disk (the fence holds) while they drain.
        lease.hold();
        assert!(!lease.admits(t), "a held set admits no request");
        assert!(lease.valid_at(t), "the drain's changes still pass the fence");
        // Released: nothing more, until our next claim on the set.
        lease.hand_over();
        assert!(!lease.valid_at(t) && !lease.admits(t));
        lease.regain(Epoch(3));
        assert_eq!(lease.epoch(), Epoch(3));
        lease.renew(t);
        assert!(lease.admits(t), "given back: the lease is renewed for the new claim");
    }

    /// The lease on a taken set is renewed by the beats that find our claim
    /// on it the newest, like the one on our own set, and runs out as soon:
    /// a holder frozen for longer than [`DETECT`] (the home node took its set
    /// back meanwhile) resumes with no lease on it, and its first beat loses it.
    #[test]
    fn the_taken_set_s_lease_runs_out_like_our_own_and_a_newer_claim_loses_it() {
        use takeover::ownership::Newest;
        let (me, partner) = (NodeId(2), NodeId(1));
        let (own, taken) = (Arc::new(Lease::default()), Arc::new(Lease::default()));
        own.regain(Epoch(1));
        taken.regain(Epoch(2));
        let leases = Leases::default();
        leases.add(SetId(2), own.clone());
        leases.add(SetId(1), taken.clone());
        let claims = |taken_by: NodeId, epoch: u64| {
            move |s: SetId| match s.0 {
                2 => Some(Newest { epoch: Epoch(1), owner: Some(me) }),
                _ => Some(Newest { epoch: Epoch(epoch), owner: Some(taken_by) }),
            }
        };
        let t = Instant::now();
        assert!(!taken.valid_at(t), "valid before any beat found our claim");
        assert!(Leases::beat(&leases.now(), me, t, claims(me, 2)).is_empty());
        assert!(own.valid_at(t) && taken.valid_at(t + LEASE / 2));
        // Frozen past the partner's detection: no beat renewed either lease.
        assert!(!taken.valid_at(t + DETECT) && !own.valid_at(t + DETECT), "a frozen holder's taken set stays fenced");
        assert!(LEASE < DETECT, "the lease runs out before the partner may claim the set");
        // Thawed: the home node took its set back at epoch 3.
        let lost = Leases::beat(&leases.now(), me, t + DETECT, claims(partner, 3));
        assert_eq!(lost, vec![SetId(1)]);
        assert!(taken.is_lost() && !taken.valid_at(t + DETECT));
        assert!(own.valid_at(t + DETECT), "our own set is still ours");
        // Handed back: no longer renewed, and a new lease on the set replaces an old one.
        leases.remove(&taken);
        assert_eq!(leases.now().len(), 1);
        let again = Arc::new(Lease::default());
        again.regain(Epoch(4));
        leases.add(SetId(1), again.clone());
        leases.add(SetId(1), again.clone());
        assert_eq!(leases.now().len(), 2);
        assert!(Leases::beat(&leases.now(), me, t, claims(me, 4)).is_empty());
        assert!(again.valid_at(t));
        // A beat that began before a new claim of ours (the epoch moved since):
        // it neither renews nor loses the lease.
        let before = leases.now();
        again.regain(Epoch(5));
        assert!(Leases::beat(&before, me, t, claims(me, 5)).is_empty());
        assert!(!again.is_lost());
    }

    #[test]
    fn a_partner_on_this_kernel_is_told_by_its_boot_id() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!same_kernel(dir.path(), NodeId(2)), "nothing recorded");
        record_boot(dir.path(), NodeId(2)).unwrap();
        assert_eq!(same_kernel(dir.path(), NodeId(2)), boot_id().is_some());
        std::fs::write(boot_file(dir.path(), NodeId(2)), "another-boot\n").unwrap();
        assert!(!same_kernel(dir.path(), NodeId(2)));
    }
}
