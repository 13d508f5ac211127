//! Duet server.
pub mod fs;
