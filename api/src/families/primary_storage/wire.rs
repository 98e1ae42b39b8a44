//! Primary storage on the wire: the inventory and request → op.

use serde_json::json;

use super::model::PrimaryStorage;
use super::model::PrimaryStorageOp;
use super::model::PsStateEvent;
use super::model::PsType;
use super::model::KIND;
use super::model::TABLE;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource::date;
use crate::resource::generic;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Refusal;

impl Resource for PrimaryStorage {
    const KIND: &'static str = KIND;
    const TABLE: &'static str = TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |r| json!(r.uuid)),
        Field::new("zoneUuid", |r| json!(r.zone_uuid)),
        Field::new("name", |r| json!(r.name)),
        Field::new("url", |r| json!(r.url)),
        Field::maybe("description", |r| r.description.as_ref().map(|x| json!(x))),
        Field::new("totalCapacity", |r| json!(r.total_capacity)),
        Field::new("availableCapacity", |r| json!(r.available_capacity)),
        Field::new("totalPhysicalCapacity", |r| {
            json!(r.total_physical_capacity)
        }),
        Field::new("availablePhysicalCapacity", |r| {
            json!(r.available_physical_capacity)
        }),
        Field::new("systemUsedCapacity", |r| json!(r.system_used_capacity)),
        Field::new("type", |r| json!(r.ps_type.as_str())),
        Field::new("state", |r| json!(r.state)),
        Field::new("status", |r| json!(r.status)),
        Field::new("mountPath", |r| json!(r.mount_path)),
        Field::new("createDate", |r| date(r.create_date)),
        Field::new("lastOpDate", |r| date(r.last_op_date)),
        Field::new("attachedClusterUuids", |r| json!(r.attached_cluster_uuids)),
    ];
    const INDEXED: &'static [&'static str] =
        &["name", "state", "zoneUuid", "type", "attachedClusterUuids"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// `Add{Local,Nfs,SharedMountPoint}PrimaryStorage`: one shape, the type from the call.
pub(super) fn add(p: &PlanInput, ps_type: PsType) -> Result<Plan, Refusal> {
    Ok(p.propose(PrimaryStorageOp::Add {
        uuid: p.new_uuid(),
        ps_type,
        zone_uuid: p.required("zoneUuid")?,
        name: p.required("name")?,
        url: p.required("url")?,
        description: p.string("description"),
    }))
}

pub(super) fn update(p: &PlanInput) -> Result<Plan, Refusal> {
    let url = p.string("url");
    generic::plan_update(p, |uuid, rename| PrimaryStorageOp::Update {
        uuid,
        rename,
        url,
    })
}

pub(super) fn change_state(p: &PlanInput) -> Result<Plan, Refusal> {
    let uuid = generic::target_uuid(p)?;
    let event = params::state_event(
        p.body,
        p.call,
        &[
            ("enable", PsStateEvent::Enable),
            ("disable", PsStateEvent::Disable),
            ("maintain", PsStateEvent::Maintain),
            ("deleting", PsStateEvent::Deleting),
        ],
    )?;
    Ok(p.propose(PrimaryStorageOp::ChangeState { uuid, event }))
}
