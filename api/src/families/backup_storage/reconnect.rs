//! `ReconnectBackupStorage` as a flow the leader runs (ZStack's reconnect: contact the image
//! store now, refresh capacity and status, answer the inventory):
//!
//! 1. `reconnect-backup-storage` (commit): the call's command sets the store `Connecting`.
//!    Undo: `Disconnected` (the image store tracker retries every round).
//! 2. `connect` (effect, receiver `imagestore`, the same leader client the image flows and the
//!    image store tracker use): the agent at the store's hostname connects its directory and
//!    measures it (`statvfs`); its answer, or why there is none, is the step's outcome.
//! 3. `backup-storage-connected` (commit): `Connected` with the measured capacity, or the
//!    call fails with `SYS.1006` naming the cause (and step 1's undo leaves it `Disconnected`).

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;

use super::model::BackupStorage;
use super::model::BackupStorageResult;
use super::model::BsStatus;
use crate::flow::Action;
use crate::flow::EffectRequest;
use crate::flow::FlowDef;
use crate::flow::StepDef;
use crate::flow::Undo;
use crate::flow::Vars;
use crate::resource;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Response;
use crate::StateTxn;

/// ReconnectBackupStorage's flow.
pub const RECONNECT: &str = "backup_storage.reconnect";
/// The receiver of its side effect: the leader's image store client (also the image flows').
pub const RECEIVER: &str = "imagestore";
/// Effect: connect the store's directory on its agent and measure it.
pub const CONNECT: &str = "connect";

/// Vars of the flow.
pub mod vars {
    /// The store.
    pub const BS: &str = "bs_uuid";
    /// What the agent answered (JSON of [`super::StoreAnswer`]), set by `connect`.
    pub const ANSWER: &str = "answer";
}

/// What the image store's agent answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreAnswer {
    /// Bytes, when connected.
    pub total: u64,
    /// Bytes, when connected.
    pub available: u64,
    /// Why the store cannot be reached; `None` when connected.
    pub error: Option<String>,
}

fn var<'a>(v: &'a Vars, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .map(String::as_str)
        .ok_or_else(|| validate::invalid_arg(format!("backup storage flow without {k}")))
}

fn reconnect(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let resp = crate::flow::apply_call_command(txn, ctx, vars)?;
    let uuid = match resp.innermost() {
        Response::BackupStorage(BackupStorageResult::Inventory(b)) => b.uuid.clone(),
        other => {
            return Err(validate::invalid_arg(format!(
                "ReconnectBackupStorage answered {other:?}, not a backup storage"
            )))
        }
    };
    vars.insert(vars::BS.into(), uuid);
    Ok(Some(resp))
}

fn mark_disconnected(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let Some(uuid) = vars.get(vars::BS) else {
        return Ok(None);
    };
    if let Some((owner, mut b)) = resource::load::<BackupStorage>(txn, uuid)? {
        // The tracker may have measured it meanwhile; only the flow's own status is undone.
        if b.status == BsStatus::Connecting {
            b.status = BsStatus::Disconnected;
            b.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &b)?;
        }
    }
    Ok(None)
}

fn connect_request(v: &Vars) -> Result<EffectRequest, ApiError> {
    Ok(EffectRequest {
        receiver: RECEIVER.into(),
        action: CONNECT.into(),
        payload: json!({"backupStorageUuid": var(v, vars::BS)?}).to_string(),
    })
}

fn connected(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::BS)?.to_string();
    let a: StoreAnswer = serde_json::from_str(var(vars, vars::ANSWER)?)
        .map_err(|e| validate::invalid_arg(format!("undecodable image store answer: {e}")))?;
    let (_, b) = resource::require::<BackupStorage>(txn, &uuid)?;
    if let Some(e) = a.error {
        return Err(validate::op_failure(format!(
            "unable to reconnect backup storage[uuid:{}, name:{}] at {}: {e}",
            b.uuid, b.name, b.hostname
        )));
    }
    // Not the tracker's `Report`: that refuses a `Connecting` store, which this flow's own
    // step 1 made it.
    let Some((owner, mut b)) = resource::load::<BackupStorage>(txn, &uuid)? else {
        return Err(validate::op_failure(format!(
            "backup storage[uuid:{uuid}] was deleted meanwhile"
        )));
    };
    b.status = BsStatus::Connected;
    b.total_capacity = a.total;
    b.available_capacity = a.available.min(a.total);
    b.last_op_date = ctx.proposed_at_ms;
    resource::save(txn, &owner, &b)?;
    Ok(Some(Response::BackupStorage(
        BackupStorageResult::Inventory(Box::new(b)),
    )))
}

/// `backup_storage.reconnect`.
pub const RECONNECT_FLOW: FlowDef = FlowDef {
    name: RECONNECT,
    steps: &[
        StepDef {
            name: "reconnect-backup-storage",
            action: Action::Commit(reconnect),
            undo: Undo::Commit(mark_disconnected),
        },
        StepDef {
            name: "connect",
            action: Action::Effect(connect_request),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "backup-storage-connected",
            action: Action::Commit(connected),
            undo: Undo::Nothing,
        },
    ],
};
