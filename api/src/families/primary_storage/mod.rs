//! Primary storage (spec 03 §9): LocalStorage, NFS and SharedMountPoint (decision 7). A PS
//! belongs to one zone and is attached to clusters of that zone under the combination rules of
//! spec 03 §3.3. Capacity figures are reported by the agents later; they start at 0.

#[cfg(test)]
mod cases;
mod model;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

pub use model::check_url;
pub use model::combination_allowed;
pub use model::CapacityReport;
pub use model::PrimaryStorage;
pub use model::PrimaryStorageOp;
pub use model::PrimaryStorageResult;
pub use model::PsState;
pub use model::PsStateEvent;
pub use model::PsStatus;
pub use model::PsType;
pub use model::KIND;
pub use model::MAX_URL;
pub use model::NFS_MOUNT_BASE;
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

/// The primary-storage family.
pub struct PrimaryStorages;

impl Family for PrimaryStorages {
    type Op = PrimaryStorageOp;
    type Out = PrimaryStorageResult;
    const DECL: FamilyDecl = FamilyDecl {
        name: "primary_storage",
        tables: &[TABLE],
        kinds: &[KindDecl {
            relations: &[
                // A zone's primary storage goes with it (its clusters are gone by then).
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
            ],
            ..KindDecl::new(KIND, TABLE, &["PrimaryStorageVO"])
        }],
        calls: &[
            CallDecl::new(
                "AddLocalPrimaryStorage",
                |p| wire::add(p, PsType::LocalStorage),
                &[route(Po, "/v1/primary-storage/local-storage", P)],
            )
            .creating("PrimaryStorageVO"),
            CallDecl::new(
                "AddNfsPrimaryStorage",
                |p| wire::add(p, PsType::Nfs),
                &[route(Po, "/v1/primary-storage/nfs", P)],
            )
            .creating("PrimaryStorageVO"),
            CallDecl::new(
                "AddSharedMountPointPrimaryStorage",
                |p| wire::add(p, PsType::SharedMountPoint),
                &[route(Po, "/v1/primary-storage/smp", P)],
            )
            .creating("PrimaryStorageVO"),
            CallDecl::new(
                "UpdatePrimaryStorage",
                wire::update,
                &[route(Pu, "/v1/primary-storage/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "ChangePrimaryStorageState",
                wire::change_state,
                &[route(Pu, "/v1/primary-storage/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "AttachPrimaryStorageToCluster",
                |p| {
                    generic::plan_pair(
                        p,
                        "primaryStorageUuid",
                        "clusterUuid",
                        |uuid, cluster_uuid| PrimaryStorageOp::Attach { uuid, cluster_uuid },
                    )
                },
                &[route(
                    Po,
                    "/v1/clusters/{clusterUuid}/primary-storage/{primaryStorageUuid}",
                    P,
                )],
            ),
            CallDecl::new(
                "DetachPrimaryStorageFromCluster",
                |p| {
                    generic::plan_pair(
                        p,
                        "primaryStorageUuid",
                        "clusterUuid",
                        |uuid, cluster_uuid| PrimaryStorageOp::Detach { uuid, cluster_uuid },
                    )
                },
                &[route(
                    D,
                    "/v1/clusters/{clusterUuid}/primary-storage/{primaryStorageUuid}",
                    N,
                )],
            ),
            CallDecl::new(
                "DeletePrimaryStorage",
                |p| generic::plan_delete(p, |uuid| PrimaryStorageOp::Delete { uuid }),
                &[route(D, "/v1/primary-storage/{uuid}", N)],
            ),
            CallDecl::new(
                "QueryPrimaryStorage",
                generic::plan_query::<PrimaryStorage>,
                &[
                    route(G, "/v1/primary-storage", N),
                    route(G, "/v1/primary-storage/{uuid}", N),
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
        op: PrimaryStorageOp,
    ) -> Result<PrimaryStorageResult, ApiError> {
        model::apply(txn, ctx, caller, op)
    }

    fn reply(out: &PrimaryStorageResult) -> Result<Map<String, Value>, Refusal> {
        inventory_reply(out.inventory())
    }
}
