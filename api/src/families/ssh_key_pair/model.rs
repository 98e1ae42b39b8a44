//! Key-pair records, commands and their apply.

use serde::Deserialize;
use serde::Serialize;

use super::key;
use crate::resource;
use crate::resource::generic;
use crate::resource::generic::Rename;
use crate::resource::relations;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The key-pair table.
pub const TABLE: &str = "ssh_key_pair";
/// The kind name other families use to refer to key pairs.
pub const KIND: &str = "SshKeyPair";
/// The resource type tags name key pairs by.
pub const VO: &str = "SshKeyPairVO";

/// A key-pair record (`SshKeyPairVO`): the public half only, the private key never reaches
/// the cloud (`GenerateSshKeyPair`, which hands one out, is a later call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyPair {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// One OpenSSH public key line, as checked by [`key::parse`] (surrounding whitespace
    /// dropped).
    pub public_key: String,
    /// Creation time, ms since the epoch.
    pub create_date: u64,
    /// Last change, ms since the epoch.
    pub last_op_date: u64,
}

crate::described_record!(SshKeyPair);

/// Key-pair commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SshKeyPairOp {
    /// `CreateSshKeyPair`: register a public key.
    Create {
        /// Stamped by the proposer, or the client's `resourceUuid`.
        uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// The OpenSSH public key line.
        public_key: String,
    },
    /// `UpdateSshKeyPair`: name and description (the key itself never changes).
    Update {
        /// Key pair.
        uuid: String,
        /// New name and description.
        rename: Rename,
    },
    /// `DeleteSshKeyPair`.
    Delete {
        /// Key pair.
        uuid: String,
    },
}

/// Answer of a key-pair command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SshKeyPairResult {
    /// The key pair after the change.
    Inventory(SshKeyPair),
    /// Deleted (or already absent: ZStack answers success for a well-formed unknown uuid).
    Deleted,
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: SshKeyPairOp,
) -> Result<SshKeyPairResult, ApiError> {
    // Key pairs belong to accounts: any account registers its own, sees and changes only its
    // own (the admin every account's).
    match op {
        SshKeyPairOp::Create {
            uuid,
            name,
            description,
            public_key,
        } => {
            // Field checks first, the duplicate uuid last (ZStack's interceptor order).
            generic::check_fields(&uuid, &name, description.as_deref())?;
            let public_key = key::parse(&public_key)?.line.to_string();
            resource::refuse_duplicate::<SshKeyPair>(txn, &uuid)?;
            let k = SshKeyPair {
                uuid,
                name,
                description,
                public_key,
                create_date: ctx.proposed_at_ms,
                last_op_date: ctx.proposed_at_ms,
            };
            resource::save(txn, &caller.account_uuid, &k)?;
            Ok(SshKeyPairResult::Inventory(k))
        }
        SshKeyPairOp::Update { uuid, rename } => {
            generic::modify_visible(txn, ctx, caller, &uuid, |_, k: &mut SshKeyPair| {
                rename.apply_to(k)
            })
            .map(SshKeyPairResult::Inventory)
        }
        SshKeyPairOp::Delete { uuid } => {
            if resource::load::<SshKeyPair>(txn, &uuid)?.is_some() {
                resource::require_visible::<SshKeyPair>(txn, caller, &uuid)?;
                // Plain: its tags go with it (their relation to any kind). Attaching key
                // pairs to VMs comes with the VM family, whose reference kind will declare a
                // relation to `SshKeyPair` (detach on delete), leaving this module unchanged.
                relations::delete(txn, ctx, KIND, &uuid)?;
            }
            Ok(SshKeyPairResult::Deleted)
        }
    }
}
