//! Tests of the model as a whole: random sequences of valid deltas (each made from the
//! model it is applied to), checkpoints and replay, refused deltas, damaged bytes, and
//! deadlines.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::ids::IdParts;
use super::*;

const SET_A: SetId = SetId(1);
const SET_B: SetId = SetId(2);
const SHARES: [&str; 3] = ["data", "DATA", "home"];
const PATHS: [&str; 4] = ["a.txt", "dir\\b.txt", "dir", "c"];
const CLIENTS: [ClientGuid; 2] = [ClientGuid([0xC1; 16]), ClientGuid([0xC2; 16])];
const KEYS: [LeaseKey; 3] = [LeaseKey([1; 16]), LeaseKey([2; 16]), LeaseKey([3; 16])];
/// A lease key the generator never uses.
const NO_KEY: LeaseKey = LeaseKey([0xEE; 16]);

fn start() -> Model {
    let mut m = Model::new();
    m.add_set(SET_A, 10).unwrap();
    m.add_set(SET_B, 20).unwrap();
    m
}

/// The random numbers one step is made from.
#[derive(Clone, Copy, Debug)]
struct Choice {
    kind: u8,
    a: u64,
    b: u64,
    c: u64,
}

fn choice() -> impl Strategy<Value = Choice> {
    (any::<u8>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(kind, a, b, c)| Choice { kind, a, b, c })
}

/// The `n`-th item (modulo the count), if there are any.
fn nth<T>(it: impl Iterator<Item = T>, n: u64) -> Option<T> {
    let mut v: Vec<T> = it.collect();
    if v.is_empty() {
        return None;
    }
    let i = (n % v.len() as u64) as usize;
    Some(v.swap_remove(i))
}

fn bytes(n: u64, len: u64) -> Vec<u8> {
    (0..len % 33).map(|i| (n >> (i % 8)) as u8 ^ i as u8).collect()
}

fn session_info(id: u64, c: &Choice) -> SessionInfo {
    SessionInfo {
        id: SessionId(id),
        owner: Owner { user: ["alice", "bob"][(c.b % 2) as usize].into(), domain: "DUET".into() },
        guest: c.c & 1 != 0,
        anonymous: c.c & 2 != 0,
        client_guid: CLIENTS[(c.c >> 2) as usize % 2],
        dialect: [0x0202, 0x0210, 0x0300, 0x0302, 0x0311][(c.c >> 3) as usize % 5],
        signing_algorithm: (c.c >> 6) as u16 % 3,
        cipher: (c.c >> 8) as u16 % 5,
        signing_required: c.c & 0x400 != 0,
        encrypt_data: c.c & 0x800 != 0,
        keys: SessionKeys {
            session_key: bytes(c.a, 16),
            signing: bytes(c.b, c.c),
            encryption: bytes(c.c, c.a),
            decryption: bytes(c.a ^ c.b, c.b),
            application: bytes(c.b ^ c.c, 16),
        },
        created_at: Timestamp(c.a >> 20),
        expires_at: (c.c & 0x1000 != 0).then_some(Timestamp(c.b >> 20)),
    }
}

fn oplock_level(n: u64) -> OplockLevel {
    [OplockLevel::II, OplockLevel::Exclusive, OplockLevel::Batch][(n % 3) as usize]
}

/// A volatile id not used in the session.
fn free_volatile(p: &Partition, session: SessionId, n: u64) -> VolatileFileId {
    (n % 8..).map(VolatileFileId).find(|v| p.open_by_volatile(session, *v).is_none()).unwrap()
}

/// A valid change of the model, made from `c` (some changes take two deltas); `None` when
/// the kind `c` picks has nothing to act on.
fn pick(m: &Model, c: &Choice, kind: u8, now: Timestamp) -> Option<Vec<Delta>> {
    let set = if c.a.is_multiple_of(2) { SET_A } else { SET_B };
    let p = m.partition(set).unwrap();
    let one = |d: Delta| Some(vec![d]);
    match kind {
        0 => c.b.is_multiple_of(4).then(|| vec![Delta::NewGeneration { set }]),
        1 => one(Delta::IdsReserved { set, through: p.ids().counter().saturating_add((c.b % 50) as u32) }),
        2 => one(Delta::SessionUp(Box::new(session_info(p.ids().peek(1 + (c.b % 3) as u32)?, c)))),
        3 => {
            let s = nth(p.sessions(), c.b)?;
            one(Delta::SessionExpiry { session: s.id(), expires_at: c.c.is_multiple_of(2).then_some(Timestamp(c.c)) })
        }
        4 => {
            let idle = p.sessions().filter(|s| s.trees().next().is_none() && p.session_opens(s.id()).next().is_none());
            one(Delta::SessionDown { session: nth(idle, c.b)?.id() })
        }
        5 => {
            let s = nth(p.sessions(), c.b)?;
            let tree = TreeInfo {
                id: s.next_tree_id()?,
                share: SHARES[(c.c % 3) as usize].into(),
                encrypt: c.c & 4 != 0,
                read_only: c.c & 8 != 0,
                maximal_access: (c.c >> 8) as u32,
            };
            one(Delta::TreeUp { session: s.id(), tree })
        }
        6 => {
            let trees = p.sessions().flat_map(|s| s.trees().map(move |t| (s.id(), t.id)));
            let idle = trees.filter(|(s, t)| !p.opens().any(|o| o.session() == Some(*s) && o.tree() == Some(*t)));
            let (session, tree) = nth(idle, c.b)?;
            one(Delta::TreeDown { session, tree })
        }
        7 => {
            let (session, tree) = nth(p.sessions().flat_map(|s| s.trees().map(move |t| (s.id(), t))), c.b)?;
            let persistent = PersistentFileId(p.ids().peek(1)?);
            let existing = p.files().filter(|f| f.share().eq_ignore_ascii_case(&tree.share));
            let (file, path) = match nth(existing, c.c).filter(|_| !c.b.is_multiple_of(3)) {
                Some(f) => (f.uid(), f.path().to_string()),
                None => {
                    let uid = FileUid(u128::from(c.c) << 64 | u128::from(c.b));
                    if p.file(uid).is_some() {
                        return None;
                    }
                    (uid, PATHS[(c.c % 4) as usize].to_string())
                }
            };
            let client = CLIENTS[((c.a >> 1) % 2) as usize];
            let mut out = Vec::new();
            let caching = match (c.c >> 8) % 3 {
                0 => Caching::None,
                1 => Caching::Oplock { level: oplock_level(c.c >> 12), breaking: None },
                _ => {
                    let key = KEYS[((c.b >> 8) % 3) as usize];
                    let lease = LeaseId { client, key };
                    match p.lease(lease) {
                        Some(l) if l.file() == file => Caching::Lease(key),
                        Some(_) => Caching::None,
                        None => {
                            let v2 = c.c & 0x10000 != 0;
                            out.push(Delta::LeaseGranted {
                                set,
                                lease,
                                file,
                                parent: v2.then_some(KEYS[((c.c >> 20) % 3) as usize]),
                                version: if v2 { LeaseVersion::V2 } else { LeaseVersion::V1 },
                                state: (c.c >> 24) as u32 & 7,
                                epoch: (c.c >> 28) as u16,
                            });
                            Caching::Lease(key)
                        }
                    }
                }
            };
            let timeout_ms = (c.a >> 8) as u32 % 10_000;
            let durability = match (c.a >> 4) % 4 {
                0 => Durability::None,
                1 => Durability::V1 { timeout_ms },
                2 => Durability::V2 { timeout_ms },
                _ => Durability::Persistent { timeout_ms },
            };
            let info = OpenInfo {
                persistent,
                file,
                share: tree.share.to_ascii_lowercase(),
                create_guid: (c.b & 0x100 != 0).then_some(CreateGuid([c.b as u8; 16])),
                client_guid: client,
                app_instance_id: (c.b & 0x200 != 0).then_some(AppInstanceId([c.c as u8; 16])),
                app_instance_version: (c.b & 0x400 != 0).then_some((c.a, c.b)),
                owner: Owner { user: "alice".into(), domain: String::new() },
                durability,
                replay_eligible: c.b & 0x800 != 0,
                granted_access: (c.a >> 32) as u32,
                share_access: (c.b >> 32) as u32 & 7,
                create_options: (c.c >> 32) as u32,
                is_dir: c.b & 0x1000 != 0,
                create_action: (c.c >> 8) as u32 & 3,
            };
            out.push(Delta::OpenUp(Box::new(NewOpen {
                info,
                path,
                session,
                tree: tree.id,
                volatile: free_volatile(p, session, c.c),
                caching,
                channel_sequence: (c.a >> 16) as u16,
                delete_on_close: c.b & 0x2000 != 0,
            })));
            Some(out)
        }
        8 => one(Delta::OpenDown { open: nth(p.opens(), c.b)?.id() }),
        9 => {
            let durable = p.opens().filter(|o| o.session().is_some() && o.info().durability != Durability::None);
            one(Delta::OpenDisconnected { open: nth(durable, c.b)?.id(), at: now })
        }
        10 => {
            let o = nth(p.opens().filter(|o| o.session().is_none()), c.b)?;
            let trees = p.sessions().flat_map(|s| s.trees().map(move |t| (s.id(), t)));
            let (session, tree) = nth(trees.filter(|(_, t)| t.share.eq_ignore_ascii_case(&o.info().share)), c.c)?;
            let volatile = free_volatile(p, session, c.a);
            one(Delta::OpenReconnected { open: o.id(), session, tree: tree.id, volatile })
        }
        11 => {
            let o = nth(p.opens().filter(|o| o.lease_key().is_none()), c.b)?;
            let level = if c.c.is_multiple_of(4) { OplockLevel::None } else { oplock_level(c.c) };
            one(Delta::OplockSet { open: o.id(), level })
        }
        12 => {
            let o = nth(
                p.opens().filter(
                    |o| matches!(o.caching(), Caching::Oplock { level, breaking: None } if level.acknowledged()),
                ),
                c.b,
            )?;
            let to = if c.c.is_multiple_of(2) { OplockLevel::None } else { OplockLevel::II };
            one(Delta::OplockBreaking { open: o.id(), to, deadline: now.plus_ms(c.c % 5000) })
        }
        13 => {
            let lease = LeaseId { client: CLIENTS[(c.b % 2) as usize], key: KEYS[((c.b >> 1) % 3) as usize] };
            if p.lease(lease).is_some() {
                return None;
            }
            let file = nth(p.files().map(|f| f.uid()), c.c).unwrap_or(FileUid(c.c.into()));
            // Version 2 leases carry an epoch, and may name a parent.
            let v2 = c.c & 0x100 != 0;
            one(Delta::LeaseGranted {
                set,
                lease,
                file,
                parent: (v2 && c.c & 0x200 != 0).then_some(KEYS[(c.a % 3) as usize]),
                version: if v2 { LeaseVersion::V2 } else { LeaseVersion::V1 },
                state: c.c as u32 & 7,
                epoch: if v2 { c.a as u16 } else { 0 },
            })
        }
        14 => {
            let l = nth(p.leases().filter(|l| l.breaking().is_none()), c.b)?;
            one(Delta::LeaseChanged { set, lease: l.id(), state: c.c as u32 & 7, epoch: l.epoch().wrapping_add(1) })
        }
        15 => {
            let l = nth(p.leases().filter(|l| l.state() != 0), c.b)?;
            let to = match l.state() & c.c as u32 {
                t if t == l.state() => 0,
                t => t,
            };
            let (to, required) = match l.breaking() {
                Some(b) => (b.to, b.required & (c.c >> 8) as u32),
                None => (to, to & (c.c >> 8) as u32),
            };
            let epoch = l.epoch().wrapping_add(1);
            one(Delta::LeaseBreaking { set, lease: l.id(), to, required, epoch, deadline: now.plus_ms(c.a % 5000) })
        }
        16 => {
            let l = nth(p.leases().filter(|l| l.breaking().is_some()), c.b)?;
            one(Delta::LeaseAcked { set, lease: l.id(), state: l.breaking()?.to & c.c as u32 })
        }
        17 => {
            let l = nth(p.leases().filter(|l| p.lease_opens(l.id()).next().is_none()), c.b)?;
            one(Delta::LeaseGone { set, lease: l.id() })
        }
        18 => {
            let o = nth(p.opens(), c.b)?;
            let length = c.c % 100;
            let offset = if c.c & 0x100 != 0 { u64::MAX - (c.a % 1000).max(length) } else { c.a % 1000 };
            one(Delta::LockAdded { open: o.id(), offset, length, exclusive: c.c & 0x200 != 0 })
        }
        19 => {
            let l = nth(p.files().flat_map(|f| f.locks().iter().copied()), c.b)?;
            one(Delta::LockRemoved { open: l.owner, offset: l.offset, length: l.length, exclusive: l.exclusive })
        }
        20 => {
            let o = nth(p.opens(), c.b)?;
            one(Delta::LockSequenceSet {
                open: o.id(),
                index: 1 + (c.c % 64) as u8,
                number: (c.c & 0x100 != 0).then_some(c.a as u8),
            })
        }
        21 => one(Delta::ChannelSequenceSet { open: nth(p.opens(), c.b)?.id(), sequence: c.c as u16 }),
        22 => one(Delta::DeleteOnCloseSet { open: nth(p.opens(), c.b)?.id(), on: c.c.is_multiple_of(2) }),
        23 => one(Delta::DeletePendingSet { set, file: nth(p.files(), c.b)?.uid(), on: c.c.is_multiple_of(2) }),
        24 => one(Delta::FileMoved { set, file: nth(p.files(), c.b)?.uid(), path: PATHS[(c.c % 4) as usize].into() }),
        25 => one(Delta::ReplayIneligible { open: nth(p.opens(), c.b)?.id() }),
        26 => one(Delta::AppendedAt { open: nth(p.opens(), c.b)?.id(), offset: c.a }),
        27 => {
            let o = nth(p.opens(), c.b)?;
            one(Delta::ClosedAfterWriting {
                open: o.id(),
                share: o.info().share.clone(),
                path: o.path().to_string(),
                file: o.info().file,
            })
        }
        28 => {
            let s = nth(p.sessions(), c.b)?.info();
            let again =
                SessionInfo { id: s.id, client_guid: s.client_guid, created_at: s.created_at, ..session_info(0, c) };
            one(Delta::SessionReauthenticated(Box::new(again)))
        }
        _ => Some(m.expired(now.plus_ms(c.b % 10_000))).filter(|d| !d.is_empty()),
    }
}

/// The kinds of change [`pick`] makes.
const KINDS: u8 = 30;

/// A valid change, falling back on an open, a tree connect or a session when the kind
/// picked has nothing to act on.
fn step(m: &Model, c: &Choice, now: Timestamp) -> Vec<Delta> {
    [c.kind % KINDS, 7, 5, 2].into_iter().find_map(|k| pick(m, c, k, now)).expect("a session can always be made")
}

/// A delta that `apply` must refuse, made from `c`; `None` when the kind it picks is not
/// possible in this model.
fn invalid(m: &Model, c: &Choice) -> Option<Delta> {
    let set = if c.a.is_multiple_of(2) { SET_A } else { SET_B };
    let p = m.partition(set).unwrap();
    let unissued = p.ids().peek(1)?;
    let new_open = |session: SessionId, tree: &TreeInfo, caching: Caching, share: &str| {
        Delta::OpenUp(Box::new(NewOpen {
            info: OpenInfo {
                persistent: PersistentFileId(unissued),
                file: FileUid(7),
                share: share.into(),
                create_guid: None,
                client_guid: CLIENTS[0],
                app_instance_id: None,
                app_instance_version: None,
                owner: Owner::default(),
                durability: Durability::None,
                replay_eligible: false,
                granted_access: 0,
                share_access: 0,
                create_options: 0,
                is_dir: false,
                create_action: 2,
            },
            path: "x".into(),
            session,
            tree: tree.id,
            volatile: free_volatile(p, session, 0),
            caching,
            channel_sequence: 0,
            delete_on_close: false,
        }))
    };
    let trees = || p.sessions().flat_map(|s| s.trees().map(move |t| (s.id(), t)));
    Some(match c.kind % 24 {
        0 => Delta::NewGeneration { set: SetId(3) },
        1 => Delta::SessionUp(Box::new(nth(p.sessions(), c.b)?.info().clone())),
        2 => {
            let parts = IdParts::of(unissued);
            let other = IdParts { generation: parts.generation + 1, ..parts }.compose()?;
            Delta::SessionUp(Box::new(session_info(other, c)))
        }
        3 => Delta::TreeUp {
            session: SessionId(unissued),
            tree: TreeInfo { id: TreeId(1), share: "data".into(), encrypt: false, read_only: false, maximal_access: 0 },
        },
        4 => {
            let (session, tree) = nth(trees(), c.b)?;
            Delta::TreeUp { session, tree: tree.clone() }
        }
        5 => {
            let o = nth(p.opens(), c.b)?;
            let (session, tree) = nth(trees(), c.c)?;
            let mut d = new_open(session, tree, Caching::None, &tree.share);
            if let Delta::OpenUp(n) = &mut d {
                n.info.persistent = o.id();
            }
            d
        }
        6 => Delta::OpenDown { open: PersistentFileId(unissued) },
        7 => Delta::LockRemoved {
            open: nth(p.opens(), c.b)?.id(),
            offset: 1 << 40,
            length: 1,
            exclusive: c.c.is_multiple_of(2),
        },
        8 => Delta::LeaseAcked { set, lease: nth(p.leases().filter(|l| l.breaking().is_none()), c.b)?.id(), state: 0 },
        9 => Delta::SessionDown { session: nth(p.sessions().filter(|s| s.trees().next().is_some()), c.b)?.id() },
        10 => {
            let o = nth(p.opens().filter(|o| o.session().is_some()), c.b)?;
            Delta::TreeDown { session: o.session()?, tree: o.tree()? }
        }
        11 => {
            let o = nth(p.opens().filter(|o| o.session().is_some()), c.b)?;
            Delta::OpenReconnected {
                open: o.id(),
                session: o.session()?,
                tree: o.tree()?,
                volatile: VolatileFileId(1 << 50),
            }
        }
        12 => {
            let o = nth(p.opens().filter(|o| o.session().is_none() || o.info().durability == Durability::None), c.b)?;
            Delta::OpenDisconnected { open: o.id(), at: Timestamp(c.c) }
        }
        13 => Delta::LeaseGone {
            set,
            lease: nth(p.leases().filter(|l| p.lease_opens(l.id()).next().is_some()), c.b)?.id(),
        },
        14 => Delta::LockAdded {
            open: nth(p.opens(), c.b)?.id(),
            offset: u64::MAX - (c.c % 100),
            length: 2 + c.c % 100,
            exclusive: true,
        },
        15 => Delta::OplockSet {
            open: nth(p.opens().filter(|o| o.lease_key().is_some()), c.b)?.id(),
            level: OplockLevel::II,
        },
        16 => Delta::LockSequenceSet {
            open: nth(p.opens(), c.b)?.id(),
            index: if c.c.is_multiple_of(2) { 0 } else { 65 + c.c as u8 % 100 },
            number: None,
        },
        17 => {
            let l = nth(p.leases(), c.b)?;
            Delta::LeaseBreaking { set, lease: l.id(), to: l.state(), required: 0, epoch: 0, deadline: Timestamp(0) }
        }
        18 => {
            let (session, tree) = nth(trees(), c.b)?;
            new_open(session, tree, Caching::Lease(NO_KEY), &tree.share)
        }
        19 => {
            let (session, tree) = nth(trees(), c.b)?;
            new_open(session, tree, Caching::None, "elsewhere")
        }
        20 => Delta::DeletePendingSet { set, file: FileUid(u128::MAX), on: true },
        21 => Delta::IdsReserved { set, through: u32::MAX },
        22 => Delta::TreeUp {
            session: nth(p.sessions(), c.b)?.id(),
            tree: TreeInfo { id: TreeId(0), share: "data".into(), encrypt: false, read_only: false, maximal_access: 0 },
        },
        _ => {
            let l = nth(p.leases(), c.b)?;
            Delta::LeaseGranted {
                set,
                lease: l.id(),
                file: l.file(),
                parent: None,
                version: LeaseVersion::V1,
                state: 1,
                epoch: 0,
            }
        }
    })
}

/// Runs the steps from [`start`]: the model after each, and every delta applied with
/// the step it came from.
fn run(choices: &[Choice], mut each: impl FnMut(usize, &Model)) -> (Model, Vec<(usize, Delta)>) {
    let mut m = start();
    let mut log = Vec::new();
    for (i, c) in choices.iter().enumerate() {
        each(i, &m);
        let now = Timestamp(1_000_000 + 1000 * i as u64);
        for d in step(&m, c, now) {
            if let Err(e) = m.apply(&d) {
                panic!("step {i}: {d:?} refused: {e}");
            }
            log.push((i, d));
        }
    }
    (m, log)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Valid deltas apply, keep the invariants and round-trip through their encoding;
    /// invalid ones are refused and change nothing; a checkpoint decodes to the live
    /// model, and replaying the deltas after an earlier checkpoint onto it gives the
    /// live model again.
    #[test]
    fn deltas_checkpoints_and_replay(choices in vec(choice(), 1..250), cut in any::<Index>(), bad in vec(choice(), 250)) {
        let cut = cut.index(choices.len());
        let mut snapshot = None;
        let (m, log) = run(&choices, |i, m| {
            m.check_invariants().unwrap();
            if i == cut {
                snapshot = Some(m.checkpoint());
            }
            if let Some(d) = invalid(m, &bad[i]) {
                let mut copy = m.clone();
                assert!(copy.apply(&d).is_err(), "{d:?} was taken");
                assert_eq!(&copy, m, "{:?} changed the model", d);
            }
        });
        m.check_invariants().unwrap();
        for (_, d) in &log {
            let bytes = d.to_bytes();
            prop_assert_eq!(&Delta::decode(&bytes).unwrap(), d);
            for n in 0..bytes.len() {
                prop_assert!(Delta::decode(&bytes[..n]).is_err());
            }
        }
        // The whole model, and each set alone.
        let cp = m.checkpoint();
        let back = Model::restore(&cp).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.checkpoint(), cp);
        let mut parts = Model::new();
        for set in m.sets() {
            parts.restore_set(set, &m.checkpoint_set(set).unwrap()).unwrap();
        }
        prop_assert_eq!(&parts, &m);
        // Replay from the earlier checkpoint.
        let mut replayed = Model::restore(&snapshot.unwrap()).unwrap();
        for (_, d) in log.iter().filter(|(i, _)| *i >= cut) {
            replayed.apply(d).unwrap();
        }
        prop_assert_eq!(&replayed, &m);
    }

    /// A damaged checkpoint never decodes: every single-bit flip and every truncation is
    /// an error. With the checksum fixed up, damaged bodies may decode, but never panic
    /// and never give an inconsistent model.
    #[test]
    fn damaged_checkpoints(choices in vec(choice(), 1..120), flips in vec((any::<Index>(), 0..8u8), 1..64),
                           cuts in vec(any::<Index>(), 1..32), junk in vec((any::<Index>(), any::<u8>()), 1..8)) {
        let (m, _) = run(&choices, |_, _| {});
        let cp = m.checkpoint();
        for (at, bit) in &flips {
            let mut b = cp.clone();
            let i = at.index(b.len());
            b[i] ^= 1 << bit;
            prop_assert!(Model::restore(&b).is_err());
        }
        for at in &cuts {
            prop_assert!(Model::restore(&cp[..at.index(cp.len())]).is_err());
        }
        let mut b = cp.clone();
        let body = 16..b.len() - 4;
        for (at, v) in &junk {
            let i = body.start + at.index(body.len());
            b[i] = *v;
        }
        let crc = crc32fast::hash(&b[..b.len() - 4]);
        let n = b.len();
        b[n - 4..].copy_from_slice(&crc.to_le_bytes());
        if let Ok(d) = Model::restore(&b) {
            prop_assert!(d.check_invariants().is_ok());
        }
    }

    /// Random bytes are neither a delta nor a checkpoint, and never a panic.
    #[test]
    fn garbage_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        let _ = Delta::decode(&bytes);
        let mut with_version = vec![super::codec::DELTA_VERSION];
        with_version.extend_from_slice(&bytes);
        let _ = Delta::decode(&with_version);
        let _ = Model::restore(&bytes);
        let mut framed = b"DUETSTAT\x01\x00\x00\x00".to_vec();
        framed.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        framed.extend_from_slice(&bytes);
        let crc = crc32fast::hash(&framed);
        framed.extend_from_slice(&crc.to_le_bytes());
        if let Ok(m) = Model::restore(&framed) {
            prop_assert!(m.check_invariants().is_ok());
        }
    }
}

/// A session with one tree connect on `data`, in `set`.
pub(crate) fn session_with_tree(m: &mut Model, set: SetId) -> (SessionId, TreeId) {
    let id = m.partition(set).unwrap().ids().peek(1).unwrap();
    let c = Choice { kind: 0, a: 1, b: 2, c: 3 };
    m.apply(&Delta::SessionUp(Box::new(session_info(id, &c)))).unwrap();
    let tree =
        TreeInfo { id: TreeId(1), share: "data".into(), encrypt: false, read_only: false, maximal_access: 0x1f01ff };
    m.apply(&Delta::TreeUp { session: SessionId(id), tree }).unwrap();
    (SessionId(id), TreeId(1))
}

pub(crate) fn open_on(
    m: &Model,
    session: SessionId,
    tree: TreeId,
    file: u128,
    durability: Durability,
    caching: Caching,
) -> Delta {
    let p = m.partition(session.set()).unwrap();
    let id = p.ids().peek(1).unwrap();
    Delta::OpenUp(Box::new(NewOpen {
        info: OpenInfo {
            persistent: PersistentFileId(id),
            file: FileUid(file),
            share: "data".into(),
            create_guid: None,
            client_guid: CLIENTS[0],
            app_instance_id: None,
            app_instance_version: None,
            owner: Owner { user: "alice".into(), domain: "DUET".into() },
            durability,
            replay_eligible: false,
            granted_access: 0x12019f,
            share_access: 7,
            create_options: 0,
            is_dir: false,
            create_action: 1,
        },
        path: "f".into(),
        session,
        tree,
        volatile: VolatileFileId(id),
        caching,
        channel_sequence: 0,
        delete_on_close: false,
    }))
}

fn persistent(d: &Delta) -> PersistentFileId {
    match d {
        Delta::OpenUp(n) => n.info.persistent,
        _ => unreachable!(),
    }
}

#[test]
fn deadlines_are_polled_and_expire_into_deltas() {
    let mut m = start();
    assert_eq!(m.poll_timeout(), None);
    let (s, t) = session_with_tree(&mut m, SET_A);
    // A durable open with a batch oplock, disconnected at 1000 with a 60 s timeout.
    let d = open_on(
        &m,
        s,
        t,
        1,
        Durability::V1 { timeout_ms: 60_000 },
        Caching::Oplock { level: OplockLevel::Batch, breaking: None },
    );
    let durable = persistent(&d);
    m.apply(&d).unwrap();
    m.apply(&Delta::OpenDisconnected { open: durable, at: Timestamp(1000) }).unwrap();
    assert_eq!(m.open(durable).unwrap().expires_at(), Some(Timestamp(61_000)));
    assert_eq!(m.poll_timeout(), Some(Timestamp(61_000)));
    // An oplock break of another open, due at 36 000.
    let d = open_on(&m, s, t, 2, Durability::None, Caching::Oplock { level: OplockLevel::Exclusive, breaking: None });
    let other = persistent(&d);
    m.apply(&d).unwrap();
    m.apply(&Delta::OplockBreaking { open: other, to: OplockLevel::II, deadline: Timestamp(36_000) }).unwrap();
    // A lease break in the other set, due at 50 000.
    let (s2, t2) = session_with_tree(&mut m, SET_B);
    let lease = LeaseId { client: CLIENTS[0], key: KEYS[0] };
    m.apply(&Delta::LeaseGranted {
        set: SET_B,
        lease,
        file: FileUid(3),
        parent: None,
        version: LeaseVersion::V2,
        state: 7,
        epoch: 1,
    })
    .unwrap();
    m.apply(&open_on(&m, s2, t2, 3, Durability::None, Caching::Lease(KEYS[0]))).unwrap();
    m.apply(&Delta::LeaseBreaking { set: SET_B, lease, to: 3, required: 1, epoch: 2, deadline: Timestamp(50_000) })
        .unwrap();
    assert_eq!(m.poll_timeout(), Some(Timestamp(36_000)));

    assert_eq!(m.expired(Timestamp(35_999)), vec![]);
    assert_eq!(m.expired(Timestamp(36_000)), vec![Delta::OplockSet { open: other, level: OplockLevel::None }]);
    for d in m.expired(Timestamp(36_000)) {
        m.apply(&d).unwrap();
    }
    assert_eq!(m.open(other).unwrap().caching(), Caching::None);
    assert_eq!(m.poll_timeout(), Some(Timestamp(50_000)));
    assert_eq!(m.expired(Timestamp(50_000)), vec![Delta::LeaseAcked { set: SET_B, lease, state: 0 }]);
    // Everything at once, in an order that applies.
    let all = m.expired(Timestamp(u64::MAX));
    assert_eq!(all.len(), 2);
    for d in &all {
        m.apply(d).unwrap();
    }
    assert_eq!(m.open(durable), None);
    let l = m.partition(SET_B).unwrap().lease(lease).unwrap();
    assert_eq!((l.state(), l.breaking()), (0, None));
    assert_eq!(m.poll_timeout(), None);
    m.check_invariants().unwrap();
    // A reconnect in time clears the deadline.
    let d = open_on(&m, s, t, 4, Durability::V2 { timeout_ms: 10 }, Caching::None);
    let p4 = persistent(&d);
    m.apply(&d).unwrap();
    m.apply(&Delta::OpenDisconnected { open: p4, at: Timestamp(5) }).unwrap();
    assert_eq!(m.poll_timeout(), Some(Timestamp(15)));
    m.apply(&Delta::OpenReconnected { open: p4, session: s, tree: t, volatile: VolatileFileId(99) }).unwrap();
    assert_eq!(m.poll_timeout(), None);
    // A retained leased open that expires takes its lease with it.
    let lease = LeaseId { client: CLIENTS[0], key: KEYS[2] };
    m.apply(&Delta::LeaseGranted {
        set: SET_A,
        lease,
        file: FileUid(5),
        parent: None,
        version: LeaseVersion::V1,
        state: 5,
        epoch: 0,
    })
    .unwrap();
    let d = open_on(&m, s, t, 5, Durability::V1 { timeout_ms: 10 }, Caching::Lease(KEYS[2]));
    let p5 = persistent(&d);
    m.apply(&d).unwrap();
    m.apply(&Delta::OpenDisconnected { open: p5, at: Timestamp(100) }).unwrap();
    let due = m.expired(Timestamp(110));
    assert_eq!(due, vec![Delta::OpenDown { open: p5 }, Delta::LeaseGone { set: SET_A, lease }]);
    for d in &due {
        m.apply(d).unwrap();
    }
    assert!(m.partition(SET_A).unwrap().lease(lease).is_none());
    m.check_invariants().unwrap();
}

#[test]
fn closing_the_last_open_drops_its_file_locks_and_lease() {
    let mut m = start();
    let (s, t) = session_with_tree(&mut m, SET_A);
    let lease = LeaseId { client: CLIENTS[0], key: KEYS[1] };
    m.apply(&Delta::LeaseGranted {
        set: SET_A,
        lease,
        file: FileUid(9),
        parent: None,
        version: LeaseVersion::V1,
        state: 5,
        epoch: 0,
    })
    .unwrap();
    let d1 = open_on(&m, s, t, 9, Durability::None, Caching::Lease(KEYS[1]));
    m.apply(&d1).unwrap();
    let d2 = open_on(&m, s, t, 9, Durability::None, Caching::Lease(KEYS[1]));
    m.apply(&d2).unwrap();
    let (o1, o2) = (persistent(&d1), persistent(&d2));
    m.apply(&Delta::LockAdded { open: o1, offset: 0, length: 10, exclusive: true }).unwrap();
    m.apply(&Delta::LockAdded { open: o2, offset: 10, length: 10, exclusive: false }).unwrap();
    m.apply(&Delta::FileMoved { set: SET_A, file: FileUid(9), path: "g".into() }).unwrap();
    assert_eq!(m.open(o2).unwrap().path(), "g");
    // The lease cannot go while opens use it, nor a session with trees.
    assert_eq!(m.apply(&Delta::LeaseGone { set: SET_A, lease }), Err(ApplyError::InUse("lease has opens")));
    assert!(m.apply(&Delta::SessionDown { session: s }).is_err());
    m.apply(&Delta::OpenDown { open: o1 }).unwrap();
    let p = m.partition(SET_A).unwrap();
    assert_eq!(
        p.file(FileUid(9)).unwrap().locks(),
        &[ByteLock { owner: o2, offset: 10, length: 10, exclusive: false }]
    );
    assert!(p.lease(lease).is_some());
    m.apply(&Delta::OpenDown { open: o2 }).unwrap();
    // The lease outlives its last open until the server lets it go.
    let p = m.partition(SET_A).unwrap();
    assert!(p.file(FileUid(9)).is_none() && p.lease(lease).is_some());
    m.apply(&Delta::LeaseGone { set: SET_A, lease }).unwrap();
    assert!(m.partition(SET_A).unwrap().lease(lease).is_none());
    m.apply(&Delta::TreeDown { session: s, tree: t }).unwrap();
    m.apply(&Delta::SessionDown { session: s }).unwrap();
    assert_eq!(m.partition(SET_A).unwrap().sessions().count(), 0);
    m.check_invariants().unwrap();
}

#[test]
fn a_restored_set_takes_a_new_generation_and_never_repeats_an_id() {
    let mut m = start();
    let (s, _) = session_with_tree(&mut m, SET_A);
    let cp = m.checkpoint_set(SET_A).unwrap();
    // The partner restores set A next to its own set B.
    let mut partner = Model::new();
    partner.add_set(SET_B, 20).unwrap();
    partner.restore_set(SET_A, &cp).unwrap();
    assert_eq!(partner.session(s), m.session(s));
    assert_eq!(partner.restore_set(SET_A, &cp), Err(RestoreError::SetPresent(SET_A)));
    assert_eq!(
        Model::new().restore_set(SET_B, &cp),
        Err(RestoreError::WrongSet { expected: SET_B, found: vec![SET_A] })
    );
    assert!(matches!(
        Model::new().restore_set(SET_A, &m.checkpoint()),
        Err(RestoreError::WrongSet { expected: SET_A, .. })
    ));
    let before = partner.partition(SET_A).unwrap().ids().clone();
    partner.apply(&Delta::NewGeneration { set: SET_A }).unwrap();
    let after = partner.partition(SET_A).unwrap().ids();
    assert_eq!(after.generation(), before.generation() + 1);
    let next = after.peek(1).unwrap();
    assert_eq!(IdParts::of(next).set, SET_A);
    assert!(next > s.0);
    // The old generation's ids are refused for new sessions, even unused ones.
    let stale = before.peek(5).unwrap();
    let c = Choice { kind: 0, a: 0, b: 0, c: 0 };
    assert_eq!(partner.apply(&Delta::SessionUp(Box::new(session_info(stale, &c)))), Err(ApplyError::NotCurrent(stale)));
    // Deltas of a set the model does not hold are refused.
    assert_eq!(m.apply(&Delta::NewGeneration { set: SetId(9) }), Err(ApplyError::UnknownSet(SetId(9))));
    assert_eq!(m.add_set(SetId(256), 0), Err(ApplyError::SetOutOfRange(SetId(256))));
    assert_eq!(m.add_set(SET_A, 0), Err(ApplyError::SetPresent(SET_A)));
}

#[test]
fn checkpoint_layout() {
    let m = start();
    let cp = m.checkpoint();
    assert_eq!(&cp[..8], b"DUETSTAT");
    assert_eq!(&cp[8..12], &[1, 0, 0, 0]);
    let len = u32::from_le_bytes(cp[12..16].try_into().unwrap()) as usize;
    assert_eq!(cp.len(), 16 + len + 4);
    // Two empty partitions: count, then set 1 (generation 10) and set 2 (generation 20).
    let mut body = vec![2, 0];
    for (set, generation) in [(1u16, 10u32), (2, 20)] {
        body.extend_from_slice(&set.to_le_bytes());
        body.extend_from_slice(&generation.to_le_bytes());
        body.extend_from_slice(&[0; 4 + 4 * 4]);
    }
    assert_eq!(&cp[16..16 + len], &body[..]);
    assert_eq!(&cp[16 + len..], &crc32fast::hash(&cp[..16 + len]).to_le_bytes());
    assert_eq!(Model::restore(&cp[..cp.len() - 1]), Err(DecodeError::Truncated));
    let mut extra = cp.clone();
    extra.push(0);
    assert_eq!(Model::restore(&extra), Err(DecodeError::Trailing(1)));
    let mut v2 = cp.clone();
    v2[8] = 2;
    assert_eq!(Model::restore(&v2), Err(DecodeError::Version(2)));
    // A delta: version, kind, fields.
    assert_eq!(Delta::NewGeneration { set: SetId(0x102) }.to_bytes(), vec![1, 0x01, 0x02, 0x01]);
    assert_eq!(Delta::decode(&[1, 0x01, 0x02, 0x01, 0]), Err(DecodeError::Trailing(1)));
    assert_eq!(Delta::decode(&[1, 0x1e]), Err(DecodeError::BadValue { what: "delta kind", value: 0x1e }));
    assert_eq!(Delta::decode(&[2, 0x01, 0, 0]), Err(DecodeError::Version(2)));
}

#[test]
fn session_keys_stay_out_of_debug_output() {
    let keys = SessionKeys { session_key: vec![0xAB; 16], ..Default::default() };
    let shown = format!("{keys:?}");
    assert!(!shown.contains("171") && !shown.contains("AB") && !shown.contains("ab"), "{shown}");
}

/// A durable v2 open keeps what a DH2C or a replayed CREATE needs (CreateGuid,
/// ClientGuid, owner, timeout); a replayed CREATE finds it by CreateGuid and ClientGuid
/// until ReplayIneligible; ChannelSequenceSet moves Open.ChannelSequence; and all of it
/// comes back the same from the deltas' encoding and from a checkpoint.
#[test]
fn durable_v2_open_replay_and_channel_sequence() {
    let mut m = start();
    let set = m.sets().next().unwrap();
    let (session, tree) = session_with_tree(&mut m, set);
    let guid = CreateGuid([0x42; 16]);
    let mut up = open_on(&m, session, tree, 9, Durability::V2 { timeout_ms: 300_000 }, Caching::None);
    if let Delta::OpenUp(n) = &mut up {
        n.info.create_guid = Some(guid);
        n.info.replay_eligible = true;
        n.info.app_instance_id = Some(AppInstanceId([7; 16]));
    }
    let open = persistent(&up);
    let deltas = vec![
        up,
        Delta::ChannelSequenceSet { open, sequence: 0x7fff },
        Delta::OpenDisconnected { open, at: Timestamp(1000) },
    ];
    let mut replica = m.clone();
    for d in &deltas {
        m.apply(d).unwrap();
    }
    for d in Delta::decode_batch(&Delta::encode_batch(&deltas)).unwrap() {
        replica.apply(&d).unwrap();
    }
    assert_eq!(replica, m);
    let p = m.partition(set).unwrap();
    let o = p.replay_open(CLIENTS[0], guid).expect("found by CreateGuid and ClientGuid");
    assert_eq!(o.id(), open);
    assert_eq!(o.channel_sequence(), 0x7fff);
    assert_eq!(o.expires_at(), Some(Timestamp(301_000)));
    assert_eq!(o.info().owner.user, "alice");
    assert!(p.replay_open(CLIENTS[1], guid).is_none(), "another client's CreateGuid");
    assert!(p.replay_open(CLIENTS[0], CreateGuid([0x43; 16])).is_none());
    assert_eq!(p.app_instance_opens(AppInstanceId([7; 16])).count(), 1);
    assert_eq!(Model::restore(&m.checkpoint()).unwrap(), m);

    m.apply(&Delta::ReplayIneligible { open }).unwrap();
    assert!(m.partition(set).unwrap().replay_open(CLIENTS[0], guid).is_none());
    assert!(m.apply(&Delta::ReplayIneligible { open: PersistentFileId(open.0 + 1) }).is_err());
}

/// A delete pending on a file whose named stream is still open outlives
/// the file's last own open: its record stays, with no opens, while the
/// stream's record (at `path:name`) has opens, survives a checkpoint, and
/// goes with the stream's last open ([MS-FSA] 2.1.5.4). A record that no
/// stream waits on goes with its last open, pending or not.
#[test]
fn a_delete_pending_file_waits_for_its_streams_last_close() {
    let mut m = Model::new();
    m.add_set(SetId(0), 5).unwrap();
    let (s, t) = session_with_tree(&mut m, SetId(0));
    let open_at = |m: &mut Model, file: u128, path: &str| {
        let mut d = open_on(m, s, t, file, Durability::None, Caching::None);
        let Delta::OpenUp(n) = &mut d else { unreachable!() };
        n.path = path.into();
        let id = n.info.persistent;
        m.apply(&d).unwrap();
        id
    };
    let (base, stream, other) = (FileUid(1), FileUid(2), FileUid(3));
    let b = open_at(&mut m, 1, "dir\\f");
    let st = open_at(&mut m, 2, "DIR\\F:s");
    let o = open_at(&mut m, 3, "dir\\f2");
    m.apply(&Delta::DeletePendingSet { set: SetId(0), file: base, on: true }).unwrap();
    m.apply(&Delta::DeletePendingSet { set: SetId(0), file: other, on: true }).unwrap();
    m.apply(&Delta::OpenDown { open: b }).unwrap();
    m.apply(&Delta::OpenDown { open: o }).unwrap();
    let p = m.partition(SetId(0)).unwrap();
    let f = p.file(base).expect("the file waits for its stream");
    assert!(f.delete_pending() && f.opens().next().is_none());
    assert!(p.file(other).is_none(), "no stream of it is open: it goes");
    m.check_invariants().unwrap();
    assert_eq!(Model::restore(&m.checkpoint()).unwrap(), m);
    m.apply(&Delta::OpenDown { open: st }).unwrap();
    let p = m.partition(SetId(0)).unwrap();
    assert!(p.file(base).is_none() && p.file(stream).is_none());
    m.check_invariants().unwrap();
}
