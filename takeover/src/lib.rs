//! The pair's brain: who serves which share set.
//!
//! This crate holds the failover state machine of one node of a Duet pair ([`Node`]), the
//! messages the two nodes exchange over the interconnect ([`codec`]), and the ownership
//! records they keep on shared storage ([`ownership`]). It decides when a node serves,
//! stops, hands over, takes over, stays down and gives back.
//!
//! It does **not** know SMB, and does no I/O: no sockets, no clock, no threads. Time is
//! passed in (`now`) and work comes out as [`Action`]s that the server carries out and
//! reports back. The one exception is [`ownership::fs`], a small, separate module with the
//! real exclusive-create file operations on a shared directory, which the server calls when
//! it carries out ownership and heartbeat actions; the state machine never calls it.
//!
//! # Driving a node
//!
//! ```
//! use std::time::Instant;
//! use takeover::*;
//!
//! let now = Instant::now();
//! let config = Config::new(ClusterId(1), NodeId(1), NodeId(2));
//! let boot = BootInfo {
//!     shared: SharedConfig { cluster: ClusterId(1), nodes: [NodeId(1), NodeId(2)] },
//!     recorded: None,
//!     flag: Flag::CleanShutdown,
//! };
//! let mut node = Node::new(config, boot, now).expect("identity matches");
//! // The server loops: feed inputs (handle_frame, handle_done, handle_claim,
//! // handle_ownership, handle_partner_heartbeat, handle_command, handle_fault,
//! // handle_timeout), then drain the outputs.
//! while let Some(action) = node.poll_action() {
//!     // carry it out, then report with handle_done / handle_claim / handle_ownership ...
//!     let _ = action;
//! }
//! while let Some(frame) = node.poll_transmit() { let _ = frame; /* write to the partner */ }
//! let _wake_at = node.poll_timeout();
//! // Before every mutating file operation:
//! assert!(!node.may_serve(SetId(1), now));
//! ```
//!
//! # Layout
//!
//! - [`types`]: fault kinds and health; the identifiers (cluster, node, set, epoch) and
//!   the flag, re-exported from the `ids` crate.
//! - [`config`]: [`Config`], boot information and identity checks.
//! - [`codec`]: interconnect frames and messages (framing, version, ids, seq, crc32).
//! - [`ownership`]: claim records, file names, choosing the newest claim; [`ownership::fs`]
//!   does the real file operations (the only I/O in the crate).
//! - [`node`]: the state machine: [`Node`], [`Action`], [`Done`], [`Event`], [`Command`].
//! - [`sim`]: a simulated pair with virtual time and shared storage, used by the scenario
//!   tests, the model checker and the fuzz targets.
//! - [`model`]: an exhaustive explorer of bounded runs of the real `Node` code, with the
//!   safety and liveness checks.
//! - [`fuzzing`]: the checks the fuzz targets and the seed-corpus test share.

pub mod codec;
pub mod config;
pub mod fuzzing;
pub mod model;
pub mod node;
pub mod ownership;
pub mod sim;
pub mod types;



pub use codec::{DenyReason, Frame, FrameError, Message, TakeoverReason};
pub use config::{BootInfo, Config, Identity, JoinError, Resources, SetNeeds, SharedConfig};
pub use node::{Action, Channel, Command, Counters, Done, Event, Node, Phase, Source};
pub use ownership::fs::ClaimOutcome;
pub use ownership::{Ownership, Record};
pub use types::{ClusterId, Epoch, FaultKind, Flag, Health, NodeId, SetId};
