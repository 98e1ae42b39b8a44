//! Placement over the replicated state: the scheduler's [`PlacementView`] read from a state
//! transaction, and the calls that place or report capacity (`AllocateHostResource`,
//! `GetCpuMemoryCapacity`, `GetHostAllocatorStrategies`).
//!
//! Any node computes a placement on its own (barrier-fresh) state; the reservation it proposes
//! is re-checked at apply (`reservation.rs`), so a placement computed on a view that another
//! commit has overtaken loses cleanly and is computed again (`Plan::PlaceThenPropose`).
//!
//! Other families' records are read through their indexed fields (`resource::lookup`) or
//! their declared inventories (`resource::inventory_of`), never their types. Affinity groups
//! are not mapped yet: their membership needs VMs (issue 20), so no request names one.

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

fn host_view(h: &Host, reserved_memory: u64) -> sv::HostView {
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
        capacity: reservation::capacity_of(h, reserved_memory),
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
        let reserved = reservation::ReservedMemory::new(txn, &cfg)?;
        let mut order = Vec::new();
        let mut hosts = HashMap::new();
        for (_, h) in resource::list::<Host>(txn)? {
            order.push(h.uuid.clone());
            let view = host_view(&h, reserved.of(&h));
            hosts.insert(h.uuid.clone(), view);
        }
        Ok(StateView {
            txn,
            cfg,
            order,
            hosts,
        })
    }
}

impl StateView<'_> {
    /// Another family's record as its inventory (the kinds placement reads declare one).
    fn inventory(&self, kind: &'static str, uuid: &str) -> Option<Value> {
        resource::inventory_of(self.txn, kind, uuid).ok().flatten()
    }
}

fn strings_of(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(str::to_string).collect()
}

fn json_strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A primary storage's inventory as placement sees it; `None` for a type it does not place on.
fn ps_view(v: &Value) -> Option<sv::PrimaryStorageView> {
    let n = |f: &str| v[f].as_u64().unwrap_or(0);
    Some(sv::PrimaryStorageView {
        uuid: v["uuid"].as_str()?.to_string(),
        ps_type: match v["type"].as_str()? {
            "LocalStorage" => sv::PsType::LocalStorage,
            "NFS" => sv::PsType::Nfs,
            "SharedMountPoint" => sv::PsType::SharedMountPoint,
            _ => return None,
        },
        enabled: v["state"] == "Enabled",
        connected: v["status"] == "Connected",
        capacity: PsCapacity {
            total: n("totalCapacity"),
            available: n("availableCapacity"),
            total_physical: n("totalPhysicalCapacity"),
            available_physical: n("availablePhysicalCapacity"),
        },
        attached_cluster_uuids: json_strings(&v["attachedClusterUuids"]),
    })
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
    fn cluster_primary_storages(&self, cluster_uuid: &str) -> Vec<sv::PrimaryStorageView> {
        resource::refs_where(
            self.txn,
            "PrimaryStorage",
            "attachedClusterUuids",
            cluster_uuid,
        )
        .unwrap_or_default()
        .iter()
        .filter_map(|r| self.primary_storage(&r.uuid))
        .collect()
    }
    fn primary_storage(&self, uuid: &str) -> Option<sv::PrimaryStorageView> {
        ps_view(&self.inventory("PrimaryStorage", uuid)?)
    }
    fn local_storage_host_capacity(&self, ps: &str, host: &str) -> Option<PsCapacity> {
        let c = resource::local_storage::get(self.txn, ps, host).ok()??;
        Some(PsCapacity {
            total: c.total_capacity,
            available: c.available_capacity,
            total_physical: c.total_physical_capacity,
            available_physical: c.available_physical_capacity,
        })
    }
    fn l3_network(&self, uuid: &str) -> Option<sv::L3View> {
        let r = resource::lookup(self.txn, "L3Network", uuid).ok()??;
        Some(sv::L3View {
            uuid: r.uuid.clone(),
            l2_network_uuid: r.field("l2NetworkUuid")?.to_string(),
        })
    }
    fn l2_network(&self, uuid: &str) -> Option<sv::L2View> {
        let r = resource::lookup(self.txn, "L2Network", uuid).ok()??;
        Some(sv::L2View {
            uuid: r.uuid.clone(),
            attached_cluster_uuids: strings_of(r.values("attachedClusterUuids")),
        })
    }
    fn image(&self, uuid: &str) -> Option<sv::ImageView> {
        let v = self.inventory("Image", uuid)?;
        let refs = v["backupStorageRefs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Some(sv::ImageView {
            uuid: uuid.to_string(),
            backup_storage_uuids: refs
                .iter()
                .filter(|r| r["status"] == "Ready")
                .filter_map(|r| r["backupStorageUuid"].as_str().map(str::to_string))
                .collect(),
        })
    }
    fn backup_storage(&self, uuid: &str) -> Option<sv::BackupStorageView> {
        let v = self.inventory("BackupStorage", uuid)?;
        Some(sv::BackupStorageView {
            uuid: uuid.to_string(),
            usable: v["state"] == "Enabled" && v["status"] == "Connected",
            attached_zone_uuids: json_strings(&v["attachedZoneUuids"]),
        })
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
    let reserved_of = reservation::ReservedMemory::new(txn, &cfg)?;
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
        reserved = reserved.saturating_add(reserved_of.of(&h));
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

/// What a VM-creation dry run asks, as sent (resolved against the state when it is read).
#[derive(Debug, Clone)]
struct VmAsk {
    instance_offering: Option<String>,
    cpu_num: Option<String>,
    memory_size: Option<i64>,
    image: String,
    l3s: Vec<String>,
    root_disk_offering: Option<String>,
    root_disk_size: Option<i64>,
    data_disk_offerings: Vec<String>,
    zone: Option<String>,
    cluster: Option<String>,
}

impl VmAsk {
    fn of(p: &PlanInput) -> Result<VmAsk, Refusal> {
        let list = |f: &str| -> Result<Vec<String>, Refusal> {
            Ok(params::strings(p.body, f, p.call)?.unwrap_or_default())
        };
        let l3s = list("l3NetworkUuids")?;
        if l3s.is_empty() {
            return Err(refusal(
                Code::InvalidArgument,
                "l3NetworkUuids must name at least one L3 network",
            ));
        }
        Ok(VmAsk {
            instance_offering: p.string("instanceOfferingUuid"),
            cpu_num: p.string("cpuNum"),
            memory_size: params::int(p.body, "memorySize", p.call)?,
            image: p.required("imageUuid")?,
            l3s,
            root_disk_offering: p.string("rootDiskOfferingUuid"),
            root_disk_size: params::int(p.body, "rootDiskSize", p.call)?,
            data_disk_offerings: list("dataDiskOfferingUuids")?,
            zone: p.string("zoneUuid"),
            cluster: p.string("clusterUuid"),
        })
    }
}

fn required_inventory(view: &StateView, kind: &'static str, uuid: &str) -> Result<Value, ApiError> {
    view.inventory(kind, uuid)
        .ok_or_else(|| resource::not_found_kind(kind, uuid))
}

fn disk_size(view: &StateView, offering: &str) -> Result<u64, ApiError> {
    let v = required_inventory(view, "DiskOffering", offering)?;
    v["diskSize"]
        .as_u64()
        .filter(|s| *s > 0)
        .ok_or_else(|| validate::invalid_arg(format!("disk offering {offering} has no size")))
}

/// The placement request of a VM about to be created, resolved against the state: sizes from
/// the instance offering (or `cpuNum`/`memorySize`), the root volume from the image (a
/// template's size, or for an ISO the root disk offering or `rootDiskSize`), the networks,
/// the scope and the offering's strategy.
fn vm_request(view: &StateView, ask: &VmAsk) -> Result<PlacementRequest, ApiError> {
    let bad = |e: scheduler::BadRequest| allocation_error(AllocationError::BadRequest(e));
    let (cpu, memory, strategy) = match &ask.instance_offering {
        Some(o) => {
            let v = required_inventory(view, "InstanceOffering", o)?;
            let strategy = v["allocatorStrategy"]
                .as_str()
                .map(|s| scheduler::AllocatorStrategy::parse(s, None, None));
            (
                v["cpuNum"].as_i64().unwrap_or(0),
                v["memorySize"].as_i64().unwrap_or(0),
                strategy.transpose().map_err(bad)?,
            )
        }
        None => {
            let cpu = match &ask.cpu_num {
                Some(c) => c.trim().parse::<i64>().map_err(|_| {
                    validate::invalid_arg(format!("field[cpuNum] must be an integer, got {c:?}"))
                })?,
                None => {
                    return Err(validate::invalid_arg(
                        "instanceOfferingUuid, or cpuNum and memorySize, must be given",
                    ))
                }
            };
            (cpu, ask.memory_size.unwrap_or(0), None)
        }
    };
    let mut req = PlacementRequest::new(String::new(), cpu, memory).map_err(bad)?;
    if let Some(s) = strategy {
        req.strategy = s;
    }
    let image = required_inventory(view, "Image", &ask.image)?;
    if image["status"] != "Ready" {
        return Err(validate::op_failure(format!(
            "image {} is {}, not Ready",
            ask.image, image["status"]
        )));
    }
    let root = if image["mediaType"] == "ISO" {
        match (&ask.root_disk_offering, ask.root_disk_size) {
            (Some(o), _) => disk_size(view, o)?,
            (None, Some(size)) => scheduler::request::root_volume_size(size).map_err(bad)?,
            (None, None) => {
                return Err(validate::invalid_arg(format!(
                    "image {} is an ISO: rootDiskOfferingUuid or rootDiskSize must be given",
                    ask.image
                )))
            }
        }
    } else {
        image["size"].as_u64().unwrap_or(0).max(1)
    };
    req.root_volume_size = Some(root);
    req.image_uuid = Some(ask.image.clone());
    for l3 in &ask.l3s {
        if view.l3_network(l3).is_none() {
            return Err(resource::not_found_kind("L3Network", l3));
        }
    }
    req.l3_network_uuids = ask.l3s.clone();
    req.zone_uuid = ask.zone.clone();
    req.cluster_uuid = ask.cluster.clone();
    req.seed = seed(&ask.image, 0);
    Ok(req)
}

/// Per candidate cluster, the primary storages that could hold a volume of `size` for one of
/// its candidate hosts (LocalStorage: on that host's disk).
fn storages_by_cluster(
    view: &StateView,
    hosts: &[sv::HostView],
    size: u64,
) -> Vec<(String, Vec<sv::PrimaryStorageView>)> {
    let cfg = view.config();
    let mut out: Vec<(String, Vec<sv::PrimaryStorageView>)> = Vec::new();
    for h in hosts {
        let k = match out.iter().position(|(c, _)| *c == h.cluster_uuid) {
            Some(k) => k,
            None => {
                out.push((h.cluster_uuid.clone(), Vec::new()));
                out.len() - 1
            }
        };
        for ps in view.cluster_primary_storages(&h.cluster_uuid) {
            if !ps.enabled || !ps.connected || out[k].1.iter().any(|p| p.uuid == ps.uuid) {
                continue;
            }
            let cap = if ps.ps_type == sv::PsType::LocalStorage {
                view.local_storage_host_capacity(&ps.uuid, &h.uuid)
            } else {
                Some(ps.capacity)
            };
            if cap.is_some_and(|c| scheduler::capacity::ps_fits(c, size, &cfg).is_ok()) {
                out[k].1.push(ps);
            }
        }
    }
    out
}

fn inventories(view: &StateView, kind: &'static str, uuids: &[String]) -> Vec<Value> {
    uuids
        .iter()
        .filter_map(|u| view.inventory(kind, u))
        .collect()
}

/// The candidate hosts of a creation dry run, best first, and the root volume's size.
fn dry_run(view: &StateView, ask: &VmAsk) -> Result<(Vec<sv::HostView>, u64), ApiError> {
    let req = vm_request(view, ask)?;
    let root = req.root_volume_size.unwrap_or(0);
    let hosts = scheduler::candidates(view, &req).map_err(allocation_error)?;
    Ok((hosts, root))
}

fn unique(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn candidate_hosts_reply(
    txn: &dyn StateTxn,
    caller: &Caller,
    ask: &VmAsk,
) -> Result<Map<String, Value>, ApiError> {
    caller.require_admin("host")?;
    let view = StateView::load(txn)?;
    let (hosts, root) = dry_run(&view, ask)?;
    let host_uuids: Vec<String> = hosts.iter().map(|h| h.uuid.clone()).collect();
    let clusters = unique(hosts.iter().map(|h| h.cluster_uuid.clone()));
    let zones = unique(hosts.iter().map(|h| h.zone_uuid.clone()));
    let mut ps_map = Map::new();
    for (cluster, pss) in storages_by_cluster(&view, &hosts, root) {
        ps_map.insert(
            cluster,
            Value::Array(pss.into_iter().map(|p| json!(p.uuid)).collect()),
        );
    }
    Ok(resource::object(json!({
        "zones": inventories(&view, "Zone", &zones),
        "clusters": inventories(&view, "Cluster", &clusters),
        "hosts": inventories(&view, "Host", &host_uuids),
        "clusterPsMap": ps_map,
    })))
}

fn candidate_storages_reply(
    txn: &dyn StateTxn,
    caller: &Caller,
    ask: &VmAsk,
) -> Result<Map<String, Value>, ApiError> {
    caller.require_admin("primary storage")?;
    let view = StateView::load(txn)?;
    let (hosts, root) = dry_run(&view, ask)?;
    let roots = unique(
        storages_by_cluster(&view, &hosts, root)
            .into_iter()
            .flat_map(|(_, pss)| pss.into_iter().map(|p| p.uuid)),
    );
    let mut data = Map::new();
    for offering in &ask.data_disk_offerings {
        let size = disk_size(&view, offering)?;
        let fit = unique(
            storages_by_cluster(&view, &hosts, size)
                .into_iter()
                .flat_map(|(_, pss)| pss.into_iter().map(|p| p.uuid)),
        );
        data.insert(
            offering.clone(),
            Value::Array(inventories(&view, "PrimaryStorage", &fit)),
        );
    }
    Ok(resource::object(json!({
        "rootVolumePrimaryStorages": inventories(&view, "PrimaryStorage", &roots),
        "dataVolumePrimaryStorages": data,
    })))
}

/// `GetCandidateZonesClustersHostsForCreatingVm`: the allocator's chain run without choosing —
/// every host a VM of this offering, image and networks could start on, their clusters and
/// zones, and per cluster the primary storages that could hold its root volume. Nothing is
/// reserved; when no host survives, the allocator's error names the filter.
pub(super) fn candidate_hosts(p: &PlanInput) -> Result<Plan, Refusal> {
    let ask = VmAsk::of(p)?;
    Ok(Plan::Read {
        call: p.call,
        read: Box::new(move |txn, caller| candidate_hosts_reply(txn, caller, &ask)),
    })
}

/// `GetCandidatePrimaryStoragesForCreatingVm`: the storages that could hold the root volume
/// (on a candidate host) and, per data disk offering, those that could hold that disk.
pub(super) fn candidate_storages(p: &PlanInput) -> Result<Plan, Refusal> {
    let ask = VmAsk::of(p)?;
    Ok(Plan::Read {
        call: p.call,
        read: Box::new(move |txn, caller| candidate_storages_reply(txn, caller, &ask)),
    })
}
