//! Volume snapshots (spec 02 §2.3, §3.4, §4.5): the records, their commands and apply, the
//! requests that become them.
//!
//! A volume's snapshots form trees (LocalStorage, NFS and SMP are tree storages). The
//! snapshot the volume's file is currently an overlay of is the volume's `latest` one; a new
//! snapshot is its child, a revert moves `latest` (and the tree's `current` flag) to the
//! reverted one, and a delete takes the snapshot's whole subtree, `latest` falling back to
//! the nearest ancestor that stays. The agent keeps the files the same way
//! (`snapshot_flows.rs`): the volume's file is backed by the `latest` snapshot's file, each
//! snapshot's file by its parent's, the first of a tree's by the volume's base (its image, or
//! nothing).
//!
//! A tree is made by the first snapshot taken while the volume has no `latest` one; its
//! record carries the nested `tree` (ZStack's `SnapshotLeafInventory`), rebuilt by every
//! command that changes the volume's snapshots, and goes when its last snapshot goes.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use super::model::VmInstance;
use super::model::VmOp;
use super::model::VmResult;
use super::model::VmState;
use super::model::Volume;
use super::model::VolumeStatus;
use crate::params;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource;
use crate::resource::date;
use crate::resource::generic;
use crate::resource::generic::Rename;
use crate::resource::Field;
use crate::resource::Resource;
use crate::validate;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// The snapshot table.
pub const TABLE: &str = "volume_snapshot";
/// The kind of a snapshot.
pub const KIND: &str = "VolumeSnapshot";
/// Tags' resource type of a snapshot.
pub const VO: &str = "VolumeSnapshotVO";
/// The snapshot tree table.
pub const TREE_TABLE: &str = "volume_snapshot_tree";
/// The kind of a snapshot tree.
pub const TREE_KIND: &str = "VolumeSnapshotTree";
/// Tags' resource type of a snapshot tree.
pub const TREE_VO: &str = "VolumeSnapshotTreeVO";

/// The VM states a snapshot is taken or deleted in (online allowed, spec 02 §2.3).
pub const SNAPSHOT_STATES: &[VmState] = &[VmState::Running, VmState::Paused, VmState::Stopped];
/// The VM state a volume is reverted in (spec 02 §2.3: stopped, or the volume detached).
pub const REVERT_STATES: &[VmState] = &[VmState::Stopped];

/// A snapshot's lifecycle (`VolumeSnapshotStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotStatus {
    /// Its file is being made.
    Creating,
    /// Its file exists.
    Ready,
    /// It and its file are going.
    Deleting,
}

/// A snapshot record (`VolumeSnapshotVO`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshot {
    /// 32 hex chars.
    pub uuid: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The volume it is of.
    pub volume_uuid: String,
    /// Its tree.
    pub tree_uuid: String,
    /// The snapshot it was taken on top of (none: the first of its tree).
    pub parent_uuid: Option<String>,
    /// The volume's storage.
    pub primary_storage_uuid: Option<String>,
    /// Its file, once made.
    pub primary_storage_install_path: Option<String>,
    /// `Root` or `Data`, as its volume.
    pub volume_type: String,
    /// Whether the volume's file is an overlay of it now.
    pub latest: bool,
    /// Depth in its tree (0 = the tree's first).
    pub distance: u32,
    /// Bytes its file takes.
    pub size: u64,
    /// Lifecycle.
    pub status: SnapshotStatus,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

crate::described_record!(VolumeSnapshot);

/// A snapshot tree record (`VolumeSnapshotTreeVO`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotTree {
    /// 32 hex chars.
    pub uuid: String,
    /// The volume.
    pub volume_uuid: String,
    /// Whether the volume's `latest` snapshot is in this tree.
    pub current: bool,
    /// The nested tree (`SnapshotLeafInventory`), rebuilt on every change.
    pub tree: Value,
    /// Creation time, ms.
    pub create_date: u64,
    /// Last change, ms.
    pub last_op_date: u64,
}

impl generic::Stamped for SnapshotTree {
    fn touch(&mut self, now_ms: u64) {
        self.last_op_date = now_ms;
    }
}

fn opt(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|x| json!(x))
}

fn status_name(s: SnapshotStatus) -> &'static str {
    match s {
        SnapshotStatus::Creating => "Creating",
        SnapshotStatus::Ready => "Ready",
        SnapshotStatus::Deleting => "Deleting",
    }
}

impl Resource for VolumeSnapshot {
    const KIND: &'static str = KIND;
    const TABLE: &'static str = TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |s| json!(s.uuid)),
        Field::new("name", |s| json!(s.name)),
        Field::maybe("description", |s| opt(&s.description)),
        Field::new("type", |_| json!("Hypervisor")),
        Field::new("volumeUuid", |s| json!(s.volume_uuid)),
        Field::new("treeUuid", |s| json!(s.tree_uuid)),
        Field::maybe("parentUuid", |s| opt(&s.parent_uuid)),
        Field::maybe("primaryStorageUuid", |s| opt(&s.primary_storage_uuid)),
        Field::maybe("primaryStorageInstallPath", |s| {
            opt(&s.primary_storage_install_path)
        }),
        Field::new("volumeType", |s| json!(s.volume_type)),
        Field::new("format", |_| json!("qcow2")),
        Field::new("latest", |s| json!(s.latest)),
        Field::new("size", |s| json!(s.size)),
        Field::new("distance", |s| json!(s.distance)),
        Field::new("state", |_| json!("Enabled")),
        Field::new("status", |s| json!(status_name(s.status))),
        Field::new("createDate", |s| date(s.create_date)),
        Field::new("lastOpDate", |s| date(s.last_op_date)),
    ];
    const INDEXED: &'static [&'static str] = &["name", "volumeUuid", "treeUuid", "status"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

impl Resource for SnapshotTree {
    const KIND: &'static str = TREE_KIND;
    const TABLE: &'static str = TREE_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |t| json!(t.uuid)),
        Field::new("volumeUuid", |t| json!(t.volume_uuid)),
        Field::new("current", |t| json!(t.current)),
        Field::new("status", |_| json!("Completed")),
        Field::new("tree", |t| t.tree.clone()),
        Field::new("createDate", |t| date(t.create_date)),
        Field::new("lastOpDate", |t| date(t.last_op_date)),
    ];
    const INDEXED: &'static [&'static str] = &["volumeUuid"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

/// Snapshot commands (inside [`VmOp::Snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotOp {
    /// `CreateVolumeSnapshot`: the record, `Creating`, on top of the volume's latest.
    Create {
        /// New snapshot.
        uuid: String,
        /// The volume.
        volume_uuid: String,
        /// Name.
        name: String,
        /// Free text.
        description: Option<String>,
    },
    /// `RevertVolumeFromSnapshot`: checks only; the flow moves `latest` once the file did.
    Revert {
        /// The snapshot.
        uuid: String,
    },
    /// `DeleteVolumeSnapshot`: the snapshot and its descendants `Deleting`.
    Delete {
        /// The snapshot.
        uuid: String,
    },
    /// `UpdateVolumeSnapshot`.
    Update {
        /// The snapshot.
        uuid: String,
        /// New name and description.
        rename: Rename,
    },
}

impl SnapshotOp {
    /// The resource the op names (the volume of a create, else the snapshot).
    pub fn uuid(&self) -> &str {
        match self {
            SnapshotOp::Create { volume_uuid, .. } => volume_uuid,
            SnapshotOp::Revert { uuid }
            | SnapshotOp::Delete { uuid }
            | SnapshotOp::Update { uuid, .. } => uuid,
        }
    }

    /// The API message (named in state errors).
    pub fn message(&self) -> &'static str {
        match self {
            SnapshotOp::Create { .. } => "volume.APICreateVolumeSnapshotMsg",
            SnapshotOp::Revert { .. } => "storage.snapshot.APIRevertVolumeFromSnapshotMsg",
            SnapshotOp::Delete { .. } => "storage.snapshot.APIDeleteVolumeSnapshotMsg",
            SnapshotOp::Update { .. } => "storage.snapshot.APIUpdateVolumeSnapshotMsg",
        }
    }
}

fn answer(s: VolumeSnapshot) -> VmResult {
    VmResult::Snapshot(Box::new(s))
}

/// The volume's snapshots, oldest first.
pub fn snapshots_of(txn: &dyn StateTxn, volume: &str) -> Result<Vec<VolumeSnapshot>, ApiError> {
    let mut v: Vec<VolumeSnapshot> = resource::find::<VolumeSnapshot>(txn, "volumeUuid", volume)?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    v.sort_by(|a, b| (a.create_date, &a.uuid).cmp(&(b.create_date, &b.uuid)));
    Ok(v)
}

/// `uuid` and every snapshot below it.
pub fn subtree(all: &[VolumeSnapshot], uuid: &str) -> Vec<String> {
    let mut out = vec![uuid.to_string()];
    let mut k = 0;
    while k < out.len() {
        let at = out[k].clone();
        out.extend(
            all.iter()
                .filter(|s| s.parent_uuid.as_deref() == Some(at.as_str()))
                .map(|s| s.uuid.clone()),
        );
        k += 1;
    }
    out
}

fn leaf(all: &[VolumeSnapshot], s: &VolumeSnapshot) -> Value {
    let children: Vec<Value> = all
        .iter()
        .filter(|c| c.parent_uuid.as_deref() == Some(s.uuid.as_str()))
        .map(|c| leaf(all, c))
        .collect();
    let mut v = json!({"inventory": resource::inventory(s), "children": children});
    if let Some(p) = &s.parent_uuid {
        v["parentUuid"] = json!(p);
    }
    v
}

/// Bring the volume's tree records in line with its snapshots: each tree's nested `tree`
/// and `current` flag rebuilt, a tree left without snapshots removed.
pub fn refresh_trees(txn: &mut dyn StateTxn, ctx: &ApplyCtx, volume: &str) -> Result<(), ApiError> {
    let all = snapshots_of(txn, volume)?;
    for (owner, mut t) in resource::find::<SnapshotTree>(txn, "volumeUuid", volume)? {
        let root = all
            .iter()
            .find(|s| s.tree_uuid == t.uuid && s.parent_uuid.is_none());
        let Some(root) = root else {
            resource::remove::<SnapshotTree>(txn, &t.uuid)?;
            continue;
        };
        let tree = leaf(&all, root);
        let current = all.iter().any(|s| s.tree_uuid == t.uuid && s.latest);
        if t.tree != tree || t.current != current {
            t.tree = tree;
            t.current = current;
            generic::Stamped::touch(&mut t, ctx.proposed_at_ms);
            resource::save(txn, &owner, &t)?;
        }
    }
    Ok(())
}

/// ZStack's refusal of a snapshot operation while the volume's VM is in a state that does
/// not allow it.
fn vm_state_error(op: &SnapshotOp, vm: &VmInstance, allowed: &[VmState]) -> ApiError {
    let names: Vec<&str> = allowed.iter().map(|s| s.name()).collect();
    validate::op_failure(format!(
        "current vm instance state[{}] doesn't allow to proceed message[org.zstack.header.{}], allowed states are [{}]",
        vm.state.name(),
        op.message(),
        names.join(", ")
    ))
}

/// The volume must have its file, be no one's recycle bin content, and its VM (if any) be
/// in one of `allowed`; no other snapshot operation of the volume may be under way.
fn check_volume(
    txn: &dyn StateTxn,
    op: &SnapshotOp,
    v: &Volume,
    allowed: &[VmState],
) -> Result<(), ApiError> {
    if v.status != VolumeStatus::Ready || v.install_path.is_none() {
        return Err(validate::op_failure(format!(
            "volume[uuid:{}] is {:?}; a snapshot is taken of, reverted or deleted on a Ready volume with a file (attach a NotInstantiated data volume first)",
            v.uuid, v.status
        )));
    }
    if let Some(vm) = &v.vm_instance_uuid {
        let vm = resource::require::<VmInstance>(txn, vm)?.1;
        if !allowed.contains(&vm.state) {
            return Err(vm_state_error(op, &vm, allowed));
        }
    }
    if let Some(busy) = snapshots_of(txn, &v.uuid)?
        .iter()
        .find(|s| s.status != SnapshotStatus::Ready)
    {
        return Err(validate::op_failure(format!(
            "snapshot[uuid:{}] of volume[uuid:{}] is {}; wait for that operation to finish",
            busy.uuid,
            v.uuid,
            status_name(busy.status)
        )));
    }
    Ok(())
}

fn visible_snapshot(
    txn: &dyn StateTxn,
    caller: &Caller,
    uuid: &str,
) -> Result<VolumeSnapshot, ApiError> {
    resource::require_visible::<VolumeSnapshot>(txn, caller, uuid).map(|(_, s)| s)
}

fn ready(op: &SnapshotOp, s: &VolumeSnapshot) -> Result<(), ApiError> {
    if s.status != SnapshotStatus::Ready {
        return Err(validate::op_failure(format!(
            "snapshot[uuid:{}] is {}; message[org.zstack.header.{}] needs it Ready",
            s.uuid,
            status_name(s.status),
            op.message()
        )));
    }
    Ok(())
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: SnapshotOp,
) -> Result<VmResult, ApiError> {
    let now = ctx.proposed_at_ms;
    match &op {
        SnapshotOp::Create {
            uuid,
            volume_uuid,
            name,
            description,
        } => {
            generic::check_fields(uuid, name, description.as_deref())?;
            let (owner, v) = resource::require_visible::<Volume>(txn, caller, volume_uuid)?;
            check_volume(txn, &op, &v, SNAPSHOT_STATES)?;
            resource::refuse_duplicate::<VolumeSnapshot>(txn, uuid)?;
            let parent = snapshots_of(txn, volume_uuid)?
                .into_iter()
                .find(|s| s.latest);
            let tree_uuid = match &parent {
                Some(p) => p.tree_uuid.clone(),
                None => {
                    let t = SnapshotTree {
                        uuid: params::derive_uuid(uuid, 1),
                        volume_uuid: volume_uuid.clone(),
                        current: false,
                        tree: Value::Null,
                        create_date: now,
                        last_op_date: now,
                    };
                    resource::refuse_duplicate::<SnapshotTree>(txn, &t.uuid)?;
                    resource::save(txn, &owner, &t)?;
                    t.uuid
                }
            };
            let s = VolumeSnapshot {
                uuid: uuid.clone(),
                name: name.clone(),
                description: description.clone(),
                volume_uuid: volume_uuid.clone(),
                tree_uuid,
                parent_uuid: parent.as_ref().map(|p| p.uuid.clone()),
                primary_storage_uuid: v.primary_storage_uuid.clone(),
                primary_storage_install_path: None,
                volume_type: v.volume_type.clone(),
                latest: false,
                distance: parent.as_ref().map_or(0, |p| p.distance + 1),
                size: 0,
                status: SnapshotStatus::Creating,
                create_date: now,
                last_op_date: now,
            };
            // The snapshot belongs to whoever owns the volume (a tenant's scheduled job or
            // an admin acting on a tenant's volume alike).
            resource::save(txn, &owner, &s)?;
            refresh_trees(txn, ctx, volume_uuid)?;
            Ok(answer(s))
        }
        SnapshotOp::Revert { uuid } => {
            let s = visible_snapshot(txn, caller, uuid)?;
            ready(&op, &s)?;
            let v = resource::require::<Volume>(txn, &s.volume_uuid)?.1;
            check_volume(txn, &op, &v, REVERT_STATES)?;
            Ok(answer(s))
        }
        SnapshotOp::Delete { uuid } => {
            let s = visible_snapshot(txn, caller, uuid)?;
            ready(&op, &s)?;
            let v = resource::require::<Volume>(txn, &s.volume_uuid)?.1;
            check_volume(txn, &op, &v, SNAPSHOT_STATES)?;
            let all = snapshots_of(txn, &s.volume_uuid)?;
            for d in subtree(&all, uuid) {
                generic::modify(txn, ctx, &d, |_, r: &mut VolumeSnapshot| {
                    r.status = SnapshotStatus::Deleting;
                    Ok(())
                })?;
            }
            refresh_trees(txn, ctx, &s.volume_uuid)?;
            Ok(answer(resource::require::<VolumeSnapshot>(txn, uuid)?.1))
        }
        SnapshotOp::Update { uuid, rename } => {
            visible_snapshot(txn, caller, uuid)?;
            let s = generic::modify(txn, ctx, uuid, |_, s: &mut VolumeSnapshot| {
                rename.clone().apply_to(s)
            })?;
            refresh_trees(txn, ctx, &s.volume_uuid)?;
            Ok(answer(s))
        }
    }
}

fn propose(p: &PlanInput, op: SnapshotOp) -> Plan {
    p.propose(VmOp::Snapshot(op))
}

fn required_lower(p: &PlanInput, f: &str) -> Result<String, Refusal> {
    Ok(p.required(f)?.to_ascii_lowercase())
}

pub(super) fn create(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(propose(
        p,
        SnapshotOp::Create {
            uuid: p.new_uuid(),
            volume_uuid: required_lower(p, "volumeUuid")?,
            name: p.required("name")?,
            description: p.string("description"),
        },
    ))
}

pub(super) fn revert(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(propose(
        p,
        SnapshotOp::Revert {
            uuid: required_lower(p, "uuid")?,
        },
    ))
}

pub(super) fn delete(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(propose(
        p,
        SnapshotOp::Delete {
            uuid: required_lower(p, "uuid")?,
        },
    ))
}

pub(super) fn update(p: &PlanInput) -> Result<Plan, Refusal> {
    generic::plan_update(p, |uuid, rename| {
        VmOp::Snapshot(SnapshotOp::Update { uuid, rename })
    })
}

/// `GetVolumeSnapshotSize`: the bytes the snapshot's file takes (`size`; `actualSize` the
/// same, a snapshot's file being allocated only where it was written).
pub(super) fn size(p: &PlanInput) -> Result<Plan, Refusal> {
    let uuid = required_lower(p, "uuid")?;
    Ok(Plan::Read {
        call: p.call,
        read: Box::new(move |txn, caller| {
            let s = visible_snapshot(txn, caller, &uuid)?;
            Ok(resource::object(
                json!({"size": s.size, "actualSize": s.size}),
            ))
        }),
    })
}
