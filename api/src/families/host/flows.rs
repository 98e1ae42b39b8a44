//! Connecting a host the ZStack way, as flows the leader runs (spec 03 §4, §12.1):
//!
//! `host.add-kvm` (AddKVMHost)
//! 1. `create-host` (commit): the call's command inserts the host `Connecting`; undo deletes
//!    the record.
//! 2. `connect-agent` (effect, receiver `agent`): the leader reaches the host's agent —
//!    attaching one already installed, else installing it over SSH with the call's
//!    credentials — and reads the host's facts; undo detaches the agent and removes what the
//!    step installed.
//! 3. `host-connected` (commit): refuses a host without hardware virtualisation (unless the
//!    libvirt test driver is allowed, `kvm/allowTestDriver`), then `Connected` with the capacity
//!    the agent reported.
//!
//! `host.reconnect` (ReconnectHost) runs the same 2 and 3 after its command set the host
//! `Connecting`; its rollback leaves the host `Disconnected` (the tracker retries).
//!
//! `host.change-state` (ChangeHostState): the call's command; for `maintain` the host is
//! PreMaintenance, then its VMs are evacuated through the vm family's services
//! (`vm.evacuation-plan`, its effect, `vm.evacuation-finish`, spec 03 §4.3), then Maintenance;
//! when a VM could neither migrate nor stop (and `host/maintenanceMode.ignoreError` is false)
//! the host goes back to its state before, the VMs that did move staying where they went.
//!
//! A host is never `Connected` with capacity it did not report, and a failed add leaves no
//! record and no agent behind.

use serde_json::json;

use super::model::take_facts;
use super::model::Host;
use super::model::HostFacts;
use super::model::HostResult;
use super::model::HostStatus;
use super::model::KIND;
use crate::flow::Action;
use crate::flow::EffectRequest;
use crate::flow::FlowDef;
use crate::flow::StepDef;
use crate::flow::Undo;
use crate::flow::Vars;
use crate::resource;
use crate::resource::relations;
use crate::validate;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Response;
use crate::StateTxn;

/// AddKVMHost's flow.
pub const ADD_KVM: &str = "host.add-kvm";
/// DeleteHost's flow.
pub const DELETE: &str = "host.delete";
/// ReconnectHost's flow.
pub const RECONNECT: &str = "host.reconnect";
/// ChangeHostState's flow.
pub const CHANGE_STATE: &str = "host.change-state";
/// The receiver of the agent steps (the leader's agent client).
pub const RECEIVER: &str = "agent";
/// Effect: reach (or install) the host's agent and read its facts.
pub const CONNECT: &str = "connect-host";
/// Effect: detach the agent and remove what `connect-host` installed.
pub const DISCONNECT: &str = "disconnect-host";

/// Vars the agent step answers.
pub mod vars {
    /// The host's facts (JSON of [`super::HostFacts`]).
    pub const FACTS: &str = "facts";
    /// `kvm`, `test`, `simulated` or `none` (`proto::agent` HostFacts.virtualization).
    pub const VIRTUALIZATION: &str = "virtualization";
    /// `true` when the step installed the agent (so its rollback removes it).
    pub const DEPLOYED: &str = "deployed";
    /// The host the flow connects.
    pub const HOST: &str = "host_uuid";
    /// Where it is and how to log in (JSON; the password sealed).
    pub const ENDPOINT: &str = "endpoint";
    /// ChangeHostState: the host's state before the call.
    pub const PREV_STATE: &str = "prev_state";
    /// ChangeHostState: set when the event is `maintain`.
    pub const MAINTAIN: &str = "maintain";
    /// ChangeHostState: the evacuation's effect request (`vm.evacuation-plan`'s answer).
    pub const EVACUATION: &str = "evacuation";
    /// ChangeHostState: set by the evacuation effect, what became of each VM.
    pub const EVACUATED: &str = "evacuated";
    /// ChangeHostState: the VMs that stayed, one per line.
    pub const FAILURES: &str = "failures";
}

fn var<'a>(v: &'a Vars, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .map(String::as_str)
        .ok_or_else(|| validate::invalid_arg(format!("host flow without {k}")))
}

fn host_of(resp: &Response) -> Result<&Host, ApiError> {
    match resp.innermost() {
        Response::Host(HostResult::Inventory(h)) => Ok(h),
        other => Err(validate::invalid_arg(format!(
            "the host call answered {other:?}, not a host"
        ))),
    }
}

/// Step 1 of both flows: the call's own command.
fn apply_call(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let resp = crate::flow::apply_call_command(txn, ctx, vars)?;
    let h = host_of(&resp)?;
    vars.insert(vars::HOST.into(), h.uuid.clone());
    vars.insert(vars::ENDPOINT.into(), endpoint_json(h));
    Ok(Some(resp))
}

fn endpoint_json(h: &Host) -> String {
    json!({
        "managementIp": h.management_ip,
        "sshPort": h.ssh_port,
        "username": h.username,
        "password": h.password.as_str(),
    })
    .to_string()
}

/// DeleteHost's command, after noting where the host's agent is (so step 2 can detach it).
fn delete_call(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let text = var(vars, crate::flow::COMMAND_VAR)?;
    let command: crate::Command = serde_json::from_str(text)
        .map_err(|e| validate::invalid_arg(format!("undecodable call command: {e}")))?;
    if let crate::Command::Host(c) = command.innermost() {
        if let super::model::HostOp::Delete { uuid } = &*c.op {
            if let Some((_, h)) = resource::load::<Host>(txn, uuid)? {
                vars.insert(vars::HOST.into(), h.uuid.clone());
                vars.insert(vars::ENDPOINT.into(), endpoint_json(&h));
            }
        }
    }
    Ok(Some(crate::flow::apply_call_command(txn, ctx, vars)?))
}

/// The detach request of a deleted host (nothing when the host was absent already).
fn detach_deleted(v: &Vars) -> Result<EffectRequest, ApiError> {
    if !v.contains_key(vars::HOST) {
        return Ok(EffectRequest {
            receiver: RECEIVER.into(),
            action: DISCONNECT.into(),
            payload: json!({"call": "DeleteHost", "hostUuid": "", "endpoint": null}).to_string(),
        });
    }
    agent_request(DISCONNECT, "DeleteHost", v)
}

fn delete_created(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    if let Some(uuid) = vars.get(vars::HOST) {
        relations::delete(txn, ctx, KIND, uuid)?;
    }
    Ok(None)
}

fn mark_disconnected(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::HOST)?;
    if let Some((owner, mut h)) = resource::load::<Host>(txn, uuid)? {
        if h.status == HostStatus::Connecting {
            h.status = HostStatus::Disconnected;
            h.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &h)?;
        }
    }
    Ok(None)
}

/// The agent step's request: where the host is and the credentials to install the agent
/// with (the password stays sealed; only the leader's receiver opens it).
fn agent_request(action: &str, call: &str, txn_vars: &Vars) -> Result<EffectRequest, ApiError> {
    Ok(EffectRequest {
        receiver: RECEIVER.into(),
        action: action.into(),
        payload: json!({
            "call": call,
            "hostUuid": var(txn_vars, vars::HOST)?,
            "endpoint": serde_json::from_str::<serde_json::Value>(var(txn_vars, vars::ENDPOINT)?)
                .map_err(|e| validate::invalid_arg(format!("undecodable host endpoint: {e}")))?,
            "deployed": txn_vars.get(vars::DEPLOYED).map(String::as_str) == Some("true"),
        })
        .to_string(),
    })
}

fn refused(code: Code, details: String) -> ApiError {
    ApiError::Refused(Refusal::new(code, details))
}

fn connected(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    vars: &Vars,
    code: Code,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::HOST)?;
    let facts: HostFacts = serde_json::from_str(var(vars, vars::FACTS)?)
        .map_err(|e| validate::invalid_arg(format!("undecodable host facts: {e}")))?;
    let virt = var(vars, vars::VIRTUALIZATION)?;
    let allowed = virt == "kvm"
        || (matches!(virt, "test" | "simulated")
            && crate::settings::value(txn, "kvm", "allowTestDriver")? == "true");
    if !allowed {
        return Err(refused(
            code,
            format!(
                "host[uuid:{uuid}] offers no hardware virtualisation (its agent reports virtualization={virt}): enable VT-x/AMD-V and load the kvm module{}",
                if matches!(virt, "test" | "simulated") {
                    ", or set global config kvm/allowTestDriver to true for libvirt's test driver"
                } else {
                    ""
                }
            ),
        ));
    }
    let Some((owner, mut h)) = resource::load::<Host>(txn, uuid)? else {
        return Err(refused(
            code,
            format!("host[uuid:{uuid}] was deleted meanwhile"),
        ));
    };
    h.status = HostStatus::Connected;
    h.last_op_date = ctx.proposed_at_ms;
    take_facts(txn, &mut h, &facts)?;
    resource::save(txn, &owner, &h)?;
    Ok(Some(Response::Host(HostResult::Inventory(Box::new(h)))))
}

/// `host.add-kvm`.
pub const ADD_KVM_FLOW: FlowDef = FlowDef {
    name: ADD_KVM,
    steps: &[
        StepDef {
            name: "create-host",
            action: Action::Commit(apply_call),
            undo: Undo::Commit(delete_created),
        },
        StepDef {
            name: "connect-agent",
            action: Action::Effect(|v| agent_request(CONNECT, "AddKVMHost", v)),
            undo: Undo::Effect(|v| agent_request(DISCONNECT, "AddKVMHost", v)),
        },
        StepDef {
            name: "host-connected",
            action: Action::Commit(|t, c, _, v| connected(t, c, v, Code::HostAdd)),
            undo: Undo::Nothing,
        },
    ],
};

/// `host.delete`: the record goes first (the host is Disconnected or in maintenance, so no
/// leader drives it meanwhile), then its agent forgets the binding so the machine can be added
/// again; an agent that cannot be reached keeps it until it is re-added by hand.
pub const DELETE_FLOW: FlowDef = FlowDef {
    name: DELETE,
    steps: &[
        StepDef {
            name: "delete-host",
            action: Action::Commit(delete_call),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "detach-agent",
            action: Action::Effect(detach_deleted),
            undo: Undo::Nothing,
        },
    ],
};

/// `host.reconnect`.
pub const RECONNECT_FLOW: FlowDef = FlowDef {
    name: RECONNECT,
    steps: &[
        StepDef {
            name: "reconnect-host",
            action: Action::Commit(apply_call),
            undo: Undo::Commit(mark_disconnected),
        },
        StepDef {
            name: "connect-agent",
            action: Action::Effect(|v| agent_request(CONNECT, "ReconnectHost", v)),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "host-connected",
            action: Action::Commit(|t, c, _, v| connected(t, c, v, Code::HostReconnect)),
            undo: Undo::Nothing,
        },
    ],
};

/// Step 1 of ChangeHostState: the state before, then the call's command.
fn change_state_call(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let command: crate::Command = serde_json::from_str(var(vars, crate::flow::COMMAND_VAR)?)
        .map_err(|e| validate::invalid_arg(format!("undecodable call command: {e}")))?;
    if let crate::Command::Host(c) = command.innermost() {
        if let super::model::HostOp::ChangeState { uuid, event } = &*c.op {
            if let Some((_, h)) = resource::load::<Host>(txn, uuid)? {
                vars.insert(vars::PREV_STATE.into(), format!("{:?}", h.state));
            }
            if *event == super::model::HostStateEvent::Maintain {
                vars.insert(vars::MAINTAIN.into(), "1".into());
            }
        }
    }
    apply_call(txn, ctx, caller, vars)
}

fn host_state(name: &str) -> Result<super::model::HostState, ApiError> {
    serde_json::from_value(json!(name))
        .map_err(|e| validate::invalid_arg(format!("host flow state {name}: {e}")))
}

/// Undo of step 1: the host back in its state before the call.
fn restore_state(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let (Some(uuid), Some(prev)) = (vars.get(vars::HOST), vars.get(vars::PREV_STATE)) else {
        return Ok(None);
    };
    let prev = host_state(prev)?;
    if resource::load::<Host>(txn, uuid)?.is_some() {
        crate::resource::generic::modify(txn, ctx, uuid, |_, h: &mut Host| {
            h.state = prev;
            Ok(())
        })?;
    }
    Ok(None)
}

/// Step 2: the vm family claims the host's VMs (a no-op plan unless maintaining).
fn plan_evacuation(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let host = var(vars, vars::HOST)?.to_string();
    let out = crate::registry::serve(
        txn,
        ctx,
        caller,
        "vm.evacuation-plan",
        &json!({"hostUuid": host, "evacuate": vars.contains_key(vars::MAINTAIN)}),
    )?;
    vars.insert(vars::EVACUATION.into(), out.to_string());
    Ok(None)
}

fn evacuation_payload(vars: &Vars) -> Result<Option<String>, ApiError> {
    let Some(text) = vars.get(vars::EVACUATION) else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| validate::invalid_arg(format!("host flow evacuation: {e}")))?;
    Ok(v["payload"].as_str().map(str::to_string))
}

/// Undo of step 2: what is still claimed goes back.
fn abort_evacuation(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    if let Some(plan) = evacuation_payload(vars)? {
        crate::registry::serve(
            txn,
            ctx,
            caller,
            "vm.evacuation-abort",
            &json!({"plan": plan}),
        )?;
    }
    Ok(None)
}

/// Step 3: the plan carried out by its receiver.
fn evacuate(v: &Vars) -> Result<EffectRequest, ApiError> {
    let r: serde_json::Value = serde_json::from_str(var(v, vars::EVACUATION)?)
        .map_err(|e| validate::invalid_arg(format!("host flow evacuation: {e}")))?;
    let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
    Ok(EffectRequest {
        receiver: s("receiver"),
        action: s("action"),
        payload: s("payload"),
    })
}

/// Step 4: the outcome recorded, whatever it is (migrated VMs stay migrated).
fn finish_evacuation(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let Some(plan) = evacuation_payload(vars)? else {
        return Ok(None);
    };
    let out = crate::registry::serve(
        txn,
        ctx,
        caller,
        "vm.evacuation-finish",
        &json!({"plan": plan, "results": vars.get(vars::EVACUATED)}),
    )?;
    let failures: Vec<String> = out["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    if !failures.is_empty() {
        vars.insert(vars::FAILURES.into(), failures.join("\n"));
    }
    Ok(None)
}

/// Step 5: Maintenance, or the maintenance refused (the rollback restores the state before).
fn maintained(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::HOST)?.to_string();
    if !vars.contains_key(vars::MAINTAIN) {
        let (_, h) = resource::require::<Host>(txn, &uuid)?;
        return Ok(Some(Response::Host(HostResult::Inventory(Box::new(h)))));
    }
    if let Some(f) = vars.get(vars::FAILURES) {
        if crate::settings::value(txn, "host", "maintenanceMode.ignoreError")? != "true" {
            return Err(validate::op_failure(format!(
                "unable to enter maintenance mode: host[uuid:{uuid}] still has VMs that could neither migrate nor stop: {}",
                f.replace('\n', "; ")
            )));
        }
    }
    let h = crate::resource::generic::modify(txn, ctx, &uuid, |_, h: &mut Host| {
        h.state = super::model::HostState::Maintenance;
        Ok(())
    })?;
    Ok(Some(Response::Host(HostResult::Inventory(Box::new(h)))))
}

/// `host.change-state`.
pub const CHANGE_STATE_FLOW: FlowDef = FlowDef {
    name: CHANGE_STATE,
    steps: &[
        StepDef {
            name: "change-host-state",
            action: Action::Commit(change_state_call),
            undo: Undo::Commit(restore_state),
        },
        StepDef {
            name: "plan-evacuation",
            action: Action::Commit(plan_evacuation),
            undo: Undo::Commit(abort_evacuation),
        },
        StepDef {
            name: "evacuate-vms",
            action: Action::Effect(evacuate),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "record-evacuation",
            action: Action::Commit(finish_evacuation),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "host-maintained",
            action: Action::Commit(maintained),
            undo: Undo::Nothing,
        },
    ],
};
