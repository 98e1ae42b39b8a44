//! L2 networks (spec 04 §2.1–2.3, §4.1–4.3): `L2NoVlanNetwork`, `L2VlanNetwork`,
//! `VxlanNetworkPool` with its VNI ranges, and `VxlanNetwork`. All kinds share one table; the
//! query views (`QueryL2VlanNetwork`, ...) select by type. Deleting an L2 deletes its L3
//! networks (and a pool its VXLAN networks and VNI ranges).

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use crate::catalogue::CallSpec;
use crate::params;
use crate::params::Body;
use crate::resource;
use crate::resource::date;
use crate::resource::relations;
use crate::resource::Field;
use crate::resource::Resource;
use crate::validate;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::IntoCommand;
use crate::StateTxn;

/// The L2 table (every kind).
pub const TABLE: &str = "l2_network";
/// The VNI-range table.
pub const VNI_TABLE: &str = "vni_range";
/// Highest usable VNI (16 777 215 and 16 777 216 are reserved, spec 04 §2.1).
pub const MAX_VNI: u32 = 16_777_214;
/// Virtual-switch types this build drives.
pub const V_SWITCH_TYPES: &[&str] = &["LinuxBridge"];

/// What kind of L2 a record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum L2Kind {
    /// Untagged traffic on a host NIC.
    NoVlan,
    /// 802.1q-tagged traffic.
    Vlan {
        /// 1..=4094.
        vlan: u16,
    },
    /// A pool of VXLAN networks.
    VxlanPool {
        /// VTEP CIDR per attached cluster, in attach order.
        vtep_cidrs: Vec<(String, String)>,
    },
    /// One VNI of a pool.
    Vxlan {
        /// The VNI.
        vni: u32,
        /// The pool.
        pool_uuid: String,
    },
}

impl L2Kind {
    /// ZStack's type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            L2Kind::NoVlan => "L2NoVlanNetwork",
            L2Kind::Vlan { .. } => "L2VlanNetwork",
            L2Kind::VxlanPool { .. } => "VxlanNetworkPool",
            L2Kind::Vxlan { .. } => "VxlanNetwork",
        }
    }
}

/// An L2 network record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L2Network {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Zone.
    pub zone_uuid: String,
    /// Host NIC name.
    pub physical_interface: Option<String>,
    /// Kind and kind-specific fields.
    pub kind: L2Kind,
    /// `LinuxBridge`.
    pub v_switch_type: String,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
    /// Clusters it is attached to (a VXLAN network: its pool's), in attach order.
    pub attached_cluster_uuids: Vec<String>,
}

const INDEXED: &[&str] = &[
    "name",
    "zoneUuid",
    "physicalInterface",
    "type",
    "vlan",
    "vni",
    "poolUuid",
    "attachedClusterUuids",
];

impl L2Network {
    fn is_pool(&self) -> bool {
        matches!(self.kind, L2Kind::VxlanPool { .. })
    }

    fn is_vxlan(&self) -> bool {
        matches!(self.kind, L2Kind::Vxlan { .. })
    }

    fn vlan(&self) -> Option<Value> {
        match &self.kind {
            L2Kind::Vlan { vlan } => Some(json!(vlan)),
            _ => None,
        }
    }

    fn vxlan(&self) -> Option<(u32, &str)> {
        match &self.kind {
            L2Kind::Vxlan { vni, pool_uuid } => Some((*vni, pool_uuid.as_str())),
            _ => None,
        }
    }

    fn attached_cidrs(&self) -> Option<Value> {
        let L2Kind::VxlanPool { vtep_cidrs } = &self.kind else {
            return None;
        };
        let mut cidrs = Map::new();
        for (c, cidr) in vtep_cidrs {
            cidrs.insert(c.clone(), json!([cidr]));
        }
        Some(Value::Object(cidrs))
    }
}

/// The base `L2NetworkInventory`, what `QueryL2Network` answers for every kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct L2Base(pub L2Network);

impl Resource for L2Base {
    const KIND: &'static str = "L2Network";
    const TABLE: &'static str = TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.0.uuid)),
        Field::new("name", |r| json!(r.0.name)),
        Field::maybe("description", |r| {
            r.0.description.as_ref().map(|x| json!(x))
        }),
        Field::new("zoneUuid", |r| json!(r.0.zone_uuid)),
        Field::maybe("physicalInterface", |r| {
            r.0.physical_interface.as_ref().map(|x| json!(x))
        }),
        Field::new("type", |r| json!(r.0.kind.type_name())),
        Field::new("vSwitchType", |r| json!(r.0.v_switch_type)),
        Field::new("virtualNetworkId", |r| {
            json!(match &r.0.kind {
                L2Kind::Vlan { vlan } => u32::from(*vlan),
                L2Kind::Vxlan { vni, .. } => *vni,
                _ => 0,
            })
        }),
        Field::new("isolated", |_| json!(false)),
        // Private VLANs are not supported: always null, as ZStack shows them for these types.
        Field::maybe("pvlan", |_| None),
        Field::new("createDate", |r| date(r.0.create_date)),
        Field::new("lastOpDate", |r| date(r.0.last_op_date)),
        Field::new("attachedClusterUuids", |r| {
            json!(r.0.attached_cluster_uuids)
        }),
    ];
    const INDEXED: &'static [&'static str] = INDEXED;

    fn uuid(&self) -> &str {
        &self.0.uuid
    }
}

fn base_inventory(l2: &L2Network) -> Value {
    resource::inventory(&L2Base(l2.clone()))
}

impl Resource for L2Network {
    const KIND: &'static str = "L2Network";
    const TABLE: &'static str = TABLE;
    /// The runtime class's inventory (what replies carry): subclass fields first.
    const INVENTORY: &'static [Field<Self>] = &[
        Field::maybe("vlan", L2Network::vlan),
        Field::maybe("vni", |r| r.vxlan().map(|(vni, _)| json!(vni))),
        Field::maybe("poolUuid", |r| r.vxlan().map(|(_, pool)| json!(pool))),
        Field::splice(base_inventory, resource::fields::<L2Base>),
        Field::maybe("attachedCidrs", L2Network::attached_cidrs),
    ];
    const INDEXED: &'static [&'static str] = INDEXED;

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

macro_rules! l2_view {
    ($(#[$doc:meta])* $name:ident, $kind:literal, [$($field:expr),* $(,)?]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub L2Network);

        impl Resource for $name {
            const KIND: &'static str = $kind;
            const TABLE: &'static str = TABLE;
            const INVENTORY: &'static [Field<Self>] = &[$($field),*];
            const INDEXED: &'static [&'static str] = INDEXED;

            fn uuid(&self) -> &str {
                &self.0.uuid
            }
        }
    };
}

l2_view!(
    /// The `L2VlanNetworkInventory` view, for `QueryL2VlanNetwork`.
    L2VlanView,
    "L2VlanNetwork",
    [
        Field::maybe("vlan", |r| r.0.vlan()),
        Field::splice(|r| base_inventory(&r.0), resource::fields::<L2Base>),
    ]
);
l2_view!(
    /// The `L2VxlanNetworkInventory` view, for `QueryL2VxlanNetwork`.
    VxlanView,
    "VxlanNetwork",
    [
        Field::maybe("vni", |r| r.0.vxlan().map(|(vni, _)| json!(vni))),
        Field::maybe("poolUuid", |r| r.0.vxlan().map(|(_, pool)| json!(pool))),
        Field::splice(|r| base_inventory(&r.0), resource::fields::<L2Base>),
    ]
);
l2_view!(
    /// The `L2VxlanNetworkPoolInventory` view, for `QueryL2VxlanNetworkPool`.
    PoolView,
    "VxlanNetworkPool",
    [
        Field::splice(|r| base_inventory(&r.0), resource::fields::<L2Base>),
        Field::maybe("attachedCidrs", |r| r.0.attached_cidrs()),
    ]
);

/// Which L2 query: every kind with base inventories, or one kind's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Query {
    /// `QueryL2Network`.
    All,
    /// `QueryL2VlanNetwork`.
    Vlan,
    /// `QueryL2VxlanNetwork`.
    Vxlan,
    /// `QueryL2VxlanNetworkPool`.
    Pool,
    /// `QueryVniRange`.
    VniRange,
}

/// Run an L2-family query.
pub fn query(
    txn: &dyn StateTxn,
    which: L2Query,
    q: &crate::query::Query,
    caller: &Caller,
) -> Result<crate::query::QueryOutput, ApiError> {
    let vis = |o: &str| caller.can_see(o);
    match which {
        // Base-class inventories, as ZStack's QueryL2Network answers.
        L2Query::All => resource::query_filtered::<L2Base>(txn, q, |o, _| vis(o), |_, _| Ok(())),
        L2Query::Vlan => resource::query_filtered::<L2VlanView>(
            txn,
            q,
            |o, r| vis(o) && matches!(r.0.kind, L2Kind::Vlan { .. }),
            |_, _| Ok(()),
        ),
        L2Query::Vxlan => resource::query_filtered::<VxlanView>(
            txn,
            q,
            |o, r| vis(o) && r.0.is_vxlan(),
            |_, _| Ok(()),
        ),
        L2Query::Pool => resource::query_filtered::<PoolView>(
            txn,
            q,
            |o, r| vis(o) && r.0.is_pool(),
            |_, _| Ok(()),
        ),
        L2Query::VniRange => resource::query::<VniRange>(txn, q, vis),
    }
}

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

impl Resource for VniRange {
    const KIND: &'static str = "VniRange";
    const TABLE: &'static str = VNI_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("startVni", |r| json!(r.start_vni)),
        Field::new("endVni", |r| json!(r.end_vni)),
        Field::new("l2NetworkUuid", |r| json!(r.l2_network_uuid)),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
    ];
    const INDEXED: &'static [&'static str] = &["name", "l2NetworkUuid"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// Fields shared by every L2 create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L2Common {
    /// New uuid.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Zone (optional for a VXLAN network: its pool's).
    pub zone_uuid: Option<String>,
    /// Host NIC name.
    pub physical_interface: Option<String>,
    /// Virtual switch type (default LinuxBridge).
    pub v_switch_type: Option<String>,
}

/// L2 commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum L2Op {
    /// `CreateL2NoVlanNetwork`.
    CreateNoVlan(L2Common),
    /// `CreateL2VlanNetwork`.
    CreateVlan {
        /// Common fields.
        common: L2Common,
        /// VLAN id.
        vlan: i64,
    },
    /// `CreateL2VxlanNetworkPool`.
    CreatePool(L2Common),
    /// `CreateL2VxlanNetwork`.
    CreateVxlan {
        /// Common fields.
        common: L2Common,
        /// The pool.
        pool_uuid: String,
        /// The VNI (a free one of the pool's ranges when absent).
        vni: Option<i64>,
    },
    /// `CreateVniRange`.
    CreateVniRange {
        /// New uuid.
        uuid: String,
        /// The pool.
        l2_network_uuid: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
        /// First VNI.
        start_vni: i64,
        /// Last VNI.
        end_vni: i64,
    },
    /// `DeleteVniRange` (refused while a VXLAN network uses a VNI of it).
    DeleteVniRange {
        /// Range.
        uuid: String,
    },
    /// `UpdateL2Network`.
    Update {
        /// L2.
        uuid: String,
        /// New name.
        name: Option<String>,
        /// New description.
        description: Option<String>,
    },
    /// `AttachL2NetworkToCluster`.
    Attach {
        /// L2.
        uuid: String,
        /// Cluster.
        cluster_uuid: String,
        /// VTEP CIDR (pools only, from the `...::cidr::{cidr}` system tag).
        vtep_cidr: Option<String>,
    },
    /// `DetachL2NetworkFromCluster`.
    Detach {
        /// L2.
        uuid: String,
        /// Cluster.
        cluster_uuid: String,
    },
    /// `DeleteL2Network`.
    Delete {
        /// L2.
        uuid: String,
    },
}

/// Answer of an L2 command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum L2Result {
    /// The L2 after the change.
    L2(L2Network),
    /// A VNI range.
    VniRange(VniRange),
    /// Deleted (or already absent).
    Deleted,
}

impl L2Result {
    /// The `inventory` of the reply, if any.
    pub fn inventory(&self) -> Option<Value> {
        match self {
            L2Result::L2(l) => Some(resource::inventory(l)),
            L2Result::VniRange(r) => Some(resource::inventory(r)),
            L2Result::Deleted => None,
        }
    }
}

fn check_interface(v: &str) -> Result<(), ApiError> {
    let ok = !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(validate::invalid_arg(format!(
            "field[physicalInterface] value {v:?} is not a valid network interface name"
        )))
    }
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

/// Check the common create fields and build the record (kind filled by the caller).
fn new_record(
    txn: &dyn StateTxn,
    ctx: &ApplyCtx,
    c: L2Common,
    kind: L2Kind,
    zone_uuid: String,
    interface_required: bool,
) -> Result<L2Network, ApiError> {
    validate::uuid("resourceUuid", &c.uuid)?;
    validate::name("name", &c.name)?;
    validate::description(c.description.as_deref())?;
    match (&c.physical_interface, interface_required) {
        (Some(p), _) => check_interface(p)?,
        (None, true) => {
            return Err(validate::invalid_arg(
                "field[physicalInterface] is mandatory for this L2 network type",
            ))
        }
        (None, false) => {}
    }
    let v_switch_type = c.v_switch_type.unwrap_or_else(|| "LinuxBridge".into());
    if !V_SWITCH_TYPES.contains(&v_switch_type.as_str()) {
        return Err(validate::invalid_arg(format!(
            "unsupported vSwitchType[{v_switch_type}], supported types are {V_SWITCH_TYPES:?}"
        )));
    }
    resource::require_ref(txn, "Zone", &zone_uuid)?;
    if resource::load::<L2Network>(txn, &c.uuid)?.is_some() {
        return Err(validate::duplicate_uuid("L2Network", &c.uuid));
    }
    Ok(L2Network {
        uuid: c.uuid,
        name: c.name,
        description: c.description,
        zone_uuid,
        physical_interface: c.physical_interface,
        kind,
        v_switch_type,
        create_date: ctx.proposed_at_ms,
        last_op_date: ctx.proposed_at_ms,
        attached_cluster_uuids: Vec::new(),
    })
}

/// Whether two L2s are "identical" for a cluster (spec 04 gaps #11): same interface for
/// NoVlan, same (interface, VLAN) for Vlan, same pool for VXLAN.
fn identical(a: &L2Network, b: &L2Network) -> bool {
    match (&a.kind, &b.kind) {
        (L2Kind::NoVlan, L2Kind::NoVlan) => a.physical_interface == b.physical_interface,
        (L2Kind::Vlan { vlan: x }, L2Kind::Vlan { vlan: y }) => {
            x == y && a.physical_interface == b.physical_interface
        }
        _ => false,
    }
}

/// Cluster deletion: forget the cluster in the L2 (the relation's detach).
fn forget_cluster(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    cluster_uuid: &str,
) -> Result<bool, ApiError> {
    let Some((owner, mut l2)) = resource::load::<L2Network>(txn, uuid)? else {
        return Ok(false);
    };
    l2.attached_cluster_uuids.retain(|c| c != cluster_uuid);
    if let L2Kind::VxlanPool { vtep_cidrs } = &mut l2.kind {
        vtep_cidrs.retain(|(c, _)| c != cluster_uuid);
    }
    l2.last_op_date = ctx.proposed_at_ms;
    resource::save(txn, &owner, &l2)?;
    Ok(l2.attached_cluster_uuids.is_empty())
}

fn set_vxlan_clusters(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    pool: &L2Network,
) -> Result<(), ApiError> {
    for (owner, mut v) in resource::find::<L2Network>(txn, "poolUuid", &pool.uuid)? {
        v.attached_cluster_uuids = pool.attached_cluster_uuids.clone();
        v.last_op_date = ctx.proposed_at_ms;
        resource::save(txn, &owner, &v)?;
    }
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
    let used: std::collections::BTreeSet<u32> =
        resource::find::<L2Network>(txn, "poolUuid", pool_uuid)?
            .into_iter()
            .filter_map(|(_, l)| match l.kind {
                L2Kind::Vxlan { vni, .. } => Some(vni),
                _ => None,
            })
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
    let total: u64 = ranges.iter().map(|(s, e)| u64::from(e - s) + 1).sum();
    if total == 0 || used.len() as u64 >= total {
        return Err(validate::op_failure(format!(
            "no available vni in pool[uuid:{pool_uuid}]"
        )));
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
    for k in 0..total {
        let v = nth((start + k) % total);
        if !used.contains(&v) {
            return Ok(v);
        }
    }
    Err(validate::op_failure(format!(
        "no available vni in pool[uuid:{pool_uuid}]"
    )))
}

pub(crate) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: L2Op,
) -> Result<L2Result, ApiError> {
    let now = ctx.proposed_at_ms;
    match op {
        L2Op::CreateNoVlan(c) => {
            caller.require_admin("L2 network")?;
            let zone = c.zone_uuid.clone().unwrap_or_default();
            let l2 = new_record(txn, ctx, c, L2Kind::NoVlan, zone, true)?;
            for (_, other) in resource::find::<L2Network>(txn, "zoneUuid", &l2.zone_uuid)? {
                if identical(&other, &l2) {
                    return Err(validate::invalid_arg(format!(
                        "there has been an L2NoVlanNetwork[uuid:{}] on physical interface[{}] in zone[uuid:{}]; one interface backs only one NoVlan network",
                        other.uuid,
                        l2.physical_interface.as_deref().unwrap_or(""),
                        l2.zone_uuid
                    )));
                }
            }
            resource::save(txn, &caller.account_uuid, &l2)?;
            Ok(L2Result::L2(l2))
        }
        L2Op::CreateVlan { common, vlan } => {
            caller.require_admin("L2 network")?;
            let vlan = u16::try_from(vlan)
                .ok()
                .filter(|v| (1..=4094).contains(v))
                .ok_or_else(|| {
                    validate::invalid_arg(format!(
                        "field[vlan] must be in range of [1, 4094], got {vlan}"
                    ))
                })?;
            let zone = common.zone_uuid.clone().unwrap_or_default();
            let l2 = new_record(txn, ctx, common, L2Kind::Vlan { vlan }, zone, true)?;
            for (_, other) in resource::find::<L2Network>(txn, "zoneUuid", &l2.zone_uuid)? {
                if identical(&other, &l2) {
                    return Err(validate::invalid_arg(format!(
                        "there has been an L2VlanNetwork[uuid:{}] with vlan[{vlan}] on physical interface[{}] in zone[uuid:{}]",
                        other.uuid,
                        l2.physical_interface.as_deref().unwrap_or(""),
                        l2.zone_uuid
                    )));
                }
            }
            resource::save(txn, &caller.account_uuid, &l2)?;
            Ok(L2Result::L2(l2))
        }
        L2Op::CreatePool(c) => {
            caller.require_admin("VXLAN pool")?;
            let zone = c.zone_uuid.clone().unwrap_or_default();
            let l2 = new_record(
                txn,
                ctx,
                c,
                L2Kind::VxlanPool {
                    vtep_cidrs: Vec::new(),
                },
                zone,
                false,
            )?;
            resource::save(txn, &caller.account_uuid, &l2)?;
            Ok(L2Result::L2(l2))
        }
        L2Op::CreateVxlan {
            common,
            pool_uuid,
            vni,
        } => {
            // Normal accounts create VXLAN networks from the admin's pool (spec 05).
            let (_, pool) = resource::require::<L2Network>(txn, &pool_uuid)?;
            if !pool.is_pool() {
                return Err(validate::invalid_arg(format!(
                    "L2 network[uuid:{pool_uuid}] is not a VxlanNetworkPool"
                )));
            }
            if let Some(z) = common.zone_uuid.as_deref().filter(|z| *z != pool.zone_uuid) {
                return Err(validate::invalid_arg(format!(
                    "zone[uuid:{z}] differs from the zone[uuid:{}] of pool[uuid:{pool_uuid}]",
                    pool.zone_uuid
                )));
            }
            let mut common = common;
            if common.physical_interface.is_none() {
                common.physical_interface = pool.physical_interface.clone();
            }
            let vni = pick_vni(txn, &pool_uuid, vni, &common.uuid)?;
            let mut l2 = new_record(
                txn,
                ctx,
                common,
                L2Kind::Vxlan {
                    vni,
                    pool_uuid: pool_uuid.clone(),
                },
                pool.zone_uuid.clone(),
                false,
            )?;
            l2.attached_cluster_uuids = pool.attached_cluster_uuids.clone();
            resource::save(txn, &caller.account_uuid, &l2)?;
            Ok(L2Result::L2(l2))
        }
        L2Op::CreateVniRange {
            uuid,
            l2_network_uuid,
            name,
            description,
            start_vni,
            end_vni,
        } => {
            caller.require_admin("VNI range")?;
            validate::uuid("resourceUuid", &uuid)?;
            validate::name("name", &name)?;
            validate::description(description.as_deref())?;
            let s = check_vni("startVni", start_vni)?;
            let e = check_vni("endVni", end_vni)?;
            if s > e {
                return Err(validate::invalid_arg(format!(
                    "startVni[{s}] must not be greater than endVni[{e}]"
                )));
            }
            let (_, pool) = resource::require::<L2Network>(txn, &l2_network_uuid)?;
            if !pool.is_pool() {
                return Err(validate::invalid_arg(format!(
                    "L2 network[uuid:{l2_network_uuid}] is not a VxlanNetworkPool"
                )));
            }
            for (_, r) in resource::find::<VniRange>(txn, "l2NetworkUuid", &l2_network_uuid)? {
                if s <= r.end_vni && r.start_vni <= e {
                    return Err(validate::invalid_arg(format!(
                        "vni range[{s}, {e}] overlaps range[uuid:{}, {}-{}] of the pool",
                        r.uuid, r.start_vni, r.end_vni
                    )));
                }
            }
            if resource::load::<VniRange>(txn, &uuid)?.is_some() {
                return Err(validate::duplicate_uuid("VniRange", &uuid));
            }
            let r = VniRange {
                uuid,
                name,
                description,
                start_vni: s,
                end_vni: e,
                l2_network_uuid,
                create_date: now,
                last_op_date: now,
            };
            resource::save(txn, &caller.account_uuid, &r)?;
            Ok(L2Result::VniRange(r))
        }
        L2Op::DeleteVniRange { uuid } => {
            caller.require_admin("VNI range")?;
            let Some((_, r)) = resource::load::<VniRange>(txn, &uuid)? else {
                return Ok(L2Result::Deleted);
            };
            for (_, v) in resource::find::<L2Network>(txn, "poolUuid", &r.l2_network_uuid)? {
                if let L2Kind::Vxlan { vni, .. } = v.kind {
                    if (r.start_vni..=r.end_vni).contains(&vni) {
                        return Err(validate::op_failure(format!(
                            "vni range[uuid:{uuid}] is in use: VxlanNetwork[uuid:{}] has vni {vni}",
                            v.uuid
                        )));
                    }
                }
            }
            relations::delete(txn, ctx, "VniRange", &uuid)?;
            Ok(L2Result::Deleted)
        }
        L2Op::Update {
            uuid,
            name,
            description,
        } => {
            let (owner, mut l2) = resource::require_visible::<L2Network>(txn, caller, &uuid)?;
            if let Some(n) = name {
                validate::name("name", &n)?;
                l2.name = n;
            }
            if let Some(d) = description {
                validate::description(Some(&d))?;
                l2.description = Some(d);
            }
            l2.last_op_date = now;
            resource::save(txn, &owner, &l2)?;
            Ok(L2Result::L2(l2))
        }
        L2Op::Attach {
            uuid,
            cluster_uuid,
            vtep_cidr,
        } => {
            caller.require_admin("L2 network")?;
            let (owner, mut l2) = resource::require::<L2Network>(txn, &uuid)?;
            let cluster = resource::require_ref(txn, "Cluster", &cluster_uuid)?;
            let cluster_zone = cluster.field("zoneUuid").unwrap_or_default();
            if l2.is_vxlan() {
                return Err(validate::op_failure(format!(
                    "VxlanNetwork[uuid:{uuid}] cannot be attached to a cluster; attach its pool"
                )));
            }
            if cluster_zone != l2.zone_uuid {
                return Err(validate::invalid_arg(format!(
                    "L2 network[uuid:{uuid}] is in zone[uuid:{}] but cluster[uuid:{cluster_uuid}] is in zone[uuid:{}], they must be in the same zone",
                    l2.zone_uuid, cluster_zone
                )));
            }
            if l2.attached_cluster_uuids.contains(&cluster_uuid) {
                return Err(validate::op_failure(format!(
                    "L2 network[uuid:{uuid}] has been attached to cluster[uuid:{cluster_uuid}]"
                )));
            }
            for (_, other) in
                resource::find::<L2Network>(txn, "attachedClusterUuids", &cluster_uuid)?
            {
                if identical(&other, &l2) {
                    return Err(validate::op_failure(format!(
                        "cluster[uuid:{cluster_uuid}] already has an identical L2 network[uuid:{}] on physical interface[{}]",
                        other.uuid,
                        other.physical_interface.as_deref().unwrap_or("")
                    )));
                }
            }
            if let L2Kind::VxlanPool { vtep_cidrs } = &mut l2.kind {
                let Some(cidr) = vtep_cidr else {
                    return Err(validate::invalid_arg(format!(
                        "attaching VxlanNetworkPool[uuid:{uuid}] to a cluster needs a VTEP CIDR (system tag l2NetworkUuid::{uuid}::clusterUuid::{cluster_uuid}::cidr::{{cidr}})"
                    )));
                };
                let (net, prefix) = crate::net::parse_cidr(&cidr)?;
                vtep_cidrs.push((
                    cluster_uuid.clone(),
                    format!("{}/{prefix}", crate::net::ip_str(net)),
                ));
            }
            l2.attached_cluster_uuids.push(cluster_uuid);
            l2.last_op_date = now;
            resource::save(txn, &owner, &l2)?;
            if l2.is_pool() {
                set_vxlan_clusters(txn, ctx, &l2)?;
            }
            Ok(L2Result::L2(l2))
        }
        L2Op::Detach { uuid, cluster_uuid } => {
            caller.require_admin("L2 network")?;
            let (owner, mut l2) = resource::require::<L2Network>(txn, &uuid)?;
            resource::require_ref(txn, "Cluster", &cluster_uuid)?;
            if !l2.attached_cluster_uuids.contains(&cluster_uuid) || l2.is_vxlan() {
                return Err(validate::op_failure(format!(
                    "L2 network[uuid:{uuid}] is not attached to cluster[uuid:{cluster_uuid}]"
                )));
            }
            l2.attached_cluster_uuids.retain(|c| *c != cluster_uuid);
            if let L2Kind::VxlanPool { vtep_cidrs } = &mut l2.kind {
                vtep_cidrs.retain(|(c, _)| *c != cluster_uuid);
            }
            l2.last_op_date = now;
            resource::save(txn, &owner, &l2)?;
            if l2.is_pool() {
                set_vxlan_clusters(txn, ctx, &l2)?;
            }
            Ok(L2Result::L2(l2))
        }
        L2Op::Delete { uuid } => {
            let Some((owner, l2)) = resource::load::<L2Network>(txn, &uuid)? else {
                return Ok(L2Result::Deleted);
            };
            if l2.is_vxlan() {
                if !caller.can_see(&owner) {
                    resource::require_visible::<L2Network>(txn, caller, &uuid)?;
                }
            } else {
                caller.require_admin("L2 network")?;
            }
            relations::delete(txn, ctx, "L2Network", &uuid)?;
            Ok(L2Result::Deleted)
        }
    }
}

/// The VTEP CIDR of a pool attach, from the system tag
/// `l2NetworkUuid::{uuid}::clusterUuid::{uuid}::cidr::{cidr}` (ZStack's way to pass it).
fn vtep_cidr_tag(b: &Body) -> Option<String> {
    b.get("systemTags")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|t| {
            t.split_once("::cidr::")
                .map(|(_, c)| c.trim_matches(['{', '}']).to_string())
        })
}

/// Request → command for the L2 calls (`None`: not one of them).
pub fn plan(
    call: &CallSpec,
    b: &Body,
    caller: &Caller,
    new_uuid: &str,
) -> Option<Result<Command, Refusal>> {
    let common = || -> Result<L2Common, Refusal> {
        Ok(L2Common {
            uuid: params::new_uuid(b, new_uuid),
            name: params::required(b, "name", call)?,
            description: params::string(b, "description"),
            zone_uuid: params::string(b, "zoneUuid"),
            physical_interface: params::string(b, "physicalInterface"),
            v_switch_type: params::string(b, "vSwitchType"),
        })
    };
    let zone_required = || params::required(b, "zoneUuid", call).map(|_| ());
    let pair = || -> Result<(String, String), Refusal> {
        Ok((
            params::required(b, "l2NetworkUuid", call)?,
            params::required(b, "clusterUuid", call)?,
        ))
    };
    let op: Result<L2Op, Refusal> = match call.name.as_str() {
        "CreateL2NoVlanNetwork" => zone_required().and_then(|_| common().map(L2Op::CreateNoVlan)),
        "CreateL2VlanNetwork" => (|| {
            zone_required()?;
            Ok(L2Op::CreateVlan {
                common: common()?,
                vlan: params::required_int(b, "vlan", call)?,
            })
        })(),
        "CreateL2VxlanNetworkPool" => zone_required().and_then(|_| common().map(L2Op::CreatePool)),
        "CreateL2VxlanNetwork" => (|| {
            Ok(L2Op::CreateVxlan {
                common: common()?,
                pool_uuid: params::required(b, "poolUuid", call)?,
                vni: params::int(b, "vni", call)?,
            })
        })(),
        "CreateVniRange" => (|| {
            Ok(L2Op::CreateVniRange {
                uuid: params::new_uuid(b, new_uuid),
                l2_network_uuid: params::required(b, "l2NetworkUuid", call)?,
                name: params::required(b, "name", call)?,
                description: params::string(b, "description"),
                start_vni: params::required_int(b, "startVni", call)?,
                end_vni: params::required_int(b, "endVni", call)?,
            })
        })(),
        "DeleteVniRange" => {
            params::required(b, "uuid", call).map(|uuid| L2Op::DeleteVniRange { uuid })
        }
        "UpdateL2Network" => params::required(b, "uuid", call).map(|uuid| L2Op::Update {
            uuid,
            name: params::string(b, "name"),
            description: params::string(b, "description"),
        }),
        "AttachL2NetworkToCluster" => pair().map(|(uuid, cluster_uuid)| L2Op::Attach {
            uuid,
            cluster_uuid,
            vtep_cidr: vtep_cidr_tag(b),
        }),
        "DetachL2NetworkFromCluster" => {
            pair().map(|(uuid, cluster_uuid)| L2Op::Detach { uuid, cluster_uuid })
        }
        "DeleteL2Network" => params::required(b, "uuid", call).map(|uuid| L2Op::Delete { uuid }),
        _ => return None,
    };
    Some(op.map(|op| op.command(caller.clone())))
}

fn query_all(
    txn: &dyn StateTxn,
    q: &crate::query::Query,
    caller: &Caller,
) -> Result<crate::query::QueryOutput, ApiError> {
    query(txn, L2Query::All, q, caller)
}

fn query_vlan(
    txn: &dyn StateTxn,
    q: &crate::query::Query,
    caller: &Caller,
) -> Result<crate::query::QueryOutput, ApiError> {
    query(txn, L2Query::Vlan, q, caller)
}

fn query_vxlan(
    txn: &dyn StateTxn,
    q: &crate::query::Query,
    caller: &Caller,
) -> Result<crate::query::QueryOutput, ApiError> {
    query(txn, L2Query::Vxlan, q, caller)
}

fn query_pool(
    txn: &dyn StateTxn,
    q: &crate::query::Query,
    caller: &Caller,
) -> Result<crate::query::QueryOutput, ApiError> {
    query(txn, L2Query::Pool, q, caller)
}

fn query_vnirange(
    txn: &dyn StateTxn,
    q: &crate::query::Query,
    caller: &Caller,
) -> Result<crate::query::QueryOutput, ApiError> {
    query(txn, L2Query::VniRange, q, caller)
}

/// The L2 network family.
pub struct L2Networks;

impl crate::family::Family for L2Networks {
    type Op = L2Op;
    type Out = L2Result;
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
            name: "l2",
            tables: &[TABLE, VNI_TABLE],
            kinds: &[
                KindDecl {
                    relations: &[
                        Relation {
                            field: "zoneUuid",
                            parent: "Zone",
                            on_delete: OnDelete::Cascade,
                            on_parent_state: None,
                        },
                        Relation {
                            field: "attachedClusterUuids",
                            parent: "Cluster",
                            on_delete: OnDelete::Detach(forget_cluster),
                            on_parent_state: None,
                        },
                        // A pool's VXLAN networks go with it.
                        Relation {
                            field: "poolUuid",
                            parent: "L2Network",
                            on_delete: OnDelete::Cascade,
                            on_parent_state: None,
                        },
                    ],
                    ..KindDecl::new(
                        "L2Network",
                        TABLE,
                        &[
                            "L2NetworkVO",
                            "L2VlanNetworkVO",
                            "VxlanNetworkVO",
                            "VxlanNetworkPoolVO",
                        ],
                    )
                },
                KindDecl {
                    relations: &[Relation {
                        field: "l2NetworkUuid",
                        parent: "L2Network",
                        on_delete: OnDelete::Cascade,
                        on_parent_state: None,
                    }],
                    ..KindDecl::new("VniRange", VNI_TABLE, &["VniRangeVO"])
                },
            ],
            calls: &[
                CallDecl::new(
                    "CreateL2NoVlanNetwork",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/l2-networks/no-vlan", P)],
                )
                .creating("L2NetworkVO"),
                CallDecl::new(
                    "CreateL2VlanNetwork",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/l2-networks/vlan", P)],
                )
                .creating("L2VlanNetworkVO"),
                CallDecl::new(
                    "CreateL2VxlanNetworkPool",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/l2-networks/vxlan-pool", P)],
                )
                .creating("L2NetworkVO"),
                CallDecl::new(
                    "CreateVniRange",
                    |p| op_plan(plan, p),
                    &[route(
                        Po,
                        "/v1/l2-networks/vxlan-pool/{l2NetworkUuid}/vni-ranges",
                        P,
                    )],
                )
                .creating("VniRangeVO"),
                CallDecl::new(
                    "DeleteVniRange",
                    |p| op_plan(plan, p),
                    &[route(D, "/v1/l2-networks/vxlan-pool/vni-ranges/{uuid}", N)],
                ),
                CallDecl::new(
                    "CreateL2VxlanNetwork",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/l2-networks/vxlan", P)],
                )
                .creating("VxlanNetworkVO"),
                CallDecl::new(
                    "UpdateL2Network",
                    |p| op_plan(plan, p),
                    &[route(Pu, "/v1/l2-networks/{uuid}/actions", A)],
                ),
                CallDecl::new(
                    "AttachL2NetworkToCluster",
                    |p| op_plan(plan, p),
                    &[route(
                        Po,
                        "/v1/l2-networks/{l2NetworkUuid}/clusters/{clusterUuid}",
                        P,
                    )],
                ),
                CallDecl::new(
                    "DetachL2NetworkFromCluster",
                    |p| op_plan(plan, p),
                    &[route(
                        D,
                        "/v1/l2-networks/{l2NetworkUuid}/clusters/{clusterUuid}",
                        N,
                    )],
                ),
                CallDecl::new(
                    "DeleteL2Network",
                    |p| op_plan(plan, p),
                    &[route(D, "/v1/l2-networks/{uuid}", N)],
                ),
                CallDecl::new(
                    "QueryL2Network",
                    |p| p.query(query_all),
                    &[
                        route(G, "/v1/l2-networks", N),
                        route(G, "/v1/l2-networks/{uuid}", N),
                    ],
                ),
                CallDecl::new(
                    "QueryL2VlanNetwork",
                    |p| p.query(query_vlan),
                    &[
                        route(G, "/v1/l2-networks/vlan", N),
                        route(G, "/v1/l2-networks/vlan/{uuid}", N),
                    ],
                ),
                CallDecl::new(
                    "QueryL2VxlanNetwork",
                    |p| p.query(query_vxlan),
                    &[
                        route(G, "/v1/l2-networks/vxlan", N),
                        route(G, "/v1/l2-networks/vxlan/{uuid}", N),
                    ],
                ),
                CallDecl::new(
                    "QueryL2VxlanNetworkPool",
                    |p| p.query(query_pool),
                    &[
                        route(G, "/v1/l2-networks/vxlan-pool", N),
                        route(G, "/v1/l2-networks/vxlan-pool/{uuid}", N),
                    ],
                ),
                CallDecl::new(
                    "QueryVniRange",
                    |p| p.query(query_vnirange),
                    &[
                        route(G, "/v1/l2-networks/vxlan-pool/vni-ranges", N),
                        route(G, "/v1/l2-networks/vxlan-pool/vni-ranges/{uuid}", N),
                    ],
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
        op: L2Op,
    ) -> Result<L2Result, ApiError> {
        apply(txn, ctx, caller, op)
    }

    fn reply(out: &L2Result) -> Result<serde_json::Map<String, Value>, Refusal> {
        crate::family::inventory_reply(out.inventory())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::ctx;
    use crate::testing::make_cluster;
    use crate::testing::make_zone;
    use crate::testing::normal;
    use crate::testing::u;
    use crate::testing::MemTxn;
    use crate::wire::date::java_date;

    pub(crate) fn run(t: &mut MemTxn, op: L2Op) -> Result<L2Result, ApiError> {
        apply(t, &ctx(20), &Caller::admin(), op)
    }

    pub(crate) fn common(n: u32, zone: &str, nic: &str) -> L2Common {
        L2Common {
            uuid: u(n),
            name: format!("l2-{n}"),
            description: None,
            zone_uuid: Some(zone.into()),
            physical_interface: Some(nic.into()),
            v_switch_type: None,
        }
    }

    /// Create NoVlan L2 `u(n)` on `nic`.
    pub fn make_novlan(t: &mut MemTxn, n: u32, zone: &str, nic: &str) -> String {
        run(t, L2Op::CreateNoVlan(common(n, zone, nic))).unwrap();
        u(n)
    }

    fn code(r: Result<L2Result, ApiError>) -> &'static str {
        r.unwrap_err().code()
    }

    fn attach(t: &mut MemTxn, l2: &str, c: &str, cidr: Option<&str>) -> Result<L2Result, ApiError> {
        run(
            t,
            L2Op::Attach {
                uuid: l2.into(),
                cluster_uuid: c.into(),
                vtep_cidr: cidr.map(str::to_string),
            },
        )
    }

    #[test]
    fn novlan_vlan_shapes_attach_detach() {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        let c = make_cluster(&mut t, 10, &z);
        let r = run(&mut t, L2Op::CreateNoVlan(common(60, &z, "eth0"))).unwrap();
        assert_eq!(
            serde_json::to_string(&r.inventory().unwrap()).unwrap(),
            format!(
                r#"{{"uuid":"{}","name":"l2-60","zoneUuid":"{z}","physicalInterface":"eth0","type":"L2NoVlanNetwork","vSwitchType":"LinuxBridge","virtualNetworkId":0,"isolated":false,"createDate":"{d}","lastOpDate":"{d}","attachedClusterUuids":[]}}"#,
                u(60),
                d = java_date(20_000)
            )
        );
        let r = run(
            &mut t,
            L2Op::CreateVlan {
                common: common(61, &z, "eth0"),
                vlan: 100,
            },
        )
        .unwrap();
        let inv = r.inventory().unwrap();
        assert_eq!(inv.as_object().unwrap().keys().next().unwrap(), "vlan");
        assert_eq!(inv["virtualNetworkId"], 100);
        attach(&mut t, &u(60), &c, None).unwrap();
        let L2Result::L2(l2) = attach(&mut t, &u(61), &c, None).unwrap() else {
            panic!()
        };
        assert_eq!(l2.attached_cluster_uuids, vec![c.clone()]);
        let before = t.tables.clone();
        assert_eq!(code(attach(&mut t, &u(61), &c, None)), "SYS.1006", "twice");
        assert_eq!(t.tables, before);
        run(
            &mut t,
            L2Op::Update {
                uuid: u(61),
                name: Some("vlan100".into()),
                description: Some("d".into()),
            },
        )
        .unwrap();
        run(
            &mut t,
            L2Op::Detach {
                uuid: u(61),
                cluster_uuid: c.clone(),
            },
        )
        .unwrap();
        assert_eq!(
            code(run(
                &mut t,
                L2Op::Detach {
                    uuid: u(61),
                    cluster_uuid: c.clone()
                }
            )),
            "SYS.1006"
        );
        // Cluster deletion forgets the attachment; zone deletion deletes the L2s.
        crate::testing::delete_cluster(&mut t, 21, &c);
        let L2Result::L2(l2) = run(
            &mut t,
            L2Op::Update {
                uuid: u(60),
                name: None,
                description: None,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert!(l2.attached_cluster_uuids.is_empty());
        crate::testing::delete_zone(&mut t, 22, &z);
        assert!(resource::list::<L2Network>(&t).unwrap().is_empty());
    }

    #[test]
    fn vxlan_pool_ranges_and_networks() {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        let c = make_cluster(&mut t, 10, &z);
        let mut pc = common(70, &z, "eth1");
        pc.physical_interface = None;
        run(&mut t, L2Op::CreatePool(pc)).unwrap();
        let range = |n: u32, s: i64, e: i64| L2Op::CreateVniRange {
            uuid: u(n),
            l2_network_uuid: u(70),
            name: "r".into(),
            description: None,
            start_vni: s,
            end_vni: e,
        };
        let r = run(&mut t, range(71, 100, 103)).unwrap();
        assert_eq!(r.inventory().unwrap()["startVni"], 100);
        let before = t.tables.clone();
        assert_eq!(
            code(run(&mut t, range(72, 103, 200))),
            "SYS.1007",
            "overlap"
        );
        assert_eq!(code(run(&mut t, range(72, 0, 5))), "SYS.1007", "vni 0");
        assert_eq!(
            code(run(&mut t, range(72, 9, 5))),
            "SYS.1007",
            "start > end"
        );
        assert_eq!(
            code(run(&mut t, range(72, 1, 16_777_215))),
            "SYS.1007",
            "reserved"
        );
        assert_eq!(
            code(attach(&mut t, &u(70), &c, None)),
            "SYS.1007",
            "no cidr"
        );
        assert_eq!(
            code(attach(&mut t, &u(70), &c, Some("10.0.0.1/40"))),
            "SYS.1007"
        );
        assert_eq!(t.tables, before);
        let L2Result::L2(pool) = attach(&mut t, &u(70), &c, Some("192.168.29.1/24")).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            resource::inventory(&pool)["attachedCidrs"],
            json!({ c.clone(): ["192.168.29.0/24"] })
        );
        let vx = |n: u32, vni: Option<i64>| L2Op::CreateVxlan {
            common: L2Common {
                physical_interface: None,
                zone_uuid: None,
                ..common(n, &z, "x")
            },
            pool_uuid: u(70),
            vni,
        };
        let L2Result::L2(v1) = apply(&mut t, &ctx(23), &normal(), vx(80, Some(101))).unwrap()
        else {
            panic!()
        };
        assert_eq!(v1.attached_cluster_uuids, vec![c.clone()]);
        let inv = resource::inventory(&v1);
        assert_eq!(
            (inv["vni"].clone(), inv["poolUuid"].clone()),
            (json!(101), json!(u(70)))
        );
        let before = t.tables.clone();
        assert_eq!(code(run(&mut t, vx(81, Some(101)))), "SYS.1007", "used");
        assert_eq!(
            code(run(&mut t, vx(81, Some(500)))),
            "SYS.1007",
            "not in range"
        );
        assert_eq!(
            code(run(
                &mut t,
                L2Op::CreateVxlan {
                    common: common(81, &z, "x"),
                    pool_uuid: u(60),
                    vni: None
                }
            )),
            "SYS.1003"
        );
        assert_eq!(
            code(attach(&mut t, &u(80), &c, None)),
            "SYS.1006",
            "vxlan attach"
        );
        assert_eq!(
            code(run(&mut t, L2Op::DeleteVniRange { uuid: u(71) })),
            "SYS.1006",
            "range in use"
        );
        assert_eq!(t.tables, before);
        // Automatic VNIs fill the rest of the range, then run out.
        let mut got = vec![101];
        for n in 81..84 {
            let L2Result::L2(v) = run(&mut t, vx(n, None)).unwrap() else {
                panic!()
            };
            let L2Kind::Vxlan { vni, .. } = v.kind else {
                panic!()
            };
            got.push(vni);
        }
        got.sort();
        assert_eq!(got, vec![100, 101, 102, 103]);
        assert_eq!(code(run(&mut t, vx(84, None))), "SYS.1006", "exhausted");
        // Query views select by kind.
        let q = |c: Value| {
            let mut m = serde_json::Map::new();
            m.insert("conditions".into(), c);
            crate::query::parse_query("APIQueryL2NetworkMsg", &m).unwrap()
        };
        let count = |t: &MemTxn, w: L2Query, c: Value| {
            query(t, w, &q(c), &Caller::admin())
                .unwrap()
                .inventories
                .unwrap()
                .len()
        };
        assert_eq!(count(&t, L2Query::Vxlan, json!([])), 4);
        assert_eq!(count(&t, L2Query::Pool, json!([])), 1);
        assert_eq!(count(&t, L2Query::All, json!([])), 5);
        assert_eq!(count(&t, L2Query::VniRange, json!([])), 1);
        assert_eq!(
            count(
                &t,
                L2Query::Vxlan,
                json!([{"name":"vni","op":">","value":"101"}])
            ),
            2
        );
        let all = query(&t, L2Query::All, &q(json!([])), &Caller::admin()).unwrap();
        assert!(all
            .inventories
            .unwrap()
            .iter()
            .all(|i| i.get("vni").is_none()));
        // A normal account deletes its own VXLAN network but not the pool.
        assert_eq!(
            code(apply(
                &mut t,
                &ctx(24),
                &normal(),
                L2Op::Delete { uuid: u(70) }
            )),
            "ID.1002"
        );
        assert_eq!(
            code(apply(
                &mut t,
                &ctx(24),
                &normal(),
                L2Op::Delete { uuid: u(81) }
            )),
            "ID.1002"
        );
        apply(&mut t, &ctx(24), &normal(), L2Op::Delete { uuid: u(80) }).unwrap();
        // Deleting the pool deletes its networks and ranges.
        run(&mut t, L2Op::Delete { uuid: u(70) }).unwrap();
        assert!(resource::list::<L2Network>(&t).unwrap().is_empty());
        assert!(resource::list::<VniRange>(&t).unwrap().is_empty());
    }

    #[test]
    fn refusals_leave_state_unchanged() {
        let mut t = MemTxn::default();
        let z = make_zone(&mut t, 1);
        let z2 = make_zone(&mut t, 2);
        let c2 = make_cluster(&mut t, 11, &z2);
        make_novlan(&mut t, 60, &z, "eth0");
        run(
            &mut t,
            L2Op::CreateVlan {
                common: common(61, &z, "eth0"),
                vlan: 10,
            },
        )
        .unwrap();
        let before = t.tables.clone();
        assert_eq!(
            code(run(&mut t, L2Op::CreateNoVlan(common(62, &z, "eth0")))),
            "SYS.1007"
        );
        assert_eq!(
            code(run(
                &mut t,
                L2Op::CreateVlan {
                    common: common(62, &z, "eth0"),
                    vlan: 10
                }
            )),
            "SYS.1007",
            "same nic + vlan"
        );
        for vlan in [0, 4095] {
            assert_eq!(
                code(run(
                    &mut t,
                    L2Op::CreateVlan {
                        common: common(62, &z, "eth0"),
                        vlan
                    }
                )),
                "SYS.1007"
            );
        }
        let mut no_nic = common(62, &z, "x");
        no_nic.physical_interface = None;
        assert_eq!(code(run(&mut t, L2Op::CreateNoVlan(no_nic))), "SYS.1007");
        assert_eq!(
            code(run(&mut t, L2Op::CreateNoVlan(common(62, &z, "bad nic")))),
            "SYS.1007"
        );
        let mut ovs = common(62, &z, "eth5");
        ovs.v_switch_type = Some("OvsDpdk".into());
        assert_eq!(code(run(&mut t, L2Op::CreateNoVlan(ovs))), "SYS.1007");
        assert_eq!(
            code(run(&mut t, L2Op::CreateNoVlan(common(62, &u(99), "eth5")))),
            "SYS.1003"
        );
        assert_eq!(
            code(run(&mut t, L2Op::CreateNoVlan(common(60, &z, "eth5")))),
            "SYS.1007",
            "dup"
        );
        assert_eq!(code(attach(&mut t, &u(60), &c2, None)), "SYS.1007", "zone");
        assert_eq!(code(attach(&mut t, &u(60), &u(98), None)), "SYS.1003");
        assert_eq!(
            code(run(
                &mut t,
                L2Op::Update {
                    uuid: u(99),
                    name: None,
                    description: None
                }
            )),
            "SYS.1003"
        );
        assert_eq!(
            code(run(
                &mut t,
                L2Op::CreateVniRange {
                    uuid: u(90),
                    l2_network_uuid: u(60),
                    name: "r".into(),
                    description: None,
                    start_vni: 1,
                    end_vni: 2
                }
            )),
            "SYS.1007",
            "not a pool"
        );
        for op in [
            L2Op::CreateNoVlan(common(63, &z, "eth9")),
            L2Op::Delete { uuid: u(60) },
            L2Op::Attach {
                uuid: u(60),
                cluster_uuid: c2.clone(),
                vtep_cidr: None,
            },
            L2Op::Update {
                uuid: u(60),
                name: Some("x".into()),
                description: None,
            },
        ] {
            assert_eq!(code(apply(&mut t, &ctx(21), &normal(), op)), "ID.1002");
        }
        assert_eq!(t.tables, before);
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
        let Parties { admin, tenant, .. } = Parties::of(ids);
        let i = ids.clone();
        let mut m = Vec::new();
        // ---- L2 networks.
        m.push(ok(
            "CreateL2NoVlanNetwork",
            &admin,
            json!({"zoneUuid": i.zone, "name": "flat2", "physicalInterface": "eth1"}),
            |_, r| {
                assert_eq!(r["inventory"]["type"], "L2NoVlanNetwork");
                assert_eq!(r["inventory"]["physicalInterface"], "eth1");
            },
        ));
        m.push(no(
            "CreateL2NoVlanNetwork",
            &admin,
            json!({"zoneUuid": missing(), "name": "flat2", "physicalInterface": "eth1"}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "CreateL2VlanNetwork",
            &admin,
            json!({"zoneUuid": i.zone, "name": "v200", "physicalInterface": "eth0", "vlan": 200}),
            |h, r| {
                assert_eq!(r["inventory"]["vlan"], 200);
                assert_eq!(h.count("QueryL2VlanNetwork", json!([])), 2);
            },
        ));
        m.push(no(
            "CreateL2VlanNetwork",
            &admin,
            json!({"zoneUuid": i.zone, "name": "v", "physicalInterface": "eth0", "vlan": 4095}),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "CreateL2VxlanNetworkPool",
            &admin,
            json!({"zoneUuid": i.zone, "name": "pool2"}),
            |h, r| {
                assert_eq!(r["inventory"]["name"], "pool2");
                assert_eq!(h.count("QueryL2VxlanNetworkPool", json!([])), 2);
            },
        ));
        m.push(no(
            "CreateL2VxlanNetworkPool",
            &tenant,
            json!({"zoneUuid": i.zone, "name": "pool2"}),
            Code::PermissionDenied,
        ));
        m.push(ok(
            "CreateVniRange",
            &admin,
            json!({"l2NetworkUuid": i.pool, "name": "r3", "startVni": 100, "endVni": 200}),
            |h, r| {
                assert_eq!(r["inventory"]["startVni"], 100);
                assert_eq!(h.count("QueryVniRange", json!([])), 3);
            },
        ));
        m.push(no(
            "CreateVniRange",
            &admin,
            json!({"l2NetworkUuid": i.pool, "name": "r3", "startVni": 15, "endVni": 25}),
            Code::InvalidArgument,
        ));
        {
            let r = i.spare_vni_range.clone();
            m.push(ok(
                "DeleteVniRange",
                &admin,
                json!({"uuid": i.spare_vni_range}),
                move |h, _| assert_eq!(h.count("QueryVniRange", eq("uuid", &r)), 0),
            ));
        }
        m.push(no(
            "DeleteVniRange",
            &tenant,
            json!({"uuid": i.spare_vni_range}),
            Code::PermissionDenied,
        ));
        {
            let pool = i.pool.clone();
            m.push(ok(
                "CreateL2VxlanNetwork",
                &admin,
                json!({"poolUuid": i.pool, "name": "vx2", "vni": 16}),
                move |_, r| {
                    assert_eq!(r["inventory"]["vni"], 16);
                    assert_eq!(r["inventory"]["poolUuid"], pool.as_str());
                },
            ));
        }
        m.push(no(
            "CreateL2VxlanNetwork",
            &admin,
            json!({"poolUuid": i.pool, "name": "vx2", "vni": 15}),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "UpdateL2Network",
            &admin,
            json!({"uuid": i.vlan, "name": "v100"}),
            |h, _| assert_eq!(h.count("QueryL2Network", eq("name", "v100")), 1),
        ));
        m.push(no(
            "UpdateL2Network",
            &admin,
            json!({"uuid": missing(), "name": "x"}),
            Code::ResourceNotFound,
        ));
        {
            let c = i.cluster.clone();
            m.push(ok(
                "AttachL2NetworkToCluster",
                &admin,
                json!({"l2NetworkUuid": i.vlan, "clusterUuid": i.cluster}),
                move |_, r| assert_eq!(r["inventory"]["attachedClusterUuids"], json!([c])),
            ));
        }
        m.push(no(
            "AttachL2NetworkToCluster",
            &admin,
            json!({"l2NetworkUuid": i.vlan, "clusterUuid": missing()}),
            Code::ResourceNotFound,
        ));
        m.push(ok(
            "DetachL2NetworkFromCluster",
            &admin,
            json!({"l2NetworkUuid": i.l2, "clusterUuid": i.cluster}),
            |_, r| assert_eq!(r["inventory"]["attachedClusterUuids"], json!([])),
        ));
        m.push(no(
            "DetachL2NetworkFromCluster",
            &tenant,
            json!({"l2NetworkUuid": i.l2, "clusterUuid": i.cluster}),
            Code::PermissionDenied,
        ));
        {
            let (l2, l3) = (i.l2.clone(), i.l3.clone());
            m.push(ok(
                "DeleteL2Network",
                &admin,
                json!({"uuid": i.l2}),
                move |h, _| {
                    assert_eq!(h.count("QueryL2Network", eq("uuid", &l2)), 0);
                    assert_eq!(h.count("QueryL3Network", eq("uuid", &l3)), 0);
                },
            ));
        }
        m.push(no(
            "DeleteL2Network",
            &tenant,
            json!({"uuid": i.l2}),
            Code::PermissionDenied,
        ));
        {
            let l2 = i.l2.clone();
            m.push(ok(
                "QueryL2Network",
                &admin,
                json!({"conditions": eq("attachedClusterUuids", &i.cluster)}),
                move |_, r| assert_eq!(r["inventories"][0]["uuid"], l2.as_str()),
            ));
        }
        m.push(no(
            "QueryL2Network",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        m.push(ok(
            "QueryL2VlanNetwork",
            &admin,
            json!({"conditions": eq("vlan", "100")}),
            |_, r| assert_eq!(r["inventories"][0]["name"], "vlan"),
        ));
        m.push(no(
            "QueryL2VlanNetwork",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        {
            let vx = i.vxlan.clone();
            m.push(ok(
                "QueryL2VxlanNetwork",
                &admin,
                json!({"conditions": eq("vni", "15")}),
                move |_, r| assert_eq!(r["inventories"][0]["uuid"], vx.as_str()),
            ));
        }
        m.push(no(
            "QueryL2VxlanNetwork",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        {
            let pool = i.pool.clone();
            m.push(ok(
                "QueryL2VxlanNetworkPool",
                &admin,
                json!({"conditions": []}),
                move |_, r| assert_eq!(r["inventories"][0]["uuid"], pool.as_str()),
            ));
        }
        m.push(no(
            "QueryL2VxlanNetworkPool",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        {
            let r = i.vni_range.clone();
            m.push(ok(
                "QueryVniRange",
                &admin,
                json!({"conditions": eq("startVni", "10")}),
                move |_, q| assert_eq!(q["inventories"][0]["uuid"], r.as_str()),
            ));
        }
        m.push(no(
            "QueryVniRange",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        m
    }
}
