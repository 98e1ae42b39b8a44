//! `GetPrimaryStorageCapacity`: the sums of the capacity the storages' hosts last reported
//! (committed by the storage tracker or a reconnect), over the storages named, those attached
//! to the clusters named, those of the zones named, or every one (`all`), in that order of
//! precedence as ZStack reads them. Admin only, as every primary-storage call.

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use super::model::PrimaryStorage;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::Caller;
use crate::StateTxn;

/// Which storages a request names.
enum Scope {
    Storages(Vec<String>),
    Clusters(Vec<String>),
    Zones(Vec<String>),
    All,
}

/// The storages in scope, each once (a storage attached to two of the clusters named is
/// counted once, where ZStack's join would count it twice); every uuid named must exist.
fn in_scope(txn: &dyn StateTxn, scope: &Scope) -> Result<Vec<PrimaryStorage>, ApiError> {
    let mut out: Vec<PrimaryStorage> = Vec::new();
    let mut keep = |p: PrimaryStorage| {
        if !out.iter().any(|q| q.uuid == p.uuid) {
            out.push(p);
        }
    };
    match scope {
        Scope::Storages(uuids) => {
            for u in uuids {
                keep(resource::require::<PrimaryStorage>(txn, u)?.1);
            }
        }
        Scope::Clusters(uuids) => {
            for c in uuids {
                resource::require_ref(txn, "Cluster", c)?;
                for (_, p) in resource::find::<PrimaryStorage>(txn, "attachedClusterUuids", c)? {
                    keep(p);
                }
            }
        }
        Scope::Zones(uuids) => {
            for z in uuids {
                resource::require_ref(txn, "Zone", z)?;
                for (_, p) in resource::find::<PrimaryStorage>(txn, "zoneUuid", z)? {
                    keep(p);
                }
            }
        }
        Scope::All => {
            for (_, p) in resource::list::<PrimaryStorage>(txn)? {
                keep(p);
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
    caller.require_admin("primary storage")?;
    let (mut t, mut a, mut pt, mut pa) = (0u64, 0u64, 0u64, 0u64);
    for p in in_scope(txn, scope)? {
        t = t.saturating_add(p.total_capacity);
        a = a.saturating_add(p.available_capacity);
        pt = pt.saturating_add(p.total_physical_capacity);
        pa = pa.saturating_add(p.available_physical_capacity);
    }
    Ok(resource::object(json!({
        "totalCapacity": t,
        "availableCapacity": a,
        "totalPhysicalCapacity": pt,
        "availablePhysicalCapacity": pa,
    })))
}

/// `GetPrimaryStorageCapacity`.
pub(super) fn capacity(p: &PlanInput) -> Result<Plan, Refusal> {
    let list = |f: &str| -> Result<Vec<String>, Refusal> {
        Ok(params::strings(p.body, f, p.call)?.unwrap_or_default())
    };
    let (storages, clusters, zones) = (
        list("primaryStorageUuids")?,
        list("clusterUuids")?,
        list("zoneUuids")?,
    );
    let scope = if !storages.is_empty() {
        Scope::Storages(storages)
    } else if !clusters.is_empty() {
        Scope::Clusters(clusters)
    } else if !zones.is_empty() {
        Scope::Zones(zones)
    } else if params::boolean(p.body, "all") == Some(true) {
        Scope::All
    } else {
        return Err(Refusal::new(
            Code::InvalidArgument,
            "zoneUuids, clusterUuids, primaryStorageUuids must have at least one be none-empty list, or all is set to true",
        ));
    };
    Ok(Plan::Read {
        call: p.call,
        read: Box::new(move |txn, caller| reply(txn, caller, &scope)),
    })
}
