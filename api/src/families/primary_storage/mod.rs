//! Primary storage (spec 03 §9): LocalStorage, NFS and SharedMountPoint (decision 7). A PS
//! belongs to one zone and is attached to clusters of that zone under the combination rules of
//! spec 03 §3.3. Capacity figures start at 0; the physical ones are what the hosts' agents
//! measure (`capacity.rs`: the storage tracker's rounds and `ReconnectPrimaryStorage`'s flow),
//! the virtual `availableCapacity` is that less what volumes reserved (`reservation.rs`).

mod capacity;
#[cfg(test)]
mod cases;
pub mod flows;
mod model;
mod reads;
mod reservation;
#[cfg(test)]
mod reservation_tests;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

pub use capacity::hosts_to_ask;
pub use capacity::is_news;
pub use capacity::report_of;
pub use capacity::Measured;
pub use capacity::StorageOnHost;

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

use crate::family::prelude::*;

/// ZStack's class of primary storage: local, NFS and shared mount point storage are all
/// `PrimaryStorageVO` rows, written as the base inventory.
const PRIMARY_STORAGE: JavaClass =
    JavaClass::leaf("org.zstack.header.storage.primary.PrimaryStorageInventory");

/// The primary-storage family.
pub struct PrimaryStorages;

impl Family for PrimaryStorages {
    type Op = PrimaryStorageOp;
    type Out = PrimaryStorageResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[
            ServiceDecl {
                name: reservation::RESERVE,
                run: reservation::reserve,
            },
            ServiceDecl {
                name: reservation::RELEASE,
                run: reservation::release,
            },
        ],
        replies: inventories!(Schema::Class(&PRIMARY_STORAGE)),
        name: "primary_storage",
        tables: &[TABLE, resource::local_storage::TABLE, reservation::TABLE],
        kinds: &[KindDecl {
            relations: &[
                // A zone's primary storage goes with it (its clusters are gone by then).
                Relation::cascade("zoneUuid", "Zone"),
                Relation::new(
                    "attachedClusterUuids",
                    "Cluster",
                    OnDelete::Detach(model::forget_cluster),
                ),
            ],
            // Placement reads capacity, type, status and attachments (host/placement.rs).
            inventory: Some(resource::stored_inventory::<PrimaryStorage>),
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
                routes!(actions "/v1/primary-storage"),
            ),
            CallDecl::new(
                "ChangePrimaryStorageState",
                wire::change_state,
                routes!(actions "/v1/primary-storage"),
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
            delete_call!(
                "DeletePrimaryStorage",
                "/v1/primary-storage",
                PrimaryStorageOp::Delete
            ),
            query_call!("QueryPrimaryStorage", "/v1/primary-storage", PrimaryStorage),
            CallDecl::new(
                "GetPrimaryStorageCapacity",
                reads::capacity,
                &[route(G, "/v1/primary-storage/capacities", N)],
            ),
            CallDecl::new(
                "ReconnectPrimaryStorage",
                |p| {
                    Ok(p.propose(PrimaryStorageOp::Reconnect {
                        uuid: generic::target_uuid(p)?,
                    }))
                },
                routes!(actions "/v1/primary-storage"),
            )
            .running(flows::RECONNECT),
        ],
        flows: &[flows::RECONNECT_FLOW],
        #[cfg(test)]
        cases: cases::cases,
    };
    const APPLY: ApplyFn<Self> = model::apply;
}
