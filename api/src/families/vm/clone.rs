//! `CloneVmInstance` (spec 02 §4.3): N new VMs with the source's figures, offering, image and
//! L3 networks, each with a root volume that is a full copy of the source's root volume file.
//!
//! The source must be Stopped: its disk is then quiescent (no domain writes it), so the copy
//! is consistent without a guest freeze or a snapshot, and the agent's `CloneVolume` refuses
//! a source a domain uses anyway. The call's job serialises on the source (`vmInstanceUuid`),
//! so a start of the source waits until the copies are made.
//!
//! Each clone is placed (`host.allocate`; LocalStorage pins it to the host holding the
//! source's file, since the copy is host-local) and given addresses (`l3.allocate-ip`) in its
//! own staged write, so a clone that cannot be placed leaves nothing and does not stop the
//! others. The agent copies each clone's file and, for `InstantStart`, starts its domain; a
//! clone whose copy or start fails is rolled back alone (domain and file gone on the host,
//! then reservation, addresses and records gone). The reply lists every clone: its inventory
//! or its error (`CloneVmInstanceResults`).

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use super::flows::decode;
use super::flows::encode;
use super::flows::release_all;
use super::flows::release_host;
use super::flows::request;
use super::flows::spec_from;
use super::flows::storage_of;
use super::flows::target_of;
use super::flows::var;
use super::flows::Spec;
use super::flows::Storage;
use super::flows::Target;
use super::flows::VolumeFile;
use super::model::forget;
use super::model::VmInstance;
use super::model::VmNic;
use super::model::VmOp;
use super::model::VmResult;
use super::model::VmState;
use super::model::Volume;
use super::model::VolumeStatus;
use crate::flow::Action;
use crate::flow::EffectRequest;
use crate::flow::FlowDef;
use crate::flow::StepDef;
use crate::flow::Undo;
use crate::flow::Vars;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::registry::serve;
use crate::resource;
use crate::resource::generic;
use crate::staged::Staged;
use crate::validate;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Response;
use crate::StateTxn;

/// The states a VM is cloned from (a quiescent disk; see the module comment).
pub const CLONE_STATES: &[VmState] = &[VmState::Stopped];

/// One clone a call asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneRequest {
    /// New VM uuid (derived from the call's).
    pub uuid: String,
    /// Its name (`names[i]`).
    pub name: String,
}

/// `CloneVmInstance` (inside [`VmOp::Clone`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneOp {
    /// The source VM.
    pub vm_uuid: String,
    /// The clones, in `names` order.
    pub clones: Vec<CloneRequest>,
    /// Start the clones (`InstantStart`) or leave them Stopped.
    pub start: bool,
    /// A cluster or host asked for.
    pub cluster_uuid: Option<String>,
    /// A host asked for.
    pub host_uuid: Option<String>,
}

/// What became of one clone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneOutcome {
    /// The clone's uuid.
    pub uuid: String,
    /// The clone, when it was made.
    pub inventory: Option<Box<VmInstance>>,
    /// Why it was not.
    pub error: Option<Refusal>,
}

/// The root volume uuid of a clone.
fn root_of(clone_uuid: &str) -> String {
    crate::params::derive_uuid(clone_uuid, 0)
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    caller: &Caller,
    op: CloneOp,
) -> Result<VmResult, ApiError> {
    let vm = super::model::visible_vm(txn, caller, &op.vm_uuid)?;
    if !CLONE_STATES.contains(&vm.state) {
        return Err(super::model::state_error(
            "APICloneVmInstanceMsg",
            &vm,
            CLONE_STATES,
        ));
    }
    if op.clones.is_empty() {
        return Err(validate::invalid_arg("names must name at least one clone"));
    }
    for (kind, u) in [("Cluster", &op.cluster_uuid), ("Host", &op.host_uuid)] {
        if let Some(u) = u {
            resource::require_ref(txn, kind, u)?;
        }
    }
    let root = resource::require::<Volume>(txn, &vm.root_volume_uuid)?.1;
    if root.install_path.is_none() || root.primary_storage_uuid.is_none() {
        return Err(validate::op_failure(format!(
            "the root volume[uuid:{}] of vm[uuid:{}] has no file yet; there is nothing to clone",
            root.uuid, vm.uuid
        )));
    }
    for c in &op.clones {
        generic::check_fields(&c.uuid, &c.name, None)?;
        resource::refuse_duplicate::<VmInstance>(txn, &c.uuid)?;
        resource::refuse_duplicate::<Volume>(txn, &root_of(&c.uuid))?;
    }
    Ok(VmResult::Inventory(Box::new(vm)))
}

pub(super) fn clone(p: &PlanInput) -> Result<Plan, Refusal> {
    let unsupported = |f: &str, why: &str| {
        Refusal::new(
            Code::InvalidArgument,
            format!("field[{f}] of CloneVmInstance is not supported: {why}"),
        )
    };
    for f in [
        "vmNicParams",
        "primaryStorageUuidForDataVolume",
        "dataVolumeSystemTags",
        "rootVolumeSystemTags",
    ] {
        if p.body.get(f).is_some_and(|v| !v.is_null()) {
            return Err(unsupported(
                f,
                "a clone copies its source's NICs (new addresses) and root volume only",
            ));
        }
    }
    if p.string("primaryStorageUuidForRootVolume").is_some() {
        return Err(unsupported(
            "primaryStorageUuidForRootVolume",
            "a clone's root volume goes to its source's primary storage",
        ));
    }
    let full = match p.body.get("full") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    if full {
        return Err(unsupported(
            "full",
            "whole-machine clones (data volumes) are not built",
        ));
    }
    let names = crate::params::strings(p.body, "names", p.call)?.unwrap_or_default();
    if names.is_empty() {
        return Err(Refusal::new(
            Code::InvalidArgument,
            "names must name at least one clone",
        ));
    }
    let start = match p.string("strategy").as_deref() {
        None | Some("InstantStart") => true,
        Some("JustCreate" | "CreateStopped") => false,
        Some(other) => {
            return Err(Refusal::new(
                Code::InvalidArgument,
                format!("strategy[{other}] is not one of InstantStart, JustCreate, CreateStopped"),
            ))
        }
    };
    let base = p.new_uuid().to_ascii_lowercase();
    let clones = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| CloneRequest {
            uuid: crate::params::derive_uuid(&base, u32::try_from(i).unwrap_or(u32::MAX)),
            name,
        })
        .collect();
    let lower = |f: &str| p.string(f).map(|s| s.to_ascii_lowercase());
    Ok(p.propose(VmOp::Clone(CloneOp {
        vm_uuid: p.required("vmInstanceUuid")?.to_ascii_lowercase(),
        clones,
        start,
        cluster_uuid: lower("clusterUuid"),
        host_uuid: lower("hostUuid"),
    })))
}

/// `CloneVmInstance`.
pub const CLONE: &str = "vm.clone";

/// Receiver actions (of the `vm` receiver).
pub mod actions {
    /// Copy each placed clone's root volume from the source's and start it when asked
    /// (`clones`, `start`; sets `vars::CLONED`).
    pub const CLONE_VOLUMES: &str = "clone-volumes";
    /// Undo of [`CLONE_VOLUMES`]: every placed clone's domain and file gone.
    pub const UNCLONE: &str = "unclone";
}

/// Vars.
pub mod vars {
    /// The source VM.
    pub const VM: &str = "vm_uuid";
    /// The call's command ([`super::CloneOp`]).
    pub const OP: &str = "clone_op";
    /// The clones as placed ([`super::ClonePlan`]s).
    pub const CLONES: &str = "clones";
    /// Set by `clone-volumes`: what the host did for each ([`super::Cloned`]s).
    pub const CLONED: &str = "cloned";
}

/// One clone as placed: where it is copied and started, or why it could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClonePlan {
    /// The clone's uuid.
    pub uuid: String,
    /// The host the copy is made on (and the clone started on).
    pub target: Option<Target>,
    /// The domain's spec (its root disk's file is the copy).
    pub spec: Option<Spec>,
    /// The source's root volume: (storage, volume uuid).
    pub source: Option<(Storage, String)>,
    /// Why it was not placed.
    pub error: Option<Refusal>,
}

/// What the host did for one clone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cloned {
    /// The clone's uuid.
    pub uuid: String,
    /// The copy, when made (and started, when asked).
    pub file: Option<VolumeFile>,
    /// Why not (the host has neither domain nor file of it then).
    pub error: Option<String>,
}

fn op_of(vars: &Vars) -> Result<CloneOp, ApiError> {
    decode(vars, vars::OP)
}

/// First step: the call's command (it only checks); the command into vars.
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
            VmOp::Clone(op) => op.clone(),
            _ => return Err(validate::invalid_arg("a clone flow runs a clone command")),
        },
        _ => return Err(validate::invalid_arg("a clone flow runs a clone command")),
    };
    let resp = crate::flow::apply_call_command(txn, ctx, vars)?;
    vars.insert(vars::VM.into(), op.vm_uuid.clone());
    encode(vars, vars::OP, &op)?;
    Ok(Some(resp))
}

/// The clone's records, copied from the source: figures, offering, image, L3s (new NIC
/// uuids and MACs, no addresses yet), a root volume `Creating` on the source's storage.
fn clone_records(
    source: &VmInstance,
    source_root: &Volume,
    c: &CloneRequest,
    now: u64,
) -> (VmInstance, Volume) {
    let vm_nics = source
        .vm_nics
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let uuid = crate::params::derive_uuid(&c.uuid, 1 + u32::try_from(i).unwrap_or(0));
            VmNic {
                mac: super::wire::mac_of(&uuid),
                uuid,
                vm_instance_uuid: c.uuid.clone(),
                l3_network_uuid: n.l3_network_uuid.clone(),
                l2_network_uuid: None,
                ip: None,
                netmask: None,
                gateway: None,
                used_ip_uuid: None,
                static_ip: None,
                device_id: n.device_id,
                create_date: now,
                last_op_date: now,
            }
        })
        .collect();
    let root_uuid = root_of(&c.uuid);
    let vm = VmInstance {
        uuid: c.uuid.clone(),
        name: c.name.clone(),
        description: source.description.clone(),
        zone_uuid: source.zone_uuid.clone(),
        cluster_uuid: None,
        host_uuid: None,
        last_host_uuid: None,
        instance_offering_uuid: source.instance_offering_uuid.clone(),
        image_uuid: source.image_uuid.clone(),
        root_volume_uuid: root_uuid.clone(),
        default_l3_network_uuid: source.default_l3_network_uuid.clone(),
        platform: source.platform.clone(),
        cpu_num: source.cpu_num,
        memory_size: source.memory_size,
        allocator_strategy: source.allocator_strategy.clone(),
        state: VmState::Starting,
        vm_nics,
        deleted_at: None,
        create_date: now,
        last_op_date: now,
    };
    let root = Volume {
        uuid: root_uuid,
        name: format!("ROOT-for-{}", c.name),
        description: Some(format!("Root volume for VM[uuid:{}]", c.uuid)),
        primary_storage_uuid: source_root.primary_storage_uuid.clone(),
        local_host_uuid: None,
        vm_instance_uuid: Some(c.uuid.clone()),
        root_image_uuid: source_root.root_image_uuid.clone(),
        volume_type: "Root".into(),
        install_path: None,
        size: source_root.size,
        actual_size: 0,
        format: "qcow2".into(),
        device_id: Some(0),
        state: generic::EnableState::Enabled,
        status: VolumeStatus::Creating,
        create_date: now,
        last_op_date: now,
    };
    (vm, root)
}

/// Record one clone, place it and give it addresses (all in `txn`, which the caller drops
/// when this fails).
fn place_clone(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: &CloneOp,
    source: &VmInstance,
    source_root: &Volume,
    c: &CloneRequest,
) -> Result<ClonePlan, ApiError> {
    let (vm, root) = clone_records(source, source_root, c, ctx.proposed_at_ms);
    resource::refuse_duplicate::<VmInstance>(txn, &vm.uuid)?;
    resource::refuse_duplicate::<Volume>(txn, &root.uuid)?;
    resource::save(txn, &caller.account_uuid, &vm)?;
    resource::save(txn, &caller.account_uuid, &root)?;
    let placed = serve(
        txn,
        ctx,
        caller,
        "host.allocate",
        &json!({
            "vmUuid": vm.uuid,
            "cpuNum": vm.cpu_num,
            "memorySize": vm.memory_size,
            // The copy is a new file of the source's size on the source's storage.
            "rootVolumeSize": root.size,
            "primaryStorageUuid": root.primary_storage_uuid,
            "l3NetworkUuids": vm.vm_nics.iter().map(|n| n.l3_network_uuid.clone()).collect::<Vec<_>>(),
            "zoneUuid": vm.zone_uuid,
            "clusterUuid": op.cluster_uuid,
            "hostUuid": op.host_uuid,
            "rootVolumeHostUuid": source_root.local_host_uuid,
            "strategy": vm.allocator_strategy,
        }),
    )?;
    let s = |k: &str| placed[k].as_str().map(str::to_string);
    let host_uuid = s("hostUuid").ok_or_else(|| validate::invalid_arg("host.allocate: no host"))?;
    let mut nics = vm.vm_nics.clone();
    super::flows::allocate_ips(txn, ctx, caller, &mut nics)?;
    let vm = generic::modify(txn, ctx, &vm.uuid, |_, v: &mut VmInstance| {
        v.host_uuid = Some(host_uuid.clone());
        v.cluster_uuid = s("clusterUuid");
        v.zone_uuid = s("zoneUuid");
        v.vm_nics = nics;
        Ok(())
    })?;
    let ps = root
        .primary_storage_uuid
        .clone()
        .ok_or_else(|| validate::invalid_arg("a clone's root volume has no storage"))?;
    let storage = storage_of(txn, &ps)?;
    let local = storage.ps_type == "LocalStorage";
    generic::modify(txn, ctx, &root.uuid, |_, v: &mut Volume| {
        v.local_host_uuid = local.then(|| host_uuid.clone());
        Ok(())
    })?;
    let source_ps = source_root
        .primary_storage_uuid
        .clone()
        .ok_or_else(|| validate::invalid_arg("the source's root volume has no storage"))?;
    Ok(ClonePlan {
        uuid: vm.uuid.clone(),
        target: target_of(txn, &vm)?,
        spec: Some(spec_from(txn, &vm, false)?),
        source: Some((storage_of(txn, &source_ps)?, source_root.uuid.clone())),
        error: None,
    })
}

/// After the call: every clone recorded, placed and addressed, or refused alone.
fn allocate_clones(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let op = op_of(vars)?;
    let source = resource::require::<VmInstance>(txn, &op.vm_uuid)?.1;
    let source_root = resource::require::<Volume>(txn, &source.root_volume_uuid)?.1;
    let mut plans = Vec::new();
    for c in &op.clones {
        let mut staged = Staged::new(txn);
        match place_clone(&mut staged, ctx, caller, &op, &source, &source_root, c) {
            Ok(plan) => {
                staged.commit()?;
                plans.push(plan);
            }
            Err(e) => plans.push(ClonePlan {
                uuid: c.uuid.clone(),
                target: None,
                spec: None,
                source: None,
                error: Some(crate::plan::refusal_of(&e)),
            }),
        }
    }
    encode(vars, vars::CLONES, &plans)?;
    Ok(None)
}

/// Undo a placed clone: reservation and addresses back, its records gone.
fn drop_clone(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    uuid: &str,
) -> Result<(), ApiError> {
    if let Some((_, vm)) = resource::load::<VmInstance>(txn, uuid)? {
        release_all(txn, ctx, caller, &vm)?;
        forget(txn, ctx, uuid)?;
    }
    Ok(())
}

/// Undo of [`allocate_clones`].
fn unallocate_clones(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let Some(plans) = vars.get(vars::CLONES) else {
        return Ok(None);
    };
    let plans: Vec<ClonePlan> = serde_json::from_str(plans)
        .map_err(|e| validate::invalid_arg(format!("clone flow var: {e}")))?;
    for p in plans.iter().filter(|p| p.error.is_none()) {
        drop_clone(txn, ctx, caller, &p.uuid)?;
    }
    Ok(None)
}

fn clone_request(action: &str, v: &Vars) -> Result<EffectRequest, ApiError> {
    let op = op_of(v)?;
    let plans: Vec<ClonePlan> = decode(v, vars::CLONES)?;
    let mut r = request(action, v)?;
    let mut payload: Value = serde_json::from_str(&r.payload)
        .map_err(|e| validate::invalid_arg(format!("clone step payload: {e}")))?;
    payload["clones"] = json!(plans
        .into_iter()
        .filter(|p| p.error.is_none())
        .collect::<Vec<_>>());
    payload["start"] = json!(op.start);
    r.payload = payload.to_string();
    Ok(r)
}

/// Last step: each copied clone Ready (Running, or Stopped holding no host); each failed one
/// rolled back. The answer lists them all.
fn cloned(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let op = op_of(vars)?;
    let plans: Vec<ClonePlan> = decode(vars, vars::CLONES)?;
    let done: Vec<Cloned> = decode(vars, vars::CLONED)?;
    let mut outcomes = Vec::new();
    for p in plans {
        if let Some(e) = p.error {
            outcomes.push(CloneOutcome {
                uuid: p.uuid,
                inventory: None,
                error: Some(e),
            });
            continue;
        }
        let file = done.iter().find(|d| d.uuid == p.uuid);
        let Some(f) = file.and_then(|d| d.file.clone()) else {
            drop_clone(txn, ctx, caller, &p.uuid)?;
            let why = file
                .and_then(|d| d.error.clone())
                .unwrap_or_else(|| "the host did not copy the root volume".into());
            outcomes.push(CloneOutcome {
                uuid: p.uuid,
                inventory: None,
                error: Some(Refusal::new(Code::OperationFailure, why)),
            });
            continue;
        };
        let vm = resource::require::<VmInstance>(txn, &p.uuid)?.1;
        generic::modify(txn, ctx, &vm.root_volume_uuid, |_, v: &mut Volume| {
            v.install_path = Some(f.path.clone());
            v.size = f.virtual_size;
            v.actual_size = f.actual_size;
            v.status = VolumeStatus::Ready;
            Ok(())
        })?;
        if !op.start {
            release_host(txn, ctx, caller, &vm.uuid)?;
        }
        let vm = generic::modify(txn, ctx, &vm.uuid, |_, v: &mut VmInstance| {
            if op.start {
                v.last_host_uuid = v.host_uuid.clone();
                v.state = VmState::Running;
            } else {
                v.last_host_uuid = v.host_uuid.take();
                v.state = VmState::Stopped;
            }
            Ok(())
        })?;
        outcomes.push(CloneOutcome {
            uuid: p.uuid,
            inventory: Some(Box::new(vm)),
            error: None,
        });
    }
    Ok(Some(Response::Vm(VmResult::Clones(outcomes))))
}

/// The clone flow.
pub const CLONE_FLOW: FlowDef = FlowDef {
    name: CLONE,
    steps: &[
        StepDef {
            name: "clone-call",
            action: Action::Commit(call),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "allocate-clones",
            action: Action::Commit(allocate_clones),
            undo: Undo::Commit(unallocate_clones),
        },
        StepDef {
            name: "clone-volumes",
            action: Action::Effect(|v| clone_request(actions::CLONE_VOLUMES, v)),
            undo: Undo::Effect(|v| clone_request(actions::UNCLONE, v)),
        },
        StepDef {
            name: "clones-recorded",
            action: Action::Commit(cloned),
            undo: Undo::Nothing,
        },
    ],
};

/// The reply's `result` (ZStack's `CloneVmInstanceResults`): per clone its inventory or its
/// error, and how many were made.
pub(super) fn results(txn: &dyn StateTxn, outcomes: &[CloneOutcome]) -> Value {
    let inventories: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let mut m = serde_json::Map::new();
            if let Some(vm) = &o.inventory {
                let inv = resource::full_inventory(txn, vm.as_ref())
                    .unwrap_or_else(|_| resource::inventory(vm.as_ref()));
                m.insert("inventory".into(), inv);
            }
            if let Some(e) = &o.error {
                m.insert("error".into(), json!(e.to_error_code()));
            }
            Value::Object(m)
        })
        .collect();
    json!({
        "numberOfClonedVm": outcomes.iter().filter(|o| o.inventory.is_some()).count(),
        "inventories": inventories,
    })
}
