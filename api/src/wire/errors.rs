//! ZStack error codes and the error object of the wire protocol (spec 06 §1.6, §5).

use serde::Deserialize;
use serde::Serialize;

/// An error code with its fixed English description (`conf/errorCodes/*.xml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Code {
    /// SYS.1000
    Internal,
    /// SYS.1001
    Timeout,
    /// SYS.1002
    CreateResource,
    /// SYS.1003
    ResourceNotFound,
    /// SYS.1004
    DeleteResource,
    /// SYS.1005
    ChangeResourceState,
    /// SYS.1006
    OperationFailure,
    /// SYS.1007
    InvalidArgument,
    /// SYS.1008
    UnknownMessage,
    /// SYS.1010
    NotReady,
    /// SYS.1012
    ManagementNodeUnavailable,
    /// SYS.1014
    NotSupported,
    /// ID.1000
    AuthenticationError,
    /// ID.1001
    InvalidSession,
    /// ID.1002
    PermissionDenied,
    /// ID.1003
    QuotaExceeded,
    /// ID.1006
    MaxConcurrentSessionExceeded,
    /// L3.1000
    IpAllocation,
    /// HOST.1000: a host could not be added (unreachable, refused, ...).
    HostAdd,
    /// HOST.1002: a host could not be reconnected.
    HostReconnect,
    /// PS.1003: no host reaches a primary storage (ZStack's `PrimaryStorageErrors.DISCONNECTED`).
    PrimaryStorageDisconnected,
    /// HOST_ALLOCATION.1000: no host can take the VM (ZStack's `HostAllocatorError.NO_AVAILABLE_HOST`).
    NoAvailableHost,
}

impl Code {
    /// Every code, for tables and tests.
    pub const ALL: [Code; 22] = [
        Code::Internal,
        Code::Timeout,
        Code::CreateResource,
        Code::ResourceNotFound,
        Code::DeleteResource,
        Code::ChangeResourceState,
        Code::OperationFailure,
        Code::InvalidArgument,
        Code::UnknownMessage,
        Code::NotReady,
        Code::ManagementNodeUnavailable,
        Code::NotSupported,
        Code::AuthenticationError,
        Code::InvalidSession,
        Code::PermissionDenied,
        Code::QuotaExceeded,
        Code::MaxConcurrentSessionExceeded,
        Code::IpAllocation,
        Code::HostAdd,
        Code::HostReconnect,
        Code::PrimaryStorageDisconnected,
        Code::NoAvailableHost,
    ];

    /// The wire form, e.g. `SYS.1007`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Internal => "SYS.1000",
            Code::Timeout => "SYS.1001",
            Code::CreateResource => "SYS.1002",
            Code::ResourceNotFound => "SYS.1003",
            Code::DeleteResource => "SYS.1004",
            Code::ChangeResourceState => "SYS.1005",
            Code::OperationFailure => "SYS.1006",
            Code::InvalidArgument => "SYS.1007",
            Code::UnknownMessage => "SYS.1008",
            Code::NotReady => "SYS.1010",
            Code::ManagementNodeUnavailable => "SYS.1012",
            Code::NotSupported => "SYS.1014",
            Code::AuthenticationError => "ID.1000",
            Code::InvalidSession => "ID.1001",
            Code::PermissionDenied => "ID.1002",
            Code::QuotaExceeded => "ID.1003",
            Code::MaxConcurrentSessionExceeded => "ID.1006",
            Code::IpAllocation => "L3.1000",
            Code::HostAdd => "HOST.1000",
            Code::HostReconnect => "HOST.1002",
            Code::PrimaryStorageDisconnected => "PS.1003",
            Code::NoAvailableHost => "HOST_ALLOCATION.1000",
        }
    }

    /// ZStack's verbatim description of the code.
    pub fn description(self) -> &'static str {
        match self {
            Code::Internal => "An internal error happened in system",
            Code::Timeout => "A message or a operation timeout",
            Code::CreateResource => "Unable to create a resource",
            Code::ResourceNotFound => "A resource can not be found",
            Code::DeleteResource => "Unable to delete a resource",
            Code::ChangeResourceState => "Unable to change resource state",
            Code::OperationFailure => "An operation failed",
            Code::InvalidArgument => "One or more API argument is invalid",
            Code::UnknownMessage => "Unknown message, no service can deal with the message",
            Code::NotReady => "Management server is not ready to serve",
            Code::ManagementNodeUnavailable => "The management node is unavailable",
            Code::NotSupported => "The operation is not implemented or not supported yet",
            Code::AuthenticationError => "Unable to authenticate a user",
            Code::InvalidSession => {
                "The session is invalid, either wrong session id or the session has been expired"
            }
            Code::PermissionDenied => "The user doesn't have permission to perform the operation",
            Code::QuotaExceeded => "The user exceeds a quota of a resource",
            Code::MaxConcurrentSessionExceeded => "Max number of active sessions exceeded",
            Code::IpAllocation => "Unable to allocate an ip address from L3Network",
            Code::HostAdd => "Unable to add host",
            Code::HostReconnect => "Unable to reconnect host",
            Code::PrimaryStorageDisconnected => "The primary storage is disconnected",
            Code::NoAvailableHost => "No available host for operation",
        }
    }
}

/// Longest `details` ZStack sends; longer text is cut and ends with an ellipsis.
pub const MAX_DETAILS: usize = 4096;

/// The error object, fields in ZStack's serialisation order; absent fields are omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCode {
    /// `<PREFIX>.<id>`.
    pub code: String,
    /// Fixed text of the code.
    pub description: String,
    /// What went wrong this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// A hint for the operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elaboration: Option<String>,
    /// The flow that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Time spent, e.g. `"0ms"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// The underlying error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Box<ErrorCode>>,
}

impl ErrorCode {
    /// An error with `details`, truncated as ZStack does.
    pub fn new(code: Code, details: impl Into<String>) -> Self {
        let mut details: String = details.into();
        if details.chars().count() > MAX_DETAILS {
            details = details.chars().take(MAX_DETAILS - 1).collect();
            details.push('…');
        }
        Self {
            code: code.as_str().to_string(),
            description: code.description().to_string(),
            details: Some(details),
            elaboration: None,
            location: None,
            cost: Some("0ms".to_string()),
            cause: None,
        }
    }

    /// Attach the error that caused this one.
    pub fn caused_by(mut self, cause: ErrorCode) -> Self {
        self.cause = Some(Box::new(cause));
        self
    }
}

/// A refusal before it is rendered: a code and what went wrong. Small enough to return by
/// value from validators; becomes an [`ErrorCode`] at the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{}: {details}", code.as_str())]
pub struct Refusal {
    /// The error code.
    pub code: Code,
    /// What went wrong this time.
    pub details: String,
}

impl Refusal {
    /// A refusal with `code`.
    pub fn new(code: Code, details: impl Into<String>) -> Self {
        Self {
            code,
            details: details.into(),
        }
    }

    /// The wire error object.
    pub fn to_error_code(&self) -> ErrorCode {
        ErrorCode::new(self.code, self.details.clone())
    }

    /// The refusal an error object carries (an unknown code reads as `SYS.1000`).
    pub fn from_error_code(e: &ErrorCode) -> Refusal {
        let code = Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == e.code)
            .unwrap_or(Code::Internal);
        Refusal::new(code, e.details.clone().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_in_zstack_order_without_nulls() {
        let e = ErrorCode::new(Code::InvalidSession, "Session expired");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"code":"ID.1001","description":"The session is invalid, either wrong session id or the session has been expired","details":"Session expired","cost":"0ms"}"#
        );
    }

    #[test]
    fn codes_are_unique_and_long_details_are_cut() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "duplicate {}", c.as_str());
        }
        let e = ErrorCode::new(Code::OperationFailure, "x".repeat(10_000));
        let d = e.details.unwrap();
        assert_eq!(d.chars().count(), MAX_DETAILS);
        assert!(d.ends_with('…'));
    }
}
