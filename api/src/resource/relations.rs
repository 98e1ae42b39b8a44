//! Declared relations between resource kinds and the walks over them.
//!
//! A child kind declares each reference it holds to a parent (an indexed field naming the
//! parent's uuid) and what deleting the parent does to it: cascade, detach, detach and delete
//! when no parent is left, or refuse. A parent never names its children, so a family that adds
//! a child kind changes nothing in the parent's module. Deleting a record first checks every
//! refusal in the subtree it would take along, then walks it, so a refused delete writes
//! nothing at all.

use crate::family::KindDecl;
use crate::registry;
use crate::resource;
use crate::ApiError;
use crate::ApplyCtx;
use crate::StateTxn;

/// The parent of a relation that every kind is (tags may name any resource).
pub const ANY: &str = "*";

/// Detach `child` from `parent` (the child's family edits its own record). Returns true when
/// the child is left with no parent of this kind.
pub type DetachFn = fn(&mut dyn StateTxn, &ApplyCtx, &str, &str) -> Result<bool, ApiError>;

/// The parent's state changed to the given state name; the child's family decides what follows.
pub type StateFn = fn(&mut dyn StateTxn, &ApplyCtx, &str, &str) -> Result<(), ApiError>;

/// What deleting the parent does to a child.
pub enum OnDelete {
    /// The child is deleted too (with everything that hangs off it).
    Cascade,
    /// The child stays; the reference is removed.
    Detach(DetachFn),
    /// The reference is removed; a child left without any parent of this kind is deleted.
    DetachOrDelete(DetachFn),
    /// The delete is refused while the child exists (the error names both).
    Refuse(fn(&str, &str) -> ApiError),
}

/// A reference from a child kind to a parent kind.
pub struct Relation {
    /// The child's indexed field holding the parent's uuid (or uuids).
    pub field: &'static str,
    /// The parent kind, or [`ANY`].
    pub parent: &'static str,
    /// What deleting the parent does.
    pub on_delete: OnDelete,
    /// What a state change of the parent does, if anything.
    pub on_parent_state: Option<StateFn>,
}

impl Relation {
    /// A reference through `field` to a `parent` kind; deleting the parent does `on_delete`,
    /// its state changes do nothing here.
    pub const fn new(field: &'static str, parent: &'static str, on_delete: OnDelete) -> Self {
        Relation {
            field,
            parent,
            on_delete,
            on_parent_state: None,
        }
    }

    /// A reference whose parent's deletion deletes the child too.
    pub const fn cascade(field: &'static str, parent: &'static str) -> Self {
        Relation::new(field, parent, OnDelete::Cascade)
    }

    /// The same relation, with `f` following the parent's state changes.
    pub const fn with_parent_state(mut self, f: StateFn) -> Self {
        self.on_parent_state = Some(f);
        self
    }
}

fn children(
    txn: &dyn StateTxn,
    kind: &str,
    uuid: &str,
) -> Result<Vec<(&'static KindDecl, &'static Relation, String)>, ApiError> {
    let mut out = Vec::new();
    for (child, rel) in registry::relations_to(kind) {
        for c in resource::uuids_in(txn, child.table, rel.field, uuid)? {
            out.push((child, rel, c));
        }
    }
    Ok(out)
}

/// Refuse (before any write) a delete that some relation in the subtree forbids.
pub fn check_delete(txn: &dyn StateTxn, kind: &str, uuid: &str) -> Result<(), ApiError> {
    for (child, rel, c) in children(txn, kind, uuid)? {
        match &rel.on_delete {
            OnDelete::Refuse(err) => return Err(err(&c, uuid)),
            OnDelete::Cascade => check_delete(txn, child.kind, &c)?,
            // A detach may still delete the child; what that would take along must not refuse.
            OnDelete::DetachOrDelete(_) => check_delete(txn, child.kind, &c)?,
            OnDelete::Detach(_) => {}
        }
    }
    Ok(())
}

/// Delete a record of `kind` and walk its relations; false if it did not exist.
pub fn delete(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    kind: &str,
    uuid: &str,
) -> Result<bool, ApiError> {
    let decl = registry::kind(kind);
    if txn.get(decl.table, uuid.as_bytes())?.is_none() {
        return Ok(false);
    }
    check_delete(txn, kind, uuid)?;
    delete_checked(txn, ctx, decl, uuid)?;
    Ok(true)
}

fn delete_checked(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    decl: &'static KindDecl,
    uuid: &str,
) -> Result<(), ApiError> {
    for (child, rel, c) in children(txn, decl.kind, uuid)? {
        // An earlier step of this walk may have removed it already.
        if txn.get(child.table, c.as_bytes())?.is_none() {
            continue;
        }
        match &rel.on_delete {
            OnDelete::Cascade => delete_checked(txn, ctx, child, &c)?,
            OnDelete::Detach(detach) => {
                detach(txn, ctx, &c, uuid)?;
            }
            OnDelete::DetachOrDelete(detach) => {
                if detach(txn, ctx, &c, uuid)? {
                    delete_checked(txn, ctx, child, &c)?;
                }
            }
            OnDelete::Refuse(err) => return Err(err(&c, uuid)),
        }
    }
    if let Some(cleanup) = decl.on_delete {
        cleanup(txn, ctx, uuid)?;
    }
    resource::remove_raw(txn, decl.table, uuid)?;
    Ok(())
}

/// Tell every child whose relation to `kind` reacts to state changes that `uuid` is now in
/// `state`.
pub fn propagate_state(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    kind: &str,
    uuid: &str,
    state: &str,
) -> Result<(), ApiError> {
    for (_, rel, c) in children(txn, kind, uuid)? {
        if let Some(f) = rel.on_parent_state {
            f(txn, ctx, &c, state)?;
        }
    }
    Ok(())
}
