//! Offerings on the wire: the inventories and request → op.

use serde_json::json;
use serde_json::Value;

use super::model::DiskOffering;
use super::model::InstanceOffering;
use super::model::OfferingOp;
use super::model::OfferingResult;
use super::model::DISK_KIND;
use super::model::DISK_TABLE;
use super::model::INSTANCE_KIND;
use super::model::INSTANCE_TABLE;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource;
use crate::resource::date;
use crate::resource::generic;
use crate::resource::generic::EnableEvent;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Refusal;

impl Resource for InstanceOffering {
    const KIND: &'static str = INSTANCE_KIND;
    const TABLE: &'static str = INSTANCE_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("cpuNum", |r| json!(r.cpu_num)),
        Field::new("cpuSpeed", |_| json!(0)),
        Field::new("memorySize", |r| json!(r.memory_size)),
        Field::new("reservedMemorySize", |r| json!(r.reserved_memory_size)),
        Field::new("type", |_| json!("UserVm")),
        Field::new("allocatorStrategy", |r| json!(r.allocator_strategy)),
        Field::new("sortKey", |r| json!(r.sort_key)),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
        Field::new("state", |r| json!(r.state)),
    ];
    const INDEXED: &'static [&'static str] = &["name", "state"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

impl Resource for DiskOffering {
    const KIND: &'static str = DISK_KIND;
    const TABLE: &'static str = DISK_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("diskSize", |r| json!(r.disk_size)),
        Field::new("sortKey", |r| json!(r.sort_key)),
        Field::new("state", |r| json!(r.state)),
        Field::new("type", |_| json!("zstack")),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
        Field::maybe("allocatorStrategy", |r| {
            r.allocator_strategy.as_ref().map(|x| json!(x))
        }),
    ];
    const INDEXED: &'static [&'static str] = &["name", "state"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// The `inventory` of the reply, if any.
impl crate::family::Reply for OfferingResult {
    fn inventory(&self) -> Option<Value> {
        match self {
            OfferingResult::Instance(o) => Some(resource::inventory(o)),
            OfferingResult::Disk(o) => Some(resource::inventory(o)),
            OfferingResult::Deleted => None,
        }
    }
}

pub(super) fn create_instance(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(OfferingOp::CreateInstance {
        uuid: p.new_uuid(),
        name: p.required("name")?,
        description: p.string("description"),
        cpu_num: params::required_int(p.body, "cpuNum", p.call)?,
        memory_size: params::required_int(p.body, "memorySize", p.call)?,
        reserved_memory_size: params::int(p.body, "reservedMemorySize", p.call)?,
        allocator_strategy: p.string("allocatorStrategy"),
        sort_key: params::int(p.body, "sortKey", p.call)?,
        offering_type: p.string("type"),
    }))
}

pub(super) fn update_instance(p: &PlanInput) -> Result<Plan, Refusal> {
    let allocator_strategy = p.string("allocatorStrategy");
    generic::plan_update(p, |uuid, rename| OfferingOp::UpdateInstance {
        uuid,
        rename,
        allocator_strategy,
    })
}

pub(super) fn create_disk(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(OfferingOp::CreateDisk {
        uuid: p.new_uuid(),
        name: p.required("name")?,
        description: p.string("description"),
        disk_size: params::required_int(p.body, "diskSize", p.call)?,
        sort_key: params::int(p.body, "sortKey", p.call)?,
        allocation_strategy: p.string("allocationStrategy"),
    }))
}

pub(super) fn update_disk(p: &PlanInput) -> Result<Plan, Refusal> {
    generic::plan_update(p, |uuid, rename| OfferingOp::UpdateDisk { uuid, rename })
}

/// `Change{Instance,Disk}OfferingState` of one kind.
pub(super) fn change_state(p: &PlanInput, disk: bool) -> Result<Plan, Refusal> {
    generic::plan_change_state(p, |uuid, event: EnableEvent| OfferingOp::ChangeState {
        disk,
        uuid,
        event,
    })
}

/// `Delete{Instance,Disk}Offering` of one kind.
pub(super) fn delete(p: &PlanInput, disk: bool) -> Result<Plan, Refusal> {
    generic::plan_delete(p, |uuid| OfferingOp::Delete { disk, uuid })
}
