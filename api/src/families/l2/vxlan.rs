//! VXLAN pools' VNI ranges and the VXLAN networks drawn from them (spec 04 §2.1, §4.3). A VXLAN
//! network is never attached to a cluster itself: it follows its pool's attachment.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde::Serialize;

use super::model::new_record;
use super::model::L2Common;
use super::model::L2Kind;
use super::model::L2Network;
use crate::params;
use crate::resource;
use crate::resource::relations;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The VNI-range table.
pub const VNI_TABLE: &str = "vni_range";
/// The kind name of VNI ranges.
pub const VNI_KIND: &str = "VniRange";
/// Highest usable VNI (16 777 215 and 16 777 216 are reserved, spec 04 §2.1).
pub const MAX_VNI: u32 = 16_777_214;

/// A VNI range of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VniRange {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// First VNI.
    pub start_vni: u32,
    /// Last VNI (inclusive).
    pub end_vni: u32,
    /// The pool.
    pub l2_network_uuid: String,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

fn check_vni(field: &str, v: i64) -> Result<u32, ApiError> {
    u32::try_from(v)
        .ok()
        .filter(|v| (1..=MAX_VNI).contains(v))
        .ok_or_else(|| {
            validate::invalid_arg(format!(
                "field[{field}] must be in range of [1, {MAX_VNI}], got {v}"
            ))
        })
}

/// `startVni`..=`endVni` as sent, checked on its own (not yet against the pool).
pub(super) fn check_range(start_vni: i64, end_vni: i64) -> Result<(u32, u32), ApiError> {
    let s = check_vni("startVni", start_vni)?;
    let e = check_vni("endVni", end_vni)?;
    if s > e {
        return Err(validate::invalid_arg(format!(
            "startVni[{s}] must not be greater than endVni[{e}]"
        )));
    }
    Ok((s, e))
}

/// The pool `uuid` names (`SYS.1007` for an L2 of another type).
fn require_pool(txn: &dyn StateTxn, uuid: &str) -> Result<L2Network, ApiError> {
    let (_, pool) = resource::require::<L2Network>(txn, uuid)?;
    if !pool.is_pool() {
        return Err(validate::invalid_arg(format!(
            "L2 network[uuid:{uuid}] is not a VxlanNetworkPool"
        )));
    }
    Ok(pool)
}

/// Every VXLAN network of a pool.
fn networks_of(txn: &dyn StateTxn, pool_uuid: &str) -> Result<Vec<(String, L2Network)>, ApiError> {
    resource::find::<L2Network>(txn, "poolUuid", pool_uuid)
}

/// `CreateVniRange`: ranges of one pool never overlap.
pub(super) fn add_range(
    txn: &mut dyn StateTxn,
    caller: &Caller,
    r: VniRange,
) -> Result<VniRange, ApiError> {
    require_pool(txn, &r.l2_network_uuid)?;
    let (s, e) = (r.start_vni, r.end_vni);
    for (_, o) in resource::find::<VniRange>(txn, "l2NetworkUuid", &r.l2_network_uuid)? {
        if s <= o.end_vni && o.start_vni <= e {
            return Err(validate::invalid_arg(format!(
                "vni range[{s}, {e}] overlaps range[uuid:{}, {}-{}] of the pool",
                o.uuid, o.start_vni, o.end_vni
            )));
        }
    }
    resource::refuse_duplicate::<VniRange>(txn, &r.uuid)?;
    resource::save(txn, &caller.account_uuid, &r)?;
    Ok(r)
}

/// `DeleteVniRange`: refused while a VXLAN network uses one of its VNIs.
pub(super) fn delete_range(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
) -> Result<(), ApiError> {
    let Some((_, r)) = resource::load::<VniRange>(txn, uuid)? else {
        return Ok(());
    };
    for (_, v) in networks_of(txn, &r.l2_network_uuid)? {
        if let Some((vni, _)) = v
            .vxlan()
            .filter(|(vni, _)| (r.start_vni..=r.end_vni).contains(vni))
        {
            return Err(validate::op_failure(format!(
                "vni range[uuid:{uuid}] is in use: VxlanNetwork[uuid:{}] has vni {vni}",
                v.uuid
            )));
        }
    }
    relations::delete(txn, ctx, VNI_KIND, uuid)?;
    Ok(())
}

/// Pick the VNI for a new VXLAN network: the requested one (in a range, unused), or a free one
/// starting at a point derived from the new network's uuid (deterministic "random", spec 04
/// §6.7: no RNG inside apply).
fn pick_vni(
    txn: &dyn StateTxn,
    pool_uuid: &str,
    requested: Option<i64>,
    seed: &str,
) -> Result<u32, ApiError> {
    let mut ranges: Vec<(u32, u32)> = resource::find::<VniRange>(txn, "l2NetworkUuid", pool_uuid)?
        .into_iter()
        .map(|(_, r)| (r.start_vni, r.end_vni))
        .collect();
    ranges.sort();
    let used: BTreeSet<u32> = networks_of(txn, pool_uuid)?
        .iter()
        .filter_map(|(_, l)| l.vxlan().map(|(vni, _)| vni))
        .collect();
    if let Some(v) = requested {
        let v = check_vni("vni", v)?;
        if !ranges.iter().any(|(s, e)| (*s..=*e).contains(&v)) {
            return Err(validate::invalid_arg(format!(
                "vni[{v}] is not in any VNI range of pool[uuid:{pool_uuid}]"
            )));
        }
        if used.contains(&v) {
            return Err(validate::invalid_arg(format!(
                "vni[{v}] is already used in pool[uuid:{pool_uuid}]"
            )));
        }
        return Ok(v);
    }
    let exhausted = || validate::op_failure(format!("no available vni in pool[uuid:{pool_uuid}]"));
    let total: u64 = ranges.iter().map(|(s, e)| u64::from(e - s) + 1).sum();
    if total == 0 || used.len() as u64 >= total {
        return Err(exhausted());
    }
    let start = u64::from_str_radix(&params::derive_uuid(seed, 0)[..15], 16).unwrap_or(0) % total;
    // Walk the concatenated ranges from `start`, wrapping once.
    let nth = |mut i: u64| -> u32 {
        for (s, e) in &ranges {
            let n = u64::from(e - s) + 1;
            if i < n {
                return s + i as u32;
            }
            i -= n;
        }
        ranges[0].0
    };
    (0..total)
        .map(|k| nth((start + k) % total))
        .find(|v| !used.contains(v))
        .ok_or_else(exhausted)
}

/// `CreateL2VxlanNetwork`: normal accounts create VXLAN networks from the admin's pool
/// (spec 05); the network lives in the pool's zone and is attached where the pool is.
pub(super) fn create_vxlan(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    mut common: L2Common,
    pool_uuid: &str,
    vni: Option<i64>,
) -> Result<L2Network, ApiError> {
    let pool = require_pool(txn, pool_uuid)?;
    if let Some(z) = common.zone_uuid.as_deref().filter(|z| *z != pool.zone_uuid) {
        return Err(validate::invalid_arg(format!(
            "zone[uuid:{z}] differs from the zone[uuid:{}] of pool[uuid:{pool_uuid}]",
            pool.zone_uuid
        )));
    }
    if common.physical_interface.is_none() {
        common.physical_interface = pool.physical_interface.clone();
    }
    let vni = pick_vni(txn, pool_uuid, vni, &common.uuid)?;
    let kind = L2Kind::Vxlan {
        vni,
        pool_uuid: pool_uuid.to_string(),
    };
    let mut l2 = new_record(txn, ctx, common, kind, pool.zone_uuid.clone())?;
    l2.attached_cluster_uuids = pool.attached_cluster_uuids;
    resource::save(txn, &caller.account_uuid, &l2)?;
    Ok(l2)
}

/// After a pool's attachment changed: its VXLAN networks take the same clusters.
pub(super) fn follow_pool(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    pool: &L2Network,
) -> Result<(), ApiError> {
    if !pool.is_pool() {
        return Ok(());
    }
    for (owner, mut v) in networks_of(txn, &pool.uuid)? {
        v.attached_cluster_uuids = pool.attached_cluster_uuids.clone();
        v.last_op_date = ctx.proposed_at_ms;
        resource::save(txn, &owner, &v)?;
    }
    Ok(())
}
