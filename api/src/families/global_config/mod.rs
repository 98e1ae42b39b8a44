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

pub use model::inventories;
pub use model::inventory;
pub use model::GlobalConfigOp;
pub use model::GlobalConfigResult;
pub use model::FIELDS;

use serde_json::Map;
use serde_json::Value;

use crate::family::inventory_reply;
use crate::family::route;
use crate::family::CallDecl;
use crate::family::Family;
use crate::family::FamilyDecl;
use crate::family::RestBody::Action as A;
use crate::family::RestBody::None as N;
use crate::rest::Method::Get as G;
use crate::rest::Method::Put as Pu;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The global-config family.
pub struct GlobalConfigs;

impl Family for GlobalConfigs {
    type Op = GlobalConfigOp;
    type Out = GlobalConfigResult;
    const DECL: FamilyDecl = FamilyDecl {
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

    fn apply(
        txn: &mut dyn StateTxn,
        _ctx: &ApplyCtx,
        caller: &Caller,
        op: GlobalConfigOp,
    ) -> Result<GlobalConfigResult, ApiError> {
        model::apply(txn, caller, op)
    }

    fn reply(out: &GlobalConfigResult) -> Result<Map<String, Value>, Refusal> {
        inventory_reply(match out {
            GlobalConfigResult::Inventory(inv) => Some(inv.clone()),
            GlobalConfigResult::Reset => None,
        })
    }
}
