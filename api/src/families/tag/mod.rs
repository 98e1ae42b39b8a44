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

use serde_json::Map;
use serde_json::Value;

use crate::family::inventory_reply;
use crate::family::route;
use crate::family::CallDecl;
use crate::family::Family;
use crate::family::FamilyDecl;
use crate::family::KindDecl;
use crate::family::RestBody::None as N;
use crate::family::RestBody::Params as P;
use crate::resource;
use crate::resource::generic;
use crate::resource::relations::OnDelete;
use crate::resource::relations::Relation;
use crate::resource::relations::ANY;
use crate::resource::tags;
use crate::rest::Method::Delete as D;
use crate::rest::Method::Get as G;
use crate::rest::Method::Post as Po;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Command;
use crate::Response;
use crate::StateTxn;

/// A resource's tags go with it, whatever its kind.
const TAGGED: &[Relation] = &[Relation {
    field: tags::RESOURCE_FIELD,
    parent: ANY,
    on_delete: OnDelete::Cascade,
    on_parent_state: None,
}];

/// The tag family: system and user tags of any resource.
pub struct Tags;

impl Family for Tags {
    type Op = TagOp;
    type Out = TagResult;
    const DECL: FamilyDecl = FamilyDecl {
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
            ),
            CallDecl::new(
                "CreateUserTag",
                |p| wire::create(p, false),
                &[route(Po, "/v1/user-tags", P)],
            ),
            CallDecl::new("DeleteTag", wire::delete, &[route(D, "/v1/tags/{uuid}", N)]),
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
    };

    fn apply(
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        caller: &Caller,
        op: TagOp,
    ) -> Result<TagResult, ApiError> {
        model::apply(txn, ctx, caller, op)
    }

    fn reply(out: &TagResult) -> Result<Map<String, Value>, Refusal> {
        match out {
            TagResult::Created(resp) => resp.reply(),
            other => inventory_reply(other.inventory()),
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

    fn inner_response(out: &TagResult) -> Option<&Response> {
        match out {
            TagResult::Created(resp) => Some(resp),
            _ => None,
        }
    }
}
