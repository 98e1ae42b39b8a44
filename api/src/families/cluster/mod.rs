//! Clusters (spec 03 §3): a set of hosts of one hypervisor type inside a zone. Storage and L2
//! networks are attached to clusters; deleting a cluster detaches them and deletes its hosts
//! (their families declare how).

#[cfg(test)]
mod cases;
mod model;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

pub use model::Cluster;
pub use model::ClusterOp;
pub use model::ClusterResult;
pub use model::HYPERVISOR_TYPES;
pub use model::KIND;
pub use model::TABLE;

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
use crate::resource;
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

/// The cluster family.
pub struct Clusters;

impl Family for Clusters {
    type Op = ClusterOp;
    type Out = ClusterResult;
    const DECL: FamilyDecl = FamilyDecl {
        name: "cluster",
        tables: &[TABLE],
        kinds: &[KindDecl {
            relations: &[Relation {
                field: "zoneUuid",
                parent: "Zone",
                on_delete: OnDelete::Cascade,
                on_parent_state: Some(model::zone_state_changed),
            }],
            ..KindDecl::new(KIND, TABLE, &["ClusterVO"])
        }],
        calls: &[
            CallDecl::new(
                "CreateCluster",
                wire::create,
                &[route(Po, "/v1/clusters", P)],
            )
            .creating("ClusterVO"),
            CallDecl::new(
                "UpdateCluster",
                |p| generic::plan_update(p, |uuid, rename| ClusterOp::Update { uuid, rename }),
                &[route(Pu, "/v1/clusters/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "ChangeClusterState",
                |p| {
                    generic::plan_change_state(p, |uuid, event| ClusterOp::ChangeState {
                        uuid,
                        event,
                    })
                },
                &[route(Pu, "/v1/clusters/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "DeleteCluster",
                |p| generic::plan_delete(p, |uuid| ClusterOp::Delete { uuid }),
                &[route(D, "/v1/clusters/{uuid}", N)],
            ),
            CallDecl::new(
                "QueryCluster",
                generic::plan_query::<Cluster>,
                &[
                    route(G, "/v1/clusters", N),
                    route(G, "/v1/clusters/{uuid}", N),
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
        op: ClusterOp,
    ) -> Result<ClusterResult, ApiError> {
        model::apply(txn, ctx, caller, op)
    }

    fn reply(out: &ClusterResult) -> Result<Map<String, Value>, Refusal> {
        inventory_reply(match out {
            ClusterResult::Inventory(c) => Some(resource::inventory(c)),
            ClusterResult::Deleted => None,
        })
    }
}
