//! Clusters on the wire: the inventory and request → op.

use serde_json::json;

use super::model::Cluster;
use super::model::ClusterOp;
use super::model::TABLE;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource::date;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Refusal;

impl Resource for Cluster {
    const KIND: &'static str = super::model::KIND;
    const TABLE: &'static str = TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("name", |c| json!(c.name)),
        Field::new("uuid", |c| json!(c.uuid)),
        Field::maybe("description", |c| c.description.as_ref().map(|d| json!(d))),
        Field::new("state", |c| json!(c.state)),
        Field::new("hypervisorType", |c| json!(c.hypervisor_type)),
        Field::new("createDate", |c| date(c.create_date)),
        Field::new("lastOpDate", |c| date(c.last_op_date)),
        Field::new("zoneUuid", |c| json!(c.zone_uuid)),
        Field::new("type", |_| json!("zstack")),
        Field::maybe("architecture", |c| {
            c.architecture.as_ref().map(|a| json!(a))
        }),
    ];
    const INDEXED: &'static [&'static str] = &["name", "state", "zoneUuid", "hypervisorType"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

pub(super) fn create(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(ClusterOp::Create {
        uuid: p.new_uuid(),
        zone_uuid: p.required("zoneUuid")?,
        name: p.required("name")?,
        description: p.string("description"),
        hypervisor_type: p.required("hypervisorType")?,
        cluster_type: p.string("type"),
        architecture: p.string("architecture"),
    }))
}
