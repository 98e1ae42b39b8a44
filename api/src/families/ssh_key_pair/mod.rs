//! SSH key pairs (ZStack's `org.zstack.header.sshkeypair`): an account's named OpenSSH public
//! keys, to be injected into its VMs. Owned by the account that registers them (the admin sees
//! every account's); taggable (`SshKeyPairVO`). Attaching them to VMs
//! (`AttachSshKeyPairToVmInstance`/`Detach…`) and `GenerateSshKeyPair` come with the VM family.
//!
//! The worked example of adding a family (docs/architecture.md, "How to add a resource
//! family"): this folder plus one line in `registry!` (and its `pub mod` line).

#[cfg(test)]
mod cases;
mod key;
mod model;
#[cfg(test)]
mod samples;
#[cfg(test)]
mod tests;
mod wire;

pub use key::KEY_TYPES;
pub use key::MAX_PUBLIC_KEY;
pub use model::SshKeyPair;
pub use model::SshKeyPairOp;
pub use model::SshKeyPairResult;
pub use model::KIND;
pub use model::TABLE;
pub use model::VO;

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

/// The SSH key-pair family.
pub struct SshKeyPairs;

impl Family for SshKeyPairs {
    type Op = SshKeyPairOp;
    type Out = SshKeyPairResult;
    const DECL: FamilyDecl = FamilyDecl {
        name: "ssh_key_pair",
        tables: &[TABLE],
        kinds: &[KindDecl::new(KIND, TABLE, &[VO])],
        calls: &[
            CallDecl::new(
                "CreateSshKeyPair",
                wire::create,
                &[route(Po, "/v1/ssh-key-pair", P)],
            )
            .creating(VO),
            CallDecl::new(
                "UpdateSshKeyPair",
                |p| generic::plan_update(p, |uuid, rename| SshKeyPairOp::Update { uuid, rename }),
                &[route(Pu, "/v1/ssh-key-pair/{uuid}", A)],
            ),
            CallDecl::new(
                "DeleteSshKeyPair",
                |p| generic::plan_delete(p, |uuid| SshKeyPairOp::Delete { uuid }),
                &[route(D, "/v1/ssh-key-pair/{uuid}", N)],
            ),
            CallDecl::new(
                "QuerySshKeyPair",
                generic::plan_query::<SshKeyPair>,
                &[
                    route(G, "/v1/ssh-key-pair", N),
                    route(G, "/v1/ssh-key-pair/{uuid}", N),
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
        op: SshKeyPairOp,
    ) -> Result<SshKeyPairResult, ApiError> {
        model::apply(txn, ctx, caller, op)
    }

    fn reply(out: &SshKeyPairResult) -> Result<Map<String, Value>, Refusal> {
        inventory_reply(match out {
            SshKeyPairResult::Inventory(k) => Some(resource::inventory(k)),
            SshKeyPairResult::Deleted => None,
        })
    }
}
