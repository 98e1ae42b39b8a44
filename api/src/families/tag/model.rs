//! Tag records, commands and their apply, and the tagged create.

use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use crate::params;
use crate::resource;
use crate::resource::tags;
use crate::validate;
use crate::wire::errors::Code;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::StateTxn;

/// The system-tag table.
pub const SYSTEM_TABLE: &str = "system_tag";
/// The user-tag table.
pub const USER_TABLE: &str = "user_tag";
/// Longest tag text (`VARCHAR(2048)`).
pub const MAX_TAG: usize = 2048;

/// A tag record; the same shape for both kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// 32 hex chars.
    pub uuid: String,
    /// The tagged resource.
    pub resource_uuid: String,
    /// Its VO class name, e.g. `VmInstanceVO`.
    pub resource_type: String,
    /// The text.
    pub tag: String,
    /// System tags created by the system itself cannot be deleted by users.
    pub inherent: bool,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

/// A system tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SystemTag(pub TagRecord);

/// A user tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserTag(pub TagRecord);

/// Tag commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagOp {
    /// `CreateSystemTag` / `CreateUserTag`.
    Create {
        /// New tag's uuid.
        uuid: String,
        /// System (true) or user tag.
        system: bool,
        /// VO class name of the tagged resource.
        resource_type: String,
        /// Tagged resource.
        resource_uuid: String,
        /// Text.
        tag: String,
    },
    /// `DeleteTag` (either kind).
    Delete {
        /// Tag.
        uuid: String,
    },
    /// A create call with `systemTags`/`userTags`: the create, then the tags of the new
    /// resource, in one apply (built by [`super::with_create_tags`]; answers the create's
    /// response).
    Tagged {
        /// The create.
        command: Box<Command>,
        /// Resource type of the created resource.
        resource_type: String,
        /// (system?, text) of each tag.
        tags: Vec<(bool, String)>,
    },
}

/// Answer of a tag command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagResult {
    /// A system tag.
    System(SystemTag),
    /// A user tag.
    User(UserTag),
    /// Deleted (or already absent).
    Deleted,
    /// A tagged create: the create's own answer.
    Created(Box<crate::Response>),
}

/// The `inventory` of the reply, if any.
impl crate::family::Reply for TagResult {
    fn inventory(&self) -> Option<Value> {
        match self {
            TagResult::System(t) => Some(resource::inventory(t)),
            TagResult::User(t) => Some(resource::inventory(t)),
            TagResult::Deleted | TagResult::Created(_) => None,
        }
    }

    /// A tagged create replies as the create it wraps.
    fn reply(&self) -> crate::family::ReplyFields {
        match self {
            TagResult::Created(resp) => resp.reply(),
            _ => crate::family::inventory_reply(self.inventory()),
        }
    }
}

/// Owner of a tagged resource, through the generic stored shape `{owner, record}`.
fn resource_owner(
    txn: &dyn StateTxn,
    resource_type: &str,
    resource_uuid: &str,
) -> Result<String, ApiError> {
    let Some(kind) = crate::registry::kind_of_vo(resource_type) else {
        return Err(validate::invalid_arg(format!(
            "resourceType[{resource_type}] is not a taggable resource type; valid types are {:?}",
            crate::registry::vo_types().collect::<Vec<_>>()
        )));
    };
    let table = kind.table;
    let raw = txn.get(table, resource_uuid.as_bytes())?.ok_or_else(|| {
        validate::refuse(
            Code::ResourceNotFound,
            format!("invalid field[resourceUuid], resource[uuid:{resource_uuid}, type:{resource_type}] not found"),
        )
    })?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| ApiError::Corrupt {
        what: format!("{resource_type} record {resource_uuid}"),
        detail: e.to_string(),
    })?;
    Ok(v.get("owner")
        .and_then(Value::as_str)
        .unwrap_or(crate::ADMIN_ACCOUNT_UUID)
        .to_string())
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: TagOp,
) -> Result<TagResult, ApiError> {
    match op {
        TagOp::Create {
            uuid,
            system,
            resource_type,
            resource_uuid,
            tag,
        } => {
            validate::uuid("resourceUuid", &uuid)?;
            if tag.trim().is_empty() {
                return Err(validate::invalid_arg("field[tag] cannot be empty"));
            }
            validate::max_len("tag", &tag, MAX_TAG)?;
            let owner = resource_owner(txn, &resource_type, &resource_uuid)?;
            if !caller.can_see(&owner) {
                return Err(validate::refuse(
                    Code::PermissionDenied,
                    format!("permission denied: the account[uuid:{}] does not own the resource[uuid:{resource_uuid}]", caller.account_uuid),
                ));
            }
            if resource::load::<SystemTag>(txn, &uuid)?.is_some()
                || resource::load::<UserTag>(txn, &uuid)?.is_some()
            {
                return Err(validate::duplicate_uuid("Tag", &uuid));
            }
            if tags::texts(txn, &resource_uuid, system)?.contains(&tag) {
                return Err(validate::invalid_arg(format!(
                    "duplicate tag[{tag}] on resource[uuid:{resource_uuid}]"
                )));
            }
            let rec = TagRecord {
                uuid,
                resource_uuid,
                resource_type,
                tag,
                inherent: false,
                create_date: ctx.proposed_at_ms,
                last_op_date: ctx.proposed_at_ms,
            };
            // The tag belongs to the resource's owner, so that it follows the resource.
            if system {
                let t = SystemTag(rec);
                resource::save(txn, &owner, &t)?;
                Ok(TagResult::System(t))
            } else {
                let t = UserTag(rec);
                resource::save(txn, &owner, &t)?;
                Ok(TagResult::User(t))
            }
        }
        TagOp::Delete { uuid } => {
            if let Some((owner, t)) = resource::load::<SystemTag>(txn, &uuid)? {
                if !caller.can_see(&owner) {
                    return Err(denied(caller, &uuid));
                }
                if t.0.inherent {
                    return Err(validate::op_failure(format!(
                        "system tag[uuid:{uuid}] is inherent and cannot be deleted"
                    )));
                }
                resource::remove::<SystemTag>(txn, &uuid)?;
            } else if let Some((owner, _)) = resource::load::<UserTag>(txn, &uuid)? {
                if !caller.can_see(&owner) {
                    return Err(denied(caller, &uuid));
                }
                resource::remove::<UserTag>(txn, &uuid)?;
            }
            Ok(TagResult::Deleted)
        }
        TagOp::Tagged {
            command,
            resource_type,
            tags,
        } => apply_tagged(txn, ctx, caller, *command, resource_type, tags),
    }
}

fn denied(caller: &Caller, uuid: &str) -> ApiError {
    validate::refuse(
        Code::PermissionDenied,
        format!(
            "permission denied: the account[uuid:{}] does not own the tag[uuid:{uuid}]",
            caller.account_uuid
        ),
    )
}

/// Apply a [`TagOp::Tagged`]: the create, then its tags on the created resource (tag uuids
/// derived from the resource's uuid and the tag's position, see [`params::derive_uuid`]).
fn apply_tagged(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    command: Command,
    resource_type: String,
    tags: Vec<(bool, String)>,
) -> Result<TagResult, ApiError> {
    let resp = crate::apply(txn, ctx, command)?;
    if let crate::Response::Refused(e) = resp {
        return Err(e);
    }
    let uuid = resp.reply().ok().and_then(|m| {
        m.get("inventory")?
            .get("uuid")?
            .as_str()
            .map(str::to_string)
    });
    let Some(uuid) = uuid else {
        return Ok(TagResult::Created(Box::new(resp)));
    };
    for (i, (system, tag)) in tags.into_iter().enumerate() {
        let op = TagOp::Create {
            uuid: params::derive_uuid(&uuid, i as u32),
            system,
            resource_type: resource_type.clone(),
            resource_uuid: uuid.clone(),
            tag,
        };
        apply(txn, ctx, caller, op)?;
    }
    Ok(TagResult::Created(Box::new(resp)))
}
