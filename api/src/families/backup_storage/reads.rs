//! `GetBackupStorageCapacity`: the sums of the capacity the image stores last reported
//! (committed by the image store tracker or a reconnect), over the stores named, those
//! attached to the zones named, or every one (`all`), in that order of precedence as ZStack
//! reads them. Admin only.

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use super::model::BackupStorage;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::Caller;
use crate::StateTxn;

/// Which stores a request names.
enum Scope {
    Stores(Vec<String>),
    Zones(Vec<String>),
    All,
}

/// The stores in scope, each once (a store attached to two of the zones named is counted
/// once); every uuid named must exist.
fn in_scope(txn: &dyn StateTxn, scope: &Scope) -> Result<Vec<BackupStorage>, ApiError> {
    let mut out: Vec<BackupStorage> = Vec::new();
    let mut keep = |b: BackupStorage| {
        if !out.iter().any(|x| x.uuid == b.uuid) {
            out.push(b);
        }
    };
    match scope {
        Scope::Stores(uuids) => {
            for u in uuids {
                keep(resource::require::<BackupStorage>(txn, u)?.1);
            }
        }
        Scope::Zones(uuids) => {
            for z in uuids {
                resource::require_ref(txn, "Zone", z)?;
                for (_, b) in resource::find::<BackupStorage>(txn, "attachedZoneUuids", z)? {
                    keep(b);
                }
            }
        }
        Scope::All => {
            for (_, b) in resource::list::<BackupStorage>(txn)? {
                keep(b);
            }
        }
    }
    Ok(out)
}

fn reply(
    txn: &dyn StateTxn,
    caller: &Caller,
    scope: &Scope,
) -> Result<Map<String, Value>, ApiError> {
    caller.require_admin("backup storage")?;
    let (mut total, mut available) = (0u64, 0u64);
    for b in in_scope(txn, scope)? {
        total = total.saturating_add(b.total_capacity);
        available = available.saturating_add(b.available_capacity);
    }
    Ok(resource::object(json!({
        "totalCapacity": total,
        "availableCapacity": available,
    })))
}

/// `GetBackupStorageCapacity`.
pub(super) fn capacity(p: &PlanInput) -> Result<Plan, Refusal> {
    let list = |f: &str| -> Result<Vec<String>, Refusal> {
        Ok(params::strings(p.body, f, p.call)?.unwrap_or_default())
    };
    let (stores, zones) = (list("backupStorageUuids")?, list("zoneUuids")?);
    let scope = if !stores.is_empty() {
        Scope::Stores(stores)
    } else if !zones.is_empty() {
        Scope::Zones(zones)
    } else if params::boolean(p.body, "all") == Some(true) {
        Scope::All
    } else {
        return Err(Refusal::new(
            Code::InvalidArgument,
            "zoneUuids, backupStorageUuids must have at least one be none-empty list, or all is set to true",
        ));
    };
    Ok(Plan::Read {
        call: p.call,
        read: Box::new(move |txn, caller| reply(txn, caller, &scope)),
    })
}
