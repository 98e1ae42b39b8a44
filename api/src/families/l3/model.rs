//! L3 records, commands and their apply. Ranges are checked in `addressing.rs`, addresses
//! handed out in `ipam.rs`; this file holds the records and the L3 network's own rules.

use std::net::IpAddr;

use serde::Deserialize;
use serde::Serialize;

use super::addressing;
use super::ipam;
use super::ipam::UsedIp;
use crate::net::mask_of;
use crate::resource;
use crate::resource::generic;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::resource::generic::Rename;
use crate::resource::relations;
use crate::resource::Resource;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The L3 table.
pub const TABLE: &str = "l3_network";
/// The kind name of L3 networks.
pub const KIND: &str = "L3Network";
/// The IP-range table.
pub const RANGE_TABLE: &str = "ip_range";
/// The kind name of IP ranges.
pub const RANGE_KIND: &str = "IpRange";
/// L3 categories.
pub const CATEGORIES: &[&str] = &["Public", "Private", "System"];

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
    /// Enabled or Disabled (a disabled L3 takes no new NICs).
    pub state: EnableState,
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

crate::described_record!(L3Network, IpRange);

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
        /// New name and description.
        rename: Rename,
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
        event: EnableEvent,
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
        /// New name and description.
        rename: Rename,
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

fn one_of(field: &str, v: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(validate::invalid_arg(format!(
            "valid values for field[{field}] are {allowed:?}, but {v} found"
        )))
    }
}

/// A record that may be absent, but when present must be one the caller may act on: deletes
/// of what is gone succeed, deletes of another account's resources do not (`ID.1002`).
pub(super) fn load_visible<R: Resource>(
    txn: &dyn StateTxn,
    caller: &Caller,
    uuid: &str,
) -> Result<Option<(String, R)>, ApiError> {
    match resource::load::<R>(txn, uuid)? {
        Some((owner, _)) if !caller.can_see(&owner) => {
            resource::require_visible::<R>(txn, caller, uuid).map(Some)
        }
        found => Ok(found),
    }
}

/// A system L3 needs an L2 of its own (spec 04 §2.4): no L3 joins an L2 carrying a system L3,
/// and a system L3 joins no L2 carrying any.
fn check_siblings(txn: &dyn StateTxn, l2_uuid: &str, category: &str) -> Result<(), ApiError> {
    let siblings = resource::find::<L3Network>(txn, "l2NetworkUuid", l2_uuid)?;
    if let Some((_, s)) = siblings.iter().find(|(_, s)| s.category == "System") {
        return Err(validate::op_failure(format!(
            "L2 network[uuid:{l2_uuid}] carries the system L3 network[uuid:{}] and can hold no other L3",
            s.uuid
        )));
    }
    if category == "System" && !siblings.is_empty() {
        return Err(validate::op_failure(format!(
            "a system L3 network needs a dedicated L2, but L2 network[uuid:{l2_uuid}] already has {} L3 network(s)",
            siblings.len()
        )));
    }
    Ok(())
}

/// The `UpdateL3Network` changes beyond name and description.
fn update(
    txn: &dyn StateTxn,
    l3: &mut L3Network,
    dns_domain: Option<String>,
    category: Option<String>,
    system: Option<bool>,
) -> Result<(), ApiError> {
    if let Some(d) = dns_domain {
        validate::max_len("dnsDomain", &d, 255)?;
        l3.dns_domain = Some(d);
    }
    if let Some(c) = category {
        one_of("category", &c, CATEGORIES)?;
        if c == "System" && l3.category != "System" {
            let n = resource::uuids_where::<L3Network>(txn, "l2NetworkUuid", &l3.l2_network_uuid)?
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
    Ok(())
}

fn add_dns(l3: &mut L3Network, dns: String) -> Result<(), ApiError> {
    if dns.parse::<IpAddr>().is_err() {
        return Err(validate::invalid_arg(format!(
            "dns[{dns}] is not a valid IP address"
        )));
    }
    if l3.dns.contains(&dns) {
        return Err(validate::invalid_arg(format!(
            "there has been a DNS[{dns}] on L3 network[uuid:{}]",
            l3.uuid
        )));
    }
    l3.dns.push(dns);
    Ok(())
}

pub(super) fn apply(
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
            generic::check_fields(&uuid, &name, description.as_deref())?;
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
            check_siblings(txn, &l2_network_uuid, &category)?;
            resource::refuse_duplicate::<L3Network>(txn, &uuid)?;
            let l3 = L3Network {
                uuid,
                name,
                description,
                l3_type,
                zone_uuid: l2.field("zoneUuid").unwrap_or_default().to_string(),
                l2_network_uuid,
                state: EnableState::Enabled,
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
            rename,
            dns_domain,
            category,
            system,
        } => generic::modify_visible(txn, ctx, caller, &uuid, |txn, l3: &mut L3Network| {
            rename.apply_to(l3)?;
            update(txn, l3, dns_domain, category, system)
        })
        .map(L3Result::L3),
        L3Op::ChangeState { uuid, event } => {
            generic::modify_visible(txn, ctx, caller, &uuid, |_, l3: &mut L3Network| {
                l3.state = event.target();
                Ok(())
            })
            .map(L3Result::L3)
        }
        L3Op::Delete { uuid } => {
            if load_visible::<L3Network>(txn, caller, &uuid)?.is_some() {
                relations::delete(txn, ctx, KIND, &uuid)?;
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
            generic::check_fields(&uuid, &name, description.as_deref())?;
            if let Some(t) = ip_range_type.as_deref().filter(|t| *t != "Normal") {
                return Err(validate::invalid_arg(format!(
                    "ipRangeType[{t}] is not supported, only Normal ranges are"
                )));
            }
            let (owner, l3) =
                resource::require_visible::<L3Network>(txn, caller, &l3_network_uuid)?;
            let b = addressing::bounds(&spec)?;
            let range = IpRange {
                uuid,
                l3_network_uuid,
                name,
                description,
                start_ip: b.start_ip,
                end_ip: b.end_ip,
                prefix_len: b.prefix_len,
                gateway: b.gateway,
                create_date: now,
                last_op_date: now,
            };
            addressing::add_range(txn, ctx, &owner, l3, range).map(L3Result::IpRange)
        }
        L3Op::UpdateIpRange { uuid, rename } => {
            addressing::rename_range(txn, ctx, caller, &uuid, rename).map(L3Result::IpRange)
        }
        L3Op::DeleteIpRange { uuid, enforcing } => {
            addressing::delete_range(txn, ctx, caller, &uuid, enforcing)?;
            Ok(L3Result::Deleted)
        }
        L3Op::AddDns {
            l3_network_uuid,
            dns,
        } => generic::modify_visible(txn, ctx, caller, &l3_network_uuid, |_, l3| add_dns(l3, dns))
            .map(L3Result::L3),
        L3Op::RemoveDns {
            l3_network_uuid,
            dns,
        } => generic::modify_visible(
            txn,
            ctx,
            caller,
            &l3_network_uuid,
            |_, l3: &mut L3Network| {
                l3.dns.retain(|d| *d != dns);
                Ok(())
            },
        )
        .map(L3Result::L3),
        L3Op::AllocateIp {
            l3_network_uuid,
            used_ip_uuid,
            required_ip,
            used_for,
            vm_nic_uuid,
        } => {
            validate::uuid("usedIpUuid", &used_ip_uuid)?;
            let (r, ip) = ipam::pick(txn, &l3_network_uuid, required_ip.as_deref())?;
            let used = UsedIp {
                uuid: used_ip_uuid,
                ip_range_uuid: r.uuid,
                l3_network_uuid,
                ip,
                prefix_len: r.prefix_len,
                gateway: r.gateway,
                used_for,
                vm_nic_uuid,
                create_date: now,
            };
            ipam::record(txn, &used)?;
            Ok(L3Result::UsedIp(used))
        }
        L3Op::ReleaseIp {
            l3_network_uuid,
            ip,
        } => {
            ipam::release(txn, &l3_network_uuid, &ip)?;
            Ok(L3Result::Deleted)
        }
    }
}
