//! The operator's view of a running node, like Samba's `smbstatus` and
//! Windows' `Get-SmbSession`, `Get-SmbOpenFile` and `Close-SmbOpenFile`:
//! `duet status` lists the sessions, the opens, the retained (disconnected
//! durable) handles and the journal, and `duet close-handle ID` closes a
//! retained handle that no client will come back for.
//!
//! They talk to the server over a local Unix socket ([`socket`]) that only
//! root and the server's own user may use: one JSON [`Request`] line in, one
//! JSON [`Response`] line out. What is shown is read from the state model
//! ([`crate::model`]), so it is what a restart or a takeover would bring
//! back: sessions that completed authentication, tree connects of disk
//! shares and opens of files and directories (not IPC$ and its pipes).
//!
//! # Layout
//! - this file: the protocol, the [`Status`] document and the two requests
//!   carried out on a [`Server`].
//! - [`socket`]: the listening side: the socket file, who may connect, and
//!   the bounds on a request.
//! - [`client`]: the `duet status` and `duet close-handle` side: asking,
//!   and printing the answer as tables or JSON.

pub mod client;
pub mod socket;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::model::{Caching, Durability, Model, OplockLevel, Timestamp};
use crate::state::{lock, Server};

/// One request, one line of JSON: `{"op":"status"}`,
/// `{"op":"close-handle","id":1234}`, `{"op":"stop"}`, and on a pair member
/// `{"op":"takeover"}`, `{"op":"giveback"}`, `{"op":"move","set":1}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Status,
    CloseHandle {
        id: u64,
    },
    /// Stop the server as SIGTERM does: stop accepting, drain, save the
    /// state and set the journal's flag to "elective reboot".
    Stop,
    /// A pair member takes its partner's set over (elective).
    Takeover,
    /// A pair member gives the set away from home back (run on either node).
    Giveback,
    /// A pair member moves set `set` to the other node (whichever way).
    Move {
        set: u16,
    },
}

/// The answer, one line of JSON, tagged by `result`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
// One per admin request, serialized at once.
#[allow(clippy::large_enum_variant)]
pub enum Response {
    Status(Status),
    Closed(Closed),
    /// The server is stopping; the caller waits for `pid` to exit.
    Stopping {
        pid: u32,
    },
    /// A pair command was carried out: what came of it.
    Moved {
        message: String,
    },
    Error {
        message: String,
    },
}

/// What `duet status` shows (and `--json` prints). Ids are hex strings
/// (`0x` and 16 digits): 64-bit values do not survive a JSON reader that
/// keeps numbers as doubles. Times are Unix milliseconds, durations
/// milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub server: ServerStatus,
    pub sessions: Vec<SessionStatus>,
    /// Connected opens.
    pub opens: Vec<OpenStatus>,
    /// Durable opens whose connection is gone, kept for a reconnect.
    pub retained: Vec<RetainedStatus>,
    /// `None`: the node keeps no journal, and a restart loses every session.
    pub journal: Option<JournalStatus>,
    /// `None`: the node is not a pair member.
    #[serde(default)]
    pub pair: Option<Box<crate::pair::PairStatus>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub name: String,
    /// The server's GUID ([MS-SMB2] 3.3.1.5 ServerGuid), as clients see it
    /// in every NEGOTIATE answer: kept across restarts with the journal.
    #[serde(default)]
    pub guid: String,
    pub version: String,
    pub pid: u32,
    pub started_ms: u64,
    pub now_ms: u64,
    /// Large READ answers sent from their files since the start.
    #[serde(default)]
    pub sendfile: SendfileStatus,
    /// Large WRITEs whose data went from the socket into the file since the
    /// start.
    #[serde(default)]
    pub recvfile: RecvfileStatus,
}

/// What WRITEs moved from their sockets into their files with `splice`
/// (plain sessions, [`crate::transport::WriteHead`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvfileStatus {
    /// WRITEs whose data was moved whole.
    pub writes: u64,
    /// Bytes moved with `splice(2)`.
    pub bytes: u64,
    /// Bytes read and written instead (`splice` unsupported).
    pub copied_bytes: u64,
    /// Bytes read with the WRITE's head, written from memory.
    pub buffered_bytes: u64,
    /// WRITEs whose data stopped part-way: connections closed unanswered.
    pub cut: u64,
    /// WRITEs whose data is being moved now (at most
    /// [`crate::limits::MAX_SPLICING`]; past it, data is read into memory).
    #[serde(default)]
    pub moving: u64,
}

/// What the connections' writers sent from files (READ answers neither
/// signed nor encrypted, [`crate::transport::FileRegion`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendfileStatus {
    /// Answers whose data was sent whole from its file.
    pub answers: u64,
    /// Bytes sent with `sendfile(2)`.
    pub bytes: u64,
    /// Bytes read and written instead (`sendfile` unsupported).
    pub copied_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    pub id: String,
    pub user: String,
    pub domain: String,
    pub guest: bool,
    pub anonymous: bool,
    /// "2.0.2", "2.1", "3.0", "3.0.2" or "3.1.1".
    pub dialect: String,
    /// The signing algorithm of the session's key; `None`: no key (guest,
    /// anonymous).
    pub signing: Option<String>,
    pub signing_required: bool,
    /// The cipher when the session encrypts every message.
    pub encryption: Option<String>,
    /// The shares of its tree connects, in tree id order.
    pub trees: Vec<String>,
    pub opens: usize,
    pub created_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenStatus {
    pub id: String,
    pub session: String,
    pub share: String,
    /// Share-relative, with backslashes, as the client named it.
    pub path: String,
    pub directory: bool,
    /// "no", "v1", "v2" or "persistent".
    pub durable: String,
    /// "none", "II", "exclusive", "batch" or "lease".
    pub caching: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedStatus {
    pub id: String,
    pub user: String,
    pub domain: String,
    pub share: String,
    pub path: String,
    pub durable: String,
    pub disconnected_ms: u64,
    pub age_ms: u64,
    pub expires_ms: u64,
    /// Until the handle is closed unless its client reclaims it.
    pub time_left_ms: u64,
}

/// The journal's durability policy and how full it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalStatus {
    pub path: String,
    /// "group", "msync", "process" or "pmem".
    pub policy: String,
    /// What an acknowledged answer survives under the policy: "power loss",
    /// "power loss (on DAX/NVDIMM)" or "a killed process only".
    pub survives: String,
    pub size_bytes: u64,
    pub used_bytes: u64,
}

/// The answer to a `close-handle` that closed one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub id: String,
    pub share: String,
    pub path: String,
}

/// Carries out one request.
pub fn execute(server: &Arc<Server>, req: Request) -> Response {
    match req {
        Request::Status => Response::Status(status(&serving(server))),
        Request::CloseHandle { id } => match close_handle(&serving(server), id) {
            Ok(c) => Response::Closed(c),
            Err(message) => Response::Error { message },
        },
        Request::Stop => {
            info!("`duet stop` asked for an elective reboot");
            server.stop.notify_one();
            Response::Stopping { pid: std::process::id() }
        }
        Request::Takeover | Request::Giveback | Request::Move { .. } => pair_command(server, req),
    }
}

/// The server whose sessions and opens `duet status` and `duet close-handle` are
/// about: on a pair member, the one serving its own set now, as the pair's driver has
/// it (a node that waited in standby, or got its set back, serves it from a server made
/// then, not the one the admin socket was opened with); else `server`. (`duet stop`
/// stays with `server`, whose run the stop ends.)
fn serving(server: &Arc<Server>) -> Arc<Server> {
    server.pair.as_ref().and_then(|p| p.driver()).and_then(|d| d.home_serving()).unwrap_or_else(|| server.clone())
}

/// `duet takeover`, `giveback`, `move`: handed to the pair's state machine
/// ([`crate::pair::driver`]); waits (on this blocking thread) until the set
/// serves where it was meant to, or the command is refused.
fn pair_command(server: &Arc<Server>, req: Request) -> Response {
    let Some(driver) = server.pair.as_ref().and_then(|p| p.driver()) else {
        return Response::Error { message: "not a pair member with share sets".into() };
    };
    let command = match req {
        Request::Takeover => crate::pair::driver::Ask::Takeover,
        Request::Giveback => crate::pair::driver::Ask::Giveback,
        Request::Move { set } => crate::pair::driver::Ask::Move(set),
        _ => return Response::Error { message: "not a pair command".into() },
    };
    info!(?command, "pair command from the admin socket");
    match tokio::runtime::Handle::current().block_on(driver.command(command)) {
        Ok(message) => Response::Moved { message },
        Err(message) => Response::Error { message },
    }
}

/// The journal's policy and use, `None` when the server keeps none.
pub fn journal_status(server: &Server) -> Option<JournalStatus> {
    let usage = server.journal.usage()?;
    Some(JournalStatus {
        path: server.cfg.journal_path().map(|p| p.display().to_string()).unwrap_or_default(),
        policy: server.cfg.journal.policy.name().to_string(),
        survives: server.cfg.journal.policy.survives().to_string(),
        size_bytes: usage.capacity,
        used_bytes: usage.used,
    })
}

/// The node's state now.
pub fn status(server: &Server) -> Status {
    let now = crate::state::deltas::now();
    let mut st = from_model(&server.model(), now);
    st.server = ServerStatus {
        name: server.cfg.server_name.clone(),
        guid: crate::state::guid_text(&server.guid),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        started_ms: (server.start_time / 10_000).saturating_sub(11_644_473_600_000),
        now_ms: now.0,
        sendfile: SendfileStatus {
            answers: server.sent.regions.load(Ordering::Relaxed),
            bytes: server.sent.sendfile_bytes.load(Ordering::Relaxed),
            copied_bytes: server.sent.copied_bytes.load(Ordering::Relaxed),
        },
        recvfile: RecvfileStatus {
            writes: server.received.writes.load(Ordering::Relaxed),
            bytes: server.received.spliced_bytes.load(Ordering::Relaxed),
            copied_bytes: server.received.copied_bytes.load(Ordering::Relaxed),
            buffered_bytes: server.received.buffered_bytes.load(Ordering::Relaxed),
            cut: server.received.cut.load(Ordering::Relaxed),
            moving: (crate::limits::MAX_SPLICING - server.splicing.available_permits()) as u64,
        },
    };
    st.journal = journal_status(server);
    st.pair = server.pair.as_ref().map(|p| Box::new(p.status()));
    st
}

/// Sessions, opens and retained handles as the model has them at `now`.
pub fn from_model(model: &Model, now: Timestamp) -> Status {
    let mut st = Status {
        server: ServerStatus {
            name: String::new(),
            guid: String::new(),
            version: String::new(),
            pid: 0,
            started_ms: 0,
            now_ms: now.0,
            sendfile: SendfileStatus::default(),
            recvfile: RecvfileStatus::default(),
        },
        sessions: Vec::new(),
        opens: Vec::new(),
        retained: Vec::new(),
        journal: None,
        pair: None,
    };
    for set in model.sets() {
        let Some(p) = model.partition(set) else {
            continue;
        };
        for s in p.sessions() {
            let i = s.info();
            st.sessions.push(SessionStatus {
                id: hex(i.id.0),
                user: i.owner.user.clone(),
                domain: i.owner.domain.clone(),
                guest: i.guest,
                anonymous: i.anonymous,
                dialect: dialect_name(i.dialect),
                signing: (!i.keys.signing.is_empty()).then(|| signing_name(i.dialect, i.signing_algorithm)),
                signing_required: i.signing_required,
                encryption: i.encrypt_data.then(|| cipher_name(i.cipher)),
                trees: s.trees().map(|t| t.share.clone()).collect(),
                opens: p.session_opens(i.id).count(),
                created_ms: i.created_at.0,
            });
        }
        for o in p.opens() {
            let i = o.info();
            let path = o.path().to_string();
            match (o.session(), o.disconnected_at()) {
                (Some(session), _) => st.opens.push(OpenStatus {
                    id: hex(i.persistent.0),
                    session: hex(session.0),
                    share: i.share.clone(),
                    path,
                    directory: i.is_dir,
                    durable: durable_name(i.durability).into(),
                    caching: caching_name(o.caching()).into(),
                }),
                (None, Some(at)) => {
                    let expires = o.expires_at().unwrap_or(at);
                    st.retained.push(RetainedStatus {
                        id: hex(i.persistent.0),
                        user: i.owner.user.clone(),
                        domain: i.owner.domain.clone(),
                        share: i.share.clone(),
                        path,
                        durable: durable_name(i.durability).into(),
                        disconnected_ms: at.0,
                        age_ms: now.0.saturating_sub(at.0),
                        expires_ms: expires.0,
                        time_left_ms: expires.0.saturating_sub(now.0),
                    });
                }
                // Neither attached nor disconnected: the model's
                // invariants rule it out.
                (None, None) => {}
            }
        }
    }
    st
}

/// Force-closes a retained handle, as the server application may close any
/// open ([MS-SMB2] 3.3.4.17 Server Application Requests Closing an Open; a
/// retained one has no client to tell):
/// it leaves the table of retained opens, is closed as on expiry (its
/// locks go, a pending delete is carried out) and leaves the model.
pub fn close_handle(server: &Arc<Server>, id: u64) -> Result<Closed, String> {
    let e = lock(&server.durable).remove(&id).ok_or_else(|| format!("no retained handle {}", hex(id)))?;
    let share = e.open.share().map(|s| s.cfg.name.clone()).unwrap_or_default();
    let path = server.path_of(&e.open).unwrap_or_default();
    info!(id = %hex(id), %share, %path, user = %e.user, "retained handle closed by the operator");
    let mut out = Vec::new();
    crate::state::close::close_open(server, &e.open, &mut out);
    server.apply(&out);
    Ok(Closed { id: hex(id), share, path })
}

/// `0x` and 16 hex digits.
pub fn hex(id: u64) -> String {
    format!("{id:#018x}")
}

/// A handle id as an operator types it: `0x` and hex, or decimal, or
/// (when it has a letter a-f) hex without the `0x`.
pub fn parse_id(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    u64::from_str_radix(s, 16).ok()
}

/// A dialect's name ([MS-SMB2] 2.2.3 Dialects).
fn dialect_name(d: u16) -> String {
    match d {
        0x0202 => "2.0.2".into(),
        0x0210 => "2.1".into(),
        0x0300 => "3.0".into(),
        0x0302 => "3.0.2".into(),
        0x0311 => "3.1.1".into(),
        other => format!("{other:#06x}"),
    }
}

/// The signing algorithm: HMAC-SHA256 for 2.x, AES-CMAC for 3.0 and 3.0.2,
/// the negotiated one for 3.1.1 ([MS-SMB2] 3.1.4.1, 2.2.3.1.7).
fn signing_name(dialect: u16, alg: u16) -> String {
    let alg = match dialect {
        0x0202 | 0x0210 => 0,
        0x0300 | 0x0302 => 1,
        _ => alg,
    };
    match alg {
        0 => "HMAC-SHA256".into(),
        1 => "AES-128-CMAC".into(),
        2 => "AES-128-GMAC".into(),
        other => format!("algorithm {other}"),
    }
}

/// A cipher's name ([MS-SMB2] 2.2.3.1.2); 3.0 and 3.0.2 have no cipher
/// list and use AES-128-CCM.
fn cipher_name(c: u16) -> String {
    match c {
        0 | 1 => "AES-128-CCM".into(),
        2 => "AES-128-GCM".into(),
        3 => "AES-256-CCM".into(),
        4 => "AES-256-GCM".into(),
        other => format!("cipher {other}"),
    }
}

fn durable_name(d: Durability) -> &'static str {
    match d {
        Durability::None => "no",
        Durability::V1 { .. } => "v1",
        Durability::V2 { .. } => "v2",
        Durability::Persistent { .. } => "persistent",
    }
}

fn caching_name(c: Caching) -> &'static str {
    match c {
        Caching::None | Caching::Oplock { level: OplockLevel::None, .. } => "none",
        Caching::Oplock { level: OplockLevel::II, .. } => "II",
        Caching::Oplock { level: OplockLevel::Exclusive, .. } => "exclusive",
        Caching::Oplock { level: OplockLevel::Batch, .. } => "batch",
        Caching::Lease(_) => "lease",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_as_hex_or_decimal() {
        assert_eq!(parse_id("0x10"), Some(16));
        assert_eq!(parse_id("0X10"), Some(16));
        assert_eq!(parse_id("10"), Some(10));
        assert_eq!(parse_id("ff"), Some(255));
        assert_eq!(parse_id(&hex(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_id("0x"), None);
        assert_eq!(parse_id("0x1g"), None);
        assert_eq!(parse_id("-1"), None);
        assert_eq!(parse_id(""), None);
        assert_eq!(parse_id("18446744073709551616"), None, "too large");
    }

    #[test]
    fn requests_are_one_json_object() {
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"status"}"#).unwrap(), Request::Status);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"close-handle","id":18446744073709551615}"#).unwrap(),
            Request::CloseHandle { id: u64::MAX }
        );
        for bad in
            [r#"{"op":"reboot"}"#, r#"{"op":"close-handle"}"#, r#"{"op":"close-handle","id":-1}"#, "[]", "status"]
        {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
        let r = Response::Error { message: "no".into() };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"result":"error","message":"no"}"#);
    }
}
