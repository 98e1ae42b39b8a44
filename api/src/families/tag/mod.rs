//! System and user tags (spec 06 §6 `SystemTagInventory`): free-form strings attached to any
//! resource, queried directly or through the `__systemTag__` / `__userTag__` pseudo-fields of
//! every other query (which read them through `resource::tags`). A create call's
//! `systemTags`/`userTags` are applied with the create, in one apply ([`TagOp::Tagged`]).
//! A resource's tags go with it, whatever its kind (a relation to any parent).

#[cfg(test)]
mod cases;
mod model;
#[cfg(test)]
mod tests;
mod wire;

pub use model::SystemTag;
pub use model::TagOp;
pub use model::TagRecord;
pub use model::TagResult;
pub use model::UserTag;
pub use model::MAX_TAG;
pub use model::SYSTEM_TABLE;
pub use model::USER_TABLE;
pub use wire::with_create_tags;

use crate::family::prelude::*;

/// ZStack's classes of tags.
const SYSTEM_TAG: JavaClass = JavaClass::leaf("org.zstack.header.tag.SystemTagInventory");
const USER_TAG: JavaClass = JavaClass::leaf("org.zstack.header.tag.UserTagInventory");
use crate::resource::relations::ANY;
use crate::resource::tags;
use crate::Command;
use crate::Response;

/// A resource's tags go with it, whatever its kind.
const TAGGED: &[Relation] = &[Relation::cascade(tags::RESOURCE_FIELD, ANY)];

/// The tag family: system and user tags of any resource.
pub struct Tags;

impl Family for Tags {
    type Op = TagOp;
    type Out = TagResult;
    const DECL: FamilyDecl = FamilyDecl {
        services: &[],
        replies: &[],
        name: "tag",
        tables: &[SYSTEM_TABLE, USER_TABLE],
        kinds: &[
            KindDecl {
                relations: TAGGED,
                inventory: Some(resource::stored_inventory::<SystemTag>),
                ..KindDecl::new(tags::SYSTEM_KIND, SYSTEM_TABLE, &[])
            },
            KindDecl {
                relations: TAGGED,
                inventory: Some(resource::stored_inventory::<UserTag>),
                ..KindDecl::new(tags::USER_KIND, USER_TABLE, &[])
            },
        ],
        calls: &[
            CallDecl::new(
                "CreateSystemTag",
                |p| wire::create(p, true),
                &[route(Po, "/v1/system-tags", P)],
            )
            .replying(inventories!(Schema::Class(&SYSTEM_TAG))),
            CallDecl::new(
                "CreateUserTag",
                |p| wire::create(p, false),
                &[route(Po, "/v1/user-tags", P)],
            )
            .replying(inventories!(Schema::Class(&USER_TAG))),
            CallDecl::new("DeleteTag", wire::delete, routes!(delete "/v1/tags")),
            query_call!("QuerySystemTag", "/v1/system-tags", SystemTag)
                .replying(inventories!(Schema::Class(&SYSTEM_TAG))),
            query_call!("QueryUserTag", "/v1/user-tags", UserTag)
                .replying(inventories!(Schema::Class(&USER_TAG))),
        ],
        flows: &[],
        #[cfg(test)]
        cases: cases::cases,
    };
    const APPLY: ApplyFn<Self> = model::apply;

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

    fn inner_response(out: &TagResult) -> Option<&Response> {
        match out {
            TagResult::Created(resp) => Some(resp),
            _ => None,
        }
    }
}
