//! What a resource family declares about itself, once: its commands and their apply, the
//! reply each result renders, the resource kinds it stores (tables, taggable types, relations
//! to other kinds), the calls it implements (plan and REST routes) and its flows. The
//! registry (`registry.rs`) lists the families; everything that used to be wired by hand
//! (command dispatch, query targets, taggable types, REST routes, the implemented-call list)
//! is read from these declarations.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Map;
use serde_json::Value;

use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource::relations::Relation;
use crate::rest::schema::Schema;
use crate::rest::Method;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// A family's typed side: its command, its answer and the deterministic apply.
pub trait Family: 'static {
    /// The family's command (carried in the Raft log inside [`crate::Command`]).
    type Op: std::fmt::Debug + Clone + PartialEq + Eq + Serialize + DeserializeOwned;
    /// What applying an op answers, and the reply fields it renders ([`Reply`]).
    type Out: std::fmt::Debug + Clone + PartialEq + Eq + Serialize + DeserializeOwned + Reply;
    /// The declaration.
    const DECL: FamilyDecl;
    /// Validate and apply one op (usually the family's `model::apply`). Time and uuids come in
    /// the op or `ctx`; nothing here may read a clock, a random source or anything outside
    /// `txn`.
    const APPLY: ApplyFn<Self>;
    /// Whether the writes made while producing `out` are kept.
    fn keeps_writes(_out: &Self::Out) -> bool {
        true
    }
    /// The command an op wraps, if it is a wrapper (a create with its tags, a job).
    fn inner(_op: &Self::Op) -> Option<&crate::Command> {
        None
    }
    /// The answer a wrapper's answer carries (the create's answer inside a tagged create).
    fn inner_response(_out: &Self::Out) -> Option<&crate::Response> {
        None
    }
}

/// How a family applies its op: see [`Family::APPLY`].
pub type ApplyFn<F> = fn(
    &mut dyn StateTxn,
    &ApplyCtx,
    &Caller,
    <F as Family>::Op,
) -> Result<<F as Family>::Out, ApiError>;

/// The reply fields an answer renders, or the refusal it becomes on the wire.
pub type ReplyFields = Result<Map<String, Value>, Refusal>;

/// Cleanup a kind needs beyond its own record when it is deleted (rows of internal tables).
pub type CleanupFn = fn(&mut dyn StateTxn, &ApplyCtx, &str) -> Result<(), ApiError>;

/// The inventory (as a reply carries it) of the record of a kind with this uuid, `None` when
/// there is none: how a record renders for readers that do not know its type
/// (`resource::inventory_of`). Usually `resource::stored_inventory::<TheRecord>`.
pub type InventoryFn = fn(&dyn StateTxn, &str) -> Result<Option<Value>, ApiError>;

/// A resource kind a family stores.
pub struct KindDecl {
    /// ZStack's type name (`Zone`; errors say `ZoneVO`).
    pub kind: &'static str,
    /// The table its records live in.
    pub table: &'static str,
    /// The resource types (`resourceType` of tags) naming this kind.
    pub vo_types: &'static [&'static str],
    /// References to parents and what their deletion does.
    pub relations: &'static [Relation],
    /// Extra cleanup on delete.
    pub on_delete: Option<CleanupFn>,
    /// How a record renders without its type (kinds other families join into their
    /// inventories, e.g. tags); `None`: not rendered that way.
    pub inventory: Option<InventoryFn>,
}

impl KindDecl {
    /// A kind with no relations and no extra cleanup.
    pub const fn new(
        kind: &'static str,
        table: &'static str,
        vo_types: &'static [&'static str],
    ) -> Self {
        KindDecl {
            kind,
            table,
            vo_types,
            relations: &[],
            on_delete: None,
            inventory: None,
        }
    }
}

/// Where a REST call's fields come from.
pub use crate::rest::Body as RestBody;

/// One REST route of a call (ZStack's `@RestRequest`).
#[derive(Debug, Clone, Copy)]
pub struct RestRoute {
    /// Method.
    pub method: Method,
    /// Path under `/zstack`, with `{var}` placeholders copied into the message.
    pub path: &'static str,
    /// Body style.
    pub body: RestBody,
    /// Reply field renamed for REST (`validSession` → `valid`), if any.
    pub rename: Option<(&'static str, &'static str)>,
}

/// A route without a renamed reply field.
pub const fn route(method: Method, path: &'static str, body: RestBody) -> RestRoute {
    RestRoute {
        method,
        path,
        body,
        rename: None,
    }
}

/// From a call's request to what must be done.
pub type PlanFn = fn(&PlanInput) -> Result<Plan, Refusal>;

/// One implemented API call.
pub struct CallDecl {
    /// Short name, e.g. `CreateZone`.
    pub name: &'static str,
    /// Request → plan.
    pub plan: PlanFn,
    /// For a create: the resource type of what it creates, so that the request's
    /// `systemTags`/`userTags` are attached to it in the same apply.
    pub creates: Option<&'static str>,
    /// REST v1 routes.
    pub routes: &'static [RestRoute],
    /// The declared flow an async call's job runs, its command being the first step (ZStack's
    /// multi-step calls: add a host, add an image). `None`: the command is the whole job.
    pub flow: Option<&'static str>,
    /// The classes of its reply's object fields (REST `schema`), when they are not the
    /// family's [`FamilyDecl::replies`].
    pub replies: Option<Replies>,
}

impl CallDecl {
    /// A call that creates nothing taggable.
    pub const fn new(name: &'static str, plan: PlanFn, routes: &'static [RestRoute]) -> Self {
        CallDecl {
            name,
            plan,
            creates: None,
            routes,
            flow: None,
            replies: None,
        }
    }

    /// The same call, its reply's object fields holding `replies` (instead of the family's).
    pub const fn replying(mut self, replies: Replies) -> Self {
        self.replies = Some(replies);
        self
    }

    /// The same call, its job running the declared flow `flow` after its command.
    pub const fn running(mut self, flow: &'static str) -> Self {
        self.flow = Some(flow);
        self
    }

    /// The same call, creating a resource of type `vo` (which the request may tag).
    pub const fn creating(mut self, vo: &'static str) -> Self {
        self.creates = Some(vo);
        self
    }
}

/// A state change one family performs for another family's flow step, in the same apply:
/// ZStack's messages between services (`AllocateHostMsg`, `AllocateIpMsg`) without the
/// families naming each other. Input and output are JSON objects whose fields the offering
/// family documents on its declaration; a refusal is the offering family's error.
pub type ServiceFn = fn(&mut dyn StateTxn, &ApplyCtx, &Caller, &Value) -> Result<Value, ApiError>;

/// One service a family offers (`host.allocate`, `l3.allocate-ip`).
pub struct ServiceDecl {
    /// `<family>.<verb>`, unique across families.
    pub name: &'static str,
    /// What it does.
    pub run: ServiceFn,
}

/// What each reply field holding objects holds (`("inventory", Schema::Class(&ZONE))`).
pub type Replies = &'static [(&'static str, Schema)];

/// The replies of a family whose calls answer `inventory` or `inventories` of one schema.
macro_rules! inventories {
    ($schema:expr) => {
        &[("inventory", $schema), ("inventories", $schema)]
    };
}
pub(crate) use inventories;

/// A family's declaration.
pub struct FamilyDecl {
    /// Short name (module name).
    pub name: &'static str,
    /// Every state table the family uses.
    pub tables: &'static [&'static str],
    /// The resource kinds it stores.
    pub kinds: &'static [KindDecl],
    /// The API calls it implements.
    pub calls: &'static [CallDecl],
    /// Its multi-step flows.
    pub flows: &'static [crate::flow::FlowDef],
    /// The services it offers other families' flows ([`ServiceDecl`]).
    pub services: &'static [ServiceDecl],
    /// The classes of its calls' reply fields (`inventory`, `inventories`) for REST `schema`;
    /// a call answering something else declares its own ([`CallDecl::replying`]).
    pub replies: Replies,
    /// Its calls' cases in the call matrix (`testing::matrix`).
    #[cfg(test)]
    pub(crate) cases: fn(&crate::testing::matrix::Ids) -> Vec<crate::testing::matrix::Case>,
}

impl FamilyDecl {
    /// A family with nothing declared yet (internal command families).
    pub const fn internal(name: &'static str, tables: &'static [&'static str]) -> Self {
        FamilyDecl {
            name,
            tables,
            kinds: &[],
            calls: &[],
            flows: &[],
            services: &[],
            replies: &[],
            #[cfg(test)]
            cases: |_| Vec::new(),
        }
    }
}

/// The reply fields an answer renders (wire layer): usually its `inventory`.
pub trait Reply {
    /// The `inventory` the reply carries, if any (none: an empty reply).
    fn inventory(&self) -> Option<Value> {
        None
    }
    /// The reply fields, or the refusal the answer becomes on the wire.
    fn reply(&self) -> ReplyFields {
        inventory_reply(self.inventory())
    }
    /// The reply fields of a flow's answer, rendered in the apply that finishes its job, so
    /// they may read state (joined fields such as a VM's `allVolumes`). The same as
    /// [`Reply::reply`] unless the family says otherwise.
    fn reply_in(&self, _txn: &dyn StateTxn) -> ReplyFields {
        self.reply()
    }
}

/// The reply of an answer that carries one inventory.
pub fn inventory_reply(inv: Option<Value>) -> ReplyFields {
    let mut m = Map::new();
    if let Some(inv) = inv {
        m.insert("inventory".into(), inv);
    }
    Ok(m)
}

/// The REST routes of the calls on one resource under `base` (a literal path under
/// `/zstack`, e.g. `"/v1/zones"`), as ZStack lays them out: `actions` is
/// `PUT base/{uuid}/actions` (`UpdateX`, `ChangeXState`, ...), `delete` is
/// `DELETE base/{uuid}`, `query` is `GET base` and `GET base/{uuid}`.
macro_rules! routes {
    (actions $base:literal) => {
        &[$crate::family::route(
            $crate::rest::Method::Put,
            concat!($base, "/{uuid}/actions"),
            $crate::family::RestBody::Action,
        )]
    };
    (delete $base:literal) => {
        &[$crate::family::route(
            $crate::rest::Method::Delete,
            concat!($base, "/{uuid}"),
            $crate::family::RestBody::None,
        )]
    };
    (query $base:literal) => {
        &[
            $crate::family::route(
                $crate::rest::Method::Get,
                $base,
                $crate::family::RestBody::None,
            ),
            $crate::family::route(
                $crate::rest::Method::Get,
                concat!($base, "/{uuid}"),
                $crate::family::RestBody::None,
            ),
        ]
    };
}
pub(crate) use routes;

/// `UpdateX{uuid, name, description}` at `PUT base/{uuid}/actions`, planned
/// ([`generic::plan_update`](crate::resource::generic::plan_update)) into the op
/// `$op::$variant { uuid, rename }`.
macro_rules! update_call {
    ($name:literal, $base:literal, $op:ident :: $variant:ident) => {
        $crate::family::CallDecl::new(
            $name,
            |p| $crate::resource::generic::plan_update(p, |uuid, rename| $op::$variant { uuid, rename }),
            $crate::family::routes!(actions $base),
        )
    };
}
pub(crate) use update_call;

/// `ChangeXState{uuid, stateEvent: enable|disable}` at `PUT base/{uuid}/actions`, planned
/// ([`generic::plan_change_state`](crate::resource::generic::plan_change_state)) into the op
/// `$op::$variant { uuid, event }`.
macro_rules! state_call {
    ($name:literal, $base:literal, $op:ident :: $variant:ident) => {
        $crate::family::CallDecl::new(
            $name,
            |p| $crate::resource::generic::plan_change_state(p, |uuid, event| $op::$variant { uuid, event }),
            $crate::family::routes!(actions $base),
        )
    };
}
pub(crate) use state_call;

/// `DeleteX{uuid}` at `DELETE base/{uuid}`, planned
/// ([`generic::plan_delete`](crate::resource::generic::plan_delete)) into the op
/// `$op::$variant { uuid }`.
macro_rules! delete_call {
    ($name:literal, $base:literal, $op:ident :: $variant:ident) => {
        $crate::family::CallDecl::new(
            $name,
            |p| $crate::resource::generic::plan_delete(p, |uuid| $op::$variant { uuid }),
            $crate::family::routes!(delete $base),
        )
    };
}
pub(crate) use delete_call;

/// `QueryX` at `GET base` and `GET base/{uuid}` of the records of type `$record` each account
/// sees its own of ([`generic::plan_query`](crate::resource::generic::plan_query)).
macro_rules! query_call {
    ($name:literal, $base:literal, $record:ty) => {
        $crate::family::CallDecl::new(
            $name,
            $crate::resource::generic::plan_query::<$record>,
            $crate::family::routes!(query $base),
        )
    };
}
pub(crate) use query_call;

/// What a family's `mod.rs` declares itself with, in one `use crate::family::prelude::*;`:
/// the declaration types, the call macros, the short names of REST methods (`Po`, `Pu`, `G`,
/// `D`) and bodies (`P`, `A`, `N`) its route tables are written with, and the types every
/// family's apply and tests name.
pub mod prelude {
    pub(crate) use super::delete_call;
    pub(crate) use super::inventories;
    pub use super::inventory_reply;
    pub(crate) use super::query_call;
    pub use super::route;
    pub(crate) use super::routes;
    pub(crate) use super::state_call;
    pub(crate) use super::update_call;
    pub use super::ApplyFn;
    pub use super::CallDecl;
    pub use super::Family;
    pub use super::FamilyDecl;
    pub use super::KindDecl;
    pub use super::Replies;
    pub use super::Reply;
    pub use super::ReplyFields;
    pub use super::RestBody::Action as A;
    pub use super::RestBody::None as N;
    pub use super::RestBody::Params as P;
    pub use super::RestRoute;
    pub use super::ServiceDecl;
    pub use crate::resource;
    pub use crate::resource::generic;
    pub use crate::resource::relations::OnDelete;
    pub use crate::resource::relations::Relation;
    pub use crate::rest::schema::JavaClass;
    pub use crate::rest::schema::Schema;
    pub use crate::rest::Method::Delete as D;
    pub use crate::rest::Method::Get as G;
    pub use crate::rest::Method::Post as Po;
    pub use crate::rest::Method::Put as Pu;
    pub use crate::wire::errors::Refusal;
    pub use crate::ApiError;
    pub use crate::ApplyCtx;
    pub use crate::Caller;
    pub use crate::StateTxn;
    pub use serde_json::Map;
    pub use serde_json::Value;
}
