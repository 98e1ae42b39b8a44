//! Zone records, commands and their apply.

use serde::Deserialize;
use serde::Serialize;

use crate::resource;
use crate::resource::generic;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::resource::generic::Rename;
use crate::resource::relations;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The zone table.
pub const TABLE: &str = "zone";
/// The kind name other families use to refer to zones.
pub const KIND: &str = "Zone";

/// A zone record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Enabled or Disabled.
    pub state: EnableState,
    /// Whether this is the default zone.
    pub is_default: bool,
    /// Creation time, ms since the epoch.
    pub create_date: u64,
    /// Last change, ms since the epoch.
    pub last_op_date: u64,
}

crate::described_record!(Zone);

/// Zone commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZoneOp {
    /// `CreateZone`.
    Create {
        /// Stamped by the proposer, or the client's `resourceUuid`.
        uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Make it the default zone.
        is_default: bool,
    },
    /// `UpdateZone`.
    Update {
        /// Zone.
        uuid: String,
        /// New name and description.
        rename: Rename,
        /// New default flag.
        is_default: Option<bool>,
    },
    /// `ChangeZoneState`.
    ChangeState {
        /// Zone.
        uuid: String,
        /// enable or disable.
        event: EnableEvent,
    },
    /// `DeleteZone`: the zone and everything in it.
    Delete {
        /// Zone.
        uuid: String,
    },
}

/// Answer of a zone command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZoneResult {
    /// The zone after the change.
    Inventory(Zone),
    /// Deleted (or already absent: ZStack answers success for a well-formed unknown uuid).
    Deleted,
}

fn set_only_default(txn: &mut dyn StateTxn, keep: &str, ctx: &ApplyCtx) -> Result<(), ApiError> {
    for (owner, mut z) in resource::find::<Zone>(txn, "isDefault", "true")? {
        if z.uuid != keep {
            z.is_default = false;
            z.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &z)?;
        }
    }
    Ok(())
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: ZoneOp,
) -> Result<ZoneResult, ApiError> {
    // Zones are infrastructure: only the admin manages them (ZStack's RBAC for normal accounts).
    caller.require_admin("zone")?;
    match op {
        ZoneOp::Create {
            uuid,
            name,
            description,
            is_default,
        } => {
            generic::check_new::<Zone>(txn, &uuid, &name, description.as_deref())?;
            let z = Zone {
                uuid,
                name,
                description,
                state: EnableState::Enabled,
                is_default,
                create_date: ctx.proposed_at_ms,
                last_op_date: ctx.proposed_at_ms,
            };
            if is_default {
                set_only_default(txn, &z.uuid, ctx)?;
            }
            resource::save(txn, &caller.account_uuid, &z)?;
            Ok(ZoneResult::Inventory(z))
        }
        ZoneOp::Update {
            uuid,
            rename,
            is_default,
        } => {
            let z = generic::modify(txn, ctx, &uuid, |_, z: &mut Zone| {
                rename.apply_to(z)?;
                if let Some(d) = is_default {
                    z.is_default = d;
                }
                Ok(())
            })?;
            if is_default == Some(true) {
                set_only_default(txn, &z.uuid, ctx)?;
            }
            Ok(ZoneResult::Inventory(z))
        }
        ZoneOp::ChangeState { uuid, event } => {
            let z = generic::modify(txn, ctx, &uuid, |_, z: &mut Zone| {
                z.state = event.target();
                Ok(())
            })?;
            // Enable/disable propagates to what the zone holds (spec 03 §2.2): each child
            // kind's relation decides how.
            relations::propagate_state(txn, ctx, KIND, &uuid, z.state.as_str())?;
            Ok(ZoneResult::Inventory(z))
        }
        ZoneOp::Delete { uuid } => {
            // Everything in the zone goes with it, in this same apply (spec 03 §2.2), as the
            // relations of the kinds it holds declare.
            relations::delete(txn, ctx, KIND, &uuid)?;
            Ok(ZoneResult::Deleted)
        }
    }
}
