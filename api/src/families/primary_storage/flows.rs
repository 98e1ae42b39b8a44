//! `ReconnectPrimaryStorage` as a flow the leader runs (ZStack's reconnect: contact the hosts
//! now, refresh capacity and status, answer the inventory):
//!
//! 1. `reconnect-primary-storage` (commit): the call's command sets the storage `Connecting`
//!    and names the hosts to ask ([`hosts_to_ask`]); refused with `PS.1003` when there are
//!    none. Undo: `Disconnected` (the tracker retries every round).
//! 2. `measure` (effect, receiver `primarystorage`): every host's agent prepares and measures
//!    the storage, exactly as the storage tracker asks it; the answers are the step's outcome,
//!    one per host, healthy or with the agent's reason.
//! 3. `primary-storage-connected` (commit): the answers add up ([`report_of`]) to the
//!    storage's capacity and `Connected`, or, when no host reached it, to `PS.1003` naming
//!    every host's reason (and the undo of step 1 leaves it `Disconnected`).

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;

use super::capacity::hosts_to_ask;
use super::capacity::report_of;
use super::capacity::Measured;
use super::capacity::StorageOnHost;
use super::model::apply;
use super::model::PrimaryStorage;
use super::model::PrimaryStorageOp;
use super::model::PrimaryStorageResult;
use super::model::PsStatus;
use crate::flow::Action;
use crate::flow::EffectRequest;
use crate::flow::FlowDef;
use crate::flow::StepDef;
use crate::flow::Undo;
use crate::flow::Vars;
use crate::resource;
use crate::validate;
use crate::wire::errors::Code;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Response;
use crate::StateTxn;

/// ReconnectPrimaryStorage's flow.
pub const RECONNECT: &str = "primary_storage.reconnect";
/// The receiver of its side effect (the leader's client of host agents).
pub const RECEIVER: &str = "primarystorage";
/// Effect: prepare and measure the storage on every host named.
pub const MEASURE: &str = "measure";

/// Vars of the flow.
pub mod vars {
    /// The storage.
    pub const PS: &str = "ps_uuid";
    /// The hosts to ask (JSON list of [`super::StorageOnHost`]).
    pub const TARGETS: &str = "targets";
    /// Their answers (JSON list of [`super::HostAnswer`]), set by `measure`.
    pub const ANSWERS: &str = "answers";
}

/// What one host's agent answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostAnswer {
    /// The host asked.
    pub host_uuid: String,
    /// Its management address (named in errors).
    pub management_ip: String,
    /// Bytes, when healthy.
    pub total: u64,
    /// Bytes, when healthy.
    pub available: u64,
    /// Why the host cannot reach the storage; `None` when healthy.
    pub error: Option<String>,
}

impl HostAnswer {
    /// The answer as the capacity rules read it.
    pub fn measured(&self) -> Measured {
        match &self.error {
            None => Ok((self.total, self.available)),
            Some(e) => Err(e.clone()),
        }
    }

    /// The answer of `host` measuring `m`.
    pub fn of(host: &StorageOnHost, m: Measured) -> Self {
        let (total, available, error) = match m {
            Ok((t, a)) => (t, a, None),
            Err(e) => (0, 0, Some(e)),
        };
        HostAnswer {
            host_uuid: host.host_uuid.clone(),
            management_ip: host.management_ip.clone(),
            total,
            available,
            error,
        }
    }
}

fn var<'a>(v: &'a Vars, k: &str) -> Result<&'a str, ApiError> {
    v.get(k)
        .map(String::as_str)
        .ok_or_else(|| validate::invalid_arg(format!("primary storage flow without {k}")))
}

fn reconnect(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let resp = crate::flow::apply_call_command(txn, ctx, vars)?;
    let p = match resp.innermost() {
        Response::PrimaryStorage(PrimaryStorageResult::Inventory(p)) => p.clone(),
        other => {
            return Err(validate::invalid_arg(format!(
                "ReconnectPrimaryStorage answered {other:?}, not a primary storage"
            )))
        }
    };
    let targets = hosts_to_ask(txn, &p)?;
    vars.insert(vars::PS.into(), p.uuid.clone());
    vars.insert(
        vars::TARGETS.into(),
        serde_json::to_string(&targets).map_err(|e| validate::invalid_arg(e.to_string()))?,
    );
    Ok(Some(resp))
}

fn mark_disconnected(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let Some(uuid) = vars.get(vars::PS) else {
        return Ok(None);
    };
    if let Some((owner, mut p)) = resource::load::<PrimaryStorage>(txn, uuid)? {
        // The tracker may have measured it meanwhile; only the flow's own status is undone.
        if p.status == PsStatus::Connecting {
            p.status = PsStatus::Disconnected;
            p.last_op_date = ctx.proposed_at_ms;
            resource::save(txn, &owner, &p)?;
        }
    }
    Ok(None)
}

fn measure_request(v: &Vars) -> Result<EffectRequest, ApiError> {
    let targets: serde_json::Value = serde_json::from_str(var(v, vars::TARGETS)?)
        .map_err(|e| validate::invalid_arg(format!("undecodable hosts to ask: {e}")))?;
    Ok(EffectRequest {
        receiver: RECEIVER.into(),
        action: MEASURE.into(),
        payload: json!({"primaryStorageUuid": var(v, vars::PS)?, "targets": targets}).to_string(),
    })
}

fn connected(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let uuid = var(vars, vars::PS)?.to_string();
    let answers: Vec<HostAnswer> = serde_json::from_str(var(vars, vars::ANSWERS)?)
        .map_err(|e| validate::invalid_arg(format!("undecodable host answers: {e}")))?;
    let (_, p) = resource::require::<PrimaryStorage>(txn, &uuid)?;
    let measured: Vec<(String, Measured)> = answers
        .iter()
        .map(|a| (a.host_uuid.clone(), a.measured()))
        .collect();
    let report = report_of(p.ps_type, &measured);
    let Some((capacity, PsStatus::Connected)) = report else {
        let why: Vec<String> = answers
            .iter()
            .map(|a| {
                format!(
                    "host[uuid:{}, ip:{}]: {}",
                    a.host_uuid,
                    a.management_ip,
                    a.error.as_deref().unwrap_or("no answer")
                )
            })
            .collect();
        return Err(validate::refuse(
            Code::PrimaryStorageDisconnected,
            format!(
                "unable to reconnect the {} primary storage[uuid:{}, name:{}]: no host can reach it ({})",
                p.ps_type.as_str(),
                p.uuid,
                p.name,
                if why.is_empty() {
                    "no host answered".to_string()
                } else {
                    why.join("; ")
                }
            ),
        ));
    };
    let out = apply(
        txn,
        ctx,
        caller,
        PrimaryStorageOp::Report {
            uuid,
            capacity,
            status: PsStatus::Connected,
        },
    )?;
    Ok(Some(Response::PrimaryStorage(out)))
}

/// `primary_storage.reconnect`.
pub const RECONNECT_FLOW: FlowDef = FlowDef {
    name: RECONNECT,
    steps: &[
        StepDef {
            name: "reconnect-primary-storage",
            action: Action::Commit(reconnect),
            undo: Undo::Commit(mark_disconnected),
        },
        StepDef {
            name: "measure",
            action: Action::Effect(measure_request),
            undo: Undo::Nothing,
        },
        StepDef {
            name: "primary-storage-connected",
            action: Action::Commit(connected),
            undo: Undo::Nothing,
        },
    ],
};
