//! Placement over the replicated state: the scheduler's [`PlacementView`] read from a state
//! transaction, and the calls that place or report capacity (`AllocateHostResource`,
//! `GetCpuMemoryCapacity`, `GetHostAllocatorStrategies`).
//!
//! Any node computes a placement on its own (barrier-fresh) state; the reservation it proposes
//! is re-checked at apply (`reservation.rs`), so a placement computed on a view that another
//! commit has overtaken loses cleanly and is computed again (`Plan::PlaceThenPropose`).
//!
//! What this view does not map yet says so by returning nothing: primary storage, networks,
//! images and affinity groups come with the VM calls that name them; placements made here
//! name none of them, so the filters that read them do not apply.

use std::collections::HashMap;

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use scheduler::capacity::PsCapacity;
use scheduler::config::AllocatorConfig;
use scheduler::view as sv;
use scheduler::AllocationError;
use scheduler::PlacementRequest;
use scheduler::PlacementView;

use super::model::Host;
use super::model::HostOp;
use super::model::HostState;
use super::model::HostStatus;
use super::reservation;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::registry::IntoCommand;
use crate::resource;
use crate::validate;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::Caller;
use crate::StateTxn;

fn enable_state(v: Option<&str>) -> sv::EnableState {
    if v == Some("Enabled") {
        sv::EnableState::Enabled
    } else {
        sv::EnableState::Disabled
    }
}

fn host_view(h: &Host, cfg: &AllocatorConfig) -> sv::HostView {
    sv::HostView {
        uuid: h.uuid.clone(),
        zone_uuid: h.zone_uuid.clone(),
        cluster_uuid: h.cluster_uuid.clone(),
        state: match h.state {
            HostState::Enabled => sv::HostState::Enabled,
            HostState::Disabled => sv::HostState::Disabled,
            HostState::PreMaintenance => sv::HostState::PreMaintenance,
            HostState::Maintenance => sv::HostState::Maintenance,
        },
        status: match h.status {
            HostStatus::Connecting => sv::HostStatus::Connecting,
            HostStatus::Connected => sv::HostStatus::Connected,
            HostStatus::Disconnected => sv::HostStatus::Disconnected,
        },
        capacity: reservation::capacity_of(h, cfg),
        allocated: reservation::allocated_of(h),
        vm_count: h.reservation_count,
    }
}

/// The scheduler's view of one state transaction. Hosts are decoded once per placement (the
/// pipeline looks at each several times); clusters and zones are read on demand through their
/// indexed fields, so this family imports neither.
pub struct StateView<'a> {
    txn: &'a dyn StateTxn,
    cfg: AllocatorConfig,
    order: Vec<String>,
    hosts: HashMap<String, sv::HostView>,
}

impl<'a> StateView<'a> {
    /// Read the hosts and the allocator settings.
    pub fn load(txn: &'a dyn StateTxn) -> Result<StateView<'a>, ApiError> {
        let cfg = reservation::allocator_config(txn)?;
        let mut order = Vec::new();
        let mut hosts = HashMap::new();
        for (_, h) in resource::list::<Host>(txn)? {
            order.push(h.uuid.clone());
            hosts.insert(h.uuid.clone(), host_view(&h, &cfg));
        }
        Ok(StateView {
            txn,
            cfg,
            order,
            hosts,
        })
    }
}

impl PlacementView for StateView<'_> {
    fn config(&self) -> AllocatorConfig {
        self.cfg
    }
    fn host_uuids(&self) -> Vec<String> {
        self.order.clone()
    }
    fn host(&self, uuid: &str) -> Option<sv::HostView> {
        self.hosts.get(uuid).cloned()
    }
    fn cluster(&self, uuid: &str) -> Option<sv::ClusterView> {
        let r = resource::lookup(self.txn, "Cluster", uuid).ok()??;
        Some(sv::ClusterView {
            uuid: r.uuid.clone(),
            zone_uuid: r.field("zoneUuid").unwrap_or_default().to_string(),
            state: enable_state(r.field("state")),
        })
    }
    fn zone(&self, uuid: &str) -> Option<sv::ZoneView> {
        let r = resource::lookup(self.txn, "Zone", uuid).ok()??;
        Some(sv::ZoneView {
            uuid: r.uuid.clone(),
            state: enable_state(r.field("state")),
        })
    }
    fn cluster_primary_storages(&self, _cluster_uuid: &str) -> Vec<sv::PrimaryStorageView> {
        Vec::new()
    }
    fn primary_storage(&self, _uuid: &str) -> Option<sv::PrimaryStorageView> {
        None
    }
    fn local_storage_host_capacity(&self, _ps: &str, _host: &str) -> Option<PsCapacity> {
        None
    }
    fn l3_network(&self, _uuid: &str) -> Option<sv::L3View> {
        None
    }
    fn l2_network(&self, _uuid: &str) -> Option<sv::L2View> {
        None
    }
    fn image(&self, _uuid: &str) -> Option<sv::ImageView> {
        None
    }
    fn backup_storage(&self, _uuid: &str) -> Option<sv::BackupStorageView> {
        None
    }
    fn affinity_group(&self, _uuid: &str) -> Option<sv::AffinityGroupView> {
        None
    }
    fn vm_host(&self, vm_uuid: &str) -> Option<String> {
        reservation::get(self.txn, vm_uuid)
            .ok()
            .flatten()
            .map(|r| r.host_uuid)
    }
    fn host_usage(&self, _host_uuid: &str) -> sv::HostUsage {
        // Agents report no usage samples yet: the usage strategies see "no data" (soft mode
        // falls back to random among fitting hosts, hard mode refuses).
        sv::HostUsage::default()
    }
}

/// The wire error of a placement that found no host or was asked something impossible.
pub fn allocation_error(e: AllocationError) -> ApiError {
    match e {
        AllocationError::BadRequest(b) => validate::invalid_arg(b.to_string()),
        AllocationError::NoHost(n) => reservation::no_capacity(n.to_string()),
    }
}

fn refusal(code: Code, details: impl Into<String>) -> Refusal {
    Refusal::new(code, details)
}

/// A positive integer from the wire, which ZStack sends as a string (`vcpu`) or a number.
fn positive(p: &PlanInput, f: &str) -> Result<i64, Refusal> {
    let v = match p.body.get(f) {
        Some(Value::String(s)) => s.trim().parse::<i64>().map_err(|_| {
            refusal(
                Code::InvalidArgument,
                format!("field[{f}] must be an integer, got {s:?}"),
            )
        })?,
        Some(_) => params::int(p.body, f, p.call)?.unwrap_or(0),
        None => 0,
    };
    Ok(v)
}

/// Seed of a placement's tie-break: from the reservation and the attempt, so a replayed
/// request is repeatable and a retry after a lost race may choose differently.
fn seed(uuid: &str, attempt: u32) -> u64 {
    scheduler::strategy::mix(scheduler::strategy::rotation(uuid) ^ u64::from(attempt))
}

/// `AllocateHostResource{uuid, strategy, scene, vcpu, memSize}`: reserve `vcpu` vCPUs and
/// `memSize` bytes. `uuid` names the host (ZStack's meaning: a designated host); a cluster or
/// zone uuid lets the host allocator choose inside it. The reservation's uuid is the call's
/// `resourceUuid`, else its `X-Job-UUID`, else a fresh one; the answer's `inventory` is the
/// host it landed on, with its capacity after the reservation.
pub(super) fn allocate(p: &PlanInput) -> Result<Plan, Refusal> {
    let target = p.required("uuid")?;
    let cpu = positive(p, "vcpu")?;
    let memory = positive(p, "memSize")?;
    // Sizes are checked here, before anything is read or proposed.
    scheduler::request::vm_spec(cpu, memory)
        .map_err(|e| refusal(Code::InvalidArgument, e.to_string()))?;
    let named = p.string("resourceUuid");
    let caller = p.caller.clone();
    Ok(Plan::PlaceThenPropose {
        call: p.call,
        place: Box::new(move |txn, request_uuid, attempt| {
            caller.require_admin("host")?;
            let uuid = named.clone().unwrap_or_else(|| request_uuid.to_string());
            let mut req = PlacementRequest::new(uuid.clone(), cpu, memory)
                .map_err(|e| allocation_error(AllocationError::BadRequest(e)))?;
            req.seed = seed(&uuid, attempt);
            if resource::load::<Host>(txn, &target)?.is_some() {
                req.host_uuid = Some(target.clone());
            } else if resource::lookup(txn, "Cluster", &target)?.is_some() {
                req.cluster_uuid = Some(target.clone());
            } else if resource::lookup(txn, "Zone", &target)?.is_some() {
                req.zone_uuid = Some(target.clone());
            } else {
                return Err(resource::not_found_kind("Host", &target));
            }
            // A retry of a reservation already made answers it again, wherever it landed.
            if let Some(r) = reservation::get(txn, &uuid)? {
                return Ok(HostOp::Reserve {
                    uuid: uuid.clone(),
                    host_uuid: r.host_uuid,
                    cpu_num: r.cpu_num,
                    memory_size: r.memory_size,
                }
                .command(caller.clone()));
            }
            let view = StateView::load(txn)?;
            let placed = scheduler::allocate_scan(&view, &req).map_err(allocation_error)?;
            Ok(HostOp::Reserve {
                uuid: uuid.clone(),
                host_uuid: placed.host_uuid,
                cpu_num: placed.charge.cpu,
                memory_size: placed.charge.requested_memory,
            }
            .command(caller.clone()))
        }),
    })
}

/// Which hosts a capacity read covers.
enum Scope {
    Hosts(Vec<String>),
    Clusters(Vec<String>),
    Zones(Vec<String>),
    All,
}

fn hosts_in(txn: &dyn StateTxn, scope: &Scope) -> Result<Vec<Host>, ApiError> {
    let mut out: Vec<Host> = Vec::new();
    let mut keep = |h: Host| {
        if !out.iter().any(|o| o.uuid == h.uuid) {
            out.push(h);
        }
    };
    match scope {
        Scope::Hosts(uuids) => {
            for u in uuids {
                keep(resource::require::<Host>(txn, u)?.1);
            }
        }
        Scope::Clusters(uuids) => {
            for c in uuids {
                resource::require_ref(txn, "Cluster", c)?;
                for (_, h) in resource::find::<Host>(txn, "clusterUuid", c)? {
                    keep(h);
                }
            }
        }
        Scope::Zones(uuids) => {
            for z in uuids {
                resource::require_ref(txn, "Zone", z)?;
                for (_, h) in resource::find::<Host>(txn, "zoneUuid", z)? {
                    keep(h);
                }
            }
        }
        Scope::All => {
            for (_, h) in resource::list::<Host>(txn)? {
                keep(h);
            }
        }
    }
    Ok(out)
}

/// Spec 03 §11: the sums over the Enabled and Connected hosts in scope only (a disabled or
/// disconnected host vanishes from the totals), then the hosts' reserved memory subtracted
/// from the available memory, floored at zero.
fn capacity_reply(
    txn: &dyn StateTxn,
    caller: &Caller,
    scope: &Scope,
) -> Result<Map<String, Value>, ApiError> {
    caller.require_admin("host")?;
    let cfg = reservation::allocator_config(txn)?;
    let (mut total_cpu, mut avail_cpu, mut total_mem, mut avail_mem, mut reserved, mut threads) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for h in hosts_in(txn, scope)? {
        if h.state != HostState::Enabled || h.status != HostStatus::Connected {
            continue;
        }
        total_cpu = total_cpu.saturating_add(h.total_cpu_capacity);
        avail_cpu = avail_cpu.saturating_add(h.available_cpu_capacity);
        total_mem = total_mem.saturating_add(h.total_memory_capacity);
        avail_mem = avail_mem.saturating_add(h.available_memory_capacity);
        reserved = reserved.saturating_add(cfg.kvm_reserved_memory);
        threads = threads.saturating_add(h.cpu_num);
    }
    Ok(resource::object(json!({
        "totalCpu": total_cpu,
        "availableCpu": avail_cpu,
        "totalMemory": total_mem,
        "availableMemory": avail_mem.saturating_sub(reserved),
        "managedCpuNum": threads,
    })))
}

/// `GetCpuMemoryCapacity{hostUuids | clusterUuids | zoneUuids | all}`, the first non-empty
/// list in that order, as ZStack reads them.
pub(super) fn cpu_memory_capacity(p: &PlanInput) -> Result<Plan, Refusal> {
    let list = |f: &str| -> Result<Vec<String>, Refusal> {
        Ok(params::strings(p.body, f, p.call)?.unwrap_or_default())
    };
    let (hosts, clusters, zones) = (
        list("hostUuids")?,
        list("clusterUuids")?,
        list("zoneUuids")?,
    );
    if let Some(t) = p.string("hypervisorType") {
        if t != super::model::KVM {
            return Err(refusal(
                Code::InvalidArgument,
                format!("hypervisorType[{t}] is not managed by this build (KVM only)"),
            ));
        }
    }
    let all = matches!(p.body.get("all"), Some(Value::Bool(true)))
        || p.string("all")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let scope = if !hosts.is_empty() {
        Scope::Hosts(hosts)
    } else if !clusters.is_empty() {
        Scope::Clusters(clusters)
    } else if !zones.is_empty() {
        Scope::Zones(zones)
    } else if all {
        Scope::All
    } else {
        return Err(refusal(
            Code::InvalidArgument,
            "zoneUuids, clusterUuids, hostUuids must have at least one be none-empty list, or all is set to true",
        ));
    };
    Ok(Plan::Read {
        call: p.call,
        read: Box::new(move |txn, caller| capacity_reply(txn, caller, &scope)),
    })
}

/// `GetHostAllocatorStrategies`: the strategies this allocator implements, by ZStack name.
pub(super) fn allocator_strategies(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(Plan::Read {
        call: p.call,
        read: Box::new(|_, caller| {
            caller.require_admin("host")?;
            Ok(resource::object(json!({
                "hostAllocatorStrategies": scheduler::strategy::STRATEGY_NAMES,
            })))
        }),
    })
}
