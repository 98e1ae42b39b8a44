//! The L3 sync calls that read state without being queries: `GetFreeIp` (free addresses of an
//! L3 or one of its ranges, from a start address on) and `CheckIpAvailability` (whether an
//! address could be allocated now). Everything that can be checked without state is checked
//! while planning.

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use super::ipam;
use super::model::IpRange;
use super::model::L3Network;
use crate::net::ip_str;
use crate::net::mask_of;
use crate::net::parse_ip;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource;
use crate::validate;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::Caller;
use crate::StateTxn;

/// Most addresses one `GetFreeIp` returns, so a client cannot make a node walk a /8.
pub const MAX_FREE_IP_LIMIT: i64 = 10_000;

fn invalid(details: String) -> Refusal {
    Refusal::new(Code::InvalidArgument, details)
}

fn ip_field(f: &str, v: &str) -> Result<u32, Refusal> {
    parse_ip(f, v).map_err(|_| invalid(format!("{f}[{v}] is not a valid IPv4 address")))
}

/// A plan that answers `read` on the state as the caller sees it.
fn read(
    p: &PlanInput,
    read: impl Fn(&dyn StateTxn, &Caller) -> Result<Map<String, Value>, ApiError>
        + Send
        + Sync
        + 'static,
) -> Result<Plan, Refusal> {
    Ok(Plan::Read {
        call: p.call,
        read: Box::new(read),
    })
}

/// `GetFreeIp`.
pub(super) fn free_ip(p: &PlanInput) -> Result<Plan, Refusal> {
    let l3_network_uuid = p.string("l3NetworkUuid");
    let ip_range_uuid = p.string("ipRangeUuid");
    if l3_network_uuid.is_none() && ip_range_uuid.is_none() {
        return Err(invalid(
            "l3NetworkUuid and ipRangeUuid cannot both be null".into(),
        ));
    }
    if p.string("ipVersion").as_deref() == Some("6")
        || p.body.get("ipVersion").and_then(Value::as_i64) == Some(6)
    {
        return Err(Refusal::new(
            Code::NotSupported,
            "IPv6 address pools are not supported by this management node",
        ));
    }
    if p.string("ipRangeType").as_deref() == Some("AddressPool") {
        return Err(Refusal::new(
            Code::NotSupported,
            "address-pool ranges are not supported by this management node",
        ));
    }
    let limit = params::int(p.body, "limit", p.call)?.unwrap_or(100);
    if !(1..=MAX_FREE_IP_LIMIT).contains(&limit) {
        return Err(invalid(format!(
            "limit must be between 1 and {MAX_FREE_IP_LIMIT}, got {limit}"
        )));
    }
    let start = p
        .string("start")
        .map(|s| ip_field("start", &s))
        .transpose()?;
    read(p, move |txn, caller| {
        free_ip_reply(
            txn,
            caller,
            l3_network_uuid.as_deref(),
            ip_range_uuid.as_deref(),
            start.unwrap_or(0),
            limit as usize,
        )
    })
}

fn free_ip_reply(
    txn: &dyn StateTxn,
    caller: &Caller,
    l3_network_uuid: Option<&str>,
    ip_range_uuid: Option<&str>,
    from: u32,
    limit: usize,
) -> Result<Map<String, Value>, ApiError> {
    let range = match ip_range_uuid {
        Some(r) => Some(resource::require::<IpRange>(txn, r)?.1),
        None => None,
    };
    let l3_uuid = match (l3_network_uuid, &range) {
        (Some(l3), Some(r)) if l3 != r.l3_network_uuid => {
            return Err(validate::invalid_arg(format!(
                "ip range[uuid:{}] does not belong to l3 network[uuid:{l3}]",
                r.uuid
            )))
        }
        (Some(l3), _) => l3,
        (None, Some(r)) => r.l3_network_uuid.as_str(),
        (None, None) => {
            return Err(validate::invalid_arg(
                "l3NetworkUuid and ipRangeUuid cannot both be null",
            ))
        }
    };
    let (_, l3) = resource::require_visible::<L3Network>(txn, caller, l3_uuid)?;
    let used = ipam::used_addresses(txn, &l3.uuid)?;
    let ranges = match &range {
        Some(r) => vec![r],
        None => l3.ip_ranges.iter().collect(),
    };
    let inventories = ipam::free_from(ranges, &used, from, limit)
        .into_iter()
        .map(|(r, ip)| {
            json!({
                "ipRangeUuid": r.uuid,
                "ip": ip_str(ip),
                "netmask": ip_str(mask_of(r.prefix_len)),
                "gateway": ip_str(r.gateway),
            })
        })
        .collect();
    let mut out = Map::new();
    out.insert("inventories".into(), Value::Array(inventories));
    Ok(out)
}

/// `CheckIpAvailability`.
pub(super) fn check_ip(p: &PlanInput) -> Result<Plan, Refusal> {
    let l3_network_uuid = p.required("l3NetworkUuid")?;
    let ip = ip_field("ip", &p.required("ip")?)?;
    if params::boolean(p.body, "arpCheck") == Some(true) {
        // An ARP probe has to be sent from a host on the L2; there is no host agent to send
        // it yet, and answering "available" without probing would mislead.
        return Err(Refusal::new(
            Code::NotSupported,
            "arpCheck needs a connected host on the L3's L2 network to send the probe; send arpCheck=false",
        ));
    }
    let ip_range_check = params::boolean(p.body, "ipRangeCheck").unwrap_or(true);
    read(p, move |txn, caller| {
        let (_, l3) = resource::require_visible::<L3Network>(txn, caller, &l3_network_uuid)?;
        let in_range = l3.ip_ranges.iter().any(|r| r.contains(ip));
        let reason = if ipam::is_used(txn, &l3.uuid, ip)? {
            Some(format!("ip[{}] is in use", ip_str(ip)))
        } else if ip_range_check && !in_range {
            Some(format!(
                "ip[{}] is not in any ip range of l3 network[uuid:{}]",
                ip_str(ip),
                l3.uuid
            ))
        } else {
            None
        };
        let mut out = Map::new();
        out.insert("available".into(), json!(reason.is_none()));
        if let Some(r) = reason {
            out.insert("reason".into(), json!(r));
        }
        Ok(out)
    })
}
