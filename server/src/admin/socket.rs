//! The admin socket's listening side.
//!
//! The socket file is made with mode 0600 in a directory that is not
//! world-writable (created 0700 when missing), so only the server's user
//! (and root) can connect at all; and every connection's peer credentials
//! (`SO_PEERCRED`) are checked once more: only uid 0 and the server's own
//! effective uid are served, anyone else is logged and dropped. A stale
//! socket of a server that is gone is replaced; a live one is not.
//!
//! Each connection is its own task, and nothing it does can hold up the
//! server: the request line must arrive within [`REQUEST_TIMEOUT`] and be
//! at most [`MAX_REQUEST`] bytes, the answer must be taken within
//! [`RESPONSE_TIMEOUT`], at most [`MAX_CLIENTS`] are served at once (more
//! are dropped), and the answer is computed off the runtime's workers.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn};

use super::{execute, Request, Response};
use crate::state::Server;

/// The longest request line, its newline included.
pub const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to read the answer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once.
pub const MAX_CLIENTS: usize = 8;

/// The socket file, removed when this is dropped (the server stops) if it
/// is still the one this server made.
pub struct SocketFile {
    path: PathBuf,
    dev_ino: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.dev_ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes the socket at `path` (see the module doc) and starts serving it.
pub async fn start(server: Arc<Server>, path: &Path) -> io::Result<SocketFile> {
    let (listener, file) = bind(path)?;
    info!(path = %path.display(), "admin socket listening");
    tokio::spawn(serve(server, listener, nix::unistd::geteuid().as_raw()));
    Ok(file)
}

/// Binds the socket at `path` with mode 0600, in a parent directory that
/// is not world-writable.
pub fn bind(path: &Path) -> io::Result<(UnixListener, SocketFile)> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
    let meta = std::fs::metadata(parent)?;
    if meta.mode() & 0o002 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is world-writable: anyone could replace the socket", parent.display()),
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "another server is listening on it"));
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                debug!(path = %path.display(), "removing a stale admin socket");
                std::fs::remove_file(path)?;
            }
            Err(e) => return Err(e),
        },
        Ok(_) => return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    // Whatever the umask let through in the moment before this, the peer
    // check below still turns away anyone else.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let m = std::fs::symlink_metadata(path)?;
    Ok((listener, SocketFile { path: path.to_path_buf(), dev_ino: (m.dev(), m.ino()) }))
}

/// May a peer with this uid use the socket of a server running as
/// `server_uid`? Root and the server's own user only.
pub fn peer_allowed(peer_uid: u32, server_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == server_uid
}

/// The peer's uid and pid (`SO_PEERCRED`).
pub fn peer_credentials(stream: &UnixStream) -> io::Result<(u32, i32)> {
    let c = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)?;
    Ok((c.uid(), c.pid()))
}

/// Accepts admin connections for as long as the server runs.
pub async fn serve(server: Arc<Server>, listener: UnixListener, server_uid: u32) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    let mut refused = Throttle::default();
    let mut failed = Throttle::default();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                if let Some(n) = failed.tick() {
                    warn!("admin socket: accept: {e} ({n} more since the last message)");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match peer_credentials(&stream) {
            Ok((uid, _)) if peer_allowed(uid, server_uid) => {}
            Ok((uid, pid)) => {
                if let Some(n) = refused.tick() {
                    warn!(uid, pid, "admin socket: refused a connection: only root and the server's user may use it ({n} more refused since the last message)");
                }
                continue;
            }
            Err(e) => {
                warn!("admin socket: no peer credentials: {e}");
                continue;
            }
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("admin socket: {MAX_CLIENTS} clients already; connection dropped");
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(why) = handle(server, stream).await {
                debug!("admin socket: connection dropped: {why}");
            }
        });
    }
}

/// Reads one request line, answers it with one line, and closes.
async fn handle(server: Arc<Server>, stream: UnixStream) -> Result<(), String> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd.take(MAX_REQUEST as u64));
    let mut line = Vec::new();
    match tokio::time::timeout(REQUEST_TIMEOUT, rd.read_until(b'\n', &mut line)).await {
        Err(_) => return Err("no request line in time".into()),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(_)) => {}
    }
    if !line.ends_with(b"\n") && line.len() >= MAX_REQUEST {
        warn!("admin socket: request line over {MAX_REQUEST} bytes; dropped");
        return Err("request too long".into());
    }
    let response = match serde_json::from_slice::<Request>(&line) {
        Ok(req) => {
            debug!(?req, "admin request");
            let server = server.clone();
            tokio::task::spawn_blocking(move || execute(&server, req))
                .await
                .unwrap_or_else(|e| Response::Error { message: format!("the request failed: {e}") })
        }
        Err(e) => Response::Error { message: format!("bad request: {e}") },
    };
    let mut out = serde_json::to_vec(&response).map_err(|e| e.to_string())?;
    out.push(b'\n');
    match tokio::time::timeout(RESPONSE_TIMEOUT, async {
        wr.write_all(&out).await?;
        wr.shutdown().await
    })
    .await
    {
        Err(_) => Err("answer not read in time".into()),
        Ok(r) => r.map_err(|e| e.to_string()),
    }
}

/// Lets a repeated log message through at most once a second, counting
/// the ones held back.
#[derive(Default)]
struct Throttle {
    last: Option<std::time::Instant>,
    held: u64,
}

impl Throttle {
    /// `Some(held back since the last one)` when this one is to be logged.
    fn tick(&mut self) -> Option<u64> {
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            self.held += 1;
            return None;
        }
        self.last = Some(std::time::Instant::now());
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_and_the_servers_user() {
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(1000, 1000));
        assert!(!peer_allowed(1001, 1000));
        assert!(!peer_allowed(65534, 0));
        assert!(peer_allowed(0, 0));
    }

    #[tokio::test]
    async fn the_peer_credentials_are_the_connecting_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let (uid, pid) = peer_credentials(&a).unwrap();
        assert_eq!(uid, nix::unistd::geteuid().as_raw());
        assert_eq!(pid, std::process::id() as i32);
    }

    #[tokio::test]
    async fn the_socket_is_0600_in_a_private_directory_and_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/admin.sock");
        let (l, file) = bind(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path().join("sub")).unwrap().mode() & 0o777, 0o700);
        let again = bind(&path).map(|_| ()).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AddrInUse, "a live socket is not taken over");
        drop(l);
        std::mem::forget(file);
        let (_l, file) = bind(&path).expect("a stale socket is replaced");
        drop(file);
        assert!(!path.exists(), "removed when the server stops");
        std::fs::write(&path, "x").unwrap();
        assert_eq!(bind(&path).map(|_| ()).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(bind(&open.join("admin.sock")).map(|_| ()).unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    }
}
