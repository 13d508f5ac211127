//! Model checking: every interleaving of bounded runs of two real `Node`s.

use std::time::Duration;

use takeover::model::{explore, replay, Bounds, Report};

fn run(b: &Bounds) -> Report {
    let t = std::time::Instant::now();
    let r = explore(b);
    eprintln!(
        "bounds {b:?}\nstates {} transitions {} max depth {} liveness checks {} goals completed {} truncated {} in {:?}",
        r.states, r.transitions, r.max_depth, r.liveness_checks, r.goals_completed, r.truncated, t.elapsed()
    );
    if let Some(f) = r.failures.first() {
        let p = replay(b, &f.trace);
        eprintln!("FAILURE {}\ntrace {:?}", f.what, f.trace);
        for i in 0..2 {
            eprintln!("node {i} events {:?}", p.events(i));
        }
    }
    r
}

#[test]
fn model_small() {
    let r = run(&Bounds::small());
    assert!(r.failures.is_empty(), "{:?}", r.failures.first());
    assert!(!r.truncated);
}

#[test]
#[ignore = "large bounds: run with --release -- --ignored"]
fn model_large() {
    let b = Bounds { horizon: Duration::from_millis(1500), ..Bounds::small() };
    let r = run(&b);
    assert!(r.failures.is_empty(), "{:?}", r.failures.first());
}
