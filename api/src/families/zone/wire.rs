//! Zones on the wire: the inventory and request → op.

use serde_json::json;

use super::model::Zone;
use super::model::ZoneOp;
use super::model::TABLE;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource::date;
use crate::resource::generic;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Refusal;

impl Resource for Zone {
    const KIND: &'static str = super::model::KIND;
    const TABLE: &'static str = TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |z| json!(z.uuid)),
        Field::new("name", |z| json!(z.name)),
        Field::maybe("description", |z| z.description.as_ref().map(|d| json!(d))),
        Field::new("state", |z| json!(z.state)),
        Field::new("type", |_| json!("zstack")),
        Field::new("isDefault", |z| json!(z.is_default)),
        Field::new("createDate", |z| date(z.create_date)),
        Field::new("lastOpDate", |z| date(z.last_op_date)),
    ];
    const INDEXED: &'static [&'static str] = &["name", "state", "isDefault"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

pub(super) fn create(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(ZoneOp::Create {
        uuid: p.new_uuid(),
        name: p.required("name")?,
        description: p.string("description"),
        is_default: params::boolean(p.body, "isDefault").unwrap_or(false),
    }))
}

pub(super) fn update(p: &PlanInput) -> Result<Plan, Refusal> {
    let is_default = params::boolean(p.body, "isDefault");
    generic::plan_update(p, |uuid, rename| ZoneOp::Update {
        uuid,
        rename,
        is_default,
    })
}
