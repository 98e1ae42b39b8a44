//! Scheduler records on the wire (`SchedulerJobInventory`, `SchedulerTriggerInventory`,
//! `SchedulerJobHistoryInventory`) and request → op.

use serde_json::json;
use serde_json::Value;

use super::model::ExecutionStatus;
use super::model::JobType;
use super::model::SchedulerJob;
use super::model::SchedulerJobHistory;
use super::model::SchedulerOp;
use super::model::SchedulerTrigger;
use super::model::HISTORY_TABLE;
use super::model::JOB_TABLE;
use super::model::TRIGGER_TABLE;
use crate::params;
use crate::plan::refusal_of;
use crate::plan::Plan;
use crate::plan::PlanInput;
use crate::resource::date;
use crate::resource::generic::Rename;
use crate::resource::Field;
use crate::resource::Resource;
use crate::wire::errors::Code;
use crate::wire::errors::Refusal;
use crate::ApiError;
use crate::StateTxn;

fn opt(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|s| json!(s))
}

fn job_data(j: &SchedulerJob) -> Value {
    let m: serde_json::Map<String, Value> = j
        .parameters
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!(Value::Object(m).to_string())
}

impl Resource for SchedulerJob {
    const KIND: &'static str = super::model::JOB_KIND;
    const TABLE: &'static str = JOB_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |j| json!(j.uuid)),
        Field::new("targetResourceUuid", |j| json!(j.target_resource_uuid)),
        Field::new("name", |j| json!(j.name)),
        Field::maybe("description", |j| opt(&j.description)),
        Field::new("jobType", |j| json!(j.job_type.as_str())),
        Field::new("jobClassName", |j| json!(j.job_type.class_name())),
        Field::new("jobData", job_data),
        Field::new("state", |j| json!(j.state.as_str())),
        Field::new("createDate", |j| date(j.create_date)),
        Field::new("lastOpDate", |j| date(j.last_op_date)),
        Field::new("triggersUuid", |j| json!(j.triggers_uuid)),
    ];
    const INDEXED: &'static [&'static str] = &[
        "name",
        "state",
        "targetResourceUuid",
        "triggersUuid",
        "jobType",
    ];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

fn jobs_of(txn: &dyn StateTxn, t: &SchedulerTrigger) -> Result<Value, ApiError> {
    Ok(json!(crate::resource::uuids_where::<SchedulerJob>(
        txn,
        "triggersUuid",
        &t.uuid
    )?))
}

impl Resource for SchedulerTrigger {
    const KIND: &'static str = super::model::TRIGGER_KIND;
    const TABLE: &'static str = TRIGGER_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("uuid", |t| json!(t.uuid)),
        Field::new("name", |t| json!(t.name)),
        Field::maybe("description", |t| opt(&t.description)),
        Field::new("schedulerType", |_| json!("simple")),
        Field::new("schedulerInterval", |t| json!(t.interval_secs)),
        Field::maybe("repeatCount", |t| t.repeat_count.map(|n| json!(n))),
        Field::new("startTime", |t| date(t.schedule().start_ms)),
        Field::maybe("stopTime", |t| t.schedule().stop_ms().map(date)),
        // Not in ZStack's inventory: the timer's progress, so a client can tell a trigger
        // whose last slot is past (`Completed`) from one still running (`Scheduled`).
        Field::new("status", |t| {
            json!(if t.completed() {
                "Completed"
            } else {
                "Scheduled"
            })
        }),
        Field::new("nextSlot", |t| json!(t.next_slot)),
        Field::joined("jobsUuid", jobs_of),
        Field::new("createDate", |t| date(t.create_date)),
        Field::new("lastOpDate", |t| date(t.last_op_date)),
    ];
    const INDEXED: &'static [&'static str] = &["name"];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

impl Resource for SchedulerJobHistory {
    const KIND: &'static str = super::model::HISTORY_KIND;
    const TABLE: &'static str = HISTORY_TABLE;
    const INVENTORY: &'static [Field<Self>] = &[
        Field::new("id", |h| json!(h.uuid)),
        // Also under the name every query and REST `GET base/{uuid}` looks records up by.
        Field::new("uuid", |h| json!(h.uuid)),
        Field::new("schedulerJobUuid", |h| json!(h.scheduler_job_uuid)),
        Field::new("triggerUuid", |h| json!(h.trigger_uuid)),
        Field::new("jobType", |h| json!(h.job_type.as_str())),
        Field::new("targetResourceUuid", |h| json!(h.target_resource_uuid)),
        Field::new("fireInstanceId", |h| {
            json!(format!("{}-{}", h.trigger_uuid, h.slot))
        }),
        Field::new("slot", |h| json!(h.slot)),
        Field::new("lastSlot", |h| json!(h.last_slot)),
        Field::new("status", |h| json!(h.status.as_str())),
        Field::maybe("success", |h| match h.status {
            ExecutionStatus::Succeeded => Some(json!(true)),
            ExecutionStatus::Failed => Some(json!(false)),
            _ => None,
        }),
        Field::maybe("apiJobUuid", |h| opt(&h.api_job_uuid)),
        Field::maybe("requestDump", |h| opt(&h.request_dump)),
        Field::maybe("resultDump", |h| opt(&h.result_dump)),
        Field::new("startTime", |h| date(h.start_time)),
        Field::new("executeTime", |h| date(h.execute_time)),
    ];
    const INDEXED: &'static [&'static str] = &[
        "schedulerJobUuid",
        "triggerUuid",
        "status",
        "targetResourceUuid",
    ];

    fn uuid(&self) -> &str {
        &self.uuid
    }
}

fn invalid(details: String) -> Refusal {
    Refusal::new(Code::InvalidArgument, details)
}

/// `parameters`: an object of scalars, kept as text pairs.
fn parameters(p: &PlanInput) -> Result<Option<Vec<(String, String)>>, Refusal> {
    match p.body.get("parameters") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
                _ => Err(invalid(format!(
                    "parameters[{k}] must be a string, a number or a boolean"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(v) => Err(invalid(format!("parameters must be an object, got {v}"))),
    }
}

fn non_negative(p: &PlanInput, f: &str) -> Result<Option<u64>, Refusal> {
    match params::int(p.body, f, p.call)? {
        None => Ok(None),
        Some(v) => u64::try_from(v)
            .map(Some)
            .map_err(|_| invalid(format!("{f}[{v}] must not be negative"))),
    }
}

/// `schedulerType`: only `simple` triggers run here.
fn simple_only(p: &PlanInput) -> Result<(), Refusal> {
    match p.string("schedulerType").as_deref() {
        None | Some("simple") => Ok(()),
        Some(other) => Err(Refusal::new(
            Code::NotSupported,
            format!("schedulerType[{other}] is not supported by this management node; use simple"),
        )),
    }
}

/// `repeatCount`: absent or 0 repeats forever, N > 0 fires N slots.
fn count(v: Option<u64>) -> Option<u64> {
    v.filter(|n| *n > 0)
}

/// `CreateSchedulerJob`.
pub(super) fn create_job(p: &PlanInput) -> Result<Plan, Refusal> {
    let ty = p.required("type")?;
    let job_type = JobType::ALL
        .iter()
        .find(|(n, _)| *n == ty)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            Refusal::new(
                Code::NotSupported,
                format!("scheduler job type[{ty}] is not supported by this management node"),
            )
        })?;
    Ok(p.propose(SchedulerOp::CreateJob {
        uuid: p.new_uuid(),
        name: p.required("name")?,
        description: p.string("description"),
        target_resource_uuid: p.required("targetResourceUuid")?,
        job_type,
        parameters: parameters(p)?.unwrap_or_default(),
    }))
}

/// `UpdateSchedulerJob`.
pub(super) fn update_job(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(p.propose(SchedulerOp::UpdateJob {
        uuid: p.required("uuid")?,
        rename: Rename::from_request(p),
        parameters: parameters(p)?,
    }))
}

/// `CreateSchedulerTrigger`.
pub(super) fn create_trigger(p: &PlanInput) -> Result<Plan, Refusal> {
    p.required("schedulerType")?;
    simple_only(p)?;
    let repeat_count = count(non_negative(p, "repeatCount")?);
    let interval_secs = non_negative(p, "schedulerInterval")?.unwrap_or(0);
    super::model::check_schedule(interval_secs, repeat_count).map_err(|e| refusal_of(&e))?;
    // Default: now, rounded up to the second, so the first slot is not already past.
    let start_time_secs =
        non_negative(p, "startTime")?.unwrap_or_else(|| p.stamp.now_ms.div_ceil(1000));
    Ok(p.propose(SchedulerOp::CreateTrigger {
        uuid: p.new_uuid(),
        name: p.required("name")?,
        description: p.string("description"),
        interval_secs,
        repeat_count,
        start_time_secs,
    }))
}

/// `UpdateSchedulerTrigger`.
pub(super) fn update_trigger(p: &PlanInput) -> Result<Plan, Refusal> {
    simple_only(p)?;
    Ok(p.propose(SchedulerOp::UpdateTrigger {
        uuid: p.required("uuid")?,
        rename: Rename::from_request(p),
        interval_secs: non_negative(p, "schedulerInterval")?,
        repeat_count: non_negative(p, "repeatCount")?.map(|n| count(Some(n))),
        start_time_secs: non_negative(p, "startTime")?,
    }))
}

/// `GetNoTriggerSchedulerJobs`: the caller's jobs attached to no trigger.
pub(super) fn no_trigger_jobs(p: &PlanInput) -> Result<Plan, Refusal> {
    Ok(Plan::Read {
        call: p.call,
        read: Box::new(|st, caller| {
            let inventories: Vec<Value> = crate::resource::list::<SchedulerJob>(st)?
                .into_iter()
                .filter(|(owner, j)| caller.can_see(owner) && j.triggers_uuid.is_empty())
                .map(|(_, j)| crate::resource::inventory(&j))
                .collect();
            let mut m = serde_json::Map::new();
            m.insert("inventories".into(), Value::Array(inventories));
            Ok(m)
        }),
    })
}
