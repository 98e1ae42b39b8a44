//! Errors of the domain: refusals (ZStack error codes) and storage failures.

use serde::Deserialize;
use serde::Serialize;

/// A storage failure seen through [`crate::StateTxn`]; the replica cannot continue applying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("state storage failed: {0}")]
pub struct StateError(pub String);

/// Why a command was refused or could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApiError {
    /// The command is malformed (ZStack `SYS.1007`, invalid argument).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The named resource does not exist (ZStack `SYS.1003`, resource not found).
    #[error("{kind} {id} not found")]
    NotFound {
        /// Resource kind, e.g. "ManagementNode".
        kind: String,
        /// Its identifier.
        id: String,
    },
    /// A stored record does not decode; the state is damaged.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Decoder message.
        detail: String,
    },
    /// Refused by a business rule with a specific ZStack code.
    #[error(transparent)]
    Refused(#[from] crate::wire::errors::Refusal),
    /// Storage failure; never recorded as an answer.
    #[error(transparent)]
    State(#[from] StateError),
}

impl ApiError {
    /// The ZStack error code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) => "SYS.1007",
            ApiError::NotFound { .. } => "SYS.1003",
            ApiError::Refused(r) => r.code.as_str(),
            ApiError::Corrupt { .. } | ApiError::State(_) => "SYS.1000",
        }
    }
}
