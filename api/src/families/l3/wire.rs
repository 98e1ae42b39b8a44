//! L3 networks on the wire: the inventories and request → op.

use std::net::Ipv4Addr;

use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use super::ipam::UsedIp;
use super::model::IpRange;
use super::model::L3Network;
use super::model::L3Op;
use super::model::L3Result;
use super::model::RangeSpec;
use super::model::KIND;
use super::model::RANGE_KIND;
use super::model::RANGE_TABLE;
use super::model::TABLE;
use crate::net::ip_str;
use crate::net::mask_of;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource;
use crate::resource::date;
use crate::resource::generic::Rename;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Refusal;

impl Resource for IpRange {
    const KIND: &'static str = RANGE_KIND;
    const TABLE: &'static str = RANGE_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("l3NetworkUuid", |r| json!(r.l3_network_uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("startIp", |r| json!(ip_str(r.start_ip))),
        Field::new("endIp", |r| json!(ip_str(r.end_ip))),
        Field::new("netmask", |r| json!(ip_str(mask_of(r.prefix_len)))),
        Field::new("gateway", |r| json!(ip_str(r.gateway))),
        Field::new("networkCidr", |r| {
            json!(format!("{}/{}", ip_str(r.network()), r.prefix_len))
        }),
        Field::new("ipVersion", |_| json!(4)),
        // IPv6 address modes (SLAAC, ...); null for the IPv4 ranges this build manages.
        Field::maybe("addressMode", |_| None),
        Field::new("prefixLen", |r| json!(r.prefix_len)),
        Field::new("ipRangeType", |_| json!("Normal")),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
    ];
    const INDEXED: &'static [&'static str] = &["name", "l3NetworkUuid", "startIp", "networkCidr"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

impl Resource for L3Network {
    const KIND: &'static str = KIND;
    const TABLE: &'static str = TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("type", |r| json!(r.l3_type)),
        Field::new("zoneUuid", |r| json!(r.zone_uuid)),
        Field::new("l2NetworkUuid", |r| json!(r.l2_network_uuid)),
        Field::new("state", |r| json!(r.state)),
        Field::maybe("dnsDomain", |r| r.dns_domain.as_ref().map(|x| json!(x))),
        Field::new("system", |r| json!(r.system)),
        Field::new("category", |r| json!(r.category)),
        Field::new("ipVersion", |_| json!(4)),
        Field::new("enableIPAM", |r| json!(r.enable_ipam)),
        Field::new("isolated", |_| json!(false)),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
        Field::new("dns", |r| json!(r.dns)),
        Field::new("ipRanges", |r| {
            Value::Array(r.ip_ranges.iter().map(resource::inventory).collect())
        }),
        Field::new("networkServices", |_| json!([])),
        Field::new("hostRoute", |_| json!([])),
        Field::new("reservedIpRanges", |_| json!([])),
    ];
    const INDEXED: &'static [&'static str] =
        &["name", "state", "zoneUuid", "l2NetworkUuid", "category"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

impl UsedIp {
    /// The `UsedIpInventory` (not a queried kind here: the `used_ip` table is IPAM's own).
    pub fn inventory(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| m.insert(k.into(), v);
        put("uuid", json!(self.uuid));
        put("ipRangeUuid", json!(self.ip_range_uuid));
        put("l3NetworkUuid", json!(self.l3_network_uuid));
        put("ipVersion", json!(4));
        put("ip", json!(ip_str(self.ip)));
        put("netmask", json!(ip_str(mask_of(self.prefix_len))));
        put("gateway", json!(ip_str(self.gateway)));
        put("usedFor", json!(self.used_for));
        put("ipInLong", json!(self.ip));
        // Java's signed bytes.
        let binary: Vec<i8> = Ipv4Addr::from(self.ip)
            .octets()
            .iter()
            .map(|b| *b as i8)
            .collect();
        put("ipInBinary", json!(binary));
        if let Some(n) = &self.vm_nic_uuid {
            put("vmNicUuid", json!(n));
        }
        put("createDate", date(self.create_date));
        put("lastOpDate", date(self.create_date));
        Value::Object(m)
    }
}

/// The `inventory` of the reply, if any.
impl crate::family::Reply for L3Result {
    fn inventory(&self) -> Option<Value> {
        match self {
            L3Result::L3(l) => Some(resource::inventory(l)),
            L3Result::IpRange(r) => Some(resource::inventory(r)),
            L3Result::UsedIp(u) => Some(u.inventory()),
            L3Result::Deleted => None,
        }
    }
}

pub(super) fn create(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(L3Op::Create {
        uuid: p.new_uuid(),
        l2_network_uuid: p.required("l2NetworkUuid")?,
        name: p.required("name")?,
        description: p.string("description"),
        l3_type: p.string("type"),
        category: p.string("category"),
        // Sent as a string or a number.
        ip_version: p.string("ipVersion").or_else(|| {
            p.body
                .get("ipVersion")
                .and_then(Value::as_i64)
                .map(|v| v.to_string())
        }),
        system: params::boolean(p.body, "system"),
        dns_domain: p.string("dnsDomain"),
        enable_ipam: params::boolean(p.body, "enableIPAM"),
    }))
}

pub(super) fn update(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(L3Op::Update {
        uuid: p.required("uuid")?,
        rename: Rename::from_request(p),
        dns_domain: p.string("dnsDomain"),
        category: p.string("category"),
        system: params::boolean(p.body, "system"),
    }))
}

/// `AddIpRange` and `AddIpRangeByNetworkCidr`: the same call but for how the range is given.
pub(super) fn add_range(
    p: &PlanInput,
    spec: impl FnOnce(&PlanInput) -> Result<RangeSpec, Refusal>,
) -> Result<Plan, Refusal> {
    Ok(p.propose(L3Op::AddIpRange {
        uuid: p.new_uuid(),
        l3_network_uuid: p.required("l3NetworkUuid")?,
        name: p.required("name")?,
        description: p.string("description"),
        spec: spec(p)?,
        ip_range_type: p.string("ipRangeType"),
    }))
}

pub(super) fn explicit_range(p: &PlanInput) -> Result<RangeSpec, Refusal> {
    Ok(RangeSpec::Explicit {
        start_ip: p.required("startIp")?,
        end_ip: p.required("endIp")?,
        netmask: p.required("netmask")?,
        gateway: p.string("gateway"),
    })
}

pub(super) fn cidr_range(p: &PlanInput) -> Result<RangeSpec, Refusal> {
    Ok(RangeSpec::Cidr {
        cidr: p.required("networkCidr")?,
        gateway: p.string("gateway"),
    })
}

pub(super) fn delete_range(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(L3Op::DeleteIpRange {
        uuid: p.required("uuid")?,
        enforcing: params::enforcing(p.body),
    }))
}

/// `AddDnsToL3Network` and `RemoveDnsFromL3Network`: `{l3NetworkUuid, dns}`.
pub(super) fn dns(p: &PlanInput, make: fn(String, String) -> L3Op) -> Result<Plan, Refusal> {
    Ok(p.propose(make(p.required("l3NetworkUuid")?, p.required("dns")?)))
}
