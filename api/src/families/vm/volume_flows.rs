//! The data-volume calls as flows the leader runs against the host's agent (receiver `vm`,
//! like the VM flows). The first step is the call's command (`volumes.rs`), which checks the
//! states and writes the record change; its undo puts the volume record back exactly as it
//! was before the call (or removes a created one). The steps after it have the agent make the
//! file and the domain follow: each effect is idempotent on the agent, and the one that made
//! something (a file, a live disk) takes it back in its undo, so a failed call leaves neither
//! a file nor a disk nor a changed record behind.
//!
//! Where a volume's file is made: on the storage the volume names, else its VM's root volume
//! storage; on local storage on the host that holds the VM's root volume, on shared storage
//! through the VM's host (a Connected host of the storage's clusters when it has none).

use serde::Serialize;
use serde_json::json;

use super::flows::Disk;
use super::flows::Target;
use super::flows::VolumeFile;
use super::flows::VolumeFiles;
use super::flows::RECEIVER;
use super::model::VmInstance;
use super::model::VmOp;
use super::model::VmResult;
use super::model::VmState;
use super::model::Volume;
use super::model::VolumeStatus;
use super::model::VOLUME_KIND;
use super::volumes::VolumeOp;
use crate::flow::Action;
use crate::flow::EffectRequest;
use crate::flow::FlowDef;
use crate::flow::StepDef;
use crate::flow::Undo;
use crate::flow::Vars;
use crate::resource;
use crate::resource::generic;
use crate::resource::relations;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Response;
use crate::StateTxn;

/// Receiver actions (of the `vm` receiver).
pub mod actions {
    /// Create a blank volume file ([`super::Disk`] `disk` on `target`); sets `volume_file`.
    pub const CREATE_DATA_VOLUME: &str = "create-data-volume";
    /// Plug `disk` into the running domain `vmUuid` on `target`.
    pub const ATTACH_VOLUME: &str = "attach-volume";
    /// Unplug `disk` from the domain `vmUuid` on `target`.
    pub const DETACH_VOLUME: &str = "detach-volume";
    /// Grow `disk`'s file to `size` (live through `vmUuid` when set); sets `volume_file`.
    pub const RESIZE_VOLUME: &str = "resize-volume";
}

/// Vars.
pub mod vars {
    /// The volume.
    pub const VOLUME: &str = "volume_uuid";
    /// The volume record before the call (JSON), absent for a create.
    pub const BEFORE: &str = "volume_before";
    /// The owner of the record before the call.
    pub const BEFORE_OWNER: &str = "volume_before_owner";
    /// The VM the call concerns.
    pub const VM: &str = "vm_uuid";
    /// The host holding (or to hold) the volume's file ([`super::Target`]).
    pub const TARGET: &str = "target";
    /// The host running the VM, when the disk is plugged or unplugged live.
    pub const VM_TARGET: &str = "vm_target";
    /// The disk ([`super::Disk`]).
    pub const DISK: &str = "disk";
    /// Set when this flow makes the volume's file.
    pub const CREATES_FILE: &str = "creates_file";
    /// Set by `create-data-volume` and `resize-volume`: the file ([`super::VolumeFile`]).
    pub const VOLUME_FILE: &str = "volume_file";
    /// Files to delete ([`super::VolumeFiles`]).
    pub const DELETE: &str = "delete";
    /// A resize's new size.
    pub const SIZE: &str = "size";
    /// LocalStorage: the host a create asked for.
    pub const HOST: &str = "host_uuid";
}

/// `CreateDataVolume`.
pub const CREATE: &str = "volume.create";
/// `AttachDataVolumeToVm`.
pub const ATTACH: &str = "volume.attach";
/// `DetachDataVolumeFromVm`.
pub const DETACH: &str = "volume.detach";
/// `DeleteDataVolume`.
pub const DELETE: &str = "volume.delete";
/// `ExpungeDataVolume`.
pub const EXPUNGE: &str = "volume.expunge";
/// `ResizeDataVolume`, `ResizeRootVolume`.
pub const RESIZE: &str = "volume.resize";

fn var<'a>(v: &'a Vars, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .map(String::as_str)
        .ok_or_else(|| validate::invalid_arg(format!("volume flow without {k}")))
}

fn decode<T: serde::de::DeserializeOwned>(v: &Vars, k: &str) -> Result<T, ApiError> {
    serde_json::from_str(var(v, k)?)
        .map_err(|e| validate::invalid_arg(format!("volume flow var {k} undecodable: {e}")))
}

fn encode<T: Serialize>(vars: &mut Vars, k: &str, value: &T) -> Result<(), ApiError> {
    let text = serde_json::to_string(value)
        .map_err(|e| validate::invalid_arg(format!("volume flow var {k}: {e}")))?;
    vars.insert(k.to_string(), text);
    Ok(())
}

fn load_volume(txn: &dyn StateTxn, vars: &Vars) -> Result<Volume, ApiError> {
    resource::require::<Volume>(txn, var(vars, vars::VOLUME)?).map(|(_, v)| v)
}

fn answer(v: Volume) -> Option<Response> {
    Some(Response::Vm(VmResult::Volume(Box::new(v))))
}

pub(super) fn host_target(txn: &dyn StateTxn, host: &str) -> Result<Target, ApiError> {
    let inv = resource::inventory_of(txn, "Host", host)?
        .ok_or_else(|| resource::not_found_kind("Host", host))?;
    Ok(Target {
        host_uuid: host.to_string(),
        management_ip: inv["managementIp"].as_str().unwrap_or_default().to_string(),
    })
}

/// A Connected host of a cluster the storage is attached to (the storage is mounted there).
fn host_reaching(txn: &dyn StateTxn, ps: &str) -> Result<String, ApiError> {
    let inv = resource::inventory_of(txn, "PrimaryStorage", ps)?
        .ok_or_else(|| resource::not_found_kind("PrimaryStorage", ps))?;
    for c in inv["attachedClusterUuids"].as_array().into_iter().flatten() {
        let Some(c) = c.as_str() else { continue };
        for h in resource::refs_where(txn, "Host", "clusterUuid", c)? {
            let Some(hi) = resource::inventory_of(txn, "Host", &h.uuid)? else {
                continue;
            };
            if hi["status"] == "Connected" && hi["state"] == "Enabled" {
                return Ok(h.uuid.clone());
            }
        }
    }
    Err(validate::op_failure(format!(
        "no Connected host of a cluster attached to primary storage[uuid:{ps}]; a volume's file is made and removed through one"
    )))
}

fn is_local(txn: &dyn StateTxn, ps: &str) -> Result<bool, ApiError> {
    Ok(super::flows::storage_of(txn, ps)?.ps_type == "LocalStorage")
}

/// The host that holds (or reaches) the volume's file.
pub(super) fn file_host(
    txn: &dyn StateTxn,
    v: &Volume,
    vm: Option<&VmInstance>,
) -> Result<Option<String>, ApiError> {
    let Some(ps) = &v.primary_storage_uuid else {
        return Ok(None);
    };
    if let Some(h) = &v.local_host_uuid {
        return Ok(Some(h.clone()));
    }
    if let Some(h) = vm.and_then(|vm| vm.host_uuid.clone().or(vm.last_host_uuid.clone())) {
        return Ok(Some(h));
    }
    host_reaching(txn, ps).map(Some)
}

fn disk_of(txn: &dyn StateTxn, v: &Volume, ps: &str) -> Result<Disk, ApiError> {
    Ok(Disk {
        volume_uuid: v.uuid.clone(),
        storage: super::flows::storage_of(txn, ps)?,
        path: v.install_path.clone(),
        size: v.size,
        device_id: v.device_id.unwrap_or(0),
    })
}

pub(super) fn live(vm: &VmInstance) -> bool {
    matches!(vm.state, VmState::Running | VmState::Paused) && vm.host_uuid.is_some()
}

/// First step: the call's command, remembering the volume as it was.
fn call(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let command: crate::Command = serde_json::from_str(var(vars, crate::flow::COMMAND_VAR)?)
        .map_err(|e| validate::invalid_arg(format!("undecodable call command: {e}")))?;
    let op = match command.innermost() {
        crate::Command::Vm(c) => match &*c.op {
            VmOp::Volume(op) => op.clone(),
            _ => return Err(validate::invalid_arg("a volume flow runs a volume command")),
        },
        _ => return Err(validate::invalid_arg("a volume flow runs a volume command")),
    };
    // The volume as it was, so the undo restores it: a root resize names the VM, whose root
    // volume it is (without it the undo would take the resized volume for a created one and
    // delete it).
    let known = match &op {
        VolumeOp::CreateData { .. } => None,
        VolumeOp::Resize { by_vm: true, .. } => {
            resource::load::<VmInstance>(txn, op.uuid())?.map(|(_, vm)| vm.root_volume_uuid)
        }
        op => Some(op.uuid().to_string()),
    };
    let before = match &known {
        Some(u) => resource::load::<Volume>(txn, u)?,
        None => None,
    };
    let resp = crate::flow::apply_call_command(txn, ctx, vars)?;
    let Response::Vm(VmResult::Volume(after)) = resp.innermost() else {
        return Err(validate::invalid_arg("a volume command answers a volume"));
    };
    vars.insert(vars::VOLUME.into(), after.uuid.clone());
    if let Some((owner, b)) = &before {
        encode(vars, vars::BEFORE, b)?;
        vars.insert(vars::BEFORE_OWNER.into(), owner.clone());
        if let Some(vm) = &b.vm_instance_uuid {
            vars.insert(vars::VM.into(), vm.clone());
        }
    }
    match &op {
        VolumeOp::Attach { vm_uuid, .. } => {
            vars.insert(vars::VM.into(), vm_uuid.clone());
        }
        VolumeOp::Resize { size, .. } => {
            vars.insert(vars::SIZE.into(), size.to_string());
            if let Some(vm) = &after.vm_instance_uuid {
                vars.insert(vars::VM.into(), vm.clone());
            }
        }
        VolumeOp::CreateData {
            host_uuid: Some(h), ..
        } => {
            vars.insert(vars::HOST.into(), h.clone());
        }
        _ => {}
    }
    Ok(Some(resp))
}

/// Undo of [`call`]: the record as it was (a created one gone).
fn uncall(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let Some(uuid) = vars.get(vars::VOLUME).cloned() else {
        return Ok(None);
    };
    if !vars.contains_key(vars::BEFORE) {
        if resource::load::<Volume>(txn, &uuid)?.is_some() {
            super::model::release_capacity(txn, ctx, &uuid)?;
            relations::delete(txn, ctx, VOLUME_KIND, &uuid)?;
        }
        return Ok(None);
    }
    let before: Volume = decode(vars, vars::BEFORE)?;
    if before.install_path.is_none() {
        // Instantiated by this call (an attach): the bytes it reserved go back.
        super::model::release_capacity(txn, ctx, &uuid)?;
    } else if vars.contains_key(vars::SIZE) {
        // A resize: the reservation shrinks back to the size before.
        super::model::reserve_capacity(txn, ctx, &before, before.size, true)?;
    }
    if let Some((owner, _)) = resource::load::<Volume>(txn, &uuid)? {
        // Exactly as it was, its lastOpDate included: a call refused after its first step
        // (a resize that does not fit) leaves no trace.
        resource::save(txn, &owner, &before)?;
    } else {
        resource::save(txn, var(vars, vars::BEFORE_OWNER)?, &before)?;
    }
    Ok(None)
}

/// Create: where the file is made (a volume created on a storage), recorded in vars.
fn create_plan(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let v = load_volume(txn, vars)?;
    let Some(ps) = v.primary_storage_uuid.clone() else {
        return Ok(None);
    };
    let local = is_local(txn, &ps)?;
    let host = match vars.get(vars::HOST) {
        Some(h) => h.clone(),
        None if local => {
            return Err(validate::invalid_arg(format!(
                "primary storage[uuid:{ps}] is LocalStorage: name the host to create the volume on (systemTag localStorage::hostUuid::<hostUuid>)"
            )))
        }
        None => host_reaching(txn, &ps)?,
    };
    let v = if local {
        generic::modify(txn, ctx, &v.uuid, |_, r: &mut Volume| {
            r.local_host_uuid = Some(host.clone());
            Ok(())
        })?
    } else {
        v
    };
    super::model::reserve_capacity(txn, ctx, &v, v.size, false)?;
    encode(vars, vars::TARGET, &host_target(txn, &host)?)?;
    encode(vars, vars::DISK, &disk_of(txn, &v, &ps)?)?;
    vars.insert(vars::CREATES_FILE.into(), "1".into());
    Ok(None)
}

/// Attach: where a NotInstantiated volume's file is made, and whether the disk goes in live.
fn attach_plan(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let v = load_volume(txn, vars)?;
    let vm = resource::require::<VmInstance>(txn, var(vars, vars::VM)?)?.1;
    let root = resource::require::<Volume>(txn, &vm.root_volume_uuid)?.1;
    let ps = v
        .primary_storage_uuid
        .clone()
        .or(root.primary_storage_uuid.clone())
        .ok_or_else(|| {
            validate::op_failure(format!(
                "VM[uuid:{}]'s root volume is on no primary storage yet; start the VM once before attaching volumes",
                vm.uuid
            ))
        })?;
    if v.install_path.is_none() {
        let local = is_local(txn, &ps)?;
        let host = if local {
            root.local_host_uuid.clone()
        } else {
            vm.host_uuid.clone().or(vm.last_host_uuid.clone())
        };
        let host = match host {
            Some(h) => h,
            None => host_reaching(txn, &ps)?,
        };
        let placed = generic::modify(txn, ctx, &v.uuid, |_, r: &mut Volume| {
            r.primary_storage_uuid = Some(ps.clone());
            r.local_host_uuid = local.then(|| host.clone());
            Ok(())
        })?;
        super::model::reserve_capacity(txn, ctx, &placed, placed.size, false)?;
        encode(vars, vars::TARGET, &host_target(txn, &host)?)?;
        vars.insert(vars::CREATES_FILE.into(), "1".into());
    }
    encode(vars, vars::DISK, &disk_of(txn, &v, &ps)?)?;
    if live(&vm) {
        if let Some(h) = &vm.host_uuid {
            encode(vars, vars::VM_TARGET, &host_target(txn, h)?)?;
        }
    }
    Ok(None)
}

/// The file the agent made, into the record (Ready) and the disk.
fn record_file(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::VOLUME)?.to_string();
    if !vars.contains_key(vars::CREATES_FILE) {
        return Ok(answer(load_volume(txn, vars)?));
    }
    let file: VolumeFile = decode(vars, vars::VOLUME_FILE)?;
    let v = generic::modify(txn, ctx, &uuid, |_, v: &mut Volume| {
        v.install_path = Some(file.path.clone());
        v.size = file.virtual_size;
        v.actual_size = file.actual_size;
        v.status = VolumeStatus::Ready;
        Ok(())
    })?;
    super::model::reserve_capacity(txn, ctx, &v, v.size, true)?;
    let mut disk: Disk = decode(vars, vars::DISK)?;
    disk.path = Some(file.path);
    encode(vars, vars::DISK, &disk)?;
    Ok(answer(v))
}

/// Detach and delete: whether the disk comes out of a running domain, from the record as it
/// was before the call.
fn unplug_plan(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let before: Volume = decode(vars, vars::BEFORE)?;
    let Some(vm) = &before.vm_instance_uuid else {
        return Ok(None);
    };
    let vm = resource::require::<VmInstance>(txn, vm)?.1;
    if let (true, Some(h), Some(ps)) = (live(&vm), &vm.host_uuid, &before.primary_storage_uuid) {
        if before.install_path.is_some() {
            encode(vars, vars::VM_TARGET, &host_target(txn, h)?)?;
            encode(vars, vars::DISK, &disk_of(txn, &before, ps)?)?;
        }
    }
    Ok(None)
}

/// The volume's file, to be deleted, into vars.
fn files_to_delete(txn: &dyn StateTxn, vars: &mut Vars, v: &Volume) -> Result<(), ApiError> {
    let (Some(ps), Some(_)) = (&v.primary_storage_uuid, &v.install_path) else {
        return Ok(());
    };
    let target = match file_host(txn, v, None)? {
        Some(h) => Some(host_target(txn, &h)?),
        None => None,
    };
    encode(
        vars,
        vars::DELETE,
        &VolumeFiles {
            target,
            volumes: vec![(super::flows::storage_of(txn, ps)?, v.uuid.clone())],
        },
    )
}

/// Delete, after the disk is out: `Direct` removes the record (the file goes next);
/// `Delay`/`Never` keep it Deleted, file and all, until expunged or recovered.
fn deleted(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let v = load_volume(txn, vars)?;
    if super::volumes::direct_deletion(txn)? {
        files_to_delete(txn, vars, &v)?;
        super::model::release_capacity(txn, ctx, &v.uuid)?;
        relations::delete(txn, ctx, VOLUME_KIND, &v.uuid)?;
    }
    Ok(Some(Response::Vm(VmResult::Deleted)))
}

fn expunge_plan(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let v = load_volume(txn, vars)?;
    files_to_delete(txn, vars, &v).map(|()| None)
}

fn expunged(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::VOLUME)?.to_string();
    super::model::release_capacity(txn, ctx, &uuid)?;
    relations::delete(txn, ctx, VOLUME_KIND, &uuid)?;
    Ok(Some(Response::Vm(VmResult::Deleted)))
}

/// Resize: the host holding the file, and the VM running on it when the resize is live.
fn resize_plan(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let v = load_volume(txn, vars)?;
    let vm = match &v.vm_instance_uuid {
        Some(u) => Some(resource::require::<VmInstance>(txn, u)?.1),
        None => None,
    };
    let ps = v.primary_storage_uuid.clone().ok_or_else(|| {
        validate::op_failure(format!("volume[uuid:{}] is on no primary storage", v.uuid))
    })?;
    let running = vm.as_ref().filter(|vm| live(vm));
    let host = match running.and_then(|vm| vm.host_uuid.clone()) {
        Some(h) => h,
        None => file_host(txn, &v, vm.as_ref())?.ok_or_else(|| {
            validate::op_failure(format!("volume[uuid:{}] has no host to reach it", v.uuid))
        })?,
    };
    // The new size's difference, before the agent grows the file; the call's undo shrinks the
    // reservation back if the resize fails.
    let size: u64 = var(vars, vars::SIZE)?
        .parse()
        .map_err(|e| validate::invalid_arg(format!("volume flow var {}: {e}", vars::SIZE)))?;
    super::model::reserve_capacity(txn, ctx, &v, size.max(v.size), false)?;
    encode(vars, vars::TARGET, &host_target(txn, &host)?)?;
    encode(vars, vars::DISK, &disk_of(txn, &v, &ps)?)?;
    if let Some(vm) = running {
        vars.insert(vars::VM.into(), vm.uuid.clone());
        vars.insert(vars::VM_TARGET.into(), var(vars, vars::TARGET)?.to_string());
    } else {
        vars.remove(vars::VM);
    }
    Ok(None)
}

fn resized(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::VOLUME)?.to_string();
    let file: VolumeFile = decode(vars, vars::VOLUME_FILE)?;
    let v = generic::modify(txn, ctx, &uuid, |_, v: &mut Volume| {
        v.size = file.virtual_size;
        v.actual_size = file.actual_size;
        Ok(())
    })?;
    super::model::reserve_capacity(txn, ctx, &v, v.size, true)?;
    Ok(answer(v))
}

fn skip() -> Result<EffectRequest, ApiError> {
    Ok(EffectRequest {
        receiver: RECEIVER.into(),
        action: super::flows::actions::SKIP.into(),
        payload: json!({"vmUuid": ""}).to_string(),
    })
}

/// The effect request of `action` with the vars that concern the agent.
fn request(action: &str, v: &Vars, target: &str) -> Result<EffectRequest, ApiError> {
    let mut payload = serde_json::Map::new();
    for (k, name) in [
        (target, "target"),
        (vars::DISK, "disk"),
        (vars::DELETE, "delete"),
    ] {
        if let Some(t) = v.get(k) {
            let value: serde_json::Value = serde_json::from_str(t)
                .map_err(|e| validate::invalid_arg(format!("volume flow var {k}: {e}")))?;
            payload.insert(name.into(), value);
        }
    }
    // The VM receiver names the VM in its messages; a volume of no VM names none.
    payload.insert(
        "vmUuid".into(),
        json!(v.get(vars::VM).map(String::as_str).unwrap_or_default()),
    );
    if let Some(s) = v.get(vars::SIZE) {
        let size: u64 = s
            .parse()
            .map_err(|_| validate::invalid_arg(format!("volume flow size {s}")))?;
        payload.insert("size".into(), json!(size));
    }
    Ok(EffectRequest {
        receiver: RECEIVER.into(),
        action: action.into(),
        payload: serde_json::Value::Object(payload).to_string(),
    })
}

fn create_file(v: &Vars) -> Result<EffectRequest, ApiError> {
    if !v.contains_key(vars::CREATES_FILE) {
        return skip();
    }
    request(actions::CREATE_DATA_VOLUME, v, vars::TARGET)
}

/// Undo of [`create_file`]: the file this flow made goes.
fn uncreate_file(v: &Vars) -> Result<EffectRequest, ApiError> {
    if !v.contains_key(vars::CREATES_FILE) {
        return skip();
    }
    let disk: Disk = decode(v, vars::DISK)?;
    let files = VolumeFiles {
        target: Some(decode(v, vars::TARGET)?),
        volumes: vec![(disk.storage, disk.volume_uuid)],
    };
    let mut v = v.clone();
    encode(&mut v, vars::DELETE, &files)?;
    request(super::flows::actions::DELETE_VOLUMES, &v, vars::TARGET)
}

fn plug(v: &Vars) -> Result<EffectRequest, ApiError> {
    if !v.contains_key(vars::VM_TARGET) {
        return skip();
    }
    request(actions::ATTACH_VOLUME, v, vars::VM_TARGET)
}

fn unplug(v: &Vars) -> Result<EffectRequest, ApiError> {
    if !v.contains_key(vars::VM_TARGET) {
        return skip();
    }
    request(actions::DETACH_VOLUME, v, vars::VM_TARGET)
}

fn delete_files(v: &Vars) -> Result<EffectRequest, ApiError> {
    if !v.contains_key(vars::DELETE) {
        return skip();
    }
    request(super::flows::actions::DELETE_VOLUMES, v, vars::TARGET)
}

const CALL: StepDef = StepDef {
    name: "volume-call",
    action: Action::Commit(call),
    undo: Undo::Commit(uncall),
};

const CREATE_FILE: StepDef = StepDef {
    name: "create-volume-file",
    action: Action::Effect(create_file),
    undo: Undo::Effect(uncreate_file),
};

const RECORD_FILE: StepDef = StepDef {
    name: "volume-ready",
    action: Action::Commit(record_file),
    undo: Undo::Nothing,
};

const DELETE_FILES: StepDef = StepDef {
    name: "delete-volume-file",
    action: Action::Effect(delete_files),
    undo: Undo::Nothing,
};

/// `volume.create`.
pub const CREATE_FLOW: FlowDef = FlowDef {
    name: CREATE,
    steps: &[
        CALL,
        StepDef {
            name: "choose-host",
            action: Action::Commit(create_plan),
            undo: Undo::Nothing,
        },
        CREATE_FILE,
        RECORD_FILE,
    ],
};

/// `volume.attach`.
pub const ATTACH_FLOW: FlowDef = FlowDef {
    name: ATTACH,
    steps: &[
        CALL,
        StepDef {
            name: "choose-storage",
            action: Action::Commit(attach_plan),
            undo: Undo::Nothing,
        },
        CREATE_FILE,
        RECORD_FILE,
        StepDef {
            name: "attach-disk",
            action: Action::Effect(plug),
            undo: Undo::Effect(unplug),
        },
        StepDef {
            name: "volume-attached",
            action: Action::Commit(|t, _, _, v| Ok(answer(load_volume(t, v)?))),
            undo: Undo::Nothing,
        },
    ],
};

/// `volume.detach`.
pub const DETACH_FLOW: FlowDef = FlowDef {
    name: DETACH,
    steps: &[
        CALL,
        StepDef {
            name: "find-disk",
            action: Action::Commit(unplug_plan),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "detach-disk",
            action: Action::Effect(unplug),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "volume-detached",
            action: Action::Commit(|t, _, _, v| Ok(answer(load_volume(t, v)?))),
            undo: Undo::Nothing,
        },
    ],
};

/// `volume.delete`.
pub const DELETE_FLOW: FlowDef = FlowDef {
    name: DELETE,
    steps: &[
        CALL,
        StepDef {
            name: "find-disk",
            action: Action::Commit(unplug_plan),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "detach-disk",
            action: Action::Effect(unplug),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "volume-deleted",
            action: Action::Commit(deleted),
            undo: Undo::Nothing,
        },
        DELETE_FILES,
    ],
};

/// `volume.expunge`.
pub const EXPUNGE_FLOW: FlowDef = FlowDef {
    name: EXPUNGE,
    steps: &[
        CALL,
        StepDef {
            name: "volume-file",
            action: Action::Commit(expunge_plan),
            undo: Undo::Nothing,
        },
        DELETE_FILES,
        StepDef {
            name: "volume-expunged",
            action: Action::Commit(expunged),
            undo: Undo::Nothing,
        },
    ],
};

/// `volume.resize`.
pub const RESIZE_FLOW: FlowDef = FlowDef {
    name: RESIZE,
    steps: &[
        CALL,
        StepDef {
            name: "find-file",
            action: Action::Commit(resize_plan),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "resize-file",
            action: Action::Effect(|v| request(actions::RESIZE_VOLUME, v, vars::TARGET)),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "volume-resized",
            action: Action::Commit(resized),
            undo: Undo::Nothing,
        },
    ],
};
