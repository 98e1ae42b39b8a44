//! ImageStore backup storage as flows the leader runs, the way AddKVMHost connects a host
//! (`host/flows.rs`): the store's server runs `zsagent` (the same binary and install as a KVM
//! host's; one agent serves both roles on a machine that is both), reached at `hostname`, and
//! installed over SSH with the call's credentials when none answers there.
//!
//! `backup-storage.add-image-store` (AddImageStoreBackupStorage)
//! 1. `create-backup-storage` (commit): the call's command inserts the store `Connecting`;
//!    undo deletes the record.
//! 2. `connect-agent` (effect, receiver `imagestore-agent`): `ConnectImageStore` on the agent
//!    at `hostname` — installing the agent first when none answers — which creates the image
//!    directory and measures it; undo has the agent forget the store and removes an agent the
//!    step installed.
//! 3. `backup-storage-connected` (commit): `Connected` with the capacity the agent measured,
//!    remembering whether the add installed the agent.
//!
//! `backup-storage.delete` (DeleteBackupStorage): the records go first (images kept nowhere
//! else with them; the files stay, spec 03 gaps #2), then the agent forgets the store and, when
//! the store's add installed it and it serves nothing else (no host bound, no other store),
//! the agent is removed.
//!
//! A store is never `Connected` with capacity its agent did not measure, and a failed add
//! leaves no record and no agent it installed behind.

use serde_json::json;

use super::model::BackupStorage;
use super::model::BackupStorageOp;
use super::model::BackupStorageResult;
use super::model::BsStatus;
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
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Response;
use crate::StateTxn;

/// AddImageStoreBackupStorage's flow.
pub const ADD_IMAGE_STORE: &str = "backup-storage.add-image-store";
/// DeleteBackupStorage's flow.
pub const DELETE: &str = "backup-storage.delete";
/// The receiver of the agent steps (the leader's agent client and installer).
pub const RECEIVER: &str = "imagestore-agent";
/// Effect: reach (or install) the store's agent, connect and measure its directory.
pub const CONNECT: &str = "connect-image-store";
/// Effect: the agent forgets the store; an agent the store's add installed is removed when
/// nothing else uses it.
pub const DISCONNECT: &str = "disconnect-image-store";

/// Vars of the flows.
pub mod vars {
    /// The backup storage the flow works on.
    pub const BS: &str = "bs_uuid";
    /// Its image directory.
    pub const URL: &str = "url";
    /// Where its server is and how to log in (JSON; the password sealed).
    pub const ENDPOINT: &str = "endpoint";
    /// `true` when the agent was installed for this store (by this flow's step 2, or, in
    /// the delete flow, by the store's add).
    pub const DEPLOYED: &str = "deployed";
    /// Bytes of the directory's file system (set by step 2).
    pub const TOTAL: &str = "total";
    /// Bytes free there (set by step 2).
    pub const AVAILABLE: &str = "available";
}

fn var<'a>(v: &'a Vars, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .map(String::as_str)
        .ok_or_else(|| validate::invalid_arg(format!("backup storage flow without {k}")))
}

fn bytes(v: &Vars, k: &str) -> Result<u64, ApiError> {
    var(v, k)?
        .parse()
        .map_err(|e| validate::invalid_arg(format!("backup storage flow: bad {k}: {e}")))
}

/// The endpoint in the shape the agent receiver shares with hosts (`managementIp` = the
/// store's `hostname`).
fn endpoint_json(b: &BackupStorage) -> String {
    json!({
        "managementIp": b.hostname,
        "sshPort": b.ssh_port,
        "username": b.username,
        "password": b.password.as_str(),
    })
    .to_string()
}

fn note(vars: &mut Vars, b: &BackupStorage) {
    vars.insert(vars::BS.into(), b.uuid.clone());
    vars.insert(vars::URL.into(), b.url.clone());
    vars.insert(vars::ENDPOINT.into(), endpoint_json(b));
}

/// Step 1 of the add: the call's own command.
fn create(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let resp = crate::flow::apply_call_command(txn, ctx, vars)?;
    let b = match resp.innermost() {
        Response::BackupStorage(BackupStorageResult::Inventory(b)) => b.clone(),
        other => {
            return Err(validate::invalid_arg(format!(
                "AddImageStoreBackupStorage answered {other:?}, not a backup storage"
            )))
        }
    };
    // Step 2 answers whether it installed the agent.
    note(vars, &b);
    Ok(Some(resp))
}

fn delete_created(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    if let Some(uuid) = vars.get(vars::BS) {
        relations::delete(txn, ctx, KIND, uuid)?;
    }
    Ok(None)
}

/// The agent steps' request (the password stays sealed; only the leader's receiver opens it).
fn agent_request(action: &str, call: &str, v: &Vars) -> Result<EffectRequest, ApiError> {
    let endpoint: serde_json::Value = serde_json::from_str(var(v, vars::ENDPOINT)?)
        .map_err(|e| validate::invalid_arg(format!("undecodable store endpoint: {e}")))?;
    Ok(EffectRequest {
        receiver: RECEIVER.into(),
        action: action.into(),
        payload: json!({
            "call": call,
            "backupStorageUuid": var(v, vars::BS)?,
            "url": var(v, vars::URL)?,
            "endpoint": endpoint,
            "deployed": v.get(vars::DEPLOYED).map(String::as_str) == Some("true"),
        })
        .to_string(),
    })
}

/// Step 3 of the add.
fn connected(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::BS)?;
    let total = bytes(vars, vars::TOTAL)?;
    let available = bytes(vars, vars::AVAILABLE)?.min(total);
    let deployed = vars.get(vars::DEPLOYED).map(String::as_str) == Some("true");
    let Some((owner, mut b)) = resource::load::<BackupStorage>(txn, uuid)? else {
        return Err(validate::op_failure(format!(
            "backup storage[uuid:{uuid}] was deleted meanwhile"
        )));
    };
    b.status = BsStatus::Connected;
    b.total_capacity = total;
    b.available_capacity = available;
    b.agent_installed = deployed;
    b.last_op_date = ctx.proposed_at_ms;
    resource::save(txn, &owner, &b)?;
    Ok(Some(Response::BackupStorage(
        BackupStorageResult::Inventory(Box::new(b)),
    )))
}

/// DeleteBackupStorage's command, after noting the store's agent (so step 2 can detach it).
fn delete_call(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let text = var(vars, crate::flow::COMMAND_VAR)?;
    let command: crate::Command = serde_json::from_str(text)
        .map_err(|e| validate::invalid_arg(format!("undecodable call command: {e}")))?;
    if let crate::Command::BackupStorage(c) = command.innermost() {
        if let BackupStorageOp::Delete { uuid } = &*c.op {
            if let Some((_, b)) = resource::load::<BackupStorage>(txn, uuid)? {
                note(vars, &b);
                vars.insert(vars::DEPLOYED.into(), b.agent_installed.to_string());
            }
        }
    }
    Ok(Some(crate::flow::apply_call_command(txn, ctx, vars)?))
}

/// The detach request of a deleted store (nothing to do when it was absent already).
fn detach_deleted(v: &Vars) -> Result<EffectRequest, ApiError> {
    if !v.contains_key(vars::BS) {
        return Ok(EffectRequest {
            receiver: RECEIVER.into(),
            action: DISCONNECT.into(),
            payload: json!({"call": "DeleteBackupStorage", "backupStorageUuid": "", "url": "",
                "endpoint": null, "deployed": false})
            .to_string(),
        });
    }
    agent_request(DISCONNECT, "DeleteBackupStorage", v)
}

/// `backup-storage.add-image-store`.
pub const ADD_IMAGE_STORE_FLOW: FlowDef = FlowDef {
    name: ADD_IMAGE_STORE,
    steps: &[
        StepDef {
            name: "create-backup-storage",
            action: Action::Commit(create),
            undo: Undo::Commit(delete_created),
        },
        StepDef {
            name: "connect-agent",
            action: Action::Effect(|v| agent_request(CONNECT, "AddImageStoreBackupStorage", v)),
            undo: Undo::Effect(|v| agent_request(DISCONNECT, "AddImageStoreBackupStorage", v)),
        },
        StepDef {
            name: "backup-storage-connected",
            action: Action::Commit(connected),
            undo: Undo::Nothing,
        },
    ],
};

/// `backup-storage.delete`.
pub const DELETE_FLOW: FlowDef = FlowDef {
    name: DELETE,
    steps: &[
        StepDef {
            name: "delete-backup-storage",
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
