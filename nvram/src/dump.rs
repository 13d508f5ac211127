//! Inspection: a readable dump of a region file.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::Result;
use crate::format::{self, Header, LogMeta, HEADER_LEN, SLOT_SIZE};
use crate::read::FileSource;
use crate::recover::{self, LogEnd, LogRecovery, Record};

/// Bytes of each payload shown in hex.
const SHOWN: usize = 32;

/// Prints the header, the flag and every record of both rings of the region file at
/// `path` in readable form. The file is read with plain reads, never mapped or written,
/// so a live journal may be dumped (its newest records may then show as a clean end or
/// a torn tail).
///
/// ```
/// use nvram::{ClusterId, Durability, Entry, Journal, NodeId, OpId, Options};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("nvram");
/// let j = Journal::create_file(&path, 1 << 20, Options::new(ClusterId(5), NodeId(1), Durability::PerRecord))?;
/// j.append(Entry::PreAck { op: OpId(9), request: b"hello" })?;
/// let mut out = Vec::new();
/// nvram::dump(&path, &mut out)?;
/// let text = String::from_utf8(out).unwrap();
/// assert!(text.contains("flag: CleanShutdown"));
/// assert!(text.contains("PreAck op=9"));
/// # Ok::<(), nvram::Error>(())
/// ```
pub fn dump(path: &Path, out: &mut dyn Write) -> Result<()> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut a = [0u8; HEADER_LEN];
    let mut b = [0u8; HEADER_LEN];
    file.read_exact_at(&mut a, 0)?;
    file.read_exact_at(&mut b, SLOT_SIZE)?;
    for (name, slot) in [("A", &a), ("B", &b)] {
        match Header::decode(slot) {
            Ok(h) => writeln!(out, "slot {name}: counter {}", h.counter)?,
            Err(e) => writeln!(out, "slot {name}: invalid ({e})")?,
        }
    }
    let h = Header::pick(&a, &b)?;
    writeln!(out, "region: {} bytes, format version {:#06x}", len, format::VERSION)?;
    writeln!(out, "cluster: {:#018x}", h.cluster.0)?;
    writeln!(out, "node: {}", h.node.0)?;
    writeln!(out, "generation: {}", h.generation)?;
    writeln!(out, "flag: {:?}", h.flag)?;
    writeln!(out, "ring capacity: {} bytes", h.ring_cap)?;
    let source = FileSource(&file);
    for (name, base, meta) in [("own log", h.own_base(), h.own), ("partner mirror", h.partner_base(), h.partner)] {
        if base + h.ring_cap > len {
            writeln!(out, "{name}: beyond the end of the file")?;
            continue;
        }
        let log = recover::scan(&source, base, h.ring_cap, meta)?;
        write_log(out, name, &meta, &log)?;
    }
    Ok(())
}

fn write_log(out: &mut dyn Write, name: &str, meta: &LogMeta, log: &LogRecovery) -> io::Result<()> {
    writeln!(
        out,
        "{name}: head {} tail {} (hint {}) generation {}",
        log.head, log.tail, meta.tail_hint, meta.generation
    )?;
    let mut all: Vec<&Record> = log.records.iter().chain(log.checkpoint.as_ref()).collect();
    all.sort_by_key(|r| r.pos);
    for r in all {
        write!(
            out,
            "  #{} @{} gen {} {:?} op={} element={} len={}",
            r.seq,
            r.pos,
            r.generation,
            r.kind,
            r.op.0,
            r.element,
            r.payload.len()
        )?;
        match r.completion() {
            Some((resp, delta)) => writeln!(out, " response={} delta={}", hex(resp), hex(delta))?,
            None => writeln!(out, " payload={}", hex(&r.payload))?,
        }
    }
    let p = &log.points;
    writeln!(
        out,
        "  operations at point 1: {}, 2: {}, 3: {}, 4: {}",
        p.pre_ack.len(),
        p.pre_command.len(),
        p.post_completion.len(),
        p.post_reply_ack.len()
    )?;
    match log.end {
        LogEnd::Clean => writeln!(out, "  end: clean"),
        LogEnd::Torn { pos, reason } => writeln!(out, "  end: torn record at @{pos} ({reason:?}), dropped"),
    }
}

fn hex(b: &[u8]) -> String {
    let mut s: String = b.iter().take(SHOWN).map(|x| format!("{x:02x}")).collect();
    if b.len() > SHOWN {
        s.push('…');
    }
    s
}
