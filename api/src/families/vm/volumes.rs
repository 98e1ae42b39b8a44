//! Data volumes (spec 02 §2.2, §3.2, §4.5–4.6): the volume commands and their apply, the
//! requests that become them, and the attachability reads.
//!
//! A command checks the volume's and the VM's states and writes the record change the call
//! makes (an attach takes its device slot, a detach or delete gives it back); the call's flow
//! (`volume_flows.rs`) then has the host's agent make the file state follow, and a failure
//! restores the record as it was before the call.
//!
//! Status follows ZStack's `VolumeStatus`: a volume created without storage is
//! `NotInstantiated` (no file, no space) until its first attach makes its file on the VM's
//! storage; one created on a primary storage is made there at once (`Ready`). `Deleted` is
//! the recycle bin of the `Delay`/`Never` deletion policies (`volume.deletionPolicy`).

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Map;
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
use crate::resource::generic;
use crate::resource::generic::EnableEvent;
use crate::resource::generic::EnableState;
use crate::validate;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// ZStack's smallest growth of a resize (spec 02 §4.5: "the increment must be ≥ 4 MB").
pub const MIN_RESIZE_STEP: u64 = 4 << 20;

/// The VM states a data volume may be attached or detached in (ZStack's
/// `VolumeApiInterceptor`: Running, Paused, Stopped).
pub const ATTACH_STATES: &[VmState] = &[VmState::Running, VmState::Paused, VmState::Stopped];

/// Volume commands (inside [`VmOp::Volume`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeOp {
    /// `CreateDataVolume`.
    CreateData {
        /// New volume.
        uuid: String,
        /// Name.
        name: String,
        /// Free text.
        description: Option<String>,
        /// `diskSize`, when no offering gives it.
        size: Option<u64>,
        /// `diskOfferingUuid`.
        disk_offering_uuid: Option<String>,
        /// `primaryStorageUuid`: made there at once.
        primary_storage_uuid: Option<String>,
        /// LocalStorage: the host to make it on (system tag `localStorage::hostUuid::<uuid>`).
        host_uuid: Option<String>,
    },
    /// `AttachDataVolumeToVm`.
    Attach {
        /// Volume.
        uuid: String,
        /// VM.
        vm_uuid: String,
    },
    /// `DetachDataVolumeFromVm`.
    Detach {
        /// Volume.
        uuid: String,
        /// The VM it must be attached to, when named.
        vm_uuid: Option<String>,
    },
    /// `DeleteDataVolume`: detached, then deleted by the deletion policy.
    Delete {
        /// Volume.
        uuid: String,
    },
    /// `RecoverDataVolume`: Deleted → Ready (NotInstantiated when it never had a file).
    Recover {
        /// Volume.
        uuid: String,
    },
    /// `ExpungeDataVolume`: a Deleted volume's file and record go.
    Expunge {
        /// Volume.
        uuid: String,
    },
    /// `ChangeVolumeState`.
    ChangeState {
        /// Volume.
        uuid: String,
        /// enable or disable.
        event: EnableEvent,
    },
    /// `ResizeDataVolume` / `ResizeRootVolume`: grow only.
    Resize {
        /// The volume, or (a root resize by `vmInstanceUuid`) the VM.
        uuid: String,
        /// Named by its VM (the VM's root volume).
        by_vm: bool,
        /// `ResizeRootVolume` (else a data volume).
        root: bool,
        /// New virtual size.
        size: u64,
    },
}

impl VolumeOp {
    /// The resource the op names first (the volume, or the VM of a root resize by VM).
    pub fn uuid(&self) -> &str {
        match self {
            VolumeOp::CreateData { uuid, .. }
            | VolumeOp::Attach { uuid, .. }
            | VolumeOp::Detach { uuid, .. }
            | VolumeOp::Delete { uuid }
            | VolumeOp::Recover { uuid }
            | VolumeOp::Expunge { uuid }
            | VolumeOp::ChangeState { uuid, .. }
            | VolumeOp::Resize { uuid, .. } => uuid,
        }
    }

    /// The API message (named in state errors).
    pub fn message(&self) -> &'static str {
        match self {
            VolumeOp::CreateData { .. } => "APICreateDataVolumeMsg",
            VolumeOp::Attach { .. } => "APIAttachDataVolumeToVmMsg",
            VolumeOp::Detach { .. } => "APIDetachDataVolumeFromVmMsg",
            VolumeOp::Delete { .. } => "APIDeleteDataVolumeMsg",
            VolumeOp::Recover { .. } => "APIRecoverDataVolumeMsg",
            VolumeOp::Expunge { .. } => "APIExpungeDataVolumeMsg",
            VolumeOp::ChangeState { .. } => "APIChangeVolumeStateMsg",
            VolumeOp::Resize { root: true, .. } => "APIResizeRootVolumeMsg",
            VolumeOp::Resize { .. } => "APIResizeDataVolumeMsg",
        }
    }
}

fn status_name(s: VolumeStatus) -> &'static str {
    match s {
        VolumeStatus::Creating => "Creating",
        VolumeStatus::Ready => "Ready",
        VolumeStatus::NotInstantiated => "NotInstantiated",
        VolumeStatus::Deleted => "Deleted",
    }
}

/// ZStack's refusal of a volume operation in a status that does not allow it.
fn status_error(op: &VolumeOp, v: &Volume, allowed: &[VolumeStatus]) -> ApiError {
    let names: Vec<&str> = allowed.iter().map(|s| status_name(*s)).collect();
    validate::op_failure(format!(
        "volume[uuid:{}] is {}; message[org.zstack.header.volume.{}] needs it {}",
        v.uuid,
        status_name(v.status),
        op.message(),
        names.join(" or ")
    ))
}

/// ZStack's refusal of a volume operation while its VM is in a state that does not allow it.
fn vm_state_error(op: &VolumeOp, vm: &VmInstance, allowed: &[VmState]) -> ApiError {
    let names: Vec<&str> = allowed.iter().map(|s| s.name()).collect();
    validate::op_failure(format!(
        "current vm instance state[{}] doesn't allow to proceed message[org.zstack.header.volume.{}], allowed states are [{}]",
        vm.state.name(),
        op.message(),
        names.join(", ")
    ))
}

fn visible_volume(txn: &dyn StateTxn, caller: &Caller, uuid: &str) -> Result<Volume, ApiError> {
    resource::require_visible::<Volume>(txn, caller, uuid).map(|(_, v)| v)
}

fn data_volume(txn: &dyn StateTxn, caller: &Caller, uuid: &str) -> Result<Volume, ApiError> {
    let v = visible_volume(txn, caller, uuid)?;
    if v.volume_type != "Data" {
        return Err(validate::op_failure(format!(
            "volume[uuid:{uuid}] is the root volume of VM[uuid:{}]; a root volume is never attached, detached or deleted on its own",
            v.vm_instance_uuid.as_deref().unwrap_or("")
        )));
    }
    Ok(v)
}

/// The VM's root volume.
fn root_of(txn: &dyn StateTxn, vm: &VmInstance) -> Result<Volume, ApiError> {
    resource::require::<Volume>(txn, &vm.root_volume_uuid).map(|(_, v)| v)
}

/// The primary storage's type and the clusters it is attached to.
fn storage_facts(txn: &dyn StateTxn, ps: &str) -> Result<(String, Vec<String>), ApiError> {
    let inv = resource::inventory_of(txn, "PrimaryStorage", ps)?
        .ok_or_else(|| resource::not_found_kind("PrimaryStorage", ps))?;
    let clusters = inv["attachedClusterUuids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    Ok((
        inv["type"].as_str().unwrap_or_default().to_string(),
        clusters,
    ))
}

/// Why `volume` cannot be attached to `vm` where they are (spec 02 §4.6): a volume on local
/// storage only to a VM of its host, one on shared storage only to a VM of a cluster the
/// storage is attached to.
pub fn placement_refusal(
    txn: &dyn StateTxn,
    volume: &Volume,
    vm: &VmInstance,
) -> Result<Option<String>, ApiError> {
    let Some(ps) = &volume.primary_storage_uuid else {
        return Ok(None);
    };
    let root = root_of(txn, vm)?;
    let (ty, clusters) = storage_facts(txn, ps)?;
    if ty == "LocalStorage" {
        if let (Some(a), Some(b)) = (&volume.local_host_uuid, &root.local_host_uuid) {
            if a != b {
                return Ok(Some(format!(
                    "volume[uuid:{}] is on the local storage of host[uuid:{a}] but VM[uuid:{}]'s root volume is on host[uuid:{b}]; migrate the volume to that host first",
                    volume.uuid, vm.uuid
                )));
            }
        }
        return Ok(None);
    }
    match &vm.cluster_uuid {
        Some(c) if !clusters.contains(c) => Ok(Some(format!(
            "volume[uuid:{}] is on primary storage[uuid:{ps}], which is not attached to VM[uuid:{}]'s cluster[uuid:{c}]",
            volume.uuid, vm.uuid
        ))),
        _ => Ok(None),
    }
}

/// Whether `v` may be attached at all now (a detached, enabled, existing data volume).
fn attachable_volume(op: &VolumeOp, v: &Volume) -> Result<(), ApiError> {
    if let Some(vm) = &v.vm_instance_uuid {
        return Err(validate::op_failure(format!(
            "data volume[uuid:{}] has been attached to vm[uuid:{vm}], can't attach again",
            v.uuid
        )));
    }
    if v.state != EnableState::Enabled {
        return Err(validate::op_failure(format!(
            "data volume[uuid:{}] is Disabled; a disabled volume cannot be attached",
            v.uuid
        )));
    }
    let allowed = [VolumeStatus::Ready, VolumeStatus::NotInstantiated];
    if !allowed.contains(&v.status) {
        return Err(status_error(op, v, &allowed));
    }
    Ok(())
}

/// The lowest device id (1 = vdb) no volume of the VM has.
fn free_device_id(txn: &dyn StateTxn, vm_uuid: &str) -> Result<u32, ApiError> {
    let used: Vec<u32> = super::model::volumes_of(txn, vm_uuid)?
        .iter()
        .filter_map(|v| v.device_id)
        .collect();
    (1..26u32).find(|d| !used.contains(d)).ok_or_else(|| {
        validate::op_failure(format!(
            "VM[uuid:{vm_uuid}] has 26 disks (vda..vdz) already"
        ))
    })
}

fn disk_offering_size(txn: &dyn StateTxn, caller: &Caller, uuid: &str) -> Result<u64, ApiError> {
    let r = resource::require_ref(txn, "DiskOffering", uuid)?;
    r.check_visible(caller)?;
    let inv = resource::inventory_of(txn, "DiskOffering", uuid)?
        .ok_or_else(|| resource::not_found_kind("DiskOffering", uuid))?;
    if inv["state"] != "Enabled" {
        return Err(validate::op_failure(format!(
            "disk offering[uuid:{uuid}] is Disabled; a disabled offering cannot create volumes"
        )));
    }
    Ok(inv["diskSize"].as_u64().unwrap_or(0))
}

fn answer(v: Volume) -> VmResult {
    VmResult::Volume(Box::new(v))
}

/// The deletion policy of volumes (`volume.deletionPolicy`).
pub fn direct_deletion(txn: &dyn StateTxn) -> Result<bool, ApiError> {
    Ok(crate::settings::value(txn, "volume", "deletionPolicy")? == "Direct")
}

/// The volume a resize is about.
pub fn resize_target(
    txn: &dyn StateTxn,
    caller: &Caller,
    uuid: &str,
    by_vm: bool,
) -> Result<Volume, ApiError> {
    if by_vm {
        let (_, vm) = resource::require_visible::<VmInstance>(txn, caller, uuid)?;
        return root_of(txn, &vm);
    }
    visible_volume(txn, caller, uuid)
}

#[allow(clippy::too_many_lines)]
pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: VolumeOp,
) -> Result<VmResult, ApiError> {
    let now = ctx.proposed_at_ms;
    match &op {
        VolumeOp::CreateData {
            uuid,
            name,
            description,
            size,
            disk_offering_uuid,
            primary_storage_uuid,
            host_uuid,
        } => {
            generic::check_fields(uuid, name, description.as_deref())?;
            let size = match (disk_offering_uuid, size) {
                (Some(o), _) => disk_offering_size(txn, caller, o)?,
                (None, Some(s)) => *s,
                (None, None) => {
                    return Err(validate::invalid_arg(
                        "either diskOfferingUuid or diskSize must be set",
                    ))
                }
            };
            if size == 0 {
                return Err(validate::invalid_arg("a data volume's size must be > 0"));
            }
            if let Some(ps) = primary_storage_uuid {
                resource::require_ref(txn, "PrimaryStorage", ps)?;
            }
            if let Some(h) = host_uuid {
                resource::require_ref(txn, "Host", h)?;
            }
            resource::refuse_duplicate::<Volume>(txn, uuid)?;
            let v = Volume {
                uuid: uuid.clone(),
                name: name.clone(),
                description: description.clone(),
                primary_storage_uuid: primary_storage_uuid.clone(),
                local_host_uuid: None,
                vm_instance_uuid: None,
                root_image_uuid: None,
                volume_type: "Data".into(),
                install_path: None,
                size,
                actual_size: 0,
                format: "qcow2".into(),
                device_id: None,
                state: EnableState::Enabled,
                status: if primary_storage_uuid.is_some() {
                    VolumeStatus::Creating
                } else {
                    VolumeStatus::NotInstantiated
                },
                create_date: now,
                last_op_date: now,
            };
            resource::save(txn, &caller.account_uuid, &v)?;
            Ok(answer(v))
        }
        VolumeOp::Attach { uuid, vm_uuid } => {
            let v = data_volume(txn, caller, uuid)?;
            attachable_volume(&op, &v)?;
            let (_, vm) = resource::require_visible::<VmInstance>(txn, caller, vm_uuid)?;
            if !ATTACH_STATES.contains(&vm.state) {
                return Err(vm_state_error(&op, &vm, ATTACH_STATES));
            }
            if let Some(why) = placement_refusal(txn, &v, &vm)? {
                return Err(validate::op_failure(why));
            }
            let device = free_device_id(txn, vm_uuid)?;
            let v = generic::modify(txn, ctx, uuid, |_, v: &mut Volume| {
                v.vm_instance_uuid = Some(vm_uuid.clone());
                v.device_id = Some(device);
                Ok(())
            })?;
            Ok(answer(v))
        }
        VolumeOp::Detach { uuid, vm_uuid } => {
            let v = data_volume(txn, caller, uuid)?;
            let Some(attached) = v.vm_instance_uuid.clone() else {
                return Err(validate::op_failure(format!(
                    "data volume[uuid:{uuid}] is not attached to any vm, can't detach"
                )));
            };
            if let Some(want) = vm_uuid {
                if *want != attached {
                    return Err(validate::op_failure(format!(
                        "data volume[uuid:{uuid}] is attached to vm[uuid:{attached}], not vm[uuid:{want}]"
                    )));
                }
            }
            let vm = resource::require::<VmInstance>(txn, &attached)?.1;
            if !ATTACH_STATES.contains(&vm.state) {
                return Err(vm_state_error(&op, &vm, ATTACH_STATES));
            }
            let v = generic::modify(txn, ctx, uuid, |_, v: &mut Volume| {
                v.vm_instance_uuid = None;
                v.device_id = None;
                Ok(())
            })?;
            Ok(answer(v))
        }
        VolumeOp::Delete { uuid } => {
            let v = data_volume(txn, caller, uuid)?;
            let allowed = [VolumeStatus::Ready, VolumeStatus::NotInstantiated];
            if !allowed.contains(&v.status) {
                return Err(status_error(&op, &v, &allowed));
            }
            if let Some(vm) = &v.vm_instance_uuid {
                let vm = resource::require::<VmInstance>(txn, vm)?.1;
                if !ATTACH_STATES.contains(&vm.state) {
                    return Err(vm_state_error(&op, &vm, ATTACH_STATES));
                }
            }
            let v = generic::modify(txn, ctx, uuid, |_, v: &mut Volume| {
                v.vm_instance_uuid = None;
                v.device_id = None;
                v.status = VolumeStatus::Deleted;
                Ok(())
            })?;
            Ok(answer(v))
        }
        VolumeOp::Recover { uuid } => {
            let v = data_volume(txn, caller, uuid)?;
            if v.status != VolumeStatus::Deleted {
                return Err(status_error(&op, &v, &[VolumeStatus::Deleted]));
            }
            let v = generic::modify(txn, ctx, uuid, |_, v: &mut Volume| {
                v.status = if v.install_path.is_some() {
                    VolumeStatus::Ready
                } else {
                    VolumeStatus::NotInstantiated
                };
                Ok(())
            })?;
            Ok(answer(v))
        }
        VolumeOp::Expunge { uuid } => {
            let v = data_volume(txn, caller, uuid)?;
            if v.status != VolumeStatus::Deleted {
                return Err(status_error(&op, &v, &[VolumeStatus::Deleted]));
            }
            Ok(answer(v))
        }
        VolumeOp::ChangeState { uuid, event } => {
            let v = visible_volume(txn, caller, uuid)?;
            if v.volume_type != "Data" {
                return Err(validate::op_failure(format!(
                    "volume[uuid:{uuid}] is a root volume; only data volumes change state"
                )));
            }
            let v = generic::modify(txn, ctx, uuid, |_, v: &mut Volume| {
                v.state = event.target();
                Ok(())
            })?;
            Ok(answer(v))
        }
        VolumeOp::Resize {
            uuid,
            by_vm,
            root,
            size,
        } => {
            let v = resize_target(txn, caller, uuid, *by_vm)?;
            let ty = if *root { "Root" } else { "Data" };
            if v.volume_type != ty {
                return Err(validate::op_failure(format!(
                    "volume[uuid:{}] is a {} volume; message[org.zstack.header.volume.{}] resizes a {ty} volume",
                    v.uuid,
                    v.volume_type,
                    op.message()
                )));
            }
            if v.status != VolumeStatus::Ready || v.install_path.is_none() {
                return Err(status_error(&op, &v, &[VolumeStatus::Ready]));
            }
            if *size < v.size.saturating_add(MIN_RESIZE_STEP) {
                return Err(validate::op_failure(format!(
                    "volume[uuid:{}] is {} bytes; a resize only grows it, by at least {MIN_RESIZE_STEP} bytes (4 MB), so size must be at least {}",
                    v.uuid,
                    v.size,
                    v.size.saturating_add(MIN_RESIZE_STEP)
                )));
            }
            if let Some(vm) = &v.vm_instance_uuid {
                let vm = resource::require::<VmInstance>(txn, vm)?.1;
                let allowed = [VmState::Running, VmState::Paused, VmState::Stopped];
                if !allowed.contains(&vm.state) {
                    return Err(vm_state_error(&op, &vm, &allowed));
                }
            }
            Ok(answer(v))
        }
    }
}

fn invalid(details: String) -> Refusal {
    Refusal::new(Code::InvalidArgument, details)
}

fn lower(p: &PlanInput, f: &str) -> Option<String> {
    p.string(f).map(|s| s.to_ascii_lowercase())
}

fn required_lower(p: &PlanInput, f: &str) -> Result<String, Refusal> {
    Ok(p.required(f)?.to_ascii_lowercase())
}

/// A size parameter: a JSON number or a decimal string (the SDK sends longs as numbers,
/// forms send strings).
fn size_param(p: &PlanInput, f: &str) -> Result<Option<u64>, Refusal> {
    match p.body.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(format!("{f} must be a non-negative whole number of bytes"))),
        Some(Value::String(s)) => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| invalid(format!("{f}[{s}] is not a whole number of bytes"))),
        Some(other) => Err(invalid(format!(
            "{f} must be a number of bytes, not {other}"
        ))),
    }
}

fn propose(p: &PlanInput, op: VolumeOp) -> Plan {
    p.propose(VmOp::Volume(op))
}

pub(super) fn create(p: &PlanInput) -> Result<Plan, Refusal> {
    let tags = params::strings(p.body, "systemTags", p.call)?.unwrap_or_default();
    let host_uuid = tags
        .iter()
        .find_map(|t| t.strip_prefix("localStorage::hostUuid::"))
        .map(str::to_ascii_lowercase);
    Ok(propose(
        p,
        VolumeOp::CreateData {
            uuid: p.new_uuid(),
            name: p.required("name")?,
            description: p.string("description"),
            size: size_param(p, "diskSize")?,
            disk_offering_uuid: lower(p, "diskOfferingUuid"),
            primary_storage_uuid: lower(p, "primaryStorageUuid"),
            host_uuid,
        },
    ))
}

pub(super) fn attach(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(propose(
        p,
        VolumeOp::Attach {
            uuid: required_lower(p, "volumeUuid")?,
            vm_uuid: required_lower(p, "vmInstanceUuid")?,
        },
    ))
}

pub(super) fn detach(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(propose(
        p,
        VolumeOp::Detach {
            uuid: required_lower(p, "uuid")?,
            vm_uuid: lower(p, "vmUuid"),
        },
    ))
}

/// A call whose op names only the volume.
pub(super) fn simple(p: &PlanInput, op: fn(String) -> VolumeOp) -> Result<Plan, Refusal> {
    Ok(propose(p, op(required_lower(p, "uuid")?)))
}

pub(super) fn change_state(p: &PlanInput) -> Result<Plan, Refusal> {
    generic::plan_change_state(p, |uuid, event| {
        VmOp::Volume(VolumeOp::ChangeState { uuid, event })
    })
}

fn required_size(p: &PlanInput) -> Result<u64, Refusal> {
    size_param(p, "size")?.ok_or_else(|| invalid("size is required".into()))
}

pub(super) fn resize_data(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(propose(
        p,
        VolumeOp::Resize {
            uuid: required_lower(p, "uuid")?,
            by_vm: false,
            root: false,
            size: required_size(p)?,
        },
    ))
}

pub(super) fn resize_root(p: &PlanInput) -> Result<Plan, Refusal> {
    let (uuid, by_vm) = match (lower(p, "uuid"), lower(p, "vmInstanceUuid")) {
        (Some(u), _) => (u, false),
        (None, Some(vm)) => (vm, true),
        (None, None) => {
            return Err(invalid(
                "either uuid (the root volume) or vmInstanceUuid must be set".into(),
            ))
        }
    };
    Ok(propose(
        p,
        VolumeOp::Resize {
            uuid,
            by_vm,
            root: true,
            size: required_size(p)?,
        },
    ))
}

fn inventories(list: Vec<Value>) -> Map<String, Value> {
    resource::object(json!({ "inventories": list }))
}

/// `GetVmAttachableDataVolume`: the data volumes the caller sees that the VM could take now.
pub(super) fn vm_attachable(p: &PlanInput) -> Result<Plan, Refusal> {
    let vm_uuid = required_lower(p, "vmInstanceUuid")?;
    Ok(Plan::Read {
        call: p.call,
        read: Box::new(move |txn, caller| {
            let (_, vm) = resource::require_visible::<VmInstance>(txn, caller, &vm_uuid)?;
            let probe = VolumeOp::Attach {
                uuid: String::new(),
                vm_uuid: vm.uuid.clone(),
            };
            let mut out = Vec::new();
            for (owner, v) in resource::find::<Volume>(txn, "type", "Data")? {
                if !caller.can_see(&owner) || attachable_volume(&probe, &v).is_err() {
                    continue;
                }
                if placement_refusal(txn, &v, &vm)?.is_none() {
                    out.push(resource::inventory(&v));
                }
            }
            Ok(inventories(out))
        }),
    })
}

/// `GetDataVolumeAttachableVm`: the VMs the caller sees that could take the volume now.
pub(super) fn volume_attachable(p: &PlanInput) -> Result<Plan, Refusal> {
    let volume_uuid = required_lower(p, "volumeUuid")?;
    Ok(Plan::Read {
        call: p.call,
        read: Box::new(move |txn, caller| {
            let v = data_volume(txn, caller, &volume_uuid)?;
            let probe = VolumeOp::Attach {
                uuid: v.uuid.clone(),
                vm_uuid: String::new(),
            };
            let mut out = Vec::new();
            if attachable_volume(&probe, &v).is_ok() {
                for s in ATTACH_STATES {
                    for (owner, vm) in resource::find::<VmInstance>(txn, "state", s.name())? {
                        if caller.can_see(&owner) && placement_refusal(txn, &v, &vm)?.is_none() {
                            out.push(resource::inventory(&vm));
                        }
                    }
                }
            }
            out.sort_by(|a, b| a["uuid"].as_str().cmp(&b["uuid"].as_str()));
            Ok(inventories(out))
        }),
    })
}

/// The jobs that expunge the Deleted data volumes whose `volume.expungePeriod` has passed at
/// `now_ms` under the `Delay` policy (`Never` keeps them until expunged by hand). The period
/// counts from the volume's last change, which is its deletion (nothing but a recover or an
/// expunge acts on a Deleted volume); the job's uuid is derived from the volume and that time,
/// so two sweeps submit it once and a volume recovered and deleted again gets a new one.
pub fn expunge_jobs(
    txn: &dyn StateTxn,
    now_ms: u64,
) -> Result<Vec<crate::job::Submission>, ApiError> {
    if crate::settings::value(txn, "volume", "deletionPolicy")? != "Delay" {
        return Ok(Vec::new());
    }
    let period_ms = u64::try_from(crate::settings::int_value(txn, "volume", "expungePeriod")?)
        .unwrap_or(0)
        .saturating_mul(1000);
    let Some(spec) = crate::catalogue::catalogue().by_name("ExpungeDataVolume") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (_, v) in resource::find::<Volume>(txn, "status", status_name(VolumeStatus::Deleted))? {
        let at = v.last_op_date;
        if v.volume_type != "Data" || at.saturating_add(period_ms) > now_ms {
            continue;
        }
        let command = crate::IntoCommand::command(
            VmOp::Volume(VolumeOp::Expunge {
                uuid: v.uuid.clone(),
            }),
            Caller::admin(),
        );
        out.push(crate::job::Submission {
            uuid: params::derive_uuid(&format!("{}-expunge-{at}", v.uuid), 0),
            api_name: spec.name.clone(),
            reply_class: spec.reply_class.clone(),
            chain: v.uuid.clone(),
            flow: crate::job::FlowSpec::Named {
                flow: super::volume_flows::EXPUNGE.to_string(),
                vars: crate::flow::command_vars(&command)?,
            },
        });
    }
    Ok(out)
}
