//! The management-node registry (spec decision 9): one record per cluster member, shaped like
//! ZStack's `ManagementNodeInventory`, kept current by the leader's registry duty and listed by
//! `QueryManagementNode`.

#[cfg(test)]
mod cases;
mod model;
#[cfg(test)]
mod tests;

pub use model::decode;
pub use model::fields;
pub use model::list;
pub use model::ManagementNode;
pub use model::ManagementNodeOp;
pub use model::ManagementNodeResult;
pub use model::TABLE;

use crate::family::prelude::*;

/// ZStack's class of a management node.
const MANAGEMENT_NODE: JavaClass =
    JavaClass::leaf("org.zstack.header.managementnode.ManagementNodeInventory");

/// The management-node family: the registry duty's records and `QueryManagementNode`.
pub struct ManagementNodes;

impl Family for ManagementNodes {
    type Op = ManagementNodeOp;
    type Out = ManagementNodeResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[],
        replies: inventories!(Schema::Class(&MANAGEMENT_NODE)),
        calls: &[CallDecl::new(
            "QueryManagementNode",
            |p| p.query(model::run_query),
            &[route(G, "/v1/management-nodes", N)],
        )],
        #[cfg(test)]
        cases: cases::cases,
        ..FamilyDecl::internal("management_node", &[TABLE])
    };
    const APPLY: ApplyFn<Self> = |txn, ctx, _caller, op| model::apply(txn, ctx, op);
}

impl Reply for ManagementNodeResult {}
