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

use crate::family::prelude::*;

/// ZStack's class of a cluster.
const CLUSTER: JavaClass = JavaClass::leaf("org.zstack.header.cluster.ClusterInventory");

/// The cluster family.
pub struct Clusters;

impl Family for Clusters {
    type Op = ClusterOp;
    type Out = ClusterResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[],
        replies: inventories!(Schema::Class(&CLUSTER)),
        name: "cluster",
        tables: &[TABLE],
        kinds: &[KindDecl {
            relations: &[
                Relation::cascade("zoneUuid", "Zone").with_parent_state(model::zone_state_changed)
            ],
            // Placement answers candidate clusters as inventories (host/placement.rs).
            inventory: Some(resource::stored_inventory::<Cluster>),
            ..KindDecl::new(KIND, TABLE, &["ClusterVO"])
        }],
        calls: &[
            CallDecl::new(
                "CreateCluster",
                wire::create,
                &[route(Po, "/v1/clusters", P)],
            )
            .creating("ClusterVO"),
            update_call!("UpdateCluster", "/v1/clusters", ClusterOp::Update),
            state_call!("ChangeClusterState", "/v1/clusters", ClusterOp::ChangeState),
            delete_call!("DeleteCluster", "/v1/clusters", ClusterOp::Delete),
            query_call!("QueryCluster", "/v1/clusters", Cluster),
        ],
        flows: &[],
        #[cfg(test)]
        cases: cases::cases,
    };
    const APPLY: ApplyFn<Self> = model::apply;
}

impl Reply for ClusterResult {
    fn inventory(&self) -> Option<Value> {
        match self {
            ClusterResult::Inventory(c) => Some(resource::inventory(c)),
            ClusterResult::Deleted => None,
        }
    }
}
