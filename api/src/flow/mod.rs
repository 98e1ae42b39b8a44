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
