//! The interconnect key: a secret both nodes of a pair hold, with which each proves to
//! the other, when a link comes up, that it is the configured partner and not anyone who
//! can reach the interconnect port ([`super::join`]).
//!
//! The key is a file (`pair.key_file`, `--pair-key`): at least [`MIN_LEN`] bytes of
//! anything, readable by its owner alone. A pair with a storage folder needs none
//! configured: its key is `STORAGE/interconnect.key`, made on first start by whichever
//! node comes first (32 random bytes, mode 0600), since whoever can write the storage
//! folder can already move the pair's sets.
//!
//! The proof ([`proof`]) is HMAC-SHA256 with the key over a label, the cluster, the
//! prover's and the verifier's node ids, and both joins' nonces, the verifier's first:
//! each side answers the nonce the other chose for this link, so a proof seen on one link
//! is worth nothing on another, and a node's own proofs (which name it as the prover)
//! cannot be reflected back at it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use takeover::{ClusterId, NodeId};

/// The key's file in the storage folder.
pub const FILE: &str = "interconnect.key";
/// The fewest bytes a key file may hold.
pub const MIN_LEN: usize = 16;
/// The most (a key file is read whole).
pub const MAX_LEN: usize = 4096;
/// The proof's label: what the MAC is of, and in which version.
const LABEL: &[u8] = b"duet interconnect join v1";

type HmacSha256 = Hmac<Sha256>;

/// A pair's interconnect key.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} bytes)", self.0.len())
    }
}

/// Where a pair's key is: the configured file, or the storage folder's (made when
/// missing); `None` when the pair has neither.
pub fn path(key_file: Option<&Path>, storage: Option<&Path>) -> Option<(PathBuf, bool)> {
    match (key_file, storage) {
        (Some(f), _) => Some((f.to_path_buf(), false)),
        (None, Some(s)) => Some((s.join(FILE), true)),
        (None, None) => None,
    }
}

impl Key {
    /// Reads the key at `path`; with `make`, makes it first when there is none (atomically:
    /// of two nodes starting at once, one key wins and both read it).
    pub fn load(path: &Path, make: bool) -> Result<Key, String> {
        let shown = path.display();
        if make && !path.exists() {
            make_key(path).map_err(|e| format!("cannot make the interconnect key {shown}: {e}"))?;
        }
        let f = std::fs::File::open(path).map_err(|e| format!("cannot read the interconnect key {shown}: {e}"))?;
        let meta = f.metadata().map_err(|e| format!("the interconnect key {shown}: {e}"))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "the interconnect key {shown} may be read or written by others than its owner \
                 (mode {:o}): chmod 600 it",
                meta.permissions().mode() & 0o777
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read the interconnect key {shown}: {e}"))?;
        Key::new(bytes).map_err(|why| format!("the interconnect key {shown}: {why}"))
    }

    /// A key of these bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Key, String> {
        if bytes.len() < MIN_LEN {
            return Err(format!("{} bytes, fewer than {MIN_LEN}", bytes.len()));
        }
        if bytes.len() > MAX_LEN {
            return Err(format!("{} bytes, more than {MAX_LEN}", bytes.len()));
        }
        Ok(Key(bytes))
    }

    fn mac(
        &self,
        cluster: ClusterId,
        prover: NodeId,
        verifier: NodeId,
        verifier_nonce: &[u8; 16],
        prover_nonce: &[u8; 16],
    ) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(LABEL);
        mac.update(&cluster.0.to_be_bytes());
        mac.update(&prover.0.to_be_bytes());
        mac.update(&verifier.0.to_be_bytes());
        mac.update(verifier_nonce);
        mac.update(prover_nonce);
        mac
    }

    /// The proof `prover` sends `verifier` on a link whose joins carried these nonces.
    pub fn proof(
        &self,
        cluster: ClusterId,
        prover: NodeId,
        verifier: NodeId,
        verifier_nonce: &[u8; 16],
        prover_nonce: &[u8; 16],
    ) -> [u8; 32] {
        self.mac(cluster, prover, verifier, verifier_nonce, prover_nonce).finalize().into_bytes().into()
    }

    /// Whether `proof` is `prover`'s (compared in constant time).
    pub fn verify(
        &self,
        proof: &[u8; 32],
        cluster: ClusterId,
        prover: NodeId,
        verifier: NodeId,
        verifier_nonce: &[u8; 16],
        prover_nonce: &[u8; 16],
    ) -> bool {
        self.mac(cluster, prover, verifier, verifier_nonce, prover_nonce).verify_slice(proof).is_ok()
    }
}

/// A fresh nonce for one link's join.
pub fn nonce() -> [u8; 16] {
    rand::random()
}

/// Writes 32 random bytes to a new file beside `path` and links it to `path`, which
/// fails (and is fine) when another node made it first.
fn make_key(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("new-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    let made = f.write_all(&rand::random::<[u8; 32]>()).and_then(|()| f.sync_all()).and_then(|()| {
        match std::fs::hard_link(&tmp, path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            r => r,
        }
    });
    let _ = std::fs::remove_file(&tmp);
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ClusterId = ClusterId(7);
    const A: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);

    #[test]
    fn a_proof_holds_only_for_its_key_link_and_direction() {
        let key = Key::new(vec![5; 32]).unwrap();
        let (na, nb) = ([1; 16], [2; 16]);
        // A proves itself to B: over B's nonce, then its own.
        let p = key.proof(C, A, B, &nb, &na);
        assert!(key.verify(&p, C, A, B, &nb, &na));
        assert!(!Key::new(vec![6; 32]).unwrap().verify(&p, C, A, B, &nb, &na), "another key");
        assert!(!key.verify(&p, C, A, B, &[3; 16], &na), "another link's nonce");
        assert!(!key.verify(&p, C, B, A, &na, &nb), "A's proof reflected as B's");
        assert!(!key.verify(&p, ClusterId(8), A, B, &nb, &na), "another cluster");
        let mut bent = p;
        bent[31] ^= 1;
        assert!(!key.verify(&bent, C, A, B, &nb, &na));
    }

    #[test]
    fn a_key_file_is_made_once_kept_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        // The storage folder may not be there yet at the first start.
        Key::load(&dir.path().join("storage").join(FILE), true).unwrap();
        std::fs::remove_dir_all(dir.path().join("storage")).unwrap();
        let made = Key::load(&path, true).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let again = Key::load(&path, true).unwrap();
        assert_eq!(made.0, again.0, "the second start reads the key the first made");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");

        let missing = dir.path().join("none.key");
        assert!(Key::load(&missing, false).unwrap_err().contains("cannot read"));
        assert!(!missing.exists(), "a configured key is never made");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Key::load(&path, false).unwrap_err().contains("chmod 600"));
        let short = dir.path().join("short.key");
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&short).unwrap();
        std::fs::write(&short, b"too short").unwrap();
        assert!(Key::load(&short, false).unwrap_err().contains("fewer than 16"));
    }

    #[test]
    fn the_key_is_the_configured_file_or_the_storage_folder_s() {
        let (f, s) = (Path::new("/etc/duet/key"), Path::new("/srv/shared/.duet"));
        assert_eq!(path(Some(f), Some(s)), Some((f.to_path_buf(), false)));
        assert_eq!(path(None, Some(s)), Some((s.join(FILE), true)));
        assert_eq!(path(None, None), None);
    }
}
