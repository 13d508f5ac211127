//! Why the server could not start or run ([`RunError`]).

use crate::{config, fs, users};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Users(#[from] users::UsersError),
    #[error("share {0}: {1}")]
    Share(String, fs::FsError),
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error("admin socket {path}: {error}", path = .0.display(), error = .1)]
    Admin(std::path::PathBuf, std::io::Error),
    #[error("journal {path}: {error}", path = .0.display(), error = .1)]
    Journal(std::path::PathBuf, String),
    #[error("pair: {0}")]
    Pair(String),
}
