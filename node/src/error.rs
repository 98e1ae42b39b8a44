//! Errors of the node, each mapped to an HTTP status and a ZStack-style error code.

use serde::Deserialize;
use serde::Serialize;

/// A request-level failure. Serializable, so a leader's refusal travels back to the node that
/// forwarded the request and reaches the client unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum NodeError {
    /// No leader, no quorum, timeout, or the node is shutting down: retry later.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The request is malformed.
    #[error("invalid argument: {0}")]
    BadRequest(String),
    /// The request conflicts with the cluster's state and was refused; nothing changed.
    #[error("refused: {0}")]
    Conflict(String),
    /// The named object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A peer the request depends on could not be reached or answered wrongly.
    #[error("peer failure: {0}")]
    Peer(String),
    /// A local failure (storage, encoding) the client cannot fix.
    #[error("internal error: {0}")]
    Internal(String),
    /// No credential, or one that is not valid (unknown token, expired session).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A valid credential that does not allow this (a normal account's session).
    #[error("permission denied: {0}")]
    Forbidden(String),
}

impl NodeError {
    /// HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            NodeError::Unavailable(_) => 503,
            NodeError::BadRequest(_) => 400,
            NodeError::Conflict(_) => 409,
            NodeError::NotFound(_) => 404,
            NodeError::Peer(_) => 502,
            NodeError::Internal(_) => 500,
            NodeError::Unauthenticated(_) => 401,
            NodeError::Forbidden(_) => 403,
        }
    }

    /// ZStack error code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            NodeError::Unavailable(_) | NodeError::Peer(_) => "SYS.1006",
            NodeError::BadRequest(_) => "SYS.1007",
            NodeError::Conflict(_) => "SYS.1001",
            NodeError::NotFound(_) => "SYS.1005",
            NodeError::Internal(_) => "SYS.1000",
            NodeError::Unauthenticated(_) => "ID.1001",
            NodeError::Forbidden(_) => "ID.1002",
        }
    }

    /// Short human description of the error class.
    pub fn description(&self) -> &'static str {
        match self {
            NodeError::Unavailable(_) => "the management cluster cannot serve this request now",
            NodeError::BadRequest(_) => "invalid argument",
            NodeError::Conflict(_) => "the request was refused; nothing changed",
            NodeError::NotFound(_) => "resource not found",
            NodeError::Peer(_) => "a peer management node could not be used",
            NodeError::Internal(_) => "internal error",
            NodeError::Unauthenticated(_) => "authentication required",
            NodeError::Forbidden(_) => "permission denied",
        }
    }

    /// The detail message.
    pub fn details(&self) -> &str {
        match self {
            NodeError::Unavailable(s)
            | NodeError::BadRequest(s)
            | NodeError::Conflict(s)
            | NodeError::NotFound(s)
            | NodeError::Peer(s)
            | NodeError::Internal(s)
            | NodeError::Unauthenticated(s)
            | NodeError::Forbidden(s) => s,
        }
    }
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The data directory belongs to another node or cluster, or cannot be used.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The Raft store could not be opened.
    #[error("raft store: {0}")]
    Store(#[from] raft_store::StoreError),
    /// openraft refused to start.
    #[error("raft: {0}")]
    Raft(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The data key (`<data_dir>/pki/data.key`) could not be loaded or created.
    #[error("data key: {0}")]
    DataKey(#[from] api::secret::SecretError),
    /// `--init` failed.
    #[error("cluster init: {0}")]
    Init(NodeError),
    /// The cluster credentials (`pki/`) are missing, invalid, or could not be obtained.
    #[error("cluster credentials: {0}")]
    Pki(#[from] crate::pki::PkiError),
}
