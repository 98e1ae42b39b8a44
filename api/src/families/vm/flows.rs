//! The VM operations as flows the leader runs against the host's agent (receiver `vm`).
//! Each call's command (first step) moved the VM into its transitional state; the steps
//! below drive the host and commit the stable state, and a failure rolls back to the state
//! before the call with nothing held: host capacity (`host.allocate`/`host.release`), IPs
//! (`l3.allocate-ip`/`l3.release-ip`), volume files and domains are given back by the undo of
//! the step that took them.
//!
//! Effect steps see only the flow's vars, so the commit before them writes everything the
//! agent needs (the [`Target`] host, the [`Spec`] the domain is built from) into vars.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;

use super::model::forget;
use super::model::volumes_of;
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
use crate::registry::serve;
use crate::resource;
use crate::resource::generic;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Response;
use crate::StateTxn;

/// The receiver of the VM flows' side effects (the leader's host agents).
pub const RECEIVER: &str = "vm";

/// Receiver actions.
pub mod actions {
    /// Cache the image on the host's primary storage and create the root volume's file.
    pub const CREATE_ROOT_VOLUME: &str = "create-root-volume";
    /// Delete volume files ([`super::VolumeFiles`]).
    pub const DELETE_VOLUMES: &str = "delete-volumes";
    /// Define and start the domain.
    pub const START: &str = "start";
    /// Stop (grace/cold) and undefine the domain.
    pub const STOP: &str = "stop";
    /// Reboot the domain.
    pub const REBOOT: &str = "reboot";
    /// Pause the domain.
    pub const PAUSE: &str = "pause";
    /// Resume the domain.
    pub const RESUME: &str = "resume";
    /// Destroy and undefine the domain.
    pub const DESTROY: &str = "destroy";
    /// Nothing to do in this flow's variant (a create that does not start).
    pub const SKIP: &str = "skip";
    /// Read the VM's domain on the host now (sets `vars::DOMAIN_STATE`).
    pub const INSPECT: &str = "inspect";
    /// Live-migrate the domain from `target` to `destination` (sets `vars::DOMAIN_STATE` to
    /// its state on the destination).
    pub const MIGRATE: &str = "migrate";
    /// Undo of [`MIGRATE`]: the destination's domain goes, unless the source lost the VM
    /// (then the destination's copy is the only one and reconciliation decides).
    pub const MIGRATE_ROLLBACK: &str = "migrate-rollback";
    /// Host maintenance: migrate or stop every VM of an evacuation plan (`vars::EVACUATION`,
    /// sets `vars::EVACUATED`).
    pub const EVACUATE: &str = "evacuate";
}

/// Vars.
pub mod vars {
    /// The VM.
    pub const VM: &str = "vm_uuid";
    /// Its state before the call (what a rollback returns it to).
    pub const PREV_STATE: &str = "prev_state";
    /// The host ([`super::Target`]).
    pub const TARGET: &str = "target";
    /// The domain's spec ([`super::Spec`]).
    pub const SPEC: &str = "spec";
    /// The create's strategy (`InstantStart`, `CreateStopped`).
    pub const STRATEGY: &str = "strategy";
    /// Set by `create-root-volume`: the root volume's file ([`super::VolumeFile`]).
    pub const ROOT_FILE: &str = "root_file";
    /// Files to delete ([`super::VolumeFiles`]).
    pub const DELETE: &str = "delete";
    /// The host a start asks for.
    pub const REQUESTED_HOST: &str = "requested_host";
    /// The stop type (`grace`, `cold`).
    pub const STOP_TYPE: &str = "stop_type";
    /// Reconcile: the action ([`super::super::reconcile::Action`]).
    pub const ACTION: &str = "action";
    /// Reconcile: the VM's state and host when the action was planned
    /// (`reconcile::observed`).
    pub const OBSERVED: &str = "observed";
    /// Reconcile: set when the VM changed since (the job then does nothing).
    pub const SKIP: &str = "skip";
    /// Set by `inspect`: the domain's state on the host, empty when it has none.
    pub const DOMAIN_STATE: &str = "domain_state";
    /// Migrate: the destination host ([`super::Target`]).
    pub const DESTINATION: &str = "destination";
    /// Host maintenance: the VMs to move ([`super::Evacuation`]).
    pub const EVACUATION: &str = "evacuation";
    /// Host maintenance: what became of each ([`super::Evacuated`]).
    pub const EVACUATED: &str = "evacuated";
}

/// The host an effect acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Host uuid (the agent's binding).
    pub host_uuid: String,
    /// Where its agent listens.
    pub management_ip: String,
}

/// The primary storage a volume lives on, as the agent prepares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Primary storage uuid.
    pub uuid: String,
    /// `LocalStorage`, `SharedMountPoint`, `NFS`.
    pub ps_type: String,
    /// Directory or `server:/export`.
    pub url: String,
    /// NFS mount point (the directory otherwise).
    pub mount_path: String,
}

/// A NIC as the domain gets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nic {
    /// MAC.
    pub mac: String,
    /// Address.
    pub ip: String,
    /// L3.
    pub l3_network_uuid: String,
    /// The host bridge of the L3's L2 (`br_<interface>[_<vlan>]`).
    pub bridge: String,
    /// Device id.
    pub device_id: u32,
}

/// What the root volume is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageSource {
    /// Image uuid.
    pub image_uuid: String,
    /// A backup storage holding it Ready.
    pub backup_storage_uuid: String,
    /// Its md5, when known.
    pub md5: Option<String>,
}

/// A disk of the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    /// Volume uuid.
    pub volume_uuid: String,
    /// Its storage.
    pub storage: Storage,
    /// Its file, once created.
    pub path: Option<String>,
    /// Virtual size.
    pub size: u64,
    /// 0 = root.
    pub device_id: u32,
}

/// The domain's spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// VM uuid (the domain's name).
    pub vm_uuid: String,
    /// VM name.
    pub name: String,
    /// vCPUs.
    pub cpu_num: u64,
    /// Memory, bytes.
    pub memory_size: u64,
    /// NICs by device id.
    pub nics: Vec<Nic>,
    /// Disks, root first.
    pub disks: Vec<Disk>,
    /// The root volume's image, when it is still to be created.
    pub image: Option<ImageSource>,
}

/// A volume file the agent made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFile {
    /// Path on the host.
    pub path: String,
    /// Virtual size.
    pub virtual_size: u64,
    /// Bytes used.
    pub actual_size: u64,
}

/// Volume files to delete, each on the host that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFiles {
    /// Where.
    pub target: Option<Target>,
    /// What: (storage, volume uuid).
    pub volumes: Vec<(Storage, String)>,
}

pub(super) fn var<'a>(v: &'a Vars, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .map(String::as_str)
        .ok_or_else(|| validate::invalid_arg(format!("VM flow without {k}")))
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(v: &Vars, k: &str) -> Result<T, ApiError> {
    serde_json::from_str(var(v, k)?)
        .map_err(|e| validate::invalid_arg(format!("VM flow var {k} undecodable: {e}")))
}

pub(super) fn encode<T: Serialize>(vars: &mut Vars, k: &str, value: &T) -> Result<(), ApiError> {
    let text = serde_json::to_string(value)
        .map_err(|e| validate::invalid_arg(format!("VM flow var {k}: {e}")))?;
    vars.insert(k.to_string(), text);
    Ok(())
}

fn state_of(name: &str) -> Result<VmState, ApiError> {
    serde_json::from_value(json!(name))
        .map_err(|e| validate::invalid_arg(format!("VM flow state {name}: {e}")))
}

fn load_vm(txn: &dyn StateTxn, vars: &Vars) -> Result<VmInstance, ApiError> {
    resource::require::<VmInstance>(txn, var(vars, vars::VM)?).map(|(_, v)| v)
}

fn answer(vm: VmInstance) -> Option<Response> {
    Some(Response::Vm(VmResult::Inventory(Box::new(vm))))
}

fn set_state(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    state: VmState,
) -> Result<VmInstance, ApiError> {
    generic::modify(txn, ctx, uuid, |_, v: &mut VmInstance| {
        v.state = state;
        Ok(())
    })
}

/// First step of every VM call's flow: the call's command (the transition), remembering the
/// VM, its state before, and where it runs.
fn call(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let command: crate::Command = serde_json::from_str(var(vars, crate::flow::COMMAND_VAR)?)
        .map_err(|e| validate::invalid_arg(format!("undecodable call command: {e}")))?;
    let (uuid, extra) = match command.innermost() {
        crate::Command::Vm(c) => match &*c.op {
            VmOp::Create { uuid, strategy, .. } => (
                uuid.clone(),
                Some((vars::STRATEGY, format!("{strategy:?}"))),
            ),
            VmOp::Stop {
                uuid, stop_type, ..
            } => (
                uuid.clone(),
                Some((
                    vars::STOP_TYPE,
                    format!("{stop_type:?}").to_ascii_lowercase(),
                )),
            ),
            VmOp::Start {
                uuid,
                host_uuid: Some(h),
            }
            | VmOp::Migrate {
                uuid,
                host_uuid: Some(h),
            } => (uuid.clone(), Some((vars::REQUESTED_HOST, h.clone()))),
            op => (op.uuid().to_string(), None),
        },
        _ => return Err(validate::invalid_arg("a VM flow runs a VM command")),
    };
    let before = resource::load::<VmInstance>(txn, &uuid)?.map(|(_, v)| v);
    let resp = crate::flow::apply_call_command(txn, ctx, vars)?;
    vars.insert(vars::VM.into(), uuid);
    if let Some((k, v)) = extra {
        vars.insert(k.into(), v);
    }
    if let Some(b) = before {
        vars.insert(vars::PREV_STATE.into(), b.state.name().into());
        if let Some(t) = target_of(txn, &b)? {
            encode(vars, vars::TARGET, &t)?;
        }
    }
    Ok(Some(resp))
}

/// Undo of [`call`]: the state before the call (a create's record goes with its volumes).
fn uncall(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let Some(uuid) = vars.get(vars::VM).cloned() else {
        return Ok(None);
    };
    match vars.get(vars::PREV_STATE) {
        None => forget(txn, ctx, &uuid)?,
        Some(s) => {
            let s = state_of(s)?;
            if resource::load::<VmInstance>(txn, &uuid)?.is_some() {
                set_state(txn, ctx, &uuid, s)?;
            }
        }
    }
    Ok(None)
}

pub(super) fn target_of(txn: &dyn StateTxn, vm: &VmInstance) -> Result<Option<Target>, ApiError> {
    let Some(h) = &vm.host_uuid else {
        return Ok(None);
    };
    let inv = resource::inventory_of(txn, "Host", h)?
        .ok_or_else(|| resource::not_found_kind("Host", h))?;
    Ok(Some(Target {
        host_uuid: h.clone(),
        management_ip: inv["managementIp"].as_str().unwrap_or_default().to_string(),
    }))
}

pub(super) fn storage_of(txn: &dyn StateTxn, ps_uuid: &str) -> Result<Storage, ApiError> {
    let inv = resource::inventory_of(txn, "PrimaryStorage", ps_uuid)?
        .ok_or_else(|| resource::not_found_kind("PrimaryStorage", ps_uuid))?;
    let s = |k: &str| inv[k].as_str().unwrap_or_default().to_string();
    Ok(Storage {
        uuid: ps_uuid.to_string(),
        ps_type: s("type"),
        url: s("url"),
        mount_path: s("mountPath"),
    })
}

/// ZStack's bridge name of an L2 on a KVM host.
pub(super) fn bridge_of(txn: &dyn StateTxn, l2_uuid: Option<&str>) -> Result<String, ApiError> {
    let Some(l2) = l2_uuid else {
        return Ok(String::new());
    };
    let Some(r) = resource::lookup(txn, "L2Network", l2)? else {
        return Ok(String::new());
    };
    let iface = r
        .field("physicalInterface")
        .unwrap_or_default()
        .replace('.', "_");
    Ok(match r.field("vlan") {
        Some(v) => format!("br_{iface}_{v}"),
        None => format!("br_{iface}"),
    })
}

pub(super) fn spec_of(txn: &dyn StateTxn, vm: &VmInstance) -> Result<Spec, ApiError> {
    spec_from(txn, vm, true)
}

/// The domain's spec; `from_image` false for a root volume that is not made from its image
/// (a clone's, copied from its source's file): no image source is looked up for it.
pub(super) fn spec_from(
    txn: &dyn StateTxn,
    vm: &VmInstance,
    from_image: bool,
) -> Result<Spec, ApiError> {
    let mut nics = Vec::new();
    for n in &vm.vm_nics {
        nics.push(Nic {
            mac: n.mac.clone(),
            ip: n.ip.clone().unwrap_or_default(),
            l3_network_uuid: n.l3_network_uuid.clone(),
            bridge: bridge_of(txn, n.l2_network_uuid.as_deref())?,
            device_id: n.device_id,
        });
    }
    let mut disks = Vec::new();
    let mut image = None;
    for v in volumes_of(txn, &vm.uuid)? {
        let Some(ps) = &v.primary_storage_uuid else {
            continue;
        };
        if from_image && v.install_path.is_none() && v.volume_type == "Root" {
            image = image_source(txn, v.root_image_uuid.as_deref())?;
        }
        disks.push(Disk {
            volume_uuid: v.uuid.clone(),
            storage: storage_of(txn, ps)?,
            path: v.install_path.clone(),
            size: v.size,
            device_id: v.device_id.unwrap_or(0),
        });
    }
    Ok(Spec {
        vm_uuid: vm.uuid.clone(),
        name: vm.name.clone(),
        cpu_num: vm.cpu_num,
        memory_size: vm.memory_size,
        nics,
        disks,
        image,
    })
}

fn image_source(txn: &dyn StateTxn, image: Option<&str>) -> Result<Option<ImageSource>, ApiError> {
    let Some(uuid) = image else { return Ok(None) };
    let inv = resource::inventory_of(txn, "Image", uuid)?
        .ok_or_else(|| resource::not_found_kind("Image", uuid))?;
    let bs = inv["backupStorageRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["status"] == "Ready")
        .and_then(|r| r["backupStorageUuid"].as_str())
        .ok_or_else(|| {
            validate::op_failure(format!(
                "image[uuid:{uuid}] is Ready on no backup storage; its bits cannot be copied to the host"
            ))
        })?;
    Ok(Some(ImageSource {
        image_uuid: uuid.to_string(),
        backup_storage_uuid: bs.to_string(),
        md5: inv["md5Sum"].as_str().map(str::to_string),
    }))
}

/// Place the VM and reserve its capacity (`host.allocate`), then give every NIC an address
/// (`l3.allocate-ip`); record both on the VM and the root volume, and write the target host
/// and the domain spec into vars.
fn allocate(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let vm = load_vm(txn, vars)?;
    let root = resource::require::<Volume>(txn, &vm.root_volume_uuid)?.1;
    let creating = root.install_path.is_none();
    let placed = serve(
        txn,
        ctx,
        caller,
        "host.allocate",
        &json!({
            "vmUuid": vm.uuid,
            "cpuNum": vm.cpu_num,
            "memorySize": vm.memory_size,
            "rootVolumeSize": creating.then_some(root.size),
            "primaryStorageUuid": root.primary_storage_uuid,
            "imageUuid": if creating { vm.image_uuid.clone() } else { None },
            "l3NetworkUuids": vm.vm_nics.iter().map(|n| n.l3_network_uuid.clone()).collect::<Vec<_>>(),
            "zoneUuid": vm.zone_uuid,
            "clusterUuid": vm.cluster_uuid,
            "hostUuid": vars.get(vars::REQUESTED_HOST).cloned().or(vm.host_uuid.clone()),
            "rootVolumeHostUuid": root.local_host_uuid,
            "lastHostUuid": vm.last_host_uuid,
            "strategy": vm.allocator_strategy,
        }),
    )?;
    let s = |k: &str| placed[k].as_str().map(str::to_string);
    let host_uuid = s("hostUuid").ok_or_else(|| validate::invalid_arg("host.allocate: no host"))?;
    let mut nics = vm.vm_nics.clone();
    allocate_ips(txn, ctx, caller, &mut nics)?;
    let vm = generic::modify(txn, ctx, &vm.uuid, |_, v: &mut VmInstance| {
        v.host_uuid = Some(host_uuid.clone());
        v.cluster_uuid = s("clusterUuid");
        v.zone_uuid = s("zoneUuid");
        v.vm_nics = nics;
        Ok(())
    })?;
    if creating {
        let ps = s("primaryStorageUuid").or(root.primary_storage_uuid.clone());
        let Some(ps) = ps else {
            return Err(validate::op_failure(format!(
                "no primary storage of host[uuid:{host_uuid}]'s cluster can hold the root volume"
            )));
        };
        let local = storage_of(txn, &ps)?.ps_type == "LocalStorage";
        let root = generic::modify(txn, ctx, &root.uuid, |_, v: &mut Volume| {
            v.primary_storage_uuid = Some(ps.clone());
            v.local_host_uuid = local.then(|| host_uuid.clone());
            Ok(())
        })?;
        // In the same apply as the placement that chose the storage: checked against the
        // committed figures, so a concurrent create cannot take the same bytes. The create's
        // rollback releases it with the volume's record (`forget`).
        super::model::reserve_capacity(txn, ctx, &root, root.size, false)?;
    }
    let target = target_of(txn, &vm)?;
    encode(vars, vars::TARGET, &target)?;
    let spec = spec_of(txn, &vm)?;
    encode(vars, vars::SPEC, &spec)?;
    Ok(None)
}

/// An address from IPAM (`l3.allocate-ip`) for every NIC that has none: its static IP if it
/// asked for one, else the lowest free.
pub(super) fn allocate_ips(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    nics: &mut [VmNic],
) -> Result<(), ApiError> {
    for n in nics.iter_mut().filter(|n| n.used_ip_uuid.is_none()) {
        let used_ip_uuid = crate::params::derive_uuid(&n.uuid, 0);
        let ip = serve(
            txn,
            ctx,
            caller,
            "l3.allocate-ip",
            &json!({
                "l3NetworkUuid": n.l3_network_uuid,
                "usedIpUuid": used_ip_uuid,
                "requiredIp": n.static_ip,
                "usedFor": "VmNic",
                "vmNicUuid": n.uuid,
            }),
        )?;
        let f = |k: &str| ip[k].as_str().map(str::to_string);
        n.ip = f("ip");
        n.netmask = f("netmask");
        n.gateway = f("gateway");
        n.l2_network_uuid = f("l2NetworkUuid");
        n.used_ip_uuid = Some(used_ip_uuid);
        n.last_op_date = ctx.proposed_at_ms;
    }
    Ok(())
}

/// Undo of [`allocate`]: addresses and capacity back.
fn unallocate(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let Some((_, vm)) = resource::load::<VmInstance>(txn, var(vars, vars::VM)?)? else {
        return Ok(None);
    };
    release_all(txn, ctx, caller, &vm)?;
    Ok(None)
}

/// Give back a VM's host reservation and addresses, and clear them from its record.
pub(super) fn release_all(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vm: &VmInstance,
) -> Result<(), ApiError> {
    release_host(txn, ctx, caller, &vm.uuid)?;
    for n in &vm.vm_nics {
        if let Some(ip) = &n.ip {
            serve(
                txn,
                ctx,
                caller,
                "l3.release-ip",
                &json!({"l3NetworkUuid": n.l3_network_uuid, "ip": ip}),
            )?;
        }
    }
    generic::modify(txn, ctx, &vm.uuid, |_, v: &mut VmInstance| {
        if v.host_uuid.is_some() {
            v.last_host_uuid = v.host_uuid.take();
        }
        for n in &mut v.vm_nics {
            n.ip = None;
            n.netmask = None;
            n.gateway = None;
            n.used_ip_uuid = None;
        }
        Ok(())
    })?;
    Ok(())
}

pub(super) fn release_host(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vm_uuid: &str,
) -> Result<(), ApiError> {
    serve(
        txn,
        ctx,
        caller,
        "host.release",
        &json!({"vmUuid": vm_uuid}),
    )?;
    Ok(())
}

pub(super) fn request(action: &str, v: &Vars) -> Result<EffectRequest, ApiError> {
    let mut payload = serde_json::Map::new();
    for k in [
        vars::TARGET,
        vars::SPEC,
        vars::ROOT_FILE,
        vars::DELETE,
        vars::DESTINATION,
    ] {
        if let Some(t) = v.get(k) {
            let value: serde_json::Value = serde_json::from_str(t)
                .map_err(|e| validate::invalid_arg(format!("VM flow var {k}: {e}")))?;
            payload.insert(k.to_string(), value);
        }
    }
    payload.insert("vmUuid".into(), json!(var(v, vars::VM)?));
    if let Some(s) = v.get(vars::STOP_TYPE) {
        payload.insert("stopType".into(), json!(s));
    }
    Ok(EffectRequest {
        receiver: RECEIVER.into(),
        action: action.into(),
        payload: serde_json::Value::Object(payload).to_string(),
    })
}

/// The effect request of a create's step that only an InstantStart create performs.
fn when_starting(action: &'static str, v: &Vars) -> Result<EffectRequest, ApiError> {
    if v.get(vars::STRATEGY).map(String::as_str) == Some("CreateStopped") {
        return request(actions::SKIP, v);
    }
    request(action, v)
}

/// Undo of `create-root-volume`: the file goes.
fn delete_root(v: &Vars) -> Result<EffectRequest, ApiError> {
    let spec: Spec = decode(v, vars::SPEC)?;
    let files = VolumeFiles {
        target: decode(v, vars::TARGET)?,
        volumes: spec
            .disks
            .iter()
            .filter(|d| d.device_id == 0)
            .map(|d| (d.storage.clone(), d.volume_uuid.clone()))
            .collect(),
    };
    let mut v = v.clone();
    encode(&mut v, vars::DELETE, &files)?;
    request(actions::DELETE_VOLUMES, &v)
}

/// Last step of a create: Running (or Stopped, holding no host), the root volume Ready.
fn created(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let vm = load_vm(txn, vars)?;
    let file: VolumeFile = decode(vars, vars::ROOT_FILE)?;
    let root = generic::modify(txn, ctx, &vm.root_volume_uuid, |_, v: &mut Volume| {
        v.install_path = Some(file.path.clone());
        v.size = file.virtual_size;
        v.actual_size = file.actual_size;
        v.status = VolumeStatus::Ready;
        Ok(())
    })?;
    // The image's real virtual size, which the estimate reserved at placement may miss.
    super::model::reserve_capacity(txn, ctx, &root, root.size, true)?;
    let stopped = vars.get(vars::STRATEGY).map(String::as_str) == Some("CreateStopped");
    if stopped {
        release_host(txn, ctx, caller, &vm.uuid)?;
        let vm = generic::modify(txn, ctx, &vm.uuid, |_, v: &mut VmInstance| {
            v.last_host_uuid = v.host_uuid.take();
            v.state = VmState::Stopped;
            Ok(())
        })?;
        return Ok(answer(vm));
    }
    let vm = generic::modify(txn, ctx, &vm.uuid, |_, v: &mut VmInstance| {
        v.last_host_uuid = v.host_uuid.clone();
        v.state = VmState::Running;
        Ok(())
    })?;
    Ok(answer(vm))
}

/// A stable state as the last step.
fn settle(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    vars: &Vars,
    state: VmState,
) -> Result<Option<Response>, ApiError> {
    let vm = load_vm(txn, vars)?;
    Ok(answer(set_state(txn, ctx, &vm.uuid, state)?))
}

/// Last step of a start: Running, the host recorded as the last one too.
fn started(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::VM)?.to_string();
    let vm = generic::modify(txn, ctx, &uuid, |_, v: &mut VmInstance| {
        v.state = VmState::Running;
        v.last_host_uuid = v.host_uuid.clone();
        Ok(())
    })?;
    Ok(answer(vm))
}

/// Last step of a stop: Stopped, the host's capacity back (addresses stay with the VM).
fn stopped(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::VM)?.to_string();
    release_host(txn, ctx, caller, &uuid)?;
    let vm = generic::modify(txn, ctx, &uuid, |_, v: &mut VmInstance| {
        if v.host_uuid.is_some() {
            v.last_host_uuid = v.host_uuid.take();
        }
        v.state = VmState::Stopped;
        Ok(())
    })?;
    Ok(answer(vm))
}

/// The deletion policy of VMs (`vm.deletionPolicy`).
fn direct_deletion(txn: &dyn StateTxn) -> Result<bool, ApiError> {
    Ok(crate::settings::value(txn, "vm", "deletionPolicy")? == "Direct")
}

/// After the domain is gone: host capacity and addresses back; `Direct` removes the VM and
/// its volumes' records (their files go next), `Delay`/`Never` keep it `Destroyed` with its
/// root volume until expunged.
fn destroyed(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let vm = load_vm(txn, vars)?;
    release_all(txn, ctx, caller, &vm)?;
    if direct_deletion(txn)? {
        files_to_delete(txn, vars, &vm)?;
        forget(txn, ctx, &vm.uuid)?;
        return Ok(Some(Response::Vm(VmResult::Deleted)));
    }
    vars.insert(
        vars::DELETE.into(),
        serde_json::to_string(&VolumeFiles {
            target: None,
            volumes: Vec::new(),
        })
        .map_err(|e| validate::invalid_arg(e.to_string()))?,
    );
    let vm = generic::modify(txn, ctx, &vm.uuid, |_, v: &mut VmInstance| {
        v.state = VmState::Destroyed;
        v.deleted_at = Some(ctx.proposed_at_ms);
        Ok(())
    })?;
    // Kinds that follow their VM's state (scheduled jobs pause) learn it here.
    crate::resource::relations::propagate_state(txn, ctx, super::KIND, &vm.uuid, vm.state.name())?;
    Ok(answer(vm))
}

/// Write the VM's volume files into vars (where they are: the last host for LocalStorage).
fn files_to_delete(txn: &dyn StateTxn, vars: &mut Vars, vm: &VmInstance) -> Result<(), ApiError> {
    let mut volumes = Vec::new();
    let mut host = None;
    // Data volumes are detached, not deleted, with their VM (`forget`).
    for v in volumes_of(txn, &vm.uuid)?
        .into_iter()
        .filter(|v| v.volume_type == "Root")
    {
        if let (Some(ps), Some(_)) = (&v.primary_storage_uuid, &v.install_path) {
            volumes.push((storage_of(txn, ps)?, v.uuid.clone()));
            host = host.or(v.local_host_uuid.clone());
        }
    }
    let host = host.or(vm.last_host_uuid.clone()).or(vm.host_uuid.clone());
    let target = match host {
        Some(h) => {
            let mut probe = vm.clone();
            probe.host_uuid = Some(h);
            target_of(txn, &probe)?
        }
        None => None,
    };
    encode(vars, vars::DELETE, &VolumeFiles { target, volumes })
}

/// Expunge, first step after the call: which files go.
fn expunge_files(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let vm = load_vm(txn, vars)?;
    files_to_delete(txn, vars, &vm)?;
    Ok(None)
}

fn expunged(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::VM)?.to_string();
    forget(txn, ctx, &uuid)?;
    Ok(Some(Response::Vm(VmResult::Deleted)))
}

/// Recover: new addresses for the NICs (the old ones went back at destroy).
fn recover_ips(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let vm = load_vm(txn, vars)?;
    let mut nics = vm.vm_nics.clone();
    allocate_ips(txn, ctx, caller, &mut nics)?;
    let vm = generic::modify(txn, ctx, &vm.uuid, |_, v: &mut VmInstance| {
        v.vm_nics = nics;
        v.state = VmState::Stopped;
        v.deleted_at = None;
        Ok(())
    })?;
    Ok(answer(vm))
}

/// The reservation a migration holds on its destination while the VM still holds its
/// source's (one migration per VM at a time: its jobs serialise on its uuid).
pub fn migration_reservation(vm_uuid: &str) -> String {
    crate::params::derive_uuid(&format!("{vm_uuid}-migration"), 0)
}

/// `host.allocate`'s (and `host.candidates`') input for a live migration of `vm`: its
/// figures, storage and networks, its zone, the destination asked for, its current host
/// excluded, the reservation under [`migration_reservation`].
pub fn migration_placement(
    txn: &dyn StateTxn,
    vm: &VmInstance,
    requested: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let root = resource::require::<Volume>(txn, &vm.root_volume_uuid)?.1;
    Ok(json!({
        "vmUuid": vm.uuid,
        "reservationUuid": migration_reservation(&vm.uuid),
        "cpuNum": vm.cpu_num,
        "memorySize": vm.memory_size,
        "primaryStorageUuid": root.primary_storage_uuid,
        "l3NetworkUuids": vm.vm_nics.iter().map(|n| n.l3_network_uuid.clone()).collect::<Vec<_>>(),
        "zoneUuid": vm.zone_uuid,
        "hostUuid": requested,
        "excludedHostUuids": vm.host_uuid.iter().collect::<Vec<_>>(),
        "strategy": vm.allocator_strategy,
    }))
}

/// Migrate, after the call: the destination placed and its capacity reserved (the source's
/// stays held until the VM runs on the destination); the destination and the spec into vars.
fn allocate_destination(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let vm = load_vm(txn, vars)?;
    let input = migration_placement(txn, &vm, vars.get(vars::REQUESTED_HOST).map(String::as_str))?;
    let placed = serve(txn, ctx, caller, "host.allocate", &input)?;
    let host_uuid = placed["hostUuid"]
        .as_str()
        .ok_or_else(|| validate::invalid_arg("host.allocate: no host"))?
        .to_string();
    let mut probe = vm.clone();
    probe.host_uuid = Some(host_uuid);
    encode(vars, vars::DESTINATION, &target_of(txn, &probe)?)?;
    encode(vars, vars::SPEC, &spec_of(txn, &vm)?)?;
    Ok(None)
}

/// Undo of [`allocate_destination`]: the destination's capacity back.
fn release_destination(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::VM)?.to_string();
    release_host(txn, ctx, caller, &migration_reservation(&uuid))?;
    Ok(None)
}

/// Record a VM that now lives on `destination` (in `domain_state` there): the source's
/// capacity back, the destination's reservation becomes the VM's. A domain that could not be
/// started there leaves the VM Stopped, holding nothing.
pub(super) fn record_migrated(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vm_uuid: &str,
    destination: &Target,
    domain_state: &str,
) -> Result<VmInstance, ApiError> {
    release_host(txn, ctx, caller, vm_uuid)?;
    let key = migration_reservation(vm_uuid);
    if !matches!(domain_state, "Running" | "Paused") {
        release_host(txn, ctx, caller, &key)?;
        return generic::modify(txn, ctx, vm_uuid, |_, v: &mut VmInstance| {
            v.host_uuid = None;
            v.last_host_uuid = Some(destination.host_uuid.clone());
            v.state = VmState::Stopped;
            Ok(())
        });
    }
    serve(
        txn,
        ctx,
        caller,
        "host.rename-reservation",
        &json!({"fromUuid": key, "toUuid": vm_uuid}),
    )?;
    let host = resource::inventory_of(txn, "Host", &destination.host_uuid)?
        .ok_or_else(|| resource::not_found_kind("Host", &destination.host_uuid))?;
    let state = if domain_state == "Paused" {
        VmState::Paused
    } else {
        VmState::Running
    };
    generic::modify(txn, ctx, vm_uuid, |_, v: &mut VmInstance| {
        v.host_uuid = Some(destination.host_uuid.clone());
        v.last_host_uuid = Some(destination.host_uuid.clone());
        v.cluster_uuid = host["clusterUuid"].as_str().map(str::to_string);
        v.zone_uuid = host["zoneUuid"].as_str().map(str::to_string);
        v.state = state;
        Ok(())
    })
}

/// Last step of a migration.
fn migrated(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::VM)?.to_string();
    let destination: Target = decode(vars, vars::DESTINATION)?;
    let state = vars.get(vars::DOMAIN_STATE).cloned().unwrap_or_default();
    Ok(answer(record_migrated(
        txn,
        ctx,
        caller,
        &uuid,
        &destination,
        &state,
    )?))
}

/// Flow names.
pub const CREATE: &str = "vm.create";
/// `MigrateVm`.
pub const MIGRATE: &str = "vm.migrate";
/// `StartVmInstance`.
pub const START: &str = "vm.start";
/// `StopVmInstance`.
pub const STOP: &str = "vm.stop";
/// `RebootVmInstance`.
pub const REBOOT: &str = "vm.reboot";
/// `PauseVmInstance`.
pub const PAUSE: &str = "vm.pause";
/// `ResumeVmInstance`.
pub const RESUME: &str = "vm.resume";
/// `DestroyVmInstance`.
pub const DESTROY: &str = "vm.destroy";
/// `ExpungeVmInstance`.
pub const EXPUNGE: &str = "vm.expunge";
/// `RecoverVmInstance`.
pub const RECOVER: &str = "vm.recover";

const CALL: StepDef = StepDef {
    name: "vm-call",
    action: Action::Commit(call),
    undo: Undo::Commit(uncall),
};

/// The VM flows.
pub const FLOWS: &[FlowDef] = &[
    FlowDef {
        name: CREATE,
        steps: &[
            CALL,
            StepDef {
                name: "allocate-host-and-ips",
                action: Action::Commit(allocate),
                undo: Undo::Commit(unallocate),
            },
            StepDef {
                name: "create-root-volume",
                action: Action::Effect(|v| request(actions::CREATE_ROOT_VOLUME, v)),
                undo: Undo::Effect(delete_root),
            },
            StepDef {
                name: "start-vm",
                action: Action::Effect(|v| when_starting(actions::START, v)),
                undo: Undo::Effect(|v| when_starting(actions::DESTROY, v)),
            },
            StepDef {
                name: "vm-created",
                action: Action::Commit(created),
                undo: Undo::Nothing,
            },
        ],
    },
    FlowDef {
        name: START,
        steps: &[
            CALL,
            StepDef {
                name: "allocate-host",
                action: Action::Commit(allocate),
                undo: Undo::Commit(unallocate_host),
            },
            StepDef {
                name: "start-vm",
                action: Action::Effect(|v| request(actions::START, v)),
                undo: Undo::Effect(|v| request(actions::DESTROY, v)),
            },
            StepDef {
                name: "vm-running",
                action: Action::Commit(started),
                undo: Undo::Nothing,
            },
        ],
    },
    FlowDef {
        name: STOP,
        steps: &[
            CALL,
            StepDef {
                name: "stop-vm",
                action: Action::Effect(|v| request(actions::STOP, v)),
                undo: Undo::Nothing,
            },
            StepDef {
                name: "vm-stopped",
                action: Action::Commit(stopped),
                undo: Undo::Nothing,
            },
        ],
    },
    FlowDef {
        name: REBOOT,
        steps: &[
            CALL,
            StepDef {
                name: "reboot-vm",
                action: Action::Effect(|v| request(actions::REBOOT, v)),
                undo: Undo::Nothing,
            },
            StepDef {
                name: "vm-running",
                action: Action::Commit(|t, c, _, v| settle(t, c, v, VmState::Running)),
                undo: Undo::Nothing,
            },
        ],
    },
    FlowDef {
        name: PAUSE,
        steps: &[
            CALL,
            StepDef {
                name: "pause-vm",
                action: Action::Effect(|v| request(actions::PAUSE, v)),
                undo: Undo::Nothing,
            },
            StepDef {
                name: "vm-paused",
                action: Action::Commit(|t, c, _, v| settle(t, c, v, VmState::Paused)),
                undo: Undo::Nothing,
            },
        ],
    },
    FlowDef {
        name: RESUME,
        steps: &[
            CALL,
            StepDef {
                name: "resume-vm",
                action: Action::Effect(|v| request(actions::RESUME, v)),
                undo: Undo::Nothing,
            },
            StepDef {
                name: "vm-running",
                action: Action::Commit(|t, c, _, v| settle(t, c, v, VmState::Running)),
                undo: Undo::Nothing,
            },
        ],
    },
    FlowDef {
        name: DESTROY,
        steps: &[
            CALL,
            StepDef {
                name: "destroy-domain",
                action: Action::Effect(destroy_request),
                undo: Undo::Nothing,
            },
            StepDef {
                name: "vm-destroyed",
                action: Action::Commit(destroyed),
                undo: Undo::Nothing,
            },
            StepDef {
                name: "delete-volume-files",
                action: Action::Effect(|v| request(actions::DELETE_VOLUMES, v)),
                undo: Undo::Nothing,
            },
        ],
    },
    FlowDef {
        name: EXPUNGE,
        steps: &[
            CALL,
            StepDef {
                name: "volume-files",
                action: Action::Commit(expunge_files),
                undo: Undo::Nothing,
            },
            StepDef {
                name: "delete-volume-files",
                action: Action::Effect(|v| request(actions::DELETE_VOLUMES, v)),
                undo: Undo::Nothing,
            },
            StepDef {
                name: "vm-expunged",
                action: Action::Commit(expunged),
                undo: Undo::Nothing,
            },
        ],
    },
    FlowDef {
        name: MIGRATE,
        steps: &[
            CALL,
            StepDef {
                name: "allocate-destination",
                action: Action::Commit(allocate_destination),
                undo: Undo::Commit(release_destination),
            },
            StepDef {
                name: "migrate-vm",
                action: Action::Effect(|v| request(actions::MIGRATE, v)),
                undo: Undo::Effect(|v| request(actions::MIGRATE_ROLLBACK, v)),
            },
            StepDef {
                name: "vm-migrated",
                action: Action::Commit(migrated),
                undo: Undo::Nothing,
            },
        ],
    },
    FlowDef {
        name: RECONCILE,
        steps: &[
            StepDef {
                name: "reconcile-check",
                action: Action::Commit(reconcile_check),
                undo: Undo::Nothing,
            },
            StepDef {
                name: "reconcile-host",
                action: Action::Effect(reconcile_request),
                undo: Undo::Nothing,
            },
            StepDef {
                name: "reconcile-record",
                action: Action::Commit(reconcile_record),
                undo: Undo::Nothing,
            },
        ],
    },
    FlowDef {
        name: RECOVER,
        steps: &[
            CALL,
            StepDef {
                name: "allocate-ips",
                action: Action::Commit(recover_ips),
                undo: Undo::Nothing,
            },
        ],
    },
    super::volume_flows::CREATE_FLOW,
    super::volume_flows::ATTACH_FLOW,
    super::volume_flows::DETACH_FLOW,
    super::volume_flows::DELETE_FLOW,
    super::volume_flows::EXPUNGE_FLOW,
    super::volume_flows::RESIZE_FLOW,
    super::snapshot_flows::CREATE_FLOW,
    super::snapshot_flows::REVERT_FLOW,
    super::snapshot_flows::DELETE_FLOW,
    super::nics::ATTACH_FLOW,
    super::nics::DETACH_FLOW,
    super::clone::CLONE_FLOW,
];

/// `vm.reconcile`: one action of [`super::reconcile`].
pub const RECONCILE: &str = "vm.reconcile";

fn reconcile_action(v: &Vars) -> Result<super::reconcile::Action, ApiError> {
    decode(v, vars::ACTION)
}

/// The VM must be as it was when the action was planned; otherwise the job does nothing.
fn reconcile_check(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let now = super::reconcile::observed(
        resource::load::<VmInstance>(txn, var(vars, vars::VM)?)?
            .map(|(_, v)| v)
            .as_ref(),
    );
    if now != var(vars, vars::OBSERVED)? {
        vars.insert(vars::SKIP.into(), "1".into());
    }
    Ok(None)
}

fn reconcile_request(v: &Vars) -> Result<EffectRequest, ApiError> {
    if v.contains_key(vars::SKIP) {
        return request(actions::SKIP, v);
    }
    match reconcile_action(v)? {
        super::reconcile::Action::DestroyDomain { .. } => request(actions::DESTROY, v),
        _ => request(actions::INSPECT, v),
    }
}

/// The record follows what the host said just now (rules 1 and 2).
fn reconcile_record(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::VM)?.to_string();
    let Some((_, vm)) = resource::load::<VmInstance>(txn, &uuid)? else {
        return Ok(Some(Response::Vm(VmResult::Deleted)));
    };
    if vars.contains_key(vars::SKIP) {
        return Ok(answer(vm));
    }
    let domain = vars.get(vars::DOMAIN_STATE).cloned().unwrap_or_default();
    let live = domain == "Running" || domain == "Paused";
    match reconcile_action(vars)? {
        super::reconcile::Action::MarkStopped { .. } if !live => {
            return stopped(txn, ctx, caller, vars);
        }
        super::reconcile::Action::SyncState { to, .. } if domain == to.name() => {
            return Ok(answer(set_state(txn, ctx, &uuid, to)?));
        }
        _ => {}
    }
    Ok(answer(vm))
}

/// A destroy of a VM without a host has no domain to destroy.
fn destroy_request(v: &Vars) -> Result<EffectRequest, ApiError> {
    if v.get(vars::TARGET).is_none() {
        return request(actions::SKIP, v);
    }
    request(actions::DESTROY, v)
}

/// Undo of a start's allocation: the capacity back (the VM keeps its addresses).
fn unallocate_host(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::VM)?.to_string();
    release_host(txn, ctx, caller, &uuid)?;
    if resource::load::<VmInstance>(txn, &uuid)?.is_some() {
        generic::modify(txn, ctx, &uuid, |_, v: &mut VmInstance| {
            v.host_uuid = None;
            Ok(())
        })?;
    }
    Ok(None)
}
