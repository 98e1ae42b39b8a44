//! The cloud's domain, pure and deterministic: the [`Command`]s that travel through Raft, their
//! [`Response`]s and [`apply`], which validates and mutates state through a [`StateTxn`].
//!
//! Nothing here performs IO or reads a clock: time and identifiers come in the command, stamped
//! by the node that proposed it, so every replica computes the same result.

#![deny(missing_docs)]

pub mod audit;
pub mod calls;
pub mod catalogue;
pub mod error;
pub mod global_config;
pub mod identity;
pub mod job;
pub mod kv;
pub mod management_node;
pub mod query;
pub mod resource;
pub mod rest;
pub mod staged;
pub mod validate;
pub mod wire;
pub mod zone;

// Infrastructure families (one module each, following `zone`). Their `Command` variants box
// the op so that `Command` stays small.
pub mod backup_storage;
pub mod cluster;
pub mod host;
pub mod image;
pub mod l2;
pub mod l3;
pub mod offering;
pub mod params;
pub mod primary_storage;
pub mod tag;

#[cfg(test)]
mod call_matrix;
#[cfg(test)]
mod infra_tests;

use serde::Deserialize;
use serde::Serialize;

pub use error::ApiError;
pub use error::StateError;

/// Every state table the model uses; the storage layer creates one column family per table.
pub const TABLES: &[&str] = &[
    kv::TABLE,
    management_node::TABLE,
    resource::INDEX_TABLE,
    zone::TABLE,
    cluster::TABLE,
    host::TABLE,
    primary_storage::TABLE,
    backup_storage::TABLE,
    offering::INSTANCE_TABLE,
    offering::DISK_TABLE,
    image::TABLE,
    l2::TABLE,
    l2::VNI_TABLE,
    l3::TABLE,
    l3::RANGE_TABLE,
    l3::USED_IP_TABLE,
    tag::SYSTEM_TABLE,
    tag::USER_TABLE,
    global_config::TABLE,
    identity::ACCOUNT_TABLE,
    identity::USER_TABLE,
    identity::SESSION_TABLE,
    job::TABLE,
    audit::TABLE,
    audit::INDEX_TABLE,
];

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

/// A state change that travels through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Generic key-value commands (tests, benchmarks, chaos history).
    Kv(kv::KvOp),
    /// Management-node registry changes, proposed by the leader's registry duty.
    ManagementNode(management_node::ManagementNodeOp),
    /// Zone calls.
    Zone {
        /// Who asked.
        caller: Caller,
        /// What.
        op: zone::ZoneOp,
    },
    /// Global configuration changes.
    GlobalConfig {
        /// Who asked.
        caller: Caller,
        /// What.
        op: global_config::GlobalConfigOp,
    },
    /// Accounts, users and sessions.
    Identity {
        /// Who asked.
        caller: Caller,
        /// What.
        op: identity::IdentityOp,
    },
    /// Durable async API jobs.
    Job {
        /// Who asked.
        caller: Caller,
        /// What.
        op: job::JobOp,
    },
    /// Cluster calls.
    Cluster {
        /// Who asked.
        caller: Caller,
        /// What.
        op: Box<cluster::ClusterOp>,
    },
    /// Primary-storage calls.
    PrimaryStorage {
        /// Who asked.
        caller: Caller,
        /// What.
        op: Box<primary_storage::PrimaryStorageOp>,
    },
    /// Backup-storage calls.
    BackupStorage {
        /// Who asked.
        caller: Caller,
        /// What.
        op: Box<backup_storage::BackupStorageOp>,
    },
    /// Instance- and disk-offering calls.
    Offering {
        /// Who asked.
        caller: Caller,
        /// What.
        op: Box<offering::OfferingOp>,
    },
    /// Image calls (and the download duty's internal ones).
    Image {
        /// Who asked.
        caller: Caller,
        /// What.
        op: Box<image::ImageOp>,
    },
    /// L2 network and VNI-range calls.
    L2 {
        /// Who asked.
        caller: Caller,
        /// What.
        op: Box<l2::L2Op>,
    },
    /// L3 network, IP-range, DNS and IPAM calls.
    L3 {
        /// Who asked.
        caller: Caller,
        /// What.
        op: Box<l3::L3Op>,
    },
    /// System- and user-tag calls.
    Tag {
        /// Who asked.
        caller: Caller,
        /// What.
        op: Box<tag::TagOp>,
    },
    /// A create call with `systemTags`/`userTags`: the create, then the tags of the new resource,
    /// in one apply (built by [`tag::with_create_tags`]; answers the create's response).
    Tagged {
        /// Who asked.
        caller: Caller,
        /// The create.
        command: Box<Command>,
        /// VO type of the created resource.
        resource_type: String,
        /// (system?, text) of each tag.
        tags: Vec<(bool, String)>,
    },
    // New variants go last: commands are encoded by variant index in the Raft log.
    /// KVM host calls.
    Host {
        /// Who asked.
        caller: Caller,
        /// What.
        op: Box<host::HostOp>,
    },
    /// The API audit log (the serving nodes' batches, the leader's retention sweeper).
    Audit {
        /// Who asked (the node itself, as admin).
        caller: Caller,
        /// What.
        op: audit::AuditOp,
    },
}

/// What applying a [`Command`] answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer of a key-value command.
    Kv(kv::KvResult),
    /// Answer of a registry command.
    ManagementNode(management_node::ManagementNodeResult),
    /// Answer of a zone command.
    Zone(zone::ZoneResult),
    /// Answer of a global-config command.
    GlobalConfig(global_config::GlobalConfigResult),
    /// Answer of an identity command.
    Identity(identity::IdentityResult),
    /// Answer of a job command.
    Job(job::JobResult),
    /// Answer of a cluster command.
    Cluster(cluster::ClusterResult),
    /// Answer of a primary-storage command.
    PrimaryStorage(primary_storage::PrimaryStorageResult),
    /// Answer of a backup-storage command.
    BackupStorage(backup_storage::BackupStorageResult),
    /// Answer of a offering command.
    Offering(offering::OfferingResult),
    /// Answer of a image command.
    Image(image::ImageResult),
    /// Answer of a L2 command.
    L2(l2::L2Result),
    /// Answer of a L3 command.
    L3(l3::L3Result),
    /// Answer of a tag command.
    Tag(tag::TagResult),
    /// The command was refused by a business rule; nothing changed.
    Refused(ApiError),
    // New variants go last: responses are stored by variant index (dedup records, jobs).
    /// Answer of a host command.
    Host(host::HostResult),
    /// Answer of an audit command.
    Audit(audit::AuditResult),
}

impl Response {
    /// Whether the writes made while producing this response should be kept.
    pub fn keeps_writes(&self) -> bool {
        match self {
            Response::Kv(r) => r.keeps_writes(),
            Response::ManagementNode(_)
            | Response::Zone(_)
            | Response::GlobalConfig(_)
            | Response::Identity(_)
            | Response::Job(_)
            | Response::Cluster(_)
            | Response::Host(_)
            | Response::Audit(_)
            | Response::PrimaryStorage(_)
            | Response::BackupStorage(_)
            | Response::Offering(_)
            | Response::Image(_)
            | Response::L2(_)
            | Response::L3(_)
            | Response::Tag(_) => true,
            Response::Refused(_) => false,
        }
    }
}

/// Apply one command. `Err` is a storage failure (the replica must stop); a refusal by a
/// business rule is `Ok(Response::Refused(..))` so that every replica records the same answer.
pub fn apply(
    txn: &mut impl StateTxn,
    ctx: &ApplyCtx,
    cmd: Command,
) -> Result<Response, StateError> {
    let res = match cmd {
        Command::Kv(op) => kv::apply(txn, ctx, op).map(Response::Kv),
        Command::ManagementNode(op) => {
            management_node::apply(txn, ctx, op).map(Response::ManagementNode)
        }
        Command::Zone { caller, op } => zone::apply(txn, ctx, &caller, op).map(Response::Zone),
        Command::GlobalConfig { caller, op } => {
            global_config::apply(txn, &caller, op).map(Response::GlobalConfig)
        }
        Command::Identity { caller, op } => {
            identity::apply(txn, ctx, &caller, op).map(Response::Identity)
        }
        Command::Job { caller, op } => job::apply(txn, ctx, &caller, op).map(Response::Job),
        Command::Cluster { caller, op } => {
            cluster::apply(txn, ctx, &caller, *op).map(Response::Cluster)
        }
        Command::Host { caller, op } => host::apply(txn, ctx, &caller, *op).map(Response::Host),
        Command::Audit { caller, op } => audit::apply(txn, ctx, &caller, op).map(Response::Audit),
        Command::PrimaryStorage { caller, op } => {
            primary_storage::apply(txn, ctx, &caller, *op).map(Response::PrimaryStorage)
        }
        Command::BackupStorage { caller, op } => {
            backup_storage::apply(txn, ctx, &caller, *op).map(Response::BackupStorage)
        }
        Command::Offering { caller, op } => {
            offering::apply(txn, ctx, &caller, *op).map(Response::Offering)
        }
        Command::Image { caller, op } => image::apply(txn, ctx, &caller, *op).map(Response::Image),
        Command::L2 { caller, op } => l2::apply(txn, ctx, &caller, *op).map(Response::L2),
        Command::L3 { caller, op } => l3::apply(txn, ctx, &caller, *op).map(Response::L3),
        Command::Tag { caller, op } => tag::apply(txn, ctx, &caller, *op).map(Response::Tag),
        Command::Tagged {
            caller,
            command,
            resource_type,
            tags,
        } => return tag::apply_tagged(txn, ctx, &caller, *command, resource_type, tags),
    };
    match res {
        Ok(r) => Ok(r),
        Err(ApiError::State(e)) => Err(e),
        Err(refusal) => Ok(Response::Refused(refusal)),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! An in-memory [`StateTxn`] for unit tests.
    use std::collections::BTreeMap;

    use super::*;

    /// Tables as ordered maps.
    #[derive(Default)]
    pub struct MemTxn {
        pub tables: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    }

    impl StateTxn for MemTxn {
        fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            Ok(self.tables.get(table).and_then(|t| t.get(key)).cloned())
        }
        fn put(&mut self, table: &str, key: &[u8], value: Vec<u8>) -> Result<(), StateError> {
            self.tables
                .entry(table.to_string())
                .or_default()
                .insert(key.to_vec(), value);
            Ok(())
        }
        fn delete(&mut self, table: &str, key: &[u8]) -> Result<(), StateError> {
            if let Some(t) = self.tables.get_mut(table) {
                t.remove(key);
            }
            Ok(())
        }
        fn scan_prefix(
            &self,
            table: &str,
            prefix: &[u8],
            limit: usize,
        ) -> Result<Vec<Pair>, StateError> {
            Ok(self
                .tables
                .get(table)
                .map(|t| {
                    t.range(prefix.to_vec()..)
                        .take_while(|(k, _)| k.starts_with(prefix))
                        .take(limit)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default())
        }
    }

    /// A context for entry `index`.
    pub fn ctx(index: u64) -> ApplyCtx {
        ApplyCtx {
            index,
            term: 1,
            proposed_at_ms: 1_000 * index,
        }
    }
}
