//! L2 networks (spec 04 §2.1–2.3, §4.1–4.3): `L2NoVlanNetwork`, `L2VlanNetwork`,
//! `VxlanNetworkPool` with its VNI ranges, and `VxlanNetwork`. All types share one table; the
//! query views (`QueryL2VlanNetwork`, ...) select by type. Deleting an L2 deletes what sits on
//! it (L3 networks declare so; a pool's VXLAN networks and VNI ranges here).

#[cfg(test)]
mod cases;
mod model;
#[cfg(test)]
pub(crate) mod tests;
mod vxlan;
mod wire;

pub use model::L2Common;
pub use model::L2Kind;
pub use model::L2Network;
pub use model::L2Op;
pub use model::L2Result;
pub use model::KIND;
pub use model::TABLE;
pub use model::V_SWITCH_TYPES;
pub use vxlan::VniRange;
pub use vxlan::MAX_VNI;
pub use vxlan::VNI_KIND;
pub use vxlan::VNI_TABLE;
pub use wire::query;
pub use wire::L2Base;
pub use wire::L2Query;
pub use wire::L2VlanView;
pub use wire::PoolView;
pub use wire::VxlanView;

use crate::family::prelude::*;

/// ZStack's classes of L2 networks: Gson writes each network's runtime class (`L2VlanNetworkVO`
/// rows are `L2VlanNetworkInventory`, ...), whichever call returns it.
const L2_NETWORK: JavaClass = JavaClass::leaf("org.zstack.header.network.l2.L2NetworkInventory");
const L2_VLAN: JavaClass = JavaClass::leaf("org.zstack.header.network.l2.L2VlanNetworkInventory");
const VXLAN: JavaClass =
    JavaClass::leaf("org.zstack.network.l2.vxlan.vxlanNetwork.L2VxlanNetworkInventory");
const VNI_RANGE: JavaClass =
    JavaClass::leaf("org.zstack.network.l2.vxlan.vxlanNetworkPool.VniRangeInventory");
const VXLAN_POOL: JavaClass = JavaClass {
    name: "org.zstack.network.l2.vxlan.vxlanNetworkPool.L2VxlanNetworkPoolInventory",
    fields: &[
        (
            "attachedVtepRefs",
            Schema::Class(&JavaClass::leaf(
                "org.zstack.network.l2.vxlan.vtep.VtepInventory",
            )),
        ),
        (
            "remoteVteps",
            Schema::Class(&JavaClass::leaf(
                "org.zstack.network.l2.vxlan.vtep.RemoteVtepInventory",
            )),
        ),
        ("attachedVxlanNetworkRefs", Schema::Class(&VXLAN)),
        ("attachedVniRanges", Schema::Class(&VNI_RANGE)),
        // `Map<String, String>`: JRE values only.
        ("attachedCidrs", Schema::Jre),
    ],
};
const BY_TYPE: Schema = Schema::ByField {
    field: "type",
    classes: &[
        ("L2VlanNetwork", &L2_VLAN),
        ("VxlanNetwork", &VXLAN),
        ("VxlanNetworkPool", &VXLAN_POOL),
    ],
    other: &L2_NETWORK,
};

/// The L2 network family.
pub struct L2Networks;

impl Family for L2Networks {
    type Op = L2Op;
    type Out = L2Result;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[],
        replies: inventories!(BY_TYPE),
        name: "l2",
        tables: &[TABLE, VNI_TABLE],
        kinds: &[
            KindDecl {
                relations: &[
                    Relation::cascade("zoneUuid", "Zone"),
                    Relation::new(
                        "attachedClusterUuids",
                        "Cluster",
                        OnDelete::Detach(model::forget_cluster),
                    ),
                    // A pool's VXLAN networks go with it.
                    Relation::cascade("poolUuid", KIND),
                ],
                ..KindDecl::new(
                    KIND,
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
                relations: &[Relation::cascade("l2NetworkUuid", KIND)],
                ..KindDecl::new(VNI_KIND, VNI_TABLE, &["VniRangeVO"])
            },
        ],
        calls: &[
            CallDecl::new(
                "CreateL2NoVlanNetwork",
                |p| wire::create_in_zone(p, |c| Ok(L2Op::CreateNoVlan(c))),
                &[route(Po, "/v1/l2-networks/no-vlan", P)],
            )
            .creating("L2NetworkVO"),
            CallDecl::new(
                "CreateL2VlanNetwork",
                wire::create_vlan,
                &[route(Po, "/v1/l2-networks/vlan", P)],
            )
            .creating("L2VlanNetworkVO"),
            CallDecl::new(
                "CreateL2VxlanNetworkPool",
                |p| wire::create_in_zone(p, |c| Ok(L2Op::CreatePool(c))),
                &[route(Po, "/v1/l2-networks/vxlan-pool", P)],
            )
            .creating("L2NetworkVO"),
            CallDecl::new(
                "CreateVniRange",
                wire::create_vni_range,
                &[route(
                    Po,
                    "/v1/l2-networks/vxlan-pool/{l2NetworkUuid}/vni-ranges",
                    P,
                )],
            )
            .creating("VniRangeVO")
            .replying(inventories!(Schema::Class(&VNI_RANGE))),
            delete_call!(
                "DeleteVniRange",
                "/v1/l2-networks/vxlan-pool/vni-ranges",
                L2Op::DeleteVniRange
            )
            .replying(inventories!(Schema::Class(&VNI_RANGE))),
            CallDecl::new(
                "CreateL2VxlanNetwork",
                wire::create_vxlan,
                &[route(Po, "/v1/l2-networks/vxlan", P)],
            )
            .creating("VxlanNetworkVO"),
            update_call!("UpdateL2Network", "/v1/l2-networks", L2Op::Update),
            CallDecl::new(
                "AttachL2NetworkToCluster",
                wire::attach,
                &[route(
                    Po,
                    "/v1/l2-networks/{l2NetworkUuid}/clusters/{clusterUuid}",
                    P,
                )],
            ),
            CallDecl::new(
                "DetachL2NetworkFromCluster",
                wire::detach,
                &[route(
                    D,
                    "/v1/l2-networks/{l2NetworkUuid}/clusters/{clusterUuid}",
                    N,
                )],
            ),
            delete_call!("DeleteL2Network", "/v1/l2-networks", L2Op::Delete),
            CallDecl::new(
                "QueryL2Network",
                |p| wire::plan_query(p, L2Query::All),
                routes!(query "/v1/l2-networks"),
            ),
            CallDecl::new(
                "QueryL2VlanNetwork",
                |p| wire::plan_query(p, L2Query::Vlan),
                routes!(query "/v1/l2-networks/vlan"),
            ),
            CallDecl::new(
                "QueryL2VxlanNetwork",
                |p| wire::plan_query(p, L2Query::Vxlan),
                routes!(query "/v1/l2-networks/vxlan"),
            ),
            CallDecl::new(
                "QueryL2VxlanNetworkPool",
                |p| wire::plan_query(p, L2Query::Pool),
                routes!(query "/v1/l2-networks/vxlan-pool"),
            ),
            CallDecl::new(
                "QueryVniRange",
                |p| wire::plan_query(p, L2Query::VniRange),
                routes!(query "/v1/l2-networks/vxlan-pool/vni-ranges"),
            )
            .replying(inventories!(Schema::Class(&VNI_RANGE))),
        ],
        flows: &[],
        #[cfg(test)]
        cases: cases::cases,
    };
    const APPLY: ApplyFn<Self> = model::apply;
}
