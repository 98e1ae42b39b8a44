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

use serde_json::Map;
use serde_json::Value;

use crate::family::inventory_reply;
use crate::family::route;
use crate::family::CallDecl;
use crate::family::Family;
use crate::family::FamilyDecl;
use crate::family::KindDecl;
use crate::family::RestBody::Action as A;
use crate::family::RestBody::None as N;
use crate::family::RestBody::Params as P;
use crate::resource::generic;
use crate::resource::relations::OnDelete;
use crate::resource::relations::Relation;
use crate::rest::Method::Delete as D;
use crate::rest::Method::Get as G;
use crate::rest::Method::Post as Po;
use crate::rest::Method::Put as Pu;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The L2 network family.
pub struct L2Networks;

impl Family for L2Networks {
    type Op = L2Op;
    type Out = L2Result;
    const DECL: FamilyDecl = FamilyDecl {
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
                        on_delete: OnDelete::Detach(model::forget_cluster),
                        on_parent_state: None,
                    },
                    // A pool's VXLAN networks go with it.
                    Relation {
                        field: "poolUuid",
                        parent: KIND,
                        on_delete: OnDelete::Cascade,
                        on_parent_state: None,
                    },
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
                relations: &[Relation {
                    field: "l2NetworkUuid",
                    parent: KIND,
                    on_delete: OnDelete::Cascade,
                    on_parent_state: None,
                }],
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
            .creating("VniRangeVO"),
            CallDecl::new(
                "DeleteVniRange",
                |p| generic::plan_delete(p, |uuid| L2Op::DeleteVniRange { uuid }),
                &[route(D, "/v1/l2-networks/vxlan-pool/vni-ranges/{uuid}", N)],
            ),
            CallDecl::new(
                "CreateL2VxlanNetwork",
                wire::create_vxlan,
                &[route(Po, "/v1/l2-networks/vxlan", P)],
            )
            .creating("VxlanNetworkVO"),
            CallDecl::new(
                "UpdateL2Network",
                |p| generic::plan_update(p, |uuid, rename| L2Op::Update { uuid, rename }),
                &[route(Pu, "/v1/l2-networks/{uuid}/actions", A)],
            ),
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
            CallDecl::new(
                "DeleteL2Network",
                |p| generic::plan_delete(p, |uuid| L2Op::Delete { uuid }),
                &[route(D, "/v1/l2-networks/{uuid}", N)],
            ),
            CallDecl::new(
                "QueryL2Network",
                |p| wire::plan_query(p, L2Query::All),
                &[
                    route(G, "/v1/l2-networks", N),
                    route(G, "/v1/l2-networks/{uuid}", N),
                ],
            ),
            CallDecl::new(
                "QueryL2VlanNetwork",
                |p| wire::plan_query(p, L2Query::Vlan),
                &[
                    route(G, "/v1/l2-networks/vlan", N),
                    route(G, "/v1/l2-networks/vlan/{uuid}", N),
                ],
            ),
            CallDecl::new(
                "QueryL2VxlanNetwork",
                |p| wire::plan_query(p, L2Query::Vxlan),
                &[
                    route(G, "/v1/l2-networks/vxlan", N),
                    route(G, "/v1/l2-networks/vxlan/{uuid}", N),
                ],
            ),
            CallDecl::new(
                "QueryL2VxlanNetworkPool",
                |p| wire::plan_query(p, L2Query::Pool),
                &[
                    route(G, "/v1/l2-networks/vxlan-pool", N),
                    route(G, "/v1/l2-networks/vxlan-pool/{uuid}", N),
                ],
            ),
            CallDecl::new(
                "QueryVniRange",
                |p| wire::plan_query(p, L2Query::VniRange),
                &[
                    route(G, "/v1/l2-networks/vxlan-pool/vni-ranges", N),
                    route(G, "/v1/l2-networks/vxlan-pool/vni-ranges/{uuid}", N),
                ],
            ),
        ],
        flows: &[],
        #[cfg(test)]
        cases: cases::cases,
    };

    fn apply(
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        caller: &Caller,
        op: L2Op,
    ) -> Result<L2Result, ApiError> {
        model::apply(txn, ctx, caller, op)
    }

    fn reply(out: &L2Result) -> Result<Map<String, Value>, Refusal> {
        inventory_reply(out.inventory())
    }
}
