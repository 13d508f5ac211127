//! `duet status` and `duet close-handle`: one request over the admin
//! socket, and the answer printed as aligned tables (like `smbstatus`) or
//! as JSON.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{parse_id, Request, Response, Status};

/// How long to wait for the server's answer.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Sends one request to the server at `socket` and reads its answer.
pub fn call(socket: &Path, req: &Request) -> Result<Response, String> {
    let place = socket.display();
    let mut s = UnixStream::connect(socket).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => {
            format!("{place}: {e} (only root and the server's user may use the admin socket)")
        }
        _ => format!("cannot reach the server at {place}: {e} (is `duet serve` running? --socket names another)"),
    })?;
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let _ = s.set_write_timeout(Some(TIMEOUT));
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    s.write_all(&line).map_err(|e| format!("{place}: {e}"))?;
    let mut answer = Vec::new();
    BufReader::new(s).read_until(b'\n', &mut answer).map_err(|e| format!("{place}: {e}"))?;
    if answer.is_empty() {
        return Err(format!("{place}: the server closed the connection without an answer (refused?)"));
    }
    serde_json::from_slice(&answer).map_err(|e| format!("{place}: unreadable answer: {e}"))
}

/// `duet status`: prints the node's state as tables, or as one JSON
/// document with `json`.
pub fn status(socket: &Path, json: bool, out: &mut dyn Write) -> Result<(), String> {
    let st = match call(socket, &Request::Status)? {
        Response::Status(st) => st,
        Response::Error { message } => return Err(message),
        other => return Err(format!("unexpected answer {other:?}")),
    };
    let r = if json {
        serde_json::to_writer_pretty(&mut *out, &st).map_err(io::Error::from).and_then(|()| writeln!(out))
    } else {
        render(&st, out)
    };
    r.map_err(|e| e.to_string())
}

/// `duet close-handle ID`: force-closes a retained handle.
pub fn close_handle(socket: &Path, id: &str, out: &mut dyn Write) -> Result<(), String> {
    let id = parse_id(id).ok_or_else(|| format!("{id:?} is not a handle id (hex with 0x, or decimal)"))?;
    match call(socket, &Request::CloseHandle { id })? {
        Response::Closed(c) => {
            writeln!(out, "closed retained handle {} ({}\\{})", c.id, c.share, c.path).map_err(|e| e.to_string())
        }
        Response::Error { message } => Err(message),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// `duet takeover`, `duet giveback`, `duet move SET`: one pair command, and
/// what came of it.
pub fn pair_command(socket: &Path, req: &Request, out: &mut dyn Write) -> Result<(), String> {
    match call(socket, req)? {
        Response::Moved { message } => writeln!(out, "{message}").map_err(|e| e.to_string()),
        Response::Error { message } => Err(message),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// How long `duet stop` waits for the server to exit: its drain of the
/// requests in flight takes up to 5 s, the checkpoint after it less.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// `duet stop`: asks the server to stop as SIGTERM does (an elective
/// reboot: drain, save the state, flag) and waits until its process has
/// exited.
pub fn stop(socket: &Path, out: &mut dyn Write) -> Result<(), String> {
    let pid = match call(socket, &Request::Stop)? {
        Response::Stopping { pid } => pid,
        Response::Error { message } => return Err(message),
        other => return Err(format!("unexpected answer {other:?}")),
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).map_err(|_| format!("bad pid {pid}"))?);
    let t0 = std::time::Instant::now();
    // Signal 0 probes whether the process is still there (ESRCH once it is gone).
    while nix::sys::signal::kill(pid, None).is_ok() {
        if t0.elapsed() > STOP_WAIT {
            return Err(format!("the server (pid {pid}) is still running after {}s", STOP_WAIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    writeln!(out, "stopped duet (pid {pid}) in {} ms; its state is saved for the next start", t0.elapsed().as_millis())
        .map_err(|e| e.to_string())
}

/// The human form of [`Status`]: a line about the server, then sessions,
/// opens and retained handles as aligned tables, then the journal.
pub fn render(st: &Status, out: &mut dyn Write) -> io::Result<()> {
    let s = &st.server;
    writeln!(
        out,
        "Duet {} (server {}, GUID {}, pid {}), up {}",
        s.version,
        s.name,
        if s.guid.is_empty() { "-" } else { &s.guid },
        s.pid,
        duration(s.now_ms.saturating_sub(s.started_ms))
    )?;
    let f = &s.sendfile;
    writeln!(
        out,
        "READ answers sent from their files: {} ({} with sendfile, {} copied)",
        f.answers,
        bytes(f.bytes),
        bytes(f.copied_bytes)
    )?;
    let r = &s.recvfile;
    writeln!(
        out,
        "WRITE data taken from the socket into its file: {} ({} with splice, {} copied, {} read with the head; {} cut short; {} now)",
        r.writes,
        bytes(r.bytes),
        bytes(r.copied_bytes),
        bytes(r.buffered_bytes),
        r.cut,
        r.moving
    )?;
    writeln!(out)?;
    writeln!(out, "Sessions: {}", st.sessions.len())?;
    let rows: Vec<Vec<String>> = st
        .sessions
        .iter()
        .map(|x| {
            let signing = match (&x.signing, x.signing_required) {
                (None, _) => "-".to_string(),
                (Some(a), true) => format!("{a} (required)"),
                (Some(a), false) => a.clone(),
            };
            let user = match (x.anonymous, x.guest) {
                (true, _) => "(anonymous)".to_string(),
                (_, true) => format!("{} (guest)", user(&x.domain, &x.user)),
                _ => user(&x.domain, &x.user),
            };
            vec![
                x.id.clone(),
                user,
                x.dialect.clone(),
                signing,
                x.encryption.clone().unwrap_or_else(|| "-".into()),
                if x.trees.is_empty() { "-".into() } else { x.trees.join(",") },
                x.opens.to_string(),
            ]
        })
        .collect();
    table(out, &["ID", "USER", "DIALECT", "SIGNING", "ENCRYPTION", "TREES", "OPENS"], &rows)?;
    writeln!(out)?;
    writeln!(out, "Open files: {}", st.opens.len())?;
    let rows: Vec<Vec<String>> = st
        .opens
        .iter()
        .map(|o| {
            let path = if o.directory { format!("{}\\", o.path) } else { o.path.clone() };
            vec![o.id.clone(), o.session.clone(), o.share.clone(), path, o.durable.clone(), o.caching.clone()]
        })
        .collect();
    table(out, &["ID", "SESSION", "SHARE", "PATH", "DURABLE", "CACHING"], &rows)?;
    writeln!(out)?;
    writeln!(out, "Retained handles: {}", st.retained.len())?;
    let rows: Vec<Vec<String>> = st
        .retained
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                user(&r.domain, &r.user),
                r.share.clone(),
                r.path.clone(),
                r.durable.clone(),
                duration(r.age_ms),
                duration(r.time_left_ms),
            ]
        })
        .collect();
    table(out, &["ID", "USER", "SHARE", "PATH", "DURABLE", "AGE", "TIME LEFT"], &rows)?;
    writeln!(out)?;
    if let Some(p) = &st.pair {
        render_pair(p, out)?;
    }
    match &st.journal {
        None => writeln!(out, "Journal: none (a restart loses every session and handle)"),
        Some(j) => writeln!(
            out,
            "Journal: {}, policy {} (survives {}), {} of {} used ({}%)",
            j.path,
            j.policy,
            j.survives,
            bytes(j.used_bytes),
            bytes(j.size_bytes),
            j.used_bytes.saturating_mul(100).checked_div(j.size_bytes).unwrap_or(0)
        ),
    }
}

/// The pair's lines of `duet status`.
fn render_pair(p: &crate::pair::PairStatus, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "Pair: node {} of cluster {}, incarnation {}, interconnect {} -> partner {}",
        p.node, p.cluster, p.incarnation, p.listen, p.partner
    )?;
    writeln!(
        out,
        "  partner: {}; {}",
        if p.partner_connected { "connected" } else { "not connected" },
        if p.degraded { "DEGRADED (local durability only)" } else { "not degraded" }
    )?;
    if p.link != "joined" {
        writeln!(out, "  link: {}", p.link)?;
    }
    let m = &p.mirror;
    writeln!(
        out,
        "  our journal in the partner's mirror: {}, lag {} ({} resyncs)",
        m.state,
        bytes(m.lag_bytes),
        m.resyncs
    )?;
    let q = &p.partner_mirror;
    writeln!(
        out,
        "  the partner's journal in our mirror: {}, {} received{}",
        if q.connected { "receiving" } else { "not receiving" },
        bytes(q.bytes_received),
        if q.current { ", current" } else { "" }
    )?;
    for s in &p.sets {
        writeln!(out, "  set {} on {} ({}): {}, epoch {}", s.set, s.address, s.shares.join(", "), s.state, s.epoch)?;
        if !s.phase.is_empty() {
            writeln!(out, "    phase: {}", s.phase)?;
        }
        if !s.note.is_empty() {
            writeln!(out, "    {}", s.note)?;
        }
    }
    writeln!(out, "  heartbeats: {} seen, {} sent", p.heartbeats_seen, p.heartbeats_sent)?;
    let r = &p.refused;
    let refused = r.corrupt + r.oversized + r.foreign + r.stale + r.joins + r.busy;
    if refused > 0 {
        writeln!(
            out,
            "  refused on the interconnect: {} corrupt, {} oversized, {} foreign, {} stale, {} joins, {} busy",
            r.corrupt, r.oversized, r.foreign, r.stale, r.joins, r.busy
        )?;
    }
    writeln!(out)
}

fn user(domain: &str, user: &str) -> String {
    if domain.is_empty() {
        user.to_string()
    } else {
        format!("{domain}\\{user}")
    }
}

/// Columns padded to their widest cell, two spaces apart; nothing but the
/// header when there are no rows.
fn table(out: &mut dyn Write, head: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            s.extend(std::iter::repeat_n(' ', width[i].saturating_sub(c.chars().count())));
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, &mut head.iter().copied())?;
    for r in rows {
        line(out, &mut r.iter().map(String::as_str))?;
    }
    Ok(())
}

/// `45s`, `3m05s`, `2h01m`, `3d04h`.
fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1048576 => format!("{} KiB", n / 1024),
        _ => format!("{} MiB", n / 1048576),
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    fn sample() -> Status {
        Status {
            server: ServerStatus {
                name: "DUET".into(),
                guid: "00112233445566778899aabbccddeeff".into(),
                version: "0.1.0".into(),
                pid: 7,
                started_ms: 0,
                now_ms: 3_725_000,
                sendfile: SendfileStatus { answers: 3, bytes: 3 << 23, copied_bytes: 0 },
                recvfile: RecvfileStatus {
                    writes: 2,
                    bytes: 2 << 23,
                    copied_bytes: 0,
                    buffered_bytes: 8000,
                    cut: 1,
                    moving: 0,
                },
            },
            sessions: vec![SessionStatus {
                id: hex(0x0100_0001_0000_0002),
                user: "alice".into(),
                domain: "WG".into(),
                guest: false,
                anonymous: false,
                dialect: "3.1.1".into(),
                signing: Some("AES-128-GMAC".into()),
                signing_required: true,
                encryption: None,
                trees: vec!["data".into()],
                opens: 1,
                created_ms: 0,
            }],
            opens: vec![OpenStatus {
                id: hex(5),
                session: hex(0x0100_0001_0000_0002),
                share: "data".into(),
                path: "a\\b.txt".into(),
                directory: false,
                durable: "v1".into(),
                caching: "batch".into(),
            }],
            retained: vec![RetainedStatus {
                id: hex(6),
                user: "bob".into(),
                domain: String::new(),
                share: "data".into(),
                path: "c.txt".into(),
                durable: "v1".into(),
                disconnected_ms: 1000,
                age_ms: 12_000,
                expires_ms: 61_000,
                time_left_ms: 48_000,
            }],
            journal: None,
            pair: None,
        }
    }

    #[test]
    fn tables_line_up() {
        let mut out = Vec::new();
        render(&sample(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("Duet 0.1.0 (server DUET, GUID 00112233445566778899aabbccddeeff, pid 7), up 1h02m\n"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let head = lines.iter().position(|l| l.starts_with("ID  ") && l.contains("TIME LEFT")).unwrap();
        let row = lines[head + 1];
        assert!(row.starts_with("0x0000000000000006  bob "), "{text}");
        assert_eq!(row.find("48s"), lines[head].find("TIME LEFT"), "columns align:\n{text}");
        assert!(text.contains("READ answers sent from their files: 3 (24 MiB with sendfile, 0 B copied)\n"), "{text}");
        assert!(
            text.contains(
                "WRITE data taken from the socket into its file: 2 (16 MiB with splice, 0 B copied, 7 KiB read with the head; 1 cut short; 0 now)\n"
            ),
            "{text}"
        );
        assert!(text.contains("WG\\alice"), "{text}");
        assert!(text.contains("AES-128-GMAC (required)"), "{text}");
        assert!(text.ends_with("Journal: none (a restart loses every session and handle)\n"), "{text}");
    }

    #[test]
    fn json_round_trips() {
        let st = sample();
        let text = serde_json::to_string(&Response::Status(st.clone())).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), Response::Status(st));
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration(59_999), "59s");
        assert_eq!(duration(185_000), "3m05s");
        assert_eq!(duration(90_000_000), "1d01h");
        assert_eq!(bytes(64 << 20), "64 MiB");
    }
}
