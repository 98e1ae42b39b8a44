//! IPAM (spec 04 §6): allocated addresses live in the `used_ip` table keyed
//! `<l3Uuid>/<ip as 8 hex digits>`, so a lookup is one read and an allocation scans only that
//! L3's used addresses, in address order.

use serde::Deserialize;
use serde::Serialize;

use super::model::IpRange;
use super::model::L3Network;
use crate::net::ip_str;
use crate::net::parse_ip;
use crate::resource;
use crate::validate;
use crate::wire::errors::Code;
use crate::ApiError;
use crate::ApplyCtx;
use crate::StateTxn;

/// The used-IP table (IPAM).
pub const USED_IP_TABLE: &str = "used_ip";

/// An allocated address (`UsedIpInventory`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedIp {
    /// 32 hex chars.
    pub uuid: String,
    /// The range it came from.
    pub ip_range_uuid: String,
    /// The L3.
    pub l3_network_uuid: String,
    /// The address.
    pub ip: u32,
    /// Prefix length of the subnet.
    pub prefix_len: u32,
    /// Gateway of the subnet.
    pub gateway: u32,
    /// Who uses it, e.g. `VmNic`, `DHCP`, `Vip`.
    pub used_for: String,
    /// The NIC, when a NIC uses it.
    pub vm_nic_uuid: Option<String>,
    /// Allocation time, ms.
    pub create_date: u64,
}

fn used_prefix(l3: &str) -> Vec<u8> {
    format!("{l3}/").into_bytes()
}

fn used_key(l3: &str, ip: u32) -> Vec<u8> {
    format!("{l3}/{ip:08x}").into_bytes()
}

fn corrupt(what: String, e: serde_json::Error) -> ApiError {
    ApiError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

/// Every used address of an L3, in address order.
pub fn used_ips(txn: &dyn StateTxn, l3: &str) -> Result<Vec<UsedIp>, ApiError> {
    txn.scan_prefix(USED_IP_TABLE, &used_prefix(l3), usize::MAX)?
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_slice(&v)
                .map_err(|e| corrupt(format!("used ip {}", String::from_utf8_lossy(&k)), e))
        })
        .collect()
}

/// The used addresses of an L3 alone, sorted.
pub(super) fn used_addresses(txn: &dyn StateTxn, l3: &str) -> Result<Vec<u32>, ApiError> {
    Ok(used_ips(txn, l3)?.into_iter().map(|u| u.ip).collect())
}

/// Whether `ip` is allocated on the L3.
pub(super) fn is_used(txn: &dyn StateTxn, l3: &str, ip: u32) -> Result<bool, ApiError> {
    Ok(txn.get(USED_IP_TABLE, &used_key(l3, ip))?.is_some())
}

/// Up to `limit` free addresses of `ranges` from `from` on, in address order, each with its
/// range (the walk `GetFreeIp` answers).
pub(super) fn free_from<'r>(
    mut ranges: Vec<&'r IpRange>,
    used_sorted: &[u32],
    from: u32,
    limit: usize,
) -> Vec<(&'r IpRange, u32)> {
    ranges.sort_by_key(|r| r.start_ip);
    let mut free = Vec::new();
    'ranges: for r in ranges {
        let first = u64::from(r.start_ip.max(from));
        let mut next_used = used_sorted.partition_point(|u| u64::from(*u) < first);
        for ip in first..=u64::from(r.end_ip) {
            if free.len() >= limit {
                break 'ranges;
            }
            let ip = ip as u32;
            if used_sorted.get(next_used) == Some(&ip) {
                next_used += 1;
                continue;
            }
            free.push((r, ip));
        }
    }
    free
}

/// Up to `limit` free addresses of an L3 in address order (for `GetFreeIp` and the UI's
/// "available IPs" hint), and the L3's (total, used) address counts (for `GetIpAddressCapacity`).
pub fn free_ips(
    txn: &dyn StateTxn,
    l3_uuid: &str,
    limit: usize,
) -> Result<(Vec<String>, u64, u64), ApiError> {
    let (_, l3) = resource::require::<L3Network>(txn, l3_uuid)?;
    let used = used_addresses(txn, l3_uuid)?;
    let total: u64 = l3
        .ip_ranges
        .iter()
        .map(|r| u64::from(r.end_ip - r.start_ip) + 1)
        .sum();
    let free = free_from(l3.ip_ranges.iter().collect(), &used, 0, limit)
        .into_iter()
        .map(|(_, ip)| ip_str(ip))
        .collect();
    Ok((free, total, used.len() as u64))
}

/// The lowest free address of `ranges` given the sorted used addresses (pure IPAM core).
pub fn lowest_free(ranges: &[IpRange], used_sorted: &[u32]) -> Option<(usize, u32)> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|i| ranges[*i].start_ip);
    for i in order {
        let r = &ranges[i];
        let mut cand = r.start_ip;
        let from = used_sorted.partition_point(|u| *u < r.start_ip);
        for u in &used_sorted[from..] {
            if *u > r.end_ip || *u > cand {
                break;
            }
            if *u == cand {
                if cand == r.end_ip {
                    cand = 0;
                    break;
                }
                cand += 1;
            }
        }
        if cand != 0 && r.contains(cand) {
            return Some((i, cand));
        }
    }
    None
}

fn ip_alloc_error(details: String) -> ApiError {
    validate::refuse(Code::IpAllocation, details)
}

/// The address to allocate on an L3 and its range: `required` when it is in a range and free,
/// else the lowest free one (`L3.1000` when there is none).
pub(super) fn pick(
    txn: &dyn StateTxn,
    l3_uuid: &str,
    required: Option<&str>,
) -> Result<(IpRange, u32), ApiError> {
    let (_, mut l3) = resource::require::<L3Network>(txn, l3_uuid)?;
    let (idx, ip) = match required {
        Some(s) => {
            let ip = parse_ip("staticIp", s)?;
            let idx = l3
                .ip_ranges
                .iter()
                .position(|r| r.contains(ip))
                .ok_or_else(|| {
                    ip_alloc_error(format!(
                        "IP[{s}] is not in any IP range of L3 network[uuid:{l3_uuid}]"
                    ))
                })?;
            if is_used(txn, l3_uuid, ip)? {
                return Err(ip_alloc_error(format!(
                    "IP[{s}] is already used in L3 network[uuid:{l3_uuid}]"
                )));
            }
            (idx, ip)
        }
        None => lowest_free(&l3.ip_ranges, &used_addresses(txn, l3_uuid)?).ok_or_else(|| {
            ip_alloc_error(format!("no available IP in L3 network[uuid:{l3_uuid}]"))
        })?,
    };
    Ok((l3.ip_ranges.swap_remove(idx), ip))
}

/// Write an allocation.
pub(super) fn record(txn: &mut dyn StateTxn, used: &UsedIp) -> Result<(), ApiError> {
    let raw = serde_json::to_vec(used).map_err(|e| corrupt("used ip".into(), e))?;
    txn.put(
        USED_IP_TABLE,
        &used_key(&used.l3_network_uuid, used.ip),
        raw,
    )?;
    Ok(())
}

/// Return an address to the pool (absent addresses are fine).
pub(super) fn release(txn: &mut dyn StateTxn, l3_uuid: &str, ip: &str) -> Result<(), ApiError> {
    let ip = parse_ip("ip", ip)?;
    txn.delete(USED_IP_TABLE, &used_key(l3_uuid, ip))?;
    Ok(())
}

/// Release everything allocated in a range that is being deleted; unless `enforcing`, refuse
/// while anything is.
pub(super) fn release_range(
    txn: &mut dyn StateTxn,
    r: &IpRange,
    enforcing: bool,
) -> Result<(), ApiError> {
    let in_range: Vec<u32> = used_addresses(txn, &r.l3_network_uuid)?
        .into_iter()
        .filter(|ip| r.contains(*ip))
        .collect();
    if let Some(first) = in_range.first().filter(|_| !enforcing) {
        return Err(validate::op_failure(format!(
            "ip range[uuid:{}] has {} allocated address(es), e.g. {}; release them first or delete with deleteMode=Enforcing",
            r.uuid,
            in_range.len(),
            ip_str(*first)
        )));
    }
    for ip in in_range {
        txn.delete(USED_IP_TABLE, &used_key(&r.l3_network_uuid, ip))?;
    }
    Ok(())
}

/// What an L3 leaves besides its record and ranges when deleted: its used addresses.
pub(super) fn forget_used_ips(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    uuid: &str,
) -> Result<(), ApiError> {
    for (k, _) in txn.scan_prefix(USED_IP_TABLE, &used_prefix(uuid), usize::MAX)? {
        txn.delete(USED_IP_TABLE, &k)?;
    }
    Ok(())
}
