//! Global configuration (spec 05 §7, spec 06 §8): `UpdateGlobalConfig`, `ResetGlobalConfig`
//! and `QueryGlobalConfig` over the settings of `crate::settings` (their definitions, checks
//! and current values, which every family reads there). A change is a replicated command, so
//! every node sees it at the same log index and nothing needs a restart; only values that
//! differ from the default are stored.

#[cfg(test)]
mod cases;
mod model;
#[cfg(test)]
mod tests;
mod wire;

pub use model::fields;
pub use model::inventories;
pub use model::inventory;
pub use model::GlobalConfigOp;
pub use model::GlobalConfigResult;

use crate::family::prelude::*;

/// ZStack's class of a global configuration.
const GLOBAL_CONFIG: JavaClass = JavaClass::leaf("org.zstack.core.config.GlobalConfigInventory");

/// The global-config family.
pub struct GlobalConfigs;

impl Family for GlobalConfigs {
    type Op = GlobalConfigOp;
    type Out = GlobalConfigResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[],
        replies: inventories!(Schema::Class(&GLOBAL_CONFIG)),
        calls: &[
            CallDecl::new(
                "UpdateGlobalConfig",
                wire::update,
                &[route(
                    Pu,
                    "/v1/global-configurations/{category}/{name}/actions",
                    A,
                )],
            ),
            CallDecl::new(
                "ResetGlobalConfig",
                |p| Ok(p.propose(GlobalConfigOp::ResetAll)),
                &[route(Pu, "/v1/global-configurations/actions", A)],
            ),
            CallDecl::new(
                "QueryGlobalConfig",
                |p| p.query(model::run_query),
                &[route(G, "/v1/global-configurations", N)],
            ),
        ],
        #[cfg(test)]
        cases: cases::cases,
        ..FamilyDecl::internal("global_config", &[crate::settings::TABLE])
    };
    const APPLY: ApplyFn<Self> = |txn, _ctx, caller, op| model::apply(txn, caller, op);
}

impl Reply for GlobalConfigResult {
    fn inventory(&self) -> Option<Value> {
        match self {
            GlobalConfigResult::Inventory(inv) => Some(inv.clone()),
            GlobalConfigResult::Reset => None,
        }
    }
}
