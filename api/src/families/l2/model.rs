//! L2 records, commands and their apply (NoVlan, Vlan, pools and attachment to clusters; the
//! pools' VNI ranges and VXLAN networks are in `vxlan.rs`).

use serde::Deserialize;
use serde::Serialize;

use super::vxlan;
use crate::resource;
use crate::resource::generic;
use crate::resource::generic::Rename;
use crate::resource::relations;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The L2 table (every kind).
pub const TABLE: &str = "l2_network";
/// The kind name other families use to refer to L2 networks (of every type).
pub const KIND: &str = "L2Network";
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

crate::described_record!(L2Network);

impl L2Network {
    /// Whether it is a VXLAN pool.
    pub fn is_pool(&self) -> bool {
        matches!(self.kind, L2Kind::VxlanPool { .. })
    }

    /// Whether it is a VXLAN network (of a pool).
    pub fn is_vxlan(&self) -> bool {
        matches!(self.kind, L2Kind::Vxlan { .. })
    }

    /// The VLAN id of a VLAN network.
    pub fn vlan(&self) -> Option<u16> {
        match &self.kind {
            L2Kind::Vlan { vlan } => Some(*vlan),
            _ => None,
        }
    }

    /// VNI and pool of a VXLAN network.
    pub fn vxlan(&self) -> Option<(u32, &str)> {
        match &self.kind {
            L2Kind::Vxlan { vni, pool_uuid } => Some((*vni, pool_uuid.as_str())),
            _ => None,
        }
    }

    /// Drop a cluster from the attachment (and a pool's VTEP CIDR for it).
    fn forget(&mut self, cluster_uuid: &str) {
        self.attached_cluster_uuids.retain(|c| c != cluster_uuid);
        if let L2Kind::VxlanPool { vtep_cidrs } = &mut self.kind {
            vtep_cidrs.retain(|(c, _)| c != cluster_uuid);
        }
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
        /// New name and description.
        rename: Rename,
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
    VniRange(vxlan::VniRange),
    /// Deleted (or already absent).
    Deleted,
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

fn check_vlan(vlan: i64) -> Result<u16, ApiError> {
    u16::try_from(vlan)
        .ok()
        .filter(|v| (1..=4094).contains(v))
        .ok_or_else(|| {
            validate::invalid_arg(format!(
                "field[vlan] must be in range of [1, 4094], got {vlan}"
            ))
        })
}

/// Check the common create fields and build the record. A host NIC is mandatory for the kinds
/// that carry traffic on one directly (NoVlan, Vlan); a pool and its networks may name one.
pub(super) fn new_record(
    txn: &dyn StateTxn,
    ctx: &ApplyCtx,
    c: L2Common,
    kind: L2Kind,
    zone_uuid: String,
) -> Result<L2Network, ApiError> {
    generic::check_fields(&c.uuid, &c.name, c.description.as_deref())?;
    let interface_required = matches!(kind, L2Kind::NoVlan | L2Kind::Vlan { .. });
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
    resource::refuse_duplicate::<L2Network>(txn, &c.uuid)?;
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

/// One host NIC backs one NoVlan network per zone, and one (NIC, VLAN) pair one VLAN network.
fn refuse_twin_in_zone(txn: &dyn StateTxn, l2: &L2Network) -> Result<(), ApiError> {
    let nic = l2.physical_interface.as_deref().unwrap_or("");
    for (_, other) in resource::find::<L2Network>(txn, "zoneUuid", &l2.zone_uuid)? {
        if identical(&other, l2) {
            return Err(validate::invalid_arg(match l2.vlan() {
                Some(vlan) => format!(
                    "there has been an L2VlanNetwork[uuid:{}] with vlan[{vlan}] on physical interface[{nic}] in zone[uuid:{}]",
                    other.uuid, l2.zone_uuid
                ),
                None => format!(
                    "there has been an L2NoVlanNetwork[uuid:{}] on physical interface[{nic}] in zone[uuid:{}]; one interface backs only one NoVlan network",
                    other.uuid, l2.zone_uuid
                ),
            }));
        }
    }
    Ok(())
}

/// A NoVlan or Vlan network, or a pool, in the zone the request names.
fn create(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    c: L2Common,
    kind: L2Kind,
) -> Result<L2Result, ApiError> {
    let zone = c.zone_uuid.clone().unwrap_or_default();
    let l2 = new_record(txn, ctx, c, kind, zone)?;
    refuse_twin_in_zone(txn, &l2)?;
    resource::save(txn, &caller.account_uuid, &l2)?;
    Ok(L2Result::L2(l2))
}

/// Cluster deletion: forget the cluster in the L2 (the relation's detach).
pub(super) fn forget_cluster(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    cluster_uuid: &str,
) -> Result<bool, ApiError> {
    let l2 = generic::modify(txn, ctx, uuid, |_, l2: &mut L2Network| {
        l2.forget(cluster_uuid);
        Ok(())
    })?;
    Ok(l2.attached_cluster_uuids.is_empty())
}

/// An L2 network is attached to clusters of its zone.
const CLUSTERS: generic::Attachment<L2Network> = generic::Attachment {
    what: "L2 network",
    parent: "cluster",
    list: |l2| &mut l2.attached_cluster_uuids,
};

/// The checks of `AttachL2NetworkToCluster` and the attachment itself (not yet saved).
fn attach(
    txn: &dyn StateTxn,
    l2: &mut L2Network,
    cluster_uuid: String,
    vtep_cidr: Option<String>,
) -> Result<(), ApiError> {
    let uuid = l2.uuid.clone();
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
    CLUSTERS.attach(l2, &cluster_uuid)?;
    for (_, other) in resource::find::<L2Network>(txn, "attachedClusterUuids", &cluster_uuid)? {
        if identical(&other, l2) {
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
            cluster_uuid,
            format!("{}/{prefix}", crate::net::ip_str(net)),
        ));
    }
    Ok(())
}

/// The checks of `DetachL2NetworkFromCluster` and the detachment itself (not yet saved).
fn detach(txn: &dyn StateTxn, l2: &mut L2Network, cluster_uuid: &str) -> Result<(), ApiError> {
    resource::require_ref(txn, "Cluster", cluster_uuid)?;
    if l2.is_vxlan() {
        // A VXLAN network mirrors its pool's clusters: it has none of its own to detach.
        return Err(CLUSTERS.not_attached(&l2.uuid, cluster_uuid));
    }
    CLUSTERS.detach(l2, cluster_uuid)?;
    l2.forget(cluster_uuid);
    Ok(())
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: L2Op,
) -> Result<L2Result, ApiError> {
    match op {
        L2Op::CreateNoVlan(c) => {
            caller.require_admin("L2 network")?;
            create(txn, ctx, caller, c, L2Kind::NoVlan)
        }
        L2Op::CreateVlan { common, vlan } => {
            caller.require_admin("L2 network")?;
            let vlan = check_vlan(vlan)?;
            create(txn, ctx, caller, common, L2Kind::Vlan { vlan })
        }
        L2Op::CreatePool(c) => {
            caller.require_admin("VXLAN pool")?;
            let kind = L2Kind::VxlanPool {
                vtep_cidrs: Vec::new(),
            };
            create(txn, ctx, caller, c, kind)
        }
        L2Op::CreateVxlan {
            common,
            pool_uuid,
            vni,
        } => vxlan::create_vxlan(txn, ctx, caller, common, &pool_uuid, vni).map(L2Result::L2),
        L2Op::CreateVniRange {
            uuid,
            l2_network_uuid,
            name,
            description,
            start_vni,
            end_vni,
        } => {
            caller.require_admin("VNI range")?;
            generic::check_fields(&uuid, &name, description.as_deref())?;
            let (start_vni, end_vni) = vxlan::check_range(start_vni, end_vni)?;
            let r = vxlan::VniRange {
                uuid,
                name,
                description,
                start_vni,
                end_vni,
                l2_network_uuid,
                create_date: ctx.proposed_at_ms,
                last_op_date: ctx.proposed_at_ms,
            };
            vxlan::add_range(txn, caller, r).map(L2Result::VniRange)
        }
        L2Op::DeleteVniRange { uuid } => {
            caller.require_admin("VNI range")?;
            vxlan::delete_range(txn, ctx, &uuid)?;
            Ok(L2Result::Deleted)
        }
        L2Op::Update { uuid, rename } => {
            generic::modify_visible(txn, ctx, caller, &uuid, |_, l2: &mut L2Network| {
                rename.apply_to(l2)
            })
            .map(L2Result::L2)
        }
        L2Op::Attach {
            uuid,
            cluster_uuid,
            vtep_cidr,
        } => {
            caller.require_admin("L2 network")?;
            let l2 = generic::modify(txn, ctx, &uuid, |txn, l2: &mut L2Network| {
                attach(txn, l2, cluster_uuid, vtep_cidr)
            })?;
            vxlan::follow_pool(txn, ctx, &l2)?;
            Ok(L2Result::L2(l2))
        }
        L2Op::Detach { uuid, cluster_uuid } => {
            caller.require_admin("L2 network")?;
            let l2 = generic::modify(txn, ctx, &uuid, |txn, l2: &mut L2Network| {
                detach(txn, l2, &cluster_uuid)
            })?;
            vxlan::follow_pool(txn, ctx, &l2)?;
            Ok(L2Result::L2(l2))
        }
        L2Op::Delete { uuid } => {
            let Some((owner, l2)) = resource::load::<L2Network>(txn, &uuid)? else {
                return Ok(L2Result::Deleted);
            };
            // A normal account deletes its own VXLAN networks; everything else is the admin's.
            if l2.is_vxlan() {
                if !caller.can_see(&owner) {
                    resource::require_visible::<L2Network>(txn, caller, &uuid)?;
                }
            } else {
                caller.require_admin("L2 network")?;
            }
            relations::delete(txn, ctx, KIND, &uuid)?;
            Ok(L2Result::Deleted)
        }
    }
}
