//! A VM's NICs after its create (spec 02 §6 "Attach / detach NIC"): `AttachL3NetworkToVm`
//! gives a Running or Stopped VM a new NIC on another L3 (an address from IPAM, a fresh MAC
//! and device id) and hot-plugs it into the running domain; `DetachL3NetworkFromVm` unplugs a
//! NIC and gives its address back.
//!
//! Attach: the command writes the NIC with its address in one apply, so a refused call
//! (wrong state, an L2 the VM's cluster does not have, no free or a taken static IP) leaves
//! nothing; the plug follows, and a failed plug's rollback takes the NIC and its address out
//! of the record again. Detach: the command only checks; the NIC leaves the record (and its
//! address goes back to IPAM) once the host has unplugged it, so a failed unplug changes
//! nothing. A Stopped VM has no domain: its next start builds the domain from the record.
//!
//! The default L3 (`defaultL3NetworkUuid`) moves as ZStack's does: the first NIC of a VM that
//! had none becomes its default, and detaching the default NIC makes the lowest remaining
//! NIC's L3 the default (none when no NIC is left).

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;

use super::flows::Nic;
use super::flows::Target;
use super::flows::RECEIVER;
use super::model::VmInstance;
use super::model::VmNic;
use super::model::VmOp;
use super::model::VmResult;
use super::model::VmState;
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
use crate::validate;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Response;
use crate::StateTxn;

/// The VM states a NIC is attached or detached in (ZStack 2.5's `VmInstanceState` checks of
/// `APIAttachL3NetworkToVmMsg` / `APIDetachL3NetworkFromVmMsg`).
pub const NIC_STATES: &[VmState] = &[VmState::Running, VmState::Stopped];

/// Most NICs a VM has (PCI slots left on the i440fx machine once disks are plugged).
const MAX_NICS: u32 = 8;

/// NIC commands (inside [`VmOp::Nic`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NicOp {
    /// `AttachL3NetworkToVm`.
    Attach {
        /// VM.
        vm_uuid: String,
        /// The new NIC (the request's uuid).
        nic_uuid: String,
        /// Its L3.
        l3_network_uuid: String,
        /// `staticIp`.
        static_ip: Option<String>,
        /// MAC (derived from the NIC's uuid).
        mac: String,
    },
    /// `DetachL3NetworkFromVm`.
    Detach {
        /// `vmNicUuid`.
        nic_uuid: String,
    },
}

impl NicOp {
    /// The resource the op names first (the VM of an attach, the NIC of a detach).
    pub fn uuid(&self) -> &str {
        match self {
            NicOp::Attach { vm_uuid, .. } => vm_uuid,
            NicOp::Detach { nic_uuid } => nic_uuid,
        }
    }

    /// The API message (named in state errors).
    pub fn message(&self) -> &'static str {
        match self {
            NicOp::Attach { .. } => "APIAttachL3NetworkToVmMsg",
            NicOp::Detach { .. } => "APIDetachL3NetworkFromVmMsg",
        }
    }
}

/// The VM holding the NIC, as the caller may act on it.
fn vm_of_nic(txn: &dyn StateTxn, caller: &Caller, nic: &str) -> Result<VmInstance, ApiError> {
    let Some((_, vm)) = resource::find::<VmInstance>(txn, "vmNics.uuid", nic)?
        .into_iter()
        .next()
    else {
        return Err(resource::not_found_kind("VmNic", nic));
    };
    resource::require_visible::<VmInstance>(txn, caller, &vm.uuid).map(|(_, v)| v)
}

/// Why the L3 cannot reach the VM where it is placed: its L2 is not attached to the VM's
/// cluster (a VM never placed has no cluster yet; the allocator checks at its start).
fn l2_refusal(txn: &dyn StateTxn, vm: &VmInstance, l3: &str) -> Result<(), ApiError> {
    let Some(cluster) = &vm.cluster_uuid else {
        return Ok(());
    };
    let l3_ref = resource::require_ref(txn, "L3Network", l3)?;
    let l2 = l3_ref
        .field("l2NetworkUuid")
        .unwrap_or_default()
        .to_string();
    let attached = resource::lookup(txn, "L2Network", &l2)?
        .is_some_and(|r| r.values("attachedClusterUuids").contains(&cluster.as_str()));
    if attached {
        return Ok(());
    }
    Err(validate::op_failure(format!(
        "unable to attach a L3 network. The L3 network[uuid:{l3}]'s L2 network[uuid:{l2}] is not attached to the cluster[uuid:{cluster}] of the vm[uuid:{}]",
        vm.uuid
    )))
}

pub(super) fn apply(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    op: NicOp,
) -> Result<VmResult, ApiError> {
    let now = ctx.proposed_at_ms;
    match &op {
        NicOp::Attach {
            vm_uuid,
            nic_uuid,
            l3_network_uuid,
            static_ip,
            mac,
        } => {
            let vm = super::model::visible_vm(txn, caller, vm_uuid)?;
            if !NIC_STATES.contains(&vm.state) {
                return Err(super::model::state_error(op.message(), &vm, NIC_STATES));
            }
            super::model::check_l3(txn, caller, l3_network_uuid)?;
            if vm
                .vm_nics
                .iter()
                .any(|n| n.l3_network_uuid == *l3_network_uuid)
            {
                return Err(validate::op_failure(format!(
                    "unable to attach a L3 network. The L3 network[uuid:{l3_network_uuid}] is already attached to the vm[uuid: {vm_uuid}]"
                )));
            }
            l2_refusal(txn, &vm, l3_network_uuid)?;
            validate::uuid("vmNicUuid", nic_uuid)?;
            if !resource::find::<VmInstance>(txn, "vmNics.uuid", nic_uuid)?.is_empty() {
                return Err(validate::invalid_arg(format!(
                    "a NIC of uuid {nic_uuid} exists already"
                )));
            }
            let device_id = (0..MAX_NICS)
                .find(|d| vm.vm_nics.iter().all(|n| n.device_id != *d))
                .ok_or_else(|| {
                    validate::op_failure(format!(
                        "vm[uuid:{vm_uuid}] has {MAX_NICS} NICs already; detach one first"
                    ))
                })?;
            let mut nic = VmNic {
                uuid: nic_uuid.clone(),
                vm_instance_uuid: vm_uuid.clone(),
                l3_network_uuid: l3_network_uuid.clone(),
                l2_network_uuid: None,
                ip: None,
                netmask: None,
                gateway: None,
                used_ip_uuid: None,
                static_ip: static_ip.clone(),
                mac: mac.clone(),
                device_id,
                create_date: now,
                last_op_date: now,
            };
            super::flows::allocate_ips(txn, ctx, caller, std::slice::from_mut(&mut nic))?;
            let vm = generic::modify(txn, ctx, vm_uuid, |_, v: &mut VmInstance| {
                v.vm_nics.push(nic.clone());
                v.vm_nics.sort_by_key(|n| n.device_id);
                if v.default_l3_network_uuid.is_none() {
                    v.default_l3_network_uuid = Some(nic.l3_network_uuid.clone());
                }
                Ok(())
            })?;
            Ok(VmResult::Inventory(Box::new(vm)))
        }
        NicOp::Detach { nic_uuid } => {
            validate::uuid("vmNicUuid", nic_uuid)?;
            let vm = vm_of_nic(txn, caller, nic_uuid)?;
            if !NIC_STATES.contains(&vm.state) {
                return Err(super::model::state_error(op.message(), &vm, NIC_STATES));
            }
            Ok(VmResult::Inventory(Box::new(vm)))
        }
    }
}

fn lower(p: &PlanInput, f: &str) -> Result<String, Refusal> {
    Ok(p.required(f)?.to_ascii_lowercase())
}

pub(super) fn attach(p: &PlanInput) -> Result<Plan, Refusal> {
    for f in ["driverType", "customMac", "vmNicParams"] {
        if p.body.get(f).is_some_and(|v| !v.is_null()) {
            return Err(Refusal::new(
                Code::InvalidArgument,
                format!(
                    "field[{f}] of AttachL3NetworkToVm is not supported: NICs are virtio with a MAC derived from their uuid"
                ),
            ));
        }
    }
    let nic_uuid = p.new_uuid().to_ascii_lowercase();
    // From a hash of the uuid, not the uuid itself: a client's `resourceUuid`s may share
    // their first digits, their MACs must not.
    let mac = super::wire::mac_of(&crate::params::derive_uuid(&nic_uuid, 0));
    Ok(p.propose(VmOp::Nic(NicOp::Attach {
        vm_uuid: lower(p, "vmInstanceUuid")?,
        mac,
        nic_uuid,
        l3_network_uuid: lower(p, "l3NetworkUuid")?,
        static_ip: p.string("staticIp"),
    })))
}

pub(super) fn detach(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(VmOp::Nic(NicOp::Detach {
        nic_uuid: lower(p, "vmNicUuid")?,
    })))
}

/// `AttachL3NetworkToVm`.
pub const ATTACH: &str = "vm.nic.attach";
/// `DetachL3NetworkFromVm`.
pub const DETACH: &str = "vm.nic.detach";

/// Receiver actions (of the `vm` receiver).
pub mod actions {
    /// Plug `nic` into the running domain `vmUuid` on `target`.
    pub const ATTACH_NIC: &str = "attach-nic";
    /// Unplug `nic` (by its MAC) from the domain `vmUuid` on `target`.
    pub const DETACH_NIC: &str = "detach-nic";
}

/// Vars.
pub mod vars {
    /// The VM.
    pub const VM: &str = "vm_uuid";
    /// The NIC.
    pub const NIC: &str = "nic_uuid";
    /// The VM's default L3 before an attach (what its rollback restores).
    pub const PREV_DEFAULT: &str = "prev_default_l3";
    /// The host running the VM, when the NIC is plugged or unplugged live ([`super::Target`]).
    pub const TARGET: &str = "target";
    /// The NIC as the domain has it ([`super::Nic`]).
    pub const NIC_SPEC: &str = "nic";
}

fn var<'a>(v: &'a Vars, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .map(String::as_str)
        .ok_or_else(|| validate::invalid_arg(format!("NIC flow without {k}")))
}

fn encode<T: Serialize>(vars: &mut Vars, k: &str, value: &T) -> Result<(), ApiError> {
    let text = serde_json::to_string(value)
        .map_err(|e| validate::invalid_arg(format!("NIC flow var {k}: {e}")))?;
    vars.insert(k.to_string(), text);
    Ok(())
}

fn answer(vm: VmInstance) -> Option<Response> {
    Some(Response::Vm(VmResult::Inventory(Box::new(vm))))
}

/// The NIC as the domain gets it (what a start would build from the record).
pub(super) fn nic_spec(txn: &dyn StateTxn, n: &VmNic) -> Result<Nic, ApiError> {
    Ok(Nic {
        mac: n.mac.clone(),
        ip: n.ip.clone().unwrap_or_default(),
        l3_network_uuid: n.l3_network_uuid.clone(),
        bridge: super::flows::bridge_of(txn, n.l2_network_uuid.as_deref())?,
        device_id: n.device_id,
    })
}

/// First step: the call's command; the VM, the NIC and (when the VM runs) its host and the
/// NIC's spec into vars.
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
            VmOp::Nic(op) => op.clone(),
            _ => return Err(validate::invalid_arg("a NIC flow runs a NIC command")),
        },
        _ => return Err(validate::invalid_arg("a NIC flow runs a NIC command")),
    };
    let prev_default = match &op {
        NicOp::Attach { vm_uuid, .. } => {
            resource::load::<VmInstance>(txn, vm_uuid)?.and_then(|(_, v)| v.default_l3_network_uuid)
        }
        NicOp::Detach { .. } => None,
    };
    let nic_uuid = match &op {
        NicOp::Attach { nic_uuid, .. } | NicOp::Detach { nic_uuid } => nic_uuid.clone(),
    };
    let resp = crate::flow::apply_call_command(txn, ctx, vars)?;
    let Response::Vm(VmResult::Inventory(vm)) = resp.innermost() else {
        return Err(validate::invalid_arg("a NIC command answers its VM"));
    };
    vars.insert(vars::VM.into(), vm.uuid.clone());
    vars.insert(vars::NIC.into(), nic_uuid.clone());
    if let Some(d) = prev_default {
        vars.insert(vars::PREV_DEFAULT.into(), d);
    }
    let live = vm.state == VmState::Running;
    if let (true, Some(t), Some(n)) = (
        live,
        super::flows::target_of(txn, vm)?,
        vm.vm_nics.iter().find(|n| n.uuid == nic_uuid),
    ) {
        encode(vars, vars::TARGET, &t)?;
        encode(vars, vars::NIC_SPEC, &nic_spec(txn, n)?)?;
    }
    Ok(Some(resp))
}

/// Take the NIC out of the VM's record and give its address back; the default L3 becomes
/// `default` when it was the NIC's.
fn remove_nic(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vm_uuid: &str,
    nic_uuid: &str,
    default: impl Fn(&VmInstance) -> Option<String>,
) -> Result<Option<VmInstance>, ApiError> {
    let Some((_, vm)) = resource::load::<VmInstance>(txn, vm_uuid)? else {
        return Ok(None);
    };
    let Some(nic) = vm.vm_nics.iter().find(|n| n.uuid == nic_uuid).cloned() else {
        return Ok(Some(vm));
    };
    if let Some(ip) = &nic.ip {
        serve(
            txn,
            ctx,
            caller,
            "l3.release-ip",
            &json!({"l3NetworkUuid": nic.l3_network_uuid, "ip": ip}),
        )?;
    }
    let vm = generic::modify(txn, ctx, vm_uuid, |_, v: &mut VmInstance| {
        v.vm_nics.retain(|n| n.uuid != nic_uuid);
        if v.default_l3_network_uuid.as_deref() == Some(nic.l3_network_uuid.as_str()) {
            v.default_l3_network_uuid = default(v);
        }
        Ok(())
    })?;
    Ok(Some(vm))
}

/// Undo of an attach's command: the NIC and its address gone, the default L3 as it was.
fn unattach(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let (Some(vm), Some(nic)) = (vars.get(vars::VM), vars.get(vars::NIC)) else {
        return Ok(None);
    };
    let prev = vars.get(vars::PREV_DEFAULT).cloned();
    remove_nic(txn, ctx, caller, vm, nic, |_| prev.clone())?;
    Ok(None)
}

/// Last step of a detach: the host has no such interface any more; the record follows.
fn detached(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let vm = var(vars, vars::VM)?.to_string();
    let nic = var(vars, vars::NIC)?.to_string();
    let after = remove_nic(txn, ctx, caller, &vm, &nic, |v| {
        v.vm_nics.first().map(|n| n.l3_network_uuid.clone())
    })?;
    match after {
        Some(v) => Ok(answer(v)),
        None => Ok(Some(Response::Vm(VmResult::Deleted))),
    }
}

fn attached(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let vm = resource::require::<VmInstance>(txn, var(vars, vars::VM)?)?.1;
    Ok(answer(vm))
}

/// The effect request of `action` on the VM's host, or nothing to do when the VM has no
/// running domain (a Stopped VM's next start builds it from the record).
fn request(action: &str, v: &Vars) -> Result<EffectRequest, ApiError> {
    let (Some(target), Some(nic)) = (v.get(vars::TARGET), v.get(vars::NIC_SPEC)) else {
        return Ok(EffectRequest {
            receiver: RECEIVER.into(),
            action: super::flows::actions::SKIP.into(),
            payload: json!({"vmUuid": v.get(vars::VM).cloned().unwrap_or_default()}).to_string(),
        });
    };
    let target: Target = serde_json::from_str(target)
        .map_err(|e| validate::invalid_arg(format!("NIC flow var target: {e}")))?;
    let nic: Nic = serde_json::from_str(nic)
        .map_err(|e| validate::invalid_arg(format!("NIC flow var nic: {e}")))?;
    Ok(EffectRequest {
        receiver: RECEIVER.into(),
        action: action.into(),
        payload: json!({"vmUuid": var(v, vars::VM)?, "target": target, "nic": nic}).to_string(),
    })
}

/// `vm.nic.attach`.
pub const ATTACH_FLOW: FlowDef = FlowDef {
    name: ATTACH,
    steps: &[
        StepDef {
            name: "nic-call",
            action: Action::Commit(call),
            undo: Undo::Commit(unattach),
        },
        StepDef {
            name: "plug-nic",
            action: Action::Effect(|v| request(actions::ATTACH_NIC, v)),
            undo: Undo::Effect(|v| request(actions::DETACH_NIC, v)),
        },
        StepDef {
            name: "nic-attached",
            action: Action::Commit(attached),
            undo: Undo::Nothing,
        },
    ],
};

/// `vm.nic.detach`.
pub const DETACH_FLOW: FlowDef = FlowDef {
    name: DETACH,
    steps: &[
        StepDef {
            name: "nic-call",
            action: Action::Commit(call),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "unplug-nic",
            action: Action::Effect(|v| request(actions::DETACH_NIC, v)),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "nic-detached",
            action: Action::Commit(detached),
            undo: Undo::Nothing,
        },
    ],
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::matrix::base;
    use crate::testing::matrix::Harness;

    const L3B: &str = "00000000000000000000000000001b01";

    /// The base world with a measured local storage, a VM (`strategy`) on the flat L3 and a
    /// second L3 on the same L2 with 10.0.0.10-11.
    fn world(strategy: &str) -> (Harness, String, String) {
        let (mut h, i) = base();
        h.admin("ReconnectPrimaryStorage", json!({"uuid": i.local}));
        let vm = h.created(
            "CreateVmInstance",
            json!({"name": "vm", "instanceOfferingUuid": i.io, "imageUuid": i.image,
                   "l3NetworkUuids": [i.l3], "strategy": strategy}),
        );
        h.admin(
            "CreateL3Network",
            json!({"l2NetworkUuid": i.l2, "name": "second", "resourceUuid": L3B}),
        );
        h.admin(
            "AddIpRange",
            json!({"l3NetworkUuid": L3B, "name": "r", "startIp": "10.0.0.10", "endIp": "10.0.0.11",
                   "netmask": "255.255.255.0", "gateway": "10.0.0.1"}),
        );
        (h, vm, i.l3)
    }

    fn ctx() -> ApplyCtx {
        ApplyCtx {
            index: 1_000,
            term: 7,
            proposed_at_ms: 9_000_000,
        }
    }

    fn attach_vars(vm: &str, nic: &str) -> Vars {
        let command = crate::IntoCommand::command(
            VmOp::Nic(NicOp::Attach {
                vm_uuid: vm.into(),
                nic_uuid: nic.into(),
                l3_network_uuid: L3B.into(),
                static_ip: None,
                mac: "fa:12:34:56:78:9a".into(),
            }),
            Caller::admin(),
        );
        crate::flow::command_vars(&command).unwrap()
    }

    fn free_ips(h: &mut Harness) -> Vec<serde_json::Value> {
        h.admin("GetFreeIp", json!({"l3NetworkUuid": L3B, "limit": 10}))["inventories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["ip"].clone())
            .collect()
    }

    #[test]
    fn a_failed_plug_rolls_the_nic_and_its_address_back() {
        let (mut h, vm, l3) = world("InstantStart");
        let nic = "00000000000000000000000000a1c0de";
        let mut vars = attach_vars(&vm, nic);
        call(&mut h.t, &ctx(), &Caller::admin(), &mut vars).unwrap();
        let (_, rec) = resource::load::<VmInstance>(&h.t, &vm).unwrap().unwrap();
        assert_eq!(rec.vm_nics.len(), 2);
        assert_eq!(rec.vm_nics[1].ip.as_deref(), Some("10.0.0.10"));
        assert_eq!(free_ips(&mut h), vec![json!("10.0.0.11")]);
        // Running: the plug goes to the VM's host, with the NIC as the domain gets it.
        let req = request(actions::ATTACH_NIC, &vars).unwrap();
        assert_eq!(req.action, actions::ATTACH_NIC);
        let p: serde_json::Value = serde_json::from_str(&req.payload).unwrap();
        assert_eq!(p["target"]["hostUuid"], json!(rec.host_uuid));
        assert_eq!(p["nic"]["mac"], "fa:12:34:56:78:9a");
        assert_eq!(p["nic"]["deviceId"], 1);
        assert_eq!(p["nic"]["bridge"], "br_eth0");
        // The plug failed: the command's undo takes back everything it wrote.
        unattach(&mut h.t, &ctx(), &Caller::admin(), &mut vars).unwrap();
        let (_, rec) = resource::load::<VmInstance>(&h.t, &vm).unwrap().unwrap();
        assert_eq!(rec.vm_nics.len(), 1);
        assert_eq!(rec.default_l3_network_uuid.as_deref(), Some(l3.as_str()));
        assert_eq!(
            free_ips(&mut h),
            vec![json!("10.0.0.10"), json!("10.0.0.11")]
        );
        assert!(resource::find::<VmInstance>(&h.t, "vmNics.uuid", nic)
            .unwrap()
            .is_empty());
        // A repeated undo (a new leader re-running the rollback) changes nothing more.
        unattach(&mut h.t, &ctx(), &Caller::admin(), &mut vars).unwrap();
        assert_eq!(free_ips(&mut h).len(), 2);
    }

    #[test]
    fn a_stopped_vm_gets_its_nic_in_the_record_only() {
        let (mut h, vm, _) = world("CreateStopped");
        let mut vars = attach_vars(&vm, "00000000000000000000000000a1c0df");
        call(&mut h.t, &ctx(), &Caller::admin(), &mut vars).unwrap();
        assert!(!vars.contains_key(vars::TARGET));
        let req = request(actions::ATTACH_NIC, &vars).unwrap();
        assert_eq!(req.action, super::super::flows::actions::SKIP);
    }

    #[test]
    fn the_last_nic_detached_leaves_no_default_network() {
        let (mut h, vm, _) = world("CreateStopped");
        let nic = crate::params::derive_uuid(&vm, 1);
        let r = h.admin("DetachL3NetworkFromVm", json!({"vmNicUuid": nic}));
        assert_eq!(r["inventory"]["vmNics"], json!([]));
        assert!(r["inventory"].get("defaultL3NetworkUuid").is_none());
        // The next attach becomes the default, on the lowest device id.
        let r = h.admin(
            "AttachL3NetworkToVm",
            json!({"vmInstanceUuid": vm, "l3NetworkUuid": L3B}),
        );
        assert_eq!(r["inventory"]["defaultL3NetworkUuid"], L3B);
        assert_eq!(r["inventory"]["vmNics"][0]["deviceId"], 0);
    }
}
