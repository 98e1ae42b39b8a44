//! The flow engine's self-test: a three-step flow whose middle step is a side effect, run
//! against a receiver the operator (or a chaos test) supplies. It proves on a live cluster
//! what the engine promises: steps commit once, a side effect is performed once per
//! idempotency key even across leader changes, and a failure at step k leaves no trace of the
//! steps before it. It is declared by the job family (the engine's own); its records live in
//! their own table and are visible only through the node's admin endpoint
//! (`/cluster/flow-selftest`), never through the ZStack API.
//!
//! Steps (vars in, vars out):
//! 1. `mark-begin` (commit): writes `<key>/begin`; undo deletes it.
//! 2. `call-receiver` (effect `selftest/apply` with `{key, pause_ms}`): the receiver records
//!    the key and may answer `{"token": ...}`; undo is the effect `selftest/revert`.
//! 3. `mark-end` (commit): writes `<key>/end` with the receiver's token; refused when the
//!    input `fail_at` names step 3 (so tests can inject a failure after the side effect).
//!
//! `fail_at = 1` refuses step 1 itself (nothing to roll back); `fail_at = 2` makes the
//! receiver refuse (the chaos test's receiver honours it).

use serde_json::json;

use super::Action;
use super::EffectRequest;
use super::FlowDef;
use super::StepDef;
use super::Undo;
use super::Vars;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::Response;
use crate::StateTxn;

/// The self-test's marker table.
pub const TABLE: &str = "flow_selftest";
/// The flow's name.
pub const FLOW: &str = "selftest.three-step";
/// The receiver its side effect goes to.
pub const RECEIVER: &str = "selftest";

fn key_of(vars: &Vars) -> Result<&str, ApiError> {
    let k = vars
        .get("key")
        .map(String::as_str)
        .ok_or_else(|| validate::invalid_arg("self-test flow without a key"))?;
    if k.is_empty() || k.len() > 128 || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(validate::invalid_arg(format!(
            "self-test key {k:?} must be 1-128 letters, digits or '-'"
        )));
    }
    Ok(k)
}

fn fails_at(vars: &Vars, step: &str) -> bool {
    vars.get("fail_at").map(String::as_str) == Some(step)
}

/// The test's key, unless the test injects a failure at this step.
fn key_unless_failing(vars: &Vars, step: &str) -> Result<String, ApiError> {
    let key = key_of(vars)?.to_string();
    if fails_at(vars, step) {
        return Err(validate::op_failure(format!(
            "self-test {key}: injected failure at step {step}"
        )));
    }
    Ok(key)
}

fn marker(key: &str, what: &str) -> Vec<u8> {
    format!("{key}/{what}").into_bytes()
}

fn begin(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let key = key_unless_failing(vars, "1")?;
    txn.put(
        TABLE,
        &marker(&key, "begin"),
        ctx.index.to_string().into_bytes(),
    )?;
    Ok(None)
}

fn unbegin(
    txn: &mut dyn StateTxn,
    _ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let key = key_of(vars)?.to_string();
    txn.delete(TABLE, &marker(&key, "begin"))?;
    Ok(None)
}

fn receiver_request(action: &str, vars: &Vars) -> Result<EffectRequest, ApiError> {
    let key = key_of(vars)?;
    Ok(EffectRequest {
        receiver: RECEIVER.into(),
        action: action.into(),
        payload: json!({
            "key": key,
            "fail": fails_at(vars, "2"),
            "pause_ms": vars.get("pause_ms").and_then(|p| p.parse::<u64>().ok()).unwrap_or(0),
        })
        .to_string(),
    })
}

fn end(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    _caller: &Caller,
    vars: &mut Vars,
) -> Result<Option<Response>, ApiError> {
    let key = key_unless_failing(vars, "3")?;
    let token = vars.get("token").cloned().unwrap_or_default();
    txn.put(
        TABLE,
        &marker(&key, "end"),
        format!("{}:{token}", ctx.index).into_bytes(),
    )?;
    vars.insert("completed".into(), "true".into());
    Ok(None)
}

/// The self-test flow.
pub const SELFTEST: FlowDef = FlowDef {
    name: FLOW,
    steps: &[
        StepDef {
            name: "mark-begin",
            action: Action::Commit(begin),
            undo: Undo::Commit(unbegin),
        },
        StepDef {
            name: "call-receiver",
            action: Action::Effect(|v| receiver_request("apply", v)),
            undo: Undo::Effect(|v| receiver_request("revert", v)),
        },
        StepDef {
            name: "mark-end",
            action: Action::Commit(end),
            undo: Undo::Nothing,
        },
    ],
};

/// The markers a self-test key left (`begin`, `end`), for checks.
pub fn markers(txn: &dyn StateTxn, key: &str) -> Result<Vec<(String, String)>, ApiError> {
    let prefix = format!("{key}/");
    Ok(txn
        .scan_prefix(TABLE, prefix.as_bytes(), 8)?
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect())
}
