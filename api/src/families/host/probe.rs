//! Probe before propose: a host call that (re)connects a host is proposed only after the
//! serving node reached the host's SSH port, so a host that cannot be reached never leaves a
//! record behind (spec 03 §12.1 step 12). The plan carries the two functions the node runs:
//! [`probe_target`] (where to look) and [`unreachable_refusal`] (what to answer otherwise).

use super::model::Host;
use super::model::HostOp;
use super::model::HostResult;
use crate::plan::HostEndpoint;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource;
use crate::staged::Staged;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Command;
use crate::IntoCommand;
use crate::Response;
use crate::StateTxn;

/// Calls whose command the receiving node proposes only after probing the host.
pub const PROBED_CALLS: &[&str] = &["AddKVMHost", "UpdateKVMHost", "ReconnectHost"];

/// The plan of a probed call: reach the host `op` names, then propose `op`.
pub(super) fn probed(p: &PlanInput, op: HostOp) -> Plan {
    Plan::ProbeThenPropose {
        call: p.call,
        command: Box::new(op.command(p.caller.clone())),
        probe: probe_target,
        unreachable: unreachable_refusal,
    }
}

fn host_op(command: &Command) -> Option<&HostOp> {
    match command.innermost() {
        Command::Host(c) => Some(&c.op),
        _ => None,
    }
}

/// The endpoint the receiving node must reach before proposing `command`, or `None` when
/// nothing needs probing (not a host command, or an update that keeps the IP and port).
///
/// The command is first applied to a throw-away overlay of `txn` (as of `now_ms`), so a call
/// the state refuses (unknown cluster, duplicate IP, host in maintenance, ...) is refused with
/// its own error before any connection is attempted. Nothing is written to `txn`.
pub fn probe_target(
    txn: &mut dyn StateTxn,
    now_ms: u64,
    command: &Command,
) -> Result<Option<HostEndpoint>, ApiError> {
    let Some(op) = host_op(command) else {
        return Ok(None);
    };
    // The overlay is dropped without `commit`: the dry run leaves `txn` untouched.
    let mut overlay = Staged::new(txn);
    let before = match op {
        HostOp::UpdateKvm { uuid, .. } | HostOp::Reconnect { uuid } => {
            resource::load::<Host>(&overlay, uuid)?.map(|(_, h)| h)
        }
        _ => None,
    };
    let ctx = ApplyCtx {
        index: 0,
        term: 0,
        proposed_at_ms: now_ms,
    };
    let resp = crate::apply(&mut overlay, &ctx, command.clone())?;
    let after = match resp.innermost() {
        Response::Refused(e) => return Err(e.clone()),
        Response::Host(HostResult::Inventory(h)) => Some(h.endpoint()),
        _ => None,
    };
    Ok(match op {
        HostOp::AddKvm { .. } | HostOp::Reconnect { .. } => after,
        HostOp::UpdateKvm { .. } => match (before, after) {
            (Some(b), Some(a))
                if b.management_ip == a.management_ip && b.ssh_port == a.ssh_port =>
            {
                None
            }
            (_, a) => a,
        },
        HostOp::ChangeState { .. }
        | HostOp::Delete { .. }
        | HostOp::Track { .. }
        | HostOp::Reserve { .. }
        | HostOp::Release { .. } => None,
    })
}

/// The refusal for a host that could not be reached: `HOST.1000` (unable to add host) for
/// `AddKVMHost`, `HOST.1002` (unable to reconnect host) for the calls that reconnect it.
pub fn unreachable_refusal(call: &str, endpoint: &HostEndpoint, cause: &str) -> Refusal {
    let (code, what) = if call == "AddKVMHost" {
        (Code::HostAdd, "add")
    } else {
        (Code::HostReconnect, "reconnect")
    };
    Refusal::new(
        code,
        format!(
            "unable to {what} host[{}:{}]: {cause}",
            endpoint.management_ip, endpoint.ssh_port
        ),
    )
}
