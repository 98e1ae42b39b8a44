//! What the L3 family does for other families' flows (`registry::serve`): IPAM for VM NICs.
//!
//! - `l3.allocate-ip`: the requested address or the lowest free one of an Enabled L3
//!   (`L3.1000` when none is left), recorded as used by the NIC; the answer carries what a NIC
//!   needs (address, netmask, gateway, the L3's L2).
//! - `l3.release-ip`: give an address back (absent: nothing changes).

use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use super::ipam;
use super::ipam::UsedIp;
use super::model::L3Network;
use crate::net::ip_str;
use crate::registry::service_input;
use crate::registry::service_output;
use crate::resource;
use crate::resource::generic::EnableState;
use crate::validate;
use crate::wire::errors::Code;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// Service name: allocate.
pub const ALLOCATE_IP: &str = "l3.allocate-ip";
/// Service name: release.
pub const RELEASE_IP: &str = "l3.release-ip";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Allocate {
    l3_network_uuid: String,
    used_ip_uuid: String,
    /// A static IP the caller asks for.
    required_ip: Option<String>,
    used_for: String,
    vm_nic_uuid: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Allocated {
    used_ip_uuid: String,
    ip: String,
    netmask: String,
    gateway: String,
    ip_range_uuid: String,
    l3_network_uuid: String,
    l2_network_uuid: String,
}

/// The dotted netmask of a prefix length.
fn netmask(prefix_len: u32) -> String {
    let bits = if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - prefix_len.min(32))
    };
    ip_str(bits)
}

pub(super) fn allocate(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    input: &Value,
) -> Result<Value, ApiError> {
    let a: Allocate = service_input(ALLOCATE_IP, input)?;
    validate::uuid("usedIpUuid", &a.used_ip_uuid)?;
    let (_, l3) = resource::require::<L3Network>(txn, &a.l3_network_uuid)?;
    if l3.state != EnableState::Enabled {
        return Err(validate::refuse(
            Code::IpAllocation,
            format!(
                "L3 network[uuid:{}] is disabled; no IP can be allocated on it",
                l3.uuid
            ),
        ));
    }
    let (range, ip) = ipam::pick(txn, &a.l3_network_uuid, a.required_ip.as_deref())?;
    let used = UsedIp {
        uuid: a.used_ip_uuid.clone(),
        ip_range_uuid: range.uuid.clone(),
        l3_network_uuid: a.l3_network_uuid.clone(),
        ip,
        prefix_len: range.prefix_len,
        gateway: range.gateway,
        used_for: a.used_for,
        vm_nic_uuid: a.vm_nic_uuid,
        create_date: ctx.proposed_at_ms,
    };
    ipam::record(txn, &used)?;
    service_output(
        ALLOCATE_IP,
        &Allocated {
            used_ip_uuid: a.used_ip_uuid,
            ip: ip_str(ip),
            netmask: netmask(range.prefix_len),
            gateway: ip_str(range.gateway),
            ip_range_uuid: range.uuid,
            l3_network_uuid: a.l3_network_uuid,
            l2_network_uuid: l3.l2_network_uuid,
        },
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Release {
    l3_network_uuid: String,
    ip: String,
}

pub(super) fn release(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    _caller: &Caller,
    input: &Value,
) -> Result<Value, ApiError> {
    let r: Release = service_input(RELEASE_IP, input)?;
    ipam::release(txn, &r.l3_network_uuid, &r.ip)?;
    Ok(serde_json::json!({}))
}

#[cfg(test)]
mod tests {
    #[test]
    fn netmasks_of_prefixes() {
        assert_eq!(super::netmask(24), "255.255.255.0");
        assert_eq!(super::netmask(16), "255.255.0.0");
        assert_eq!(super::netmask(32), "255.255.255.255");
        assert_eq!(super::netmask(0), "0.0.0.0");
    }
}
