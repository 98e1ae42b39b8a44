//! IP ranges (spec 04 §2.5): the rules a range obeys on its own (rules 1–6: one subnet, the
//! gateway outside the range but inside the subnet, no network, broadcast, multicast or
//! link-local address), against its neighbours (rules 7–8: one subnet and gateway per L3, no
//! overlap on one L2), and the range lifecycle.

use super::ipam;
use super::model::load_visible;
use super::model::IpRange;
use super::model::L3Network;
use super::model::RangeSpec;
use super::model::RANGE_KIND;
use crate::net::ip_str;
use crate::net::mask_of;
use crate::net::mask_prefix;
use crate::net::parse_cidr;
use crate::net::parse_ip;
use crate::resource;
use crate::resource::generic;
use crate::resource::generic::Rename;
use crate::resource::generic::Stamped;
use crate::resource::relations;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// Whether `[s, e]` touches multicast/reserved (224.0.0.0–255.255.255.255) or link-local
/// 169.254.1.0–169.254.254.255.
fn touches_reserved(s: u32, e: u32) -> bool {
    let overlaps = |a: u32, b: u32| s <= b && a <= e;
    overlaps(0xE000_0000, 0xFFFF_FFFF) || overlaps(0xA9FE_0100, 0xA9FE_FEFF)
}

/// The addresses of a range as checked on its own.
pub(super) struct Bounds {
    /// First address.
    pub(super) start_ip: u32,
    /// Last address (inclusive).
    pub(super) end_ip: u32,
    /// Prefix length of the subnet.
    pub(super) prefix_len: u32,
    /// Gateway.
    pub(super) gateway: u32,
}

/// The range a request gives, checked against rules 1–6 (7–8 need the neighbours).
pub(super) fn bounds(spec: &RangeSpec) -> Result<Bounds, ApiError> {
    let (start, end, prefix, gateway) = match spec {
        RangeSpec::Explicit {
            start_ip,
            end_ip,
            netmask,
            gateway,
        } => {
            let s = parse_ip("startIp", start_ip)?;
            let e = parse_ip("endIp", end_ip)?;
            let prefix = mask_prefix(netmask)?;
            let g = gateway.as_deref().ok_or_else(|| {
                validate::invalid_arg("field[gateway] is mandatory for a Normal ip range")
            })?;
            (s, e, prefix, parse_ip("gateway", g)?)
        }
        RangeSpec::Cidr { cidr, gateway } => {
            let (net, prefix) = parse_cidr(cidr)?;
            if prefix > 30 {
                return Err(validate::invalid_arg(format!(
                    "cidr[{cidr}] has no usable address besides the gateway; the prefix must be at most 30"
                )));
            }
            let bcast = net | !mask_of(prefix);
            let (first, last) = (net + 1, bcast - 1);
            let g = match gateway {
                None => first,
                Some(g) => parse_ip("gateway", g)?,
            };
            if g == first {
                (first + 1, last, prefix, g)
            } else if g == last {
                (first, last - 1, prefix, g)
            } else {
                return Err(validate::invalid_arg(format!(
                    "gateway[{}] must be the first or the last usable address of cidr[{cidr}]",
                    ip_str(g)
                )));
            }
        }
    };
    if start > end {
        return Err(validate::invalid_arg(format!(
            "startIp[{}] must not be greater than endIp[{}]",
            ip_str(start),
            ip_str(end)
        )));
    }
    let mask = mask_of(prefix);
    let net = start & mask;
    let bcast = net | !mask;
    if end & mask != net || gateway & mask != net {
        return Err(validate::invalid_arg(format!(
            "startIp[{}], endIp[{}] and gateway[{}] must be in the same subnet {}/{prefix}",
            ip_str(start),
            ip_str(end),
            ip_str(gateway),
            ip_str(net)
        )));
    }
    if prefix < 31 && (start == net || end == bcast) {
        return Err(validate::invalid_arg(format!(
            "ip range[{}, {}] must not include the network address {} or the broadcast address {}",
            ip_str(start),
            ip_str(end),
            ip_str(net),
            ip_str(bcast)
        )));
    }
    if (start..=end).contains(&gateway) {
        return Err(validate::invalid_arg(format!(
            "gateway[{}] must not be inside the ip range[{}, {}]",
            ip_str(gateway),
            ip_str(start),
            ip_str(end)
        )));
    }
    if gateway == net || (prefix < 31 && gateway == bcast) {
        return Err(validate::invalid_arg(format!(
            "gateway[{}] cannot be the network or broadcast address",
            ip_str(gateway)
        )));
    }
    if touches_reserved(start, end) {
        return Err(validate::invalid_arg(format!(
            "ip range[{}, {}] touches multicast, reserved or link-local addresses",
            ip_str(start),
            ip_str(end)
        )));
    }
    Ok(Bounds {
        start_ip: start,
        end_ip: end,
        prefix_len: prefix,
        gateway,
    })
}

/// Rules 7–8: every range of an L3 shares its first range's subnet and gateway, and no two
/// ranges of the L3s on one L2 overlap.
fn check_neighbours(txn: &dyn StateTxn, l3: &L3Network, range: &IpRange) -> Result<(), ApiError> {
    if let Some(first) = l3.ip_ranges.first() {
        if first.network() != range.network()
            || first.prefix_len != range.prefix_len
            || first.gateway != range.gateway
        {
            return Err(validate::invalid_arg(format!(
                "all ip ranges of L3 network[uuid:{}] must share one subnet and gateway: {}/{} via {} is already used",
                l3.uuid,
                ip_str(first.network()),
                first.prefix_len,
                ip_str(first.gateway)
            )));
        }
    }
    for (_, other) in resource::find::<L3Network>(txn, "l2NetworkUuid", &l3.l2_network_uuid)? {
        for r in &other.ip_ranges {
            if range.start_ip <= r.end_ip && r.start_ip <= range.end_ip {
                return Err(validate::invalid_arg(format!(
                    "ip range[{}, {}] overlaps ip range[uuid:{}, {}, {}] of L3 network[uuid:{}] on the same L2 network",
                    ip_str(range.start_ip),
                    ip_str(range.end_ip),
                    r.uuid,
                    ip_str(r.start_ip),
                    ip_str(r.end_ip),
                    other.uuid
                )));
            }
        }
    }
    Ok(())
}

/// Add a range (checked on its own) to `l3`, owned by the L3's owner.
pub(super) fn add_range(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    owner: &str,
    mut l3: L3Network,
    range: IpRange,
) -> Result<IpRange, ApiError> {
    check_neighbours(txn, &l3, &range)?;
    resource::refuse_duplicate::<IpRange>(txn, &range.uuid)?;
    l3.ip_ranges.push(range.clone());
    l3.touch(ctx.proposed_at_ms);
    resource::save(txn, owner, &range)?;
    resource::save(txn, owner, &l3)?;
    Ok(range)
}

/// `UpdateIpRange`: the L3's inline copy follows, the L3 itself is not changed (its
/// `lastOpDate` stays).
pub(super) fn rename_range(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    uuid: &str,
    rename: Rename,
) -> Result<IpRange, ApiError> {
    let r = generic::modify_visible(txn, ctx, caller, uuid, |_, r: &mut IpRange| {
        rename.apply_to(r)
    })?;
    let (owner, mut l3) = resource::require::<L3Network>(txn, &r.l3_network_uuid)?;
    for x in l3.ip_ranges.iter_mut().filter(|x| x.uuid == r.uuid) {
        *x = r.clone();
    }
    resource::save(txn, &owner, &l3)?;
    Ok(r)
}

/// `DeleteIpRange`; what is allocated in it is released (`Enforcing`) or keeps it (refused).
pub(super) fn delete_range(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    uuid: &str,
    enforcing: bool,
) -> Result<(), ApiError> {
    let Some((_, r)) = load_visible::<IpRange>(txn, caller, uuid)? else {
        return Ok(());
    };
    ipam::release_range(txn, &r, enforcing)?;
    if let Some((owner, mut l3)) = resource::load::<L3Network>(txn, &r.l3_network_uuid)? {
        l3.ip_ranges.retain(|x| x.uuid != uuid);
        l3.touch(ctx.proposed_at_ms);
        resource::save(txn, &owner, &l3)?;
    }
    relations::delete(txn, ctx, RANGE_KIND, uuid)?;
    Ok(())
}
