//! The checks behind the fuzz targets (`fuzz/`), kept in the crate so that the seed-corpus
//! test (`tests/fuzz_corpus.rs`) runs exactly the same code on every seed file.
//!
//! - [`check_codec`]: any bytes either fail to decode or decode to a frame that encodes back
//!   to the same bytes; the stream decoder agrees with the whole-frame parser.
//! - [`check_node`]: the bytes choose a sequence of inputs for a simulated pair (frames
//!   delivered, lost, duplicated, reordered, garbage frames, time, kills, restarts, freezes,
//!   partitions, storage stalls, faults and operator commands); after every step the pair
//!   must be safe: never two nodes serving a set, never a bind below the newest claim.
//!   (The "no set left unserved" bound needs a lossless-enough link, which arbitrary input
//!   does not give; the model checker covers it.)

use std::time::{Duration, Instant};

use arbitrary::Unstructured;

use crate::codec::{decode, Frame};
use crate::node::Command;
use crate::sim::{Pair, Violation};
use crate::types::FaultKind;

/// Decodes `data` as one frame and as a stream; panics on any inconsistency.
pub fn check_codec(data: &[u8]) {
    let whole = Frame::parse(data);
    match decode(data) {
        Ok(Some((frame, used))) => {
            let bytes = frame.to_bytes();
            assert_eq!(&bytes[..], &data[..used], "a decoded frame re-encodes to other bytes");
            assert_eq!(Frame::parse(&bytes).as_ref(), Ok(&frame), "re-encoded frame does not parse back");
            if used == data.len() {
                assert_eq!(whole, Ok(frame));
            } else {
                assert!(whole.is_err());
            }
            // The stream decoder needs every byte of the frame, no fewer.
            assert_eq!(decode(&data[..used - 1]), Ok(None));
        }
        Ok(None) => assert!(whole.is_err()),
        Err(e) => assert_eq!(whole, Err(e)),
    }
}

/// Runs the input sequence that `data` chooses on a simulated pair; panics on a safety
/// violation.
pub fn check_node(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut p = Pair::new(Instant::now());
    p.record = false;
    let mut steps = 0;
    while !u.is_empty() && steps < 2_000 {
        steps += 1;
        if step(&mut p, &mut u).is_err() {
            break;
        }
        let bad: Vec<&Violation> =
            p.violations.iter().filter(|v| !matches!(v, Violation::Unserved { .. })).collect();
        assert!(bad.is_empty(), "after {steps} steps at {:?}: {bad:?}", p.elapsed());
    }
}

fn step(p: &mut Pair, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let i = u.int_in_range(0..=1usize)?;
    match u.int_in_range(0..=19u8)? {
        0..=5 => {
            if !p.flight.is_empty() {
                let j = u.choose_index(p.flight.len())?;
                p.deliver(j);
            }
        }
        6 => {
            if !p.flight.is_empty() {
                let j = u.choose_index(p.flight.len())?;
                p.flight.remove(j);
            }
        }
        7 => {
            if !p.flight.is_empty() {
                let j = u.choose_index(p.flight.len())?;
                let f = p.flight[j].clone();
                p.flight.push(f);
            }
        }
        8..=11 => match p.next_timer() {
            Some(t) => p.advance_to(t),
            None => p.advance_to(p.now + Duration::from_millis(100)),
        },
        12 => {
            let ms = u.int_in_range(0..=700u64)?;
            p.advance_to(p.now + Duration::from_millis(ms));
        }
        13 => {
            if p.hosts[i].node.is_some() {
                p.kill(i)
            } else {
                p.restart(i)
            }
        }
        14 => {
            if p.hosts[i].frozen {
                p.resume(i)
            } else if p.hosts[i].node.is_some() {
                p.freeze(i)
            }
        }
        15 => {
            let on = !p.link.partitioned;
            p.partition(on)
        }
        16 => {
            let on = !p.hosts[i].storage_stalled;
            p.stall_storage(i, on)
        }
        17 => {
            let kind = *u.choose(&[FaultKind::DiskErrors, FaultKind::ClientNetworkLost, FaultKind::JournalFailure])?;
            p.fault(i, kind)
        }
        18 => {
            let c = *u.choose(&[Command::Takeover, Command::HandOver, Command::Giveback])?;
            p.command(i, c);
        }
        _ => {
            // Garbage, or a mangled copy of a frame on the wire, straight into a node.
            let mut bytes = match p.flight.first() {
                Some(f) if u.arbitrary()? => f.bytes.clone(),
                _ => Vec::new(),
            };
            let extra: Vec<u8> = u.arbitrary()?;
            if bytes.is_empty() {
                bytes = extra;
            } else if let Some(b) = extra.first() {
                let k = *b as usize % bytes.len();
                bytes[k] ^= extra.get(1).copied().unwrap_or(1) | 1;
            }
            if p.awake(i) {
                let now = p.now;
                p.hosts[i].node.as_mut().unwrap().handle_frame(&bytes, now);
                p.advance_to(now);
            }
        }
    }
    Ok(())
}
