//! Flows: an async job as an ordered list of steps. A step is either a state change committed
//! through Raft (applied deterministically on every replica) or a side effect the leader
//! performs outside apply (an agent call, a download) whose outcome is committed as the step.
//! Every step names its rollback; a failure at step k rolls back k−1…1.

pub mod schedule;
pub mod selftest;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::Serialize;

use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Response;
use crate::StateTxn;

/// What steps pass on to later steps (ids of what they created, outcomes of side effects).
pub type Vars = BTreeMap<String, String>;

/// A side effect the leader performs: which receiver, what, with what payload. The receiver
/// is handed the idempotency key (job uuid, step, direction) with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectRequest {
    /// Which receiver performs it (e.g. `selftest`, later `agent`).
    pub receiver: String,
    /// What to do.
    pub action: String,
    /// JSON text the receiver decodes.
    pub payload: String,
}

/// A committed step: reads and writes state, may set vars; the last `Some` response is the
/// job's result.
pub type CommitFn =
    fn(&mut dyn StateTxn, &ApplyCtx, &Caller, &mut Vars) -> Result<Option<Response>, ApiError>;

/// A side-effect step: the request to send, built from the vars.
pub type EffectFn = fn(&Vars) -> Result<EffectRequest, ApiError>;

/// What a step does.
pub enum Action {
    /// A state change in apply.
    Commit(CommitFn),
    /// A side effect outside apply.
    Effect(EffectFn),
}

/// How a step is undone when a later one fails.
pub enum Undo {
    /// Nothing to undo.
    Nothing,
    /// A state change in apply.
    Commit(CommitFn),
    /// A side effect outside apply.
    Effect(EffectFn),
}

/// One step.
pub struct StepDef {
    /// Shown as the task name in `GetTaskProgress`.
    pub name: &'static str,
    /// What it does.
    pub action: Action,
    /// Its rollback.
    pub undo: Undo,
}

/// A named flow.
pub struct FlowDef {
    /// Name (unique across families).
    pub name: &'static str,
    /// The steps, in order.
    pub steps: &'static [StepDef],
}

/// The var holding the call's command in a flow a call runs ([`crate::family::CallDecl::running`]).
pub const COMMAND_VAR: &str = "command";

/// The vars a call's flow starts from: its command, encoded.
pub fn command_vars(command: &crate::Command) -> Result<Vars, ApiError> {
    let text = serde_json::to_string(command)
        .map_err(|e| crate::validate::invalid_arg(format!("cannot encode the call: {e}")))?;
    Ok(Vars::from([(COMMAND_VAR.to_string(), text)]))
}

/// Apply the call's command (the first step of a call's flow); a refusal fails the step.
pub fn apply_call_command(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    vars: &Vars,
) -> Result<Response, ApiError> {
    let text = vars
        .get(COMMAND_VAR)
        .ok_or_else(|| crate::validate::invalid_arg("the flow has no call command"))?;
    let command: crate::Command = serde_json::from_str(text)
        .map_err(|e| crate::validate::invalid_arg(format!("undecodable call command: {e}")))?;
    match crate::registry::apply(txn, ctx, command)? {
        Response::Refused(e) => Err(e),
        r => Ok(r),
    }
}
