//! L3 networks, IP ranges, DNS and IPAM (spec 04 §2.4, §2.5, §6). An L3 sits on an L2; its
//! address pool is the union of its IP ranges (one subnet, one gateway per L3; ranges of all L3s
//! on one L2 are disjoint). Allocated addresses live in the `used_ip` table keyed
//! `<l3Uuid>/<ip as 8 hex digits>`, so a lookup is one read and an allocation scans only that
//! L3's used addresses, in address order.

use std::net::IpAddr;
use std::net::Ipv4Addr;

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::catalogue::CallSpec;
use crate::params;
use crate::params::Body;
use crate::resource;
use crate::resource::date;
use crate::resource::Field;
use crate::resource::Resource;
use crate::validate;
use crate::wire::date::java_date;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::IntoCommand;
use crate::StateTxn;

/// The L3 table.
pub const TABLE: &str = "l3_network";
/// The IP-range table.
pub const RANGE_TABLE: &str = "ip_range";
/// The used-IP table (IPAM).
pub const USED_IP_TABLE: &str = "used_ip";
/// L3 categories.
pub const CATEGORIES: &[&str] = &["Public", "Private", "System"];

pub use crate::net::ip_str;
use crate::net::mask_of;
pub use crate::net::mask_prefix;
pub use crate::net::parse_cidr;
pub use crate::net::parse_ip;

/// Whether `[s, e]` touches multicast/reserved (224.0.0.0–255.255.255.255) or link-local
/// 169.254.1.0–169.254.254.255.
fn touches_reserved(s: u32, e: u32) -> bool {
    let overlaps = |a: u32, b: u32| s <= b && a <= e;
    overlaps(0xE000_0000, 0xFFFF_FFFF) || overlaps(0xA9FE_0100, 0xA9FE_FEFF)
}

// ---------------------------------------------------------------- records

/// `Enabled` or `Disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum L3State {
    /// Usable.
    Enabled,
    /// No new NICs.
    Disabled,
}

/// An IP range (`IpRangeInventory`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRange {
    /// 32 hex chars.
    pub uuid: String,
    /// The L3.
    pub l3_network_uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// First address.
    pub start_ip: u32,
    /// Last address (inclusive).
    pub end_ip: u32,
    /// Prefix length of the subnet.
    pub prefix_len: u32,
    /// Gateway.
    pub gateway: u32,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

impl IpRange {
    /// Network address of the subnet.
    pub fn network(&self) -> u32 {
        self.start_ip & mask_of(self.prefix_len)
    }

    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: u32) -> bool {
        (self.start_ip..=self.end_ip).contains(&ip)
    }
}

impl Resource for IpRange {
    const KIND: &'static str = "IpRange";
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

/// An L3 network record; its ranges are kept inline (and in the range table for queries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L3Network {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// `L3BasicNetwork`.
    pub l3_type: String,
    /// Zone (the L2's).
    pub zone_uuid: String,
    /// The L2.
    pub l2_network_uuid: String,
    /// Enabled or Disabled.
    pub state: L3State,
    /// DNS domain handed to guests.
    pub dns_domain: Option<String>,
    /// A system network (no ordinary VMs).
    pub system: bool,
    /// Public, Private or System.
    pub category: String,
    /// Whether IPAM manages addresses.
    pub enable_ipam: bool,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
    /// DNS servers, in the order added.
    pub dns: Vec<String>,
    /// Ranges, in the order added.
    pub ip_ranges: Vec<IpRange>,
}

impl Resource for L3Network {
    const KIND: &'static str = "L3Network";
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

impl UsedIp {
    /// The inventory in ZStack's field order.
    pub fn inventory(&self) -> Value {
        let mut m = resource::object(json!({
            "uuid": self.uuid,
            "ipRangeUuid": self.ip_range_uuid,
            "l3NetworkUuid": self.l3_network_uuid,
            "ipVersion": 4,
            "ip": ip_str(self.ip),
            "netmask": ip_str(mask_of(self.prefix_len)),
            "gateway": ip_str(self.gateway),
            "usedFor": self.used_for,
            "ipInLong": self.ip,
            "ipInBinary": Ipv4Addr::from(self.ip).octets().iter().map(|b| *b as i8).collect::<Vec<_>>(),
        }));
        if let Some(n) = &self.vm_nic_uuid {
            m.insert("vmNicUuid".into(), json!(n));
        }
        m.insert("createDate".into(), json!(java_date(self.create_date)));
        m.insert("lastOpDate".into(), json!(java_date(self.create_date)));
        Value::Object(m)
    }
}

fn used_prefix(l3: &str) -> Vec<u8> {
    format!("{l3}/").into_bytes()
}

fn used_key(l3: &str, ip: u32) -> Vec<u8> {
    format!("{l3}/{ip:08x}").into_bytes()
}

/// Every used address of an L3, in address order.
pub fn used_ips(txn: &dyn StateTxn, l3: &str) -> Result<Vec<UsedIp>, ApiError> {
    txn.scan_prefix(USED_IP_TABLE, &used_prefix(l3), usize::MAX)?
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_slice(&v).map_err(|e| ApiError::Corrupt {
                what: format!("used ip {}", String::from_utf8_lossy(&k)),
                detail: e.to_string(),
            })
        })
        .collect()
}

/// Up to `limit` free addresses of an L3 in address order (for `GetFreeIp` and the UI's
/// "available IPs" hint), and the L3's (total, used) address counts (for `GetIpAddressCapacity`).
pub fn free_ips(
    txn: &dyn StateTxn,
    l3_uuid: &str,
    limit: usize,
) -> Result<(Vec<String>, u64, u64), ApiError> {
    let (_, l3) = resource::require::<L3Network>(txn, l3_uuid)?;
    let used: Vec<u32> = used_ips(txn, l3_uuid)?.into_iter().map(|u| u.ip).collect();
    let mut ranges = l3.ip_ranges.clone();
    ranges.sort_by_key(|r| r.start_ip);
    let total: u64 = ranges
        .iter()
        .map(|r| u64::from(r.end_ip - r.start_ip) + 1)
        .sum();
    let mut free = Vec::new();
    'outer: for r in &ranges {
        let mut ip = u64::from(r.start_ip);
        while ip <= u64::from(r.end_ip) {
            if free.len() >= limit {
                break 'outer;
            }
            let v = ip as u32;
            if used.binary_search(&v).is_err() {
                free.push(ip_str(v));
            }
            ip += 1;
        }
    }
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

// ---------------------------------------------------------------- commands

/// L3 state events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum L3StateEvent {
    /// → Enabled.
    Enable,
    /// → Disabled.
    Disable,
}

/// How a range is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeSpec {
    /// `AddIpRange`.
    Explicit {
        /// First address.
        start_ip: String,
        /// Last address.
        end_ip: String,
        /// Dotted netmask.
        netmask: String,
        /// Gateway (mandatory for a Normal range).
        gateway: Option<String>,
    },
    /// `AddIpRangeByNetworkCidr`: every usable address but the gateway.
    Cidr {
        /// `a.b.c.d/n`, host bits allowed.
        cidr: String,
        /// Gateway (default: the first usable address; must be the first or last one).
        gateway: Option<String>,
    },
}

/// L3 commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum L3Op {
    /// `CreateL3Network`.
    Create {
        /// New uuid.
        uuid: String,
        /// The L2.
        l2_network_uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// Type (default `L3BasicNetwork`).
        l3_type: Option<String>,
        /// Category (default Private).
        category: Option<String>,
        /// `4` (IPv6 is out of scope).
        ip_version: Option<String>,
        /// System network.
        system: Option<bool>,
        /// DNS domain.
        dns_domain: Option<String>,
        /// IPAM on (default true).
        enable_ipam: Option<bool>,
    },
    /// `UpdateL3Network`.
    Update {
        /// L3.
        uuid: String,
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
        /// New DNS domain.
        dns_domain: Option<String>,
        /// New category.
        category: Option<String>,
        /// New system flag.
        system: Option<bool>,
    },
    /// `ChangeL3NetworkState`.
    ChangeState {
        /// L3.
        uuid: String,
        /// Event.
        event: L3StateEvent,
    },
    /// `DeleteL3Network`: its ranges and used addresses go with it.
    Delete {
        /// L3.
        uuid: String,
    },
    /// `AddIpRange` / `AddIpRangeByNetworkCidr`.
    AddIpRange {
        /// New range uuid.
        uuid: String,
        /// The L3.
        l3_network_uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// The range.
        spec: RangeSpec,
        /// `Normal` (AddressPool is not supported).
        ip_range_type: Option<String>,
    },
    /// `UpdateIpRange`.
    UpdateIpRange {
        /// Range.
        uuid: String,
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
    },
    /// `DeleteIpRange`: `Permissive` refuses while addresses are allocated in it; `Enforcing`
    /// releases them.
    DeleteIpRange {
        /// Range.
        uuid: String,
        /// deleteMode=Enforcing.
        enforcing: bool,
    },
    /// `AddDnsToL3Network`.
    AddDns {
        /// L3.
        l3_network_uuid: String,
        /// Server address.
        dns: String,
    },
    /// `RemoveDnsFromL3Network` (absent servers are fine).
    RemoveDns {
        /// L3.
        l3_network_uuid: String,
        /// Server address.
        dns: String,
    },
    /// Internal (VM/VIP/router flows): allocate an address, the requested one or the lowest
    /// free; `L3.1000` when the pool is exhausted or the requested address is not available.
    AllocateIp {
        /// L3.
        l3_network_uuid: String,
        /// Uuid of the new used-IP record (stamped).
        used_ip_uuid: String,
        /// A static address.
        required_ip: Option<String>,
        /// `VmNic`, `DHCP`, `Vip`, ...
        used_for: String,
        /// The NIC.
        vm_nic_uuid: Option<String>,
    },
    /// Internal: return an address to the pool (absent addresses are fine).
    ReleaseIp {
        /// L3.
        l3_network_uuid: String,
        /// The address.
        ip: String,
    },
}

/// Answer of an L3 command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum L3Result {
    /// The L3 after the change.
    L3(L3Network),
    /// A range after the change.
    IpRange(IpRange),
    /// An allocated address.
    UsedIp(UsedIp),
    /// Deleted or released (or already absent).
    Deleted,
}

impl L3Result {
    /// The `inventory` of the reply, if any.
    pub fn inventory(&self) -> Option<Value> {
        match self {
            L3Result::L3(l) => Some(resource::inventory(l)),
            L3Result::IpRange(r) => Some(resource::inventory(r)),
            L3Result::UsedIp(u) => Some(u.inventory()),
            L3Result::Deleted => None,
        }
    }
}

fn one_of(field: &str, v: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(validate::invalid_arg(format!(
            "valid values for field[{field}] are {allowed:?}, but {v} found"
        )))
    }
}

fn ip_alloc_error(details: String) -> ApiError {
    validate::refuse(Code::IpAllocation, details)
}

/// Build and check a new range against spec 04 §2.5 rules 1–6 (7–8 need the neighbours).
fn build_range(
    uuid: String,
    l3: &str,
    name: String,
    description: Option<String>,
    spec: &RangeSpec,
    now: u64,
) -> Result<IpRange, ApiError> {
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
    Ok(IpRange {
        uuid,
        l3_network_uuid: l3.to_string(),
        name,
        description,
        start_ip: start,
        end_ip: end,
        prefix_len: prefix,
        gateway,
        create_date: now,
        last_op_date: now,
    })
}

/// What an L3 leaves besides its record and ranges when deleted: its used addresses.
fn forget_used_ips(txn: &mut dyn StateTxn, _ctx: &ApplyCtx, uuid: &str) -> Result<(), ApiError> {
    for (k, _) in txn.scan_prefix(USED_IP_TABLE, &used_prefix(uuid), usize::MAX)? {
        txn.delete(USED_IP_TABLE, &k)?;
    }
    Ok(())
}

fn save_l3_with_range(
    txn: &mut dyn StateTxn,
    owner: &str,
    l3: &L3Network,
    range: &IpRange,
) -> Result<(), ApiError> {
    resource::save(txn, owner, range)?;
    resource::save(txn, owner, l3)
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: L3Op,
) -> Result<L3Result, ApiError> {
    let now = ctx.proposed_at_ms;
    match op {
        L3Op::Create {
            uuid,
            l2_network_uuid,
            name,
            description,
            l3_type,
            category,
            ip_version,
            system,
            dns_domain,
            enable_ipam,
        } => {
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            let l3_type = l3_type.unwrap_or_else(|| "L3BasicNetwork".into());
            one_of("type", &l3_type, &["L3BasicNetwork"])?;
            let category = category.unwrap_or_else(|| "Private".into());
            one_of("category", &category, CATEGORIES)?;
            if let Some(v) = ip_version.as_deref().filter(|v| *v != "4") {
                return Err(validate::invalid_arg(format!(
                    "ipVersion[{v}] is not supported, only IPv4 L3 networks are"
                )));
            }
            if let Some(d) = &dns_domain {
                validate::max_len("dnsDomain", d, 255)?;
            }
            let system = system.unwrap_or(false) || category == "System";
            // Normal accounts create L3s on the L2s they own (their VXLAN networks).
            let l2 = resource::require_ref(txn, "L2Network", &l2_network_uuid)?;
            l2.check_visible(caller)?;
            if l2.field("type") == Some("VxlanNetworkPool") {
                return Err(validate::invalid_arg(format!(
                    "L2 network[uuid:{l2_network_uuid}] is a VxlanNetworkPool; create the L3 on one of its VXLAN networks"
                )));
            }
            let siblings = resource::find::<L3Network>(txn, "l2NetworkUuid", &l2_network_uuid)?;
            if let Some((_, s)) = siblings.iter().find(|(_, s)| s.category == "System") {
                return Err(validate::op_failure(format!(
                    "L2 network[uuid:{l2_network_uuid}] carries the system L3 network[uuid:{}] and can hold no other L3",
                    s.uuid
                )));
            }
            if category == "System" && !siblings.is_empty() {
                return Err(validate::op_failure(format!(
                    "a system L3 network needs a dedicated L2, but L2 network[uuid:{l2_network_uuid}] already has {} L3 network(s)",
                    siblings.len()
                )));
            }
            if resource::load::<L3Network>(txn, &uuid)?.is_some() {
                return Err(validate::duplicate_uuid("L3Network", &uuid));
            }
            let l3 = L3Network {
                uuid,
                name,
                description,
                l3_type,
                zone_uuid: l2.field("zoneUuid").unwrap_or_default().to_string(),
                l2_network_uuid,
                state: L3State::Enabled,
                dns_domain,
                system,
                category,
                enable_ipam: enable_ipam.unwrap_or(true),
                create_date: now,
                last_op_date: now,
                dns: Vec::new(),
                ip_ranges: Vec::new(),
            };
            resource::save(txn, &caller.account_uuid, &l3)?;
            Ok(L3Result::L3(l3))
        }
        L3Op::Update {
            uuid,
            name,
            description,
            dns_domain,
            category,
            system,
        } => {
            let (owner, mut l3) = resource::require_visible::<L3Network>(txn, caller, &uuid)?;
            if let Some(n) = name {
                validate::name("name", &n)?;
                l3.name = n;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                l3.description = Some(d);
            }
            if let Some(d) = dns_domain {
                validate::max_len("dnsDomain", &d, 255)?;
                l3.dns_domain = Some(d);
            }
            if let Some(c) = category {
                one_of("category", &c, CATEGORIES)?;
                if c == "System" && l3.category != "System" {
                    let n = resource::uuids_where::<L3Network>(
                        txn,
                        "l2NetworkUuid",
                        &l3.l2_network_uuid,
                    )?
                    .len();
                    if n > 1 {
                        return Err(validate::op_failure(format!(
                            "a system L3 network needs a dedicated L2, but L2 network[uuid:{}] has {n} L3 networks",
                            l3.l2_network_uuid
                        )));
                    }
                    l3.system = true;
                }
                l3.category = c;
            }
            if let Some(s) = system {
                l3.system = s;
            }
            l3.last_op_date = now;
            resource::save(txn, &owner, &l3)?;
            Ok(L3Result::L3(l3))
        }
        L3Op::ChangeState { uuid, event } => {
            let (owner, mut l3) = resource::require_visible::<L3Network>(txn, caller, &uuid)?;
            l3.state = match event {
                L3StateEvent::Enable => L3State::Enabled,
                L3StateEvent::Disable => L3State::Disabled,
            };
            l3.last_op_date = now;
            resource::save(txn, &owner, &l3)?;
            Ok(L3Result::L3(l3))
        }
        L3Op::Delete { uuid } => {
            if let Some((owner, _)) = resource::load::<L3Network>(txn, &uuid)? {
                if !caller.can_see(&owner) {
                    resource::require_visible::<L3Network>(txn, caller, &uuid)?;
                }
                crate::resource::relations::delete(txn, ctx, "L3Network", &uuid)?;
            }
            Ok(L3Result::Deleted)
        }
        L3Op::AddIpRange {
            uuid,
            l3_network_uuid,
            name,
            description,
            spec,
            ip_range_type,
        } => {
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            if let Some(t) = ip_range_type.as_deref().filter(|t| *t != "Normal") {
                return Err(validate::invalid_arg(format!(
                    "ipRangeType[{t}] is not supported, only Normal ranges are"
                )));
            }
            let (owner, mut l3) =
                resource::require_visible::<L3Network>(txn, caller, &l3_network_uuid)?;
            let range = build_range(uuid, &l3_network_uuid, name, description, &spec, now)?;
            if let Some(first) = l3.ip_ranges.first() {
                if first.network() != range.network()
                    || first.prefix_len != range.prefix_len
                    || first.gateway != range.gateway
                {
                    return Err(validate::invalid_arg(format!(
                        "all ip ranges of L3 network[uuid:{l3_network_uuid}] must share one subnet and gateway: {}/{} via {} is already used",
                        ip_str(first.network()),
                        first.prefix_len,
                        ip_str(first.gateway)
                    )));
                }
            }
            for (_, other) in
                resource::find::<L3Network>(txn, "l2NetworkUuid", &l3.l2_network_uuid)?
            {
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
            if resource::load::<IpRange>(txn, &range.uuid)?.is_some() {
                return Err(validate::duplicate_uuid("IpRange", &range.uuid));
            }
            l3.ip_ranges.push(range.clone());
            l3.last_op_date = now;
            save_l3_with_range(txn, &owner, &l3, &range)?;
            Ok(L3Result::IpRange(range))
        }
        L3Op::UpdateIpRange {
            uuid,
            name,
            description,
        } => {
            let (owner, mut r) = resource::require_visible::<IpRange>(txn, caller, &uuid)?;
            if let Some(n) = name {
                validate::name("name", &n)?;
                r.name = n;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                r.description = Some(d);
            }
            r.last_op_date = now;
            let (l3_owner, mut l3) = resource::require::<L3Network>(txn, &r.l3_network_uuid)?;
            for x in &mut l3.ip_ranges {
                if x.uuid == r.uuid {
                    *x = r.clone();
                }
            }
            resource::save(txn, &owner, &r)?;
            resource::save(txn, &l3_owner, &l3)?;
            Ok(L3Result::IpRange(r))
        }
        L3Op::DeleteIpRange { uuid, enforcing } => {
            let Some((owner, r)) = resource::load::<IpRange>(txn, &uuid)? else {
                return Ok(L3Result::Deleted);
            };
            if !caller.can_see(&owner) {
                resource::require_visible::<IpRange>(txn, caller, &uuid)?;
            }
            let in_range: Vec<UsedIp> = used_ips(txn, &r.l3_network_uuid)?
                .into_iter()
                .filter(|u| r.contains(u.ip))
                .collect();
            if !in_range.is_empty() && !enforcing {
                return Err(validate::op_failure(format!(
                    "ip range[uuid:{uuid}] has {} allocated address(es), e.g. {}; release them first or delete with deleteMode=Enforcing",
                    in_range.len(),
                    ip_str(in_range[0].ip)
                )));
            }
            for u in in_range {
                txn.delete(USED_IP_TABLE, &used_key(&r.l3_network_uuid, u.ip))?;
            }
            if let Some((l3_owner, mut l3)) = resource::load::<L3Network>(txn, &r.l3_network_uuid)?
            {
                l3.ip_ranges.retain(|x| x.uuid != uuid);
                l3.last_op_date = now;
                resource::save(txn, &l3_owner, &l3)?;
            }
            crate::resource::relations::delete(txn, ctx, "IpRange", &uuid)?;
            Ok(L3Result::Deleted)
        }
        L3Op::AddDns {
            l3_network_uuid,
            dns,
        } => {
            let (owner, mut l3) =
                resource::require_visible::<L3Network>(txn, caller, &l3_network_uuid)?;
            if dns.parse::<IpAddr>().is_err() {
                return Err(validate::invalid_arg(format!(
                    "dns[{dns}] is not a valid IP address"
                )));
            }
            if l3.dns.contains(&dns) {
                return Err(validate::invalid_arg(format!(
                    "there has been a DNS[{dns}] on L3 network[uuid:{l3_network_uuid}]"
                )));
            }
            l3.dns.push(dns);
            l3.last_op_date = now;
            resource::save(txn, &owner, &l3)?;
            Ok(L3Result::L3(l3))
        }
        L3Op::RemoveDns {
            l3_network_uuid,
            dns,
        } => {
            let (owner, mut l3) =
                resource::require_visible::<L3Network>(txn, caller, &l3_network_uuid)?;
            l3.dns.retain(|d| *d != dns);
            l3.last_op_date = now;
            resource::save(txn, &owner, &l3)?;
            Ok(L3Result::L3(l3))
        }
        L3Op::AllocateIp {
            l3_network_uuid,
            used_ip_uuid,
            required_ip,
            used_for,
            vm_nic_uuid,
        } => {
            validate::uuid("usedIpUuid", &used_ip_uuid)?;
            let (_, l3) = resource::require::<L3Network>(txn, &l3_network_uuid)?;
            let (range_idx, ip) = match required_ip {
                Some(s) => {
                    let ip = parse_ip("staticIp", &s)?;
                    let idx = l3
                        .ip_ranges
                        .iter()
                        .position(|r| r.contains(ip))
                        .ok_or_else(|| {
                            ip_alloc_error(format!(
                                "IP[{s}] is not in any IP range of L3 network[uuid:{l3_network_uuid}]"
                            ))
                        })?;
                    if txn
                        .get(USED_IP_TABLE, &used_key(&l3_network_uuid, ip))?
                        .is_some()
                    {
                        return Err(ip_alloc_error(format!(
                            "IP[{s}] is already used in L3 network[uuid:{l3_network_uuid}]"
                        )));
                    }
                    (idx, ip)
                }
                None => {
                    let used: Vec<u32> = used_ips(txn, &l3_network_uuid)?
                        .into_iter()
                        .map(|u| u.ip)
                        .collect();
                    lowest_free(&l3.ip_ranges, &used).ok_or_else(|| {
                        ip_alloc_error(format!(
                            "no available IP in L3 network[uuid:{l3_network_uuid}]"
                        ))
                    })?
                }
            };
            let r = &l3.ip_ranges[range_idx];
            let used = UsedIp {
                uuid: used_ip_uuid,
                ip_range_uuid: r.uuid.clone(),
                l3_network_uuid: l3_network_uuid.clone(),
                ip,
                prefix_len: r.prefix_len,
                gateway: r.gateway,
                used_for,
                vm_nic_uuid,
                create_date: now,
            };
            let raw = serde_json::to_vec(&used).map_err(|e| ApiError::Corrupt {
                what: "used ip".into(),
                detail: e.to_string(),
            })?;
            txn.put(USED_IP_TABLE, &used_key(&l3_network_uuid, ip), raw)?;
            Ok(L3Result::UsedIp(used))
        }
        L3Op::ReleaseIp {
            l3_network_uuid,
            ip,
        } => {
            let ip = parse_ip("ip", &ip)?;
            txn.delete(USED_IP_TABLE, &used_key(&l3_network_uuid, ip))?;
            Ok(L3Result::Deleted)
        }
    }
}

/// Which L3-family query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3Query {
    /// `QueryL3Network`.
    L3,
    /// `QueryIpRange`.
    IpRange,
}

/// Run an L3-family query.
pub fn query(
    txn: &dyn StateTxn,
    which: L3Query,
    q: &crate::query::Query,
    caller: &Caller,
) -> Result<crate::query::QueryOutput, ApiError> {
    match which {
        L3Query::L3 => resource::query::<L3Network>(txn, q, |o| caller.can_see(o)),
        L3Query::IpRange => resource::query::<IpRange>(txn, q, |o| caller.can_see(o)),
    }
}

/// Request → command for the L3 calls (`None`: not one of them).
pub fn plan(
    call: &CallSpec,
    b: &Body,
    caller: &Caller,
    new_uuid: &str,
) -> Option<Result<Command, Refusal>> {
    let uuid = || params::required(b, "uuid", call);
    let op: Result<L3Op, Refusal> = match call.name.as_str() {
        "CreateL3Network" => (|| {
            Ok(L3Op::Create {
                uuid: params::new_uuid(b, new_uuid),
                l2_network_uuid: params::required(b, "l2NetworkUuid", call)?,
                name: params::required(b, "name", call)?,
                description: params::string(b, "description"),
                l3_type: params::string(b, "type"),
                category: params::string(b, "category"),
                ip_version: params::string(b, "ipVersion").or_else(|| {
                    b.get("ipVersion")
                        .and_then(Value::as_i64)
                        .map(|v| v.to_string())
                }),
                system: params::boolean(b, "system"),
                dns_domain: params::string(b, "dnsDomain"),
                enable_ipam: params::boolean(b, "enableIPAM"),
            })
        })(),
        "UpdateL3Network" => uuid().map(|uuid| L3Op::Update {
            uuid,
            name: params::string(b, "name"),
            description: params::string(b, "description"),
            dns_domain: params::string(b, "dnsDomain"),
            category: params::string(b, "category"),
            system: params::boolean(b, "system"),
        }),
        "ChangeL3NetworkState" => (|| {
            Ok(L3Op::ChangeState {
                uuid: uuid()?,
                event: params::state_event(
                    b,
                    call,
                    &[
                        ("enable", L3StateEvent::Enable),
                        ("disable", L3StateEvent::Disable),
                    ],
                )?,
            })
        })(),
        "DeleteL3Network" => uuid().map(|uuid| L3Op::Delete { uuid }),
        "AddIpRange" => (|| {
            Ok(L3Op::AddIpRange {
                uuid: params::new_uuid(b, new_uuid),
                l3_network_uuid: params::required(b, "l3NetworkUuid", call)?,
                name: params::required(b, "name", call)?,
                description: params::string(b, "description"),
                spec: RangeSpec::Explicit {
                    start_ip: params::required(b, "startIp", call)?,
                    end_ip: params::required(b, "endIp", call)?,
                    netmask: params::required(b, "netmask", call)?,
                    gateway: params::string(b, "gateway"),
                },
                ip_range_type: params::string(b, "ipRangeType"),
            })
        })(),
        "AddIpRangeByNetworkCidr" => (|| {
            Ok(L3Op::AddIpRange {
                uuid: params::new_uuid(b, new_uuid),
                l3_network_uuid: params::required(b, "l3NetworkUuid", call)?,
                name: params::required(b, "name", call)?,
                description: params::string(b, "description"),
                spec: RangeSpec::Cidr {
                    cidr: params::required(b, "networkCidr", call)?,
                    gateway: params::string(b, "gateway"),
                },
                ip_range_type: params::string(b, "ipRangeType"),
            })
        })(),
        "UpdateIpRange" => uuid().map(|uuid| L3Op::UpdateIpRange {
            uuid,
            name: params::string(b, "name"),
            description: params::string(b, "description"),
        }),
        "DeleteIpRange" => uuid().map(|uuid| L3Op::DeleteIpRange {
            uuid,
            enforcing: params::enforcing(b),
        }),
        "AddDnsToL3Network" => (|| {
            Ok(L3Op::AddDns {
                l3_network_uuid: params::required(b, "l3NetworkUuid", call)?,
                dns: params::required(b, "dns", call)?,
            })
        })(),
        "RemoveDnsFromL3Network" => (|| {
            Ok(L3Op::RemoveDns {
                l3_network_uuid: params::required(b, "l3NetworkUuid", call)?,
                dns: params::required(b, "dns", call)?,
            })
        })(),
        _ => return None,
    };
    Some(op.map(|op| op.command(caller.clone())))
}

// ---------------------------------------------------------------- sync reads (GetFreeIp, CheckIpAvailability)

/// Most addresses one `GetFreeIp` returns, so a client cannot make a node walk a /8.
pub const MAX_FREE_IP_LIMIT: i64 = 10_000;

/// A sync L3 call that reads state but is not a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L3Read {
    /// `GetFreeIp`: free addresses of an L3 or one of its ranges, from `start` on.
    FreeIp {
        /// The L3 (or the range's L3 when only the range is named).
        l3_network_uuid: Option<String>,
        /// One range only.
        ip_range_uuid: Option<String>,
        /// First address to consider.
        start: Option<u32>,
        /// How many to return.
        limit: usize,
    },
    /// `CheckIpAvailability`: whether an address could be allocated on an L3 now.
    CheckIp {
        /// The L3.
        l3_network_uuid: String,
        /// The address (already parsed).
        ip: u32,
        /// Whether the address must also lie inside one of the L3's ranges (default true).
        ip_range_check: bool,
    },
}

/// Request → read for the L3 sync reads (`None`: not one of them). Everything that can be
/// checked without state is checked here.
pub fn read_plan(call: &CallSpec, b: &Body) -> Option<Result<L3Read, Refusal>> {
    let invalid = |d: String| Refusal::new(Code::InvalidArgument, d);
    let ip_field = |f: &str, v: &str| -> Result<u32, Refusal> {
        parse_ip(f, v).map_err(|_| invalid(format!("{f}[{v}] is not a valid IPv4 address")))
    };
    match call.name.as_str() {
        "GetFreeIp" => Some((|| {
            let l3_network_uuid = params::string(b, "l3NetworkUuid");
            let ip_range_uuid = params::string(b, "ipRangeUuid");
            if l3_network_uuid.is_none() && ip_range_uuid.is_none() {
                return Err(invalid(
                    "l3NetworkUuid and ipRangeUuid cannot both be null".into(),
                ));
            }
            if params::string(b, "ipVersion").as_deref() == Some("6")
                || b.get("ipVersion").and_then(Value::as_i64) == Some(6)
            {
                return Err(Refusal::new(
                    Code::NotSupported,
                    "IPv6 address pools are not supported by this management node",
                ));
            }
            if params::string(b, "ipRangeType").as_deref() == Some("AddressPool") {
                return Err(Refusal::new(
                    Code::NotSupported,
                    "address-pool ranges are not supported by this management node",
                ));
            }
            let limit = params::int(b, "limit", call)?.unwrap_or(100);
            if !(1..=MAX_FREE_IP_LIMIT).contains(&limit) {
                return Err(invalid(format!(
                    "limit must be between 1 and {MAX_FREE_IP_LIMIT}, got {limit}"
                )));
            }
            let start = params::string(b, "start")
                .map(|s| ip_field("start", &s))
                .transpose()?;
            Ok(L3Read::FreeIp {
                l3_network_uuid,
                ip_range_uuid,
                start,
                limit: limit as usize,
            })
        })()),
        "CheckIpAvailability" => Some((|| {
            let l3_network_uuid = params::required(b, "l3NetworkUuid", call)?;
            let ip = ip_field("ip", &params::required(b, "ip", call)?)?;
            if params::boolean(b, "arpCheck") == Some(true) {
                // An ARP probe has to be sent from a host on the L2; there is no host agent
                // to send it yet, and answering "available" without probing would mislead.
                return Err(Refusal::new(
                    Code::NotSupported,
                    "arpCheck needs a connected host on the L3's L2 network to send the probe; send arpCheck=false",
                ));
            }
            Ok(L3Read::CheckIp {
                l3_network_uuid,
                ip,
                ip_range_check: params::boolean(b, "ipRangeCheck").unwrap_or(true),
            })
        })()),
        _ => None,
    }
}

/// Answer an L3 sync read: the reply's fields.
pub fn run_read(
    txn: &dyn StateTxn,
    read: &L3Read,
    caller: &Caller,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let mut out = serde_json::Map::new();
    match read {
        L3Read::FreeIp {
            l3_network_uuid,
            ip_range_uuid,
            start,
            limit,
        } => {
            let range = match ip_range_uuid {
                Some(r) => Some(resource::require::<IpRange>(txn, r)?.1),
                None => None,
            };
            let l3_uuid = match (l3_network_uuid, &range) {
                (Some(l3), Some(r)) if *l3 != r.l3_network_uuid => {
                    return Err(validate::invalid_arg(format!(
                        "ip range[uuid:{}] does not belong to l3 network[uuid:{l3}]",
                        r.uuid
                    )))
                }
                (Some(l3), _) => l3.clone(),
                (None, Some(r)) => r.l3_network_uuid.clone(),
                (None, None) => {
                    return Err(validate::invalid_arg(
                        "l3NetworkUuid and ipRangeUuid cannot both be null",
                    ))
                }
            };
            let (_, l3) = resource::require_visible::<L3Network>(txn, caller, &l3_uuid)?;
            let used: Vec<u32> = used_ips(txn, &l3.uuid)?.into_iter().map(|u| u.ip).collect();
            let mut ranges: Vec<&IpRange> = match &range {
                Some(r) => vec![r],
                None => l3.ip_ranges.iter().collect(),
            };
            ranges.sort_by_key(|r| r.start_ip);
            let from = start.unwrap_or(0);
            let mut inventories = Vec::new();
            'ranges: for r in ranges {
                let first = u64::from(r.start_ip.max(from));
                let mut next_used = used.partition_point(|u| u64::from(*u) < first);
                for ip in first..=u64::from(r.end_ip) {
                    if inventories.len() >= *limit {
                        break 'ranges;
                    }
                    let ip = ip as u32;
                    if used.get(next_used) == Some(&ip) {
                        next_used += 1;
                        continue;
                    }
                    inventories.push(json!({
                        "ipRangeUuid": r.uuid,
                        "ip": ip_str(ip),
                        "netmask": ip_str(mask_of(r.prefix_len)),
                        "gateway": ip_str(r.gateway),
                    }));
                }
            }
            out.insert("inventories".into(), Value::Array(inventories));
        }
        L3Read::CheckIp {
            l3_network_uuid,
            ip,
            ip_range_check,
        } => {
            let (_, l3) = resource::require_visible::<L3Network>(txn, caller, l3_network_uuid)?;
            let in_range = l3.ip_ranges.iter().any(|r| r.contains(*ip));
            let used = txn.get(USED_IP_TABLE, &used_key(&l3.uuid, *ip))?.is_some();
            let reason = if used {
                Some(format!("ip[{}] is in use", ip_str(*ip)))
            } else if *ip_range_check && !in_range {
                Some(format!(
                    "ip[{}] is not in any ip range of l3 network[uuid:{}]",
                    ip_str(*ip),
                    l3.uuid
                ))
            } else {
                None
            };
            out.insert("available".into(), json!(reason.is_none()));
            if let Some(r) = reason {
                out.insert("reason".into(), json!(r));
            }
        }
    }
    Ok(out)
}

fn query_l3(
    txn: &dyn StateTxn,
    q: &crate::query::Query,
    caller: &Caller,
) -> Result<crate::query::QueryOutput, ApiError> {
    query(txn, L3Query::L3, q, caller)
}

fn query_ranges(
    txn: &dyn StateTxn,
    q: &crate::query::Query,
    caller: &Caller,
) -> Result<crate::query::QueryOutput, ApiError> {
    query(txn, L3Query::IpRange, q, caller)
}

fn read_call(p: &crate::plan::PlanInput) -> Result<crate::plan::Plan, Refusal> {
    match read_plan(p.call, p.body) {
        Some(read) => {
            let read = read?;
            Ok(crate::plan::Plan::Read {
                call: p.call,
                read: Box::new(move |txn, caller| run_read(txn, &read, caller)),
            })
        }
        None => Err(Refusal::new(
            Code::NotSupported,
            format!("API {} is not implemented", p.call.name),
        )),
    }
}

/// The L3 network family.
pub struct L3Networks;

impl crate::family::Family for L3Networks {
    type Op = L3Op;
    type Out = L3Result;
    const DECL: crate::family::FamilyDecl = {
        use crate::family::op_plan;
        use crate::family::route;
        use crate::family::CallDecl;
        use crate::family::KindDecl;
        use crate::resource::relations::OnDelete;
        use crate::resource::relations::Relation;
        use crate::rest::Body::Action as A;
        use crate::rest::Body::None as N;
        use crate::rest::Body::Params as P;
        use crate::rest::Method::Delete as D;
        use crate::rest::Method::Get as G;
        use crate::rest::Method::Post as Po;
        use crate::rest::Method::Put as Pu;
        crate::family::FamilyDecl {
            name: "l3",
            tables: &[TABLE, RANGE_TABLE, USED_IP_TABLE],
            kinds: &[
                KindDecl {
                    // VM NICs on it join this cascade with the VM family.
                    relations: &[Relation {
                        field: "l2NetworkUuid",
                        parent: "L2Network",
                        on_delete: OnDelete::Cascade,
                        on_parent_state: None,
                    }],
                    on_delete: Some(forget_used_ips),
                    ..KindDecl::new("L3Network", TABLE, &["L3NetworkVO"])
                },
                KindDecl {
                    relations: &[Relation {
                        field: "l3NetworkUuid",
                        parent: "L3Network",
                        on_delete: OnDelete::Cascade,
                        on_parent_state: None,
                    }],
                    ..KindDecl::new("IpRange", RANGE_TABLE, &["IpRangeVO"])
                },
            ],
            calls: &[
                CallDecl::new(
                    "CreateL3Network",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/l3-networks", P)],
                )
                .creating("L3NetworkVO"),
                CallDecl::new(
                    "UpdateL3Network",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/l3-networks/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "ChangeL3NetworkState",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/l3-networks/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "DeleteL3Network",
                    |p| op_plan(plan, p),
                    &[route(D, "/v1/l3-networks/{uuid}", N)],
                ),
                CallDecl::new(
                    "AddIpRange",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/l3-networks/{l3NetworkUuid}/ip-ranges", P)],
                )
                .creating("IpRangeVO"),
                CallDecl::new(
                    "AddIpRangeByNetworkCidr",
                    |p| op_plan(plan, p),
                    &[route(
                        Po,
                        "/v1/l3-networks/{l3NetworkUuid}/ip-ranges/by-cidr",
                        P,
                    )],
                )
                .creating("IpRangeVO"),
                CallDecl::new(
                    "UpdateIpRange",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/l3-networks/ip-ranges/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "DeleteIpRange",
                    |p| op_plan(plan, p),
                    &[route(D, "/v1/l3-networks/ip-ranges/{uuid}", N)],
                ),
                CallDecl::new(
                    "AddDnsToL3Network",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/l3-networks/{l3NetworkUuid}/dns", P)],
                ),
                CallDecl::new(
                    "RemoveDnsFromL3Network",
                    |p| op_plan(plan, p),
                    &[route(D, "/v1/l3-networks/{l3NetworkUuid}/dns/{dns}", N)],
                ),
                CallDecl::new(
                    "QueryL3Network",
                    |p| p.query(query_l3),
                    &[
                        route(G, "/v1/l3-networks", N),
                        route(G, "/v1/l3-networks/{uuid}", N),
                    ],
                ),
                CallDecl::new(
                    "QueryIpRange",
                    |p| p.query(query_ranges),
                    &[
                        route(G, "/v1/l3-networks/ip-ranges", N),
                        route(G, "/v1/l3-networks/ip-ranges/{uuid}", N),
                    ],
                ),
                CallDecl::new(
                    "GetFreeIp",
                    read_call,
                    &[
                        route(G, "/v1/l3-networks/ip/free", N),
                        route(G, "/v1/l3-networks/{l3NetworkUuid}/ip/free", N),
                        route(G, "/v1/l3-networks/ip-ranges/{ipRangeUuid}/ip/free", N),
                    ],
                ),
                CallDecl::new(
                    "CheckIpAvailability",
                    read_call,
                    &[route(
                        G,
                        "/v1/l3-networks/{l3NetworkUuid}/ip/{ip}/availability",
                        N,
                    )],
                ),
            ],
            flows: &[],
            #[cfg(test)]
            cases: cases::cases,
        }
    };

    fn apply(
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        caller: &Caller,
        op: L3Op,
    ) -> Result<L3Result, ApiError> {
        apply(txn, ctx, caller, op)
    }

    fn reply(out: &L3Result) -> Result<serde_json::Map<String, Value>, Refusal> {
        crate::family::inventory_reply(out.inventory())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::make_novlan;
    use crate::testing::make_zone;
    use crate::testing::normal;
    use crate::testing::u;
    use crate::testing::MemTxn;

    fn run(t: &mut MemTxn, op: L3Op) -> Result<L3Result, ApiError> {
        apply(t, &ctx(30), &Caller::admin(), op)
    }

    fn code(r: Result<L3Result, ApiError>) -> &'static str {
        r.unwrap_err().code()
    }

    fn create_op(n: u32, l2: &str, category: Option<&str>) -> L3Op {
        L3Op::Create {
            uuid: u(n),
            l2_network_uuid: l2.into(),
            name: format!("l3-{n}"),
            description: None,
            l3_type: None,
            category: category.map(str::to_string),
            ip_version: None,
            system: None,
            dns_domain: None,
            enable_ipam: None,
        }
    }

    fn range_op(n: u32, l3: &str, s: &str, e: &str, mask: &str, gw: Option<&str>) -> L3Op {
        L3Op::AddIpRange {
            uuid: u(n),
            l3_network_uuid: l3.into(),
            name: format!("r-{n}"),
            description: None,
            spec: RangeSpec::Explicit {
                start_ip: s.into(),
                end_ip: e.into(),
                netmask: mask.into(),
                gateway: gw.map(str::to_string),
            },
            ip_range_type: None,
        }
    }

    fn cidr_op(n: u32, l3: &str, cidr: &str, gw: Option<&str>) -> L3Op {
        L3Op::AddIpRange {
            uuid: u(n),
            l3_network_uuid: l3.into(),
            name: format!("r-{n}"),
            description: None,
            spec: RangeSpec::Cidr {
                cidr: cidr.into(),
                gateway: gw.map(str::to_string),
            },
            ip_range_type: None,
        }
    }

    fn alloc(t: &mut MemTxn, l3: &str, n: u32, ip: Option<&str>) -> Result<L3Result, ApiError> {
        run(
            t,
            L3Op::AllocateIp {
                l3_network_uuid: l3.into(),
                used_ip_uuid: u(n),
                required_ip: ip.map(str::to_string),
                used_for: "VmNic".into(),
                vm_nic_uuid: None,
            },
        )
    }

    fn setup() -> (MemTxn, String, String) {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        let l2 = make_novlan(&mut t, 60, &z, "eth0");
        run(&mut t, create_op(100, &l2, None)).unwrap();
        (t, l2, u(100))
    }

    #[test]
    fn manual_range_examples_are_accepted() {
        for (s, e, m, g) in [
            ("172.20.12.2", "172.20.12.255", "255.255.0.0", "172.20.0.1"),
            ("10.108.10.0", "10.108.11.255", "255.0.0.0", "10.0.0.1"),
            (
                "180.169.211.117",
                "180.169.211.118",
                "255.255.255.240",
                "180.169.211.113",
            ),
            (
                "192.168.210.10",
                "192.168.210.20",
                "255.255.240.0",
                "192.168.208.1",
            ),
        ] {
            let (mut t, _, l3) = setup();
            run(&mut t, range_op(110, &l3, s, e, m, Some(g))).unwrap();
        }
        for (cidr, start, end, gw) in [
            (
                "192.168.1.0/24",
                "192.168.1.2",
                "192.168.1.254",
                "192.168.1.1",
            ),
            ("172.31.0.0/18", "172.31.0.2", "172.31.63.254", "172.31.0.1"),
            (
                "192.168.1.1/24",
                "192.168.1.2",
                "192.168.1.254",
                "192.168.1.1",
            ),
            ("172.18.0.10/24", "172.18.0.2", "172.18.0.254", "172.18.0.1"),
        ] {
            let (mut t, _, l3) = setup();
            let L3Result::IpRange(r) = run(&mut t, cidr_op(110, &l3, cidr, None)).unwrap() else {
                panic!()
            };
            let inv = resource::inventory(&r);
            assert_eq!(
                (
                    inv["startIp"].as_str(),
                    inv["endIp"].as_str(),
                    inv["gateway"].as_str()
                ),
                (Some(start), Some(end), Some(gw)),
                "{cidr}"
            );
        }
    }

    #[test]
    fn l3_shape_dns_ranges_and_ipam() {
        let (mut t, l2, l3) = setup();
        let L3Result::IpRange(r) = run(
            &mut t,
            range_op(
                110,
                &l3,
                "192.168.0.10",
                "192.168.0.12",
                "255.255.255.0",
                Some("192.168.0.1"),
            ),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            serde_json::to_string(&resource::inventory(&r)).unwrap(),
            format!(
                r#"{{"uuid":"{}","l3NetworkUuid":"{l3}","name":"r-110","startIp":"192.168.0.10","endIp":"192.168.0.12","netmask":"255.255.255.0","gateway":"192.168.0.1","networkCidr":"192.168.0.0/24","ipVersion":4,"prefixLen":24,"ipRangeType":"Normal","createDate":"{d}","lastOpDate":"{d}"}}"#,
                u(110),
                d = java_date(30_000)
            )
        );
        run(
            &mut t,
            L3Op::AddDns {
                l3_network_uuid: l3.clone(),
                dns: "8.8.8.8".into(),
            },
        )
        .unwrap();
        let L3Result::L3(net) = run(
            &mut t,
            L3Op::AddDns {
                l3_network_uuid: l3.clone(),
                dns: "114.114.114.114".into(),
            },
        )
        .unwrap() else {
            panic!()
        };
        let inv = resource::inventory(&net);
        let keys: Vec<&str> = inv
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "uuid",
                "name",
                "type",
                "zoneUuid",
                "l2NetworkUuid",
                "state",
                "system",
                "category",
                "ipVersion",
                "enableIPAM",
                "isolated",
                "createDate",
                "lastOpDate",
                "dns",
                "ipRanges",
                "networkServices",
                "hostRoute",
                "reservedIpRanges"
            ]
        );
        assert_eq!(inv["dns"], json!(["8.8.8.8", "114.114.114.114"]));
        assert_eq!(inv["ipRanges"][0]["startIp"], "192.168.0.10");
        assert_eq!(inv["l2NetworkUuid"], json!(l2));
        let L3Result::L3(net) = run(
            &mut t,
            L3Op::RemoveDns {
                l3_network_uuid: l3.clone(),
                dns: "8.8.8.8".into(),
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(net.dns, vec!["114.114.114.114"]);
        // IPAM: static, lowest free, exhaustion, release.
        let L3Result::UsedIp(s) = alloc(&mut t, &l3, 200, Some("192.168.0.11")).unwrap() else {
            panic!()
        };
        assert_eq!(s.inventory()["ipInLong"], 3_232_235_531u32);
        let mut got = vec![];
        for n in 201..203 {
            let L3Result::UsedIp(x) = alloc(&mut t, &l3, n, None).unwrap() else {
                panic!()
            };
            got.push(ip_str(x.ip));
        }
        assert_eq!(got, ["192.168.0.10", "192.168.0.12"]);
        let before = t.tables.clone();
        assert_eq!(code(alloc(&mut t, &l3, 203, None)), "L3.1000", "exhausted");
        assert_eq!(
            code(alloc(&mut t, &l3, 203, Some("192.168.0.11"))),
            "L3.1000",
            "used"
        );
        assert_eq!(
            code(alloc(&mut t, &l3, 203, Some("192.168.0.99"))),
            "L3.1000",
            "not in range"
        );
        assert_eq!(t.tables, before);
        run(
            &mut t,
            L3Op::ReleaseIp {
                l3_network_uuid: l3.clone(),
                ip: "192.168.0.11".into(),
            },
        )
        .unwrap();
        let L3Result::UsedIp(x) = alloc(&mut t, &l3, 203, None).unwrap() else {
            panic!()
        };
        assert_eq!(ip_str(x.ip), "192.168.0.11");
        let (free, total, used) = free_ips(&t, &l3, 5).unwrap();
        assert_eq!((free, total, used), (vec![], 3, 3));
        run(
            &mut t,
            L3Op::ReleaseIp {
                l3_network_uuid: l3.clone(),
                ip: "192.168.0.12".into(),
            },
        )
        .unwrap();
        let (free, _, used) = free_ips(&t, &l3, 5).unwrap();
        assert_eq!((free, used), (vec!["192.168.0.12".to_string()], 2));
        alloc(&mut t, &l3, 204, Some("192.168.0.12")).unwrap();
        // Permissive delete of a range in use is refused; Enforcing releases.
        let before = t.tables.clone();
        assert_eq!(
            code(run(
                &mut t,
                L3Op::DeleteIpRange {
                    uuid: u(110),
                    enforcing: false
                }
            )),
            "SYS.1006"
        );
        assert_eq!(t.tables, before);
        run(
            &mut t,
            L3Op::DeleteIpRange {
                uuid: u(110),
                enforcing: true,
            },
        )
        .unwrap();
        assert!(used_ips(&t, &l3).unwrap().is_empty());
        assert!(resource::list::<IpRange>(&t).unwrap().is_empty());
        assert!(resource::require::<L3Network>(&t, &l3)
            .unwrap()
            .1
            .ip_ranges
            .is_empty());
    }

    #[test]
    fn lowest_free_skips_used_addresses() {
        let r = |s: u32, e: u32| IpRange {
            uuid: String::new(),
            l3_network_uuid: String::new(),
            name: String::new(),
            description: None,
            start_ip: s,
            end_ip: e,
            prefix_len: 24,
            gateway: 1,
            create_date: 0,
            last_op_date: 0,
        };
        let ranges = [r(20, 22), r(10, 12)];
        assert_eq!(lowest_free(&ranges, &[]), Some((1, 10)));
        assert_eq!(lowest_free(&ranges, &[10, 11]), Some((1, 12)));
        assert_eq!(lowest_free(&ranges, &[10, 11, 12, 20]), Some((0, 21)));
        assert_eq!(lowest_free(&ranges, &[10, 11, 12, 20, 21, 22]), None);
        assert_eq!(lowest_free(&[r(5, u32::MAX)], &[5]), Some((0, 6)));
    }

    #[test]
    fn update_state_delete_and_l2_cascade() {
        let (mut t, l2, l3) = setup();
        run(&mut t, cidr_op(110, &l3, "10.0.0.0/24", None)).unwrap();
        alloc(&mut t, &l3, 200, None).unwrap();
        let L3Result::L3(n) = run(
            &mut t,
            L3Op::Update {
                uuid: l3.clone(),
                name: Some("pub".into()),
                description: Some("d".into()),
                dns_domain: Some("zstack.org".into()),
                category: Some("Public".into()),
                system: None,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((n.category.as_str(), n.name.as_str()), ("Public", "pub"));
        let L3Result::L3(n) = run(
            &mut t,
            L3Op::ChangeState {
                uuid: l3.clone(),
                event: L3StateEvent::Disable,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(n.state, L3State::Disabled);
        let L3Result::IpRange(r) = run(
            &mut t,
            L3Op::UpdateIpRange {
                uuid: u(110),
                name: Some("renamed".into()),
                description: None,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(r.name, "renamed");
        assert_eq!(
            resource::require::<L3Network>(&t, &l3).unwrap().1.ip_ranges[0].name,
            "renamed"
        );
        run(&mut t, create_op(101, &l2, None)).unwrap();
        run(&mut t, L3Op::Delete { uuid: u(101) }).unwrap();
        assert!(resource::load::<L3Network>(&t, &u(101)).unwrap().is_none());
        crate::testing::delete_l2(&mut t, 31, &l2);
        assert!(resource::list::<L3Network>(&t).unwrap().is_empty());
        assert!(resource::list::<IpRange>(&t).unwrap().is_empty());
        assert!(t.scan_prefix(USED_IP_TABLE, b"", 10).unwrap().is_empty());
    }

    #[test]
    fn refusals_leave_state_unchanged() {
        let (mut t, l2, l3) = setup();
        run(
            &mut t,
            range_op(
                110,
                &l3,
                "10.0.0.10",
                "10.0.0.20",
                "255.255.255.0",
                Some("10.0.0.1"),
            ),
        )
        .unwrap();
        run(&mut t, create_op(101, &l2, None)).unwrap();
        let before = t.tables.clone();
        let bad_ranges = [
            ("10.0.0.30", "10.0.0.25", "255.255.255.0", Some("10.0.0.1")), // start > end
            ("10.0.0.30", "10.0.0.40", "255.255.255.0", None),             // no gateway
            ("10.0.0.30", "10.0.0.40", "255.0.255.0", Some("10.0.0.1")),   // bad mask
            ("10.0.0.30", "10.0.0.40", "0.0.0.0", Some("10.0.0.1")),       // zero mask
            ("10.0.0.30", "10.0.0.40", "255.255.255.0", Some("10.0.0.35")), // gateway inside
            ("10.0.0.30", "10.0.0.40", "255.255.255.0", Some("10.0.1.1")), // gateway outside subnet
            ("10.0.0.0", "10.0.0.40", "255.255.255.0", Some("10.0.0.1")),  // network address
            ("10.0.0.30", "10.0.0.255", "255.255.255.0", Some("10.0.0.1")), // broadcast
            ("10.0.0.30", "10.0.1.40", "255.255.255.0", Some("10.0.0.1")), // end in another subnet
            (
                "224.0.0.10",
                "224.0.0.20",
                "255.255.255.0",
                Some("224.0.0.1"),
            ), // multicast
            (
                "169.254.1.10",
                "169.254.1.20",
                "255.255.255.0",
                Some("169.254.1.1"),
            ), // link-local
            ("10.0.0.x", "10.0.0.20", "255.255.255.0", Some("10.0.0.1")),  // not an address
        ];
        for (s, e, m, g) in bad_ranges {
            assert_eq!(
                code(run(&mut t, range_op(111, &l3, s, e, m, g))),
                "SYS.1007",
                "{s}-{e}/{m} gw {g:?}"
            );
        }
        // Same L3: another subnet or gateway; other L3 on the same L2: overlap.
        assert_eq!(
            code(run(
                &mut t,
                range_op(
                    111,
                    &l3,
                    "10.0.1.10",
                    "10.0.1.20",
                    "255.255.255.0",
                    Some("10.0.1.1")
                )
            )),
            "SYS.1007"
        );
        assert_eq!(
            code(run(
                &mut t,
                range_op(
                    111,
                    &l3,
                    "10.0.0.30",
                    "10.0.0.40",
                    "255.255.255.0",
                    Some("10.0.0.2")
                )
            )),
            "SYS.1007"
        );
        assert_eq!(
            code(run(
                &mut t,
                range_op(
                    111,
                    &u(101),
                    "10.0.0.15",
                    "10.0.0.40",
                    "255.255.255.0",
                    Some("10.0.0.1")
                )
            )),
            "SYS.1007",
            "overlap on the L2"
        );
        assert_eq!(
            code(run(
                &mut t,
                range_op(
                    110,
                    &l3,
                    "10.0.0.30",
                    "10.0.0.40",
                    "255.255.255.0",
                    Some("10.0.0.1")
                )
            )),
            "SYS.1007",
            "dup"
        );
        assert_eq!(
            code(run(&mut t, cidr_op(111, &u(101), "10.9.0.0/31", None))),
            "SYS.1007"
        );
        assert_eq!(
            code(run(
                &mut t,
                cidr_op(111, &u(101), "10.9.0.0/24", Some("10.9.0.7"))
            )),
            "SYS.1007"
        );
        assert_eq!(
            code(run(&mut t, cidr_op(111, &u(101), "10.9.0.0/33", None))),
            "SYS.1007"
        );
        assert_eq!(
            code(run(
                &mut t,
                range_op(
                    111,
                    &u(99),
                    "10.9.0.2",
                    "10.9.0.3",
                    "255.255.255.0",
                    Some("10.9.0.1")
                )
            )),
            "SYS.1003"
        );
        // Create.
        assert_eq!(code(run(&mut t, create_op(102, &u(99), None))), "SYS.1003");
        assert_eq!(
            code(run(&mut t, create_op(102, &l2, Some("Weird")))),
            "SYS.1007"
        );
        assert_eq!(
            code(run(&mut t, create_op(102, &l2, Some("System")))),
            "SYS.1006",
            "shared L2"
        );
        let mut v6 = create_op(102, &l2, None);
        if let L3Op::Create { ip_version, .. } = &mut v6 {
            *ip_version = Some("6".into());
        }
        assert_eq!(code(run(&mut t, v6)), "SYS.1007");
        assert_eq!(
            code(run(&mut t, create_op(100, &l2, None))),
            "SYS.1007",
            "dup"
        );
        // DNS.
        let dns = |d: &str| L3Op::AddDns {
            l3_network_uuid: l3.clone(),
            dns: d.into(),
        };
        assert_eq!(code(run(&mut t, dns("not-an-ip"))), "SYS.1007");
        assert_eq!(
            code(run(
                &mut t,
                L3Op::RemoveDns {
                    l3_network_uuid: u(99),
                    dns: "1.1.1.1".into()
                }
            )),
            "SYS.1003"
        );
        assert_eq!(
            code(run(
                &mut t,
                L3Op::Update {
                    uuid: l3.clone(),
                    name: None,
                    description: None,
                    dns_domain: None,
                    category: Some("System".into()),
                    system: None
                }
            )),
            "SYS.1006"
        );
        assert_eq!(
            code(run(
                &mut t,
                L3Op::ChangeState {
                    uuid: u(99),
                    event: L3StateEvent::Enable
                }
            )),
            "SYS.1003"
        );
        assert_eq!(
            code(run(
                &mut t,
                L3Op::UpdateIpRange {
                    uuid: u(99),
                    name: None,
                    description: None
                }
            )),
            "SYS.1003"
        );
        // Normal accounts cannot touch the admin's L3 or build on its L2.
        for op in [
            create_op(103, &l2, None),
            L3Op::Delete { uuid: l3.clone() },
            dns("1.1.1.1"),
            L3Op::DeleteIpRange {
                uuid: u(110),
                enforcing: true,
            },
            range_op(
                112,
                &l3,
                "10.0.0.30",
                "10.0.0.40",
                "255.255.255.0",
                Some("10.0.0.1"),
            ),
        ] {
            assert_eq!(code(apply(&mut t, &ctx(31), &normal(), op)), "ID.1002");
        }
        assert_eq!(t.tables, before);
        run(&mut t, dns("1.1.1.1")).unwrap();
        let before = t.tables.clone();
        assert_eq!(
            code(run(&mut t, dns("1.1.1.1"))),
            "SYS.1007",
            "duplicate dns"
        );
        assert_eq!(t.tables, before);
    }

    #[test]
    fn system_l3_needs_dedicated_l2() {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        let l2 = make_novlan(&mut t, 60, &z, "eth0");
        run(&mut t, create_op(100, &l2, Some("System"))).unwrap();
        assert!(
            resource::require::<L3Network>(&t, &u(100))
                .unwrap()
                .1
                .system
        );
        assert_eq!(code(run(&mut t, create_op(101, &l2, None))), "SYS.1006");
    }
}

#[cfg(test)]
pub(crate) mod cases {
    //! Call-matrix cases of this family's calls (run by `testing::matrix`).

    use serde_json::json;

    use crate::testing::matrix::bad_query;
    use crate::testing::matrix::eq;
    use crate::testing::matrix::missing;
    use crate::testing::matrix::no;
    use crate::testing::matrix::ok;
    use crate::testing::matrix::Case;
    use crate::testing::matrix::Ids;
    use crate::testing::matrix::Parties;
    use crate::wire::errors::Code;

    /// The call-matrix cases of this family's calls.
    pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
        let Parties {
            admin, stranger, ..
        } = Parties::of(ids);
        let i = ids.clone();
        let mut m = Vec::new();
        // ---- L3 networks and IP ranges.
        {
            let vlan = i.vlan.clone();
            m.push(ok(
                "CreateL3Network",
                &admin,
                json!({"l2NetworkUuid": i.vlan, "name": "l3b"}),
                move |h, r| {
                    assert_eq!(r["inventory"]["l2NetworkUuid"], vlan.as_str());
                    assert_eq!(h.count("QueryL3Network", eq("l2NetworkUuid", &vlan)), 2);
                },
            ));
        }
        m.push(no(
            "CreateL3Network",
            &admin,
            json!({"l2NetworkUuid": missing(), "name": "l3b"}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "UpdateL3Network",
            &admin,
            json!({"uuid": i.l3, "dnsDomain": "zstack.org"}),
            |_, r| assert_eq!(r["inventory"]["dnsDomain"], "zstack.org"),
        ));
        m.push(no(
            "UpdateL3Network",
            &admin,
            json!({"uuid": missing(), "name": "x"}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "ChangeL3NetworkState",
            &admin,
            json!({"uuid": i.l3, "stateEvent": "disable"}),
            |_, r| assert_eq!(r["inventory"]["state"], "Disabled"),
        ));
        m.push(no(
            "ChangeL3NetworkState",
            &admin,
            json!({"uuid": i.l3, "stateEvent": "pause"}),
            Code::InvalidArgument,
        ));
        {
            let l3 = i.l3.clone();
            m.push(ok(
                "DeleteL3Network",
                &admin,
                json!({"uuid": i.l3}),
                move |h, _| {
                    assert_eq!(h.count("QueryL3Network", eq("uuid", &l3)), 0);
                    assert_eq!(h.count("QueryIpRange", eq("l3NetworkUuid", &l3)), 0);
                    assert_eq!(h.count("QuerySystemTag", eq("resourceUuid", &l3)), 0);
                },
            ));
        }
        m.push(no(
            "DeleteL3Network",
            &stranger,
            json!({"uuid": i.l3}),
            Code::PermissionDenied,
        ));
        m.push(ok(
            "AddIpRange",
            &admin,
            json!({"l3NetworkUuid": i.l3, "name": "r2", "startIp": "192.168.1.100", "endIp": "192.168.1.110", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}),
            |h, r| {
                assert_eq!(r["inventory"]["startIp"], "192.168.1.100");
                assert_eq!(h.count("QueryIpRange", json!([])), 2);
            },
        ));
        m.push(no(
            "AddIpRange",
            &admin,
            json!({"l3NetworkUuid": i.l3, "name": "r2", "startIp": "192.168.1.15", "endIp": "192.168.1.30", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "AddIpRangeByNetworkCidr",
            &admin,
            json!({"l3NetworkUuid": i.l3v, "name": "c", "networkCidr": "10.10.0.1/24"}),
            |_, r| assert_eq!(r["inventory"]["networkCidr"], "10.10.0.0/24"),
        ));
        m.push(no(
            "AddIpRangeByNetworkCidr",
            &admin,
            json!({"l3NetworkUuid": i.l3v, "name": "c", "networkCidr": "10.10.0.1/33"}),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "UpdateIpRange",
            &admin,
            json!({"uuid": i.ip_range, "name": "range-1"}),
            |_, r| assert_eq!(r["inventory"]["name"], "range-1"),
        ));
        m.push(no(
            "UpdateIpRange",
            &admin,
            json!({"uuid": missing(), "name": "x"}),
            Code::ResourceNotFound,
        ));
        {
            let r = i.ip_range.clone();
            m.push(ok(
                "DeleteIpRange",
                &admin,
                json!({"uuid": i.ip_range}),
                move |h, _| assert_eq!(h.count("QueryIpRange", eq("uuid", &r)), 0),
            ));
        }
        m.push(no(
            "DeleteIpRange",
            &stranger,
            json!({"uuid": i.ip_range}),
            Code::PermissionDenied,
        ));
        m.push(ok(
            "AddDnsToL3Network",
            &admin,
            json!({"l3NetworkUuid": i.l3, "dns": "1.1.1.1"}),
            |_, r| assert_eq!(r["inventory"]["dns"], json!(["8.8.8.8", "1.1.1.1"])),
        ));
        m.push(no(
            "AddDnsToL3Network",
            &admin,
            json!({"l3NetworkUuid": i.l3, "dns": "not-an-ip"}),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "RemoveDnsFromL3Network",
            &admin,
            json!({"l3NetworkUuid": i.l3, "dns": "8.8.8.8"}),
            |_, r| assert_eq!(r["inventory"]["dns"], json!([])),
        ));
        m.push(no(
            "RemoveDnsFromL3Network",
            &admin,
            json!({"l3NetworkUuid": missing(), "dns": "8.8.8.8"}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "QueryL3Network",
            &admin,
            json!({"conditions": eq("ipRanges.startIp", "192.168.1.10")}),
            |_, r| assert_eq!(r["inventories"][0]["dns"], json!(["8.8.8.8"])),
        ));
        m.push(no(
            "QueryL3Network",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        {
            let r = i.ip_range.clone();
            m.push(ok(
                "QueryIpRange",
                &admin,
                json!({"conditions": eq("networkCidr", "192.168.1.0/24")}),
                move |_, q| assert_eq!(q["inventories"][0]["uuid"], r.as_str()),
            ));
        }
        m.push(no(
            "QueryIpRange",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "GetFreeIp",
            &admin,
            json!({"l3NetworkUuid": i.l3, "limit": 2}),
            |_, r| {
                assert_eq!(r["inventories"][0]["ip"], "192.168.1.10");
                assert_eq!(r["inventories"][1]["ip"], "192.168.1.11");
            },
        ));
        m.push(no(
            "GetFreeIp",
            &admin,
            json!({"l3NetworkUuid": missing()}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "CheckIpAvailability",
            &admin,
            json!({"l3NetworkUuid": i.l3, "ip": "192.168.1.12"}),
            |_, r| assert_eq!(r["available"], true),
        ));
        m.push(no(
            "CheckIpAvailability",
            &admin,
            json!({"l3NetworkUuid": i.l3, "ip": "300.1.1.1"}),
            Code::InvalidArgument,
        ));
        m
    }
}
