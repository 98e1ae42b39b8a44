//! The snapshot calls as flows the leader runs against the host's agent (receiver `vm`).
//! The first step is the call's command (`snapshots.rs`): it checks the states and marks the
//! records (a new snapshot `Creating`, a subtree `Deleting`); its undo puts them back. The
//! agent step then makes the files follow, and the last step records what the agent answers,
//! refusing (and so rolling back) an answer whose chain is not the one the records describe:
//! the volume's file backed by the `latest` snapshot's file.
//!
//! Files (agent `volumes.rs`): a snapshot freezes the volume's file as
//! `volumes/<volume>.snapshots/<snapshot>.qcow2` and a new empty overlay of it takes the
//! volume's path, so the path every domain and volume call names never changes. A revert
//! replaces the volume's file by a new empty overlay of the snapshot's file. A delete removes
//! the subtree's files; when the volume's file was backed by one of them it is first rebased
//! (its data kept) onto the nearest snapshot that stays, or the volume's base.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;

use super::flows::Storage;
use super::flows::Target;
use super::flows::VolumeFile;
use super::flows::RECEIVER;
use super::model::VmInstance;
use super::model::VmOp;
use super::model::VmResult;
use super::model::Volume;
use super::snapshots::refresh_trees;
use super::snapshots::snapshots_of;
use super::snapshots::subtree;
use super::snapshots::SnapshotOp;
use super::snapshots::SnapshotStatus;
use super::snapshots::VolumeSnapshot;
use super::snapshots::KIND;
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
    /// Take snapshot `snapshotUuid` of `volumeUuid`; sets `snapshot_files`.
    pub const CREATE_SNAPSHOT: &str = "create-volume-snapshot";
    /// Revert `volumeUuid` to `snapshotUuid`; sets `snapshot_files`.
    pub const REVERT_SNAPSHOT: &str = "revert-volume-snapshot";
    /// Remove the files of `snapshotUuids` of `volumeUuid`; sets `snapshot_files`.
    pub const DELETE_SNAPSHOTS: &str = "delete-volume-snapshots";
}

/// Vars.
pub mod vars {
    /// The snapshot the call names.
    pub const SNAPSHOT: &str = "snapshot_uuid";
    /// Its volume.
    pub const VOLUME: &str = "volume_uuid";
    /// The host holding the volume's file ([`super::Target`]).
    pub const TARGET: &str = "target";
    /// The volume's storage ([`super::Storage`]).
    pub const STORAGE: &str = "storage";
    /// The running VM using the volume, for a live snapshot.
    pub const VM: &str = "vm_uuid";
    /// A delete's snapshots (JSON list), the named one first.
    pub const DOOMED: &str = "doomed";
    /// What the agent answered ([`super::SnapshotFiles`]).
    pub const FILES: &str = "snapshot_files";
}

/// `CreateVolumeSnapshot`.
pub const CREATE: &str = "snapshot.create";
/// `RevertVolumeFromSnapshot`.
pub const REVERT: &str = "snapshot.revert";
/// `DeleteVolumeSnapshot`.
pub const DELETE: &str = "snapshot.delete";

/// The agent's answer: the snapshot's file, the volume's, and the volume's backing chain
/// (its own file first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotFiles {
    /// The snapshot's file (create, revert).
    pub snapshot: Option<VolumeFile>,
    /// The volume's file after the call.
    pub volume: Option<VolumeFile>,
    /// The volume's chain, top first.
    pub chain: Vec<String>,
}

fn var<'a>(v: &'a Vars, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .map(String::as_str)
        .ok_or_else(|| validate::invalid_arg(format!("snapshot flow without {k}")))
}

fn decode<T: serde::de::DeserializeOwned>(v: &Vars, k: &str) -> Result<T, ApiError> {
    serde_json::from_str(var(v, k)?)
        .map_err(|e| validate::invalid_arg(format!("snapshot flow var {k} undecodable: {e}")))
}

fn encode<T: Serialize>(vars: &mut Vars, k: &str, value: &T) -> Result<(), ApiError> {
    let text = serde_json::to_string(value)
        .map_err(|e| validate::invalid_arg(format!("snapshot flow var {k}: {e}")))?;
    vars.insert(k.to_string(), text);
    Ok(())
}

fn answer(s: VolumeSnapshot) -> Option<Response> {
    Some(Response::Vm(VmResult::Snapshot(Box::new(s))))
}

/// First step: the call's command; the snapshot, its volume (and a delete's subtree) into
/// vars.
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
            VmOp::Snapshot(op) => op.clone(),
            _ => {
                return Err(validate::invalid_arg(
                    "a snapshot flow runs a snapshot command",
                ))
            }
        },
        _ => {
            return Err(validate::invalid_arg(
                "a snapshot flow runs a snapshot command",
            ))
        }
    };
    let resp = crate::flow::apply_call_command(txn, ctx, vars)?;
    let Response::Vm(VmResult::Snapshot(s)) = resp.innermost() else {
        return Err(validate::invalid_arg(
            "a snapshot command answers a snapshot",
        ));
    };
    vars.insert(vars::SNAPSHOT.into(), s.uuid.clone());
    vars.insert(vars::VOLUME.into(), s.volume_uuid.clone());
    if let SnapshotOp::Delete { uuid } = &op {
        let all = snapshots_of(txn, &s.volume_uuid)?;
        encode(vars, vars::DOOMED, &subtree(&all, uuid))?;
    }
    Ok(Some(resp))
}

/// Undo of [`call`]: a created record gone, a delete's subtree Ready again.
fn uncall(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let (Some(snap), Some(volume)) = (
        vars.get(vars::SNAPSHOT).cloned(),
        vars.get(vars::VOLUME).cloned(),
    ) else {
        return Ok(None);
    };
    if vars.contains_key(vars::DOOMED) {
        let doomed: Vec<String> = decode(vars, vars::DOOMED)?;
        for d in doomed {
            if resource::load::<VolumeSnapshot>(txn, &d)?.is_some() {
                generic::modify(txn, ctx, &d, |_, r: &mut VolumeSnapshot| {
                    r.status = SnapshotStatus::Ready;
                    Ok(())
                })?;
            }
        }
    } else if let Some((_, s)) = resource::load::<VolumeSnapshot>(txn, &snap)? {
        if s.status == SnapshotStatus::Creating {
            relations::delete(txn, ctx, KIND, &snap)?;
        }
    }
    refresh_trees(txn, ctx, &volume)?;
    Ok(None)
}

/// Where the volume's file is (the VM's host while it runs), and whether the VM runs.
fn locate(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let v = resource::require::<Volume>(txn, var(vars, vars::VOLUME)?)?.1;
    let vm = match &v.vm_instance_uuid {
        Some(u) => Some(resource::require::<VmInstance>(txn, u)?.1),
        None => None,
    };
    let ps = v.primary_storage_uuid.clone().ok_or_else(|| {
        validate::op_failure(format!("volume[uuid:{}] is on no primary storage", v.uuid))
    })?;
    let running = vm.as_ref().filter(|vm| super::volume_flows::live(vm));
    let host = match running.and_then(|vm| vm.host_uuid.clone()) {
        Some(h) => h,
        None => super::volume_flows::file_host(txn, &v, vm.as_ref())?.ok_or_else(|| {
            validate::op_failure(format!("volume[uuid:{}] has no host to reach it", v.uuid))
        })?,
    };
    encode(
        vars,
        vars::TARGET,
        &super::volume_flows::host_target(txn, &host)?,
    )?;
    encode(vars, vars::STORAGE, &super::flows::storage_of(txn, &ps)?)?;
    if let Some(vm) = running {
        vars.insert(vars::VM.into(), vm.uuid.clone());
    }
    Ok(None)
}

/// The file the chain says the volume is backed by must be `want` (a snapshot's file), else
/// the records and the files would disagree.
fn check_backing(files: &SnapshotFiles, want: Option<&str>, volume: &str) -> Result<(), ApiError> {
    let has = files.chain.get(1).map(String::as_str);
    let ok = match want {
        Some(w) => has == Some(w),
        // No snapshot left under the volume: whatever backs it is not a snapshot's file.
        None => has.is_none_or(|h| !h.contains(&format!("/{volume}.snapshots/"))),
    };
    if ok {
        return Ok(());
    }
    Err(validate::op_failure(format!(
        "volume[uuid:{volume}]'s file is backed by {} on the host, not by {}; the snapshot records and the files disagree",
        has.unwrap_or("nothing"),
        want.unwrap_or("the volume's base")
    )))
}

/// The volume's record follows its file.
fn record_volume(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    volume: &str,
    files: &SnapshotFiles,
) -> Result<(), ApiError> {
    if let Some(f) = &files.volume {
        generic::modify(txn, ctx, volume, |_, v: &mut Volume| {
            v.install_path = Some(f.path.clone());
            v.size = f.virtual_size;
            v.actual_size = f.actual_size;
            Ok(())
        })?;
    }
    Ok(())
}

/// Make `latest` the volume's only latest snapshot (none: no latest).
fn set_latest(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    volume: &str,
    latest: Option<&str>,
) -> Result<(), ApiError> {
    for s in snapshots_of(txn, volume)? {
        let want = latest == Some(s.uuid.as_str());
        if s.latest != want {
            generic::modify(txn, ctx, &s.uuid, |_, r: &mut VolumeSnapshot| {
                r.latest = want;
                Ok(())
            })?;
        }
    }
    Ok(())
}

fn created(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let files: SnapshotFiles = decode(vars, vars::FILES)?;
    let uuid = var(vars, vars::SNAPSHOT)?.to_string();
    let volume = var(vars, vars::VOLUME)?.to_string();
    let file = files.snapshot.clone().ok_or_else(|| {
        validate::op_failure(format!(
            "the agent answered no file of snapshot[uuid:{uuid}]"
        ))
    })?;
    check_backing(&files, Some(&file.path), &volume)?;
    set_latest(txn, ctx, &volume, Some(&uuid))?;
    let s = generic::modify(txn, ctx, &uuid, |_, s: &mut VolumeSnapshot| {
        s.status = SnapshotStatus::Ready;
        s.primary_storage_install_path = Some(file.path.clone());
        s.size = file.actual_size;
        Ok(())
    })?;
    record_volume(txn, ctx, &volume, &files)?;
    refresh_trees(txn, ctx, &volume)?;
    Ok(answer(s))
}

fn reverted(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let files: SnapshotFiles = decode(vars, vars::FILES)?;
    let uuid = var(vars, vars::SNAPSHOT)?.to_string();
    let volume = var(vars, vars::VOLUME)?.to_string();
    let s = resource::require::<VolumeSnapshot>(txn, &uuid)?.1;
    check_backing(&files, s.primary_storage_install_path.as_deref(), &volume)?;
    set_latest(txn, ctx, &volume, Some(&uuid))?;
    record_volume(txn, ctx, &volume, &files)?;
    refresh_trees(txn, ctx, &volume)?;
    Ok(answer(resource::require::<VolumeSnapshot>(txn, &uuid)?.1))
}

fn deleted(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let files: SnapshotFiles = decode(vars, vars::FILES)?;
    let uuid = var(vars, vars::SNAPSHOT)?.to_string();
    let volume = var(vars, vars::VOLUME)?.to_string();
    let doomed: Vec<String> = decode(vars, vars::DOOMED)?;
    let all = snapshots_of(txn, &volume)?;
    let root = all.iter().find(|s| s.uuid == uuid);
    // The latest one gone, the volume's file now rests on the deleted subtree's parent.
    let latest = match all.iter().find(|s| s.latest) {
        Some(l) if doomed.contains(&l.uuid) => root.and_then(|r| r.parent_uuid.clone()),
        Some(l) => Some(l.uuid.clone()),
        None => None,
    };
    // No check of the chain here: the files are gone already, and refusing would restore
    // records of files that no longer exist. The agent rebases by the same rule.
    for d in &doomed {
        relations::delete(txn, ctx, KIND, d)?;
    }
    set_latest(txn, ctx, &volume, latest.as_deref())?;
    record_volume(txn, ctx, &volume, &files)?;
    refresh_trees(txn, ctx, &volume)?;
    Ok(Some(Response::Vm(VmResult::Deleted)))
}

/// The effect request of `action`: the host, the storage, the volume and the snapshots.
fn request(
    action: &str,
    v: &Vars,
    snapshots: Option<Vec<String>>,
) -> Result<EffectRequest, ApiError> {
    let target: Target = decode(v, vars::TARGET)?;
    let storage: Storage = decode(v, vars::STORAGE)?;
    let snapshots = match snapshots {
        Some(s) => s,
        None => vec![var(v, vars::SNAPSHOT)?.to_string()],
    };
    let payload = json!({
        "target": target,
        "storage": storage,
        "volumeUuid": var(v, vars::VOLUME)?,
        "snapshotUuids": snapshots,
        // The VM receiver names the VM in its messages; a volume of no VM names none.
        "vmUuid": v.get(vars::VM).map(String::as_str).unwrap_or_default(),
    });
    Ok(EffectRequest {
        receiver: RECEIVER.into(),
        action: action.into(),
        payload: payload.to_string(),
    })
}

/// Undo of the snapshot's creation: its file goes again (the volume rebased off it, so
/// nothing written since is lost).
fn uncreate(v: &Vars) -> Result<EffectRequest, ApiError> {
    request(actions::DELETE_SNAPSHOTS, v, None)
}

const CALL: StepDef = StepDef {
    name: "snapshot-call",
    action: Action::Commit(call),
    undo: Undo::Commit(uncall),
};

const LOCATE: StepDef = StepDef {
    name: "find-volume-file",
    action: Action::Commit(locate),
    undo: Undo::Nothing,
};

/// `snapshot.create`.
pub const CREATE_FLOW: FlowDef = FlowDef {
    name: CREATE,
    steps: &[
        CALL,
        LOCATE,
        StepDef {
            name: "take-snapshot",
            action: Action::Effect(|v| request(actions::CREATE_SNAPSHOT, v, None)),
            undo: Undo::Effect(uncreate),
        },
        StepDef {
            name: "snapshot-ready",
            action: Action::Commit(created),
            undo: Undo::Nothing,
        },
    ],
};

/// `snapshot.revert`.
pub const REVERT_FLOW: FlowDef = FlowDef {
    name: REVERT,
    steps: &[
        CALL,
        LOCATE,
        StepDef {
            name: "revert-volume",
            action: Action::Effect(|v| request(actions::REVERT_SNAPSHOT, v, None)),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "volume-reverted",
            action: Action::Commit(reverted),
            undo: Undo::Nothing,
        },
    ],
};

/// `snapshot.delete`.
pub const DELETE_FLOW: FlowDef = FlowDef {
    name: DELETE,
    steps: &[
        CALL,
        LOCATE,
        StepDef {
            name: "delete-snapshot-files",
            action: Action::Effect(|v| {
                let doomed: Vec<String> = decode(v, vars::DOOMED)?;
                request(actions::DELETE_SNAPSHOTS, v, Some(doomed))
            }),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "snapshots-deleted",
            action: Action::Commit(deleted),
            undo: Undo::Nothing,
        },
    ],
};
