//! Host maintenance's side of VMs (spec 03 §4.3), served to the host family's
//! `host.change-state` flow (families never import each other):
//!
//! - `vm.evacuation-plan` `{hostUuid, evacuate}`: every VM on the host, except Unknown ones,
//!   is claimed in this one apply: a Running VM on shared storage for which the allocator
//!   finds another host (its capacity reserved there) becomes Migrating, the others (local
//!   storage, Paused, nowhere to go) become Stopping. A VM in the middle of an operation of its
//!   own refuses the maintenance. Answers the effect request that carries the plan out
//!   (receiver `vm`, action `evacuate`; `skip` when the event is not `maintain`).
//! - `vm.evacuation-finish` `{plan, results}`: records what the effect did: migrated VMs on
//!   their destination, stopped ones Stopped, and the VMs that could neither migrate nor stop
//!   back in their state on the host (their domain is still there); answers their uuids as
//!   `failures`.
//! - `vm.evacuation-abort` `{plan}`: the rollback of the plan: whatever is still claimed goes
//!   back to its state and gives its destination's capacity back.

use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use super::flows::Spec;
use super::flows::Target;
use super::model::VmInstance;
use super::model::VmState;
use crate::registry::serve;
use crate::registry::service_input;
use crate::resource;
use crate::resource::generic;
use crate::validate;
use crate::ApiError;
use crate::ApplyCtx;
use crate::Caller;
use crate::StateTxn;

/// Service names.
pub const PLAN: &str = "vm.evacuation-plan";
/// See the module doc.
pub const FINISH: &str = "vm.evacuation-finish";
/// See the module doc.
pub const ABORT: &str = "vm.evacuation-abort";

/// What happens to one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Move {
    /// Live-migrate to the destination (reserved).
    Migrate {
        /// Where.
        destination: Target,
        /// The domain's spec.
        spec: Box<Spec>,
    },
    /// Stop on the host.
    Stop,
}

/// One VM of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// The VM.
    pub vm_uuid: String,
    /// Its state before the plan claimed it.
    pub prev_state: VmState,
    /// What to do.
    pub action: Move,
}

/// A host's evacuation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evacuation {
    /// The host in maintenance.
    pub host: Target,
    /// Its VMs.
    pub items: Vec<Item>,
    /// `kvm/vm.migrationQuantity`: migrations at a time.
    pub parallel: u32,
}

/// What became of one VM (the effect's answer, by VM uuid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// On its destination, its domain in this state there.
    Migrated {
        /// "Running", or empty when it could not start there.
        domain_state: String,
    },
    /// Stopped on the host.
    Stopped,
    /// Neither: still on the host, why.
    Failed {
        /// The error.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlanInput {
    host_uuid: String,
    evacuate: bool,
}

fn set_state(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    uuid: &str,
    state: VmState,
) -> Result<(), ApiError> {
    generic::modify(txn, ctx, uuid, |_, v: &mut VmInstance| {
        v.state = state;
        Ok(())
    })
    .map(|_| ())
}

pub(super) fn plan(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    input: &Value,
) -> Result<Value, ApiError> {
    let p: PlanInput = service_input(PLAN, input)?;
    if !p.evacuate {
        return Ok(json!({
            "receiver": super::flows::RECEIVER,
            "action": super::flows::actions::SKIP,
            "payload": json!({"vmUuid": ""}).to_string(),
        }));
    }
    let inv = resource::inventory_of(txn, "Host", &p.host_uuid)?
        .ok_or_else(|| resource::not_found_kind("Host", &p.host_uuid))?;
    let host = Target {
        host_uuid: p.host_uuid.clone(),
        management_ip: inv["managementIp"].as_str().unwrap_or_default().to_string(),
    };
    let mut vms: Vec<VmInstance> = resource::find::<VmInstance>(txn, "hostUuid", &p.host_uuid)?
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    vms.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    let mut items = Vec::new();
    for vm in vms {
        match vm.state {
            // Spec 03 §4.3 step 1: a VM whose host lost it is left to its own fate.
            VmState::Unknown => continue,
            VmState::Running | VmState::Paused => {}
            other => {
                return Err(validate::op_failure(format!(
                    "unable to enter maintenance mode: VM[uuid:{}] on host[uuid:{}] is {}; try again when its operation has finished",
                    vm.uuid,
                    p.host_uuid,
                    other.name()
                )))
            }
        }
        let movable = super::model::migration_refusal(txn, &vm, "APIMigrateVmMsg", None).is_ok();
        let placed = if movable {
            let input = super::flows::migration_placement(txn, &vm, None)?;
            // Nowhere to go is not the maintenance's failure: the VM is stopped instead.
            let mut staged = crate::staged::Staged::new(&mut *txn);
            match serve(&mut staged, ctx, caller, "host.allocate", &input) {
                Ok(out) => {
                    staged.commit()?;
                    out["hostUuid"].as_str().map(str::to_string)
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let action = match placed {
            Some(h) => {
                let mut probe = vm.clone();
                probe.host_uuid = Some(h.clone());
                let hinv = resource::inventory_of(txn, "Host", &h)?
                    .ok_or_else(|| resource::not_found_kind("Host", &h))?;
                Move::Migrate {
                    destination: Target {
                        host_uuid: h,
                        management_ip: hinv["managementIp"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    },
                    spec: Box::new(super::flows::spec_of(txn, &vm)?),
                }
            }
            None => Move::Stop,
        };
        let next = match action {
            Move::Migrate { .. } => VmState::Migrating,
            Move::Stop => VmState::Stopping,
        };
        set_state(txn, ctx, &vm.uuid, next)?;
        items.push(Item {
            vm_uuid: vm.uuid.clone(),
            prev_state: vm.state,
            action,
        });
    }
    let parallel = crate::settings::int_value(txn, "kvm", "vm.migrationQuantity")
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(2);
    let plan = Evacuation {
        host,
        items,
        parallel,
    };
    Ok(json!({
        "receiver": super::flows::RECEIVER,
        "action": super::flows::actions::EVACUATE,
        "payload": json!({"vmUuid": "", "evacuation": plan}).to_string(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FinishInput {
    plan: String,
    #[serde(default)]
    results: Option<String>,
}

fn plan_of(payload: &str) -> Result<Option<Evacuation>, ApiError> {
    let v: Value = serde_json::from_str(payload)
        .map_err(|e| validate::invalid_arg(format!("evacuation plan undecodable: {e}")))?;
    if v["evacuation"].is_null() {
        return Ok(None);
    }
    serde_json::from_value(v["evacuation"].clone())
        .map(Some)
        .map_err(|e| validate::invalid_arg(format!("evacuation plan undecodable: {e}")))
}

/// Whether the plan still holds the VM (a finish or abort not applied to it yet).
fn claimed(txn: &dyn StateTxn, item: &Item) -> Result<bool, ApiError> {
    let want = match item.action {
        Move::Migrate { .. } => VmState::Migrating,
        Move::Stop => VmState::Stopping,
    };
    Ok(resource::load::<VmInstance>(txn, &item.vm_uuid)?.is_some_and(|(_, v)| v.state == want))
}

fn release(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    uuid: &str,
) -> Result<(), ApiError> {
    serve(txn, ctx, caller, "host.release", &json!({ "vmUuid": uuid }))?;
    Ok(())
}

/// The VM back as it was on the host, its destination's capacity back.
fn restore(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    item: &Item,
) -> Result<(), ApiError> {
    release(
        txn,
        ctx,
        caller,
        &super::flows::migration_reservation(&item.vm_uuid),
    )?;
    set_state(txn, ctx, &item.vm_uuid, item.prev_state)
}

pub(super) fn finish(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    input: &Value,
) -> Result<Value, ApiError> {
    let f: FinishInput = service_input(FINISH, input)?;
    let Some(plan) = plan_of(&f.plan)? else {
        return Ok(json!({ "failures": [] }));
    };
    let results: std::collections::BTreeMap<String, Outcome> = match &f.results {
        Some(r) => serde_json::from_str(r)
            .map_err(|e| validate::invalid_arg(format!("evacuation results undecodable: {e}")))?,
        None => Default::default(),
    };
    let mut failures = Vec::new();
    for item in &plan.items {
        if !claimed(txn, item)? {
            continue;
        }
        match (results.get(&item.vm_uuid), &item.action) {
            (Some(Outcome::Migrated { domain_state }), Move::Migrate { destination, .. }) => {
                super::flows::record_migrated(
                    txn,
                    ctx,
                    caller,
                    &item.vm_uuid,
                    destination,
                    domain_state,
                )?;
            }
            (Some(Outcome::Stopped), _) => {
                release(
                    txn,
                    ctx,
                    caller,
                    &super::flows::migration_reservation(&item.vm_uuid),
                )?;
                release(txn, ctx, caller, &item.vm_uuid)?;
                generic::modify(txn, ctx, &item.vm_uuid, |_, v: &mut VmInstance| {
                    v.last_host_uuid = v.host_uuid.take();
                    v.state = VmState::Stopped;
                    Ok(())
                })?;
            }
            (other, _) => {
                let reason = match other {
                    Some(Outcome::Failed { reason }) => reason.clone(),
                    _ => "no outcome reported".to_string(),
                };
                failures.push(format!("VM[uuid:{}]: {reason}", item.vm_uuid));
                restore(txn, ctx, caller, item)?;
            }
        }
    }
    Ok(json!({ "failures": failures }))
}

pub(super) fn abort(
    txn: &mut dyn StateTxn,
    ctx: &ApplyCtx,
    caller: &Caller,
    input: &Value,
) -> Result<Value, ApiError> {
    let f: FinishInput = service_input(ABORT, input)?;
    let Some(plan) = plan_of(&f.plan)? else {
        return Ok(json!({}));
    };
    for item in &plan.items {
        if claimed(txn, item)? {
            restore(txn, ctx, caller, item)?;
        }
    }
    Ok(json!({}))
}
