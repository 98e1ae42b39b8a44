//! The committed side of placement: the ledger of what each reservation took from its host,
//! and the apply that re-checks a placement against the committed counters (spec 03 §11.2).
//!
//! A placement is computed on some node's view of the state, which may be behind; the only
//! place two placements are ordered is the log. So the apply of `Reserve` runs
//! [`scheduler::fits`] on the host's committed `allocated_*` counters with the global config
//! at that log position, and refuses with `HOST_ALLOCATION.1000` when the host is full: two
//! nodes racing for the last slot of a host can never both get it.
//!
//! Each reservation keeps the charge it took (memory already deflated by the ratio of its
//! time), so its release gives back exactly that, whatever the ratios are by then, and only
//! once: the record is deleted in the same apply that returns the capacity.

use serde::Deserialize;
use serde::Serialize;

use scheduler::capacity::Allocated;
use scheduler::capacity::Charge;
use scheduler::capacity::HostCapacity;
use scheduler::capacity::Limits;
use scheduler::capacity::VmSpec;
use scheduler::config::AllocatorConfig;

use super::model::Host;
use super::model::HostState;
use super::model::HostStatus;
use crate::resource;
use crate::resource::generic;
use crate::validate;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::StateError;
use crate::StateTxn;

/// The ledger table: `r/<reservation uuid>` → [`HostReservation`], `h/<host>/<reservation>` →
/// empty (what a host holds, for its deletion and the allocation read).
pub const RESERVATION_TABLE: &str = "host_reservation";

/// One reservation as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostReservation {
    /// The reservation (a VM's uuid when a VM flow reserves).
    pub uuid: String,
    /// Where.
    pub host_uuid: String,
    /// vCPUs taken.
    pub cpu_num: u64,
    /// Memory as asked, bytes.
    pub memory_size: u64,
    /// Memory taken from the host's counters (deflated by the ratio in force then), bytes.
    pub memory_charged: u64,
    /// When, ms.
    pub create_date: u64,
}

impl HostReservation {
    fn charge(&self) -> Charge {
        Charge {
            cpu: self.cpu_num,
            memory: self.memory_charged,
            requested_memory: self.memory_size,
        }
    }

    /// As a reply renders it.
    pub fn inventory(&self) -> serde_json::Value {
        serde_json::json!({
            "uuid": self.uuid,
            "hostUuid": self.host_uuid,
            "cpuNum": self.cpu_num,
            "memorySize": self.memory_size,
            "createDate": resource::date(self.create_date),
        })
    }
}

fn record_key(uuid: &str) -> Vec<u8> {
    format!("r/{uuid}").into_bytes()
}

fn host_prefix(host_uuid: &str) -> Vec<u8> {
    format!("h/{host_uuid}/").into_bytes()
}

fn host_key(host_uuid: &str, uuid: &str) -> Vec<u8> {
    format!("h/{host_uuid}/{uuid}").into_bytes()
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Corrupt {
        what: format!("{RESERVATION_TABLE}/{key}"),
        detail: e.to_string(),
    }
}

/// A reservation, if committed.
pub fn get(txn: &dyn StateTxn, uuid: &str) -> Result<Option<HostReservation>, ApiError> {
    match txn.get(RESERVATION_TABLE, &record_key(uuid))? {
        None => Ok(None),
        Some(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| corrupt(uuid, e)),
    }
}

/// The reservations on a host, in uuid order.
pub fn on_host(txn: &dyn StateTxn, host_uuid: &str) -> Result<Vec<HostReservation>, ApiError> {
    let prefix = host_prefix(host_uuid);
    let mut out = Vec::new();
    for (k, _) in txn.scan_prefix(RESERVATION_TABLE, &prefix, usize::MAX)? {
        let uuid = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        match get(txn, &uuid)? {
            Some(r) => out.push(r),
            None => return Err(corrupt(&uuid, "host index names a missing reservation")),
        }
    }
    Ok(out)
}

/// The allocator's settings at this point of the log. A value the allocator cannot read is
/// refused by the settings' own validators before it is stored, so a failure here is corrupt
/// state, not bad input.
pub fn allocator_config(txn: &dyn StateTxn) -> Result<AllocatorConfig, ApiError> {
    let err: std::cell::RefCell<Option<StateError>> = std::cell::RefCell::new(None);
    let lookup = |category: &str, name: &str| -> Option<String> {
        match txn.get(
            crate::settings::TABLE,
            &crate::settings::key(category, name),
        ) {
            Ok(v) => v.map(|b| String::from_utf8_lossy(&b).into_owned()),
            Err(e) => {
                *err.borrow_mut() = Some(e);
                None
            }
        }
    };
    let cfg = AllocatorConfig::from_settings(lookup).map_err(|e| ApiError::Corrupt {
        what: "global config".into(),
        detail: e.to_string(),
    });
    if let Some(e) = err.into_inner() {
        return Err(ApiError::State(e));
    }
    cfg
}

/// Where a host's reserved memory is looked up, with the levels switched on (spec 03 §11:
/// host tag `reservedMemory::{size}` → cluster tag `host::reservedMemory::{size}` → zone tag
/// → `kvm/reservedMemory`; each level off with `hostAllocator/reservedCapacity.*Level`).
/// The tags are read once, by prefix, so asking for every host of a placement costs no more
/// reads than asking for one.
pub struct ReservedMemory {
    default: u64,
    hosts: std::collections::HashMap<String, u64>,
    scopes: std::collections::HashMap<String, u64>,
    cluster_level: bool,
    zone_level: bool,
}

fn level_on(txn: &dyn StateTxn, name: &str) -> Result<bool, ApiError> {
    Ok(crate::settings::value(txn, "hostAllocator", name)? != "false")
}

/// Tagged resource → size, for the tags `prefix{size}`. A size that does not parse is not a
/// reservation: the lookup goes on to the next level rather than refusing the host.
fn tagged_sizes(
    txn: &dyn StateTxn,
    prefix: &str,
) -> Result<std::collections::HashMap<String, u64>, ApiError> {
    let mut out = std::collections::HashMap::new();
    for (uuid, text) in resource::tags::with_prefix(txn, true, prefix)? {
        if let Some(v) = text
            .strip_prefix(prefix)
            .and_then(crate::settings::parse_size)
        {
            out.entry(uuid).or_insert(v);
        }
    }
    Ok(out)
}

impl ReservedMemory {
    /// The levels and tags in force at this point of the log.
    pub fn new(txn: &dyn StateTxn, cfg: &AllocatorConfig) -> Result<ReservedMemory, ApiError> {
        let hosts = if level_on(txn, "reservedCapacity.hostLevel")? {
            tagged_sizes(txn, "reservedMemory::")?
        } else {
            Default::default()
        };
        let cluster_level = level_on(txn, "reservedCapacity.clusterLevel")?;
        let zone_level = level_on(txn, "reservedCapacity.zoneLevel")?;
        let scopes = if cluster_level || zone_level {
            tagged_sizes(txn, "host::reservedMemory::")?
        } else {
            Default::default()
        };
        Ok(ReservedMemory {
            default: cfg.kvm_reserved_memory,
            hosts,
            scopes,
            cluster_level,
            zone_level,
        })
    }

    /// The memory kept free on `h`, bytes.
    pub fn of(&self, h: &Host) -> u64 {
        let scoped = |on: bool, uuid: &str| on.then(|| self.scopes.get(uuid).copied()).flatten();
        self.hosts
            .get(&h.uuid)
            .copied()
            .or_else(|| scoped(self.cluster_level, &h.cluster_uuid))
            .or_else(|| scoped(self.zone_level, &h.zone_uuid))
            .unwrap_or(self.default)
    }
}

/// What a host offers to placement: the agent's figures and its reserved memory.
pub fn capacity_of(h: &Host, reserved_memory: u64) -> HostCapacity {
    HostCapacity {
        cpu_threads: h.cpu_num,
        total_memory: h.total_memory_capacity,
        reserved_memory,
    }
}

/// What the host's reservations hold.
pub fn allocated_of(h: &Host) -> Allocated {
    Allocated {
        cpu: h.allocated_cpu,
        memory: h.allocated_memory,
    }
}

/// `available* = total* − allocated*`, as ZStack's host capacity shows it (reserved memory is
/// not subtracted here; `GetCpuMemoryCapacity` subtracts it).
pub(super) fn refresh_available(h: &mut Host) {
    h.available_cpu_capacity = h.total_cpu_capacity.saturating_sub(h.allocated_cpu);
    h.available_memory_capacity = h.total_memory_capacity.saturating_sub(h.allocated_memory);
}

/// The capacity refusal, worded like the scheduler's filter errors.
pub fn no_capacity(details: String) -> ApiError {
    ApiError::Refused(Refusal::new(Code::NoAvailableHost, details))
}

/// Why a host takes no new reservation in its state, if it does not.
pub fn unusable(h: &Host) -> Option<String> {
    if h.state != HostState::Enabled {
        return Some(format!("host {} is {:?}, not Enabled", h.uuid, h.state));
    }
    if h.status != HostStatus::Connected {
        return Some(format!("host {} is {:?}, not Connected", h.uuid, h.status));
    }
    None
}

pub(super) fn reserve(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    host_uuid: &str,
    cpu_num: u64,
    memory_size: u64,
) -> Result<Host, ApiError> {
    validate::uuid("uuid", uuid)?;
    if cpu_num == 0 || memory_size == 0 {
        return Err(validate::invalid_arg(format!(
            "a reservation takes at least one vCPU and one byte of memory, got {cpu_num} vCPUs and {memory_size} bytes"
        )));
    }
    if let Some(existing) = get(txn, uuid)? {
        // The same proposal applied again (a client retry, a re-proposal after a leader
        // change): answer what it took the first time.
        if existing.host_uuid == host_uuid
            && existing.cpu_num == cpu_num
            && existing.memory_size == memory_size
        {
            return Ok(resource::require::<Host>(txn, host_uuid)?.1);
        }
        return Err(validate::op_failure(format!(
            "reservation {uuid} already holds {} vCPUs and {} bytes on host {}; release it first",
            existing.cpu_num, existing.memory_size, existing.host_uuid
        )));
    }
    let cfg = allocator_config(txn)?;
    let spec = VmSpec {
        cpu_num,
        memory_size,
    };
    let charge = Charge::of(spec, &cfg);
    let reserved = ReservedMemory::new(txn, &cfg)?;
    let h = generic::modify(txn, ctx, host_uuid, |_, h: &mut Host| {
        if let Some(why) = unusable(h) {
            return Err(no_capacity(why));
        }
        let limits = Limits::of(capacity_of(h, reserved.of(h)), &cfg);
        let mut allocated = allocated_of(h);
        // SEEDED BUG (test builds only): take without the committed re-check.
        #[cfg(feature = "seeded-bugs")]
        if seeded::OVERBOOK.load(std::sync::atomic::Ordering::Relaxed) {
            allocated.cpu = allocated.cpu.saturating_add(charge.cpu);
            allocated.memory = allocated.memory.saturating_add(charge.memory);
        } else {
            allocated
                .take(limits, charge)
                .map_err(|short| no_capacity(format!("host {}: {short}", h.uuid)))?;
        }
        #[cfg(not(feature = "seeded-bugs"))]
        allocated
            .take(limits, charge)
            .map_err(|short| no_capacity(format!("host {}: {short}", h.uuid)))?;
        h.allocated_cpu = allocated.cpu;
        h.allocated_memory = allocated.memory;
        h.reservation_count = h.reservation_count.saturating_add(1);
        refresh_available(h);
        Ok(())
    })?;
    let r = HostReservation {
        uuid: uuid.to_string(),
        host_uuid: host_uuid.to_string(),
        cpu_num,
        memory_size,
        memory_charged: charge.memory,
        create_date: ctx.proposed_at_ms,
    };
    let raw = serde_json::to_vec(&r).map_err(|e| corrupt(uuid, e))?;
    txn.put(RESERVATION_TABLE, &record_key(uuid), raw)?;
    txn.put(RESERVATION_TABLE, &host_key(host_uuid, uuid), Vec::new())?;
    Ok(h)
}

/// Give a reservation back; `None` when there was none (already released, never made).
pub(super) fn release(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
) -> Result<Option<Host>, ApiError> {
    let Some(r) = get(txn, uuid)? else {
        return Ok(None);
    };
    let h = generic::modify(txn, ctx, &r.host_uuid, |_, h: &mut Host| {
        let mut allocated = allocated_of(h);
        allocated
            .give_back(r.charge())
            .map_err(|e| ApiError::Corrupt {
                what: format!("host/{}", h.uuid),
                detail: format!("reservation {uuid}: {e}"),
            })?;
        h.allocated_cpu = allocated.cpu;
        h.allocated_memory = allocated.memory;
        h.reservation_count = h.reservation_count.saturating_sub(1);
        refresh_available(h);
        Ok(())
    })?;
    txn.delete(RESERVATION_TABLE, &record_key(uuid))?;
    txn.delete(RESERVATION_TABLE, &host_key(&r.host_uuid, uuid))?;
    Ok(Some(h))
}

/// Move a reservation to another uuid, charge and host unchanged (a migration's reservation
/// on its destination becomes the VM's once the VM runs there). Absent `from` with `to`
/// present is a repeat and changes nothing; both absent is `None`.
pub(super) fn rename(
    txn: &mut dyn StateTxn,
    from: &str,
    to: &str,
) -> Result<Option<HostReservation>, ApiError> {
    let Some(mut r) = get(txn, from)? else {
        return get(txn, to);
    };
    if let Some(existing) = get(txn, to)? {
        return Err(validate::op_failure(format!(
            "reservation {to} already holds {} vCPUs and {} bytes on host {}; release it first",
            existing.cpu_num, existing.memory_size, existing.host_uuid
        )));
    }
    txn.delete(RESERVATION_TABLE, &record_key(from))?;
    txn.delete(RESERVATION_TABLE, &host_key(&r.host_uuid, from))?;
    r.uuid = to.to_string();
    let raw = serde_json::to_vec(&r).map_err(|e| corrupt(to, e))?;
    txn.put(RESERVATION_TABLE, &record_key(to), raw)?;
    txn.put(RESERVATION_TABLE, &host_key(&r.host_uuid, to), Vec::new())?;
    Ok(Some(r))
}

/// Drop the ledger of a host being deleted.
pub(super) fn forget_host(txn: &mut dyn StateTxn, host_uuid: &str) -> Result<(), ApiError> {
    for r in on_host(txn, host_uuid)? {
        txn.delete(RESERVATION_TABLE, &record_key(&r.uuid))?;
        txn.delete(RESERVATION_TABLE, &host_key(host_uuid, &r.uuid))?;
    }
    Ok(())
}

/// DELIBERATE BUG switch for the checkers' self-tests (`zsnode-seeded` only).
#[cfg(feature = "seeded-bugs")]
pub mod seeded {
    /// When set, a reservation is taken without re-checking the host's free capacity, so
    /// placements computed concurrently on stale views overbook.
    pub static OVERBOOK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
}
