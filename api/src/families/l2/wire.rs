//! L2 networks on the wire: the runtime-class inventory every reply carries, the query views
//! (`QueryL2Network` answers base-class inventories for every type, the others one type's
//! subclass inventory) and request → op.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Map;
use serde_json::Value;

use super::model::L2Common;
use super::model::L2Kind;
use super::model::L2Network;
use super::model::L2Op;
use super::model::L2Result;
use super::model::KIND;
use super::model::TABLE;
use super::vxlan::VniRange;
use super::vxlan::VNI_KIND;
use super::vxlan::VNI_TABLE;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::plan::QueryFn;
use crate::query::Query;
use crate::query::QueryOutput;
use crate::resource;
use crate::resource::date;
use crate::resource::generic;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::Caller;
use crate::StateTxn;

/// What every view of the L2 table indexes (and other families may read).
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

fn vlan(l2: &L2Network) -> Option<Value> {
    l2.vlan().map(|v| json!(v))
}

fn vni(l2: &L2Network) -> Option<Value> {
    l2.vxlan().map(|(vni, _)| json!(vni))
}

fn pool_uuid(l2: &L2Network) -> Option<Value> {
    l2.vxlan().map(|(_, pool)| json!(pool))
}

/// A pool's VTEP CIDRs by cluster, each in a list (ZStack allows several per cluster).
fn attached_cidrs(l2: &L2Network) -> Option<Value> {
    let L2Kind::VxlanPool { vtep_cidrs } = &l2.kind else {
        return None;
    };
    let mut cidrs = Map::new();
    for (c, cidr) in vtep_cidrs {
        cidrs.insert(c.clone(), json!([cidr]));
    }
    Some(Value::Object(cidrs))
}

/// The base `L2NetworkInventory`, what `QueryL2Network` answers for every kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct L2Base(pub L2Network);

impl Resource for L2Base {
    const KIND: &'static str = KIND;
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
    const KIND: &'static str = KIND;
    const TABLE: &'static str = TABLE;
    /// The runtime class's inventory (what replies carry): subclass fields first.
    const INVENTORY: &'static [Field<Self>] = &[
        Field::maybe("vlan", vlan),
        Field::maybe("vni", vni),
        Field::maybe("poolUuid", pool_uuid),
        Field::splice(base_inventory, resource::fields::<L2Base>),
        Field::maybe("attachedCidrs", attached_cidrs),
    ];
    const INDEXED: &'static [&'static str] = INDEXED;

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// A query view of one L2 type: the records it shows and their inventory.
trait View: Resource {
    /// Whether the view shows this record.
    fn shows(&self) -> bool;
}

macro_rules! l2_view {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $shows:expr, [$($field:expr),* $(,)?]) => {
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

        impl View for $name {
            fn shows(&self) -> bool {
                let shows: fn(&L2Network) -> bool = $shows;
                shows(&self.0)
            }
        }
    };
}

l2_view!(
    /// The `L2VlanNetworkInventory` view, for `QueryL2VlanNetwork`.
    L2VlanView,
    "L2VlanNetwork",
    |l2| l2.vlan().is_some(),
    [
        Field::maybe("vlan", |r| vlan(&r.0)),
        Field::splice(|r| base_inventory(&r.0), resource::fields::<L2Base>),
    ]
);
l2_view!(
    /// The `L2VxlanNetworkInventory` view, for `QueryL2VxlanNetwork`.
    VxlanView,
    "VxlanNetwork",
    L2Network::is_vxlan,
    [
        Field::maybe("vni", |r| vni(&r.0)),
        Field::maybe("poolUuid", |r| pool_uuid(&r.0)),
        Field::splice(|r| base_inventory(&r.0), resource::fields::<L2Base>),
    ]
);
l2_view!(
    /// The `L2VxlanNetworkPoolInventory` view, for `QueryL2VxlanNetworkPool`.
    PoolView,
    "VxlanNetworkPool",
    L2Network::is_pool,
    [
        Field::splice(|r| base_inventory(&r.0), resource::fields::<L2Base>),
        Field::maybe("attachedCidrs", |r| attached_cidrs(&r.0)),
    ]
);

impl View for L2Base {
    fn shows(&self) -> bool {
        true
    }
}

impl Resource for VniRange {
    const KIND: &'static str = VNI_KIND;
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

/// The `inventory` of the reply, if any.
impl crate::family::Reply for L2Result {
    fn inventory(&self) -> Option<Value> {
        match self {
            L2Result::L2(l) => Some(resource::inventory(l)),
            L2Result::VniRange(r) => Some(resource::inventory(r)),
            L2Result::Deleted => None,
        }
    }
}

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

fn query_view<V: View>(
    txn: &dyn StateTxn,
    q: &Query,
    caller: &Caller,
) -> Result<QueryOutput, ApiError> {
    resource::query_filtered::<V>(txn, q, |owner, r| caller.can_see(owner) && r.shows())
}

/// The query function of one of the L2 queries.
fn query_fn(which: L2Query) -> QueryFn {
    match which {
        L2Query::All => query_view::<L2Base>,
        L2Query::Vlan => query_view::<L2VlanView>,
        L2Query::Vxlan => query_view::<VxlanView>,
        L2Query::Pool => query_view::<PoolView>,
        L2Query::VniRange => generic::visible_query::<VniRange>,
    }
}

/// Run an L2-family query.
pub fn query(
    txn: &dyn StateTxn,
    which: L2Query,
    q: &Query,
    caller: &Caller,
) -> Result<QueryOutput, ApiError> {
    query_fn(which)(txn, q, caller)
}

/// `QueryX` of one of the L2 queries.
pub(super) fn plan_query(p: &PlanInput, which: L2Query) -> Result<Plan, Refusal> {
    p.query(query_fn(which))
}

fn common(p: &PlanInput) -> Result<L2Common, Refusal> {
    Ok(L2Common {
        uuid: p.new_uuid(),
        name: p.required("name")?,
        description: p.string("description"),
        zone_uuid: p.string("zoneUuid"),
        physical_interface: p.string("physicalInterface"),
        v_switch_type: p.string("vSwitchType"),
    })
}

/// A create of an L2 that needs a zone (every type but a VXLAN network, which takes its
/// pool's).
pub(super) fn create_in_zone(
    p: &PlanInput,
    make: impl FnOnce(L2Common) -> Result<L2Op, Refusal>,
) -> Result<Plan, Refusal> {
    p.required("zoneUuid")?;
    Ok(p.propose(make(common(p)?)?))
}

pub(super) fn create_vlan(p: &PlanInput) -> Result<Plan, Refusal> {
    create_in_zone(p, |common| {
        Ok(L2Op::CreateVlan {
            common,
            vlan: params::required_int(p.body, "vlan", p.call)?,
        })
    })
}

pub(super) fn create_vxlan(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(L2Op::CreateVxlan {
        common: common(p)?,
        pool_uuid: p.required("poolUuid")?,
        vni: params::int(p.body, "vni", p.call)?,
    }))
}

pub(super) fn create_vni_range(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(L2Op::CreateVniRange {
        uuid: p.new_uuid(),
        l2_network_uuid: p.required("l2NetworkUuid")?,
        name: p.required("name")?,
        description: p.string("description"),
        start_vni: params::required_int(p.body, "startVni", p.call)?,
        end_vni: params::required_int(p.body, "endVni", p.call)?,
    }))
}

/// The VTEP CIDR of a pool attach, from the system tag
/// `l2NetworkUuid::{uuid}::clusterUuid::{uuid}::cidr::{cidr}` (ZStack's way to pass it).
fn vtep_cidr_tag(p: &PlanInput) -> Option<String> {
    p.body
        .get("systemTags")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|t| {
            t.split_once("::cidr::")
                .map(|(_, c)| c.trim_matches(['{', '}']).to_string())
        })
}

/// `{l2NetworkUuid, clusterUuid}` of an attach or detach.
fn l2_and_cluster(p: &PlanInput) -> Result<(String, String), Refusal> {
    Ok((p.required("l2NetworkUuid")?, p.required("clusterUuid")?))
}

pub(super) fn attach(p: &PlanInput) -> Result<Plan, Refusal> {
    let (uuid, cluster_uuid) = l2_and_cluster(p)?;
    Ok(p.propose(L2Op::Attach {
        uuid,
        cluster_uuid,
        vtep_cidr: vtep_cidr_tag(p),
    }))
}

pub(super) fn detach(p: &PlanInput) -> Result<Plan, Refusal> {
    let (uuid, cluster_uuid) = l2_and_cluster(p)?;
    Ok(p.propose(L2Op::Detach { uuid, cluster_uuid }))
}
