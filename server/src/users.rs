//! The users file: one `NAME:NTHASH[:SID]` line per user (the NT hash in
//! hex; the SID, `S-1-...`, optional: without it a user's SID is derived
//! from the name, see `acl::user_sid`), managed by `duet user add`, in
//! the manner of smbpasswd.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// The accounts the server knows.
#[derive(Debug, Clone, Default)]
pub struct Users {
    /// Lower-cased name → (name as written, NT hash).
    by_name: HashMap<String, (String, [u8; 16])>,
    /// Lower-cased name → the SID the file gives the user.
    sids: HashMap<String, protocol::fscc::Sid>,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read users file {0}: {1}")]
    Io(String, std::io::Error),
    #[error("users file {file}, line {line}: {what}")]
    Syntax { file: String, line: usize, what: &'static str },
    #[error("invalid user name {0:?}")]
    BadName(String),
}

impl Users {
    pub fn new() -> Users {
        Users::default()
    }

    /// Adds or replaces a user with a plain password.
    pub fn add_password(&mut self, name: &str, password: &str) {
        self.add_hash(name, protocol::auth::nt_hash(password));
    }

    pub fn add_hash(&mut self, name: &str, hash: [u8; 16]) {
        self.by_name.insert(name.to_lowercase(), (name.to_string(), hash));
    }

    /// The NT hash of a user; names compare case-insensitively.
    pub fn nt_hash(&self, name: &str) -> Option<[u8; 16]> {
        self.by_name.get(&name.to_lowercase()).map(|(_, h)| *h)
    }

    /// The SID the users file gives `name`, if it gives one.
    pub fn sid(&self, name: &str) -> Option<&protocol::fscc::Sid> {
        self.sids.get(&name.to_lowercase())
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Loads a users file. A missing file is an error.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| UsersError::Io(file.clone(), e))?;
        let mut users = Users::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |what| UsersError::Syntax { file: file.clone(), line: n + 1, what };
            let (name, rest) = line.split_once(':').ok_or_else(|| syntax("expected NAME:NTHASH"))?;
            let (hex, sid) = match rest.split_once(':') {
                Some((hex, sid)) => {
                    let sid: protocol::fscc::Sid =
                        sid.trim().parse().map_err(|_| syntax("SID must be S-1-AUTHORITY-SUB..."))?;
                    (hex, Some(sid))
                }
                None => (rest, None),
            };
            let hash = parse_hex16(hex.trim()).ok_or_else(|| syntax("NT hash must be 32 hex digits"))?;
            users.add_hash(name.trim(), hash);
            if let Some(sid) = sid {
                users.sids.insert(name.trim().to_lowercase(), sid);
            }
        }
        Ok(users)
    }

    /// Adds (or replaces) one user in the file, creating it with mode 0600.
    pub fn add_to_file(path: &Path, name: &str, password: &str) -> Result<(), UsersError> {
        if name.is_empty() || name.contains([':', '\n', '\\', '/']) {
            return Err(UsersError::BadName(name.to_string()));
        }
        let file = path.display().to_string();
        let mut users = if path.exists() { Users::load(path)? } else { Users::new() };
        users.add_password(name, password);
        let mut names: Vec<_> = users.by_name.values().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut text = String::new();
        for (n, h) in names {
            text.push_str(n);
            text.push(':');
            for b in h {
                text.push_str(&format!("{b:02X}"));
            }
            if let Some(sid) = users.sids.get(&n.to_lowercase()) {
                text.push_str(&format!(":{sid}"));
            }
            text.push('\n');
        }
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| UsersError::Io(file.clone(), e))?;
            }
        }
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| UsersError::Io(file, e))
    }
}

fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_then_load_roundtrip_case_insensitive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/users");
        Users::add_to_file(&p, "Alice", "secret").unwrap();
        Users::add_to_file(&p, "bob", "pw").unwrap();
        Users::add_to_file(&p, "alice", "changed").unwrap();
        let u = Users::load(&p).unwrap();
        assert_eq!(u.nt_hash("ALICE"), Some(protocol::auth::nt_hash("changed")));
        assert_eq!(u.nt_hash("bob"), Some(protocol::auth::nt_hash("pw")));
        assert_eq!(u.nt_hash("carol"), None);
    }

    #[test]
    fn a_sid_may_follow_the_hash_and_is_kept_by_add() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        let hash = "00112233445566778899AABBCCDDEEFF";
        std::fs::write(&p, format!("alice:{hash}:S-1-5-21-1-2-3-1001\nbob:{hash}\n")).unwrap();
        let u = Users::load(&p).unwrap();
        assert_eq!(u.sid("ALICE").map(|s| s.to_string()).as_deref(), Some("S-1-5-21-1-2-3-1001"));
        assert_eq!(u.sid("bob"), None);
        Users::add_to_file(&p, "bob", "pw").unwrap();
        let u = Users::load(&p).unwrap();
        assert_eq!(u.sid("alice").map(|s| s.to_string()).as_deref(), Some("S-1-5-21-1-2-3-1001"));
        std::fs::write(&p, format!("carol:{hash}:S-1-x\n")).unwrap();
        assert!(matches!(Users::load(&p), Err(UsersError::Syntax { line: 1, .. })));
    }

    #[test]
    fn bad_lines_are_reported_with_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        std::fs::write(&p, "# c\nalice:1234\n").unwrap();
        match Users::load(&p) {
            Err(UsersError::Syntax { line, .. }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
        assert!(Users::add_to_file(&p, "a:b", "x").is_err());
    }
}
