//! Tags on the wire: the inventories (`SystemTagInventory`, `UserTagInventory`), request → op,
//! and the `systemTags`/`userTags` of a create call.

use serde_json::json;
use serde_json::Value;

use super::model::SystemTag;
use super::model::TagOp;
use super::model::TagRecord;
use super::model::UserTag;
use super::model::MAX_TAG;
use super::model::SYSTEM_TABLE;
use super::model::USER_TABLE;
use crate::catalogue::CallSpec;
use crate::params;
use crate::params::Body;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource::date;
use crate::resource::tags;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::Caller;
use crate::Command;
use crate::IntoCommand;

/// What `resource::tags` reads (the tagged resource, the text) is indexed.
const TAG_INDEXED: &[&str] = &[tags::RESOURCE_FIELD, "resourceType", tags::TAG_FIELD];

impl Resource for SystemTag {
    const KIND: &'static str = tags::SYSTEM_KIND;
    const TABLE: &'static str = SYSTEM_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("inherent", |r| json!(r.0.inherent)),
        Field::splice(|r| common_inventory(&r.0, "System"), common_fields),
    ];
    const INDEXED: &'static [&'static str] = TAG_INDEXED;

    fn uuid(&self) -> &str {
        &self.0.uuid
    }
}

impl Resource for UserTag {
    const KIND: &'static str = tags::USER_KIND;
    const TABLE: &'static str = USER_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[Field::splice(
        |r| common_inventory(&r.0, "User"),
        common_fields,
    )];
    const INDEXED: &'static [&'static str] = TAG_INDEXED;

    fn uuid(&self) -> &str {
        &self.0.uuid
    }
}

/// The fields both tag kinds share, in order (`TagInventory`).
type RenderTag = fn(&TagRecord, &str) -> Value;

const COMMON: &[(&str, RenderTag)] = &[
    ("uuid", |t, _| json!(t.uuid)),
    ("resourceUuid", |t, _| json!(t.resource_uuid)),
    ("resourceType", |t, _| json!(t.resource_type)),
    ("tag", |t, _| json!(t.tag)),
    ("type", |_, kind| json!(kind)),
    ("createDate", |t, _| date(t.create_date)),
    ("lastOpDate", |t, _| date(t.last_op_date)),
];

fn common_inventory(t: &TagRecord, kind: &str) -> Value {
    Value::Object(
        COMMON
            .iter()
            .map(|(name, render)| (name.to_string(), render(t, kind)))
            .collect(),
    )
}

fn common_fields() -> Vec<&'static str> {
    COMMON.iter().map(|(name, _)| *name).collect()
}

/// `CreateSystemTag` (`system`) / `CreateUserTag`.
pub(super) fn create(p: &PlanInput, system: bool) -> Result<Plan, Refusal> {
    Ok(p.propose(TagOp::Create {
        // `APICreateTagMsg` is not an `APICreateMessage`: its `resourceUuid` names the tagged
        // resource, so the tag's own uuid is always the stamped one.
        uuid: p.stamp.new_uuid.clone(),
        system,
        resource_type: p.required("resourceType")?,
        resource_uuid: p.required("resourceUuid")?,
        tag: p.required("tag")?,
    }))
}

/// `DeleteTag`.
pub(super) fn delete(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(TagOp::Delete {
        uuid: p.required("uuid")?,
    }))
}

/// A create call's `systemTags`/`userTags` become tag records of the new resource, in the same
/// apply ([`TagOp::Tagged`]); checked here so that, once the create succeeded, creating
/// the tags cannot be refused.
pub fn with_create_tags(
    call: &CallSpec,
    b: &Body,
    caller: &Caller,
    resource_type: &str,
    command: Command,
) -> Result<Command, Refusal> {
    let mut tags = Vec::new();
    for (field, system) in [("systemTags", true), ("userTags", false)] {
        for t in params::strings(b, field, call)?.unwrap_or_default() {
            if t.trim().is_empty() || t.chars().count() > MAX_TAG {
                return Err(Refusal::new(
                    Code::InvalidArgument,
                    format!("a tag in field[{field}] is empty or longer than {MAX_TAG} characters"),
                ));
            }
            if !tags.contains(&(system, t.clone())) {
                tags.push((system, t));
            }
        }
    }
    if tags.is_empty() {
        return Ok(command);
    }
    Ok(TagOp::Tagged {
        command: Box::new(command),
        resource_type: resource_type.to_string(),
        tags,
    }
    .command(caller.clone()))
}
