//! Key pairs on the wire: the inventory (`SshKeyPairInventory`) and request → op.

use serde_json::json;

use super::key;
use super::model::SshKeyPair;
use super::model::SshKeyPairOp;
use super::model::TABLE;
use crate::plan::refusal_of;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource::date;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Refusal;

impl Resource for SshKeyPair {
    const KIND: &'static str = super::model::KIND;
    const TABLE: &'static str = TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |k| json!(k.uuid)),
        Field::new("name", |k| json!(k.name)),
        Field::maybe("description", |k| k.description.as_ref().map(|d| json!(d))),
        Field::new("publicKey", |k| json!(k.public_key)),
        Field::new("createDate", |k| date(k.create_date)),
        Field::new("lastOpDate", |k| date(k.last_op_date)),
    ];
    const INDEXED: &'static [&'static str] = &["name"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// `CreateSshKeyPair`. The key is checked here too, so that a malformed one (up to the
/// envelope's 4 MiB) is refused before it is proposed; the apply checks it again, as it checks
/// every op. `tagUuids` (tag patterns) are not modelled, as for every create.
pub(super) fn create(p: &PlanInput) -> Result<Plan, Refusal> {
    let public_key = p.required("publicKey")?;
    key::parse(&public_key).map_err(|e| refusal_of(&e))?;
    Ok(p.propose(SshKeyPairOp::Create {
        uuid: p.new_uuid(),
        name: p.required("name")?,
        description: p.string("description"),
        public_key,
    }))
}
