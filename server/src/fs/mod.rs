//! The share-confined file system.
