//! What the host family does for other families' flows (`registry::serve`):
//!
//! - `host.allocate`: place a VM and reserve its CPU and memory in ONE apply. The placement
//!   runs on the committed state at the entry's place in the log, so it is never stale and
//!   cannot lose a race (the interactive `AllocateHostResource` places on a read view and
//!   re-checks at apply instead). Deterministic on every replica: the tie-break seed comes from
//!   the VM's uuid. Idempotent per VM: a reservation already held is answered again.
//! - `host.release`: give a VM's reservation back (absent: nothing changes).
//! - `host.candidates`: the hosts `host.allocate` could choose, best first, reserving nothing
//!   (read-only: migration candidates).
//! - `host.rename-reservation`: a reservation under another uuid (a migration's reservation on
//!   its destination becomes the VM's own once it runs there).

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
/// Service name: the hosts a placement could choose.
pub const CANDIDATES: &str = "host.candidates";
/// Service name: move a reservation to another uuid.
pub const RENAME_RESERVATION: &str = "host.rename-reservation";

/// `host.allocate`'s input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Allocate {
    /// The VM (the reservation's uuid unless `reservation_uuid` names another).
    vm_uuid: String,
    /// The reservation's uuid when it is not the VM's (a migration holds two at once).
    reservation_uuid: Option<String>,
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
    let reservation_uuid = a.reservation_uuid.clone().unwrap_or(a.vm_uuid.clone());
    if let Some(r) = reservation::get(txn, &reservation_uuid)? {
        let (_, h) = resource::require::<Host>(txn, &r.host_uuid)?;
        return service_output(ALLOCATE, &allocated(&h, a.primary_storage_uuid));
    }
    let req = request_of(a)?;
    let placed = {
        let view = StateView::load(&*txn)?;
        scheduler::allocate_scan(&view, &req).map_err(allocation_error)?
    };
    let h = reservation::reserve(
        txn,
        ctx,
        &reservation_uuid,
        &placed.host_uuid,
        placed.charge.cpu,
        placed.charge.requested_memory,
    )?;
    let ps = placed.volume.map(|v| v.primary_storage_uuid);
    service_output(ALLOCATE, &allocated(&h, ps))
}

fn request_of(a: Allocate) -> Result<PlacementRequest, ApiError> {
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
    Ok(req)
}

/// `host.candidates`: `host.allocate`'s input, answered `{"hosts": [inventory, ...]}`, best
/// first; empty when no host survives. Writes nothing.
pub(super) fn candidates(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    _caller: &Caller,
    input: &Value,
) -> Result<Value, ApiError> {
    let mut input = input.clone();
    // `strict`: no fitting host is the allocator's refusal (a call checking before it
    // commits anything), else an empty list, as ZStack's candidate calls answer it.
    let strict = match input.as_object_mut() {
        Some(m) => m
            .remove("strict")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        None => false,
    };
    let a: Allocate = service_input(CANDIDATES, &input)?;
    let req = request_of(a)?;
    let view = StateView::load(&*txn)?;
    let hosts = match scheduler::candidates(&view, &req) {
        Ok(h) => h,
        Err(scheduler::AllocationError::NoHost(_)) if !strict => Vec::new(),
        Err(e) => return Err(allocation_error(e)),
    };
    let mut out = Vec::new();
    for h in hosts {
        if let Some(inv) = resource::inventory_of(&*txn, super::KIND, &h.uuid)? {
            out.push(inv);
        }
    }
    Ok(serde_json::json!({ "hosts": out }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rename {
    from_uuid: String,
    to_uuid: String,
}

pub(super) fn rename_reservation(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    _caller: &Caller,
    input: &Value,
) -> Result<Value, ApiError> {
    let r: Rename = service_input(RENAME_RESERVATION, input)?;
    validate::uuid("toUuid", &r.to_uuid)?;
    let moved = reservation::rename(txn, &r.from_uuid, &r.to_uuid)?;
    Ok(serde_json::json!({ "hostUuid": moved.map(|m| m.host_uuid) }))
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
