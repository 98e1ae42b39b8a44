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
