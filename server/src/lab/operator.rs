//! `duet lab takeover | giveback | move SET`: the pair's operator commands
//! (`duet takeover`, `duet giveback`, `duet move`), run as an operator would
//! on the right node: a `duet` process in that node's namespace, against its
//! admin socket. Which node is right follows from what each node says of the
//! set ([`plan`]); afterwards the set's address is shown: which namespace
//! holds it and who answers there.

use std::process::Command;
use std::time::{Duration, Instant};

use super::nodes::{self, State};
use super::{net, probe, LabFile};
use crate::admin::{Request, Response};

/// One of the pair's operator commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Elective takeover: the set's home node hands it to its partner.
    Takeover,
    /// The partner gives the set back to its home node.
    Giveback,
    /// The set moves to the other node, whichever way that is.
    Move,
}

/// Where a command runs and where the set should end up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The node (1: A, 2: B) whose `duet` runs the command.
    pub run_on: u16,
    /// The `duet` arguments, before `--socket`.
    pub args: Vec<String>,
    /// The node that should serve the set when the command is done.
    pub to: u16,
}

/// "A" for node 1, "B" for node 2.
pub fn name(id: u16) -> &'static str {
    if id == 1 {
        "A"
    } else {
        "B"
    }
}

/// A set named on the command line: A or B (its home node), 1 or 2 (its id),
/// or its share (seta, setb).
pub fn parse_set(s: &str) -> Result<u16, String> {
    match s.to_ascii_lowercase().as_str() {
        "a" | "1" | "seta" => Ok(1),
        "b" | "2" | "setb" => Ok(2),
        _ => Err(format!("no set {s:?}: A or B")),
    }
}

/// Which node runs `op` on set `set`, given the set's state as each node's
/// `duet status` gives it (`states[0]` node A's, `states[1]` node B's; `None`
/// when the node did not answer: dead or frozen).
///
/// A takeover runs on the set's partner node (`duet takeover` takes the
/// partner's set), and only while the partner does not serve it already. A
/// giveback runs on the partner too, and only while it serves the set: `duet
/// giveback` there gives back the set it holds away from home (elsewhere it
/// would ask for its own set back, another set). A move runs on the node that
/// serves the set (or, when none does, on the home node, else its partner).
pub fn plan(op: Op, set: u16, states: [Option<&str>; 2]) -> Result<Plan, String> {
    let partner = 3 - set;
    let state = |n: u16| states[usize::from(n - 1)];
    let (s, p) = (name(set), name(partner));
    match op {
        Op::Takeover => match state(partner) {
            None => Err(format!("node {p} does not answer: it cannot take set {s} over")),
            Some("serving") => Err(format!("node {p} serves set {s} already: nothing to take over")),
            Some(_) => Ok(Plan { run_on: partner, args: vec!["takeover".into()], to: partner }),
        },
        Op::Giveback => match state(partner) {
            None => Err(format!("node {p} does not answer: it cannot give set {s} back")),
            Some("serving") => Ok(Plan { run_on: partner, args: vec!["giveback".into()], to: set }),
            Some(st) => Err(format!("set {s} is not away from home (node {p}: {st}): nothing to give back")),
        },
        Op::Move => {
            let run_on = [set, partner]
                .into_iter()
                .find(|&n| state(n) == Some("serving"))
                .or_else(|| [set, partner].into_iter().find(|&n| state(n).is_some()))
                .ok_or_else(|| "neither node answers: nobody can move the set".to_string())?;
            Ok(Plan { run_on, args: vec!["move".into(), set.to_string()], to: 3 - run_on })
        }
    }
}

/// How long the command's end may come before the set's address has moved:
/// a giveback's command ends when the home node claimed the set, before it
/// restored it and added the address.
const ADDRESS_WAIT: Duration = Duration::from_secs(15);

/// Runs `op` on set `set` in the lab: picks the node, runs `duet` there,
/// prints its answer and then where the set's address is. The exit status
/// is the command's.
pub fn run(lab: &LabFile, op: Op, set: &str) -> Result<i32, String> {
    let set = parse_set(set)?;
    let states: Vec<Option<String>> = [1u16, 2].iter().map(|&id| set_state(lab, id, set)).collect();
    let plan = plan(op, set, [states[0].as_deref(), states[1].as_deref()])?;
    let who = name(plan.run_on);
    let ns = lab.namespace(who);
    let socket = lab.node_dir(who).join("state/admin.sock");
    println!("duet lab: `duet {}` on node {who} (namespace {ns})", plan.args.join(" "));
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(&plan.args).arg("--socket").arg(&socket);
    net::spawn_in(&mut cmd, &ns, false).map_err(|e| format!("namespace {ns}: {e}"))?;
    let status = cmd.status().map_err(|e| format!("duet {}: {e}", plan.args.join(" ")))?;
    if !status.success() {
        return Ok(status.code().unwrap_or(1));
    }
    let line = address_after(lab, set, plan.to);
    println!("{line}");
    Ok(0)
}

/// Set `set`'s state in node `id`'s `duet status`, or `None` when the node is
/// not running or does not answer.
fn set_state(lab: &LabFile, id: u16, set: u16) -> Option<String> {
    let n = lab.nodes.iter().find(|n| n.id == id)?;
    if nodes::state(n) != State::Running {
        return None;
    }
    let socket = lab.node_dir(&n.node).join("state/admin.sock");
    let Ok(Response::Status(st)) = crate::admin::client::call(&socket, &Request::Status) else { return None };
    st.pair?.sets.iter().find(|s| s.set == set).map(|s| s.state.clone())
}

/// Waits (up to [`ADDRESS_WAIT`]) until node `to` alone holds and answers set
/// `set`'s address, and says where it is.
fn address_after(lab: &LabFile, set: u16, to: u16) -> String {
    let t0 = Instant::now();
    loop {
        let st = probe::status(lab);
        let s = st.sets.iter().find(|s| s.set == name(set));
        let moved = s.is_some_and(|s| s.held_by == [name(to)] && s.answering == [name(to)]);
        if moved || t0.elapsed() > ADDRESS_WAIT {
            return match s {
                Some(s) => format!(
                    "set {} on {}: held by [{}] (namespace {}), answering [{}]{}",
                    s.set,
                    s.address,
                    s.held_by.join(" "),
                    s.held_by.iter().map(|n| lab.namespace(n)).collect::<Vec<_>>().join(" "),
                    s.answering.join(" "),
                    if moved { String::new() } else { format!(" (not node {} alone yet)", name(to)) }
                ),
                None => format!("set {}: not in the lab's status", name(set)),
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_takeover_runs_on_the_partner_of_the_set_s_home() {
        let p = plan(Op::Takeover, 1, [Some("serving"), Some("the partner's")]).unwrap();
        assert_eq!(p, Plan { run_on: 2, args: vec!["takeover".into()], to: 2 });
        let p = plan(Op::Takeover, 2, [Some("the partner's"), Some("serving")]).unwrap();
        assert_eq!((p.run_on, p.to), (1, 1));
        let e = plan(Op::Takeover, 1, [Some("waiting"), Some("serving")]).unwrap_err();
        assert!(e.contains("serves set A already"), "{e}");
        let e = plan(Op::Takeover, 1, [Some("serving"), None]).unwrap_err();
        assert!(e.contains("node B does not answer"), "{e}");
    }

    #[test]
    fn a_giveback_runs_on_the_node_holding_the_set_away_from_home() {
        let p = plan(Op::Giveback, 1, [Some("waiting: held by node 2"), Some("serving")]).unwrap();
        assert_eq!(p, Plan { run_on: 2, args: vec!["giveback".into()], to: 1 });
        // At home: `duet giveback` on B would ask for set B instead.
        let e = plan(Op::Giveback, 1, [Some("serving"), Some("the partner's")]).unwrap_err();
        assert!(e.contains("set A is not away from home (node B: the partner's)"), "{e}");
        // Set B away at A, A not answering: nobody to give it back.
        let e = plan(Op::Giveback, 2, [None, Some("waiting: held by node 1")]).unwrap_err();
        assert!(e.contains("node A does not answer"), "{e}");
        // Set B away at A: A gives it back.
        assert_eq!(plan(Op::Giveback, 2, [Some("serving"), None]).unwrap().run_on, 1);
    }

    #[test]
    fn a_move_runs_on_the_node_serving_the_set() {
        let p = plan(Op::Move, 1, [Some("serving"), Some("the partner's")]).unwrap();
        assert_eq!(p, Plan { run_on: 1, args: vec!["move".into(), "1".into()], to: 2 });
        let p = plan(Op::Move, 1, [Some("waiting"), Some("serving")]).unwrap();
        assert_eq!((p.run_on, p.to), (2, 1));
        // Nobody serves it: the home node asks.
        let p = plan(Op::Move, 2, [Some("the partner's"), Some("waiting")]).unwrap();
        assert_eq!(p.run_on, 2);
        assert!(plan(Op::Move, 2, [None, None]).is_err());
    }

    #[test]
    fn sets_are_named_by_node_id_or_share() {
        for (s, id) in [("A", 1), ("b", 2), ("1", 1), ("2", 2), ("seta", 1), ("SETB", 2)] {
            assert_eq!(parse_set(s), Ok(id), "{s}");
        }
        assert!(parse_set("c").is_err());
    }
}
