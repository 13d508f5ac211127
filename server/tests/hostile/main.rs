//! The hostile-client suite: a raw SMB2/3 client ([`client`]) breaks the
//! protocol's rules on purpose against a real server, one module per class
//! of attack from issue 11, and checks that the server refuses with the
//! right NTSTATUS or a closed connection, and stays responsive and bounded.
//!
//! - [`auth`]: who a request runs as, and the logon itself: transform and
//!   inner session bound together, encryption required covering IPC$,
//!   concurrent logons, ids unique across restarts, failed logons slowed.
//! - [`basics`]: the client itself works (so a refusal elsewhere means
//!   something).
//! - [`credits`]: message ids and credits: replays, ids never granted or
//!   reused, CreditCharge, and compounds of large READs.
//! - [`journal`]: the consistency points of large READs and WRITEs (the
//!   journal's records of what a client is answered).
//! - [`limits`]: connections, sessions, opens, pending requests, deadlines
//!   and queued replies are bounded; the soak test.
//! - [`sendfile`]: large READ answers sent from their files: their length
//!   at and across the end of a file, the journal's point 3, signed
//!   sessions, a file cut short while its answer is sent.
//! - [`recvfile`]: large WRITEs whose data goes from the socket into the
//!   file: the file by content, the journal's points 1 and 3, signed
//!   sessions, refused WRITEs whose data is dropped, a client gone mid-data.
//! - [`opens`]: an open's fields, which the state model keeps: a change
//!   one request makes holds for the next (a compound's CLOSE after its
//!   SET_INFO's delete-on-close, a ChannelSequence raised by a large WRITE).
//! - [`reconnect`]: a client that drops its connection and comes back at
//!   once does not meet its own old opens; a CREATE that waits for a break
//!   while its session ends leaves no open behind.
//! - [`streams`]: stream names (`file:stream`) never reach outside the
//!   share or through a symlink; a stream written past one xattr goes on
//!   in place in its sidecar file.
//! - [`wildcard`]: QUERY_DIRECTORY patterns cost linear time and never stall
//!   other clients.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod basics;
mod client;
mod credits;
mod journal;
mod limits;
mod opens;
mod reconnect;
mod recvfile;
mod sendfile;
mod streams;
mod wildcard;
