//! What most families do the same way, once: the checks every create makes, `UpdateX` of name
//! and description, the enable/disable state pair, load-change-stamp-save, the answer of a
//! command on one record, and attaching a record to parents of another kind.

use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::query::Query;
use crate::query::QueryOutput;
use crate::registry::IntoCommand;
use crate::resource;
use crate::resource::Resource;
use crate::validate;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// A record stamped with the time of its last change (`lastOpDate`).
pub trait Stamped {
    /// Record a change at `now_ms`.
    fn touch(&mut self, now_ms: u64);
}

/// A record users name and describe.
pub trait Described {
    /// Its name.
    fn name_mut(&mut self) -> &mut String;
    /// Its description.
    fn description_mut(&mut self) -> &mut Option<String>;
}

/// Implement [`Stamped`] (field `last_op_date`) and [`Described`] (fields `name`,
/// `description`) for record types.
#[macro_export]
macro_rules! described_record {
    ($($t:ty),* $(,)?) => {
        $(
            impl $crate::resource::generic::Stamped for $t {
                fn touch(&mut self, now_ms: u64) {
                    self.last_op_date = now_ms;
                }
            }
            impl $crate::resource::generic::Described for $t {
                fn name_mut(&mut self) -> &mut String {
                    &mut self.name
                }
                fn description_mut(&mut self) -> &mut Option<String> {
                    &mut self.description
                }
            }
        )*
    };
}

/// Name and description as `CreateX`/`UpdateX` send them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rename {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
}

impl Rename {
    /// The `name` and `description` fields of a request.
    pub fn from_request(p: &PlanInput) -> Rename {
        Rename {
            name: p.string("name"),
            description: p.string("description"),
        }
    }

    /// Validate and set what was sent.
    pub fn apply_to<R: Described>(self, r: &mut R) -> Result<(), ApiError> {
        if let Some(n) = self.name {
            validate::name("name", &n)?;
            *r.name_mut() = n;
        }
        if let Some(d) = self.description {
            validate::description(Some(&d))?;
            *r.description_mut() = Some(d);
        }
        Ok(())
    }
}

/// The checks every create makes before writing: a well-formed uuid nobody has, a name, a
/// description of bounded length.
pub fn check_new<R: Resource>(
    txn: &dyn StateTxn,
    uuid: &str,
    name: &str,
    description: Option<&str>,
) -> Result<(), ApiError> {
    check_fields(uuid, name, description)?;
    resource::refuse_duplicate::<R>(txn, uuid)
}

/// The field checks of [`check_new`] alone (they need no state), for a create that checks its
/// own fields and references before it looks for a duplicate uuid (ZStack's interceptors run
/// in that order, so the first refusal a request meets stays the same).
pub fn check_fields(uuid: &str, name: &str, description: Option<&str>) -> Result<(), ApiError> {
    validate::uuid("resourceUuid", uuid)?;
    validate::name("name", name)?;
    validate::description(description)
}

/// Load a record that must exist, let `change` edit it (it may refuse; nothing is written
/// then), stamp it and save it. Returns the record as saved.
pub fn modify<R: Resource + Stamped>(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    change: impl FnOnce(&dyn StateTxn, &mut R) -> Result<(), ApiError>,
) -> Result<R, ApiError> {
    let found = resource::require::<R>(txn, uuid)?;
    change_and_save(txn, ctx, found, change)
}

/// [`modify`] of a record the caller must be allowed to see (`ID.1002` otherwise): the kinds
/// normal accounts own themselves (images, networks).
pub fn modify_visible<R: Resource + Stamped>(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    uuid: &str,
    change: impl FnOnce(&dyn StateTxn, &mut R) -> Result<(), ApiError>,
) -> Result<R, ApiError> {
    let found = resource::require_visible::<R>(txn, caller, uuid)?;
    change_and_save(txn, ctx, found, change)
}

fn change_and_save<R: Resource + Stamped>(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    (owner, mut r): (String, R),
    change: impl FnOnce(&dyn StateTxn, &mut R) -> Result<(), ApiError>,
) -> Result<R, ApiError> {
    change(txn, &mut r)?;
    r.touch(ctx.proposed_at_ms);
    resource::save(txn, &owner, &r)?;
    Ok(r)
}

/// `UpdateX` of name and description only.
pub fn rename<R: Resource + Stamped + Described>(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    rename: Rename,
) -> Result<R, ApiError> {
    modify(txn, ctx, uuid, |_, r: &mut R| rename.apply_to(r))
}

/// What a command on one kind answers: the record after the change, or that it is gone (or
/// never was: ZStack answers a delete of an unknown uuid with success).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer<R> {
    /// The record after the change.
    Inventory(Box<R>),
    /// Deleted (or already absent).
    Deleted,
}

/// The `inventory` of the reply, if any (without the joined fields only queries read).
impl<R: Resource> crate::family::Reply for Answer<R> {
    fn inventory(&self) -> Option<Value> {
        match self {
            Answer::Inventory(r) => Some(resource::inventory(r.as_ref())),
            Answer::Deleted => None,
        }
    }
}

/// The `Enabled`/`Disabled` state most resources have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnableState {
    /// In use.
    Enabled,
    /// Nothing new is placed on or created from it.
    Disabled,
}

impl EnableState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EnableState::Enabled => "Enabled",
            EnableState::Disabled => "Disabled",
        }
    }
}

/// The `stateEvent` of `ChangeXState` for an [`EnableState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnableEvent {
    /// → Enabled.
    Enable,
    /// → Disabled.
    Disable,
}

impl EnableEvent {
    /// The state the event leads to (every event is accepted in every state).
    pub fn target(self) -> EnableState {
        match self {
            EnableEvent::Enable => EnableState::Enabled,
            EnableEvent::Disable => EnableState::Disabled,
        }
    }

    /// The `stateEvent` field of a request (`enable`/`disable`).
    pub fn from_request(p: &PlanInput) -> Result<EnableEvent, Refusal> {
        crate::params::state_event(
            p.body,
            p.call,
            &[
                ("enable", EnableEvent::Enable),
                ("disable", EnableEvent::Disable),
            ],
        )
    }
}

/// A kind attached to parents of another kind through a list of their uuids in its records
/// (primary storage and L2 networks to clusters, backup storage to zones): attach and detach
/// refuse in ZStack's words, naming both sides, and the relation's detach (when a parent is
/// deleted) edits the list the same way, so each family only says what its sides are called.
pub struct Attachment<R> {
    /// What a record is called in refusals (`primary storage`).
    pub what: &'static str,
    /// What a parent is called (`cluster`).
    pub parent: &'static str,
    /// The record's parent uuids, in attach order.
    pub list: fn(&mut R) -> &mut Vec<String>,
}

impl<R: Resource + Stamped> Attachment<R> {
    /// Refuse (`SYS.1006`) attaching `r` to a parent it is attached to already.
    pub fn refuse_attached(&self, r: &mut R, parent_uuid: &str) -> Result<(), ApiError> {
        if (self.list)(r).iter().any(|p| p == parent_uuid) {
            return Err(self.refusal(r.uuid(), "has been attached to", parent_uuid));
        }
        Ok(())
    }

    /// Attach `r` to a parent (refused when it is attached already).
    pub fn attach(&self, r: &mut R, parent_uuid: &str) -> Result<(), ApiError> {
        self.refuse_attached(r, parent_uuid)?;
        (self.list)(r).push(parent_uuid.to_string());
        Ok(())
    }

    /// Detach `r` from a parent, refusing (`SYS.1006`) one it is not attached to.
    pub fn detach(&self, r: &mut R, parent_uuid: &str) -> Result<(), ApiError> {
        if !(self.list)(r).iter().any(|p| p == parent_uuid) {
            return Err(self.not_attached(r.uuid(), parent_uuid));
        }
        (self.list)(r).retain(|p| p != parent_uuid);
        Ok(())
    }

    /// The refusal (`SYS.1006`) of detaching record `uuid` from a parent it is not attached
    /// to, for records whose list is not their own to edit (a VXLAN network mirrors its
    /// pool's clusters).
    pub fn not_attached(&self, uuid: &str, parent_uuid: &str) -> ApiError {
        self.refusal(uuid, "is not attached to", parent_uuid)
    }

    fn refusal(&self, uuid: &str, how: &str, parent_uuid: &str) -> ApiError {
        validate::op_failure(format!(
            "{}[uuid:{uuid}] {how} {}[uuid:{parent_uuid}]",
            self.what, self.parent
        ))
    }

    /// The relation's detach when a parent is deleted: forget it in record `uuid`. True when
    /// the record is left with no parent (a `DetachOrDelete` relation then deletes it).
    pub fn forget(
        &self,
        txn: &mut dyn StateTxn,
        ctx: &ApplyCtx,
        uuid: &str,
        parent_uuid: &str,
    ) -> Result<bool, ApiError> {
        let Some((owner, mut r)) = resource::load::<R>(txn, uuid)? else {
            return Ok(false);
        };
        (self.list)(&mut r).retain(|p| p != parent_uuid);
        r.touch(ctx.proposed_at_ms);
        resource::save(txn, &owner, &r)?;
        Ok((self.list)(&mut r).is_empty())
    }
}

/// `AttachXToY{xUuid, yUuid}` and its `DetachXFromY` → the family's op, given the record's
/// uuid and the parent's, read from the two named fields in that order.
pub fn plan_pair<Op: IntoCommand>(
    p: &PlanInput,
    field: &str,
    parent_field: &str,
    make: impl FnOnce(String, String) -> Op,
) -> Result<Plan, Refusal> {
    Ok(p.propose(make(p.required(field)?, p.required(parent_field)?)))
}

/// The common `{uuid}` of calls that name one resource.
pub fn target_uuid(p: &PlanInput) -> Result<String, Refusal> {
    p.required("uuid")
}

/// `UpdateX{uuid, name, description}` → the family's op.
pub fn plan_update<Op: IntoCommand>(
    p: &PlanInput,
    make: impl FnOnce(String, Rename) -> Op,
) -> Result<Plan, Refusal> {
    Ok(p.propose(make(target_uuid(p)?, Rename::from_request(p))))
}

/// `ChangeXState{uuid, stateEvent: enable|disable}` → the family's op.
pub fn plan_change_state<Op: IntoCommand>(
    p: &PlanInput,
    make: impl FnOnce(String, EnableEvent) -> Op,
) -> Result<Plan, Refusal> {
    Ok(p.propose(make(target_uuid(p)?, EnableEvent::from_request(p)?)))
}

/// `DeleteX{uuid}` → the family's op.
pub fn plan_delete<Op: IntoCommand>(
    p: &PlanInput,
    make: impl FnOnce(String) -> Op,
) -> Result<Plan, Refusal> {
    Ok(p.propose(make(target_uuid(p)?)))
}

/// The query of a kind whose records each account sees its own of (the admin all).
pub fn visible_query<R: Resource>(
    txn: &dyn StateTxn,
    q: &Query,
    caller: &Caller,
) -> Result<QueryOutput, ApiError> {
    resource::query::<R>(txn, q, |owner| caller.can_see(owner))
}

/// `QueryX` of a kind queried with [`visible_query`].
pub fn plan_query<R: Resource>(p: &PlanInput) -> Result<Plan, Refusal> {
    p.query(visible_query::<R>)
}
