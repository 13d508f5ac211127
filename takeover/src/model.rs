//! An exhaustive explorer of bounded runs of the real [`crate::Node`] code.
//!
//! The model is a [`Pair`] (two nodes, their simulated servers, shared storage, the link).
//! From each state, every enabled step is tried: deliver any frame on the wire (any order, so
//! frames are reordered), lose one, duplicate one, let one arrive late (after the next time
//! step), move time to the next timer, kill or restart a node, freeze or resume one, partition
//! or heal the interconnect, stall or un-stall a node's storage, report a fault, and run the
//! operator's takeover and giveback commands. Faults come from budgets ([`Bounds`]); time is
//! bounded by a horizon. States are deduplicated by a 64-bit fingerprint of the whole model,
//! depth-first, so every interleaving within the bounds is covered.
//!
//! Checked in every state: the safety properties of [`Pair::check`] (never two servers for a
//! set; never a bind below the newest claim; never a set unserved longer than the bound
//! while a healthy node reaches storage). Liveness: in every state where an elective
//! takeover or a giveback was started with both nodes healthy and no crash, freeze,
//! partition, stall or fault came after it, the fair continuation (every frame delivered in
//! order, time moving on) completes it within [`Bounds::liveness_deadline`].

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::node::Command;
use crate::sim::{Pair, Violation};
use crate::types::{FaultKind, Health};

/// The bounds of an exploration.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// Virtual time explored from boot.
    pub horizon: Duration,
    /// Frames that may be lost.
    pub losses: u8,
    /// Frames that may be duplicated.
    pub dups: u8,
    /// Frames that may arrive late (after a time step).
    pub delays: u8,
    /// Kills (each may be followed by a restart).
    pub crashes: u8,
    /// Freezes (each may be followed by a resume).
    pub freezes: u8,
    /// Partitions (each may be healed).
    pub partitions: u8,
    /// Storage stalls (each may end).
    pub stalls: u8,
    /// Fault reports.
    pub faults: u8,
    /// Operator commands (takeover, giveback).
    pub commands: u8,
    /// Steps at which faults and commands may start: only while the elapsed time is at
    /// least this (lets the pair boot first, which keeps the space small).
    pub inject_after: Duration,
    /// How long the fair continuation may take to complete a started takeover or giveback.
    pub liveness_deadline: Duration,
    /// Stop after this many states (the report says whether it did).
    pub max_states: usize,
    /// Clock drift: node 1's clock runs this many parts per million fast and node 2's as
    /// many slow (a negative value swaps them).
    pub drift_ppm: i32,
}

impl Bounds {
    /// Small bounds for the CI test.
    pub fn small() -> Bounds {
        Bounds {
            horizon: Duration::from_millis(900),
            losses: 1,
            dups: 1,
            delays: 1,
            crashes: 1,
            freezes: 1,
            partitions: 1,
            stalls: 1,
            faults: 1,
            commands: 2,
            inject_after: Duration::from_millis(300),
            liveness_deadline: Duration::from_secs(3),
            max_states: 5_000_000,
            drift_ppm: 0,
        }
    }
}

/// One step of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Deliver the frame at this index.
    Deliver(usize),
    /// Lose it.
    Drop(usize),
    /// Duplicate it.
    Duplicate(usize),
    /// Let it survive the next time step.
    Delay(usize),
    /// Move time to the next timer.
    Advance,
    /// Kill node i.
    Kill(usize),
    /// Restart node i.
    Restart(usize),
    /// Freeze node i.
    Freeze(usize),
    /// Resume node i.
    Resume(usize),
    /// Partition the interconnect.
    Partition,
    /// Heal it.
    Heal,
    /// Stall node i's storage.
    Stall(usize),
    /// Un-stall it.
    Unstall(usize),
    /// Report a disk fault on node i.
    Fault(usize),
    /// Operator: node i takes over the partner's set.
    Takeover(usize),
    /// Operator: giveback, run on node i.
    Giveback(usize),
    /// A killed node's hung storage write lands ([`Pair::land_orphan`]).
    Land(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Goal {
    /// Node i serves the partner's home set.
    Takeover(usize),
    /// Node i serves its own home set again.
    Giveback(usize),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    pair: Pair,
    budget: [u8; 9],
    goal: Option<(Goal, bool)>,
}

const LOSS: usize = 0;
const DUP: usize = 1;
const DELAY: usize = 2;
const CRASH: usize = 3;
const FREEZE: usize = 4;
const PARTITION: usize = 5;
const STALL: usize = 6;
const FAULT: usize = 7;
const COMMAND: usize = 8;

/// A property that failed, with the steps that lead to it from boot.
#[derive(Clone, Debug)]
pub struct Failure {
    /// What failed.
    pub what: String,
    /// The steps from boot.
    pub trace: Vec<Step>,
}

/// The result of an exploration.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Distinct states explored.
    pub states: usize,
    /// Steps taken (edges).
    pub transitions: usize,
    /// The longest run, in steps.
    pub max_depth: usize,
    /// States from which liveness was checked.
    pub liveness_checks: usize,
    /// Started takeovers and givebacks seen completed.
    pub goals_completed: usize,
    /// Whether `max_states` cut the exploration short.
    pub truncated: bool,
    /// The first failures found (at most 10).
    pub failures: Vec<Failure>,
}

fn fingerprint(s: &State) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn healthy(p: &Pair) -> bool {
    !p.link.partitioned
        && (0..2).all(|i| {
            let h = &p.hosts[i];
            p.awake(i) && !h.storage_stalled && h.node.as_ref().is_some_and(|n| n.health() == Health::Healthy)
        })
}

fn reached(p: &Pair, g: Goal) -> bool {
    match g {
        Goal::Takeover(i) => p.serving(i, Pair::set(1 - i)),
        Goal::Giveback(i) => p.serving(i, Pair::set(i)),
    }
}

fn steps(s: &State, b: &Bounds) -> Vec<Step> {
    let p = &s.pair;
    let mut v = Vec::new();
    let mut seen = Vec::new();
    for (j, f) in p.flight.iter().enumerate() {
        if !p.awake(f.to) || seen.contains(&(f.to, &f.bytes)) {
            continue;
        }
        seen.push((f.to, &f.bytes));
        v.push(Step::Deliver(j));
        if s.budget[LOSS] > 0 {
            v.push(Step::Drop(j));
        }
        if s.budget[DUP] > 0 {
            v.push(Step::Duplicate(j));
        }
        if s.budget[DELAY] > 0 && !f.late {
            v.push(Step::Delay(j));
        }
    }
    let blocked = p.flight.iter().any(|f| p.awake(f.to) && !f.late);
    if !blocked {
        if let Some(t) = p.next_timer() {
            if t <= p.base + b.horizon {
                v.push(Step::Advance);
            }
        }
    }
    // Faults and commands start only between deliveries (no frame due), after boot.
    if p.elapsed() < b.inject_after || blocked {
        return v;
    }
    for i in 0..2 {
        let h = &p.hosts[i];
        match (&h.node, h.frozen) {
            (Some(_), false) => {
                if s.budget[CRASH] > 0 {
                    v.push(Step::Kill(i));
                }
                if s.budget[FREEZE] > 0 {
                    v.push(Step::Freeze(i));
                }
                if s.budget[FAULT] > 0 && h.fault.is_none() {
                    v.push(Step::Fault(i));
                }
                if s.budget[COMMAND] > 0 {
                    v.push(Step::Takeover(i));
                    v.push(Step::Giveback(i));
                }
            }
            (Some(_), true) => v.push(Step::Resume(i)),
            (None, _) => v.push(Step::Restart(i)),
        }
        if h.storage_stalled {
            v.push(Step::Unstall(i));
        } else if s.budget[STALL] > 0 {
            v.push(Step::Stall(i));
        }
    }
    for j in 0..p.orphans.len() {
        v.push(Step::Land(j));
    }
    if p.link.partitioned {
        v.push(Step::Heal);
    } else if s.budget[PARTITION] > 0 {
        v.push(Step::Partition);
    }
    v
}

fn apply(s: &mut State, step: Step) {
    let p = &mut s.pair;
    let mut fault = true;
    match step {
        Step::Deliver(j) => {
            fault = false;
            p.deliver(j)
        }
        Step::Drop(j) => {
            fault = false;
            s.budget[LOSS] -= 1;
            p.flight.remove(j);
        }
        Step::Duplicate(j) => {
            fault = false;
            s.budget[DUP] -= 1;
            let f = p.flight[j].clone();
            p.flight.push(f);
        }
        Step::Delay(j) => {
            fault = false;
            s.budget[DELAY] -= 1;
            let mut f = p.flight.remove(j);
            f.late = true;
            p.flight.push(f);
        }
        Step::Advance => {
            fault = false;
            for f in p.flight.iter_mut() {
                f.late = false;
            }
            if let Some(t) = p.next_timer() {
                p.advance_to(t);
            }
        }
        Step::Kill(i) => {
            s.budget[CRASH] -= 1;
            p.kill(i)
        }
        Step::Restart(i) => p.restart(i),
        Step::Freeze(i) => {
            s.budget[FREEZE] -= 1;
            p.freeze(i)
        }
        Step::Resume(i) => p.resume(i),
        Step::Partition => {
            s.budget[PARTITION] -= 1;
            p.partition(true)
        }
        Step::Heal => p.partition(false),
        Step::Stall(i) => {
            s.budget[STALL] -= 1;
            p.stall_storage(i, true)
        }
        Step::Unstall(i) => p.stall_storage(i, false),
        Step::Land(j) => p.land_orphan(j),
        Step::Fault(i) => {
            s.budget[FAULT] -= 1;
            p.fault(i, FaultKind::DiskErrors)
        }
        Step::Takeover(i) | Step::Giveback(i) => {
            fault = false;
            s.budget[COMMAND] -= 1;
            let was_healthy = healthy(p);
            let (cmd, goal) = match step {
                Step::Takeover(_) => (Command::Takeover, Goal::Takeover(i)),
                _ => {
                    // Giveback moves whichever set is away from home: on the holder it is
                    // the partner's, on the home node its own.
                    let home = if p.hosts[i].node.as_ref().and_then(|n| n.phase(Pair::set(1 - i))).is_some_and(|ph| matches!(ph, crate::node::Phase::Serving { .. })) {
                        1 - i
                    } else {
                        i
                    };
                    (Command::Giveback, Goal::Giveback(home))
                }
            };
            let accepted = p.command(i, cmd);
            if accepted && was_healthy && s.goal.is_none() {
                s.goal = Some((goal, true));
            }
        }
    }
    // Any frame may be delivered next, so the order on the wire only matters per direction:
    // keep it canonical (by receiver, then the sender's generation and sequence number).
    for h in s.pair.hosts.iter_mut() {
        if let Some(n) = h.node.as_mut() {
            n.clear_counters();
        }
    }
    s.pair.flight.sort_by(|a, b| (a.to, &a.bytes[14..26], a.late).cmp(&(b.to, &b.bytes[14..26], b.late)));
    if fault {
        if let Some((_, clean)) = s.goal.as_mut() {
            *clean = false;
        }
    }
    if let Some((g, _)) = s.goal {
        if reached(&s.pair, g) {
            s.goal = None;
        }
    }
}

/// Runs the fair continuation from `s`: frames delivered in order, time moving on. `known`
/// maps states already seen on a successful continuation to the virtual time they still
/// needed, so that converging continuations are run once.
fn fair_completes(s: &State, deadline: Duration, known: &mut HashMap<u64, Duration>) -> Result<(), String> {
    let Some((goal, _)) = s.goal else { return Ok(()) };
    let mut s = s.clone();
    let start = s.pair.now;
    let end = start + deadline;
    let mut path: Vec<(u64, Instant)> = Vec::new();
    let mut done_at = None;
    for _ in 0..100_000 {
        let fp = fingerprint(&s);
        if let Some(rest) = known.get(&fp) {
            done_at = Some(s.pair.now + *rest);
            break;
        }
        path.push((fp, s.pair.now));
        if reached(&s.pair, goal) {
            done_at = Some(s.pair.now);
            break;
        }
        if !s.pair.violations.is_empty() {
            return Err(format!("violation in the fair continuation: {:?}", s.pair.violations));
        }
        if let Some(j) = s.pair.flight.iter().position(|f| s.pair.awake(f.to)) {
            s.pair.deliver(j);
            continue;
        }
        match s.pair.next_timer() {
            Some(t) if t <= end => s.pair.advance_to(t),
            _ => break,
        }
    }
    match done_at {
        Some(t) if t <= end => {
            for (fp, at) in path {
                known.insert(fp, t - at);
            }
            Ok(())
        }
        _ => Err(format!("{goal:?} did not complete within {deadline:?} of fair running")),
    }
}

/// Explores every run of the pair within `bounds`, from both nodes booting on empty storage.
pub fn explore(bounds: &Bounds) -> Report {
    explore_with(bounds, [crate::sim::config(0), crate::sim::config(1)])
}

/// [`explore`] with these node configurations (timings, `auto_giveback`, and the mutation
/// tests' switches).
pub fn explore_with(bounds: &Bounds, configs: [Config; 2]) -> Report {
    let mut pair = Pair::with_configs(Instant::now(), configs);
    pair.set_drift(0, bounds.drift_ppm);
    pair.set_drift(1, -bounds.drift_ppm);
    pair.record = false;
    pair.unserved_slack = pair.hosts[0].config.heartbeat_interval * (bounds.losses as u32 + bounds.delays as u32);
    let b = bounds;
    let start = State {
        pair,
        budget: [b.losses, b.dups, b.delays, b.crashes, b.freezes, b.partitions, b.stalls, b.faults, b.commands],
        goal: None,
    };
    explore_from(start, bounds)
}

fn explore_from(start: State, bounds: &Bounds) -> Report {
    let mut report = Report::default();
    let mut visited: HashSet<u64> = HashSet::new();
    visited.insert(fingerprint(&start));
    let mut stack: Vec<(State, Option<Step>, usize)> = vec![(start, None, 0)];
    let mut path: Vec<Step> = Vec::new();
    let mut known: HashMap<u64, Duration> = HashMap::new();
    while let Some((s, step, depth)) = stack.pop() {
        path.truncate(depth.saturating_sub(1));
        if let Some(st) = step {
            path.push(st);
        }
        report.states += 1;
        report.max_depth = report.max_depth.max(depth);
        if !s.pair.violations.is_empty() {
            let what = format!("{:?}", s.pair.violations);
            if report.failures.len() < 10 {
                report.failures.push(Failure { what, trace: path.clone() });
            }
            continue;
        }
        if let Some((_, true)) = s.goal {
            report.liveness_checks += 1;
            if let Err(what) = fair_completes(&s, bounds.liveness_deadline, &mut known) {
                if report.failures.len() < 10 {
                    report.failures.push(Failure { what, trace: path.clone() });
                }
            }
        }
        if report.states >= bounds.max_states {
            report.truncated = true;
            break;
        }
        for st in steps(&s, bounds) {
            let mut next = s.clone();
            let had_goal = next.goal.is_some();
            apply(&mut next, st);
            if had_goal && next.goal.is_none() {
                report.goals_completed += 1;
            }
            report.transitions += 1;
            if visited.insert(fingerprint(&next)) {
                stack.push((next, Some(st), depth + 1));
            }
        }
    }
    report
}

/// Replays `trace` from boot with `bounds`, returning the pair after it (to debug a failure).
pub fn replay(bounds: &Bounds, trace: &[Step]) -> Pair {
    replay_with(bounds, [crate::sim::config(0), crate::sim::config(1)], trace)
}

/// [`replay`] with these node configurations.
pub fn replay_with(bounds: &Bounds, configs: [Config; 2], trace: &[Step]) -> Pair {
    let mut pair = Pair::with_configs(Instant::now(), configs);
    pair.set_drift(0, bounds.drift_ppm);
    pair.set_drift(1, -bounds.drift_ppm);
    pair.record = true;
    pair.unserved_slack = pair.hosts[0].config.heartbeat_interval * (bounds.losses as u32 + bounds.delays as u32);
    let b = bounds;
    let mut s = State {
        pair,
        budget: [b.losses, b.dups, b.delays, b.crashes, b.freezes, b.partitions, b.stalls, b.faults, b.commands],
        goal: None,
    };
    for st in trace {
        apply(&mut s, *st);
    }
    s.pair
}

/// A violation type, re-exported for reports.
pub type ModelViolation = Violation;
