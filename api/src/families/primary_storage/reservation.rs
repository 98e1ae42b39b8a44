//! Virtual capacity of a primary storage (spec 03 §9: `availableCapacity = totalCapacity −
//! Σ round(volume.size / psRatio) − systemUsedCapacity`): the ledger of what each volume took,
//! and the services other families' flows reserve and release it through.
//!
//! - `primary_storage.reserve`: take a volume's virtual size (deflated by
//!   `mevoco/overProvisioning.primaryStorage`) from its storage, and on LocalStorage from the
//!   host's share. Keyed by the volume: the same reservation applied again (a retried step, a
//!   re-proposal after a leader change) changes nothing, and a new size for a volume that
//!   already holds one takes or gives back the difference (a resize). The check runs on the
//!   committed figures at the entry's place in the log, so two flows racing for the last bytes
//!   cannot both get them. `exact` records a size the agent already made (the file's real
//!   virtual size) without refusing: the bytes are in use whatever the ledger says.
//! - `primary_storage.release`: give a volume's reservation back (absent: nothing changes).
//!
//! Each reservation keeps the bytes it charged, so its release gives back exactly that,
//! whatever the ratio is by then. The sums per storage and per (storage, host) are kept next
//! to the records, so an agent's re-measurement (which replaces the physical figures) derives
//! the virtual ones without scanning every volume.

use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use scheduler::capacity::ps_fits;
use scheduler::capacity::PsCapacity;
use scheduler::config::AllocatorConfig;

use super::model::PrimaryStorage;
use super::model::PsType;
use crate::registry::service_input;
use crate::registry::service_output;
use crate::resource;
use crate::resource::generic;
use crate::resource::local_storage;
use crate::resource::local_storage::LocalHostCapacity;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateError;
use crate::StateTxn;

/// Service name: reserve (or resize a reservation).
pub const RESERVE: &str = "primary_storage.reserve";
/// Service name: release.
pub const RELEASE: &str = "primary_storage.release";

/// The ledger: `v/<volume>` → [`VolumeReservation`]; `p/<ps>` → bytes charged on the storage;
/// `h/<ps>/<host>` → bytes charged on a LocalStorage host's share.
pub const TABLE: &str = "ps_volume_reservation";

/// What one volume holds on its storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeReservation {
    /// The volume.
    pub volume_uuid: String,
    /// Its storage.
    pub primary_storage_uuid: String,
    /// LocalStorage: the host whose disk holds it.
    pub host_uuid: Option<String>,
    /// Virtual size as asked, bytes.
    pub size: u64,
    /// Bytes taken from `availableCapacity` (the size deflated by the ratio of its time).
    pub charged: u64,
}

fn volume_key(uuid: &str) -> Vec<u8> {
    format!("v/{uuid}").into_bytes()
}

fn ps_key(ps: &str) -> Vec<u8> {
    format!("p/{ps}").into_bytes()
}

fn host_key(ps: &str, host: &str) -> Vec<u8> {
    format!("h/{ps}/{host}").into_bytes()
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::Corrupt {
        what: format!("{TABLE}/{key}"),
        detail: e.to_string(),
    }
}

/// A volume's reservation, if it holds one.
pub fn get(txn: &dyn StateTxn, volume_uuid: &str) -> Result<Option<VolumeReservation>, ApiError> {
    match txn.get(TABLE, &volume_key(volume_uuid))? {
        None => Ok(None),
        Some(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| corrupt(volume_uuid, e)),
    }
}

fn sum(txn: &dyn StateTxn, key: &[u8]) -> Result<u64, ApiError> {
    match txn.get(TABLE, key)? {
        None => Ok(0),
        Some(raw) => {
            serde_json::from_slice(&raw).map_err(|e| corrupt(&String::from_utf8_lossy(key), e))
        }
    }
}

fn put_sum(txn: &mut dyn StateTxn, key: &[u8], v: u64) -> Result<(), ApiError> {
    if v == 0 {
        txn.delete(TABLE, key)?;
    } else {
        txn.put(TABLE, key, v.to_string().into_bytes())?;
    }
    Ok(())
}

/// Bytes the volumes hold on a storage.
pub fn reserved_on(txn: &dyn StateTxn, ps: &str) -> Result<u64, ApiError> {
    sum(txn, &ps_key(ps))
}

/// Bytes the volumes hold on a LocalStorage host's share.
pub fn reserved_on_host(txn: &dyn StateTxn, ps: &str, host: &str) -> Result<u64, ApiError> {
    sum(txn, &host_key(ps, host))
}

/// A measured host share with the volumes' bytes taken from its virtual figure.
pub fn virtual_share(
    txn: &dyn StateTxn,
    ps: &str,
    mut h: LocalHostCapacity,
) -> Result<LocalHostCapacity, ApiError> {
    h.available_capacity = h
        .available_physical_capacity
        .min(h.total_capacity)
        .saturating_sub(reserved_on_host(txn, ps, &h.host_uuid)?);
    Ok(h)
}

/// Drop the sums of a storage being deleted (its volumes, and so their records, are gone).
pub fn forget_storage(txn: &mut dyn StateTxn, ps: &str) -> Result<(), ApiError> {
    txn.delete(TABLE, &ps_key(ps))?;
    let prefix = format!("h/{ps}/").into_bytes();
    for (k, _) in txn.scan_prefix(TABLE, &prefix, usize::MAX)? {
        txn.delete(TABLE, &k)?;
    }
    Ok(())
}

/// The placement settings at this point of the log (the host family reads the same ones).
fn allocator_config(txn: &dyn StateTxn) -> Result<AllocatorConfig, ApiError> {
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

/// `primary_storage.reserve`'s input.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Reserve {
    volume_uuid: String,
    primary_storage_uuid: String,
    /// LocalStorage: the host whose disk holds the volume (ignored on shared storage).
    host_uuid: Option<String>,
    /// The volume's virtual size, bytes.
    size: u64,
    /// Record `size` without the capacity check (the file exists at that size already).
    #[serde(default)]
    exact: bool,
}

fn short_of_capacity(ps: &str, host: Option<&str>, why: impl std::fmt::Display) -> ApiError {
    let on = match host {
        Some(h) => format!("the local storage of host[uuid:{h}] of primary storage[uuid:{ps}]"),
        None => format!("the primary storage[uuid:{ps}]"),
    };
    validate::op_failure(format!(
        "cannot reserve capacity on {on}, it's short of available capacity: {why}"
    ))
}

/// Charge `grow` more virtual bytes if every figure in `caps` takes them, returning the
/// deflated bytes.
fn charge_of(
    cfg: &AllocatorConfig,
    caps: &[(Option<&str>, PsCapacity)],
    ps: &str,
    grow: u64,
) -> Result<u64, ApiError> {
    let cost = cfg.primary_storage_over_provisioning.deflate(grow);
    if grow == 0 {
        return Ok(cost);
    }
    for (host, cap) in caps {
        ps_fits(*cap, grow, cfg).map_err(|why| short_of_capacity(ps, *host, why))?;
    }
    Ok(cost)
}

/// Move `delta` charged bytes (positive: taken) on the storage's record, its sums and, on
/// LocalStorage, the host's share.
fn account(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    ps: &str,
    host: Option<&str>,
    take: u64,
    give: u64,
) -> Result<(), ApiError> {
    let on_ps = reserved_on(txn, ps)?
        .saturating_add(take)
        .saturating_sub(give);
    put_sum(txn, &ps_key(ps), on_ps)?;
    if let Some(h) = host {
        let on_host = reserved_on_host(txn, ps, h)?
            .saturating_add(take)
            .saturating_sub(give);
        put_sum(txn, &host_key(ps, h), on_host)?;
        if let Some(share) = local_storage::get(txn, ps, h)? {
            let share = virtual_share(txn, ps, share)?;
            local_storage::put(txn, ps, &share)?;
        }
    }
    let shares = match host {
        Some(_) => Some(local_storage::of_storage(txn, ps)?),
        None => None,
    };
    generic::modify(txn, ctx, ps, |_, p: &mut PrimaryStorage| {
        p.available_capacity = virtual_available(p, on_ps, shares.as_deref());
        Ok(())
    })?;
    Ok(())
}

/// A storage's virtual free bytes: the measured free space less what the volumes hold; on
/// LocalStorage the sum of the hosts' shares (a host that stopped answering takes its
/// volumes' bytes out with its own figures); a report without shares is taken as a whole.
pub fn virtual_available(
    p: &PrimaryStorage,
    reserved: u64,
    shares: Option<&[LocalHostCapacity]>,
) -> u64 {
    match shares {
        Some(s) if p.ps_type == PsType::LocalStorage && !s.is_empty() => s
            .iter()
            .fold(0u64, |a, h| a.saturating_add(h.available_capacity)),
        _ => p
            .available_physical_capacity
            .min(p.total_capacity)
            .saturating_sub(reserved),
    }
}

pub(super) fn reserve(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    input: &Value,
) -> Result<Value, ApiError> {
    let r: Reserve = service_input(RESERVE, input)?;
    validate::uuid("volumeUuid", &r.volume_uuid)?;
    let (_, p) = resource::require::<PrimaryStorage>(txn, &r.primary_storage_uuid)?;
    let host = match p.ps_type {
        PsType::LocalStorage => Some(r.host_uuid.clone().ok_or_else(|| {
            validate::invalid_arg(format!(
                "primary storage[uuid:{}] is LocalStorage: a volume's capacity is reserved on one host",
                p.uuid
            ))
        })?),
        PsType::Nfs | PsType::SharedMountPoint => None,
    };
    let existing = get(txn, &r.volume_uuid)?;
    if let Some(e) = &existing {
        if e.primary_storage_uuid != p.uuid || e.host_uuid != host {
            return Err(validate::op_failure(format!(
                "volume[uuid:{}] already holds capacity on primary storage[uuid:{}]; release it first",
                e.volume_uuid, e.primary_storage_uuid
            )));
        }
        if e.size == r.size {
            return service_output(RESERVE, e);
        }
    }
    let cfg = allocator_config(txn)?;
    let (old_size, old_charged) = existing.as_ref().map_or((0, 0), |e| (e.size, e.charged));
    let charged = if r.exact {
        let cost = |size| cfg.primary_storage_over_provisioning.deflate(size);
        if r.size >= old_size {
            old_charged.saturating_add(cost(r.size - old_size))
        } else {
            old_charged.saturating_sub(cost(old_size - r.size))
        }
    } else if r.size >= old_size {
        let mut caps = vec![(
            None,
            PsCapacity {
                total: p.total_capacity,
                available: p.available_capacity,
                total_physical: p.total_physical_capacity,
                available_physical: p.available_physical_capacity,
            },
        )];
        if let Some(h) = &host {
            let share = local_storage::get(txn, &p.uuid, h)?.ok_or_else(|| {
                short_of_capacity(&p.uuid, Some(h), "the host has not reported its disk")
            })?;
            caps.push((
                Some(h.as_str()),
                PsCapacity {
                    total: share.total_capacity,
                    available: share.available_capacity,
                    total_physical: share.total_physical_capacity,
                    available_physical: share.available_physical_capacity,
                },
            ));
        }
        let grow = charge_of(&cfg, &caps, &p.uuid, r.size - old_size)?;
        old_charged.saturating_add(grow)
    } else {
        old_charged.saturating_sub(
            cfg.primary_storage_over_provisioning
                .deflate(old_size - r.size),
        )
    };
    let (take, give) = (
        charged.saturating_sub(old_charged),
        old_charged.saturating_sub(charged),
    );
    account(txn, ctx, &p.uuid, host.as_deref(), take, give)?;
    let out = VolumeReservation {
        volume_uuid: r.volume_uuid.clone(),
        primary_storage_uuid: p.uuid.clone(),
        host_uuid: host,
        size: r.size,
        charged,
    };
    let raw = serde_json::to_vec(&out).map_err(|e| corrupt(&r.volume_uuid, e))?;
    txn.put(TABLE, &volume_key(&r.volume_uuid), raw)?;
    service_output(RESERVE, &out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Release {
    volume_uuid: String,
}

pub(super) fn release(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    input: &Value,
) -> Result<Value, ApiError> {
    let r: Release = service_input(RELEASE, input)?;
    let Some(held) = get(txn, &r.volume_uuid)? else {
        return Ok(serde_json::json!({ "released": false }));
    };
    txn.delete(TABLE, &volume_key(&r.volume_uuid))?;
    // A storage deleted under its volumes' reservations has nothing left to give back to.
    if resource::load::<PrimaryStorage>(txn, &held.primary_storage_uuid)?.is_some() {
        account(
            txn,
            ctx,
            &held.primary_storage_uuid,
            held.host_uuid.as_deref(),
            0,
            held.charged,
        )?;
    }
    Ok(serde_json::json!({ "released": true }))
}
