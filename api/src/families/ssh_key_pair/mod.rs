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

use crate::family::prelude::*;

/// ZStack's class of a key pair.
const SSH_KEY_PAIR: JavaClass = JavaClass::leaf("org.zstack.header.sshkeypair.SshKeyPairInventory");

/// The SSH key-pair family.
pub struct SshKeyPairs;

impl Family for SshKeyPairs {
    type Op = SshKeyPairOp;
    type Out = SshKeyPairResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[],
        replies: inventories!(Schema::Class(&SSH_KEY_PAIR)),
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
            delete_call!("DeleteSshKeyPair", "/v1/ssh-key-pair", SshKeyPairOp::Delete),
            query_call!("QuerySshKeyPair", "/v1/ssh-key-pair", SshKeyPair),
        ],
        flows: &[],
        #[cfg(test)]
        cases: cases::cases,
    };

    const APPLY: ApplyFn<Self> = model::apply;
}

impl Reply for SshKeyPairResult {
    fn inventory(&self) -> Option<Value> {
        match self {
            SshKeyPairResult::Inventory(k) => Some(resource::inventory(k)),
            SshKeyPairResult::Deleted => None,
        }
    }
}
