//! Zones (spec 03 §zones): the top of the hardware hierarchy. What a zone holds declares its
//! own relation to it (cluster, primary storage, L2 network, backup storage), so deleting or
//! disabling a zone walks those declarations.

#[cfg(test)]
mod cases;
mod model;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

pub use model::Zone;
pub use model::ZoneOp;
pub use model::ZoneResult;
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
use crate::rest::Method::Delete as D;
use crate::rest::Method::Get as G;
use crate::rest::Method::Post as Po;
use crate::rest::Method::Put as Pu;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The zone family.
pub struct Zones;

impl Family for Zones {
    type Op = ZoneOp;
    type Out = ZoneResult;
    const DECL: FamilyDecl = FamilyDecl {
        name: "zone",
        tables: &[TABLE],
        kinds: &[KindDecl::new(KIND, TABLE, &["ZoneVO"])],
        calls: &[
            CallDecl::new("CreateZone", wire::create, &[route(Po, "/v1/zones", P)])
                .creating("ZoneVO"),
            CallDecl::new(
                "UpdateZone",
                wire::update,
                &[route(Pu, "/v1/zones/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "ChangeZoneState",
                |p| {
                    generic::plan_change_state(p, |uuid, event| ZoneOp::ChangeState { uuid, event })
                },
                &[route(Pu, "/v1/zones/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "DeleteZone",
                |p| generic::plan_delete(p, |uuid| ZoneOp::Delete { uuid }),
                &[route(D, "/v1/zones/{uuid}", N)],
            ),
            CallDecl::new(
                "QueryZone",
                generic::plan_query::<Zone>,
                &[route(G, "/v1/zones", N), route(G, "/v1/zones/{uuid}", N)],
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
        op: ZoneOp,
    ) -> Result<ZoneResult, ApiError> {
        model::apply(txn, ctx, caller, op)
    }

    fn reply(out: &ZoneResult) -> Result<Map<String, Value>, Refusal> {
        inventory_reply(match out {
            ZoneResult::Inventory(z) => Some(resource::inventory(z)),
            ZoneResult::Deleted => None,
        })
    }
}
