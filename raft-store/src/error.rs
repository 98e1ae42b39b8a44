//! Errors of the storage layer, each naming the file, key or log index involved.

use std::io;
use std::path::PathBuf;

/// A storage failure. Every variant says where, so an operator can act on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB refused to open the directory (corrupt MANIFEST/CURRENT/SST, lock held, ...).
    #[error("cannot open RocksDB at {path}: {source}")]
    Open {
        /// The RocksDB directory.
        path: PathBuf,
        /// RocksDB's own message.
        source: rocksdb::Error,
    },
    /// The directory exists but was not written by raft-store, or its format is unknown.
    #[error("{path} is not a usable raft-store directory: {reason}")]
    Format {
        /// The RocksDB directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A value inside the store does not decode or breaks an invariant.
    #[error("corrupt {what} in {path}: {detail}")]
    Corrupt {
        /// The RocksDB directory or snapshot file.
        path: PathBuf,
        /// Which record (e.g. "log entry at index 42", "vote").
        what: String,
        /// The decoder's or checker's explanation.
        detail: String,
    },
    /// A RocksDB operation failed at run time.
    #[error("RocksDB {op} failed: {source}")]
    Rocks {
        /// The operation (e.g. "write log batch").
        op: &'static str,
        /// RocksDB's own message.
        source: rocksdb::Error,
    },
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation (e.g. "create snapshot file").
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An applier used a table it did not declare.
    #[error("table {0:?} is not declared by the state machine's applier")]
    UnknownTable(String),
    /// The applier declared a table whose name raft-store reserves.
    #[error("table name {0:?} is reserved by raft-store")]
    ReservedTable(String),
}

impl StoreError {
    pub(crate) fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> StoreError {
        move |source| StoreError::Rocks { op, source }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}

impl From<StoreError> for io::Error {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::Corrupt { .. } | StoreError::Format { .. } => io::ErrorKind::InvalidData,
            StoreError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
