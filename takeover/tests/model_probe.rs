use std::time::Duration;
use takeover::model::{explore, replay, Bounds};
#[test]
#[ignore]
fn probe() {
    let z = |s: &str| std::env::var(s).ok().map(|v| v.parse::<u8>().unwrap()).unwrap_or(0);
    let b = Bounds {
        horizon: Duration::from_millis(std::env::var("H").map(|v| v.parse().unwrap()).unwrap_or(700)),
        losses: z("L"), dups: z("D"), delays: z("Y"), crashes: z("C"), freezes: z("F"), partitions: z("P"),
        stalls: z("S"), faults: z("X"), commands: z("M"),
        inject_after: Duration::from_millis(300), liveness_deadline: Duration::from_secs(3), max_states: std::env::var("MAX").map(|v| v.parse().unwrap()).unwrap_or(1_000_000),
    };
    let t = std::time::Instant::now();
    let r = explore(&b);
    eprintln!("states {} trans {} depth {} live {} goals {} trunc {} {:?}", r.states, r.transitions, r.max_depth, r.liveness_checks, r.goals_completed, r.truncated, t.elapsed());
    for f in r.failures.iter().take(3) {
        let p = replay(&b, &f.trace);
        eprintln!("FAILURE {}\ntrace {:?}", f.what, f.trace);
        for i in 0..2 { eprintln!("node {i} events {:?}\n phase {:?} {:?}", p.events(i), p.node(i).map(|n| n.phase(takeover::sim::Pair::set(0))), p.node(i).map(|n| n.phase(takeover::sim::Pair::set(1)))); }
        eprintln!("storage {:?}", p.storage);
    }
}
