//! Cluster records, commands and their apply.

use serde::Deserialize;
use serde::Serialize;

use crate::resource;
use crate::resource::generic;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::resource::generic::Rename;
use crate::resource::relations;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The cluster table.
pub const TABLE: &str = "cluster";
/// The kind name other families use to refer to clusters.
pub const KIND: &str = "Cluster";
/// Hypervisor types this build manages.
pub const HYPERVISOR_TYPES: &[&str] = &["KVM"];

/// A cluster record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Enabled or Disabled.
    pub state: EnableState,
    /// `KVM`.
    pub hypervisor_type: String,
    /// The zone it belongs to.
    pub zone_uuid: String,
    /// CPU architecture of its hosts, when declared.
    pub architecture: Option<String>,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

crate::described_record!(Cluster);

/// Cluster commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterOp {
    /// `CreateCluster`.
    Create {
        /// New cluster's uuid.
        uuid: String,
        /// Zone.
        zone_uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Must be `KVM`.
        hypervisor_type: String,
        /// `zstack` (the only type accepted).
        cluster_type: Option<String>,
        /// CPU architecture.
        architecture: Option<String>,
    },
    /// `UpdateCluster`.
    Update {
        /// Cluster.
        uuid: String,
        /// New name and description.
        rename: Rename,
    },
    /// `ChangeClusterState`.
    ChangeState {
        /// Cluster.
        uuid: String,
        /// enable or disable.
        event: EnableEvent,
    },
    /// `DeleteCluster`: detaches storage and networks, deletes its hosts.
    Delete {
        /// Cluster.
        uuid: String,
    },
}

/// Answer of a cluster command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterResult {
    /// The cluster after the change.
    Inventory(Cluster),
    /// Deleted (or already absent).
    Deleted,
}

/// Zone enable/disable propagates to its clusters (spec 03 §2.2, [U] `ClusterExtensionToZone`)
/// and from each cluster to what it holds.
pub(super) fn zone_state_changed(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    state: &str,
) -> Result<(), ApiError> {
    let Some((owner, mut c)) = resource::load::<Cluster>(txn, uuid)? else {
        return Ok(());
    };
    let state = if state == EnableState::Enabled.as_str() {
        EnableState::Enabled
    } else {
        EnableState::Disabled
    };
    if c.state != state {
        c.state = state;
        c.last_op_date = ctx.proposed_at_ms;
        resource::save(txn, &owner, &c)?;
    }
    relations::propagate_state(txn, ctx, KIND, uuid, state.as_str())
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: ClusterOp,
) -> Result<ClusterResult, ApiError> {
    caller.require_admin("cluster")?;
    match op {
        ClusterOp::Create {
            uuid,
            zone_uuid,
            name,
            description,
            hypervisor_type,
            cluster_type,
            architecture,
        } => {
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            if !HYPERVISOR_TYPES.contains(&hypervisor_type.as_str()) {
                return Err(validate::invalid_arg(format!(
                    "unsupported hypervisorType[{hypervisor_type}], supported types are {HYPERVISOR_TYPES:?}"
                )));
            }
            if let Some(t) = cluster_type.as_deref().filter(|t| *t != "zstack") {
                return Err(validate::invalid_arg(format!(
                    "unsupported cluster type[{t}], only 'zstack' is supported"
                )));
            }
            if let Some(a) = architecture
                .as_deref()
                .filter(|a| !validate::ARCHITECTURES.contains(a))
            {
                return Err(validate::invalid_arg(format!(
                    "unsupported architecture[{a}], valid values are {:?}",
                    validate::ARCHITECTURES
                )));
            }
            // A disabled zone still accepts new clusters (spec 03 §2.2).
            resource::require_ref(txn, "Zone", &zone_uuid)?;
            resource::refuse_duplicate::<Cluster>(txn, &uuid)?;
            let c = Cluster {
                uuid,
                name,
                description,
                state: EnableState::Enabled,
                hypervisor_type,
                zone_uuid,
                architecture,
                create_date: ctx.proposed_at_ms,
                last_op_date: ctx.proposed_at_ms,
            };
            resource::save(txn, &caller.account_uuid, &c)?;
            Ok(ClusterResult::Inventory(c))
        }
        ClusterOp::Update { uuid, rename } => Ok(ClusterResult::Inventory(generic::rename(
            txn, ctx, &uuid, rename,
        )?)),
        ClusterOp::ChangeState { uuid, event } => {
            let c = generic::modify(txn, ctx, &uuid, |_, c: &mut Cluster| {
                c.state = event.target();
                Ok(())
            })?;
            relations::propagate_state(txn, ctx, KIND, &uuid, c.state.as_str())?;
            Ok(ClusterResult::Inventory(c))
        }
        ClusterOp::Delete { uuid } => {
            // Its hosts go with it; storage and networks attached to it are detached, as their
            // relations to clusters declare.
            relations::delete(txn, ctx, KIND, &uuid)?;
            Ok(ClusterResult::Deleted)
        }
    }
}
