//! Instance offerings and disk offerings (spec 02 §2.6, §2.7, §3.6): templates for VMs and
//! volumes. `Enabled ⇄ Disabled`, then delete (immediate: no recycle bin; deleting one in use
//! is allowed because VMs and volumes keep their own copy of the figures).

#[cfg(test)]
mod cases;
mod model;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

pub use model::DiskOffering;
pub use model::InstanceOffering;
pub use model::OfferingOp;
pub use model::OfferingResult;
pub use model::ALLOCATOR_STRATEGIES;
pub use model::DISK_ALLOCATOR_STRATEGIES;
pub use model::DISK_KIND;
pub use model::DISK_TABLE;
pub use model::INSTANCE_KIND;
pub use model::INSTANCE_TABLE;
pub use model::MAX_CPU;

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
use crate::rest::Method::Delete as D;
use crate::rest::Method::Get as G;
use crate::rest::Method::Post as Po;
use crate::rest::Method::Put as Pu;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The offering family: instance and disk offerings.
pub struct Offerings;

impl Family for Offerings {
    type Op = OfferingOp;
    type Out = OfferingResult;
    const DECL: FamilyDecl = FamilyDecl {
        name: "offering",
        tables: &[INSTANCE_TABLE, DISK_TABLE],
        kinds: &[
            KindDecl::new(INSTANCE_KIND, INSTANCE_TABLE, &["InstanceOfferingVO"]),
            KindDecl::new(DISK_KIND, DISK_TABLE, &["DiskOfferingVO"]),
        ],
        calls: &[
            CallDecl::new(
                "CreateInstanceOffering",
                wire::create_instance,
                &[route(Po, "/v1/instance-offerings", P)],
            )
            .creating("InstanceOfferingVO"),
            CallDecl::new(
                "UpdateInstanceOffering",
                wire::update_instance,
                &[route(Pu, "/v1/instance-offerings/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "ChangeInstanceOfferingState",
                |p| wire::change_state(p, false),
                &[route(Pu, "/v1/instance-offerings/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "DeleteInstanceOffering",
                |p| wire::delete(p, false),
                &[route(D, "/v1/instance-offerings/{uuid}", N)],
            ),
            CallDecl::new(
                "QueryInstanceOffering",
                generic::plan_query::<InstanceOffering>,
                &[
                    route(G, "/v1/instance-offerings", N),
                    route(G, "/v1/instance-offerings/{uuid}", N),
                ],
            ),
            CallDecl::new(
                "CreateDiskOffering",
                wire::create_disk,
                &[route(Po, "/v1/disk-offerings", P)],
            )
            .creating("DiskOfferingVO"),
            CallDecl::new(
                "UpdateDiskOffering",
                wire::update_disk,
                &[route(Pu, "/v1/disk-offerings/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "ChangeDiskOfferingState",
                |p| wire::change_state(p, true),
                &[route(Pu, "/v1/disk-offerings/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "DeleteDiskOffering",
                |p| wire::delete(p, true),
                &[route(D, "/v1/disk-offerings/{uuid}", N)],
            ),
            CallDecl::new(
                "QueryDiskOffering",
                generic::plan_query::<DiskOffering>,
                &[
                    route(G, "/v1/disk-offerings", N),
                    route(G, "/v1/disk-offerings/{uuid}", N),
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
        op: OfferingOp,
    ) -> Result<OfferingResult, ApiError> {
        model::apply(txn, ctx, caller, op)
    }

    fn reply(out: &OfferingResult) -> Result<Map<String, Value>, Refusal> {
        inventory_reply(out.inventory())
    }
}
