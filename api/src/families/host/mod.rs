//! KVM hosts (spec 03 §4): physical servers of a KVM cluster, reached over SSH.
//!
//! Until the host agent exists (the next issue), "connecting" a host means the node that
//! received the call reached the host's SSH port and read an SSH identification line
//! ([`probe_target`] tells it where to look); only then is the command proposed, so a host
//! that cannot be reached never leaves a record behind (spec 03 §12.1 step 12). Capacity
//! fields stay 0 until the agent reports the host's facts.

#[cfg(test)]
mod cases;
mod model;
mod probe;
#[cfg(test)]
pub(crate) mod tests;
mod wire;

pub use model::Host;
pub use model::HostOp;
pub use model::HostResult;
pub use model::HostState;
pub use model::HostStateEvent;
pub use model::HostStatus;
pub use model::DEFAULT_SSH_PORT;
pub use model::KIND;
pub use model::KVM;
pub use model::TABLE;
pub use probe::probe_target;
pub use probe::unreachable_refusal;
pub use probe::PROBED_CALLS;

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

/// The host family.
pub struct Hosts;

impl Family for Hosts {
    type Op = HostOp;
    type Out = HostResult;
    const DECL: FamilyDecl = FamilyDecl {
        name: "host",
        tables: &[TABLE],
        kinds: &[KindDecl {
            // A cluster's hosts go with it (spec 03 §3.6); no VMs exist yet, so nothing else
            // hangs off a host but its tags.
            relations: &[Relation {
                field: "clusterUuid",
                parent: "Cluster",
                on_delete: OnDelete::Cascade,
                on_parent_state: Some(model::cluster_state_changed),
            }],
            ..KindDecl::new(KIND, TABLE, &["HostVO", "KVMHostVO"])
        }],
        calls: &[
            CallDecl::new(
                "AddKVMHost",
                wire::add_kvm,
                &[route(Po, "/v1/hosts/kvm", P)],
            )
            .creating("HostVO"),
            CallDecl::new(
                "UpdateKVMHost",
                wire::update_kvm,
                &[route(Pu, "/v1/hosts/kvm/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "ChangeHostState",
                wire::change_state,
                &[route(Pu, "/v1/hosts/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "DeleteHost",
                |p| generic::plan_delete(p, |uuid| HostOp::Delete { uuid }),
                &[route(D, "/v1/hosts/{uuid}", N)],
            ),
            CallDecl::new(
                "ReconnectHost",
                wire::reconnect,
                &[route(Pu, "/v1/hosts/{uuid}/actions", A)],
            ),
            CallDecl::new(
                "QueryHost",
                generic::plan_query::<Host>,
                &[route(G, "/v1/hosts", N), route(G, "/v1/hosts/{uuid}", N)],
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
        op: HostOp,
    ) -> Result<HostResult, ApiError> {
        model::apply(txn, ctx, caller, op)
    }

    fn reply(out: &HostResult) -> Result<Map<String, Value>, Refusal> {
        inventory_reply(out.inventory())
    }
}
