//! What the host family does for other families' flows (`registry::serve`):
//!
//! - `host.allocate`: place a VM and reserve its CPU and memory in ONE apply. The placement
//!   runs on the committed state at the entry's place in the log, so it is never stale and
//!   cannot lose a race (the interactive `AllocateHostResource` places on a read view and
//!   re-checks at apply instead). Deterministic on every replica: the tie-break seed comes from
//!   the VM's uuid. Idempotent per VM: a reservation already held is answered again.
//! - `host.release`: give a VM's reservation back (absent: nothing changes).

use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use scheduler::request::PlacementRequest;
use scheduler::strategy::AllocatorStrategy;

use super::model::Host;
use super::placement::allocation_error;
use super::placement::StateView;
use super::reservation;
use crate::registry::service_input;
use crate::registry::service_output;
use crate::resource;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// Service name: place and reserve.
pub const ALLOCATE: &str = "host.allocate";
/// Service name: release.
pub const RELEASE: &str = "host.release";

/// `host.allocate`'s input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Allocate {
    /// The VM (the reservation's uuid).
    vm_uuid: String,
    cpu_num: u64,
    memory_size: u64,
    /// Virtual size of a root volume to create (create); absent when it exists.
    root_volume_size: Option<u64>,
    primary_storage_uuid: Option<String>,
    image_uuid: Option<String>,
    #[serde(default)]
    l3_network_uuids: Vec<String>,
    zone_uuid: Option<String>,
    cluster_uuid: Option<String>,
    host_uuid: Option<String>,
    #[serde(default)]
    excluded_host_uuids: Vec<String>,
    /// LocalStorage: the host holding the root volume.
    root_volume_host_uuid: Option<String>,
    last_host_uuid: Option<String>,
    /// The offering's `allocatorStrategy` (default: ZStack's default strategy).
    strategy: Option<String>,
}

/// `host.allocate`'s output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Allocated {
    host_uuid: String,
    cluster_uuid: String,
    zone_uuid: String,
    management_ip: String,
    /// Where a new root volume goes (absent when none is created).
    primary_storage_uuid: Option<String>,
}

fn allocated(h: &Host, primary_storage_uuid: Option<String>) -> Allocated {
    Allocated {
        host_uuid: h.uuid.clone(),
        cluster_uuid: h.cluster_uuid.clone(),
        zone_uuid: h.zone_uuid.clone(),
        management_ip: h.management_ip.clone(),
        primary_storage_uuid,
    }
}

fn to_i64(f: &str, v: u64) -> Result<i64, ApiError> {
    i64::try_from(v).map_err(|_| validate::invalid_arg(format!("{f} {v} is out of range")))
}

pub(super) fn allocate(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    input: &Value,
) -> Result<Value, ApiError> {
    let a: Allocate = service_input(ALLOCATE, input)?;
    validate::uuid("vmUuid", &a.vm_uuid)?;
    if let Some(r) = reservation::get(txn, &a.vm_uuid)? {
        let (_, h) = resource::require::<Host>(txn, &r.host_uuid)?;
        return service_output(ALLOCATE, &allocated(&h, a.primary_storage_uuid));
    }
    let mut req = PlacementRequest::new(
        a.vm_uuid.clone(),
        to_i64("cpuNum", a.cpu_num)?,
        to_i64("memorySize", a.memory_size)?,
    )
    .map_err(|e| allocation_error(scheduler::AllocationError::BadRequest(e)))?;
    req.root_volume_size = a.root_volume_size;
    req.primary_storage_uuid = a.primary_storage_uuid;
    req.image_uuid = a.image_uuid;
    req.l3_network_uuids = a.l3_network_uuids;
    req.zone_uuid = a.zone_uuid;
    req.cluster_uuid = a.cluster_uuid;
    req.host_uuid = a.host_uuid;
    req.excluded_host_uuids = a.excluded_host_uuids;
    req.root_volume_host_uuid = a.root_volume_host_uuid;
    req.last_host_uuid = a.last_host_uuid;
    if let Some(s) = &a.strategy {
        req.strategy = AllocatorStrategy::parse(s, None, None)
            .map_err(|e| allocation_error(scheduler::AllocationError::BadRequest(e)))?;
    }
    req.seed = scheduler::strategy::mix(scheduler::strategy::rotation(&a.vm_uuid));
    let placed = {
        let view = StateView::load(&*txn)?;
        scheduler::allocate_scan(&view, &req).map_err(allocation_error)?
    };
    let h = reservation::reserve(
        txn,
        ctx,
        &a.vm_uuid,
        &placed.host_uuid,
        placed.charge.cpu,
        placed.charge.requested_memory,
    )?;
    let ps = placed.volume.map(|v| v.primary_storage_uuid);
    service_output(ALLOCATE, &allocated(&h, ps))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Release {
    vm_uuid: String,
}

pub(super) fn release(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    input: &Value,
) -> Result<Value, ApiError> {
    let r: Release = service_input(RELEASE, input)?;
    let released = reservation::release(txn, ctx, &r.vm_uuid)?.is_some();
    Ok(serde_json::json!({ "released": released }))
}
