//! System and user tags (spec 06 §6 `SystemTagInventory`): free-form strings attached to any
//! resource, queried directly or through the `__systemTag__` / `__userTag__` pseudo-fields of
//! every other query.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use crate::catalogue::CallSpec;
use crate::params;
use crate::params::Body;
use crate::resource;
use crate::resource::Field;
use crate::resource::Resource;
use crate::validate;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::IntoCommand;
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

impl Resource for SystemTag {
    const KIND: &'static str = "SystemTag";
    const TABLE: &'static str = SYSTEM_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("inherent", |r| json!(r.0.inherent)),
        Field::splice(|r| common_inventory(&r.0, "System"), common_fields),
    ];
    const INDEXED: &'static [&'static str] = &["resourceUuid", "resourceType", "tag"];

    fn uuid(&self) -> &str {
        &self.0.uuid
    }
}

impl Resource for UserTag {
    const KIND: &'static str = "UserTag";
    const TABLE: &'static str = USER_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[Field::splice(
        |r| common_inventory(&r.0, "User"),
        common_fields,
    )];
    const INDEXED: &'static [&'static str] = &["resourceUuid", "resourceType", "tag"];

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
    ("createDate", |t, _| crate::resource::date(t.create_date)),
    ("lastOpDate", |t, _| crate::resource::date(t.last_op_date)),
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
    /// resource, in one apply (built by [`with_create_tags`]; answers the create's response).
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

impl TagResult {
    /// The `inventory` of the reply, if any.
    pub fn inventory(&self) -> Option<Value> {
        match self {
            TagResult::System(t) => Some(resource::inventory(t)),
            TagResult::User(t) => Some(resource::inventory(t)),
            TagResult::Deleted | TagResult::Created(_) => None,
        }
    }
}

/// Tag texts of a resource, in uuid order of the tags (system or user kind).
pub fn tags_of(
    txn: &dyn StateTxn,
    resource_uuid: &str,
    system: bool,
) -> Result<Vec<String>, ApiError> {
    Ok(if system {
        resource::find::<SystemTag>(txn, "resourceUuid", resource_uuid)?
            .into_iter()
            .map(|(_, t)| t.0.tag)
            .collect()
    } else {
        resource::find::<UserTag>(txn, "resourceUuid", resource_uuid)?
            .into_iter()
            .map(|(_, t)| t.0.tag)
            .collect()
    })
}

/// Delete every tag of a resource (called by the families when they delete a record).
pub fn delete_for_resource(txn: &mut dyn StateTxn, resource_uuid: &str) -> Result<(), ApiError> {
    for u in resource::uuids_where::<SystemTag>(txn, "resourceUuid", resource_uuid)? {
        resource::remove::<SystemTag>(txn, &u)?;
    }
    for u in resource::uuids_where::<UserTag>(txn, "resourceUuid", resource_uuid)? {
        resource::remove::<UserTag>(txn, &u)?;
    }
    Ok(())
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

pub(crate) fn apply(
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
            if tags_of(txn, &resource_uuid, system)?.contains(&tag) {
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

/// Request → command for the tag calls this module implements (`None`: not a tag call).
pub fn plan(
    call: &CallSpec,
    b: &Body,
    caller: &Caller,
    new_uuid: &str,
) -> Option<Result<Command, Refusal>> {
    let cmd = |op: TagOp| op.command(caller.clone());
    let create = |system: bool| -> Result<Command, Refusal> {
        Ok(cmd(TagOp::Create {
            // `APICreateTagMsg` is not an `APICreateMessage`: its `resourceUuid` names the tagged
            // resource, so the tag's own uuid is always the stamped one.
            uuid: new_uuid.to_string(),
            system,
            resource_type: params::required(b, "resourceType", call)?,
            resource_uuid: params::required(b, "resourceUuid", call)?,
            tag: params::required(b, "tag", call)?,
        }))
    };
    Some(match call.name.as_str() {
        "CreateSystemTag" => create(true),
        "CreateUserTag" => create(false),
        "DeleteTag" => params::required(b, "uuid", call).map(|uuid| cmd(TagOp::Delete { uuid })),
        _ => return None,
    })
}

/// The tag family: system and user tags of any resource.
pub struct Tags;

impl crate::family::Family for Tags {
    type Op = TagOp;
    type Out = TagResult;
    const DECL: crate::family::FamilyDecl = {
        use crate::family::op_plan;
        use crate::family::route;
        use crate::family::CallDecl;
        use crate::family::KindDecl;
        use crate::resource::generic;
        use crate::resource::relations::OnDelete;
        use crate::resource::relations::Relation;
        use crate::resource::relations::ANY;
        use crate::rest::Body::None as N;
        use crate::rest::Body::Params as P;
        use crate::rest::Method::Delete as D;
        use crate::rest::Method::Get as G;
        use crate::rest::Method::Post as Po;
        // A resource's tags go with it, whatever its kind.
        const TAGGED: &[Relation] = &[Relation {
            field: "resourceUuid",
            parent: ANY,
            on_delete: OnDelete::Cascade,
            on_parent_state: None,
        }];
        crate::family::FamilyDecl {
            name: "tag",
            tables: &[SYSTEM_TABLE, USER_TABLE],
            kinds: &[
                KindDecl {
                    relations: TAGGED,
                    ..KindDecl::new("SystemTag", SYSTEM_TABLE, &[])
                },
                KindDecl {
                    relations: TAGGED,
                    ..KindDecl::new("UserTag", USER_TABLE, &[])
                },
            ],
            calls: &[
                CallDecl::new(
                    "CreateSystemTag",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/system-tags", P)],
                ),
                CallDecl::new(
                    "CreateUserTag",
                    |p| op_plan(plan, p),
                    &[route(Po, "/v1/user-tags", P)],
                ),
                CallDecl::new(
                    "DeleteTag",
                    |p| op_plan(plan, p),
                    &[route(D, "/v1/tags/{uuid}", N)],
                ),
                CallDecl::new(
                    "QuerySystemTag",
                    generic::plan_query::<SystemTag>,
                    &[
                        route(G, "/v1/system-tags", N),
                        route(G, "/v1/system-tags/{uuid}", N),
                    ],
                ),
                CallDecl::new(
                    "QueryUserTag",
                    generic::plan_query::<UserTag>,
                    &[
                        route(G, "/v1/user-tags", N),
                        route(G, "/v1/user-tags/{uuid}", N),
                    ],
                ),
            ],
            flows: &[],
            #[cfg(test)]
            cases: cases::cases,
        }
    };

    fn apply(
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        caller: &Caller,
        op: TagOp,
    ) -> Result<TagResult, ApiError> {
        apply(txn, ctx, caller, op)
    }

    fn reply(out: &TagResult) -> Result<serde_json::Map<String, Value>, Refusal> {
        match out {
            TagResult::Created(resp) => resp.reply(),
            other => crate::family::inventory_reply(other.inventory()),
        }
    }

    fn keeps_writes(out: &TagResult) -> bool {
        match out {
            TagResult::Created(resp) => resp.keeps_writes(),
            _ => true,
        }
    }

    fn inner(op: &TagOp) -> Option<&Command> {
        match op {
            TagOp::Tagged { command, .. } => Some(command),
            _ => None,
        }
    }

    fn inner_response(out: &TagResult) -> Option<&crate::Response> {
        match out {
            TagResult::Created(resp) => Some(resp),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::families::zone::ZoneOp;
    use crate::query::parse_query;
    use crate::testing::ctx;
    use crate::testing::MemTxn;
    use crate::wire::date::java_date;

    fn zone(t: &mut MemTxn) -> String {
        let u = format!("{:032x}", 1);
        crate::testing::admin_apply(
            t,
            1,
            ZoneOp::Create {
                uuid: u.clone(),
                name: "z".into(),
                description: None,
                is_default: false,
            },
        );
        u
    }

    fn create(
        t: &mut MemTxn,
        i: u32,
        system: bool,
        rt: &str,
        ru: &str,
        tag: &str,
    ) -> Result<TagResult, ApiError> {
        apply(
            t,
            &ctx(2),
            &Caller::admin(),
            TagOp::Create {
                uuid: format!("{:032x}", 100 + i),
                system,
                resource_type: rt.into(),
                resource_uuid: ru.into(),
                tag: tag.into(),
            },
        )
    }

    #[test]
    fn create_query_delete_and_tag_conditions() {
        let mut t = MemTxn::default();
        let z = zone(&mut t);
        let TagResult::System(s) = create(&mut t, 1, true, "ZoneVO", &z, "ha::NeverStop").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            serde_json::to_string(&resource::inventory(&s)).unwrap(),
            format!(
                r#"{{"inherent":false,"uuid":"{}","resourceUuid":"{z}","resourceType":"ZoneVO","tag":"ha::NeverStop","type":"System","createDate":"{d}","lastOpDate":"{d}"}}"#,
                s.0.uuid,
                d = java_date(2000)
            )
        );
        let TagResult::User(u) = create(&mut t, 2, false, "ZoneVO", &z, "web").unwrap() else {
            panic!()
        };
        assert_eq!(resource::inventory(&u)["type"], "User");
        let q = |c: Value| {
            let mut m = serde_json::Map::new();
            m.insert("conditions".into(), c);
            parse_query("APIQueryZoneMsg", &m).unwrap()
        };
        let count = |t: &MemTxn, c: Value| {
            resource::query::<crate::families::zone::Zone>(t, &q(c), |_| true)
                .unwrap()
                .inventories
                .unwrap()
                .len()
        };
        assert_eq!(
            count(
                &t,
                json!([{"name":"__systemTag__","op":"=","value":"ha::NeverStop"}])
            ),
            1
        );
        assert_eq!(
            count(
                &t,
                json!([{"name":"__systemTag__","op":"like","value":"ha::%"}])
            ),
            1
        );
        assert_eq!(
            count(
                &t,
                json!([{"name":"__systemTag__","op":"!=","value":"ha::NeverStop"}])
            ),
            0
        );
        assert_eq!(
            count(&t, json!([{"name":"__userTag__","op":"=","value":"web"}])),
            1
        );
        assert_eq!(count(&t, json!([{"name":"__userTag__","op":"is null"}])), 0);
        assert_eq!(
            count(
                &t,
                json!([{"name":"__userTag__","op":"not in","value":"db,x"}])
            ),
            1
        );
        // Hidden tag keys never reach the inventories.
        let out = resource::query::<crate::families::zone::Zone>(
            &t,
            &q(json!([{"name":"__systemTag__","op":"is not null"}])),
            |_| true,
        )
        .unwrap();
        assert!(out.inventories.unwrap()[0].get("__systemTag__").is_none());
        assert_eq!(
            apply(
                &mut t,
                &ctx(3),
                &Caller::admin(),
                TagOp::Delete {
                    uuid: s.0.uuid.clone()
                }
            )
            .unwrap(),
            TagResult::Deleted
        );
        assert_eq!(
            count(
                &t,
                json!([{"name":"__systemTag__","op":"=","value":"ha::NeverStop"}])
            ),
            0
        );
        // Deleting the resource deletes its tags.
        crate::testing::delete_zone(&mut t, 4, &z);
        assert!(resource::list::<UserTag>(&t).unwrap().is_empty());
    }

    #[test]
    fn refusals_leave_state_unchanged() {
        let mut t = MemTxn::default();
        let z = zone(&mut t);
        create(&mut t, 1, true, "ZoneVO", &z, "a").unwrap();
        let before = t.tables.clone();
        let code = |r: Result<TagResult, ApiError>| r.unwrap_err().code();
        assert_eq!(code(create(&mut t, 2, true, "NopeVO", &z, "a")), "SYS.1007");
        assert_eq!(
            code(create(&mut t, 2, true, "ZoneVO", &"e".repeat(32), "a")),
            "SYS.1003"
        );
        assert_eq!(code(create(&mut t, 2, true, "ZoneVO", &z, "")), "SYS.1007");
        assert_eq!(
            code(create(&mut t, 2, true, "ZoneVO", &z, "a")),
            "SYS.1007",
            "duplicate"
        );
        assert_eq!(
            code(create(&mut t, 1, false, "ZoneVO", &z, "b")),
            "SYS.1007",
            "dup uuid"
        );
        let normal = Caller {
            account_uuid: "a".repeat(32),
            user_uuid: "a".repeat(32),
            admin: false,
        };
        let r = apply(
            &mut t,
            &ctx(3),
            &normal,
            TagOp::Create {
                uuid: "c".repeat(32),
                system: false,
                resource_type: "ZoneVO".into(),
                resource_uuid: z.clone(),
                tag: "mine".into(),
            },
        );
        assert_eq!(code(r), "ID.1002");
        let r = apply(
            &mut t,
            &ctx(3),
            &normal,
            TagOp::Delete {
                uuid: format!("{:032x}", 101),
            },
        );
        assert_eq!(code(r), "ID.1002");
        assert_eq!(t.tables, before);
    }
}

#[cfg(test)]
pub(crate) mod cases {
    //! Call-matrix cases of this family's calls (run by `testing::matrix`).

    use serde_json::json;

    use crate::testing::matrix::bad_query;
    use crate::testing::matrix::eq;
    use crate::testing::matrix::missing;
    use crate::testing::matrix::no;
    use crate::testing::matrix::ok;
    use crate::testing::matrix::Case;
    use crate::testing::matrix::Ids;
    use crate::testing::matrix::Parties;
    use crate::wire::errors::Code;

    /// The call-matrix cases of this family's calls.
    pub(crate) fn cases(ids: &Ids) -> Vec<Case> {
        let Parties {
            admin,
            tenant,
            stranger,
            ..
        } = Parties::of(ids);
        let i = ids.clone();
        let mut m = Vec::new();
        // ---- Tags.
        {
            let l3v = i.l3v.clone();
            m.push(ok(
                "CreateSystemTag",
                &admin,
                json!({"resourceType": "L3NetworkVO", "resourceUuid": i.l3v, "tag": "networkServices::Flat"}),
                move |h, r| {
                    assert_eq!(r["inventory"]["resourceUuid"], l3v.as_str());
                    assert_eq!(
                        h.count(
                            "QueryL3Network",
                            json!([{"name": "__systemTag__", "op": "=", "value": "networkServices::Flat"}])
                        ),
                        2
                    );
                },
            ));
        }
        m.push(no(
            "CreateSystemTag",
            &admin,
            json!({"resourceType": "L3NetworkVO", "resourceUuid": missing(), "tag": "networkServices::Flat"}),
            Code::ResourceNotFound,
        ));
        {
            let zone = i.zone.clone();
            m.push(ok(
                "CreateUserTag",
                &admin,
                json!({"resourceType": "ZoneVO", "resourceUuid": i.zone, "tag": "gold"}),
                move |h, _| {
                    let z = h.query(
                        "QueryZone",
                        json!([{"name": "__userTag__", "op": "=", "value": "gold"}]),
                    );
                    assert_eq!(z[0]["uuid"], zone.as_str());
                },
            ));
        }
        m.push(no(
            "CreateUserTag",
            &tenant,
            json!({"resourceType": "ZoneVO", "resourceUuid": i.zone, "tag": "gold"}),
            Code::PermissionDenied,
        ));
        {
            let t = i.user_tag.clone();
            m.push(ok(
                "DeleteTag",
                &admin,
                json!({"uuid": i.user_tag}),
                move |h, _| assert_eq!(h.count("QueryUserTag", eq("uuid", &t)), 0),
            ));
        }
        m.push(no(
            "DeleteTag",
            &stranger,
            json!({"uuid": i.user_tag}),
            Code::PermissionDenied,
        ));
        {
            let t = i.sys_tag.clone();
            m.push(ok(
                "QuerySystemTag",
                &admin,
                json!({"conditions": eq("resourceUuid", &i.l3)}),
                move |_, r| assert_eq!(r["inventories"][0]["uuid"], t.as_str()),
            ));
        }
        m.push(no(
            "QuerySystemTag",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        {
            let c = i.cluster.clone();
            m.push(ok(
                "QueryUserTag",
                &admin,
                json!({"conditions": [{"name": "tag", "op": "like", "value": "rack%"}]}),
                move |_, r| assert_eq!(r["inventories"][0]["resourceUuid"], c.as_str()),
            ));
        }
        m.push(no(
            "QueryUserTag",
            &admin,
            bad_query(),
            Code::InvalidArgument,
        ));
        m
    }
}
