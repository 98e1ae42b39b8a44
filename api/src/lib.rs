//! The cloud's domain, pure and deterministic: the [`Command`]s that travel through Raft, their
//! [`Response`]s and [`apply`], which validates and mutates state through a [`StateTxn`].
//!
//! Nothing here performs IO or reads a clock: time and identifiers come in the command, stamped
//! by the node that proposed it, so every replica computes the same result.

#![deny(missing_docs)]

pub mod audit;
pub mod call;
pub mod catalogue;
pub mod error;
pub mod families;
pub mod family;
pub mod flow;
pub mod interpret;
pub mod job;
pub mod kv;
pub mod leader;
pub mod mem;
pub mod net;
pub mod params;
pub mod plan;
pub mod query;
pub mod registry;
pub mod resource;
pub mod rest;
pub mod secret;
pub mod settings;
pub mod staged;
pub mod validate;
pub mod wire;

#[cfg(test)]
mod infra_tests;

use serde::Deserialize;
use serde::Serialize;

pub use error::ApiError;
pub use error::StateError;
pub use registry::apply;
pub use registry::Call;
pub use registry::Command;
pub use registry::IntoCommand;
pub use registry::Response;

/// Encoding of everything the model writes (commands in the Raft log, records, jobs, dedup
/// answers). A data directory written with another format is refused at start-up: commands
/// are encoded by variant index, so reading one with another registry would misread it.
/// Version 3: host and backup-storage passwords are sealed text (`secret::Sealed`), where
/// version 2 stored them in clear.
pub const MODEL_FORMAT: &str = "zstack-model/3";

/// Every state table the model uses; the storage layer creates one column family per table.
pub fn tables() -> Vec<&'static str> {
    registry::tables()
}

/// The account uuid of the built-in `admin` (spec decision 2).
pub const ADMIN_ACCOUNT_UUID: &str = "36c27e8ff05c4780bf6d2fa65700f22e";

/// Who issued a command, resolved from the session by the proposing node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The account acting (and owning what it creates).
    pub account_uuid: String,
    /// The user acting (equal to the account for account logins).
    pub user_uuid: String,
    /// Whether the account is the system admin.
    pub admin: bool,
}

impl Caller {
    /// The built-in admin account.
    pub fn admin() -> Caller {
        Caller {
            account_uuid: ADMIN_ACCOUNT_UUID.to_string(),
            user_uuid: ADMIN_ACCOUNT_UUID.to_string(),
            admin: true,
        }
    }

    /// Refuse (`ID.1002`) unless the caller is the admin.
    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::Refused(wire::errors::Refusal::new(
                wire::errors::Code::PermissionDenied,
                format!("only the admin account can manage {what} resources"),
            )))
        }
    }

    /// Whether the caller may see a resource owned by `owner`.
    pub fn can_see(&self, owner: &str) -> bool {
        self.admin || self.account_uuid == owner
    }
}

/// A key and its value in a state table.
pub type Pair = (Vec<u8>, Vec<u8>);

/// The transactional view of replicated state that [`apply`] reads and writes.
///
/// Reads see the transaction's own earlier writes. Implemented by the node over raft-store,
/// and by an in-memory map in tests.
pub trait StateTxn {
    /// Read one value of `table`.
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Write one value.
    fn put(&mut self, table: &str, key: &[u8], value: Vec<u8>) -> Result<(), StateError>;
    /// Delete one value (absent keys are fine).
    fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), StateError>;
    /// Pairs whose key starts with `prefix`, in key order, at most `limit`.
    fn scan_prefix(
        &self,
        table: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Pair>, StateError>;
}

/// Facts about the log entry being applied, identical on every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyCtx {
    /// Raft log index of the entry.
    pub index: u64,
    /// Term of the leader that proposed it.
    pub term: u64,
    /// Milliseconds since the Unix epoch, stamped by the proposer.
    pub proposed_at_ms: u64,
}

#[cfg(test)]
pub(crate) mod testing;
